//! The kit against real sockets: a line-echo protocol served through it.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::*;
use crate::authn::Mechanism;
use crate::budget::BudgetLimits;

/// Echoes each line; on the close signal writes `bye: <reason>` and returns; a line
/// `panic` panics.
struct Echo {
    cut_off: watch::Sender<bool>,
}

impl ConnectionHandler for Echo {
    async fn serve(&self, connection: Connection, mut closing: Closing) {
        let (reader, mut writer) = connection.stream.into_split();
        let mut lines = BufReader::new(reader).lines();
        loop {
            tokio::select! {
                line = lines.next_line() => match line {
                    Ok(Some(line)) if line == "panic" => panic!("asked to"),
                    Ok(Some(line)) => {
                        if writer.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    _ => return,
                },
                reason = closing.wait() => {
                    let _ = writer.write_all(format!("bye: {}\n", reason.text()).as_bytes()).await;
                    let _ = writer.shutdown().await;
                    return;
                }
            }
        }
    }

    fn is_cut_off(&self) -> bool {
        *self.cut_off.borrow()
    }

    async fn until_cut_off(&self) {
        let mut cut_off = self.cut_off.subscribe();
        let _ = cut_off.wait_for(|c| *c).await;
    }

    async fn authenticate_certificate(
        &self,
        _ctx: &RequestContext,
        principal: String,
    ) -> Result<Authenticated, BrokerError> {
        Ok(Authenticated {
            user: principal,
            mechanism: Mechanism::Certificate,
        })
    }
}

const LISTENER: Listener = Listener::KAFKA;

struct Running {
    addr: SocketAddr,
    handler: Arc<Echo>,
    budget: Arc<Budget>,
    stop: watch::Sender<bool>,
    serve: JoinHandle<()>,
}

async fn start(max_connections: usize, idle_timeout: Option<Duration>) -> Running {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let budget = Arc::new(Budget::new(BudgetLimits {
        max_connections,
        ..BudgetLimits::default()
    }));
    let handler = Arc::new(Echo {
        cut_off: watch::Sender::new(false),
    });
    let (stop, stopping) = watch::channel(false);
    let options = Options {
        budget: budget.clone(),
        idle_timeout,
        ..Options::new(LISTENER)
    };
    let serve = tokio::spawn(super::serve(socket, handler.clone(), stopping, options));
    Running {
        addr,
        handler,
        budget,
        stop,
        serve,
    }
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer in 20 s"))
}

struct Client {
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    async fn connect(running: &Running) -> Client {
        let (reader, writer) = TcpStream::connect(running.addr).await.unwrap().into_split();
        Client {
            lines: BufReader::new(reader).lines(),
            writer,
        }
    }

    /// Sends `line`; `None` if the connection is closed.
    async fn say(&mut self, line: &str) -> Option<String> {
        // A write to a connection the server closed may still succeed: the read tells.
        let _ = self.writer.write_all(format!("{line}\n").as_bytes()).await;
        self.next().await
    }

    /// The next line; `None` at the end of the stream (or a reset).
    async fn next(&mut self) -> Option<String> {
        within("a line or the end", self.lines.next_line())
            .await
            .ok()
            .flatten()
    }
}

/// Waits until `f` holds (the counters move on the connection's task).
async fn eventually(what: &str, f: impl Fn() -> bool) {
    within(what, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_connection_is_served_counted_and_asked_to_close_when_the_broker_stops() {
    let running = start(10, None).await;
    let counts = running.budget.listener_counts().clone();
    let mut client = Client::connect(&running).await;
    assert_eq!(client.say("hello").await.as_deref(), Some("hello"));
    assert_eq!(counts.of("kafka", Refusal::MaxConnections), (1, 1, 0));
    assert_eq!(running.budget.connections(), 1);

    running.stop.send(true).unwrap();
    assert_eq!(
        client.next().await.as_deref(),
        Some("bye: broker shutting down")
    );
    assert_eq!(client.next().await, None);
    within("serve returns", running.serve).await.unwrap();
    assert_eq!(counts.of("kafka", Refusal::MaxConnections), (1, 0, 0));
    assert_eq!(running.budget.connections(), 0);
}

#[tokio::test]
async fn past_max_connections_a_connection_is_closed_at_once_and_counted() {
    let running = start(1, None).await;
    let counts = running.budget.listener_counts().clone();
    let mut first = Client::connect(&running).await;
    assert_eq!(first.say("one").await.as_deref(), Some("one"));
    let mut second = Client::connect(&running).await;
    assert_eq!(second.say("two").await, None);
    assert_eq!(counts.of("kafka", Refusal::MaxConnections), (1, 1, 1));
    // The first is served on, and once it closes there is room again.
    assert_eq!(first.say("still").await.as_deref(), Some("still"));
    drop(first);
    eventually("the slot given back", || running.budget.connections() == 0).await;
    let mut third = Client::connect(&running).await;
    assert_eq!(third.say("three").await.as_deref(), Some("three"));
    let mut rendered = String::new();
    running.budget.render(&mut rendered);
    assert!(
        rendered.contains(
            "weir_listener_connections_refused_total{listener=\"kafka\",reason=\"max_connections\"} 1"
        ),
        "{rendered}"
    );
    assert!(
        rendered.contains("weir_listener_connections_accepted_total{listener=\"kafka\"} 2"),
        "{rendered}"
    );
}

#[tokio::test]
async fn a_cut_off_broker_asks_its_connections_to_close_and_turns_new_ones_away_until_back() {
    let running = start(10, None).await;
    let counts = running.budget.listener_counts().clone();
    let mut open = Client::connect(&running).await;
    assert_eq!(open.say("before").await.as_deref(), Some("before"));

    running.handler.cut_off.send_replace(true);
    assert_eq!(
        open.next().await.as_deref(),
        Some("bye: broker cut off from its cluster")
    );
    assert_eq!(open.next().await, None);
    let mut turned_away = Client::connect(&running).await;
    assert_eq!(turned_away.say("during").await, None);
    assert_eq!(counts.of("kafka", Refusal::CutOff).2, 1);

    running.handler.cut_off.send_replace(false);
    let mut back = Client::connect(&running).await;
    assert_eq!(back.say("after").await.as_deref(), Some("after"));
    assert_eq!(back.say("and on").await.as_deref(), Some("and on"));
}

#[tokio::test]
async fn an_idle_connection_is_asked_to_close_and_one_that_talks_is_not() {
    let timeout = Duration::from_secs(1);
    let running = start(10, Some(timeout)).await;
    let mut talking = Client::connect(&running).await;
    let mut silent = Client::connect(&running).await;
    assert_eq!(silent.say("once").await.as_deref(), Some("once"));
    // Twice the timeout, a line every tenth of it.
    for i in 0..20 {
        let line = format!("line {i}");
        assert_eq!(talking.say(&line).await, Some(line));
        tokio::time::sleep(timeout / 10).await;
    }
    assert_eq!(
        silent.next().await.as_deref(),
        Some("bye: connection idle too long")
    );
    assert_eq!(silent.next().await, None);
    assert_eq!(talking.say("still").await.as_deref(), Some("still"));
}

#[tokio::test]
async fn a_panicking_connection_task_is_logged_and_the_listener_serves_on() {
    let running = start(10, None).await;
    let counts = running.budget.listener_counts().clone();
    let mut doomed = Client::connect(&running).await;
    assert_eq!(doomed.say("panic").await, None);
    eventually("the panicked connection's slot given back", || {
        running.budget.connections() == 0
    })
    .await;
    assert_eq!(counts.of("kafka", Refusal::MaxConnections).1, 0);
    let mut next = Client::connect(&running).await;
    assert_eq!(next.say("alive").await.as_deref(), Some("alive"));
}

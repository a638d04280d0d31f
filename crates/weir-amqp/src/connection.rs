//! One AMQP connection, one task: the handshake (protocol header, start/start-ok with
//! PLAIN or AMQPLAIN, tune, open), heartbeats, channels, and every method this stage
//! serves. A reader task turns the socket into frames; this task takes them in order,
//! with the deliveries its consumers fetch and the confirms of its publishes, and writes
//! the answers. Channel errors close the channel, connection errors the connection
//! (docs/amqp.md § Failure cases and reply codes).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use amq_protocol::frame::{AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::{
    AMQPClass, BasicProperties, access, basic, channel, confirm, connection, exchange, queue,
};
use amq_protocol::types::{AMQPValue, FieldTable, ShortString};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use weir_batch::{Compression, Record};
use weir_broker::audit::Outcome;
use weir_broker::authn::{Credentials, FAILED_AUTHENTICATION_DELAY, Mechanism};
use weir_broker::produce::{
    self, Acks, PartitionProduce, PendingProduce, ProduceData, ProduceRequest,
};
use weir_broker::shares::{self, AckKind, AckRange, ShareFetch, ShareRecord, ShareStart};
use weir_broker::{BrokerError, Reason, RequestContext};

use crate::Shared;
use crate::consume::{self, Fetched};
use crate::errors::{
    ACCESS_REFUSED, CHANNEL_ERROR, COMMAND_INVALID, CONNECTION_FORCED, CONTENT_TOO_LARGE,
    FRAME_ERROR, NO_ROUTE, NOT_ALLOWED, NOT_FOUND, NOT_IMPLEMENTED, PRECONDITION_FAILED, Reply,
    Scope, UNEXPECTED_FRAME, from_broker,
};
use crate::frame::{self, MAX_FRAME_BYTES, MIN_FRAME_BYTES, PROTOCOL_HEADER, ReadError};
use crate::queues;

/// Most channels a connection may open (`channel_max` offered; RabbitMQ's default).
pub const MAX_CHANNELS: u16 = 2_047;
/// The heartbeat interval offered, in seconds (RabbitMQ's default).
pub const HEARTBEAT: u16 = 60;
/// Largest message body, checked when its content header announces it.
pub const MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
/// Most consumers on one channel.
pub const MAX_CONSUMERS_PER_CHANNEL: usize = 256;
/// Most unacknowledged deliveries of a consumer without a prefetch count (or with
/// `no_ack`): RabbitMQ's unlimited, bounded.
pub const MAX_UNACKED_PER_CONSUMER: usize = 1_000;
/// Most publishes of one channel waiting for their produce's answer; a publisher past it
/// is not read from until one is answered.
pub const MAX_PENDING_PUBLISHES: usize = 1_024;

/// How long a client has to send its protocol header and finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the broker waits for `close-ok` after closing a connection.
const CLOSE_OK_WAIT: Duration = Duration::from_secs(1);
/// How long a closed connection's clean-up (releasing what it held, deleting its
/// exclusive queues) may take, so a broker that is stopping is not held up by it.
const RELEASE_WAIT: Duration = Duration::from_secs(5);
/// Frames read ahead of the connection task.
const INBOUND_QUEUE: usize = 8;
/// Acknowledgement entries sent to the core in one request.
const ACK_ENTRIES_PER_REQUEST: usize = 1_000;
/// Bytes read from the socket at once.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// The basic class's id (content headers name it).
const BASIC_CLASS: u16 = 60;

/// What the connection task is told besides frames.
#[derive(Debug)]
pub enum Event {
    Fetched(Fetched),
    /// A publish of `channel` in confirm mode was answered (`seq`: its confirm number).
    Confirmed {
        channel: u16,
        seq: u64,
        outcome: Result<(), String>,
    },
}

enum Inbound {
    /// Boxed: a frame is large beside the other variants, and queued between tasks.
    Frame(Box<AMQPFrame>),
    Refused(Reply),
    Gone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `connection.start` sent; `start-ok` due.
    Start,
    /// `connection.tune` sent; `tune-ok` due.
    Tune,
    /// `connection.open` due.
    Open,
    Running,
    /// `connection.close` sent; waiting for `close-ok` until the deadline.
    Closing(Instant),
    /// Done: the task ends.
    Closed,
}

/// A delivery not yet acknowledged.
#[derive(Debug)]
struct Unacked {
    queue: String,
    member: String,
    partition: u32,
    offset: i64,
    /// The consumer whose prefetch room it takes (`None`: a `basic.get`).
    consumer: Option<String>,
}

#[derive(Debug)]
struct Consumer {
    queue: String,
    member: String,
    no_ack: bool,
    room: Arc<Semaphore>,
    task: JoinHandle<()>,
}

/// A publish whose content is being read.
#[derive(Debug)]
struct Publishing {
    method: basic::Publish,
    properties: Option<BasicProperties>,
    size: u64,
    body: Vec<u8>,
}

/// A publish handed to the core, waiting for its answer.
#[derive(Debug)]
struct Pending {
    seq: Option<u64>,
    produce: Result<PendingProduce, BrokerError>,
}

#[derive(Debug)]
struct Channel {
    /// `channel.close` sent by the broker; everything but `close`/`close-ok` is dropped.
    closing: bool,
    prefetch: u16,
    /// Publisher confirms on (`confirm.select`), and the last confirm number given.
    confirm: bool,
    published: u64,
    publishing: Option<Publishing>,
    publisher: Option<mpsc::Sender<Pending>>,
    consumers: HashMap<String, Consumer>,
    consumers_started: u64,
    last_delivery_tag: u64,
    unacked: BTreeMap<u64, Unacked>,
    /// Every (queue, member) this channel fetched as: released when it closes.
    members: HashSet<(String, String)>,
    /// The queue last declared on the channel (an empty queue name means it).
    last_queue: Option<String>,
}

impl Channel {
    fn new() -> Channel {
        Channel {
            closing: false,
            prefetch: 0,
            confirm: false,
            published: 0,
            publishing: None,
            publisher: None,
            consumers: HashMap::new(),
            consumers_started: 0,
            last_delivery_tag: 0,
            unacked: BTreeMap::new(),
            members: HashSet::new(),
            last_queue: None,
        }
    }
}

struct Conn {
    shared: Arc<Shared>,
    ctx: RequestContext,
    /// Unique among connections: member ids are made from it.
    id: String,
    phase: Phase,
    out: Vec<u8>,
    /// An answer could not be encoded (a bug): the connection is dropped.
    broken: bool,
    frame_max: u32,
    reader_frame_max: Arc<AtomicU32>,
    channel_max: u16,
    heartbeat: u16,
    channels: HashMap<u16, Channel>,
    events: mpsc::UnboundedSender<Event>,
    /// Exclusive and auto-delete queues this connection declared: deleted with it.
    owned_queues: Vec<String>,
}

/// Serves one connection until it closes, then gives back what its channels held and
/// deletes the exclusive queues it declared.
pub(crate) async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut stopping: watch::Receiver<bool>,
) {
    let (read_half, mut writer) = stream.into_split();
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, read_half);
    let mut header = [0u8; 8];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, reader.read_exact(&mut header)).await {
        Ok(Ok(_)) => {}
        _ => return,
    }
    if header != PROTOCOL_HEADER {
        // The spec's answer to another protocol or version: ours, then close.
        tracing::debug!(?header, "not an AMQP 0-9-1 protocol header");
        let _ = writer.write_all(&PROTOCOL_HEADER).await;
        return;
    }
    let (events, mut event_rx) = mpsc::unbounded_channel();
    let reader_frame_max = Arc::new(AtomicU32::new(MAX_FRAME_BYTES));
    let (inbound_tx, mut inbound) = mpsc::channel(INBOUND_QUEUE);
    let reader_task = tokio::spawn(read_loop(reader, reader_frame_max.clone(), inbound_tx));
    let mut conn = Conn {
        ctx: RequestContext::anonymous(crate::LISTENER, Some(peer)),
        shared,
        id: uuid::Uuid::new_v4().simple().to_string(),
        phase: Phase::Start,
        out: Vec::new(),
        broken: false,
        frame_max: MAX_FRAME_BYTES,
        reader_frame_max,
        channel_max: MAX_CHANNELS,
        heartbeat: 0,
        channels: HashMap::new(),
        events,
        owned_queues: Vec::new(),
    };
    conn.send_start();
    let handshake_deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut last_heard = Instant::now();
    let mut last_sent = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while conn.phase != Phase::Closed && !conn.broken {
        if !conn.out.is_empty() {
            if writer.write_all(&conn.out).await.is_err() {
                break;
            }
            conn.out.clear();
            last_sent = Instant::now();
        }
        tokio::select! {
            received = inbound.recv() => match received {
                Some(Inbound::Frame(frame)) => {
                    last_heard = Instant::now();
                    conn.on_frame(*frame).await;
                }
                Some(Inbound::Refused(reply)) => {
                    tracing::debug!(code = reply.code, text = reply.text, "AMQP frame refused");
                    if matches!(conn.phase, Phase::Closing(_)) {
                        break;
                    }
                    conn.close_connection(reply).await;
                }
                Some(Inbound::Gone) | None => break,
            },
            Some(event) = event_rx.recv() => conn.on_event(event).await,
            _ = tick.tick() => {
                let now = Instant::now();
                match conn.phase {
                    Phase::Closing(deadline) if now >= deadline => break,
                    Phase::Start | Phase::Tune | Phase::Open if now >= handshake_deadline => break,
                    _ => {}
                }
                if conn.heartbeat > 0 {
                    let interval = Duration::from_secs(u64::from(conn.heartbeat));
                    if now.duration_since(last_heard) > interval * 2 {
                        tracing::debug!("no heartbeat from the AMQP client for two intervals");
                        break;
                    }
                    if now.duration_since(last_sent) >= interval / 2 {
                        conn.send(AMQPFrame::Heartbeat);
                    }
                }
            }
            changed = stopping.changed() => {
                if (changed.is_err() || *stopping.borrow()) && conn.phase == Phase::Running {
                    conn.close_connection(Reply::connection(
                        CONNECTION_FORCED,
                        "broker shutting down",
                    ))
                    .await;
                } else if changed.is_err() || *stopping.borrow() {
                    break;
                }
            }
        }
    }
    if !conn.out.is_empty() {
        let _ = writer.write_all(&conn.out).await;
    }
    let _ = writer.shutdown().await;
    reader_task.abort();
    if tokio::time::timeout(RELEASE_WAIT, conn.finish())
        .await
        .is_err()
    {
        // What was not given back is released when its locks expire.
        tracing::info!("giving back a closed AMQP connection's messages took too long");
    }
}

async fn read_loop(
    mut reader: BufReader<OwnedReadHalf>,
    frame_max: Arc<AtomicU32>,
    inbound: mpsc::Sender<Inbound>,
) {
    loop {
        let max = frame_max.load(Ordering::Relaxed);
        let next = match frame::read_frame(&mut reader, max).await {
            Ok(frame) => Inbound::Frame(Box::new(frame)),
            Err(ReadError::Refused(reply)) => Inbound::Refused(reply),
            Err(ReadError::Gone(_)) => Inbound::Gone,
        };
        let last = !matches!(next, Inbound::Frame(_));
        if inbound.send(next).await.is_err() || last {
            return;
        }
    }
}

fn method(channel: u16, class: AMQPClass) -> AMQPFrame {
    AMQPFrame::Method(channel, class)
}

impl Conn {
    fn send(&mut self, frame: AMQPFrame) {
        if self.broken {
            return;
        }
        if let Err(err) = frame::encode(&frame, &mut self.out) {
            tracing::error!(error = %err, "an AMQP answer could not be encoded; dropping the connection");
            self.broken = true;
        }
    }

    fn send_method(&mut self, channel: u16, class: AMQPClass) {
        self.send(method(channel, class));
    }

    /// A content header and its body frames, each within `frame_max`.
    fn send_content(&mut self, channel: u16, properties: BasicProperties, body: &[u8]) {
        self.send(AMQPFrame::Header(
            channel,
            AMQPContentHeader {
                class_id: BASIC_CLASS,
                body_size: body.len() as u64,
                properties,
            },
        ));
        let chunk = (self.frame_max as usize).saturating_sub(8).max(1);
        for part in body.chunks(chunk) {
            self.send(AMQPFrame::Body(channel, part.to_vec()));
        }
    }

    fn send_start(&mut self) {
        let mut capabilities = FieldTable::default();
        for (name, on) in [
            ("publisher_confirms", true),
            ("basic.nack", true),
            ("per_consumer_qos", true),
            ("authentication_failure_close", true),
            ("consumer_cancel_notify", false),
            ("exchange_exchange_bindings", false),
            ("connection.blocked", false),
        ] {
            capabilities.insert(name.into(), AMQPValue::Boolean(on));
        }
        let mut properties = FieldTable::default();
        properties.insert("product".into(), AMQPValue::LongString("Weir".into()));
        properties.insert(
            "version".into(),
            AMQPValue::LongString(env!("CARGO_PKG_VERSION").into()),
        );
        properties.insert(
            "information".into(),
            AMQPValue::LongString("AMQP 0-9-1 on Weir's log; see docs/amqp.md".into()),
        );
        properties.insert("capabilities".into(), AMQPValue::FieldTable(capabilities));
        self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Start(connection::Start {
                version_major: 0,
                version_minor: 9,
                server_properties: properties,
                mechanisms: "PLAIN AMQPLAIN".into(),
                locales: "en_US".into(),
            })),
        );
    }

    /// Sends `connection.close` and waits (bounded) for `close-ok`.
    async fn close_connection(&mut self, reply: Reply) {
        tracing::debug!(
            code = reply.code,
            text = reply.text,
            "closing the AMQP connection"
        );
        // Given back before the close goes out, as for a close the client starts: a
        // client that reconnects at once finds what this one held available.
        if tokio::time::timeout(RELEASE_WAIT, self.finish())
            .await
            .is_err()
        {
            tracing::info!("giving back a closing AMQP connection's messages took too long");
        }
        let text = reply.short_text();
        self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                reply_code: reply.code,
                reply_text: text.into(),
                class_id: reply.class_id,
                method_id: reply.method_id,
            })),
        );
        self.phase = Phase::Closing(Instant::now() + CLOSE_OK_WAIT);
    }

    /// Closes `channel` with `reply`: what it held is given back first, and frames on it
    /// are dropped until the client's `close-ok`.
    async fn close_channel(&mut self, id: u16, reply: Reply) {
        tracing::debug!(
            channel = id,
            code = reply.code,
            text = reply.text,
            "closing an AMQP channel"
        );
        if let Some(mut channel) = self.channels.remove(&id) {
            self.release(&mut channel).await;
            channel.closing = true;
            self.channels.insert(id, channel);
        }
        let text = reply.short_text();
        self.send_method(
            id,
            AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
                reply_code: reply.code,
                reply_text: text.into(),
                class_id: reply.class_id,
                method_id: reply.method_id,
            })),
        );
    }

    async fn refuse(&mut self, channel: u16, reply: Reply) {
        match reply.scope {
            Scope::Channel if channel != 0 => self.close_channel(channel, reply).await,
            _ => self.close_connection(reply).await,
        }
    }

    async fn on_frame(&mut self, frame: AMQPFrame) {
        let channel = frame.channel_id();
        let result = match self.phase {
            Phase::Closing(_) => {
                if let AMQPFrame::Method(0, AMQPClass::Connection(m)) = &frame {
                    match m {
                        connection::AMQPMethod::CloseOk(_) => self.phase = Phase::Closed,
                        connection::AMQPMethod::Close(_) => {
                            self.send_method(
                                0,
                                AMQPClass::Connection(connection::AMQPMethod::CloseOk(
                                    connection::CloseOk {},
                                )),
                            );
                            self.phase = Phase::Closed;
                        }
                        _ => {}
                    }
                }
                Ok(())
            }
            Phase::Closed => Ok(()),
            Phase::Start | Phase::Tune | Phase::Open => self.on_handshake(frame).await,
            Phase::Running => {
                if channel == 0 {
                    self.on_connection_frame(frame).await
                } else {
                    self.on_channel_frame(channel, frame).await
                }
            }
        };
        if let Err(reply) = result {
            self.refuse(channel, reply).await;
        }
    }

    async fn on_handshake(&mut self, frame: AMQPFrame) -> Result<(), Reply> {
        let out_of_order = |what: &str| {
            Reply::connection(
                COMMAND_INVALID,
                format!("expected connection.{what} during the handshake"),
            )
        };
        let AMQPFrame::Method(0, AMQPClass::Connection(m)) = frame else {
            return Err(match self.phase {
                Phase::Start => out_of_order("start-ok"),
                Phase::Tune => out_of_order("tune-ok"),
                _ => out_of_order("open"),
            });
        };
        match (self.phase, m) {
            (Phase::Start, connection::AMQPMethod::StartOk(start_ok)) => {
                self.authenticate(&start_ok).await?;
                self.send_method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::Tune(connection::Tune {
                        channel_max: MAX_CHANNELS,
                        frame_max: MAX_FRAME_BYTES,
                        heartbeat: HEARTBEAT,
                    })),
                );
                self.phase = Phase::Tune;
                Ok(())
            }
            (Phase::Tune, connection::AMQPMethod::TuneOk(tune)) => {
                let frame_max = if tune.frame_max == 0 {
                    MAX_FRAME_BYTES
                } else {
                    tune.frame_max
                };
                if !(MIN_FRAME_BYTES..=MAX_FRAME_BYTES).contains(&frame_max) {
                    return Err(Reply::connection(
                        NOT_ALLOWED,
                        format!(
                            "frame_max {frame_max} is outside {MIN_FRAME_BYTES}..={MAX_FRAME_BYTES}"
                        ),
                    )
                    .on(10, 31));
                }
                self.frame_max = frame_max;
                self.reader_frame_max.store(frame_max, Ordering::Relaxed);
                self.channel_max = match tune.channel_max {
                    0 => MAX_CHANNELS,
                    n => n.min(MAX_CHANNELS),
                };
                // The client's choice, as RabbitMQ takes it (0: no heartbeats).
                self.heartbeat = tune.heartbeat;
                self.phase = Phase::Open;
                Ok(())
            }
            (Phase::Open, connection::AMQPMethod::Open(open)) => {
                if open.virtual_host.as_str() != "/" {
                    return Err(Reply::connection(
                        NOT_ALLOWED,
                        format!(
                            "vhost '{}' not found: this broker serves the vhost '/' only \
                             (docs/amqp.md)",
                            open.virtual_host.as_str()
                        ),
                    )
                    .on(10, 40));
                }
                self.send_method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {})),
                );
                self.phase = Phase::Running;
                Ok(())
            }
            (_, connection::AMQPMethod::Close(_)) => {
                self.send_method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
                );
                self.phase = Phase::Closed;
                Ok(())
            }
            (Phase::Start, _) => Err(out_of_order("start-ok")),
            (Phase::Tune, _) => Err(out_of_order("tune-ok")),
            _ => Err(out_of_order("open")),
        }
    }

    /// PLAIN or AMQPLAIN. With authentication required, the core checks the password
    /// (`Authentication::authenticate`, as for every listener); otherwise the connection
    /// is anonymous, whatever it sent (docs/amqp.md § Connections).
    async fn authenticate(&mut self, start_ok: &connection::StartOk) -> Result<(), Reply> {
        let refused = |text: String| Reply::connection(ACCESS_REFUSED, text).on(10, 11);
        let (mechanism, credentials) = match start_ok.mechanism.as_str() {
            "PLAIN" => (
                Mechanism::Plain,
                weir_security::sasl::parse_plain(start_ok.response.as_bytes())
                    .map(|c| (c.user, c.password))
                    .map_err(|e| e.to_string()),
            ),
            "AMQPLAIN" => (Mechanism::AmqPlain, amqplain(start_ok.response.as_bytes())),
            other => {
                return Err(refused(format!(
                    "authentication mechanism {other} is not offered: PLAIN or AMQPLAIN"
                )));
            }
        };
        let broker = &self.shared.broker;
        let authentication = broker.authentication();
        if !authentication.required(self.ctx.listener) {
            return Ok(());
        }
        let (user, password) = match credentials {
            Ok(credentials) => credentials,
            Err(reason) => {
                broker.authorizer().audit().authentication(
                    &self.ctx,
                    mechanism.name(),
                    None,
                    Outcome::Refused(&reason),
                );
                tokio::time::sleep(FAILED_AUTHENTICATION_DELAY).await;
                return Err(refused(format!(
                    "{} response refused: {reason}",
                    mechanism.name()
                )));
            }
        };
        let credentials = Credentials::Password {
            mechanism,
            user,
            password,
        };
        match authentication.authenticate(&self.ctx, credentials).await {
            Ok(authenticated) => {
                authenticated.apply(&mut self.ctx);
                Ok(())
            }
            Err(err) if err.reason == Reason::Busy => {
                Err(Reply::connection(CONNECTION_FORCED, err.message))
            }
            Err(_) => Err(refused(format!(
                "login was refused using authentication mechanism {}",
                mechanism.name()
            ))),
        }
    }

    async fn on_connection_frame(&mut self, frame: AMQPFrame) -> Result<(), Reply> {
        match frame {
            AMQPFrame::Heartbeat => Ok(()),
            AMQPFrame::Method(_, AMQPClass::Connection(connection::AMQPMethod::Close(_))) => {
                // What the connection held is given back before close-ok: a client that
                // reconnects at once finds its unacknowledged messages available.
                self.finish().await;
                self.send_method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
                );
                self.phase = Phase::Closed;
                Ok(())
            }
            AMQPFrame::Method(_, class) => Err(Reply::connection(
                COMMAND_INVALID,
                format!("method {class:?} is not valid on channel 0"),
            )
            .on(class.get_amqp_class_id(), class.get_amqp_method_id())),
            _ => Err(Reply::connection(
                UNEXPECTED_FRAME,
                "content frames are not valid on channel 0",
            )),
        }
    }

    async fn on_channel_frame(&mut self, id: u16, frame: AMQPFrame) -> Result<(), Reply> {
        if id > self.channel_max {
            return Err(Reply::connection(
                CHANNEL_ERROR,
                format!("channel {id} is above channel_max {}", self.channel_max),
            ));
        }
        let Some(channel) = self.channels.get(&id) else {
            return match frame {
                AMQPFrame::Method(_, AMQPClass::Channel(channel::AMQPMethod::Open(_))) => {
                    self.channels.insert(id, Channel::new());
                    self.send_method(
                        id,
                        AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})),
                    );
                    Ok(())
                }
                _ => Err(Reply::connection(
                    CHANNEL_ERROR,
                    format!("channel {id} is not open"),
                )),
            };
        };
        if channel.closing {
            match frame {
                AMQPFrame::Method(_, AMQPClass::Channel(channel::AMQPMethod::CloseOk(_))) => {
                    self.channels.remove(&id);
                }
                AMQPFrame::Method(_, AMQPClass::Channel(channel::AMQPMethod::Close(_))) => {
                    self.send_method(
                        id,
                        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                    );
                    self.channels.remove(&id);
                }
                _ => {}
            }
            return Ok(());
        }
        let expecting_content = channel.publishing.is_some();
        match frame {
            AMQPFrame::Header(_, header) => self.on_content_header(id, header).await,
            AMQPFrame::Body(_, body) => self.on_content_body(id, body).await,
            AMQPFrame::Method(_, class) if expecting_content => Err(Reply::connection(
                UNEXPECTED_FRAME,
                format!(
                    "expected the content of basic.publish on channel {id}, got {}.{}",
                    class.get_amqp_class_id(),
                    class.get_amqp_method_id()
                ),
            )),
            AMQPFrame::Method(_, class) => {
                let (class_id, method_id) = (class.get_amqp_class_id(), class.get_amqp_method_id());
                self.on_method(id, class)
                    .await
                    .map_err(|reply| reply.on(class_id, method_id))
            }
            _ => Err(Reply::connection(
                FRAME_ERROR,
                format!("a heartbeat frame on channel {id}: heartbeats go on channel 0"),
            )),
        }
    }

    async fn on_method(&mut self, id: u16, class: AMQPClass) -> Result<(), Reply> {
        let not_served = |what: &str| {
            Reply::connection(
                NOT_IMPLEMENTED,
                format!("{what} is not served by Weir yet (docs/amqp.md § Not served yet)"),
            )
        };
        match class {
            AMQPClass::Channel(m) => match m {
                channel::AMQPMethod::Open(_) => Err(Reply::connection(
                    CHANNEL_ERROR,
                    format!("channel {id} is open already"),
                )),
                channel::AMQPMethod::Close(_) => {
                    if let Some(mut channel) = self.channels.remove(&id) {
                        self.release(&mut channel).await;
                    }
                    self.send_method(
                        id,
                        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                    );
                    Ok(())
                }
                channel::AMQPMethod::CloseOk(_) => Ok(()),
                channel::AMQPMethod::Flow(flow) if flow.active => {
                    self.send_method(
                        id,
                        AMQPClass::Channel(channel::AMQPMethod::FlowOk(channel::FlowOk {
                            active: true,
                        })),
                    );
                    Ok(())
                }
                channel::AMQPMethod::Flow(_) => Err(not_served("channel.flow active=false")),
                other => Err(Reply::connection(
                    COMMAND_INVALID,
                    format!("{other:?} is sent by the broker, not a client"),
                )),
            },
            AMQPClass::Access(access::AMQPMethod::Request(_)) => {
                self.send_method(
                    id,
                    AMQPClass::Access(access::AMQPMethod::RequestOk(access::RequestOk {})),
                );
                Ok(())
            }
            AMQPClass::Exchange(exchange::AMQPMethod::Declare(declare)) => {
                let name = declare.exchange.as_str();
                if is_default_exchange(name) {
                    if !declare.nowait {
                        self.send_method(
                            id,
                            AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(
                                exchange::DeclareOk {},
                            )),
                        );
                    }
                    Ok(())
                } else if declare.passive {
                    Err(Reply::channel(
                        NOT_FOUND,
                        format!("no exchange '{name}' in vhost '/'"),
                    ))
                } else {
                    Err(not_served(&format!("exchange.declare of '{name}'")))
                }
            }
            AMQPClass::Exchange(_) => Err(not_served("exchanges other than the default one")),
            AMQPClass::Queue(m) => self.on_queue(id, m).await,
            AMQPClass::Basic(m) => self.on_basic(id, m).await,
            AMQPClass::Confirm(confirm::AMQPMethod::Select(select)) => {
                if let Some(channel) = self.channels.get_mut(&id) {
                    channel.confirm = true;
                }
                if !select.nowait {
                    self.send_method(
                        id,
                        AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
                    );
                }
                Ok(())
            }
            AMQPClass::Tx(_) => Err(not_served("transactions (tx.*)")),
            other => Err(Reply::connection(
                COMMAND_INVALID,
                format!("{other:?} is not valid from a client on channel {id}"),
            )),
        }
    }

    async fn on_queue(&mut self, id: u16, m: queue::AMQPMethod) -> Result<(), Reply> {
        match m {
            queue::AMQPMethod::Declare(declare) => {
                let ok = queues::declare(&self.shared, &self.ctx, &self.id, &declare).await?;
                if (declare.exclusive || declare.auto_delete)
                    && !declare.passive
                    && !self.owned_queues.contains(&ok.queue)
                {
                    self.owned_queues.push(ok.queue.clone());
                }
                if let Some(channel) = self.channels.get_mut(&id) {
                    channel.last_queue = Some(ok.queue.clone());
                }
                if !declare.nowait {
                    self.send_method(
                        id,
                        AMQPClass::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
                            queue: ok.queue.into(),
                            message_count: ok.message_count,
                            consumer_count: ok.consumer_count,
                        })),
                    );
                }
                Ok(())
            }
            queue::AMQPMethod::Delete(mut delete) => {
                if delete.queue.as_str().is_empty() {
                    delete.queue = self.last_queue(id)?.into();
                }
                let message_count = queues::delete(&self.shared, &self.ctx, &delete).await?;
                self.owned_queues.retain(|q| q != delete.queue.as_str());
                if !delete.nowait {
                    self.send_method(
                        id,
                        AMQPClass::Queue(queue::AMQPMethod::DeleteOk(queue::DeleteOk {
                            message_count,
                        })),
                    );
                }
                Ok(())
            }
            queue::AMQPMethod::Purge(mut purge) => {
                if purge.queue.as_str().is_empty() {
                    purge.queue = self.last_queue(id)?.into();
                }
                let message_count = queues::purge(&self.shared, &self.ctx, &purge).await?;
                if !purge.nowait {
                    self.send_method(
                        id,
                        AMQPClass::Queue(queue::AMQPMethod::PurgeOk(queue::PurgeOk {
                            message_count,
                        })),
                    );
                }
                Ok(())
            }
            queue::AMQPMethod::Bind(bind) if is_default_exchange(bind.exchange.as_str()) => {
                Err(Reply::channel(
                    ACCESS_REFUSED,
                    "operation not permitted on the default exchange",
                ))
            }
            queue::AMQPMethod::Bind(_) | queue::AMQPMethod::Unbind(_) => Err(Reply::connection(
                NOT_IMPLEMENTED,
                "bindings are not served by Weir yet (docs/amqp.md § Not served yet)",
            )),
            other => Err(Reply::connection(
                COMMAND_INVALID,
                format!("{other:?} is sent by the broker, not a client"),
            )),
        }
    }

    fn last_queue(&self, id: u16) -> Result<String, Reply> {
        self.channels
            .get(&id)
            .and_then(|c| c.last_queue.clone())
            .ok_or_else(|| {
                Reply::channel(
                    NOT_FOUND,
                    "no queue named, and none declared on this channel before",
                )
            })
    }

    async fn on_basic(&mut self, id: u16, m: basic::AMQPMethod) -> Result<(), Reply> {
        match m {
            basic::AMQPMethod::Qos(qos) => {
                if let Some(channel) = self.channels.get_mut(&id) {
                    channel.prefetch = qos.prefetch_count;
                }
                self.send_method(
                    id,
                    AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})),
                );
                Ok(())
            }
            basic::AMQPMethod::Publish(publish) => {
                if publish.immediate {
                    return Err(Reply::connection(
                        NOT_IMPLEMENTED,
                        "immediate=true is not served (RabbitMQ dropped it too)",
                    ));
                }
                if !is_default_exchange(publish.exchange.as_str()) {
                    return Err(Reply::channel(
                        NOT_FOUND,
                        format!(
                            "no exchange '{}' in vhost '/' (only the default exchange is served \
                             yet: docs/amqp.md)",
                            publish.exchange.as_str()
                        ),
                    ));
                }
                if let Some(channel) = self.channels.get_mut(&id) {
                    channel.publishing = Some(Publishing {
                        method: publish,
                        properties: None,
                        size: 0,
                        body: Vec::new(),
                    });
                }
                Ok(())
            }
            basic::AMQPMethod::Consume(consume) => self.consume(id, consume),
            basic::AMQPMethod::Cancel(cancel) => {
                let tag = cancel.consumer_tag.as_str().to_owned();
                self.cancel(id, &tag);
                if !cancel.nowait {
                    self.send_method(
                        id,
                        AMQPClass::Basic(basic::AMQPMethod::CancelOk(basic::CancelOk {
                            consumer_tag: tag.into(),
                        })),
                    );
                }
                Ok(())
            }
            basic::AMQPMethod::Get(get) => self.get(id, get).await,
            basic::AMQPMethod::Ack(ack) => {
                self.settle(id, ack.delivery_tag, ack.multiple, AckKind::Accept)
                    .await
            }
            basic::AMQPMethod::Nack(nack) => {
                let kind = if nack.requeue {
                    AckKind::Release { delay_ms: 0 }
                } else {
                    AckKind::Reject
                };
                self.settle(id, nack.delivery_tag, nack.multiple, kind)
                    .await
            }
            basic::AMQPMethod::Reject(reject) => {
                let kind = if reject.requeue {
                    AckKind::Release { delay_ms: 0 }
                } else {
                    AckKind::Reject
                };
                self.settle(id, reject.delivery_tag, false, kind).await
            }
            basic::AMQPMethod::Recover(_) | basic::AMQPMethod::RecoverAsync(_) => {
                Err(Reply::connection(
                    NOT_IMPLEMENTED,
                    "basic.recover is not served by Weir yet (docs/amqp.md § Not served yet)",
                ))
            }
            other => Err(Reply::connection(
                COMMAND_INVALID,
                format!("{other:?} is sent by the broker, not a client"),
            )),
        }
    }

    async fn on_content_header(&mut self, id: u16, header: AMQPContentHeader) -> Result<(), Reply> {
        let Some(publishing) = self
            .channels
            .get_mut(&id)
            .and_then(|c| c.publishing.as_mut())
            .filter(|p| p.properties.is_none())
        else {
            return Err(Reply::connection(
                UNEXPECTED_FRAME,
                format!("a content header on channel {id} without a basic.publish before it"),
            ));
        };
        if header.class_id != BASIC_CLASS {
            return Err(Reply::connection(
                FRAME_ERROR,
                format!(
                    "a content header of class {}: only basic has content",
                    header.class_id
                ),
            ));
        }
        if header.body_size > MAX_BODY_BYTES {
            return Err(Reply::channel(
                CONTENT_TOO_LARGE,
                format!(
                    "message body of {} bytes is over the broker's limit of {MAX_BODY_BYTES}",
                    header.body_size
                ),
            )
            .on(60, 40));
        }
        publishing.properties = Some(header.properties);
        publishing.size = header.body_size;
        // Not reserved from the header's size: the body grows with the bytes that arrive,
        // so announcing large bodies on many channels costs the client the bytes.
        if header.body_size == 0 {
            self.publish(id).await?;
        }
        Ok(())
    }

    async fn on_content_body(&mut self, id: u16, body: Vec<u8>) -> Result<(), Reply> {
        let Some(publishing) = self
            .channels
            .get_mut(&id)
            .and_then(|c| c.publishing.as_mut())
            .filter(|p| p.properties.is_some())
        else {
            return Err(Reply::connection(
                UNEXPECTED_FRAME,
                format!("a content body on channel {id} without its header"),
            ));
        };
        let have = publishing.body.len() as u64 + body.len() as u64;
        if have > publishing.size {
            return Err(Reply::connection(
                FRAME_ERROR,
                format!(
                    "content bodies of {have} bytes for a message of {} bytes",
                    publishing.size
                ),
            ));
        }
        publishing.body.extend_from_slice(&body);
        if have == publishing.size {
            self.publish(id).await?;
        }
        Ok(())
    }

    /// Routes a complete message through the default exchange: a produce to the topic
    /// its routing key names, or a return (mandatory) when there is no such queue.
    async fn publish(&mut self, id: u16) -> Result<(), Reply> {
        let Some(channel) = self.channels.get_mut(&id) else {
            return Ok(());
        };
        let Some(Publishing {
            method: publish,
            properties,
            body,
            ..
        }) = channel.publishing.take()
        else {
            return Ok(());
        };
        let properties = properties.unwrap_or_default();
        let seq = channel.confirm.then(|| {
            channel.published += 1;
            channel.published
        });
        let queue = publish.routing_key.as_str().to_owned();
        if queue.is_empty() || !queues::exists(&self.shared, &queue) {
            tracing::debug!(
                channel = id,
                queue,
                mandatory = publish.mandatory,
                "unroutable publish"
            );
            if publish.mandatory {
                self.send_method(
                    id,
                    AMQPClass::Basic(basic::AMQPMethod::Return(basic::Return {
                        reply_code: NO_ROUTE,
                        reply_text: "NO_ROUTE".into(),
                        exchange: publish.exchange.clone(),
                        routing_key: publish.routing_key.clone(),
                    })),
                );
                self.send_content(id, properties, &body);
            }
            // As RabbitMQ: an unroutable message is confirmed (after its return).
            if let Some(seq) = seq {
                self.send_method(
                    id,
                    AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                        delivery_tag: seq,
                        multiple: false,
                    })),
                );
            }
            return Ok(());
        }
        let record = Record {
            key: None,
            value: Some(Bytes::from(body)),
            headers: crate::properties::to_headers(&properties, &queue),
            timestamp: weir_broker::now_ms(),
        };
        let request = ProduceRequest {
            topic: queue,
            acks: if seq.is_some() {
                Acks::All
            } else {
                Acks::Leader
            },
            timeout: None,
            partitions: vec![PartitionProduce {
                partition: 0,
                data: Ok(ProduceData::Records {
                    records: vec![record],
                    compression: Compression::None,
                    producer: None,
                }),
            }],
        };
        let produce = produce::submit(&self.shared.broker, &self.ctx, request).await;
        if let Err(e) = &produce
            && matches!(e.reason, Reason::NotAuthorized { .. })
        {
            return Err(from_broker(e).on(60, 40));
        }
        let events = self.events.clone();
        let Some(channel) = self.channels.get_mut(&id) else {
            return Ok(());
        };
        let publisher = channel.publisher.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel(MAX_PENDING_PUBLISHES);
            tokio::spawn(answer_publishes(id, rx, events));
            tx
        });
        let _ = publisher.send(Pending { seq, produce }).await;
        Ok(())
    }

    fn consume(&mut self, id: u16, m: basic::Consume) -> Result<(), Reply> {
        let queue = match m.queue.as_str() {
            "" => self.last_queue(id)?,
            name => name.to_owned(),
        };
        if !queues::exists(&self.shared, &queue) {
            return Err(queues::not_found(&queue));
        }
        if m.exclusive {
            return Err(Reply::channel(
                PRECONDITION_FAILED,
                "exclusive consumers are not served by Weir yet (docs/amqp.md)",
            ));
        }
        let conn_id = self.id.clone();
        let Some(channel) = self.channels.get_mut(&id) else {
            return Ok(());
        };
        if channel.consumers.len() >= MAX_CONSUMERS_PER_CHANNEL {
            return Err(Reply::channel(
                PRECONDITION_FAILED,
                format!("a channel has at most {MAX_CONSUMERS_PER_CHANNEL} consumers"),
            ));
        }
        let tag = match m.consumer_tag.as_str() {
            "" => format!("amq.ctag-{}", uuid::Uuid::new_v4().simple()),
            tag => tag.to_owned(),
        };
        if channel.consumers.contains_key(&tag) {
            return Err(Reply::connection(
                NOT_ALLOWED,
                format!("attempt to reuse consumer tag '{tag}'"),
            ));
        }
        channel.consumers_started += 1;
        let member = format!("amqp-{conn_id}-{id}-{}", channel.consumers_started);
        let room = match channel.prefetch {
            0 => MAX_UNACKED_PER_CONSUMER,
            _ if m.no_ack => MAX_UNACKED_PER_CONSUMER,
            n => usize::from(n).min(MAX_UNACKED_PER_CONSUMER),
        };
        let room = Arc::new(Semaphore::new(room));
        channel.members.insert((queue.clone(), member.clone()));
        // consume-ok goes out before the fetcher can hand over its first delivery.
        if !m.nowait {
            self.send_method(
                id,
                AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                    consumer_tag: tag.clone().into(),
                })),
            );
        }
        let task = tokio::spawn(consume::run(
            self.shared.broker.clone(),
            self.ctx.clone(),
            queue.clone(),
            member.clone(),
            id,
            tag.clone(),
            room.clone(),
            self.events.clone(),
        ));
        *self
            .shared
            .consumers
            .lock()
            .expect("consumers")
            .entry(queue.clone())
            .or_default() += 1;
        if let Some(channel) = self.channels.get_mut(&id) {
            channel.consumers.insert(
                tag,
                Consumer {
                    queue,
                    member,
                    no_ack: m.no_ack,
                    room,
                    task,
                },
            );
        }
        Ok(())
    }

    /// Stops a consumer. What it delivered stays unacknowledged on the channel (the
    /// client may still acknowledge it), as in RabbitMQ.
    fn cancel(&mut self, id: u16, tag: &str) {
        let Some(consumer) = self
            .channels
            .get_mut(&id)
            .and_then(|c| c.consumers.remove(tag))
        else {
            return;
        };
        self.stop_consumer(consumer);
    }

    fn stop_consumer(&self, consumer: Consumer) {
        consumer.task.abort();
        consumer.room.close();
        let mut counts = self.shared.consumers.lock().expect("consumers");
        if let Some(n) = counts.get_mut(&consumer.queue) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&consumer.queue);
            }
        }
    }

    async fn get(&mut self, id: u16, get: basic::Get) -> Result<(), Reply> {
        let queue = match get.queue.as_str() {
            "" => self.last_queue(id)?,
            name => name.to_owned(),
        };
        if !queues::exists(&self.shared, &queue) {
            return Err(queues::not_found(&queue));
        }
        let member = format!("amqp-{}-{id}-get", self.id);
        let fetch = ShareFetch {
            group_id: queue.clone(),
            member_id: member.clone(),
            topics: vec![queue.clone()],
            partitions: None,
            max_records: 1,
            max_wait: Duration::ZERO,
            start: ShareStart::Earliest,
            acks: Vec::new(),
        };
        let answer = shares::fetch_anywhere(&self.shared.broker, &self.ctx, fetch)
            .await
            .map_err(|e| from_broker(&e))?;
        if let Some(channel) = self.channels.get_mut(&id) {
            channel.members.insert((queue.clone(), member.clone()));
        }
        let Some(record) = answer.records.into_iter().next() else {
            self.send_method(
                id,
                AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})),
            );
            return Ok(());
        };
        let remaining = queues::message_count(&self.shared, &self.ctx, &queue)
            .await
            .saturating_sub(1);
        let Some(channel) = self.channels.get_mut(&id) else {
            return Ok(());
        };
        channel.last_delivery_tag += 1;
        let tag = channel.last_delivery_tag;
        if !get.no_ack {
            channel.unacked.insert(
                tag,
                Unacked {
                    queue: queue.clone(),
                    member: member.clone(),
                    partition: record.partition,
                    offset: record.record.offset,
                    consumer: None,
                },
            );
        }
        let (properties, routing_key) =
            crate::properties::from_headers(&record.record.headers, &queue);
        self.send_method(
            id,
            AMQPClass::Basic(basic::AMQPMethod::GetOk(basic::GetOk {
                delivery_tag: tag,
                redelivered: record.delivery_count > 1,
                exchange: "".into(),
                routing_key: routing_key.into(),
                message_count: remaining,
            })),
        );
        let body = record.record.value.clone().unwrap_or_default();
        self.send_content(id, properties, &body);
        if get.no_ack {
            self.acknowledge(
                &queue,
                &member,
                &[(record.partition, record.record.offset)],
                AckKind::Accept,
            )
            .await;
        }
        Ok(())
    }

    /// `basic.ack` / `nack` / `reject`: the deliveries named (all up to `tag` with
    /// `multiple`; every one for tag 0 with `multiple`) are acknowledged to the core
    /// and their consumers' room given back. An unknown tag closes the channel (406).
    async fn settle(
        &mut self,
        id: u16,
        tag: u64,
        multiple: bool,
        kind: AckKind,
    ) -> Result<(), Reply> {
        let Some(channel) = self.channels.get_mut(&id) else {
            return Ok(());
        };
        let taken: Vec<Unacked> = if multiple {
            let upto = if tag == 0 { u64::MAX } else { tag };
            let keys: Vec<u64> = channel.unacked.range(..=upto).map(|(k, _)| *k).collect();
            if keys.is_empty() && tag != 0 {
                return Err(unknown_tag(tag));
            }
            keys.iter()
                .filter_map(|k| channel.unacked.remove(k))
                .collect()
        } else {
            match channel.unacked.remove(&tag) {
                Some(unacked) => vec![unacked],
                None => return Err(unknown_tag(tag)),
            }
        };
        // The consumers' room is given back only once the core has the outcome: a fetch
        // started earlier could pass a released message by, or exceed the prefetch.
        let mut rooms: Vec<Arc<Semaphore>> = Vec::new();
        for unacked in &taken {
            if let Some(consumer) = unacked
                .consumer
                .as_ref()
                .and_then(|c| channel.consumers.get(c))
                && consumer.member == unacked.member
            {
                rooms.push(consumer.room.clone());
            }
        }
        let mut by_member: BTreeMap<(String, String), Vec<(u32, i64)>> = BTreeMap::new();
        for unacked in taken {
            by_member
                .entry((unacked.queue, unacked.member))
                .or_default()
                .push((unacked.partition, unacked.offset));
        }
        for ((queue, member), offsets) in by_member {
            self.acknowledge(&queue, &member, &offsets, kind).await;
        }
        for room in rooms {
            room.add_permits(1);
        }
        Ok(())
    }

    /// Acknowledges `offsets` of `queue` as `member`, runs of offsets as one range. An
    /// acknowledgement the core refuses (the lock expired, the coordinator moved) leaves
    /// the message to be delivered again, which is what AMQP promises for it anyway.
    async fn acknowledge(&self, queue: &str, member: &str, offsets: &[(u32, i64)], kind: AckKind) {
        let mut offsets = offsets.to_vec();
        offsets.sort_unstable();
        let mut ranges: Vec<AckRange> = Vec::new();
        for (partition, offset) in offsets {
            match ranges.last_mut() {
                Some(last) if last.partition == partition && last.last + 1 == offset => {
                    last.last = offset;
                }
                _ => ranges.push(AckRange {
                    topic: queue.to_owned(),
                    partition,
                    first: offset,
                    last: offset,
                    kind,
                }),
            }
        }
        for chunk in ranges.chunks(ACK_ENTRIES_PER_REQUEST) {
            match shares::acknowledge_anywhere(
                &self.shared.broker,
                &self.ctx,
                queue,
                member,
                chunk.to_vec(),
                false,
            )
            .await
            {
                Ok(results) => {
                    for result in results {
                        match result.outcome {
                            Ok(not_held) if not_held.is_empty() => {}
                            Ok(not_held) => tracing::debug!(
                                queue,
                                ?not_held,
                                "AMQP acknowledgement of records no longer held"
                            ),
                            Err(err) => {
                                tracing::debug!(queue, error = %err, "AMQP acknowledgement refused")
                            }
                        }
                    }
                }
                Err(err) => tracing::info!(queue, error = %err, "AMQP acknowledgement failed"),
            }
        }
    }

    /// Gives back everything a channel held: its consumers stop, and each share-group
    /// member it fetched as leaves (its unacknowledged records become available again).
    async fn release(&self, channel: &mut Channel) {
        for (_, consumer) in channel.consumers.drain() {
            self.stop_consumer(consumer);
        }
        channel.unacked.clear();
        channel.publishing = None;
        for (queue, member) in channel.members.drain() {
            if let Err(err) = shares::acknowledge_anywhere(
                &self.shared.broker,
                &self.ctx,
                &queue,
                &member,
                Vec::new(),
                true,
            )
            .await
            {
                tracing::debug!(queue, error = %err, "releasing an AMQP channel's records");
            }
        }
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::Confirmed {
                channel,
                seq,
                outcome,
            } => {
                if self.channels.get(&channel).is_none_or(|c| c.closing) {
                    return;
                }
                let class = match outcome {
                    Ok(()) => basic::AMQPMethod::Ack(basic::Ack {
                        delivery_tag: seq,
                        multiple: false,
                    }),
                    Err(_) => basic::AMQPMethod::Nack(basic::Nack {
                        delivery_tag: seq,
                        multiple: false,
                        requeue: false,
                    }),
                };
                self.send_method(channel, AMQPClass::Basic(class));
            }
            Event::Fetched(Fetched::Records {
                channel,
                tag,
                queue,
                member,
                records,
            }) => self.deliver(channel, tag, queue, member, records).await,
            Event::Fetched(Fetched::Stopped {
                channel,
                tag,
                reason,
            }) => {
                tracing::info!(channel, tag, reason, "an AMQP consumer stopped");
                self.cancel(channel, &tag);
            }
        }
    }

    async fn deliver(
        &mut self,
        id: u16,
        tag: String,
        queue: String,
        member: String,
        records: Vec<ShareRecord>,
    ) {
        let live = self
            .channels
            .get(&id)
            .filter(|c| !c.closing)
            .and_then(|c| c.consumers.get(&tag))
            .filter(|c| c.member == member)
            .map(|c| c.no_ack);
        let Some(no_ack) = live else {
            // Cancelled since the fetch: hand the records back at once.
            let offsets: Vec<(u32, i64)> = records
                .iter()
                .map(|r| (r.partition, r.record.offset))
                .collect();
            self.acknowledge(&queue, &member, &offsets, AckKind::Release { delay_ms: 0 })
                .await;
            return;
        };
        let mut accepted = Vec::new();
        for record in records {
            let Some(channel) = self.channels.get_mut(&id) else {
                return;
            };
            channel.last_delivery_tag += 1;
            let delivery_tag = channel.last_delivery_tag;
            if no_ack {
                accepted.push((record.partition, record.record.offset));
            } else {
                channel.unacked.insert(
                    delivery_tag,
                    Unacked {
                        queue: queue.clone(),
                        member: member.clone(),
                        partition: record.partition,
                        offset: record.record.offset,
                        consumer: Some(tag.clone()),
                    },
                );
            }
            let (properties, routing_key) =
                crate::properties::from_headers(&record.record.headers, &queue);
            self.send_method(
                id,
                AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
                    consumer_tag: ShortString::from(tag.as_str()),
                    delivery_tag,
                    redelivered: record.delivery_count > 1,
                    exchange: "".into(),
                    routing_key: routing_key.into(),
                })),
            );
            let body = record.record.value.clone().unwrap_or_default();
            self.send_content(id, properties, &body);
        }
        if !accepted.is_empty() {
            self.acknowledge(&queue, &member, &accepted, AckKind::Accept)
                .await;
            if let Some(consumer) = self.channels.get(&id).and_then(|c| c.consumers.get(&tag)) {
                consumer.room.add_permits(accepted.len());
            }
        }
    }

    /// After the connection ended: every channel's records given back, exclusive and
    /// auto-delete queues it declared deleted.
    async fn finish(&mut self) {
        let ids: Vec<u16> = self.channels.keys().copied().collect();
        for id in ids {
            if let Some(mut channel) = self.channels.remove(&id) {
                self.release(&mut channel).await;
            }
        }
        for name in std::mem::take(&mut self.owned_queues) {
            let delete = queue::Delete {
                queue: name.clone().into(),
                if_unused: false,
                if_empty: false,
                nowait: true,
            };
            if let Err(reply) = queues::delete(&self.shared, &self.ctx, &delete).await {
                tracing::info!(
                    queue = name,
                    reason = reply.text,
                    "deleting an exclusive queue failed"
                );
            }
        }
    }
}

fn unknown_tag(tag: u64) -> Reply {
    Reply::channel(PRECONDITION_FAILED, format!("unknown delivery tag {tag}"))
}

fn is_default_exchange(name: &str) -> bool {
    name.is_empty() || name == "amq.default"
}

/// AMQPLAIN's response: a field table without its length prefix, with `LOGIN` and
/// `PASSWORD` (RabbitMQ's mechanism; what py-amqp and kombu send by default).
fn amqplain(response: &[u8]) -> Result<(String, String), String> {
    let mut framed = Vec::with_capacity(response.len() + 4);
    framed.extend_from_slice(&(response.len() as u32).to_be_bytes());
    framed.extend_from_slice(response);
    let (_, table) = amq_protocol::types::parsing::parse_field_table(&framed[..])
        .map_err(|e| format!("the AMQPLAIN response is not a field table: {e}"))?;
    let field = |name: &str| -> Result<String, String> {
        match table.inner().get(&ShortString::from(name)) {
            Some(AMQPValue::LongString(s)) => String::from_utf8(s.as_bytes().to_vec())
                .map_err(|_| format!("AMQPLAIN {name} is not UTF-8")),
            Some(AMQPValue::ShortString(s)) => Ok(s.as_str().to_owned()),
            _ => Err(format!("the AMQPLAIN response has no {name}")),
        }
    };
    Ok((field("LOGIN")?, field("PASSWORD")?))
}

/// Waits for each publish's produce in the order they were made, and reports the
/// outcome of those in confirm mode to the connection.
async fn answer_publishes(
    channel: u16,
    mut pending: mpsc::Receiver<Pending>,
    events: mpsc::UnboundedSender<Event>,
) {
    while let Some(Pending { seq, produce }) = pending.recv().await {
        let outcome = match produce {
            Ok(pending) => match pending.finish().await.into_iter().next() {
                Some(result) => result.outcome.map(|_| ()).map_err(|e| e.to_string()),
                None => Err("the produce was not answered".to_owned()),
            },
            Err(err) => Err(err.to_string()),
        };
        if let Err(err) = &outcome {
            tracing::info!(channel, error = %err, "an AMQP publish was not stored");
        }
        if let Some(seq) = seq
            && events
                .send(Event::Confirmed {
                    channel,
                    seq,
                    outcome,
                })
                .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amqplain_reads_login_and_password() {
        let mut table = FieldTable::default();
        table.insert("LOGIN".into(), AMQPValue::LongString("guest".into()));
        table.insert("PASSWORD".into(), AMQPValue::LongString("secret".into()));
        let (bytes, _) = amq_protocol::types::generation::gen_field_table(&table)(
            amq_protocol::frame::WriteContext::from(Vec::new()),
        )
        .expect("encodes")
        .into_inner();
        // Without the table's own length prefix, as AMQPLAIN sends it.
        assert_eq!(
            amqplain(&bytes[4..]).unwrap(),
            ("guest".to_owned(), "secret".to_owned())
        );
        assert!(amqplain(b"\x05LOGIN").is_err());
    }

    #[test]
    fn the_default_exchange_has_two_names() {
        assert!(is_default_exchange("") && is_default_exchange("amq.default"));
        assert!(!is_default_exchange("logs"));
    }
}

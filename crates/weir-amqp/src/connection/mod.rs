//! One AMQP connection, one task: the handshake (protocol header, start/start-ok with
//! PLAIN or AMQPLAIN, tune, open), heartbeats, channels, and every method this stage
//! serves. A reader task turns the socket into frames; this task takes them in order,
//! with the deliveries its consumers fetch and the confirms of its publishes, and writes
//! the answers. Channel errors close the channel, connection errors the connection
//! (docs/amqp.md § Failure cases and reply codes).

mod acks;
mod channels;
mod consumers;
mod handshake;
mod publish;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use amq_protocol::frame::{AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::{AMQPClass, BasicProperties, basic, connection, queue};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use weir_broker::budget::{Budget, RequestBytesPermit};
use weir_broker::listener_kit::{Closing, Connection, ReadHalf};
use weir_broker::produce::PendingProduce;
use weir_broker::share_members::AttachedConsumer;
use weir_broker::{BrokerError, RequestContext};

use crate::Shared;
use crate::consume::Fetched;
use crate::errors::{COMMAND_INVALID, CONNECTION_FORCED, Reply, Scope, UNEXPECTED_FRAME};
use crate::frame::{self, MAX_FRAME_BYTES, PROTOCOL_HEADER, ReadError};
use crate::queues;
use crate::vhost::Vhost;

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

/// Longest a `basic.get`, `queue.declare`, `queue.purge` or `queue.delete` waits for the
/// connection's earlier publishes to become readable (see `Conn::publishes_readable`);
/// past it, the method goes on with what is readable.
pub const PUBLISHES_READABLE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client has to send its protocol header and finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the broker waits for `close-ok` after closing a connection.
const CLOSE_OK_WAIT: Duration = Duration::from_secs(1);
/// How long a closed connection's clean-up (releasing what it held, deleting its
/// exclusive queues) may take, so a broker that is stopping is not held up by it.
const RELEASE_WAIT: Duration = Duration::from_secs(5);
/// Frames read ahead of the connection task.
const INBOUND_QUEUE: usize = 8;
/// Most frames (and, apart, most events) the connection task handles in one turn of its
/// loop, before it writes what they answered and looks at its other inputs.
const MAX_FRAMES_PER_TURN: usize = 64;
/// Most publishes staged into one produce, and most of their body bytes.
const MAX_STAGED_RECORDS: usize = 500;
const MAX_STAGED_BYTES: usize = 512 * 1024;
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
    /// Publishes of `channel` in confirm mode were answered, confirm numbers `first` to
    /// `last` (every one before them answered already).
    Confirmed {
        channel: u16,
        first: u64,
        last: u64,
        outcome: Result<(), String>,
    },
}

enum Inbound {
    /// Boxed: a frame is large beside the other variants, and queued between tasks. With
    /// whether more bytes were read already (the next frame is on its way at once).
    Frame(Box<AMQPFrame>, bool),
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
    queue: Arc<str>,
    member: Arc<str>,
    partition: u32,
    offset: i64,
    /// The consumer whose prefetch room it takes (`None`: a `basic.get`).
    consumer: Option<Arc<str>>,
}

#[derive(Debug)]
struct Consumer {
    queue: Arc<str>,
    member: Arc<str>,
    no_ack: bool,
    room: Arc<Semaphore>,
    task: JoinHandle<()>,
    /// Counts it among the queue's share group's members while it lives (listings, the
    /// console's consumers).
    _attached: AttachedConsumer,
}

/// A publish whose content is being read.
#[derive(Debug)]
struct Publishing {
    method: basic::Publish,
    properties: Option<BasicProperties>,
    size: u64,
    body: Vec<u8>,
    /// Its room in the broker-wide budget of requests in flight (its body's size), held
    /// until its produces are answered; taken when its content header arrives.
    room: Option<RequestBytesPermit>,
}

/// Publishes handed to the core, waiting for their answer: one publish with a produce
/// per queue it was routed to (none: unroutable, confirmed as it is), or consecutive
/// publishes of a channel to one queue with one produce for them all (`publish.rs`'s
/// staging).
#[derive(Debug)]
struct Pending {
    /// The confirm numbers of the publishes, first and last, in confirm mode.
    confirms: Option<(u64, u64)>,
    produces: Vec<Result<PendingProduce, BrokerError>>,
    /// The publishes counted in the bound of the queues that refuse publishes when full,
    /// until their produces are answered.
    admitted: Vec<crate::overflow::InFlight>,
    /// Their room in the broker-wide budget, given back once their produces are answered.
    rooms: Vec<RequestBytesPermit>,
}

/// Consecutive publishes of one channel to one queue, held to go to the core as one
/// produce (`publish.rs`): sent when a frame other than a publish's comes, when the
/// frames of what was read from the socket are handled, when a publish waits for room,
/// or at [`MAX_STAGED_RECORDS`] / [`MAX_STAGED_BYTES`].
#[derive(Debug)]
struct Staged {
    channel: u16,
    queue: String,
    records: Vec<weir_batch::Record>,
    bytes: usize,
    /// The confirm numbers of the first and last, in confirm mode.
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    admitted: Vec<crate::overflow::InFlight>,
    rooms: Vec<RequestBytesPermit>,
}

/// What a channel's publish-answering task is handed, in order.
#[derive(Debug)]
enum ToPublisher {
    /// With what counts it among the connection's produces in flight until answered.
    Publish(Pending, publish::Handed),
    /// Answered once every publish before it is readable in the queues it went to.
    Barrier(tokio::sync::oneshot::Sender<()>),
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
    publisher: Option<mpsc::Sender<ToPublisher>>,
    consumers: HashMap<String, Consumer>,
    consumers_started: u64,
    last_delivery_tag: u64,
    unacked: BTreeMap<u64, Unacked>,
    /// Every (queue, member) this channel fetched as: released when it closes.
    members: HashSet<(String, String)>,
    /// The queue last declared on the channel (an empty queue name means it), by its name
    /// in the connection's vhost.
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
    /// The vhost `connection.open` named (`/` until then): every name the client sends
    /// is qualified by it, every name it is shown is its own again (`crate::vhost`).
    vhost: Vhost,
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
    /// Exclusive and auto-delete queues this connection declared (their names in its
    /// vhost): deleted with it.
    owned_queues: Vec<String>,
    /// The client announced `consumer_cancel_notify`: a consumer the broker stops (its
    /// queue deleted) is told with `basic.cancel`, as RabbitMQ does, rather than left
    /// waiting for deliveries that will never come.
    cancel_notify: bool,
    /// The client announced `connection.blocked`: it is told when the connection stops
    /// being read for want of room, and when it is read again (RabbitMQ's flow control).
    blocked_notify: bool,
    /// A publish of this channel, of this many body bytes, waits for room in the
    /// broker-wide budget: nothing more is read from the client until it has it.
    awaiting_room: Option<(u16, usize)>,
    /// Acknowledgements received and not yet applied (`acks.rs`).
    acks: acks::Acks,
    /// Publishes held to go to the core together (`publish.rs`).
    staged: Option<Staged>,
    /// The connection's produces handed to the core and not yet answered: staged
    /// publishes wait for them (`publish.rs`).
    produces: Arc<publish::InFlight>,
    /// The last frame handled had more bytes read behind it: the next one is at hand.
    more_read: bool,
}

/// Serves one connection until it closes, then gives back what its channels held and
/// deletes the exclusive queues it declared.
/// Room of `awaiting.1` bytes in the budget, once there is; never, when nothing waits.
async fn room(budget: &Arc<Budget>, awaiting: Option<(u16, usize)>) -> Option<RequestBytesPermit> {
    match awaiting {
        Some((_, bytes)) => Some(budget.request_bytes(bytes).await),
        None => std::future::pending().await,
    }
}

pub(crate) async fn run(connection: Connection, shared: Arc<Shared>, mut closing: Closing) {
    let ctx = connection.context();
    let (read_half, mut writer) = connection.stream.into_split();
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
        ctx,
        shared,
        vhost: Vhost::root(),
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
        cancel_notify: false,
        blocked_notify: false,
        awaiting_room: None,
        acks: acks::Acks::default(),
        staged: None,
        produces: Arc::default(),
        more_read: false,
    };
    conn.send_start();
    let handshake_deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut last_heard = Instant::now();
    let mut last_sent = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // The listener kit asked the connection to close (the broker stopping or cut off).
    let mut asked_to_close = false;
    'serve: while conn.phase != Phase::Closed && !conn.broken {
        // Staged publishes go once the frames read so far are handled and the produce
        // before them is answered, or at once when a publish waits for room they may hold.
        if conn.staged.is_some()
            && (conn.awaiting_room.is_some() || (!conn.more_read && conn.produces.idle()))
        {
            conn.send_staged().await;
        }
        if !conn.out.is_empty() {
            if writer.write_all(&conn.out).await.is_err() {
                break;
            }
            conn.out.clear();
            last_sent = Instant::now();
        }
        tokio::select! {
            // Not read while a publish waits for room: the client's socket fills and
            // it waits (TCP), as RabbitMQ blocks publishers under a memory alarm.
            received = inbound.recv(), if conn.awaiting_room.is_none() => {
                last_heard = Instant::now();
                if !conn.on_inbound(received).await {
                    break;
                }
                // What the reader queued meanwhile is handled in the same turn: a burst
                // of acks (one `basic.ack` a message) wakes this task once, and what it
                // answers goes out in one write.
                for _ in 1..MAX_FRAMES_PER_TURN {
                    if conn.awaiting_room.is_some() || conn.phase != Phase::Running || conn.broken
                    {
                        break;
                    }
                    let Ok(received) = inbound.try_recv() else {
                        break;
                    };
                    if !conn.on_inbound(Some(received)).await {
                        break 'serve;
                    }
                }
            }
            Some(event) = event_rx.recv() => {
                conn.on_event(event).await;
                for _ in 1..MAX_FRAMES_PER_TURN {
                    let Ok(event) = event_rx.try_recv() else {
                        break;
                    };
                    conn.on_event(event).await;
                }
            }
            rooms = conn.acks.applied(), if conn.acks.busy() => conn.on_acks_applied(rooms),
            // A produce was answered: staged publishes may go (above).
            () = conn.produces.answered(), if conn.staged.is_some() => {}
            Some(room) = room(&conn.shared.budget, conn.awaiting_room) => {
                conn.on_room(room);
                // Nothing was read while it waited: the client's silence was ours.
                last_heard = Instant::now();
            }
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
            reason = closing.wait(), if !asked_to_close => {
                asked_to_close = true;
                if conn.phase == Phase::Running {
                    conn.close_connection(Reply::connection(CONNECTION_FORCED, reason.text()))
                        .await;
                } else {
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
    mut reader: BufReader<ReadHalf>,
    frame_max: Arc<AtomicU32>,
    inbound: mpsc::Sender<Inbound>,
) {
    loop {
        let max = frame_max.load(Ordering::Relaxed);
        let next = match frame::read_frame(&mut reader, max).await {
            Ok(frame) => Inbound::Frame(Box::new(frame), !reader.buffer().is_empty()),
            Err(ReadError::Refused(reply)) => Inbound::Refused(reply),
            Err(ReadError::Gone(_)) => Inbound::Gone,
        };
        let last = !matches!(next, Inbound::Frame(..));
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
        if self.broken {
            return;
        }
        for part in body.chunks(chunk) {
            frame::encode_body(channel, part, &mut self.out);
        }
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

    async fn refuse(&mut self, channel: u16, reply: Reply) {
        match reply.scope {
            Scope::Channel if channel != 0 => self.close_channel(channel, reply).await,
            _ => self.close_connection(reply).await,
        }
    }

    /// What the reader handed over; `false` when the connection is to end at once (the
    /// client went, or a refused frame came while closing).
    async fn on_inbound(&mut self, received: Option<Inbound>) -> bool {
        match received {
            Some(Inbound::Frame(frame, more)) => {
                self.on_frame(*frame).await;
                self.more_read = more;
                true
            }
            Some(Inbound::Refused(reply)) => {
                tracing::debug!(code = reply.code, text = reply.text, "AMQP frame refused");
                if matches!(self.phase, Phase::Closing(_)) {
                    return false;
                }
                self.close_connection(reply).await;
                true
            }
            Some(Inbound::Gone) | None => false,
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
                // AMQP answers a channel's methods in order: what the client asks after
                // its acks is answered after they are applied, and after its publishes
                // are handed to the core.
                if !acks::passes_acks(&frame) {
                    self.drain_acks().await;
                }
                if !publish::continues_publishing(&frame) {
                    self.send_staged().await;
                }
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

    /// After the connection ended: every channel's records given back, exclusive and
    /// auto-delete queues it declared deleted.
    async fn finish(&mut self) {
        // The acks received before the end count: applied before the members leave.
        self.drain_acks().await;
        self.send_staged().await;
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
            if let Err(reply) = queues::delete(&self.shared, &self.ctx, &self.vhost, &delete).await
            {
                tracing::info!(
                    queue = name,
                    reason = reply.text,
                    "deleting an exclusive queue failed"
                );
            }
        }
    }
}

//! The fault-injecting TCP proxy: one listener in front of each node, named as that node
//! in every other node's configuration, so all traffic to a node (the metadata quorum,
//! replication fetches, controller calls, and clients that follow advertised addresses)
//! passes through it and can be cut or slowed, with no root.
//!
//! Each accepted connection is labelled with the process that opened it ([`Peer::Node`]
//! for a broker, [`Peer::Client`] for anything else: the test's own clients), found with
//! [`crate::owner`]. A cut between two peers refuses new connections between them and
//! closes the open ones at once; [`Proxy::isolate`] cuts a node off from every other node
//! (both ways: connections it opens to others pass through *their* proxies, which know it
//! by its process). A *silent* cut ([`Proxy::silence`], [`Proxy::isolate_silently`])
//! is what a firewall that drops packets does instead: connections stay open (new ones
//! are accepted too) but nothing sent across the cut arrives until it heals, when what
//! was held is delivered, as TCP's retransmissions would, unless an endpoint gave up on
//! the connection first. It may be one-way. A delay holds every chunk of data to or from
//! a node for that long (latency, not bandwidth: chunks are pipelined). [`Proxy::heal`]
//! lifts everything.
//!
//! The proxy runs on its own thread and runtime, so a test runtime that is busy or
//! blocked does not stall the cluster's traffic.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::owner;

/// Most bytes forwarded per read.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks read ahead of the writer per direction (while a delay holds them).
const MAX_CHUNKS_IN_FLIGHT: usize = 256;
/// How long the proxy waits to connect to a node before dropping the client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    /// A broker, by node id.
    Node(i32),
    /// Any other process: the test's clients.
    Client,
}

/// Connections the proxy has seen, over all nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections forwarded.
    pub forwarded: u64,
    /// Connections refused by a cut.
    pub refused: u64,
    /// Open connections closed by a cut.
    pub closed: u64,
}

#[derive(Debug, Default)]
struct State {
    /// Where each node really listens.
    upstreams: HashMap<i32, SocketAddr>,
    /// Live broker processes: `(pid, node id)`.
    owners: Vec<(u32, i32)>,
    /// Cut pairs, each stored as `(min, max)`.
    cuts: BTreeSet<(Peer, Peer)>,
    /// Silenced directions, `(from, to)`: data from `from` to `to` is held.
    silenced: BTreeSet<(Peer, Peer)>,
    /// Delay per node.
    delays: HashMap<i32, Duration>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Bumped at every change of cuts or delays.
    changed: watch::Sender<u64>,
    forwarded: AtomicU64,
    refused: AtomicU64,
    closed: AtomicU64,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_cut(&self, a: Peer, b: Peer) -> bool {
        self.state().cuts.contains(&pair(a, b))
    }

    fn is_silenced(&self, from: Peer, to: Peer) -> bool {
        self.state().silenced.contains(&(from, to))
    }

    fn delay(&self, a: Peer, b: Peer) -> Duration {
        let state = self.state();
        let of = |p: Peer| match p {
            Peer::Node(id) => state.delays.get(&id).copied().unwrap_or_default(),
            Peer::Client => Duration::ZERO,
        };
        of(a).max(of(b))
    }

    fn change(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state());
        self.changed.send_modify(|generation| *generation += 1);
    }
}

fn pair(a: Peer, b: Peer) -> (Peer, Peer) {
    (a.min(b), a.max(b))
}

/// See the module docs. Dropping it stops every listener and closes every connection.
#[derive(Debug)]
pub struct Proxy {
    shared: Arc<Shared>,
    addresses: BTreeMap<i32, SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Binds a listener on 127.0.0.1 for each node id and starts forwarding (to nothing
    /// until [`Proxy::set_upstream`] names where the node listens).
    pub fn start(ids: &[i32]) -> anyhow::Result<Proxy> {
        let mut listeners = Vec::new();
        let mut addresses = BTreeMap::new();
        for &id in ids {
            let listener = StdListener::bind("127.0.0.1:0").context("binding a proxy port")?;
            listener.set_nonblocking(true)?;
            addresses.insert(id, listener.local_addr()?);
            listeners.push((id, listener));
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: watch::channel(0).0,
            forwarded: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the proxy runtime")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("weir-fault-proxy".into())
            .spawn(move || {
                runtime.block_on(async move {
                    for (id, listener) in listeners {
                        match TcpListener::from_std(listener) {
                            Ok(listener) => {
                                tokio::spawn(accept_loop(thread_shared.clone(), listener, id));
                            }
                            Err(e) => eprintln!("proxy for node {id}: {e}"),
                        }
                    }
                    let _ = stopped.await;
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .context("starting the proxy thread")?;
        Ok(Proxy {
            shared,
            addresses,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address that stands for node `id`.
    pub fn address(&self, id: i32) -> SocketAddr {
        self.addresses[&id]
    }

    /// Node `id` really listens at `addr`.
    pub fn set_upstream(&self, id: i32, addr: SocketAddr) {
        self.shared.state().upstreams.insert(id, addr);
    }

    /// Process `pid` is node `id` (a process restarted gets a new pid).
    pub fn set_process(&self, id: i32, pid: Option<u32>) {
        let mut state = self.shared.state();
        state.owners.retain(|&(_, node)| node != id);
        if let Some(pid) = pid {
            state.owners.push((pid, id));
        }
    }

    /// Cuts `a` off from `b`, both ways: new connections between them are refused and
    /// open ones closed.
    pub fn cut(&self, a: Peer, b: Peer) {
        self.shared.change(|s| {
            s.cuts.insert(pair(a, b));
        });
    }

    /// Every node but `id`.
    fn others(&self, id: i32) -> Vec<i32> {
        self.addresses
            .keys()
            .copied()
            .filter(|&o| o != id)
            .collect()
    }

    /// Cuts node `id` off from every other node (its clients still reach it).
    pub fn isolate(&self, id: i32) {
        let others = self.others(id);
        self.shared.change(|s| {
            for other in others {
                s.cuts.insert(pair(Peer::Node(id), Peer::Node(other)));
            }
        });
    }

    /// Silently drops what `from` sends to `to` (one way): their connections stay open
    /// and what is sent is held until [`Proxy::heal`]. Call it twice, swapped, for both
    /// ways.
    pub fn silence(&self, from: Peer, to: Peer) {
        self.shared.change(|s| {
            s.silenced.insert((from, to));
        });
    }

    /// As [`Proxy::isolate`], but silently, both ways (see [`Proxy::silence`]).
    pub fn isolate_silently(&self, id: i32) {
        let others = self.others(id);
        self.shared.change(|s| {
            for other in others {
                s.silenced.insert((Peer::Node(id), Peer::Node(other)));
                s.silenced.insert((Peer::Node(other), Peer::Node(id)));
            }
        });
    }

    /// Holds every chunk of data to or from node `id` for `delay` (zero lifts it).
    pub fn delay(&self, id: i32, delay: Duration) {
        self.shared.change(|s| {
            s.delays.insert(id, delay);
        });
    }

    /// Lifts every cut and delay.
    pub fn heal(&self) {
        self.shared.change(|s| {
            s.cuts.clear();
            s.silenced.clear();
            s.delays.clear();
        });
    }

    /// Whether anything is cut or delayed now.
    pub fn is_healed(&self) -> bool {
        let state = self.shared.state();
        state.cuts.is_empty()
            && state.silenced.is_empty()
            && state.delays.values().all(Duration::is_zero)
    }

    /// Connections forwarded, refused and closed so far.
    pub fn stats(&self) -> ProxyStats {
        ProxyStats {
            forwarded: self.shared.forwarded.load(Ordering::Relaxed),
            refused: self.shared.refused.load(Ordering::Relaxed),
            closed: self.shared.closed.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, node: i32) {
    let listen_port = match listener.local_addr() {
        Ok(a) => a.port(),
        Err(_) => return,
    };
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(connection(shared.clone(), stream, peer, node, listen_port));
            }
            // Out of file descriptors, say: wait rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Forwards one connection to `node` until either side closes it or a cut does.
async fn connection(
    shared: Arc<Shared>,
    inbound: TcpStream,
    peer: SocketAddr,
    node: i32,
    listen_port: u16,
) {
    let candidates = shared.state().owners.clone();
    let from = tokio::task::spawn_blocking(move || {
        owner::connection_owner(peer.port(), listen_port, &candidates)
    })
    .await
    .ok()
    .flatten()
    .map_or(Peer::Client, Peer::Node);
    let to = Peer::Node(node);
    let mut changes = shared.changed.subscribe();
    if shared.is_cut(from, to) {
        shared.refused.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let Some(upstream) = shared.state().upstreams.get(&node).copied() else {
        return;
    };
    let outbound = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
        Ok(Ok(s)) => s,
        // The node is down or stopped: the client sees its connection close.
        _ => return,
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    shared.forwarded.fetch_add(1, Ordering::Relaxed);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let forward = async {
        tokio::try_join!(
            pipe(in_read, out_write, &shared, from, to),
            pipe(out_read, in_write, &shared, to, from),
        )
    };
    let cut = async {
        loop {
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            if shared.is_cut(from, to) {
                return;
            }
        }
    };
    tokio::select! {
        _ = forward => {}
        () = cut => {
            shared.closed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Copies `from` to `to`, holding each chunk for the current delay between the peers,
/// and while `a` is silenced towards `b`.
async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: &Shared,
    a: Peer,
    b: Peer,
) -> io::Result<()> {
    let (chunks, mut due_chunks) = mpsc::channel::<(Instant, Vec<u8>)>(MAX_CHUNKS_IN_FLIGHT);
    let read = async move {
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), io::Error>(());
            }
            let due = Instant::now() + shared.delay(a, b);
            if chunks.send((due, buf[..n].to_vec())).await.is_err() {
                return Ok(());
            }
        }
    };
    let mut changes = shared.changed.subscribe();
    let write = async move {
        while let Some((due, data)) = due_chunks.recv().await {
            tokio::time::sleep_until(due).await;
            while shared.is_silenced(a, b) {
                if changes.changed().await.is_err() {
                    return Ok(());
                }
            }
            to.write_all(&data).await?;
        }
        to.shutdown().await
    };
    tokio::try_join!(read, write).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server standing for node 1, and its proxy.
    async fn echo_behind_proxy() -> (Proxy, SocketAddr) {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = echo.accept().await.unwrap();
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let proxy = Proxy::start(&[1, 2]).unwrap();
        proxy.set_upstream(1, echo_addr);
        let addr = proxy.address(1);
        (proxy, addr)
    }

    async fn round_trip(s: &mut TcpStream, data: &[u8]) -> io::Result<Vec<u8>> {
        s.write_all(data).await?;
        let mut back = vec![0; data.len()];
        s.read_exact(&mut back).await?;
        Ok(back)
    }

    #[tokio::test]
    async fn forwards_delays_cuts_and_heals() {
        let (proxy, addr) = echo_behind_proxy().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert_eq!(round_trip(&mut s, b"hello").await.unwrap(), b"hello");

        proxy.delay(1, Duration::from_millis(200));
        let started = std::time::Instant::now();
        round_trip(&mut s, b"slow").await.unwrap();
        // Held once each way.
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "{:?}",
            started.elapsed()
        );
        proxy.heal();

        // This process is a client: cutting clients off node 1 closes the open
        // connection and refuses new ones.
        proxy.cut(Peer::Client, Peer::Node(1));
        let mut buf = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("closed by the cut");
        assert!(matches!(closed, Ok(0) | Err(_)));
        let mut refused = TcpStream::connect(addr).await.unwrap();
        assert!(round_trip(&mut refused, b"x").await.is_err());
        let stats = proxy.stats();
        assert_eq!((stats.closed, stats.refused), (1, 1), "{stats:?}");

        // Cutting node 1 from node 2 does not touch clients.
        proxy.heal();
        proxy.isolate(1);
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert_eq!(round_trip(&mut s, b"again").await.unwrap(), b"again");
        assert!(!proxy.is_healed());
        proxy.heal();
        assert!(proxy.is_healed());
    }

    #[tokio::test]
    async fn a_silent_cut_holds_data_one_way_until_healed() {
        let (proxy, addr) = echo_behind_proxy().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert_eq!(round_trip(&mut s, b"hello").await.unwrap(), b"hello");

        // The echo's answers are held: the connection stays open, nothing comes back.
        proxy.silence(Peer::Node(1), Peer::Client);
        s.write_all(b"held").await.unwrap();
        let mut back = [0u8; 4];
        let read = tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut back));
        assert!(read.await.is_err(), "data crossed a silent cut");
        // A new connection is accepted and as silent.
        let mut other = TcpStream::connect(addr).await.unwrap();
        other.write_all(b"new").await.unwrap();
        let mut back_other = [0u8; 3];
        let read = tokio::time::timeout(
            Duration::from_millis(300),
            other.read_exact(&mut back_other),
        );
        assert!(read.await.is_err(), "data crossed a silent cut");
        assert!(!proxy.is_healed());

        // Healing delivers what was held, in order, and nothing was closed.
        proxy.heal();
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
            .await
            .expect("held data delivered")
            .unwrap();
        assert_eq!(&back, b"held");
        assert_eq!(round_trip(&mut s, b"after").await.unwrap(), b"after");
        assert_eq!(proxy.stats().closed, 0);
    }

    #[tokio::test]
    async fn knows_a_node_by_its_process() {
        let (proxy, addr) = echo_behind_proxy().await;
        // Pretend this test process is node 2, and cut node 2 off node 1.
        proxy.set_process(2, Some(std::process::id()));
        proxy.isolate(1);
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert!(round_trip(&mut s, b"x").await.is_err());
        proxy.set_process(2, None);
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert_eq!(round_trip(&mut s, b"x").await.unwrap(), b"x");
    }
}

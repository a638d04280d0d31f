//! A cluster of real `weir serve` processes on 127.0.0.1, each behind the fault proxy,
//! and the process faults: SIGKILL, SIGTERM (graceful), SIGSTOP/SIGCONT, restart on the
//! same data directory.
//!
//! Each node listens on one port of its own for clients and for other nodes, and
//! advertises its proxy's address (`--advertise`); the voter list names the proxies too.
//! So every byte between nodes, and between clients that follow advertised addresses and
//! nodes, crosses the proxy. (Why not `--internal-listen`: a node registers its bound
//! internal address as the endpoint followers fetch from, with no flag to advertise
//! another, so replication would bypass a proxy in front of it and only the quorum's
//! traffic could be cut.) The harness's own admin calls go straight to a node's real
//! port ([`Cluster::probe`]), so a cut node can still be asked what it thinks.
//!
//! With [`ClusterConfig::security`] the cluster is secured as docs/security.md says to:
//! certificates made by `weir dev certs` in the cluster's directory (the node certificate is valid for
//! 127.0.0.1, the address every peer is dialled at, through the proxy), TLS on every
//! listener and between nodes, client certificates verified, authentication required,
//! authorization on, and a bootstrap admin the probe authenticates as. The proxy relays
//! TLS like any other bytes.
//!
//! Every process is killed when the [`Cluster`] is dropped, on panic too; unless the
//! test called [`Cluster::finish`], the tail of every node's log is printed and the data
//! directory is kept for a post-mortem. Processes are started from a thread that lives as
//! long as the cluster with `PR_SET_PDEATHSIG`, so a test runner killed outright takes
//! its brokers with it.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use weir_client::ClientTls;
use weir_proto::v1 as pb;

use crate::binary::weir_binary;
use crate::checker::Record;
use crate::probe::Probe;
use crate::proxy::Proxy;
use crate::tmpfs::Tmpfs;
use crate::wait::wait_for;

/// Longest a node may take to bind its port after its process starts.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(20);
/// Lines of each node's log printed when a test fails.
const LOG_TAIL_LINES: usize = 150;
/// Attempts at starting a node whose port another process took meanwhile.
const MAX_BIND_ATTEMPTS: u32 = 3;
/// Where a secured cluster's certificates are, in its directory.
const CERTS_DIR: &str = "certs";

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Number of nodes, ids 1..=nodes.
    pub nodes: usize,
    /// How many of them, from node 1 on, are controller voters; the rest are observer
    /// brokers. `None`: every node.
    pub voters: Option<usize>,
    /// `RUST_LOG` of the brokers (`WEIR_TESTS_LOG` overrides the default, `info`).
    pub log_filter: String,
    /// How long the cluster may take to form (every broker registered and unfenced).
    pub form_timeout: Duration,
    /// More `weir serve` arguments, after the harness's own (`--config FILE`, say).
    pub extra_args: Vec<String>,
    /// TLS, authentication and authorization on every node (see the module docs);
    /// `None` (the default): plaintext, anyone may do anything.
    pub security: Option<SecureSetup>,
    /// The `weir` binary every node starts with; `None` (the default): the workspace's
    /// own ([`weir_binary`]). An older build, for an upgrade test: it must take the
    /// harness's flags ([`Cluster::upgrade`] moves one node at a time to the current one).
    pub binary: Option<PathBuf>,
    /// Nodes whose data directory is not the harness's `node-<id>` in the cluster's
    /// directory (one on a fault-injecting file system: [`crate::faultfs`]).
    pub data_dirs: Vec<(i32, PathBuf)>,
    /// Each node's data directory on a tmpfs of this many bytes of its own (needs root:
    /// [`crate::tmpfs`]), which [`Cluster::fill_disk`] fills and [`Cluster::free_disk`]
    /// frees; `None` (the default): the cluster's directory's file system.
    pub disk_bytes: Option<u64>,
    /// An AMQP listener on every node ([`Cluster::amqp_port`]); off by default.
    pub amqp: bool,
}

/// A secured cluster's bootstrap admin: a super user every node is started with
/// (`WEIR_ADMIN_USER`, `WEIR_ADMIN_PASSWORD`), as whom the harness's probe asks.
#[derive(Debug, Clone)]
pub struct SecureSetup {
    /// The admin's user name.
    pub admin_user: String,
    /// The admin's password.
    pub admin_password: String,
}

impl Default for SecureSetup {
    fn default() -> SecureSetup {
        SecureSetup {
            admin_user: "admin".to_owned(),
            admin_password: "weir-tests-admin-password".to_owned(),
        }
    }
}

/// Who a client of a secured cluster is ([`Cluster::client_tls`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// TLS only: no password, no client certificate.
    Nobody,
    /// A user and password sent with every call.
    User {
        /// The user name.
        user: String,
        /// Its password.
        password: String,
    },
    /// A client certificate of `weir dev certs` (`client` or `admin`): the principal is
    /// `User:<name>`.
    Certificate(String),
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            nodes: 3,
            voters: None,
            log_filter: std::env::var("WEIR_TESTS_LOG").unwrap_or_else(|_| "info".to_owned()),
            form_timeout: Duration::from_secs(30),
            extra_args: Vec::new(),
            security: None,
            binary: None,
            data_dirs: Vec::new(),
            disk_bytes: None,
            amqp: false,
        }
    }
}

/// What a node's process is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Running (it may still be cut off by the proxy).
    Running,
    /// Stopped by SIGSTOP.
    Paused,
    /// Not running: killed, terminated, or exited.
    Down,
}

#[derive(Debug)]
struct Node {
    id: i32,
    listen: SocketAddr,
    /// Its Kafka listener (clients reach it directly, not through the fault proxy).
    kafka: SocketAddr,
    /// Its AMQP listener, if [`ClusterConfig::amqp`] (reached directly too).
    amqp: Option<SocketAddr>,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    state: NodeState,
    starts: u32,
    /// The binary it starts with.
    binary: PathBuf,
}

/// See the module docs.
#[derive(Debug)]
pub struct Cluster {
    binary: PathBuf,
    config: ClusterConfig,
    dir: Option<tempfile::TempDir>,
    nodes: Vec<Node>,
    proxy: Proxy,
    spawner: Spawner,
    /// A secured cluster's bootstrap admin, as whom the probe asks.
    admin_tls: Option<ClientTls>,
    /// Each node's tmpfs ([`ClusterConfig::disk_bytes`]).
    disks: Vec<(i32, Tmpfs)>,
    finished: bool,
}

impl Cluster {
    /// Builds (if needed) and starts `config.nodes` brokers, and waits until every one
    /// is registered and unfenced.
    pub async fn start(config: ClusterConfig) -> anyhow::Result<Cluster> {
        let binary = tokio::task::spawn_blocking(weir_binary).await??;
        let first_binary = config.binary.clone().unwrap_or_else(|| binary.clone());
        let dir = tempfile::Builder::new()
            .prefix("weir-faults-")
            .tempdir()
            .context("creating the cluster's directory")?;
        if config.security.is_some() {
            make_certs(&binary, &dir.path().join(CERTS_DIR))?;
        }
        let ids: Vec<i32> = (1..=config.nodes as i32).collect();
        let proxy = Proxy::start(&ids)?;
        let mut nodes = Vec::new();
        for &id in &ids {
            let listen = free_port()?;
            proxy.set_upstream(id, listen);
            nodes.push(Node {
                id,
                listen,
                kafka: free_port()?,
                amqp: if config.amqp {
                    Some(free_port()?)
                } else {
                    None
                },
                data_dir: config
                    .data_dirs
                    .iter()
                    .find(|(node, _)| *node == id)
                    .map(|(_, dir)| dir.clone())
                    .unwrap_or_else(|| dir.path().join(format!("node-{id}"))),
                log: dir.path().join(format!("node-{id}.log")),
                child: None,
                state: NodeState::Down,
                starts: 0,
                binary: first_binary.clone(),
            });
        }
        let mut disks = Vec::new();
        if let Some(bytes) = config.disk_bytes {
            for node in &nodes {
                disks.push((node.id, Tmpfs::mount(&node.data_dir, bytes)?));
            }
        }
        let mut cluster = Cluster {
            binary,
            config,
            dir: Some(dir),
            nodes,
            proxy,
            spawner: Spawner::start()?,
            admin_tls: None,
            disks,
            finished: false,
        };
        if let Some(setup) = cluster.config.security.clone() {
            let admin = Credentials::User {
                user: setup.admin_user,
                password: setup.admin_password,
            };
            cluster.admin_tls = Some(cluster.client_tls(&admin)?);
        }
        for id in ids {
            cluster.spawn(id)?;
        }
        for id in cluster.ids() {
            cluster.wait_listening(id).await?;
        }
        let limit = cluster.config.form_timeout;
        cluster
            .wait_brokers_unfenced(limit)
            .await
            .context("the cluster did not form")?;
        Ok(cluster)
    }

    /// Node ids, ascending.
    pub fn ids(&self) -> Vec<i32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// The addresses clients bootstrap from: every node's proxy.
    pub fn bootstrap(&self) -> Vec<String> {
        self.ids()
            .into_iter()
            .map(|id| self.proxy.address(id).to_string())
            .collect()
    }

    /// The addresses Kafka clients bootstrap from, comma-separated: every node's Kafka
    /// listener.
    pub fn kafka_bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.kafka.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `id`'s AMQP port (on 127.0.0.1, not behind the proxy), if
    /// [`ClusterConfig::amqp`].
    pub fn amqp_port(&self, id: i32) -> Option<u16> {
        self.node(id).amqp.map(|a| a.port())
    }

    /// Fills node `id`'s data directory's tmpfs (see [`crate::tmpfs`]).
    pub fn fill_disk(&self, id: i32) -> anyhow::Result<()> {
        self.disk(id)?.fill()
    }

    /// Fills node `id`'s data directory's tmpfs to within `headroom` bytes (a page at
    /// most beyond; see [`crate::tmpfs`]).
    pub fn fill_disk_leaving(&self, id: i32, headroom: u64) -> anyhow::Result<()> {
        self.disk(id)?.fill_leaving(headroom)
    }

    /// Gives node `id`'s tmpfs its full size back.
    pub fn free_disk(&self, id: i32) -> anyhow::Result<()> {
        self.disk(id)?.free()
    }

    fn disk(&self, id: i32) -> anyhow::Result<&Tmpfs> {
        self.disks
            .iter()
            .find(|(node, _)| *node == id)
            .map(|(_, disk)| disk)
            .with_context(|| format!("node {id} has no tmpfs of its own (disk_bytes)"))
    }

    /// Nodes the harness thinks run (or are paused) whose process has exited by itself
    /// (a crash): each is marked down, with its exit status and the end of its log.
    pub fn reap_exited(&mut self) -> Vec<(i32, String)> {
        let mut exited = Vec::new();
        for node in &mut self.nodes {
            let Some(child) = node.child.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                node.child = None;
                node.state = NodeState::Down;
                self.proxy.set_process(node.id, None);
                exited.push((
                    node.id,
                    format!("{status}; its log ends:\n{}", tail(&node.log, 20)),
                ));
            }
        }
        exited
    }

    /// The fault proxy (cuts, delays, heal).
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Where the cluster's files are: `node-<id>/` data and `node-<id>.log`.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("kept until drop").path()
    }

    /// What node `id`'s process is doing.
    pub fn state(&self, id: i32) -> NodeState {
        self.node(id).state
    }

    /// The address node `id` really listens on (not its proxy's).
    pub fn listen(&self, id: i32) -> SocketAddr {
        self.node(id).listen
    }

    /// The process id of node `id`, if it runs.
    pub fn pid(&self, id: i32) -> Option<u32> {
        self.node(id).child.as_ref().map(Child::id)
    }

    /// SIGKILL: the process dies at once, with whatever it had not flushed.
    pub fn kill(&mut self, id: i32) -> anyhow::Result<()> {
        let node = self.node_mut(id);
        let mut child = node
            .child
            .take()
            .with_context(|| format!("node {id} is not running"))?;
        signal(&child, libc::SIGKILL)?;
        child.wait().with_context(|| format!("reaping node {id}"))?;
        node.state = NodeState::Down;
        self.proxy.set_process(id, None);
        Ok(())
    }

    /// SIGTERM, then waits up to `limit` for a clean exit (status 0, or death by the
    /// signal if the node did not handle SIGTERM yet: the soak may stop a node it has
    /// just started); returns how long it took. A node that does not stop in time is
    /// killed and reported.
    pub async fn terminate(&mut self, id: i32, limit: Duration) -> anyhow::Result<Duration> {
        let node = self.node_mut(id);
        let mut child = node
            .child
            .take()
            .with_context(|| format!("node {id} is not running"))?;
        if node.state == NodeState::Paused {
            signal(&child, libc::SIGCONT)?;
        }
        node.state = NodeState::Down;
        self.proxy.set_process(id, None);
        let started = Instant::now();
        // A node started a moment ago may not handle SIGTERM yet (its handler is set once
        // the broker has started): it then dies of the signal, as any process does.
        let handled = catches_sigterm(child.id());
        signal(&child, libc::SIGTERM)?;
        let status = wait_for(limit, &format!("node {id} to exit after SIGTERM"), || {
            std::future::ready(child.try_wait().ok().flatten())
        })
        .await;
        match status {
            Ok(status) if status.success() => Ok(started.elapsed()),
            Ok(status) if !handled && status.signal() == Some(libc::SIGTERM) => {
                Ok(started.elapsed())
            }
            Ok(status) => bail!(
                "node {id} exited with {status} after SIGTERM; its log ends:\n{}",
                tail(&self.node(id).log, 40)
            ),
            Err(e) => {
                let _ = signal(&child, libc::SIGKILL);
                let _ = child.wait();
                Err(e.context(format!(
                    "node {id} did not stop after SIGTERM (killed); its log ends:\n{}",
                    tail(&self.node(id).log, 40)
                )))
            }
        }
    }

    /// Waits up to `limit` for node `id` to exit by itself (not by a signal of the
    /// harness), and returns its exit status; the node is then down.
    pub async fn wait_exit(&mut self, id: i32, limit: Duration) -> anyhow::Result<ExitStatus> {
        let node = self.node_mut(id);
        let child = node
            .child
            .as_mut()
            .with_context(|| format!("node {id} is not running"))?;
        let status = wait_for(limit, &format!("node {id} to exit"), || {
            std::future::ready(child.try_wait().ok().flatten())
        })
        .await?;
        node.child = None;
        node.state = NodeState::Down;
        self.proxy.set_process(id, None);
        Ok(status)
    }

    /// SIGSTOP: the process freezes (its sockets stay open, nothing answers).
    pub fn pause(&mut self, id: i32) -> anyhow::Result<()> {
        let node = self.node_mut(id);
        let child = node
            .child
            .as_ref()
            .with_context(|| format!("node {id} is not running"))?;
        signal(child, libc::SIGSTOP)?;
        node.state = NodeState::Paused;
        Ok(())
    }

    /// SIGCONT after [`Cluster::pause`].
    pub fn resume(&mut self, id: i32) -> anyhow::Result<()> {
        let node = self.node_mut(id);
        let child = node
            .child
            .as_ref()
            .with_context(|| format!("node {id} is not running"))?;
        signal(child, libc::SIGCONT)?;
        node.state = NodeState::Running;
        Ok(())
    }

    /// Starts a node that is down again, on the same data directory and ports, and waits
    /// until it listens.
    pub async fn restart(&mut self, id: i32) -> anyhow::Result<()> {
        if self.node(id).state != NodeState::Down {
            bail!("node {id} is not down");
        }
        self.spawn(id)?;
        self.wait_listening(id).await
    }

    /// Moves node `id`, which is down, to the workspace's own binary (the one a cluster
    /// started with [`ClusterConfig::binary`] did not use); [`Cluster::restart`] then
    /// starts it on the same data directory: one step of a rolling upgrade.
    pub fn upgrade(&mut self, id: i32) -> anyhow::Result<()> {
        if self.node(id).state != NodeState::Down {
            bail!("node {id} is not down");
        }
        let binary = self.binary.clone();
        self.node_mut(id).binary = binary;
        Ok(())
    }

    /// What the harness asks the nodes, straight at their ports: every node that is
    /// running answers (a paused one is skipped; one cut off by the proxy still answers).
    pub fn probe(&self) -> Probe {
        let answering = self
            .nodes
            .iter()
            .filter(|n| n.state == NodeState::Running)
            .map(|n| (n.id, n.listen))
            .collect();
        let probe = Probe::new(self.nodes.len(), answering);
        match self.admin_tls() {
            Some(tls) => probe.with_tls(tls),
            None => probe,
        }
    }

    /// For a secured cluster, the TLS (and credentials) of its bootstrap admin, as whom
    /// the probe asks; `None` for a plaintext one.
    pub fn admin_tls(&self) -> Option<ClientTls> {
        self.admin_tls.clone()
    }

    /// On a secured cluster, makes `user` with `password` (as the bootstrap admin) and
    /// grants it what the workload's clients do on `topic`: Write, Read and Describe on
    /// the topic, IdempotentWrite on the cluster (its producers are idempotent). Its
    /// consumers are assigned partitions, in no group, so it gets no group ACL. Waits
    /// until every node knows the user and its ACLs; returns the user's TLS.
    pub async fn grant_workload(
        &self,
        user: &str,
        password: &str,
        topic: &str,
    ) -> anyhow::Result<ClientTls> {
        use weir_client::{
            AclBinding, AclOperation, AclPatternType, AclPermission, AclResourceType, Admin,
            ConnectOptions, ScramMechanism,
        };
        let admin_tls = self.admin_tls().context("the cluster is not secured")?;
        let options = ConnectOptions {
            tls: Some(admin_tls),
            ..ConnectOptions::default()
        };
        let admin = Admin::connect_with(&self.bootstrap(), options).await?;
        // The fewest PBKDF2 iterations allowed: brokers built for tests are slow at it.
        admin
            .upsert_user(user, password, ScramMechanism::Sha256, 4096)
            .await
            .with_context(|| format!("creating user {user}"))?;
        let grant = |resource_type, resource_name: &str, operation| AclBinding {
            resource_type,
            resource_name: resource_name.to_owned(),
            pattern_type: AclPatternType::Literal,
            principal: format!("User:{user}"),
            host: "*".to_owned(),
            operation,
            permission: AclPermission::Allow,
        };
        let acls = [
            grant(AclResourceType::Topic, topic, AclOperation::Write),
            grant(AclResourceType::Topic, topic, AclOperation::Read),
            grant(AclResourceType::Topic, topic, AclOperation::Describe),
            grant(
                AclResourceType::Cluster,
                weir_client::security::CLUSTER_RESOURCE_NAME,
                AclOperation::IdempotentWrite,
            ),
        ];
        admin
            .create_acls(&acls)
            .await
            .with_context(|| format!("granting {user} {topic}"))?;
        let tls = self.client_tls(&Credentials::User {
            user: user.to_owned(),
            password: password.to_owned(),
        })?;
        self.probe()
            .with_tls(tls.clone())
            .wait_listed(topic, Duration::from_secs(20))
            .await
            .with_context(|| format!("user {user} and its ACLs reaching every node"))?;
        Ok(tls)
    }

    /// TLS to a secured cluster's nodes, trusting its CA, as `who`.
    pub fn client_tls(&self, who: &Credentials) -> anyhow::Result<ClientTls> {
        if self.config.security.is_none() {
            bail!("the cluster is not secured: its clients speak plaintext");
        }
        let certs = self.dir().join(CERTS_DIR);
        let ca = certs.join("ca.pem");
        let tls = match who {
            Credentials::Nobody => ClientTls::from_files(&ca, None)?,
            Credentials::User { user, password } => {
                ClientTls::from_files(&ca, None)?.with_user(user, password)?
            }
            Credentials::Certificate(name) => {
                let cert = certs.join(format!("{name}.pem"));
                let key = certs.join(format!("{name}-key.pem"));
                ClientTls::from_files(&ca, Some((&cert, &key)))?
            }
        };
        Ok(tls)
    }

    /// The active controller, as most running nodes that answer say (a node cut off
    /// from the others may still believe it is).
    pub async fn controller(&self) -> Option<i32> {
        self.probe().controller().await
    }

    /// DescribeCluster on node `id` (straight to its port, not through the proxy).
    pub async fn describe_cluster_on(
        &self,
        id: i32,
    ) -> anyhow::Result<pb::DescribeClusterResponse> {
        self.probe().describe_cluster_on(id).await
    }

    /// DescribeTopic on node `id`: its own view of the metadata.
    pub async fn describe_on(&self, id: i32, topic: &str) -> anyhow::Result<pb::TopicDescription> {
        self.probe().describe_on(id, topic).await
    }

    /// DescribeTopic on the active controller (whose metadata is the newest), else on
    /// any running node that answers.
    pub async fn describe(&self, topic: &str) -> anyhow::Result<pb::TopicDescription> {
        self.probe().describe(topic).await
    }

    /// The leader of `topic`/`partition` (-1: none), per [`Cluster::describe`].
    pub async fn leader(&self, topic: &str, partition: u32) -> anyhow::Result<i32> {
        self.probe().leader(topic, partition).await
    }

    /// Creates a topic (see [`Probe::create_topic`]).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        min_insync_replicas: u32,
    ) -> anyhow::Result<()> {
        self.probe()
            .create_topic(name, partitions, replication_factor, min_insync_replicas)
            .await
    }

    /// Waits until every node is running, registered and unfenced in every running
    /// node's view.
    pub async fn wait_brokers_unfenced(&self, limit: Duration) -> anyhow::Result<()> {
        self.probe().wait_brokers_unfenced(limit).await
    }

    /// Waits until the cluster is whole for `topic` (see [`Probe::wait_healthy`]).
    pub async fn wait_healthy(&self, topic: &str, limit: Duration) -> anyhow::Result<()> {
        self.probe().wait_healthy(topic, limit).await
    }

    /// Waits until the replicas of every partition of `topic` have converged (see
    /// [`Probe::wait_quiet`]).
    pub async fn wait_quiet(&self, topic: &str, limit: Duration) -> anyhow::Result<()> {
        self.probe().wait_quiet(topic, limit).await
    }

    /// Every record of every partition of `topic`, read from each partition's leader.
    pub async fn read_all(&self, topic: &str) -> anyhow::Result<Vec<Record>> {
        self.probe().read_all(topic).await
    }

    /// The test passed: kill every node and delete the cluster's files (no logs printed;
    /// `WEIR_TESTS_KEEP=1` keeps the files and says where).
    pub fn finish(mut self) {
        self.finished = true;
        if std::env::var_os("WEIR_TESTS_KEEP").is_some_and(|v| v != "0")
            && let Some(dir) = self.dir.take()
        {
            eprintln!(
                "weir-tests: the cluster's files are kept in {}",
                dir.keep().display()
            );
        }
    }

    /// Node `id`'s whole log, every start of it.
    pub fn log(&self, id: i32) -> anyhow::Result<String> {
        let path = &self.node(id).log;
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    }

    /// The last `lines` lines of node `id`'s log.
    pub fn log_tail(&self, id: i32, lines: usize) -> String {
        tail(&self.node(id).log, lines)
    }

    fn node(&self, id: i32) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    fn node_mut(&mut self, id: i32) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    fn voters(&self) -> String {
        self.nodes
            .iter()
            .take(self.config.voters.unwrap_or(self.nodes.len()))
            .map(|n| format!("{}@{}", n.id, self.proxy.address(n.id)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, id: i32) -> anyhow::Result<()> {
        let voters = self.voters();
        let advertise = self.proxy.address(id);
        let filter = self.config.log_filter.clone();
        let extra_args = self.config.extra_args.clone();
        let security = self.config.security.clone();
        let certs = self.dir().join(CERTS_DIR);
        let node = self.node_mut(id);
        let kafka = node.kafka.to_string();
        let amqp = node.amqp;
        let binary = node.binary.clone();
        node.starts += 1;
        std::fs::create_dir_all(&node.data_dir)?;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .with_context(|| format!("opening {}", node.log.display()))?;
        writeln!(
            log,
            "--- weir-tests: start #{} of node {id} (listen {}, advertised {advertise}, {})",
            node.starts,
            node.listen,
            binary.display()
        )?;
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .args(["--node-id", &id.to_string()])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--listen", &node.listen.to_string()])
            .args(["--admin-listen", "off"])
            .args(["--kafka-listen", &kafka])
            // By its environment variable, which a binary from before the AMQP listener
            // ignores where it would refuse the flag.
            .env("WEIR_AMQP_LISTEN", "none")
            .args(
                amqp.map(|a| vec!["--amqp-listen".to_owned(), a.to_string()])
                    .unwrap_or_default(),
            )
            .args(["--advertise", &advertise.to_string()])
            .args(["--controller-voters", &voters]);
        if security.is_some() {
            command
                .arg("--tls-cert")
                .arg(certs.join("node.pem"))
                .arg("--tls-key")
                .arg(certs.join("node-key.pem"))
                .arg("--tls-ca")
                .arg(certs.join("ca.pem"))
                .arg("--tls-client-ca")
                .arg(certs.join("ca.pem"))
                .args(["--authentication", "required"])
                .args(["--authorization", "on"]);
        }
        command
            .args(&extra_args)
            .env("RUST_LOG", filter)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Only the flags above configure the node.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("WEIR_") {
                command.env_remove(key);
            }
        }
        // The password from the environment only: weir serve takes no flag for it.
        if let Some(setup) = &security {
            command
                .env("WEIR_ADMIN_USER", &setup.admin_user)
                .env("WEIR_ADMIN_PASSWORD", &setup.admin_password);
        }
        let child = self.spawner.spawn(command)?;
        let pid = child.id();
        let node = self.node_mut(id);
        node.child = Some(child);
        node.state = NodeState::Running;
        self.proxy.set_process(id, Some(pid));
        Ok(())
    }

    /// Waits until node `id` accepts connections; if its gRPC or Kafka port was taken
    /// meanwhile (it exited saying so), starts it again on another.
    async fn wait_listening(&mut self, id: i32) -> anyhow::Result<()> {
        for _ in 0..MAX_BIND_ATTEMPTS {
            let listen = self.node(id).listen;
            let outcome = wait_for(
                LISTEN_TIMEOUT,
                &format!("node {id} to listen on {listen}"),
                || {
                    let exited = self
                        .nodes
                        .iter_mut()
                        .find(|n| n.id == id)
                        .and_then(|n| n.child.as_mut())
                        .map(|c| c.try_wait().ok().flatten());
                    async move {
                        if let Some(Some(status)) = exited {
                            return Some(Err(status));
                        }
                        tokio::net::TcpStream::connect(listen)
                            .await
                            .ok()
                            .map(|_| Ok(()))
                    }
                },
            )
            .await?;
            let Err(status) = outcome else { return Ok(()) };
            let node = self.node_mut(id);
            node.child = None;
            node.state = NodeState::Down;
            let log = tail(&node.log, 40);
            let grpc_taken = log.contains("binding the gRPC listener");
            let kafka_taken = log.contains("binding the Kafka listener");
            if !grpc_taken && !kafka_taken {
                bail!("node {id} exited with {status} at start; its log ends:\n{log}");
            }
            if grpc_taken {
                let listen = free_port()?;
                self.node_mut(id).listen = listen;
                self.proxy.set_upstream(id, listen);
            }
            if kafka_taken {
                self.node_mut(id).kafka = free_port()?;
            }
            self.spawn(id)?;
        }
        bail!("node {id} could not bind a port in {MAX_BIND_ATTEMPTS} attempts")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = signal(&child, libc::SIGCONT);
                let _ = signal(&child, libc::SIGKILL);
                let _ = child.wait();
            }
        }
        // Before the directory they are mounted in is removed or kept; a run that did not
        // finish keeps their files too (the unmount would drop them).
        if !self.finished && self.dir.is_some() {
            for (id, disk) in &self.disks {
                match disk.copy_out() {
                    Ok(kept) => {
                        eprintln!("weir-tests: node {id}'s data kept in {}", kept.display())
                    }
                    Err(e) => eprintln!("weir-tests: node {id}'s data not kept: {e:#}"),
                }
            }
        }
        self.disks.clear();
        if self.finished {
            return;
        }
        let Some(dir) = self.dir.take() else { return };
        let kept = dir.keep();
        eprintln!(
            "weir-tests: the cluster did not finish cleanly; its files are kept in {}",
            kept.display()
        );
        for node in &self.nodes {
            eprintln!(
                "---------- node {} log ({}), last {LOG_TAIL_LINES} lines ----------\n{}",
                node.id,
                node.log.display(),
                tail(&node.log, LOG_TAIL_LINES)
            );
        }
    }
}

/// A port on 127.0.0.1 free now (bound, then released for the broker to bind).
/// A port free now, never one this process handed out before: the system may give a
/// port it just released to the next bind, and two nodes of one cluster were once handed
/// the same one (node 2's gRPC port was node 1's Kafka port; node 2 could not bind it, and
/// the wait for it to listen was answered by node 1's Kafka listener).
fn free_port() -> anyhow::Result<SocketAddr> {
    static HANDED_OUT: std::sync::Mutex<BTreeSet<u16>> = std::sync::Mutex::new(BTreeSet::new());
    for _ in 0..1_000 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
        let addr = listener.local_addr()?;
        let mut handed_out = HANDED_OUT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if handed_out.insert(addr.port()) {
            return Ok(addr);
        }
    }
    bail!("no port that was not handed out already in 1,000 tries")
}

/// `weir dev certs --out dir`: a CA, the node certificate (localhost, 127.0.0.1, ::1),
/// and the `client` and `admin` client certificates.
fn make_certs(binary: &Path, dir: &Path) -> anyhow::Result<()> {
    let output = Command::new(binary)
        .args(["dev", "certs", "--out"])
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .context("running weir dev certs")?;
    if !output.status.success() {
        bail!(
            "weir dev certs --out {} failed ({}): {}",
            dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn signal(child: &Child, signal: libc::c_int) -> anyhow::Result<()> {
    let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child, not
    // yet reaped (a reaped child's `Child` is never kept), so it names no other process.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc != 0 {
        return Err(io::Error::last_os_error()).with_context(|| format!("kill({pid}, {signal})"));
    }
    Ok(())
}

fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Starts processes from one thread that outlives them, with `PR_SET_PDEATHSIG`
/// (SIGKILL), which fires when the *thread* that forked a child exits: a test runner
/// killed outright takes its brokers with it, and a runtime's short-lived worker
/// threads cannot take them early.
#[derive(Debug)]
struct Spawner {
    requests: Option<mpsc::Sender<SpawnRequest>>,
    thread: Option<JoinHandle<()>>,
}

impl Spawner {
    fn start() -> anyhow::Result<Spawner> {
        let (requests, incoming) = mpsc::channel::<SpawnRequest>();
        let thread = std::thread::Builder::new()
            .name("weir-spawner".into())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    // SAFETY: the closure runs in the forked child before exec and calls
                    // only prctl(2), which is async-signal-safe and allocates nothing.
                    unsafe {
                        command.pre_exec(|| {
                            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                                return Err(io::Error::last_os_error());
                            }
                            Ok(())
                        });
                    }
                    let _ = reply.send(command.spawn());
                }
            })
            .context("starting the spawner thread")?;
        Ok(Spawner {
            requests: Some(requests),
            thread: Some(thread),
        })
    }

    fn spawn(&self, command: Command) -> anyhow::Result<Child> {
        let (reply, answer) = mpsc::channel();
        self.requests
            .as_ref()
            .expect("open until drop")
            .send((command, reply))
            .ok()
            .context("the spawner thread is gone")?;
        answer
            .recv()
            .context("the spawner thread is gone")?
            .context("starting weir")
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether process `pid` has a handler for SIGTERM (`SigCgt` in `/proc/<pid>/status`).
fn catches_sigterm(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let mask = status.lines().find_map(|l| l.strip_prefix("SigCgt:"))?;
            u64::from_str_radix(mask.trim(), 16).ok()
        })
        .is_some_and(|mask| mask & (1 << (libc::SIGTERM - 1)) != 0)
}

//! The compose cluster of `deploy/compose/docker-compose.yml` as a test runs it: brought
//! up under a compose project of its own with a given image, the faults Docker can apply
//! to a container (kill, pause, disconnect from the network, restart) and their healing,
//! the scale-out broker `weir-4`, and the cluster's own view, asked through each node's
//! host listener ([`crate::probe`]).
//!
//! The compose file names its containers (`weir-1`.. `weir-4`): [`ComposeCluster::up`]
//! refuses to start if a container of such a name exists, whoever made it. Each node's
//! host ports are their defaults (N9292 for gRPC, N9092 for Kafka clients, N5672 for AMQP
//! clients) if free, else ones the system picks (`WEIR_HOST_PORT_N`,
//! `WEIR_KAFKA_HOST_PORT_N`, `WEIR_AMQP_HOST_PORT_N`; the node advertises the first two). Everything the project made
//! (containers, the network, the volumes) is removed when the [`ComposeCluster`] is
//! dropped, on panic too; unless the test called [`ComposeCluster::finish`], the end of
//! every node's log is printed first and the whole logs are saved to a file (so they are
//! with `WEIR_TESTS_KEEP=1`).
//!
//! [`ComposeCluster::up_secure`] runs the secure variant instead: the base file with
//! `deploy/compose/docker-compose.secure.yml` over it, given a directory that
//! `deploy/compose/secure-setup.sh` wrote (certificates, the admin's env file).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::time::Instant;

use crate::probe::Probe;
use crate::wait::wait_for;

/// The base of each node's gRPC host port (node N: N9292).
const GRPC_HOST_PORT_BASE: u16 = 9292;
/// The base of each node's Kafka host port (node N: N9092).
const KAFKA_HOST_PORT_BASE: u16 = 9092;
/// The base of each node's AMQP host port (node N: N5672).
const AMQP_HOST_PORT_BASE: u16 = 5672;

/// The nodes the compose file starts by default (the controller voters).
pub const VOTERS: [i32; 3] = [1, 2, 3];
/// The broker of the `scale-out` profile.
pub const SCALE_OUT_NODE: i32 = 4;
/// How many times [`ComposeCluster::pause`] asks runc to freeze a container.
pub const PAUSE_ATTEMPTS: u32 = 3;
/// The compose profile that starts [`SCALE_OUT_NODE`].
const SCALE_OUT_PROFILE: &str = "scale-out";
/// Lines of each container's log printed when a test fails.
const LOG_TAIL_LINES: usize = 80;
/// How long `docker-compose down` gives each container to stop before killing it.
const DOWN_TIMEOUT_SECS: u32 = 10;

/// What a node's container is doing, as the test left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Running and on the compose network.
    Running,
    /// Frozen (`docker pause`): its ports accept connections, nothing answers.
    Paused,
    /// Not running (`docker kill`, or never started).
    Stopped,
    /// Running, but off the compose network (`docker network disconnect`): neither its
    /// peers nor the host reach it.
    Disconnected,
}

/// Whether Docker can be used here: the engine answers and `docker-compose` runs. The
/// error says what is missing.
pub fn docker_available() -> anyhow::Result<()> {
    let engine = std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    match engine {
        Ok(o) if o.status.success() => {}
        Ok(o) => bail!(
            "the Docker engine does not answer (`docker version`: {}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => bail!("cannot run `docker` ({e}): is the Docker CLI installed?"),
    }
    let compose = std::process::Command::new("docker-compose")
        .args(["version", "--short"])
        .output();
    match compose {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => bail!(
            "`docker-compose version` failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => bail!("cannot run `docker-compose` ({e}): is docker-compose installed?"),
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct ComposeCluster {
    project: String,
    file: PathBuf,
    image: String,
    /// Compose files laid over `file` (`-f` each, in order).
    overlays: Vec<PathBuf>,
    /// More variables for docker-compose (`WEIR_SECURE_DIR`).
    env: Vec<(String, String)>,
    host_ports: BTreeMap<i32, u16>,
    /// Each node's external Kafka listener's host port.
    kafka_host_ports: BTreeMap<i32, u16>,
    /// Each node's AMQP listener's host port.
    amqp_host_ports: BTreeMap<i32, u16>,
    states: BTreeMap<i32, ContainerState>,
    finished: bool,
}

impl ComposeCluster {
    /// `docker-compose up -d` of the three voters from `image` under the compose project
    /// `project`, then waits until Docker reports every container healthy; returns the
    /// cluster and how long that took from the start of `up`.
    pub async fn up(
        image: &str,
        project: &str,
        limit: Duration,
    ) -> anyhow::Result<(ComposeCluster, Duration)> {
        ComposeCluster::up_with(image, project, limit, Vec::new(), Vec::new()).await
    }

    /// [`ComposeCluster::up`] of the secure variant, with what
    /// `deploy/compose/secure-setup.sh` wrote into `secure_dir`.
    pub async fn up_secure(
        image: &str,
        project: &str,
        secure_dir: &Path,
        limit: Duration,
    ) -> anyhow::Result<(ComposeCluster, Duration)> {
        let overlay = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/compose/docker-compose.secure.yml");
        let env = vec![(
            "WEIR_SECURE_DIR".to_owned(),
            secure_dir.to_string_lossy().into_owned(),
        )];
        ComposeCluster::up_with(image, project, limit, vec![overlay], env).await
    }

    async fn up_with(
        image: &str,
        project: &str,
        limit: Duration,
        overlays: Vec<PathBuf>,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<(ComposeCluster, Duration)> {
        names_free()?;
        let mut host_ports = BTreeMap::new();
        let mut kafka_host_ports = BTreeMap::new();
        let mut amqp_host_ports = BTreeMap::new();
        let mut taken = Vec::new();
        for id in VOTERS.into_iter().chain([SCALE_OUT_NODE]) {
            let later = id == SCALE_OUT_NODE;
            let grpc = host_port(id, GRPC_HOST_PORT_BASE, later, &taken)?;
            taken.push(grpc);
            let kafka = host_port(id, KAFKA_HOST_PORT_BASE, later, &taken)?;
            taken.push(kafka);
            let amqp = host_port(id, AMQP_HOST_PORT_BASE, later, &taken)?;
            taken.push(amqp);
            host_ports.insert(id, grpc);
            kafka_host_ports.insert(id, kafka);
            amqp_host_ports.insert(id, amqp);
        }
        let file =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/compose/docker-compose.yml");
        // Made before `up`, so that a failing `up` is torn down too.
        let mut cluster = ComposeCluster {
            project: project.to_owned(),
            file,
            overlays,
            env,
            image: image.to_owned(),
            host_ports,
            kafka_host_ports,
            amqp_host_ports,
            states: BTreeMap::new(),
            finished: false,
        };
        let started = Instant::now();
        cluster.compose(&["up", "-d"]).await?;
        for id in VOTERS {
            cluster.states.insert(id, ContainerState::Running);
        }
        for id in VOTERS {
            let left = limit.saturating_sub(started.elapsed());
            cluster.wait_container_healthy(id, left).await?;
        }
        Ok((cluster, started.elapsed()))
    }

    /// The nodes whose containers exist, ascending.
    pub fn ids(&self) -> Vec<i32> {
        self.states.keys().copied().collect()
    }

    /// What node `id`'s container is doing.
    pub fn state(&self, id: i32) -> ContainerState {
        self.states
            .get(&id)
            .copied()
            .unwrap_or(ContainerState::Stopped)
    }

    /// The host address of node `id`'s external listener (127.0.0.1:N9292 by default).
    pub fn host_address(&self, id: i32) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.host_ports[&id]))
    }

    /// The host address of node `id`'s external Kafka listener (127.0.0.1:N9092 by
    /// default).
    pub fn kafka_host_address(&self, id: i32) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::LOCALHOST,
            self.kafka_host_ports[&id],
        ))
    }

    /// The host address of node `id`'s AMQP listener (127.0.0.1:N5672 by default).
    pub fn amqp_host_address(&self, id: i32) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::LOCALHOST,
            self.amqp_host_ports[&id],
        ))
    }

    /// What clients on the host bootstrap from: the voters' host listeners.
    pub fn bootstrap(&self) -> Vec<String> {
        VOTERS
            .iter()
            .map(|&id| self.host_address(id).to_string())
            .collect()
    }

    /// The cluster's view, asked of every running node through its host listener.
    pub fn probe(&self) -> Probe {
        self.probe_without(None)
    }

    /// [`ComposeCluster::probe`] without node `id`, if given (one about to be stopped).
    pub fn probe_without(&self, id: Option<i32>) -> Probe {
        let answering = self
            .states
            .iter()
            .filter(|&(&n, &s)| s == ContainerState::Running && Some(n) != id)
            .map(|(&n, _)| (n, self.host_address(n)))
            .collect();
        Probe::new(self.states.len(), answering)
    }

    /// `docker kill`: SIGKILL to the broker, PID 1 of its container.
    pub async fn kill(&mut self, id: i32) -> anyhow::Result<()> {
        docker(&["kill", &container(id)]).await?;
        self.states.insert(id, ContainerState::Stopped);
        Ok(())
    }

    /// `docker start` of a stopped container (same volume, same network).
    pub async fn start(&mut self, id: i32) -> anyhow::Result<()> {
        docker(&["start", &container(id)]).await?;
        self.states.insert(id, ContainerState::Running);
        Ok(())
    }

    /// `docker pause`: every process of the container frozen (cgroup freezer). runc
    /// gives up on a freeze that does not settle ("unable to freeze": seen once on the
    /// loaded CI machine, the broker creating threads while it froze) and leaves the
    /// container thawed or half frozen; that is the machine's failure, not the broker's,
    /// so the container is thawed and the pause tried again, up to [`PAUSE_ATTEMPTS`].
    pub async fn pause(&mut self, id: i32) -> anyhow::Result<()> {
        let name = container(id);
        let mut attempt = 1;
        loop {
            match docker(&["pause", &name]).await {
                Ok(_) => break,
                Err(e)
                    if attempt < PAUSE_ATTEMPTS && e.to_string().contains("unable to freeze") =>
                {
                    eprintln!("docker pause {name}: {e}; thawing it and trying again");
                    let _ = docker(&["unpause", &name]).await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
        self.states.insert(id, ContainerState::Paused);
        Ok(())
    }

    /// `docker unpause`.
    pub async fn unpause(&mut self, id: i32) -> anyhow::Result<()> {
        docker(&["unpause", &container(id)]).await?;
        self.states.insert(id, ContainerState::Running);
        Ok(())
    }

    /// `docker network disconnect` from the compose network, the container's only one.
    pub async fn disconnect(&mut self, id: i32) -> anyhow::Result<()> {
        docker(&["network", "disconnect", &self.network(), &container(id)]).await?;
        self.states.insert(id, ContainerState::Disconnected);
        Ok(())
    }

    /// `docker network connect` back to the compose network (its name resolves again,
    /// its host port is published again).
    pub async fn connect(&mut self, id: i32) -> anyhow::Result<()> {
        docker(&["network", "connect", &self.network(), &container(id)]).await?;
        self.states.insert(id, ContainerState::Running);
        Ok(())
    }

    /// `docker restart -t <stop_timeout>`: SIGTERM (a controlled shutdown), SIGKILL if it
    /// is not down in time, then start. Returns how long the command took.
    pub async fn restart(&mut self, id: i32, stop_timeout: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let seconds = stop_timeout.as_secs().to_string();
        docker(&["restart", "-t", &seconds, &container(id)]).await?;
        self.states.insert(id, ContainerState::Running);
        Ok(started.elapsed())
    }

    /// Starts the `scale-out` profile's broker ([`SCALE_OUT_NODE`]) and waits until
    /// Docker reports it healthy.
    pub async fn scale_out(&mut self, limit: Duration) -> anyhow::Result<()> {
        let service = container(SCALE_OUT_NODE);
        self.compose(&["--profile", SCALE_OUT_PROFILE, "up", "-d", &service])
            .await?;
        self.states.insert(SCALE_OUT_NODE, ContainerState::Running);
        self.wait_container_healthy(SCALE_OUT_NODE, limit).await
    }

    /// Waits until Docker reports node `id`'s container healthy (its healthcheck, `weir
    /// healthcheck`, passed since it last started).
    pub async fn wait_container_healthy(&self, id: i32, limit: Duration) -> anyhow::Result<()> {
        let name = container(id);
        wait_for(limit, &format!("{name} to be healthy"), || async {
            let status = docker(&["inspect", "--format", "{{.State.Health.Status}}", &name])
                .await
                .ok()?;
            (status.trim() == "healthy").then_some(())
        })
        .await
    }

    /// Every container's log, or its last `lines` lines.
    pub fn logs(&self, lines: Option<usize>) -> String {
        let mut command = self.compose_command();
        command.args([
            "--profile",
            SCALE_OUT_PROFILE,
            "logs",
            "--no-color",
            "--tail",
        ]);
        command.arg(lines.map_or("all".to_owned(), |n| n.to_string()));
        match command.output() {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("(docker-compose logs: {e})"),
        }
    }

    /// The test passed: tear down without printing the logs.
    pub fn finish(mut self) {
        self.finished = true;
    }

    /// The compose network, which the containers' names resolve on.
    pub fn network(&self) -> String {
        format!("{}_weir", self.project)
    }

    fn compose_command(&self) -> std::process::Command {
        let mut command = std::process::Command::new("docker-compose");
        command
            .args(["-p", &self.project])
            .arg("-f")
            .arg(&self.file);
        for overlay in &self.overlays {
            command.arg("-f").arg(overlay);
        }
        command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("WEIR_IMAGE", &self.image);
        for (id, port) in &self.host_ports {
            command.env(format!("WEIR_HOST_PORT_{id}"), port.to_string());
        }
        for (id, port) in &self.kafka_host_ports {
            command.env(format!("WEIR_KAFKA_HOST_PORT_{id}"), port.to_string());
        }
        for (id, port) in &self.amqp_host_ports {
            command.env(format!("WEIR_AMQP_HOST_PORT_{id}"), port.to_string());
        }
        command
    }

    async fn compose(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut command = tokio::process::Command::from(self.compose_command());
        command.args(args).kill_on_drop(true);
        let output = command.output().await.context("running docker-compose")?;
        if !output.status.success() {
            bail!(
                "docker-compose {} failed ({}):\n{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl ComposeCluster {
    /// Writes every container's whole log to a file in the temporary directory and says
    /// where.
    fn save_logs(&self) {
        let path = std::env::temp_dir().join(format!("{}.log", self.project));
        match std::fs::write(&path, self.logs(None)) {
            Ok(()) => eprintln!("weir-tests: the containers' logs are in {}", path.display()),
            Err(e) => eprintln!("weir-tests: cannot write {}: {e}", path.display()),
        }
    }
}

impl Drop for ComposeCluster {
    fn drop(&mut self) {
        if !self.finished {
            eprintln!(
                "---------- compose project {}: the last {LOG_TAIL_LINES} lines of each container's log ----------\n{}",
                self.project,
                self.logs(Some(LOG_TAIL_LINES))
            );
        }
        if !self.finished || std::env::var_os("WEIR_TESTS_KEEP").is_some_and(|v| v != "0") {
            self.save_logs();
        }
        // A paused container cannot be stopped: thaw it first.
        for (id, state) in &self.states {
            if *state == ContainerState::Paused {
                let _ = std::process::Command::new("docker")
                    .args(["unpause", &container(*id)])
                    .output();
            }
        }
        let mut down = self.compose_command();
        down.args([
            "--profile",
            SCALE_OUT_PROFILE,
            "down",
            "--volumes",
            "--timeout",
        ])
        .arg(DOWN_TIMEOUT_SECS.to_string());
        match down.output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "weir-tests: docker-compose down of project {} failed ({}): {}",
                self.project,
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!(
                "weir-tests: cannot run docker-compose down of project {}: {e}",
                self.project
            ),
        }
    }
}

/// The container (and service) name of node `id`.
pub fn container(id: i32) -> String {
    format!("weir-{id}")
}

/// Fails if a container has one of the compose file's container names (`weir-1`..
/// `weir-4`): see [`ComposeCluster::up`].
pub fn names_free() -> anyhow::Result<()> {
    for id in VOTERS.into_iter().chain([SCALE_OUT_NODE]) {
        refuse_existing(&container(id))?;
    }
    Ok(())
}

/// Fails if a container named `name` exists: the compose file's names are fixed, and
/// what is not this test's is not touched.
fn refuse_existing(name: &str) -> anyhow::Result<()> {
    let output = std::process::Command::new("docker")
        .args([
            "inspect",
            "--format",
            "{{index .Config.Labels \"com.docker.compose.project\"}}",
            name,
        ])
        .output()
        .context("running docker inspect")?;
    if output.status.success() {
        let project = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let owner = if project.is_empty() {
            "not made by docker-compose".to_owned()
        } else {
            format!(
                "compose project {project}: `docker-compose -p {project} -f deploy/compose/docker-compose.yml --profile scale-out down -v` removes it"
            )
        };
        bail!("a container named {name} exists ({owner}); not touching it");
    }
    Ok(())
}

/// Node `id`'s host port of a listener whose default is `id` x 10000 + `base` (19292 for
/// gRPC's base 9292, 19092 for Kafka's 9092), if nothing listens there and no other
/// listener was given it (`taken`), else one the system picks (free now; released for
/// Docker to bind). A port `bound_later` (weir-4's, bound at scale-out, minutes after
/// this check) must also be one the kernel does not hand out as an outgoing connection's
/// local port: its defaults, 49292 and 49092, are inside that ephemeral range
/// (32768-60999 by default), and once a connection of the test's own had taken 49292 by
/// then and `docker-compose up weir-4` failed. Such a port is the first free one from
/// 20000 + 100 x `id` when the default will not do.
fn host_port(id: i32, base: u16, bound_later: bool, taken: &[u16]) -> anyhow::Result<u16> {
    let default =
        u16::try_from(i64::from(id) * 10_000 + i64::from(base)).context("node id out of range")?;
    let free = |port: u16| {
        !taken.contains(&port) && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
    };
    let ephemeral = ephemeral_ports();
    if free(default) && !(bound_later && ephemeral.contains(&default)) {
        return Ok(default);
    }
    let port = if bound_later {
        let first = u16::try_from(20_000 + 100 * id).context("node id out of range")?;
        (first..*ephemeral.start())
            .find(|&port| free(port))
            .context("no free host port below the ephemeral range")?
    } else {
        // One the system picks, and not one picked for another listener already.
        let mut picked = None;
        for _ in 0..16 {
            let listener =
                TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free host port")?;
            let port = listener.local_addr()?.port();
            if !taken.contains(&port) {
                picked = Some(port);
                break;
            }
        }
        picked.context("the system gave only ports already picked")?
    };
    eprintln!("weir-tests: node {id} gets host port {port} (127.0.0.1:{default} will not do)");
    Ok(port)
}

/// The local ports the kernel gives outgoing connections
/// (`/proc/sys/net/ipv4/ip_local_port_range`; Linux's default if unreadable).
fn ephemeral_ports() -> std::ops::RangeInclusive<u16> {
    let read = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok();
    let parsed = read.and_then(|text| {
        let mut bounds = text.split_whitespace().map(|n| n.parse::<u16>().ok());
        Some(bounds.next()??..=bounds.next()??)
    });
    parsed.unwrap_or(32_768..=60_999)
}

/// Runs `docker <args>`; its stdout, or an error with its stderr.
async fn docker(args: &[&str]) -> anyhow::Result<String> {
    let output = tokio::process::Command::new("docker")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .context("running docker")?;
    if !output.status.success() {
        bail!(
            "docker {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

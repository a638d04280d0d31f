//! `weir dev certs`: the certificates of a local TLS set-up (weir-security's `certs`).
//!
//! `weir dev cluster`: a local cluster of N brokers in the foreground, the first
//! `--voters` of them controller voters and the rest observers, with its data under one
//! directory, for trying replication without containers. It runs this same binary as `weir serve` N times, prints the
//! `--brokers` string, and stops them all (gracefully: SIGTERM, controlled shutdown) on
//! Ctrl-C or SIGTERM, or when any of them exits. With `--secure` the brokers run as a
//! secured production cluster would: development certificates in the cluster's
//! directory, TLS on every listener, a user and password (SCRAM) required,
//! authorization on, and a bootstrap admin whose password is printed once.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::UsageError;
use crate::signals::StopSignals;

/// Most brokers `weir dev cluster` starts.
pub const MAX_DEV_NODES: u16 = 16;
/// Most of them that are controller voters (the broker's own limit).
const MAX_DEV_VOTERS: u16 = weir_server::MAX_CONTROLLER_VOTERS as u16;
/// Ports between consecutive brokers: node N listens on `base + (N-1) * PORT_STRIDE`,
/// serves `/metrics` on the next port, Kafka clients on the one after and AMQP clients
/// on the one after that.
const PORT_STRIDE: u16 = 100;
/// How long stopping brokers get before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The bootstrap admin of a `--secure` cluster.
const SECURE_ADMIN_USER: &str = "admin";
/// Random bytes in a generated admin password (base64url: 4 characters per 3 bytes).
const ADMIN_PASSWORD_BYTES: usize = 18;

const EXAMPLES: &str = "\
Examples:
  weir dev cluster                                # 3 brokers on 127.0.0.1:9292, :9392, :9492
                                                  # (Kafka clients: 127.0.0.1:9294, :9394, :9494)
  weir dev cluster --nodes 5 --data-dir /tmp/weir-dev
  weir dev cluster --nodes 5 --voters 3           # nodes 4 and 5 are observers
  # then, in another terminal:
  weir topic create orders --partitions 6 --replication-factor 3 \\
       --brokers 127.0.0.1:9292,127.0.0.1:9392,127.0.0.1:9492
  weir cluster describe --brokers 127.0.0.1:9292

  weir dev cluster --secure                       # TLS everywhere, SCRAM, ACLs, an admin
  # prints, once, what a client needs (the password is random unless WEIR_ADMIN_PASSWORD
  # is set), e.g.:
  #   export WEIR_BROKERS=127.0.0.1:9292,127.0.0.1:9392,127.0.0.1:9492
  #   export WEIR_TLS_CA=weir-dev-cluster/certs/ca.pem
  #   export WEIR_USER=admin
  #   export WEIR_PASSWORD=...
  # then, in another terminal, with those exported:
  weir topic create orders --replication-factor 3
  # Kafka clients: SASL_SSL with SCRAM-SHA-512 on 127.0.0.1:9294 (a snippet is printed).

Each broker logs to <data-dir>/node-N/serve.log. Ctrl-C stops them all (controlled
shutdown first: leaderships move before a broker stops). Stop one broker to watch
failover: `kill -TERM <pid>` (printed at start), or `kill -9` for a crash; the others
keep running, and the command to start it again is printed.";

/// Development helpers.
#[derive(Debug, Args)]
pub struct DevArgs {
    #[command(subcommand)]
    command: DevCommand,
}

#[derive(Debug, Subcommand)]
enum DevCommand {
    /// Run a local multi-broker cluster in the foreground.
    #[command(after_help = EXAMPLES)]
    Cluster(ClusterArgs),
    /// Make a CA and the node, client and admin certificates of a local set-up.
    #[command(after_help = CERTS_EXAMPLES)]
    Certs(CertsArgs),
}

const CERTS_EXAMPLES: &str = "\
Examples:
  weir dev certs --out certs
      certs/ca.pem, ca-key.pem             the CA every certificate is signed by
      certs/node.pem, node-key.pem         the brokers' (valid for localhost, 127.0.0.1, ::1)
      certs/client.pem, client-key.pem     a client's (principal: client)
      certs/admin.pem, admin-key.pem       an administrator's (principal: admin)
  weir dev certs --out certs --host broker1.example.com --host 10.0.0.1
      The node certificate is valid for these names too.
  weir serve --kafka-tls-cert certs/node.pem --kafka-tls-key certs/node-key.pem \\
      --kafka-tls-client-ca certs/ca.pem
      Kafka clients connect with security.protocol=SSL and ssl.ca.location=certs/ca.pem,
      and, to be known by their certificate, ssl.certificate.location=certs/client.pem
      and ssl.key.location=certs/client-key.pem.

For development and tests only: keys are written unencrypted (readable by their owner
only), and the CA key sits beside them.";

#[derive(Debug, Args)]
struct CertsArgs {
    /// Directory to write the certificates and keys to (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Another host name or IP address the node certificate is valid for (repeatable).
    #[arg(long = "host", value_name = "NAME")]
    hosts: Vec<String>,
    /// Replace certificates already in --out.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct ClusterArgs {
    /// Number of brokers (1 to 16).
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// How many of them, from node 1 on, are controller voters (1 to 9; the others are
    /// observer brokers) [default: every node, at most 9].
    #[arg(long)]
    voters: Option<u16>,
    /// Directory holding every broker's data (node-1, node-2, ...).
    #[arg(long, default_value = "weir-dev-cluster")]
    data_dir: PathBuf,
    /// Client port of node 1; node N uses base + (N-1)*100, and the next port for /metrics.
    #[arg(long, default_value_t = 9292)]
    base_port: u16,
    /// Run the brokers secured: development certificates made into <data-dir>/certs (kept
    /// there for the next start), TLS on every listener, authentication required (SCRAM
    /// or PLAIN for Kafka clients, a password for the CLI), authorization on, and a
    /// bootstrap admin `admin` whose password (WEIR_ADMIN_PASSWORD, else a random one)
    /// is printed once.
    #[arg(long)]
    secure: bool,
}

/// What `--secure` adds to each broker and tells the user.
struct Secure {
    certs: PathBuf,
    admin_password: String,
}

impl Secure {
    /// Makes (or keeps) the certificates under `data_dir` and picks the admin's password.
    fn prepare(data_dir: &Path) -> anyhow::Result<Secure> {
        let certs = data_dir.join("certs");
        // A restarted cluster keeps its CA: clients told of it before still trust it.
        if !certs.join("ca.pem").exists() {
            // The brokers listen and advertise on 127.0.0.1, which the node certificate
            // is valid for (weir_security::certs::LOCAL_NAMES).
            weir_security::certs::generate(&[])?
                .write(&certs)
                .with_context(|| format!("writing certificates to {}", certs.display()))?;
        }
        let certs = std::path::absolute(&certs)
            .with_context(|| format!("finding the absolute path of {}", certs.display()))?;
        let admin_password = match std::env::var("WEIR_ADMIN_PASSWORD") {
            Ok(password) if !password.is_empty() => password,
            _ => random_password()?,
        };
        Ok(Secure {
            certs,
            admin_password,
        })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.certs.join(name)
    }

    /// The `weir serve` flags.
    fn serve_args(&self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        for (flag, file) in [
            ("--tls-cert", "node.pem"),
            ("--tls-key", "node-key.pem"),
            ("--tls-ca", "ca.pem"),
            // Brokers know each other by their (shared) node certificate.
            ("--tls-client-ca", "ca.pem"),
        ] {
            args.push(flag.into());
            args.push(self.file(file).into());
        }
        for arg in ["--authentication", "required", "--authorization", "on"] {
            args.push(arg.into());
        }
        args
    }

    /// What a user exports to use the cluster with the CLI, one `export` line each.
    fn exports(&self, brokers: &[String]) -> Vec<String> {
        vec![
            format!("export WEIR_BROKERS={}", brokers.join(",")),
            format!(
                "export WEIR_TLS_CA={}",
                shell_quote(&self.file("ca.pem").to_string_lossy())
            ),
            format!("export WEIR_USER={SECURE_ADMIN_USER}"),
            format!("export WEIR_PASSWORD={}", shell_quote(&self.admin_password)),
        ]
    }

    /// Settings for Kafka clients, as Python with both common clients.
    fn kafka_snippet(&self, kafka_brokers: &[String]) -> String {
        let bootstrap = kafka_brokers.join(",");
        let ca = self.file("ca.pem").to_string_lossy().into_owned();
        let password = &self.admin_password;
        format!(
            "Kafka clients: SASL_SSL, SCRAM-SHA-512 (or SCRAM-SHA-256, or PLAIN), e.g.\n\
             \n\
             # confluent-kafka\n\
             from confluent_kafka import Producer\n\
             p = Producer({{\"bootstrap.servers\": {bootstrap:?},\n\
             \x20             \"security.protocol\": \"SASL_SSL\",\n\
             \x20             \"sasl.mechanism\": \"SCRAM-SHA-512\",\n\
             \x20             \"sasl.username\": {SECURE_ADMIN_USER:?}, \"sasl.password\": {password:?},\n\
             \x20             \"ssl.ca.location\": {ca:?}}})\n\
             \n\
             # kafka-python\n\
             from kafka import KafkaProducer\n\
             p = KafkaProducer(bootstrap_servers={bootstrap:?}.split(\",\"),\n\
             \x20                 security_protocol=\"SASL_SSL\", sasl_mechanism=\"SCRAM-SHA-512\",\n\
             \x20                 sasl_plain_username={SECURE_ADMIN_USER:?}, sasl_plain_password={password:?},\n\
             \x20                 ssl_cafile={ca:?})\n\
             \n\
             More users, and what each may do: docs/security.md."
        )
    }
}

/// A password of [`ADMIN_PASSWORD_BYTES`] random bytes from the kernel, base64url.
fn random_password() -> anyhow::Result<String> {
    use base64::Engine;
    use std::io::Read;
    let mut bytes = [0u8; ADMIN_PASSWORD_BYTES];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for the admin's password")?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// `value` as one word for a POSIX shell: as is when it holds only safe characters, else
/// in single quotes.
fn shell_quote(value: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c);
    if !value.is_empty() && value.chars().all(safe) {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', "'\\''"))
    }
}

pub fn run(args: DevArgs) -> anyhow::Result<()> {
    match args.command {
        DevCommand::Cluster(args) => run_cluster(args),
        DevCommand::Certs(args) => run_certs(args),
    }
}

fn run_certs(args: CertsArgs) -> anyhow::Result<()> {
    let ca = args.out.join("ca.pem");
    if ca.exists() && !args.force {
        return Err(UsageError(format!(
            "{} exists: certificates from another CA would not trust the ones made before \
             (--force replaces them all)",
            ca.display()
        ))
        .into());
    }
    let certs = weir_security::certs::generate(&args.hosts)?;
    for path in certs.write(&args.out)? {
        println!("{}", path.display());
    }
    Ok(())
}

fn run_cluster(args: ClusterArgs) -> anyhow::Result<()> {
    if !(1..=MAX_DEV_NODES).contains(&args.nodes) {
        return Err(UsageError(format!(
            "--nodes {} is outside 1..={MAX_DEV_NODES}",
            args.nodes
        ))
        .into());
    }
    let voter_count = args.voters.unwrap_or(args.nodes.min(MAX_DEV_VOTERS));
    if !(1..=args.nodes.min(MAX_DEV_VOTERS)).contains(&voter_count) {
        return Err(UsageError(format!(
            "--voters {voter_count} is outside 1..={} (at most --nodes {} and at most {MAX_DEV_VOTERS})",
            args.nodes.min(MAX_DEV_VOTERS),
            args.nodes
        ))
        .into());
    }
    let last = u32::from(args.base_port) + u32::from(args.nodes - 1) * u32::from(PORT_STRIDE) + 3;
    if args.base_port == 0 || last > u32::from(u16::MAX) {
        return Err(UsageError(format!(
            "--base-port {} leaves no room for {} brokers (ports up to {last})",
            args.base_port, args.nodes
        ))
        .into());
    }
    let port = |n: u16| args.base_port + (n - 1) * PORT_STRIDE;
    let voters: Vec<String> = (1..=voter_count)
        .map(|n| format!("{n}@127.0.0.1:{}", port(n)))
        .collect();
    let brokers: Vec<String> = (1..=args.nodes)
        .map(|n| format!("127.0.0.1:{}", port(n)))
        .collect();
    let secure = match args.secure {
        true => Some(Secure::prepare(&args.data_dir)?),
        false => None,
    };
    // Every flag of node N's `weir serve` but its data directory.
    let serve_args = |n: u16| -> Vec<std::ffi::OsString> {
        let mut serve: Vec<std::ffi::OsString> = vec![
            "--node-id".into(),
            n.to_string().into(),
            "--listen".into(),
            format!("127.0.0.1:{}", port(n)).into(),
            "--admin-listen".into(),
            format!("127.0.0.1:{}", port(n) + 1).into(),
            "--kafka-listen".into(),
            format!("127.0.0.1:{}", port(n) + 2).into(),
            "--amqp-listen".into(),
            format!("127.0.0.1:{}", port(n) + 3).into(),
            "--controller-voters".into(),
            voters.join(",").into(),
        ];
        if let Some(secure) = &secure {
            serve.extend(secure.serve_args());
        }
        serve
    };
    let exe = std::env::current_exe().context("finding the weir binary")?;
    let mut children: Vec<(u16, Child)> = Vec::new();
    for n in 1..=args.nodes {
        let dir = args.data_dir.join(format!("node-{n}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let log_path = dir.join("serve.log");
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let mut command = Command::new(&exe);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&dir)
            .args(serve_args(n))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        match &secure {
            // The password reaches the broker in its environment, not its arguments.
            Some(secure) => command
                .env("WEIR_ADMIN_USER", SECURE_ADMIN_USER)
                .env("WEIR_ADMIN_PASSWORD", &secure.admin_password),
            // Not a secured cluster: no admin from the caller's environment either.
            None => command
                .env_remove("WEIR_ADMIN_USER")
                .env_remove("WEIR_ADMIN_PASSWORD"),
        };
        match command.spawn() {
            Ok(c) => {
                let role = if n <= voter_count {
                    "voter"
                } else {
                    "observer"
                };
                eprintln!(
                    "node {n} ({role}): pid {}, 127.0.0.1:{} (metrics on :{}, Kafka clients on :{}, AMQP clients on :{}), log {}",
                    c.id(),
                    port(n),
                    port(n) + 1,
                    port(n) + 2,
                    port(n) + 3,
                    log_path.display()
                );
                children.push((n, c));
            }
            Err(e) => {
                stop_all(&mut children);
                return Err(e).context(format!("starting node {n}"));
            }
        }
    }
    // The one line a script needs, on stdout.
    println!("{}", brokers.join(","));
    if let Some(secure) = &secure {
        // Then what a client needs, the admin's password among it: shown this once.
        eprintln!(
            "Secured: TLS on every listener (certificates in {}), authentication required, \
             authorization on; the bootstrap admin is {SECURE_ADMIN_USER}. For the weir CLI:",
            secure.certs.display()
        );
        for line in secure.exports(&brokers) {
            println!("{line}");
        }
        let kafka: Vec<String> = (1..=args.nodes)
            .map(|n| format!("127.0.0.1:{}", port(n) + 2))
            .collect();
        eprintln!("{}", secure.kafka_snippet(&kafka));
    }
    eprintln!("Ctrl-C stops the cluster.");
    let stop = stop_signal()?;
    // A broker that exits (killed to watch a failover, say) is reported, not followed:
    // the others go on until Ctrl-C, or until none is left.
    let mut running: Vec<(u16, Child)> = children;
    loop {
        if stop.try_recv().is_ok() {
            break;
        }
        running.retain_mut(|(n, c)| match c.try_wait() {
            Ok(Some(status)) => {
                let again: Vec<String> = serve_args(*n)
                    .iter()
                    .map(|a| shell_quote(&a.to_string_lossy()))
                    .collect();
                eprintln!(
                    "node {n} exited ({status}); the others keep running. Its log: {}. To start it again: {} serve --data-dir {} {}",
                    args.data_dir.join(format!("node-{n}/serve.log")).display(),
                    exe.display(),
                    args.data_dir.join(format!("node-{n}")).display(),
                    again.join(" ")
                );
                false
            }
            _ => true,
        });
        if running.is_empty() {
            anyhow::bail!("every broker exited");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop_all(&mut running);
    Ok(())
}

/// A channel that receives once on Ctrl-C or SIGTERM, listened for from the call on (a
/// thread of its own waits; the brokers are watched from this one).
fn stop_signal() -> anyhow::Result<std::sync::mpsc::Receiver<()>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut signals = {
        let _in_runtime = runtime.enter();
        StopSignals::listen().context("listening for SIGTERM and Ctrl-C")?
    };
    std::thread::spawn(move || {
        runtime.block_on(signals.recv());
        let _ = tx.send(());
    });
    Ok(rx)
}

/// SIGTERM to every broker still running, then waits (killing any that outlast
/// [`STOP_TIMEOUT`]).
fn stop_all(children: &mut [(u16, Child)]) {
    for (_, c) in children.iter() {
        // SAFETY: kill(2) on a pid this process started and has not reaped yet.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
    }
    let deadline = std::time::Instant::now() + STOP_TIMEOUT;
    for (n, c) in children.iter_mut() {
        loop {
            match c.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if std::time::Instant::now() >= deadline => {
                    eprintln!("node {n} did not stop in time; killing it");
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

//! Harness of the `weir` binary tests in this binary: a broker in this process on
//! 127.0.0.1:0, and `weir` runs bounded in time. Each test module uses part of it.

use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

pub mod secure;

/// Longest any single `weir` invocation may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

/// A broker in this process, on its own runtime so tests stay plain synchronous code.
pub struct Broker {
    runtime: tokio::runtime::Runtime,
    pub server: Option<weir_server::RunningServer>,
    pub addr: String,
    /// The Kafka listener's `host:port`, for a broker started with one.
    pub kafka: Option<String>,
    _dir: tempfile::TempDir,
}

impl Broker {
    /// A broker with `config`, without a Kafka listener.
    pub fn start(config: weir_server::ServerConfig) -> Broker {
        Broker::start_inner(weir_server::ServerConfig {
            kafka_listen: None,
            ..config
        })
    }

    /// A broker with `config` and a Kafka listener on a free loopback port.
    pub fn start_with_kafka(config: weir_server::ServerConfig) -> Broker {
        Broker::start_inner(weir_server::ServerConfig {
            kafka_listen: Some("127.0.0.1:0".parse().expect("address")),
            ..config
        })
    }

    /// A broker with `config` and a Kafka listener on a free loopback port, keeping its
    /// data in `data_dir` (a filesystem the test made, say).
    pub fn start_with_kafka_in(
        config: weir_server::ServerConfig,
        data_dir: std::path::PathBuf,
    ) -> Broker {
        Broker::start_inner(weir_server::ServerConfig {
            kafka_listen: Some("127.0.0.1:0".parse().expect("address")),
            data_dir,
            ..config
        })
    }

    /// `config.data_dir` is used if it is not the default one; else a temporary directory.
    fn start_inner(config: weir_server::ServerConfig) -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = if config.data_dir == weir_server::ServerConfig::default().data_dir {
            dir.path().to_path_buf()
        } else {
            config.data_dir.clone()
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let server = runtime
            .block_on(weir_server::start(weir_server::ServerConfig {
                data_dir,
                listen: "127.0.0.1:0".parse().expect("address"),
                ..config
            }))
            .expect("broker starts");
        let addr = server.addr.to_string();
        let kafka = server.kafka_addr.map(|a| a.to_string());
        Broker {
            runtime,
            server: Some(server),
            addr,
            kafka,
            _dir: dir,
        }
    }

    /// Runs `future` on the broker's runtime (for tests that call its core in-process).
    pub fn block_on<T>(&self, future: impl Future<Output = T>) -> T {
        self.runtime.block_on(future)
    }

    /// `weir ARGS` pointed at this broker (through WEIR_BROKERS, as a user would).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = weir_command(args);
        command.env("WEIR_BROKERS", &self.addr);
        command
    }

    /// Runs `weir ARGS` (bounded) and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        finish(self.command(args), args)
    }

    /// Runs `weir ARGS` with `stdin` and requires success; returns stdout.
    pub fn ok(&self, args: &[&str], stdin: &str) -> String {
        let mut command = self.command(args);
        command.stdin(Stdio::piped());
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weir starts");
        let mut input = child.stdin.take().expect("stdin");
        let stdin = stdin.to_owned();
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = input.write_all(stdin.as_bytes());
        });
        let output = wait_output(child, args);
        assert!(
            output.status.success(),
            "weir {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = self.runtime.block_on(server.shutdown());
        }
    }
}

/// `weir ARGS` with no broker configured and no logging filter from the environment.
pub fn weir_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("WEIR_BROKERS")
        .env_remove("WEIR_TIMEOUT")
        .env_remove("WEIR_CONNECT_TIMEOUT")
        .stdin(Stdio::null());
    command
}

pub fn finish(mut command: Command, args: &[&str]) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    wait_output(child, args)
}

pub fn wait_output(child: Child, args: &[&str]) -> Output {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(COMMAND_TIMEOUT)
        .unwrap_or_else(|_| panic!("weir {args:?} did not finish in {COMMAND_TIMEOUT:?}"))
        .expect("weir runs")
}

/// How long a broker with a bootstrap admin may take to write the admin's credentials.
pub const ADMIN_READY: Duration = Duration::from_secs(15);

/// Runs `attempt` (a `weir` call as the bootstrap admin, whose credentials the broker
/// writes just after it starts) until it succeeds, for at most [`ADMIN_READY`]; its
/// output.
pub fn as_admin_once_ready(mut attempt: impl FnMut() -> Output) -> Output {
    let deadline = std::time::Instant::now() + ADMIN_READY;
    loop {
        let out = attempt();
        if out.status.success() {
            return out;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the admin never got in: {}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect()
}

/// Kills a child on every exit path of a test.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// Sends SIGTERM (what a supervisor sends) to the child.
    pub fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.0.id()).expect("a pid");
        // SAFETY: kill(2) on a child this test started and has not reaped yet.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM to {pid}");
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The repository's root directory.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

/// Runs one of the project's set-up scripts (bounded) and returns the path it prints
/// last: `tests/python/setup.sh` installs the pinned Python clients once into the shared
/// venv and prints its python; `tests/kafka/setup-kcat.sh` installs kcat.
pub fn installed(script: &str) -> std::path::PathBuf {
    let path = repo_root().join(script);
    let child = Command::new(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", path.display()));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = rx
        .recv_timeout(INSTALL_TIMEOUT)
        .unwrap_or_else(|_| panic!("{script} did not finish in {INSTALL_TIMEOUT:?}"))
        .expect("the script runs");
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    std::path::PathBuf::from(stdout.lines().last().expect("a path").trim())
}

/// Longest an install script may take (a first pip install of every pinned client).
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(900);

/// Runs `program ARGS` (bounded by [`COMMAND_TIMEOUT`]) and requires success; returns
/// stdout.
pub fn run_ok(program: &std::path::Path, args: &[&str]) -> String {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    let output = wait_output(child, args);
    assert!(
        output.status.success(),
        "{} {args:?} failed ({}):\n{}",
        program.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// `GET path` from the admin listener at `admin` (HTTP/1.1): the whole answer, head and
/// body.
pub fn admin_get(admin: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(admin).expect("connect to the admin listener");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    use std::io::{Read, Write};
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).expect("the answer");
    page
}

/// The figure of the `/metrics` series that starts with `series`, if it is there.
pub fn metric(admin: &str, series: &str) -> Option<f64> {
    let page = admin_get(admin, "/metrics");
    page.lines()
        .find(|l| l.starts_with(series))
        .map(|l| l.rsplit(' ').next().unwrap().parse().expect("a number"))
}

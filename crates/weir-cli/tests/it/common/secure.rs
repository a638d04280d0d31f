//! A `weir serve` process with TLS, for the TLS and authentication tests: development
//! certificates from `weir dev certs`, TLS on every listener, and the broker's log kept
//! line by line (the audit lines are asserted on).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{stderr, wait_output, weir_command};

/// Longest a broker takes to do what a test waits for.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Certificates from `weir dev certs` in a temporary directory.
pub struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    pub fn new() -> Certs {
        let dir = tempfile::tempdir().expect("temp dir");
        let made = weir_command(&["dev", "certs", "--out", &dir.path().to_string_lossy()])
            .output()
            .expect("weir dev certs");
        assert!(made.status.success(), "{}", stderr(&made));
        Certs { dir }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn arg(&self, file: &str) -> String {
        self.path(file).to_string_lossy().into_owned()
    }

    /// The broker flags for TLS on every listener, with client certificates verified.
    pub fn tls_args(&self) -> Vec<String> {
        [
            ("--tls-cert", "node.pem"),
            ("--tls-key", "node-key.pem"),
            ("--tls-client-ca", "ca.pem"),
        ]
        .into_iter()
        .flat_map(|(flag, file)| [flag.to_owned(), self.arg(file)])
        .collect()
    }

    /// The flags of a broker with TLS everywhere, authentication required and
    /// authorization on.
    pub fn secured_args(&self) -> Vec<String> {
        let mut args = self.tls_args();
        args.extend(["--authentication", "required", "--authorization", "on"].map(String::from));
        args
    }

    /// The client's environment for TLS with the `client` certificate.
    pub fn client_env(&self) -> [(&'static str, String); 3] {
        [
            ("WEIR_TLS_CA", self.arg("ca.pem")),
            ("WEIR_TLS_CERT", self.arg("client.pem")),
            ("WEIR_TLS_KEY", self.arg("client-key.pem")),
        ]
    }
}

/// A `weir serve` process; its log (stderr) is kept line by line.
pub struct Serve {
    child: Child,
    /// The gRPC client listener, `127.0.0.1:PORT`.
    pub addr: String,
    /// The admin HTTP listener.
    pub admin: String,
    /// The Kafka listener, if ARGS gave one (`--kafka-listen`; none otherwise).
    pub kafka: Option<String>,
    log: Arc<Mutex<Vec<String>>>,
    data: tempfile::TempDir,
}

impl Serve {
    /// Starts `weir serve ARGS` with `env` on free loopback ports and waits until it
    /// listens. No Kafka listener unless ARGS names one.
    pub fn start(args: &[String], env: &[(&str, &str)]) -> Serve {
        let data = tempfile::tempdir().expect("temp dir");
        let mut command = weir_command(&["serve"]);
        command.envs(env.iter().copied());
        command
            .args(["--data-dir", &data.path().to_string_lossy()])
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]);
        if !args.iter().any(|a| a == "--kafka-listen") {
            command.args(["--kafka-listen", "none"]);
        }
        if !args.iter().any(|a| a == "--amqp-listen") {
            command.args(["--amqp-listen", "none"]);
        }
        command
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("weir serve starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = BufReader::new(child.stderr.take().expect("stderr"));
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        let mut serve = Serve {
            child,
            addr: String::new(),
            admin: String::new(),
            kafka: None,
            log,
            data,
        };
        let listening = serve.wait_for_line("broker listening");
        serve.addr = between(&listening, "addr=", " ");
        serve.admin = between(&listening, "admin=Some(", ")");
        serve.kafka = listening
            .contains("kafka=Some(")
            .then(|| between(&listening, "kafka=Some(", ")"));
        serve
    }

    /// The broker's data directory.
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The first log line containing `needle`, waiting for it.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(line) = self.lines(needle).into_iter().next() {
                return line;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("weir serve exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn lines(&self, needle: &str) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter().filter(|l| l.contains(needle)).cloned().collect()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `weir ARGS` with `stdin` fed, against `brokers` with `env`, bounded in time; how long
/// it took.
pub fn weir_fed(
    brokers: &str,
    env: &[(&str, String)],
    args: &[&str],
    stdin: &[u8],
) -> (Output, Duration) {
    let started = Instant::now();
    let mut command = weir_command(args);
    command.env("WEIR_BROKERS", brokers).stdin(Stdio::piped());
    command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("stdin written");
    let out = wait_output(child, args);
    (out, started.elapsed())
}

/// The text of `line` after `from` up to `to` (or the end).
pub fn between(line: &str, from: &str, to: &str) -> String {
    let start = line
        .find(from)
        .unwrap_or_else(|| panic!("{from:?} in {line:?}"))
        + from.len();
    let rest = &line[start..];
    rest[..rest.find(to).unwrap_or(rest.len())].to_owned()
}

/// `GET path` over https (HTTP/1.1) from the admin listener at `addr`, trusting `ca`,
/// with `authorization` as the header's value if given: the status line, headers and
/// body.
pub fn https_get(addr: &str, path: &str, ca: &Path, authorization: Option<&str>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authorization = authorization
        .map(|value| format!("Authorization: {value}\r\n"))
        .unwrap_or_default();
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let port: u16 = port.parse().expect("port");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let config = weir_security::tls::client_config(ca, None, &[b"http/1.1"]).expect("CA");
        let mut stream = weir_security::dial::TlsDialer::new(config)
            .connect(host, port)
            .await
            .expect("TLS connection");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\n{authorization}Connection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("request");
        let mut response = Vec::new();
        // The server may close without a TLS close_notify; what came is the answer.
        let _ = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut response)).await;
        String::from_utf8_lossy(&response).into_owned()
    })
}

//! The examples `--help` prints, run as a user would copy them. The examples of every
//! command and subcommand (found by walking `weir --help`'s command tree) are taken from
//! the help text itself, so a changed example is tested as changed:
//! - every client command's example is run as printed, in a directory of its own with
//!   the development certificates the examples name and a line on stdin where one asks
//!   for a password (addresses pointed at a port that refuses, so nothing reaches a broker
//!   this machine may be running), and must get past flag parsing and validation: each
//!   `weir` it starts exits 0 or 1, never 2 (a usage error);
//! - the multi-node examples of `weir serve --help` (three voters, then an observer in
//!   rack r2) start, as printed but with their ports made free and their data directories
//!   in a temporary directory, the cluster their sentences describe: four brokers, three
//!   voters and an observer in rack r2, none exiting (two of the three exited on the
//!   Kafka listener's port when the example gave every node the same).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);
/// Longest one client example may run before it is stopped (one that follows a log waits
/// for records forever, after its flags were taken).
const EXAMPLE_TIMEOUT_S: u32 = 20;
/// A loopback port nothing listens on: connecting is refused at once.
const REFUSING: &str = "127.0.0.1:1";

fn weir_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weir"))
}

/// `weir PATH... --help`.
fn help(path: &[String]) -> String {
    let out = Command::new(weir_bin())
        .args(path)
        .arg("--help")
        .output()
        .expect("weir runs");
    assert!(out.status.success(), "weir {path:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a help text lists under `Commands:` (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    let Some(start) = help.find("\nCommands:\n") else {
        return Vec::new();
    };
    help[start + "\nCommands:\n".len()..]
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Every help text of the command tree, by command path.
fn all_helps() -> BTreeMap<Vec<String>, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let text = help(&path);
        for sub in subcommands(&text) {
            let mut child = path.clone();
            child.push(sub);
            todo.push(child);
        }
        out.insert(path, text);
    }
    out
}

/// The example commands of a help text: the lines of its `Examples:` block indented by
/// two spaces (descriptions are indented further), joined where a line ends in `\`,
/// without trailing `# comments`.
fn examples(help: &str) -> Vec<String> {
    let Some(start) = help.find("Examples:\n") else {
        return Vec::new();
    };
    let mut commands = Vec::new();
    let mut open: Option<String> = None;
    for line in help[start + "Examples:\n".len()..].lines() {
        if let Some(mut command) = open.take() {
            command.push(' ');
            command.push_str(line.trim());
            if command.ends_with('\\') {
                command.pop();
                open = Some(command);
            } else {
                commands.push(command);
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            break; // the prose after the examples
        }
        let body = line.strip_prefix("  ").unwrap_or(line);
        if body.starts_with(' ') || body.starts_with('#') {
            continue; // a description, or a comment line
        }
        let body = match body.find("  #").or_else(|| body.find(" # ")) {
            Some(at) => body[..at].trim_end(),
            None => body.trim_end(),
        };
        match body.strip_suffix('\\') {
            Some(head) => open = Some(head.trim_end().to_owned()),
            None => commands.push(body.to_owned()),
        }
    }
    commands
}

/// `text` with every `127.0.0.1:PORT` given to `to(PORT)`.
fn map_ports(text: &str, mut to: impl FnMut(u16) -> String) -> String {
    const HOST: &str = "127.0.0.1:";
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(HOST) {
        out.push_str(&rest[..at]);
        let after = &rest[at + HOST.len()..];
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        match after[..digits].parse::<u16>() {
            Ok(port) => out.push_str(&to(port)),
            Err(_) => out.push_str(HOST),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// `command` aimed at no broker: every loopback address and every `--brokers` value
/// refuses, so an example never reaches a broker this machine may be running, and no
/// host name is looked up.
fn aimed_nowhere(command: &str) -> String {
    let command = map_ports(command, |_| REFUSING.to_owned());
    let command = command.replace("localhost:", "127.0.0.1:");
    let mut words: Vec<String> = command.split(' ').map(str::to_owned).collect();
    for i in 1..words.len() {
        if words[i - 1] == "--brokers" {
            words[i] = REFUSING.to_owned();
        }
    }
    words.join(" ")
}

/// A directory with a `weir` that runs the real one and appends its exit code to
/// `statuses`, first on the examples' PATH.
fn recording_weir(dir: &Path, statuses: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let shim = bin.join("weir");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\n{:?} \"$@\"\nrc=$?\necho $rc >> {:?}\nexit $rc\n",
            weir_bin(),
            statuses
        ),
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// Whether an example starts brokers (`weir serve`, `weir dev cluster`: the cluster test
/// below runs those) or needs what a reader fills in (`<pid>`, `...`).
fn runs_brokers_or_has_placeholders(command: &str) -> bool {
    command.contains("weir serve")
        || command.contains("weir dev cluster")
        || command.contains('<')
        || command.contains("...")
}

#[test]
fn every_client_example_in_every_help_parses_and_validates() {
    let helps = all_helps();
    assert!(helps.len() > 40, "the command tree: {:?}", helps.keys());
    let dir = tempfile::tempdir().unwrap();
    let statuses = dir.path().join("statuses");
    let bin = recording_weir(dir.path(), &statuses);
    // What the examples' files name: the development certificates (`certs/`), made once
    // and linked into each example's own directory (but for the examples that make them).
    let certs = dir.path().join("certs");
    let made = Command::new(weir_bin())
        .args(["dev", "certs", "--out"])
        .arg(&certs)
        .output()
        .unwrap();
    assert!(made.status.success(), "weir dev certs failed");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = 0;
    let mut failures = Vec::new();
    for (command_path, text) in &helps {
        for example in examples(text) {
            if runs_brokers_or_has_placeholders(&example) || !example.contains("weir ") {
                continue;
            }
            let _ = std::fs::remove_file(&statuses);
            let work = tempfile::tempdir_in(dir.path()).unwrap();
            if !example.starts_with("weir dev certs") {
                std::os::unix::fs::symlink(&certs, work.path().join("certs")).unwrap();
            }
            let command = aimed_nowhere(&example);
            let out = Command::new("timeout")
                .arg(EXAMPLE_TIMEOUT_S.to_string())
                .args(["bash", "-c", &command])
                .current_dir(work.path())
                .env("PATH", &path)
                // What a reader would have set: a password for `weir user create`.
                .env("ALICE_PASSWORD", "alice-secret")
                .env("WEIR_BROKERS", REFUSING)
                .env("WEIR_CONNECT_TIMEOUT", "1s")
                .env_remove("WEIR_TLS_CA")
                .env_remove("WEIR_USER")
                .env_remove("WEIR_PASSWORD")
                .env_remove("WEIR_TOKEN")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .and_then(|mut child| {
                    // One line on stdin, as a user types a password at a prompt (a
                    // producing example reads it as a record).
                    use std::io::Write;
                    let _ = child.stdin.take().unwrap().write_all(b"alice-secret\n");
                    child.wait_with_output()
                })
                .expect("bash runs");
            let codes = std::fs::read_to_string(&statuses).unwrap_or_default();
            if codes.trim().is_empty() {
                // Not even a shell command as printed (or it never reached `weir`).
                failures.push(format!(
                    "`weir {} --help`: {example}\n    ran no weir: {}",
                    command_path.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            } else if codes.lines().any(|c| c.trim() == "2") {
                failures.push(format!(
                    "`weir {} --help`: {example}\n    {}",
                    command_path.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            ran += 1;
        }
    }
    assert!(ran > 80, "only {ran} examples found");
    assert!(
        failures.is_empty(),
        "examples that do not run as printed, or are refused as usage errors:\n{}",
        failures.join("\n")
    );
}

/// A loopback port free now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Stops the brokers when the test ends, however it ends.
struct Brokers(Vec<Child>);

impl Drop for Brokers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn the_multi_node_examples_of_weir_serve_start_the_cluster_they_describe() {
    let text = help(&["serve".to_owned()]);
    let nodes: Vec<String> = examples(&text)
        .into_iter()
        .filter(|e| e.starts_with("weir serve --node-id") && e.contains("--data-dir D"))
        .collect();
    assert_eq!(nodes.len(), 4, "three voters and an observer: {nodes:#?}");
    // Each port the examples name, the same free port wherever it is named, and each a
    // different one: a port is free once its probe closes, so the kernel may hand the
    // same one out again (it did: gRPC and admin on one port, the node refused it).
    let mut ports: BTreeMap<u16, u16> = BTreeMap::new();
    let nodes: Vec<String> = nodes
        .iter()
        .map(|n| {
            map_ports(n, |port| {
                if !ports.contains_key(&port) {
                    let free = std::iter::repeat_with(free_port)
                        .find(|free| !ports.values().any(|taken| taken == free))
                        .expect("a free port");
                    ports.insert(port, free);
                }
                format!("127.0.0.1:{}", ports[&port])
            })
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let bin = weir_bin().parent().unwrap().to_owned();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut brokers = Brokers(Vec::new());
    for (i, node) in nodes.iter().enumerate() {
        let log = std::fs::File::create(dir.path().join(format!("node-{i}.log"))).unwrap();
        brokers.0.push(
            Command::new("bash")
                .args(["-c", &format!("exec {node}")])
                .current_dir(dir.path())
                .env("PATH", &path)
                .env_remove("WEIR_LISTEN")
                .env_remove("WEIR_KAFKA_LISTEN")
                .env_remove("WEIR_AMQP_LISTEN")
                .env_remove("WEIR_ADMIN_LISTEN")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("bash runs"),
        );
    }
    let first = format!("127.0.0.1:{}", ports[&9292]);
    let logs = |dir: &Path| {
        (0..nodes.len())
            .map(|i| {
                let log = std::fs::read_to_string(dir.join(format!("node-{i}.log")));
                format!("node {i}:\n{}", log.unwrap_or_default())
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let deadline = Instant::now() + DEADLINE;
    let cluster = loop {
        for (i, child) in brokers.0.iter_mut().enumerate() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "node {i} exited ({status}): {}\n{}",
                    nodes[i],
                    logs(dir.path())
                );
            }
        }
        let out = Command::new(weir_bin())
            .args([
                "cluster",
                "describe",
                "--format",
                "json",
                "--brokers",
                &first,
            ])
            .output()
            .unwrap();
        if out.status.success() {
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let brokers = json["brokers"].as_array().cloned().unwrap_or_default();
            if brokers.len() == 4 && brokers.iter().all(|b| b["fenced"] == false) {
                break json;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no 4-broker cluster: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            logs(dir.path())
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let brokers_json = cluster["brokers"].as_array().unwrap();
    let voters: Vec<i64> = brokers_json
        .iter()
        .filter(|b| b["voter"] == true)
        .map(|b| b["broker_id"].as_i64().unwrap())
        .collect();
    assert_eq!(voters, [1, 2, 3], "{cluster}");
    let observer = brokers_json
        .iter()
        .find(|b| b["broker_id"] == 4)
        .expect("broker 4");
    assert_eq!(observer["voter"], false, "{cluster}");
    assert_eq!(observer["rack"], "r2", "{cluster}");
    // Each node serves its own Kafka listener, as its example says.
    for kafka in [9294, 9394, 9494, 9594] {
        let port = ports[&kafka];
        std::net::TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("the Kafka listener of example port {kafka}: {e}"));
    }
}

#[test]
fn examples_are_read_from_the_help_text_as_printed() {
    let text = "Usage: x\n\nExamples:\n  weir a --b 1   # a comment\n      What it does.\n  weir c \\\n      --d 127.0.0.1:9292\n  # a comment line\n\n  printf 'x' | weir e\n\nProse after.\n  weir not-an-example\n";
    assert_eq!(
        examples(text),
        [
            "weir a --b 1",
            "weir c --d 127.0.0.1:9292",
            "printf 'x' | weir e"
        ]
    );
    assert_eq!(
        aimed_nowhere("weir x --brokers host1:9292,host2:9292 --y 127.0.0.1:9393"),
        "weir x --brokers 127.0.0.1:1 --y 127.0.0.1:1"
    );
}

//! The secure compose variant (`deploy/compose/docker-compose.secure.yml`) as its README
//! runs it: `secure-setup.sh` makes the certificates (in the image, as the broker's user)
//! and the admin's env file, `docker-compose up` of both files brings three voters up
//! healthy (their healthcheck speaks TLS), and then, with the admin's password:
//!
//! - the CLI on the host, through the nodes' published loopback listeners over TLS,
//!   creates a replicated topic and produces records;
//! - the CLI in a container on the compose network (`weir-N:9292`, names the node
//!   certificate is valid for) reads every one back, in order, and produces more, which
//!   the host reads back;
//! - a CLI without credentials is refused, on the host and inside, and one without TLS
//!   gets nothing.
//!
//! Opt-in, since the default run is near its time budget:
//! `WEIR_DOCKER_SECURE=1 cargo test -p weir-tests --test it -- --nocapture docker_secure::`
//! (about 30 s, the image built in 10 more). Without the flag it says so and passes.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use weir_tests::binary::weir_binary;
use weir_tests::compose::{self, ComposeCluster, VOTERS};
use weir_tests::image::TestImage;
use weir_tests::wait::bounded;

const TOPIC: &str = "secure-orders";
/// Records written from the host, then as many from inside the network.
const RECORDS: usize = 200;
/// Hard bound of the whole test once the image is built.
const LIMIT: Duration = Duration::from_secs(4 * 60);
/// Longest the cluster may take to be healthy, and a first request to be served.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secure_compose_cluster_serves_its_admin_over_tls_only() -> anyhow::Result<()> {
    if std::env::var_os("WEIR_DOCKER_SECURE").is_none_or(|v| v == "0") {
        println!(
            "skipped: set WEIR_DOCKER_SECURE=1 to run the secure compose cluster \
             (WEIR_DOCKER_SECURE=1 cargo test -p weir-tests --test it -- docker_secure::)"
        );
        return Ok(());
    }
    compose::docker_available()?;
    weir_tests::init_client_logs();
    // The compose file's container names are fixed, so the plain compose test must not
    // run beside this one, nor a process cluster on the same two cores.
    let _serial = weir_tests::exclusive().await;
    let binary = tokio::task::spawn_blocking(weir_binary).await??;
    compose::names_free()?;
    let started = Instant::now();
    let tag = format!("weir-test-secure:{}", std::process::id());
    let build_binary = binary.clone();
    let image =
        tokio::task::spawn_blocking(move || TestImage::build(&build_binary, &tag)).await??;
    println!(
        "image {} built in {:.1} s",
        image.tag(),
        image.build_time.as_secs_f64()
    );
    let outcome = bounded(LIMIT, run(image.tag(), &binary)).await;
    println!("total {:.0} s", started.elapsed().as_secs_f64());
    outcome
}

async fn run(image: &str, binary: &Path) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("tests/ is inside the repository")?
        .to_path_buf();
    let secure = tempfile::tempdir()?;
    let setup = tokio::process::Command::new(root.join("deploy/compose/secure-setup.sh"))
        .arg(secure.path())
        .env("WEIR_IMAGE", image)
        .kill_on_drop(true)
        .output()
        .await
        .context("running deploy/compose/secure-setup.sh")?;
    if !setup.status.success() {
        bail!(
            "secure-setup.sh failed: {}",
            String::from_utf8_lossy(&setup.stderr)
        );
    }
    let printed = String::from_utf8_lossy(&setup.stdout);
    let export = |name: &str| -> anyhow::Result<String> {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .map(str::to_owned)
            .with_context(|| format!("secure-setup.sh printed no {name}:\n{printed}"))
    };
    let (ca, user, password) = (
        export("WEIR_TLS_CA")?,
        export("WEIR_USER")?,
        export("WEIR_PASSWORD")?,
    );
    // The broker's user owns the keys and only it reads them.
    let key = secure.path().join("certs/node-key.pem");
    let meta = std::fs::metadata(&key).with_context(|| format!("{}", key.display()))?;
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{}",
            key.display()
        );
        assert_eq!(meta.uid(), 10001, "{} is the broker's", key.display());
    }

    let project = format!("weir-secure-{}", std::process::id());
    let (cluster, healthy_after) =
        ComposeCluster::up_secure(image, &project, secure.path(), HEALTHY_TIMEOUT).await?;
    println!(
        "secure compose cluster (project {project}): 3 containers healthy (a healthcheck over \
         TLS) {:.1} s after `up -d`",
        healthy_after.as_secs_f64()
    );
    let host = Cli {
        binary: binary.to_owned(),
        brokers: cluster.bootstrap().join(","),
        ca: Some(ca.clone()),
        credentials: Some((user.clone(), password.clone())),
    };

    // From the host, as the admin.
    let deadline = Instant::now() + HEALTHY_TIMEOUT;
    loop {
        let out = host
            .run(&[
                "topic",
                "create",
                TOPIC,
                "--partitions",
                "1",
                "--replication-factor",
                "3",
                "--config",
                "min.insync.replicas=2",
            ])
            .await?;
        if out.status.success() {
            break;
        }
        if Instant::now() > deadline {
            bail!("topic create kept failing: {}", stderr(&out));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let first: Vec<String> = (0..RECORDS).map(|i| format!("host-{i}")).collect();
    host.ok_with_stdin(&["produce", TOPIC], &first).await?;

    // Inside the compose network, as the admin: what the host wrote, then more.
    let inside = Inside {
        image: image.to_owned(),
        network: cluster.network(),
        certs: secure.path().join("certs"),
        brokers: VOTERS.map(|n| format!("weir-{n}:9292")).join(","),
        credentials: Some((user.clone(), password.clone())),
    };
    let count = RECORDS.to_string();
    let read = inside
        .ok(&["consume", TOPIC, "--from", "beginning", "--count", &count])
        .await?;
    assert_eq!(read.lines().collect::<Vec<_>>(), first, "read inside");
    let second: Vec<String> = (0..RECORDS).map(|i| format!("inside-{i}")).collect();
    inside.ok_with_stdin(&["produce", TOPIC], &second).await?;
    let all = (2 * RECORDS).to_string();
    let read = host
        .ok(&["consume", TOPIC, "--from", "beginning", "--count", &all])
        .await?;
    let expected: Vec<&String> = first.iter().chain(&second).collect();
    assert_eq!(
        read.lines().collect::<Vec<_>>(),
        expected,
        "every record back on the host, in order"
    );
    println!(
        "{} records through TLS and SCRAM-checked calls, from the host and from inside",
        2 * RECORDS
    );

    // No credentials: refused, on the host and inside.
    let anonymous = Cli {
        credentials: None,
        ..host.clone()
    };
    let out = anonymous.run(&["topic", "list"]).await?;
    assert!(!out.status.success(), "an anonymous client was served");
    assert!(
        stderr(&out).contains("requires authentication"),
        "{}",
        stderr(&out)
    );
    let anonymous_inside = Inside {
        credentials: None,
        ..inside.clone()
    };
    let out = anonymous_inside.run(&["topic", "list"], None).await?;
    assert!(
        !out.status.success(),
        "an anonymous client was served inside"
    );
    assert!(
        stderr(&out).contains("requires authentication"),
        "{}",
        stderr(&out)
    );
    // No TLS: nothing.
    let plaintext = Cli {
        ca: None,
        credentials: None,
        ..host.clone()
    };
    let out = plaintext.run(&["topic", "list"]).await?;
    assert!(!out.status.success(), "a plaintext client was served");
    println!("anonymous clients refused (host and inside), plaintext refused");
    cluster.finish();
    Ok(())
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `weir` CLI on the host.
#[derive(Debug, Clone)]
struct Cli {
    binary: std::path::PathBuf,
    brokers: String,
    ca: Option<String>,
    credentials: Option<(String, String)>,
}

impl Cli {
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args(args)
            .env("WEIR_BROKERS", &self.brokers)
            .env_remove("WEIR_TLS_CA")
            .env_remove("WEIR_USER")
            .env_remove("WEIR_PASSWORD")
            .kill_on_drop(true);
        if let Some(ca) = &self.ca {
            command.env("WEIR_TLS_CA", ca);
        }
        if let Some((user, password)) = &self.credentials {
            command
                .env("WEIR_USER", user)
                .env("WEIR_PASSWORD", password);
        }
        command
    }

    async fn run(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        Ok(self.command(args).output().await?)
    }

    async fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.run(args).await?;
        if !out.status.success() {
            bail!("weir {args:?} on the host failed: {}", stderr(&out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    async fn ok_with_stdin(&self, args: &[&str], lines: &[String]) -> anyhow::Result<()> {
        let mut command = self.command(args);
        let out = with_stdin(&mut command, lines).await?;
        if !out.status.success() {
            bail!("weir {args:?} on the host failed: {}", stderr(&out));
        }
        Ok(())
    }
}

/// The `weir` CLI in a container of the image on the compose network, the certificates
/// mounted as the brokers have them.
#[derive(Debug, Clone)]
struct Inside {
    image: String,
    network: String,
    certs: std::path::PathBuf,
    brokers: String,
    credentials: Option<(String, String)>,
}

impl Inside {
    fn command(&self, args: &[&str], stdin: bool) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("docker");
        command.args(["run", "--rm", "--network", &self.network]);
        if stdin {
            command.arg("-i");
        }
        command
            .arg("-v")
            .arg(format!("{}:/certs:ro", self.certs.display()))
            .args(["-e", &format!("WEIR_BROKERS={}", self.brokers)])
            .args(["-e", "WEIR_TLS_CA=/certs/ca.pem"]);
        if let Some((user, password)) = &self.credentials {
            // By name only: the values come from this process's environment, out of
            // the command line.
            command
                .args(["-e", "WEIR_USER", "-e", "WEIR_PASSWORD"])
                .env("WEIR_USER", user)
                .env("WEIR_PASSWORD", password);
        }
        command.arg(&self.image).args(args).kill_on_drop(true);
        command
    }

    async fn run(
        &self,
        args: &[&str],
        lines: Option<&[String]>,
    ) -> anyhow::Result<std::process::Output> {
        match lines {
            Some(lines) => with_stdin(&mut self.command(args, true), lines).await,
            None => Ok(self.command(args, false).output().await?),
        }
    }

    async fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.run(args, None).await?;
        if !out.status.success() {
            bail!("weir {args:?} inside failed: {}", stderr(&out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    async fn ok_with_stdin(&self, args: &[&str], lines: &[String]) -> anyhow::Result<()> {
        let out = self.run(args, Some(lines)).await?;
        if !out.status.success() {
            bail!("weir {args:?} inside failed: {}", stderr(&out));
        }
        Ok(())
    }
}

/// Runs `command` with `lines` on its stdin; its output.
async fn with_stdin(
    command: &mut tokio::process::Command,
    lines: &[String],
) -> anyhow::Result<std::process::Output> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    stdin.write_all(text.as_bytes()).await?;
    drop(stdin);
    Ok(child.wait_with_output().await?)
}

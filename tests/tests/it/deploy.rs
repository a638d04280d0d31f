//! The deployment files in `deploy/`, checked offline in the default test run: the
//! Kubernetes manifests and the Helm chart (`deploy/k8s/validate.sh`: kubernetes-validate
//! --strict, helm lint, helm template, installed into a virtualenv of its own from PyPI)
//! and the compose file (`docker-compose config`, and the Kafka listeners it gives each
//! node). The compose cluster itself runs under faults in `tests/it/docker_cluster.rs`; the
//! static production image is exercised by `deploy/docker/test-image.sh`, which builds
//! it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

/// Runs `command` and fails the test with its output unless it succeeds.
fn succeeds(mut command: Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn kubernetes_manifests_and_the_helm_chart_validate() {
    let root = repo_root();
    succeeds(
        Command::new(root.join("deploy/k8s/validate.sh")),
        "deploy/k8s/validate.sh",
    );
}

/// `docker-compose config` of the compose file with `env` set: the file as Compose reads
/// it, variables substituted.
fn compose_config(env: &[(&str, &str)]) -> String {
    let root = repo_root();
    let mut command = Command::new("docker-compose");
    command
        .arg("-f")
        .arg(root.join("deploy/compose/docker-compose.yml"))
        .args(["--profile", "scale-out", "config"])
        .envs(env.iter().copied());
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker-compose config: {e}"));
    assert!(
        output.status.success(),
        "docker-compose config failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// The lines of service `name` in `docker-compose config` output.
fn service<'a>(config: &'a str, name: &str) -> Vec<&'a str> {
    let header = format!("  {name}:");
    config
        .lines()
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .collect()
}

#[test]
fn every_compose_node_serves_kafka_and_amqp_clients_inside_and_on_the_host() {
    // Node 2's Kafka host port moved, as a test or a busy host moves it.
    let config = compose_config(&[("WEIR_KAFKA_HOST_PORT_2", "31092")]);
    for node in 1..=4 {
        let lines = service(&config, &format!("weir-{node}"));
        assert!(!lines.is_empty(), "no service weir-{node} in:\n{config}");
        let host_port = if node == 2 {
            "31092".to_owned()
        } else {
            format!("{node}9092")
        };
        let has = |wanted: &str| lines.iter().any(|l| l.trim() == wanted);
        for wanted in [
            "WEIR_KAFKA_LISTEN: 0.0.0.0:9092".to_owned(),
            format!("WEIR_KAFKA_ADVERTISE: weir-{node}:9092"),
            format!("WEIR_KAFKA_EXTERNAL_LISTEN: 0.0.0.0:{node}9092"),
            format!("WEIR_KAFKA_EXTERNAL_ADVERTISE: 127.0.0.1:{host_port}"),
            // Topics are created explicitly in a cluster.
            "WEIR_AUTO_CREATE_TOPICS: \"false\"".to_owned(),
        ] {
            assert!(has(&wanted), "weir-{node} lacks {wanted}: {lines:#?}");
        }
        // AMQP on every node, inside and on the host's loopback at N5672.
        assert!(
            has("WEIR_AMQP_LISTEN: 0.0.0.0:5672"),
            "weir-{node} lacks AMQP: {lines:#?}"
        );
        let amqp = format!("127.0.0.1:{node}5672:5672");
        let amqp_long = has(&format!("published: \"{node}5672\"")) && has("target: 5672");
        assert!(
            lines.iter().any(|l| l.contains(&amqp)) || amqp_long,
            "weir-{node} does not publish {amqp}: {lines:#?}"
        );
        // The external Kafka listener is published on the host's loopback at the port
        // it advertises (Compose v1's short syntax, or v2's long one).
        let published = format!("127.0.0.1:{host_port}:{node}9092");
        let short = lines.iter().any(|l| l.contains(&published));
        let long =
            has(&format!("published: \"{host_port}\"")) && has(&format!("target: {node}9092"));
        assert!(
            short || long,
            "weir-{node} does not publish {published}: {lines:#?}"
        );
    }
}

#[test]
fn the_compose_file_is_valid() {
    let root = repo_root();
    let mut command = Command::new("docker-compose");
    command
        .arg("-f")
        .arg(root.join("deploy/compose/docker-compose.yml"))
        .args(["config", "--quiet"]);
    succeeds(command, "docker-compose config");
}

/// The secure variant (`docker-compose.secure.yml` over the base file, as
/// `deploy/README.md` runs it): every node, weir-4 too, has TLS on every listener, the
/// CA its peers are dialled with, authentication required, authorization on, the
/// bootstrap admin from the env file, and the certificates mounted read-only.
#[test]
fn the_secure_compose_variant_secures_every_node() {
    let root = repo_root();
    // What secure-setup.sh writes, as far as `config` reads it.
    let secure = tempfile::tempdir().unwrap();
    std::fs::create_dir(secure.path().join("certs")).unwrap();
    std::fs::write(
        secure.path().join("admin.env"),
        "WEIR_ADMIN_USER=admin\nWEIR_ADMIN_PASSWORD=from-the-env-file\n",
    )
    .unwrap();
    let output = Command::new("docker-compose")
        .arg("-f")
        .arg(root.join("deploy/compose/docker-compose.yml"))
        .arg("-f")
        .arg(root.join("deploy/compose/docker-compose.secure.yml"))
        .args(["--profile", "scale-out", "config"])
        .env("WEIR_SECURE_DIR", secure.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker-compose config: {e}"));
    assert!(
        output.status.success(),
        "docker-compose config of the secure variant failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let config = String::from_utf8(output.stdout).expect("UTF-8");
    let mount = format!("{}:/certs:ro", secure.path().join("certs").display());
    for node in 1..=4 {
        let lines = service(&config, &format!("weir-{node}"));
        assert!(!lines.is_empty(), "no service weir-{node} in:\n{config}");
        let has = |wanted: &str| lines.iter().any(|l| l.trim() == wanted);
        for wanted in [
            "WEIR_TLS_CERT: /certs/node.pem",
            "WEIR_TLS_KEY: /certs/node-key.pem",
            "WEIR_TLS_CA: /certs/ca.pem",
            "WEIR_AUTHENTICATION: required",
            "WEIR_AUTHORIZATION: \"on\"",
            "WEIR_ADMIN_USER: admin",
            "WEIR_ADMIN_PASSWORD: from-the-env-file",
            // AMQP only over TLS.
            "WEIR_AMQP_LISTEN: none",
            "WEIR_AMQPS_LISTEN: 0.0.0.0:5671",
            // The base file's settings are kept.
            "WEIR_LISTEN: 0.0.0.0:9292",
            &format!("WEIR_ADVERTISE: weir-{node}:9292"),
        ] {
            assert!(has(wanted), "weir-{node} lacks {wanted}: {lines:#?}");
        }
        let amqps = format!("127.0.0.1:{node}5671:5671");
        let long = has(&format!("published: \"{node}5671\"")) && has("target: 5671");
        assert!(
            lines.iter().any(|l| l.contains(&amqps)) || long,
            "weir-{node} does not publish amqps at {amqps}: {lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.trim() == format!("- {mount}")),
            "weir-{node} does not mount the certificates read-only ({mount}): {lines:#?}"
        );
    }
}

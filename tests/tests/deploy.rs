//! The deployment files in `deploy/`, checked offline in the default test run: the
//! Kubernetes manifests and the Helm chart (`deploy/k8s/validate.sh`: kubernetes-validate
//! --strict, helm lint, helm template, installed into a virtualenv of its own from PyPI)
//! and the compose file (`docker-compose config`). The compose cluster itself runs under
//! faults in `tests/docker_cluster.rs`; the static production image is exercised by
//! `deploy/docker/test-image.sh`, which builds it.

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

//! The API from another language: `tests/python/interop.py` drives a broker through
//! grpcio with its defaults (stubs generated from `proto/` at run time) and checks what a
//! Python user relies on: the reason of a whole-call error through
//! `grpc_status.rpc_status.from_call` and of a per-partition error, the idempotent
//! producer with plain records, default fetches of 10 partitions that fit grpcio's
//! 4 MiB receive limit, offset lookups by the OffsetPosition enum (UNSPECIFIED refused),
//! and ListTopics followed page by page. `tests/python/setup.sh` installs the pinned client from PyPI into
//! `tests/python/.venv` on first use.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_grpcio_client_gets_reasons_idempotence_and_fetches_within_4_mib() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let setup = root.join("tests/python/setup.sh");
    let installed = tokio::task::spawn_blocking(move || Command::new("bash").arg(setup).output())
        .await
        .unwrap()
        .expect("runs tests/python/setup.sh");
    assert!(
        installed.status.success(),
        "tests/python/setup.sh failed: {}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let python = String::from_utf8(installed.stdout)
        .unwrap()
        .trim()
        .to_owned();

    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let (script, proto) = (root.join("tests/python/interop.py"), root.join("proto"));
    let address = server.addr.to_string();
    let run = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(["--kill-after=10", "300", &python])
            .arg(script)
            .args(["--address", &address, "--proto-dir"])
            .arg(proto)
            .output()
    })
    .await
    .unwrap()
    .expect("runs interop.py");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    println!("{stdout}");
    assert!(
        run.status.success(),
        "interop.py failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("reason UNKNOWN_TOPIC"), "{stdout}");
    server.shutdown().await.unwrap();
}

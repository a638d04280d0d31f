//! The `weir` binary the tests run: `WEIR_BIN` if set, else the workspace's own, built
//! (once per test process) with the test's profile into the test's target directory, so
//! the brokers are never older than the code under test. Cargo decides what is stale; an
//! up-to-date binary costs one no-op build, and after the README's `cargo test
//! --workspace` has built the tests, the binary is up to date.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{Context, bail};

/// The path of an up-to-date `weir` binary. The first call builds it if needed (waiting
/// on cargo's lock if another build holds it); later calls return the same answer.
pub fn weir_binary() -> anyhow::Result<PathBuf> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| locate_or_build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn locate_or_build() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("WEIR_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("WEIR_BIN={} is not a file", path.display());
        }
        return Ok(path);
    }
    let exe = std::env::current_exe().context("locating the test executable")?;
    // <target>/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test executable is not in <target>/<profile>/deps")?;
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("the profile directory has no name")?
        .to_owned();
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => profile_dir
            .parent()
            .context("the profile directory has no parent")?
            .to_path_buf(),
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("weir-tests is not in a workspace")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    // What `cargo test` sets for the test itself is not the build's: a dependency's
    // build script that reads CARGO_MANIFEST_DIR (ring's) would see it change, run
    // again, and rebuild ring, rustls, tonic and every Weir crate above them, minutes
    // on every first call after a plain `cargo build`, and the plain build would undo it.
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_for_the_test) {
            build.env_remove(&name);
        }
    }
    // The workspace's integration tests, not `build -p weir-cli`: Cargo resolves the
    // features of a build's packages together, and dev-dependencies' with them when
    // tests are built, so `-p weir-cli` alone asks for other features of shared crates
    // (tokio's test-util, kafka-protocol's client side, ...) than `cargo test
    // --workspace` built, and compiled most of the tree a second time (162 s of a CI
    // run). This selection resolves as the README's test command does, so after it the
    // build is a no-op; weir-cli's `it` needs the `weir` binary, so it is built.
    build
        .current_dir(workspace)
        .args(["test", "--quiet", "--workspace", "--no-run", "--test", "it"])
        .arg("--target-dir")
        .arg(&target_dir);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        other => {
            build.args(["--profile", other]);
        }
    }
    let started = Instant::now();
    eprintln!("weir-tests: checking the weir binary ({build:?})");
    let output = build.output().context("running cargo to build weir")?;
    if !output.status.success() {
        bail!(
            "building weir failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let binary = target_dir.join(&profile).join("weir");
    if !binary.is_file() {
        bail!("cargo built weir, but {} does not exist", binary.display());
    }
    eprintln!(
        "weir-tests: {} is up to date ({:.1} s)",
        binary.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(binary)
}

/// Whether `name` is an environment variable Cargo sets for the crate under test (not
/// one of Cargo's own settings, such as `CARGO_HOME` or `CARGO_TARGET_DIR`).
fn set_for_the_test(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    NAMES.contains(&name) || name.starts_with("CARGO_PKG_") || name.starts_with("CARGO_BIN_EXE_")
}

//! `docs/ARCHITECTURE.md` is the code map: it must name every crate of the workspace,
//! every module directory inside a crate's `src/`, and every vendored crate, and every
//! repository path it names must exist. These tests fail when one is added (or renamed)
//! without the map saying what it holds, or removed while the map still points at it.
//! And each crate's integration tests stay one binary, `tests/it/main.rs`, named in the
//! map: a file directly under a crate's `tests/` would link the whole workspace into a
//! binary of its own again.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the repository root")
}

/// The directories under `dir` (recursively), relative to `dir`.
fn directories(dir: &Path, base: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            let relative = path.strip_prefix(base).expect("under base");
            out.push(relative.to_string_lossy().replace('\\', "/"));
            directories(&path, base, out);
        }
    }
}

fn subdirectories(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn the_code_map_names_every_crate_and_module_directory() {
    let root = root();
    let map = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).expect("the map");
    let mut missing = Vec::new();
    for krate in subdirectories(&root.join("crates")) {
        let name = krate.file_name().unwrap().to_string_lossy().into_owned();
        if !map.contains(&format!("`{name}`")) {
            missing.push(format!("crate `{name}`"));
        }
        let src = krate.join("src");
        let mut modules = Vec::new();
        directories(&src, &src, &mut modules);
        for module in modules {
            // As the map writes a directory: `path/` (or a file inside it, `path/x.rs`).
            if !map.contains(&format!("{module}/")) {
                missing.push(format!("module directory `{name}/src/{module}/`"));
            }
        }
    }
    for dir in subdirectories(&root.join("benches")) {
        if dir.join("Cargo.toml").exists() {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            if !map.contains(&format!("`benches/{name}`")) {
                missing.push(format!("crate `benches/{name}`"));
            }
        }
    }
    for dir in subdirectories(&root.join("vendor")) {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if !map.contains(&format!("`vendor/{name}`")) {
            missing.push(format!("vendored crate `vendor/{name}`"));
        }
    }
    for named in ["`benches/`", "`tests/`", "`fuzz/`"] {
        if !map.contains(named) {
            missing.push(named.to_owned());
        }
    }
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md does not name: {}",
        missing.join(", ")
    );
}

/// The top-level directories whose paths the map writes from the repository root.
const ROOTED: [&str; 8] = [
    "crates/", "benches/", "tests/", "fuzz/", "docs/", "deploy/", "vendor/", "proto/",
];

/// What the map writes between backticks: one word, no spaces.
fn backticked(map: &str) -> impl Iterator<Item = &str> {
    map.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
}

#[test]
fn every_path_the_code_map_names_exists() {
    let root = root();
    let map = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).expect("the map");
    let mut named = 0;
    let mut gone: Vec<&str> = Vec::new();
    for path in backticked(&map).filter(|p| ROOTED.iter().any(|r| p.starts_with(r))) {
        named += 1;
        if !root.join(path).exists() && !gone.contains(&path) {
            gone.push(path);
        }
    }
    // The map does name paths from the root: a change in how it quotes them must not
    // leave this test checking nothing.
    assert!(
        named >= 10,
        "only {named} rooted paths found in docs/ARCHITECTURE.md"
    );
    assert!(
        gone.is_empty(),
        "docs/ARCHITECTURE.md names paths that do not exist: {}",
        gone.join(", ")
    );
}

/// The directories of the workspace's crates: `crates/*`, the benches crates and
/// `tests/` (weir-tests).
fn crate_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = subdirectories(&root.join("crates"));
    dirs.push(root.join("benches"));
    dirs.extend(
        subdirectories(&root.join("benches"))
            .into_iter()
            .filter(|d| d.join("Cargo.toml").exists()),
    );
    dirs.push(root.join("tests"));
    dirs
}

#[test]
fn every_crate_has_at_most_one_integration_test_binary_and_the_map_names_it() {
    let root = root();
    let map = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).expect("the map");
    let mut wrong = Vec::new();
    let mut binaries = 0;
    for krate in crate_dirs(&root) {
        let name = krate
            .strip_prefix(&root)
            .expect("under the root")
            .display()
            .to_string();
        let manifest = std::fs::read_to_string(krate.join("Cargo.toml"))
            .unwrap_or_else(|e| panic!("reading {name}/Cargo.toml: {e}"));
        if manifest.contains("[[test]]") || manifest.contains("autotests") {
            wrong.push(format!("{name}/Cargo.toml declares its own test targets"));
        }
        let tests = krate.join("tests");
        let Ok(entries) = std::fs::read_dir(&tests) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let file = entry.file_name().to_string_lossy().into_owned();
            if path.is_file() && file.ends_with(".rs") {
                wrong.push(format!("{name}/tests/{file} is a test binary of its own"));
            } else if path.is_dir() && file != "it" && path.join("main.rs").exists() {
                wrong.push(format!(
                    "{name}/tests/{file}/main.rs is a test binary of its own"
                ));
            }
        }
        if tests.join("it").is_dir() {
            binaries += 1;
            let main = format!("{name}/tests/it/main.rs");
            if !tests.join("it/main.rs").is_file() {
                wrong.push(format!("{main} is missing"));
            } else if !map.contains(&format!("`{main}`")) {
                wrong.push(format!("{main} is not named in docs/ARCHITECTURE.md"));
            }
        }
    }
    // The crates do have integration tests: a change in where they live must not leave
    // this test checking nothing.
    assert!(binaries >= 9, "only {binaries} crates with tests/it found");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

//! `docs/ARCHITECTURE.md` is the code map: it must name every crate of the workspace,
//! every module directory inside a crate's `src/`, every source file in a crate's `src/`,
//! and every vendored crate, and every repository path it names must exist. These tests fail when one is added (or renamed)
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

/// Files their directory or crate stands for: a crate's root and a module's.
const NAMED_BY_THEIR_DIRECTORY: [&str; 3] = ["lib.rs", "main.rs", "mod.rs"];

/// The `.rs` files under `dir` (recursively), relative to `base`, sorted.
fn rust_files(dir: &Path, base: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, base, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(base).expect("under base");
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// One block of the map: a heading, a bullet with its continuation lines, a paragraph,
/// a table row, or a fenced code block (whose text is not the map's prose).
#[derive(Debug, PartialEq)]
enum Block<'a> {
    Heading(&'a str),
    Bullet(String),
    Paragraph(String),
    Other,
}

fn blocks(map: &str) -> Vec<Block<'_>> {
    let mut out = Vec::new();
    let mut open: Option<Block<'_>> = None;
    let mut fenced = false;
    for line in map.lines() {
        if line.starts_with("```") {
            out.extend(open.take());
            fenced = !fenced;
            if fenced {
                out.push(Block::Other);
            }
            continue;
        }
        if fenced {
            continue;
        }
        if line.trim().is_empty() {
            out.extend(open.take());
        } else if line.starts_with('#') {
            out.extend(open.take());
            out.push(Block::Heading(line));
        } else if line.starts_with('|') {
            out.extend(open.take());
            out.push(Block::Other);
        } else if let Some(item) = line.strip_prefix("- ") {
            out.extend(open.take());
            open = Some(Block::Bullet(item.to_owned()));
        } else {
            match &mut open {
                Some(Block::Bullet(text) | Block::Paragraph(text)) => {
                    text.push('\n');
                    text.push_str(line);
                }
                _ => open = Some(Block::Paragraph(line.to_owned())),
            }
        }
    }
    out.extend(open);
    out
}

/// The crate a code-map paragraph opens, if it starts with one's name in backticks
/// (`` `weir-cluster` (no gRPC...): `` or ``In `weir-log` (...):``).
fn opened_crate<'a>(paragraph: &'a str, crates: &[String]) -> Option<&'a str> {
    let rest = paragraph.strip_prefix("In ").unwrap_or(paragraph);
    let name = rest.strip_prefix('`')?.split('`').next()?;
    crates.iter().any(|c| c == name).then_some(name)
}

/// The bullets and paragraphs of the map, each with the crate whose code map it is in.
///
/// A crate's code map is the run of blocks from a paragraph that opens with the crate's
/// name (as above) to the next such paragraph or the next heading, inside a
/// `## Code map: ...` section whose heading names the crate in backticks.
fn code_map_blocks<'a>(map: &'a str, crates: &'a [String]) -> Vec<(&'a str, String)> {
    let mut out = Vec::new();
    let mut section: Option<&str> = None;
    let mut owner: Option<&str> = None;
    for block in blocks(map) {
        match block {
            Block::Heading(heading) => {
                owner = None;
                if heading.starts_with("## ") {
                    section = heading.starts_with("## Code map").then_some(heading);
                } else if !heading.starts_with("### ") {
                    section = None;
                }
            }
            Block::Paragraph(text) => {
                if let (Some(heading), Some(name)) = (section, opened_crate(&text, crates))
                    && heading.contains(&format!("`{name}`"))
                {
                    owner = crates.iter().find(|c| *c == name).map(String::as_str);
                }
                if let Some(name) = owner {
                    out.push((name, text));
                }
            }
            Block::Bullet(text) => {
                if let Some(name) = owner {
                    out.push((name, text));
                }
            }
            Block::Other => {}
        }
    }
    out
}

/// Whether the map names `file` (its path relative to `src/` of `krate`), by one of:
///
/// 1. its path from the repository root or from `crates/`, anywhere in backticks
///    (`` `weir-log/src/log.rs` ``);
/// 2. its path relative to `src/`, in backticks, anywhere in the crate's code map
///    (`` `segment.rs` ``, `` `replication/recovery.rs` ``);
/// 3. its path relative to a module directory, in backticks, in a bullet or paragraph of
///    the crate's code map that names that directory in backticks (a bullet naming
///    `` `quorum/` `` and `` `network.rs` ``, or `` `share/` `` and
///    `` `partition/tests.rs` ``).
///
/// Backticks make a mention deliberate (prose saying "the network" names no file), the
/// crate's code map keeps one crate's `config.rs` from counting for another's, and the
/// bullet keeps `share/filter.rs` from being named by a `filter.rs` said of `group/`.
fn names_file(krate: &str, file: &str, everywhere: &[&str], code_map: &[(&str, String)]) -> bool {
    let rooted = format!("{krate}/src/{file}");
    if everywhere
        .iter()
        .any(|t| *t == rooted || t.strip_prefix("crates/") == Some(&rooted))
    {
        return true;
    }
    let parts: Vec<&str> = file.split('/').collect();
    code_map
        .iter()
        .filter(|(owner, _)| *owner == krate)
        .any(|(_, text)| {
            let named: Vec<&str> = backticked(text).collect();
            named.contains(&file)
                || (1..parts.len()).any(|depth| {
                    let directory = format!("{}/", parts[..depth].join("/"));
                    let rest = parts[depth..].join("/");
                    named.contains(&directory.as_str()) && named.contains(&rest.as_str())
                })
        })
}

#[test]
fn the_code_map_names_every_source_file() {
    let root = root();
    let map = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).expect("the map");
    let crates: Vec<String> = subdirectories(&root.join("crates"))
        .iter()
        .map(|c| c.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let everywhere: Vec<&str> = backticked(&map).collect();
    let code_map = code_map_blocks(&map, &crates);
    let mut checked = 0;
    let mut missing = Vec::new();
    for krate in &crates {
        let src = root.join("crates").join(krate).join("src");
        let mut files = Vec::new();
        rust_files(&src, &src, &mut files);
        files.sort();
        for file in files {
            let name = file.rsplit('/').next().expect("a file name");
            if NAMED_BY_THEIR_DIRECTORY.contains(&name) {
                continue;
            }
            checked += 1;
            if !names_file(krate, &file, &everywhere, &code_map) {
                missing.push(format!("crates/{krate}/src/{file}"));
            }
        }
    }
    // The workspace has a couple of hundred source files: finding few means the walk
    // went wrong, and the test would pass having checked nothing.
    assert!(
        checked >= 100,
        "only {checked} source files found under crates/*/src"
    );
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md does not name these {} source files (name each in its \
         crate's code map with what it holds: by its path under src/, or by its file name \
         in the bullet or paragraph that names its directory):\n  {}",
        missing.len(),
        missing.join("\n  ")
    );
}

#[test]
fn a_file_counts_only_where_its_crate_and_directory_are_named() {
    let crates = vec!["weir-a".to_owned(), "weir-b".to_owned()];
    let map = "\
## Code map: `weir-a` and `weir-b`

`weir-a` (entry: `A::new`):

- `quorum/`: the quorum, `network.rs` its seam; `share/` and `partition/tests.rs`.
- `group/`: `filter.rs` the group's filter.
- `config.rs`: settings.

`weir-b`:

- `weir-a/src/rooted.rs` named from the root, `prose.rs` here.

## Elsewhere

`weir-a` again: `elsewhere.rs` is not in a code map.
";
    let everywhere: Vec<&str> = backticked(map).collect();
    let code_map = code_map_blocks(map, &crates);
    let named = |krate: &str, file: &str| names_file(krate, file, &everywhere, &code_map);
    assert!(named("weir-a", "quorum/network.rs"));
    assert!(named("weir-a", "share/partition/tests.rs"));
    assert!(named("weir-a", "group/filter.rs"));
    assert!(named("weir-a", "config.rs"));
    assert!(named("weir-a", "rooted.rs"));
    assert!(named("weir-b", "prose.rs"));
    // Another directory's file of the same name, another crate's, and outside a code map.
    assert!(!named("weir-a", "share/filter.rs"));
    assert!(!named("weir-b", "config.rs"));
    assert!(!named("weir-a", "prose.rs"));
    assert!(!named("weir-a", "elsewhere.rs"));
    assert!(!named("weir-a", "quorum/handle.rs"));
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

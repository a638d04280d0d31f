//! The gRPC adapter's one error table stays one: no `tonic::Status` is built outside
//! `weir-grpc/src/status.rs` (a site returns a core reason, and `status.rs` maps it), by
//! the adapter or by the process that assembles it (this crate), and the gRPC
//! authentication builds no refusal of its own (it carries the core's).

use std::path::{Path, PathBuf};

/// Files allowed to build a status, with why.
const EXCEPTIONS: [&str; 1] = [
    // The table itself.
    "status.rs",
];

/// `Status::` functions that read a status rather than build one.
const READERS: [&str; 2] = ["from_header_map", "from_error"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `Status::name(` sites in `text` before its `#[cfg(test)]` module, as (line, name).
fn constructions(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        if line.trim_start().starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("Status::") {
            let after = &rest[at + "Status::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `ServingStatus::NotServing` and the like are enum values, not statuses.
            let preceded_by_ident = rest[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            if !preceded_by_ident
                && name.starts_with(|c: char| c.is_ascii_lowercase())
                && !READERS.contains(&name.as_str())
            {
                found.push((i + 1, name));
            }
            rest = after;
        }
    }
    found
}

#[test]
fn no_status_is_built_outside_status_rs() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&here.join("../weir-grpc/src"), &mut files);
    rust_files(&here.join("src"), &mut files);
    assert!(files.len() > 10, "found the sources: {files:?}");
    let mut offenders = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if EXCEPTIONS.contains(&name.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, ctor) in constructions(&text) {
            offenders.push(format!("{}:{line}: Status::{ctor}", file.display()));
        }
    }
    assert!(
        offenders.is_empty(),
        "build these through status.rs (a core reason, status::invalid, status::wire or \
         status::internal):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_scanner_finds_a_construction_and_skips_readers_enums_and_tests() {
    let text = "let a = Status::invalid_argument(\"x\");\n\
                let b = Status::from_header_map(h);\n\
                let c = tonic_health::ServingStatus::NotServing;\n\
                // Status::internal in a comment\n\
                #[cfg(test)]\n\
                let d = Status::internal(\"test\");\n";
    assert_eq!(constructions(text), [(1, "invalid_argument".to_owned())]);
}

//! The directory a run writes in: a fresh temporary directory under `--dir`, removed when
//! the run ends (or fails), so runs never see each other's files.

use std::fs;
use std::path::Path;

use anyhow::Context;
use tempfile::TempDir;

/// Creates `parent` if needed and a fresh directory named `<prefix>XXXXXX` inside it.
pub fn create(parent: &Path, prefix: &str) -> anyhow::Result<TempDir> {
    fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    // An absolute path, so progress lines and errors say exactly where the files are.
    let parent =
        fs::canonicalize(parent).with_context(|| format!("resolve {}", parent.display()))?;
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&parent)
        .with_context(|| format!("create a run directory in {}", parent.display()))
}

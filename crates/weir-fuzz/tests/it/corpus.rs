//! Replays every committed fuzz input through its target function in the default test
//! run, so CI checks them without cargo-fuzz: the seed corpora (`fuzz/seeds/<target>/`)
//! and the inputs that once failed (`fuzz/regressions/<target>/`).

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Runs every file under `dir/<target>/` through its target; returns how many ran.
fn replay(dir: &Path) -> usize {
    let mut ran = 0;
    for target in weir_fuzz::TARGETS {
        let Ok(entries) = std::fs::read_dir(dir.join(target.name)) else {
            continue;
        };
        let mut files: Vec<_> = entries
            .map(|e| e.expect("directory entry").path())
            .collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).expect("read corpus file");
            eprintln!("{}: {}", target.name, file.display());
            (target.run)(&data);
            ran += 1;
        }
    }
    ran
}

#[test]
fn every_seed_input_runs_clean() {
    let seeds = fuzz_dir().join("seeds");
    for target in weir_fuzz::TARGETS {
        assert!(
            seeds.join(target.name).is_dir(),
            "target {} has no seed corpus",
            target.name
        );
    }
    assert!(replay(&seeds) >= weir_fuzz::TARGETS.len());
}

#[test]
fn every_regression_input_runs_clean() {
    replay(&fuzz_dir().join("regressions"));
}

#[test]
fn every_target_has_a_libfuzzer_target() {
    for target in weir_fuzz::TARGETS {
        let path = fuzz_dir().join(format!("fuzz_targets/{}.rs", target.name));
        let source =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(source.contains(&format!("weir_fuzz::{}(", target.name)));
    }
}

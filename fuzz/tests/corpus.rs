//! Replays the committed corpus of every fuzz target (seeds and the crash
//! inputs kept from fuzzing) through the targets' checks, on the stable
//! toolchain: `cargo test --manifest-path fuzz/Cargo.toml`.
//!
//! `SWITCHYARD_FUZZ_WRITE_SEEDS=1` first (re)writes the seed files
//! `corpus/<target>/seed-<n>` from the crates' own encoders.

use std::path::PathBuf;

use switchyard_fuzz::{check, seeds, TARGETS};

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

#[test]
fn every_corpus_input_passes_its_target() {
    let write = std::env::var_os("SWITCHYARD_FUZZ_WRITE_SEEDS").is_some();
    for target in TARGETS {
        let dir = corpus_dir(target);
        if write {
            std::fs::create_dir_all(&dir).unwrap();
            for (i, seed) in seeds(target).iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
            }
        }
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(target, &data));
            assert!(outcome.is_ok(), "{target}: {path:?} fails its check");
            n += 1;
        }
        assert!(n > 0, "{target} has no corpus");
    }
}

#[test]
fn every_seed_passes_its_target() {
    for target in TARGETS {
        let seeds = seeds(target);
        assert!(seeds.len() >= 3, "{target}: a handful of seeds");
        for s in seeds {
            check(target, &s);
        }
    }
}

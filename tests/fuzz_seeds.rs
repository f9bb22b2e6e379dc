//! Every seed under `fuzz/seeds` replayed through its fuzz target's checks, as an ordinary test: the checks are
//! the targets' whole bodies (`fuzz/src/lib.rs`, included here as it is), so what the fuzzer holds tracehop to is
//! also held on every test run, on stable, without `cargo fuzz`.

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod wire;

use std::path::{Path, PathBuf};

/// The seeds of one folder of `fuzz/seeds`, sorted by name.
fn seeds(folder: &str) -> Vec<PathBuf> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(folder);
    let mut seeds: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|error| panic!("{}: {error}", folder.display()))
        .map(|entry| entry.expect("a readable folder entry").path())
        .collect();
    seeds.sort();
    seeds
}

/// Runs every seed of `folder` through `check`, each on its own so one failure does not hide the others, and
/// fails naming the seeds that failed.
fn replay(folder: &str, check: fn(&[u8])) {
    let seeds = seeds(folder);
    assert!(!seeds.is_empty(), "fuzz/seeds/{folder} holds seeds");
    let failed: Vec<String> = seeds
        .iter()
        .filter(|seed| {
            let data = std::fs::read(seed).unwrap_or_else(|error| panic!("{}: {error}", seed.display()));
            std::panic::catch_unwind(|| check(&data)).is_err()
        })
        .map(|seed| seed.display().to_string())
        .collect();
    assert_eq!(failed, Vec::<String>::new(), "seeds whose checks failed (their panics are printed above)");
}

#[test]
fn every_seed_folder_belongs_to_a_target_replayed_here() {
    let mut folders: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds"))
        .expect("fuzz/seeds")
        .map(|entry| entry.expect("a readable folder entry").file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    assert_eq!(folders, ["amqp", "batch", "headers", "nats"]);
}

#[test]
fn kafka_extract_seeds_are_read_as_the_w3c_oracles_read_them() {
    replay("headers", wire::check_kafka_extract);
}

#[test]
fn kafka_inject_seeds_keep_other_headers_and_round_trip_the_producer_context() {
    replay("headers", wire::check_kafka_inject);
}

#[test]
fn amqp_extract_seeds_are_read_as_the_w3c_oracles_read_them() {
    replay("amqp", wire::check_amqp_extract);
}

#[test]
fn nats_extract_seeds_are_read_as_the_w3c_oracles_and_adr_15_read_them() {
    replay("nats", wire::check_nats_extract);
}

#[test]
fn batch_links_seeds_link_the_first_valid_contexts_and_count_the_rest() {
    replay("batch", wire::check_batch_links);
}

#![no_main]
//! Fuzz target: see `switchyard_fuzz::cluster_records` for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::cluster_records(data));

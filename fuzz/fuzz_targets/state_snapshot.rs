#![no_main]
//! Fuzz target: see `switchyard_fuzz::state_snapshot` for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::state_snapshot(data));

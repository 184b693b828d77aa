#![no_main]
//! Fuzz target: see `switchyard_fuzz::history_record` for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::history_record(data));

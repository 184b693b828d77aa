#![no_main]
//! Fuzz target: see `switchyard_fuzz::upload_name` for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::upload_name(data));

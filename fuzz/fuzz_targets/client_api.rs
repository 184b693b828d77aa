#![no_main]
//! Fuzz target: see `switchyard_fuzz::client_api` for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::client_api(data));

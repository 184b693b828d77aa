#![no_main]
//! Fuzz target: see `switchyard_fuzz::uplink_envelope` for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::uplink_envelope(data));

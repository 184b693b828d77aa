#![no_main]
//! Fuzz target: see `switchyard_fuzz::ws_inbound` for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::ws_inbound(data));

#![no_main]
//! Fuzz target: see `switchyard_fuzz::router_packet` for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::router_packet(data));

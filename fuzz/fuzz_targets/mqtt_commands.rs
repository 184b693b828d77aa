#![no_main]
//! Fuzz target: see `switchyard_fuzz::mqtt_commands` for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::mqtt_commands(data));

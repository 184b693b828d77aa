#![no_main]
//! Fuzz target: see `switchyard_fuzz::data_types` for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::data_types(data));

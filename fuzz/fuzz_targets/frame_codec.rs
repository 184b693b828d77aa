#![no_main]
//! Fuzz target: see `switchyard_fuzz::frame_codec` for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::frame_codec(data));

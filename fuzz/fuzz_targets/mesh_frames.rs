#![no_main]
//! Fuzz target: see `switchyard_fuzz::mesh_frames` for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::mesh_frames(data));

#![no_main]
//! Fuzz target `manifest`: the body is `pfai::fuzzing::manifest`, replayed by `cargo test` too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pfai::fuzzing::manifest(data));

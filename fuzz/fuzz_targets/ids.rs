#![no_main]
//! Fuzz target `ids`: the body is `pfai::fuzzing::ids`, replayed by `cargo test` too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pfai::fuzzing::ids(data));

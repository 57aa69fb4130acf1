#![no_main]
//! Fuzz target `ranges`: the body is `pfai::fuzzing::ranges`, replayed by `cargo test` too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pfai::fuzzing::ranges(data));

#![no_main]
//! Fuzz target `codec`: the body is `pfai::fuzzing::codec`, replayed by `cargo test` too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pfai::fuzzing::codec(data));

#![no_main]
//! Fuzz target `push_commands`: the body is `pfai::fuzzing::push_commands`, replayed by `cargo test` too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pfai::fuzzing::push_commands(data));

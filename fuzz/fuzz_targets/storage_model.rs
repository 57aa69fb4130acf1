#![no_main]
//! Fuzz target `storage_model`: the body is `pfai::fuzzing::storage_model`, replayed by `cargo test` too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pfai::fuzzing::storage_model(data));

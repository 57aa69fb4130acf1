#![no_main]
//! Fuzz target `bundle_reader`: the body is `pfai::fuzzing::bundle_reader`, replayed by `cargo test` too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pfai::fuzzing::bundle_reader(data));

#![no_main]
//! Fuzz target `multipart_upload`: the body is `pfai::fuzzing::multipart_upload`, replayed by `cargo test` too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pfai::fuzzing::multipart_upload(data));

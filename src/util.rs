//! Small helpers with no better home: randomness, clocks, hashing of secrets.

/// Fills `buf` from the OS CSPRNG. The OS generator failing is unrecoverable for a server that
/// mints secrets, so it aborts rather than hand out predictable bytes.
pub fn fill_random(buf: &mut [u8]) {
    if let Err(e) = getrandom::fill(buf) {
        panic!("the operating system's random generator failed: {e}");
    }
}

/// Seconds since the Unix epoch, the only time unit stored in records.
pub fn now_unix() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// RFC 3339 UTC rendering of a stored timestamp, as every API response shows time.
pub fn rfc3339(unix: i64) -> String {
    match jiff::Timestamp::from_second(unix) {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => "1970-01-01T00:00:00Z".to_owned(),
    }
}

/// SHA-256 of a secret, hex: how tokens and session ids are stored.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

//! Validated identifiers. Every name, digest or reference that reaches storage, a filesystem path,
//! a git command line or an HTTP header is one of these types, and each can only be built by
//! parsing. This module depends on nothing else in the crate.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why an identifier was refused; the message is shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {reason}")]
pub struct InvalidId {
    /// Which kind of identifier (e.g. "digest", "tag name").
    pub kind: &'static str,
    /// A human sentence saying what is wrong.
    pub reason: String,
}

fn invalid(kind: &'static str, reason: impl Into<String>) -> InvalidId {
    InvalidId {
        kind,
        reason: reason.into(),
    }
}

/// The hash algorithms the registry accepts in digests (OCI image-spec "Digests").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Algorithm {
    /// `sha256:` + 64 lowercase hex.
    Sha256,
    /// `sha512:` + 128 lowercase hex.
    Sha512,
    /// `blake3:` + 64 lowercase hex: BLAKE3's default 256-bit output, as registered by
    /// go-digest's `blake3` package. Several times faster than SHA-256 on one core.
    Blake3,
}

impl Algorithm {
    /// The algorithm's name as written in a digest.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
            Algorithm::Blake3 => "blake3",
        }
    }

    /// Length of the encoded hex part.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
            Algorithm::Blake3 => 64,
        }
    }

    /// Parses an algorithm name as used by `?digest-algorithm=`.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        match s {
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            "blake3" => Ok(Algorithm::Blake3),
            other => Err(invalid(
                "digest",
                format!("unsupported algorithm {:?}", truncate(other)),
            )),
        }
    }
}

/// An incremental hash of one of the accepted algorithms: the registry's upload writer, fsck,
/// asset uploads (SHA-256 and BLAKE3 in one pass) and the bench client share it.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256 (uses the CPU's SHA instructions where present).
    Sha256(sha2::Sha256),
    /// SHA-512.
    Sha512(sha2::Sha512),
    /// BLAKE3 (boxed: its state is ~2 KiB, the others' ~200 bytes).
    Blake3(Box<blake3::Hasher>),
    /// Two algorithms in one pass over the bytes (an asset records SHA-256 and BLAKE3);
    /// `digest` is the first one's.
    Pair(Box<(Hasher, Hasher)>),
}

impl Hasher {
    /// A fresh hasher.
    pub fn new(alg: Algorithm) -> Self {
        use sha2::Digest as _;
        match alg {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
            Algorithm::Blake3 => Hasher::Blake3(Box::new(blake3::Hasher::new())),
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        use sha2::Digest as _;
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
            Hasher::Blake3(h) => {
                h.update(data);
            }
            Hasher::Pair(p) => {
                p.0.update(data);
                p.1.update(data);
            }
        }
    }

    /// The digest of everything fed so far (the hasher is not consumed).
    pub fn digest(&self) -> Digest {
        use sha2::Digest as _;
        match self {
            Hasher::Sha256(h) => Digest::from_raw(Algorithm::Sha256, &h.clone().finalize()),
            Hasher::Sha512(h) => Digest::from_raw(Algorithm::Sha512, &h.clone().finalize()),
            Hasher::Blake3(h) => Digest::from_raw(Algorithm::Blake3, h.finalize().as_bytes()),
            Hasher::Pair(p) => p.0.digest(),
        }
    }

    /// Hashes with `first` and `second` at once.
    pub fn pair(first: Algorithm, second: Algorithm) -> Self {
        Hasher::Pair(Box::new((Hasher::new(first), Hasher::new(second))))
    }

    /// The second digest of a `pair` (`None` for a single hasher).
    pub fn second_digest(&self) -> Option<Digest> {
        match self {
            Hasher::Pair(p) => Some(p.1.digest()),
            _ => None,
        }
    }

    /// Hashes a whole file from `start` on (used to resume after a restart, and by fsck).
    pub fn feed_file(&mut self, file: &mut std::fs::File, start: u64) -> std::io::Result<u64> {
        use std::io::{Read, Seek};
        file.seek(std::io::SeekFrom::Start(start))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut n_total = 0;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok(n_total);
            }
            self.update(&buf[..n]);
            n_total += n as u64;
        }
    }
}

/// A content digest, `algorithm ":" encoded`, restricted to the registered algorithms and to
/// lowercase hex. Because the hex is checked, a `Digest` is safe to join into a filesystem path.
///
/// Grammar (image-spec): `digest ::= algorithm ":" encoded`, with `encoded ::= [a-f0-9]{64}` for
/// sha256 and blake3, `[a-f0-9]{128}` for sha512.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Parses and validates a digest string.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| invalid("digest", "expected <algorithm>:<hex>"))?;
        let algorithm = Algorithm::parse(alg)?;
        if hex.len() != algorithm.hex_len() {
            return Err(invalid(
                "digest",
                format!(
                    "{} digests have {} hex characters, got {}",
                    algorithm.name(),
                    algorithm.hex_len(),
                    hex.len()
                ),
            ));
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(invalid("digest", "the encoded part must be lowercase hex"));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_owned(),
        })
    }

    /// Builds a digest from raw hash bytes.
    pub fn from_raw(algorithm: Algorithm, raw: &[u8]) -> Self {
        Digest {
            algorithm,
            hex: hex::encode(raw),
        }
    }

    /// SHA-256 of `data`, the digest of an in-memory document such as a manifest.
    pub fn sha256_of(data: &[u8]) -> Self {
        use sha2::Digest as _;
        Self::from_raw(Algorithm::Sha256, &sha2::Sha256::digest(data))
    }

    /// Digest of `data` with this algorithm.
    pub fn of(algorithm: Algorithm, data: &[u8]) -> Self {
        use sha2::Digest as _;
        match algorithm {
            Algorithm::Sha256 => Self::sha256_of(data),
            Algorithm::Sha512 => Self::from_raw(algorithm, &sha2::Sha512::digest(data)),
            Algorithm::Blake3 => Self::from_raw(algorithm, blake3::hash(data).as_bytes()),
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The validated lowercase hex part.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl TryFrom<String> for Digest {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, InvalidId> {
        Digest::parse(&s)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.to_string()
    }
}

/// The conversions every string-backed id shares: `Display` (the validated text), `Debug` (the
/// text quoted), and the `TryFrom<String>`/`Into<String>` pair serde uses, which parses on the
/// way in so a stored or received value is never unvalidated.
macro_rules! string_id {
    ($t:ident) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
        impl TryFrom<String> for $t {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                $t::parse(&s)
            }
        }
        impl From<$t> for String {
            fn from(s: $t) -> String {
                s.0
            }
        }
    };
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// Checks one path component of the OCI name grammar:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn is_oci_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_lower_alnum(b[0]) || !is_lower_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_lower_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or "-+", followed by an alphanumeric.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !is_lower_alnum(b[i]) {
            return false;
        }
    }
    true
}

/// The name of a user, an organization or a repository: one OCI path component, at most 64
/// characters, so that `<owner>/<repo>` is always a valid OCI repository name and a safe path
/// component (no `/`, no `..`, no leading dot).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slug(String);

impl Slug {
    /// Parses an owner or repository name.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        const KIND: &str = "name";
        if s.is_empty() || s.len() > 64 {
            return Err(invalid(KIND, "must be 1 to 64 characters"));
        }
        if !is_oci_component(s) {
            return Err(invalid(
                KIND,
                format!(
                    "{:?} must be lowercase letters and digits, separated by single '.', '_', '__' or '-'",
                    truncate(s)
                ),
            ));
        }
        Ok(Slug(s.to_owned()))
    }

    /// The validated name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_id!(Slug);

/// A forge repository, `<owner>/<repo>`: the unit of access control for REST, git and `/v2/`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RepoPath {
    /// The user or organization owning it.
    pub owner: Slug,
    /// The repository name.
    pub name: Slug,
}

impl RepoPath {
    /// Parses from the two path segments.
    pub fn new(owner: &str, name: &str) -> Result<Self, InvalidId> {
        Ok(RepoPath {
            owner: Slug::parse(owner)?,
            name: Slug::parse(name)?,
        })
    }

    /// Parses the path of a repository about to be created. On top of `new`, the name must not
    /// end in `.git`: git URLs append `.git` themselves, so `x.git` would be cloned as
    /// `x.git.git` and could never be reached as `/owner/x.git`.
    pub fn new_repo(owner: &str, name: &str) -> Result<Self, InvalidId> {
        if name.ends_with(".git") {
            return Err(invalid(
                "repository name",
                "must not end in \".git\" (git URLs add it)",
            ));
        }
        Self::new(owner, name)
    }

    /// `owner/repo`, the key used in storage.
    pub fn key(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    /// Parses `owner/repo`.
    pub fn parse_key(s: &str) -> Result<Self, InvalidId> {
        let (o, n) = s
            .split_once('/')
            .ok_or_else(|| invalid("repository", "expected <owner>/<repo>"))?;
        Self::new(o, n)
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}
impl fmt::Debug for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// An OCI repository name, `<owner>/<repo>[/<path>...]` (distribution-spec grammar:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`, at most 255
/// characters). The first two components name the forge repository that governs access.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OciName(String);

impl OciName {
    /// Parses and validates an OCI name.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        const KIND: &str = "repository name";
        if s.is_empty() || s.len() > 255 {
            return Err(invalid(KIND, "must be 1 to 255 characters"));
        }
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() < 2 {
            return Err(invalid(KIND, "must be <owner>/<repo>[/<path>...]"));
        }
        if !parts.iter().all(|p| is_oci_component(p)) {
            return Err(invalid(
                KIND,
                "components must be lowercase alphanumerics separated by '.', '_', '__' or '-'",
            ));
        }
        RepoPath::new(parts[0], parts[1])?;
        Ok(OciName(s.to_owned()))
    }

    /// The forge repository this image belongs to.
    pub fn repo(&self) -> RepoPath {
        let mut it = self.0.split('/');
        let owner = it.next().unwrap_or_default();
        let name = it.next().unwrap_or_default();
        // Both components were validated by `parse`.
        RepoPath {
            owner: Slug(owner.to_owned()),
            name: Slug(name.to_owned()),
        }
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_id!(OciName);

/// An OCI tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OciTag(String);

impl OciTag {
    /// Parses an OCI tag.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 128
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b[1..]
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
        if ok {
            Ok(OciTag(s.to_owned()))
        } else {
            Err(invalid(
                "tag",
                "must match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}",
            ))
        }
    }

    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_id!(OciTag);

/// A manifest reference: a tag or a digest (a reference containing `:` must be a digest).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// By tag.
    Tag(OciTag),
    /// By content digest.
    Digest(Digest),
}

impl Reference {
    /// Parses a `<reference>` path segment.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        if s.contains(':') {
            Digest::parse(s).map(Reference::Digest)
        } else {
            OciTag::parse(s).map(Reference::Tag)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

/// A git tag's short name (what follows `refs/tags/`), checked against the rules of
/// `git check-ref-format` and, because the system `git` is invoked, never starting with `-`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GitTagName(String);

impl GitTagName {
    /// Parses a tag name.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        const KIND: &str = "tag name";
        if s.is_empty() || s.len() > 255 {
            return Err(invalid(KIND, "must be 1 to 255 bytes"));
        }
        if s.starts_with('-') {
            return Err(invalid(KIND, "must not start with '-'"));
        }
        if s == "@" || s == "HEAD" {
            return Err(invalid(KIND, format!("{s:?} is reserved")));
        }
        if s.starts_with("refs/") {
            return Err(invalid(KIND, "give the short name, without refs/"));
        }
        if s.contains("..") || s.contains("@{") || s.contains("//") {
            return Err(invalid(KIND, "must not contain '..', '@{' or '//'"));
        }
        if s.starts_with('/') || s.ends_with('/') || s.ends_with('.') {
            return Err(invalid(
                KIND,
                "must not start or end with '/' or end with '.'",
            ));
        }
        for c in s.chars() {
            if c.is_control() || c == ' ' || "~^:?*[\\".contains(c) {
                return Err(invalid(
                    KIND,
                    "must not contain spaces, control characters or any of ~ ^ : ? * [ \\",
                ));
            }
        }
        for comp in s.split('/') {
            if comp.starts_with('.') || comp.ends_with(".lock") {
                return Err(invalid(
                    KIND,
                    "no component may start with '.' or end with '.lock'",
                ));
            }
        }
        Ok(GitTagName(s.to_owned()))
    }

    /// The short name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The full ref name, `refs/tags/<name>`.
    pub fn full_ref(&self) -> String {
        format!("refs/tags/{}", self.0)
    }
}

string_id!(GitTagName);

/// The display name of a release asset. It is never used as a path on its own (files are named
/// `<asset-id>-<name>` under a validated directory), but it is still refused when it could
/// mislead: separators, `.`/`..`, control and bidi-override characters, over 255 bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AssetName(String);

impl AssetName {
    /// Parses an asset name.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        const KIND: &str = "asset name";
        if s.is_empty() || s.len() > 255 {
            return Err(invalid(KIND, "must be 1 to 255 bytes"));
        }
        if s == "." || s == ".." || s.starts_with("..") {
            return Err(invalid(KIND, "must not be '.' or start with '..'"));
        }
        if s.trim() != s {
            return Err(invalid(KIND, "must not start or end with whitespace"));
        }
        for c in s.chars() {
            if c == '/' || c == '\\' {
                return Err(invalid(KIND, "must not contain '/' or '\\'"));
            }
            if c.is_control() {
                return Err(invalid(KIND, "must not contain control characters"));
            }
            if matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
            {
                return Err(invalid(KIND, "must not contain bidirectional controls"));
            }
        }
        Ok(AssetName(s.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_id!(AssetName);

/// An upload session id: a UUID in its hyphenated lowercase form, safe as a file name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UploadId(String);

impl UploadId {
    /// Parses a session id from a URL.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let ok = s.len() == 36
            && s.bytes().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => b == b'-',
                _ => matches!(b, b'0'..=b'9' | b'a'..=b'f'),
            });
        if ok {
            Ok(UploadId(s.to_owned()))
        } else {
            Err(invalid("upload id", "not a valid session id"))
        }
    }

    /// A fresh random id (UUID v4 layout).
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        crate::util::fill_random(&mut b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex::encode(b);
        UploadId(format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        ))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_id!(UploadId);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn digest_rejects_hostile_forms() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert!(Digest::parse(&good).is_ok());
        for bad in [
            "sha256:../../x".to_string(),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha256:{}", "a".repeat(65)),
            format!("md5:{}", "a".repeat(32)),
            String::new(),
            "sha256:".into(),
            "%2e%2e".into(),
        ] {
            assert!(Digest::parse(&bad).is_err(), "{bad}");
        }
        assert!(Digest::parse(&format!("sha512:{}", "0".repeat(128))).is_ok());
        assert!(Digest::parse(&format!("blake3:{}", "0".repeat(64))).is_ok());
        assert!(Digest::parse(&format!("blake3:{}", "0".repeat(128))).is_err());
        assert!(Digest::parse(&format!("BLAKE3:{}", "0".repeat(64))).is_err());
    }

    #[test]
    fn blake3_digests_match_the_reference_vectors_whole_and_incremental() {
        // BLAKE3 of the empty input and of "abc" (the reference implementation's vectors).
        let empty = "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
        let abc = "blake3:6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85";
        assert_eq!(Digest::of(Algorithm::Blake3, b"").to_string(), empty);
        assert_eq!(Digest::of(Algorithm::Blake3, b"abc").to_string(), abc);
        let mut h = Hasher::new(Algorithm::Blake3);
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.digest().to_string(), abc);
        // A pair hashes both in one pass; `digest` is the first.
        let mut p = Hasher::pair(Algorithm::Sha256, Algorithm::Blake3);
        p.update(b"abc");
        assert_eq!(p.digest(), Digest::sha256_of(b"abc"));
        assert_eq!(
            p.second_digest().map(|d| d.to_string()).as_deref(),
            Some(abc)
        );
    }

    #[test]
    fn oci_names_follow_the_grammar() {
        for ok in ["a/b", "acme/app/web", "a-b/c__d", "a.b/c--d"] {
            assert!(OciName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a",
            "../x",
            "a/../../b",
            "A/b",
            "a//b",
            "a/b/",
            "%2e%2e/x",
            "a/b%2fc",
            "a/_b",
            "a/b.",
        ] {
            assert!(OciName::parse(bad).is_err(), "{bad}");
        }
        assert!(OciName::parse(&format!("a/{}", "b".repeat(254))).is_err());
    }

    #[test]
    fn oci_tags() {
        assert!(OciTag::parse(&"a".repeat(128)).is_ok());
        assert!(OciTag::parse(&"a".repeat(129)).is_err());
        for bad in [".a", "-a", "a:b", ""] {
            assert!(OciTag::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn git_tag_names_follow_check_ref_format() {
        for ok in ["v1.2.3", "release/2024-01", "CON", "v1.0.0-rc.1"] {
            assert!(GitTagName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "..",
            "a..b",
            "a@{b",
            "x.lock",
            "-rf",
            "a\u{7}",
            "a b",
            "a~",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[",
            "a\\b",
            "/a",
            "a/",
            "a//b",
            "HEAD",
            "refs/heads/main",
            ".a",
            "a/.b",
            "a.",
        ] {
            assert!(GitTagName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn asset_names_cannot_escape() {
        for bad in [
            "../../etc/passwd",
            "a/b",
            "..",
            ".",
            "",
            "a\0b",
            "a\r\nb",
            "a\u{202E}b",
            "a\\b",
        ] {
            assert!(AssetName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(AssetName::parse(&"x".repeat(256)).is_err());
        assert!(
            AssetName::parse("%2e%2e%2f").is_ok(),
            "literal percent signs are harmless"
        );
        assert!(AssetName::parse("pfai-linux-amd64.tar.gz").is_ok());
    }

    proptest! {
        #[test]
        fn digest_roundtrips(raw in proptest::collection::vec(any::<u8>(), 32)) {
            let d = Digest::from_raw(Algorithm::Sha256, &raw);
            prop_assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
        }

        #[test]
        fn parsers_never_panic(s in ".{0,300}") {
            let _ = Digest::parse(&s);
            let _ = OciName::parse(&s);
            let _ = OciTag::parse(&s);
            let _ = GitTagName::parse(&s);
            let _ = AssetName::parse(&s);
            let _ = Reference::parse(&s);
            let _ = UploadId::parse(&s);
        }

        #[test]
        fn valid_oci_names_are_safe_paths(s in "[a-z0-9._/-]{1,40}") {
            if let Ok(n) = OciName::parse(&s) {
                prop_assert!(!n.as_str().split('/').any(|c| c.is_empty() || c == "." || c == ".."));
            }
        }

        #[test]
        fn upload_ids_roundtrip(_x in 0u8..10) {
            let id = UploadId::random();
            prop_assert_eq!(UploadId::parse(id.as_str()).unwrap(), id);
        }
    }
}

/// A role on a repository; the order is the order of power (`read < write < admin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Clone, pull, see published releases.
    Read = 1,
    /// Push, pull, manage releases, assets and unprotected tags.
    Write = 2,
    /// Everything, including tag-protection rules and protected tags.
    Admin = 3,
}

impl Role {
    /// Parses `read`, `write` or `admin`.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        match s {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            _ => Err(invalid("role", "must be read, write or admin")),
        }
    }

    /// The byte stored in membership tables.
    pub fn to_byte(self) -> u8 {
        self as u8
    }

    /// Reads a stored byte; unknown values grant nothing.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Role::Read),
            2 => Some(Role::Write),
            3 => Some(Role::Admin),
            _ => None,
        }
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

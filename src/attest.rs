//! Release attestations, the pure part shared by the server (which signs) and the CLI (which
//! verifies, possibly offline): an in-toto Statement v1 about a release, serialized as
//! canonical JSON, in a DSSE envelope signed with Ed25519. No I/O here, so a verifier needs
//! nothing but the envelope bytes and a public key.
//!
//! The format (also in the README, for third-party verifiers):
//! - Statement: `{"_type": STATEMENT_TYPE, "subject": [{"name", "digest": {"sha256": hex}}],
//!   "predicateType": PREDICATE_TYPE, "predicate": {repository, tag, commit, publisher,
//!   publishedAt}}`, one subject per asset, sorted by name.
//! - Canonical JSON: object keys sorted by their UTF-8 bytes, no insignificant whitespace,
//!   strings escaped as serde_json does (only `"`, `\` and control characters). A verifier never
//!   needs to re-canonicalize: the signature covers the payload bytes as sent.
//! - DSSE: `{"payloadType": PAYLOAD_TYPE, "payload": base64(statement), "signatures":
//!   [{"keyid", "sig": base64(ed25519(PAE))}]}` where PAE is
//!   `"DSSEv1" SP len(type) SP type SP len(body) SP body`, lengths in ASCII decimal.
//! - Key id: lowercase hex SHA-256 of the raw 32-byte Ed25519 public key.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The in-toto Statement type this module writes and accepts.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate type of a pfai release attestation.
pub const PREDICATE_TYPE: &str = "https://pfai.dev/attestation/release/v1";
/// The DSSE payload type of an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The only key algorithm used (named in the key listing).
pub const ALGORITHM: &str = "ed25519";

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Why an attestation could not be made or did not verify; each message names the mismatch so
/// the CLI can print it as is.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// The envelope or statement is not what this format says.
    #[error("malformed attestation: {0}")]
    Malformed(String),
    /// The key material is unusable.
    #[error("unusable key: {0}")]
    Key(String),
    /// No signature verifies with any of the given keys.
    #[error("the attestation signature does not verify with {0}")]
    BadSignature(String),
}

/// One asset as the statement names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The asset's file name.
    pub name: String,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
}

/// What the predicate records about the release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Predicate {
    /// `owner/repo`.
    pub repository: String,
    /// The release's git tag.
    pub tag: String,
    /// The full commit SHA the tag pointed at when published.
    pub commit: String,
    /// The username who published it.
    pub publisher: String,
    /// RFC 3339 UTC time of publication.
    pub published_at: String,
}

/// A statement about one release, as built and as read back from an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The assets.
    pub subjects: Vec<Subject>,
    /// The release.
    pub predicate: Predicate,
}

/// The DSSE envelope, exactly as served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Always `PAYLOAD_TYPE`.
    pub payload_type: String,
    /// Standard base64 (with padding) of the canonical statement bytes.
    pub payload: String,
    /// One signature per signing key.
    pub signatures: Vec<Signature>,
}

/// One DSSE signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Hex SHA-256 of the raw public key.
    pub keyid: String,
    /// Standard base64 of the Ed25519 signature over the PAE.
    pub sig: String,
}

/// DSSE's pre-authentication encoding: what is actually signed, so that the payload type is
/// authenticated with the body.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Canonical JSON of a value: sorted keys, no whitespace. Written out by hand rather than
/// relying on `serde_json::Map` ordering (a dependency enabling `preserve_order` would silently
/// change it).
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(x) = m.get(k) {
                    write_canonical(x, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

impl Statement {
    /// The statement as canonical JSON bytes (the DSSE payload). Subjects are sorted by name so
    /// the same release always gives the same bytes.
    pub fn to_canonical(&self) -> Vec<u8> {
        let mut subjects = self.subjects.clone();
        subjects.sort_by(|a, b| a.name.cmp(&b.name));
        let v = serde_json::json!({
            "_type": STATEMENT_TYPE,
            "subject": subjects.iter().map(|s| serde_json::json!({
                "name": s.name,
                "digest": {"sha256": s.sha256},
            })).collect::<Vec<_>>(),
            "predicateType": PREDICATE_TYPE,
            "predicate": {
                "repository": self.predicate.repository,
                "tag": self.predicate.tag,
                "commit": self.predicate.commit,
                "publisher": self.predicate.publisher,
                "publishedAt": self.predicate.published_at,
            },
        });
        canonical_json(&v).into_bytes()
    }

    /// Reads a statement from payload bytes, refusing another statement or predicate type.
    pub fn parse(bytes: &[u8]) -> Result<Statement, AttestError> {
        let bad = |m: &str| AttestError::Malformed(m.to_owned());
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| AttestError::Malformed(format!("statement is not JSON: {e}")))?;
        if v.get("_type").and_then(Value::as_str) != Some(STATEMENT_TYPE) {
            return Err(bad("the statement's _type is not in-toto Statement v1"));
        }
        if v.get("predicateType").and_then(Value::as_str) != Some(PREDICATE_TYPE) {
            return Err(AttestError::Malformed(format!(
                "the predicateType is not {PREDICATE_TYPE}"
            )));
        }
        let predicate: Predicate = v
            .get("predicate")
            .cloned()
            .ok_or_else(|| bad("the statement has no predicate"))
            .and_then(|p| {
                serde_json::from_value(p)
                    .map_err(|e| AttestError::Malformed(format!("bad predicate: {e}")))
            })?;
        let mut subjects = Vec::new();
        for s in v
            .get("subject")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("the statement has no subject list"))?
        {
            let name = s.get("name").and_then(Value::as_str);
            let sha = s.pointer("/digest/sha256").and_then(Value::as_str);
            match (name, sha) {
                (Some(n), Some(d)) => subjects.push(Subject {
                    name: n.to_owned(),
                    sha256: d.to_ascii_lowercase(),
                }),
                _ => return Err(bad("a subject lacks its name or sha256 digest")),
            }
        }
        Ok(Statement {
            subjects,
            predicate,
        })
    }
}

/// A public key as listed and as given to the verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The raw 32 bytes.
    pub raw: [u8; 32],
}

impl PublicKey {
    /// From raw bytes (refused unless 32 long).
    pub fn from_raw(b: &[u8]) -> Result<PublicKey, AttestError> {
        let raw: [u8; 32] = b.try_into().map_err(|_| {
            AttestError::Key(format!(
                "an Ed25519 public key is 32 bytes, not {}",
                b.len()
            ))
        })?;
        Ok(PublicKey { raw })
    }

    /// Hex SHA-256 of the raw key: the DSSE keyid.
    pub fn keyid(&self) -> String {
        crate::util::sha256_hex(&self.raw)
    }

    /// SubjectPublicKeyInfo as PEM (`-----BEGIN PUBLIC KEY-----`), the form OpenSSL reads.
    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.raw);
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            B64.encode(der)
        )
    }

    /// Every key a file given to `--key` holds: an SPKI PEM, the raw 32 bytes, their base64,
    /// or the JSON of `GET /api/v1/attestation/keys` (a list, or one entry).
    pub fn parse_file(bytes: &[u8]) -> Result<Vec<PublicKey>, AttestError> {
        if bytes.len() == 32 {
            return Ok(vec![PublicKey::from_raw(bytes)?]);
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|_| AttestError::Key("the key file is neither text nor 32 raw bytes".into()))?
            .trim();
        if text.starts_with('[') || text.starts_with('{') {
            let v: Value = serde_json::from_str(text)
                .map_err(|e| AttestError::Key(format!("the key file is not valid JSON: {e}")))?;
            let entries = match v {
                Value::Array(a) => a,
                one => vec![one],
            };
            let mut keys = Vec::new();
            for e in entries {
                let b = e
                    .get("publicKey")
                    .and_then(Value::as_str)
                    .ok_or_else(|| AttestError::Key("a key entry has no publicKey".into()))?;
                keys.push(PublicKey::from_b64(b)?);
            }
            if keys.is_empty() {
                return Err(AttestError::Key("the key list is empty".into()));
            }
            return Ok(keys);
        }
        if text.starts_with("-----BEGIN PUBLIC KEY-----") {
            let body: String = text
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<Vec<_>>()
                .concat();
            let der = B64
                .decode(body.trim())
                .map_err(|_| AttestError::Key("the PEM body is not base64".into()))?;
            let raw = der
                .strip_prefix(SPKI_PREFIX.as_slice())
                .ok_or_else(|| AttestError::Key("the PEM key is not an Ed25519 key".into()))?;
            return Ok(vec![PublicKey::from_raw(raw)?]);
        }
        Ok(vec![PublicKey::from_b64(text)?])
    }

    /// From standard base64 of the raw bytes.
    pub fn from_b64(s: &str) -> Result<PublicKey, AttestError> {
        let b = B64
            .decode(s.trim())
            .map_err(|_| AttestError::Key("the public key is not base64".into()))?;
        PublicKey::from_raw(&b)
    }
}

/// The server's signing key (the private half never leaves it).
pub struct Signer {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.public.keyid())
    }
}

impl Signer {
    /// A fresh key as PKCS#8 v2 bytes (what is stored in the data directory).
    pub fn generate_pkcs8() -> Result<Vec<u8>, AttestError> {
        let rng = ring::rand::SystemRandom::new();
        Ed25519KeyPair::generate_pkcs8(&rng)
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| AttestError::Key("cannot generate an Ed25519 key".into()))
    }

    /// Loads a stored PKCS#8 key.
    pub fn from_pkcs8(der: &[u8]) -> Result<Signer, AttestError> {
        let pair = Ed25519KeyPair::from_pkcs8(der)
            .map_err(|e| AttestError::Key(format!("the stored key is not Ed25519 PKCS#8: {e}")))?;
        let public = PublicKey::from_raw(pair.public_key().as_ref())?;
        Ok(Signer { pair, public })
    }

    /// Its public key.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// Signs a statement into an envelope.
    pub fn sign(&self, statement: &Statement) -> Envelope {
        let body = statement.to_canonical();
        let sig = self.pair.sign(&pae(PAYLOAD_TYPE, &body));
        Envelope {
            payload_type: PAYLOAD_TYPE.to_owned(),
            payload: B64.encode(&body),
            signatures: vec![Signature {
                keyid: self.public.keyid(),
                sig: B64.encode(sig.as_ref()),
            }],
        }
    }
}

impl Envelope {
    /// Reads an envelope from its JSON.
    pub fn parse(bytes: &[u8]) -> Result<Envelope, AttestError> {
        serde_json::from_slice(bytes)
            .map_err(|e| AttestError::Malformed(format!("not a DSSE envelope: {e}")))
    }

    /// Checks that one signature verifies with one of `keys` (signature keyids are hints only:
    /// every signature is tried against every key) and returns the signed statement.
    pub fn verify(&self, keys: &[PublicKey]) -> Result<Statement, AttestError> {
        if self.payload_type != PAYLOAD_TYPE {
            return Err(AttestError::Malformed(format!(
                "payloadType is {:?}, expected {PAYLOAD_TYPE}",
                self.payload_type
            )));
        }
        let body = B64
            .decode(&self.payload)
            .map_err(|_| AttestError::Malformed("the payload is not base64".into()))?;
        let msg = pae(&self.payload_type, &body);
        let ok = self.signatures.iter().any(|s| {
            B64.decode(&s.sig).is_ok_and(|sig| {
                keys.iter().any(|k| {
                    UnparsedPublicKey::new(&signature::ED25519, &k.raw)
                        .verify(&msg, &sig)
                        .is_ok()
                })
            })
        });
        if !ok {
            let ids: Vec<String> = keys.iter().map(PublicKey::keyid).collect();
            return Err(AttestError::BadSignature(if ids.is_empty() {
                "no keys".into()
            } else {
                format!("key(s) {}", ids.join(", "))
            }));
        }
        Statement::parse(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement() -> Statement {
        Statement {
            subjects: vec![
                Subject {
                    name: "b.tar.gz".into(),
                    sha256: "bb".repeat(32),
                },
                Subject {
                    name: "a.zip".into(),
                    sha256: "aa".repeat(32),
                },
            ],
            predicate: Predicate {
                repository: "alice/tool".into(),
                tag: "v1.0.0".into(),
                commit: "c".repeat(40),
                publisher: "alice".into(),
                published_at: "2026-01-02T03:04:05Z".into(),
            },
        }
    }

    fn signer() -> Signer {
        Signer::from_pkcs8(&Signer::generate_pkcs8().unwrap()).unwrap()
    }

    #[test]
    fn pae_matches_the_dsse_spec_vector() {
        // The DSSE protocol document's example: type "http://example.com/HelloWorld", body
        // "hello world".
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn canonical_json_sorts_keys_and_has_no_whitespace() {
        let v = serde_json::json!({"b": 1, "a": {"d": [1, "x\"y"], "c": null}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":null,"d":[1,"x\"y"]},"b":1}"#
        );
        let s = String::from_utf8(statement().to_canonical()).unwrap();
        assert!(s.starts_with(r#"{"_type":"https://in-toto.io/Statement/v1","predicate":{"#));
        assert!(s.find("a.zip").unwrap() < s.find("b.tar.gz").unwrap());
    }

    #[test]
    fn signed_statement_round_trips() {
        let k = signer();
        let env = k.sign(&statement());
        let json = serde_json::to_vec(&env).unwrap();
        let back = Envelope::parse(&json).unwrap();
        let st = back.verify(&[k.public().clone()]).unwrap();
        let mut want = statement();
        want.subjects.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(st, want);
        assert_eq!(env.signatures[0].keyid, k.public().keyid());
        assert_eq!(env.signatures[0].keyid.len(), 64);
    }

    #[test]
    fn tampered_payload_is_refused() {
        let k = signer();
        let mut env = k.sign(&statement());
        let body = String::from_utf8(B64.decode(&env.payload).unwrap()).unwrap();
        env.payload = B64.encode(body.replace("v1.0.0", "v6.6.6"));
        assert!(matches!(
            env.verify(&[k.public().clone()]),
            Err(AttestError::BadSignature(_))
        ));
        let mut env = k.sign(&statement());
        env.payload_type = "text/plain".into();
        assert!(env.verify(&[k.public().clone()]).is_err());
    }

    #[test]
    fn signature_of_another_key_is_refused() {
        let env = signer().sign(&statement());
        assert!(matches!(
            env.verify(&[signer().public().clone()]),
            Err(AttestError::BadSignature(_))
        ));
    }

    #[test]
    fn key_files_parse_in_every_listed_form() {
        let k = signer();
        let p = k.public().clone();
        assert_eq!(
            PublicKey::parse_file(p.to_pem().as_bytes()).unwrap(),
            vec![p.clone()]
        );
        assert_eq!(PublicKey::parse_file(&p.raw).unwrap(), vec![p.clone()]);
        let b64 = B64.encode(p.raw);
        assert_eq!(
            PublicKey::parse_file(b64.as_bytes()).unwrap(),
            vec![p.clone()]
        );
        let list = serde_json::json!([{"keyid": p.keyid(), "publicKey": b64}]).to_string();
        assert_eq!(PublicKey::parse_file(list.as_bytes()).unwrap(), vec![p]);
        assert!(PublicKey::parse_file(b"garbage").is_err());
    }
}

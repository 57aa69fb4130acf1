//! The attestation keys on disk, under `<data dir>/attestation/` (mode 0700):
//! - `key-<keyid>.pk8`: an Ed25519 private key, PKCS#8, mode 0600 from its creation;
//! - `key-<keyid>.json`: its public half and creation time, kept after the private key goes.
//!
//! The current key is the newest one whose private key is present; when none is, one is
//! generated at open (first start). Rotation: move the current `.pk8` out of the directory and
//! restart — a new key is made and the old public key stays listed, so attestations signed
//! with it still verify. Every file is written temp + fsync + rename, then the directory fsynced.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{fsync_dir, StorageError};
use crate::attest::{PublicKey, Signer};

/// One key's public record (`key-<keyid>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRecord {
    /// Hex SHA-256 of the raw public key.
    pub keyid: String,
    /// Standard base64 of the raw 32-byte public key.
    pub public_key: String,
    /// Unix seconds of its generation.
    pub created_at: i64,
}

/// The loaded keys: the current signer and every public key ever used here.
#[derive(Debug, Clone)]
pub struct AttestKeys {
    signer: Arc<Signer>,
    keys: Vec<KeyRecord>,
    dir: PathBuf,
}

/// The key directory of a data directory (a restore rebuilds it, mode 0700).
pub fn dir_of(data_dir: &Path) -> PathBuf {
    data_dir.join("attestation")
}

/// Whether `name` is the name of a key file (`key-<hex>.pk8` or `key-<hex>.json`): what a
/// backup may carry into the key directory, and nothing else.
pub fn is_key_file(name: &str) -> bool {
    let Some(id) = name
        .strip_prefix("key-")
        .and_then(|n| n.strip_suffix(".pk8").or_else(|| n.strip_suffix(".json")))
    else {
        return false;
    };
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Creates the key directory of `data_dir` (mode 0700) if it is absent.
pub fn create_dir(data_dir: &Path) -> std::io::Result<PathBuf> {
    let dir = dir_of(data_dir);
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
    }
    Ok(dir)
}

fn bad(m: String) -> StorageError {
    StorageError::Malformed(m)
}

impl AttestKeys {
    /// Loads the keys under `data_dir`, generating the first (or, after a rotation, the next)
    /// current key when no private key is present.
    pub fn open(data_dir: &Path) -> Result<AttestKeys, StorageError> {
        let dir = create_dir(data_dir)?;
        let mut signers: Vec<Signer> = Vec::new();
        let mut records: Vec<KeyRecord> = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !name.starts_with("key-") {
                continue;
            }
            if name.ends_with(".pk8") {
                let der = std::fs::read(&path)?;
                let s = Signer::from_pkcs8(&der)
                    .map_err(|e| bad(format!("{}: {e}", path.display())))?;
                signers.push(s);
            } else if name.ends_with(".json") {
                let r: KeyRecord = serde_json::from_slice(&std::fs::read(&path)?)
                    .map_err(|e| bad(format!("{}: {e}", path.display())))?;
                records.push(r);
            }
        }
        // A private key whose public record was not written yet (a crash between the two).
        for s in &signers {
            if !records.iter().any(|r| r.keyid == s.public().keyid()) {
                records.push(write_record(&dir, s.public())?);
            }
        }
        let current = signers
            .into_iter()
            .filter_map(|s| {
                let at = records
                    .iter()
                    .find(|r| r.keyid == s.public().keyid())
                    .map(|r| r.created_at)?;
                Some((at, s))
            })
            .max_by(|a, b| a.0.cmp(&b.0).then(a.1.public().raw.cmp(&b.1.public().raw)))
            .map(|(_, s)| s);
        let signer = match current {
            Some(s) => s,
            None => {
                let der = Signer::generate_pkcs8().map_err(|e| bad(e.to_string()))?;
                let s = Signer::from_pkcs8(&der).map_err(|e| bad(e.to_string()))?;
                let id = s.public().keyid();
                write_atomic(&dir, &format!("key-{id}.pk8"), &der, 0o600)?;
                records.push(write_record(&dir, s.public())?);
                tracing::info!(keyid = %id, "generated a new release attestation key");
                s
            }
        };
        records.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.keyid.cmp(&b.keyid)));
        Ok(AttestKeys {
            signer: Arc::new(signer),
            keys: records,
            dir,
        })
    }

    /// The names of the key files on disk now (private keys and public records), sorted:
    /// what a backup carries.
    pub fn file_names(&self) -> Result<Vec<String>, StorageError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if is_key_file(&name) && entry.file_type()?.is_file() {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Copies key file `name` (see [`AttestKeys::file_names`]) to `dest`, created 0600 (a
    /// private key never lies readable to others, not even in a backup's staging area) and
    /// fsynced.
    pub fn export(&self, name: &str, dest: &Path) -> Result<(), StorageError> {
        if !is_key_file(name) {
            return Err(bad(format!("{name} is not an attestation key file")));
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut src = std::fs::File::open(self.dir.join(name))?;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dest)?;
        std::io::copy(&mut src, &mut out)?;
        out.sync_all()?;
        Ok(())
    }

    /// The key that signs new attestations.
    pub fn signer(&self) -> Arc<Signer> {
        self.signer.clone()
    }

    /// Every public key, oldest first.
    pub fn keys(&self) -> &[KeyRecord] {
        &self.keys
    }

    /// The public keys, parsed (for verifying on the server side).
    pub fn public_keys(&self) -> Vec<PublicKey> {
        self.keys
            .iter()
            .filter_map(|r| PublicKey::from_b64(&r.public_key).ok())
            .collect()
    }
}

fn write_record(dir: &Path, key: &PublicKey) -> Result<KeyRecord, StorageError> {
    use base64::Engine as _;
    let r = KeyRecord {
        keyid: key.keyid(),
        public_key: base64::engine::general_purpose::STANDARD.encode(key.raw),
        created_at: crate::util::now_unix(),
    };
    let json = serde_json::to_vec_pretty(&r).map_err(|e| bad(e.to_string()))?;
    write_atomic(dir, &format!("key-{}.json", r.keyid), &json, 0o644)?;
    Ok(r)
}

/// Writes `name` in `dir` through a temp file created with `mode` (never wider, even briefly),
/// fsynced, renamed into place, and the directory fsynced.
fn write_atomic(dir: &Path, name: &str, data: &[u8], mode: u32) -> Result<(), StorageError> {
    let mut suffix = [0u8; 8];
    crate::util::fill_random(&mut suffix);
    let tmp: PathBuf = dir.join(format!(".tmp-{}-{name}", hex::encode(suffix)));
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))?;
        fsync_dir(dir)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(res?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn first_open_makes_a_0600_key_and_reopen_keeps_it() {
        let d = tempfile::tempdir().unwrap();
        let a = AttestKeys::open(d.path()).unwrap();
        let id = a.signer().public().keyid();
        let pk8 = d.path().join("attestation").join(format!("key-{id}.pk8"));
        let mode = std::fs::metadata(&pk8).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = AttestKeys::open(d.path()).unwrap();
        assert_eq!(b.signer().public().keyid(), id);
        assert_eq!(b.keys().len(), 1);
    }

    #[test]
    fn a_backup_takes_only_key_files_and_its_copy_of_a_private_key_is_0600() {
        for ok in ["key-ab12.pk8", "key-AB12.json"] {
            assert!(is_key_file(ok), "{ok}");
        }
        for bad in [
            "key-.pk8",
            "key-zz.pk8",
            "key-ab/../x.pk8",
            "key-ab.pem",
            "other.pk8",
            ".tmp-00-key-ab.pk8",
            "key-ab.pk8/",
        ] {
            assert!(!is_key_file(bad), "{bad}");
        }
        let d = tempfile::tempdir().unwrap();
        let a = AttestKeys::open(d.path()).unwrap();
        let names = a.file_names().unwrap();
        assert_eq!(names.len(), 2, "{names:?}");
        let out = d.path().join("out");
        for n in &names {
            a.export(n, &out.join(n)).unwrap();
            let mode = std::fs::metadata(out.join(n)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{n}");
        }
        assert!(a.export("../pfai.redb", &out.join("x")).is_err());
    }

    #[test]
    fn rotation_keeps_the_old_public_key_listed() {
        let d = tempfile::tempdir().unwrap();
        let a = AttestKeys::open(d.path()).unwrap();
        let old = a.signer().public().keyid();
        std::fs::remove_file(d.path().join("attestation").join(format!("key-{old}.pk8"))).unwrap();
        let b = AttestKeys::open(d.path()).unwrap();
        assert_ne!(b.signer().public().keyid(), old);
        let ids: Vec<&str> = b.keys().iter().map(|k| k.keyid.as_str()).collect();
        assert!(ids.contains(&old.as_str()));
        assert_eq!(ids.len(), 2);
    }
}

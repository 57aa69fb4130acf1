//! Release attestations on the server: signing a published release's statement (in the
//! transaction that publishes it), serving the envelope, listing the public keys. The format
//! itself is `crate::attest`.

use redb::WriteTransaction;

use super::release::{self, Which};
use super::{Core, DomainError, DomainResult};
use crate::api::AttestationKeyView;
use crate::attest::{Predicate, PublicKey, Signer, Statement, Subject, ALGORITHM};
use crate::auth::Principal;
use crate::ids::RepoPath;
use crate::storage::records::Release;
use crate::storage::{assets, attestations};
use crate::util::rfc3339;

/// Signs and stores the attestation of `release` (as it is in `txn`, with the assets it has
/// there) — called by the write that publishes it, so a published release and its attestation
/// commit together.
pub fn record(
    txn: &WriteTransaction,
    signer: &Signer,
    release: &Release,
    publisher: &str,
) -> DomainResult<()> {
    let subjects = assets::of_release(txn, release.id)?
        .into_iter()
        .map(|a| Subject {
            name: a.name,
            sha256: a.sha256,
        })
        .collect();
    let statement = Statement {
        subjects,
        predicate: Predicate {
            repository: release.repo.clone(),
            tag: release.tag_name.clone(),
            commit: release.commit_sha.clone(),
            publisher: publisher.to_owned(),
            published_at: rfc3339(release.published_at.unwrap_or(release.created_at)),
        },
    };
    let envelope = serde_json::to_vec(&signer.sign(&statement))
        .map_err(|e| DomainError::internal_from("cannot serialize an attestation", e))?;
    attestations::put(txn, release.id, &envelope)?;
    Ok(())
}

/// The envelope JSON of the release on `tag`, with the release's read visibility; `NotFound`
/// when the release has none.
pub async fn envelope(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    tag: &str,
) -> DomainResult<Vec<u8>> {
    let id = release::get(core, who, repo, Which::Tag(tag.to_owned()))
        .await?
        .release
        .id;
    core.db
        .read(move |txn| attestations::get(txn, id))
        .await?
        .ok_or_else(|| DomainError::NotFound(format!("release {tag} has no attestation")))
}

/// Every public key, oldest first, the current one marked.
pub fn keys(core: &Core) -> Vec<AttestationKeyView> {
    let current = core.attest.signer().public().keyid();
    core.attest
        .keys()
        .iter()
        .filter_map(|k| {
            let pk = PublicKey::from_b64(&k.public_key).ok()?;
            Some(AttestationKeyView {
                keyid: k.keyid.clone(),
                algorithm: ALGORITHM.to_owned(),
                public_key: k.public_key.clone(),
                public_key_pem: pk.to_pem(),
                created_at: rfc3339(k.created_at),
                current: k.keyid == current,
            })
        })
        .collect()
}

//! The OCI registry's rules: blobs (linked per repository, stored once), manifests (byte-exact,
//! validated, reference-counted), tags, referrers, catalog, the Packages view, GC and fsck.
//! Access follows the forge repository `<owner>/<repo>` named by the first two components.

pub mod manifest;
pub mod upload;

use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use crate::api::{BlobFsckReport as FsckReport, GcReport, PackageTagView, PackageView};
use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::Serialize;

use super::{repo_access_txn, Core, DomainError, DomainResult};
use crate::auth::Principal;
use crate::ids::{Digest, OciName, OciTag, Reference, RepoPath, Role};
use crate::storage::mmap::Mapped;
use crate::storage::records::{BlobMeta, ManifestMeta};
use crate::storage::{codec, tables};
use crate::util::{now_unix, rfc3339};

/// Largest `n` honoured on tag lists and the catalog (no pre-allocation by `n`).
pub const MAX_PAGE: usize = 1000;

/// Checks access to an image name. Anonymous callers who cannot see the repository get
/// `Unauthenticated` (so clients send credentials); authenticated ones `NameUnknown`.
pub async fn access(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    need: Role,
) -> DomainResult<Role> {
    match core.repo_access(who, &name.repo(), need).await {
        Ok((_, role)) => Ok(role),
        Err(DomainError::NotFound(_)) if who.is_none() => Err(DomainError::Unauthenticated(
            "authentication required".into(),
        )),
        Err(DomainError::NotFound(_)) => Err(DomainError::NameUnknown),
        Err(e) => Err(e),
    }
}

/// Records that `name` holds `digest` (and that the blob exists), refreshing its GC grace.
pub fn link_blob_txn(
    txn: &WriteTransaction,
    name: &str,
    digest: &Digest,
    size: u64,
) -> DomainResult<()> {
    let d = digest.to_string();
    let now = now_unix();
    let mut blobs = txn.open_table(tables::BLOBS)?;
    let meta = match blobs.get(d.as_str())? {
        Some(v) => {
            let mut m: BlobMeta = codec::decode(v.value())?;
            m.touched_at = now;
            m
        }
        None => BlobMeta {
            size,
            created_at: now,
            touched_at: now,
        },
    };
    blobs.insert(d.as_str(), codec::encode(&meta)?.as_slice())?;
    txn.open_table(tables::REPO_BLOBS)?
        .insert((name, d.as_str()), now)?;
    txn.open_table(tables::BLOB_LINKS)?
        .insert((d.as_str(), name), ())?;
    Ok(())
}

fn linked_size_txn(txn: &ReadTransaction, name: &str, digest: &str) -> DomainResult<Option<u64>> {
    if txn
        .open_table(tables::REPO_BLOBS)?
        .get((name, digest))?
        .is_none()
    {
        return Ok(None);
    }
    match txn.open_table(tables::BLOBS)?.get(digest)? {
        Some(v) => Ok(Some(codec::decode::<BlobMeta>(v.value())?.size)),
        None => Ok(None),
    }
}

/// A blob ready to serve.
pub struct BlobFile {
    /// Its bytes.
    pub data: Mapped,
    /// Its digest.
    pub digest: Digest,
}

/// Opens a blob linked in `name` (404 `BLOB_UNKNOWN` when it is not, even if another
/// repository has it).
pub async fn open_blob(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    digest: &Digest,
) -> DomainResult<BlobFile> {
    access(core, who, name, Role::Read).await?;
    let (n, d) = (name.to_string(), digest.to_string());
    let size = core
        .db
        .read(move |txn| linked_size_txn(txn, &n, &d))
        .await?
        .ok_or(DomainError::BlobUnknown)?;
    let blobs = core.blobs.clone();
    let dg = digest.clone();
    let data = tokio::task::spawn_blocking(move || blobs.map(&dg))
        .await
        .map_err(DomainError::from)?
        .map_err(|_| DomainError::BlobUnknown)?;
    if data.len() != size {
        tracing::error!(digest = %digest, "stored blob has the wrong size; run pfai fsck");
        return Err(DomainError::BlobUnknown);
    }
    Ok(BlobFile {
        data,
        digest: digest.clone(),
    })
}

/// Unlinks a blob from a repository (202). The file goes when GC finds it unreferenced.
pub async fn delete_blob(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    digest: &Digest,
) -> DomainResult<()> {
    access(core, who, name, Role::Write).await?;
    let (n, d) = (name.to_string(), digest.to_string());
    core.db
        .write(move |txn| {
            let removed = txn
                .open_table(tables::REPO_BLOBS)?
                .remove((n.as_str(), d.as_str()))?
                .is_some();
            if !removed {
                return Err(DomainError::BlobUnknown);
            }
            txn.open_table(tables::BLOB_LINKS)?
                .remove((d.as_str(), n.as_str()))?;
            Ok(())
        })
        .await
}

/// A stored manifest ready to serve.
pub struct ManifestFile {
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its exact bytes.
    pub bytes: Vec<u8>,
}

fn resolve_txn(
    txn: &ReadTransaction,
    name: &str,
    reference: &Reference,
) -> DomainResult<Option<String>> {
    Ok(match reference {
        Reference::Digest(d) => Some(d.to_string()),
        Reference::Tag(t) => txn
            .open_table(tables::OCI_TAGS)?
            .get((name, t.as_str()))?
            .map(|v| v.value().to_owned()),
    })
}

fn manifest_txn(
    txn: &ReadTransaction,
    name: &str,
    digest: &str,
) -> DomainResult<Option<ManifestMeta>> {
    match txn.open_table(tables::MANIFESTS)?.get((name, digest))? {
        Some(v) => Ok(Some(codec::decode(v.value())?)),
        None => Ok(None),
    }
}

/// Reads a manifest by tag or digest.
pub async fn get_manifest(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    reference: &Reference,
) -> DomainResult<ManifestFile> {
    access(core, who, name, Role::Read).await?;
    let (n, r) = (name.to_string(), reference.clone());
    let found = core
        .db
        .read(move |txn| {
            let Some(d) = resolve_txn(txn, &n, &r)? else {
                return Ok(None);
            };
            Ok::<_, DomainError>(manifest_txn(txn, &n, &d)?.map(|m| (d, m)))
        })
        .await?;
    let (d, m) = found.ok_or(DomainError::ManifestUnknown)?;
    Ok(ManifestFile {
        digest: Digest::parse(&d)?,
        media_type: m.media_type,
        bytes: m.bytes,
    })
}

/// The outcome of a manifest push.
pub struct PutOutcome {
    /// The manifest's digest.
    pub digest: Digest,
    /// Its subject, for the `OCI-Subject` header.
    pub subject: Option<Digest>,
}

/// Validates and stores a manifest, then points `tags` at it — one transaction.
pub async fn put_manifest(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    reference: &Reference,
    extra_tags: Vec<OciTag>,
    content_type: Option<String>,
    bytes: Vec<u8>,
) -> DomainResult<PutOutcome> {
    access(core, who, name, Role::Write).await?;
    let parsed = manifest::parse(content_type.as_deref(), &bytes).map_err(|e| match e {
        manifest::ManifestError::Invalid(m) => DomainError::ManifestInvalid(m),
        manifest::ManifestError::Digest(m) => DomainError::DigestInvalid(m),
    })?;
    let digest = match reference {
        Reference::Digest(d) => {
            let actual = Digest::of(d.algorithm(), &bytes);
            if &actual != d {
                return Err(DomainError::DigestInvalid(format!(
                    "the manifest's digest is {actual}, not {d}"
                )));
            }
            actual
        }
        Reference::Tag(_) => Digest::sha256_of(&bytes),
    };
    let mut tags = extra_tags;
    if let Reference::Tag(t) = reference {
        tags.insert(0, t.clone());
    }
    if tags.len() > 100 {
        return Err(DomainError::ManifestInvalid(
            "at most 100 tags per push".into(),
        ));
    }
    let meta = ManifestMeta {
        media_type: parsed.media_type.clone(),
        artifact_type: parsed.artifact_type.clone(),
        subject: parsed.subject.as_ref().map(|d| d.to_string()),
        blobs: parsed.blobs.iter().map(|d| d.to_string()).collect(),
        children: parsed.children.iter().map(|d| d.to_string()).collect(),
        platforms: parsed.platforms.clone(),
        total_size: parsed.total_size,
        annotations_json: parsed.annotations_json.clone(),
        pushed_at: now_unix(),
        bytes,
    };
    let n = name.to_string();
    let d = digest.to_string();
    core.db
        .write(move |txn| {
            let mut missing = Vec::new();
            {
                let links = txn.open_table(tables::REPO_BLOBS)?;
                for b in &meta.blobs {
                    if links.get((n.as_str(), b.as_str()))?.is_none() {
                        missing.push(b.clone());
                    }
                }
                let manifests = txn.open_table(tables::MANIFESTS)?;
                for c in &meta.children {
                    if manifests.get((n.as_str(), c.as_str()))?.is_none() {
                        missing.push(c.clone());
                    }
                }
            }
            if !missing.is_empty() {
                return Err(DomainError::ManifestBlobUnknown(missing));
            }
            let mut manifests = txn.open_table(tables::MANIFESTS)?;
            let existed = manifests.get((n.as_str(), d.as_str()))?.is_some();
            manifests.insert((n.as_str(), d.as_str()), codec::encode(&meta)?.as_slice())?;
            if !existed {
                let mut refs = txn.open_table(tables::BLOB_REFS)?;
                for b in &meta.blobs {
                    let c = refs.get(b.as_str())?.map(|v| v.value()).unwrap_or(0);
                    refs.insert(b.as_str(), c + 1)?;
                }
                let mut mrefs = txn.open_table(tables::MANIFEST_REFS)?;
                for c in &meta.children {
                    let k = (n.as_str(), c.as_str());
                    let cur = mrefs.get(k)?.map(|v| v.value()).unwrap_or(0);
                    mrefs.insert(k, cur + 1)?;
                }
                if let Some(s) = &meta.subject {
                    txn.open_table(tables::REFERRERS)?
                        .insert((n.as_str(), s.as_str(), d.as_str()), ())?;
                }
            }
            let mut t = txn.open_table(tables::OCI_TAGS)?;
            for tag in &tags {
                t.insert((n.as_str(), tag.as_str()), d.as_str())?;
            }
            Ok(())
        })
        .await?;
    Ok(PutOutcome {
        digest,
        subject: parsed.subject,
    })
}

/// Deletes a manifest (by digest: the manifest, its tags and references) or a tag (by tag).
/// A manifest that an index in the repository still lists is refused.
pub async fn delete_manifest(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    reference: &Reference,
) -> DomainResult<()> {
    access(core, who, name, Role::Write).await?;
    let n = name.to_string();
    let r = reference.clone();
    core.db
        .write(move |txn| {
            match r {
                Reference::Tag(t) => {
                    let removed = txn
                        .open_table(tables::OCI_TAGS)?
                        .remove((n.as_str(), t.as_str()))?
                        .is_some();
                    if !removed {
                        return Err(DomainError::ManifestUnknown);
                    }
                }
                Reference::Digest(d) => {
                    let d = d.to_string();
                    let in_use = txn
                        .open_table(tables::MANIFEST_REFS)?
                        .get((n.as_str(), d.as_str()))?
                        .map(|v| v.value())
                        .unwrap_or(0);
                    if in_use > 0 {
                        return Err(DomainError::Conflict(format!(
                            "{d} is listed by {in_use} index(es) in {n}; delete those first"
                        )));
                    }
                    let meta: ManifestMeta = {
                        let mut manifests = txn.open_table(tables::MANIFESTS)?;
                        let Some(v) = manifests.remove((n.as_str(), d.as_str()))? else {
                            return Err(DomainError::ManifestUnknown);
                        };
                        codec::decode(v.value())?
                    };
                    let mut refs = txn.open_table(tables::BLOB_REFS)?;
                    for b in &meta.blobs {
                        let c = refs.get(b.as_str())?.map(|v| v.value()).unwrap_or(0);
                        if c <= 1 {
                            refs.remove(b.as_str())?;
                        } else {
                            refs.insert(b.as_str(), c - 1)?;
                        }
                    }
                    let mut mrefs = txn.open_table(tables::MANIFEST_REFS)?;
                    for c in &meta.children {
                        let k = (n.as_str(), c.as_str());
                        let cur = mrefs.get(k)?.map(|v| v.value()).unwrap_or(0);
                        if cur <= 1 {
                            mrefs.remove(k)?;
                        } else {
                            mrefs.insert(k, cur - 1)?;
                        }
                    }
                    if let Some(s) = &meta.subject {
                        txn.open_table(tables::REFERRERS)?.remove((
                            n.as_str(),
                            s.as_str(),
                            d.as_str(),
                        ))?;
                    }
                    let mut tags = txn.open_table(tables::OCI_TAGS)?;
                    tags.retain(|(name, _), digest| !(name == n.as_str() && digest == d.as_str()))?;
                }
            }
            Ok(())
        })
        .await
}

/// One page of a repository's tags (lexical order), after `last`, at most `n` (capped).
pub async fn list_tags(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    n: Option<usize>,
    last: Option<String>,
) -> DomainResult<(Vec<String>, bool)> {
    access(core, who, name, Role::Read).await?;
    let limit = n.unwrap_or(MAX_PAGE).min(MAX_PAGE);
    let nm = name.to_string();
    core.db
        .read(move |txn| {
            let t = txn.open_table(tables::OCI_TAGS)?;
            let start = last.clone().unwrap_or_default();
            let mut out = Vec::new();
            let mut more = false;
            for row in t.range((nm.as_str(), start.as_str())..)? {
                let (k, _) = row?;
                let (name, tag) = k.value();
                if name != nm {
                    break;
                }
                if last.as_deref() == Some(tag) {
                    continue;
                }
                if out.len() == limit {
                    more = true;
                    break;
                }
                out.push(tag.to_owned());
            }
            // An empty page of an image nobody ever pushed to is NAME_UNKNOWN (spec); an image
            // that has manifests or blobs but no tags (all deleted) is an empty list.
            if out.is_empty() && !more {
                let has = |first: Option<&str>| first == Some(nm.as_str());
                let tagged = match t.range((nm.as_str(), "")..)?.next() {
                    Some(row) => has(Some(row?.0.value().0)),
                    None => false,
                };
                let manifests = txn.open_table(tables::MANIFESTS)?;
                let with_manifest = match manifests.range((nm.as_str(), "")..)?.next() {
                    Some(row) => has(Some(row?.0.value().0)),
                    None => false,
                };
                let blobs = txn.open_table(tables::REPO_BLOBS)?;
                let with_blob = match blobs.range((nm.as_str(), "")..)?.next() {
                    Some(row) => has(Some(row?.0.value().0)),
                    None => false,
                };
                if !(tagged || with_manifest || with_blob) {
                    return Err(DomainError::NameUnknown);
                }
            }
            Ok((out, more))
        })
        .await
}

/// The catalog: image names the caller can read, after `last`, at most `n` (capped).
pub async fn catalog(
    core: &Core,
    who: Option<&Principal>,
    n: Option<usize>,
    last: Option<String>,
) -> DomainResult<(Vec<String>, bool)> {
    let limit = n.unwrap_or(MAX_PAGE).min(MAX_PAGE);
    let who = who.cloned();
    core.db
        .read(move |txn| {
            let manifests = txn.open_table(tables::MANIFESTS)?;
            let start = last.clone().unwrap_or_default();
            let mut allowed: HashMap<String, bool> = HashMap::new();
            let mut out: Vec<String> = Vec::new();
            let mut more = false;
            for row in manifests.range((start.as_str(), "")..)? {
                let (k, _) = row?;
                let name = k.value().0.to_owned();
                if last.as_deref() == Some(name.as_str()) || out.last() == Some(&name) {
                    continue;
                }
                let repo = match OciName::parse(&name) {
                    Ok(n) => n.repo().key(),
                    Err(_) => continue,
                };
                let ok = match allowed.get(&repo) {
                    Some(b) => *b,
                    None => {
                        let b = repo_access_txn(txn, who.as_ref(), &repo, Role::Read).is_ok();
                        allowed.insert(repo, b);
                        b
                    }
                };
                if !ok {
                    continue;
                }
                if out.len() == limit {
                    more = true;
                    break;
                }
                out.push(name);
            }
            Ok((out, more))
        })
        .await
}

/// An entry of a referrers response.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferrerDescriptor {
    /// Media type of the referrer manifest.
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// Its artifact type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Its annotations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Manifests whose subject is `digest`, optionally filtered by artifact type.
pub async fn referrers(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    digest: &Digest,
    artifact_type: Option<String>,
) -> DomainResult<Vec<ReferrerDescriptor>> {
    access(core, who, name, Role::Read).await?;
    let (n, d) = (name.to_string(), digest.to_string());
    core.db
        .read(move |txn| {
            let refs = txn.open_table(tables::REFERRERS)?;
            let mut out = Vec::new();
            for row in refs.range((n.as_str(), d.as_str(), "")..)? {
                let (k, _) = row?;
                let (name, subject, referrer) = k.value();
                if name != n || subject != d {
                    break;
                }
                let Some(m) = manifest_txn(txn, &n, referrer)? else {
                    continue;
                };
                // The spec's artifactType of a referrer: its own, else its config's media type
                // (also for a plain image config, which `ManifestMeta` does not record).
                let effective = m
                    .artifact_type
                    .clone()
                    .or_else(|| manifest::config_media_type(&m.bytes));
                if artifact_type.is_some() && effective != artifact_type {
                    continue;
                }
                out.push(ReferrerDescriptor {
                    media_type: m.media_type.clone(),
                    digest: referrer.to_owned(),
                    size: m.bytes.len() as u64,
                    artifact_type: effective,
                    annotations: serde_json::from_str(&m.annotations_json).ok().flatten(),
                });
            }
            Ok(out)
        })
        .await
}

fn names_of_repo_txn(txn: &ReadTransaction, repo: &RepoPath) -> DomainResult<BTreeSet<String>> {
    let key = repo.key();
    let prefix = format!("{key}/");
    let mut names = BTreeSet::new();
    for row in txn
        .open_table(tables::MANIFESTS)?
        .range((key.as_str(), "")..)?
    {
        let (k, _) = row?;
        let name = k.value().0;
        if name != key && !name.starts_with(&prefix) {
            break;
        }
        names.insert(name.to_owned());
    }
    Ok(names)
}

fn tags_of_txn(txn: &ReadTransaction, name: &str) -> DomainResult<Vec<PackageTagView>> {
    let mut out = Vec::new();
    for row in txn.open_table(tables::OCI_TAGS)?.range((name, "")..)? {
        let (k, v) = row?;
        let (n, tag) = k.value();
        if n != name {
            break;
        }
        let digest = v.value().to_owned();
        if let Some(m) = manifest_txn(txn, name, &digest)? {
            let size = if manifest::is_index(&m.media_type) {
                m.children
                    .iter()
                    .filter_map(|c| manifest_txn(txn, name, c).ok().flatten())
                    .map(|c| c.total_size)
                    .sum()
            } else {
                m.total_size
            };
            out.push(PackageTagView {
                tag: tag.to_owned(),
                digest,
                media_type: m.media_type,
                size,
                platforms: m.platforms,
                pushed_at: rfc3339(m.pushed_at),
            });
        }
    }
    Ok(out)
}

/// The images of a forge repository (the seed's OCIQuerier).
pub async fn packages(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
) -> DomainResult<Vec<PackageView>> {
    core.repo_access(who, repo, Role::Read).await?;
    let repo = repo.clone();
    core.db
        .read(move |txn| {
            let mut out = Vec::new();
            for name in names_of_repo_txn(txn, &repo)? {
                let tags = tags_of_txn(txn, &name)?;
                let newest = tags.iter().max_by(|a, b| a.pushed_at.cmp(&b.pushed_at));
                out.push(PackageView {
                    pull: newest
                        .map(|t| format!("{name}:{}", t.tag))
                        .unwrap_or_else(|| name.clone()),
                    last_push: newest.map(|t| t.pushed_at.clone()),
                    total_size: tags.iter().map(|t| t.size).sum(),
                    tag_count: tags.len() as u64,
                    name,
                });
            }
            Ok(out)
        })
        .await
}

/// The tags of one image of a repository.
pub async fn package_tags(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    image: &str,
) -> DomainResult<Vec<PackageTagView>> {
    core.repo_access(who, repo, Role::Read).await?;
    let name = if image == repo.key() || image.starts_with(&format!("{}/", repo.key())) {
        image.to_owned()
    } else {
        format!("{}/{image}", repo.key())
    };
    let name = OciName::parse(&name)
        .map_err(|_| DomainError::NotFound(format!("image {image} not found")))?;
    let n = name.to_string();
    let tags = core.db.read(move |txn| tags_of_txn(txn, &n)).await?;
    if tags.is_empty() {
        return Err(DomainError::NotFound(format!("image {image} not found")));
    }
    Ok(tags)
}

/// Removes blobs that no manifest references and that were not touched (uploaded, mounted,
/// linked) within `grace_secs`, measured by our own timestamps. The check and the removal of the
/// rows happen in one write transaction, serialized with manifest pushes, so a push that
/// references a blob either commits first (the blob is kept) or sees it gone (and answers
/// `MANIFEST_BLOB_UNKNOWN`); files are unlinked only after the commit, and uploads cannot
/// publish or link a blob from the transaction until the unlinks are done (`Core::blob_gc`).
pub async fn gc(
    core: &Core,
    who: Option<&Principal>,
    dry_run: bool,
    grace_secs: i64,
) -> DomainResult<GcReport> {
    let p = super::account::require(who)?;
    if !p.admin {
        return Err(DomainError::Forbidden("only site admins can run GC".into()));
    }
    // Held until the files are unlinked: an upload that found a victim's file still in place
    // must not link it in between (it would be a row without its file).
    let removing = if dry_run {
        None
    } else {
        Some(core.blob_gc.write().await)
    };
    let now = now_unix();
    let report = core
        .db
        .write(move |txn| {
            let mut report = GcReport {
                dry_run,
                ..GcReport::default()
            };
            let victims: Vec<(String, u64)> = {
                let blobs = txn.open_table(tables::BLOBS)?;
                let refs = txn.open_table(tables::BLOB_REFS)?;
                let mut v = Vec::new();
                for row in blobs.iter()? {
                    let (k, val) = row?;
                    let meta: BlobMeta = codec::decode(val.value())?;
                    if now - meta.touched_at < grace_secs {
                        continue;
                    }
                    if refs.get(k.value())?.is_some_and(|c| c.value() > 0) {
                        continue;
                    }
                    v.push((k.value().to_owned(), meta.size));
                }
                v
            };
            for (d, size) in &victims {
                report.blobs.push(d.clone());
                report.bytes += size;
                if dry_run {
                    continue;
                }
                txn.open_table(tables::BLOBS)?.remove(d.as_str())?;
                let names: Vec<String> = {
                    let links = txn.open_table(tables::BLOB_LINKS)?;
                    let mut names = Vec::new();
                    for row in links.range((d.as_str(), "")..)? {
                        let (k, _) = row?;
                        if k.value().0 != d {
                            break;
                        }
                        names.push(k.value().1.to_owned());
                    }
                    names
                };
                let mut links = txn.open_table(tables::BLOB_LINKS)?;
                let mut repo_blobs = txn.open_table(tables::REPO_BLOBS)?;
                for n in names {
                    links.remove((d.as_str(), n.as_str()))?;
                    repo_blobs.remove((n.as_str(), d.as_str()))?;
                }
            }
            Ok::<_, DomainError>(report)
        })
        .await?;
    let mut report = report;
    if !dry_run {
        for d in &report.blobs {
            if let Ok(d) = Digest::parse(d) {
                core.blobs.remove(&d)?;
            }
        }
    }
    drop(removing);
    let ttl = core.limits.upload_ttl_secs;
    report.uploads = upload::purge_stale(core, ttl, ttl.min(3600), dry_run).await?;
    Ok(report)
}

/// Re-hashes every stored blob and reports damage (site admins).
pub async fn fsck(core: &Core, who: Option<&Principal>) -> DomainResult<FsckReport> {
    let p = super::account::require(who)?;
    if !p.admin {
        return Err(DomainError::Forbidden(
            "only site admins can run fsck".into(),
        ));
    }
    let digests: Vec<String> = core
        .db
        .read(|txn| {
            let mut v = Vec::new();
            for row in txn.open_table(tables::BLOBS)?.iter()? {
                v.push(row?.0.value().to_owned());
            }
            Ok::<_, DomainError>(v)
        })
        .await?;
    let blobs = core.blobs.clone();
    let mut report = tokio::task::spawn_blocking(move || {
        let mut r = FsckReport::default();
        for d in digests {
            let Ok(dg) = Digest::parse(&d) else { continue };
            r.checked += 1;
            match blobs.verify(&dg) {
                Ok(Some(true)) => {}
                Ok(Some(false)) => r.corrupt.push(d),
                Ok(None) => r.missing.push(d),
                Err(e) => {
                    tracing::warn!(digest = %d, error = %e, "fsck could not read a blob");
                    r.missing.push(d)
                }
            }
        }
        r
    })
    .await
    .map_err(DomainError::from)?;
    // GC may have removed a blob (row, then file) while it was being checked: a file missing
    // is damage only if its row is still there.
    if !report.missing.is_empty() {
        let missing = std::mem::take(&mut report.missing);
        report.missing = core
            .db
            .read(move |txn| {
                let rows = txn.open_table(tables::BLOBS)?;
                let mut still = Vec::new();
                for d in missing {
                    if rows.get(d.as_str())?.is_some() {
                        still.push(d);
                    }
                }
                Ok::<_, DomainError>(still)
            })
            .await?;
    }
    let bad: BTreeSet<String> = report
        .corrupt
        .iter()
        .chain(report.missing.iter())
        .cloned()
        .collect();
    if !bad.is_empty() {
        report.affected_manifests = core
            .db
            .read(move |txn| {
                let mut out = Vec::new();
                for row in txn.open_table(tables::MANIFESTS)?.iter()? {
                    let (k, v) = row?;
                    let m: ManifestMeta = codec::decode(v.value())?;
                    if m.blobs.iter().any(|b| bad.contains(b)) {
                        out.push(format!("{}@{}", k.value().0, k.value().1));
                    }
                }
                Ok::<_, DomainError>(out)
            })
            .await?;
    }
    Ok(report)
}

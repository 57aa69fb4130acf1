//! The OCI registry's rules: blobs (linked per repository, stored once), manifests (byte-exact,
//! validated, reference-counted), tags, referrers, catalog, the Packages view, GC and fsck.
//! Access follows the forge repository `<owner>/<repo>` named by the first two components.

pub mod manifest;
pub mod upload;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::ControlFlow;

pub use crate::api::{BlobFsckReport as FsckReport, GcReport, PackageTagView, PackageView};
use serde::Serialize;

use super::{protection, repo_access_txn, Core, DomainError, DomainResult};
use crate::auth::Principal;
use crate::ids::{Digest, OciName, OciTag, Reference, RepoPath, Role};
use crate::storage::mmap::Mapped;
use crate::storage::records::ManifestMeta;
use crate::storage::{blob_refs, manifests, Reads};
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
    let (who, name) = (who.cloned(), name.clone());
    core.db
        .read(move |txn| access_txn(txn, who.as_ref(), &name, need))
        .await
}

/// `access` inside a read transaction the caller goes on using: a pull checks the caller and
/// finds its manifest or blob in one trip to the blocking pool, not two (each trip is two
/// thread wake-ups, which cost more than the lookups). Also the rule of the release artifacts
/// (`domain::release_artifact`), which live under the same names.
pub(crate) fn access_txn<R: Reads>(
    txn: &R,
    who: Option<&Principal>,
    name: &OciName,
    need: Role,
) -> DomainResult<Role> {
    match repo_access_txn(txn, who, &name.repo().key(), need) {
        Ok((_, role)) => Ok(role),
        Err(DomainError::NotFound(_)) if who.is_none() => Err(DomainError::Unauthenticated(
            "authentication required".into(),
        )),
        Err(DomainError::NotFound(_)) => Err(DomainError::NameUnknown),
        Err(e) => Err(e),
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
    let (w, n, d) = (who.cloned(), name.clone(), digest.to_string());
    let size = core
        .db
        .read(move |txn| {
            access_txn(txn, w.as_ref(), &n, Role::Read)?;
            Ok::<_, DomainError>(blob_refs::linked_size(txn, &n, &d)?)
        })
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

/// Where to send a client for a blob's bytes instead of serving them (`--s3-redirect`): a
/// presigned object-store URL after the same checks as `open_blob`; `None` when downloads are
/// not redirected.
pub async fn blob_redirect(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    digest: &Digest,
) -> DomainResult<Option<String>> {
    if !core.blobs.redirects() {
        return Ok(None);
    }
    let (w, n, d) = (who.cloned(), name.clone(), digest.to_string());
    core.db
        .read(move |txn| {
            access_txn(txn, w.as_ref(), &n, Role::Read)?;
            Ok::<_, DomainError>(blob_refs::linked_size(txn, &n, &d)?)
        })
        .await?
        .ok_or(DomainError::BlobUnknown)?;
    let blobs = core.blobs.clone();
    let dg = digest.clone();
    tokio::task::spawn_blocking(move || blobs.presigned_url(&dg))
        .await
        .map_err(DomainError::from)?
        .map_err(|e| DomainError::internal_from("presigning a blob URL", e))
}

/// Unlinks a blob from a repository (202). The file goes when GC finds it unreferenced.
pub async fn delete_blob(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    digest: &Digest,
) -> DomainResult<()> {
    access(core, who, name, Role::Write).await?;
    let (n, d) = (name.clone(), digest.to_string());
    core.db
        .write(move |txn| {
            if !blob_refs::unlink(txn, &n, &d)? {
                return Err(DomainError::BlobUnknown);
            }
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

/// Reads a manifest by tag or digest.
pub async fn get_manifest(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    reference: &Reference,
) -> DomainResult<ManifestFile> {
    let (w, n, r) = (who.cloned(), name.clone(), reference.clone());
    let found = core
        .db
        .read(move |txn| {
            access_txn(txn, w.as_ref(), &n, Role::Read)?;
            let d = match r {
                Reference::Digest(d) => d.to_string(),
                Reference::Tag(t) => match manifests::tagged(txn, &n, t.as_str())? {
                    Some(d) => d,
                    None => return Ok(None),
                },
            };
            Ok::<_, DomainError>(manifests::get(txn, &n, &d)?.map(|m| (d, m)))
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
    let role = access(core, who, name, Role::Write).await?;
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
    let n = name.clone();
    let d = digest.to_string();
    core.db
        .write(move |txn| {
            let mut missing = Vec::new();
            for b in &meta.blobs {
                if !blob_refs::is_linked(txn, &n, b)? {
                    missing.push(b.clone());
                }
            }
            for c in &meta.children {
                if !manifests::exists(txn, &n, c)? {
                    missing.push(c.clone());
                }
            }
            if !missing.is_empty() {
                return Err(DomainError::ManifestBlobUnknown(missing));
            }
            let rules = protection::RegistryRules::load(txn, &n.repo())?;
            for t in &tags {
                match manifests::tagged(txn, &n, t.as_str())? {
                    Some(old) if old != d => rules.check(role, n.as_str(), t.as_str(), "move")?,
                    _ => {}
                }
            }
            manifests::put(txn, &n, &d, &meta)?;
            manifests::set_tags(txn, &n, &d, &tags)?;
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
    let role = access(core, who, name, Role::Write).await?;
    let n = name.clone();
    let r = reference.clone();
    core.db
        .write(move |txn| match r {
            Reference::Tag(t) => {
                if manifests::tagged(txn, &n, t.as_str())?.is_none() {
                    return Err(DomainError::ManifestUnknown);
                }
                protection::RegistryRules::load(txn, &n.repo())?.check(
                    role,
                    n.as_str(),
                    t.as_str(),
                    "delete",
                )?;
                manifests::remove_tag(txn, &n, t.as_str())?;
                Ok(())
            }
            Reference::Digest(d) => {
                let d = d.to_string();
                let rules = protection::RegistryRules::load(txn, &n.repo())?;
                for t in manifests::tags_pointing_at(txn, &n, &d)? {
                    rules.check(role, n.as_str(), &t, &format!("delete the manifest {d} of"))?;
                }
                let in_use = manifests::listed_by_indexes(txn, &n, &d)?;
                if in_use > 0 {
                    return Err(DomainError::Conflict(format!(
                        "{d} is listed by {in_use} index(es) in {n}; delete those first"
                    )));
                }
                match manifests::remove(txn, &n, &d)? {
                    Some(_) => Ok(()),
                    None => Err(DomainError::ManifestUnknown),
                }
            }
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
    let limit = n.unwrap_or(MAX_PAGE).min(MAX_PAGE);
    let (w, nm) = (who.cloned(), name.clone());
    core.db
        .read(move |txn| {
            access_txn(txn, w.as_ref(), &nm, Role::Read)?;
            let (out, more) = manifests::tags_page(txn, &nm, last.as_deref(), limit)?;
            // An empty page of an image nobody ever pushed to is NAME_UNKNOWN (spec); an image
            // that has manifests or blobs but no tags (all deleted) is an empty list.
            if out.is_empty()
                && !more
                && !manifests::has_tags_or_manifests(txn, &nm)?
                && !blob_refs::any_linked(txn, &nm)?
            {
                return Err(DomainError::NameUnknown);
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
            let mut allowed: HashMap<String, bool> = HashMap::new();
            let mut out: Vec<String> = Vec::new();
            let mut more = false;
            manifests::scan_names(txn, last.as_deref(), |name| {
                let repo = match OciName::parse(name) {
                    Ok(n) => n.repo().key(),
                    Err(_) => return ControlFlow::Continue(()),
                };
                let ok = *allowed.entry(repo).or_insert_with_key(|repo| {
                    repo_access_txn(txn, who.as_ref(), repo, Role::Read).is_ok()
                });
                if !ok {
                    return ControlFlow::Continue(());
                }
                if out.len() == limit {
                    more = true;
                    return ControlFlow::Break(());
                }
                out.push(name.to_owned());
                ControlFlow::Continue(())
            })?;
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
    let (w, n, d) = (who.cloned(), name.clone(), digest.to_string());
    let found = core
        .db
        .read(move |txn| {
            access_txn(txn, w.as_ref(), &n, Role::Read)?;
            Ok::<_, DomainError>(manifests::referrers_of(txn, &n, &d)?)
        })
        .await?;
    let mut out = Vec::new();
    for (referrer, m) in found {
        // The spec's artifactType of a referrer: its own, else its config's media type (also
        // for a plain image config, which `ManifestMeta` does not record).
        let effective = m
            .artifact_type
            .clone()
            .or_else(|| manifest::config_media_type(&m.bytes));
        if artifact_type.is_some() && effective != artifact_type {
            continue;
        }
        out.push(ReferrerDescriptor {
            media_type: m.media_type.clone(),
            digest: referrer,
            size: m.bytes.len() as u64,
            artifact_type: effective,
            annotations: serde_json::from_str(&m.annotations_json).ok().flatten(),
        });
    }
    Ok(out)
}

/// The Packages-tab size of a manifest: its declared size, or for an index the sum over the
/// children stored in `name`.
fn package_size<R: crate::storage::Reads>(txn: &R, name: &OciName, m: &ManifestMeta) -> u64 {
    if manifest::is_index(&m.media_type) {
        m.children
            .iter()
            .filter_map(|c| manifests::get(txn, name, c).ok().flatten())
            .map(|c| c.total_size)
            .sum()
    } else {
        m.total_size
    }
}

/// The stored size of an image: every blob (config or layer) referenced by a tagged manifest,
/// or by a child of a tagged index, counted once, so layers shared between tags, platforms or
/// manifests do not inflate the Packages tab's total. Blobs sizes are the stored ones.
fn image_size<R: crate::storage::Reads>(txn: &R, name: &OciName) -> DomainResult<u64> {
    let mut blobs = BTreeSet::new();
    for (_, _, m) in manifests::tags_with_manifests(txn, name)? {
        blobs.extend(m.blobs.iter().cloned());
        if manifest::is_index(&m.media_type) {
            for c in &m.children {
                if let Some(child) = manifests::get(txn, name, c)? {
                    blobs.extend(child.blobs);
                }
            }
        }
    }
    let mut total = 0u64;
    for d in &blobs {
        if let Some(b) = blob_refs::get(txn, d)? {
            total = total.saturating_add(b.size);
        }
    }
    Ok(total)
}

fn tags_of_txn<R: crate::storage::Reads>(
    txn: &R,
    name: &OciName,
) -> DomainResult<Vec<PackageTagView>> {
    let mut out = Vec::new();
    let rules = protection::RegistryRules::load(txn, &name.repo())?;
    for (tag, digest, m) in manifests::tags_with_manifests(txn, name)? {
        out.push(PackageTagView {
            protected: rules.protecting(&tag).is_some(),
            tag,
            digest,
            size: package_size(txn, name, &m),
            media_type: m.media_type,
            platforms: m.platforms,
            pushed_at: rfc3339(m.pushed_at),
        });
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
            for name in manifests::names_of_repo(txn, &repo)? {
                let (tags, total_size) = match OciName::parse(&name) {
                    Ok(n) => (tags_of_txn(txn, &n)?, image_size(txn, &n)?),
                    Err(_) => (Vec::new(), 0),
                };
                let newest = tags.iter().max_by(|a, b| a.pushed_at.cmp(&b.pushed_at));
                out.push(PackageView {
                    pull: newest
                        .map(|t| format!("{name}:{}", t.tag))
                        .unwrap_or_else(|| name.clone()),
                    last_push: newest.map(|t| t.pushed_at.clone()),
                    total_size,
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
    let tags = core.db.read(move |txn| tags_of_txn(txn, &name)).await?;
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
            // Retention first, so the blobs only its removals held are found below.
            report.retention = super::retention::plan(txn, now)?;
            if !dry_run {
                super::retention::apply(txn, &report.retention)?;
            }
            for (d, meta) in blob_refs::unreferenced(txn)? {
                if now - meta.touched_at < grace_secs {
                    continue;
                }
                if !dry_run {
                    blob_refs::remove(txn, &d)?;
                }
                report.blobs.push(d);
                report.bytes += meta.size;
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
    if !dry_run {
        core.metrics.gc_ran(report.blobs.len() as u64, report.bytes);
    }
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
    let digests: Vec<String> = core.db.read(blob_refs::digests).await?;
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
                let mut still = Vec::new();
                for d in missing {
                    if blob_refs::get(txn, &d)?.is_some() {
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
            .read(move |txn| manifests::listing_blobs(txn, |b| bad.contains(b)))
            .await?;
    }
    Ok(report)
}

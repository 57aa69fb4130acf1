//! `pfai fsck`: checks that rows and files agree, beyond the blobs `registry::fsck` re-hashes:
//! release assets (file missing or its BLAKE3 — SHA-256 for rows without one — changed), files no row owns (under the asset base
//! and in `uploads/`, blob files without a row), and git tags pfai created for a release that
//! was never recorded (a kill between the tag and the release's commit, told apart from pushed
//! tags by PENDING_RELEASE_TAGS). The table sweeps are `storage::audit`'s; this module holds
//! the rules. `repair` fixes only what is safe: orphan files are removed, an orphan
//! release tag is deleted only while it still points where pfai put it and no release names it.
//! An asset stored before schema 3 gets its BLAKE3 recorded (computed in the same pass that
//! re-verified its SHA-256). Damaged or missing asset files are reported, never "repaired" by dropping data.

use std::collections::HashSet;

pub use crate::api::{Finding, FindingKind as Kind, FsckReport};

use super::{registry, Core, DomainError, DomainResult};
use crate::auth::Principal;
use crate::ids::{Algorithm, AssetName, GitTagName, RepoPath};
use crate::storage::blob::BlobStore;
use crate::storage::blob::Hasher;
use crate::storage::files::{AssetFiles, AssetKey};
use crate::storage::records::Asset;
use crate::storage::{assets, audit, totals};

fn finding(kind: Kind, detail: impl Into<String>) -> Finding {
    Finding {
        kind,
        repository: None,
        release: None,
        asset: None,
        tag: None,
        path: None,
        detail: detail.into(),
        repaired: None,
    }
}

/// Runs every check (site admins); with `repair`, fixes what is safe.
pub async fn run(core: &Core, who: Option<&Principal>, repair: bool) -> DomainResult<FsckReport> {
    // Checks that the caller is a site admin before anything else.
    let blobs = registry::fsck(core, who).await?;
    let mut findings = Vec::new();
    let assets_checked = check_assets(core, repair, &mut findings).await?;
    {
        // No write that places a file or tag before its row is in flight while orphans are
        // judged (and removed).
        let _gate = core.fsck_gate.write().await;
        orphan_asset_files(core, repair, &mut findings).await?;
        orphan_upload_files(core, repair, &mut findings).await?;
        pending_tags(core, repair, &mut findings).await?;
    }
    orphan_blob_files(core, repair, &mut findings).await?;
    store_totals(core, repair, &mut findings).await?;
    quota_counters(core, repair, &mut findings).await?;
    let problems = blobs.corrupt.len()
        + blobs.missing.len()
        + findings.iter().filter(|f| f.repaired.is_none()).count();
    core.metrics
        .fsck_ran(problems as u64, crate::util::now_unix());
    Ok(FsckReport {
        blobs,
        assets_checked,
        findings,
        problems,
    })
}

/// Where a row's asset is stored (`None` for a row whose names no longer parse).
fn asset_key(a: &Asset) -> Option<AssetKey> {
    Some(AssetKey {
        repo: RepoPath::parse_key(&a.repo).ok()?,
        release: a.release_id,
        asset: a.id,
        name: AssetName::parse(&a.name).ok()?,
    })
}

/// Every asset row with its release's tag name (its id when the release row is gone).
async fn asset_rows(core: &Core) -> DomainResult<Vec<(Asset, String)>> {
    let rows = core
        .db
        .read(|txn| Ok::<_, DomainError>(audit::assets_with_release_tags(txn)?))
        .await?;
    Ok(rows
        .into_iter()
        .map(|(a, tag)| {
            let tag = tag.unwrap_or_else(|| a.release_id.to_string());
            (a, tag)
        })
        .collect())
}

async fn check_assets(core: &Core, repair: bool, findings: &mut Vec<Finding>) -> DomainResult<u64> {
    let rows = asset_rows(core).await?;
    let files = core.assets.clone();
    let found = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let mut checked = 0u64;
        let mut missing = Vec::new();
        for (a, tag) in rows {
            let Some(key) = asset_key(&a) else {
                continue;
            };
            checked += 1;
            let mut f = finding(Kind::AssetMissing, "");
            f.repository = Some(a.repo.clone());
            f.release = Some(tag);
            f.asset = Some(a.name.clone());
            f.path = Some(AssetFiles::name(&key));
            // BLAKE3 is the cheaper re-hash; rows from before schema 3 have only SHA-256, and
            // get their BLAKE3 from the same pass.
            let hasher = match a.blake3 {
                Some(_) => Hasher::new(Algorithm::Blake3),
                None => Hasher::pair(Algorithm::Sha256, Algorithm::Blake3),
            };
            match files.hash(&key, hasher) {
                Ok(h) => {
                    let (alg, want) = match &a.blake3 {
                        Some(b) => ("BLAKE3", b.as_str()),
                        None => ("SHA-256", a.sha256.as_str()),
                    };
                    let got = h.digest();
                    if got.hex() != want {
                        f.kind = Kind::AssetCorrupt;
                        f.detail = format!(
                            "the file's {alg} is {}, the row says {want}; re-upload the asset",
                            got.hex()
                        );
                    } else if let Some(b3) = h.second_digest() {
                        f.kind = Kind::AssetBlake3Missing;
                        f.detail = format!(
                            "stored before pfai recorded BLAKE3 (its SHA-256 checks out); \
                             --repair records {}",
                            b3.hex()
                        );
                        missing.push((a.id, b3.hex().to_owned(), out.len()));
                    } else {
                        continue;
                    }
                }
                Err(e) => {
                    f.detail = format!("the asset's file cannot be read ({e}); re-upload it");
                }
            }
            out.push(f);
        }
        (checked, out, missing)
    })
    .await?;
    let (checked, mut found, missing) = found;
    if repair && !missing.is_empty() {
        let rows: Vec<(u64, String)> = missing.iter().map(|(id, b, _)| (*id, b.clone())).collect();
        core.db
            .write(move |txn| {
                for (id, b3) in &rows {
                    assets::set_blake3(txn, *id, b3)?;
                }
                Ok::<_, DomainError>(())
            })
            .await?;
        for (_, _, at) in missing {
            found[at].repaired = Some("recorded its BLAKE3".into());
        }
    }
    findings.extend(found);
    Ok(checked)
}

async fn orphan_asset_files(
    core: &Core,
    repair: bool,
    findings: &mut Vec<Finding>,
) -> DomainResult<()> {
    let rows = asset_rows(core).await?;
    let files = core.assets.clone();
    let found = tokio::task::spawn_blocking(move || {
        let known: HashSet<String> = rows
            .iter()
            .filter_map(|(a, _)| asset_key(a))
            .map(|k| AssetFiles::name(&k))
            .collect();
        let mut out = Vec::new();
        for rel in files.list() {
            if known.contains(&rel) {
                continue;
            }
            let parts: Vec<&str> = rel.split('/').collect();
            let mut f = finding(
                Kind::OrphanAssetFile,
                "a file under the asset directory that no asset row points at",
            );
            if let [owner, repo, release, file] = parts.as_slice() {
                f.repository = Some(format!("{owner}/{repo}"));
                f.release = Some((*release).to_owned());
                f.asset = Some((*file).to_owned());
            }
            f.path = Some(rel.clone());
            if repair {
                f.repaired = Some(match files.remove_named(&rel) {
                    Ok(()) => "removed the file".into(),
                    Err(e) => {
                        f.detail = format!("{}; removing it failed: {e}", f.detail);
                        out.push(f);
                        continue;
                    }
                });
            }
            out.push(f);
        }
        out
    })
    .await?;
    findings.extend(found);
    Ok(())
}

async fn orphan_upload_files(
    core: &Core,
    repair: bool,
    findings: &mut Vec<Finding>,
) -> DomainResult<()> {
    let known = core
        .db
        .read(|txn| Ok::<_, DomainError>(audit::upload_ids(txn)?))
        .await?;
    let Ok(rd) = std::fs::read_dir(core.blobs.uploads_dir()) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // Dot files are monolithic uploads in flight (and purged at startup).
        if name.starts_with('.') || known.contains(&name) || core.uploads.is_live(&name) {
            continue;
        }
        if e.file_type().map(|t| t.is_dir()).unwrap_or(true) {
            continue;
        }
        let mut f = finding(
            Kind::OrphanUploadFile,
            "a file in uploads/ without an upload session",
        );
        f.path = Some(format!("uploads/{name}"));
        if repair {
            match std::fs::remove_file(e.path()) {
                Ok(()) => f.repaired = Some("removed the file".into()),
                Err(err) => f.detail = format!("{}; removing it failed: {err}", f.detail),
            }
        }
        findings.push(f);
    }
    Ok(())
}

/// Blob files no row owns. Judged under `Core::blob_gc` held exclusively, like GC itself: an
/// upload between publishing its file and committing its link holds it shared.
async fn orphan_blob_files(
    core: &Core,
    repair: bool,
    findings: &mut Vec<Finding>,
) -> DomainResult<()> {
    let _no_publishing = core.blob_gc.write().await;
    let known: HashSet<String> = core
        .db
        .read(|txn| Ok::<_, DomainError>(audit::blob_digests(txn)?))
        .await?;
    let blobs = core.blobs.clone();
    let on_disk = tokio::task::spawn_blocking(move || blobs.list()).await?;
    for d in on_disk {
        if known.contains(&d.to_string()) {
            continue;
        }
        let mut f = finding(Kind::OrphanBlobFile, "a blob file without a blob row");
        f.path = Some(format!("blobs/{}", BlobStore::name(&d)));
        if repair {
            match core.blobs.remove(&d) {
                Ok(()) => f.repaired = Some("removed the file".into()),
                Err(err) => f.detail = format!("{}; removing it failed: {err}", f.detail),
            }
        }
        findings.push(f);
    }
    Ok(())
}

async fn forget(core: &Core, repo: &str, tag: &str) -> DomainResult<()> {
    let (r, t) = (repo.to_owned(), tag.to_owned());
    core.db
        .write(move |txn| Ok::<_, DomainError>(audit::drop_pending_tag(txn, &r, &t)?))
        .await
}

async fn pending_tags(core: &Core, repair: bool, findings: &mut Vec<Finding>) -> DomainResult<()> {
    let rows = core
        .db
        .read(|txn| Ok::<_, DomainError>(audit::pending_tags(txn)?))
        .await?;
    for p in rows {
        let mut f = finding(Kind::StalePendingTag, "");
        f.repository = Some(p.repo.clone());
        f.tag = Some(p.tag.clone());
        let parsed = RepoPath::parse_key(&p.repo)
            .ok()
            .zip(GitTagName::parse(&p.tag).ok());
        let current = match (&parsed, p.released) {
            (Some((repo, tag)), false) => {
                let (r, t) = (repo.clone(), tag.clone());
                core.git(move |g| g.find_tag(&r, &t)).await.ok().flatten()
            }
            _ => None,
        };
        let mut delete_tag = None;
        match current {
            _ if p.released => {
                f.release = Some(p.tag.clone());
                f.detail = "the release was recorded; the pending-tag record is left over".into();
            }
            None => f.detail = "the tag pfai was about to create does not exist".into(),
            Some(info) if info.ref_target != p.commit => {
                f.detail = format!(
                    "a tag created for a release that was never recorded was moved since (now {}, \
                     was {}); it is left alone",
                    info.ref_target, p.commit
                );
            }
            Some(info) => {
                f.kind = Kind::OrphanReleaseTag;
                f.detail = format!(
                    "tag created at {} for a release that was never recorded (the server stopped \
                     in between)",
                    p.commit
                );
                delete_tag = Some(info.ref_target);
            }
        }
        // A tag an immutable protection rule matches is never deleted, not by a repair either:
        // it stays as if pushed, and only the record goes.
        let mut locked = None;
        if let (Some(_), Some((repo, tag))) = (&delete_tag, &parsed) {
            locked = super::protection::rules(core, repo)
                .await?
                .hit(tag.as_str())
                .filter(|h| h.immutable)
                .map(|h| h.pattern.to_owned());
        }
        if let Some(p) = &locked {
            f.detail = format!(
                "{}; an immutable protection rule ({p:?}) keeps the tag",
                f.detail
            );
            delete_tag = None;
        }
        if repair {
            let mut done = Ok(match &locked {
                Some(_) => "dropped the pending-tag record; the tag stays".to_owned(),
                None => "dropped the pending-tag record".to_owned(),
            });
            if let (Some(expected), Some((repo, tag))) = (delete_tag, parsed) {
                // The expected old value makes git refuse if a push moved the tag meanwhile.
                done = core
                    .git(move |g| g.delete_tag(&repo, &tag, &expected))
                    .await
                    .map(|()| "deleted the tag".to_owned())
                    .map_err(|e| e.chain().to_string());
            }
            match done {
                Ok(what) => match forget(core, &p.repo, &p.tag).await {
                    Ok(()) => f.repaired = Some(what),
                    Err(e) => f.detail = format!("{}; repair failed: {}", f.detail, e.chain()),
                },
                Err(e) => f.detail = format!("{}; deleting the tag failed: {e}", f.detail),
            }
        }
        findings.push(f);
    }
    Ok(())
}

/// The running store totals against a recount, read in one transaction (so no write slips
/// between the two); `repair` sets them to a recount made inside the repairing write.
async fn store_totals(core: &Core, repair: bool, findings: &mut Vec<Finding>) -> DomainResult<()> {
    let found = core
        .db
        .read(move |txn| {
            let (kept, actual) = (totals::read(txn)?, totals::recount(txn)?);
            Ok::<_, DomainError>((kept != actual).then_some((kept, actual)))
        })
        .await?;
    if found.is_some() && repair {
        core.db
            .write(|txn| Ok::<_, DomainError>(totals::rebuild(txn).map(|_| ())?))
            .await?;
    }
    if let Some((kept, actual)) = found {
        let mut f = finding(
            Kind::StoreTotals,
            format!(
                "store totals say {} blobs ({} bytes) and {} assets ({} bytes); the rows hold {} \
                 blobs ({} bytes) and {} assets ({} bytes)",
                kept.blob_count,
                kept.blob_bytes,
                kept.asset_count,
                kept.asset_bytes,
                actual.blob_count,
                actual.blob_bytes,
                actual.asset_count,
                actual.asset_bytes
            ),
        );
        if repair {
            f.repaired = Some("set the totals to the recount".into());
        }
        findings.push(f);
    }
    Ok(())
}

/// Compares the per-owner usage counters with a recount; `repair` rebuilds them (in one write
/// transaction, so the recount and the rewrite see the same rows).
async fn quota_counters(
    core: &Core,
    repair: bool,
    findings: &mut Vec<Finding>,
) -> DomainResult<()> {
    use crate::storage::quota;
    let found = core
        .db
        .write(move |txn| {
            let fresh = quota::recount(txn)?;
            let stored = quota::stored(txn)?;
            let mut out = Vec::new();
            let owners: std::collections::BTreeSet<&String> =
                fresh.usage.keys().chain(stored.usage.keys()).collect();
            for o in owners {
                let (want, have) = (
                    fresh.usage.get(o).copied().unwrap_or(0),
                    stored.usage.get(o).copied().unwrap_or(0),
                );
                if want != have {
                    let mut f = finding(
                        Kind::QuotaUsageWrong,
                        format!("{o}: usage counter says {have} bytes, a recount finds {want}"),
                    );
                    f.repaired = repair.then(|| "counter rebuilt".to_owned());
                    out.push(f);
                }
            }
            if fresh.owner_blobs != stored.owner_blobs {
                let mut f = finding(
                    Kind::QuotaUsageWrong,
                    "the per-owner blob membership differs from a recount of the repository links",
                );
                f.repaired = repair.then(|| "membership rebuilt".to_owned());
                out.push(f);
            }
            if repair && !out.is_empty() {
                quota::rebuild(txn)?;
            }
            Ok::<_, DomainError>(out)
        })
        .await?;
    findings.extend(found);
    Ok(())
}

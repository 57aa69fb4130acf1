//! Reading a bundle: the body is staged into a scratch directory, each blob hashed while it is
//! written and refused (422, naming the item) when its digest differs or the file is cut; the
//! index and every manifest it reaches are checked for completeness; the caller's rights on
//! every target owner are checked. Only then is anything applied, item by item, each through
//! the same stores and rules as the API: repositories, tag rules, git refs (a protected tag
//! that differs is reported, not moved), releases (files first, then one transaction per
//! release), images (blobs through the verified upload path, manifests byte for byte bottom
//! up, tags last). Every step first compares with what is there, so a second import changes
//! nothing and a re-run after a kill finishes the job.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::*;
use crate::api::MakeLatest;
use crate::auth::Principal;
use crate::domain::registry::{self, manifest, upload};
use crate::domain::{immutable, protection, Core, DomainError, DomainResult};
use crate::ids::{Algorithm, AssetName, Digest, GitTagName, Hasher, OciName, OciTag, Reference};
use crate::ids::{RepoPath, Role};
use crate::storage::files::AssetKey;
use crate::storage::records::{Asset, Release};
use crate::storage::{accounts, assets, blob_refs, manifests, releases};

/// A verified blob in the scratch directory.
#[derive(Debug, Clone)]
struct Staged {
    path: PathBuf,
    size: u64,
}

/// The scratch directory of one import, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bad(msg: String) -> DomainError {
    DomainError::Invalid(msg)
}

/// Reads the chunks the async side receives, for the blocking tar reader.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// What the tar held: verified blobs and the index.
struct Contents {
    blobs: HashMap<String, Staged>,
    index: Vec<u8>,
    bytes: u64,
}

/// Reads the tar, staging and verifying every blob. Any bad item refuses the whole file.
fn read_tar<R: Read>(reader: R, dir: &Path) -> DomainResult<Contents> {
    let mut ar = tar::Archive::new(reader);
    let mut blobs = HashMap::new();
    let mut index = None;
    let mut layout = false;
    let mut bytes = 0u64;
    let entries = ar
        .entries()
        .map_err(|e| bad(format!("the bundle is not a tar file: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| {
            bad(format!(
                "the bundle is truncated or not a tar file after {} blob(s): {e}",
                blobs.len()
            ))
        })?;
        let path = entry.path_bytes();
        let path = String::from_utf8_lossy(&path)
            .trim_start_matches("./")
            .to_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            return Err(bad(format!("bundle item {path}: not a regular file")));
        }
        let size = entry.size();
        match path.as_str() {
            "oci-layout" | "index.json" => {
                if size > MAX_DOC {
                    return Err(bad(format!("bundle item {path}: over {MAX_DOC} bytes")));
                }
                let mut buf = Vec::with_capacity(size as usize);
                entry
                    .read_to_end(&mut buf)
                    .map_err(|e| bad(format!("bundle item {path}: unreadable: {e}")))?;
                if buf.len() as u64 != size {
                    return Err(bad(format!("bundle item {path}: truncated")));
                }
                if path == "oci-layout" {
                    layout = true;
                } else if index.replace(buf).is_some() {
                    // Tools that read the first copy and tools that read the last would
                    // disagree about what the file holds.
                    return Err(bad("the bundle holds index.json twice".into()));
                }
            }
            _ => {
                let d = path_digest(&path)
                    .ok_or_else(|| bad(format!("bundle item {path}: not part of a bundle")))?;
                let file = dir.join(format!("{}-{}", d.algorithm().name(), d.hex()));
                let mut out = std::fs::File::create(&file)?;
                let mut h = Hasher::new(d.algorithm());
                let mut buf = vec![0u8; 256 << 10];
                let mut n = 0u64;
                loop {
                    let k = entry.read(&mut buf).map_err(|e| {
                        bad(format!("bundle item {path}: truncated or unreadable: {e}"))
                    })?;
                    if k == 0 {
                        break;
                    }
                    h.update(&buf[..k]);
                    io::Write::write_all(&mut out, &buf[..k])?;
                    n += k as u64;
                }
                if n != size {
                    return Err(bad(format!(
                        "bundle item {path}: truncated ({n} of {size} bytes)"
                    )));
                }
                let got = h.digest();
                if got != d {
                    return Err(bad(format!(
                        "bundle item {path}: its content does not match its digest (it hashes to {got}); the bundle was altered or damaged"
                    )));
                }
                bytes += n;
                blobs.insert(
                    d.to_string(),
                    Staged {
                        path: file,
                        size: n,
                    },
                );
            }
        }
    }
    if !layout {
        return Err(bad(
            "the bundle has no oci-layout file: not an OCI image layout".into(),
        ));
    }
    let index = index.ok_or_else(|| {
        bad("the bundle ends before its index.json: the file is truncated".into())
    })?;
    Ok(Contents {
        blobs,
        index,
        bytes,
    })
}

/// The fuzz body of `bundle_reader`: reads a tar from `data` as an import does (blobs staged
/// under `dir`) and plans it; returns the verified blobs on success. Must never panic.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn read_and_plan(data: &[u8], dir: &Path) -> Option<Vec<(String, PathBuf)>> {
    let contents = read_tar(data, dir).ok()?;
    plan(&contents).ok()?;
    Some(
        contents
            .blobs
            .into_iter()
            .map(|(d, s)| (d, s.path))
            .collect(),
    )
}

/// A repository to apply.
struct RepoPlan {
    path: RepoPath,
    meta: RepoMeta,
    rules: Vec<RuleMeta>,
    git: Option<Staged>,
}

/// A release to apply.
struct ReleasePlan {
    repo: RepoPath,
    meta: ReleaseMeta,
    latest: bool,
    files: Vec<Staged>,
}

/// An image to apply: tags `(tag, digest, media type)` and referrers `(digest, media type)`.
#[derive(Default)]
struct ImagePlan {
    tags: Vec<(OciTag, Digest, String)>,
    referrers: Vec<(Digest, String)>,
}

struct Plan {
    repos: Vec<RepoPlan>,
    releases: Vec<ReleasePlan>,
    images: BTreeMap<String, ImagePlan>,
}

fn read_doc<T: serde::de::DeserializeOwned>(
    c: &Contents,
    digest: &str,
    what: &str,
) -> DomainResult<T> {
    let s = c
        .blobs
        .get(digest)
        .ok_or_else(|| bad(format!("{what}: blob {digest} is missing from the bundle")))?;
    if s.size > MAX_DOC {
        return Err(bad(format!("{what}: over {MAX_DOC} bytes")));
    }
    let bytes = std::fs::read(&s.path)?;
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("{what}: invalid JSON: {e}")))
}

fn annotation<'a>(d: &'a Desc, key: &str) -> DomainResult<&'a str> {
    d.annotations.get(key).map(String::as_str).ok_or_else(|| {
        bad(format!(
            "index.json: {} lacks the {key} annotation",
            d.digest
        ))
    })
}

fn plan(c: &Contents) -> DomainResult<Plan> {
    let index: Index =
        serde_json::from_slice(&c.index).map_err(|e| bad(format!("index.json: {e}")))?;
    let mut p = Plan {
        repos: Vec::new(),
        releases: Vec::new(),
        images: BTreeMap::new(),
    };
    for d in &index.manifests {
        match d.annotations.get(KIND).map(String::as_str) {
            Some("repo") => {
                let what = format!("repository manifest {}", d.digest);
                let m: ArtifactManifest = read_doc(c, &d.digest, &what)?;
                let mut meta = None;
                let mut rules = None;
                let mut git = None;
                for l in &m.layers {
                    match l.media_type.as_str() {
                        REPO_JSON => meta = Some(read_doc::<RepoMeta>(c, &l.digest, &what)?),
                        RULES_JSON => rules = Some(read_doc(c, &l.digest, &what)?),
                        GIT_BUNDLE => {
                            git = Some(c.blobs.get(&l.digest).cloned().ok_or_else(|| {
                                bad(format!("{what}: git bundle {} is missing", l.digest))
                            })?)
                        }
                        _ => {}
                    }
                }
                let meta = meta.ok_or_else(|| bad(format!("{what}: no repository JSON")))?;
                let path = RepoPath::parse_key(&meta.repo)
                    .map_err(|e| bad(format!("{what}: repository {}: {e}", meta.repo)))?;
                p.repos.push(RepoPlan {
                    path,
                    meta,
                    rules: rules.unwrap_or_default(),
                    git,
                });
            }
            Some("release") => {
                let what = format!("release manifest {}", d.digest);
                let m: ArtifactManifest = read_doc(c, &d.digest, &what)?;
                let first = m
                    .layers
                    .first()
                    .filter(|l| l.media_type == RELEASE_JSON)
                    .ok_or_else(|| bad(format!("{what}: no release JSON")))?;
                let meta: ReleaseMeta = read_doc(c, &first.digest, &what)?;
                let repo = RepoPath::parse_key(annotation(d, REPO)?)
                    .map_err(|e| bad(format!("{what}: {e}")))?;
                crate::domain::release::check_text(&meta.name, &meta.body)
                    .map_err(|e| bad(format!("release {}: {e}", meta.tag)))?;
                GitTagName::parse(&meta.tag)
                    .map_err(|e| bad(format!("release {}: {e}", meta.tag)))?;
                let mut files = Vec::new();
                let mut seen = std::collections::BTreeSet::new();
                for a in &meta.assets {
                    AssetName::parse(&a.name)
                        .map_err(|e| bad(format!("{what}: asset {}: {e}", a.name)))?;
                    if !seen.insert(a.name.as_str()) {
                        return Err(bad(format!(
                            "release {} has two assets named {}",
                            meta.tag, a.name
                        )));
                    }
                    let printable =
                        |s: &str, max: usize| s.len() <= max && !s.chars().any(char::is_control);
                    if !printable(&a.label, 255)
                        || !printable(&a.content_type, 200)
                        || !printable(&a.uploader, 255)
                        || a.blake3.as_ref().is_some_and(|b| !printable(b, 64))
                    {
                        return Err(bad(format!(
                            "release {} asset {}: a label, content type or uploader is too long or not printable",
                            meta.tag, a.name
                        )));
                    }
                    let key = format!("sha256:{}", a.sha256);
                    let s = c.blobs.get(&key).ok_or_else(|| {
                        bad(format!(
                            "release {} asset {}: blob {key} is missing from the bundle",
                            meta.tag, a.name
                        ))
                    })?;
                    if s.size != a.size {
                        return Err(bad(format!(
                            "release {} asset {}: {} bytes, not {}",
                            meta.tag, a.name, s.size, a.size
                        )));
                    }
                    files.push(s.clone());
                }
                let latest = d.annotations.get(LATEST).is_some_and(|v| v == "true");
                p.releases.push(ReleasePlan {
                    repo,
                    meta,
                    latest,
                    files,
                });
            }
            Some(kind @ ("image" | "manifest")) => {
                let name = annotation(d, IMAGE)?;
                OciName::parse(name).map_err(|e| bad(format!("image {name}: {e}")))?;
                let digest = Digest::parse(&d.digest)
                    .map_err(|e| bad(format!("index.json: {}: {e}", d.digest)))?;
                let img = p.images.entry(name.to_owned()).or_default();
                if kind == "image" {
                    let tag = OciTag::parse(annotation(d, TAG)?)
                        .map_err(|e| bad(format!("image {name}: {e}")))?;
                    img.tags.push((tag, digest, d.media_type.clone()));
                } else {
                    img.referrers.push((digest, d.media_type.clone()));
                }
            }
            _ => {}
        }
    }
    for r in &p.releases {
        if !p.repos.iter().any(|x| x.path == r.repo) {
            return Err(bad(format!(
                "release {} of {} comes without its repository",
                r.meta.tag, r.repo
            )));
        }
    }
    for name in p.images.keys() {
        let repo = OciName::parse(name).map(|n| n.repo());
        if !repo.is_ok_and(|r| p.repos.iter().any(|x| x.path == r)) {
            return Err(bad(format!("image {name} comes without its repository")));
        }
    }
    Ok(p)
}

/// The children of an index, with their media types (from its `manifests` descriptors).
#[derive(serde::Deserialize)]
struct Children {
    #[serde(default)]
    manifests: Vec<ChildDesc>,
}

#[derive(serde::Deserialize)]
struct ChildDesc {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    digest: String,
}

/// Checks that every manifest and blob an image needs is in the bundle or, for an incremental
/// bundle, already in that image here.
async fn check_image(
    core: &Core,
    c: &Contents,
    name: &OciName,
    img: &ImagePlan,
) -> DomainResult<()> {
    let mut todo: Vec<(Digest, String)> = img
        .tags
        .iter()
        .map(|(_, d, mt)| (d.clone(), mt.clone()))
        .chain(img.referrers.iter().cloned())
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut need_blobs = Vec::new();
    let mut need_manifests = Vec::new();
    while let Some((d, mt)) = todo.pop() {
        if !seen.insert(d.to_string()) {
            continue;
        }
        let Some(s) = c.blobs.get(&d.to_string()) else {
            need_manifests.push(d.to_string());
            continue;
        };
        if s.size > core.limits.manifest_max {
            return Err(bad(format!("image {name}: manifest {d} is too large")));
        }
        let bytes = std::fs::read(&s.path)?;
        let parsed = manifest::parse(Some(&mt), &bytes)
            .map_err(|e| bad(format!("image {name}: manifest {d}: {e}")))?;
        if manifest::is_index(&parsed.media_type) {
            let kids: Children = serde_json::from_slice(&bytes)
                .map_err(|e| bad(format!("image {name}: index {d}: {e}")))?;
            for k in kids.manifests {
                let kd = Digest::parse(&k.digest)
                    .map_err(|e| bad(format!("image {name}: index {d}: {e}")))?;
                todo.push((kd, k.media_type.unwrap_or_else(|| OCI_MANIFEST.into())));
            }
        }
        for b in parsed.blobs {
            if !c.blobs.contains_key(&b.to_string()) {
                need_blobs.push(b.to_string());
            }
        }
    }
    if need_blobs.is_empty() && need_manifests.is_empty() {
        return Ok(());
    }
    let n = name.clone();
    let missing = core
        .db
        .read(move |txn| {
            let mut missing = Vec::new();
            for b in need_blobs {
                if !blob_refs::is_linked(txn, &n, &b)? {
                    missing.push(b);
                }
            }
            for m in need_manifests {
                if !manifests::exists(txn, &n, &m)? {
                    missing.push(m);
                }
            }
            Ok::<_, DomainError>(missing)
        })
        .await?;
    match missing.first() {
        None => Ok(()),
        Some(m) => Err(bad(format!(
            "image {name}: {m} is in neither the bundle nor this server (an incremental bundle needs the earlier one imported first)"
        ))),
    }
}

/// Refuses the whole import unless the caller administers every repository it names (or may
/// create the missing ones as their owner's admin).
async fn authorize(core: &Core, who: &Principal, p: &Plan) -> DomainResult<()> {
    for r in &p.repos {
        let (w, path) = (who.clone(), r.path.clone());
        core.db
            .read(move |txn| {
                // An existing repository the caller does not administer gets the answer a
                // missing one gets, so a refusal does not tell whether a private one exists.
                if accounts::repo(txn, &path.key())?.is_some()
                    && crate::domain::repo_access_txn(txn, Some(&w), &path.key(), Role::Admin)
                        .is_ok()
                {
                    return Ok(());
                }
                let owner = path.owner.as_str();
                let is_org = accounts::org_exists(txn, owner)?;
                if !is_org && !accounts::user_exists(txn, owner)? {
                    return Err(bad(format!(
                        "owner {owner} of {path} does not exist here; create it first"
                    )));
                }
                let ok = w.admin
                    || w.username == owner
                    || (is_org
                        && accounts::org_role(txn, owner, &w.username)?
                            .is_some_and(|r| r >= Role::Admin));
                if !ok {
                    return Err(DomainError::Forbidden(format!(
                        "you need admin rights on {owner} to import {path}"
                    )));
                }
                Ok::<_, DomainError>(())
            })
            .await?;
    }
    Ok(())
}

fn item(kind: &str, name: impl Into<String>, outcome: &str, detail: Option<String>) -> BundleItem {
    BundleItem {
        kind: kind.into(),
        name: name.into(),
        outcome: outcome.into(),
        detail,
    }
}

/// Verifies a whole bundle from `body` (at most `max` bytes) and applies it (see the module
/// doc). A bad or incomplete file is refused before anything becomes visible.
pub async fn import<S, E>(
    core: &Arc<Core>,
    who: Option<&Principal>,
    mut body: S,
    max: u64,
) -> DomainResult<BundleImportReport>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let who_p = crate::domain::account::require(who)?.clone();
    let mut rnd = [0u8; 12];
    crate::util::fill_random(&mut rnd);
    let dir = core
        .blobs
        .uploads_dir()
        .join(format!(".bundle-import-{}", hex::encode(rnd)));
    std::fs::create_dir_all(&dir)?;
    // Absolute: git runs in the repository's directory and is handed paths under this one.
    let scratch = Scratch(std::fs::canonicalize(&dir)?);
    let (tx, rx) = mpsc::channel(8);
    let dir = scratch.0.clone();
    let reading = tokio::task::spawn_blocking(move || {
        read_tar(
            ChannelReader {
                rx,
                cur: Bytes::new(),
            },
            &dir,
        )
    });
    let mut received = 0u64;
    let mut too_large = false;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let _ = tx
                    .send(Err(io::Error::other(format!("upload interrupted: {e}"))))
                    .await;
                break;
            }
        };
        received += chunk.len() as u64;
        if received > max {
            too_large = true;
            let _ = tx.send(Err(io::Error::other("over the limit"))).await;
            break;
        }
        if tx.send(Ok(chunk)).await.is_err() {
            // The reader stopped (its error says why): read on, discarding, so the client,
            // still sending, gets the answer instead of a reset connection.
            while let Some(Ok(c)) = body.next().await {
                received += c.len() as u64;
                if received > max {
                    break;
                }
            }
            break;
        }
    }
    drop(tx);
    let contents = reading.await?;
    if too_large {
        return Err(DomainError::TooLarge(format!(
            "bundles are limited to {max} bytes (--bundle-max-bytes)"
        )));
    }
    let contents = contents?;
    let p = plan(&contents)?;
    // Rights first: checking images looks digests up here, which must not tell a caller what
    // a repository it cannot see holds.
    authorize(core, &who_p, &p).await?;
    for (name, img) in &p.images {
        let n = OciName::parse(name)?;
        check_image(core, &contents, &n, img).await?;
    }

    let mut report = BundleImportReport {
        blobs_verified: contents.blobs.len() as u64,
        bytes_verified: contents.bytes,
        ..BundleImportReport::default()
    };
    let who = Some(&who_p);
    for r in &p.repos {
        apply_repo(core, who, r, &mut report.items).await?;
    }
    for r in &p.releases {
        let it = apply_release(core, who, r).await;
        report.items.push(it);
    }
    for (name, img) in &p.images {
        let n = OciName::parse(name)?;
        apply_image(core, who, &contents, &n, img, &mut report.items).await;
    }
    drop(scratch);
    Ok(report)
}

async fn apply_repo(
    core: &Core,
    who: Option<&Principal>,
    r: &RepoPlan,
    items: &mut Vec<BundleItem>,
) -> DomainResult<()> {
    let key = r.path.key();
    let k = key.clone();
    let exists = core
        .db
        .read(move |txn| accounts::repo(txn, &k))
        .await?
        .is_some();
    if exists {
        items.push(item("repo", &key, "unchanged", None));
    } else {
        crate::domain::account::create_repo(
            core,
            who,
            r.path.owner.as_str(),
            r.path.name.as_str(),
            r.meta.private,
            &r.meta.description,
        )
        .await?;
        items.push(item("repo", &key, "created", None));
    }
    // Rules first: a tag the bundle brings is then judged by the rules it came with.
    let have = protection::list(core, who, &r.path).await?;
    for rule in &r.rules {
        let name = format!("{key} {}", rule.pattern);
        match have.iter().find(|h| h.pattern == rule.pattern) {
            Some(h) if h.target == rule.target && h.immutable == rule.immutable => {
                items.push(item("rule", name, "unchanged", None));
            }
            Some(_) => items.push(item(
                "rule",
                name,
                "refused",
                Some(
                    "a rule with this pattern but another target or immutability exists here"
                        .into(),
                ),
            )),
            None => match protection::create(
                core,
                who,
                &r.path,
                &rule.pattern,
                rule.target,
                rule.immutable,
            )
            .await
            {
                Ok(_) => items.push(item("rule", name, "created", None)),
                Err(e) => items.push(item("rule", name, "refused", Some(e.to_string()))),
            },
        }
    }
    let Some(git) = &r.git else {
        return Ok(());
    };
    let (path, bundle) = (r.path.clone(), git.path.clone());
    let unbundled = core
        .git(move |g| {
            let refs = g.unbundle(&path, &bundle)?;
            let now = g.capture_refs(&path)?;
            Ok((refs, now))
        })
        .await;
    let (incoming, now) = match unbundled {
        Ok(x) => x,
        Err(e) => {
            let why = match &e {
                DomainError::Git(g) => g.to_string(),
                other => other.to_string(),
            };
            items.push(item(
                "ref",
                format!("{key} (git bundle)"),
                "refused",
                Some(format!(
                    "the git bundle does not apply (an incremental bundle needs the earlier one imported first): {why}"
                )),
            ));
            return Ok(());
        }
    };
    let current: HashMap<String, String> = now.refs.into_iter().collect();
    let was_empty = current.is_empty();
    let rules = protection::rules(core, &r.path).await?;
    for (name, oid) in incoming {
        if !(name.starts_with("refs/heads/") || name.starts_with("refs/tags/")) {
            continue;
        }
        let label = format!("{key} {name}");
        let old = current.get(&name);
        if old == Some(&oid) {
            items.push(item("ref", label, "unchanged", None));
            continue;
        }
        if let (Some(old), Some(tag)) = (old, name.strip_prefix("refs/tags/")) {
            if let Some(hit) = rules.hit(tag) {
                items.push(item(
                    "ref",
                    label,
                    "refused",
                    Some(format!(
                        "tag {tag} is protected by rule {:?} and points at {old} here, at {oid} in the bundle: left as it is",
                        hit.pattern
                    )),
                ));
                continue;
            }
        }
        // Like a push without --force: a tag here stays where it is, a branch only moves
        // forward (an older bundle must not rewind what was pushed here since).
        if let Some(old) = old {
            let forward = name.starts_with("refs/heads/") && {
                let (p, o, n) = (r.path.clone(), old.clone(), oid.clone());
                core.git(move |g| g.is_ancestor(&p, &o, &n)).await?
            };
            if !forward {
                items.push(item(
                    "ref",
                    label,
                    "refused",
                    Some(format!(
                        "points at {old} here, at {oid} in the bundle, and that is not a fast-forward: left as it is"
                    )),
                ));
                continue;
            }
        }
        let tombstoned = match name.strip_prefix("refs/tags/") {
            Some(tag) => {
                let (p, t) = (r.path.clone(), tag.to_owned());
                core.db
                    .read(move |txn| {
                        Ok::<_, DomainError>(
                            immutable::refuse_tombstoned(txn, &p, &t, "reused").is_err(),
                        )
                    })
                    .await?
            }
            None => false,
        };
        if tombstoned {
            items.push(item(
                "ref",
                label,
                "refused",
                Some("the tag belonged to an immutable release here and cannot be reused".into()),
            ));
            continue;
        }
        let (p, n, o, old2) = (r.path.clone(), name.clone(), oid.clone(), old.cloned());
        match core
            .git(move |g| g.set_ref(&p, &n, &o, old2.as_deref()))
            .await
        {
            Ok(()) => items.push(item(
                "ref",
                label,
                if old.is_some() { "updated" } else { "created" },
                None,
            )),
            // The report names git's reason (an admin reads it), not only "git failed".
            Err(DomainError::Git(g)) => {
                items.push(item("ref", label, "refused", Some(g.to_string())))
            }
            Err(e) => items.push(item("ref", label, "refused", Some(e.to_string()))),
        }
    }
    if was_empty {
        // HEAD only names a branch the bundle brought; a bad one is reported, not fatal.
        let brought = |h: &String| {
            items.iter().any(|i| {
                i.kind == "ref" && i.name == format!("{key} {h}") && i.outcome == "created"
            })
        };
        if let Some(h) = r.meta.head.clone().filter(brought) {
            let p = r.path.clone();
            if let Err(e) = core.git(move |g| g.set_head(&p, &h)).await {
                items.push(item(
                    "ref",
                    format!("{key} HEAD"),
                    "refused",
                    Some(e.to_string()),
                ));
            }
        }
    }
    Ok(())
}

fn same_release(have: &Release, have_assets: &[Asset], m: &ReleaseMeta) -> bool {
    let mut a: Vec<(&str, &str)> = have_assets
        .iter()
        .map(|a| (a.name.as_str(), a.sha256.as_str()))
        .collect();
    let mut b: Vec<(&str, &str)> = m
        .assets
        .iter()
        .map(|a| (a.name.as_str(), a.sha256.as_str()))
        .collect();
    a.sort();
    b.sort();
    have.name == m.name
        && have.body == m.body
        && have.draft == m.draft
        && have.prerelease == m.prerelease
        && a == b
}

async fn apply_release(core: &Core, who: Option<&Principal>, r: &ReleasePlan) -> BundleItem {
    let name = format!("{}@{}", r.repo, r.meta.tag);
    match create_release(core, who, r).await {
        Ok(outcome) => item("release", name, outcome, None),
        Err(e) => item("release", name, "refused", Some(e.to_string())),
    }
}

/// Creates a release with its original tag, notes, dates and assets: every file in place and
/// durable first, then one transaction for the release and all its asset rows.
async fn create_release(
    core: &Core,
    who: Option<&Principal>,
    r: &ReleasePlan,
) -> DomainResult<&'static str> {
    let m = &r.meta;
    GitTagName::parse(&m.tag).map_err(|e| bad(format!("tag {}: {e}", m.tag)))?;
    let (repo, tag) = (r.repo.clone(), m.tag.clone());
    let existing = core
        .db
        .read(move |txn| {
            Ok::<_, DomainError>(match releases::by_tag(txn, &repo, &tag)? {
                Some(rel) => {
                    let a = assets::of_release(txn, rel.id)?;
                    Some((rel, a))
                }
                None => None,
            })
        })
        .await?;
    if let Some((have, have_assets)) = existing {
        if same_release(&have, &have_assets, m) {
            return Ok("unchanged");
        }
        return Err(DomainError::Conflict(format!(
            "a different release {} exists here: left as it is",
            m.tag
        )));
    }
    let now = crate::util::now_unix();
    let sane = |t: i64| (0..=now + 86_400).contains(&t);
    if !sane(m.created_at) || m.published_at.is_some_and(|t| !sane(t)) {
        return Err(bad(format!("release {}: a date is out of range", m.tag)));
    }
    if m.target_commit.len() > 255 || m.target_commit.chars().any(char::is_control) {
        return Err(bad(format!("release {}: a bad target", m.tag)));
    }
    // A published release's commit is what its tag points at here, whatever the file says:
    // an attestation signed here must not repeat an unchecked claim.
    // A draft keeps the commit it was made at when that commit is here (publishing tags it).
    let mut commit_sha = String::new();
    if m.draft && !m.commit_sha.is_empty() {
        let (repo, c) = (r.repo.clone(), m.commit_sha.clone());
        if core.git(move |g| g.has_object(&repo, &c)).await? {
            commit_sha = m.commit_sha.clone();
        }
    }
    if !m.draft {
        let (repo, t) = (r.repo.clone(), GitTagName::parse(&m.tag)?);
        let Some(tag) = core.git(move |g| g.find_tag(&repo, &t)).await? else {
            return Err(DomainError::Conflict(format!(
                "tag {} does not exist here (its ref was not imported)",
                m.tag
            )));
        };
        if !m.commit_sha.is_empty() && m.commit_sha != tag.commit_sha {
            return Err(DomainError::Conflict(format!(
                "release {} names commit {}, but its tag here points at {}",
                m.tag, m.commit_sha, tag.commit_sha
            )));
        }
        commit_sha = tag.commit_sha;
    }
    // The original author when that user exists here, else the importer.
    let importer = who.map(|w| w.username.clone()).unwrap_or_default();
    let original = m.author.clone();
    let author_here = !original.is_empty()
        && !original.chars().any(char::is_control)
        && core
            .db
            .read(move |txn| Ok::<_, DomainError>(accounts::user_exists(txn, &original)?))
            .await?;
    let author = if author_here {
        m.author.clone()
    } else {
        importer.clone()
    };
    let n = m.assets.len();
    let (release_id, asset_ids) = core
        .db
        .write(move |txn| {
            let rid = releases::next_id(txn)?;
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                ids.push(assets::next_id(txn)?);
            }
            Ok::<_, DomainError>((rid, ids))
        })
        .await?;
    let gate = core.fsck_gate.clone().read_owned().await;
    let mut keys = Vec::new();
    let mut rows = Vec::new();
    for ((a, staged), id) in m.assets.iter().zip(&r.files).zip(&asset_ids) {
        let key = AssetKey {
            repo: r.repo.clone(),
            release: release_id,
            asset: *id,
            name: AssetName::parse(&a.name)?,
        };
        let (files, k, src) = (core.assets.clone(), key.clone(), staged.path.clone());
        let placed = tokio::task::spawn_blocking(move || -> io::Result<String> {
            let (mut file, guard) = files.stage(&k)?;
            let mut input = std::fs::File::open(&src)?;
            let mut h = Hasher::new(Algorithm::Blake3);
            let mut buf = vec![0u8; 256 << 10];
            loop {
                let k2 = input.read(&mut buf)?;
                if k2 == 0 {
                    break;
                }
                h.update(&buf[..k2]);
                io::Write::write_all(&mut file, &buf[..k2])?;
            }
            file.sync_all()?;
            files.publish(guard, &k)?;
            Ok(h.digest().hex().to_owned())
        })
        .await
        .map_err(DomainError::from)
        .and_then(|r| r.map_err(DomainError::from));
        let blake3 = match placed {
            Ok(b) => b,
            Err(e) => {
                let _ = core.assets.remove_release(&r.repo, release_id);
                return Err(e);
            }
        };
        keys.push(key);
        rows.push(Asset {
            id: *id,
            release_id,
            repo: r.repo.key(),
            name: a.name.clone(),
            label: a.label.clone(),
            content_type: a.content_type.clone(),
            size: a.size,
            sha256: a.sha256.clone(),
            uploader: a.uploader.clone(),
            created_at: a.created_at,
            download_count: 0,
            blake3: Some(blake3),
        });
    }
    let release = Release {
        id: release_id,
        repo: r.repo.key(),
        tag_name: m.tag.clone(),
        name: m.name.clone(),
        body: m.body.clone(),
        draft: m.draft,
        prerelease: m.prerelease,
        author,
        target_commit: m.target_commit.clone(),
        commit_sha,
        created_at: m.created_at,
        published_at: if m.draft { None } else { m.published_at },
    };
    let latest = if m.draft {
        None
    } else if r.latest {
        Some(MakeLatest::True)
    } else {
        Some(MakeLatest::False)
    };
    let (repo, signer) = (r.repo.clone(), core.attest.signer());
    let committed = core
        .db
        .write_holding(gate, move |txn| {
            if releases::by_tag(txn, &repo, &release.tag_name)?.is_some() {
                return Err(DomainError::Conflict(format!(
                    "release {} was created meanwhile",
                    release.tag_name
                )));
            }
            immutable::refuse_tombstoned(txn, &repo, &release.tag_name, "reused")?;
            releases::insert(txn, &release)?;
            crate::domain::latest::apply(txn, &repo, &release, latest, !release.draft)?;
            for a in &rows {
                crate::domain::quota::check_in(txn, repo.owner.as_str(), a.size)?;
                assets::insert(txn, a)?;
            }
            if !release.draft && immutable::on_publish(txn, &repo, &release, None)? {
                // Published here by the importer: the attestation says so.
                crate::domain::attestation::record(txn, &signer, &release, &importer)?;
            }
            Ok(())
        })
        .await;
    if let Err(e) = committed {
        let _ = core.assets.remove_release(&r.repo, release_id);
        return Err(e);
    }
    Ok("created")
}

async fn apply_image(
    core: &Core,
    who: Option<&Principal>,
    c: &Contents,
    name: &OciName,
    img: &ImagePlan,
    items: &mut Vec<BundleItem>,
) {
    let mut pusher = Pusher { core, who, c, name };
    // Every manifest (and its blobs) first; a failure leaves no tag moved.
    let mut failed = None;
    for (_, d, mt) in &img.tags {
        if let Err(e) = pusher.manifest(d.clone(), mt.clone()).await {
            failed = Some(format!("manifest {d}: {e}"));
            break;
        }
    }
    if failed.is_none() {
        for (d, mt) in &img.referrers {
            if let Err(e) = pusher.manifest(d.clone(), mt.clone()).await {
                failed = Some(format!("referrer {d}: {e}"));
                break;
            }
        }
    }
    if let Some(why) = failed {
        for (tag, _, _) in &img.tags {
            items.push(item(
                "image",
                format!("{}:{}", name.as_str(), tag.as_str()),
                "refused",
                Some(why.clone()),
            ));
        }
        return;
    }
    for (tag, d, mt) in &img.tags {
        let label = format!("{}:{}", name.as_str(), tag.as_str());
        let it = match tag_image(core, who, name, tag, d, mt).await {
            Ok(outcome) => item("image", label, outcome, None),
            Err(e) => item("image", label, "refused", Some(e.to_string())),
        };
        items.push(it);
    }
}

async fn tag_image(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    tag: &OciTag,
    d: &Digest,
    mt: &str,
) -> DomainResult<&'static str> {
    let (n, t) = (name.clone(), tag.as_str().to_owned());
    let (current, protected) = core
        .db
        .read(move |txn| {
            let rules = protection::RegistryRules::load(txn, &n.repo())?;
            Ok::<_, DomainError>((
                manifests::tagged(txn, &n, &t)?,
                rules.protecting(&t).map(|h| h.pattern.to_owned()),
            ))
        })
        .await?;
    if current.as_deref() == Some(d.to_string().as_str()) {
        return Ok("unchanged");
    }
    if let (Some(cur), Some(rule)) = (&current, protected) {
        return Err(DomainError::Conflict(format!(
            "tag {} is protected by rule {rule:?} and points at {cur} here: left as it is",
            tag.as_str()
        )));
    }
    let (n, ds) = (name.clone(), d.to_string());
    let bytes = core
        .db
        .read(move |txn| manifests::get(txn, &n, &ds))
        .await?
        .ok_or(DomainError::ManifestUnknown)?
        .bytes;
    registry::put_manifest(
        core,
        who,
        name,
        &Reference::Digest(d.clone()),
        vec![tag.clone()],
        Some(mt.to_owned()),
        bytes,
    )
    .await?;
    Ok(if current.is_some() {
        "updated"
    } else {
        "created"
    })
}

struct Pusher<'a> {
    core: &'a Core,
    who: Option<&'a Principal>,
    c: &'a Contents,
    name: &'a OciName,
}

impl Pusher<'_> {
    async fn has_manifest(&self, d: &Digest) -> DomainResult<bool> {
        let (n, d) = (self.name.clone(), d.to_string());
        Ok(self
            .core
            .db
            .read(move |txn| manifests::exists(txn, &n, &d))
            .await?)
    }

    /// Stores a manifest after its children and blobs; nothing when the image has it.
    fn manifest(
        &mut self,
        d: Digest,
        mt: String,
    ) -> Pin<Box<dyn Future<Output = DomainResult<()>> + Send + '_>> {
        Box::pin(async move {
            if self.has_manifest(&d).await? {
                return Ok(());
            }
            let s = self
                .c
                .blobs
                .get(&d.to_string())
                .ok_or(DomainError::ManifestUnknown)?;
            let bytes = tokio::fs::read(&s.path).await?;
            let parsed = manifest::parse(Some(&mt), &bytes)
                .map_err(|e| DomainError::ManifestInvalid(e.to_string()))?;
            if manifest::is_index(&parsed.media_type) {
                let kids: Children = serde_json::from_slice(&bytes)
                    .map_err(|e| DomainError::ManifestInvalid(e.to_string()))?;
                for k in kids.manifests {
                    let kd = Digest::parse(&k.digest)?;
                    self.manifest(kd, k.media_type.unwrap_or_else(|| OCI_MANIFEST.into()))
                        .await?;
                }
            }
            for b in &parsed.blobs {
                self.blob(b).await?;
            }
            registry::put_manifest(
                self.core,
                self.who,
                self.name,
                &Reference::Digest(d),
                Vec::new(),
                Some(mt),
                bytes,
            )
            .await?;
            Ok(())
        })
    }

    /// Links a blob through the verifying upload path unless the image has it.
    async fn blob(&mut self, d: &Digest) -> DomainResult<()> {
        let (n, ds) = (self.name.clone(), d.to_string());
        let linked = self
            .core
            .db
            .read(move |txn| blob_refs::is_linked(txn, &n, &ds))
            .await?;
        if linked {
            return Ok(());
        }
        let s = self
            .c
            .blobs
            .get(&d.to_string())
            .ok_or(DomainError::BlobUnknown)?;
        let file = tokio::fs::File::open(&s.path).await?;
        let body = tokio_util::io::ReaderStream::with_capacity(file, 256 << 10);
        upload::monolithic(self.core, self.who, self.name, d, Some(s.size), body).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(name: &str) -> Vec<u8> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data-fixtures/fuzz/bundle_reader")
            .join(name);
        std::fs::read(p).expect("seed")
    }

    #[test]
    fn the_reader_plans_a_valid_bundle_and_refuses_a_flipped_or_cut_one() {
        let dir = std::env::temp_dir().join(format!("pfai-bundle-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let c = read_tar(seed("valid.tar").as_slice(), &dir).expect("valid bundle");
        let p = plan(&c).expect("plan");
        assert_eq!(p.repos.len(), 1);
        assert_eq!(p.releases.len(), 1);
        assert!(p.releases[0].latest);
        assert_eq!(p.images.len(), 1);
        let e = read_tar(seed("flipped.tar").as_slice(), &dir)
            .err()
            .expect("refused");
        assert!(e.to_string().contains("does not match its digest"), "{e}");
        let e = read_tar(seed("cut.tar").as_slice(), &dir)
            .err()
            .expect("refused");
        assert!(e.to_string().contains("truncated"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    type Entry<'a> = (&'a str, &'a [u8], tar::EntryType);

    fn tar_of(entries: &[Entry<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data, kind) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            // Written raw, so that hostile names reach the reader as they are.
            let n = name.as_bytes();
            h.as_old_mut().name[..n.len()].copy_from_slice(n);
            if *kind == tar::EntryType::Symlink {
                h.set_link_name("/etc/passwd").expect("link");
            }
            h.set_cksum();
            b.append(&h, *data).expect("append");
        }
        b.into_inner().expect("tar")
    }

    #[test]
    fn hostile_entries_are_refused_and_nothing_lands_outside_the_scratch_directory() {
        let dir = std::env::temp_dir().join(format!("pfai-bundle-hostile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let layout: Entry<'_> = ("oci-layout", OCI_LAYOUT, tar::EntryType::Regular);
        let d = Digest::sha256_of(b"x");
        let good = blob_path(&d);
        let cases: Vec<(Vec<Entry<'_>>, &str)> = vec![
            (
                vec![layout, ("../escape", b"x", tar::EntryType::Regular)],
                "not part of a bundle",
            ),
            (
                vec![layout, ("/etc/x", b"x", tar::EntryType::Regular)],
                "not part of a bundle",
            ),
            (
                vec![
                    layout,
                    ("blobs/sha256/../../x", b"x", tar::EntryType::Regular),
                ],
                "not part of a bundle",
            ),
            (
                vec![layout, (good.as_str(), b"", tar::EntryType::Symlink)],
                "not a regular file",
            ),
            (
                vec![layout, (good.as_str(), b"y", tar::EntryType::Regular)],
                "does not match",
            ),
            (
                vec![layout, (good.as_str(), b"x", tar::EntryType::Regular)],
                "index.json",
            ),
            (
                vec![
                    (good.as_str(), b"x", tar::EntryType::Regular),
                    ("index.json", b"{}", tar::EntryType::Regular),
                ],
                "oci-layout",
            ),
            (
                vec![
                    layout,
                    ("index.json", b"{}", tar::EntryType::Regular),
                    ("index.json", b"{}", tar::EntryType::Regular),
                ],
                "twice",
            ),
        ];
        for (entries, want) in cases {
            let data = tar_of(&entries);
            let e = read_tar(data.as_slice(), &dir).err().expect("refused");
            assert!(e.to_string().contains(want), "{want}: {e}");
        }
        assert!(!dir.parent().expect("parent").join("escape").exists());
        // A well-formed file whose index lists nothing it holds plans to nothing.
        let data = tar_of(&[
            layout,
            (good.as_str(), b"x", tar::EntryType::Regular),
            (
                "index.json",
                br#"{"schemaVersion":2,"manifests":[]}"#,
                tar::EntryType::Regular,
            ),
        ]);
        let c = read_tar(data.as_slice(), &dir).expect("read");
        assert!(plan(&c).expect("plan").repos.is_empty());
        // An index naming a release whose manifest is not in the file is refused.
        let idx = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"m","digest":"{d}","size":1,"annotations":{{"vnd.pfai.kind":"release","vnd.pfai.repo":"a/b"}}}},{{"mediaType":"m","digest":"sha256:{}","size":1,"annotations":{{"vnd.pfai.kind":"repo"}}}}]}}"#,
            "0".repeat(64)
        );
        let data = tar_of(&[
            layout,
            (good.as_str(), b"x", tar::EntryType::Regular),
            ("index.json", idx.as_bytes(), tar::EntryType::Regular),
        ]);
        let c = read_tar(data.as_slice(), &dir).expect("read");
        assert!(plan(&c).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

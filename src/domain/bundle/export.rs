//! Writing a bundle: the selection is read and checked first (the caller's read rights, one
//! read transaction per repository, git bundles written to scratch files), then one blocking
//! task writes the tar into a bounded channel that the HTTP layer streams out. Blob, asset and
//! git bytes are read from their stores in slices, so memory does not grow with the bundle.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{self, Read, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::*;
use crate::auth::Principal;
use crate::domain::{protection, Core, DomainError, DomainResult};
use crate::git::bundle::Refs;
use crate::ids::{AssetName, Digest, OciName, RepoPath, Role};
use crate::storage::files::AssetKey;
use crate::storage::mmap::Mapped;
use crate::storage::{assets, blob_refs, manifests, releases};

/// Chunks of the tar on their way to the client; an `Err` ends the stream early (the client
/// sees a cut body, never a short but well-formed file).
pub struct Export {
    /// The tar, in order.
    pub chunks: mpsc::Receiver<io::Result<Bytes>>,
}

/// Where one blob's bytes come from.
enum Source {
    Bytes(Vec<u8>),
    File(PathBuf),
    Blob(Digest),
    Asset(AssetKey),
}

struct Item {
    digest: Digest,
    size: u64,
    source: Source,
}

/// What the tar will hold, in order, blobs once each.
#[derive(Default)]
struct Plan {
    items: Vec<Item>,
    seen: HashSet<String>,
    skip: HashSet<String>,
    index: Vec<Desc>,
}

impl Plan {
    /// Adds a blob unless it is in already (or in the earlier bundle, when `skippable`).
    fn add(&mut self, digest: Digest, size: u64, source: Source, skippable: bool) {
        let key = digest.to_string();
        if (skippable && self.skip.contains(&key)) || !self.seen.insert(key) {
            return;
        }
        self.items.push(Item {
            digest,
            size,
            source,
        });
    }

    fn add_json<T: Serialize>(&mut self, media_type: &str, v: &T) -> DomainResult<Desc> {
        let bytes = serde_json::to_vec(v)
            .map_err(|e| DomainError::internal_from("encoding bundle JSON", e))?;
        let d = Digest::sha256_of(&bytes);
        let desc = Desc {
            media_type: media_type.to_owned(),
            digest: d.to_string(),
            size: bytes.len() as u64,
            artifact_type: None,
            annotations: BTreeMap::new(),
        };
        self.add(d, bytes.len() as u64, Source::Bytes(bytes), false);
        Ok(desc)
    }
}

/// A directory of scratch files removed when dropped (after the tar is written).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn glob(p: &Option<String>) -> DomainResult<Option<globset::GlobMatcher>> {
    p.as_deref().map(protection::compile).transpose()
}

/// Starts writing a bundle of what `req` selects and the caller may read (drafts only for
/// writers, as everywhere). Errors found before the first byte (an unknown repository, a bad
/// glob) are returned; later ones cut the stream.
pub async fn export(
    core: &Arc<Core>,
    who: Option<&Principal>,
    req: BundleExport,
) -> DomainResult<Export> {
    crate::domain::account::require(who)?;
    if req.repos.is_empty() {
        return Err(DomainError::Invalid("name at least one repository".into()));
    }
    let images = glob(&req.images)?;
    let rels = glob(&req.releases)?;
    let since = req.since.unwrap_or_default();
    let mut plan = Plan {
        skip: since.blobs.iter().cloned().collect(),
        ..Plan::default()
    };
    let mut rnd = [0u8; 12];
    crate::util::fill_random(&mut rnd);
    let dir = core
        .blobs
        .uploads_dir()
        .join(format!(".bundle-export-{}", hex::encode(rnd)));
    std::fs::create_dir_all(&dir)?;
    // Absolute: git runs in the repository's directory and is handed paths under this one.
    let scratch = Scratch(std::fs::canonicalize(&dir)?);
    let config = empty_config();
    plan.add(
        Digest::sha256_of(EMPTY_CONFIG),
        EMPTY_CONFIG.len() as u64,
        Source::Bytes(EMPTY_CONFIG.to_vec()),
        false,
    );
    let mut done = BTreeSet::new();
    for raw in &req.repos {
        let repo = RepoPath::parse_key(raw)
            .map_err(|e| DomainError::Invalid(format!("repository {raw:?}: {e}")))?;
        if !done.insert(repo.key()) {
            continue;
        }
        let (row, role) = core.repo_access(who, &repo, Role::Read).await?;
        repo_items(core, who, &mut plan, &scratch, &config, &repo, &row, &since).await?;
        release_items(core, &mut plan, &config, &repo, role, rels.as_ref()).await?;
        image_items(core, &mut plan, &repo, images.as_ref()).await?;
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(OCI_INDEX.into()),
        manifests: std::mem::take(&mut plan.index),
    };
    let index = serde_json::to_vec_pretty(&index)
        .map_err(|e| DomainError::internal_from("encoding index.json", e))?;
    let (tx, rx) = mpsc::channel(8);
    let core = core.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let result = write_tar(&core, &plan.items, &index, &mut out);
        drop(scratch);
        if let Err(e) = result {
            tracing::warn!(error = %e, "bundle export stopped");
            let _ = tx.blocking_send(Err(e));
        }
    });
    Ok(Export { chunks: rx })
}

#[allow(clippy::too_many_arguments)]
async fn repo_items(
    core: &Core,
    who: Option<&Principal>,
    plan: &mut Plan,
    scratch: &Scratch,
    config: &Desc,
    repo: &RepoPath,
    row: &crate::storage::records::Repo,
    since: &BundleSince,
) -> DomainResult<()> {
    let r = repo.clone();
    let refs = match core.git(move |g| g.capture_refs(&r)).await {
        Ok(refs) => refs,
        Err(DomainError::Git(crate::git::GitError::RepoMissing)) => Refs::default(),
        Err(e) => return Err(e),
    };
    let refs = Refs {
        head: refs.head,
        refs: refs
            .refs
            .into_iter()
            .filter(|(n, _)| n.starts_with("refs/heads/") || n.starts_with("refs/tags/"))
            .collect(),
    };
    let rules: Vec<RuleMeta> = protection::list(core, who, repo)
        .await?
        .into_iter()
        .map(|r| RuleMeta {
            pattern: r.pattern,
            target: r.target,
            immutable: r.immutable,
        })
        .collect();
    let meta = RepoMeta {
        repo: repo.key(),
        private: row.private,
        description: row.description.clone(),
        head: refs.head.clone(),
        refs: refs.refs.clone(),
    };
    let mut layers = vec![
        plan.add_json(REPO_JSON, &meta)?,
        plan.add_json(RULES_JSON, &rules)?,
    ];
    let earlier = since.refs.get(&repo.key());
    let changed = earlier.is_none_or(|old| *old != refs.refs);
    if !refs.refs.is_empty() && changed {
        let old: Vec<String> = earlier
            .map(|o| {
                o.iter()
                    .map(|(_, oid)| oid.clone())
                    .collect::<BTreeSet<_>>()
            })
            .unwrap_or_default()
            .into_iter()
            .collect();
        let path = scratch.0.join(format!(
            "{}-{}.bundle",
            repo.owner.as_str(),
            repo.name.as_str()
        ));
        let (r, p, rf) = (repo.clone(), path.clone(), refs.clone());
        let digest = core
            .git(move |g| {
                let prereqs = g.existing_objects(&r, &old)?;
                g.write_bundle_since(&r, &rf, &prereqs, &p)?;
                let mut h = crate::ids::Hasher::new(crate::ids::Algorithm::Sha256);
                let mut f = std::fs::File::open(&p)?;
                h.feed_file(&mut f, 0)?;
                Ok(h.digest())
            })
            .await?;
        let size = std::fs::metadata(&path)?.len();
        layers.push(Desc {
            media_type: GIT_BUNDLE.into(),
            digest: digest.to_string(),
            size,
            artifact_type: None,
            annotations: BTreeMap::from([(
                TITLE.to_owned(),
                format!("{}.bundle", repo.name.as_str()),
            )]),
        });
        plan.add(digest, size, Source::File(path), false);
    }
    let manifest = ArtifactManifest {
        schema_version: 2,
        media_type: OCI_MANIFEST.into(),
        artifact_type: REPO_ARTIFACT.into(),
        config: config.clone(),
        layers,
        annotations: BTreeMap::from([(REPO.to_owned(), repo.key())]),
    };
    let mut desc = plan.add_json(OCI_MANIFEST, &manifest)?;
    desc.artifact_type = Some(REPO_ARTIFACT.into());
    let refs_json = serde_json::to_string(&refs.refs)
        .map_err(|e| DomainError::internal_from("encoding refs", e))?;
    desc.annotations = BTreeMap::from([
        (KIND.to_owned(), "repo".to_owned()),
        (REPO.to_owned(), repo.key()),
        (REFS.to_owned(), refs_json),
    ]);
    plan.index.push(desc);
    Ok(())
}

async fn release_items(
    core: &Core,
    plan: &mut Plan,
    config: &Desc,
    repo: &RepoPath,
    role: Role,
    only: Option<&globset::GlobMatcher>,
) -> DomainResult<()> {
    let r = repo.clone();
    let only = only.cloned();
    let (rows, latest) = core
        .db
        .read(move |txn| {
            let mut rows = Vec::new();
            let mut found = Vec::new();
            releases::scan(txn, &r, |rel| {
                found.push(rel);
                ControlFlow::Continue(())
            })?;
            for rel in found {
                if rel.draft && role < Role::Write {
                    continue;
                }
                if only.as_ref().is_some_and(|g| !g.is_match(&rel.tag_name)) {
                    continue;
                }
                let a = assets::of_release(txn, rel.id)?;
                rows.push((rel, a));
            }
            let latest = crate::domain::latest::latest_txn(txn, &r)?.map(|l| l.id);
            Ok::<_, DomainError>((rows, latest))
        })
        .await?;
    // Oldest first, so the importer gives them ids in the same order (the list's tiebreak).
    let mut rows = rows;
    rows.sort_by_key(|(r, _)| r.id);
    for (rel, mut list) in rows {
        list.sort_by(|a, b| a.name.cmp(&b.name));
        let meta = ReleaseMeta {
            tag: rel.tag_name.clone(),
            name: rel.name.clone(),
            body: rel.body.clone(),
            draft: rel.draft,
            prerelease: rel.prerelease,
            author: rel.author.clone(),
            target_commit: rel.target_commit.clone(),
            commit_sha: rel.commit_sha.clone(),
            created_at: rel.created_at,
            published_at: rel.published_at,
            assets: list
                .iter()
                .map(|a| AssetMeta {
                    name: a.name.clone(),
                    label: a.label.clone(),
                    content_type: a.content_type.clone(),
                    size: a.size,
                    sha256: a.sha256.clone(),
                    blake3: a.blake3.clone(),
                    uploader: a.uploader.clone(),
                    created_at: a.created_at,
                })
                .collect(),
        };
        // Decided before anything is added, so a release the earlier bundle has adds nothing.
        let json = serde_json::to_vec(&meta)
            .map_err(|e| DomainError::internal_from("encoding bundle JSON", e))?;
        let mut layers = vec![Desc {
            media_type: RELEASE_JSON.into(),
            digest: Digest::sha256_of(&json).to_string(),
            size: json.len() as u64,
            artifact_type: None,
            annotations: BTreeMap::new(),
        }];
        let mut asset_items = Vec::new();
        for a in &list {
            let d = Digest::parse(&format!("sha256:{}", a.sha256))?;
            layers.push(Desc {
                media_type: crate::domain::release_artifact::layer_media_type(&a.content_type),
                digest: d.to_string(),
                size: a.size,
                artifact_type: None,
                annotations: BTreeMap::from([(TITLE.to_owned(), a.name.clone())]),
            });
            let key = AssetKey {
                repo: repo.clone(),
                release: rel.id,
                asset: a.id,
                name: AssetName::parse(&a.name)?,
            };
            asset_items.push((d, a.size, key));
        }
        let manifest = ArtifactManifest {
            schema_version: 2,
            media_type: OCI_MANIFEST.into(),
            artifact_type: RELEASE_ARTIFACT.into(),
            config: config.clone(),
            layers,
            annotations: BTreeMap::from([
                (REPO.to_owned(), repo.key()),
                (RELEASE_TAG.to_owned(), rel.tag_name.clone()),
            ]),
        };
        let mbytes = serde_json::to_vec(&manifest)
            .map_err(|e| DomainError::internal_from("encoding bundle JSON", e))?;
        let md = Digest::sha256_of(&mbytes);
        if plan.skip.contains(&md.to_string()) {
            continue;
        }
        plan.add(
            Digest::sha256_of(&json),
            json.len() as u64,
            Source::Bytes(json),
            false,
        );
        for (d, size, key) in asset_items {
            plan.add(d, size, Source::Asset(key), false);
        }
        let mut annotations = BTreeMap::from([
            (KIND.to_owned(), "release".to_owned()),
            (REPO.to_owned(), repo.key()),
            (RELEASE_TAG.to_owned(), rel.tag_name.clone()),
        ]);
        if latest == Some(rel.id) {
            annotations.insert(LATEST.to_owned(), "true".to_owned());
        }
        plan.index.push(Desc {
            media_type: OCI_MANIFEST.into(),
            digest: md.to_string(),
            size: mbytes.len() as u64,
            artifact_type: Some(RELEASE_ARTIFACT.into()),
            annotations,
        });
        plan.add(md, mbytes.len() as u64, Source::Bytes(mbytes), false);
    }
    Ok(())
}

/// One image's manifests (each once), from its tagged roots down and to their referrers.
struct ImageWalk {
    /// `(tag, digest, media type)`.
    tags: Vec<(String, String, String)>,
    /// Referrers of anything below a tag: `(digest, media type)`.
    referrers: Vec<(String, String)>,
    /// Every manifest: digest -> bytes; and every blob: digest -> size.
    manifests: BTreeMap<String, Vec<u8>>,
    blobs: BTreeMap<String, u64>,
}

async fn image_items(
    core: &Core,
    plan: &mut Plan,
    repo: &RepoPath,
    only: Option<&globset::GlobMatcher>,
) -> DomainResult<()> {
    let r = repo.clone();
    let only = only.cloned();
    let walks = core
        .db
        .read(move |txn| {
            let mut out = Vec::new();
            for name in manifests::names_of_repo(txn, &r)? {
                let Ok(name) = OciName::parse(&name) else {
                    continue;
                };
                let mut w = ImageWalk {
                    tags: Vec::new(),
                    referrers: Vec::new(),
                    manifests: BTreeMap::new(),
                    blobs: BTreeMap::new(),
                };
                let mut todo = Vec::new();
                for (tag, digest, meta) in manifests::tags_with_manifests(txn, &name)? {
                    let full = format!("{}:{tag}", name.as_str());
                    if only.as_ref().is_some_and(|g| !g.is_match(&full)) {
                        continue;
                    }
                    w.tags.push((tag, digest.clone(), meta.media_type.clone()));
                    todo.push(digest);
                }
                while let Some(d) = todo.pop() {
                    if w.manifests.contains_key(&d) {
                        continue;
                    }
                    let Some(m) = manifests::get(txn, &name, &d)? else {
                        continue;
                    };
                    for b in &m.blobs {
                        if let Some(size) = blob_refs::linked_size(txn, &name, b)? {
                            w.blobs.insert(b.clone(), size);
                        }
                    }
                    todo.extend(m.children.iter().cloned());
                    for (rd, rm) in manifests::referrers_of(txn, &name, &d)? {
                        if !w.manifests.contains_key(&rd) {
                            w.referrers.push((rd.clone(), rm.media_type.clone()));
                            todo.push(rd);
                        }
                    }
                    w.manifests.insert(d, m.bytes);
                }
                if !w.tags.is_empty() {
                    out.push((name, w));
                }
            }
            Ok::<_, DomainError>(out)
        })
        .await?;
    for (name, w) in walks {
        for (d, size) in w.blobs {
            let d = Digest::parse(&d)?;
            plan.add(d.clone(), size, Source::Blob(d), true);
        }
        for (d, bytes) in w.manifests {
            let d = Digest::parse(&d)?;
            plan.add(d, bytes.len() as u64, Source::Bytes(bytes), true);
        }
        let size_of = |d: &str| -> DomainResult<u64> {
            // Sizes come from the bytes just planned or, for a skipped one, are not needed by
            // the importer (it reads the manifest from its own store); the index still says.
            Ok(plan
                .items
                .iter()
                .find(|i| i.digest.to_string() == d)
                .map_or(0, |i| i.size))
        };
        let mut descs = Vec::new();
        for (tag, d, mt) in &w.tags {
            descs.push(Desc {
                media_type: mt.clone(),
                digest: d.clone(),
                size: size_of(d)?,
                artifact_type: None,
                annotations: BTreeMap::from([
                    (KIND.to_owned(), "image".to_owned()),
                    (IMAGE.to_owned(), name.as_str().to_owned()),
                    (TAG.to_owned(), tag.clone()),
                    (REF_NAME.to_owned(), format!("{}:{tag}", name.as_str())),
                ]),
            });
        }
        for (d, mt) in &w.referrers {
            descs.push(Desc {
                media_type: mt.clone(),
                digest: d.clone(),
                size: size_of(d)?,
                artifact_type: None,
                annotations: BTreeMap::from([
                    (KIND.to_owned(), "manifest".to_owned()),
                    (IMAGE.to_owned(), name.as_str().to_owned()),
                ]),
            });
        }
        plan.index.extend(descs);
    }
    Ok(())
}

const CHUNK: usize = 256 << 10;

/// Hands the tar to the async side in chunks, waiting while the channel is full (the client
/// reads slower than the disk).
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Reads a mapped object in slices.
struct MappedReader {
    data: Mapped,
    pos: u64,
}

impl Read for MappedReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let end = (self.pos + out.len() as u64).min(self.data.len());
        if end <= self.pos {
            return Ok(0);
        }
        let s = self.data.slice(self.pos, end);
        out[..s.len()].copy_from_slice(&s);
        self.pos += s.len() as u64;
        Ok(s.len())
    }
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn write_tar(core: &Core, items: &[Item], index: &[u8], out: &mut ChannelWriter) -> io::Result<()> {
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.append_data(
        &mut header(OCI_LAYOUT.len() as u64),
        "oci-layout",
        OCI_LAYOUT,
    )?;
    for item in items {
        let path = blob_path(&item.digest);
        let mut h = header(item.size);
        let reader: Box<dyn Read> = match &item.source {
            Source::Bytes(b) => Box::new(io::Cursor::new(b.clone())),
            Source::File(p) => Box::new(std::fs::File::open(p)?),
            Source::Blob(d) => Box::new(MappedReader {
                data: core.blobs.map(d)?,
                pos: 0,
            }),
            Source::Asset(k) => Box::new(MappedReader {
                data: core.assets.open_asset(k)?,
                pos: 0,
            }),
        };
        // A stored object whose length is not its row's would corrupt the tar: stop instead.
        let mut limited = reader.take(item.size);
        let mut counted = CountingReader {
            inner: &mut limited,
            n: 0,
        };
        tar.append_data(&mut h, &path, &mut counted)?;
        if counted.n != item.size {
            return Err(io::Error::other(format!(
                "{} has {} bytes on disk, not {}; run pfai fsck",
                item.digest, counted.n, item.size
            )));
        }
    }
    tar.append_data(&mut header(index.len() as u64), "index.json", index)?;
    let out = tar.into_inner()?;
    out.flush()
}

struct CountingReader<'a> {
    inner: &'a mut dyn Read,
    n: u64,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(out)?;
        self.n += n as u64;
        Ok(n)
    }
}

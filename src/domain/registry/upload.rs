//! The blob upload state machine: monolithic (`POST ?digest=`), POST + PUT, and chunked
//! (`PATCH` with or without `Content-Range`, then `PUT ?digest=`), plus cross-repository mount.
//!
//! A session is a file `uploads/<id>` and a row in UPLOADS (file first, row second; row removed
//! first, file second). Its offset is the bytes received, which the file holds once the
//! session's writer has caught up (a chunk's writer runs on after its `202`: see `Open`); the
//! running hash lives in memory, and both are rebuilt from the file after a restart or a failed
//! write. Chunks of one session are serialized by a per-session lock. Finishing verifies the digest, fsyncs, renames into the CAS, fsyncs the directory, and
//! only then commits the link in one transaction.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::{access, access_txn};
use crate::auth::Principal;
use crate::domain::quota::{self, Budget};
use crate::domain::{Core, DomainError, DomainResult};
use crate::ids::{Algorithm, Digest, OciName, Role, UploadId};
use crate::storage::blob::{Hasher, Sink, TempGuard};
use crate::storage::records::UploadSession;
use crate::storage::{blob_refs, uploads};
use crate::util::now_unix;

/// Open sessions a user may have at once.
pub const MAX_SESSIONS_PER_USER: usize = 64;

/// In-memory state of a session: bytes received, the running hash, and when the session row's
/// `updated_at` was last written (chunks refresh it at most once a minute, so a PATCH does not
/// cost a durable commit).
pub struct SessionState {
    offset: u64,
    /// The running hash; `None` while `open` holds it (or after a failed write, until rebuilt).
    hasher: Option<Hasher>,
    /// The writer of the last chunk, still hashing and writing its tail (see `Open`).
    open: Option<Open>,
    touched: i64,
}

/// A chunk's writer left running after its `202`. A chunk is answered once its bytes have been
/// received, not once the writer thread has hashed and written the last of them: otherwise the
/// writer idles for every chunk's round trip, which cost chunked pushes a fifth of the
/// monolithic speed. The next chunk of the session feeds the same writer; one that does not come
/// within `LINGER` closes it, and so does a `GET` of the session (which reports what is on
/// disk). Like the page cache behind any unsynced write, what it holds is not promised until the
/// final `PUT`: after a failed write the session's offset and hash are rebuilt from the file,
/// which holds a prefix of the bytes sent (the next chunk then gets `416` with that offset, and
/// the client resumes from there).
struct Open {
    sink: Sink,
    /// The offset where this writer started.
    base: u64,
}

/// How long a chunk's writer waits for the session's next chunk before it is closed (its
/// thread and file handle released).
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// How often (seconds) an active session's `updated_at` is written.
const TOUCH_EVERY: i64 = 60;

/// Per-session locks and running hashes.
#[derive(Default)]
pub struct Sessions {
    map: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<SessionState>>>>>,
}

impl Sessions {
    fn slot(&self, id: &UploadId) -> Arc<tokio::sync::Mutex<Option<SessionState>>> {
        match self.map.lock() {
            Ok(mut m) => m.entry(id.to_string()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }
    fn forget(&self, id: &UploadId) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(id.as_str());
        }
    }
    /// Whether a request is working on this session now (its file may have no row yet).
    pub fn is_live(&self, id: &str) -> bool {
        self.map.lock().map(|m| m.contains_key(id)).unwrap_or(false)
    }
}

/// The owner whose quota an OCI name's blobs count against.
fn owner_of(name: &OciName) -> &str {
    crate::storage::quota::owner_of(name.as_str())
}

fn username(who: Option<&Principal>) -> String {
    who.map(|p| p.username.clone()).unwrap_or_default()
}

/// Starts a session; returns its id (the edge answers 202 with the session's URL).
pub async fn start(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    algorithm: Algorithm,
) -> DomainResult<UploadId> {
    access(core, who, name, Role::Write).await?;
    let user = username(who);
    let id = UploadId::random();
    let _gate = core.fsck_gate.read().await;
    core.blobs.create_upload(&id)?;
    let now = now_unix();
    let session = UploadSession {
        name: name.to_string(),
        username: user,
        algorithm: algorithm.name().to_owned(),
        created_at: now,
        updated_at: now,
    };
    let key = id.clone();
    // Count and insert in one write transaction: write transactions are serialized, so no
    // number of parallel POSTs can open more than the cap.
    let inserted = core
        .db
        .write(move |txn| {
            if uploads::open_by(txn, &session.username)? >= MAX_SESSIONS_PER_USER {
                return Ok::<_, DomainError>(false);
            }
            uploads::insert(txn, &key, &session)?;
            Ok(true)
        })
        .await;
    if !matches!(inserted, Ok(true)) {
        // The file was created first (file before row); without a row it must go.
        let _ = std::fs::remove_file(core.blobs.upload_path(&id));
        inserted?;
        return Err(DomainError::Forbidden(format!(
            "too many open upload sessions (limit {MAX_SESSIONS_PER_USER}); finish or cancel some"
        )));
    }
    *core.uploads.slot(&id).lock().await = Some(SessionState {
        offset: 0,
        hasher: Some(Hasher::new(algorithm)),
        open: None,
        touched: now,
    });
    Ok(id)
}

/// Mounts `digest` from `from` into `name` if the caller can read `from` and the blob is linked
/// there. `Ok(false)` means "start a normal upload instead" (spec: 202), never an error.
pub async fn mount(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    digest: &Digest,
    from: Option<&OciName>,
) -> DomainResult<bool> {
    access(core, who, name, Role::Write).await?;
    let Some(from) = from else { return Ok(false) };
    if access(core, who, from, Role::Read).await.is_err() {
        return Ok(false);
    }
    let (n, f, d) = (name.clone(), from.clone(), digest.to_string());
    core.db
        .write(move |txn| {
            let Some(size) = blob_refs::linked_size(txn, &f, &d)? else {
                return Ok(false);
            };
            quota::check_blob_in(txn, owner_of(&n), &d, size)?;
            blob_refs::link(txn, &n, &d, size, now_unix())?;
            Ok::<_, DomainError>(true)
        })
        .await
}

/// Streams `body` into a sink, returning bytes written; a body error or a disk error stops it.
async fn pump<S, E>(
    core: &Core,
    sink: &mut Sink,
    body: &mut S,
    already: u64,
    budget: &Budget,
) -> Result<u64, DomainError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut n = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                return Err(DomainError::BadRequest(format!(
                    "the upload was interrupted: {e}"
                )))
            }
        };
        n += chunk.len() as u64;
        if already + n > core.limits.blob_max {
            return Err(DomainError::TooLarge(format!(
                "blobs are limited to {} bytes",
                core.limits.blob_max
            )));
        }
        budget.admit(already + n)?;
        if sink.push(chunk).await.is_err() {
            break;
        }
    }
    Ok(n)
}

/// `POST ?digest=` with the whole blob: verify, publish, link. Returns the digest of the blob
/// now linked in `name`.
pub async fn monolithic<S, E>(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    digest: &Digest,
    declared: Option<u64>,
    mut body: S,
) -> DomainResult<Digest>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    access(core, who, name, Role::Write).await?;
    let budget = Budget::for_blob(core, owner_of(name), &digest.to_string()).await?;
    if let Some(len) = declared {
        budget.admit(len)?;
    }
    let mut rnd = [0u8; 12];
    crate::util::fill_random(&mut rnd);
    let path = core
        .blobs
        .uploads_dir()
        .join(format!(".mono-{}", hex::encode(rnd)));
    let file = std::fs::File::create_new(&path)?;
    let guard = TempGuard::new(path);
    let mut sink = Sink::start(file, Hasher::new(digest.algorithm()));
    let pumped = pump(core, &mut sink, &mut body, 0, &budget).await;
    let written = sink.finish(true).await;
    pumped?;
    let written = written?;
    let actual = written.hasher.digest();
    if &actual != digest {
        return Err(DomainError::DigestInvalid(format!(
            "the content's digest is {actual}, not {digest}"
        )));
    }
    publish_and_link(core, name, digest, guard, written.bytes).await?;
    Ok(actual)
}

async fn publish_and_link(
    core: &Core,
    name: &OciName,
    digest: &Digest,
    guard: TempGuard,
    size: u64,
) -> DomainResult<()> {
    // Refused before the bytes reach the blob store; the guard removes the staged file.
    let cost = quota::blob_cost(core, owner_of(name), &digest.to_string(), size).await?;
    Budget::of(core, owner_of(name)).await?.admit(cost)?;
    // Shared with other uploads, exclusive with GC: between finding the file in place (or
    // putting it there) and committing the link, GC must not unlink it (see `Core::blob_gc`).
    let publishing = core.blob_gc.clone().read_owned().await;
    let blobs = core.blobs.clone();
    let d = digest.clone();
    tokio::task::spawn_blocking(move || {
        // On success the temp path is gone (renamed or dropped as a duplicate), so dropping the
        // guard is a no-op; on failure the guard removes the temp file.
        let r = blobs.publish(guard.path(), &d, size);
        drop(guard);
        r
    })
    .await
    .map_err(DomainError::from)??;
    let (n, d) = (name.clone(), digest.to_string());
    core.db
        .write_holding(publishing, move |txn| {
            quota::check_blob_in(txn, owner_of(&n), &d, size)?;
            blob_refs::link(txn, &n, &d, size, now_unix())?;
            Ok(())
        })
        .await
}

/// Checks access and finds the session in `name`, with the owner's budget: one trip to the
/// blocking pool per chunk instead of three (each trip is two thread wake-ups, paid by every
/// chunk of a chunked push).
async fn load_session(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    id: &UploadId,
) -> DomainResult<(UploadSession, Budget)> {
    let (who, name, key) = (who.cloned(), name.clone(), id.clone());
    core.db
        .read(move |txn| {
            access_txn(txn, who.as_ref(), &name, Role::Write)?;
            let budget = Budget::read(txn, owner_of(&name))?;
            match uploads::get(txn, &key)? {
                Some(s) if s.name == name.as_str() => Ok((s, budget)),
                _ => Err(DomainError::BlobUploadUnknown),
            }
        })
        .await
}

/// Fills in the state after a restart: offset from the file, hash recomputed.
async fn ensure_state(
    core: &Core,
    id: &UploadId,
    alg: Algorithm,
    state: &mut Option<SessionState>,
) -> DomainResult<()> {
    if state
        .as_ref()
        .is_some_and(|s| s.hasher.is_some() || s.open.is_some())
    {
        return Ok(());
    }
    let path = core.blobs.upload_path(id);
    let (offset, hasher) =
        tokio::task::spawn_blocking(move || -> std::io::Result<(u64, Hasher)> {
            let mut f = std::fs::File::open(&path)?;
            let mut h = Hasher::new(alg);
            let n = h.feed_file(&mut f, 0)?;
            Ok((n, h))
        })
        .await
        .map_err(DomainError::from)?
        .map_err(|_| DomainError::BlobUploadUnknown)?;
    *state = Some(SessionState {
        offset,
        hasher: Some(hasher),
        open: None,
        touched: 0,
    });
    Ok(())
}

fn session_algorithm(s: &UploadSession) -> Algorithm {
    Algorithm::parse(&s.algorithm).unwrap_or(Algorithm::Sha256)
}

type SessionGuard = tokio::sync::OwnedMutexGuard<Option<SessionState>>;

/// Checks access, finds the session in `name`, takes its lock and makes sure its offset and
/// running hash are known (rebuilt from the file after a restart). Also returns the owner's
/// budget, read with the session.
async fn open_session(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    id: &UploadId,
) -> DomainResult<(SessionGuard, Budget)> {
    let (s, budget) = load_session(core, who, name, id).await?;
    let mut guard = core.uploads.slot(id).lock_owned().await;
    ensure_state(core, id, session_algorithm(&s), &mut guard).await?;
    if guard.is_none() {
        return Err(DomainError::BlobUploadUnknown);
    }
    Ok((guard, budget))
}

/// Bytes received so far.
pub async fn status(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    id: &UploadId,
) -> DomainResult<u64> {
    let (mut guard, _) = open_session(core, who, name, id).await?;
    let state = guard.as_mut().ok_or(DomainError::BlobUploadUnknown)?;
    // What is on disk: a client asks this to resume after an error.
    settle_open(state).await;
    if state.hasher.is_none() {
        // A write failed: the file's length is the offset (the next chunk rebuilds the hash).
        state.offset = std::fs::metadata(core.blobs.upload_path(id))
            .map_err(|_| DomainError::BlobUploadUnknown)?
            .len();
    }
    Ok(state.offset)
}

/// A `Content-Range` of a chunk: `start-end`, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    /// First byte.
    pub start: u64,
    /// Last byte.
    pub end: u64,
}

/// Parses an upload `Content-Range` (`<start>-<end>`; a `bytes ` prefix is tolerated).
/// `None` for anything malformed (the caller answers 416/400, never panics).
pub fn parse_content_range(h: &str) -> Option<ChunkRange> {
    let h = h.trim();
    let h = h.strip_prefix("bytes ").unwrap_or(h);
    let h = h.split('/').next()?;
    let (a, b) = h.split_once('-')?;
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    let (start, end) = (num(a)?, num(b)?);
    (end >= start).then_some(ChunkRange { start, end })
}

/// Whether `append` leaves the writer running for the session's next chunk (`PATCH`) or
/// waits until every byte is written (`PUT`, and any chunk that failed).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Then {
    KeepWriting,
    Settle,
}

async fn append<S, E>(
    core: &Core,
    id: &UploadId,
    state: &mut SessionState,
    range: Option<ChunkRange>,
    budget: &Budget,
    body: &mut S,
    then: Then,
) -> DomainResult<()>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    if let Some(r) = range {
        if r.start != state.offset {
            // The session's URL is the edge's to add (`Location`).
            return Err(DomainError::RangeNotSatisfiable {
                location: None,
                offset: state.offset,
            });
        }
    }
    let mut open = match state.open.take() {
        Some(open) => open,
        None => {
            let file = core
                .blobs
                .open_upload_append(id)
                .map_err(|_| DomainError::BlobUploadUnknown)?;
            let hasher = state
                .hasher
                .take()
                .ok_or_else(|| DomainError::internal("session hash missing"))?;
            Open {
                base: state.offset,
                sink: Sink::start(file, hasher),
            }
        }
    };
    let pumped = pump(core, &mut open.sink, body, state.offset, budget).await;
    if let Ok(n) = pumped {
        if then == Then::KeepWriting && !open.sink.stopped() {
            state.offset += n;
            state.open = Some(open);
            return Ok(());
        }
    }
    settle(state, open).await?;
    pumped.map(|_| ())
}

/// Waits for `open` to write every byte it was given. After a write error the file holds a
/// prefix of what was sent, of a length the writer may not know: the session forgets its offset
/// and hash, and the next request rebuilds both from the file (`ensure_state`).
async fn settle(state: &mut SessionState, open: Open) -> DomainResult<()> {
    match open.sink.finish(false).await {
        Ok(w) => {
            state.offset = open.base + w.bytes;
            state.hasher = Some(w.hasher);
            Ok(())
        }
        Err(e) => {
            state.hasher = None;
            tracing::warn!(error = %e, "writing an upload chunk failed; the session resumes from what its file holds");
            Err(e.into())
        }
    }
}

/// Lets the writer left running by `state`'s last chunk finish (a failure is logged, and the
/// state left to be rebuilt from the file).
async fn settle_open(state: &mut SessionState) {
    if let Some(open) = state.open.take() {
        let _ = settle(state, open).await;
    }
}

/// Closes a chunk's writer left running if no newer chunk moved the session past `offset`
/// within `LINGER` (an empty chunk may close it early, which costs nothing but a restart).
fn close_when_idle(core: &Core, id: &UploadId, offset: u64) {
    let slot = core.uploads.slot(id);
    tokio::spawn(async move {
        tokio::time::sleep(LINGER).await;
        let mut guard = slot.lock_owned().await;
        if let Some(state) = guard.as_mut().filter(|s| s.offset == offset) {
            settle_open(state).await;
        }
    });
}

/// Closes every chunk writer still running (graceful shutdown), so what they hold reaches the
/// files before the process ends.
pub async fn settle_all(core: &Core) {
    let slots: Vec<_> = match core.uploads.map.lock() {
        Ok(m) => m.values().cloned().collect(),
        Err(_) => return,
    };
    for slot in slots {
        if let Some(state) = slot.lock().await.as_mut() {
            settle_open(state).await;
        }
    }
}

async fn touch(core: &Core, id: &UploadId) -> DomainResult<()> {
    let key = id.clone();
    core.db
        .write(move |txn| uploads::touch(txn, &key, now_unix()))
        .await?;
    Ok(())
}

/// Appends a chunk (`PATCH`); returns the new offset. A chunk that does not start at the
/// offset is `RangeNotSatisfiable` carrying the offset (and no location: the caller knows the
/// session's URL).
pub async fn patch<S, E>(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    id: &UploadId,
    range: Option<ChunkRange>,
    declared: Option<u64>,
    mut body: S,
) -> DomainResult<u64>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let (mut guard, budget) = open_session(core, who, name, id).await?;
    let state = guard.as_mut().ok_or(DomainError::BlobUploadUnknown)?;
    let declared = range.map(|r| r.end - r.start + 1).or(declared);
    if let Some(len) = declared {
        budget.admit(state.offset.saturating_add(len))?;
    }
    let res = append(
        core,
        id,
        state,
        range,
        &budget,
        &mut body,
        Then::KeepWriting,
    )
    .await;
    if state.open.is_some() {
        close_when_idle(core, id, state.offset);
    }
    let offset = state.offset;
    let now = now_unix();
    let stale = now - state.touched >= TOUCH_EVERY;
    if stale {
        state.touched = now;
    }
    drop(guard);
    if stale {
        touch(core, id).await?;
    }
    res.map(|_| offset)
}

async fn drop_session(core: &Core, id: &UploadId) -> DomainResult<()> {
    let key = id.clone();
    core.db.write(move |txn| uploads::remove(txn, &key)).await?;
    let _ = std::fs::remove_file(core.blobs.upload_path(id));
    core.uploads.forget(id);
    Ok(())
}

/// What the request that finishes an upload says about the bytes it carries.
#[derive(Debug, Clone, Copy, Default)]
pub struct LastChunk {
    /// Its `Content-Range`, if any.
    pub range: Option<ChunkRange>,
    /// Its `Content-Length`, if any (refused before reading when over the quota).
    pub declared: Option<u64>,
}

/// Finishes an upload (`PUT ?digest=`, with an optional last chunk); returns the digest of the
/// blob now linked in `name`. A last chunk that does not start at the offset is
/// `RangeNotSatisfiable`, as for `patch`.
pub async fn finish<S, E>(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    id: &UploadId,
    digest: &Digest,
    last: LastChunk,
    mut body: S,
) -> DomainResult<Digest>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let (mut guard, _) = open_session(core, who, name, id).await?;
    let state = guard.as_mut().ok_or(DomainError::BlobUploadUnknown)?;
    let LastChunk { range, declared } = last;
    let budget = Budget::for_blob(core, owner_of(name), &digest.to_string()).await?;
    if let Some(len) = range.map(|r| r.end - r.start + 1).or(declared) {
        budget.admit(state.offset.saturating_add(len))?;
    }
    // A session that has received nothing yet (POST, then one PUT with every byte: what most
    // clients do) hashes with the PUT's algorithm from the first byte, instead of hashing with
    // the session's and reading the file again with the digest's.
    if state.offset == 0 && state.open.is_none() {
        if let Some(h) = state.hasher.as_mut() {
            if h.algorithm() != digest.algorithm() {
                *h = Hasher::new(digest.algorithm());
            }
        }
    }
    append(core, id, state, range, &budget, &mut body, Then::Settle).await?;
    let size = state.offset;
    let actual = match &state.hasher {
        Some(h) if h.algorithm() == digest.algorithm() => h.digest(),
        _ => {
            let path = core.blobs.upload_path(id);
            let alg = digest.algorithm();
            tokio::task::spawn_blocking(move || -> std::io::Result<Digest> {
                let mut h = Hasher::new(alg);
                h.feed_file(&mut std::fs::File::open(path)?, 0)?;
                Ok(h.digest())
            })
            .await
            .map_err(DomainError::from)??
        }
    };
    if &actual != digest {
        drop(guard);
        drop_session(core, id).await?;
        return Err(DomainError::DigestInvalid(format!(
            "the uploaded content's digest is {actual}, not {digest}"
        )));
    }
    let path = core.blobs.upload_path(id);
    let p2 = path.clone();
    tokio::task::spawn_blocking(move || std::fs::File::open(p2)?.sync_all())
        .await
        .map_err(DomainError::from)??;
    // Remove the row first (a crash after this leaves only an orphan file for the purge).
    // Until the file is renamed into the CAS it has no row: keep fsck from judging it.
    let _gate = core.fsck_gate.read().await;
    let key = id.clone();
    core.db.write(move |txn| uploads::remove(txn, &key)).await?;
    core.uploads.forget(id);
    drop(guard);
    publish_and_link(core, name, digest, TempGuard::new(path), size).await?;
    Ok(digest.clone())
}

/// Cancels an upload (`DELETE`).
pub async fn cancel(
    core: &Core,
    who: Option<&Principal>,
    name: &OciName,
    id: &UploadId,
) -> DomainResult<()> {
    load_session(core, who, name, id).await?;
    let slot = core.uploads.slot(id);
    let _guard = slot.lock().await;
    drop_session(core, id).await
}

/// Purges sessions idle for longer than `ttl_secs`, and files in `uploads/` that no session row
/// owns (left by a crash or a cut monolithic upload) once older than `orphan_secs`. Sessions
/// with a chunk in flight are never touched.
pub async fn purge_stale(
    core: &Core,
    ttl_secs: i64,
    orphan_secs: i64,
    dry_run: bool,
) -> DomainResult<Vec<String>> {
    let now = now_unix();
    let rows: Vec<(String, i64)> = core
        .db
        .read(uploads::all)
        .await?
        .into_iter()
        .map(|(id, s)| (id, s.updated_at))
        .collect();
    let mut purged = Vec::new();
    for (id, updated) in &rows {
        if now - updated < ttl_secs {
            continue;
        }
        let Ok(uid) = UploadId::parse(id) else {
            continue;
        };
        let slot = core.uploads.slot(&uid);
        let Ok(_guard) = slot.try_lock() else {
            continue;
        };
        purged.push(id.clone());
        if !dry_run {
            drop_session(core, &uid).await?;
        }
    }
    // Orphan files: no row, nobody working on them, and old enough.
    let known: std::collections::HashSet<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
    if let Ok(rd) = std::fs::read_dir(core.blobs.uploads_dir()) {
        for e in rd.flatten() {
            let fname = e.file_name().to_string_lossy().into_owned();
            if known.contains(fname.as_str()) || core.uploads.is_live(&fname) {
                continue;
            }
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() as i64 >= orphan_secs);
            if old {
                // A bundle's scratch directory (`domain::bundle`) is removed only at startup
                // (`orphan_secs == 0`), when no import or export can be using it.
                let dir = e.file_type().is_ok_and(|t| t.is_dir());
                if dir && !(orphan_secs == 0 && fname.starts_with(".bundle-")) {
                    continue;
                }
                purged.push(fname);
                if !dry_run {
                    let _ = if dir {
                        std::fs::remove_dir_all(e.path())
                    } else {
                        std::fs::remove_file(e.path())
                    };
                }
            }
        }
    }
    Ok(purged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("0-99"),
            Some(ChunkRange { start: 0, end: 99 })
        );
        assert_eq!(
            parse_content_range("bytes 5-9/100"),
            Some(ChunkRange { start: 5, end: 9 })
        );
        for bad in [
            "",
            "5",
            "9-5",
            "-5",
            "a-b",
            "1 - 2",
            "99999999999999999999-1",
            "0-99999999999999999999",
            "bytes=0-1",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn content_range_never_panics(s in ".{0,48}") {
            if let Some(r) = parse_content_range(&s) {
                prop_assert!(r.end >= r.start);
            }
        }
    }
}

//! The object-store backend of `ByteStore`: blobs and assets in an S3-compatible bucket
//! (Garage, MinIO, AWS S3), through the `object_store` crate of the Apache Arrow project.
//!
//! What it keeps of the local backend's contract, and how:
//! - **Visible only when durable and verified.** Writes still stream, hash and fsync into a
//!   local scratch file (`stage`, or an OCI upload session); `put` uploads that finished,
//!   verified file (one PUT up to `PART_BYTES`, else a multipart upload read from the file a part
//!   at a time, so memory stays bounded) and the object exists in the bucket only once the
//!   upload completes. A failed upload is aborted; one cut by a crash stays an incomplete
//!   multipart upload, which S3 never lists as an object.
//! - **Reads go through a local cache** (`$DATA_DIR/s3-cache/`): an object is downloaded once
//!   into a file there, mapped with the same `Mapped` path as local files, and kept until the
//!   cache's byte bound evicts it (least recently used first). Eviction only unlinks, so a map
//!   held by a response stays valid. `open_fresh` (fsck's re-hash) bypasses the cache: it
//!   judges the bucket's bytes.
//! - The `ByteStore` trait is synchronous (its callers run on the blocking pool, and a few
//!   small calls on async workers). The async client runs on its own small runtime, owned by a
//!   thread of this module, so a call from any thread can wait for it without re-entering the
//!   caller's runtime.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::future::Future;
use std::io;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::{Path, PathPart};
use object_store::signer::Signer;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};
use tokio::io::AsyncReadExt;

use super::blob::TempGuard;
use super::bytes::ByteStore;
use super::mmap::Mapped;

/// Objects up to this size are one PUT; larger ones are multipart uploads of parts this big
/// (S3 wants at least 5 MiB per part but the last).
const PART_BYTES: usize = 8 << 20;
/// Parts of one multipart upload in flight at once (memory: this many parts).
const PARTS_IN_FLIGHT: usize = 4;
/// Scratch and download files start with this prefix (purged at open).
const SCRATCH_PREFIX: &str = ".tmp-";
/// The longest one request to the bucket may take (a whole object is one download).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long a presigned download URL (`--s3-redirect`) stays valid.
pub const PRESIGN_TTL: Duration = Duration::from_secs(300);

/// Where the bucket is and how to reach it: `--storage s3` and the `--s3-*` settings.
#[derive(Clone)]
pub struct S3Settings {
    /// The S3 API endpoint (`http://127.0.0.1:3900`); empty means AWS's own for the region.
    pub endpoint: String,
    /// The bucket every object goes to.
    pub bucket: String,
    /// The region name the endpoint expects (Garage's default is `garage`).
    pub region: String,
    /// A key prefix, so that one bucket can hold more than one site (`site-a`); may be empty.
    pub prefix: String,
    /// Path-style addressing (`endpoint/bucket/key`) instead of virtual hosts
    /// (`bucket.endpoint/key`): what Garage and MinIO expect without DNS set up for it.
    pub path_style: bool,
    /// A file to read the key pair from (see `read_credentials`); it wins over the fields below.
    pub credentials_file: Option<PathBuf>,
    /// The access key id.
    pub access_key_id: String,
    /// The secret key (never printed).
    pub secret_access_key: String,
    /// Bytes the local read cache may hold before it evicts the least recently used objects.
    pub cache_bytes: u64,
    /// The bucket is where the objects were, not where new ones go: the site is moving back
    /// to local files (`--storage local` with the bucket still configured), reading the
    /// bucket through until `pfai storage migrate --to local` has moved every object.
    pub previous: bool,
    /// Answer blob and asset downloads with a 307 to a short-lived presigned URL, so that the
    /// bucket serves the bytes.
    pub redirect: bool,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("path_style", &self.path_style)
            .field("credentials_file", &self.credentials_file)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<hidden>")
            .field("cache_bytes", &self.cache_bytes)
            .field("redirect", &self.redirect)
            .field("previous", &self.previous)
            .finish()
    }
}

/// Reads an access key pair from a credentials file: `key = value` lines, with the keys of
/// AWS's shared credentials file (`aws_access_key_id`, `aws_secret_access_key`) or without
/// their `aws_` prefix; `[section]` headers and `#`/`;` comments are skipped and the first
/// value of each key wins (the first profile of an AWS file).
pub fn read_credentials(path: &FsPath) -> io::Result<(String, String)> {
    let text = fs::read_to_string(path)?;
    let (mut id, mut secret) = (None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';', '[']) {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').to_string();
        match k.trim().trim_start_matches("aws_") {
            "access_key_id" => id = id.or(Some(v)),
            "secret_access_key" => secret = secret.or(Some(v)),
            _ => {}
        }
    }
    match (id, secret) {
        (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => Ok((id, secret)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} has no access_key_id and secret_access_key",
                path.display()
            ),
        )),
    }
}

/// The runtime the async client runs on: its own, on a thread of its own, stopped when the
/// last store using it is dropped (dropping a runtime inside another one's async context
/// would panic, so it is never dropped by the caller).
struct Io {
    handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Io {
    fn start() -> io::Result<Io> {
        let (htx, hrx) = std::sync::mpsc::sync_channel(1);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("pfai-s3".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("pfai-s3-io")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = htx.send(Err(e));
                        return;
                    }
                };
                let _ = htx.send(Ok(rt.handle().clone()));
                // Ends when the sender is dropped.
                let _ = rt.block_on(stopped);
            })?;
        let handle = hrx
            .recv()
            .map_err(|_| io::Error::other("the object store runtime did not start"))??;
        Ok(Io {
            handle,
            _stop: stop,
        })
    }

    /// Runs `fut` on the client runtime and waits for it, from any thread.
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> io::Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        let wait = || {
            rx.recv()
                .map_err(|_| io::Error::other("the object store runtime stopped"))
        };
        // On a worker of a multi-threaded runtime, hand its other tasks to another worker
        // while this one waits; elsewhere (blocking pool, plain threads) just wait.
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }
}

/// The bucket client and its runtime, shared by the blob and asset namespaces.
pub struct S3Client {
    store: Arc<AmazonS3>,
    io: Io,
    settings: S3Settings,
    cache: Arc<Cache>,
    staging: PathBuf,
}

impl S3Client {
    /// Connects (lazily: no request is made here) to the bucket of `settings`; local scratch
    /// files go under `data_dir/s3-staging`, the read cache under `data_dir/s3-cache`. Both are
    /// emptied: a scratch file is a crash's leftover, and the cache is rebuilt on demand.
    pub fn open(mut settings: S3Settings, data_dir: &FsPath) -> io::Result<Arc<S3Client>> {
        if settings.bucket.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "--storage s3 needs --s3-bucket",
            ));
        }
        if let Some(file) = &settings.credentials_file {
            (settings.access_key_id, settings.secret_access_key) = read_credentials(file)?;
        }
        if settings.access_key_id.is_empty() || settings.secret_access_key.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "--storage s3 needs --s3-credentials-file or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            ));
        }
        let io = Io::start()?;
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_access_key_id(&settings.access_key_id)
            .with_secret_access_key(&settings.secret_access_key)
            .with_virtual_hosted_style_request(!settings.path_style)
            // A whole object streams within one request (a download fills the cache): bound a
            // request by minutes, not the crate's 30 s, and fail over a dead endpoint quickly.
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(REQUEST_TIMEOUT)
                    .with_connect_timeout(Duration::from_secs(5)),
            )
            .with_retry(RetryConfig {
                backoff: Default::default(),
                max_retries: 5,
                retry_timeout: Duration::from_secs(60),
            });
        if !settings.endpoint.is_empty() {
            b = b
                .with_endpoint(&settings.endpoint)
                .with_allow_http(settings.endpoint.starts_with("http://"));
        }
        let store = {
            let _in = io.handle.enter();
            b.build()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
        };
        let staging = data_dir.join("s3-staging");
        let cache_dir = data_dir.join("s3-cache");
        for d in [&staging, &cache_dir] {
            let _ = fs::remove_dir_all(d);
            fs::create_dir_all(d)?;
        }
        Ok(Arc::new(S3Client {
            store: Arc::new(store),
            io,
            cache: Arc::new(Cache::new(cache_dir, settings.cache_bytes)),
            settings,
            staging,
        }))
    }

    /// The namespace `ns` (`blobs`, `assets`) of this bucket, under the configured prefix.
    pub fn namespace(self: &Arc<Self>, ns: &str) -> S3Store {
        let mut root: Vec<String> = self
            .settings
            .prefix
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        root.push(ns.to_string());
        S3Store {
            client: self.clone(),
            root,
            ns: ns.to_string(),
        }
    }

    /// Fails unless the bucket answers a listing with these credentials: the start-up check,
    /// so that a wrong endpoint or key is a start error, not the first upload's.
    pub fn check(&self) -> io::Result<()> {
        let store = self.store.clone();
        self.io.run(async move {
            let mut list = store.list(None);
            match list.next().await {
                Some(Err(e)) => Err(io::Error::other(format!(
                    "the bucket is not reachable: {e}"
                ))),
                _ => Ok(()),
            }
        })?
    }
}

/// One namespace of objects in the bucket (see the module doc).
pub struct S3Store {
    client: Arc<S3Client>,
    /// The raw (unencoded) key segments every object of this namespace starts with.
    root: Vec<String>,
    /// The namespace's name, the first segment of its cache keys.
    ns: String,
}

fn random_name() -> String {
    let mut rnd = [0u8; 12];
    crate::util::fill_random(&mut rnd);
    format!("{SCRATCH_PREFIX}{}", hex::encode(rnd))
}

impl S3Store {
    /// The object key of `name`: the root's segments, then the name's.
    fn key(&self, name: &str) -> Path {
        Path::from_iter(
            self.root
                .iter()
                .map(String::as_str)
                .chain(name.split('/'))
                .map(PathPart::from),
        )
    }

    fn cache_key(&self, name: &str) -> String {
        format!("{}/{name}", self.ns)
    }

    /// Downloads an object into a new local file in `dir` (not yet in place), returning its
    /// guard and size; the size must match what the bucket said (a cut transfer is an error).
    fn download(&self, name: &str, dir: &FsPath) -> io::Result<(TempGuard, u64)> {
        fs::create_dir_all(dir)?;
        let guard = TempGuard::new(dir.join(random_name()));
        let path = guard.path().to_path_buf();
        let store = self.client.store.clone();
        let key = self.key(name);
        let got = self.client.io.run(async move {
            let res = store.get(&key).await?;
            let expected = res.meta.size;
            let mut file = tokio::fs::File::create_new(&path).await?;
            let mut stream = res.into_stream();
            let mut n = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                n += chunk.len() as u64;
                tokio::io::AsyncWriteExt::write_all(&mut file, &chunk).await?;
            }
            tokio::io::AsyncWriteExt::flush(&mut file).await?;
            if n != expected {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("object {key}: got {n} of {expected} bytes"),
                ));
            }
            Ok::<u64, io::Error>(n)
        })??;
        Ok((guard, got))
    }

    /// Uploads the local file `src` as `name`: one PUT when small, else a multipart upload
    /// streamed from the file and aborted on any error (nothing becomes visible).
    fn upload(&self, src: &FsPath, name: &str) -> io::Result<()> {
        let store = self.client.store.clone();
        let key = self.key(name);
        let src = src.to_path_buf();
        self.client.io.run(async move {
            let mut file = tokio::fs::File::open(&src).await?;
            let len = file.metadata().await?.len();
            if len <= PART_BYTES as u64 {
                let mut buf = Vec::with_capacity(len as usize);
                file.read_to_end(&mut buf).await?;
                store.put(&key, PutPayload::from(buf)).await?;
                return Ok(());
            }
            let upload = store.put_multipart(&key).await?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
            let res: io::Result<()> = async {
                let mut buf = vec![0u8; PART_BYTES];
                loop {
                    let mut filled = 0;
                    while filled < buf.len() {
                        let n = file.read(&mut buf[filled..]).await?;
                        if n == 0 {
                            break;
                        }
                        filled += n;
                    }
                    if filled == 0 {
                        break;
                    }
                    w.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                    w.write(&buf[..filled]);
                    if filled < buf.len() {
                        break;
                    }
                }
                Ok(())
            }
            .await;
            match res {
                Ok(()) => {
                    w.finish().await?;
                    Ok(())
                }
                Err(e) => {
                    let _ = w.abort().await;
                    Err(e)
                }
            }
        })?
    }

    /// A presigned GET URL of the object, valid for `PRESIGN_TTL`, when `--s3-redirect` is on.
    pub fn presigned(&self, name: &str) -> io::Result<Option<String>> {
        if !self.client.settings.redirect {
            return Ok(None);
        }
        let store = self.client.store.clone();
        let key = self.key(name);
        let url = self.client.io.run(async move {
            store
                .signed_url(reqwest::Method::GET, &key, PRESIGN_TTL)
                .await
        })??;
        Ok(Some(url.to_string()))
    }
}

impl ByteStore for S3Store {
    fn stage(&self, _name: &str) -> io::Result<(File, TempGuard)> {
        let path = self.client.staging.join(random_name());
        let file = File::create_new(&path)?;
        Ok((file, TempGuard::new(path)))
    }

    fn put(&self, src: &FsPath, name: &str) -> io::Result<()> {
        self.upload(src, name)?;
        // The uploaded file is the object's bytes: it becomes the cached copy (a blob just
        // pushed is often pulled next). The object is stored either way; a cache that cannot
        // take it only costs a download later.
        let key = self.cache_key(name);
        if let Err(e) = self.client.cache.insert(&key, src, false) {
            tracing::warn!(object = %key, error = %e, "caching an uploaded object failed");
            self.client.cache.remove(&key);
            let _ = fs::remove_file(src);
        }
        Ok(())
    }

    fn open(&self, name: &str, hot: bool) -> io::Result<Mapped> {
        let ck = self.cache_key(name);
        if let Some(m) = self.client.cache.get(&ck, hot) {
            return Ok(m);
        }
        let (guard, _) = self.download(name, &self.client.cache.dir)?;
        let m = self.client.cache.insert(&ck, guard.path(), hot)?;
        guard.keep();
        Ok(m)
    }

    fn open_fresh(&self, name: &str) -> io::Result<Mapped> {
        let (guard, _) = self.download(name, &self.client.staging)?;
        // The map keeps the bytes after the guard unlinks the file.
        Mapped::open(guard.path())
    }

    fn len(&self, name: &str) -> io::Result<Option<u64>> {
        let store = self.client.store.clone();
        let key = self.key(name);
        match self.client.io.run(async move { store.head(&key).await })? {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn delete(&self, name: &str) -> io::Result<()> {
        self.client.cache.remove(&self.cache_key(name));
        let store = self.client.store.clone();
        let key = self.key(name);
        match self
            .client
            .io
            .run(async move { store.delete(&key).await })?
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn delete_prefix(&self, prefix: &str) -> io::Result<()> {
        let names = self.list_names(Some(prefix))?;
        for name in names {
            self.delete(&name)?;
        }
        Ok(())
    }

    fn scan(&self, depth: usize, ours: &dyn Fn(&[String]) -> bool) -> Vec<String> {
        match self.list_names(None) {
            Ok(names) => names
                .into_iter()
                .filter(|n| {
                    let segs: Vec<String> = n.split('/').map(str::to_string).collect();
                    segs.len() <= depth && ours(&segs)
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "listing the bucket failed");
                Vec::new()
            }
        }
    }

    fn free_bytes(&self) -> io::Result<u64> {
        // The bucket's space is the cluster's to report; what this node can run out of is the
        // disk of its scratch files and cache.
        super::free_bytes(&self.client.staging)
    }

    fn export(&self, name: &str, dest: &FsPath) -> io::Result<()> {
        let dir = dest.parent().unwrap_or(FsPath::new("."));
        let (guard, _) = self.download(name, dir)?;
        File::open(guard.path())?.sync_all()?;
        fs::rename(guard.path(), dest)?;
        guard.keep();
        super::fsync_dir(dir)
    }

    fn presign(&self, name: &str) -> io::Result<Option<String>> {
        self.presigned(name)
    }

    fn kind(&self) -> &'static str {
        "s3"
    }

    fn redirects(&self) -> bool {
        self.client.settings.redirect
    }
}

impl S3Store {
    /// The names (relative to the namespace, decoded) of every object under `prefix`.
    fn list_names(&self, prefix: Option<&str>) -> io::Result<Vec<String>> {
        let store = self.client.store.clone();
        let root = match prefix {
            Some(p) => self.key(p),
            None => Path::from_iter(self.root.iter().map(|s| PathPart::from(s.as_str()))),
        };
        let skip = self.root.len();
        self.client.io.run(async move {
            let mut out = Vec::new();
            let mut list = store.list(Some(&root));
            while let Some(meta) = list.next().await {
                let meta = meta?;
                let segs: Vec<String> = meta
                    .location
                    .parts()
                    .skip(skip)
                    .map(|p| {
                        percent_encoding::percent_decode_str(p.as_ref())
                            .decode_utf8_lossy()
                            .into_owned()
                    })
                    .collect();
                if segs.is_empty() || segs.iter().any(|s| s.starts_with(SCRATCH_PREFIX)) {
                    continue;
                }
                out.push(segs.join("/"));
            }
            Ok::<_, io::Error>(out)
        })?
    }
}

/// The local read cache: downloaded objects as read-only files, bounded in bytes, least
/// recently used evicted first. Its index is in memory (the directory is emptied at start).
struct Cache {
    dir: PathBuf,
    cap: u64,
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    /// Cache key -> (size, last use).
    entries: HashMap<String, (u64, u64)>,
    total: u64,
    clock: u64,
}

impl Cache {
    fn new(dir: PathBuf, cap: u64) -> Cache {
        Cache {
            dir,
            cap,
            state: Mutex::default(),
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// The cached object's bytes, if cached.
    fn get(&self, key: &str, hot: bool) -> Option<Mapped> {
        {
            let mut st = self.state.lock().ok()?;
            st.clock += 1;
            let now = st.clock;
            let e = st.entries.get_mut(key)?;
            e.1 = now;
        }
        match Mapped::open_with(&self.path(key), hot) {
            Ok(m) => Some(m),
            Err(_) => {
                self.remove(key);
                None
            }
        }
    }

    /// Moves the complete local file `src` into the cache as `key` and maps it, then evicts
    /// least recently used entries past the bound (this one too, if it alone is too big: the
    /// returned map keeps its bytes).
    fn insert(&self, key: &str, src: &FsPath, hot: bool) -> io::Result<Mapped> {
        let dst = self.path(key);
        if let Some(dir) = dst.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut perm = fs::metadata(src)?.permissions();
        perm.set_readonly(true);
        fs::set_permissions(src, perm)?;
        let size = fs::metadata(src)?.len();
        fs::rename(src, &dst)?;
        let m = Mapped::open_with(&dst, hot)?;
        let mut evict = Vec::new();
        if let Ok(mut st) = self.state.lock() {
            st.clock += 1;
            let now = st.clock;
            if let Some((old, _)) = st.entries.insert(key.to_string(), (size, now)) {
                st.total -= old;
            }
            st.total += size;
            while st.total > self.cap {
                let Some(victim) = st
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, used))| *used)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                if let Some((sz, _)) = st.entries.remove(&victim) {
                    st.total -= sz;
                }
                evict.push(victim);
            }
        }
        for k in evict {
            let _ = fs::remove_file(self.path(&k));
        }
        Ok(m)
    }

    /// Drops an entry (its file is unlinked; maps of it stay valid).
    fn remove(&self, key: &str) {
        if let Ok(mut st) = self.state.lock() {
            if let Some((sz, _)) = st.entries.remove(key) {
                st.total -= sz;
            }
        }
        let _ = fs::remove_file(self.path(key));
    }

    /// Bytes held now (tests check the bound).
    #[cfg(test)]
    fn total(&self) -> u64 {
        self.state.lock().map(|s| s.total).unwrap_or(0)
    }
}

impl S3Client {
    /// Bytes in the read cache now.
    pub fn cached_bytes(&self) -> u64 {
        self.cache.state.lock().map(|s| s.total).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(dir: &FsPath, n: usize) -> PathBuf {
        let p = dir.join(random_name());
        let mut f = File::create_new(&p).unwrap();
        f.write_all(&vec![7u8; n]).unwrap();
        p
    }

    #[test]
    fn the_read_cache_stays_within_its_bound_and_evicts_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("c"), 250);
        fs::create_dir_all(dir.path().join("c")).unwrap();
        for k in ["b/a", "b/b"] {
            let p = file(dir.path(), 100);
            cache.insert(k, &p, false).unwrap();
        }
        // Use a, so b is the least recently used when c arrives.
        assert!(cache.get("b/a", false).is_some());
        let p = file(dir.path(), 100);
        let m = cache.insert("b/c", &p, false).unwrap();
        assert_eq!(m.len(), 100);
        assert_eq!(cache.total(), 200);
        assert!(cache.get("b/b", false).is_none());
        assert!(!cache.path("b/b").exists());
        assert!(cache.get("b/a", false).is_some());
        // An object bigger than the bound is served, then not kept.
        let p = file(dir.path(), 300);
        let big = cache.insert("b/big", &p, false).unwrap();
        assert_eq!(big.slice(0, 300).len(), 300);
        assert!(cache.total() <= 250);
        assert!(!cache.path("b/big").exists());
    }

    #[test]
    fn credentials_files_in_aws_or_plain_form_are_read_and_incomplete_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c");
        fs::write(
            &p,
            "[default]\naws_access_key_id = GK1\naws_secret_access_key = s3cr3t\n[other]\naws_access_key_id = GK2\n",
        )
        .unwrap();
        assert_eq!(
            read_credentials(&p).unwrap(),
            ("GK1".to_string(), "s3cr3t".to_string())
        );
        fs::write(&p, "access_key_id=GK3\n").unwrap();
        assert!(read_credentials(&p).is_err());
    }
}

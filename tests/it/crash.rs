//! Crash consistency of the real binary. A mixed workload from several clients is cut by
//! `kill -9` at random moments, the server is restarted on the same data directory, and after
//! every restart every acknowledged write must be there, nothing half-written may be visible, and
//! `pfai fsck` must find nothing but leftovers of unacknowledged writes, and be clean after
//! `--repair`. Plus a GC soak: GC with grace 0 in a loop while pushers race it.
//!
//! The workload is random from one seed, printed at the start and on failure; set
//! `PFAI_CRASH_SEED=<n>` to replay the same choices (the kill moments still depend on timing).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::binary::{create_acme_app, signal, start, start_with_env};
use crate::harness::{git_ok, require_tool};

/// xorshift64*: small, seedable, good enough to pick operations and make bytes.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 once, so nearby seeds give unrelated streams (and never 0).
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

fn seed() -> u64 {
    match std::env::var("PFAI_CRASH_SEED") {
        Ok(s) => s.trim().parse().expect("PFAI_CRASH_SEED is a u64"),
        Err(_) => {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).unwrap();
            u64::from_le_bytes(b)
        }
    }
}

/// Prints the seed again if the test panics (the first line may be far up the output).
struct SeedOnPanic(u64);

impl Drop for SeedOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "FAILED with seed {0}; replay with PFAI_CRASH_SEED={0}",
                self.0
            );
        }
    }
}

fn sha(data: &[u8]) -> String {
    pfai::ids::Digest::sha256_of(data).to_string()
}

fn admin_token(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("data/initial-admin-token"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Runs the `pfai` client binary against `url` as `token` (no saved login is read).
fn pfai_cli(url: &str, token: &str, args: &[&str]) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_pfai"))
        .args(args)
        .env("PFAI_URL", url)
        .env("PFAI_TOKEN", token)
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .output()
        .unwrap()
}

/// What a kill may legitimately leave behind: files and tags of writes that were never
/// acknowledged (nothing visible refers to them). `pfai fsck` reports them and `--repair`
/// removes them; anything else (a row without its file, a damaged file) is a failure.
const LEFTOVERS: [&str; 5] = [
    "orphan_blob_file",
    "orphan_asset_file",
    "orphan_upload_file",
    "orphan_release_tag",
    "stale_pending_tag",
];

/// `pfai fsck --json` as the site admin: no corrupt or missing blob, no asset row without its
/// bytes; leftovers of unacknowledged writes are allowed, and after `pfai fsck --repair` it
/// must exit 0. Returns the first report.
fn fsck_clean(url: &str, token: &str, ctx: &str) -> Value {
    let out = pfai_cli(url, token, &["fsck", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{ctx}: pfai fsck printed no report ({e}): {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(v["corrupt"], json!([]), "{ctx}: fsck: {v}");
    assert_eq!(v["missing"], json!([]), "{ctx}: fsck: {v}");
    if out.status.success() {
        return v;
    }
    for f in v["findings"].as_array().into_iter().flatten() {
        let kind = f["kind"].as_str().unwrap_or("");
        assert!(
            LEFTOVERS.contains(&kind),
            "{ctx}: fsck found {kind}, not a leftover of an unacknowledged write: {v}"
        );
    }
    let repaired = pfai_cli(url, token, &["fsck", "--repair", "--json"]);
    assert!(
        repaired.status.success(),
        "{ctx}: fsck --repair left problems: {}",
        String::from_utf8_lossy(&repaired.stdout)
    );
    let again = pfai_cli(url, token, &["fsck", "--json"]);
    assert!(
        again.status.success(),
        "{ctx}: fsck after --repair: {}",
        String::from_utf8_lossy(&again.stdout)
    );
    v
}

/// Gives `acme/app` a commit on `main` (releases need a target).
fn push_main(dir: &Path, url: &str, token: &str) {
    let wc = dir.join("wc");
    std::fs::create_dir_all(&wc).unwrap();
    git_ok(&wc, &["init", "-q", "-b", "main"]);
    git_ok(&wc, &["commit", "-q", "--allow-empty", "-m", "c"]);
    let host = url.trim_start_matches("http://");
    git_ok(
        &wc,
        &[
            "push",
            "-q",
            &format!("http://x:{token}@{host}/acme/app.git"),
            "main",
        ],
    );
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn image_manifest(blobs: &[(String, usize)]) -> Vec<u8> {
    let (config, layers) = blobs.split_first().unwrap();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.0, "size": config.1},
        "layers": layers.iter().map(|(d, n)| json!({"mediaType": OCI_LAYER, "digest": d, "size": n})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// An index over `children`; `note` (an annotation) makes each push's bytes unique.
fn index_manifest(children: &[(String, usize)], note: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "annotations": {"org.example.note": note},
        "manifests": children.iter().enumerate().map(|(i, (d, n))| json!({
            "mediaType": OCI_MANIFEST, "digest": d, "size": n,
            "platform": {"architecture": format!("arch{i}"), "os": "linux"},
        })).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// A client of one server run. Transport errors (the server was killed) come back as `Err`.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
}

type Sent = Result<reqwest::Response, reqwest::Error>;

impl Api {
    fn new(url: &str, token: &str) -> Api {
        Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            url: url.to_owned(),
            token: token.to_owned(),
        }
    }

    fn req(&self, m: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(m, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
    }

    /// GET with the body fully read (a transport error here is a test failure: the server
    /// is up while checking).
    async fn fetch(&self, path: &str) -> (StatusCode, reqwest::header::HeaderMap, bytes::Bytes) {
        let r = self
            .req(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let (st, h) = (r.status(), r.headers().clone());
        let b = r
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("GET {path} body: {e}"));
        (st, h, b)
    }

    async fn json(&self, path: &str) -> (StatusCode, Value) {
        let (st, _, b) = self.fetch(path).await;
        (st, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    async fn json_post(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .req(reqwest::Method::POST, path)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let st = r.status();
        (st, r.json().await.unwrap_or(Value::Null))
    }

    /// Pushes a blob monolithically (`POST ?digest=`).
    async fn blob_monolithic(&self, name: &str, data: &[u8]) -> Sent {
        self.req(
            reqwest::Method::POST,
            &format!("/v2/{name}/blobs/uploads/?digest={}", sha(data)),
        )
        .body(data.to_vec())
        .send()
        .await
    }

    /// Pushes a blob in chunks: POST, one PATCH per cut, then PUT `?digest=` with the rest.
    /// Returns the response of the last request that did not answer as expected, or the PUT's.
    async fn blob_chunked(&self, name: &str, data: &[u8], cuts: &[usize]) -> Sent {
        let r = self
            .req(reqwest::Method::POST, &format!("/v2/{name}/blobs/uploads/"))
            .send()
            .await?;
        if r.status() != StatusCode::ACCEPTED {
            return Ok(r);
        }
        let mut loc = r.headers()["location"].to_str().unwrap().to_owned();
        let mut at = 0usize;
        for &cut in cuts {
            let cut = cut.clamp(at, data.len());
            if cut == at {
                continue;
            }
            let r = self
                .req(reqwest::Method::PATCH, &loc)
                .header("content-range", format!("{at}-{}", cut - 1))
                .header("content-type", "application/octet-stream")
                .body(data[at..cut].to_vec())
                .send()
                .await?;
            if r.status() != StatusCode::ACCEPTED {
                return Ok(r);
            }
            loc = r.headers()["location"].to_str().unwrap().to_owned();
            at = cut;
        }
        let sep = if loc.contains('?') { '&' } else { '?' };
        let mut put = self.req(
            reqwest::Method::PUT,
            &format!("{loc}{sep}digest={}", sha(data)),
        );
        if at < data.len() {
            put = put
                .header("content-range", format!("{at}-{}", data.len() - 1))
                .header("content-type", "application/octet-stream");
        }
        put.body(data[at..].to_vec()).send().await
    }

    async fn put_manifest(&self, name: &str, reference: &str, ct: &str, body: &[u8]) -> Sent {
        self.req(
            reqwest::Method::PUT,
            &format!("/v2/{name}/manifests/{reference}"),
        )
        .header("content-type", ct)
        .body(body.to_vec())
        .send()
        .await
    }

    /// GET a blob; its body must hash to its digest.
    async fn blob_ok(&self, name: &str, digest: &str, ctx: &str) {
        let (st, _, b) = self.fetch(&format!("/v2/{name}/blobs/{digest}")).await;
        assert_eq!(st, StatusCode::OK, "{ctx}: blob {name}@{digest} is gone");
        assert_eq!(
            sha(&b),
            digest,
            "{ctx}: blob {name}@{digest} has other bytes"
        );
    }
}

/// The OCI error code of a response.
async fn oci_code(r: reqwest::Response) -> (StatusCode, String) {
    let st = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (st, v["errors"][0]["code"].as_str().unwrap_or("").to_owned())
}

// ---------------------------------------------------------------------------------------------
// kill -9 under a mixed workload

/// Whether a write was acknowledged (2xx fully received) or in flight when the server died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ack {
    Yes,
    InFlight,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TagState {
    Present,
    DeleteInFlight,
    Deleted,
}

#[derive(Debug)]
struct Rel {
    ack: Ack,
    tag: TagState,
}

#[derive(Debug)]
struct AssetRec {
    tag: String,
    name: String,
    sha256: String,
    size: u64,
    ack: Ack,
}

#[derive(Debug)]
struct ManRec {
    name: String,
    tag: String,
    digest: String,
    bytes: Vec<u8>,
    blobs: Vec<String>,
    /// Seed and size of its layer, so another push can send the same bytes again.
    layer: (u64, usize),
    ack: Ack,
}

/// What the clients were told. An entry is added as `InFlight` before its request is sent and
/// becomes `Yes` only after the 2xx response was fully received; a refusal removes it.
#[derive(Default, Debug)]
struct Model {
    releases: BTreeMap<String, Rel>,
    assets: Vec<AssetRec>,
    manifests: Vec<ManRec>,
    acks: u64,
    gc_runs: u64,
}

type Shared = Arc<Mutex<Model>>;

fn layer_bytes(seed: u64, size: usize) -> Vec<u8> {
    Rng::new(seed).bytes(size)
}

/// One client: random operations until the server goes away (the first transport error).
async fn client(api: Api, model: Shared, mut rng: Rng, id: String) {
    let mut n = 0u64;
    loop {
        n += 1;
        let op = rng.below(100);
        let alive = if op < 12 {
            create_release(&api, &model, &format!("r{id}-{n}")).await
        } else if op < 42 {
            upload_asset(&api, &model, &mut rng, &format!("a{id}-{n}.bin")).await
        } else if op < 86 {
            push_image(&api, &model, &mut rng, &format!("m{id}-{n}")).await
        } else if op < 92 {
            delete_tag(&api, &model, &mut rng).await
        } else {
            run_gc(&api, &model).await
        };
        if !alive {
            return;
        }
    }
}

/// Unexpected answers from a live server are failures, with the body in the message.
async fn expect(r: reqwest::Response, want: StatusCode, what: &str) -> Result<bytes::Bytes, ()> {
    let st = r.status();
    match r.bytes().await {
        Ok(b) => {
            assert_eq!(st, want, "{what}: {}", String::from_utf8_lossy(&b));
            Ok(b)
        }
        // Killed while the body was still arriving: not acknowledged.
        Err(_) => Err(()),
    }
}

async fn create_release(api: &Api, model: &Shared, tag: &str) -> bool {
    model.lock().unwrap().releases.insert(
        tag.to_owned(),
        Rel {
            ack: Ack::InFlight,
            tag: TagState::Present,
        },
    );
    let Ok(r) = api
        .req(reqwest::Method::POST, "/api/v1/forge/acme/app/releases")
        .json(&json!({"tagName": tag, "targetCommit": "main"}))
        .send()
        .await
    else {
        return false;
    };
    if expect(r, StatusCode::CREATED, "create release")
        .await
        .is_err()
    {
        return false;
    }
    let mut m = model.lock().unwrap();
    m.releases.get_mut(tag).unwrap().ack = Ack::Yes;
    m.acks += 1;
    true
}

async fn upload_asset(api: &Api, model: &Shared, rng: &mut Rng, name: &str) -> bool {
    let tag = {
        let m = model.lock().unwrap();
        let acked: Vec<&String> = m
            .releases
            .iter()
            .filter(|(_, r)| r.ack == Ack::Yes)
            .map(|(t, _)| t)
            .collect();
        if acked.is_empty() {
            None
        } else {
            Some(acked[rng.below(acked.len() as u64) as usize].clone())
        }
    };
    let Some(tag) = tag else {
        return create_release(api, model, &format!("r{name}")).await;
    };
    // Mostly small, sometimes a few MiB so that kills land in the middle of one.
    let size = match rng.below(10) {
        0 => 0,
        1..=8 => rng.below(64 << 10) as usize,
        _ => (1 << 20) + rng.below(1 << 20) as usize,
    };
    let data = rng.bytes(size);
    model.lock().unwrap().assets.push(AssetRec {
        tag: tag.clone(),
        name: name.to_owned(),
        sha256: sha(&data)[7..].to_owned(),
        size: size as u64,
        ack: Ack::InFlight,
    });
    let part = reqwest::multipart::Part::bytes(data).file_name(name.to_owned());
    let Ok(r) = api
        .req(
            reqwest::Method::POST,
            &format!("/api/v1/forge/acme/app/releases/{tag}/assets"),
        )
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
    else {
        return false;
    };
    let Ok(body) = expect(r, StatusCode::CREATED, "upload asset").await else {
        return false;
    };
    let v: Value = serde_json::from_slice(&body).unwrap();
    let mut m = model.lock().unwrap();
    let a = m.assets.iter_mut().find(|a| a.name == name).unwrap();
    assert_eq!(
        v["sha256"],
        a.sha256.as_str(),
        "the server hashed what we sent"
    );
    a.ack = Ack::Yes;
    m.acks += 1;
    true
}

/// Pushes a config (monolithic) and a layer (chunked; sometimes the bytes of an earlier layer
/// again), then a manifest by tag or by digest.
async fn push_image(api: &Api, model: &Shared, rng: &mut Rng, tag: &str) -> bool {
    let name = if rng.below(3) == 0 {
        "acme/app/tools"
    } else {
        "acme/app"
    };
    let reuse = if rng.below(4) == 0 {
        let m = model.lock().unwrap();
        let known: Vec<(u64, usize)> = m
            .manifests
            .iter()
            .filter(|x| x.ack == Ack::Yes)
            .map(|x| x.layer)
            .collect();
        (!known.is_empty()).then(|| known[rng.below(known.len() as u64) as usize])
    } else {
        None
    };
    let layer = reuse.unwrap_or_else(|| {
        let size = match rng.below(4) {
            0 => (256 << 10) + rng.below(768 << 10) as usize,
            _ => rng.below(64 << 10) as usize,
        };
        (rng.next(), size)
    });
    let data = layer_bytes(layer.0, layer.1);
    let config =
        serde_json::to_vec(&json!({"architecture":"amd64","os":"linux","tag":tag})).unwrap();
    let Ok(r) = api.blob_monolithic(name, &config).await else {
        return false;
    };
    if expect(r, StatusCode::CREATED, "config push").await.is_err() {
        return false;
    }
    let mut cuts: Vec<usize> = (0..rng.below(4))
        .map(|_| rng.below(data.len() as u64 + 1) as usize)
        .collect();
    cuts.sort_unstable();
    if rng.below(2) == 0 {
        // No last chunk in the PUT.
        cuts.push(data.len());
    }
    let Ok(r) = api.blob_chunked(name, &data, &cuts).await else {
        return false;
    };
    if expect(r, StatusCode::CREATED, "chunked layer push")
        .await
        .is_err()
    {
        return false;
    }
    let blobs = vec![(sha(&config), config.len()), (sha(&data), data.len())];
    let bytes = image_manifest(&blobs);
    let digest = sha(&bytes);
    let by_digest = rng.below(3) == 0;
    model.lock().unwrap().manifests.push(ManRec {
        name: name.to_owned(),
        tag: if by_digest {
            String::new()
        } else {
            tag.to_owned()
        },
        digest: digest.clone(),
        bytes: bytes.clone(),
        blobs: blobs.iter().map(|b| b.0.clone()).collect(),
        layer,
        ack: Ack::InFlight,
    });
    let reference = if by_digest { digest.as_str() } else { tag };
    let Ok(r) = api
        .put_manifest(name, reference, OCI_MANIFEST, &bytes)
        .await
    else {
        return false;
    };
    let st = r.status();
    let Ok(body) = r.bytes().await else {
        return false;
    };
    let mut m = model.lock().unwrap();
    let i = m.manifests.iter().position(|x| x.digest == digest).unwrap();
    if st == StatusCode::BAD_REQUEST
        && String::from_utf8_lossy(&body).contains("MANIFEST_BLOB_UNKNOWN")
    {
        // A GC with grace 0 ran between the blob pushes and the manifest: refused, fine.
        m.manifests.remove(i);
        return true;
    }
    assert_eq!(
        st,
        StatusCode::CREATED,
        "manifest push: {}",
        String::from_utf8_lossy(&body)
    );
    m.manifests[i].ack = Ack::Yes;
    m.acks += 1;
    true
}

async fn delete_tag(api: &Api, model: &Shared, rng: &mut Rng) -> bool {
    let tag = {
        let mut m = model.lock().unwrap();
        let cands: Vec<String> = m
            .releases
            .iter()
            .filter(|(_, r)| r.ack == Ack::Yes && r.tag == TagState::Present)
            .map(|(t, _)| t.clone())
            .collect();
        if cands.is_empty() {
            return true;
        }
        let t = cands[rng.below(cands.len() as u64) as usize].clone();
        m.releases.get_mut(&t).unwrap().tag = TagState::DeleteInFlight;
        t
    };
    let Ok(r) = api
        .req(
            reqwest::Method::DELETE,
            &format!("/api/v1/forge/acme/app/tags/{tag}"),
        )
        .send()
        .await
    else {
        return false;
    };
    if expect(r, StatusCode::NO_CONTENT, "tag delete")
        .await
        .is_err()
    {
        return false;
    }
    let mut m = model.lock().unwrap();
    m.releases.get_mut(&tag).unwrap().tag = TagState::Deleted;
    m.acks += 1;
    true
}

async fn run_gc(api: &Api, model: &Shared) -> bool {
    let Ok(r) = api
        .req(reqwest::Method::POST, "/api/v1/admin/gc?graceSeconds=0")
        .send()
        .await
    else {
        return false;
    };
    if expect(r, StatusCode::OK, "gc").await.is_err() {
        return false;
    }
    model.lock().unwrap().gc_runs += 1;
    true
}

/// Requests in flight at once while checking.
const CHECK_CONCURRENCY: usize = 8;

/// Runs `f` over `items` with bounded concurrency, results in order.
async fn each<I, T, F, Fut>(items: Vec<I>, f: F) -> Vec<T>
where
    F: Fn(I) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    use futures_util::StreamExt;
    futures_util::stream::iter(items.into_iter().map(f))
        .buffered(CHECK_CONCURRENCY)
        .collect()
        .await
}

/// After a restart: every acknowledged write is there, every in-flight one is either absent or
/// complete (and is then treated as acknowledged from now on), nothing else is visible.
async fn check_after_restart(api: &Api, model: &Shared, ctx: &str) {
    let mut m = std::mem::take(&mut *model.lock().unwrap());

    // Releases by tag, and their git tags.
    let tags: Vec<String> = m.releases.keys().cloned().collect();
    let fetched = each(tags, |t| async move {
        let (st, v) = api
            .json(&format!("/api/v1/forge/acme/app/releases/{t}"))
            .await;
        let (tst, _) = api.json(&format!("/api/v1/forge/acme/app/tags/{t}")).await;
        (t, st, v, tst)
    })
    .await;
    let mut listed: Vec<(String, Value)> = Vec::new();
    for (t, st, v, tst) in fetched {
        let rel = m.releases.get_mut(&t).unwrap();
        if rel.ack == Ack::InFlight && st == StatusCode::NOT_FOUND {
            // Never created (its tag may exist: a tag without a release is allowed).
            m.releases.remove(&t);
            m.assets.retain(|a| a.tag != t);
            continue;
        }
        assert_eq!(st, StatusCode::OK, "{ctx}: acknowledged release {t}: {v}");
        rel.ack = Ack::Yes;
        match rel.tag {
            TagState::Present => {
                assert_eq!(
                    tst,
                    StatusCode::OK,
                    "{ctx}: release {t} is visible, its tag is not (never deleted)"
                );
                assert_eq!(v["tagExists"], true, "{ctx}: release {t}: {v}");
            }
            TagState::Deleted => {
                assert_eq!(tst, StatusCode::NOT_FOUND, "{ctx}: deleted tag {t} is back");
                assert_eq!(v["tagExists"], false, "{ctx}: release {t}: {v}");
            }
            TagState::DeleteInFlight => {
                assert!(tst == StatusCode::OK || tst == StatusCode::NOT_FOUND);
                rel.tag = if tst == StatusCode::OK {
                    TagState::Present
                } else {
                    TagState::Deleted
                };
                assert_eq!(v["tagExists"], tst == StatusCode::OK, "{ctx}: {t}: {v}");
            }
        }
        for a in v["assets"].as_array().unwrap() {
            listed.push((t.clone(), a.clone()));
        }
    }

    // Every asset a release lists is one we uploaded to it, complete, with our bytes.
    let by_name: HashMap<&str, &AssetRec> = m.assets.iter().map(|a| (a.name.as_str(), a)).collect();
    let seen: HashSet<String> = each(listed, |(t, a)| {
        let by_name = &by_name;
        async move {
            let name = a["name"].as_str().unwrap();
            let rec = by_name
                .get(name)
                .filter(|r| r.tag == t)
                .unwrap_or_else(|| panic!("{ctx}: release {t} lists an unknown asset {a}"));
            assert_eq!(a["sha256"], rec.sha256.as_str(), "{ctx}: asset row {a}");
            assert_eq!(a["size"], rec.size, "{ctx}: asset row {a}");
            let (st, _, body) = api
                .fetch(&format!(
                    "/api/v1/forge/acme/app/releases/{t}/assets/{}",
                    a["id"]
                ))
                .await;
            assert_eq!(st, StatusCode::OK, "{ctx}: asset {t}/{name} unreadable");
            assert_eq!(body.len() as u64, rec.size, "{ctx}: asset {t}/{name} size");
            assert_eq!(
                sha(&body)[7..],
                rec.sha256,
                "{ctx}: asset {t}/{name} content"
            );
            name.to_owned()
        }
    })
    .await
    .into_iter()
    .collect();
    drop(by_name);
    // So every acknowledged asset must have been listed; in-flight ones that were not listed
    // never happened.
    for a in &m.assets {
        assert!(
            a.ack == Ack::InFlight || seen.contains(&a.name),
            "{ctx}: acknowledged asset {}/{} is gone",
            a.tag,
            a.name
        );
    }
    m.assets.retain(|a| seen.contains(&a.name));
    for a in &mut m.assets {
        a.ack = Ack::Yes;
    }

    // Manifests by digest and by tag, byte-exact, and every blob they reference.
    let checked = each(std::mem::take(&mut m.manifests), |r| async move {
        let (st, h, body) = api
            .fetch(&format!("/v2/{}/manifests/{}", r.name, r.digest))
            .await;
        if r.ack == Ack::InFlight && st == StatusCode::NOT_FOUND {
            if !r.tag.is_empty() {
                let (st, _, _) = api
                    .fetch(&format!("/v2/{}/manifests/{}", r.name, r.tag))
                    .await;
                assert_eq!(st, StatusCode::NOT_FOUND, "{ctx}: tag without manifest");
            }
            return None;
        }
        assert_eq!(
            st,
            StatusCode::OK,
            "{ctx}: acknowledged manifest {}@{}",
            r.name,
            r.digest
        );
        assert_eq!(body.as_ref(), r.bytes.as_slice(), "{ctx}: manifest bytes");
        assert_eq!(h["docker-content-digest"], r.digest.as_str());
        if !r.tag.is_empty() {
            let (st, h, _) = api
                .fetch(&format!("/v2/{}/manifests/{}", r.name, r.tag))
                .await;
            assert_eq!(st, StatusCode::OK, "{ctx}: tag {}:{}", r.name, r.tag);
            assert_eq!(h["docker-content-digest"], r.digest.as_str());
        }
        for b in &r.blobs {
            api.blob_ok(&r.name, b, ctx).await;
        }
        Some(ManRec { ack: Ack::Yes, ..r })
    })
    .await;
    m.manifests = checked.into_iter().flatten().collect();
    *model.lock().unwrap() = m;
}

#[test]
fn kill_9_under_a_mixed_workload_loses_no_acknowledged_write_and_shows_no_half_write() {
    assert!(require_tool("git"));
    const KILLS: u32 = 30;
    const CLIENTS: u64 = 3;
    let seed = seed();
    let _guard = SeedOnPanic(seed);
    eprintln!("crash test seed {seed} (replay with PFAI_CRASH_SEED={seed})");
    let mut rng = Rng::new(seed);
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let model: Shared = Arc::default();
    let mut server = start(dir.path());
    let token = admin_token(dir.path());
    rt.block_on(create_acme_app(
        &reqwest::Client::new(),
        &server.url,
        &token,
    ));
    push_main(dir.path(), &server.url, &token);
    let mut fsck_checked = 0;
    for kill in 1..=KILLS {
        let api = Api::new(&server.url, &token);
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let rng = Rng::new(rng.next());
                rt.spawn(client(
                    api.clone(),
                    model.clone(),
                    rng,
                    format!("{kill}-{c}"),
                ))
            })
            .collect();
        let gap = 100 + rng.below(1400);
        std::thread::sleep(Duration::from_millis(gap));
        signal(&server.child, "KILL");
        server.child.wait().unwrap();
        rt.block_on(async {
            for c in clients {
                c.await.unwrap();
            }
        });

        let t = Instant::now();
        server = start(dir.path());
        let started = t.elapsed();
        let ctx = format!("seed {seed}, after kill {kill} ({gap} ms)");
        let api = Api::new(&server.url, &token);
        rt.block_on(check_after_restart(&api, &model, &ctx));
        let checked = t.elapsed();
        let report = fsck_clean(&server.url, &token, &ctx);
        fsck_checked = report["checked"].as_u64().unwrap();
        eprintln!(
            "kill {kill} after {gap} ms: restart {} ms, checks {} ms, fsck {} ms",
            started.as_millis(),
            (checked - started).as_millis(),
            (t.elapsed() - checked).as_millis()
        );
    }
    let m = model.lock().unwrap();
    let deleted = m
        .releases
        .values()
        .filter(|r| r.tag == TagState::Deleted)
        .count();
    eprintln!(
        "{KILLS} kills in {:.1} s: {} acknowledged writes; now {} releases ({deleted} tags deleted), {} assets, {} manifests, {} blobs checked by fsck, {} GC runs",
        t0.elapsed().as_secs_f64(),
        m.acks,
        m.releases.len(),
        m.assets.len(),
        m.manifests.len(),
        fsck_checked,
        m.gc_runs,
    );
    // The workload really ran: something of every kind survived the kills.
    assert!(m.releases.len() > 10 && m.assets.len() > 10 && m.manifests.len() > 10);
    assert!(deleted > 0 && m.gc_runs > 0);
    drop(m);
    signal(&server.child, "TERM");
    assert!(server.child.wait().unwrap().success());
}

// ---------------------------------------------------------------------------------------------
// GC soak: GC with grace 0 in a loop while pushers race it

/// A manifest one pusher owns.
struct Owned {
    name: &'static str,
    digest: String,
    bytes: Vec<u8>,
    /// Blobs (images) or child manifests (indexes).
    refs: Vec<String>,
    index: bool,
    deleted: bool,
}

const SOAK_NAMES: [&str; 3] = ["acme/app", "acme/b", "acme/app/sub"];

/// Layers shared by every pusher, so pushes, re-pushes and deletes of images that share them
/// race each other and GC.
fn shared_layer(i: u64) -> Vec<u8> {
    layer_bytes(1000 + i, 512 + (i as usize * 7919) % (96 << 10))
}

/// Pushes one blob into `name` in one of three ways: monolithic, chunked, or mounted from
/// another repository (which falls back to an upload when the blob is not there any more).
async fn soak_blob(api: &Api, rng: &mut Rng, name: &str, data: &[u8]) -> StatusCode {
    let d = sha(data);
    let r = match rng.below(3) {
        0 => api.blob_monolithic(name, data).await.unwrap(),
        1 => {
            let cut = rng.below(data.len() as u64 + 1) as usize;
            api.blob_chunked(name, data, &[cut]).await.unwrap()
        }
        _ => {
            let from = SOAK_NAMES[rng.below(3) as usize];
            let r = api
                .req(
                    reqwest::Method::POST,
                    &format!("/v2/{name}/blobs/uploads/?mount={d}&from={from}"),
                )
                .send()
                .await
                .unwrap();
            if r.status() != StatusCode::ACCEPTED {
                return r.status();
            }
            // Not mountable (never there, or collected): finish the session it started.
            let loc = r.headers()["location"].to_str().unwrap().to_owned();
            api.req(reqwest::Method::PUT, &format!("{loc}?digest={d}"))
                .body(data.to_vec())
                .send()
                .await
                .unwrap()
        }
    };
    r.status()
}

#[derive(Default, Debug)]
struct SoakStats {
    images: u64,
    indexes: u64,
    deletes: u64,
    blob_unknown_retries: u64,
}

/// Pushes images (config + shared and own layers), indexes of its own images, deletes some of
/// them, and pulls every manifest it was acknowledged right away.
async fn pusher(api: Api, mut rng: Rng, p: u64, until: Instant) -> (Vec<Owned>, SoakStats) {
    let mut owned: Vec<Owned> = Vec::new();
    let mut stats = SoakStats::default();
    let mut i = 0u64;
    while Instant::now() < until {
        i += 1;
        let op = rng.below(100);
        let name = SOAK_NAMES[rng.below(3) as usize];
        if op < 60 {
            let config =
                serde_json::to_vec(&json!({"architecture":"amd64","os":"linux","p":p,"i":i}))
                    .unwrap();
            let mut layers: Vec<Vec<u8>> = (0..1 + rng.below(3))
                .map(|_| shared_layer(rng.below(6)))
                .collect();
            if rng.below(2) == 0 {
                let n = rng.below(64 << 10) as usize;
                layers.push(rng.bytes(n));
            }
            layers.dedup();
            let mut blobs = vec![(sha(&config), config.len())];
            blobs.extend(layers.iter().map(|l| (sha(l), l.len())));
            let bytes = image_manifest(&blobs);
            // Push every blob, then the manifest; when GC (grace 0) collected some in between,
            // push again those the refusal names.
            let all: Vec<&Vec<u8>> = std::iter::once(&config).chain(layers.iter()).collect();
            let mut todo: Vec<String> = blobs.iter().map(|b| b.0.clone()).collect();
            let mut attempts = 0;
            loop {
                attempts += 1;
                assert!(attempts <= 50, "GC starved pusher {p} for 50 attempts");
                for b in all.iter().filter(|b| todo.contains(&sha(b))) {
                    let st = soak_blob(&api, &mut rng, name, b).await;
                    assert!(st == StatusCode::CREATED, "blob push: {st}");
                    // Sometimes the same bytes again at once (deduplicated by the store).
                    if rng.below(5) == 0 {
                        let st = soak_blob(&api, &mut rng, name, b).await;
                        assert!(st == StatusCode::CREATED, "blob re-push: {st}");
                    }
                }
                let r = api
                    .put_manifest(name, &format!("p{p}-{i}"), OCI_MANIFEST, &bytes)
                    .await
                    .unwrap();
                let st = r.status();
                let v: Value = r.json().await.unwrap_or(Value::Null);
                if st == StatusCode::CREATED {
                    break;
                }
                assert_eq!(st, StatusCode::BAD_REQUEST, "manifest push: {v}");
                todo = v["errors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| {
                        assert_eq!(e["code"], "MANIFEST_BLOB_UNKNOWN", "{v}");
                        e["detail"]["digest"].as_str().unwrap().to_owned()
                    })
                    .collect();
                stats.blob_unknown_retries += 1;
            }
            let digest = sha(&bytes);
            // Acknowledged: pullable now, while GC keeps running.
            let ctx = format!("pusher {p}, right after pushing {name}@{digest}");
            let (st, _, body) = api.fetch(&format!("/v2/{name}/manifests/{digest}")).await;
            assert_eq!((st, body.as_ref()), (StatusCode::OK, bytes.as_slice()));
            for (b, _) in &blobs {
                api.blob_ok(name, b, &ctx).await;
            }
            stats.images += 1;
            owned.push(Owned {
                name,
                digest,
                bytes,
                refs: blobs.into_iter().map(|b| b.0).collect(),
                index: false,
                deleted: false,
            });
        } else if op < 75 {
            // An index over one or two of its live images in that repository.
            let kids: Vec<(String, usize)> = owned
                .iter()
                .filter(|o| o.name == name && !o.index && !o.deleted)
                .take(1 + rng.below(2) as usize)
                .map(|o| (o.digest.clone(), o.bytes.len()))
                .collect();
            if kids.is_empty() {
                continue;
            }
            let bytes = index_manifest(&kids, &format!("p{p}-{i}"));
            let r = api
                .put_manifest(name, &format!("p{p}-{i}-index"), OCI_INDEX, &bytes)
                .await
                .unwrap();
            let (st, c) = oci_code(r).await;
            assert_eq!(st, StatusCode::CREATED, "index push: {c}");
            stats.indexes += 1;
            owned.push(Owned {
                name,
                digest: sha(&bytes),
                bytes,
                refs: kids.into_iter().map(|k| k.0).collect(),
                index: true,
                deleted: false,
            });
        } else {
            // Delete one of its live manifests; images listed by a live index are refused.
            let live: Vec<usize> = (0..owned.len()).filter(|&k| !owned[k].deleted).collect();
            if live.is_empty() {
                continue;
            }
            let k = live[rng.below(live.len() as u64) as usize];
            let listed = owned
                .iter()
                .any(|o| o.index && !o.deleted && o.refs.contains(&owned[k].digest));
            let o = &mut owned[k];
            let r = api
                .req(
                    reqwest::Method::DELETE,
                    &format!("/v2/{}/manifests/{}", o.name, o.digest),
                )
                .send()
                .await
                .unwrap();
            if listed {
                assert_eq!(r.status(), StatusCode::CONFLICT, "a listed child");
                continue;
            }
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            o.deleted = true;
            stats.deletes += 1;
        }
    }
    (owned, stats)
}

#[test]
fn gc_with_zero_grace_racing_pushes_mounts_and_deletes_loses_no_blob_of_a_live_manifest() {
    const PUSHERS: u64 = 4;
    const SOAK: Duration = Duration::from_secs(20);
    assert!(require_tool("git"));
    let seed = seed();
    let _guard = SeedOnPanic(seed);
    eprintln!("GC soak seed {seed} (replay with PFAI_CRASH_SEED={seed})");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_with_env(dir.path(), &[("PFAI_GC_GRACE_SECONDS", "0")]);
    let token = admin_token(dir.path());
    let url = server.url.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let api = Api::new(&url, &token);
    let (owned, stats, gc_runs, collected) = rt.block_on(async {
        create_acme_app(&api.http, &url, &token).await;
        let r = api
            .req(reqwest::Method::POST, "/api/v1/forge/repos")
            .json(&json!({"owner": "acme", "name": "b"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let until = Instant::now() + SOAK;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // GC in a loop with the server's grace period (0 here). Random pauses of 0-150 ms
        // leave pushers a chance: with grace 0 a run collects every blob pushed but not yet
        // referenced, so back-to-back runs starve any push slower than one run.
        let gc = {
            let (api, stop, mut rng) = (api.clone(), stop.clone(), Rng::new(rng.next()));
            tokio::spawn(async move {
                let (mut runs, mut collected) = (0u64, 0u64);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (st, v) = api.json_post("/api/v1/admin/gc").await;
                    assert_eq!(st, StatusCode::OK, "{v}");
                    runs += 1;
                    collected += v["blobs"].as_array().unwrap().len() as u64;
                    tokio::time::sleep(Duration::from_millis(rng.below(151))).await;
                }
                (runs, collected)
            })
        };
        let pushers: Vec<_> = (0..PUSHERS)
            .map(|p| tokio::spawn(pusher(api.clone(), Rng::new(rng.next()), p, until)))
            .collect();
        let mut owned = Vec::new();
        let mut stats = SoakStats::default();
        for p in pushers {
            let (o, s) = p.await.unwrap();
            owned.extend(o);
            stats.images += s.images;
            stats.indexes += s.indexes;
            stats.deletes += s.deletes;
            stats.blob_unknown_retries += s.blob_unknown_retries;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (runs, collected) = gc.await.unwrap();
        (owned, stats, runs, collected)
    });
    // One more collection from the CLI, with nothing racing it.
    let out = pfai_cli(&url, &token, &["gc", "--grace-seconds", "0", "--json"]);
    assert!(
        out.status.success(),
        "pfai gc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    rt.block_on(async {
        let ctx = "after the soak";
        for o in &owned {
            let (st, _, body) = api
                .fetch(&format!("/v2/{}/manifests/{}", o.name, o.digest))
                .await;
            if o.deleted {
                assert_eq!(st, StatusCode::NOT_FOUND, "deleted {}@{}", o.name, o.digest);
                continue;
            }
            assert_eq!(st, StatusCode::OK, "live {}@{}", o.name, o.digest);
            assert_eq!(body.as_ref(), o.bytes.as_slice());
            for r in &o.refs {
                if o.index {
                    let (st, _, _) = api.fetch(&format!("/v2/{}/manifests/{r}", o.name)).await;
                    assert_eq!(st, StatusCode::OK, "child {r} of index {}", o.digest);
                } else {
                    api.blob_ok(o.name, r, ctx).await;
                }
            }
        }
    });
    let report = fsck_clean(&url, &token, "after the soak");
    eprintln!(
        "GC soak {} s: {gc_runs} GC runs collected {collected} blobs; {stats:?}; fsck checked {} blobs",
        SOAK.as_secs(),
        report["checked"]
    );
    // Not vacuous: GC ran often and collected blobs while images were being pushed.
    assert!(gc_runs > 20 && collected > 0, "{gc_runs} runs, {collected}");
    assert!(stats.images > 20 && stats.indexes > 0 && stats.deletes > 0);
    signal(&server.child, "TERM");
    assert!(server.child.wait().unwrap().success());
}

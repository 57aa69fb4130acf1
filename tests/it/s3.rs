//! `--storage s3` against a real three-node Garage cluster (replication factor 3, all on
//! 127.0.0.1, ephemeral ports, a temp dir): the registry (skopeo), release assets, chunked
//! uploads across a pfai restart, GC and fsck on the bucket, one Garage node down, and
//! `--s3-redirect`. The `garage` binary comes from `PFAI_GARAGE` or `PATH` (`.ci/run` installs
//! it); without it these tests skip locally and fail under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use pfai::config::Config;
use pfai::storage::s3::S3Settings;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{git_ok, require_tool, Remote, TestServer};
use crate::registry::skopeo_ok;

const BUCKET: &str = "pfai";
const KEY_ID: &str = "GK0123456789abcdef01234567";
const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const RPC_SECRET: &str = "c3ea8cb80333d04e208d136698b1a01ae370d463f0d435ab2177510b3478bf44";

/// The garage binary: `PFAI_GARAGE`, else `garage` on `PATH`; `None` (skip) locally when
/// absent, a failure under `CI=true`.
fn garage_binary() -> Option<PathBuf> {
    let candidate = std::env::var_os("PFAI_GARAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("garage"));
    let ok = Command::new(&candidate)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(candidate);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("garage is required in CI (PFAI_GARAGE or PATH) but was not found");
    }
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Node {
    config: PathBuf,
    child: Option<Child>,
    s3_port: u16,
}

/// A running three-node Garage cluster with a bucket and a key; killed on drop.
pub struct Garage {
    bin: PathBuf,
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl Drop for Garage {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Garage {
    fn cli(&self, node: usize, args: &[&str]) -> String {
        let out = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.nodes[node].config)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "garage {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn cli_ok(&self, node: usize, args: &[&str]) -> bool {
        Command::new(&self.bin)
            .arg("-c")
            .arg(&self.nodes[node].config)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts three nodes, connects them, assigns and applies a layout (replication factor 3),
    /// imports a key and creates the bucket it may read and write; waits until the S3 API
    /// takes writes. Blocking: call it on the blocking pool.
    fn start(bin: PathBuf) -> Garage {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let root = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&root).unwrap();
            let (rpc, s3, admin) = (free_port(), free_port(), free_port());
            let config = root.join("garage.toml");
            std::fs::write(
                &config,
                format!(
                    r#"metadata_dir = "{root}/meta"
data_dir = "{root}/data"
db_engine = "lmdb"
replication_factor = 3
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{RPC_SECRET}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
"#,
                    root = root.display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(root.join("garage.log")).unwrap();
            let child = Command::new(&bin)
                .arg("-c")
                .arg(&config)
                .arg("server")
                .env("RUST_LOG", "warn")
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            nodes.push(Node {
                config,
                child: Some(child),
                s3_port: s3,
            });
        }
        let g = Garage {
            bin,
            nodes,
            _dir: dir,
        };
        for i in 0..3 {
            wait_until(Duration::from_secs(60), || g.cli_ok(i, &["status"]));
        }
        let ids: Vec<String> = (0..3).map(|i| g.cli(i, &["node", "id", "-q"])).collect();
        for id in &ids[1..] {
            g.cli(0, &["node", "connect", id]);
        }
        for id in &ids {
            let hex = id.split('@').next().unwrap();
            g.cli(0, &["layout", "assign", "-z", "dc1", "-c", "1G", hex]);
        }
        g.cli(0, &["layout", "apply", "--version", "1"]);
        g.cli(0, &["key", "import", "--yes", "-n", "pfai", KEY_ID, SECRET]);
        g.cli(0, &["bucket", "create", BUCKET]);
        g.cli(
            0,
            &[
                "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", KEY_ID,
            ],
        );
        g
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.nodes[0].s3_port)
    }

    /// pfai's settings for this cluster, objects under `prefix`.
    fn settings(&self, prefix: &str) -> S3Settings {
        S3Settings {
            endpoint: self.endpoint(),
            bucket: BUCKET.into(),
            region: "garage".into(),
            prefix: prefix.into(),
            path_style: true,
            credentials_file: None,
            access_key_id: KEY_ID.into(),
            secret_access_key: SECRET.into(),
            cache_bytes: 64 << 20,
            redirect: false,
            previous: false,
        }
    }

    /// A direct client of the bucket (the tests' view of what is stored).
    fn client(&self) -> AmazonS3 {
        AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_bucket_name(BUCKET)
            .with_region("garage")
            .with_access_key_id(KEY_ID)
            .with_secret_access_key(SECRET)
            .with_virtual_hosted_style_request(false)
            .build()
            .unwrap()
    }

    /// Kills node `i` (not the endpoint node 0).
    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out after {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A cluster ready for writes, or `None` when garage is not installed (local runs only).
async fn cluster() -> Option<Garage> {
    let bin = garage_binary()?;
    let g = tokio::task::spawn_blocking(move || Garage::start(bin))
        .await
        .unwrap();
    // The layout reaches every node shortly after `apply`: wait for a write to succeed.
    let c = g.client();
    let probe = ObjPath::from("probe");
    let start = std::time::Instant::now();
    loop {
        match c.put(&probe, PutPayload::from_static(b"x")).await {
            Ok(_) => break,
            Err(e) if start.elapsed() < Duration::from_secs(60) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("garage never took a write: {e}"),
        }
    }
    c.delete(&probe).await.unwrap();
    Some(g)
}

/// Every object key under `prefix` in the bucket.
async fn keys(c: &AmazonS3, prefix: &str) -> Vec<String> {
    let p = ObjPath::from(prefix);
    let mut out: Vec<String> = c
        .list(Some(&p))
        .map(|m| m.unwrap().location.to_string())
        .collect()
        .await;
    out.sort();
    out
}

fn blob_key(prefix: &str, digest: &str) -> String {
    let hex = &digest[7..];
    format!("{prefix}/blobs/sha256/{}/{hex}", &hex[..2])
}

fn sha(data: &[u8]) -> String {
    pfai::ids::Digest::sha256_of(data).to_string()
}

fn files_under(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            if e.file_type().unwrap().is_dir() {
                files_under(&e.path())
            } else {
                1
            }
        })
        .sum()
}

fn bytes_under(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            if e.file_type().unwrap().is_dir() {
                bytes_under(&e.path())
            } else {
                e.metadata().unwrap().len()
            }
        })
        .sum()
}

async fn start_on(dir: tempfile::TempDir, s3: &S3Settings) -> TestServer {
    let s3 = s3.clone();
    TestServer::start_in(dir, move |c: &mut Config| {
        c.s3 = Some(s3);
        c.limits.gc_grace_secs = 0;
    })
    .await
}

/// A repository `acme/app` with a pushed `main` and a release `v1`.
async fn repo_with_release(s: &TestServer) {
    s.repo("acme", "app", false).await;
    let wc = s.checkout("acme/app", &s.admin);
    let wc2 = wc.clone();
    tokio::task::spawn_blocking(move || git_ok(&wc2, &["push", "-q", "origin", "main"]))
        .await
        .unwrap();
    let (st, v) = s
        .post(
            "/api/v1/forge/acme/app/releases",
            Some(&s.admin),
            json!({"tagName": "v1", "targetCommit": "main", "name": "v1"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
}

/// Downloads an asset by its `downloadUrl`, on this server (a restarted one has a new port).
async fn download(s: &TestServer, url: &str, range: Option<&str>) -> (StatusCode, Vec<u8>) {
    let path = &url[url.find("/api/").unwrap()..];
    let mut r = s.http.get(format!("{}{path}", s.url)).bearer_auth(&s.admin);
    if let Some(range) = range {
        r = r.header("range", range);
    }
    let r = r.send().await.unwrap();
    let st = r.status();
    (st, r.bytes().await.unwrap().to_vec())
}

/// Bytes that do not compress and are not all alike (a 12 MiB asset is a multipart upload).
fn noise(len: usize, seed: u8) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn images_and_assets_live_in_the_garage_bucket_not_on_local_disk() {
    if !require_tool("skopeo") {
        return;
    }
    let Some(g) = cluster().await else { return };
    let mut settings = g.settings("site");
    // A read cache smaller than the big asset: it is served, and not kept.
    settings.cache_bytes = 4 << 20;
    let s = start_on(tempfile::tempdir().unwrap(), &settings).await;
    repo_with_release(&s).await;

    // An asset of 12 MiB (a multipart upload of two parts) and a small one.
    let big = noise(12 << 20, 1);
    let (st, a) = s
        .upload_asset("acme/app", "v1", "big.bin", big.clone(), &s.admin)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    let (st, small) = s
        .upload_asset("acme/app", "v1", "small.txt", b"hello".to_vec(), &s.admin)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{small}");

    // skopeo pushes the fixture's multi-platform index into pfai on Garage.
    let host = s.url.trim_start_matches("http://").to_owned();
    let creds = format!("x:{}", s.admin);
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/data-fixtures/oci");
    let out = s.dir.path().to_owned();
    let (h, c) = (host.clone(), creds.clone());
    tokio::task::spawn_blocking(move || {
        skopeo_ok(&[
            "copy",
            "--all",
            "--dest-tls-verify=false",
            "--dest-creds",
            &c,
            &format!("oci:{fixtures}/layout-multi:v1"),
            &format!("docker://{h}/acme/app/multi:v1"),
        ]);
    })
    .await
    .unwrap();

    // Nothing of it is on local disk: blobs and assets are objects in the bucket.
    assert_eq!(files_under(&s.data_dir().join("blobs")), 0);
    assert_eq!(files_under(&s.data_dir().join("assets")), 0);
    let c = g.client();
    let objects = keys(&c, "site").await;
    assert!(
        objects
            .iter()
            .any(|k| k.starts_with("site/assets/acme/app/1/") && k.ends_with("-big.bin")),
        "{objects:?}"
    );
    assert!(
        objects
            .iter()
            .filter(|k| k.starts_with("site/blobs/sha256/"))
            .count()
            >= 4,
        "{objects:?}"
    );

    // Restart pfai (its read cache starts empty): everything reads back from the bucket.
    let dir = s.stop().await;
    let s = start_on(dir, &settings).await;
    let (st, got) = download(&s, a["downloadUrl"].as_str().unwrap(), None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(got == big, "the 12 MiB asset came back different");
    let (st, part) = download(
        &s,
        a["downloadUrl"].as_str().unwrap(),
        Some("bytes=1000-1999"),
    )
    .await;
    assert_eq!(st, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part, big[1000..2000]);
    let (_, got) = download(&s, small["downloadUrl"].as_str().unwrap(), None).await;
    assert_eq!(got, b"hello");
    let cached = bytes_under(&s.data_dir().join("s3-cache"));
    assert!(
        (5..=4 << 20).contains(&cached),
        "the read cache holds {cached} bytes"
    );
    let host = s.url.trim_start_matches("http://").to_owned();
    tokio::task::spawn_blocking(move || {
        let back = format!("oci:{}:v1", out.join("back").display());
        skopeo_ok(&[
            "copy",
            "--all",
            "--src-tls-verify=false",
            &format!("docker://{host}/acme/app/multi:v1"),
            &back,
        ]);
        let fixture: Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{fixtures}/layout-multi/index.json")).unwrap(),
        )
        .unwrap();
        let back: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("back/index.json")).unwrap())
                .unwrap();
        assert_eq!(
            back["manifests"][0]["digest"],
            fixture["manifests"][0]["digest"]
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chunked_upload_resumes_across_a_pfai_restart_and_lands_in_the_bucket() {
    let Some(g) = cluster().await else { return };
    let settings = g.settings("chunked");
    let s = start_on(tempfile::tempdir().unwrap(), &settings).await;
    s.repo("acme", "app", false).await;
    let data = noise(10 << 20, 2);
    let d = sha(&data);
    let r = s
        .req(Method::POST, "/v2/acme/app/blobs/uploads/", Some(&s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let r = s
        .req(Method::PATCH, &loc, Some(&s.admin))
        .header("content-type", "application/octet-stream")
        .body(data[..4 << 20].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    let dir = s.stop().await;
    let s = start_on(dir, &settings).await;
    let r = s
        .req(Method::GET, &loc, Some(&s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["range"], format!("0-{}", (4 << 20) - 1));
    let r = s
        .req(Method::PUT, &format!("{loc}?digest={d}"), Some(&s.admin))
        .header("content-type", "application/octet-stream")
        .body(data[4 << 20..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let c = g.client();
    let meta = c
        .head(&ObjPath::from(blob_key("chunked", &d)))
        .await
        .unwrap();
    assert_eq!(meta.size, data.len() as u64);
    let got = s
        .req(
            Method::GET,
            &format!("/v2/acme/app/blobs/{d}"),
            Some(&s.admin),
        )
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(got.as_ref() == data.as_slice());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_deletes_from_the_bucket_and_fsck_finds_tampered_missing_and_orphan_objects() {
    let Some(g) = cluster().await else { return };
    let settings = g.settings("gcfsck");
    let s = start_on(tempfile::tempdir().unwrap(), &settings).await;
    s.repo("acme", "app", false).await;
    let remote = Remote {
        url: s.url.clone(),
        token: s.admin.clone(),
    };
    let c = g.client();

    // GC: an image deleted, its unshared layer leaves the bucket; the shared config stays.
    let (_, gone) = remote.push_image("acme/app", "old", b"old layer").await;
    remote.push_image("acme/app", "keep", b"kept layer").await;
    let old_layer = blob_key("gcfsck", &sha(b"old layer"));
    assert!(c.head(&ObjPath::from(old_layer.clone())).await.is_ok());
    let r = s
        .req(
            Method::DELETE,
            &format!("/v2/acme/app/manifests/{gone}"),
            Some(&s.admin),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let (st, v) = s
        .call(Method::POST, "/api/v1/admin/gc", Some(&s.admin), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(
        v["blobs"]
            .as_array()
            .unwrap()
            .contains(&json!(sha(b"old layer"))),
        "{v}"
    );
    assert!(matches!(
        c.head(&ObjPath::from(old_layer)).await,
        Err(object_store::Error::NotFound { .. })
    ));
    assert!(c
        .head(&ObjPath::from(blob_key("gcfsck", &sha(b"kept layer"))))
        .await
        .is_ok());

    // fsck re-hashes the bucket's bytes (past pfai's read cache, which still holds the good
    // copy): a flipped object is corrupt, a deleted one missing.
    remote.push_image("acme/app", "other", b"other layer").await;
    let kept = sha(b"kept layer");
    let other = sha(b"other layer");
    c.put(
        &ObjPath::from(blob_key("gcfsck", &kept)),
        PutPayload::from_static(b"kept layeR"),
    )
    .await
    .unwrap();
    c.delete(&ObjPath::from(blob_key("gcfsck", &other)))
        .await
        .unwrap();
    let (st, v) = s
        .call(Method::POST, "/api/v1/admin/fsck", Some(&s.admin), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["corrupt"], json!([kept]), "{v}");
    assert_eq!(v["missing"], json!([other]), "{v}");

    // An object no row owns (a blob uploaded by a crashed publish) is an orphan fsck finds in
    // the bucket, and `--repair` deletes from the bucket.
    let stray = sha(b"stray bytes");
    c.put(
        &ObjPath::from(blob_key("gcfsck", &stray)),
        PutPayload::from_static(b"stray bytes"),
    )
    .await
    .unwrap();
    let (_, v) = s
        .call(
            Method::POST,
            "/api/v1/admin/fsck?repair=true",
            Some(&s.admin),
            None,
        )
        .await;
    let orphan = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "orphan_blob_file")
        .cloned()
        .unwrap_or_else(|| panic!("no orphan finding: {v}"));
    assert!(
        orphan["path"].as_str().unwrap().ends_with(&stray[7..]),
        "{orphan}"
    );
    assert!(matches!(
        c.head(&ObjPath::from(blob_key("gcfsck", &stray))).await,
        Err(object_store::Error::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_and_writes_go_on_with_one_garage_node_down() {
    let Some(mut g) = cluster().await else { return };
    let settings = g.settings("degraded");
    let s = start_on(tempfile::tempdir().unwrap(), &settings).await;
    repo_with_release(&s).await;
    let remote = Remote {
        url: s.url.clone(),
        token: s.admin.clone(),
    };
    let (m1, d1) = remote
        .push_image("acme/app", "before", b"layer before")
        .await;
    let before = noise(9 << 20, 3);
    let (st, a1) = s
        .upload_asset("acme/app", "v1", "before.bin", before.clone(), &s.admin)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{a1}");

    // One of three nodes goes away (not the one pfai talks to); restart pfai so that its
    // read cache is empty and every read below comes from the cluster.
    tokio::task::block_in_place(|| g.kill(2));
    let dir = s.stop().await;
    let s = start_on(dir, &settings).await;
    let remote = Remote {
        url: s.url.clone(),
        token: s.admin.clone(),
    };
    assert_eq!(remote.pull("acme/app", &d1).await, m1);
    let got = s
        .req(
            Method::GET,
            &format!("/v2/acme/app/blobs/{}", sha(b"layer before")),
            Some(&s.admin),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"layer before");
    let (st, got) = download(&s, a1["downloadUrl"].as_str().unwrap(), None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(got == before);

    // Writes: a new image and a new (multipart) asset, then read back.
    let (m2, d2) = remote.push_image("acme/app", "after", b"layer after").await;
    assert_eq!(remote.pull("acme/app", &d2).await, m2);
    let after = noise(9 << 20, 4);
    let (st, a2) = s
        .upload_asset("acme/app", "v1", "after.bin", after.clone(), &s.admin)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{a2}");
    let dir = s.stop().await;
    let s = start_on(dir, &settings).await;
    let (st, got) = download(&s, a2["downloadUrl"].as_str().unwrap(), None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(got == after);
    let got = s
        .req(
            Method::GET,
            &format!("/v2/acme/app/blobs/{}", sha(b"layer after")),
            Some(&s.admin),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"layer after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_redirect_answers_307_with_a_presigned_url_that_serves_the_bytes() {
    let Some(g) = cluster().await else { return };
    let mut settings = g.settings("redirect");
    settings.redirect = true;
    let s = start_on(tempfile::tempdir().unwrap(), &settings).await;
    repo_with_release(&s).await;
    s.repo("acme", "secret", true).await;
    let remote = Remote {
        url: s.url.clone(),
        token: s.admin.clone(),
    };
    remote
        .push_image("acme/app", "v1", b"redirected layer")
        .await;
    let (st, a) = s
        .upload_asset(
            "acme/app",
            "v1",
            "tool.bin",
            b"asset bytes".to_vec(),
            &s.admin,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let plain = reqwest::Client::new();

    // A blob GET: 307 to the bucket; the URL alone (no pfai credentials) gives the bytes.
    let d = sha(b"redirected layer");
    let r = no_follow
        .get(format!("{}/v2/acme/app/blobs/{d}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    let url = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(url.starts_with(&g.endpoint()), "{url}");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let got = plain.get(&url).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"redirected layer");
    // HEAD is answered by pfai itself (a presigned GET URL does not sign a HEAD).
    let r = no_follow
        .head(format!("{}/v2/acme/app/blobs/{d}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], "16");
    // The checks come first: an unknown blob is 404, not a URL.
    let r = no_follow
        .get(format!("{}/v2/acme/app/blobs/{}", s.url, sha(b"nope")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // An asset GET too, counted as a download.
    let r = no_follow
        .get(a["downloadUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    let url = r.headers()["location"].to_str().unwrap().to_owned();
    let got = plain.get(&url).send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"asset bytes");
    let (_, v) = s
        .req(
            Method::GET,
            &format!("/api/v1/forge/acme/app/releases/v1/assets/{}", a["id"]),
            Some(&s.admin),
        )
        .header("accept", "application/json")
        .send()
        .await
        .map(|r| (r.status(), r))
        .unwrap();
    let v: Value = v.json().await.unwrap();
    assert_eq!(v["downloadCount"], 1, "{v}");
    // A private repository's blob is not redirected for an anonymous caller.
    remote
        .push_image("acme/secret", "v1", b"secret layer")
        .await;
    let r = no_follow
        .get(format!(
            "{}/v2/acme/secret/blobs/{}",
            s.url,
            sha(b"secret layer")
        ))
        .send()
        .await
        .unwrap();
    assert!(
        r.status() == StatusCode::UNAUTHORIZED || r.status() == StatusCode::NOT_FOUND,
        "{}",
        r.status()
    );
    // Following the redirect is what clients do: reqwest, and skopeo pulling the image.
    let got = plain
        .get(format!("{}/v2/acme/app/blobs/{d}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"redirected layer");
    if require_tool("skopeo") {
        let host = s.url.trim_start_matches("http://").to_owned();
        let out = s.dir.path().join("pulled");
        let out2 = out.clone();
        tokio::task::spawn_blocking(move || {
            skopeo_ok(&[
                "copy",
                "--src-tls-verify=false",
                &format!("docker://{host}/acme/app:v1"),
                &format!("dir:{}", out2.display()),
            ]);
        })
        .await
        .unwrap();
        assert_eq!(
            std::fs::read(out.join(&d[7..])).unwrap(),
            b"redirected layer"
        );
    }
}

/// The migrated site still serves the pushed layer and the asset byte for byte, and fsck finds
/// nothing wrong (wherever the objects are now).
async fn site_serves_the_layer_and_the_asset_and_fsck_is_clean(
    s: &TestServer,
    a: &Value,
    data: &[u8],
) {
    let got = s
        .req(
            Method::GET,
            &format!("/v2/acme/app/blobs/{}", sha(b"local layer")),
            Some(&s.admin),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"local layer");
    let (_, got) = download(s, a["downloadUrl"].as_str().unwrap(), None).await;
    assert!(got == data);
    let (st, v) = s
        .call(Method::POST, "/api/v1/admin/fsck", Some(&s.admin), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["problems"], 0, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_migrate_moves_a_local_site_into_the_bucket_and_back_while_it_serves() {
    let Some(g) = cluster().await else { return };
    let settings = g.settings("moved");
    // A site on local disk: an image and a (multipart-sized) asset.
    let s = TestServer::start().await;
    repo_with_release(&s).await;
    let remote = Remote {
        url: s.url.clone(),
        token: s.admin.clone(),
    };
    let (m, d) = remote.push_image("acme/app", "v1", b"local layer").await;
    let data = noise(9 << 20, 5);
    let (st, a) = s
        .upload_asset("acme/app", "v1", "local.bin", data.clone(), &s.admin)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    // Migrating a server that still stores locally is refused with what to do.
    let cli = crate::harness::Cli::new(&s);
    let (_, err) = tokio::task::block_in_place(|| {
        cli.fails(
            s.dir.path(),
            Some(&s.admin),
            &["storage", "migrate", "--to", "s3"],
        )
    });
    assert!(err.contains("--storage s3"), "{err}");

    // The switch is a restart on the bucket: local objects are read through meanwhile.
    let dir = s.stop().await;
    let s = start_on(dir, &settings).await;
    let remote = Remote {
        url: s.url.clone(),
        token: s.admin.clone(),
    };
    assert_eq!(remote.pull("acme/app", &d).await, m);
    let (st, got) = download(&s, a["downloadUrl"].as_str().unwrap(), None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(got == data);

    // `pfai storage migrate --to s3` with the server running moves, verifies, removes.
    let cli = crate::harness::Cli::new(&s);
    let out = tokio::task::block_in_place(|| {
        cli.ok(
            s.dir.path(),
            &["storage", "migrate", "--to", "s3", "--json"],
        )
    });
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["blobs"], 2, "{v}");
    assert_eq!(v["assets"], 1, "{v}");
    assert_eq!(v["assetBytes"], data.len(), "{v}");
    assert_eq!(files_under(&s.data_dir().join("blobs")), 0);
    assert_eq!(files_under(&s.data_dir().join("assets")), 0);
    let c = g.client();
    assert!(c
        .head(&ObjPath::from(blob_key("moved", &sha(b"local layer"))))
        .await
        .is_ok());
    // Everything still reads (from the bucket now), fsck is clean, a second run moves nothing.
    let dir = s.stop().await;
    let s = start_on(dir, &settings).await;
    site_serves_the_layer_and_the_asset_and_fsck_is_clean(&s, &a, &data).await;
    let cli = crate::harness::Cli::new(&s);
    let out =
        tokio::task::block_in_place(|| cli.ok(s.dir.path(), &["storage", "migrate", "--to", "s3"]));
    assert!(
        out.contains("0 blob(s), 0 bytes; 0 asset(s), 0 bytes"),
        "{out}"
    );

    // And back: `--storage local` with the bucket still configured reads it through, and
    // `migrate --to local` moves every object back to local files.
    let mut back = settings.clone();
    back.previous = true;
    let dir = s.stop().await;
    let s = start_on(dir, &back).await;
    let (_, got) = download(&s, a["downloadUrl"].as_str().unwrap(), None).await;
    assert!(got == data);
    let cli = crate::harness::Cli::new(&s);
    let out = tokio::task::block_in_place(|| {
        cli.ok(
            s.dir.path(),
            &["storage", "migrate", "--to", "local", "--json"],
        )
    });
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["blobs"].as_u64(), v["assets"].as_u64()),
        (Some(2), Some(1)),
        "{v}"
    );
    assert_eq!(keys(&c, "moved").await, Vec::<String>::new());
    assert_eq!(files_under(&s.data_dir().join("blobs")), 2);
    assert_eq!(files_under(&s.data_dir().join("assets")), 1);
    // A plain local server (no bucket at all) serves it all.
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, |_| {}).await;
    site_serves_the_layer_and_the_asset_and_fsck_is_clean(&s, &a, &data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_online_backup_of_a_site_on_garage_holds_the_bucket_objects_and_restores() {
    let Some(g) = cluster().await else { return };
    let settings = g.settings("backedup");
    let s = start_on(tempfile::tempdir().unwrap(), &settings).await;
    repo_with_release(&s).await;
    let remote = Remote {
        url: s.url.clone(),
        token: s.admin.clone(),
    };
    remote
        .push_image("acme/app", "v1", b"backed-up layer")
        .await;
    let data = noise(9 << 20, 6);
    let (st, a) = s
        .upload_asset("acme/app", "v1", "kept.bin", data.clone(), &s.admin)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    let backup = s.dir.path().join("backup");
    let cli = crate::harness::Cli::new(&s);
    tokio::task::block_in_place(|| {
        cli.ok(
            s.dir.path(),
            &["backup", "--to", backup.to_str().unwrap(), "--json"],
        )
    });
    let layer = sha(b"backed-up layer");
    let file = backup.join(format!("blobs/sha256/{}/{}", &layer[7..9], &layer[7..]));
    assert_eq!(std::fs::read(file).unwrap(), b"backed-up layer");
    // Restored into a plain local data directory, everything serves.
    let restored = tempfile::tempdir().unwrap();
    let data_dir = restored.path().join("data");
    tokio::task::block_in_place(|| {
        cli.ok(
            s.dir.path(),
            &[
                "restore",
                "--from",
                backup.to_str().unwrap(),
                "--data-dir",
                data_dir.to_str().unwrap(),
            ],
        )
    });
    // (The harness reads the admin token from this file; tokens are in the snapshot.)
    std::fs::write(data_dir.join("initial-admin-token"), &s.admin).unwrap();
    let r = TestServer::start_in(restored, |_| {}).await;
    let got = r
        .req(
            Method::GET,
            &format!("/v2/acme/app/blobs/{layer}"),
            Some(&s.admin),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"backed-up layer");
    let path = a["downloadUrl"].as_str().unwrap();
    let path = &path[path.find("/api/").unwrap()..];
    let got = r
        .req(Method::GET, path, Some(&s.admin))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(got.as_ref() == data.as_slice());
}

/// Bundles and quotas go through the byte-store interface like everything else: a site on
/// Garage exports what its bucket holds, a second site on Garage imports it into its own
/// prefix, and a quota on that site counts and refuses the same as on local disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bundle_moves_a_site_on_garage_to_another_and_quotas_hold_there() {
    let Some(g) = cluster().await else { return };
    let a = start_on(tempfile::tempdir().unwrap(), &g.settings("bundle-a")).await;
    repo_with_release(&a).await;
    let big = noise(9 << 20, 7);
    let (st, v) = a
        .upload_asset("acme/app", "v1", "big.bin", big.clone(), &a.admin)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let remote = Remote {
        url: a.url.clone(),
        token: a.admin.clone(),
    };
    let (_, digest) = remote
        .push_image("acme/app/img", "v1", &noise(3 << 20, 8))
        .await;
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("site.tar");
    crate::harness::Cli::new(&a).ok(
        work.path(),
        &[
            "bundle",
            "export",
            "--repo",
            "acme/app",
            "-o",
            file.to_str().unwrap(),
        ],
    );

    let b = start_on(tempfile::tempdir().unwrap(), &g.settings("bundle-b")).await;
    let (st, v) = b
        .post("/api/v1/orgs", Some(&b.admin), json!({"name": "acme"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let out =
        crate::harness::Cli::new(&b).ok(work.path(), &["bundle", "import", file.to_str().unwrap()]);
    assert!(out.contains("created   release acme/app@v1"), "{out}");
    // The asset and the image's blobs are objects under b's prefix, and read back whole.
    let (st, rel) = b
        .get("/api/v1/forge/acme/app/releases/v1", Some(&b.admin))
        .await;
    assert_eq!(st, StatusCode::OK, "{rel}");
    let url = rel["assets"][0]["downloadUrl"].as_str().unwrap().to_owned();
    assert_eq!(download(&b, &url, None).await, (StatusCode::OK, big));
    let r = b
        .http
        .head(format!("{}/v2/acme/app/img/manifests/v1", b.url))
        .basic_auth("x", Some(&b.admin))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    let in_b = keys(&g.client(), "bundle-b").await;
    assert!(in_b.iter().any(|k| k.contains("/assets/")), "{in_b:?}");
    assert!(in_b.iter().any(|k| k.contains("/blobs/")), "{in_b:?}");

    // A quota on b counts what the import stored and refuses what would pass it.
    let (st, q) = b.get("/api/v1/admin/quotas/acme", Some(&b.admin)).await;
    assert_eq!(st, StatusCode::OK, "{q}");
    let used = q["usedBytes"].as_u64().unwrap();
    assert!(used >= 12 << 20, "{q}");
    let (st, v) = b
        .call(
            Method::PUT,
            "/api/v1/admin/quotas/acme",
            Some(&b.admin),
            Some(json!({"limitBytes": used + (1 << 20)})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = b
        .upload_asset("acme/app", "v1", "more.bin", noise(2 << 20, 9), &b.admin)
        .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    let after = keys(&g.client(), "bundle-b").await;
    assert_eq!(after.len(), in_b.len(), "a refused upload left an object");
}

//! A failed disk write must not leave the server unable to write until a restart: redb latches
//! a failed commit ("previous I/O error"), so the server reopens the database, reports
//! `degraded` health while writes fail, and keeps unflushed download counts.

use std::io::Write;
use std::path::{Path, PathBuf};

use pfai::storage::FaultSwitch;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{git_ok, TestServer};

const BASE: &str = "/api/v1/forge/acme/app/releases";

/// A repository with `main` pushed and a published release `v1`.
async fn with_release(s: &TestServer) {
    s.repo("acme", "app", false).await;
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let (st, v) = s
        .post(
            BASE,
            Some(&s.admin),
            json!({"tagName": "v1", "targetCommit": "main"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
}

async fn upload(s: &TestServer, name: &str, data: Vec<u8>) -> (StatusCode, Value) {
    s.upload_asset("acme/app", "v1", name, data, &s.admin).await
}

async fn health(s: &TestServer) -> (StatusCode, Value) {
    s.get("/api/v1/health", None).await
}

async fn create_org(s: &TestServer, name: &str) -> (StatusCode, Value) {
    s.post("/api/v1/orgs", Some(&s.admin), json!({"name": name}))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_database_commit_does_not_block_writes_until_restart() {
    let faults = FaultSwitch::default();
    let switch = faults.clone();
    let s = TestServer::start_with(move |c| c.db_faults = Some(switch)).await;
    with_release(&s).await;
    let (st, asset) = upload(&s, "app.tar.gz", vec![7u8; 10_000]).await;
    assert_eq!(st, StatusCode::CREATED, "{asset}");
    let asset_url = format!("{}{BASE}/v1/assets/{}", s.url, asset["id"]);
    assert_eq!(health(&s).await.0, StatusCode::OK);

    // The disk fills. A download still works (nothing has written yet) and is counted in
    // memory; the first write then fails with a clear 507 and poisons redb.
    faults.arm();
    let r = s.http.get(&asset_url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().len(), 10_000);
    for name in ["during1", "during2"] {
        let (st, v) = create_org(&s, name).await;
        assert_eq!(st, StatusCode::INSUFFICIENT_STORAGE, "{v}");
        assert_eq!(v["error"]["code"], "insufficient_storage", "{v}");
    }
    let (st, v) = health(&s).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["status"], "degraded", "{v}");
    assert!(v["reason"].as_str().is_some_and(|r| !r.is_empty()), "{v}");
    // A flush that fails keeps the count for the next one.
    assert!(pfai::domain::release::flush_downloads(s.core())
        .await
        .is_err());
    assert_eq!(
        s.core()
            .pending_downloads
            .lock()
            .unwrap()
            .values()
            .sum::<u64>(),
        1,
        "a failed flush dropped the pending download count"
    );

    // Space is freed: writes succeed again without a restart, health recovers.
    // The first requests race the reopen: readers and writers at once all succeed.
    faults.disarm();
    let rel_url = format!("{}{BASE}/v1", s.url);
    let names = ["after", "a1", "a2", "a3", "a4", "a5"];
    let writes = names.iter().map(|n| create_org(&s, n));
    let reads = (0..6).map(|_| s.http.get(&rel_url).send());
    let (writes, reads) = tokio::join!(
        futures_util::future::join_all(writes),
        futures_util::future::join_all(reads)
    );
    for (st, v) in writes {
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    for r in reads {
        assert_eq!(r.unwrap().status(), StatusCode::OK);
    }
    let (st, v) = health(&s).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "ok");
    pfai::domain::release::flush_downloads(s.core())
        .await
        .unwrap();
    let (_, rel) = s.get(&format!("{BASE}/v1"), None).await;
    assert_eq!(rel["assets"][0]["downloadCount"], 1, "{rel}");

    // Nothing refused was half-stored, nothing acknowledged was lost, across a restart.
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, |_| {}).await;
    let (_, rel) = s.get(&format!("{BASE}/v1"), None).await;
    assert_eq!(rel["assets"][0]["downloadCount"], 1, "{rel}");
    assert_eq!(create_org(&s, "after").await.0, StatusCode::CONFLICT);
    for name in ["during1", "during2"] {
        assert_eq!(create_org(&s, name).await.0, StatusCode::CREATED);
    }
    s.stop().await;
}

/// A tmpfs mounted over a directory for the length of a test; unmounted (lazily, so a
/// server that was not stopped cannot keep it busy) and removed on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// `None` when this environment does not allow mounting (not root, no CAP_SYS_ADMIN); in CI,
    /// which runs as root, that is a failure, never a silent skip.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok || std::env::var("CI").as_deref() != Ok("true"),
            "CI must be able to mount a tmpfs (run the tests as root)"
        );
        ok.then(|| Tmpfs {
            dir: dir.to_owned(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A server whose directory is a fresh 8 MiB tmpfs, and the path of a file that can fill it.
async fn on_small_tmpfs() -> Option<(Tmpfs, PathBuf, TestServer)> {
    let dir = tempfile::tempdir().unwrap();
    let Some(mount) = Tmpfs::mount(dir.path(), "8m") else {
        eprintln!("skipped: mounting a tmpfs is not permitted here");
        return None;
    };
    let filler = dir.path().join("filler");
    Some((mount, filler, TestServer::start_in(dir, |_| {}).await))
}

/// Writes to `path` until the filesystem is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0xa5u8; 64 << 10];
    loop {
        match f.write_all(&chunk).and_then(|()| f.sync_data()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_does_not_block_writes_after_space_is_freed() {
    let Some((mount, filler, s)) = on_small_tmpfs().await else {
        return;
    };
    with_release(&s).await;
    fill(&filler);

    // A full disk is reported by health before any write was even tried.
    let (st, v) = health(&s).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(v["reason"].as_str().unwrap().contains("bytes free"), "{v}");
    // Streams into a full disk: 507, as before.
    let (st, v) = upload(&s, "big.bin", vec![1u8; 512 << 10]).await;
    assert_eq!(st, StatusCode::INSUFFICIENT_STORAGE, "{v}");

    // Database writes that need new pages fail cleanly too, and health says so.
    let mut refused = None;
    for i in 0..20u8 {
        let body = format!("{i}").repeat(400_000);
        let (st, v) = s
            .call(
                Method::PATCH,
                &format!("{BASE}/v1"),
                Some(&s.admin),
                Some(json!({ "body": body })),
            )
            .await;
        if !st.is_success() {
            refused = Some((st, v));
            break;
        }
    }
    let (st, v) = refused.expect("a full disk accepted 8 MB of release notes");
    assert_eq!(st, StatusCode::INSUFFICIENT_STORAGE, "{v}");
    let (st, v) = health(&s).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["status"], "degraded", "{v}");
    // Reads keep working on the full disk.
    let (st, v) = s.get(&format!("{BASE}/v1"), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // Space is freed: every kind of write works again without a restart.
    std::fs::remove_file(&filler).unwrap();
    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("{BASE}/v1"),
            Some(&s.admin),
            Some(json!({"body": "after the disk was full"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = upload(&s, "small.bin", vec![2u8; 100 << 10]).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = health(&s).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, rel) = s.get(&format!("{BASE}/v1"), None).await;
    assert_eq!(rel["body"], "after the disk was full");
    assert_eq!(rel["assets"][0]["name"], "small.bin", "{rel}");

    let dir = s.stop().await;
    drop(mount);
    drop(dir);
}

/// fsck's orphan sweep walks the asset directory: an asset directory that is the data
/// directory (or holds it) would put the database, blobs and repositories in its reach.
#[tokio::test]
async fn an_asset_directory_holding_the_data_directory_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for assets in [data.clone(), dir.path().to_owned()] {
        let mut cfg = pfai::config::Config::new(data.clone(), "127.0.0.1:0".parse().unwrap());
        cfg.asset_storage_path = Some(assets.clone());
        let err = match pfai::app::spawn(cfg).await {
            Ok(_) => panic!("started with assets at {}", assets.display()),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("must not be the data directory"), "{err}");
    }
    assert!(!data.join("pfai.redb").exists(), "nothing was opened");
    // A directory beside the data directory is fine.
    let s = TestServer::start_in(dir, |c| {
        c.asset_storage_path = Some(c.data_dir.with_file_name("assets"));
    })
    .await;
    assert_eq!(health(&s).await.0, StatusCode::OK);
    s.stop().await;
}

/// `/healthz` answers while the process runs; `/readyz` turns 503 and names the problem while
/// writes cannot succeed or a shutdown has begun, so a balancer stops sending work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_names_what_keeps_the_server_from_taking_writes() {
    let faults = FaultSwitch::default();
    let switch = faults.clone();
    let s = TestServer::start_with(move |c| c.db_faults = Some(switch)).await;
    assert_eq!(s.get("/healthz", None).await.0, StatusCode::OK);
    let (st, v) = s.get("/readyz", None).await;
    assert_eq!(
        (st, v["status"].as_str()),
        (StatusCode::OK, Some("ready")),
        "{v}"
    );

    faults.arm();
    let (st, _) = create_org(&s, "while-broken").await;
    assert_eq!(st, StatusCode::INSUFFICIENT_STORAGE);
    let (st, v) = s.get("/readyz", None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(
        v["problems"][0].as_str().unwrap().starts_with("database: "),
        "{v}"
    );
    assert_eq!(
        s.get("/healthz", None).await.0,
        StatusCode::OK,
        "the process is up"
    );
    faults.disarm();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while s.get("/readyz", None).await.0 != StatusCode::OK {
        assert!(std::time::Instant::now() < deadline, "never ready again");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    s.core()
        .shutting_down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (st, v) = s.get("/readyz", None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["problems"], json!(["shutting down"]), "{v}");
    // An owner cannot take the probes' names.
    s.core()
        .shutting_down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        create_org(&s, "readyz").await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

/// A chunk is answered once received, while its writer may still be writing it: a write that
/// then fails (the disk filled) must leave the session at what its file holds, not at the
/// offset the `202` named, and the upload must resume from there to a blob that verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chunk_whose_write_fails_after_its_202_resumes_from_what_the_file_holds() {
    let Some((mount, filler, s)) = on_small_tmpfs().await else {
        return;
    };
    s.repo("acme", "app", false).await;
    let data: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let digest = pfai::ids::Digest::sha256_of(&data).to_string();
    let r = s
        .req(Method::POST, "/v2/acme/app/blobs/uploads/", Some(&s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let file = s
        .data_dir()
        .join("uploads")
        .join(loc.rsplit('/').next().unwrap());
    let patch = |from: usize, to: usize| {
        s.req(Method::PATCH, &loc, Some(&s.admin))
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{from}-{}", to - 1))
            .body(data[from..to].to_vec())
            .send()
    };
    let r = patch(0, 1 << 20).await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // The disk fills while (or before) the next chunk is written. Its answer may be a 202
    // (received, the failure comes later) or a 507; either way no byte is promised by GET that
    // the file does not hold. Space can come back between the fill and the chunk (a database
    // commit may shrink its file), so the disk is filled again until a chunk does not fit.
    let chunk = 64 << 10;
    let mut sent = 1 << 20;
    let mut fillers = Vec::new();
    let (st, on_disk) = loop {
        assert!(fillers.len() < 16, "a full disk took every chunk");
        fillers.push(filler.with_extension(fillers.len().to_string()));
        fill(fillers.last().unwrap());
        let r = patch(sent, sent + chunk).await.unwrap();
        let st = r.status();
        assert!(
            st == StatusCode::ACCEPTED || st == StatusCode::INSUFFICIENT_STORAGE,
            "{st}: {}",
            r.text().await.unwrap()
        );
        let r = s
            .req(Method::GET, &loc, Some(&s.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let on_disk = std::fs::metadata(&file).unwrap().len() as usize;
        let range = r.headers()["range"].to_str().unwrap().to_owned();
        assert_eq!(
            range,
            format!("0-{}", on_disk.saturating_sub(1)),
            "GET names what the file holds"
        );
        sent += chunk;
        if on_disk < sent {
            break (st, on_disk);
        }
    };
    for f in &fillers {
        std::fs::remove_file(f).unwrap();
    }

    // A chunk from the offset the 202 named is refused with the real one…
    if st == StatusCode::ACCEPTED {
        let r = patch(sent, 3 << 20).await.unwrap();
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    }
    // …and the upload resumes from the file's length to a blob that verifies.
    let r = s
        .req(
            Method::PUT,
            &format!("{loc}?digest={digest}"),
            Some(&s.admin),
        )
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("{on_disk}-{}", (3 << 20) - 1))
        .body(data[on_disk..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let got = s
        .req(
            Method::GET,
            &format!("/v2/acme/app/blobs/{digest}"),
            Some(&s.admin),
        )
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(got.as_ref() == data.as_slice());
    let dir = s.stop().await;
    drop(mount);
    drop(dir);
}

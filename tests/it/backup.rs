//! `pfai backup` / `pfai restore` against real servers: an online backup taken while registry
//! pushes, asset uploads and git pushes go on restores everything acknowledged before it;
//! incremental backups; a corrupt backup is refused by name; offline backups; admin only.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{git, git_ok, rand_suffix, Remote, TestServer};

/// Runs the `pfai` binary against `s` with `token`.
async fn pfai(s: &TestServer, token: Option<&str>, args: &[&str]) -> Output {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_pfai"));
    c.args(args)
        .env("PFAI_URL", &s.url)
        .env(
            "XDG_CONFIG_HOME",
            s.dir.path().join(format!("xdg-{}", rand_suffix())),
        )
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(std::process::Stdio::null());
    match token {
        Some(t) => c.env("PFAI_TOKEN", t),
        None => c.env_remove("PFAI_TOKEN"),
    };
    c.output().await.unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    assert!(!out.status.success(), "unexpectedly succeeded");
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!e.contains("panicked"), "{e}");
    e
}

/// `pfai backup --to dir --json` (online) as the admin; the report.
async fn backup_online(s: &TestServer, dir: &Path) -> Value {
    let out = pfai(
        s,
        Some(&s.admin),
        &["backup", "--to", dir.to_str().unwrap(), "--json"],
    )
    .await;
    serde_json::from_str(&ok(&out, "pfai backup")).unwrap()
}

/// Restores `backup` into a fresh directory and starts a server on it (the old admin token
/// still works: tokens are in the snapshot).
async fn restore_and_start(s_admin: &str, backup: &Path, assets: bool) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let asset_dir = dir.path().join("elsewhere/assets");
    let mut args = vec![
        "restore".to_owned(),
        "--from".into(),
        backup.display().to_string(),
        "--data-dir".into(),
        data.display().to_string(),
    ];
    if assets {
        args.push("--asset-storage-path".into());
        args.push(asset_dir.display().to_string());
    }
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pfai"))
        .args(&args)
        .output()
        .await
        .unwrap();
    ok(&out, "pfai restore");
    assert!(data.join("pfai.redb").is_file());
    std::fs::write(data.join("initial-admin-token"), s_admin).unwrap();
    TestServer::start_in(dir, |cfg| {
        if assets {
            cfg.asset_storage_path = Some(asset_dir.clone());
        }
    })
    .await
}

async fn fsck_clean(s: &TestServer) {
    let (st, v) = s
        .call(Method::POST, "/api/v1/admin/fsck", Some(&s.admin), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["problems"], 0, "fsck on the restored server: {v}");
}

async fn release_with_asset(s: &TestServer, tag: &str, data: Vec<u8>) -> u64 {
    let (st, v) = s
        .post(
            "/api/v1/forge/acme/app/releases",
            Some(&s.admin),
            json!({"tagName": tag, "targetCommit": "main"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = s
        .upload_asset("acme/app", tag, &format!("{tag}.bin"), data, &s.admin)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["id"].as_u64().unwrap()
}

async fn download(s: &TestServer, tag: &str, id: u64) -> (StatusCode, Vec<u8>) {
    let r = s
        .req(
            Method::GET,
            &format!("/api/v1/forge/acme/app/releases/{tag}/assets/{id}"),
            Some(&s.admin),
        )
        .send()
        .await
        .unwrap();
    (r.status(), r.bytes().await.unwrap().to_vec())
}

fn payload(seed: u32, len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed * 7) % 251) as u8)
        .collect()
}

/// An image push the registry acknowledged: when, its tag, manifest bytes, manifest digest
/// and layer bytes.
type Image = (Instant, String, Vec<u8>, String, Vec<u8>);

/// What the workload got acknowledged, and when.
#[derive(Default)]
struct Acked {
    releases: Vec<(Instant, String, u64, Vec<u8>)>,
    images: Vec<Image>,
    tags: Vec<(Instant, String, String)>,
}

async fn blob(s: &TestServer, name: &str, digest: &str) -> (StatusCode, Vec<u8>) {
    let r = s
        .http
        .get(format!("{}/v2/{name}/blobs/{digest}", s.url))
        .basic_auth("x", Some(&s.admin))
        .send()
        .await
        .unwrap();
    (r.status(), r.bytes().await.unwrap().to_vec())
}

async fn manifest_status(s: &TestServer, tag: &str) -> StatusCode {
    s.http
        .get(format!("{}/v2/acme/app/manifests/{tag}", s.url))
        .basic_auth("x", Some(&s.admin))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
        .status()
}

/// No snapshot is staged on the server any more.
fn staging_empty(s: &TestServer) -> bool {
    match std::fs::read_dir(s.data_dir().join("backups")) {
        Ok(rd) => rd.count() == 0,
        Err(_) => true,
    }
}

/// The test: a workload (registry pushes, asset uploads, git pushes) runs while an
/// online backup is taken with the `pfai` binary; the restored server has every release,
/// asset (byte-equal), git tag, protection rule, image (pulled by digest) and token
/// acknowledged before the backup began, and fsck finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_online_backup_under_load_restores_everything_acknowledged_before_it() {
    let s = Arc::new(TestServer::start().await);
    s.repo("acme", "app", false).await;
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let bob = s.user("bob").await;
    let (st, rule) = s
        .post(
            "/api/v1/forge/acme/app/tag-protections",
            Some(&s.admin),
            json!({"pattern": "release-*"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{rule}");

    let acked = Arc::new(std::sync::Mutex::new(Acked::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    // Releases with assets.
    workers.push(tokio::spawn({
        let (s, acked, stop) = (s.clone(), acked.clone(), stop.clone());
        async move {
            let mut i = 0u32;
            while !stop.load(Ordering::SeqCst) || i < 3 {
                let tag = format!("r{i}");
                let data = payload(i, 20_000 + i as usize * 1000);
                let id = release_with_asset(&s, &tag, data.clone()).await;
                acked
                    .lock()
                    .unwrap()
                    .releases
                    .push((Instant::now(), tag, id, data));
                i += 1;
            }
        }
    }));
    // Registry pushes.
    workers.push(tokio::spawn({
        let (s, acked, stop) = (s.clone(), acked.clone(), stop.clone());
        async move {
            let remote = Remote {
                url: s.url.clone(),
                token: s.admin.clone(),
            };
            let mut i = 0u32;
            while !stop.load(Ordering::SeqCst) || i < 3 {
                let layer = payload(1000 + i, 50_000);
                let tag = format!("t{i}");
                let (m, d) = remote.push_image("acme/app", &tag, &layer).await;
                acked
                    .lock()
                    .unwrap()
                    .images
                    .push((Instant::now(), tag, m, d, layer));
                i += 1;
            }
        }
    }));
    // Git pushes: a commit and an annotated tag each.
    workers.push(tokio::spawn({
        let (acked, stop) = (acked.clone(), stop.clone());
        let wc = wc.clone();
        async move {
            let mut i = 0u32;
            while !stop.load(Ordering::SeqCst) || i < 3 {
                let wc = wc.clone();
                let (tag, sha) = tokio::task::spawn_blocking(move || {
                    let tag = format!("g{i}");
                    std::fs::write(wc.join(format!("f{i}")), format!("{i}\n")).unwrap();
                    git_ok(&wc, &["add", "."]);
                    git_ok(&wc, &["commit", "-q", "-m", &format!("c{i}")]);
                    git_ok(&wc, &["tag", "-a", &tag, "-m", &format!("tag {i}")]);
                    git_ok(&wc, &["push", "-q", "origin", "main", &tag]);
                    let sha = git_ok(&wc, &["rev-parse", &tag]);
                    (tag, sha)
                })
                .await
                .unwrap();
                acked.lock().unwrap().tags.push((Instant::now(), tag, sha));
                i += 1;
            }
        }
    }));
    // Let some of everything land, then back up while the workload continues.
    loop {
        let enough = {
            let a = acked.lock().unwrap();
            a.releases.len() >= 2 && a.images.len() >= 2 && a.tags.len() >= 2
        };
        if enough {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let backup_dir = s.dir.path().join("backup");
    let started = Instant::now();
    let report = backup_online(&s, &backup_dir).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    assert!(report["files"].as_u64().unwrap() > 0, "{report}");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(backup_dir.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["sha256"].as_str().is_some_and(|h| h.len() == 64) && f["size"].is_u64()));
    // The snapshot is released once the client is done.
    assert!(staging_empty(&s));

    // Writes after the backup returned are after its snapshot: the restore must not have them.
    release_with_asset(&s, "after", payload(77, 1000)).await;
    let (_, after_digest) = Remote {
        url: s.url.clone(),
        token: s.admin.clone(),
    }
    .push_image("acme/app", "after", &payload(78, 1000))
    .await;
    {
        let wc = wc.clone();
        tokio::task::spawn_blocking(move || {
            git_ok(&wc, &["tag", "after-tag"]);
            git_ok(&wc, &["push", "-q", "origin", "after-tag"]);
        })
        .await
        .unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    // The workload really ran during the backup: each kind had a write in flight.
    assert!(acked.releases.iter().any(|r| r.0 >= started));
    assert!(acked.images.iter().any(|r| r.0 >= started));
    assert!(acked.tags.iter().any(|r| r.0 >= started));
    let r = restore_and_start(&s.admin, &backup_dir, false).await;

    let mut checked = (0, 0, 0);
    for (at, tag, id, data) in &acked.releases {
        if *at >= started {
            continue;
        }
        let (st, v) = r
            .get(
                &format!("/api/v1/forge/acme/app/releases/{tag}"),
                Some(&r.admin),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "release {tag}: {v}");
        assert_eq!(v["tagExists"], true, "{v}");
        let (st, body) = download(&r, tag, *id).await;
        assert_eq!(st, StatusCode::OK);
        assert!(body == *data, "asset of {tag} differs");
        checked.0 += 1;
    }
    let restored = Remote {
        url: r.url.clone(),
        token: r.admin.clone(),
    };
    for (at, tag, m, d, layer) in &acked.images {
        if *at >= started {
            continue;
        }
        assert_eq!(&restored.pull("acme/app", d).await, m, "image {tag}");
        let ld = pfai::ids::Digest::sha256_of(layer).to_string();
        let (st, bytes) = blob(&r, "acme/app", &ld).await;
        assert_eq!(st, StatusCode::OK);
        assert!(bytes == *layer, "layer of {tag} differs");
        assert_eq!(manifest_status(&r, tag).await, StatusCode::OK, "tag {tag}");
        checked.1 += 1;
    }
    let remote_tags = git_ok(&wc, &["ls-remote", &r.git_url("acme/app", Some(&r.admin))]);
    for (at, tag, sha) in &acked.tags {
        if *at >= started {
            continue;
        }
        let line = remote_tags
            .lines()
            .find(|l| l.ends_with(&format!("refs/tags/{tag}")))
            .unwrap_or_else(|| panic!("tag {tag} missing: {remote_tags}"));
        assert!(line.starts_with(sha.as_str()), "{line} vs {sha}");
        checked.2 += 1;
    }
    assert!(
        checked.0 >= 2 && checked.1 >= 2 && checked.2 >= 2,
        "{checked:?}"
    );
    // A clone of the restored repository works and has main.
    let clone = r.dir.path().join("clone");
    let out = git(
        r.dir.path(),
        &[
            "clone",
            "-q",
            &r.git_url("acme/app", Some(&r.admin)),
            clone.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(clone.join("README").is_file());

    // Exactly the snapshot: nothing written after the backup returned.
    let (st, _) = r
        .get("/api/v1/forge/acme/app/releases/after", Some(&r.admin))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(manifest_status(&r, "after").await, StatusCode::NOT_FOUND);
    assert_eq!(
        manifest_status(&r, &after_digest).await,
        StatusCode::NOT_FOUND
    );
    assert!(!remote_tags.contains("refs/tags/after"), "{remote_tags}");
    let (st, rules) = r
        .get("/api/v1/forge/acme/app/tag-protections", Some(&r.admin))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(rules.to_string().contains("release-*"), "{rules}");
    let (st, me) = r.get("/api/v1/user", Some(&bob)).await;
    assert_eq!(st, StatusCode::OK, "bob's token: {me}");
    assert_eq!(me["username"], "bob");
    fsck_clean(&r).await;
}

/// Files of a directory tree with their inode numbers.
fn inodes(dir: &Path) -> Vec<(PathBuf, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::metadata(&p).unwrap().ino()));
            }
        }
    }
    out.sort();
    out
}

/// A second backup into the same directory fetches only what is new: every blob and asset of
/// the first stays the very same file, and the old snapshot directory is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_backup_copies_no_blob_already_in_the_directory() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let remote = Remote {
        url: s.url.clone(),
        token: s.admin.clone(),
    };
    remote
        .push_image("acme/app", "one", &payload(1, 30_000))
        .await;
    release_with_asset(&s, "v1", payload(2, 10_000)).await;
    // A name that needs percent-encoding on its way through the files route.
    let odd = "r\u{e9}seau notes+(1) %41.txt";
    let (st, v) = s
        .upload_asset("acme/app", "v1", odd, payload(4, 777), &s.admin)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let odd_id = v["id"].as_u64().unwrap();
    let dir = s.dir.path().join("backup");
    let first = backup_online(&s, &dir).await;
    let first_id = first["id"].as_str().unwrap().to_owned();
    let copied: Vec<String> = serde_json::from_value(first["copied"].clone()).unwrap();
    assert!(
        copied.iter().filter(|p| p.starts_with("blobs/")).count() >= 2,
        "{first}"
    );
    let blobs_before = inodes(&dir.join("blobs"));
    let assets_before = inodes(&dir.join("assets"));

    remote
        .push_image("acme/app", "two", &payload(3, 30_000))
        .await;
    let second = backup_online(&s, &dir).await;
    let copied: Vec<String> = serde_json::from_value(second["copied"].clone()).unwrap();
    // Only the new layer and the new manifest's... the new layer is the one new blob (the
    // config is shared with the first image); plus the snapshot's own database and bundle.
    let new_blobs: Vec<&String> = copied.iter().filter(|p| p.starts_with("blobs/")).collect();
    let layer = pfai::ids::Digest::sha256_of(&payload(3, 30_000));
    assert_eq!(new_blobs.len(), 1, "{second}");
    assert!(new_blobs[0].ends_with(layer.hex()), "{new_blobs:?}");
    assert!(!copied.iter().any(|p| p.starts_with("assets/")), "{second}");
    assert!(second["reused"].as_u64().unwrap() >= 3, "{second}");
    // The files of the first backup were not rewritten (same inode, so same file).
    let blobs_after = inodes(&dir.join("blobs"));
    for b in &blobs_before {
        assert!(blobs_after.contains(b), "{b:?} was rewritten");
    }
    assert_eq!(assets_before, inodes(&dir.join("assets")));
    assert!(!dir.join("snapshots").join(&first_id).exists());
    let second_id = second["id"].as_str().unwrap();
    assert!(dir
        .join("snapshots")
        .join(second_id)
        .join("pfai.redb")
        .is_file());

    // The incremental backup restores whole.
    let r = restore_and_start(&s.admin, &dir, false).await;
    let (st, body) = download(&r, "v1", odd_id).await;
    assert_eq!(st, StatusCode::OK);
    assert!(body == payload(4, 777));
    for tag in ["one", "two"] {
        assert_eq!(manifest_status(&r, tag).await, StatusCode::OK, "{tag}");
    }
    fsck_clean(&r).await;
}

/// A backup whose file was altered or removed is refused before anything is written, with the
/// file's name; a non-empty target is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_or_incomplete_backup_is_refused_by_name_and_nothing_is_written() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let id = release_with_asset(&s, "v1", payload(5, 4096)).await;
    let dir = s.dir.path().join("backup");
    backup_online(&s, &dir).await;
    let asset_rel = format!("assets/acme/app/1/{id}-v1.bin");
    let asset = dir.join(&asset_rel);
    assert!(asset.is_file(), "{asset_rel}");

    let restore = |target: PathBuf| {
        let from = dir.clone();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_pfai"))
                .args(["restore", "--from"])
                .arg(&from)
                .arg("--data-dir")
                .arg(&target)
                .output()
                .await
                .unwrap()
        }
    };
    let work = tempfile::tempdir().unwrap();
    let target = work.path().join("new");

    // One flipped byte (same size).
    let mut bytes = std::fs::read(&asset).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&asset, &bytes).unwrap();
    let err = stderr(&restore(target.clone()).await);
    assert!(err.contains(&asset_rel) && err.contains("corrupt"), "{err}");
    assert!(!target.exists(), "the target was created");
    assert_eq!(
        std::fs::read_dir(work.path()).unwrap().count(),
        0,
        "nothing may be left beside it"
    );

    // A removed file.
    std::fs::remove_file(&asset).unwrap();
    let err = stderr(&restore(target.clone()).await);
    assert!(err.contains(&asset_rel) && err.contains("missing"), "{err}");
    assert!(!target.exists());

    // A damaged database snapshot (truncated).
    bytes[100] ^= 0xff;
    std::fs::write(&asset, &bytes).unwrap();
    let m: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let db_rel = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "database")
        .unwrap()["path"]
        .as_str()
        .unwrap()
        .to_owned();
    let db = dir.join(&db_rel);
    let good = std::fs::read(&db).unwrap();
    std::fs::write(&db, &good[..good.len() / 2]).unwrap();
    let err = stderr(&restore(target.clone()).await);
    assert!(err.contains(&db_rel), "{err}");
    std::fs::write(&db, &good).unwrap();

    // A non-empty target is refused, and left as it was.
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("keep"), "mine").unwrap();
    let err = stderr(&restore(target.clone()).await);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(
        std::fs::read_to_string(target.join("keep")).unwrap(),
        "mine"
    );
    std::fs::remove_file(target.join("keep")).unwrap();

    // Repaired, the backup restores into the (empty) directory.
    ok(&restore(target.clone()).await, "restore");
    assert!(target.join("pfai.redb").is_file());

    // No manifest: not a backup (or an unfinished one).
    std::fs::remove_file(dir.join("manifest.json")).unwrap();
    let err = stderr(&restore(work.path().join("third")).await);
    assert!(err.contains("manifest.json"), "{err}");
    assert!(!work.path().join("third").exists());
}

/// `pfai backup --data-dir` refuses a data directory a server holds, and backs up a stopped
/// one; the restore can put the assets elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_offline_backup_of_a_stopped_server_restores() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    // A repository nothing was pushed to has no bundle; it comes back empty.
    s.repo("acme", "empty", true).await;
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let data = payload(9, 12_345);
    let id = release_with_asset(&s, "v1", data.clone()).await;
    let (m, d) = Remote {
        url: s.url.clone(),
        token: s.admin.clone(),
    }
    .push_image("acme/app", "latest", &payload(10, 20_000))
    .await;
    let admin = s.admin.clone();
    let (_, keys) = s.get("/api/v1/attestation/keys", None).await;
    let data_dir = s.data_dir();
    let backup_dir = s.dir.path().join("offline-backup");
    let args = [
        "backup",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--to",
        backup_dir.to_str().unwrap(),
    ];
    let err = stderr(&pfai(&s, None, &args).await);
    assert!(err.contains("in use"), "{err}");
    assert!(!backup_dir.join("manifest.json").exists());

    let url = s.url.clone();
    let dir = s.stop().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pfai"))
        .args(args)
        .env("PFAI_URL", url)
        .output()
        .await
        .unwrap();
    let text = ok(&out, "offline backup");
    assert!(text.contains("written to"), "{text}");
    // The data directory keeps no staging leftovers.
    assert!(
        !dir.path().join("data/backups").exists() || {
            std::fs::read_dir(dir.path().join("data/backups"))
                .unwrap()
                .count()
                == 0
        }
    );

    let inside = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pfai"))
        .arg("restore")
        .arg("--from")
        .arg(&backup_dir)
        .arg("--data-dir")
        .arg(inside.path().join("d"))
        .arg("--asset-storage-path")
        .arg(inside.path().join("d/a"))
        .output()
        .await
        .unwrap();
    assert!(stderr(&out).contains("must lie outside"));
    assert!(!inside.path().join("d").exists());
    let r = restore_and_start(&admin, &backup_dir, true).await;
    // The attestation keys came along: the same current key.
    assert_eq!(r.get("/api/v1/attestation/keys", None).await.1, keys);
    let (st, body) = download(&r, "v1", id).await;
    assert_eq!(st, StatusCode::OK);
    assert!(body == data);
    let restored = Remote {
        url: r.url.clone(),
        token: r.admin.clone(),
    };
    assert_eq!(restored.pull("acme/app", &d).await, m);
    let (st, v) = r.get("/api/v1/forge/acme/empty", Some(&r.admin)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["private"], true);
    let refs = git_ok(
        &wc,
        &["ls-remote", &r.git_url("acme/empty", Some(&r.admin))],
    );
    assert!(refs.is_empty(), "{refs}");
    // The restored empty repository takes pushes.
    git_ok(
        &wc,
        &[
            "push",
            "-q",
            &r.git_url("acme/empty", Some(&r.admin)),
            "main",
        ],
    );
    fsck_clean(&r).await;
    drop(dir);
}

/// Backups are for site admins only, and a snapshot serves exactly the files its manifest
/// lists, whatever path is asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_site_admins_take_backups_and_only_listed_files_are_served() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let bob = s.user("bob").await;
    let (st, _) = s
        .call(Method::POST, "/api/v1/admin/backups", Some(&bob), None)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .call(Method::POST, "/api/v1/admin/backups", None, None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let dir = s.dir.path().join("b");
    let err = stderr(&pfai(&s, Some(&bob), &["backup", "--to", dir.to_str().unwrap()]).await);
    assert!(err.contains("site admin"), "{err}");
    assert!(!dir.join("manifest.json").exists());

    let (st, m) = s
        .call(Method::POST, "/api/v1/admin/backups", Some(&s.admin), None)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{m}");
    let id = m["id"].as_str().unwrap();
    let db_rel = m["files"][0]["path"].as_str().unwrap();
    let base = format!("/api/v1/admin/backups/{id}");
    // Bob cannot read the snapshot's files.
    let (st, _) = s
        .call(
            Method::GET,
            &format!("{base}/files/{db_rel}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let r = s
        .req(
            Method::GET,
            &format!("{base}/files/{db_rel}"),
            Some(&s.admin),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.bytes().await.unwrap().len() as u64,
        m["files"][0]["size"].as_u64().unwrap()
    );
    for bad in [
        "pfai.redb",
        "../pfai.redb",
        "..%2Fpfai.redb",
        "snapshots/..%2F..%2F..%2Fpfai.redb",
        "%2Fetc%2Fpasswd",
        "snapshots",
        "",
    ] {
        let (st, _) = s
            .call(
                Method::GET,
                &format!("{base}/files/{bad}"),
                Some(&s.admin),
                None,
            )
            .await;
        assert!(
            st == StatusCode::NOT_FOUND || st == StatusCode::METHOD_NOT_ALLOWED,
            "{bad}: {st}"
        );
    }
    let (st, _) = s
        .call(
            Method::GET,
            "/api/v1/admin/backups/nope/files/x",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s.call(Method::DELETE, &base, Some(&bob), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s.call(Method::DELETE, &base, Some(&s.admin), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = s
        .call(
            Method::GET,
            &format!("{base}/files/{db_rel}"),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(staging_empty(&s));

    // At most four snapshots are staged at once.
    let mut ids = Vec::new();
    for _ in 0..4 {
        let (st, m) = s
            .call(Method::POST, "/api/v1/admin/backups", Some(&s.admin), None)
            .await;
        assert_eq!(st, StatusCode::CREATED, "{m}");
        ids.push(m["id"].as_str().unwrap().to_owned());
    }
    let (st, v) = s
        .call(Method::POST, "/api/v1/admin/backups", Some(&s.admin), None)
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    for id in ids {
        let (st, _) = s
            .call(
                Method::DELETE,
                &format!("/api/v1/admin/backups/{id}"),
                Some(&s.admin),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::NO_CONTENT);
    }
    assert!(staging_empty(&s));
}

/// A snapshot pins what it refers to: a release deleted and blobs collected by GC after the
/// snapshot was taken are still served from it, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_keeps_files_that_gc_and_deletes_remove_after_it() {
    use sha2::Digest as _;
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    release_with_asset(&s, "v1", payload(21, 8000)).await;
    let (_, d) = Remote {
        url: s.url.clone(),
        token: s.admin.clone(),
    }
    .push_image("acme/app", "gone", &payload(22, 9000))
    .await;

    let (st, m) = s
        .call(Method::POST, "/api/v1/admin/backups", Some(&s.admin), None)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{m}");
    let id = m["id"].as_str().unwrap().to_owned();

    // After the snapshot: the release goes, the image goes, GC removes its blobs.
    let (st, _) = s
        .call(
            Method::DELETE,
            "/api/v1/forge/acme/app/releases/v1",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let r = s
        .http
        .delete(format!("{}/v2/acme/app/manifests/{d}", s.url))
        .basic_auth("x", Some(&s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let (st, gc) = s
        .call(
            Method::POST,
            "/api/v1/admin/gc?graceSeconds=0",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{gc}");
    assert!(!gc["blobs"].as_array().unwrap().is_empty(), "{gc}");

    for f in m["files"].as_array().unwrap() {
        let path = f["path"].as_str().unwrap();
        let r = s
            .req(
                Method::GET,
                &format!("/api/v1/admin/backups/{id}/files/{path}"),
                Some(&s.admin),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let body = r.bytes().await.unwrap();
        assert_eq!(body.len() as u64, f["size"].as_u64().unwrap(), "{path}");
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&body)),
            f["sha256"].as_str().unwrap(),
            "{path}"
        );
    }
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/api/v1/admin/backups/{id}"),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert!(staging_empty(&s));
}

/// The attestation keys travel with the backup: a restored server lists the same keys, still
/// serves (and `pfai release verify` accepts) the attestations signed before the backup, and
/// signs new ones with the same key, so consumers' pinned public keys keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restored_server_verifies_old_attestations_and_signs_new_ones_with_the_same_key() {
    use std::os::unix::fs::PermissionsExt as _;
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let (st, v) = s
        .call(
            Method::PATCH,
            "/api/v1/forge/acme/app/settings",
            Some(&s.admin),
            Some(json!({"immutableReleases": true})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    draft(&s, "v1").await;
    let (st, v) = s
        .upload_asset("acme/app", "v1", "v1.bin", payload(3, 5000), &s.admin)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = s
        .call(
            Method::PATCH,
            "/api/v1/forge/acme/app/releases/v1",
            Some(&s.admin),
            Some(json!({"draft": false})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let envelope = |srv: &TestServer, tag: &str| {
        srv.req(
            Method::GET,
            &format!("/api/v1/forge/acme/app/releases/{tag}/attestation"),
            Some(&srv.admin),
        )
        .send()
    };
    let r = envelope(&s, "v1").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let old_envelope = r.bytes().await.unwrap().to_vec();
    let (_, keys) = s.get("/api/v1/attestation/keys", None).await;
    let keyid = keys[0]["keyid"].as_str().unwrap().to_owned();

    let dir = s.dir.path().join("backup");
    backup_online(&s, &dir).await;
    let pk8 = format!("attestation/key-{keyid}.pk8");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.join(&pk8)), 0o600, "the backup's copy of the key");
    let r = restore_and_start(&s.admin, &dir, false).await;
    assert_eq!(
        mode(&r.data_dir().join(&pk8)),
        0o600,
        "the restored private key"
    );
    assert_eq!(mode(&r.data_dir().join("attestation")), 0o700);

    let (_, restored_keys) = r.get("/api/v1/attestation/keys", None).await;
    assert_eq!(restored_keys, keys, "the same keys, the same current one");
    let got = envelope(&r, "v1").await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap().to_vec(), old_envelope);
    let cli = crate::harness::Cli::new(&r);
    let root = r.dir.path().to_owned();
    let out = cli.ok(&root, &["release", "verify", "v1", "-R", "acme/app"]);
    assert!(out.contains("verified"), "{out}");

    // A release published after the restore is signed by the same key: the key file saved
    // before the backup verifies it offline.
    let keys_file = root.join("keys-before-backup.json");
    std::fs::write(&keys_file, keys.to_string()).unwrap();
    draft(&r, "v2").await;
    let (st, v) = r
        .call(
            Method::PATCH,
            "/api/v1/forge/acme/app/releases/v2",
            Some(&r.admin),
            Some(json!({"draft": false})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let got = envelope(&r, "v2").await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    let new_envelope = got.bytes().await.unwrap().to_vec();
    let env: Value = serde_json::from_slice(&new_envelope).unwrap();
    assert_eq!(env["signatures"][0]["keyid"], keyid.as_str(), "{env}");
    let att = root.join("v2.intoto.json");
    std::fs::write(&att, &new_envelope).unwrap();
    let out = cli.ok(
        &root,
        &[
            "release",
            "verify",
            "v2",
            "-R",
            "acme/app",
            "--attestation",
            att.to_str().unwrap(),
            "--key",
            keys_file.to_str().unwrap(),
        ],
    );
    assert!(out.contains("verified"), "{out}");
    fsck_clean(&r).await;
}

/// Creates a draft release `tag` of acme/app at main.
async fn draft(s: &TestServer, tag: &str) {
    let (st, v) = s
        .post(
            "/api/v1/forge/acme/app/releases",
            Some(&s.admin),
            json!({"tagName": tag, "targetCommit": "main", "draft": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
}

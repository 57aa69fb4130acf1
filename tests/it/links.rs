//! GitHub-shaped web links against a real server and a real pushed repository: `releases/latest`
//! and `releases/latest/download/{name}` redirects, tagged downloads (HEAD, Range, `curl -fL`),
//! source archives (`git archive`, listed with `tar`/`unzip`, served from the cache the second
//! time), the "Source code" links in the API and on the page, private repositories (404 to
//! anonymous, a token works), and the CLI's web URLs and `--archive`.

use std::path::Path;
use std::process::Command;

use reqwest::{header, StatusCode};
use serde_json::{json, Value};

use crate::harness::{git_ok, require_tool, Cli, TestServer};

/// A client that reports redirects instead of following them.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn release(s: &TestServer, repo: &str, tag: &str, extra: Value) {
    let mut body = json!({"tagName": tag, "targetCommit": "main"});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (st, v) = s
        .post(
            &format!("/api/v1/forge/{repo}/releases"),
            Some(&s.admin),
            body,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
}

/// A repository with one commit pushed to `main` (plus `src/lib.rs`), checked out.
fn pushed(s: &TestServer, repo: &str) -> std::path::PathBuf {
    let wc = s.checkout(repo, &s.admin);
    std::fs::create_dir(wc.join("src")).unwrap();
    std::fs::write(wc.join("src/lib.rs"), "pub fn answer() -> u32 { 42 }\n").unwrap();
    git_ok(&wc, &["add", "src/lib.rs"]);
    git_ok(&wc, &["commit", "-q", "-m", "lib"]);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    wc
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The `Content-Length` header as sent (also on `HEAD`, whose body is empty).
fn length(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
}

fn list_archive(file: &Path, zip: bool) -> String {
    let out = if zip {
        Command::new("unzip").arg("-l").arg(file).output().unwrap()
    } else {
        Command::new("tar").arg("-tzf").arg(file).output().unwrap()
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn install_script_links_redirect_to_the_latest_release_and_download() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    s.repo("acme", "empty", false).await;
    pushed(&s, "acme/app");
    let bin: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    release(&s, "acme/app", "v1.0.0", json!({})).await;
    s.upload_asset("acme/app", "v1.0.0", "app.bin", b"old".to_vec(), &s.admin)
        .await;
    release(&s, "acme/app", "v2.0.0", json!({})).await;
    let (st, _) = s
        .upload_asset("acme/app", "v2.0.0", "app.bin", bin.clone(), &s.admin)
        .await;
    assert_eq!(st, StatusCode::CREATED);
    // A newer pre-release is never Latest.
    release(&s, "acme/app", "v3.0.0-rc1", json!({"prerelease": true})).await;

    let http = no_redirects();
    let r = http
        .get(format!("{}/acme/app/releases/latest", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(
        location(&r),
        format!("{}/acme/app/releases/tag/v2.0.0", s.url)
    );
    // The page it points at exists.
    let r = http.get(location(&r)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("v2.0.0"));

    let r = http
        .get(format!(
            "{}/acme/app/releases/latest/download/app.bin",
            s.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let tagged = format!("{}/acme/app/releases/download/v2.0.0/app.bin", s.url);
    assert_eq!(location(&r), tagged);
    // Following the redirect (as browsers and `curl -L` do) gets the bytes.
    let got = s
        .http
        .get(format!(
            "{}/acme/app/releases/latest/download/app.bin",
            s.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap().as_ref(), bin.as_slice());
    // HEAD and Range on the tagged download.
    let r = s.http.head(&tagged).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(length(&r), Some(70_000));
    let r = s
        .http
        .get(&tagged)
        .header(header::RANGE, "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &bin[100..200]);

    // An install script: curl -fL follows the redirect and fails on a missing file.
    if require_tool("curl") {
        let out_file = s.dir.path().join("installed.bin");
        let out = Command::new("curl")
            .args(["-fsSL", "-o"])
            .arg(&out_file)
            .arg(format!(
                "{}/acme/app/releases/latest/download/app.bin",
                s.url
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(std::fs::read(&out_file).unwrap(), bin);
        let out = Command::new("curl")
            .args(["-fsSL", "-o", "/dev/null"])
            .arg(format!("{}/acme/app/releases/latest/download/nope", s.url))
            .output()
            .unwrap();
        assert!(!out.status.success());
    }

    // No release: 404, not a redirect to nowhere.
    let r = http
        .get(format!("{}/acme/empty/releases/latest", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = http
        .get(format!(
            "{}/acme/empty/releases/latest/download/app.bin",
            s.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn source_archives_hold_the_tagged_tree_and_the_second_request_is_served_from_the_cache() {
    assert!(require_tool("tar"));
    let has_unzip = require_tool("unzip");
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let wc = pushed(&s, "acme/app");
    release(&s, "acme/app", "v1.0.0", json!({})).await;
    // A later commit is not in v1.0.0's archive.
    std::fs::write(wc.join("LATER"), "later\n").unwrap();
    git_ok(&wc, &["add", "LATER"]);
    git_ok(&wc, &["commit", "-q", "-m", "later"]);
    git_ok(&wc, &["push", "-q", "origin", "main"]);

    let url = format!("{}/acme/app/archive/refs/tags/v1.0.0.tar.gz", s.url);
    let first = s.http.get(&url).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let h = first.headers().clone();
    assert_eq!(h[header::CONTENT_TYPE], "application/gzip");
    assert!(
        h[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("filename=\"app-1.0.0.tar.gz\""),
        "{h:?}"
    );
    let etag = h[header::ETAG].to_str().unwrap().to_owned();
    let tgz = first.bytes().await.unwrap();
    let file = s.dir.path().join("a.tar.gz");
    std::fs::write(&file, &tgz).unwrap();
    let listing = list_archive(&file, false);
    assert!(listing.contains("app-1.0.0/README"), "{listing}");
    assert!(listing.contains("app-1.0.0/src/lib.rs"), "{listing}");
    assert!(!listing.contains("LATER"), "{listing}");

    // Cached under the commit: one file, and the second reply comes from it (with a length,
    // where the first was streamed as git wrote it) with the same bytes.
    let cache = s.data_dir().join("archives/acme/app");
    let cached: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert_eq!(std::fs::read(&cached[0]).unwrap(), tgz.as_ref());
    let second = s.http.get(&url).send().await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(second.content_length(), Some(tgz.len() as u64));
    assert_eq!(second.headers()[header::ETAG].to_str().unwrap(), etag);
    assert_eq!(second.bytes().await.unwrap(), tgz);
    // GitHub's short shape names the same archive; HEAD and Range work on it.
    let short = s
        .http
        .head(format!("{}/acme/app/archive/v1.0.0.tar.gz", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(short.status(), StatusCode::OK);
    assert_eq!(length(&short), Some(tgz.len() as u64));
    let part = s
        .http
        .get(&url)
        .header(header::RANGE, "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.bytes().await.unwrap(), tgz.slice(0..10));

    // Concurrent first requests of one archive: git runs once, everyone gets the same bytes.
    let zurl = format!("{}/acme/app/archive/refs/tags/v1.0.0.zip", s.url);
    let gets = (0..6).map(|_| {
        let (http, zurl) = (s.http.clone(), zurl.clone());
        tokio::spawn(async move { http.get(&zurl).send().await.unwrap().bytes().await.unwrap() })
    });
    let bodies: Vec<_> = futures_util::future::join_all(gets).await;
    let first_zip = bodies[0].as_ref().unwrap().clone();
    for b in &bodies {
        assert_eq!(b.as_ref().unwrap(), &first_zip);
    }
    let zips = std::fs::read_dir(&cache)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .to_string_lossy()
                .ends_with(".zip")
        })
        .count();
    assert_eq!(zips, 1);

    // zip: listed with unzip; HEAD gives its length.
    let head = s.http.head(&zurl).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    let z = s.http.get(&zurl).send().await.unwrap();
    assert_eq!(z.headers()[header::CONTENT_TYPE], "application/zip");
    assert_eq!(length(&z), length(&head));
    let zip = z.bytes().await.unwrap();
    assert!(zip.starts_with(b"PK"));
    if has_unzip {
        let zfile = s.dir.path().join("a.zip");
        std::fs::write(&zfile, &zip).unwrap();
        let listing = list_archive(&zfile, true);
        assert!(listing.contains("app-1.0.0/src/lib.rs"), "{listing}");
    }

    // Tags that do not exist, names that are not tags, and other suffixes: 404.
    for bad in [
        "refs/tags/v9.9.9.tar.gz",
        "refs/tags/--output=x.tar.gz",
        "refs/tags/..%2F..%2Fetc.zip",
        "refs/tags/v1.0.0.tar",
        "main.zip",
    ] {
        let r = s
            .http
            .get(format!("{}/acme/app/archive/{bad}", s.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn private_repository_links_are_404_to_anonymous_and_open_to_a_token() {
    let s = TestServer::start().await;
    s.repo("acme", "secret", true).await;
    pushed(&s, "acme/secret");
    release(&s, "acme/secret", "v1", json!({})).await;
    s.upload_asset("acme/secret", "v1", "app.bin", b"bits".to_vec(), &s.admin)
        .await;
    let reader = s.user("reader").await;
    let outsider = s.user("outsider").await;
    s.collaborator("acme/secret", "reader", "read").await;
    let http = no_redirects();
    let paths = [
        "/acme/secret/releases/latest",
        "/acme/secret/releases/latest/download/app.bin",
        "/acme/secret/releases/download/v1/app.bin",
        "/acme/secret/archive/refs/tags/v1.tar.gz",
        "/acme/secret/archive/refs/tags/v1.zip",
    ];
    for p in paths {
        let r = http.get(format!("{}{p}", s.url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "anonymous {p}");
        let r = http
            .get(format!("{}{p}", s.url))
            .bearer_auth(&outsider)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "outsider {p}");
        // A reader's token, as Bearer and as a Basic password (`curl -u user:TOKEN`).
        let r = http
            .get(format!("{}{p}", s.url))
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap();
        assert!(
            r.status() == StatusCode::OK || r.status() == StatusCode::FOUND,
            "{p}: {}",
            r.status()
        );
        let r = http
            .get(format!("{}{p}", s.url))
            .basic_auth("reader", Some(&reader))
            .send()
            .await
            .unwrap();
        assert!(
            r.status() == StatusCode::OK || r.status() == StatusCode::FOUND,
            "{p}: {}",
            r.status()
        );
    }
    // A bad token is a 401 a script sees, not the sign-in page saved as the download.
    let r = http
        .get(format!(
            "{}/acme/secret/releases/download/v1/app.bin",
            s.url
        ))
        .bearer_auth("pfai_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The redirect keeps working with the token through `curl -fL -H`.
    if require_tool("curl") {
        let out = Command::new("curl")
            .args(["-fsSL", "-H"])
            .arg(format!("Authorization: Bearer {reader}"))
            .arg(format!(
                "{}/acme/secret/releases/latest/download/app.bin",
                s.url
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(out.stdout, b"bits");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn releases_list_their_web_page_and_source_code_in_the_api_and_on_the_page() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    pushed(&s, "acme/app");
    release(&s, "acme/app", "v1.0.0", json!({})).await;
    release(&s, "acme/app", "v2.0.0", json!({"draft": true})).await;
    let (st, v) = s
        .get("/api/v1/forge/acme/app/releases/v1.0.0", Some(&s.admin))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        v["htmlUrl"],
        format!("{}/acme/app/releases/tag/v1.0.0", s.url)
    );
    assert_eq!(
        v["tarballUrl"],
        format!("{}/acme/app/archive/refs/tags/v1.0.0.tar.gz", s.url)
    );
    assert_eq!(
        v["zipballUrl"],
        format!("{}/acme/app/archive/refs/tags/v1.0.0.zip", s.url)
    );
    // Every listed link answers.
    for k in ["htmlUrl", "tarballUrl", "zipballUrl"] {
        let r = s.http.get(v[k].as_str().unwrap()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{k}");
    }
    // A draft's tag does not exist yet: no archive to link.
    let (_, d) = s
        .get("/api/v1/forge/acme/app/releases/v2.0.0", Some(&s.admin))
        .await;
    assert_eq!(d["tarballUrl"], Value::Null);
    assert_eq!(d["zipballUrl"], Value::Null);

    let page = s
        .http
        .get(format!("{}/acme/app/releases/tag/v1.0.0", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Source code (zip)"), "{page}");
    assert!(page.contains("Source code (tar.gz)"), "{page}");
    assert!(
        page.contains("href=\"/acme/app/archive/refs/tags/v1.0.0.zip\""),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_prints_web_urls_and_downloads_the_source_archive() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let wc = pushed(&s, "acme/app");
    let cli = Cli::new(&s);
    let page = format!("{}/acme/app/releases/tag/v1.0.0", s.url);
    let out = cli.ok(&wc, &["release", "create", "v1.0.0", "--target", "main"]);
    assert_eq!(out.trim(), page);
    let out = cli.ok(&wc, &["release", "edit", "v1.0.0", "--title", "One"]);
    assert_eq!(out.trim(), page);
    let out = cli.ok(&wc, &["release", "view", "v1.0.0", "--web"]);
    assert_eq!(out.trim(), page);
    let out = cli.ok(&wc, &["release", "view", "latest", "--web"]);
    assert_eq!(out.trim(), page);
    let out = cli.ok(&wc, &["release", "view", "v1.0.0"]);
    assert!(out.contains(&page), "{out}");
    // --json keeps its shape, plus the new fields.
    let v: Value =
        serde_json::from_str(&cli.ok(&wc, &["release", "view", "v1.0.0", "--json"])).unwrap();
    assert_eq!(v["name"], "One");
    assert_eq!(v["htmlUrl"], page.as_str());

    let dir = s.dir.path().join("dl");
    let dir_s = dir.to_str().unwrap();
    cli.ok(
        &wc,
        &[
            "release", "download", "v1.0.0", "-A", "tar.gz", "--dir", dir_s,
        ],
    );
    let listing = list_archive(&dir.join("app-1.0.0.tar.gz"), false);
    assert!(listing.contains("app-1.0.0/src/lib.rs"), "{listing}");
    cli.ok(
        &wc,
        &[
            "release",
            "download",
            "latest",
            "--archive",
            "zip",
            "--dir",
            dir_s,
        ],
    );
    let zip = std::fs::read(dir.join("app-1.0.0.zip")).unwrap();
    assert!(zip.starts_with(b"PK"));
    if require_tool("unzip") {
        let listing = list_archive(&dir.join("app-1.0.0.zip"), true);
        assert!(listing.contains("app-1.0.0/README"), "{listing}");
    }
    let (_, err) = cli.fails(
        &wc,
        Some(&s.admin),
        &["release", "download", "v1.0.0", "-A", "rar"],
    );
    assert!(err.contains("rar"), "{err}");

    // -A with -O, as gh takes it: the named file, never overwritten without --clobber.
    let named = dir.join("source.tgz");
    let named_s = named.to_str().unwrap();
    let args = [
        "release", "download", "v1.0.0", "-A", "tar.gz", "-O", named_s,
    ];
    cli.ok(&wc, &args);
    let first = std::fs::read(&named).unwrap();
    assert!(first.starts_with(&[0x1f, 0x8b]), "not gzip");
    std::fs::write(&named, b"mine").unwrap();
    let (_, err) = cli.fails(&wc, Some(&s.admin), &args);
    assert!(err.contains("--clobber"), "{err}");
    assert_eq!(std::fs::read(&named).unwrap(), b"mine");
    cli.ok(&wc, &[&args[..], &["--skip-existing"]].concat());
    assert_eq!(std::fs::read(&named).unwrap(), b"mine");
    cli.ok(&wc, &[&args[..], &["--clobber"]].concat());
    assert_eq!(std::fs::read(&named).unwrap(), first);
    assert!(!dir.join(".source.tgz.part").exists());
    // -O - writes the archive's bytes to standard output.
    let out = cli.run(
        &wc,
        Some(&s.admin),
        &["release", "download", "v1.0.0", "-A", "tar.gz", "-O", "-"],
        None,
    );
    assert!(out.status.success());
    assert_eq!(out.stdout, first);
}

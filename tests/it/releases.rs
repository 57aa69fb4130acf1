//! Releases and assets over real HTTP: the seed's REST table, visibility, Range, names.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{git_ok, TestServer};

async fn setup() -> (TestServer, String) {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let head = git_ok(&wc, &["rev-parse", "HEAD"]);
    (s, head)
}

async fn upload(
    s: &TestServer,
    tag: &str,
    name: &str,
    data: Vec<u8>,
    token: &str,
) -> (StatusCode, Value) {
    s.upload_asset("acme/app", tag, name, data, token).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_list_latest_update_delete() {
    let (s, head) = setup().await;
    let a = Some(s.admin.as_str());
    let base = "/api/v1/forge/acme/app/releases";

    // The seed's example body: tag created at targetCommit.
    let (st, v) = s
        .post(base, a, json!({"tagName":"v1.2.3","targetCommit":"main","name":"v1.2.3","body":"notes","draft":false,"prerelease":true}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    for field in [
        "id",
        "tagName",
        "name",
        "body",
        "draft",
        "prerelease",
        "author",
        "targetCommit",
        "publishedAt",
        "assets",
        "createdAt",
        "latest",
        "tagExists",
    ] {
        assert!(v.get(field).is_some(), "missing {field}");
    }
    assert_eq!(v["targetCommit"], head.as_str());
    assert_eq!(v["author"]["username"], "admin");
    assert_eq!(v["latest"], false, "prereleases never hold Latest");
    assert_eq!(v["tagExists"], true);
    assert!(v["publishedAt"].as_str().unwrap().ends_with('Z'));

    // Bad target, bad tag name, duplicate. (A missing tag without targetCommit is made on the
    // default branch: gh_cli::a_release_for_a_new_tag_without_target_lands_on_the_default_branch.)
    assert_eq!(
        s.post(base, a, json!({"tagName":"v9","targetCommit":"nope"}))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        s.post(base, a, json!({"tagName":"bad..tag","targetCommit":"main"}))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        s.post(base, a, json!({"tagName":"v1.2.3"})).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        s.post(base, a, json!({"tagName":"v9","bogus":1})).await.0,
        StatusCode::BAD_REQUEST
    );

    // An existing tag anchors without targetCommit.
    let (st, _) = s
        .post(
            "/api/v1/forge/acme/app/tags",
            a,
            json!({"tagName":"v1.2.2","target":"main"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (st, v) = s.post(base, a, json!({"tagName":"v1.2.2"})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["latest"], true);
    assert_eq!(v["name"], "v1.2.2", "the title defaults to the tag");

    // A draft: no tag until published.
    let (st, v) = s
        .post(
            base,
            a,
            json!({"tagName":"v2.0.0","targetCommit":"main","draft":true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert!(v["publishedAt"].is_null());
    assert_eq!(v["tagExists"], false);
    assert_eq!(
        s.get("/api/v1/forge/acme/app/tags/v2.0.0", None).await.0,
        StatusCode::NOT_FOUND
    );

    // List order: unpublished drafts first, then publishedAt descending.
    let (_, list) = s.get(base, a).await;
    let tags: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tagName"].as_str().unwrap())
        .collect();
    assert_eq!(tags, vec!["v2.0.0", "v1.2.2", "v1.2.3"]);
    let (_, latest) = s.get(&format!("{base}/latest"), None).await;
    assert_eq!(latest["tagName"], "v1.2.2");

    // PATCH changes only what is passed; null means unchanged.
    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("{base}/v1.2.3"),
            a,
            Some(json!({"body": "new notes", "name": null})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (
            v["body"].as_str(),
            v["name"].as_str(),
            v["prerelease"].as_bool()
        ),
        (Some("new notes"), Some("v1.2.3"), Some(true))
    );

    // Publishing the draft sets publishedAt, creates the tag, and moves Latest.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("{base}/v2.0.0"),
            a,
            Some(json!({"draft": false})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["publishedAt"].is_string());
    assert_eq!(v["tagExists"], true);
    assert_eq!(v["latest"], true);
    let (_, tag) = s.get("/api/v1/forge/acme/app/tags/v2.0.0", None).await;
    assert_eq!(tag["commit"], head.as_str());
    let (_, list) = s.get(base, None).await;
    let flags: Vec<(String, bool)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["tagName"].as_str().unwrap().to_owned(),
                r["latest"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        flags,
        vec![
            ("v2.0.0".into(), true),
            ("v1.2.2".into(), false),
            ("v1.2.3".into(), false)
        ]
    );

    // Pagination.
    let r = s
        .req(Method::GET, &format!("{base}?limit=1&page=2"), None)
        .send()
        .await
        .unwrap();
    assert!(r
        .headers()
        .get("link")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("rel=\"next\""));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v[0]["tagName"], "v1.2.2");

    // DELETE removes the release, not the tag.
    let (st, _) = s
        .call(Method::DELETE, &format!("{base}/v2.0.0"), a, None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        s.get(&format!("{base}/v2.0.0"), a).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get("/api/v1/forge/acme/app/tags/v2.0.0", None).await.0,
        StatusCode::OK
    );

    // Deleting the tag leaves the release, unanchored.
    let (st, _) = s
        .call(
            Method::DELETE,
            "/api/v1/forge/acme/app/tags/v1.2.2",
            a,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v) = s.get(&format!("{base}/v1.2.2"), None).await;
    assert_eq!(
        (st, v["tagExists"].as_bool()),
        (StatusCode::OK, Some(false))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_tag_give_one_release() {
    let (s, _) = setup().await;
    let body = json!({"tagName":"v5","targetCommit":"main"});
    let (a, b) = tokio::join!(
        s.post(
            "/api/v1/forge/acme/app/releases",
            Some(&s.admin),
            body.clone()
        ),
        s.post(
            "/api/v1/forge/acme/app/releases",
            Some(&s.admin),
            body.clone()
        )
    );
    let mut codes = [a.0, b.0];
    codes.sort();
    assert_eq!(codes, [StatusCode::CREATED, StatusCode::CONFLICT]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn assets_upload_download_range_and_names() {
    let (s, _) = setup().await;
    let a = s.admin.clone();
    let base = "/api/v1/forge/acme/app/releases";
    assert_eq!(
        s.post(
            base,
            Some(&a),
            json!({"tagName":"v1","targetCommit":"main"})
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (st, v) = upload(&s, "v1", "pfai-linux-amd64.tar.gz", data.clone(), &a).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["size"], 100_000);
    assert_eq!(v["contentType"], "application/gzip");
    assert_eq!(v["sha256"], pfai::ids::Digest::sha256_of(&data).hex());
    let id = v["id"].as_u64().unwrap();
    let url = v["downloadUrl"].as_str().unwrap().to_owned();
    assert!(url.ends_with(&format!("/releases/v1/assets/{id}")), "{url}");

    // The seed's layout on disk.
    let file = s
        .data_dir()
        .join(format!("assets/acme/app/1/{id}-pfai-linux-amd64.tar.gz"));
    assert_eq!(std::fs::read(&file).unwrap(), data);

    // Full download with every header.
    let r = s.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert_eq!(h["content-length"], "100000");
    assert_eq!(h["content-type"], "application/gzip");
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(
        h["etag"].to_str().unwrap(),
        format!("\"{}\"", v["sha256"].as_str().unwrap())
    );
    assert!(h["content-disposition"]
        .to_str()
        .unwrap()
        .contains("filename=\"pfai-linux-amd64.tar.gz\""));
    assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());

    // Ranges.
    let range = |r: &'static str| s.http.get(&url).header("range", r).send();
    let r = range("bytes=0-99").await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 0-99/100000");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..100]);
    let r = range("bytes=-100").await.unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[99_900..]);
    let r = range("bytes=99990-200000").await.unwrap();
    assert_eq!(r.headers()["content-range"], "bytes 99990-99999/100000");
    let r = range("bytes=100000-").await.unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["content-range"], "bytes */100000");
    let r = range("bytes=oops").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = range("bytes=0-1,5-6").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.http.head(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], "100000");

    // Metadata by Accept, and the stable latest link by name.
    let r = s
        .http
        .get(&url)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let meta: Value = r.json().await.unwrap();
    assert_eq!(meta["name"], "pfai-linux-amd64.tar.gz");
    let r = s
        .http
        .get(format!(
            "{}{base}/latest/assets/pfai-linux-amd64.tar.gz",
            s.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().len(), 100_000);

    // Download counts: 4 full GETs so far (two of them answered 200 to an ignored Range;
    // partial responses, HEAD and metadata do not count), visible at once and after the flush.
    let (_, rel) = s.get(&format!("{base}/v1"), None).await;
    assert_eq!(rel["assets"][0]["downloadCount"], 4);
    pfai::domain::release::flush_downloads(s.core())
        .await
        .unwrap();
    let (_, rel) = s.get(&format!("{base}/v1"), None).await;
    assert_eq!(rel["assets"][0]["downloadCount"], 4);

    // Duplicate name: 409. Hostile names: 422, nothing written.
    assert_eq!(
        upload(&s, "v1", "pfai-linux-amd64.tar.gz", vec![1], &a)
            .await
            .0,
        StatusCode::CONFLICT
    );
    for bad in [
        "..",
        ".",
        "a/b",
        "a\\b",
        "a\u{0}b",
        "a\r\nb",
        "a\u{202E}b",
        " x",
        &"x".repeat(256),
    ] {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(vec![1]).file_name("ok"),
        );
        let r = s
            .req(Method::POST, &format!("{base}/v1/assets"), Some(&a))
            .query(&[("name", bad)])
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
    }
    // A name with a path keeps only its last component.
    let (st, v) = upload(&s, "v1", "../../etc/passwd", vec![1], &a).await;
    assert_eq!(
        (st, v["name"].as_str()),
        (StatusCode::CREATED, Some("passwd"))
    );
    // ?name= is validated strictly.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(vec![1]).file_name("ok"),
    );
    let r = s
        .req(
            Method::POST,
            &format!("{base}/v1/assets?name=..%2F..%2Fetc"),
            Some(&a),
        )
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let dir = s.data_dir().join("assets/acme/app/1");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");

    // Unicode name: RFC 5987 disposition.
    let (st, v) = upload(&s, "v1", "résumé \"final\".txt", b"hi".to_vec(), &a).await;
    assert_eq!(st, StatusCode::CREATED);
    let r = s
        .http
        .get(v["downloadUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let cd = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cd.contains("filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.txt"),
        "{cd}"
    );
    assert_eq!(r.headers()["content-type"], "text/plain");

    // Delete an asset: row and file gone.
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("{base}/v1/assets/{id}"),
            Some(&a),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert!(!file.exists());
    assert_eq!(
        s.http.get(&url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    // Deleting the release removes the remaining files.
    assert_eq!(
        s.call(Method::DELETE, &format!("{base}/v1"), Some(&a), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert!(!dir.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_and_cut_uploads_leave_nothing() {
    let s = TestServer::start_with(|c| c.limits.asset_max = 1 << 20).await;
    s.repo("acme", "app", false).await;
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let a = s.admin.clone();
    let base = "/api/v1/forge/acme/app/releases";
    assert_eq!(
        s.post(
            base,
            Some(&a),
            json!({"tagName":"v1","targetCommit":"main"})
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let (st, _) = upload(&s, "v1", "big.bin", vec![0u8; (1 << 20) + 1], &a).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);

    // A cut upload: declare a long body, send half, drop the connection.
    use tokio::io::AsyncWriteExt;
    let mut sock = tokio::net::TcpStream::connect(s.url.trim_start_matches("http://"))
        .await
        .unwrap();
    let boundary = "XyZ";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.bin\"\r\n\r\n"
    );
    let req = format!(
        "POST {base}/v1/assets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {a}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 500000\r\n\r\n{head}"
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    sock.write_all(&vec![7u8; 100_000]).await.unwrap();
    sock.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(sock);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let (_, rel) = s.get(&format!("{base}/v1"), None).await;
    assert_eq!(rel["assets"].as_array().unwrap().len(), 0);
    let dir = s.data_dir().join("assets/acme/app/1");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drafts_are_invisible_below_write_on_every_route() {
    let (s, _) = setup().await;
    let a = s.admin.clone();
    let writer = s.user("writer").await;
    let reader = s.user("reader").await;
    s.collaborator("acme/app", "writer", "write").await;
    s.collaborator("acme/app", "reader", "read").await;
    let base = "/api/v1/forge/acme/app/releases";
    let (st, _) = s
        .post(
            base,
            Some(&writer),
            json!({"tagName":"v1","targetCommit":"main","draft":true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (_, asset) = upload(&s, "v1", "secret.bin", b"draft bytes".to_vec(), &writer).await;
    let id = asset["id"].as_u64().unwrap();

    let routes = [
        format!("{base}/v1"),
        format!("{base}/latest"),
        format!("{base}/v1/assets/{id}"),
        format!("{base}/latest/assets/secret.bin"),
    ];
    for who in [None, Some(reader.as_str())] {
        let (_, list) = s.get(base, who).await;
        assert_eq!(list.as_array().unwrap().len(), 0, "{who:?}");
        for r in &routes {
            assert_eq!(
                s.get(r, who).await.0,
                StatusCode::NOT_FOUND,
                "{r} as {who:?}"
            );
            let mut req = s
                .http
                .get(format!("{}{r}", s.url))
                .header("range", "bytes=0-1");
            if let Some(t) = who {
                req = req.bearer_auth(t);
            }
            assert_eq!(
                req.send().await.unwrap().status(),
                StatusCode::NOT_FOUND,
                "{r} ranged as {who:?}"
            );
            let mut req = s
                .http
                .get(format!("{}{r}", s.url))
                .header("accept", "application/json");
            if let Some(t) = who {
                req = req.bearer_auth(t);
            }
            assert_eq!(
                req.send().await.unwrap().status(),
                StatusCode::NOT_FOUND,
                "{r} json as {who:?}"
            );
        }
        // Cannot edit either.
        let (st, _) = s
            .call(
                Method::PATCH,
                &format!("{base}/v1"),
                who,
                Some(json!({"name":"x"})),
            )
            .await;
        assert!(
            st == StatusCode::NOT_FOUND
                || st == StatusCode::UNAUTHORIZED
                || st == StatusCode::FORBIDDEN,
            "{st}"
        );
    }
    // The reader cannot create releases.
    let (st, _) = s
        .post(
            base,
            Some(&reader),
            json!({"tagName":"v2","targetCommit":"main"}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // write and admin see it.
    for who in [writer.as_str(), a.as_str()] {
        let (_, list) = s.get(base, Some(who)).await;
        assert_eq!(list.as_array().unwrap().len(), 1);
        assert_eq!(s.get(&routes[0], Some(who)).await.0, StatusCode::OK);
        assert_eq!(s.get(&routes[2], Some(who)).await.0, StatusCode::OK);
    }
    // Ids from another repository do not resolve here.
    s.repo("acme", "other", false).await;
    let wc = s.checkout("acme/other", &a);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let (st, _) = s
        .post(
            "/api/v1/forge/acme/other/releases",
            Some(&a),
            json!({"tagName":"v1","targetCommit":"main"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(
        s.get(
            &format!("/api/v1/forge/acme/other/releases/v1/assets/{id}"),
            Some(&a)
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tag_deleted_by_git_push_leaves_the_release_unanchored() {
    let (s, head) = setup().await;
    let a = s.admin.clone();
    let base = "/api/v1/forge/acme/app/releases";
    assert_eq!(
        s.post(
            base,
            Some(&a),
            json!({"tagName":"v7","targetCommit":"main"})
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let wc = s.checkout("acme/app", &a);
    git_ok(&wc, &["push", "-q", "origin", "--delete", "v7"]);
    let (st, v) = s.get(&format!("{base}/v7"), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["tagExists"], false);
    assert!(v["tagCommit"].is_null());
    assert_eq!(
        v["targetCommit"],
        head.as_str(),
        "the release keeps the SHA it was anchored at"
    );
    // Re-created elsewhere (by an admin): the release shows the mismatch, it does not follow.
    std::fs::write(wc.join("g"), "y").unwrap();
    git_ok(&wc, &["add", "g"]);
    git_ok(&wc, &["commit", "-q", "-m", "other"]);
    git_ok(&wc, &["tag", "v7"]);
    git_ok(
        &wc,
        &["push", "-q", "origin", "HEAD:refs/heads/other", "v7"],
    );
    let (_, v) = s.get(&format!("{base}/v7"), None).await;
    assert_eq!(v["tagExists"], true);
    assert_eq!(v["targetCommit"], head.as_str());
    assert_ne!(v["tagCommit"], v["targetCommit"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uploads_of_one_name_give_one_asset() {
    let (s, _) = setup().await;
    let a = s.admin.clone();
    assert_eq!(
        s.post(
            "/api/v1/forge/acme/app/releases",
            Some(&a),
            json!({"tagName":"v1","targetCommit":"main"})
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let (x, y) = tokio::join!(
        upload(&s, "v1", "same.bin", vec![1u8; 2 << 20], &a),
        upload(&s, "v1", "same.bin", vec![2u8; 2 << 20], &a)
    );
    let mut codes = [x.0, y.0];
    codes.sort();
    assert_eq!(codes, [StatusCode::CREATED, StatusCode::CONFLICT]);
    let dir = s.data_dir().join("assets/acme/app/1");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 1, "no orphan file: {files:?}");
    let (_, rel) = s.get("/api/v1/forge/acme/app/releases/v1", None).await;
    assert_eq!(rel["assets"].as_array().unwrap().len(), 1);
}

/// Names of 253-255 bytes used to make the on-disk name `<id>-<name>` longer than NAME_MAX
/// (500 `File name too long`). Every valid name must store, download and delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn asset_names_at_255_bytes_do_not_overflow_the_file_name() {
    let (s, _) = setup().await;
    let a = s.admin.clone();
    let base = "/api/v1/forge/acme/app/releases";
    let (st, v) = s
        .post(
            base,
            Some(&a),
            json!({"tagName":"v1","targetCommit":"main"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let mut names = Vec::new();
    for len in [253usize, 254, 255] {
        names.push("a".repeat(len));
        // Two-byte chars, with an ASCII tail to reach odd lengths.
        names.push(format!(
            "{}{}",
            "\u{e9}".repeat(len / 2),
            "b".repeat(len % 2)
        ));
    }
    names.push("\u{20ac}".repeat(85)); // 255 bytes of three-byte chars
    for (i, name) in names.iter().enumerate() {
        assert!(name.len() >= 253 && name.len() <= 255);
        let data: Vec<u8> = format!("payload {i} {name}").into_bytes();
        let (st, v) = upload(&s, "v1", name, data.clone(), &a).await;
        assert_eq!(st, StatusCode::CREATED, "{} bytes: {v}", name.len());
        assert_eq!(v["name"].as_str().unwrap(), name);
        let r = s
            .http
            .get(v["downloadUrl"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let cd = r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .to_owned();
        let encoded: String = name
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        assert!(cd.ends_with(&format!("filename*=UTF-8''{encoded}")), "{cd}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());
        // By name too (the stable link resolves through the row, not the file name).
        let r = s
            .http
            .get(format!(
                "{}{base}/latest/assets/{}",
                s.url,
                utf8_percent(name)
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());
    }
    // Every file name on disk fits.
    let dir = s.data_dir().join("assets/acme/app/1");
    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), names.len(), "{files:?}");
    assert!(files.iter().all(|f| f.len() <= 255), "{files:?}");

    // 256 bytes is refused before anything is written.
    let (st, v) = upload(&s, "v1", &"a".repeat(256), b"x".to_vec(), &a).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    // Deleting a long-named asset removes its (shortened) file.
    let (_, rel) = s.get(&format!("{base}/v1"), Some(&a)).await;
    let list = rel["assets"].as_array().cloned().unwrap_or_default();
    let id = list
        .iter()
        .find(|x| x["name"] == names[0].as_str())
        .map(|x| x["id"].as_u64().unwrap())
        .unwrap_or_else(|| panic!("asset listed: {list:?}"));
    let (st, v) = s
        .call(
            Method::DELETE,
            &format!("{base}/v1/assets/{id}"),
            Some(&a),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), names.len() - 1);
}

fn utf8_percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

//! Storage quotas per owner against a live server: set by site admins only; asset uploads,
//! OCI blob pushes (monolithic, chunked, mounts) and `skopeo copy` over the quota are refused
//! with 413 (OCI `DENIED`) naming the quota and usage, leaving nothing stored; shared blobs
//! count once per owner and for every owner; deletes and GC lower the usage.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{git_ok, require_tool, Cli, Remote, TestServer};

async fn set_quota(s: &TestServer, owner: &str, limit: u64) {
    let (st, v) = s
        .call(
            Method::PUT,
            &format!("/api/v1/admin/quotas/{owner}"),
            Some(&s.admin),
            Some(json!({ "limitBytes": limit })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

async fn used(s: &TestServer, owner: &str) -> u64 {
    let (st, v) = s
        .get(&format!("/api/v1/admin/quotas/{owner}"), Some(&s.admin))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["usedBytes"].as_u64().unwrap()
}

fn blob_file(s: &TestServer, digest: &str) -> std::path::PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    s.data_dir().join("blobs/sha256").join(&hex[..2]).join(hex)
}

fn sha(data: &[u8]) -> String {
    pfai::ids::Digest::sha256_of(data).to_string()
}

fn remote(s: &TestServer) -> Remote {
    Remote {
        url: s.url.clone(),
        token: s.admin.clone(),
    }
}

async fn oci_error(r: reqwest::Response) -> (StatusCode, Value) {
    let st = r.status();
    (st, r.json().await.unwrap_or(Value::Null))
}

fn assert_denied(st: StatusCode, v: &Value) {
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(v["errors"][0]["code"], "DENIED", "{v}");
    let msg = v["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("quota") && msg.contains("used"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_a_site_admin_sets_quotas_and_members_see_the_usage() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let alice = s.user("alice").await;
    let bob = s.user("bob").await;
    let (st, _) = s
        .call(
            Method::PUT,
            "/api/v1/admin/quotas/alice",
            Some(&alice),
            Some(json!({"limitBytes": 1u64 << 40})),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "a user cannot raise their own quota"
    );
    let (st, _) = s
        .call(
            Method::DELETE,
            "/api/v1/admin/quotas/acme",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .call(
            Method::PUT,
            "/api/v1/admin/quotas/nobody",
            Some(&s.admin),
            Some(json!({"limitBytes": 5})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    set_quota(&s, "alice", 1000).await;
    let (st, v) = s.get("/api/v1/admin/quotas/alice", Some(&alice)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["limitBytes"], 1000);
    assert_eq!(v["usedBytes"], 0);
    let (st, _) = s.get("/api/v1/admin/quotas/alice", Some(&bob)).await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "another user's quota is not shown"
    );
    let (st, _) = s.get("/api/v1/admin/quotas", Some(&alice)).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = s.get("/api/v1/admin/quotas", Some(&s.admin)).await;
    assert_eq!(st, StatusCode::OK);
    assert!(v.to_string().contains("\"alice\""), "{v}");
    // The owner's page shows used / limit to the owner, and nothing to another user.
    let mut web = crate::ui::Web::new(&s);
    web.sign_in("alice", "correct horse").await;
    let page = web.get("/alice").await;
    assert!(
        page.body.contains("Storage: 0 B used / 1000 B limit"),
        "{}",
        page.body
    );
    let mut web_bob = crate::ui::Web::new(&s);
    web_bob.sign_in("bob", "correct horse").await;
    assert!(!web_bob.get("/alice").await.body.contains("Storage:"));

    let (st, v) = s
        .call(
            Method::DELETE,
            "/api/v1/admin/quotas/alice",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v.get("limitBytes").is_none(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_asset_upload_over_quota_is_refused_leaving_no_file_and_no_usage() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let base = "/api/v1/forge/acme/app/releases";
    let (st, v) = s
        .post(
            base,
            Some(&s.admin),
            json!({"tagName":"v1","targetCommit":"main"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    set_quota(&s, "acme", 100_000).await;

    let (st, a) = s
        .upload_asset("acme/app", "v1", "ok.bin", vec![1u8; 60_000], &s.admin)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    assert_eq!(used(&s, "acme").await, 60_000);

    let (st, v) = s
        .upload_asset("acme/app", "v1", "big.bin", vec![2u8; 50_000], &s.admin)
        .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(v["error"]["code"], "quota_exceeded");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("100000") && msg.contains("60000"), "{msg}");
    assert_eq!(used(&s, "acme").await, 60_000, "usage unchanged");
    let (_, rel) = s.get(&format!("{base}/v1"), None).await;
    assert_eq!(rel["assets"].as_array().unwrap().len(), 1);
    let files: Vec<_> = std::fs::read_dir(s.data_dir().join("assets/acme/app"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 1, "only the accepted asset's file: {files:?}");

    // Deleting the asset gives the bytes back.
    let id = a["id"].as_u64().unwrap();
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("{base}/v1/assets/{id}"),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(used(&s, "acme").await, 0);
    let (st, v) = s
        .upload_asset("acme/app", "v1", "big.bin", vec![2u8; 50_000], &s.admin)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oci_monolithic_and_chunked_pushes_over_quota_are_denied_and_store_nothing() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    set_quota(&s, "acme", 10_000).await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}/v2/acme/app/img/{p}", s.url);

    // Monolithic POST ?digest= with a Content-Length over the quota.
    let big = vec![3u8; 20_000];
    let d = sha(&big);
    let r = http
        .post(url(&format!("blobs/uploads/?digest={d}")))
        .basic_auth("x", Some(&s.admin))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    let (st, v) = oci_error(r).await;
    assert_denied(st, &v);
    assert!(!blob_file(&s, &d).exists());

    // A blob that fits is accepted and counted.
    let small = vec![4u8; 6_000];
    let ds = sha(&small);
    let r = http
        .post(url(&format!("blobs/uploads/?digest={ds}")))
        .basic_auth("x", Some(&s.admin))
        .body(small.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(used(&s, "acme").await, 6_000);

    // Chunked: the first chunk fits, the second (Content-Range) would pass the quota.
    let r = http
        .post(url("blobs/uploads/"))
        .basic_auth("x", Some(&s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let loc = if loc.starts_with("http") {
        loc
    } else {
        format!("{}{loc}", s.url)
    };
    let r = http
        .patch(&loc)
        .basic_auth("x", Some(&s.admin))
        .header("content-range", "0-2999")
        .body(vec![5u8; 3_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = http
        .patch(&loc)
        .basic_auth("x", Some(&s.admin))
        .header("content-range", "3000-5999")
        .body(vec![5u8; 3_000])
        .send()
        .await
        .unwrap();
    let (st, v) = oci_error(r).await;
    assert_denied(st, &v);
    // A streamed chunk without a length is cut once it passes the quota.
    let stream = futures_util::stream::iter(
        (0..10).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![5u8; 1_000]))),
    );
    let r = http
        .patch(&loc)
        .basic_auth("x", Some(&s.admin))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    let (st, v) = oci_error(r).await;
    assert_denied(st, &v);
    // Finishing with what was received stays under the quota... only if it fits: 3000 + up to
    // the budget; a PUT that brings the total over the quota is refused and nothing is stored.
    let whole = vec![5u8; 9_000];
    let dw = sha(&whole);
    let r = http
        .put(format!(
            "{loc}{}digest={dw}",
            if loc.contains('?') { "&" } else { "?" }
        ))
        .basic_auth("x", Some(&s.admin))
        .body(vec![5u8; 6_000])
        .send()
        .await
        .unwrap();
    let (st, v) = oci_error(r).await;
    assert!(
        st == StatusCode::PAYLOAD_TOO_LARGE || st == StatusCode::RANGE_NOT_SATISFIABLE,
        "{st} {v}"
    );
    assert!(!blob_file(&s, &dw).exists());
    assert_eq!(used(&s, "acme").await, 6_000, "usage unchanged");

    // POST then a monolithic PUT ?digest= whose Content-Length is over the quota.
    let r = http
        .post(url("blobs/uploads/"))
        .basic_auth("x", Some(&s.admin))
        .send()
        .await
        .unwrap();
    let loc2 = r.headers()["location"].to_str().unwrap().to_owned();
    let loc2 = if loc2.starts_with("http") {
        loc2
    } else {
        format!("{}{loc2}", s.url)
    };
    let r = http
        .put(format!(
            "{loc2}{}digest={d}",
            if loc2.contains('?') { "&" } else { "?" }
        ))
        .basic_auth("x", Some(&s.admin))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    let (st, v) = oci_error(r).await;
    assert_denied(st, &v);
    assert!(!blob_file(&s, &d).exists());

    // At the quota, a blob the owner already has costs nothing and is accepted again.
    set_quota(&s, "acme", 6_000).await;
    let r = http
        .post(url(&format!("blobs/uploads/?digest={ds}")))
        .basic_auth("x", Some(&s.admin))
        .body(small.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(used(&s, "acme").await, 6_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shared_blobs_count_once_per_owner_and_for_each_owner_and_gc_gives_them_back() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    s.repo("acme", "lib", false).await;
    s.repo("other", "x", false).await;
    s.repo("third", "y", false).await;
    let layer = vec![9u8; 5_000];
    let config_len = br#"{"architecture":"amd64","os":"linux"}"#.len() as u64;
    let one = 5_000 + config_len;
    let r = remote(&s);
    let (_, d1) = r.push_image("acme/app/a", "v1", &layer).await;
    assert_eq!(used(&s, "acme").await, one);
    r.push_image("acme/lib/b", "v1", &layer).await;
    assert_eq!(used(&s, "acme").await, one, "two repos of one owner: once");
    r.push_image("other/x/c", "v1", &layer).await;
    assert_eq!(used(&s, "other").await, one, "another owner: counted again");
    assert_eq!(used(&s, "acme").await, one);

    // A mount into an owner without room is refused too.
    set_quota(&s, "third", 100).await;
    let ld = sha(&layer);
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/v2/third/y/z/blobs/uploads/?mount={ld}&from=acme/app/a",
            s.url
        ))
        .basic_auth("x", Some(&s.admin))
        .send()
        .await
        .unwrap();
    let (st, v) = oci_error(resp).await;
    assert_denied(st, &v);
    assert_eq!(used(&s, "third").await, 0);

    // Deleting the manifests of acme and GC: acme's usage goes, other's stays.
    let http = reqwest::Client::new();
    for name in ["acme/app/a", "acme/lib/b"] {
        let resp = http
            .delete(format!("{}/v2/{name}/manifests/{d1}", s.url))
            .basic_auth("x", Some(&s.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
    }
    // Still referenced by other/x/c's manifest, so GC keeps the blobs and their links.
    let (st, v) = s
        .call(
            Method::POST,
            "/api/v1/admin/gc?graceSeconds=0",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let resp = http
        .delete(format!("{}/v2/other/x/c/manifests/{d1}", s.url))
        .basic_auth("x", Some(&s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let (st, v) = s
        .call(
            Method::POST,
            "/api/v1/admin/gc?graceSeconds=0",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(used(&s, "acme").await, 0);
    assert_eq!(used(&s, "other").await, 0);

    // And the counters agree with a recount.
    let (st, report) = s
        .call(Method::POST, "/api/v1/admin/fsck", Some(&s.admin), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{report}");
    assert_eq!(report["problems"], 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn skopeo_copy_into_an_over_quota_owner_fails_with_the_message() {
    if !require_tool("skopeo") {
        return;
    }
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    set_quota(&s, "acme", 100).await;
    let host = s.url.trim_start_matches("http://").to_owned();
    let creds = format!("x:{}", s.admin);
    let src = format!(
        "oci:{}/data-fixtures/oci/layout-single:v1",
        env!("CARGO_MANIFEST_DIR")
    );
    let dest = format!("docker://{host}/acme/app/hello:v1");
    let out = tokio::task::spawn_blocking(move || {
        let auth = std::env::temp_dir().join("pfai-test-skopeo-auth-quota.json");
        std::fs::write(&auth, "{\"auths\":{}}").unwrap();
        std::process::Command::new("skopeo")
            .args([
                "copy",
                "--retry-times",
                "0",
                "--dest-tls-verify=false",
                "--dest-creds",
                &creds,
                &src,
                &dest,
            ])
            .env("REGISTRY_AUTH_FILE", &auth)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("quota"), "{err}");
    assert_eq!(used(&s, "acme").await, 0);
}

fn pfai(s: &TestServer, token: &str, args: &[&str]) -> std::process::Output {
    Cli::new(s).run(s.dir.path(), Some(token), args, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pfai_quota_sets_with_units_and_views_usage() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let alice = s.user("alice").await;
    let out = pfai(&s, &s.admin, &["quota", "set", "acme", "500MB"]);
    assert!(out.status.success(), "{out:?}");
    let out = pfai(&s, &s.admin, &["quota", "view", "acme", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["limitBytes"], 500_000_000u64);
    assert_eq!(v["usedBytes"], 0);
    let out = pfai(&s, &s.admin, &["quota", "set", "acme", "10GiB"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("10.0 GiB"), "{text}");
    // `pfai org view` shows the org's usage of its quota beside its members.
    let out = pfai(&s, &s.admin, &["org", "view", "acme"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("storage: 0 B used of 10.0 GiB"), "{text}");
    let out = pfai(&s, &s.admin, &["org", "view", "acme", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["storage"]["limitBytes"], 10u64 << 30, "{v}");
    let out = pfai(&s, &alice, &["org", "view", "acme"]);
    assert!(!out.status.success(), "alice is not a member of acme");
    let out = pfai(&s, &s.admin, &["quota", "set", "acme", "ten"]);
    assert!(!out.status.success());
    let out = pfai(&s, &alice, &["quota", "set", "alice", "1TiB"]);
    assert!(!out.status.success(), "only a site admin sets quotas");
    assert!(String::from_utf8_lossy(&out.stderr).contains("site admin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fsck_finds_a_wrong_usage_counter_and_repair_rebuilds_it() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    remote(&s)
        .push_image("acme/app/a", "v1", &[7u8; 1_000])
        .await;
    let right = used(&s, "acme").await;
    s.core()
        .db
        .write(|txn| {
            txn.open_table(pfai::storage::tables::OWNER_USAGE)?
                .insert("acme", 5u64)?;
            Ok::<_, pfai::storage::StorageError>(())
        })
        .await
        .unwrap();
    assert_eq!(used(&s, "acme").await, 5);
    let (_, report) = s
        .call(Method::POST, "/api/v1/admin/fsck", Some(&s.admin), None)
        .await;
    assert_eq!(report["problems"], 1, "{report}");
    assert_eq!(
        report["findings"][0]["kind"], "quota_usage_wrong",
        "{report}"
    );
    let (_, report) = s
        .call(
            Method::POST,
            "/api/v1/admin/fsck?repair=true",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(report["problems"], 0, "{report}");
    assert_eq!(used(&s, "acme").await, right);
}

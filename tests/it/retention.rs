//! Registry retention against a live server: GC keeps the newest tags a rule keeps (by push
//! time, not by name), never touches protected or unmatched tags or manifests an index lists,
//! removes what was untagged for long enough with the blobs only it held, and a dry run only
//! lists. Set through the REST API and through `pfai repo retention`.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Cli, Remote, TestServer};

async fn status_of(s: &TestServer, path: &str) -> StatusCode {
    s.req(Method::GET, path, None)
        .basic_auth("x", Some(&s.admin))
        .header(
            "accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
        )
        .send()
        .await
        .unwrap()
        .status()
}

fn pfai(s: &TestServer, args: &[&str]) -> (bool, String) {
    let out = Cli::new(s).run(s.dir.path(), Some(&s.admin), args, None);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_applies_retention_by_push_time_and_spares_protected_unmatched_and_listed() {
    let s = TestServer::start_with(|c| c.limits.gc_grace_secs = 0).await;
    s.repo("acme", "app", false).await;
    let remote = Remote {
        url: s.url.clone(),
        token: s.admin.clone(),
    };
    let img = "acme/app/web";
    let (_, stable) = remote.push_image(img, "stable", b"layer-stable").await;
    // Pushed in this order, a second apart: by push time v2 and v4 are the newest of the
    // unprotected `v*` tags (by name it would be v4 and v3).
    let mut digests = std::collections::HashMap::new();
    for v in ["v3", "v1", "v4", "v2"] {
        let (_, d) = remote
            .push_image(img, v, format!("layer-{v}").as_bytes())
            .await;
        digests.insert(v, d);
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    // A child manifest only an index lists (its own tag removed).
    let (child_bytes, child) = remote.push_image(img, "tmp", b"layer-child").await;
    let r = s
        .req(Method::DELETE, &format!("/v2/{img}/manifests/tmp"), None)
        .basic_auth("x", Some(&s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": child, "size": child_bytes.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}]
    }))
    .unwrap();
    let r = s
        .req(Method::PUT, &format!("/v2/{img}/manifests/multi"), None)
        .basic_auth("x", Some(&s.admin))
        .header("content-type", "application/vnd.oci.image.index.v1+json")
        .body(index)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // v1 is protected (a registry-target rule: git-only rules do not spare registry tags).
    let (st, _) = s
        .post(
            "/api/v1/forge/acme/app/tag-protections",
            Some(&s.admin),
            json!({"pattern": "v1", "target": "registry"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);

    // The policy, through the CLI; readable back through the API.
    let (ok, out) = pfai(
        &s,
        &[
            "repo",
            "retention",
            "set",
            "-R",
            "acme/app",
            "--keep",
            "v*=2",
            "--untagged-older-than",
            "0s",
        ],
    );
    assert!(ok, "{out}");
    let (st, policy) = s.get("/api/v1/forge/acme/app/retention", None).await;
    assert_eq!(st, StatusCode::OK, "{policy}");
    assert_eq!(policy["keep"], json!([{"pattern": "v*", "newest": 2}]));
    assert_eq!(policy["untaggedOlderThanSeconds"], 0);

    // A dry run lists v3 and its manifest, and changes nothing.
    let (ok, out) = pfai(&s, &["gc", "--dry-run"]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("would remove tag {img}:v3")), "{out}");
    assert!(
        out.contains(&format!("would remove manifest {img}@{}", digests["v3"])),
        "{out}"
    );
    assert!(
        !out.contains(":v1 ") && !out.contains(":v2 ") && !out.contains(":v4 "),
        "{out}"
    );
    assert_eq!(
        status_of(&s, &format!("/v2/{img}/manifests/v3")).await,
        StatusCode::OK
    );

    let (st, report) = s
        .call(Method::POST, "/api/v1/admin/gc", Some(&s.admin), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{report}");
    let removed: Vec<&serde_json::Value> = report["retention"].as_array().unwrap().iter().collect();
    assert_eq!(removed.len(), 2, "{report}");
    for gone in [
        format!("/v2/{img}/manifests/v3"),
        format!("/v2/{img}/manifests/{}", digests["v3"]),
        format!(
            "/v2/{img}/blobs/{}",
            pfai::ids::Digest::sha256_of(b"layer-v3")
        ),
    ] {
        assert_eq!(status_of(&s, &gone).await, StatusCode::NOT_FOUND, "{gone}");
    }
    for kept in [
        format!("/v2/{img}/manifests/v1"),
        format!("/v2/{img}/manifests/v2"),
        format!("/v2/{img}/manifests/v4"),
        format!("/v2/{img}/manifests/stable"),
        format!("/v2/{img}/manifests/{stable}"),
        format!("/v2/{img}/manifests/multi"),
        format!("/v2/{img}/manifests/{child}"),
        format!(
            "/v2/{img}/blobs/{}",
            pfai::ids::Digest::sha256_of(b"layer-child")
        ),
    ] {
        assert_eq!(status_of(&s, &kept).await, StatusCode::OK, "{kept}");
    }
    // Nothing left to do.
    let (_, report) = s
        .call(Method::POST, "/api/v1/admin/gc", Some(&s.admin), None)
        .await;
    assert_eq!(report["retention"], json!([]), "{report}");
    s.stop().await;
}

#[tokio::test]
async fn only_repository_admins_set_a_retention_policy_and_bad_ones_are_refused() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let dev = s.user("dev").await;
    s.collaborator("acme/app", "dev", "write").await;
    let body = json!({"keep": [{"pattern": "v*", "newest": 3}]});
    let (st, _) = s
        .call(
            Method::PUT,
            "/api/v1/forge/acme/app/retention",
            Some(&dev),
            Some(body.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .call(
            Method::PUT,
            "/api/v1/forge/acme/app/retention",
            None,
            Some(body.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, e) = s
        .call(
            Method::PUT,
            "/api/v1/forge/acme/app/retention",
            Some(&s.admin),
            Some(json!({"keep": [{"pattern": "v[", "newest": 3}]})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (st, e) = s
        .call(
            Method::PUT,
            "/api/v1/forge/acme/app/retention",
            Some(&s.admin),
            Some(json!({"kep": []})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    let (st, _) = s.get("/api/v1/forge/acme/app/retention", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .call(
            Method::PUT,
            "/api/v1/forge/acme/app/retention",
            Some(&s.admin),
            Some(body),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .call(
            Method::DELETE,
            "/api/v1/forge/acme/app/retention",
            Some(&dev),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .call(
            Method::DELETE,
            "/api/v1/forge/acme/app/retention",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    s.stop().await;
}

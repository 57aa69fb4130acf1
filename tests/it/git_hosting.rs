//! Git smart HTTP with the real `git`, and the tags API.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{git, git_err, git_ok, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clone_push_and_roles() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    s.repo("acme", "secret", true).await;
    let writer = s.user("writer").await;
    let reader = s.user("reader").await;
    let outsider = s.user("outsider").await;
    s.collaborator("acme/app", "writer", "write").await;
    s.collaborator("acme/app", "reader", "read").await;
    s.collaborator("acme/secret", "writer", "write").await;

    let wc = s.checkout("acme/app", &writer);
    git_ok(&wc, &["tag", "v0.1.0"]);
    git_ok(&wc, &["tag", "-a", "v0.2.0", "-m", "second release"]);
    git_ok(&wc, &["push", "-q", "origin", "main", "--tags"]);
    let head = git_ok(&wc, &["rev-parse", "HEAD"]);

    // Anonymous clone of a public repository.
    let tmp = s.dir.path();
    git_ok(
        tmp,
        &["clone", "-q", &s.git_url("acme/app", None), "anon-clone"],
    );
    assert_eq!(
        git_ok(&tmp.join("anon-clone"), &["rev-parse", "HEAD"]),
        head
    );
    // Protocol v2 fetch works too.
    git_ok(
        &tmp.join("anon-clone"),
        &["-c", "protocol.version=2", "fetch", "-q", "origin"],
    );

    // The reader can clone but not push.
    let rwc = s.checkout("acme/app", &reader);
    git_ok(&rwc, &["fetch", "-q", "origin"]);
    let err = git_err(&rwc, &["push", "-q", "origin", "main:other"]);
    assert!(err.contains("403"), "{err}");

    // Anonymous cannot clone a private repository; an outsider gets "not found".
    let err = git_err(tmp, &["clone", "-q", &s.git_url("acme/secret", None), "x1"]);
    assert!(
        err.contains("401")
            || err.contains("Authentication failed")
            || err.contains("could not read Username"),
        "{err}"
    );
    let err = git_err(
        tmp,
        &[
            "clone",
            "-q",
            &s.git_url("acme/secret", Some(&outsider)),
            "x2",
        ],
    );
    assert!(err.contains("404") || err.contains("not found"), "{err}");
    git_ok(
        tmp,
        &[
            "clone",
            "-q",
            &s.git_url("acme/secret", Some(&writer)),
            "x3",
        ],
    );

    // A wrong token is refused (git sends credentials only after a challenge, so use a
    // private repository and a push).
    let err = git_err(
        tmp,
        &[
            "clone",
            "-q",
            &s.git_url("acme/secret", Some("pfai_nope")),
            "x4",
        ],
    );
    assert!(
        err.contains("401") || err.contains("Authentication failed"),
        "{err}"
    );
    git_ok(
        &rwc,
        &[
            "remote",
            "set-url",
            "origin",
            &s.git_url("acme/app", Some("pfai_nope")),
        ],
    );
    let err = git_err(&rwc, &["push", "-q", "origin", "main:other"]);
    assert!(
        err.contains("401") || err.contains("Authentication failed"),
        "{err}"
    );

    // The tags API reads what git pushed, lightweight and annotated.
    let (st, tags) = s.get("/api/v1/forge/acme/app/tags", None).await;
    assert_eq!(st, StatusCode::OK);
    let tags = tags.as_array().unwrap();
    assert_eq!(tags.len(), 2);
    assert_eq!(tags[0]["name"], "v0.1.0");
    assert_eq!(tags[0]["commit"], head.as_str());
    assert_eq!(tags[0]["message"], "");
    assert!(tags[0]["tagger"].is_null());
    assert_eq!(tags[1]["name"], "v0.2.0");
    assert_eq!(tags[1]["commit"], head.as_str());
    assert_eq!(
        tags[1]["message"].as_str().unwrap().trim(),
        "second release"
    );
    assert_eq!(tags[1]["tagger"]["name"], "Tester");
    assert_eq!(tags[1]["tagger"]["email"], "tester@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tags_api_create_delete_and_validation() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let a = Some(s.admin.as_str());
    let wc = s.checkout("acme/app", &s.admin);
    std::fs::write(wc.join("f"), "x").unwrap();
    git_ok(&wc, &["add", "f"]);
    git_ok(&wc, &["commit", "-q", "-m", "second"]);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let head = git_ok(&wc, &["rev-parse", "HEAD"]);
    let first = git_ok(&wc, &["rev-parse", "HEAD~1"]);
    let tree = git_ok(&wc, &["rev-parse", "HEAD^{tree}"]);

    // Lightweight at a branch, annotated at a SHA.
    let (st, v) = s
        .post(
            "/api/v1/forge/acme/app/tags",
            a,
            json!({"tagName": "v1.0.0", "target": "main"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["commit"], head.as_str());
    assert_eq!(v["message"], "");
    let (st, v) = s
        .post(
            "/api/v1/forge/acme/app/tags",
            a,
            json!({"tagName": "v0.9.0", "target": first, "message": "old one"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["commit"], first.as_str());
    assert_eq!(v["tagger"]["name"], "admin");
    assert_ne!(
        v["id"],
        first.as_str(),
        "annotated: the ref points at a tag object"
    );

    // git sees both, and the annotated one is a real tag object.
    let remote = git_ok(&wc, &["ls-remote", "--tags", "origin"]);
    assert!(
        remote.contains("refs/tags/v1.0.0") && remote.contains("refs/tags/v0.9.0"),
        "{remote}"
    );
    git_ok(&wc, &["fetch", "-q", "origin", "--tags"]);
    assert_eq!(git_ok(&wc, &["cat-file", "-t", "v0.9.0"]), "tag");
    assert_eq!(git_ok(&wc, &["cat-file", "-t", "v1.0.0"]), "commit");

    // Duplicates and bad input.
    let (st, _) = s
        .post(
            "/api/v1/forge/acme/app/tags",
            a,
            json!({"tagName": "v1.0.0", "target": "main"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    for bad in [
        "..",
        "a..b",
        "a@{b",
        "x.lock",
        "-rf",
        "a b",
        "a~1",
        "a^",
        "a:b",
        "a?",
        "a*",
        "a[",
        "a\\b",
        "/a",
        "a/",
        "a//b",
        "HEAD",
        "bell\u{7}",
    ] {
        let (st, v) = s
            .post(
                "/api/v1/forge/acme/app/tags",
                a,
                json!({"tagName": bad, "target": "main"}),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}: {v}");
    }
    for target in [
        "nope",
        "0000000000000000000000000000000000000000",
        tree.as_str(),
        "--help",
        "",
    ] {
        let (st, v) = s
            .post(
                "/api/v1/forge/acme/app/tags",
                a,
                json!({"tagName": "t1", "target": target}),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{target:?}: {v}");
    }
    // Tag names with a slash, percent-encoded in the path.
    let (st, _) = s
        .post(
            "/api/v1/forge/acme/app/tags",
            a,
            json!({"tagName": "release/2026", "target": "main"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(
        s.get("/api/v1/forge/acme/app/tags/release%2F2026", None)
            .await
            .0,
        StatusCode::OK
    );

    // Pagination with a Link header.
    let r = s
        .req(Method::GET, "/api/v1/forge/acme/app/tags?limit=2", None)
        .send()
        .await
        .unwrap();
    let link = r
        .headers()
        .get("link")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        link.contains("page=2") && link.contains("rel=\"next\""),
        "{link}"
    );
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page.as_array().unwrap().len(), 2);
    let (_, p2) = s
        .get("/api/v1/forge/acme/app/tags?page=2&limit=2", None)
        .await;
    assert_eq!(p2.as_array().unwrap().len(), 1);
    for q in ["page=0", "limit=0", "limit=1000000", "page=-1", "limit=x"] {
        let (st, _) = s
            .get(&format!("/api/v1/forge/acme/app/tags?{q}"), None)
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}");
    }

    // Delete.
    let (st, _) = s
        .call(
            Method::DELETE,
            "/api/v1/forge/acme/app/tags/v1.0.0",
            a,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        s.get("/api/v1/forge/acme/app/tags/v1.0.0", None).await.0,
        StatusCode::NOT_FOUND
    );
    let remote = git_ok(&wc, &["ls-remote", "--tags", "origin"]);
    assert!(!remote.contains("refs/tags/v1.0.0"));
    let (st, _) = s
        .call(
            Method::DELETE,
            "/api/v1/forge/acme/app/tags/v1.0.0",
            a,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Anonymous cannot create tags.
    let (st, _) = s
        .post(
            "/api/v1/forge/acme/app/tags",
            None,
            json!({"tagName": "z", "target": "main"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let _ = git(&wc, &["status"]);
}

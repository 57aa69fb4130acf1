//! Tag protection through every path: REST and git (delete, force-move, mixed pushes).

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{git_err, git_ok, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn protected_tags_need_admin_on_every_path() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let writer = s.user("writer").await;
    let maint = s.user("maint").await;
    s.collaborator("acme/app", "writer", "write").await;
    s.collaborator("acme/app", "maint", "admin").await;
    let rules = "/api/v1/forge/acme/app/tag-protections";

    // Only admins change rules; everyone who can read sees them.
    let (st, _) = s.post(rules, Some(&writer), json!({"pattern": "v*"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, rule) = s.post(rules, Some(&maint), json!({"pattern": "v*"})).await;
    assert_eq!(st, StatusCode::CREATED, "{rule}");
    assert_eq!(
        s.post(rules, Some(&maint), json!({"pattern": "v*"}))
            .await
            .0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        s.post(rules, Some(&maint), json!({"pattern": ""})).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        s.post(rules, Some(&maint), json!({"pattern": "a["}))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let (st, list) = s.get(rules, None).await;
    assert_eq!((st, list.as_array().unwrap().len()), (StatusCode::OK, 1));

    // The writer pushes commits and tags: creating protected tags is allowed.
    let wc = s.checkout("acme/app", &writer);
    git_ok(&wc, &["tag", "v1.0.0"]);
    git_ok(&wc, &["tag", "version2"]);
    git_ok(&wc, &["tag", "nightly"]);
    git_ok(&wc, &["push", "-q", "origin", "main", "--tags"]);
    let (_, tags) = s.get("/api/v1/forge/acme/app/tags", None).await;
    let protected: Vec<(String, bool)> = tags
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["protected"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        protected,
        vec![
            ("nightly".into(), false),
            ("v1.0.0".into(), true),
            ("version2".into(), true)
        ],
        "v* also matches version2"
    );
    // A release anchored on the protected tag.
    let (st, _) = s
        .post(
            "/api/v1/forge/acme/app/releases",
            Some(&writer),
            json!({"tagName": "v1.0.0"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);

    // REST delete as write: 403; the unprotected one is fine.
    let (st, v) = s
        .call(
            Method::DELETE,
            "/api/v1/forge/acme/app/tags/v1.0.0",
            Some(&writer),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("protected"));
    let (st, _) = s
        .call(
            Method::DELETE,
            "/api/v1/forge/acme/app/tags/nightly",
            Some(&writer),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);

    // Release deletion never deletes the tag.
    let (st, _) = s
        .call(
            Method::DELETE,
            "/api/v1/forge/acme/app/releases/v1.0.0",
            Some(&writer),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        s.get("/api/v1/forge/acme/app/tags/v1.0.0", None).await.0,
        StatusCode::OK
    );

    // git push --delete as write: refused with our message, nothing changes.
    let before = git_ok(&wc, &["ls-remote", "origin"]);
    let err = git_err(&wc, &["push", "origin", "--delete", "v1.0.0"]);
    assert!(err.contains("protected by rule \"v*\""), "{err}");
    // Force-moving the tag to a new commit: refused.
    std::fs::write(wc.join("f"), "x").unwrap();
    git_ok(&wc, &["add", "f"]);
    git_ok(&wc, &["commit", "-q", "-m", "next"]);
    git_ok(&wc, &["tag", "-f", "v1.0.0"]);
    let err = git_err(&wc, &["push", "--force", "origin", "refs/tags/v1.0.0"]);
    assert!(err.contains("protected"), "{err}");
    // A push mixing an allowed branch update with a protected-tag change: refused as a whole.
    let err = git_err(
        &wc,
        &[
            "push",
            "--force",
            "origin",
            "main",
            "refs/tags/v1.0.0",
            ":refs/tags/version2",
        ],
    );
    assert!(err.contains("protected"), "{err}");
    assert_eq!(
        git_ok(&wc, &["ls-remote", "origin"]),
        before,
        "no ref of a refused push changes"
    );
    // Same branch push alone works.
    git_ok(&wc, &["push", "-q", "origin", "main"]);

    // An admin can delete and move protected tags, by REST and by git.
    let awc = s.checkout("acme/app", &maint);
    git_ok(&awc, &["fetch", "-q", "origin", "--tags"]);
    git_ok(&awc, &["push", "-q", "origin", "--delete", "version2"]);
    let (st, _) = s
        .call(
            Method::DELETE,
            "/api/v1/forge/acme/app/tags/v1.0.0",
            Some(&maint),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);

    // Removing the rule (admin) lifts the protection.
    let id = rule["id"].as_u64().unwrap();
    assert_eq!(
        s.call(
            Method::DELETE,
            &format!("{rules}/{id}"),
            Some(&writer),
            None
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.call(Method::DELETE, &format!("{rules}/{id}"), Some(&maint), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    git_ok(&wc, &["push", "-q", "origin", "refs/tags/v1.0.0"]);
    git_ok(&wc, &["push", "-q", "origin", "--delete", "v1.0.0"]);
}

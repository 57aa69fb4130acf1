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

/// A pkt-line: 4 hex digits of length (including themselves), then the payload.
pub(crate) fn pkt(payload: &str) -> String {
    format!("{:04x}{payload}", payload.len() + 4)
}

/// An empty pack (what a push whose objects the server already has sends after its commands).
pub(crate) fn empty_pack() -> Vec<u8> {
    let out = std::process::Command::new("git")
        .args(["pack-objects", "--stdout"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

/// Sends a hand-built `git-receive-pack` request; returns the status and the body as text.
pub(crate) async fn raw_push(
    s: &TestServer,
    token: &str,
    commands: &str,
    pack: bool,
) -> (StatusCode, String) {
    let mut body = commands.as_bytes().to_vec();
    if pack {
        body.extend(empty_pack());
    }
    let resp = s
        .req(Method::POST, "/acme/app.git/git-receive-pack", None)
        .basic_auth("x", Some(token))
        .header("content-type", "application/x-git-receive-pack-request")
        .body(body)
        .send()
        .await
        .unwrap();
    let st = resp.status();
    (
        st,
        String::from_utf8_lossy(&resp.bytes().await.unwrap()).into_owned(),
    )
}

pub(crate) async fn tag_commit(s: &TestServer, tag: &str) -> Option<String> {
    let (st, v) = s
        .get(&format!("/api/v1/forge/acme/app/tags/{tag}"), None)
        .await;
    (st == StatusCode::OK).then(|| v["commit"].as_str().unwrap().to_owned())
}

/// The attack this prevents: a `write` user deleted and force-moved a protected tag by hiding
/// the ref-update command inside a push certificate, where the server's request parser did not
/// look but git applied it. Every encoding is tried; the protected tag never changes, and the
/// hook (which sees what git applies) refuses plain commands on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn protected_tag_cannot_be_changed_by_any_push_encoding() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let writer = s.user("writer").await;
    s.collaborator("acme/app", "writer", "write").await;
    let (st, _) = s
        .post(
            "/api/v1/forge/acme/app/tag-protections",
            Some(&s.admin),
            json!({"pattern": "v*"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let wc = s.checkout("acme/app", &writer);
    git_ok(&wc, &["tag", "v1"]);
    std::fs::write(wc.join("f"), "x").unwrap();
    git_ok(&wc, &["add", "f"]);
    git_ok(&wc, &["commit", "-q", "-m", "next"]);
    git_ok(&wc, &["push", "-q", "origin", "main", "v1"]);
    let c1 = tag_commit(&s, "v1").await.unwrap();
    let c2 = git_ok(&wc, &["rev-parse", "HEAD"]).trim().to_owned();
    assert_ne!(c1, c2);
    let zero = "0".repeat(40);
    let caps = "\0report-status side-band-64k agent=git/2.47\n";
    let cert = |commands: &str| {
        let mut s = pkt(&format!("push-cert{caps}"));
        s += &pkt(&format!(
            "certificate version 0.1\npusher writer <w@example.com> 1700000000 +0000\npushee http://127.0.0.1/acme/app.git\nnonce 1700000000-abc\n\n{commands}-----BEGIN PGP SIGNATURE-----\nZmFrZQ==\n-----END PGP SIGNATURE-----\n"
        ));
        s + &pkt("push-cert-end\n")
    };
    let delete = format!("{c1} {zero} refs/tags/v1\n");
    let moved = format!("{c1} {c2} refs/tags/v1\n");
    let attempts: Vec<(&str, String, bool)> = vec![
        ("push-cert delete", cert(&delete) + "0000", false),
        ("push-cert force-move", cert(&moved) + "0000", true),
        (
            "certificate lines split into their own pkt-lines",
            pkt(&format!("push-cert{caps}"))
                + &pkt("certificate version 0.1\n")
                + &pkt("pusher writer <w@example.com> 1700000000 +0000\n")
                + &pkt("\n")
                + &pkt(&delete)
                + &pkt("push-cert-end\n")
                + "0000",
            false,
        ),
        (
            "plain branch update mixed with a certificate",
            pkt(&format!("{c1} {c2} refs/heads/main{caps}")) + &cert(&delete) + "0000",
            true,
        ),
        (
            "several commands in one pkt-line",
            pkt(&format!(
                "{c1} {c2} refs/heads/main{caps}{c1} {zero} refs/tags/v1\n"
            )) + "0000",
            true,
        ),
        (
            "a delete claiming the tag has the null id (git deletes without comparing)",
            pkt(&format!("{zero} {zero} refs/tags/v1{caps}")) + "0000",
            false,
        ),
        (
            "two commands in one pkt-line after the capabilities",
            pkt(&format!("{c1} {c2} refs/heads/other{caps}"))
                + &pkt(&format!(
                    "{zero} {c2} refs/heads/x\n{c1} {zero} refs/tags/v1\n"
                ))
                + "0000",
            true,
        ),
    ];
    for (what, commands, pack) in attempts {
        let (st, body) = raw_push(&s, &writer, &commands, pack).await;
        assert!(
            st.is_client_error(),
            "{what}: refused before git runs, got {st}: {body}"
        );
        if what.contains("cert") {
            assert!(body.contains("push certificates"), "{what}: {body}");
        }
        assert_eq!(
            tag_commit(&s, "v1").await.as_deref(),
            Some(c1.as_str()),
            "{what}"
        );
    }

    // Plain commands pass the gate and meet the hook: delete and move refused with the rule's
    // name, the whole push (with an allowed branch update) rejected.
    for (what, commands, pack) in [
        (
            "plain delete",
            pkt(&format!("{}{caps}", delete.trim_end())) + "0000",
            false,
        ),
        (
            "plain force-move with a branch update",
            pkt(&format!("{}{caps}", moved.trim_end()))
                + &pkt(&format!("{zero} {c2} refs/heads/side\n"))
                + "0000",
            true,
        ),
    ] {
        let (st, body) = raw_push(&s, &writer, &commands, pack).await;
        assert_eq!(st, StatusCode::OK, "{what}: {body}");
        assert!(body.contains("protected by rule \"v*\""), "{what}: {body}");
        assert!(body.contains("pre-receive hook declined"), "{what}: {body}");
        assert_eq!(
            tag_commit(&s, "v1").await.as_deref(),
            Some(c1.as_str()),
            "{what}"
        );
    }
    assert_eq!(git_ok(&wc, &["ls-remote", "origin", "refs/heads/side"]), "");

    // What is allowed still works over the same raw path: a writer creates a protected tag,
    // an admin deletes it.
    let create = pkt(&format!("{zero} {c2} refs/tags/v2{caps}")) + "0000";
    let (st, body) = raw_push(&s, &writer, &create, true).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(body.contains("ok refs/tags/v2"), "{body}");
    assert_eq!(tag_commit(&s, "v2").await.as_deref(), Some(c2.as_str()));
    let del = pkt(&format!("{c2} {zero} refs/tags/v2{caps}")) + "0000";
    let (st, body) = raw_push(&s, &s.admin, &del, false).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(tag_commit(&s, "v2").await, None, "{body}");
}

/// The rules travel to the pre-receive hook in one environment variable: the per-repository
/// cap keeps them within what the kernel allows, and the last of 100 long rules still protects.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_hundredth_rule_still_reaches_the_hook_and_a_hundred_and_first_is_refused() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let writer = s.user("writer").await;
    s.collaborator("acme/app", "writer", "write").await;
    let rules = "/api/v1/forge/acme/app/tag-protections";
    let long = "x".repeat(240);
    for i in 0..100 {
        let (st, v) = s
            .post(
                rules,
                Some(&s.admin),
                json!({"pattern": format!("r{i:03}-{long}*")}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "rule {i}: {v}");
    }
    let (st, v) = s
        .post(rules, Some(&s.admin), json!({"pattern": "one-more-*"}))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let wc = s.checkout("acme/app", &writer);
    let tag = format!("r099-{long}-1");
    git_ok(&wc, &["tag", &tag]);
    git_ok(&wc, &["push", "-q", "origin", "main", &tag]);
    let err = git_err(&wc, &["push", "origin", "--delete", &tag]);
    assert!(err.contains("is protected by rule"), "{err}");
    assert!(git_ok(&wc, &["ls-remote", "origin"]).contains(&tag));
}

//! Immutable git protection rules: a git tag matching a rule marked `immutable` can be created,
//! then never moved or deleted by anyone, site admins included, on every path (REST, web UI,
//! CLI, `git push` in every encoding the hardening tests use). Registry rules have their own
//! tests (tests/it/registry_protection.rs).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{git_err, git_ok, Cli, TestServer};
use crate::protection::{pkt, raw_push, tag_commit};
use crate::ui::Web;

const RULES: &str = "/api/v1/forge/acme/app/tag-protections";

fn message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_immutable_git_rule_lets_a_tag_be_created_but_never_moved_or_deleted_by_anyone() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let writer = s.user("writer").await;
    let maint = s.user("maint").await;
    s.collaborator("acme/app", "writer", "write").await;
    s.collaborator("acme/app", "maint", "admin").await;

    // A git-only immutable rule (the default target), created by a repository admin.
    let (st, rule) = s
        .post(
            RULES,
            Some(&maint),
            json!({"pattern": "v*", "immutable": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{rule}");
    assert_eq!(
        (rule["target"].clone(), rule["immutable"].clone()),
        (json!("git"), json!(true))
    );

    // Creating matching tags is free: by push and over REST, as a writer.
    let wc = s.checkout("acme/app", &writer);
    git_ok(&wc, &["tag", "v1"]);
    std::fs::write(wc.join("f"), "x").unwrap();
    git_ok(&wc, &["add", "f"]);
    git_ok(&wc, &["commit", "-q", "-m", "next"]);
    git_ok(&wc, &["push", "-q", "origin", "main", "v1"]);
    let c1 = tag_commit(&s, "v1").await.unwrap();
    let c2 = git_ok(&wc, &["rev-parse", "HEAD"]).trim().to_owned();
    assert_ne!(c1, c2);
    let (st, v) = s
        .post(
            "/api/v1/forge/acme/app/tags",
            Some(&writer),
            json!({"tagName": "v2", "target": "main"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(
        (v["protected"].clone(), v["immutable"].clone()),
        (json!(true), json!(true)),
        "{v}"
    );
    git_ok(&wc, &["tag", "other"]);
    git_ok(&wc, &["push", "-q", "origin", "other"]);

    // REST: nobody deletes it, the site admin included; 403 naming the rule.
    for (who, token) in [
        ("writer", &writer),
        ("repo admin", &maint),
        ("site admin", &s.admin),
    ] {
        let (st, v) = s
            .call(
                Method::DELETE,
                "/api/v1/forge/acme/app/tags/v1",
                Some(token),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{who}: {v}");
        let m = message(&v);
        assert!(
            m.contains("immutable") && m.contains("\"v*\""),
            "{who}: {m}"
        );
    }

    // git, as the site admin: delete, force-move, refspec forms, atomic.
    let awc = s.checkout("acme/app", &s.admin);
    git_ok(&awc, &["fetch", "-q", "origin", "--tags"]);
    git_ok(&awc, &["reset", "-q", "--hard", "origin/main"]);
    let err = git_err(&awc, &["push", "origin", "--delete", "v1"]);
    assert!(err.contains("immutable"), "{err}");
    let err = git_err(&awc, &["push", "origin", ":refs/tags/v1"]);
    assert!(err.contains("immutable"), "{err}");
    git_ok(&awc, &["tag", "-f", "v1", "HEAD"]);
    let err = git_err(&awc, &["push", "--force", "origin", "refs/tags/v1"]);
    assert!(err.contains("immutable"), "{err}");
    let err = git_err(
        &awc,
        &[
            "push",
            "--force",
            "origin",
            "main",
            "+refs/tags/v1:refs/tags/v1",
        ],
    );
    assert!(err.contains("immutable"), "{err}");
    let err = git_err(&awc, &["push", "--force", "--atomic", "origin", "v1"]);
    assert!(err.contains("immutable"), "{err}");
    assert_eq!(tag_commit(&s, "v1").await.as_deref(), Some(c1.as_str()));

    // Hand-built pushes, as the site admin: certificates are refused at the gate; plain
    // commands in every packing meet the hook, which refuses the whole push.
    let zero = "0".repeat(40);
    let caps = "\0report-status side-band-64k agent=git/2.47\n";
    let cert = |commands: &str| {
        let mut s = pkt(&format!("push-cert{caps}"));
        s += &pkt(&format!(
            "certificate version 0.1\npusher admin <a@example.com> 1700000000 +0000\npushee http://127.0.0.1/acme/app.git\nnonce 1700000000-abc\n\n{commands}-----BEGIN PGP SIGNATURE-----\nZmFrZQ==\n-----END PGP SIGNATURE-----\n"
        ));
        s + &pkt("push-cert-end\n")
    };
    let delete = format!("{c1} {zero} refs/tags/v1\n");
    let moved = format!("{c1} {c2} refs/tags/v1\n");
    for (what, commands, pack) in [
        ("push-cert delete", cert(&delete) + "0000", false),
        ("push-cert force-move", cert(&moved) + "0000", true),
        (
            "plain delete",
            pkt(&format!("{}{caps}", delete.trim_end())) + "0000",
            false,
        ),
        (
            "a delete claiming the null id",
            pkt(&format!("{zero} {zero} refs/tags/v1{caps}")) + "0000",
            false,
        ),
        (
            "plain force-move with a branch update",
            pkt(&format!("{}{caps}", moved.trim_end()))
                + &pkt(&format!("{zero} {c2} refs/heads/side\n"))
                + "0000",
            true,
        ),
        (
            "several commands in one pkt-line",
            pkt(&format!(
                "{zero} {c2} refs/heads/side2{caps}{c1} {zero} refs/tags/v1\n"
            )) + "0000",
            true,
        ),
        (
            "two commands in one pkt-line after the capabilities",
            pkt(&format!("{zero} {c2} refs/heads/side3{caps}"))
                + &pkt(&format!(
                    "{zero} {c2} refs/heads/x\n{c1} {c2} refs/tags/v1\n"
                ))
                + "0000",
            true,
        ),
    ] {
        let (st, body) = raw_push(&s, &s.admin, &commands, pack).await;
        if what.contains("cert") {
            assert_eq!(st, StatusCode::FORBIDDEN, "{what}: {body}");
        } else if what.starts_with("plain") {
            // Plain commands pass the gate and meet the hook.
            assert_eq!(st, StatusCode::OK, "{what}: {body}");
            assert!(
                body.contains("immutable") && body.contains("pre-receive hook declined"),
                "{what}: {body}"
            );
        } else {
            // Refused at the gate (malformed) or by the hook, as in tests/it/protection.rs.
            assert!(
                st.is_client_error() || body.contains("immutable"),
                "{what}: {st} {body}"
            );
        }
        assert_eq!(
            tag_commit(&s, "v1").await.as_deref(),
            Some(c1.as_str()),
            "{what}"
        );
    }
    assert_eq!(
        git_ok(&awc, &["ls-remote", "origin", "refs/heads/side*"]),
        ""
    );

    // The web UI: the lock is shown, no delete is offered, and a forged delete is refused.
    let mut web = Web::new(&s);
    web.sign_in("maint", "correct horse").await;
    let page = web.get("/acme/app/tags").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Immutable"), "{}", page.body);
    assert!(
        !page.body.contains("/acme/app/tags/delete/v1\""),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("/acme/app/tags/delete/other"),
        "{}",
        page.body
    );
    let csrf = page.csrf();
    let p = web
        .post("/acme/app/tags/delete/v1", &[("_csrf", csrf.as_str())])
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
    assert!(p.body.contains("immutable"), "{}", p.body);

    // The CLI, as the site admin.
    let cli = Cli::new(&s);
    let root = s.dir.path().to_owned();
    let list = cli.ok(&root, &["tag", "list", "-R", "acme/app"]);
    let v1 = list
        .lines()
        .find(|l| l.starts_with("v1 "))
        .unwrap_or_default();
    assert!(v1.contains("immutable"), "{list}");
    let (_, err) = cli.fails(
        &root,
        Some(&s.admin),
        &["tag", "delete", "v2", "-R", "acme/app"],
    );
    assert!(err.contains("immutable"), "{err}");

    assert_eq!(tag_commit(&s, "v1").await.as_deref(), Some(c1.as_str()));
    assert!(tag_commit(&s, "v2").await.is_some());
    // Tags the rule does not match stay free.
    git_ok(&wc, &["push", "-q", "origin", "--delete", "other"]);
}

/// An immutable rule and a mutable one over the same tag: the stricter decides, so adding a
/// broad mutable rule never reopens an immutable tag to admins. Removing the immutable rule
/// (an admin's decision, visible in the rule list) gives the admin override back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stricter_of_two_matching_git_rules_decides() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let (st, _) = s.post(RULES, Some(&s.admin), json!({"pattern": "*"})).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, locked) = s
        .post(
            RULES,
            Some(&s.admin),
            json!({"pattern": "v[0-9]*", "target": "both", "immutable": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{locked}");
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["tag", "v1"]);
    git_ok(&wc, &["tag", "nightly"]);
    git_ok(&wc, &["push", "-q", "origin", "main", "--tags"]);
    let err = git_err(&wc, &["push", "origin", "--delete", "v1"]);
    assert!(
        err.contains("immutable") && err.contains("v[0-9]*"),
        "{err}"
    );
    let (st, v) = s
        .call(
            Method::DELETE,
            "/api/v1/forge/acme/app/tags/v1",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    // The mutable rule alone: admins may.
    git_ok(&wc, &["push", "-q", "origin", "--delete", "nightly"]);
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("{RULES}/{}", locked["id"]),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    git_ok(&wc, &["push", "-q", "origin", "--delete", "v1"]);
    assert_eq!(tag_commit(&s, "v1").await, None);
}

/// `fsck --repair` deletes the tag a release left behind when the server stopped between
/// creating it and recording the release; a tag an immutable rule matches is kept instead (only
/// the pending record goes), since nobody may delete such a tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fsck_repair_keeps_an_orphan_release_tag_that_an_immutable_rule_matches() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let (st, _) = s
        .post(
            RULES,
            Some(&s.admin),
            json!({"pattern": "v*", "immutable": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let head = git_ok(&wc, &["rev-parse", "HEAD"]).trim().to_owned();
    let dir = s.stop().await;
    // What a kill between a release's tag and its commit leaves, for a locked and a free tag.
    let data = dir.path().join("data");
    let bare = data.join("repos/acme/app.git");
    git_ok(&bare, &["update-ref", "refs/tags/v9", &head]);
    git_ok(&bare, &["update-ref", "refs/tags/x9", &head]);
    {
        let db = pfai::storage::Db::open(&data.join("pfai.redb")).unwrap();
        let commit = head.clone();
        db.write(move |txn| {
            let mut t = txn.open_table(pfai::storage::tables::PENDING_RELEASE_TAGS)?;
            for tag in ["v9", "x9"] {
                t.insert(("acme/app", tag), commit.as_str())?;
            }
            Ok::<_, pfai::storage::StorageError>(())
        })
        .await
        .unwrap();
    }
    let s = TestServer::start_in(dir, |_| {}).await;
    let (st, v) = s
        .call(
            Method::POST,
            "/api/v1/admin/fsck?repair=true",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let of = |tag: &str| {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["tag"] == tag)
            .unwrap_or_else(|| panic!("{tag} in {v:#}"))
            .clone()
    };
    let locked = of("v9");
    assert_eq!(locked["kind"], "orphan_release_tag", "{locked}");
    assert!(
        locked["repaired"]
            .as_str()
            .unwrap()
            .contains("the tag stays"),
        "{locked}"
    );
    assert_eq!(of("x9")["repaired"], "deleted the tag", "{v:#}");
    assert_eq!(tag_commit(&s, "v9").await.as_deref(), Some(head.as_str()));
    assert_eq!(tag_commit(&s, "x9").await, None);
    let (_, v) = s
        .call(Method::POST, "/api/v1/admin/fsck", Some(&s.admin), None)
        .await;
    assert_eq!(v["problems"], 0, "{v:#}");
}

//! Immutable releases (`immutableReleases`): once published with the setting on, a release's tag
//! cannot be deleted or moved on any path (REST, git in every encoding, UI, CLI), its assets
//! cannot change, it cannot be deleted or turned back into a draft, and its tag name is never
//! reused, not even by a repository created again under the same name.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{git_err, git_ok, Cli, TestServer};
use crate::protection::{pkt, raw_push, tag_commit};
use crate::ui::Web;

const REL: &str = "/api/v1/forge/acme/app/releases";
const SETTINGS: &str = "/api/v1/forge/acme/app/settings";

fn message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A 409 that names the release and the setting.
fn assert_locked(st: StatusCode, v: &Value, tag: &str, what: &str) {
    assert_eq!(st, StatusCode::CONFLICT, "{what}: {v}");
    let m = message(v);
    assert!(
        m.contains(tag) && m.contains("immutable") && m.contains("immutableReleases"),
        "{what}: {m}"
    );
}

async fn set_repo(s: &TestServer, token: &str, value: Value) -> (StatusCode, Value) {
    s.call(
        Method::PATCH,
        SETTINGS,
        Some(token),
        Some(json!({ "immutableReleases": value })),
    )
    .await
}

async fn release(s: &TestServer, tag: &str) -> Value {
    let (st, v) = s.get(&format!("{REL}/{tag}"), Some(&s.admin)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_published_immutable_release_refuses_every_change_but_its_name_and_notes() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let writer = s.user("writer").await;
    let maint = s.user("maint").await;
    s.collaborator("acme/app", "writer", "write").await;
    s.collaborator("acme/app", "maint", "admin").await;
    let wc = s.checkout("acme/app", &writer);
    git_ok(&wc, &["push", "-q", "origin", "main"]);

    // A release published before the setting stays mutable.
    let (st, v) = s
        .post(
            REL,
            Some(&writer),
            json!({"tagName": "v0", "targetCommit": "main"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["immutable"], false);

    // Only a repository admin changes the setting; readers see it.
    assert_eq!(
        set_repo(&s, &writer, json!(true)).await.0,
        StatusCode::FORBIDDEN
    );
    let (st, v) = set_repo(&s, &maint, json!(true)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"immutableReleases": true, "immutableReleasesSource": "repository"})
    );
    assert_eq!(s.get(SETTINGS, None).await.1["immutableReleases"], true);

    // Drafts stay mutable: attach, remove and replace assets, then publish.
    let (st, v) = s
        .post(
            REL,
            Some(&writer),
            json!({"tagName": "v1", "targetCommit": "main", "draft": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["immutable"], false);
    let (st, a) = s
        .upload_asset("acme/app", "v1", "a.bin", b"first".to_vec(), &writer)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("{REL}/v1/assets/{}", a["id"]),
            Some(&writer),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, a) = s
        .upload_asset("acme/app", "v1", "a.bin", b"final".to_vec(), &writer)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("{REL}/v1"),
            Some(&writer),
            Some(json!({"draft": false})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["immutable"], true, "publishing made it immutable: {v}");
    let tag_at = tag_commit(&s, "v1").await.expect("tag made on publish");

    // Assets: no upload, no delete (a replace is one of the two).
    let (st, v) = s
        .upload_asset("acme/app", "v1", "b.bin", b"more".to_vec(), &maint)
        .await;
    assert_locked(st, &v, "v1", "asset upload");
    let (st, v) = s
        .call(
            Method::DELETE,
            &format!("{REL}/v1/assets/{}", a["id"]),
            Some(&maint),
            None,
        )
        .await;
    assert_locked(st, &v, "v1", "asset delete");
    // The release: no delete (not even by the site admin), no way back to draft, no other field.
    for token in [&writer, &maint, &s.admin] {
        let (st, v) = s
            .call(Method::DELETE, &format!("{REL}/v1"), Some(token), None)
            .await;
        assert_locked(st, &v, "v1", "release delete");
    }
    for patch in [json!({"draft": true}), json!({"prerelease": true})] {
        let (st, v) = s
            .call(
                Method::PATCH,
                &format!("{REL}/v1"),
                Some(&maint),
                Some(patch.clone()),
            )
            .await;
        assert_locked(st, &v, "v1", &patch.to_string());
    }
    // Name and notes stay editable.
    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("{REL}/v1"),
            Some(&writer),
            Some(json!({"name": "One", "body": "notes"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (v["name"].clone(), v["body"].clone()),
        (json!("One"), json!("notes"))
    );
    let v = release(&s, "v1").await;
    assert_eq!(v["assets"].as_array().unwrap().len(), 1);
    assert_eq!(v["draft"], false);

    // The tag over REST: refused for admins too (protection rules would let them).
    for token in [&maint, &s.admin] {
        let (st, v) = s
            .call(
                Method::DELETE,
                "/api/v1/forge/acme/app/tags/v1",
                Some(token),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::CONFLICT, "{v}");
        assert!(message(&v).contains("immutableReleases"), "{v}");
    }

    // The tag over git, as a repository admin, in every form.
    let awc = s.checkout("acme/app", &maint);
    git_ok(&awc, &["fetch", "-q", "origin", "main", "--tags"]);
    git_ok(&awc, &["reset", "-q", "--hard", "origin/main"]);
    let err = git_err(&awc, &["push", "origin", "--delete", "v1"]);
    assert!(err.contains("immutableReleases"), "{err}");
    let err = git_err(&awc, &["push", "origin", ":refs/tags/v1"]);
    assert!(err.contains("immutableReleases"), "{err}");
    std::fs::write(awc.join("f"), "x").unwrap();
    git_ok(&awc, &["add", "f"]);
    git_ok(&awc, &["commit", "-q", "-m", "next"]);
    git_ok(&awc, &["tag", "-f", "v1"]);
    let err = git_err(&awc, &["push", "--force", "origin", "refs/tags/v1"]);
    assert!(err.contains("immutableReleases"), "{err}");
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
    assert!(err.contains("immutableReleases"), "{err}");
    let err = git_err(&awc, &["push", "--force", "--atomic", "origin", "v1"]);
    assert!(err.contains("immutableReleases"), "{err}");
    let moved = git_ok(&awc, &["rev-parse", "HEAD"]).trim().to_owned();
    assert_eq!(tag_commit(&s, "v1").await.as_deref(), Some(tag_at.as_str()));
    // The branch alone goes through (so the server has the commit the raw pushes name).
    git_ok(&awc, &["push", "-q", "origin", "main"]);

    // Hand-built pushes (the encodings of protection.rs) meet the gate or the hook too.
    let zero = "0".repeat(40);
    let caps = "\0report-status side-band-64k agent=git/2.47\n";
    let cert = |commands: &str| {
        let mut s = pkt(&format!("push-cert{caps}"));
        s += &pkt(&format!(
            "certificate version 0.1\npusher admin <a@example.com> 1700000000 +0000\npushee http://127.0.0.1/acme/app.git\nnonce 1700000000-abc\n\n{commands}-----BEGIN PGP SIGNATURE-----\nZmFrZQ==\n-----END PGP SIGNATURE-----\n"
        ));
        s + &pkt("push-cert-end\n")
    };
    for (what, commands, pack) in [
        (
            "push-cert delete",
            cert(&format!("{tag_at} {zero} refs/tags/v1\n")) + "0000",
            false,
        ),
        (
            "push-cert force-move",
            cert(&format!("{tag_at} {moved} refs/tags/v1\n")) + "0000",
            true,
        ),
        (
            "two commands in one pkt-line after the capabilities",
            pkt(&format!("{zero} {moved} refs/heads/side3{caps}"))
                + &pkt(&format!(
                    "{zero} {moved} refs/heads/side4\n{tag_at} {zero} refs/tags/v1\n"
                ))
                + "0000",
            true,
        ),
        (
            "plain delete",
            pkt(&format!("{tag_at} {zero} refs/tags/v1{caps}")) + "0000",
            false,
        ),
        (
            "a delete claiming the null id",
            pkt(&format!("{zero} {zero} refs/tags/v1{caps}")) + "0000",
            false,
        ),
        (
            "a move hidden after a branch update in one pkt-line",
            pkt(&format!(
                "{zero} {moved} refs/heads/side{caps}{tag_at} {moved} refs/tags/v1\n"
            )) + "0000",
            true,
        ),
        (
            "two pkt-lines, the move second",
            pkt(&format!("{zero} {moved} refs/heads/side2{caps}"))
                + &pkt(&format!("{tag_at} {moved} refs/tags/v1\n"))
                + "0000",
            true,
        ),
    ] {
        let (st, body) = raw_push(&s, &s.admin, &commands, pack).await;
        assert!(
            st.is_client_error() || body.contains("immutableReleases"),
            "{what}: {st} {body}"
        );
        assert_eq!(
            tag_commit(&s, "v1").await.as_deref(),
            Some(tag_at.as_str()),
            "{what}"
        );
    }
    assert_eq!(
        git_ok(&awc, &["ls-remote", "origin", "refs/heads/side*"]),
        ""
    );

    // The UI: the delete form is refused, the page shows the lock and offers no delete.
    let mut web = Web::new(&s);
    web.sign_in("maint", "correct horse").await;
    let page = web.get("/acme/app/releases").await;
    assert!(page.body.contains("Immutable"), "{}", page.body);
    assert!(!page.body.contains("/acme/app/releases/delete/v1\""));
    let token = page.csrf();
    let p = web
        .post("/acme/app/releases/delete/v1", &[("_csrf", token.as_str())])
        .await;
    assert_eq!(p.status, StatusCode::CONFLICT, "{}", p.body);
    assert!(p.body.contains("immutableReleases"), "{}", p.body);
    let p = web
        .post(
            &format!("/acme/app/releases/delete-asset/v1/{}", a["id"]),
            &[("_csrf", token.as_str())],
        )
        .await;
    assert_eq!(p.status, StatusCode::CONFLICT, "{}", p.body);
    let p = web
        .post("/acme/app/tags/delete/v1", &[("_csrf", token.as_str())])
        .await;
    assert_eq!(p.status, StatusCode::CONFLICT, "{}", p.body);
    let page = web.get("/acme/app/releases/tag/v1").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Immutable"), "{}", page.body);
    let page = web.get("/acme/app/releases/edit/v1").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("delete-asset"), "{}", page.body);

    // The CLI gets the same refusal, with the reason.
    let cli = Cli::new(&s);
    let root = s.dir.path().to_owned();
    let (_, err) = cli.fails(
        &root,
        Some(&maint),
        &["release", "delete", "v1", "-R", "acme/app", "--yes"],
    );
    assert!(err.contains("immutableReleases"), "{err}");

    // Created published: immutable at once. Drafts: mutable (deleted here). Before the
    // setting: still mutable.
    let (st, v) = s
        .post(
            REL,
            Some(&writer),
            json!({"tagName": "v2", "targetCommit": "main"}),
        )
        .await;
    assert_eq!(
        (st, v["immutable"].clone()),
        (StatusCode::CREATED, json!(true)),
        "{v}"
    );
    let (st, _) = s
        .post(
            REL,
            Some(&writer),
            json!({"tagName": "v3", "targetCommit": "main", "draft": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    for tag in ["v3", "v0"] {
        let (st, v) = s
            .call(Method::DELETE, &format!("{REL}/{tag}"), Some(&writer), None)
            .await;
        assert_eq!(st, StatusCode::NO_CONTENT, "{tag}: {v}");
    }
    git_ok(&awc, &["fetch", "-q", "origin", "--tags", "--force"]);
    git_ok(&awc, &["push", "-q", "origin", "--delete", "v0"]);
    let (_, list) = s.get(REL, None).await;
    let flags: Vec<(String, bool)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["tagName"].as_str().unwrap().to_owned(),
                r["immutable"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(flags, vec![("v2".into(), true), ("v1".into(), true)]);

    // Turning the setting off does not unlock what was published under it.
    assert_eq!(set_repo(&s, &maint, json!(false)).await.0, StatusCode::OK);
    let (st, v) = s
        .call(Method::DELETE, &format!("{REL}/v2"), Some(&maint), None)
        .await;
    assert_locked(st, &v, "v2", "release delete after the setting went off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_tag_of_an_immutable_release_is_never_reused_even_after_the_repository_is_recreated() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    assert_eq!(set_repo(&s, &s.admin, json!(true)).await.0, StatusCode::OK);
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let (st, v) = s
        .post(
            REL,
            Some(&s.admin),
            json!({"tagName": "v1", "targetCommit": "main"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["immutable"], true);
    // The repository itself can still be deleted (with its releases).
    let (st, v) = s
        .call(
            Method::DELETE,
            "/api/v1/forge/acme/app",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    s.repo("acme", "app", false).await;
    // The new repository does not inherit the old one's setting, only its tombstones.
    assert_eq!(s.get(SETTINGS, None).await.1["immutableReleases"], false);
    git_ok(&wc, &["push", "-q", "origin", "main"]);

    let (st, v) = s
        .post(
            REL,
            Some(&s.admin),
            json!({"tagName": "v1", "targetCommit": "main"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(
        message(&v).contains("v1") && message(&v).contains("immutableReleases"),
        "{v}"
    );
    let (st, v) = s
        .post(
            REL,
            Some(&s.admin),
            json!({"tagName": "v1", "targetCommit": "main", "draft": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "a draft on the name too: {v}");
    let (st, v) = s
        .post(
            "/api/v1/forge/acme/app/tags",
            Some(&s.admin),
            json!({"tagName": "v1", "target": "main"}),
        )
        .await;
    assert!(
        st == StatusCode::CONFLICT || st == StatusCode::UNPROCESSABLE_ENTITY,
        "REST tag create: {st} {v}"
    );
    assert_eq!(tag_commit(&s, "v1").await, None);
    git_ok(&wc, &["tag", "-f", "v1"]);
    let err = git_err(&wc, &["push", "origin", "v1"]);
    assert!(err.contains("immutableReleases"), "{err}");
    let err = git_err(&wc, &["push", "origin", "main", "refs/tags/v1"]);
    assert!(err.contains("immutableReleases"), "{err}");
    assert_eq!(tag_commit(&s, "v1").await, None);
    // Other names are free.
    let (st, v) = s
        .post(
            REL,
            Some(&s.admin),
            json!({"tagName": "v2", "targetCommit": "main"}),
        )
        .await;
    assert_eq!(
        (st, v["immutable"].clone()),
        (StatusCode::CREATED, json!(false)),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_org_default_is_inherited_unless_the_repository_sets_its_own() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let member = s.user("member").await;
    let outsider = s.user("outsider").await;
    let (st, _) = s
        .call(
            Method::PUT,
            "/api/v1/orgs/acme/members/member",
            Some(&s.admin),
            Some(json!({"role": "write"})),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let org = "/api/v1/orgs/acme/settings";
    let body = Some(json!({"immutableReleases": true}));
    assert_eq!(
        s.call(Method::PATCH, org, Some(&member), body.clone())
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.call(Method::PATCH, org, Some(&outsider), body.clone())
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.call(Method::PATCH, org, None, body.clone()).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Through the CLI: the org admin turns the default on.
    let cli = Cli::new(&s);
    let root = s.dir.path().to_owned();
    let out = cli.ok(&root, &["org", "edit", "acme", "--immutable-releases=true"]);
    assert!(out.contains("true"), "{out}");
    let (_, v) = s.get(org, Some(&member)).await;
    assert_eq!(v["immutableReleases"], true);
    let out = cli.ok(&root, &["repo", "edit", "acme/app", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v,
        json!({"immutableReleases": true, "immutableReleasesSource": "organization"})
    );
    // A repository created later inherits it as well.
    s.repo("acme", "later", false).await;
    let (_, v) = s.get("/api/v1/forge/acme/later/settings", None).await;
    assert_eq!(v["immutableReleasesSource"], "organization");

    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let (_, v) = s
        .post(
            REL,
            Some(&member),
            json!({"tagName": "v1", "targetCommit": "main"}),
        )
        .await;
    assert_eq!(v["immutable"], true, "{v}");

    // The repository opts out; publishing no longer locks; `inherit` follows the org again.
    let out = cli.ok(
        &root,
        &["repo", "edit", "acme/app", "--immutable-releases=false"],
    );
    assert!(out.contains("false") && out.contains("repository"), "{out}");
    let (_, v) = s
        .post(
            REL,
            Some(&member),
            json!({"tagName": "v2", "targetCommit": "main"}),
        )
        .await;
    assert_eq!(v["immutable"], false, "{v}");
    cli.ok(
        &root,
        &["repo", "edit", "acme/app", "--immutable-releases=inherit"],
    );
    let (_, v) = s.get(SETTINGS, None).await;
    assert_eq!(v["immutableReleasesSource"], "organization");
    let (code, err) = cli.fails(
        &root,
        Some(&member),
        &["repo", "edit", "acme/app", "--immutable-releases=false"],
    );
    assert_ne!(code, 0);
    assert!(!err.is_empty());
}

/// fsck re-hashes asset files: bytes of an immutable release changed on disk behind the
/// server's back are reported as `asset_corrupt`, and a consumer who downloads them is told by
/// `pfai release verify-asset` that they do not match the attestation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fsck_reports_an_asset_file_tampered_with_on_disk() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    assert_eq!(set_repo(&s, &s.admin, json!(true)).await.0, StatusCode::OK);
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let (st, rel) = s
        .post(
            REL,
            Some(&s.admin),
            json!({"tagName": "v1", "targetCommit": "main", "draft": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, a) = s
        .upload_asset(
            "acme/app",
            "v1",
            "app.bin",
            b"the real bytes".to_vec(),
            &s.admin,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    let (st, _) = s
        .call(
            Method::PATCH,
            &format!("{REL}/v1"),
            Some(&s.admin),
            Some(json!({"draft": false})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let fsck = || async {
        s.call(Method::POST, "/api/v1/admin/fsck", Some(&s.admin), None)
            .await
            .1
    };
    assert_eq!(fsck().await["problems"], 0);
    // What a consumer downloads, checked against the attestation with `verify-asset`.
    let cli = Cli::new(&s);
    let root = s.dir.path().to_owned();
    let download = |n: &str| {
        let (s, id, n) = (&s, a["id"].clone(), n.to_owned());
        async move {
            let r = s
                .req(
                    Method::GET,
                    &format!("{REL}/v1/assets/{id}"),
                    Some(&s.admin),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let dir = s.dir.path().join(n);
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join("app.bin");
            std::fs::write(&file, r.bytes().await.unwrap()).unwrap();
            file
        }
    };
    let good = download("good").await;
    let verify = |f: &std::path::Path| {
        vec![
            "release".to_owned(),
            "verify-asset".into(),
            "v1".into(),
            f.to_str().unwrap().into(),
            "-R".into(),
            "acme/app".into(),
        ]
    };
    let args = verify(&good);
    cli.ok(&root, &args.iter().map(String::as_str).collect::<Vec<_>>());

    let path = s
        .data_dir()
        .join(format!("assets/acme/app/{}/{}-app.bin", rel["id"], a["id"]));
    let mut perm = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&path, perm).unwrap();
    std::fs::write(&path, b"the fake bytes").unwrap();

    // The bytes served now are the tampered ones: verify-asset refuses them.
    let bad = download("bad").await;
    assert_eq!(std::fs::read(&bad).unwrap(), b"the fake bytes");
    let args = verify(&bad);
    let (_, err) = cli.fails(
        &root,
        Some(&s.admin),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(err.contains("does not match the attested"), "{err}");

    let v = fsck().await;
    assert_eq!(v["problems"], 1, "{v:#}");
    let f = &v["findings"][0];
    assert_eq!(f["kind"], "asset_corrupt", "{v:#}");
    assert_eq!(
        (f["release"].clone(), f["asset"].clone()),
        (json!("v1"), json!("app.bin"))
    );
}

/// The web UI sets what `PATCH …/settings` sets: a repository admin picks on, off or inherit
/// on the repository's settings page (others are refused), and an organization admin sets the
/// organization's default from a page linked on the organization's page, which members see
/// without the form and outsiders not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_settings_pages_set_immutable_releases_for_admins_only() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let _writer = s.user("writer").await;
    let _maint = s.user("maint").await;
    let _boss = s.user("boss").await;
    let _member = s.user("member").await;
    let _outsider = s.user("outsider").await;
    s.collaborator("acme/app", "writer", "write").await;
    s.collaborator("acme/app", "maint", "admin").await;
    for (user, role) in [("boss", "admin"), ("member", "write")] {
        let (st, _) = s
            .call(
                Method::PUT,
                &format!("/api/v1/orgs/acme/members/{user}"),
                Some(&s.admin),
                Some(json!({ "role": role })),
            )
            .await;
        assert_eq!(st, StatusCode::NO_CONTENT);
    }
    let page = "/acme/app/settings/releases";
    let source = || async { s.get(SETTINGS, None).await.1 };

    // A writer gets neither the page nor the change.
    let mut w = Web::new(&s);
    w.sign_in("writer", "correct horse").await;
    assert_eq!(w.get(page).await.status, StatusCode::FORBIDDEN);
    let csrf = w.get("/acme/app").await.csrf();
    let p = w
        .post(
            page,
            &[("_csrf", csrf.as_str()), ("immutable_releases", "on")],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
    assert_eq!(source().await["immutableReleases"], false);

    // The repository admin: inherit is selected at first; on, off, inherit round-trip.
    let mut web = Web::new(&s);
    web.sign_in("maint", "correct horse").await;
    let g = web.get(page).await;
    assert_eq!(g.status, StatusCode::OK);
    assert!(g.body.contains(r#"value="inherit" checked"#), "{}", g.body);
    assert!(g.body.contains("/acme/app/settings/releases"), "{}", g.body);
    let csrf = g.csrf();
    for (choice, on, from) in [
        ("on", true, "repository"),
        ("off", false, "repository"),
        ("inherit", false, "default"),
    ] {
        let p = web
            .post(
                page,
                &[("_csrf", csrf.as_str()), ("immutable_releases", choice)],
            )
            .await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{choice}: {}", p.body);
        let v = source().await;
        assert_eq!(
            (
                v["immutableReleases"].clone(),
                v["immutableReleasesSource"].clone()
            ),
            (json!(on), json!(from)),
            "{choice}"
        );
        let g = web.get(page).await;
        assert!(
            g.body.contains(&format!(r#"value="{choice}" checked"#)),
            "{choice}: {}",
            g.body
        );
    }
    let p = web
        .post(
            page,
            &[("_csrf", csrf.as_str()), ("immutable_releases", "maybe")],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", p.body);
    // Without the CSRF token nothing changes.
    let p = web.post(page, &[("immutable_releases", "on")]).await;
    assert!(p.status.is_client_error(), "{}", p.status);
    assert_eq!(source().await["immutableReleasesSource"], "default");

    // The organization's default: its admin sees the link and changes it.
    let org_page = "/-/orgs/acme/settings";
    let mut b = Web::new(&s);
    b.sign_in("boss", "correct horse").await;
    let o = b.get("/acme").await;
    assert!(
        o.body.contains("Immutable releases by default") && o.body.contains(org_page),
        "{}",
        o.body
    );
    let g = b.get(org_page).await;
    assert_eq!(g.status, StatusCode::OK);
    assert!(
        g.body.contains(r#"name="immutable_releases""#),
        "{}",
        g.body
    );
    let csrf = g.csrf();
    let p = b
        .post(
            org_page,
            &[("_csrf", csrf.as_str()), ("immutable_releases", "1")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let (_, v) = s.get("/api/v1/orgs/acme/settings", Some(&s.admin)).await;
    assert_eq!(v["immutableReleases"], true);
    let v = source().await;
    assert_eq!(
        (
            v["immutableReleases"].clone(),
            v["immutableReleasesSource"].clone()
        ),
        (json!(true), json!("organization"))
    );
    let g = web.get(page).await;
    assert!(g.body.contains("the default of acme"), "{}", g.body);

    // A member sees the default but no form, and cannot post; an outsider sees nothing.
    let mut m = Web::new(&s);
    m.sign_in("member", "correct horse").await;
    let o = m.get("/acme").await;
    assert!(
        o.body.contains("Immutable releases by default"),
        "{}",
        o.body
    );
    let g = m.get(org_page).await;
    assert_eq!(g.status, StatusCode::OK);
    assert!(
        !g.body.contains(r#"name="immutable_releases""#),
        "{}",
        g.body
    );
    let csrf = g.csrf();
    let p = m.post(org_page, &[("_csrf", csrf.as_str())]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
    let mut x = Web::new(&s);
    x.sign_in("outsider", "correct horse").await;
    let o = x.get("/acme").await;
    assert!(
        !o.body.contains("Immutable releases by default"),
        "{}",
        o.body
    );
    assert_eq!(x.get(org_page).await.status, StatusCode::NOT_FOUND);
    // The admin unticks it: the default goes off again.
    let p = b
        .post(org_page, &[("_csrf", csrf_of(&b, org_page).await.as_str())])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(source().await["immutableReleases"], false);
}

async fn csrf_of(web: &Web, path: &str) -> String {
    web.get(path).await.csrf()
}

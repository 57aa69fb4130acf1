//! Tag protection for registry tags: a registry-target rule refuses moving a tag to another
//! digest, deleting the tag, and deleting the manifest it points to (OCI `DENIED`, 403) to
//! writers; an immutable rule refuses them to admins too; git-only and registry-only rules do
//! not leak into each other's world. Driven with raw /v2 requests, `skopeo`, `git` and the
//! `pfai` binary.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{git_err, git_ok, require_tool, Cli, TestServer};

const RULES: &str = "/api/v1/forge/acme/app/tag-protections";
const IMAGE: &str = "acme/app/web";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn sha(data: &[u8]) -> String {
    pfai::ids::Digest::sha256_of(data).to_string()
}

async fn send(
    s: &TestServer,
    token: &str,
    m: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> (StatusCode, String) {
    let mut r = s
        .http
        .request(m, format!("{}{path}", s.url))
        .basic_auth("x", Some(token));
    if let Some(b) = body {
        r = r.header("content-type", OCI_MANIFEST).body(b);
    }
    let resp = r.send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

/// Uploads a config and a layer and returns an image manifest over them (not yet pushed) and
/// its digest.
async fn image(s: &TestServer, token: &str, layer: &[u8]) -> (Vec<u8>, String) {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    for data in [&config[..], layer] {
        let (st, body) = send(
            s,
            token,
            Method::POST,
            &format!("/v2/{IMAGE}/blobs/uploads/?digest={}", sha(data)),
            Some(data.to_vec()),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
    }
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(layer), "size": layer.len()}]
    }))
    .unwrap();
    let d = sha(&m);
    (m, d)
}

async fn put(s: &TestServer, token: &str, reference: &str, m: &[u8]) -> (StatusCode, String) {
    send(
        s,
        token,
        Method::PUT,
        &format!("/v2/{IMAGE}/manifests/{reference}"),
        Some(m.to_vec()),
    )
    .await
}

async fn delete(s: &TestServer, token: &str, reference: &str) -> (StatusCode, String) {
    send(
        s,
        token,
        Method::DELETE,
        &format!("/v2/{IMAGE}/manifests/{reference}"),
        None,
    )
    .await
}

/// The digest `tag` points at, or `None` when the tag is gone.
async fn tagged(s: &TestServer, tag: &str) -> Option<String> {
    let r = s
        .http
        .head(format!("{}/v2/{IMAGE}/manifests/{tag}", s.url))
        .basic_auth("x", Some(&s.admin))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    if r.status() == StatusCode::NOT_FOUND {
        return None;
    }
    assert_eq!(r.status(), StatusCode::OK);
    r.headers()
        .get("docker-content-digest")
        .map(|v| v.to_str().unwrap().to_owned())
}

fn assert_denied((st, body): (StatusCode, String), what: &str) {
    assert_eq!(st, StatusCode::FORBIDDEN, "{what}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["errors"][0]["code"], "DENIED", "{what}: {body}");
}

/// acme/app with a `write` collaborator and an `admin` collaborator; returns their tokens.
async fn setup() -> (TestServer, String, String) {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let writer = s.user("writer").await;
    let maint = s.user("maint").await;
    s.collaborator("acme/app", "writer", "write").await;
    s.collaborator("acme/app", "maint", "admin").await;
    (s, writer, maint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_cannot_move_or_delete_a_protected_registry_tag_by_tag_or_digest_admins_can() {
    let (s, writer, maint) = setup().await;
    let (st, rule) = s
        .post(
            RULES,
            Some(&maint),
            json!({"pattern": "v*", "target": "registry"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{rule}");
    assert_eq!(rule["target"], "registry");
    assert_eq!(rule["immutable"], false);

    let (m1, d1) = image(&s, &writer, b"layer one").await;
    let (m2, d2) = image(&s, &writer, b"layer two").await;
    // Creating a protected tag is allowed, and pushing the same digest again is idempotent.
    assert_eq!(put(&s, &writer, "v1", &m1).await.0, StatusCode::CREATED);
    assert_eq!(put(&s, &writer, "v1", &m1).await.0, StatusCode::CREATED);
    assert_eq!(put(&s, &writer, "latest", &m1).await.0, StatusCode::CREATED);

    // Moving it: by tag, and by digest with a `tag` parameter.
    assert_denied(put(&s, &writer, "v1", &m2).await, "PUT v1 -> m2");
    assert_denied(
        put(&s, &writer, &format!("{d2}?tag=v1"), &m2).await,
        "PUT by digest ?tag=v1",
    );
    assert_eq!(tagged(&s, "v1").await.as_deref(), Some(d1.as_str()));
    // Deleting it: by tag, and by deleting the manifest it points to.
    assert_denied(delete(&s, &writer, "v1").await, "DELETE v1");
    assert_denied(delete(&s, &writer, &d1).await, "DELETE manifest under v1");
    assert_eq!(tagged(&s, "v1").await.as_deref(), Some(d1.as_str()));

    // A tag no rule matches stays the writer's to move and delete.
    assert_eq!(put(&s, &writer, "latest", &m2).await.0, StatusCode::CREATED);
    assert_eq!(delete(&s, &writer, "latest").await.0, StatusCode::ACCEPTED);
    // The API and the Packages tab mark the protected tag.
    let (st, tags) = s
        .get("/api/v1/forge/acme/app/packages/web/tags", Some(&writer))
        .await;
    assert_eq!(st, StatusCode::OK, "{tags}");
    let v1 = tags
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tag"] == "v1")
        .unwrap();
    assert_eq!(v1["protected"], true, "{tags}");
    let page = s
        .http
        .get(format!("{}/acme/app/packages", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("title=\"Protected by a registry tag-protection rule\""));

    // A repository admin may do all three.
    assert_eq!(put(&s, &maint, "v1", &m2).await.0, StatusCode::CREATED);
    assert_eq!(tagged(&s, "v1").await.as_deref(), Some(d2.as_str()));
    assert_eq!(delete(&s, &maint, "v1").await.0, StatusCode::ACCEPTED);
    assert_eq!(tagged(&s, "v1").await, None);
    assert_eq!(put(&s, &writer, "v2", &m1).await.0, StatusCode::CREATED);
    assert_eq!(delete(&s, &maint, &d1).await.0, StatusCode::ACCEPTED);
    assert_eq!(tagged(&s, "v2").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_immutable_registry_rule_refuses_moves_and_deletes_to_everyone_including_admins() {
    let (s, writer, maint) = setup().await;
    // A git-only immutable rule is a rule of its own (it locks git tags, see
    // tests/it/protection.rs), and does not touch registry tags.
    let (st, body) = s
        .post(
            RULES,
            Some(&maint),
            json!({"pattern": "g*", "immutable": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    assert_eq!(body["target"], "git", "{body}");
    assert_eq!(body["immutable"], true, "{body}");
    let (st, rule) = s
        .post(
            RULES,
            Some(&maint),
            json!({"pattern": "v*", "target": "both", "immutable": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{rule}");
    let (_, list) = s.get(RULES, None).await;
    let v = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["pattern"] == "v*")
        .unwrap();
    assert_eq!(v["target"], "both", "{list}");
    assert_eq!(v["immutable"], true, "{list}");

    let (m1, d1) = image(&s, &writer, b"release one").await;
    let (m2, d2) = image(&s, &writer, b"release two").await;
    assert_eq!(put(&s, &writer, "v1", &m1).await.0, StatusCode::CREATED);
    for (who, token) in [
        ("writer", &writer),
        ("repo admin", &maint),
        ("site admin", &s.admin),
    ] {
        assert_eq!(
            put(&s, token, "v1", &m1).await.0,
            StatusCode::CREATED,
            "{who}: same digest again"
        );
        assert_denied(put(&s, token, "v1", &m2).await, who);
        assert_denied(put(&s, token, &format!("{d2}?tag=v1"), &m2).await, who);
        assert_denied(delete(&s, token, "v1").await, who);
        assert_denied(delete(&s, token, &d1).await, who);
    }
    assert_eq!(tagged(&s, "v1").await.as_deref(), Some(d1.as_str()));
    let (_, body) = delete(&s, &s.admin, "v1").await;
    assert!(body.contains("immutable"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_git_rule_leaves_registry_tags_alone_and_a_registry_rule_leaves_git_tags_alone() {
    let (s, writer, maint) = setup().await;
    // `v*` for git only (the default), `r*` for the registry only.
    assert_eq!(
        s.post(RULES, Some(&maint), json!({"pattern": "v*"}))
            .await
            .0,
        StatusCode::CREATED
    );
    assert_eq!(
        s.post(
            RULES,
            Some(&maint),
            json!({"pattern": "r*", "target": "registry", "immutable": true})
        )
        .await
        .0,
        StatusCode::CREATED
    );

    // Registry: v1 is free, r1 is locked.
    let (m1, _) = image(&s, &writer, b"one").await;
    let (m2, d2) = image(&s, &writer, b"two").await;
    for tag in ["v1", "r1"] {
        assert_eq!(put(&s, &writer, tag, &m1).await.0, StatusCode::CREATED);
    }
    assert_eq!(put(&s, &writer, "v1", &m2).await.0, StatusCode::CREATED);
    assert_eq!(tagged(&s, "v1").await.as_deref(), Some(d2.as_str()));
    assert_eq!(delete(&s, &writer, "v1").await.0, StatusCode::ACCEPTED);
    assert_denied(put(&s, &writer, "r1", &m2).await, "registry rule r*");

    // Git: r1 is free (the hook never sees registry-only rules), v1 is protected.
    let wc = s.checkout("acme/app", &writer);
    git_ok(&wc, &["tag", "r1"]);
    git_ok(&wc, &["tag", "v1"]);
    git_ok(&wc, &["push", "-q", "origin", "main", "--tags"]);
    let (_, tags) = s.get("/api/v1/forge/acme/app/tags", None).await;
    for t in tags.as_array().unwrap() {
        assert_eq!(
            t["protected"],
            t["name"] == "v1",
            "only git-target rules mark git tags: {tags}"
        );
    }
    git_ok(&wc, &["push", "-q", "origin", "--delete", "r1"]);
    let err = git_err(&wc, &["push", "-q", "origin", "--delete", "v1"]);
    assert!(err.contains("protected"), "{err}");
    // And through REST: a writer deletes git tag r1 again after pushing it back.
    git_ok(&wc, &["push", "-q", "origin", "r1"]);
    let (st, _) = s
        .call(
            Method::DELETE,
            "/api/v1/forge/acme/app/tags/r1",
            Some(&writer),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "REST delete of a git tag r1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn skopeo_copy_onto_a_protected_existing_tag_is_refused() {
    if !require_tool("skopeo") {
        return;
    }
    let (s, writer, maint) = setup().await;
    assert_eq!(
        s.post(
            RULES,
            Some(&maint),
            json!({"pattern": "v*", "target": "registry"})
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let host = s.url.trim_start_matches("http://").to_owned();
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/data-fixtures/oci");
    let single = format!("oci:{fixtures}/layout-single:v1");
    let multi = format!("oci:{fixtures}/layout-multi:v1");
    let dest = format!("docker://{host}/{IMAGE}:v1");
    let creds = format!("x:{writer}");
    let auth = s.dir.path().join("skopeo-auth.json");
    std::fs::write(&auth, "{\"auths\":{}}").unwrap();
    let copy = move |src: &str, all: bool| {
        let mut c = std::process::Command::new("skopeo");
        c.arg("copy");
        if all {
            c.arg("--all");
        }
        c.args([
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            src,
            &dest,
        ])
        .env("REGISTRY_AUTH_FILE", &auth)
        .output()
        .unwrap()
    };
    let (first, second) = tokio::task::spawn_blocking(move || {
        let first = copy(&single, false);
        let again = copy(&single, false);
        assert!(
            again.status.success(),
            "same image again: {}",
            String::from_utf8_lossy(&again.stderr)
        );
        (first, copy(&multi, true))
    })
    .await
    .unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(!second.status.success(), "moving v1 must fail");
    let err = String::from_utf8_lossy(&second.stderr).to_lowercase();
    assert!(err.contains("denied") || err.contains("protected"), "{err}");
    let d = tagged(&s, "v1").await.unwrap();
    let (_, tags) = s
        .get("/api/v1/forge/acme/app/packages/web/tags", Some(&writer))
        .await;
    assert_eq!(tags[0]["digest"], d.as_str(), "v1 did not move: {tags}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_creates_and_lists_registry_and_immutable_rules() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let cli = Cli::new(&s);
    let root = s.dir.path().to_owned();
    let r = ["-R", "acme/app"];
    cli.ok(
        &root,
        &[
            &["protected-tag", "create", "v*", "--registry", "--immutable"][..],
            &r,
        ]
        .concat(),
    );
    cli.ok(
        &root,
        &[
            &["protected-tag", "create", "rel-*", "--git", "--registry"][..],
            &r,
        ]
        .concat(),
    );
    cli.ok(
        &root,
        &[&["protected-tag", "create", "g*"][..], &r].concat(),
    );
    // Without a target flag an immutable rule locks git tags.
    cli.ok(
        &root,
        &[&["protected-tag", "create", "x*", "--immutable"][..], &r].concat(),
    );

    let table = cli.ok(&root, &[&["protected-tag", "list"][..], &r].concat());
    let row = |p: &str| -> Vec<String> {
        table
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(p))
            .unwrap_or_else(|| panic!("{p} in {table}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(row("v*")[2..4], ["registry", "yes"], "{table}");
    assert_eq!(row("rel-*")[2..4], ["both", "no"], "{table}");
    assert_eq!(row("g*")[2..4], ["git", "no"], "{table}");
    assert_eq!(row("x*")[2..4], ["git", "yes"], "{table}");
    let json: Value = serde_json::from_str(&cli.ok(
        &root,
        &[&["protected-tag", "list", "--json"][..], &r].concat(),
    ))
    .unwrap();
    assert_eq!(json[0]["target"], "registry");
    assert_eq!(json[0]["immutable"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_settings_page_adds_and_shows_registry_and_immutable_rules() {
    let (s, _writer, _maint) = setup().await;
    let mut web = crate::ui::Web::new(&s);
    web.sign_in("maint", "correct horse").await;
    let path = "/acme/app/settings/tag-protection";
    let page = web.get(path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("name=\"target\""), "{}", page.body);
    let csrf = page.csrf();
    let p = web
        .post(
            path,
            &[
                ("_csrf", csrf.as_str()),
                ("pattern", "v*"),
                ("target", "registry"),
                ("immutable", "1"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    // A git-only immutable rule is accepted too (it locks git tags).
    let p = web
        .post(
            path,
            &[
                ("_csrf", csrf.as_str()),
                ("pattern", "g*"),
                ("target", "git"),
                ("immutable", "1"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let (_, list) = s.get(RULES, None).await;
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert_eq!(list[1]["target"], "git", "{list}");
    assert_eq!(list[1]["immutable"], true, "{list}");
    assert_eq!(list[0]["target"], "registry", "{list}");
    assert_eq!(list[0]["immutable"], true, "{list}");
    let page = web.get(path).await;
    assert!(page.body.contains("Registry tags"), "{}", page.body);
    assert!(page.body.contains("Immutable"), "{}", page.body);
}

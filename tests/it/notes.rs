//! Generated release notes, makeLatest and publishedAt over real HTTP, with real git pushes by
//! two authors, the `pfai` binary and the draft form.

use std::path::Path;
use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{git_ok, Cli, TestServer};

const BASE: &str = "/api/v1/forge/acme/app/releases";

/// Commits a new file with `msg` as `who` ("Name <email>"), each commit one minute after the
/// previous so the newest-first order is deterministic. Returns the commit id.
fn commit(wc: &Path, n: u32, msg: &str, who: &str) -> String {
    std::fs::write(wc.join(format!("f{n}")), format!("{n}\n")).unwrap();
    git_ok(wc, &["add", "-A"]);
    let date = format!("2026-01-01T00:{n:02}:00Z");
    let (subject, body) = msg.split_once("\n\n").unwrap_or((msg, ""));
    let mut c = Command::new("git");
    c.current_dir(wc)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_COMMITTER_NAME", "Tester")
        .env("GIT_COMMITTER_EMAIL", "tester@example.com")
        .env("GIT_COMMITTER_DATE", &date)
        .env("GIT_AUTHOR_DATE", &date)
        .args(["commit", "-q", "--author", who, "-m", subject]);
    if !body.is_empty() {
        c.args(["-m", body]);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    git_ok(wc, &["rev-parse", "HEAD"])
}

const ALICE: &str = "Alice Doe <alice@example.com>";
const BOB: &str = "Bob Roe <bob@example.com>";

async fn post_notes(s: &TestServer, token: Option<&str>, body: Value) -> (StatusCode, Value) {
    s.post(&format!("{BASE}/generate-notes"), token, body).await
}

fn short(sha: &str) -> &str {
    &sha[..7]
}

/// acme/app with v1.0.0 released (Alice's first feature before it), then on main: Bob's first
/// commit, breaking changes, a feature, a perf change, docs; and a release v1.5.0 on a side
/// branch that is not an ancestor of main (published later, so only ancestry can rule it out).
async fn history(s: &TestServer) -> (std::path::PathBuf, Vec<String>) {
    s.repo("acme", "app", false).await;
    let wc = s.checkout("acme/app", &s.admin);
    commit(&wc, 1, "feat: first feature", ALICE);
    git_ok(&wc, &["tag", "v1.0.0"]);
    git_ok(&wc, &["push", "-q", "origin", "main", "v1.0.0"]);
    let a = Some(s.admin.as_str());
    let (st, v) = s.post(BASE, a, json!({"tagName": "v1.0.0"})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    git_ok(&wc, &["checkout", "-q", "-b", "side"]);
    commit(&wc, 2, "feat: side thing", ALICE);
    git_ok(&wc, &["tag", "v1.5.0"]);
    git_ok(&wc, &["push", "-q", "origin", "side", "v1.5.0"]);
    git_ok(&wc, &["checkout", "-q", "main"]);
    let shas = vec![
        commit(&wc, 3, "fix(cli): exit code", BOB),
        commit(&wc, 4, "feat!: new config format", ALICE),
        commit(&wc, 5, "feat(api): add an endpoint", ALICE),
        commit(&wc, 6, "perf: cache tags", ALICE),
        commit(&wc, 7, "docs: readme", BOB),
        commit(
            &wc,
            8,
            "fix: edge case\n\nBREAKING CHANGE: limits are inclusive now",
            ALICE,
        ),
    ];
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let (st, v) = s.post(BASE, a, json!({"tagName": "v1.5.0"})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    (wc, shas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn generated_notes_group_breaking_first_and_start_at_the_nearest_ancestor_release() {
    let s = TestServer::start().await;
    let (wc, shas) = history(&s).await;
    let a = Some(s.admin.as_str());

    let (st, v) = post_notes(&s, a, json!({"tagName": "v2.0.0", "targetCommit": "main"})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["name"], "v2.0.0");
    let body = v["body"].as_str().unwrap();
    let pos = |t: &str| {
        body.find(t)
            .unwrap_or_else(|| panic!("{t:?} missing in\n{body}"))
    };
    // Sections in order, breaking first; each breaking commit only there, newest first.
    assert!(pos("### ⚠️ Breaking changes") < pos("### Features"));
    assert!(pos("### Features") < pos("### Fixes"));
    assert!(pos("### Fixes") < pos("### Performance"));
    assert!(pos("### Performance") < pos("### Other"));
    assert!(pos("### Other") < pos("### New contributors"));
    assert!(pos("### New contributors") < pos("**Full changelog**"));
    let edge = format!("- fix: edge case ({}) by Alice Doe\n", short(&shas[5]));
    let config = format!(
        "- feat: new config format ({}) by Alice Doe\n",
        short(&shas[1])
    );
    assert!(pos(&edge) < pos(&config), "newest first:\n{body}");
    assert!(pos(&config) < pos("### Features"));
    assert_eq!(body.matches("new config format").count(), 1);
    assert!(body.contains(&format!(
        "### Features\n- **api:** add an endpoint ({}) by Alice Doe\n",
        short(&shas[2])
    )));
    assert!(body.contains(&format!(
        "### Fixes\n- **cli:** exit code ({}) by Bob Roe\n",
        short(&shas[0])
    )));
    assert!(body.contains(&format!(
        "### Performance\n- cache tags ({}) by Alice Doe\n",
        short(&shas[3])
    )));
    assert!(body.contains(&format!(
        "### Other\n- docs: readme ({}) by Bob Roe\n",
        short(&shas[4])
    )));
    // Bob's first commit is in the range; Alice committed before v1.0.0.
    assert!(body.contains(&format!(
        "### New contributors\n- Bob Roe made their first contribution in {}\n",
        short(&shas[0])
    )));
    assert!(!body.contains("Alice Doe made"));
    // The side branch's newer release is not an ancestor: the range starts at v1.0.0.
    assert!(
        body.ends_with("**Full changelog**: v1.0.0...v2.0.0\n"),
        "{body}"
    );
    assert!(!body.contains("side thing") && !body.contains("first feature"));

    // An explicit start: after `mid` only; Bob committed before it, so he is not new.
    git_ok(&wc, &["tag", "mid", &shas[2]]);
    git_ok(&wc, &["push", "-q", "origin", "mid"]);
    let (st, v) = post_notes(
        &s,
        a,
        json!({"tagName": "v2.0.0", "targetCommit": "main", "previousTagName": "mid"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let body = v["body"].as_str().unwrap();
    assert!(
        body.ends_with("**Full changelog**: mid...v2.0.0\n"),
        "{body}"
    );
    assert!(!body.contains("exit code") && !body.contains("new config format"));
    assert!(body.contains("edge case") && body.contains("readme"));
    assert!(!body.contains("New contributors"));

    // An existing tag needs no target; its own release is not its previous one.
    let (st, v) = post_notes(&s, a, json!({"tagName": "v1.5.0"})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let body = v["body"].as_str().unwrap();
    assert!(
        body.contains("side thing") && body.ends_with("v1.0.0...v1.5.0\n"),
        "{body}"
    );

    // Refusals: no tag and no target, an unknown start tag, readers, anonymous callers.
    let (st, v) = post_notes(&s, a, json!({"tagName": "v9"})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v.to_string().contains("targetCommit"), "{v}");
    let (st, _) = post_notes(
        &s,
        a,
        json!({"tagName": "v9", "targetCommit": "main", "previousTagName": "nope"}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let reader = s.user("reader").await;
    s.collaborator("acme/app", "reader", "read").await;
    let (st, _) = post_notes(&s, Some(&reader), json!({"tagName": "v1.5.0"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = post_notes(&s, None, json!({"tagName": "v1.5.0"})).await;
    assert!(
        st == StatusCode::UNAUTHORIZED || st == StatusCode::NOT_FOUND,
        "{st}"
    );
    let (st, _) = post_notes(&s, a, json!({"tagName": "v1.5.0", "bogus": 1})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // generateNotes on create puts the notes before the given body.
    let (st, v) = s
        .post(
            BASE,
            a,
            json!({"tagName": "v2.0.0", "targetCommit": "main", "body": "Hand-written intro.", "generateNotes": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let body = v["body"].as_str().unwrap();
    assert!(body.starts_with("## What's changed\n"), "{body}");
    assert!(
        body.contains("v1.0.0...v2.0.0\n\nHand-written intro."),
        "{body}"
    );
}

fn latest_tags(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["latest"] == true)
        .map(|r| r["tagName"].as_str().unwrap().to_owned())
        .collect()
}

async fn latest(s: &TestServer) -> Vec<String> {
    let (_, list) = s.get(BASE, Some(&s.admin)).await;
    let tags = latest_tags(&list);
    let (st, one) = s.get(&format!("{BASE}/latest"), None).await;
    match tags.first() {
        Some(t) => assert_eq!(one["tagName"].as_str(), Some(t.as_str()), "{one}"),
        None => assert_eq!(st, StatusCode::NOT_FOUND),
    }
    tags
}

async fn patch(s: &TestServer, tag: &str, body: Value) -> (StatusCode, Value) {
    s.call(
        Method::PATCH,
        &format!("{BASE}/{tag}"),
        Some(&s.admin),
        Some(body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn make_latest_is_honoured_and_a_legacy_backfill_never_takes_latest_from_a_higher_version() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let a = Some(s.admin.as_str());
    let create = |tag: &str, extra: Value| {
        let mut body = json!({"tagName": tag, "targetCommit": "main"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let (st, v) = s.post(BASE, a, create("v2.0.0", json!({}))).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["latest"], true,
        "a new published release is Latest by default"
    );

    // Backfills published later: legacy computes by version, false leaves Latest alone.
    let (st, v) = s
        .post(BASE, a, create("v0.9.0", json!({"makeLatest": "legacy"})))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(latest(&s).await, ["v2.0.0"]);
    let (st, _) = s
        .post(BASE, a, create("v0.8.0", json!({"makeLatest": "false"})))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(latest(&s).await, ["v2.0.0"]);
    let (st, _) = s
        .post(BASE, a, create("v2.1.0", json!({"makeLatest": "false"})))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(
        latest(&s).await,
        ["v2.0.0"],
        "false holds even for a higher version"
    );

    // Update: true moves it; false hands it to the highest other version; legacy computes.
    let (st, v) = patch(&s, "v2.1.0", json!({"makeLatest": "true"})).await;
    assert_eq!((st, &v["latest"]), (StatusCode::OK, &json!(true)), "{v}");
    assert_eq!(latest(&s).await, ["v2.1.0"]);
    patch(&s, "v2.1.0", json!({"makeLatest": "false"})).await;
    assert_eq!(latest(&s).await, ["v2.0.0"]);
    patch(&s, "v0.9.0", json!({"makeLatest": "legacy"})).await;
    assert_eq!(latest(&s).await, ["v2.1.0"], "legacy: the highest version");

    // A pre-release cannot be made Latest; unknown values are refused.
    let (st, v) = s
        .post(
            BASE,
            a,
            create(
                "v3.0.0-rc.1",
                json!({"prerelease": true, "makeLatest": "true"}),
            ),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (st, _) = s
        .post(BASE, a, create("v3.0.0", json!({"makeLatest": "maybe"})))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = patch(&s, "v2.1.0", json!({"makeLatest": true})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "GitHub's field is a string");

    // Turning Latest into a pre-release, or deleting it, falls back to the computed order.
    patch(&s, "v2.1.0", json!({"makeLatest": "true"})).await;
    patch(&s, "v2.1.0", json!({"prerelease": true})).await;
    assert_eq!(latest(&s).await, ["v2.0.0"]);
    let (st, _) = s
        .call(Method::DELETE, &format!("{BASE}/v2.0.0"), a, None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(latest(&s).await, ["v0.9.0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishing_a_draft_stamps_now_and_back_to_draft_clears_published_at() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let a = Some(s.admin.as_str());
    let (_, v1) = s
        .post(BASE, a, json!({"tagName": "v1", "targetCommit": "main"}))
        .await;
    let first = v1["publishedAt"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (st, _) = s
        .post(BASE, a, json!({"tagName": "v2", "targetCommit": "main"}))
        .await;
    assert_eq!(st, StatusCode::CREATED);

    let (st, v) = patch(&s, "v1", json!({"draft": true})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["publishedAt"].is_null(), "{v}");
    let (_, list) = s.get(BASE, a).await;
    let tags: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tagName"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["v1", "v2"], "back with the drafts, first");
    let (_, anon) = s.get(BASE, None).await;
    assert_eq!(anon.as_array().unwrap().len(), 1, "a draft again is hidden");

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (st, v) = patch(&s, "v1", json!({"draft": false})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let again = v["publishedAt"].as_str().unwrap();
    assert!(again > first.as_str(), "{again} should be after {first}");
    assert_eq!(
        v["latest"], true,
        "a newly published release becomes Latest"
    );
    let (_, list) = s.get(BASE, None).await;
    assert_eq!(list[0]["tagName"], "v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_generate_notes_and_latest_flags_reach_the_server() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let cli = Cli::new(&s);
    let r = ["-R", "acme/app"];
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&r);
        cli.ok(&wc, &all)
    };
    run(&["release", "create", "v1.0.0", "--target", "main"]);
    let feat = commit(&wc, 1, "feat: shiny", BOB);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    run(&[
        "release",
        "create",
        "v1.1.0",
        "--target",
        "main",
        "--generate-notes",
        "--body",
        "Intro.",
    ]);
    let (_, v) = s.get(&format!("{BASE}/v1.1.0"), None).await;
    let body = v["body"].as_str().unwrap();
    assert!(
        body.contains(&format!(
            "### Features\n- shiny ({}) by Bob Roe",
            short(&feat)
        )),
        "{body}"
    );
    assert!(body.ends_with("v1.0.0...v1.1.0\n\nIntro."), "{body}");
    assert_eq!(v["name"], "v1.1.0");
    assert_eq!(v["latest"], true);

    run(&[
        "release",
        "create",
        "v1.2.0",
        "--target",
        "main",
        "--generate-notes",
        "--notes-start-tag",
        "v1.0.0",
        "--latest=false",
    ]);
    let (_, v) = s.get(&format!("{BASE}/v1.2.0"), None).await;
    assert!(
        v["body"].as_str().unwrap().ends_with("v1.0.0...v1.2.0\n"),
        "{v}"
    );
    assert_eq!(v["latest"], false);
    assert_eq!(latest(&s).await, ["v1.1.0"]);
    run(&["release", "edit", "v1.2.0", "--latest"]);
    assert_eq!(latest(&s).await, ["v1.2.0"]);
    run(&["release", "edit", "v1.2.0", "--latest=false"]);
    assert_eq!(latest(&s).await, ["v1.1.0"]);

    let (_, err) = cli.fails(
        &wc,
        Some(&s.admin),
        &[
            "release",
            "create",
            "v1.3.0",
            "--target",
            "main",
            "--notes-start-tag",
            "v1.0.0",
            "-R",
            "acme/app",
        ],
    );
    assert!(err.contains("--generate-notes"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn draft_form_generate_button_fills_the_notes_and_creates_nothing() {
    let s = TestServer::start().await;
    let alice = s.user("alice").await;
    s.repo("acme", "app", false).await;
    s.collaborator("acme/app", "alice", "write").await;
    let wc = s.checkout("acme/app", &alice);
    git_ok(&wc, &["tag", "v1.0.0"]);
    git_ok(&wc, &["push", "-q", "origin", "main", "v1.0.0"]);
    let (st, _) = s
        .post(BASE, Some(&alice), json!({"tagName": "v1.0.0"}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let fix = commit(&wc, 1, "fix: the thing <b>", BOB);
    git_ok(&wc, &["push", "-q", "origin", "main"]);

    let mut web = crate::ui::Web::new(&s);
    web.sign_in("alice", "correct horse").await;
    let page = web.get("/acme/app/releases/new").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("Generate release notes"),
        "{}",
        page.body
    );
    let form = reqwest::multipart::Form::new()
        .text("_csrf", page.csrf())
        .text("tag", "v1.1.0")
        .text("target", "main")
        .text("title", "")
        .text("notes", "Intro.")
        .text("action", "generate-notes")
        .part(
            "files",
            reqwest::multipart::Part::bytes(b"data".to_vec()).file_name("a.bin"),
        );
    let page = web.post_multipart("/acme/app/releases/new", form).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains(&format!(
            "### Fixes\n- the thing &lt;b&gt; ({}) by Bob Roe",
            short(&fix)
        )),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("v1.0.0...v1.1.0\n\nIntro.</textarea>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("value=\"v1.1.0\""));
    // Nothing was created: no release, no tag.
    let (st, _) = s.get(&format!("{BASE}/v1.1.0"), Some(&alice)).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s.get("/api/v1/forge/acme/app/tags/v1.1.0", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

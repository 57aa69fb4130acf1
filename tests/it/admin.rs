//! `pfai admin user …`, `pfai org member …`, `pfai repo collaborator …` and the offline
//! `pfai admin set-password --data-dir`, run as the real binary against a live server.

use std::process::{Command, Output, Stdio};

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{Cli, TestServer};

const PW: &str = "a new password 1";

/// Runs the `pfai` binary against `s` with `token`, feeding `stdin` when given.
fn pfai(s: &TestServer, token: Option<&str>, args: &[&str], stdin: Option<&str>) -> Output {
    Cli::new(s).run(s.dir.path(), token, args, stdin)
}

/// Succeeds, and returns stdout.
fn ok(s: &TestServer, token: &str, args: &[&str], stdin: Option<&str>) -> String {
    let out = pfai(s, Some(token), args, stdin);
    assert!(
        out.status.success(),
        "pfai {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fails with exit code 1 and a message containing `needle`, without a panic.
fn fails(s: &TestServer, token: Option<&str>, args: &[&str], stdin: Option<&str>, needle: &str) {
    let out = pfai(s, token, args, stdin);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "pfai {args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains(needle),
        "pfai {args:?}: {err:?} lacks {needle:?}"
    );
}

fn users_as(s: &TestServer, token: &str) -> Vec<Value> {
    let v: Value =
        serde_json::from_str(&ok(s, token, &["admin", "user", "list", "--json"], None)).unwrap();
    v.as_array().unwrap().clone()
}

fn user_row(s: &TestServer, name: &str) -> Option<Value> {
    users_as(s, &s.admin)
        .into_iter()
        .find(|u| u["username"] == name)
}

/// Mints a token with a Basic password (the password sign-in of the API).
async fn basic_sign_in(s: &TestServer, user: &str, password: &str) -> StatusCode {
    s.http
        .post(format!("{}/api/v1/user/tokens", s.url))
        .basic_auth(user, Some(password))
        .json(&serde_json::json!({"name": "signed-in"}))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_user_commands_create_list_promote_reset_and_delete_a_user() {
    let s = TestServer::start().await;
    ok(
        &s,
        &s.admin,
        &[
            "admin",
            "user",
            "create",
            "alice",
            "--email",
            "alice@example.com",
            "--password-stdin",
        ],
        Some("first password\n"),
    );
    let alice = user_row(&s, "alice").expect("alice listed");
    assert_eq!(alice["email"], "alice@example.com");
    assert_eq!(alice["admin"], false);
    let table = ok(&s, &s.admin, &["admin", "user", "list"], None);
    assert!(table.lines().any(|l| l.starts_with("alice ")), "{table}");
    assert_eq!(
        basic_sign_in(&s, "alice", "first password").await,
        StatusCode::CREATED
    );

    ok(&s, &s.admin, &["admin", "user", "set-admin", "alice"], None);
    assert_eq!(user_row(&s, "alice").unwrap()["admin"], true);
    ok(
        &s,
        &s.admin,
        &["admin", "user", "set-admin", "alice", "--revoke"],
        None,
    );
    assert_eq!(user_row(&s, "alice").unwrap()["admin"], false);

    ok(
        &s,
        &s.admin,
        &["admin", "user", "set-password", "alice", "--password-stdin"],
        Some(&format!("{PW}\n")),
    );
    assert_eq!(
        basic_sign_in(&s, "alice", "first password").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(basic_sign_in(&s, "alice", PW).await, StatusCode::CREATED);
    // A password is never an argument, and a short one is refused by the server's rule.
    fails(
        &s,
        Some(&s.admin),
        &["admin", "user", "set-password", "alice"],
        None,
        "no terminal to ask for the password on: pass --password-stdin",
    );
    fails(
        &s,
        Some(&s.admin),
        &["admin", "user", "set-password", "alice", "--password-stdin"],
        Some("short\n"),
        "at least 8 characters",
    );

    let token = s.user("carol").await;
    ok(
        &s,
        &s.admin,
        &["admin", "user", "delete", "carol", "--yes"],
        None,
    );
    assert!(user_row(&s, "carol").is_none());
    let (st, _) = s.get("/api/v1/user", Some(&token)).await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "a deleted user's token still works"
    );
    // Without --yes and without a terminal to ask on, nothing is deleted.
    fails(
        &s,
        Some(&s.admin),
        &["admin", "user", "delete", "alice"],
        None,
        "not deleted",
    );
    assert!(user_row(&s, "alice").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn non_admins_and_unknown_users_get_clear_errors_not_silence() {
    let s = TestServer::start().await;
    let bob = s.user("bob").await;
    for args in [
        &["admin", "user", "list"][..],
        &["admin", "user", "delete", "admin", "--yes"],
        &["admin", "user", "set-admin", "bob"],
    ] {
        fails(&s, Some(&bob), args, None, "only site admins");
    }
    fails(
        &s,
        Some(&bob),
        &["admin", "user", "create", "eve", "--password-stdin"],
        Some("long enough password\n"),
        "only site admins",
    );
    assert!(user_row(&s, "bob").is_some_and(|b| b["admin"] == false));
    fails(&s, None, &["admin", "user", "list"], None, "pfai login");

    for args in [
        &["admin", "user", "delete", "nobody", "--yes"][..],
        &["admin", "user", "set-admin", "nobody"],
    ] {
        fails(&s, Some(&s.admin), args, None, "user nobody not found");
    }
    fails(
        &s,
        Some(&s.admin),
        &[
            "admin",
            "user",
            "set-password",
            "nobody",
            "--password-stdin",
        ],
        Some("long enough password\n"),
        "user nobody not found",
    );
    ok(&s, &s.admin, &["org", "create", "acme"], None);
    s.repo("acme", "app", false).await;
    fails(
        &s,
        Some(&s.admin),
        &["org", "member", "add", "acme", "nobody"],
        None,
        "user nobody does not exist",
    );
    fails(
        &s,
        Some(&s.admin),
        &["repo", "collaborator", "add", "nobody", "-R", "acme/app"],
        None,
        "user nobody not found",
    );
    fails(
        &s,
        Some(&s.admin),
        &["org", "member", "list", "nope"],
        None,
        "organization nope not found",
    );
    fails(
        &s,
        Some(&s.admin),
        &["org", "member", "add", "acme", "bob", "--role", "owner"],
        None,
        "unknown role",
    );
    // Not a member of acme: neither its member list nor its repositories' collaborators.
    fails(
        &s,
        Some(&bob),
        &["org", "member", "list", "acme"],
        None,
        "not a member of acme",
    );
    fails(
        &s,
        Some(&bob),
        &["org", "member", "add", "acme", "bob", "--role", "admin"],
        None,
        "not an admin of acme",
    );
    fails(
        &s,
        Some(&bob),
        &["repo", "collaborator", "list", "-R", "acme/app"],
        None,
        "",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_last_site_admin_can_be_neither_deleted_nor_demoted() {
    let s = TestServer::start().await;
    fails(
        &s,
        Some(&s.admin),
        &["admin", "user", "delete", "admin", "--yes"],
        None,
        "last site admin",
    );
    fails(
        &s,
        Some(&s.admin),
        &["admin", "user", "set-admin", "admin", "--revoke"],
        None,
        "last site admin",
    );
    assert_eq!(user_row(&s, "admin").unwrap()["admin"], true);

    // With a second admin, the first may step down; then the second is the last one.
    let alice = s.user("alice").await;
    ok(&s, &s.admin, &["admin", "user", "set-admin", "alice"], None);
    ok(
        &s,
        &alice,
        &["admin", "user", "set-admin", "admin", "--revoke"],
        None,
    );
    fails(
        &s,
        Some(&alice),
        &["admin", "user", "delete", "alice", "--yes"],
        None,
        "last site admin",
    );
    ok(
        &s,
        &alice,
        &["admin", "user", "delete", "admin", "--yes"],
        None,
    );
    assert!(!users_as(&s, &alice)
        .iter()
        .any(|u| u["username"] == "admin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_user_is_refused_while_they_own_repositories_and_leaves_nothing_behind() {
    let s = TestServer::start().await;
    let bob = s.user("bob").await;
    ok(&s, &bob, &["repo", "create", "bob/tool"], None);
    fails(
        &s,
        Some(&s.admin),
        &["admin", "user", "delete", "bob", "--yes"],
        None,
        "still owns 1 repository (bob/tool)",
    );
    ok(&s, &bob, &["repo", "delete", "bob/tool", "--yes"], None);

    ok(&s, &s.admin, &["org", "create", "acme"], None);
    s.repo("acme", "app", true).await;
    ok(
        &s,
        &s.admin,
        &["org", "member", "add", "acme", "bob", "--role", "write"],
        None,
    );
    ok(
        &s,
        &s.admin,
        &[
            "repo",
            "collaborator",
            "add",
            "bob",
            "--role",
            "admin",
            "-R",
            "acme/app",
        ],
        None,
    );
    ok(
        &s,
        &s.admin,
        &["admin", "user", "delete", "bob", "--yes"],
        None,
    );

    // A new user under the same name inherits no token, membership or role.
    let (st, _) = s.get("/api/v1/user", Some(&bob)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let bob2 = s.user("bob").await;
    let members = ok(
        &s,
        &s.admin,
        &["org", "member", "list", "acme", "--json"],
        None,
    );
    let members: Value = serde_json::from_str(&members).unwrap();
    assert!(
        !members
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["username"] == "bob"),
        "{members}"
    );
    let collabs = ok(
        &s,
        &s.admin,
        &["repo", "collaborator", "list", "-R", "acme/app", "--json"],
        None,
    );
    assert_eq!(
        serde_json::from_str::<Value>(&collabs).unwrap(),
        serde_json::json!([])
    );
    let (st, _) = s.get("/api/v1/forge/acme/app", Some(&bob2)).await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "the new bob sees the old bob's private repo"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn org_member_and_repo_collaborator_commands_grant_list_and_remove_access() {
    let s = TestServer::start().await;
    let alice = s.user("alice").await;
    ok(&s, &s.admin, &["org", "create", "acme"], None);
    s.repo("acme", "app", true).await;
    let (st, _) = s.get("/api/v1/forge/acme/app", Some(&alice)).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    ok(
        &s,
        &s.admin,
        &["org", "member", "add", "acme", "alice", "--role", "write"],
        None,
    );
    let table = ok(&s, &s.admin, &["org", "member", "list", "acme"], None);
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().eq(["alice", "write"])),
        "{table}"
    );
    // A member may read the member list; the org's creator is its admin.
    let list: Value = serde_json::from_str(&ok(
        &s,
        &alice,
        &["org", "member", "list", "acme", "--json"],
        None,
    ))
    .unwrap();
    assert_eq!(
        list,
        serde_json::json!([{"username": "admin", "role": "admin"}, {"username": "alice", "role": "write"}])
    );
    let (st, v) = s.get("/api/v1/forge/acme/app", Some(&alice)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["permission"], "write");
    ok(
        &s,
        &s.admin,
        &["org", "member", "remove", "acme", "alice"],
        None,
    );
    let (st, _) = s.get("/api/v1/forge/acme/app", Some(&alice)).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    ok(
        &s,
        &s.admin,
        &["repo", "collaborator", "add", "alice", "-R", "acme/app"],
        None,
    );
    let table = ok(
        &s,
        &s.admin,
        &["repo", "collaborator", "list", "-R", "acme/app"],
        None,
    );
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().eq(["alice", "read"])),
        "{table}"
    );
    let (_, v) = s.get("/api/v1/forge/acme/app", Some(&alice)).await;
    assert_eq!(v["permission"], "read");
    ok(
        &s,
        &s.admin,
        &["repo", "collaborator", "remove", "alice", "-R", "acme/app"],
        None,
    );
    let (st, _) = s.get("/api/v1/forge/acme/app", Some(&alice)).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offline_set_password_gives_the_bootstrap_admin_a_password_and_refuses_a_running_server() {
    let s = TestServer::start().await;
    let data = s.data_dir();
    let data_arg = data.to_str().unwrap().to_owned();
    // The running server holds the database: a clear refusal, nothing written.
    fails(
        &s,
        None,
        &[
            "admin",
            "set-password",
            "admin",
            "--data-dir",
            &data_arg,
            "--password-stdin",
        ],
        Some(&format!("{PW}\n")),
        "in use by a running server",
    );
    let dir = s.stop().await;

    let run = |user: &str, stdin: &str| {
        Command::new(env!("CARGO_BIN_EXE_pfai"))
            .args([
                "admin",
                "set-password",
                user,
                "--data-dir",
                &data_arg,
                "--password-stdin",
            ])
            .env_remove("PFAI_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(stdin.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap()
    };
    let out = run("nobody", &format!("{PW}\n"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("user nobody not found"));
    let out = run("admin", &format!("{PW}\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let missing = dir.path().join("no-such-data");
    let out = Command::new(env!("CARGO_BIN_EXE_pfai"))
        .args(["admin", "set-password", "admin", "--data-dir"])
        .arg(&missing)
        .arg("--password-stdin")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no pfai data"));
    assert!(!missing.exists(), "a mistyped --data-dir was created");

    let s = TestServer::start_in(dir, |_| {}).await;
    assert_eq!(basic_sign_in(&s, "admin", PW).await, StatusCode::CREATED);
    assert_eq!(
        basic_sign_in(&s, "admin", "not the password").await,
        StatusCode::UNAUTHORIZED
    );
}

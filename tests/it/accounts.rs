//! Accounts, tokens, repositories, roles, errors, restart.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_start_writes_a_private_admin_token() {
    let s = TestServer::start().await;
    let path = s.data_dir().join("initial-admin-token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(s.admin.starts_with("pfai_") && s.admin.len() >= 45);
    let (st, v) = s.get("/api/v1/user", Some(&s.admin)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["username"], "admin");
    assert_eq!(v["admin"], true);
    // The database stores only a hash of the token.
    let db = std::fs::read(s.data_dir().join("pfai.redb")).unwrap();
    assert!(!db.windows(s.admin.len()).any(|w| w == s.admin.as_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_basic_auth_and_revocation() {
    let s = TestServer::start().await;
    let alice = s.user("alice").await;
    let (st, v) = s.get("/api/v1/user", Some(&alice)).await;
    assert_eq!(
        (st, v["username"].as_str()),
        (StatusCode::OK, Some("alice"))
    );

    // Basic with any username and the token as password: the token decides who you are.
    let r = s
        .http
        .get(format!("{}/api/v1/user", s.url))
        .basic_auth("mallory", Some(&alice))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["username"],
        "alice"
    );

    // A wrong token is 401 with a challenge, never anonymous.
    let r = s
        .req(Method::GET, "/api/v1/user", Some("pfai_wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("www-authenticate").is_some());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated");

    // Password works only for minting tokens.
    let r = s
        .http
        .get(format!("{}/api/v1/user", s.url))
        .basic_auth("alice", Some("correct horse"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = s
        .http
        .post(format!("{}/api/v1/user/tokens", s.url))
        .basic_auth("alice", Some("wrong password"))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Mint a second token with the first, revoke it, and it stops working at once.
    let (st, t2) = s
        .post("/api/v1/user/tokens", Some(&alice), json!({"name": "ci"}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let secret = t2["token"].as_str().unwrap().to_owned();
    assert_eq!(s.get("/api/v1/user", Some(&secret)).await.0, StatusCode::OK);
    let id = t2["id"].as_u64().unwrap();
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/api/v1/user/tokens/{id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        s.get("/api/v1/user", Some(&secret)).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_clear_errors() {
    let s = TestServer::start().await;
    let a = Some(s.admin.as_str());
    // Malformed JSON.
    let r = s
        .req(Method::POST, "/api/v1/orgs", a)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "bad_request");
    assert!(v["error"]["message"].as_str().unwrap().contains("JSON"));
    // Invalid names.
    for bad in ["../x", "UPPER", "a/b", "", "-x"] {
        let (st, v) = s.post("/api/v1/orgs", a, json!({"name": bad})).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
    }
    // Duplicates.
    assert_eq!(
        s.post("/api/v1/orgs", a, json!({"name": "acme"})).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        s.post("/api/v1/orgs", a, json!({"name": "acme"})).await.0,
        StatusCode::CONFLICT
    );
    // Oversized body.
    let big = "x".repeat(2 << 20);
    let r = s
        .req(Method::POST, "/api/v1/orgs", a)
        .body(format!("{{\"name\":\"{big}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Unknown route and unknown repo.
    assert_eq!(s.get("/api/v1/nope", a).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        s.get("/api/v1/forge/acme/missing", a).await.0,
        StatusCode::NOT_FOUND
    );
    // Non-admins cannot create users.
    let bob = s.user("bob").await;
    let (st, _) = s
        .post(
            "/api/v1/admin/users",
            Some(&bob),
            json!({"username": "eve", "password": "12345678"}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn private_repositories_do_not_leak() {
    let s = TestServer::start().await;
    s.repo("acme", "secret", true).await;
    s.repo("acme", "open", false).await;
    let outsider = s.user("outsider").await;
    let reader = s.user("reader").await;
    s.collaborator("acme/secret", "reader", "read").await;

    for path in [
        "/api/v1/forge/acme/secret",
        "/api/v1/forge/acme/secret/releases",
        "/api/v1/forge/acme/secret/tags",
    ] {
        let (st_anon, v_anon) = s.get(path, None).await;
        let (st_out, _) = s.get(path, Some(&outsider)).await;
        let (st_missing, v_missing) = s.get(&path.replace("secret", "nothere"), None).await;
        assert_eq!(st_anon, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(st_out, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(st_missing, StatusCode::NOT_FOUND);
        assert_eq!(v_anon["error"]["code"], v_missing["error"]["code"]);
        assert_eq!(s.get(path, Some(&reader)).await.0, StatusCode::OK, "{path}");
    }
    assert_eq!(
        s.get("/api/v1/forge/acme/open", None).await.0,
        StatusCode::OK
    );
    // Listing shows only what the caller can read.
    let (_, v) = s.get("/api/v1/forge/repos", Some(&outsider)).await;
    let names: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["fullName"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, vec!["acme/open"]);
    // A role downgrade takes effect on the next request.
    s.collaborator("acme/secret", "reader", "read").await;
    let (st, _) = s
        .call(
            Method::DELETE,
            "/api/v1/forge/acme/secret/collaborators/reader",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        s.get("/api/v1/forge/acme/secret", Some(&reader)).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn org_roles_apply_to_every_repo() {
    let s = TestServer::start().await;
    s.repo("acme", "app", true).await;
    let dev = s.user("dev").await;
    assert_eq!(
        s.get("/api/v1/forge/acme/app", Some(&dev)).await.0,
        StatusCode::NOT_FOUND
    );
    let (st, _) = s
        .call(
            Method::PUT,
            "/api/v1/orgs/acme/members/dev",
            Some(&s.admin),
            Some(json!({"role": "write"})),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v) = s.get("/api/v1/forge/acme/app", Some(&dev)).await;
    assert_eq!(
        (st, v["permission"].as_str()),
        (StatusCode::OK, Some("write"))
    );
    // write members can create repositories in the org, outsiders cannot.
    let (st, _) = s
        .post(
            "/api/v1/forge/repos",
            Some(&dev),
            json!({"owner": "acme", "name": "lib"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let other = s.user("other").await;
    let (st, _) = s
        .post(
            "/api/v1/forge/repos",
            Some(&other),
            json!({"owner": "acme", "name": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Users own their namespace.
    let (st, v) = s
        .post(
            "/api/v1/forge/repos",
            Some(&other),
            json!({"owner": "other", "name": "mine"}),
        )
        .await;
    assert_eq!(
        (st, v["permission"].as_str()),
        (StatusCode::CREATED, Some("admin"))
    );
    assert!(s.data_dir().join("repos/other/mine.git/HEAD").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn everything_survives_a_restart() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let alice = s.user("alice").await;
    let wc = s.checkout("acme/app", &s.admin.clone());
    crate::harness::git_ok(&wc, &["push", "-q", "origin", "main"]);
    let (st, _) = s
        .post(
            "/api/v1/forge/acme/app/releases",
            Some(&s.admin),
            json!({"tagName": "v1", "targetCommit": "main"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    // An asset downloaded twice: the batched count must survive a graceful stop.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"payload".to_vec()).file_name("a.bin"),
    );
    let r = s
        .req(
            Method::POST,
            "/api/v1/forge/acme/app/releases/v1/assets",
            Some(&s.admin),
        )
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let url = r.json::<serde_json::Value>().await.unwrap()["downloadUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..2 {
        assert_eq!(
            s.http.get(&url).send().await.unwrap().status(),
            StatusCode::OK
        );
    }
    let admin = s.admin.clone();
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, |_| {}).await;
    assert_eq!(s.admin, admin, "the token file is not rewritten");
    assert_eq!(s.get("/api/v1/user", Some(&alice)).await.0, StatusCode::OK);
    let (st, v) = s.get("/api/v1/forge/acme/app/releases/v1", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["tagExists"], true);
    let (_, tags) = s.get("/api/v1/forge/acme/app/tags", None).await;
    assert_eq!(tags[0]["name"], "v1");
    assert_eq!(
        v["assets"][0]["downloadCount"], 2,
        "counts were flushed at shutdown"
    );
}

/// The 201 body of a repository created by an org `write` member said `admin`, while every
/// later GET said `write`: the body now reports the permission the creator really has.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repo_create_reports_the_creators_real_permission() {
    let s = TestServer::start().await;
    let (st, _) = s
        .post("/api/v1/orgs", Some(&s.admin), json!({"name": "acme"}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let dev = s.user("dev").await;
    let (st, _) = s
        .call(
            Method::PUT,
            "/api/v1/orgs/acme/members/dev",
            Some(&s.admin),
            Some(json!({"role": "write"})),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, created) = s
        .post(
            "/api/v1/forge/repos",
            Some(&dev),
            json!({"owner": "acme", "name": "lib", "private": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let (st, got) = s.get("/api/v1/forge/acme/lib", Some(&dev)).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(created["permission"], "write");
    assert_eq!(created["permission"], got["permission"]);
    // The org's admin (site admin here) and a user in their own namespace are admins.
    let (_, v) = s
        .post(
            "/api/v1/forge/repos",
            Some(&s.admin),
            json!({"owner": "acme", "name": "core"}),
        )
        .await;
    assert_eq!(v["permission"], "admin");
    let (_, v) = s
        .post(
            "/api/v1/forge/repos",
            Some(&dev),
            json!({"owner": "dev", "name": "mine"}),
        )
        .await;
    assert_eq!(v["permission"], "admin");
}

/// `x.git` was accepted and then only reachable as `x.git.git`: names ending in `.git` are
/// refused with 422 and nothing is created on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repo_names_ending_in_dot_git_are_refused() {
    let s = TestServer::start().await;
    let (st, _) = s
        .post("/api/v1/orgs", Some(&s.admin), json!({"name": "acme"}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    for name in ["x.git", "app.git", "a.b.git"] {
        let (st, v) = s
            .post(
                "/api/v1/forge/repos",
                Some(&s.admin),
                json!({"owner": "acme", "name": name}),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(".git"),
            "{v}"
        );
        assert!(!s.data_dir().join(format!("repos/acme/{name}")).exists());
        assert!(!s.data_dir().join(format!("repos/acme/{name}.git")).exists());
    }
    // Names merely containing "git" are fine.
    for name in ["git", "gitx", "x.gitx", "x-git"] {
        let (st, v) = s
            .post(
                "/api/v1/forge/repos",
                Some(&s.admin),
                json!({"owner": "acme", "name": name}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{name}: {v}");
    }
}

async fn mint_with_password(s: &TestServer, user: &str, password: &str) -> reqwest::Response {
    s.http
        .post(format!("{}/api/v1/user/tokens", s.url))
        .basic_auth(user, Some(password))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap()
}

/// Password sign-in had no backoff, so passwords could be guessed as fast as argon2 allows.
/// After 5 failures the account is locked out (429 + Retry-After), even for the right
/// password, until the lockout passes; a success starts the count over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_passwords_lock_the_account_out_with_retry_after() {
    let s = TestServer::start_with(|c| {
        c.limits.sign_in.base = std::time::Duration::from_secs(2);
    })
    .await;
    s.user("alice").await;
    for i in 0..5 {
        let r = mint_with_password(&s, "alice", "wrong password").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let r = mint_with_password(&s, "alice", "wrong password").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_requests");
    // The right password is refused too while locked out.
    let r = mint_with_password(&s, "alice", "correct horse").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // Tokens are not affected.
    let (st, _) = s.get("/api/v1/user", Some(&s.admin)).await;
    assert_eq!(st, StatusCode::OK);

    tokio::time::sleep(std::time::Duration::from_millis(wait * 1000 + 300)).await;
    let r = mint_with_password(&s, "alice", "correct horse").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // The success cleared the count: one more mistake is a plain 401.
    let r = mint_with_password(&s, "alice", "wrong password").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// Spreading guesses over many accounts stayed under every per-account limit: the client
/// address has its own, higher threshold (20), which then refuses even a fresh account.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guesses_spread_over_accounts_lock_the_client_address_out() {
    let s = TestServer::start_with(|c| {
        c.limits.sign_in.base = std::time::Duration::from_secs(60);
    })
    .await;
    for i in 0..6 {
        s.user(&format!("user{i}")).await;
    }
    for i in 0..5 {
        for _ in 0..4 {
            let r = mint_with_password(&s, &format!("user{i}"), "guess").await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        }
    }
    let r = mint_with_password(&s, "user5", "correct horse").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get("retry-after").is_some());
}

//! The web UI over plain HTTP: sessions, CSRF, and that pages show and refuse exactly what the
//! API does. (tests/it/browser.rs drives the same pages in headless Chromium.)

use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{git_ok, TestServer};

/// A browser without a browser: a cookie jar of one session cookie, no redirects followed.
pub struct Web {
    url: String,
    http: reqwest::Client,
    pub cookie: Option<String>,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }

    /// The CSRF token embedded in the page's forms.
    pub fn csrf(&self) -> String {
        let marker = "name=\"_csrf\" value=\"";
        let at = self
            .body
            .find(marker)
            .unwrap_or_else(|| panic!("no CSRF field in {}", self.body));
        let rest = &self.body[at + marker.len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

fn cookie_value(set_cookie: &[String], name: &str) -> Option<String> {
    set_cookie.iter().find_map(|c| {
        c.strip_prefix(&format!("{name}="))
            .map(|rest| rest.split(';').next().unwrap_or("").to_owned())
    })
}

impl Web {
    pub fn new(server: &TestServer) -> Web {
        Web {
            url: server.url.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: None,
        }
    }

    async fn send(&self, r: reqwest::RequestBuilder) -> Page {
        let r = match &self.cookie {
            Some(c) => r.header("cookie", format!("pfai_session={c}")),
            None => r,
        };
        let resp = r.send().await.unwrap();
        Page {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        self.send(self.http.get(format!("{}{path}", self.url)))
            .await
    }

    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.send(self.http.post(format!("{}{path}", self.url)).form(fields))
            .await
    }

    pub async fn post_with_origin(
        &self,
        path: &str,
        origin: &str,
        fields: &[(&str, &str)],
    ) -> Page {
        self.send(
            self.http
                .post(format!("{}{path}", self.url))
                .header("origin", origin)
                .form(fields),
        )
        .await
    }

    pub async fn post_multipart(&self, path: &str, form: reqwest::multipart::Form) -> Page {
        self.send(
            self.http
                .post(format!("{}{path}", self.url))
                .multipart(form),
        )
        .await
    }

    /// Signs in through the form (double-submit cookie + token) and keeps the session cookie.
    pub async fn sign_in(&mut self, user: &str, password: &str) -> Page {
        let form = self.get("/login").await;
        assert_eq!(form.status, StatusCode::OK);
        let login_cookie = cookie_value(&form.set_cookies(), "pfai_login").expect("login cookie");
        let page = self
            .send(
                self.http
                    .post(format!("{}/login", self.url))
                    .header("cookie", format!("pfai_login={login_cookie}"))
                    .form(&[
                        ("_csrf", form.csrf().as_str()),
                        ("username", user),
                        ("password", password),
                        ("next", "/"),
                    ]),
            )
            .await;
        if let Some(c) = cookie_value(&page.set_cookies(), "pfai_session") {
            self.cookie = Some(c);
        }
        page
    }
}

const PASSWORD: &str = "correct horse";

/// acme/app (public) with a `main` branch and tag v0.9.0; acme/secret (private). alice: write
/// on both, bob: read on app, boss: admin on app; carol: nothing.
pub async fn setup() -> (TestServer, String) {
    let s = TestServer::start().await;
    let alice = s.user("alice").await;
    for u in ["bob", "boss", "carol"] {
        s.user(u).await;
    }
    s.repo("acme", "app", false).await;
    s.repo("acme", "secret", true).await;
    s.collaborator("acme/app", "alice", "write").await;
    s.collaborator("acme/secret", "alice", "write").await;
    s.collaborator("acme/app", "bob", "read").await;
    s.collaborator("acme/app", "boss", "admin").await;
    let wc = s.checkout("acme/app", &alice);
    git_ok(&wc, &["tag", "v0.9.0"]);
    git_ok(&wc, &["tag", "scratch"]);
    git_ok(&wc, &["push", "-q", "origin", "main", "v0.9.0", "scratch"]);
    (s, alice)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sign_in_sets_a_hardened_cookie_and_sign_out_ends_the_session() {
    let (s, _) = setup().await;
    let mut web = Web::new(&s);

    // The sign-in form sets its double-submit cookie.
    let form = web.get("/login").await;
    let lc = form.set_cookies();
    assert!(
        lc.iter().any(|c| c.starts_with("pfai_login=")
            && c.contains("HttpOnly")
            && c.contains("SameSite=Lax")),
        "{lc:?}"
    );
    // Without that cookie (a cross-site post), the form is refused and no session is made.
    let p = web
        .post(
            "/login",
            &[
                ("_csrf", form.csrf().as_str()),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(cookie_value(&p.set_cookies(), "pfai_session").is_none());

    // Wrong password: 401, the form again with a message.
    let p = web.sign_in("alice", "wrong password").await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert!(
        p.body.contains("incorrect username or password"),
        "{}",
        p.body
    );
    assert!(web.cookie.is_none());
    // Unknown users get the same answer; the bootstrap admin has no password to sign in with.
    assert_eq!(
        web.sign_in("nobody", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        web.sign_in("admin", "").await.status,
        StatusCode::UNAUTHORIZED
    );

    // Right password: a session cookie, HttpOnly + SameSite=Lax, not Secure over plain HTTP.
    let p = web.sign_in("alice", PASSWORD).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let sc = p.set_cookies();
    let session = sc.iter().find(|c| c.starts_with("pfai_session=")).unwrap();
    assert!(
        session.contains("HttpOnly")
            && session.contains("SameSite=Lax")
            && session.contains("Path=/"),
        "{session}"
    );
    assert!(!session.contains("Secure"), "{session}");
    let home = web.get("/").await;
    assert!(
        home.body.contains("Signed in as <strong>alice</strong>"),
        "{}",
        home.body
    );
    assert!(
        home.body.contains("acme/secret"),
        "alice sees her private repository"
    );

    // Behind a TLS proxy the cookie is Secure.
    let fresh = Web::new(&s);
    let form = fresh.get("/login").await;
    let lc = cookie_value(&form.set_cookies(), "pfai_login").unwrap();
    let p = fresh
        .send(
            fresh
                .http
                .post(format!("{}/login", fresh.url))
                .header("cookie", format!("pfai_login={lc}"))
                .header("x-forwarded-proto", "https")
                .form(&[
                    ("_csrf", form.csrf().as_str()),
                    ("username", "alice"),
                    ("password", PASSWORD),
                ]),
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert!(p
        .set_cookies()
        .iter()
        .any(|c| c.starts_with("pfai_session=") && c.contains("; Secure")));

    // `next` brings the user back, but only to a path on this site.
    for (next, expect) in [
        ("/acme/app/releases", "/acme/app/releases"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
    ] {
        let w = Web::new(&s);
        let form = w.get("/login").await;
        let lc = cookie_value(&form.set_cookies(), "pfai_login").unwrap();
        let p = w
            .send(
                w.http
                    .post(format!("{}/login", w.url))
                    .header("cookie", format!("pfai_login={lc}"))
                    .form(&[
                        ("_csrf", form.csrf().as_str()),
                        ("username", "alice"),
                        ("password", PASSWORD),
                        ("next", next),
                    ]),
            )
            .await;
        assert_eq!(p.location(), expect, "next={next}");
    }

    // Signing out needs the CSRF token too, then the old cookie is worthless.
    let home = web.get("/").await;
    assert_eq!(web.post("/logout", &[]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        web.get("/acme/secret").await.status,
        StatusCode::OK,
        "still signed in"
    );
    let p = web
        .post("/logout", &[("_csrf", home.csrf().as_str())])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert!(p
        .set_cookies()
        .iter()
        .any(|c| c.starts_with("pfai_session=;") && c.contains("Max-Age=0")));
    let after = web.get("/acme/secret").await;
    assert_eq!(
        after.status,
        StatusCode::NOT_FOUND,
        "the old session id no longer works"
    );
    assert!(!after.body.contains("Signed in as"));
}

async fn rules(s: &TestServer) -> serde_json::Value {
    s.get("/api/v1/forge/acme/app/tag-protections", Some(&s.admin))
        .await
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_state_change_needs_the_session_csrf_token() {
    let (s, alice) = setup().await;
    let mut boss = Web::new(&s);
    boss.sign_in("boss", PASSWORD).await;
    let page = boss.get("/acme/app/settings/tag-protection").await;
    assert_eq!(page.status, StatusCode::OK);
    let token = page.csrf();

    // Missing, wrong, or cross-origin: refused, nothing changes.
    let path = "/acme/app/settings/tag-protection";
    assert_eq!(
        boss.post(path, &[("pattern", "v*")]).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        boss.post(path, &[("_csrf", "0000"), ("pattern", "v*")])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let p = boss
        .post_with_origin(
            path,
            "http://evil.example",
            &[("_csrf", token.as_str()), ("pattern", "v*")],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    // Another user's token does not work with this session.
    let mut alice_web = Web::new(&s);
    alice_web.sign_in("alice", PASSWORD).await;
    let alice_token = alice_web.get("/acme/app/tags").await.csrf();
    assert_ne!(alice_token, token);
    assert_eq!(
        boss.post(path, &[("_csrf", alice_token.as_str()), ("pattern", "v*")])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // Without a session, a token is meaningless: sign in first.
    let anon = Web::new(&s);
    let p = anon
        .post(path, &[("_csrf", token.as_str()), ("pattern", "v*")])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert!(p.location().starts_with("/login?next="), "{}", p.location());
    assert_eq!(rules(&s).await, json!([]));

    // The right token from the right origin works.
    let p = boss
        .post_with_origin(
            path,
            &s.url,
            &[("_csrf", token.as_str()), ("pattern", "v0.*")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(rules(&s).await[0]["pattern"], "v0.*");
    // A bad glob re-shows the form with the message.
    let p = boss
        .post(path, &[("_csrf", token.as_str()), ("pattern", "a[")])
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p.body.contains("role=\"alert\"") && p.body.contains("value=\"a[\""),
        "{}",
        p.body
    );

    // A write user cannot delete the protected tag from the UI either (the server decides).
    let p = alice_web
        .post(
            "/acme/app/tags/delete/v0.9.0",
            &[("_csrf", alice_token.as_str())],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(p.body.contains("protected"), "{}", p.body);
    assert_eq!(
        s.get("/api/v1/forge/acme/app/tags/v0.9.0", Some(&alice))
            .await
            .0,
        StatusCode::OK
    );
    // ... and the page offers no delete button for it, but does for an unprotected tag.
    let tags = alice_web.get("/acme/app/tags").await.body;
    assert!(!tags.contains("/acme/app/tags/delete/v0.9.0"));
    assert!(tags.contains("/acme/app/tags/delete/scratch"));
    // Without the token even an allowed delete is refused; with it, it happens.
    assert_eq!(
        alice_web
            .post("/acme/app/tags/delete/scratch", &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.get("/api/v1/forge/acme/app/tags/scratch", Some(&alice))
            .await
            .0,
        StatusCode::OK
    );
    let p = alice_web
        .post(
            "/acme/app/tags/delete/scratch",
            &[("_csrf", alice_token.as_str())],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(
        s.get("/api/v1/forge/acme/app/tags/scratch", Some(&alice))
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // A multipart release form without the token creates nothing.
    let form = reqwest::multipart::Form::new()
        .text("tag", "v1.0.0")
        .text("target", "main")
        .text("action", "publish");
    let p = alice_web
        .post_multipart("/acme/app/releases/new", form)
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let form = reqwest::multipart::Form::new()
        .text("_csrf", "bad")
        .text("tag", "v1.0.0")
        .text("target", "main")
        .part(
            "files",
            reqwest::multipart::Part::bytes(b"data".to_vec()).file_name("a.bin"),
        );
    let p = alice_web
        .post_multipart("/acme/app/releases/new", form)
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let (_, list) = s.get("/api/v1/forge/acme/app/releases", Some(&alice)).await;
    assert_eq!(list, json!([]));
    assert_eq!(
        s.get("/api/v1/forge/acme/app/tags/v1.0.0", Some(&alice))
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // Deleting a release needs the token too.
    let (st, _) = s
        .post(
            "/api/v1/forge/acme/app/releases",
            Some(&alice),
            json!({"tagName": "v0.9.0"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(
        alice_web
            .post("/acme/app/releases/delete/v0.9.0", &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.get("/api/v1/forge/acme/app/releases/v0.9.0", None)
            .await
            .0,
        StatusCode::OK
    );
    let p = alice_web
        .post(
            "/acme/app/releases/delete/v0.9.0",
            &[("_csrf", alice_token.as_str())],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(
        s.get("/api/v1/forge/acme/app/releases/v0.9.0", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_show_and_refuse_exactly_what_the_api_does() {
    let (s, alice) = setup().await;
    let anon = Web::new(&s);
    let mut bob = Web::new(&s);
    bob.sign_in("bob", PASSWORD).await;
    let mut carol = Web::new(&s);
    carol.sign_in("carol", PASSWORD).await;
    let mut alice_web = Web::new(&s);
    alice_web.sign_in("alice", PASSWORD).await;

    // Private repositories: 404 to those who cannot read, on every page.
    for path in [
        "/acme/secret",
        "/acme/secret/releases",
        "/acme/secret/tags",
        "/acme/secret/packages",
    ] {
        assert_eq!(anon.get(path).await.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            carol.get(path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
        assert_eq!(alice_web.get(path).await.status, StatusCode::OK, "{path}");
    }
    assert!(!anon.get("/").await.body.contains("acme/secret"));
    assert!(!carol.get("/acme").await.body.contains("acme/secret"));
    assert_eq!(anon.get("/nobody-here").await.status, StatusCode::NOT_FOUND);

    // A published release with notes that try to run script, and a draft.
    let evil = "Fixes.\n\n<script>document.title='pwned'</script>\n\n<img src=x onerror=\"alert(1)\">\n\n[x](javascript:alert(1)) <a href=\"javascript:alert(2)\">y</a>";
    let (st, v) = s
        .post(
            "/api/v1/forge/acme/app/releases",
            Some(&alice),
            json!({"tagName": "v1.0.0", "targetCommit": "main", "name": "One", "body": evil}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, _) = s
        .post(
            "/api/v1/forge/acme/app/releases",
            Some(&alice),
            json!({"tagName": "v2.0.0-draft", "targetCommit": "main", "name": "Secret plans", "draft": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);

    let page = anon.get("/acme/app/releases/tag/v1.0.0").await;
    assert_eq!(page.status, StatusCode::OK);
    let body = page.body.to_ascii_lowercase();
    assert!(body.contains("fixes."));
    for bad in [
        "<script",
        "onerror",
        "href=\"javascript",
        "src=\"javascript",
    ] {
        assert!(!body.contains(bad), "{bad} in {}", page.body);
    }
    let csp = page
        .headers
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert!(page
        .body
        .contains("<title>One · acme/app · Releases · pfai</title>"));
    assert!(page.body.contains("class=\"badge latest\""));

    // Drafts: invisible below write, in the list, by URL and as the Latest.
    for w in [&anon, &bob] {
        let list = w.get("/acme/app/releases").await.body;
        assert!(
            list.contains("One") && !list.contains("Secret plans"),
            "{list}"
        );
        assert_eq!(
            w.get("/acme/app/releases/tag/v2.0.0-draft").await.status,
            StatusCode::NOT_FOUND
        );
        assert!(!list.contains("Draft a new release"), "no write, no button");
    }
    let list = alice_web.get("/acme/app/releases").await.body;
    assert!(list.contains("Secret plans") && list.contains("class=\"badge draft\""));
    assert!(list.contains("Draft a new release"));
    // The Latest badge sits where the API says.
    let (_, latest) = s.get("/api/v1/forge/acme/app/releases/latest", None).await;
    assert_eq!(latest["tagName"], "v1.0.0");

    // Write pages: sign in first (anonymous), forbidden for read.
    let p = anon.get("/acme/app/releases/new").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location(), "/login?next=%2Facme%2Fapp%2Freleases%2Fnew");
    assert_eq!(
        bob.get("/acme/app/releases/new").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        bob.get("/acme/app/releases/edit/v1.0.0").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        alice_web.get("/acme/app/releases/new").await.status,
        StatusCode::OK
    );
    // Settings: admins only, and only they see the tab.
    assert_eq!(
        alice_web
            .get("/acme/app/settings/tag-protection")
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        bob.get("/acme/app/settings/collaborators").await.status,
        StatusCode::FORBIDDEN
    );
    assert!(!alice_web
        .get("/acme/app")
        .await
        .body
        .contains("/settings/tag-protection"));
    let mut boss = Web::new(&s);
    boss.sign_in("boss", PASSWORD).await;
    assert!(boss
        .get("/acme/app")
        .await
        .body
        .contains("/settings/tag-protection"));

    // Collaborators: an admin adds carol as read through the form; she then sees the page.
    let page = boss.get("/acme/app/settings/collaborators").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("alice") && page.body.contains("bob"));
    let t = page.csrf();
    let p = boss
        .post(
            "/acme/app/settings/collaborators",
            &[
                ("_csrf", t.as_str()),
                ("username", "nobody"),
                ("role", "read"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    assert!(p.body.contains("user nobody not found"));
    let p = boss
        .post(
            "/acme/app/settings/collaborators",
            &[
                ("_csrf", t.as_str()),
                ("username", "carol"),
                ("role", "write"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(
        carol.get("/acme/app/releases/new").await.status,
        StatusCode::OK
    );
    let p = boss
        .post(
            "/acme/app/settings/collaborators",
            &[
                ("_csrf", t.as_str()),
                ("username", "carol"),
                ("role", "none"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(
        carol.get("/acme/app/releases/new").await.status,
        StatusCode::FORBIDDEN
    );

    // Asset downloads through the UI link follow the release's visibility.
    let up = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"draft bytes".to_vec()).file_name("d.bin"),
    );
    let r = s
        .req(
            reqwest::Method::POST,
            "/api/v1/forge/acme/app/releases/v2.0.0-draft/assets",
            Some(&alice),
        )
        .multipart(up)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let link = "/acme/app/releases/download/v2.0.0-draft/d.bin";
    assert_eq!(anon.get(link).await.status, StatusCode::NOT_FOUND);
    assert_eq!(bob.get(link).await.status, StatusCode::NOT_FOUND);
    let p = alice_web.get(link).await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(p.body, "draft bytes");

    // Owner names that would shadow the server's own pages are refused.
    let (st, v) = s
        .post(
            "/api/v1/admin/users",
            Some(&s.admin),
            json!({"username": "login", "password": "long enough"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // The API and git keep their paths; unknown API routes stay JSON.
    let p = anon.get("/api/v1/nothing").await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    assert!(p.body.starts_with('{'), "{}", p.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_drafted_in_the_form_gets_its_files_before_it_is_published() {
    let (s, alice) = setup().await;
    let mut web = Web::new(&s);
    web.sign_in("alice", PASSWORD).await;
    let t = web.get("/acme/app/releases/new").await.csrf();

    // Validation errors show the form again, with what was typed.
    let form = reqwest::multipart::Form::new()
        .text("_csrf", t.clone())
        .text("tag", "v1.0.0")
        .text("target", "no-such-branch")
        .text("title", "Kept title")
        .text("action", "publish");
    let p = web.post_multipart("/acme/app/releases/new", form).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p.body.contains("no-such-branch")
            && p.body.contains("Kept title")
            && p.body.contains("role=\"alert\""),
        "{}",
        p.body
    );

    // Two files, published: the release shows both with their SHA-256.
    let form = reqwest::multipart::Form::new()
        .text("_csrf", t.clone())
        .text("tag", "v1.0.0")
        .text("target", "main")
        .text("title", "First")
        .text("notes", "**bold**")
        .part(
            "files",
            reqwest::multipart::Part::bytes(b"linux build".to_vec()).file_name("app-linux.tar.gz"),
        )
        .part(
            "files",
            reqwest::multipart::Part::bytes(b"mac build".to_vec()).file_name("app-mac.zip"),
        )
        .part(
            "files",
            reqwest::multipart::Part::bytes(Vec::new()).file_name(""),
        )
        .text("action", "publish");
    let p = web.post_multipart("/acme/app/releases/new", form).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.location(), "/acme/app/releases/tag/v1.0.0");
    let (_, v) = s.get("/api/v1/forge/acme/app/releases/v1.0.0", None).await;
    assert_eq!(v["draft"], false);
    assert_eq!(v["latest"], true);
    assert_eq!(v["assets"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(
        s.get("/api/v1/forge/acme/app/tags/v1.0.0", Some(&alice))
            .await
            .0,
        StatusCode::OK
    );
    let page = web.get("/acme/app/releases/tag/v1.0.0").await.body;
    assert!(page.contains("<strong>bold</strong>"));
    assert!(page.contains(&pfai::util::sha256_hex(b"linux build")));
    assert!(
        page.contains(&format!(
            "<td data-label=\"BLAKE3\"><code class=\"sha256 blake3\" title=\"{0}\">{0}</code>",
            blake3::hash(b"linux build").to_hex()
        )),
        "the asset's BLAKE3 is on the release page: {page}"
    );

    // A duplicate file name in an edit: the edit page again with the conflict; nothing lost.
    let edit = web.get("/acme/app/releases/edit/v1.0.0").await;
    let form = reqwest::multipart::Form::new()
        .text("_csrf", edit.csrf())
        .text("title", "First, renamed")
        .text("notes", "")
        .part(
            "files",
            reqwest::multipart::Part::bytes(b"again".to_vec()).file_name("app-mac.zip"),
        )
        .text("action", "update");
    let p = web
        .post_multipart("/acme/app/releases/edit/v1.0.0", form)
        .await;
    assert_eq!(p.status, StatusCode::CONFLICT, "{}", p.body);
    assert!(p.body.contains("already has an asset named app-mac.zip"));
    let (_, v) = s.get("/api/v1/forge/acme/app/releases/v1.0.0", None).await;
    assert_eq!(v["assets"].as_array().unwrap().len(), 2);

    // Saved as a draft with a new tag: no tag until it is published from the edit page.
    let form = reqwest::multipart::Form::new()
        .text("_csrf", t.clone())
        .text("tag", "v1.1.0")
        .text("target", "main")
        .part(
            "files",
            reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("x.bin"),
        )
        .text("action", "draft");
    assert_eq!(
        web.post_multipart("/acme/app/releases/new", form)
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    let (_, v) = s
        .get("/api/v1/forge/acme/app/releases/v1.1.0", Some(&alice))
        .await;
    assert_eq!(v["draft"], true);
    assert_eq!(
        s.get("/api/v1/forge/acme/app/tags/v1.1.0", Some(&alice))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let form = reqwest::multipart::Form::new()
        .text("_csrf", t.clone())
        .text("title", "Second")
        .text("notes", "")
        .text("action", "publish");
    assert_eq!(
        web.post_multipart("/acme/app/releases/edit/v1.1.0", form)
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    let (_, v) = s.get("/api/v1/forge/acme/app/releases/latest", None).await;
    assert_eq!(v["tagName"], "v1.1.0");
    assert_eq!(v["name"], "Second");
    assert_eq!(
        s.get("/api/v1/forge/acme/app/tags/v1.1.0", Some(&alice))
            .await
            .0,
        StatusCode::OK
    );
}

/// The sign-in form could be used to guess passwords without limit: after 5 failures it
/// answers 429 with Retry-After and says so, and the right password waits too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sign_in_form_locks_out_after_repeated_wrong_passwords() {
    let s = TestServer::start_with(|c| {
        c.limits.sign_in.base = std::time::Duration::from_secs(60);
    })
    .await;
    s.user("alice").await;
    let mut web = Web::new(&s);
    for _ in 0..5 {
        let p = web.sign_in("alice", "wrong password").await;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    }
    let p = web.sign_in("alice", "wrong password").await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(p.headers.get("retry-after").is_some());
    assert!(p.body.contains("too many failed sign-ins"), "{}", p.body);
    let p = web.sign_in("alice", PASSWORD).await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(web.cookie.is_none(), "no session during a lockout");
}

/// The form action (a `POST` target) on a confirmation page, with the page's CSRF token.
fn confirm_form(p: &Page, action: &str) {
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(
        p.body.contains(&format!(
            "<form class=\"confirm\" method=\"post\" action=\"{action}\""
        )),
        "no confirm form posting to {action}: {}",
        p.body
    );
    assert!(!p.csrf().is_empty());
}

/// A delete button used to delete on one click (a stray tap lost a release and its files):
/// every delete is now a link to a page that says what goes, and only its form deletes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_click_on_delete_only_shows_what_would_be_deleted() {
    let (s, alice) = setup().await;
    let mut web = Web::new(&s);
    web.sign_in("alice", PASSWORD).await;
    let mut boss = Web::new(&s);
    boss.sign_in("boss", PASSWORD).await;
    let (st, _) = s
        .post(
            "/api/v1/forge/acme/app/releases",
            Some(&alice),
            json!({"tagName": "v0.9.0", "name": "Old one"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let up = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(vec![7u8; 1000]).file_name("tool.bin"),
    );
    let r = s
        .req(
            reqwest::Method::POST,
            "/api/v1/forge/acme/app/releases/v0.9.0/assets",
            Some(&alice),
        )
        .multipart(up)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_, rel) = s
        .get("/api/v1/forge/acme/app/releases/v0.9.0", Some(&alice))
        .await;
    let asset_id = rel["assets"][0]["id"].as_u64().unwrap();
    let sha = rel["assets"][0]["sha256"].as_str().unwrap().to_owned();
    let b3 = rel["assets"][0]["blake3"].as_str().unwrap().to_owned();
    let (st, rule) = s
        .post(
            "/api/v1/forge/acme/app/tag-protections",
            Some(&s.admin),
            json!({"pattern": "keep-*"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{rule}");
    let rule_id = rule["id"].as_u64().unwrap();

    // The pages link to the confirmation pages; no page deletes in one POST button any more.
    let page = web.get("/acme/app/releases/tag/v0.9.0").await;
    assert!(
        page.body
            .contains("href=\"/acme/app/releases/delete/v0.9.0\""),
        "{}",
        page.body
    );
    let edit = web.get("/acme/app/releases/edit/v0.9.0").await;
    let asset_confirm = format!("/acme/app/releases/delete-asset/v0.9.0/{asset_id}");
    assert!(
        edit.body.contains(&format!("href=\"{asset_confirm}\"")),
        "{}",
        edit.body
    );
    let tags = web.get("/acme/app/tags").await;
    assert!(
        tags.body.contains("href=\"/acme/app/tags/delete/scratch\""),
        "{}",
        tags.body
    );
    assert!(
        !tags.body.contains("action=\"/acme/app/tags/delete/"),
        "{}",
        tags.body
    );
    let rules = boss.get("/acme/app/settings/tag-protection").await;
    let rule_confirm = format!("/acme/app/settings/tag-protection/{rule_id}/delete");
    assert!(
        rules.body.contains(&format!("href=\"{rule_confirm}\"")),
        "{}",
        rules.body
    );

    // Each confirmation page names what goes and posts back to the existing endpoint.
    let p = web.get("/acme/app/releases/delete/v0.9.0").await;
    confirm_form(&p, "/acme/app/releases/delete/v0.9.0");
    assert!(
        p.body.contains("Old one") && p.body.contains("tool.bin"),
        "{}",
        p.body
    );
    let p = web.get(&asset_confirm).await;
    confirm_form(&p, &asset_confirm);
    assert!(
        p.body.contains("tool.bin") && p.body.contains(&sha) && p.body.contains(&b3),
        "{}",
        p.body
    );
    let p = web.get("/acme/app/tags/delete/scratch").await;
    confirm_form(&p, "/acme/app/tags/delete/scratch");
    let p = boss.get(&rule_confirm).await;
    confirm_form(&p, &rule_confirm);
    assert!(p.body.contains("keep-*"), "{}", p.body);
    // Readers get no confirmation page; signed-out visitors are sent to sign in.
    let mut bob = Web::new(&s);
    bob.sign_in("bob", PASSWORD).await;
    assert_eq!(
        bob.get("/acme/app/releases/delete/v0.9.0").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(web.get(&rule_confirm).await.status, StatusCode::FORBIDDEN);
    let anon = Web::new(&s).get("/acme/app/tags/delete/scratch").await;
    assert_eq!(anon.status, StatusCode::SEE_OTHER);
    assert!(anon.location().starts_with("/login?next="));

    // Looking deleted nothing.
    assert_eq!(
        s.get("/api/v1/forge/acme/app/releases/v0.9.0", None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        s.get("/api/v1/forge/acme/app/tags/scratch", Some(&alice))
            .await
            .0,
        StatusCode::OK
    );

    // Confirming does: asset, release, tag, rule.
    let t = web.get(&asset_confirm).await.csrf();
    assert_eq!(
        web.post(&asset_confirm, &[("_csrf", &t)]).await.status,
        StatusCode::SEE_OTHER
    );
    let (_, rel) = s
        .get("/api/v1/forge/acme/app/releases/v0.9.0", Some(&alice))
        .await;
    assert_eq!(rel["assets"], json!([]));
    let p = web
        .post("/acme/app/releases/delete/v0.9.0", &[("_csrf", &t)])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(
        s.get("/api/v1/forge/acme/app/releases/v0.9.0", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let p = web
        .post("/acme/app/tags/delete/scratch", &[("_csrf", &t)])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let bt = boss.get(&rule_confirm).await.csrf();
    assert_eq!(
        boss.post(&rule_confirm, &[("_csrf", &bt)]).await.status,
        StatusCode::SEE_OTHER
    );
    let (_, rules) = s
        .get("/api/v1/forge/acme/app/tag-protections", Some(&s.admin))
        .await;
    assert_eq!(rules, json!([]));
    // A confirmation page for something already gone is a 404, not an empty form.
    assert_eq!(
        web.get("/acme/app/releases/delete/v0.9.0").await.status,
        StatusCode::NOT_FOUND
    );
}

/// Writing release notes blind: the Preview button renders them (sanitized) under the form as
/// typed, without creating a release or a tag, and the form picks an existing tag or a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn draft_form_previews_notes_without_creating_anything() {
    let (s, alice) = setup().await;
    let mut web = Web::new(&s);
    web.sign_in("alice", PASSWORD).await;
    let form = web.get("/acme/app/releases/new").await;
    assert!(
        form.body
            .contains("<option value=\"v0.9.0\">v0.9.0</option>"),
        "{}",
        form.body
    );
    assert!(
        form.body.contains("<select id=\"target\" name=\"target\">"),
        "{}",
        form.body
    );
    assert!(
        form.body
            .contains("formaction=\"/acme/app/releases/new/preview\""),
        "{}",
        form.body
    );
    let t = form.csrf();
    let notes =
        "## Fixed\n\n```sh\npfai release list\n```\n\n> quoted\n\n<script>alert(1)</script>";
    let p = web
        .post(
            "/acme/app/releases/new/preview",
            &[
                ("_csrf", t.as_str()),
                ("existing_tag", ""),
                ("tag", "v2.0.0"),
                ("target", "main"),
                ("title", "Two"),
                ("notes", notes),
                ("files", "app.tar.gz"),
                ("action", "preview"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(p.body.contains("<h2>Fixed</h2>"), "{}", p.body);
    assert!(p.body.contains("<pre><code"), "{}", p.body);
    assert!(p.body.contains("<blockquote>"), "{}", p.body);
    assert!(!p.body.contains("<script>alert"), "{}", p.body);
    // The form comes back as typed, and says the chosen file must be chosen again.
    assert!(p.body.contains("value=\"v2.0.0\""), "{}", p.body);
    assert!(p.body.contains("value=\"Two\""), "{}", p.body);
    assert!(p.body.contains("app.tar.gz"), "{}", p.body);
    let (_, list) = s.get("/api/v1/forge/acme/app/releases", Some(&alice)).await;
    assert_eq!(list, json!([]));
    assert_eq!(
        s.get("/api/v1/forge/acme/app/tags/v2.0.0", Some(&alice))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // Preview needs the token like every other post.
    assert_eq!(
        web.post("/acme/app/releases/new/preview", &[("notes", "x")])
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // An existing tag and a different new one at once: refused, nothing made.
    let form = reqwest::multipart::Form::new()
        .text("_csrf", t.clone())
        .text("existing_tag", "v0.9.0")
        .text("tag", "v3.0.0")
        .text("target", "main")
        .text("action", "publish");
    let p = web.post_multipart("/acme/app/releases/new", form).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", p.body);
    assert!(p.body.contains("not both"), "{}", p.body);
    // Neither: refused too.
    let form = reqwest::multipart::Form::new()
        .text("_csrf", t.clone())
        .text("existing_tag", "")
        .text("tag", "")
        .text("action", "publish");
    let p = web.post_multipart("/acme/app/releases/new", form).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", p.body);
    // The existing tag picked from the list: the release goes on it.
    let form = reqwest::multipart::Form::new()
        .text("_csrf", t.clone())
        .text("existing_tag", "v0.9.0")
        .text("tag", "")
        .text("target", "main")
        .text("title", "Picked")
        .text("action", "publish");
    let p = web.post_multipart("/acme/app/releases/new", form).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.location(), "/acme/app/releases/tag/v0.9.0");
}

/// The overview page showed only a clone line: it now shows the default branch's README
/// (rendered, sanitized, README.md preferred) and the latest release, and the owner page shows
/// each repository's latest release.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overview_shows_the_readme_and_owner_page_the_latest_releases() {
    let (s, alice) = setup().await;
    // setup's commit has a plain README.
    let p = Web::new(&s).get("/acme/app").await;
    assert!(p.body.contains("section class=\"readme\""), "{}", p.body);
    assert!(p.body.contains("hello"), "{}", p.body);
    let wc = s.checkout("acme/app", &alice);
    git_ok(&wc, &["fetch", "-q", "origin", "main"]);
    git_ok(&wc, &["reset", "-q", "--hard", "FETCH_HEAD"]);
    std::fs::write(
        wc.join("README.md"),
        "# App\n\n> Fast.\n\n```rust\nfn main() {}\n```\n\n<img src=x onerror=alert(1)>\n",
    )
    .unwrap();
    git_ok(&wc, &["add", "README.md"]);
    git_ok(&wc, &["commit", "-q", "-m", "readme"]);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let (st, _) = s
        .post(
            "/api/v1/forge/acme/app/releases",
            Some(&alice),
            json!({"tagName": "v0.9.0", "name": "Nine"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let p = Web::new(&s).get("/acme/app").await;
    assert!(p.body.contains("<h1>App</h1>"), "{}", p.body);
    assert!(p.body.contains("<blockquote>"), "{}", p.body);
    assert!(p.body.contains("<pre><code>fn main() {}"), "{}", p.body);
    assert!(!p.body.contains("onerror"), "{}", p.body);
    assert!(p.body.contains("README.md"), "{}", p.body);
    assert!(p.body.contains("Nine"), "{}", p.body);
    // A README past the cap is named, not rendered.
    std::fs::write(wc.join("README.md"), "x".repeat(600 * 1024)).unwrap();
    git_ok(&wc, &["commit", "-q", "-am", "huge readme"]);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let p = Web::new(&s).get("/acme/app").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(
        p.body.contains("shown here"),
        "{}",
        &p.body[..2000.min(p.body.len())]
    );
    assert!(!p.body.contains("xxxxxxxxxx"));
    // An empty repository has no README and still renders.
    s.repo("acme", "empty", false).await;
    let p = Web::new(&s).get("/acme/empty").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(!p.body.contains("section class=\"readme\""), "{}", p.body);
    // The owner page: app's latest release, nothing for empty, nothing of the private repo
    // to a visitor.
    let p = Web::new(&s).get("/acme").await;
    assert!(
        p.body.contains("href=\"/acme/app/releases/tag/v0.9.0\""),
        "{}",
        p.body
    );
    assert!(p.body.contains("Nine"), "{}", p.body);
    assert!(!p.body.contains("acme/secret"), "{}", p.body);
}

/// Two tags of one image (and a second image version sharing its config) made the Packages
/// total count shared blobs once per tag; each blob counts once, and pull lines name the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn packages_total_counts_shared_layers_once() {
    let (s, alice) = setup().await;
    let remote = crate::harness::Remote {
        url: s.url.clone(),
        token: alice.clone(),
    };
    let layer_a = vec![1u8; 3000];
    let layer_b = vec![2u8; 500];
    remote.push_image("acme/app/web", "1.0", &layer_a).await;
    remote.push_image("acme/app/web", "latest", &layer_a).await;
    remote.push_image("acme/app/web", "2.0", &layer_b).await;
    let config_len = br#"{"architecture":"amd64","os":"linux"}"#.len() as u64;
    let (st, pk) = s.get("/api/v1/forge/acme/app/packages", None).await;
    assert_eq!(st, StatusCode::OK);
    let web = pk
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "acme/app/web")
        .unwrap_or_else(|| panic!("{pk}"));
    assert_eq!(web["tagCount"], 3);
    assert_eq!(web["totalSize"], config_len + 3000 + 500, "{pk}");
    let p = Web::new(&s).get("/acme/app/packages").await;
    let host = s.url.trim_start_matches("http://");
    let text = p.body.replace("<wbr>", "");
    assert!(
        text.contains(&format!("docker pull {host}/acme/app/web:1.0")),
        "{}",
        p.body
    );
}

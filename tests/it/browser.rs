//! The web UI in a real browser: headless Chromium driven over WebDriver (chromedriver +
//! fantoccini) against the real server. Screenshots of each tab land in
//! `target/ui-screenshots/` (kept as CI artifacts). Locally the test is skipped without
//! chromedriver; in CI (`CI=true`) a missing browser fails it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;

use crate::harness::{require_tool, Remote, TestServer};
use crate::ui::setup;

const PASSWORD: &str = "correct horse";

struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver() -> Option<Driver> {
    if !require_tool("chromedriver") || !require_tool("chromium") {
        eprintln!("skipping: chromedriver/chromium not installed (CI installs them)");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let driver = Driver { child, url };
    for _ in 0..100 {
        if let Ok(r) = reqwest::get(format!("{}/status", driver.url)).await {
            if r.status().is_success() {
                return Some(driver);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not come up");
}

/// One browser session (its own cookies), downloading into `downloads`.
async fn browser(driver: &Driver, downloads: &Path) -> Client {
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--lang=en-US"],
            "prefs": {
                "download.default_directory": downloads.to_str().unwrap(),
                "download.prompt_for_download": false,
                "safebrowsing.enabled": false
            }
        }
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    // chromedriver speaks plain HTTP on loopback: no TLS stack needed.
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

fn shots_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(shots_dir().join(format!("{name}.png")), png).unwrap();
}

/// A screenshot with the element `css` scrolled into view (a viewport shot otherwise misses
/// what sits below the fold).
async fn shot_at(c: &Client, css: &str, name: &str) {
    c.execute(
        "document.querySelector(arguments[0]).scrollIntoView({block: 'center'})",
        vec![serde_json::json!(css)],
    )
    .await
    .unwrap();
    shot(c, name).await;
}

async fn fill(c: &Client, css: &str, text: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

async fn select(c: &Client, css: &str, value: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .select_by_value(value)
        .await
        .unwrap();
}

/// Whether the page scrolls sideways (the phone-width check).
async fn fits_width(c: &Client) -> bool {
    c.execute(
        "return document.documentElement.scrollWidth <= window.innerWidth",
        vec![],
    )
    .await
    .unwrap()
        == serde_json::Value::Bool(true)
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// The page's text; retried while a navigation replaces the document.
async fn body_text(c: &Client) -> String {
    let mut last = None;
    for _ in 0..50 {
        match c.find(Locator::Css("body")).await {
            Ok(b) => match b.text().await {
                Ok(t) => return t,
                Err(e) => last = Some(e.to_string()),
            },
            Err(e) => last = Some(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no page text: {last:?}");
}

/// Waits (up to 10 s) until the page shows `needle` — after a click that navigates — and
/// returns the page's text.
async fn expect_text(c: &Client, needle: &str) -> String {
    let mut text = String::new();
    for _ in 0..100 {
        text = body_text(c).await;
        if text.contains(needle) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the page never showed {needle:?}; it shows:\n{text}");
}

async fn go(c: &Client, s: &TestServer, path: &str) {
    c.goto(&format!("{}{path}", s.url)).await.unwrap();
}

async fn sign_in(c: &Client, s: &TestServer, user: &str) {
    go(c, s, "/login").await;
    fill(c, "#username", user).await;
    fill(c, "#password", PASSWORD).await;
    click(c, "form[action='/login'] button[type=submit]").await;
    expect_text(c, &format!("Signed in as {user}")).await;
}

/// The article of the release titled `title` on a releases list.
async fn release_article_text(c: &Client, title: &str) -> String {
    for a in c.find_all(Locator::Css("article.release")).await.unwrap() {
        let t = a.text().await.unwrap();
        if t.starts_with(title) {
            return t;
        }
    }
    panic!("no release titled {title}");
}

/// Waits (up to 10 s) until the page no longer shows `needle`.
async fn wait_until_gone(c: &Client, needle: &str) {
    for _ in 0..100 {
        if !body_text(c).await.contains(needle) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the page still shows {needle:?}");
}

async fn wait_for_download(dir: &Path, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    for _ in 0..200 {
        if path.exists() {
            let partial = std::fs::read_dir(dir)
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".crdownload"));
            if !partial {
                return std::fs::read(&path).unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} was not downloaded into {}", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_web_ui_in_headless_chromium() {
    let Some(driver) = start_driver().await else {
        return;
    };
    let (s, alice) = setup().await;
    let downloads = s.dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let asset_path = s.dir.path().join("app-linux-amd64.tar.gz");
    let asset_bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&asset_path, &asset_bytes).unwrap();

    let c = browser(&driver, &downloads).await;

    // The sign-in page, then the start page.
    go(&c, &s, "/login").await;
    assert_eq!(c.title().await.unwrap(), "Sign in · pfai");
    shot(&c, "login").await;
    sign_in(&c, &s, "alice").await;
    assert_eq!(c.title().await.unwrap(), "Repositories · pfai");
    shot(&c, "home").await;

    // Draft a release with an asset; its notes try to run script.
    go(&c, &s, "/acme/app/releases").await;
    c.find(Locator::LinkText("Draft a new release"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(c.title().await.unwrap(), "New release · acme/app · pfai");
    fill(&c, "#tag", "v1.0.0").await;
    select(&c, "#target", "main").await;
    fill(&c, "#title", "First release").await;
    fill(
        &c,
        "#notes",
        "## Changes\n\n* faster\n\n```sh\npfai release download v1.0.0 --pattern 'app-*'\n```\n\n> Upgrade notes: none.\n\n<script>window.__pwned = 1; document.title = 'pwned'</script>\n\n<img src=x onerror=\"window.__pwned = 1; document.title = 'pwned'\">\n\n[click](javascript:window.__pwned=1)",
    )
    .await;
    c.find(Locator::Css("#files"))
        .await
        .unwrap()
        .send_keys(asset_path.to_str().unwrap())
        .await
        .unwrap();
    shot(&c, "release-new").await;
    // Preview: the notes rendered under the form, which keeps what was typed; nothing is made.
    click(&c, "button[value=preview]").await;
    expect_text(&c, "choose app-linux-amd64.tar.gz again").await;
    c.find(Locator::Css("section.preview .notes pre code"))
        .await
        .unwrap();
    c.find(Locator::Css("section.preview .notes blockquote"))
        .await
        .unwrap();
    assert!(c
        .find(Locator::Css("section.preview script"))
        .await
        .is_err());
    let typed = c
        .find(Locator::Css("#tag"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(typed.as_deref(), Some("v1.0.0"));
    shot_at(&c, "section.preview", "release-new-preview").await;
    let (_, list) = s.get("/api/v1/forge/acme/app/releases", Some(&alice)).await;
    assert_eq!(list, serde_json::json!([]), "a preview creates nothing");
    c.find(Locator::Css("#files"))
        .await
        .unwrap()
        .send_keys(asset_path.to_str().unwrap())
        .await
        .unwrap();
    click(&c, "button[value=draft]").await;
    // Wait for the release page itself: the form it came from also says "Draft".
    let text = expect_text(&c, "app-linux-amd64.tar.gz").await;
    assert!(text.contains("Draft"), "{text}");
    assert_eq!(
        c.current_url().await.unwrap().path(),
        "/acme/app/releases/tag/v1.0.0"
    );
    assert!(!text.contains("Latest"), "{text}");
    assert!(text.contains("app-linux-amd64.tar.gz"), "{text}");
    assert_eq!(
        s.get("/api/v1/forge/acme/app/tags/v1.0.0", Some(&alice))
            .await
            .0,
        StatusCode::NOT_FOUND,
        "a draft's new tag is created only on publish"
    );

    // Publish it from the edit page: it becomes the Latest.
    c.find(Locator::LinkText("Edit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click(&c, "button[value=publish]").await;
    let text = expect_text(&c, "Latest").await;
    assert!(!text.contains("Draft"), "{text}");
    // No script from the notes ran, and the Markdown was rendered.
    let pwned = c
        .execute(
            "return window.__pwned === undefined ? 'clean' : 'pwned'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(pwned, "clean");
    assert_eq!(
        c.title().await.unwrap(),
        "First release · acme/app · Releases · pfai"
    );
    c.find(Locator::Css(".notes h2")).await.unwrap();
    assert!(c.find(Locator::Css(".notes script")).await.is_err());
    assert!(c.find(Locator::Css(".notes [onerror]")).await.is_err());
    // The markdown link lost its javascript: URL.
    let href = c
        .find(Locator::Css(".notes a"))
        .await
        .ok()
        .map(|_| ())
        .is_some();
    if href {
        let a = c.find(Locator::Css(".notes a")).await.unwrap();
        let h = a.attr("href").await.unwrap().unwrap_or_default();
        assert!(!h.contains("javascript"), "{h}");
    }
    shot(&c, "release").await;

    // Download the asset with the browser; the bytes match and the count goes up.
    c.find(Locator::Css("a[download]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let got = wait_for_download(&downloads, "app-linux-amd64.tar.gz").await;
    assert_eq!(got, asset_bytes);
    c.refresh().await.unwrap();
    let row = c
        .find(Locator::Css("table.assets tbody tr"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(row.ends_with(" 1"), "download count in {row:?}");

    // A second release published straight from the form takes the Latest badge.
    go(&c, &s, "/acme/app/releases/new").await;
    fill(&c, "#tag", "v1.1.0").await;
    fill(&c, "#title", "Second release").await;
    click(&c, "button[value=publish]").await;
    expect_text(&c, "Second release").await;
    go(&c, &s, "/acme/app/releases").await;
    let second = release_article_text(&c, "Second release").await;
    let first = release_article_text(&c, "First release").await;
    assert!(second.contains("Latest"), "{second}");
    assert!(!first.contains("Latest"), "{first}");
    shot(&c, "releases").await;

    // Tags: alice (write) sees delete buttons while nothing is protected.
    go(&c, &s, "/acme/app/tags").await;
    assert_eq!(c.title().await.unwrap(), "Tags · acme/app · pfai");
    c.find(Locator::Css("a[href='/acme/app/tags/delete/v0.9.0']"))
        .await
        .unwrap();

    // boss (admin), in a second browser, signs in with the keyboard only and protects v0.*.
    let boss = browser(&driver, &downloads).await;
    go(&boss, &s, "/login").await;
    let focused = boss.active_element().await.unwrap();
    focused
        .send_keys(&format!(
            "boss{}{PASSWORD}{}",
            char::from(Key::Tab),
            char::from(Key::Enter)
        ))
        .await
        .unwrap();
    expect_text(&boss, "Signed in as boss").await;
    go(&boss, &s, "/acme/app").await;
    boss.find(Locator::LinkText("Settings"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(
        boss.title().await.unwrap(),
        "Tag protection · acme/app · pfai"
    );
    fill(&boss, "#pattern", "v0.*").await;
    click(&boss, "form.row button[type=submit]").await;
    expect_text(&boss, "added by boss").await;
    shot(&boss, "settings-tag-protection").await;
    boss.find(Locator::LinkText("Collaborators"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let text = expect_text(&boss, "Add collaborator").await;
    assert!(text.contains("alice") && text.contains("bob"), "{text}");
    shot(&boss, "settings-collaborators").await;

    // alice's page still shows the button, which leads to a confirmation page; the server
    // refuses the confirmed delete: the tag is protected now.
    click(&c, "a[href='/acme/app/tags/delete/v0.9.0']").await;
    expect_text(&c, "Delete tag v0.9.0?").await;
    shot(&c, "confirm-delete-tag").await;
    click(&c, "form.confirm button[type=submit]").await;
    expect_text(&c, "is protected by rule").await;
    shot(&c, "tags-delete-refused").await;
    assert_eq!(
        s.get("/api/v1/forge/acme/app/tags/v0.9.0", Some(&alice))
            .await
            .0,
        StatusCode::OK
    );
    // The refreshed list mirrors the rule: no button for v0.9.0; an unprotected tag goes.
    go(&c, &s, "/acme/app/tags").await;
    assert!(c
        .find(Locator::Css("a[href='/acme/app/tags/delete/v0.9.0']"))
        .await
        .is_err());
    assert!(body_text(&c).await.contains("Protected"));
    click(&c, "a[href='/acme/app/tags/delete/scratch']").await;
    click(&c, "form.confirm button[type=submit]").await;
    wait_until_gone(&c, "scratch").await;
    shot(&c, "tags").await;
    // The admin may delete the protected tag.
    go(&boss, &s, "/acme/app/tags").await;
    click(&boss, "a[href='/acme/app/tags/delete/v0.9.0']").await;
    expect_text(&boss, "only admins").await;
    click(&boss, "form.confirm button[type=submit]").await;
    wait_until_gone(&boss, "v0.9.0").await;
    assert_eq!(
        s.get("/api/v1/forge/acme/app/tags/v0.9.0", Some(&alice))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    boss.close().await.unwrap();

    // A pushed image shows in Packages with the lines to pull it.
    let remote = Remote {
        url: s.url.clone(),
        token: alice.clone(),
    };
    let (_, digest) = remote
        .push_image("acme/app/web", "1.0", b"layer bytes of the web image")
        .await;
    go(&c, &s, "/acme/app/packages").await;
    let text = body_text(&c).await;
    let host = s.url.trim_start_matches("http://");
    assert!(
        text.contains(&format!("docker pull {host}/acme/app/web:1.0")),
        "{text}"
    );
    let short = &digest.trim_start_matches("sha256:")[..12];
    assert!(text.contains(short), "{text}");
    shot(&c, "packages").await;
    // The skopeo line on the page works as printed.
    if require_tool("skopeo") {
        let line = c
            .find(Locator::Css("code.skopeo"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let out = Command::new("sh")
            .arg("-c")
            .arg(&line)
            .current_dir(s.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(s.dir.path().join("web/index.json").exists());
    }

    // The overview: the README of the default branch (code block, quote) and the latest release.
    let wc = s.checkout("acme/app", &alice);
    crate::harness::git_ok(&wc, &["fetch", "-q", "origin", "main"]);
    crate::harness::git_ok(&wc, &["reset", "-q", "--hard", "FETCH_HEAD"]);
    std::fs::write(
        wc.join("README.md"),
        "# app\n\nInstall:\n\n```sh\ncurl -fsSL https://example.com/releases/latest/download/app-linux-amd64.tar.gz | tar -xz\n```\n\n> Needs Linux.\n",
    )
    .unwrap();
    crate::harness::git_ok(&wc, &["add", "README.md"]);
    crate::harness::git_ok(&wc, &["commit", "-q", "-m", "readme"]);
    crate::harness::git_ok(&wc, &["push", "-q", "origin", "main"]);
    go(&c, &s, "/acme/app").await;
    let text = expect_text(&c, "Needs Linux.").await;
    assert!(text.contains("Second release"), "{text}");
    c.find(Locator::Css("section.readme pre code"))
        .await
        .unwrap();
    shot(&c, "overview").await;
    go(&c, &s, "/acme").await;
    let text = expect_text(&c, "Second release").await;
    assert!(text.contains("acme/app"), "{text}");
    shot(&c, "owner").await;

    // A SHA-256 shows short, with all of it in the title and the copied text.
    go(&c, &s, "/acme/app/releases/tag/v1.0.0").await;
    let sha = c.find(Locator::Css("code.sha256")).await.unwrap();
    let title = sha.attr("title").await.unwrap().unwrap_or_default();
    assert_eq!(title.len(), 64, "{title}");
    let clipped = c
        .execute(
            "const e = document.querySelector('code.sha256'); return [e.textContent, e.clientWidth < e.scrollWidth]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(clipped, serde_json::json!([title, true]));

    // Phone width: no main page scrolls sideways.
    c.set_window_size(390, 844).await.unwrap();
    let width = c.execute("return window.innerWidth", vec![]).await.unwrap();
    assert!(width.as_u64().unwrap() <= 390, "{width}");
    let asset_id = s
        .get("/api/v1/forge/acme/app/releases/v1.0.0", Some(&alice))
        .await
        .1["assets"][0]["id"]
        .as_u64()
        .unwrap();
    let confirm_asset = format!("/acme/app/releases/delete-asset/v1.0.0/{asset_id}");
    for (path, name) in [
        ("/", "home-phone"),
        ("/acme", "owner-phone"),
        ("/acme/app", "overview-phone"),
        ("/acme/app/releases", "releases-phone"),
        ("/acme/app/releases/tag/v1.0.0", "release-phone"),
        ("/acme/app/releases/new", "release-new-phone"),
        ("/acme/app/releases/edit/v1.0.0", "release-edit-phone"),
        (
            "/acme/app/releases/delete/v1.0.0",
            "confirm-delete-release-phone",
        ),
        (confirm_asset.as_str(), "confirm-delete-asset-phone"),
        ("/acme/app/tags", "tags-phone"),
        ("/acme/app/packages", "packages-phone"),
    ] {
        go(&c, &s, path).await;
        body_text(&c).await;
        shot(&c, name).await;
        assert!(fits_width(&c).await, "{path} scrolls sideways at 390 px");
    }
    go(&c, &s, "/acme/app/releases/tag/v1.0.0").await;
    shot_at(&c, "table.assets", "release-assets-phone").await;
    go(&c, &s, "/acme/app/packages").await;
    shot_at(&c, "td.pull", "packages-pull-phone").await;
    // The confirmation page deletes the file it names.
    go(&c, &s, &confirm_asset).await;
    click(&c, "form.confirm button[type=submit]").await;
    expect_text(&c, "Edit release v1.0.0").await;
    assert!(s
        .get("/api/v1/forge/acme/app/releases/v1.0.0", Some(&alice))
        .await
        .1["assets"]
        .as_array()
        .unwrap()
        .is_empty());

    // Sign out.
    click(&c, "form[action='/logout'] button").await;
    expect_text(&c, "Showing public repositories").await;
    c.close().await.unwrap();
}

//! HTTPS without a proxy (`--tls-cert`/`--tls-key`): a private CA and server certificates made
//! with the `openssl` CLI in each test, then curl, git, skopeo, reqwest and the `pfai` binary
//! against the real server; the handshake under the connection cap and header timeout; plain
//! HTTP on the TLS port; certificate reload while connections stay open.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pfai::config::Config;
use pfai::tls::TlsFiles;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{require_tool, TestServer};

/// A private CA and the files it signed, in a temp dir.
struct Pki {
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// A CA (`ca.crt`), and `cert_dir/ca.crt` for skopeo's `--cert-dir`.
    fn new() -> Pki {
        assert!(
            require_tool("openssl"),
            "openssl makes the test certificates"
        );
        let dir = tempfile::tempdir().unwrap();
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=pfai test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        std::fs::create_dir_all(dir.path().join("certs.d")).unwrap();
        std::fs::copy(dir.path().join("ca.crt"), dir.path().join("certs.d/ca.crt")).unwrap();
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca(&self) -> PathBuf {
        self.path("ca.crt")
    }

    fn ca_str(&self) -> String {
        self.ca().display().to_string()
    }

    /// A server certificate for 127.0.0.1 and localhost, signed by the CA: `<name>.crt`,
    /// `<name>.key`.
    fn server(&self, name: &str, serial: u32) -> TlsFiles {
        let d = self.dir.path();
        std::fs::write(
            d.join(format!("{name}.ext")),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &serial.to_string(),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.crt"),
            ],
        );
        TlsFiles {
            cert: d.join(format!("{name}.crt")),
            key: d.join(format!("{name}.key")),
        }
    }

    /// A client that trusts the CA and reports the peer certificate.
    fn client(&self) -> reqwest::Client {
        let pem = std::fs::read(self.ca()).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .tls_info(true)
            .build()
            .unwrap()
    }
}

/// The DER of the first certificate in a PEM file.
fn der_of(pem_file: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(pem_file)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// The certificate the server presented on the connection that carried `resp`.
fn peer_cert(resp: &reqwest::Response) -> Vec<u8> {
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("a TLS connection")
        .to_vec()
}

/// The harness server, switched to HTTPS: its URL and client now speak TLS through the CA.
async fn start_tls(pki: &Pki, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let files = pki.server("server-one", 1);
    let mut s = TestServer::start_with(|c| {
        c.tls = Some(files);
        tweak(c);
    })
    .await;
    s.url = s.url.replacen("http://", "https://", 1);
    s.http = pki.client();
    s
}

fn host_of(s: &TestServer) -> String {
    s.url.trim_start_matches("https://").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn links_the_server_builds_say_https_when_it_serves_tls() {
    let pki = Pki::new();
    let s = start_tls(&pki, |_| {}).await;
    s.repo("acme", "app", false).await;
    if !require_tool("git") {
        return;
    }
    let wc = checkout_tls(&s, &pki, "acme/app");
    let ca = ssl_ca(&pki);
    tokio::task::spawn_blocking(move || {
        git_ok(&wc, &["-c", &ca, "push", "-q", "origin", "main"]);
    })
    .await
    .unwrap();
    let (st, v) = s
        .post(
            "/api/v1/forge/acme/app/releases",
            Some(&s.admin),
            json!({"tagName": "v1.0.0", "targetCommit": "main", "name": "one"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, a) = s
        .upload_asset("acme/app", "v1.0.0", "app.bin", b"bytes".to_vec(), &s.admin)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    let url = a["downloadUrl"].as_str().unwrap_or_default().to_owned();
    assert!(url.starts_with(&format!("{}/", s.url)), "{a}");
    // curl, through the CA only, downloads it at that https URL.
    if require_tool("curl") {
        let out = Command::new("curl")
            .args(["-sSfL", "--cacert", &pki.ca_str(), &url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, b"bytes");
        // Without the CA, curl refuses the certificate (exit 60).
        let out = Command::new("curl").args(["-sS", &url]).output().unwrap();
        assert_eq!(out.status.code(), Some(60), "{out:?}");
    }
    // The OCI upload Location is relative or https, never http.
    let r = s
        .req(Method::POST, "/v2/acme/app/blobs/uploads/", Some(&s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(!loc.starts_with("http:"), "{loc}");
}

/// git with an isolated configuration and no CA from the environment (`GIT_SSL_CAINFO` would
/// override `-c http.sslCAInfo`).
fn git(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_SSL_CAINFO")
        .env_remove("GIT_SSL_CAPATH")
        .env("GIT_AUTHOR_NAME", "Tester")
        .env("GIT_AUTHOR_EMAIL", "tester@example.com")
        .env("GIT_COMMITTER_NAME", "Tester")
        .env("GIT_COMMITTER_EMAIL", "tester@example.com")
        .output()
        .unwrap()
}

fn git_ok(dir: &Path, args: &[&str]) -> String {
    let out = git(dir, args);
    assert!(
        out.status.success(),
        "git {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn ssl_ca(pki: &Pki) -> String {
    format!("http.sslCAInfo={}", pki.ca_str())
}

/// A working copy with one commit, its origin the https URL of `repo` with the admin token.
fn checkout_tls(s: &TestServer, _pki: &Pki, repo: &str) -> PathBuf {
    let wc = s
        .dir
        .path()
        .join(format!("wc-{}", crate::harness::rand_suffix()));
    std::fs::create_dir_all(&wc).unwrap();
    git_ok(&wc, &["init", "-q", "-b", "main"]);
    std::fs::write(wc.join("README"), "hello\n").unwrap();
    git_ok(&wc, &["add", "README"]);
    git_ok(&wc, &["commit", "-q", "-m", "initial"]);
    let url = format!("https://x:{}@{}/{repo}.git", s.admin, host_of(s));
    git_ok(&wc, &["remote", "add", "origin", &url]);
    wc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn git_clones_and_pushes_tags_over_https_and_the_hook_still_judges() {
    if !require_tool("git") {
        return;
    }
    let pki = Pki::new();
    let s = start_tls(&pki, |_| {}).await;
    s.repo("acme", "app", false).await;
    let dev = s.user("dev").await;
    s.collaborator("acme/app", "dev", "write").await;
    let (st, v) = s
        .post(
            "/api/v1/forge/acme/app/tag-protections",
            Some(&s.admin),
            json!({"pattern": "v*"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (s2, pki_ca) = (s.url.clone(), ssl_ca(&pki));
    let host = host_of(&s);
    let admin = s.admin.clone();
    let base = s.dir.path().to_owned();
    let wc = checkout_tls(&s, &pki, "acme/app");
    tokio::task::spawn_blocking(move || {
        // Without the CA, git refuses the server's certificate.
        let out = git(&wc, &["push", "-q", "origin", "main"]);
        assert!(
            !out.status.success(),
            "{s2}: pushed without trusting the CA"
        );
        git_ok(&wc, &["-c", &pki_ca, "push", "-q", "origin", "main"]);
        git_ok(&wc, &["tag", "v1.0.0"]);
        git_ok(&wc, &["tag", "dev-1"]);
        // The admin may create a protected tag; the pre-receive hook ran and allowed it.
        git_ok(&wc, &["-c", &pki_ca, "push", "-q", "origin", "v1.0.0"]);
        // A writer may not delete it: the hook refuses, over TLS as over HTTP.
        let dev_url = format!("https://x:{dev}@{host}/acme/app.git");
        let out = git(
            &wc,
            &["-c", &pki_ca, "push", "-q", &dev_url, ":refs/tags/v1.0.0"],
        );
        assert!(!out.status.success(), "a writer deleted a protected tag");
        git_ok(&wc, &["-c", &pki_ca, "push", "-q", &dev_url, "dev-1"]);
        // A clone over https sees both tags.
        let clone = base.join("clone");
        let url = format!("https://x:{admin}@{host}/acme/app.git");
        git_ok(
            &base,
            &["-c", &pki_ca, "clone", "-q", &url, clone.to_str().unwrap()],
        );
        let tags = git_ok(&clone, &["tag", "--list"]);
        assert!(tags.contains("v1.0.0") && tags.contains("dev-1"), "{tags}");
    })
    .await
    .unwrap();
}

fn skopeo_ok(args: &[&str]) -> String {
    let auth = std::env::temp_dir().join(format!(
        "pfai-tls-skopeo-auth-{}.json",
        crate::harness::rand_suffix()
    ));
    std::fs::write(&auth, "{\"auths\":{}}").unwrap();
    let out = Command::new("skopeo")
        .args(args)
        .env("REGISTRY_AUTH_FILE", &auth)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&auth);
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn skopeo_copies_to_and_from_the_registry_over_https_with_a_cert_dir() {
    if !require_tool("skopeo") {
        return;
    }
    let pki = Pki::new();
    let s = start_tls(&pki, |_| {}).await;
    s.repo("acme", "app", false).await;
    let host = host_of(&s);
    let creds = format!("x:{}", s.admin);
    let certs = pki.path("certs.d").display().to_string();
    let out_dir = s.dir.path().join("pulled");
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/data-fixtures/oci");
    tokio::task::spawn_blocking(move || {
        let src = format!("oci:{fixtures}/layout-single:v1");
        let dest = format!("docker://{host}/acme/app/hello:v1");
        skopeo_ok(&[
            "copy",
            "--dest-cert-dir",
            &certs,
            "--dest-creds",
            &creds,
            &src,
            &dest,
        ]);
        let back = format!("oci:{}:v1", out_dir.display());
        skopeo_ok(&[
            "copy",
            "--src-cert-dir",
            &certs,
            "--src-creds",
            &creds,
            &dest,
            &back,
        ]);
        let inspect = skopeo_ok(&["inspect", "--cert-dir", &certs, "--creds", &creds, &dest]);
        let v: Value = serde_json::from_str(&inspect).unwrap();
        assert!(
            v["Digest"].as_str().unwrap_or("").starts_with("sha256:"),
            "{v}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pfai_cli_reaches_an_https_server_through_ca_cert() {
    let pki = Pki::new();
    let s = start_tls(&pki, |_| {}).await;
    s.repo("acme", "app", false).await;
    let (url, admin, ca) = (s.url.clone(), s.admin.clone(), pki.ca_str());
    let xdg = s.dir.path().join("xdg");
    tokio::task::spawn_blocking(move || {
        let run = |args: &[&str], ca_env: Option<&str>| {
            let mut c = Command::new(env!("CARGO_BIN_EXE_pfai"));
            c.args(args)
                .env("PFAI_URL", &url)
                .env("PFAI_TOKEN", &admin)
                .env("XDG_CONFIG_HOME", &xdg)
                .env_remove("PFAI_CA_CERT");
            if let Some(ca) = ca_env {
                c.env("PFAI_CA_CERT", ca);
            }
            c.output().unwrap()
        };
        // Flag after the subcommand (global), and the environment variable.
        let out = run(&["repo", "view", "acme/app", "--ca-cert", &ca], None);
        assert!(out.status.success(), "{out:?}");
        let out = run(&["--ca-cert", &ca, "repo", "view", "acme/app"], None);
        assert!(out.status.success(), "{out:?}");
        let out = run(&["repo", "view", "acme/app"], Some(&ca));
        assert!(out.status.success(), "{out:?}");
        // Without the CA: a connection error, not a crash.
        let out = run(&["repo", "view", "acme/app"], None);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("cannot reach"),
            "{out:?}"
        );
        // An unusable CA file is named.
        let out = run(
            &[
                "repo",
                "view",
                "acme/app",
                "--ca-cert",
                "/nonexistent/ca.pem",
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ca.pem"),
            "{out:?}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_the_tls_port_is_answered_400_and_frees_the_slot() {
    let pki = Pki::new();
    let s = start_tls(&pki, |c| c.conn.max_connections = 1).await;
    let mut tcp = tokio::net::TcpStream::connect(host_of(&s)).await.unwrap();
    tcp.write_all(b"GET /v2/ HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("https://"), "{text}");
    // The only slot is free again: an HTTPS request is served.
    let mut ok = false;
    for _ in 0..50 {
        let r = s.req(Method::GET, "/v2/", None).send().await.unwrap();
        if r.status() == StatusCode::UNAUTHORIZED {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "the refused plain connection kept the slot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_handshakes_is_closed_at_the_header_timeout() {
    let pki = Pki::new();
    let s = start_tls(&pki, |c| {
        c.conn.max_connections = 1;
        c.conn.header_timeout = Duration::from_secs(1);
    })
    .await;
    let mut silent = tokio::net::TcpStream::connect(host_of(&s)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // It holds the only slot: a second client gets the 503, over TLS, not a TLS error.
    let r = s.req(Method::GET, "/v2/", None).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    // After the header timeout the silent client is closed and its slot served again.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("closed within the header timeout")
        .unwrap_or(0);
    assert_eq!(n, 0);
    let r = s.req(Method::GET, "/v2/", None).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// A server spawned directly (the reload tests need `Server::reload_tls`).
async fn spawn_tls(files: TlsFiles) -> (pfai::app::Server, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(dir.path().join("data"), "127.0.0.1:0".parse().unwrap());
    cfg.tls = Some(files);
    let server = pfai::app::spawn(cfg).await.unwrap();
    let url = format!("https://{}", server.addr);
    (server, dir, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_certificate_is_presented_to_new_connections_while_open_ones_keep_working() {
    let pki = Pki::new();
    let live = pki.server("live", 1);
    let first = der_of(&live.cert);
    let (server, _dir, url) = spawn_tls(live.clone()).await;
    let kept = pki.client();
    let r = kept.get(format!("{url}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(peer_cert(&r), first);
    drop(r.bytes().await);
    // Replace both files in place (a different CN and serial), then reload (SIGHUP's work).
    let next = pki.server("renewed", 2);
    std::fs::copy(&next.cert, &live.cert).unwrap();
    std::fs::copy(&next.key, &live.key).unwrap();
    let second = der_of(&live.cert);
    assert_ne!(first, second);
    assert!(server.reload_tls().unwrap());
    // The open keep-alive connection still works, on the session it negotiated.
    let r = kept.get(format!("{url}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(peer_cert(&r), first, "the kept connection was not reused");
    // A new connection gets the new certificate.
    let r = pki.client().get(format!("{url}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(peer_cert(&r), second);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_new_certificate_is_refused_at_reload_and_the_old_one_stays() {
    let pki = Pki::new();
    let live = pki.server("live", 1);
    let first = der_of(&live.cert);
    let (server, _dir, url) = spawn_tls(live.clone()).await;
    let other = pki.server("other", 3);
    // Garbage in the certificate file.
    std::fs::write(&live.cert, "not a certificate\n").unwrap();
    let e = server.reload_tls().unwrap_err().to_string();
    assert!(e.contains(&live.cert.display().to_string()), "{e}");
    // A valid certificate with the key of another one.
    std::fs::copy(&other.cert, &live.cert).unwrap();
    let e = server.reload_tls().unwrap_err().to_string();
    assert!(e.contains("does not belong"), "{e}");
    // A missing key file.
    std::fs::remove_file(&live.key).unwrap();
    let e = server.reload_tls().unwrap_err().to_string();
    assert!(e.contains(&live.key.display().to_string()), "{e}");
    let r = pki.client().get(format!("{url}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(peer_cert(&r), first);
    server.shutdown().await;
}

#[tokio::test]
async fn an_unusable_certificate_or_key_is_a_start_error_naming_the_file() {
    let pki = Pki::new();
    let good = pki.server("good", 1);
    let other = pki.server("other", 2);
    let garbage = pki.path("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let cases = [
        (pki.path("missing.crt"), good.key.clone(), "missing.crt"),
        (garbage.clone(), good.key.clone(), "garbage.pem"),
        (good.cert.clone(), pki.path("missing.key"), "missing.key"),
        (good.cert.clone(), good.cert.clone(), "good.crt"),
        (good.cert.clone(), other.key.clone(), "does not belong"),
    ];
    for (cert, key, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::new(dir.path().join("data"), "127.0.0.1:0".parse().unwrap());
        cfg.tls = Some(TlsFiles { cert, key });
        let e = match pfai::app::spawn(cfg).await {
            Ok(_) => panic!("started with an unusable pair ({want})"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(want), "{want}: {e}");
    }
}

#[test]
fn serve_refuses_a_certificate_without_its_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_pfai"))
        .args(["serve", "--tls-cert", "/tmp/x.crt", "--print-config"])
        .env_remove("PFAI_TLS_KEY")
        .env_remove("PFAI_TLS_CERT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-key"),
        "{out:?}"
    );
}

#[test]
fn a_config_file_with_a_certificate_but_no_key_is_refused_naming_the_missing_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pfai.toml");
    std::fs::write(&file, "tls_cert = \"/etc/pfai/cert.pem\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pfai"))
        .args([
            "serve",
            "--config",
            file.to_str().unwrap(),
            "--print-config",
        ])
        .env_remove("PFAI_TLS_KEY")
        .env_remove("PFAI_TLS_CERT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-key"),
        "{out:?}"
    );
}

/// Kills the child on drop, so a failed assertion does not leave a server running.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_makes_pfai_serve_present_the_renewed_certificate() {
    let pki = Pki::new();
    let live = pki.server("live", 1);
    let first = der_of(&live.cert);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = pki.path("data");
    let child = Child(
        Command::new(env!("CARGO_BIN_EXE_pfai"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&data)
            .env("PFAI_TLS_CERT", &live.cert)
            .env("PFAI_TLS_KEY", &live.key)
            .env_remove("PFAI_CONFIG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("https://127.0.0.1:{port}/v2/");
    let get = || async { pki.client().get(&url).send().await };
    let mut up = None;
    for _ in 0..200 {
        if let Ok(r) = get().await {
            up = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = up.expect("pfai serve answers over https");
    assert_eq!(peer_cert(&r), first);
    let next = pki.server("renewed", 2);
    std::fs::copy(&next.cert, &live.cert).unwrap();
    std::fs::copy(&next.key, &live.key).unwrap();
    let second = der_of(&live.cert);
    let pid = child.0.id().to_string();
    let st = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(st.success());
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = peer_cert(&get().await.unwrap());
        if seen == second {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, second, "SIGHUP did not reload the certificate");
    drop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sign_in_works_over_https_with_secure_cookies() {
    let pki = Pki::new();
    let s = start_tls(&pki, |_| {}).await;
    s.user("alice").await;
    let pem = std::fs::read(pki.ca()).unwrap();
    let web = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = web.get(format!("{}/login", s.url)).send().await.unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    let cookies: Vec<String> = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let login = cookies
        .iter()
        .find(|c| c.starts_with("pfai_login="))
        .expect("login cookie");
    assert!(login.contains("Secure"), "{login}");
    let login = login["pfai_login=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let body = form.text().await.unwrap();
    let marker = "name=\"_csrf\" value=\"";
    let at = body.find(marker).expect("csrf field") + marker.len();
    let csrf = body[at..at + body[at..].find('"').unwrap()].to_owned();
    // The browser's Origin is the https origin: the same-origin check accepts it.
    let r = web
        .post(format!("{}/login", s.url))
        .header("cookie", format!("pfai_login={login}"))
        .header("origin", &s.url)
        .form(&[
            ("_csrf", csrf.as_str()),
            ("username", "alice"),
            ("password", "correct horse"),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("pfai_session="))
        .expect("a session cookie");
    assert!(session.contains("Secure"), "{session}");
}

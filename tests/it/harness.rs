//! A real server on 127.0.0.1:0 with a temp data dir, and helpers to drive it over HTTP and
//! with the real `git`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use pfai::app::Server;
use pfai::config::Config;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

pub struct TestServer {
    pub url: String,
    pub admin: String,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    server: Option<Server>,
}

/// Fails when a required external client is absent in CI; returns false (skip) locally.
pub fn require_tool(name: &str) -> bool {
    let ok = Command::new(name).arg("--version").output().is_ok();
    if !ok && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{name} is required in CI but is not installed");
    }
    ok
}

/// Every file under `dir`, for tests that damage a store on purpose.
pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The oras Python client (PyPI `oras`), when importable: fails in CI when it is not.
pub fn require_oras() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import oras.client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the oras Python client is required in CI but is not installed");
    }
    ok
}

/// `oras pull` of `target` into `outdir` with the Python client, signed in with `token`
/// (success, output).
pub fn oras_pull(host: &str, target: &str, outdir: &Path, token: &str) -> (bool, String) {
    const SCRIPT: &str = r#"
import sys, oras.client
host, target, outdir, token = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
c = oras.client.OrasClient(hostname=host, insecure=True, auth_backend="basic")
if token:
    c.auth.set_basic_auth("x", token)
for f in c.pull(target=target, outdir=outdir):
    print(f)
"#;
    let out = Command::new("python3")
        .args(["-c", SCRIPT, host, target])
        .arg(outdir)
        .arg(token)
        .env("HOME", outdir)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, tweak).await
    }

    pub async fn start_in(dir: tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let mut cfg = Config::new(dir.path().join("data"), "127.0.0.1:0".parse().unwrap());
        tweak(&mut cfg);
        let server = pfai::app::spawn(cfg).await.unwrap();
        let url = format!("http://{}", server.addr);
        let admin = std::fs::read_to_string(dir.path().join("data/initial-admin-token"))
            .unwrap()
            .trim()
            .to_owned();
        TestServer {
            url,
            admin,
            dir,
            http: reqwest::Client::new(),
            server: Some(server),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the server gracefully and returns its directory (to restart on it).
    pub async fn stop(self) -> tempfile::TempDir {
        if let Some(s) = self.server {
            s.shutdown().await;
        }
        self.dir
    }

    pub fn core(&self) -> &std::sync::Arc<pfai::domain::Core> {
        &self.server.as_ref().unwrap().core
    }

    pub fn req(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let mut r = self.http.request(method, format!("{}{}", self.url, path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self.req(method, path, token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// Uploads a release asset (multipart field `file`); the status and the JSON answer.
    pub async fn upload_asset(
        &self,
        repo: &str,
        tag: &str,
        name: &str,
        data: Vec<u8>,
        token: &str,
    ) -> (StatusCode, Value) {
        let part = reqwest::multipart::Part::bytes(data).file_name(name.to_owned());
        let form = reqwest::multipart::Form::new().part("file", part);
        let r = self
            .req(
                Method::POST,
                &format!("/api/v1/forge/{repo}/releases/{tag}/assets"),
                Some(token),
            )
            .multipart(form)
            .send()
            .await
            .unwrap();
        let st = r.status();
        (st, r.json().await.unwrap_or(Value::Null))
    }

    /// Creates a user and returns a token for it.
    pub async fn user(&self, name: &str) -> String {
        let (s, v) = self
            .post(
                "/api/v1/admin/users",
                Some(&self.admin),
                serde_json::json!({"username": name, "password": "correct horse", "email": format!("{name}@example.com")}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let resp = self
            .http
            .post(format!("{}/api/v1/user/tokens", self.url))
            .basic_auth(name, Some("correct horse"))
            .json(&serde_json::json!({"name": "test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let v: Value = resp.json().await.unwrap();
        v["token"].as_str().unwrap().to_owned()
    }

    /// Creates an org owned by admin and a repository in it.
    pub async fn repo(&self, owner: &str, name: &str, private: bool) {
        let (s, _) = self
            .post(
                "/api/v1/orgs",
                Some(&self.admin),
                serde_json::json!({"name": owner}),
            )
            .await;
        assert!(s == StatusCode::CREATED || s == StatusCode::CONFLICT);
        let (s, v) = self
            .post(
                "/api/v1/forge/repos",
                Some(&self.admin),
                serde_json::json!({"owner": owner, "name": name, "private": private}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }

    pub async fn collaborator(&self, repo: &str, user: &str, role: &str) {
        let (s, v) = self
            .call(
                Method::PUT,
                &format!("/api/v1/forge/{repo}/collaborators/{user}"),
                Some(&self.admin),
                Some(serde_json::json!({"role": role})),
            )
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    }

    /// `http://x:<token>@host/<repo>.git`, or anonymous.
    pub fn git_url(&self, repo: &str, token: Option<&str>) -> String {
        let host = self.url.trim_start_matches("http://");
        match token {
            Some(t) => format!("http://x:{t}@{host}/{repo}.git"),
            None => format!("http://{host}/{repo}.git"),
        }
    }

    /// A working copy with one commit on `main`, its origin pointing at `repo` with `token`.
    pub fn checkout(&self, repo: &str, token: &str) -> PathBuf {
        assert!(require_tool("git"), "git is needed for this test");
        let wc = self.dir.path().join(format!("wc-{}", rand_suffix()));
        std::fs::create_dir_all(&wc).unwrap();
        git_ok(&wc, &["init", "-q", "-b", "main"]);
        std::fs::write(wc.join("README"), "hello\n").unwrap();
        git_ok(&wc, &["add", "README"]);
        git_ok(&wc, &["commit", "-q", "-m", "initial"]);
        git_ok(
            &wc,
            &["remote", "add", "origin", &self.git_url(repo, Some(token))],
        );
        wc
    }
}

pub fn rand_suffix() -> String {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).unwrap();
    hex::encode(b)
}

/// Runs git with an isolated configuration.
pub fn git(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Tester")
        .env("GIT_AUTHOR_EMAIL", "tester@example.com")
        .env("GIT_COMMITTER_NAME", "Tester")
        .env("GIT_COMMITTER_EMAIL", "tester@example.com")
        .output()
        .unwrap()
}

pub fn git_ok(dir: &Path, args: &[&str]) -> String {
    let out = git(dir, args);
    assert!(
        out.status.success(),
        "git {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn git_err(dir: &Path, args: &[&str]) -> String {
    let out = git(dir, args);
    assert!(!out.status.success(), "git {args:?} unexpectedly succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A minimal OCI client usable from spawned tasks (owns its URL and token).
pub struct Remote {
    pub url: String,
    pub token: String,
}

impl Remote {
    async fn blob(&self, http: &reqwest::Client, name: &str, data: &[u8]) -> String {
        let d = pfai::ids::Digest::sha256_of(data).to_string();
        let r = http
            .post(format!("{}/v2/{name}/blobs/uploads/?digest={d}", self.url))
            .basic_auth("x", Some(&self.token))
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        d
    }

    pub async fn push_image(&self, name: &str, tag: &str, layer: &[u8]) -> (Vec<u8>, String) {
        let http = reqwest::Client::new();
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        let cd = self.blob(&http, name, config).await;
        let ld = self.blob(&http, name, layer).await;
        let m = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": layer.len()}]
        }))
        .unwrap();
        let r = http
            .put(format!("{}/v2/{name}/manifests/{tag}", self.url))
            .basic_auth("x", Some(&self.token))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(m.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
        let d = pfai::ids::Digest::sha256_of(&m).to_string();
        (m, d)
    }

    pub async fn pull(&self, name: &str, digest: &str) -> Vec<u8> {
        let r = reqwest::Client::new()
            .get(format!("{}/v2/{name}/manifests/{digest}", self.url))
            .basic_auth("x", Some(&self.token))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.bytes().await.unwrap().to_vec()
    }
}

/// The `pfai` client binary run against a test server, with a config dir of its own so a saved
/// login never leaks between tests, and git's system and global config ignored.
pub struct Cli<'a> {
    s: &'a TestServer,
    /// The client's `XDG_CONFIG_HOME` (its saved login lands under `pfai/`).
    pub config: PathBuf,
    /// The `PFAI_URL` given to the binary (the server's; a test of offline use points it at a
    /// closed port).
    pub url: String,
}

impl<'a> Cli<'a> {
    pub fn new(s: &'a TestServer) -> Self {
        let config = s
            .dir
            .path()
            .join(format!("xdg-{}", crate::harness::rand_suffix()));
        Cli {
            s,
            config,
            url: s.url.clone(),
        }
    }

    pub fn run(
        &self,
        cwd: &Path,
        token: Option<&str>,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Output {
        self.run_at(&self.url, cwd, token, args, stdin)
    }

    /// [`Cli::run`] with `PFAI_URL` set to `url` (a wrong or missing server).
    pub fn run_at(
        &self,
        url: &str,
        cwd: &Path,
        token: Option<&str>,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pfai"));
        c.args(args)
            .current_dir(cwd)
            .env("PFAI_URL", url)
            .env("XDG_CONFIG_HOME", &self.config)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match token {
            Some(t) => c.env("PFAI_TOKEN", t),
            None => c.env_remove("PFAI_TOKEN"),
        };
        let mut child = c.spawn().unwrap();
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    pub fn ok(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self.run(cwd, Some(&self.s.admin), args, None);
        assert!(
            out.status.success(),
            "pfai {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn fails(&self, cwd: &Path, token: Option<&str>, args: &[&str]) -> (i32, String) {
        let out = self.run(cwd, token, args, None);
        assert!(
            !out.status.success(),
            "pfai {args:?} unexpectedly succeeded"
        );
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!err.contains("panicked"), "{err}");
        (out.status.code().unwrap_or(-1), err)
    }
}

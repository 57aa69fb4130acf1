//! The real `pfai` binary: embedded defaults, the README tour, graceful SIGTERM, and crash
//! recovery after `kill -9`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::require_tool;

struct Running {
    child: Child,
    url: String,
    log: std::sync::mpsc::Receiver<String>,
}

/// Starts `pfai serve` in `cwd` with only `PFAI_LISTEN` set (port 0), so every other setting is
/// the embedded default (`./data`), and waits for the "listening" log line.
#[allow(clippy::zombie_processes)] // the caller waits for the child
fn start(cwd: &Path) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pfai"))
        .arg("serve")
        .current_dir(cwd)
        .env("PFAI_LISTEN", "127.0.0.1:0")
        .env_remove("DATA_DIR")
        .env_remove("ASSET_STORAGE_PATH")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("server did not report its address");
        if let Some(rest) = line.split("addr=").nth(1) {
            if line.contains("pfai listening") {
                let addr = rest.split_whitespace().next().unwrap().to_owned();
                return Running {
                    child,
                    url: format!("http://{addr}"),
                    log: rx,
                };
            }
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

fn readme_tour() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```sh\n# readme-tour")
        .expect("the README has a tour block");
    let body = &readme[start + "```sh\n".len()..];
    body[..body.find("```").unwrap()].to_owned()
}

#[test]
fn serve_runs_the_readme_tour_and_stops_gracefully() {
    assert!(require_tool("git"));
    if !require_tool("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    // Defaults: ./data with the admin token, mode 0600.
    let token_file = dir.path().join("data/initial-admin-token");
    assert!(token_file.exists());
    assert!(server
        .log
        .try_iter()
        .all(|l| !l.contains(std::fs::read_to_string(&token_file).unwrap().trim())));

    let out = Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(readme_tour())
        .current_dir(dir.path())
        .env("PFAI_URL", &server.url)
        .env_remove("PFAI_TOKEN")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Tour")
        .env("GIT_AUTHOR_EMAIL", "tour@example.com")
        .env("GIT_COMMITTER_NAME", "Tour")
        .env("GIT_COMMITTER_EMAIL", "tour@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "README tour failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"tagName\":\"v1.2.3\""), "{stdout}");
    assert!(stdout.contains("\"pattern\":\"v*\""), "{stdout}");

    // One log line per request, with the user.
    let lines: Vec<String> = server.log.try_iter().collect();
    assert!(
        lines.iter().any(|l| l.contains("status=201")
            && l.contains("user=\"admin\"")
            && l.contains("path=/api/v1/orgs")),
        "{lines:#?}"
    );

    signal(&server.child, "TERM");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "graceful exit: {status:?}");
}

#[test]
fn kill_9_during_an_upload_leaves_nothing_half_written() {
    assert!(require_tool("git"));
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let token = std::fs::read_to_string(dir.path().join("data/initial-admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = server.url.clone();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let post = |path: &str, body: serde_json::Value| {
            http.post(format!("{url}{path}"))
                .bearer_auth(&token)
                .json(&body)
                .send()
        };
        assert!(post("/api/v1/orgs", serde_json::json!({"name":"acme"}))
            .await
            .unwrap()
            .status()
            .is_success());
        assert!(post(
            "/api/v1/forge/repos",
            serde_json::json!({"owner":"acme","name":"app"})
        )
        .await
        .unwrap()
        .status()
        .is_success());
        let (s, _) = (
            post(
                "/api/v1/forge/acme/app/tags",
                serde_json::json!({"tagName":"x","target":"main"}),
            )
            .await
            .unwrap()
            .status(),
            (),
        );
        assert_eq!(s.as_u16(), 422, "empty repository: no main yet");
    });
    // Give the repo a commit and a release to attach to.
    let wc = dir.path().join("wc");
    std::fs::create_dir(&wc).unwrap();
    crate::harness::git_ok(&wc, &["init", "-q", "-b", "main"]);
    crate::harness::git_ok(&wc, &["commit", "-q", "--allow-empty", "-m", "c"]);
    let host = server.url.trim_start_matches("http://");
    crate::harness::git_ok(
        &wc,
        &[
            "push",
            "-q",
            &format!("http://x:{token}@{host}/acme/app.git"),
            "main",
        ],
    );
    rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{url}/api/v1/forge/acme/app/releases"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"tagName":"v1","targetCommit":"main"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    });

    // Stream an asset upload and kill the server in the middle of it.
    use std::io::Write;
    let mut sock = std::net::TcpStream::connect(host).unwrap();
    let head = "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\r\n";
    write!(
        sock,
        "POST /api/v1/forge/acme/app/releases/v1/assets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: 100000000\r\n\r\n{head}"
    )
    .unwrap();
    let chunk = vec![9u8; 1 << 20];
    for _ in 0..20 {
        sock.write_all(&chunk).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let tmp_files = |d: &Path| -> Vec<String> {
        std::fs::read_dir(d)
            .map(|r| {
                r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let release_dir = dir.path().join("data/assets/acme/app/1");
    assert!(
        tmp_files(&release_dir)
            .iter()
            .any(|f| f.starts_with(".tmp-")),
        "the upload was in progress when killed"
    );
    signal(&server.child, "KILL");
    server.child.wait().unwrap();
    drop(sock);

    // Restart on the same data directory: it opens, the partial file is gone, no asset row.
    let mut server = start(dir.path());
    assert!(
        tmp_files(&release_dir).is_empty(),
        "{:?}",
        tmp_files(&release_dir)
    );
    let url = server.url.clone();
    rt.block_on(async {
        let v: serde_json::Value = reqwest::get(format!("{url}/api/v1/forge/acme/app/releases/v1"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["assets"].as_array().unwrap().len(), 0);
    });
    signal(&server.child, "TERM");
    assert!(server.child.wait().unwrap().success());
}

//! The real `pfai` binary: embedded defaults, the README tour, graceful SIGTERM, and crash
//! recovery after `kill -9`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::require_tool;

pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) url: String,
    pub(crate) log: std::sync::mpsc::Receiver<String>,
}

/// Starts `pfai serve` in `cwd` with only `PFAI_LISTEN` set (port 0), so every other setting is
/// the embedded default (`./data`), and waits for the "listening" log line.
pub(crate) fn start(cwd: &Path) -> Running {
    start_with_env(cwd, &[])
}

/// `start` with extra environment settings (e.g. `PFAI_GC_GRACE_SECONDS`).
pub(crate) fn start_with_env(cwd: &Path, env: &[(&str, &str)]) -> Running {
    start_with_args(cwd, &[], env)
}

/// `start_with_env` with extra `serve` arguments (e.g. `--config FILE`).
#[allow(clippy::zombie_processes)] // the caller waits for the child
pub(crate) fn start_with_args(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pfai"))
        .arg("serve")
        .args(args)
        .current_dir(cwd)
        .env("PFAI_LISTEN", "127.0.0.1:0")
        .env_remove("DATA_DIR")
        .env_remove("ASSET_STORAGE_PATH")
        .env_remove("PFAI_GC_GRACE_SECONDS")
        .envs(env.iter().copied())
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

/// Creates org `acme` and public repository `acme/app` as the admin.
pub(crate) async fn create_acme_app(http: &reqwest::Client, url: &str, token: &str) {
    for (p, b) in [
        ("/api/v1/orgs", serde_json::json!({"name":"acme"})),
        (
            "/api/v1/forge/repos",
            serde_json::json!({"owner":"acme","name":"app"}),
        ),
    ] {
        let r = http
            .post(format!("{url}{p}"))
            .bearer_auth(token)
            .json(&b)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{p}: {}", r.status());
    }
}

pub(crate) fn signal(child: &Child, sig: &str) {
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
        create_acme_app(&http, &url, &token).await;
        let s = http
            .post(format!("{url}/api/v1/forge/acme/app/tags"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"tagName":"x","target":"main"}))
            .send()
            .await
            .unwrap()
            .status();
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

#[test]
fn kill_9_during_a_blob_upload_then_resume() {
    assert!(require_tool("git"));
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let token = std::fs::read_to_string(dir.path().join("data/initial-admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = server.url.clone();
    let http = reqwest::Client::new();
    let data: Vec<u8> = (0..(24u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let digest = pfai::ids::Digest::sha256_of(&data).to_string();
    let location = rt.block_on(async {
        create_acme_app(&http, &url, &token).await;
        let r = http
            .post(format!("{url}/v2/acme/app/blobs/uploads/"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        r.headers()["location"].to_str().unwrap().to_owned()
    });

    // A chunked PATCH and a monolithic POST, both cut by kill -9 half-way.
    use std::io::Write;
    let host = url.trim_start_matches("http://").to_owned();
    let mut patch = std::net::TcpStream::connect(&host).unwrap();
    write!(patch, "PATCH {location} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n", data.len()).unwrap();
    patch.write_all(&data[..10 << 20]).unwrap();
    let mut mono = std::net::TcpStream::connect(&host).unwrap();
    write!(mono, "POST /v2/acme/app/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n", data.len()).unwrap();
    mono.write_all(&data[..8 << 20]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let uploads = dir.path().join("data/uploads");
    let names = |d: &Path| -> Vec<String> {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(
        names(&uploads).len(),
        2,
        "both uploads were writing: {:?}",
        names(&uploads)
    );
    signal(&server.child, "KILL");
    server.child.wait().unwrap();
    drop((patch, mono));

    let mut server = start(dir.path());
    let url = server.url.clone();
    rt.block_on(async {
        // No partial blob is visible; the monolithic leftover is gone; the session survives.
        let r = http
            .head(format!("{url}/v2/acme/app/blobs/{digest}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404);
        assert_eq!(names(&uploads).len(), 1, "{:?}", names(&uploads));
        let r = http
            .get(format!("{url}{location}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
        let range = r.headers()["range"].to_str().unwrap().to_owned();
        let end: u64 = range.trim_start_matches("0-").parse().unwrap();
        let offset = end + 1;
        let on_disk = std::fs::metadata(uploads.join(names(&uploads)[0].clone()))
            .unwrap()
            .len();
        assert_eq!(offset, on_disk, "the offset is what is on disk");
        assert!(offset > 0 && offset <= 10 << 20);
        // Resume from the offset and finish: the digest verifies.
        let r = http
            .put(format!("{url}{location}?digest={digest}"))
            .bearer_auth(&token)
            .header("content-range", format!("{offset}-{}", data.len() - 1))
            .body(data[offset as usize..].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
        let got = http
            .get(format!("{url}/v2/acme/app/blobs/{digest}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(got.len(), data.len());
        assert_eq!(pfai::ids::Digest::sha256_of(&got).to_string(), digest);
        assert!(names(&uploads).is_empty());
    });
    signal(&server.child, "TERM");
    assert!(server.child.wait().unwrap().success());
}

/// Peak anonymous RSS (KiB) of a process, sampled until `stop` is set.
fn sample_rss(
    pid: u32,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                for line in s.lines() {
                    if let Some(v) = line.strip_prefix("RssAnon:") {
                        let kib: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                        peak = peak.max(kib);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    })
}

#[test]
fn a_2_gib_asset_streams_through_in_bounded_memory() {
    assert!(require_tool("git"));
    const SIZE: u64 = 2 << 30;
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let token = std::fs::read_to_string(dir.path().join("data/initial-admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let wc = dir.path().join("wc");
    std::fs::create_dir(&wc).unwrap();
    crate::harness::git_ok(&wc, &["init", "-q", "-b", "main"]);
    crate::harness::git_ok(&wc, &["commit", "-q", "--allow-empty", "-m", "c"]);
    let url = server.url.clone();
    let host = url.trim_start_matches("http://").to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::new();
    rt.block_on(async {
        create_acme_app(&http, &url, &token).await;
    });
    crate::harness::git_ok(
        &wc,
        &[
            "push",
            "-q",
            &format!("http://x:{token}@{host}/acme/app.git"),
            "main",
        ],
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = sample_rss(server.child.id(), stop.clone());

    let chunk = bytes::Bytes::from(
        (0..(1u32 << 20))
            .map(|i| (i % 253) as u8)
            .collect::<Vec<u8>>(),
    );
    let expected = {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        for _ in 0..(SIZE >> 20) {
            h.update(&chunk);
        }
        hex::encode(h.finalize())
    };
    let (up, down) = rt.block_on(async {
        let r = http
            .post(format!("{url}/api/v1/forge/acme/app/releases"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"tagName":"v1","targetCommit":"main"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let c = chunk.clone();
        let stream = futures_util::stream::iter(
            (0..(SIZE >> 20)).map(move |_| Ok::<_, std::io::Error>(c.clone())),
        );
        let part =
            reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), SIZE)
                .file_name("big.bin");
        let t = Instant::now();
        let r = http
            .post(format!("{url}/api/v1/forge/acme/app/releases/v1/assets"))
            .bearer_auth(&token)
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await
            .unwrap();
        let up = t.elapsed();
        assert_eq!(r.status().as_u16(), 201);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["size"], SIZE);
        assert_eq!(v["sha256"], expected.as_str());

        let t = Instant::now();
        let mut r = http
            .get(v["downloadUrl"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers()["content-length"].to_str().unwrap(),
            SIZE.to_string()
        );
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        let mut n = 0u64;
        while let Some(c) = r.chunk().await.unwrap() {
            n += c.len() as u64;
            h.update(&c);
        }
        let down = t.elapsed();
        assert_eq!(n, SIZE);
        assert_eq!(hex::encode(h.finalize()), expected);
        (up, down)
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak_kib = sampler.join().unwrap();
    let mib = SIZE as f64 / (1 << 20) as f64;
    eprintln!(
        "2 GiB asset: upload {:.0} MiB/s, download {:.0} MiB/s, server peak RssAnon {} MiB",
        mib / up.as_secs_f64(),
        mib / down.as_secs_f64(),
        peak_kib / 1024
    );
    assert!(peak_kib > 0, "sampling worked");
    assert!(
        peak_kib < 100 * 1024,
        "server anonymous RSS peaked at {} MiB",
        peak_kib / 1024
    );
    signal(&server.child, "TERM");
    assert!(server.child.wait().unwrap().success());
}

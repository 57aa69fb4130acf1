//! `GET /metrics` against a live server: every surface's requests, the bytes on the wire, the
//! stores' holdings, upload sessions, GC and fsck move as the server works; the optional token
//! guards it; and `--log-format json` writes one JSON object per line.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};

use crate::harness::{git_ok, require_tool, Remote, TestServer};

/// Parses the text exposition strictly: every line a comment or `name{labels} value`, names
/// valid, values numbers, `# EOF` last. Returns `name{labels}` -> value.
fn parse_exposition(text: &str) -> HashMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "no EOF marker:\n{text}");
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            assert!(
                line == "# EOF"
                    || line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line.starts_with("# UNIT "),
                "bad comment line: {line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name value");
        let name = series.split('{').next().unwrap();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "bad metric name: {line}"
        );
        if series.contains('{') {
            assert!(series.ends_with('}'), "bad labels: {line}");
        }
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        out.insert(series.to_owned(), v);
    }
    out
}

async fn scrape(s: &TestServer, token: Option<&str>) -> HashMap<String, f64> {
    let r = s.req(Method::GET, "/metrics", token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    parse_exposition(&r.text().await.unwrap())
}

fn get(m: &HashMap<String, f64>, series: &str) -> f64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("{series} missing from {:?}", m.keys().collect::<Vec<_>>()))
}

fn requests(m: &HashMap<String, f64>, surface: &str, class: &str) -> f64 {
    m.get(&format!(
        "pfai_http_requests_total{{surface=\"{surface}\",class=\"{class}\"}}"
    ))
    .copied()
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_follow_requests_bytes_stores_uploads_gc_and_fsck() {
    let s = TestServer::start_with(|c| c.limits.gc_grace_secs = 0).await;
    let admin = s.admin.clone();
    let before = scrape(&s, None).await;
    assert_eq!(get(&before, "pfai_blob_objects"), 0.0);
    assert!(get(&before, "pfai_database_bytes") > 0.0);
    assert!(get(&before, "pfai_disk_free_bytes") > 0.0);

    // REST: a 2xx and a 4xx.
    s.repo("acme", "app", false).await;
    let (st, _) = s
        .get("/api/v1/forge/acme/nope/releases", Some(&admin))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // UI.
    let r = s.req(Method::GET, "/", None).send().await.unwrap();
    assert!(r.status().is_success());
    // git: a push and a clone.
    assert!(require_tool("git"));
    let work = s.checkout("acme/app", &admin);
    git_ok(&work, &["push", "-q", "origin", "HEAD:main"]);
    let c = tempfile::tempdir().unwrap();
    git_ok(
        c.path(),
        &["clone", "-q", &s.git_url("acme/app", Some(&admin)), "x"],
    );
    // OCI: a 1 MiB layer pushed and pulled.
    let layer = vec![7u8; 1 << 20];
    let remote = Remote {
        url: s.url.clone(),
        token: admin.clone(),
    };
    let (manifest, digest) = remote.push_image("acme/app/web", "1", &layer).await;
    let layer_digest = pfai::ids::Digest::sha256_of(&layer).to_string();
    let pulled = s
        .req(
            Method::GET,
            &format!("/v2/acme/app/web/blobs/{layer_digest}"),
            None,
        )
        .basic_auth("x", Some(&admin))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(pulled.len(), layer.len());
    // An asset.
    let (st, _) = s
        .post(
            "/api/v1/forge/acme/app/releases",
            Some(&admin),
            serde_json::json!({"tagName": "v1", "name": "v1", "targetCommit": "main"}),
        )
        .await;
    assert!(st.is_success(), "{st}");
    let (st, a) = s
        .upload_asset("acme/app", "v1", "a.bin", b"0123456789".to_vec(), &admin)
        .await;
    assert!(st.is_success(), "{a}");
    // An upload session left open.
    let r = s
        .req(Method::POST, "/v2/acme/app/web/blobs/uploads/", None)
        .basic_auth("x", Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    let m = scrape(&s, None).await;
    assert!(requests(&m, "rest", "2xx") > requests(&before, "rest", "2xx"));
    assert!(requests(&m, "rest", "4xx") >= 1.0);
    assert!(requests(&m, "ui", "2xx") >= 1.0);
    assert!(requests(&m, "oci", "2xx") >= 4.0);
    assert!(requests(&m, "git", "2xx") >= 2.0);
    assert!(
        get(
            &m,
            "pfai_http_request_duration_seconds_count{surface=\"oci\"}"
        ) >= 4.0
    );
    assert!(get(&m, "pfai_http_received_bytes_total") >= (1 << 20) as f64);
    assert!(get(&m, "pfai_http_sent_bytes_total") >= (1 << 20) as f64);
    let config_len = br#"{"architecture":"amd64","os":"linux"}"#.len() as f64;
    assert_eq!(get(&m, "pfai_blob_objects"), 2.0);
    assert_eq!(get(&m, "pfai_blob_bytes"), (1 << 20) as f64 + config_len);
    assert_eq!(get(&m, "pfai_asset_objects"), 1.0);
    assert_eq!(get(&m, "pfai_asset_bytes"), 10.0);
    assert_eq!(get(&m, "pfai_upload_sessions"), 1.0);
    assert_eq!(get(&m, "pfai_gc_runs_total"), 0.0);

    // GC frees the image's blobs once its manifest is gone.
    assert!(!manifest.is_empty());
    let r = s
        .req(
            Method::DELETE,
            &format!("/v2/acme/app/web/manifests/{digest}"),
            None,
        )
        .basic_auth("x", Some(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let (st, gc) = s
        .call(Method::POST, "/api/v1/admin/gc", Some(&admin), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{gc}");
    let (st, report) = s
        .call(Method::POST, "/api/v1/admin/fsck", Some(&admin), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{report}");
    let m = scrape(&s, None).await;
    assert_eq!(get(&m, "pfai_blob_objects"), 0.0);
    assert_eq!(get(&m, "pfai_blob_bytes"), 0.0);
    assert_eq!(get(&m, "pfai_gc_runs_total"), 1.0);
    assert_eq!(get(&m, "pfai_gc_removed_blobs_total"), 2.0);
    assert_eq!(
        get(&m, "pfai_gc_freed_bytes_total"),
        (1 << 20) as f64 + config_len
    );
    assert_eq!(get(&m, "pfai_fsck_runs_total"), 1.0);
    assert_eq!(get(&m, "pfai_fsck_problems"), 0.0);
    assert!(get(&m, "pfai_fsck_last_run_timestamp_seconds") > 1.7e9);

    // Deleting the release takes its asset out of the totals.
    let (st, _) = s
        .call(
            Method::DELETE,
            "/api/v1/forge/acme/app/releases/v1",
            Some(&admin),
            None,
        )
        .await;
    assert!(st.is_success(), "{st}");
    let m = scrape(&s, None).await;
    assert_eq!(get(&m, "pfai_asset_objects"), 0.0);
    assert_eq!(get(&m, "pfai_asset_bytes"), 0.0);
    s.stop().await;
}

#[tokio::test]
async fn with_a_metrics_token_metrics_need_it_and_nothing_else_does() {
    let s = TestServer::start_with(|c| c.metrics_token = Some("m3trics-s3cret".into())).await;
    for token in [None, Some("wrong"), Some(s.admin.as_str())] {
        let r = s.req(Method::GET, "/metrics", token).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{token:?}");
    }
    let m = scrape(&s, Some("m3trics-s3cret")).await;
    assert!(m.contains_key("pfai_blob_objects"));
    let r = s.req(Method::GET, "/healthz", None).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    s.stop().await;
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pfai"))
        .args(["serve", "--log-format", "json", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .env_remove("PFAI_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let next = || {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("a log line");
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v.is_object() && v["level"].is_string(), "{line}");
        v
    };
    let addr = loop {
        let v = next();
        if v["message"] == "pfai listening" {
            break v["addr"].as_str().unwrap().to_owned();
        }
    };
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    use std::io::{Read, Write};
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let request = loop {
        let v = next();
        if v["message"] == "request" {
            break v;
        }
    };
    assert_eq!(request["path"], "/healthz");
    assert_eq!(request["status"], 200);
    assert_eq!(request["method"], "GET");
    assert!(request["latency_ms"].is_number());
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_totals_that_drifted_from_the_rows_are_found_by_fsck_and_repaired() {
    let s = TestServer::start().await;
    let remote = Remote {
        url: s.url.clone(),
        token: s.admin.clone(),
    };
    s.repo("acme", "app", false).await;
    remote.push_image("acme/app/web", "1", b"layer").await;
    let dir = s.stop().await;
    {
        let db = pfai::storage::Db::open(&dir.path().join("data/pfai.redb")).unwrap();
        db.write(|txn| {
            txn.open_table(pfai::storage::tables::META)?
                .insert("total:blob_count", 99u64.to_le_bytes().as_slice())?;
            Ok::<_, pfai::storage::StorageError>(())
        })
        .await
        .unwrap();
    }
    let s = TestServer::start_in(dir, |_| {}).await;
    assert_eq!(get(&scrape(&s, None).await, "pfai_blob_objects"), 99.0);
    let (_, report) = s
        .call(Method::POST, "/api/v1/admin/fsck", Some(&s.admin), None)
        .await;
    assert_eq!(report["problems"], 1, "{report}");
    assert_eq!(report["findings"][0]["kind"], "store_totals", "{report}");
    let (_, report) = s
        .call(
            Method::POST,
            "/api/v1/admin/fsck?repair=true",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(report["problems"], 0, "{report}");
    assert_eq!(get(&scrape(&s, None).await, "pfai_blob_objects"), 2.0);
    s.stop().await;
}

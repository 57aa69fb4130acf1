//! Slow and idle clients cannot hold the server: the header, idle and body-progress timeouts, the
//! connection cap and the open-file limit. Each test configures small limits and drives the
//! server with raw TCP; bounds are generous ("was it cut at all"), never measurements.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::TestServer;

/// How long a test waits for something configured to happen after 1-3 s.
const CUT_WITHIN: Duration = Duration::from_secs(15);
/// A timeout no test reaches, for the limits a test does not exercise.
const NEVER: Duration = Duration::from_secs(600);

async fn server(header: Duration, idle: Duration, body: Duration, max: usize) -> TestServer {
    TestServer::start_with(|c| {
        c.conn.header_timeout = header;
        c.conn.idle_timeout = idle;
        c.conn.body_timeout = body;
        c.conn.max_connections = max;
    })
    .await
}

async fn connect(s: &TestServer) -> TcpStream {
    TcpStream::connect(s.url.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes (EOF or reset) and returns what it sent; `None` when the
/// connection is still open after `CUT_WITHIN`.
async fn closed_by_server(sock: &mut TcpStream) -> Option<String> {
    tokio::time::timeout(CUT_WITHIN, async {
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    })
    .await
    .ok()
}

/// Waits until a new connection is served again (200), failing with `why` after `CUT_WITHIN`.
async fn served_again(s: &TestServer, why: &str) {
    let start = Instant::now();
    loop {
        let mut sock = connect(s).await;
        let _ = sock
            .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let answer = closed_by_server(&mut sock).await.unwrap_or_default();
        if answer.starts_with("HTTP/1.1 200 ") {
            return;
        }
        assert!(start.elapsed() < CUT_WITHIN, "{why}: {answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads one response (status line, headers, `Content-Length` body) off a kept-alive connection.
async fn read_response(sock: &mut TcpStream) -> (u16, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(CUT_WITHIN, sock.read(&mut buf))
            .await
            .expect("no response")
            .unwrap();
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    while got.len() < head_end + len {
        let n = sock.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed inside a response body");
        got.extend_from_slice(&buf[..n]);
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head)
}

const HEALTH: &[u8] = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test]
async fn slowloris_headers_are_cut_by_the_header_timeout() {
    let s = server(Duration::from_secs(1), NEVER, NEVER, 64).await;
    let (mut rd, mut wr) = connect(&s).await.into_split();
    // One byte every 100 ms of a header that never ends: the connection is never idle.
    let trickle = tokio::spawn(async move {
        let head = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        for b in head.iter().chain(std::iter::repeat(&b'a')) {
            if wr.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut got = Vec::new();
    let closed = tokio::time::timeout(CUT_WITHIN, rd.read_to_end(&mut got)).await;
    trickle.abort();
    assert!(
        closed.is_ok(),
        "a client trickling its headers was still connected after {CUT_WITHIN:?}"
    );
    assert!(!String::from_utf8_lossy(&got).contains(" 200 "));
    let (st, _) = s.get("/api/v1/health", None).await;
    assert_eq!(st, StatusCode::OK, "the server serves others afterwards");
}

#[tokio::test]
async fn a_silent_connection_is_cut_by_the_header_timeout() {
    let s = server(Duration::from_secs(1), NEVER, NEVER, 64).await;
    let mut sock = connect(&s).await;
    assert!(
        closed_by_server(&mut sock).await.is_some(),
        "a connection that never sent a byte was still open after {CUT_WITHIN:?}"
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_by_the_idle_timeout() {
    let s = server(NEVER, Duration::from_secs(1), NEVER, 64).await;
    let mut sock = connect(&s).await;
    // Keep-alive works: two requests on one connection.
    for _ in 0..2 {
        sock.write_all(HEALTH).await.unwrap();
        let (status, head) = read_response(&mut sock).await;
        assert_eq!(status, 200, "{head}");
        assert!(!head.contains("connection: close"), "{head}");
    }
    assert!(
        closed_by_server(&mut sock).await.is_some(),
        "an idle keep-alive connection was still open after {CUT_WITHIN:?}"
    );
}

/// Opens an upload session on `acme/app` and returns its location.
async fn start_upload(s: &TestServer) -> String {
    s.repo("acme", "app", false).await;
    let r = s
        .req(Method::POST, "/v2/acme/app/blobs/uploads/", Some(&s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    r.headers()["location"].to_str().unwrap().to_owned()
}

fn patch_head(loc: &str, token: &str, len: usize) -> String {
    format!(
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n"
    )
}

#[tokio::test]
async fn a_stalled_blob_patch_is_cut_and_its_session_resumes() {
    let s = server(NEVER, NEVER, Duration::from_secs(1), 64).await;
    let loc = start_upload(&s).await;
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 251) as u8).collect();

    // Announce 1000 bytes, send 400, then go silent.
    let mut sock = connect(&s).await;
    sock.write_all(patch_head(&loc, &s.admin, data.len()).as_bytes())
        .await
        .unwrap();
    sock.write_all(&data[..400]).await.unwrap();
    let answer = closed_by_server(&mut sock)
        .await
        .unwrap_or_else(|| panic!("a stalled PATCH was still open after {CUT_WITHIN:?}"));
    // The handler saw a read error (as for a disconnect) and answered; then the connection closed.
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );

    // The session kept what arrived and resumes from there.
    let r = s
        .req(Method::GET, &loc, Some(&s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["range"], "0-399");
    let r = s
        .req(Method::PATCH, &loc, Some(&s.admin))
        .header("content-range", "400-999")
        .header("content-type", "application/octet-stream")
        .body(data[400..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["range"], "0-999");
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let digest = pfai::ids::Digest::sha256_of(&data).to_string();
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = s
        .req(
            Method::PUT,
            &format!("{loc}{sep}digest={digest}"),
            Some(&s.admin),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .req(
            Method::GET,
            &format!("/v2/acme/app/blobs/{digest}"),
            Some(&s.admin),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());
}

#[tokio::test]
async fn a_slow_but_steady_upload_outlives_the_idle_and_body_timeouts() {
    // 20 chunks 250 ms apart: 5 s in all, longer than every timeout, never silent for long.
    let s = server(
        Duration::from_secs(3),
        Duration::from_secs(1),
        Duration::from_secs(3),
        64,
    )
    .await;
    let loc = start_upload(&s).await;
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let mut sock = connect(&s).await;
    sock.write_all(patch_head(&loc, &s.admin, data.len()).as_bytes())
        .await
        .unwrap();
    for chunk in data.chunks(1000) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        sock.write_all(chunk).await.unwrap();
    }
    let (status, head) = read_response(&mut sock).await;
    assert_eq!(status, 202, "{head}");
    assert!(head.contains("range: 0-19999"), "{head}");
    // Idle after a request longer than the header timeout: the idle timeout still closes it
    // (it was never armed once the watchdog had seen the header deadline pass mid-request).
    assert!(
        closed_by_server(&mut sock).await.is_some(),
        "a connection idle after a long request was still open after {CUT_WITHIN:?}"
    );
}

#[tokio::test]
async fn connections_past_the_cap_get_503_and_service_resumes_when_they_close() {
    let s = server(NEVER, NEVER, NEVER, 8).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut sock = connect(&s).await;
        sock.write_all(HEALTH).await.unwrap();
        assert_eq!(read_response(&mut sock).await.0, 200);
        held.push(sock);
    }
    let mut extra = connect(&s).await;
    let _ = extra.write_all(HEALTH).await;
    let answer = closed_by_server(&mut extra)
        .await
        .expect("a connection past the cap was neither answered nor closed");
    let lower = answer.to_ascii_lowercase();
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(lower.contains("connection: close"), "{answer}");
    assert!(lower.contains("retry-after:"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");

    drop(held);
    served_again(&s, "still refused after the held connections closed").await;
}

/// The soft `Max open files` of this process, from `/proc/self/limits`.
#[cfg(target_os = "linux")]
fn max_open_files() -> (String, String) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_owned();
    let f: Vec<&str> = line.split_whitespace().collect();
    (f[3].to_owned(), f[4].to_owned())
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_open_file_soft_limit_is_raised_to_the_hard_limit_at_start() {
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
    if hard == rlimit::INFINITY || hard < 4096 {
        eprintln!("skipped: hard open-file limit {hard} cannot be lowered safely and raised");
        return;
    }
    // Lower our own soft limit (always allowed) so that raising it is observable; half the hard
    // limit leaves the tests running alongside plenty.
    rlimit::Resource::NOFILE.set(hard / 2, hard).unwrap();
    let s = TestServer::start().await;
    let (soft_now, hard_now) = max_open_files();
    assert_eq!(soft_now, hard_now, "soft limit after start");
    assert_eq!(hard_now, hard.to_string());
    s.stop().await;
}

#[tokio::test]
async fn expect_100_continue_and_chunked_bodies_still_work_through_the_watched_connections() {
    let secs = Duration::from_secs(5);
    let s = server(secs, secs, secs, 64).await;
    let loc = start_upload(&s).await;
    let mut sock = connect(&s).await;
    let head =
        patch_head(&loc, &s.admin, 10).replace("\r\n\r\n", "\r\nExpect: 100-continue\r\n\r\n");
    sock.write_all(head.as_bytes()).await.unwrap();
    let (status, interim) = read_response(&mut sock).await;
    assert_eq!(status, 100, "{interim}");
    sock.write_all(b"0123456789").await.unwrap();
    let (status, head) = read_response(&mut sock).await;
    assert_eq!(status, 202, "{head}");
    assert!(head.contains("range: 0-9"), "{head}");

    let head = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
        s.admin
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(b"5\r\nabcde\r\n0\r\n\r\n").await.unwrap();
    let (status, head) = read_response(&mut sock).await;
    assert_eq!(status, 202, "{head}");
    assert!(head.contains("range: 0-14"), "{head}");
}

#[tokio::test]
async fn a_client_that_stops_reading_a_download_is_cut() {
    // Two slots: the harness client's kept-alive connection and the stalled reader.
    let s = server(NEVER, NEVER, Duration::from_secs(1), 2).await;
    s.repo("acme", "app", false).await;
    // Far more than the socket buffers on both sides can hold.
    let data: Vec<u8> = (0..64u32 << 20).map(|i| (i % 251) as u8).collect();
    let digest = pfai::ids::Digest::sha256_of(&data).to_string();
    let r = s
        .req(
            Method::POST,
            &format!("/v2/acme/app/blobs/uploads/?digest={digest}"),
            Some(&s.admin),
        )
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    let mut stalled = connect(&s).await;
    let get = format!(
        "GET /v2/acme/app/blobs/{digest} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        s.admin
    );
    stalled.write_all(get.as_bytes()).await.unwrap();
    // While the reader holds the last slot, newcomers get 503; once it is cut, they are served.
    served_again(&s, "a client not reading its download still held a slot").await;
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(Ok(n)) = tokio::time::timeout(CUT_WITHIN, stalled.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        got += n;
    }
    assert!(got < data.len(), "the whole download was delivered: {got}");
}

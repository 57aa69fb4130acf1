//! Smart HTTP through `git http-backend` (CGI): it speaks every protocol version, handles
//! gzip request bodies and runs `receive-pack` with our pre-receive hook. This module starts the
//! process, feeds it the request body and parses the CGI header block of its answer; it also
//! parses the ref-update commands at the start of a push so the server can judge them first.

use std::process::Stdio;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::GitStore;

/// One ref update of a push: `old new name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    /// Old object id (all zeros: the ref is created).
    pub old: String,
    /// New object id (all zeros: the ref is deleted).
    pub new: String,
    /// Full ref name, e.g. `refs/tags/v1`.
    pub name: String,
}

/// Parses the command list at the start of a receive-pack request. Returns the updates and
/// whether the command list is complete (a flush packet was seen) in `buf`; `Err` for bytes
/// that are not pkt-lines.
pub fn parse_ref_updates(buf: &[u8]) -> Result<(Vec<RefUpdate>, bool), String> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        if buf.len() < pos + 4 {
            return Ok((out, false));
        }
        let len_hex = std::str::from_utf8(&buf[pos..pos + 4]).map_err(|_| "bad pkt-line")?;
        let len = usize::from_str_radix(len_hex, 16).map_err(|_| "bad pkt-line length")?;
        if len == 0 {
            return Ok((out, true));
        }
        if len < 4 {
            return Err("bad pkt-line length".into());
        }
        if buf.len() < pos + len {
            return Ok((out, false));
        }
        let line = &buf[pos + 4..pos + len];
        pos += len;
        let line = match line.iter().position(|&b| b == 0) {
            Some(nul) => &line[..nul],
            None => line,
        };
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\n');
        let mut parts = line.splitn(3, ' ');
        let (Some(old), Some(new), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            continue; // shallow / push-cert lines: not ref updates
        };
        if old.len() == 40 && new.len() == 40 {
            out.push(RefUpdate {
                old: old.to_owned(),
                new: new.to_owned(),
                name: name.to_owned(),
            });
        }
    }
}

/// The request as the CGI sees it.
pub struct CgiRequest {
    /// GET or POST.
    pub method: String,
    /// `/<owner>/<repo>.git/<service path>` (validated by the caller).
    pub path_info: String,
    /// Raw query string.
    pub query: String,
    /// Content-Type header.
    pub content_type: String,
    /// Content-Encoding header (gzip from fetch clients).
    pub content_encoding: String,
    /// Git-Protocol header (protocol v2 negotiation).
    pub git_protocol: String,
    /// The authenticated user (enables receive-pack), empty for anonymous.
    pub remote_user: String,
    /// When set, the pre-receive hook refuses the push with this message.
    pub push_denied: Option<String>,
}

/// The CGI's answer: status, headers, and the body still streaming from the process.
pub struct CgiResponse {
    /// HTTP status from the `Status:` header (200 when absent).
    pub status: u16,
    /// Other headers.
    pub headers: Vec<(String, String)>,
    /// Body bytes already read past the header block.
    pub body_start: Bytes,
    /// The rest of the body.
    pub stdout: tokio::process::ChildStdout,
    /// The process, to be reaped when the body ends.
    pub child: tokio::process::Child,
}

/// Runs `git http-backend` for one request, streaming `prefix` then `body` into its stdin.
pub async fn run<S, B, E>(
    store: &GitStore,
    req: CgiRequest,
    prefix: Bytes,
    body: S,
) -> std::io::Result<CgiResponse>
where
    S: Stream<Item = Result<B, E>> + Send + Unpin + 'static,
    B: bytes::Buf + Send,
    E: std::fmt::Display + Send,
{
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", store.root())
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_COUNT", "2")
        .env("GIT_CONFIG_KEY_0", "core.hooksPath")
        .env("GIT_CONFIG_VALUE_0", store.hooks_dir())
        .env("GIT_CONFIG_KEY_1", "uploadpack.allowFilter")
        .env("GIT_CONFIG_VALUE_1", "true")
        .env("REQUEST_METHOD", &req.method)
        .env("PATH_INFO", &req.path_info)
        .env("QUERY_STRING", &req.query)
        .env("CONTENT_TYPE", &req.content_type)
        .env("GIT_PROTOCOL", &req.git_protocol)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if !req.content_encoding.is_empty() {
        cmd.env("HTTP_CONTENT_ENCODING", &req.content_encoding);
    }
    if !req.remote_user.is_empty() {
        cmd.env("REMOTE_USER", &req.remote_user);
    }
    if let Some(msg) = &req.push_denied {
        cmd.env("PFAI_PUSH_DENIED", msg);
    }
    let mut child = cmd.spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("no stdin"))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no stdout"))?;

    // Feed the body concurrently with reading the answer (git may answer before reading all).
    tokio::spawn(async move {
        let mut body = body;
        if !prefix.is_empty() && stdin.write_all(&prefix).await.is_err() {
            return;
        }
        while let Some(chunk) = body.next().await {
            let Ok(mut chunk) = chunk else { return };
            while chunk.has_remaining() {
                let part = chunk.chunk();
                let n = part.len();
                if stdin.write_all(part).await.is_err() {
                    return;
                }
                chunk.advance(n);
            }
        }
        let _ = stdin.shutdown().await;
    });

    // Read the CGI header block (ends at an empty line).
    let mut buf = BytesMut::with_capacity(8192);
    let header_end = loop {
        if let Some(i) = find_header_end(&buf) {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return Err(std::io::Error::other("CGI header block too large"));
        }
        let n = stdout.read_buf(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::other(
                "git http-backend ended without headers",
            ));
        }
    };
    let (head_len, sep_len) = header_end;
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    let body_start = buf.split_off(head_len + sep_len).freeze();
    let mut status = 200;
    let mut headers = Vec::new();
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            status = v
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(500);
        } else {
            headers.push((k.trim().to_owned(), v.to_owned()));
        }
    }
    Ok(CgiResponse {
        status,
        headers,
        body_start,
        stdout,
        child,
    })
}

fn find_header_end(buf: &[u8]) -> Option<(usize, usize)> {
    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
        return Some((i, 4));
    }
    buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(s: &str) -> String {
        format!("{:04x}{s}", s.len() + 4)
    }

    #[test]
    fn parses_push_commands() {
        let a = "a".repeat(40);
        let z = "0".repeat(40);
        let body = format!(
            "{}{}0000PACK",
            pkt(&format!(
                "{a} {z} refs/tags/v1\0report-status side-band-64k\n"
            )),
            pkt(&format!("{z} {a} refs/heads/main\n"))
        );
        let (ups, done) = parse_ref_updates(body.as_bytes()).unwrap();
        assert!(done);
        assert_eq!(ups.len(), 2);
        assert_eq!(ups[0].name, "refs/tags/v1");
        assert_eq!(ups[0].new, z);
        let (_, done) = parse_ref_updates(&body.as_bytes()[..10]).unwrap();
        assert!(!done);
        assert!(parse_ref_updates(b"zzzz").is_err());
    }
}

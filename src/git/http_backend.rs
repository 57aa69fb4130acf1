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

impl RefUpdate {
    /// Parses one `old new name` command as git hands it to hooks and sends it on the wire
    /// (object ids of 40 or 64 hex digits, a name without spaces or control characters).
    pub fn parse(line: &str) -> Option<RefUpdate> {
        let mut parts = line.split(' ');
        let (old, new, name) = (parts.next()?, parts.next()?, parts.next()?);
        let is_oid = |s: &str| {
            (s.len() == 40 || s.len() == 64)
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let name_ok = !name.is_empty() && !name.bytes().any(|b| b.is_ascii_control());
        let null = |s: &str| s.bytes().all(|b| b == b'0');
        // null -> null changes nothing git admits to, yet git deletes the ref: not an update.
        if parts.next().is_some()
            || !is_oid(old)
            || !is_oid(new)
            || !name_ok
            || (null(old) && null(new))
        {
            return None;
        }
        Some(RefUpdate {
            old: old.to_owned(),
            new: new.to_owned(),
            name: name.to_owned(),
        })
    }
}

/// Why the command section of a push is refused before git runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushParseError {
    /// The bytes are not pkt-lines.
    #[error("{0}")]
    Framing(&'static str),
    /// A signed push: git would apply the commands inside the certificate, and this server is
    /// not configured to verify certificates.
    #[error("signed pushes (push certificates) are not accepted: this server does not verify them; push without --signed")]
    PushCertificate,
    /// A line that is neither a ref update nor a `shallow` line.
    #[error("unrecognised command in push: {0:?}")]
    Unclassifiable(String),
}

/// Reads the command list at the start of a receive-pack request and classifies every line:
/// each must be one ref update (`old new name`, capabilities after a NUL on the first) or a
/// `shallow <oid>` line. Push certificates and anything else are refused, so no command can hide
/// where a lenient reader would skip it. Returns the updates and whether the list is complete (a
/// flush packet was seen) in `buf`. The protection decision itself is made by the pre-receive
/// hook on what git will apply; this is a gate, not the judge.
pub fn parse_ref_updates(buf: &[u8]) -> Result<(Vec<RefUpdate>, bool), PushParseError> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        if buf.len() < pos + 4 {
            return Ok((out, false));
        }
        let len_hex = std::str::from_utf8(&buf[pos..pos + 4])
            .map_err(|_| PushParseError::Framing("bad pkt-line"))?;
        let len = usize::from_str_radix(len_hex, 16)
            .map_err(|_| PushParseError::Framing("bad pkt-line length"))?;
        if len == 0 {
            return Ok((out, true));
        }
        if len < 4 {
            return Err(PushParseError::Framing("bad pkt-line length"));
        }
        if buf.len() < pos + len {
            return Ok((out, false));
        }
        let raw = &buf[pos + 4..pos + len];
        pos += len;
        let (line, caps) = match raw.iter().position(|&b| b == 0) {
            Some(nul) => (&raw[..nul], &raw[nul + 1..]),
            None => (raw, &[][..]),
        };
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let caps = caps.strip_suffix(b"\n").unwrap_or(caps);
        if caps.iter().any(|b| b.is_ascii_control()) {
            return Err(PushParseError::Unclassifiable(
                String::from_utf8_lossy(&caps[..caps.len().min(80)]).into_owned(),
            ));
        }
        let preview = || String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
        let Ok(text) = std::str::from_utf8(line) else {
            return Err(PushParseError::Unclassifiable(preview()));
        };
        if text == "push-cert" || text.starts_with("push-cert ") {
            return Err(PushParseError::PushCertificate);
        }
        if let Some(oid) = text.strip_prefix("shallow ") {
            if RefUpdate::parse(&format!("{oid} {oid} shallow")).is_some() {
                continue;
            }
        }
        match RefUpdate::parse(text) {
            Some(u) => out.push(u),
            None => return Err(PushParseError::Unclassifiable(preview())),
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
    /// For pushes: what the pre-receive hook needs to judge the updates git will apply.
    pub push_policy: Option<PushPolicy>,
}

/// What a push carries to the pre-receive hook (through the environment of `git http-backend`,
/// which git passes on to its hooks): the `pfai` binary to run, the pusher's role and the
/// repository's protection patterns, so the hook needs no database.
pub struct PushPolicy {
    /// The `pfai` executable the hook script runs.
    pub hook_exe: std::path::PathBuf,
    /// The pusher's role on the repository.
    pub role: crate::ids::Role,
    /// The repository's tag-protection patterns as a JSON array of strings.
    pub rules_json: String,
    /// The repository's tombstoned (immutable-release) tag names as a JSON array of strings.
    pub immutable_json: String,
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
    if let Some(policy) = &req.push_policy {
        cmd.env(super::hook::ENV_EXE, &policy.hook_exe)
            .env(super::hook::ENV_ROLE, policy.role.as_str())
            .env(super::hook::ENV_RULES, &policy.rules_json)
            .env(super::hook::ENV_IMMUTABLE, &policy.immutable_json);
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
            "{}{}{}0000PACK",
            pkt(&format!(
                "{a} {z} refs/tags/v1\0report-status side-band-64k\n"
            )),
            pkt(&format!("{z} {a} refs/heads/main\n")),
            pkt(&format!("shallow {a}\n")),
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

    #[test]
    fn commands_hidden_where_a_lenient_reader_skips_are_refused() {
        let a = "a".repeat(40);
        let z = "0".repeat(40);
        let cert = format!(
            "{}{}{}0000",
            pkt("push-cert\0report-status\n"),
            pkt(&format!(
                "certificate version 0.1\npusher x\n\n{a} {z} refs/tags/v1\n"
            )),
            pkt("push-cert-end\n"),
        );
        assert_eq!(
            parse_ref_updates(cert.as_bytes()),
            Err(PushParseError::PushCertificate)
        );
        // Two commands in one pkt-line, a command with trailing words, a short id.
        for line in [
            format!("{a} {z} refs/tags/v1\n{a} {z} refs/tags/v2\n"),
            format!("{a} {z} refs/tags/v1 extra\n"),
            format!("{} {z} refs/tags/v1\n", &a[..39]),
            format!("{z} {z} refs/tags/v1\n"),
            "certificate version 0.1\n".to_owned(),
        ] {
            let body = format!("{}0000", pkt(&line));
            assert!(
                matches!(
                    parse_ref_updates(body.as_bytes()),
                    Err(PushParseError::Unclassifiable(_))
                ),
                "{line:?}"
            );
        }
        // SHA-256 repositories use 64-digit ids.
        let b = "b".repeat(64);
        let body = format!("{}0000", pkt(&format!("{b} {b} refs/tags/v1\n")));
        assert_eq!(parse_ref_updates(body.as_bytes()).unwrap().0.len(), 1);
    }
}

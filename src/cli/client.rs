//! The HTTP client behind every client subcommand: where the server is, which token to send,
//! and how API errors become messages that name the problem and the fix.

use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::{ErrorBody, OciErrorBody};

/// A client-side failure, printed as `error: <message>` with exit code 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A message for the user, already phrased.
    #[error("{0}")]
    Msg(String),
    /// The server answered with an error.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The server's message (or a rephrasing of it).
        message: String,
    },
    /// The server could not be reached.
    #[error("cannot reach {url}: {source}")]
    Connect {
        /// The server.
        url: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// Local I/O.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Shorthand.
pub type CliResult<T> = Result<T, CliError>;

/// What `pfai login` saves.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Saved {
    /// Server URL.
    pub url: Option<String>,
    /// Token.
    pub token: Option<String>,
}

/// `$XDG_CONFIG_HOME/pfai/config.toml` (or `~/.config/pfai/config.toml`).
pub fn config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("pfai").join("config.toml"))
}

/// Reads the saved login, if any.
pub fn load_saved() -> Saved {
    config_path()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| toml::from_str(&s).ok())
        .unwrap_or_default()
}

/// Writes the login file with mode 0600 (atomically: temp file + rename).
pub fn save(saved: &Saved) -> CliResult<PathBuf> {
    let path = config_path().ok_or_else(|| {
        CliError::Msg("cannot find a config directory: set HOME or XDG_CONFIG_HOME".into())
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let text = toml::to_string(saved).map_err(|e| CliError::Msg(e.to_string()))?;
    let tmp = dir.join(".config.toml.tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The CA certificates `--ca-cert` (`PFAI_CA_CERT`) adds to the public roots, set once per run.
static EXTRA_ROOTS: std::sync::OnceLock<Vec<reqwest::Certificate>> = std::sync::OnceLock::new();

/// Reads `--ca-cert`: every PEM certificate in `path` is trusted by the HTTP clients of this
/// run, so a server with a private CA or a self-signed certificate can be reached.
pub fn trust_ca(path: &Path) -> CliResult<()> {
    let bad = |why: String| {
        CliError::Msg(format!(
            "cannot use the CA certificate {}: {why}",
            path.display()
        ))
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    // Building a client is what parses the certificates: refuse garbage here, not later.
    let mut b = reqwest::Client::builder();
    for c in &certs {
        b = b.add_root_certificate(c.clone());
    }
    b.build().map_err(|e| bad(e.to_string()))?;
    let _ = EXTRA_ROOTS.set(certs);
    Ok(())
}

/// A reqwest client builder that trusts `--ca-cert` as well as the public roots.
pub fn http_builder() -> reqwest::ClientBuilder {
    let mut b = reqwest::Client::builder();
    for c in EXTRA_ROOTS.get().into_iter().flatten() {
        b = b.add_root_certificate(c.clone());
    }
    b
}

/// The server URL the commands talk to: `PFAI_URL`, else the saved login, else the default.
pub fn server_url() -> String {
    server_url_from(load_saved().url)
}

fn server_url_from(saved: Option<String>) -> String {
    std::env::var("PFAI_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .or(saved)
        .unwrap_or_else(|| DEFAULT_URL.into())
}

/// Default server when nothing is configured.
pub const DEFAULT_URL: &str = "http://127.0.0.1:3000";

/// A configured API client.
#[derive(Clone)]
pub struct Client {
    /// Server base URL, without a trailing slash.
    pub url: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// Resolves URL and token: `PFAI_URL`/`PFAI_TOKEN` override the saved login.
    pub fn from_env() -> Client {
        let saved = load_saved();
        let url = server_url_from(saved.url);
        let token = std::env::var("PFAI_TOKEN")
            .ok()
            .filter(|v| !v.is_empty())
            .or(saved.token);
        Client::new(&url, token)
    }

    /// A client for `url` with an optional token.
    pub fn new(url: &str, token: Option<String>) -> Client {
        Client {
            url: url.trim_end_matches('/').to_owned(),
            token,
            // Only a bad root certificate (refused by `trust_ca` already) makes this fail.
            http: http_builder().build().unwrap_or_default(),
        }
    }

    /// The token, or the message telling how to get one.
    pub fn token(&self) -> CliResult<&str> {
        self.token
            .as_deref()
            .ok_or_else(|| CliError::Msg("no token: run `pfai login` or set PFAI_TOKEN".into()))
    }

    /// A request to an API path (`/api/v1/...`), authenticated when a token is known.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.url));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Sends and returns the response when it succeeded, else a phrased error.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> CliResult<reqwest::Response> {
        self.check_url()?;
        let req = req.build().map_err(|source| self.connect_error(source))?;
        let path = req.url().path().to_owned();
        let resp = self
            .http
            .execute(req)
            .await
            .map_err(|source| self.connect_error(source))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let kind = content_type(&resp);
        let body = resp.text().await.unwrap_or_default();
        let ours = server_message(&body);
        // A 404/405 without pfai's error body is some other web server answering.
        if ours.is_none() && matches!(status.as_u16(), 404 | 405) && path.starts_with("/api/") {
            return Err(self.not_pfai(&path, &format!("{status} ({kind})")));
        }
        let message = ours.unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("request failed")
                .to_owned()
        });
        let message = match status {
            StatusCode::UNAUTHORIZED if self.token.is_none() => {
                "no token: run `pfai login` or set PFAI_TOKEN".to_owned()
            }
            StatusCode::UNAUTHORIZED => {
                format!("{message} (check PFAI_TOKEN or run `pfai login` again)")
            }
            _ => message,
        };
        Err(CliError::Api {
            status: status.as_u16(),
            message,
        })
    }

    /// A call without a body; the reply's JSON as sent (`null` when empty), for `--json`
    /// pass-through. Read fields through [`decode`], never by indexing.
    pub async fn call(&self, method: Method, path: &str) -> CliResult<Value> {
        self.reply(self.request(method, path)).await
    }

    /// A call with a JSON body (one of the [`crate::api`] request types).
    pub async fn call_with<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> CliResult<Value> {
        self.reply(self.request(method, path).json(body)).await
    }

    /// [`Client::call_with`], the reply read as `T`.
    pub async fn call_as<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> CliResult<T> {
        decode(self.call_with(method, path, body).await?)
    }

    async fn reply(&self, req: reqwest::RequestBuilder) -> CliResult<Value> {
        let resp = self.send(req).await?;
        let path = resp.url().path().to_owned();
        let kind = content_type(&resp);
        let text = resp
            .text()
            .await
            .map_err(|source| self.connect_error(source))?;
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| {
            if kind.starts_with("application/json") {
                CliError::Msg(format!("the server sent invalid JSON: {e}"))
            } else {
                self.not_pfai(&path, &format!("200 with {kind}, not JSON"))
            }
        })
    }

    /// A URL without `http://` or `https://` is a mistake to name, not a DNS error to show.
    fn check_url(&self) -> CliResult<()> {
        let lower = self.url.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return Ok(());
        }
        Err(CliError::Msg(format!(
            "the server URL {:?} has no scheme: write http://{} or https://{} (PFAI_URL or `pfai login --url`)",
            self.url, self.url, self.url
        )))
    }

    /// Names the likely cause of a failed request: no server listening is the common one.
    fn connect_error(&self, source: reqwest::Error) -> CliError {
        // Refused (nothing listens) or unreachable: not a TLS or protocol failure.
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&source);
        let mut nobody_listens = false;
        while let Some(e) = cause {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind as K;
                nobody_listens |= matches!(
                    io.kind(),
                    K::ConnectionRefused
                        | K::AddrNotAvailable
                        | K::HostUnreachable
                        | K::NetworkUnreachable
                );
            }
            cause = e.source();
        }
        if source.is_connect() && nobody_listens {
            return CliError::Msg(format!(
                "cannot connect to {}: is `pfai serve` running? set PFAI_URL (or `pfai login --url`) to its address",
                self.url
            ));
        }
        CliError::Connect {
            url: self.url.clone(),
            source,
        }
    }

    /// The reply of a web server that is not pfai (wrong port, a proxy's default page).
    fn not_pfai(&self, path: &str, got: &str) -> CliError {
        CliError::Msg(format!(
            "{} does not look like a pfai server: {path} answered {got}; set PFAI_URL to pfai's address",
            self.url
        ))
    }

    /// GET that rephrases a 404 with `what`.
    pub async fn get_or(&self, path: &str, what: impl FnOnce() -> String) -> CliResult<Value> {
        match self.call(Method::GET, path).await {
            Err(CliError::Api { status: 404, .. }) => Err(CliError::Msg(what())),
            other => other,
        }
    }

    /// Every page of a list endpoint (follows `?page=`), up to `max` items.
    pub async fn list_all(&self, path: &str, max: usize) -> CliResult<Vec<Value>> {
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let v = self
                .call(Method::GET, &format!("{path}{sep}page={page}&limit=100"))
                .await?;
            let items = v.as_array().cloned().unwrap_or_default();
            let n = items.len();
            out.extend(items);
            if n < 100 || out.len() >= max {
                out.truncate(max);
                return Ok(out);
            }
            page += 1;
        }
    }
}

/// The reply's content type, for messages (`none` when absent).
fn content_type(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned()
}

/// Reads a reply as its [`crate::api`] type: a field renamed on the server breaks the build
/// (both sides share the type), and a reply of the wrong shape is an error, not blank output.
pub fn decode<T: DeserializeOwned>(v: Value) -> CliResult<T> {
    serde_json::from_value(v)
        .map_err(|e| CliError::Msg(format!("the server sent an unexpected reply: {e}")))
}

/// The message of an error body: REST (`{"error":{…}}`), else the first OCI error.
fn server_message(body: &str) -> Option<String> {
    if let Ok(b) = serde_json::from_str::<ErrorBody>(body) {
        return Some(b.error.message);
    }
    serde_json::from_str::<OciErrorBody>(body)
        .ok()
        .and_then(|b| b.errors.into_iter().next())
        .map(|e| e.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_come_from_either_error_body() {
        assert_eq!(
            server_message(r#"{"error":{"code":"not_found","message":"no such tag"}}"#).as_deref(),
            Some("no such tag")
        );
        assert_eq!(
            server_message(r#"{"errors":[{"code":"DENIED","message":"nope","detail":null}]}"#)
                .as_deref(),
            Some("nope")
        );
        assert_eq!(server_message("<html>"), None);
        assert_eq!(server_message(r#"{"errors":[]}"#), None);
    }
}

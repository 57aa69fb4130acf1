//! HTTP: one warp filter tree for every surface — REST under `/api/v1`, git smart HTTP at
//! `/<owner>/<repo>.git`, the OCI registry at `/v2/`, the web UI everywhere else. `edge.rs` is
//! the typed request edge (path ids parsed, the caller authenticated in one place; the UI's
//! session and CSRF opening is `ui::Parts`). Handlers are plain `async fn`s taking a caller and
//! parsed ids and returning `Result<Response, DomainError>`; errors become responses in
//! `error.rs` (the UI renders them as pages with its status). This layer never opens a
//! transaction or a file.

pub(crate) mod edge;
pub(crate) mod error;
pub(crate) mod git;
pub(crate) mod oci;
pub mod render;
pub(crate) mod reply;
pub(crate) mod rest;
pub(crate) mod ui;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use crate::auth::Credentials;
use crate::domain::{Core, DomainError, DomainResult};

/// Shared state handed to handlers.
pub type Ctx = Arc<Core>;

/// A request body as a stream of chunks.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, warp::Error>> + Send>>;

/// Passes the shared state.
pub fn with_core(core: Ctx) -> impl Filter<Extract = (Ctx,), Error = Infallible> + Clone {
    warp::any().map(move || core.clone())
}

/// The `Authorization` header, parsed (absent: `Credentials::None`).
pub fn credentials() -> impl Filter<Extract = (Credentials,), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .map(|h: Option<String>| Credentials::parse(h.as_deref()))
}

/// `http://<Host>`, to build absolute links; `https` when the connection is TLS (`conn`
/// marks it) or a proxy says so (`X-Forwarded-Proto`).
pub fn base_url() -> impl Filter<Extract = (String,), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("host")
        .and(warp::header::optional::<String>("x-forwarded-proto"))
        .and(warp::ext::optional::<crate::conn::Https>())
        .map(
            |host: Option<String>, proto: Option<String>, tls: Option<crate::conn::Https>| {
                let host = host
                    .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()) && h.len() < 256)
                    .unwrap_or_else(|| "localhost".into());
                let proto = match (tls, proto.as_deref()) {
                    (Some(_), _) | (None, Some("https")) => "https",
                    _ => "http",
                };
                format!("{proto}://{host}")
            },
        )
}

/// The client's TCP address (set by `conn` for every connection it serves).
pub fn peer_addr(
) -> impl Filter<Extract = (Option<std::net::SocketAddr>,), Error = Infallible> + Clone {
    warp::ext::optional::<crate::conn::PeerAddr>()
        .map(|p: Option<crate::conn::PeerAddr>| p.map(|p| p.0))
}

/// The raw query string (empty when absent).
pub fn raw_query() -> impl Filter<Extract = (String,), Error = Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

/// Decodes `a=1&b=2` into pairs, keeping repeats (`tag=a&tag=b`).
pub fn query_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (
                decode_component(&k.replace('+', " ")),
                decode_component(&v.replace('+', " ")),
            )
        })
        .collect()
}

/// The first value of `key`.
pub fn query_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Parses an optional numeric query parameter (400 when not a number).
pub fn query_u64(pairs: &[(String, String)], key: &str) -> DomainResult<Option<u64>> {
    match query_get(pairs, key) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| DomainError::BadRequest(format!("{key} must be a non-negative integer"))),
    }
}

/// `?page=&limit=` of a list endpoint, validated (400 for non-numbers or out-of-range values).
pub fn page_query(raw: &str) -> DomainResult<crate::domain::Page> {
    let pairs = query_pairs(raw);
    crate::domain::Page::new(query_u64(&pairs, "page")?, query_u64(&pairs, "limit")?)
}

/// Percent-decodes one path segment or query component.
pub fn decode_component(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The body as a stream of `Bytes`.
pub fn body_stream() -> impl Filter<Extract = (BodyStream,), Error = warp::Rejection> + Clone {
    warp::body::stream().map(box_stream)
}

fn box_stream<S, B>(s: S) -> BodyStream
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf,
{
    Box::pin(s.map(|r| {
        r.map(|mut b| {
            let n = b.remaining();
            b.copy_to_bytes(n)
        })
    }))
}

/// A multipart part's bytes as a stream, for streaming uploads.
pub fn part_stream(part: warp::multipart::Part) -> BodyStream {
    box_stream(part.stream())
}

/// The file name of a multipart part. Browsers and some clients send a path; only its last
/// component is a name.
pub fn part_file_name(part: &warp::multipart::Part) -> Option<String> {
    part.filename()
        .map(|f| f.rsplit(['/', '\\']).next().unwrap_or(f).to_owned())
}

/// Reads a whole body up to `limit` bytes (413 past it, decided while reading).
pub async fn read_limited(body: &mut BodyStream, limit: u64) -> DomainResult<Bytes> {
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| DomainError::BadRequest(format!("reading the body failed: {e}")))?;
        if buf.len() as u64 + chunk.len() as u64 > limit {
            drain(body, limit.saturating_mul(8)).await;
            return Err(DomainError::TooLarge(format!(
                "the body is limited to {limit} bytes"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Most a failed request's unread body is drained, so that the client (still sending) reads
/// our error instead of a connection reset.
pub const DRAIN_ON_ERROR: u64 = 16 << 20;

/// Reads and discards up to `max` more bytes of a body we are refusing, so the client, still
/// sending, reads our error instead of a connection reset (a lingering close, as nginx does).
pub async fn drain(body: &mut BodyStream, max: u64) {
    let mut drained = 0u64;
    while let Some(Ok(c)) = body.next().await {
        drained += c.len() as u64;
        if drained > max {
            break;
        }
    }
}

/// Reads the rest of a multipart body we stopped processing (up to `max` bytes), so the
/// client, still sending, reads our answer instead of a reset connection.
pub async fn drain_form(form: &mut warp::multipart::FormData, max: u64) {
    let mut drained = 0u64;
    while let Some(Ok(part)) = form.next().await {
        let mut s: BodyStream = part_stream(part);
        while let Some(Ok(c)) = s.next().await {
            drained += c.len() as u64;
            if drained > max {
                return;
            }
        }
    }
}

/// Reads and parses a JSON body (400 when malformed; serde's recursion limit stays on).
pub async fn read_json<T: serde::de::DeserializeOwned>(
    core: &Core,
    body: BodyStream,
) -> DomainResult<T> {
    let mut body = body;
    let bytes = read_limited(&mut body, core.limits.json_body).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| DomainError::BadRequest(format!("invalid JSON body: {e}")))
}

async fn recover(err: warp::Rejection) -> Result<Response, Infallible> {
    let e = if err.is_not_found() {
        DomainError::NotFound("no such route".into())
    } else if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        DomainError::NotFound("no such route for this method".into())
    } else if err.find::<warp::reject::PayloadTooLarge>().is_some() {
        DomainError::TooLarge("request body too large".into())
    } else {
        DomainError::BadRequest(format!("bad request: {err:?}"))
    };
    Ok(error::rest(e))
}

/// Every route of the server, with request logging, metrics and one `recover`.
/// `metrics_token`: when set, `GET /metrics` wants it as a Bearer token.
pub fn routes(core: Ctx, metrics_token: Option<String>) -> BoxedFilter<(Response,)> {
    // 503 `degraded` while database writes fail (full disk, I/O error, reopen failing) or the
    // blob or asset filesystem is out of space, so a load balancer or supervisor sees what
    // clients would; 200 `ok` again once a write commits and there is room.
    let health = warp::path!("api" / "v1" / "health")
        .and(warp::get())
        .and(with_core(core.clone()))
        .then(|core: Ctx| async move {
            match core.write_problem().await {
                None => reply::json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
                Some(reason) => reply::json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"status": "degraded", "reason": reason}),
                ),
            }
        });
    // Kubernetes-style probes: `/healthz` says the process answers; `/readyz` whether it can
    // take writes now (not shutting down, database writable, disk not full), naming each
    // problem.
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| reply::json(StatusCode::OK, &serde_json::json!({"status": "ok"})));
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(with_core(core.clone()))
        .then(|core: Ctx| async move {
            let problems = core.readiness_problems().await;
            if problems.is_empty() {
                reply::json(StatusCode::OK, &serde_json::json!({"status": "ready"}))
            } else {
                reply::json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"status": "unready", "problems": problems}),
                )
            }
        });
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(with_core(core.clone()))
        .and(warp::header::optional::<String>("authorization"))
        .then(move |core: Ctx, auth: Option<String>| {
            let wanted = metrics_token.clone();
            async move { metrics_reply(&core, wanted.as_deref(), auth.as_deref()).await }
        });
    let health = health
        .or(healthz)
        .unify()
        .or(readyz)
        .unify()
        .or(metrics)
        .unify();
    let core_metrics = core.metrics.clone();
    let all = health
        .or(rest::routes(core.clone()))
        .unify()
        .or(oci::routes(core.clone()))
        .unify()
        .or(git::routes(core.clone()))
        .unify()
        .or(ui::routes(core))
        .unify()
        .recover(recover)
        .unify();
    let counters = core_metrics;
    let log = warp::log::custom(move |info: warp::log::Info<'_>| {
        counters.request(
            info.path(),
            info.status().as_u16(),
            info.elapsed().as_secs_f64(),
        );
        tracing::info!(
            method = %info.method(),
            path = %info.path(),
            status = info.status().as_u16(),
            latency_ms = info.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
    });
    all.with(log)
        .with(warp::trace(|info: warp::trace::Info<'_>| {
            tracing::info_span!("http", method = %info.method(), user = tracing::field::Empty)
        }))
        .map(warp::Reply::into_response)
        .boxed()
}

/// `GET /metrics`: the Prometheus text format; 401 without the configured token.
async fn metrics_reply(core: &Core, wanted: Option<&str>, auth: Option<&str>) -> Response {
    if let Some(wanted) = wanted {
        let given = auth
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or_default();
        // Compared as SHA-256 digests: equal lengths, so the comparison leaks neither the
        // token nor its length.
        use sha2::Digest as _;
        let (given, wanted) = (sha2::Sha256::digest(given), sha2::Sha256::digest(wanted));
        let same: bool = subtle::ConstantTimeEq::ct_eq(given.as_slice(), wanted.as_slice()).into();
        if !same {
            return error::rest(DomainError::Unauthenticated(
                "/metrics needs the metrics token (Authorization: Bearer …)".into(),
            ));
        }
    }
    match core.holdings().await {
        Ok(h) => {
            let mut r = Response::new(core.metrics.render(&h).into());
            r.headers_mut().insert(
                warp::http::header::CONTENT_TYPE,
                warp::http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        Err(e) => error::rest(e),
    }
}

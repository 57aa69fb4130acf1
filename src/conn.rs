//! Serving connections, so that slow and idle clients cannot hold the server. warp 0.4's
//! `serve` exposes neither timeouts nor a connection cap, so this is our own accept loop in front
//! of the same warp filter tree, serving each connection with hyper-util's auto builder (HTTP/1.1
//! with `Expect: 100-continue`, chunked bodies and upgrades; HTTP/1 only: no h2c)
//! and watching it:
//!
//! - **header timeout**: a request's headers must be complete this long after the connection was
//!   opened, or after the first byte of a request that follows an idle period (slowloris);
//! - **idle timeout**: a connection with no request in flight (the last response fully handed to
//!   the socket) is closed after this long;
//! - **body-progress timeout**: while a handler waits for the request body, the body fails when
//!   nothing arrives for this long. The handler sees a read error, exactly as for a client that
//!   disconnected, so an OCI upload session keeps the bytes it received and the client resumes;
//!   the error response carries `Connection: close`. The same bound applies to a response the
//!   client stops reading (a write the socket does not accept);
//! - **connection cap**: a semaphore; past it a new connection is answered `503` with
//!   `Connection: close` and `Retry-After: 1` and closed (HTTP clients, git, skopeo and docker
//!   report a 503 and may retry, where a bare close would look like a network fault);
//! - accept errors such as `EMFILE` back off (50 ms doubling to 1 s) instead of spinning;
//! - **TLS** (`--tls-cert`): the handshake runs inside the connection's slot and under the header
//!   timeout (a client that connects and never completes it is closed like a slowloris); the
//!   socket under rustls is the watched one, so the idle and write-stall clocks are unchanged.
//!   A plain HTTP request on the TLS port is answered `400` in clear text and closed. Requests
//!   carry [`Https`] so that the URLs the server builds say `https`.
//!
//! Graceful shutdown stops accepting, asks every connection to finish (idle ones close at once,
//! in-flight requests complete) and waits until every connection slot is returned.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;

use crate::metrics::Traffic;
use tower_service::Service as _;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, Request};
use warp::reply::Response;

use crate::config::ConnLimits;

/// Refusals (503 answers past the cap) in progress at once; past this a connection is just closed.
const REFUSALS_AT_ONCE: usize = 64;
/// How long a refused connection is kept to deliver the 503 and read what the client sent.
const REFUSAL_LINGER: Duration = Duration::from_secs(2);
/// The largest connection cap (the shutdown waits for every slot in one acquire).
const MAX_CAP: usize = 1_000_000;
/// At least this long for the error response to a cut request to be delivered.
const AFTER_CUT_MIN: Duration = Duration::from_secs(30);
/// How often the watchdog looks at a connection's state at least.
const RECHECK: Duration = Duration::from_secs(1);
/// How long a graceful shutdown waits for in-flight requests before closing their connections.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(30);
/// First and largest pause after an accept error that is not about one connection.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The TCP peer of a request's connection, put in the request's extensions (warp's own
/// `addr::remote` is only filled by `warp::serve`); read it with `http::peer_addr()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Put in a request's extensions when it arrived over TLS (read by `http::base_url`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Https;

/// Why a request body failed: the client stalled, or reading it failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Nothing arrived for the body-progress timeout while the handler waited.
    #[error("the client sent no body bytes for {0} s; the request was cut")]
    Stalled(u64),
    /// The connection failed while reading the body.
    #[error(transparent)]
    Read(#[from] hyper::Error),
}

/// Raises the soft limit on open files to the hard limit, so that the connection cap, not
/// `EMFILE`, decides how many clients are served. Logs the outcome; returns the soft limit in
/// force afterwards (`None` when it cannot be read).
pub fn raise_fd_limit() -> Option<u64> {
    let (soft, hard) = match rlimit::Resource::NOFILE.get() {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit");
            return None;
        }
    };
    if soft >= hard {
        tracing::info!(soft, hard, "open-file limit already at its hard limit");
        return Some(soft);
    }
    let mut result = rlimit::increase_nofile_limit(hard);
    if result.is_err() && hard == rlimit::INFINITY {
        // Linux refuses an infinite NOFILE; its usual ceiling (fs.nr_open) is 2^20.
        result = rlimit::increase_nofile_limit(1 << 20);
    }
    match result {
        Ok(now) => {
            tracing::info!(from = soft, to = now, hard, "raised the open-file limit");
            Some(now)
        }
        Err(e) => {
            tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit");
            Some(soft)
        }
    }
}

/// The connection cap that fits the open-file limit: a quarter of the descriptors stays free for
/// the database, blob and asset files and git's pipes, so a full server refuses with 503 instead
/// of failing `accept` (or a disk write) with `EMFILE`.
pub fn fit_cap(cap: usize, fd_soft: Option<u64>) -> usize {
    let cap = cap.clamp(1, MAX_CAP);
    let Some(soft) = fd_soft.filter(|s| *s != rlimit::INFINITY) else {
        return cap;
    };
    let room = usize::try_from(soft - soft / 4)
        .unwrap_or(usize::MAX)
        .max(1);
    if cap > room {
        tracing::warn!(
            configured = cap,
            used = room,
            fd_limit = soft,
            "the connection cap exceeds what the open-file limit allows; lowering it"
        );
        room
    } else {
        cap
    }
}

/// Serves `routes` on `listener` under `limits` until `shutdown` resolves, then lets in-flight
/// requests finish and returns when every connection has closed.
pub async fn serve(
    listener: TcpListener,
    routes: BoxedFilter<(Response,)>,
    limits: ConnLimits,
    tls: Option<TlsAcceptor>,
    traffic: Traffic,
    shutdown: impl Future<Output = ()>,
) {
    let cap = limits.max_connections.clamp(1, MAX_CAP);
    let slots = Arc::new(Semaphore::new(cap));
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let (stop_tx, stop_rx) = watch::channel(false);
    // HTTP/1 only: every client of a registry, forge or git over plain HTTP speaks it, and h2c's
    // flow control would let one connection hold hundreds of streams (files, git processes)
    // that no socket-level timeout sees.
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    // Our watchdog enforces the header timeout (hyper's would also count idle keep-alive time).
    builder
        .http1()
        .header_read_timeout(None::<Duration>)
        .keep_alive(true);
    let builder = Arc::new(builder);
    let limits = Arc::new(limits);
    let mut backoff = BACKOFF_MIN;
    let mut refused_since_log = 0u64;
    let mut last_refusal_log: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok((stream, peer)) => {
                backoff = BACKOFF_MIN;
                (stream, peer)
            }
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS, ENOMEM: wait for descriptors or memory to free up.
                tracing::warn!(error = %e, pause_ms = backoff.as_millis() as u64, "accept failed; backing off");
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                tokio::spawn(serve_conn(
                    stream,
                    peer,
                    slot,
                    routes.clone(),
                    builder.clone(),
                    limits.clone(),
                    tls.clone(),
                    traffic.clone(),
                    stop_rx.clone(),
                ));
            }
            Err(_) => {
                refused_since_log += 1;
                if last_refusal_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    tracing::warn!(
                        max_connections = cap,
                        refused = refused_since_log,
                        "connection limit reached; answering new connections 503"
                    );
                    last_refusal_log = Some(Instant::now());
                    refused_since_log = 0;
                }
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    tokio::spawn(refuse(stream, tls.clone(), permit));
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection task holds one slot until it ends; a client that keeps a request going
    // past the drain deadline (a very slow download) does not hold the shutdown.
    if tokio::time::timeout(SHUTDOWN_DRAIN, slots.acquire_many(cap as u32))
        .await
        .is_err()
    {
        tracing::warn!(
            seconds = SHUTDOWN_DRAIN.as_secs(),
            "connections still busy after the shutdown drain deadline; closing them"
        );
    }
}

/// Errors `accept` reports about one connection (already gone); the next accept may succeed.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// The answer past the connection cap: the REST error shape, closed after it.
fn refusal() -> Vec<u8> {
    let body = r#"{"error":{"code":"too_many_connections","message":"the server is at its connection limit; retry shortly"}}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answers 503 and closes, reading (and discarding) what the client sends meanwhile so that it
/// reads the answer instead of a connection reset. On the TLS port the answer goes through a
/// handshake (a clear-text 503 would be a TLS error to the client); the whole refusal, handshake
/// included, is bounded by `REFUSAL_LINGER` and by `REFUSALS_AT_ONCE`.
async fn refuse(stream: TcpStream, tls: Option<TlsAcceptor>, _permit: OwnedSemaphorePermit) {
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        match tls {
            None => answer_refusal(stream).await,
            Some(acceptor) => {
                let mut stream = acceptor.accept(stream).await?;
                // Wait for the request's first bytes: an answer that arrives before the client
                // has sent its request is "unexpected" to HTTP clients (hyper's included).
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await?;
                answer_refusal(stream).await
            }
        }
    })
    .await;
}

async fn answer_refusal<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> io::Result<()> {
    stream.write_all(&refusal()).await?;
    stream.shutdown().await?;
    let mut buf = [0u8; 4096];
    let mut seen = 0usize;
    while seen < 64 * 1024 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        seen += n;
    }
    Ok(())
}

/// The answer to a plain HTTP request on the TLS port.
const PLAIN_ON_TLS: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\n\
content-length: 52\r\nconnection: close\r\n\r\nthis port speaks HTTPS: use an https:// URL instead\n";

/// Serves one connection until it ends, a timeout cuts it, or shutdown lets it finish. With
/// `tls`, the handshake comes first, under the header timeout (it holds the slot like any
/// request head, so a client that never completes it is closed like a slowloris).
#[allow(clippy::too_many_arguments)]
async fn serve_conn(
    stream: TcpStream,
    peer: SocketAddr,
    _slot: OwnedSemaphorePermit,
    routes: BoxedFilter<(Response,)>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: Arc<ConnLimits>,
    tls: Option<TlsAcceptor>,
    traffic: Traffic,
    mut stop: watch::Receiver<bool>,
) {
    let watch = Arc::new(Watch::new());
    let svc = Svc {
        routes,
        peer: PeerAddr(peer),
        watch: watch.clone(),
        body_timeout: limits.body_timeout,
        https: tls.is_some(),
    };
    let Some(acceptor) = tls else {
        let io = Watched {
            io: stream,
            watch: watch.clone(),
            traffic: traffic.clone(),
        };
        return run_conn(io, svc, &builder, &limits, stop).await;
    };
    if *stop.borrow() {
        return;
    }
    // The header clock started when the connection was accepted (`Watch::new`).
    let deadline = Instant::now().checked_add(limits.header_timeout);
    let handshake = async {
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(0) | Err(_) => return None,
            // A TLS handshake record starts with 0x16; an HTTP method with a letter.
            Ok(_) if first[0].is_ascii_alphabetic() => {
                let mut stream = stream;
                let _ = tokio::time::timeout(REFUSAL_LINGER, async {
                    stream.write_all(PLAIN_ON_TLS).await?;
                    stream.shutdown().await
                })
                .await;
                tracing::debug!(%peer, "plain HTTP on the TLS port; answered 400");
                return None;
            }
            Ok(_) => {}
        }
        let io = Watched {
            io: stream,
            watch: watch.clone(),
            traffic: traffic.clone(),
        };
        match acceptor.accept(io).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                None
            }
        }
    };
    let timed =
        async {
            match deadline {
            Some(at) => tokio::time::timeout_at(at, handshake).await.unwrap_or_else(|_| {
                tracing::debug!(%peer, "TLS handshake not complete within the header timeout");
                None
            }),
            None => handshake.await,
        }
        };
    let io = tokio::select! {
        io = timed => io,
        _ = stop.changed() => None,
    };
    if let Some(io) = io {
        run_conn(io, svc, &builder, &limits, stop).await;
    }
}

/// Serves HTTP on an established (plain or TLS) connection under the watchdog.
async fn run_conn<I>(
    io: I,
    svc: Svc,
    builder: &auto::Builder<TokioExecutor>,
    limits: &ConnLimits,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let watch = svc.watch.clone();
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut draining = *stop.borrow();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        let next = watch.deadline(limits);
        // Never asleep longer than `RECHECK`: the hot path only records times (a notify per
        // blocked write or per request cost 5-8 % of pull and manifest throughput), so a
        // deadline that moved earlier (a request ended, a write stalled) is seen within it.
        let recheck = Instant::now() + RECHECK;
        let timer = tokio::time::sleep_until(next.map_or(recheck, |(at, _)| at.min(recheck)));
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = watch.wake.notified() => {}
            _ = timer => {
                if let Some((at, why)) = watch.deadline(limits) {
                    if at <= Instant::now() {
                        tracing::debug!(reason = why.as_str(), "closing a connection");
                        return;
                    }
                }
            }
            _ = stop.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Why the watchdog closes a connection.
#[derive(Debug, Clone, Copy)]
enum Why {
    Header,
    Idle,
    WriteStalled,
    AfterCut,
}

impl Why {
    fn as_str(self) -> &'static str {
        match self {
            Why::Header => "request headers not complete within the header timeout",
            Why::Idle => "idle past the idle timeout",
            Why::WriteStalled => "the client stopped reading the response",
            Why::AfterCut => "the response to a cut request was not delivered in time",
        }
    }
}

/// What one connection is doing; shared by its IO, its request and response bodies and its
/// watchdog, which derives the next deadline from it.
struct Watch {
    state: Mutex<State>,
    /// Wakes the watchdog when a deadline may have moved earlier.
    wake: Notify,
}

struct State {
    /// Requests whose response body has not been fully handed to the socket.
    in_flight: usize,
    /// When the connection last became idle (or was opened).
    idle_since: Instant,
    /// When the next request's head started to arrive (the connection's start, at first).
    head_started: Option<Instant>,
    /// Since when a write has been waiting for the client to read.
    write_blocked_since: Option<Instant>,
    /// When a request body was cut for lack of progress.
    cut_at: Option<Instant>,
}

impl Watch {
    fn new() -> Watch {
        let now = Instant::now();
        Watch {
            state: Mutex::new(State {
                in_flight: 0,
                idle_since: now,
                head_started: Some(now),
                write_blocked_since: None,
                cut_at: None,
            }),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // The hot-path notes below only record times; the watchdog looks at them every `RECHECK`.
    fn on_read(&self) {
        let mut s = self.lock();
        if s.in_flight == 0 && s.head_started.is_none() {
            s.head_started = Some(Instant::now());
        }
    }

    fn on_write(&self, blocked: bool) {
        let mut s = self.lock();
        match (blocked, s.write_blocked_since) {
            (true, None) => s.write_blocked_since = Some(Instant::now()),
            (false, Some(_)) => s.write_blocked_since = None,
            _ => {}
        }
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        let mut s = self.lock();
        s.in_flight += 1;
        s.head_started = None;
        InFlight(self.clone())
    }

    fn request_finished(&self) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
            s.head_started = None;
        }
        // The watchdog arms the idle timeout from `idle_since` at its next look.
    }

    fn cut(&self) {
        self.lock().cut_at.get_or_insert_with(Instant::now);
        self.wake.notify_one();
    }

    fn was_cut(&self) -> bool {
        self.lock().cut_at.is_some()
    }

    /// The earliest moment the connection must be closed at, and why.
    fn deadline(&self, l: &ConnLimits) -> Option<(Instant, Why)> {
        let s = self.lock();
        let mut best: Option<(Instant, Why)> = None;
        let mut consider = |from: Instant, d: Duration, why: Why| {
            // An absurdly large setting overflows the clock: no deadline.
            if let Some(at) = from.checked_add(d) {
                if best.is_none_or(|(b, _)| at < b) {
                    best = Some((at, why));
                }
            }
        };
        if s.in_flight == 0 {
            match s.head_started {
                Some(t) => consider(t, l.header_timeout, Why::Header),
                None => consider(s.idle_since, l.idle_timeout, Why::Idle),
            }
        }
        if let Some(t) = s.write_blocked_since {
            consider(t, l.body_timeout, Why::WriteStalled);
        }
        if let Some(t) = s.cut_at {
            // A backstop only: hyper closes after the error response, and a client that does
            // not read it is caught by the write stall above.
            consider(t, l.body_timeout.max(AFTER_CUT_MIN), Why::AfterCut);
        }
        best
    }
}

/// Marks one request in flight until dropped (with its response body, or with its handler).
struct InFlight(Arc<Watch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// The TCP stream, reporting reads and blocked writes to the connection's [`Watch`].
struct Watched {
    io: TcpStream,
    watch: Arc<Watch>,
    traffic: Traffic,
}

impl Watched {
    fn note_write(&self, r: &Poll<io::Result<usize>>) {
        match r {
            Poll::Pending => self.watch.on_write(true),
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.watch.on_write(false);
                self.traffic.sent.inc_by(*n as u64);
            }
            _ => {}
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.watch.on_read();
            this.traffic
                .received
                .inc_by((buf.filled().len() - before) as u64);
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.note_write(&r);
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.note_write(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A request body that fails when the client sends nothing for `timeout` while the handler
/// waits for it (time the handler spends elsewhere, e.g. on a slow disk, does not count).
struct ProgressBody {
    inner: Incoming,
    timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
    failed: bool,
    watch: Arc<Watch>,
}

impl Body for ProgressBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(Some(Err(BodyError::Stalled(this.timeout.as_secs()))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                this.armed = false;
                Poll::Ready(r.map(|f| f.map_err(BodyError::from)))
            }
            Poll::Pending => {
                if !this.armed {
                    let Some(at) = Instant::now().checked_add(this.timeout) else {
                        return Poll::Pending;
                    };
                    match &mut this.timer {
                        Some(t) => t.as_mut().reset(at),
                        None => this.timer = Some(Box::pin(tokio::time::sleep_until(at))),
                    }
                    this.armed = true;
                }
                if let Some(t) = &mut this.timer {
                    if t.as_mut().poll(cx).is_ready() {
                        this.failed = true;
                        this.watch.cut();
                        tracing::info!(
                            timeout_s = this.timeout.as_secs(),
                            "request body stalled; cutting the request"
                        );
                        return Poll::Ready(Some(Err(BodyError::Stalled(this.timeout.as_secs()))));
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.failed && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The body type of warp's responses.
trait HasBody {
    type B;
}
impl<B> HasBody for warp::http::Response<B> {
    type B = B;
}
type WarpBody = <Response as HasBody>::B;

/// A response body that keeps its request in flight until it is done or dropped, so a long
/// download is never taken for an idle connection.
struct TrackedBody {
    inner: WarpBody,
    _in_flight: InFlight,
}

impl Body for TrackedBody {
    type Data = <WarpBody as Body>::Data;
    type Error = <WarpBody as Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The warp filter tree as a hyper service, with the request and response bodies watched.
struct Svc {
    routes: BoxedFilter<(Response,)>,
    peer: PeerAddr,
    watch: Arc<Watch>,
    body_timeout: Duration,
    /// The connection is TLS: requests carry [`Https`].
    https: bool,
}

type SvcFuture =
    Pin<Box<dyn Future<Output = Result<warp::http::Response<TrackedBody>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Svc {
    type Response = warp::http::Response<TrackedBody>;
    type Error = Infallible;
    type Future = SvcFuture;

    fn call(&self, req: Request<Incoming>) -> SvcFuture {
        let in_flight = self.watch.request_started();
        let watch = self.watch.clone();
        let timeout = self.body_timeout;
        let mut req = req.map(|inner| ProgressBody {
            inner,
            timeout,
            timer: None,
            armed: false,
            failed: false,
            watch: watch.clone(),
        });
        req.extensions_mut().insert(self.peer);
        if self.https {
            req.extensions_mut().insert(Https);
        }
        let fut = warp::service(self.routes.clone()).call(req);
        Box::pin(async move {
            let resp = match fut.await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            let mut resp = resp.map(|inner| TrackedBody {
                inner,
                _in_flight: in_flight,
            });
            if watch.was_cut() {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::fit_cap;

    #[test]
    fn a_cap_larger_than_the_open_file_limit_allows_is_lowered() {
        // 1024 descriptors: a quarter stays for files and pipes, so 768 connections at most.
        assert_eq!(fit_cap(4096, Some(1024)), 768);
        assert_eq!(fit_cap(8, Some(20_000)), 8);
        assert_eq!(fit_cap(4096, Some(rlimit::INFINITY)), 4096);
        assert_eq!(fit_cap(4096, None), 4096);
        assert_eq!(fit_cap(0, Some(1)), 1);
    }
}

//! `pfai bench`: a load generator for any OCI registry (pfai or another), used to measure blob
//! throughput and manifest latency. Data is generated from a seeded PRNG chunk by chunk, so a
//! 1 GiB blob never sits in memory; monolithic pushes hash it in a first pass (untimed) because
//! the digest goes in the URL.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Subcommand;
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde::Serialize;

use super::client::{CliError, CliResult};
use crate::ids::{Algorithm, Digest, Hasher};

mod assets;
mod facts;
mod mixed;
mod tags;

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Push (monolithic, or chunked with --chunk) then pull random blobs, verifying digests.
    ///
    /// Example: pfai bench blobs --url http://127.0.0.1:3000 --token "$T" --size 1GiB --count 1
    Blobs(BlobsArgs),
    /// GET (or HEAD) one manifest by tag as fast as possible.
    ///
    /// Example: pfai bench manifests --url http://127.0.0.1:3000 --token "$T" --duration 20s --concurrency 64
    Manifests(ManifestsArgs),
    /// Pushes, pulls and manifest GETs at once, started at a target rate (open loop: a request
    /// that cannot start on time counts its wait in its latency).
    ///
    /// Example: pfai bench mixed --url http://127.0.0.1:3000 --token "$T" --rate 500 --mix 1:4:15
    Mixed(mixed::MixedArgs),
    /// Uploads then downloads release assets (a draft release made for the run, deleted after).
    ///
    /// Example: pfai bench assets --url http://127.0.0.1:3000 --token "$T" --repo acme/app --size 256MiB
    Assets(assets::AssetsArgs),
    /// Makes many tags, then times tags/list pages at the start, middle and end of the list.
    ///
    /// Example: pfai bench tags --url http://127.0.0.1:3000 --token "$T" --count 100000
    Tags(tags::TagsArgs),
}

/// The arguments of `pfai bench blobs`.
#[derive(Debug, clap::Args)]
pub struct BlobsArgs {
    /// Registry to load.
    #[command(flatten)]
    pub target: Target,
    /// Size of each blob (e.g. 64MiB, 1GiB).
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub size: u64,
    /// Blobs to push and pull.
    #[arg(long, default_value_t = 4)]
    pub count: usize,
    /// Parallel transfers.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Push in PATCH chunks of this size instead of one monolithic POST.
    #[arg(long, value_parser = parse_size)]
    pub chunk: Option<u64>,
    /// Pulls per pushed blob (0: push only).
    #[arg(long, default_value_t = 1)]
    pub pulls: usize,
    /// Skip hashing pulled data (measures the server, not the client's SHA-256).
    #[arg(long)]
    pub no_verify: bool,
    /// Do not push: pull blobs an earlier run with the same --seed/--size/--count pushed.
    #[arg(long)]
    pub pull_only: bool,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Digest algorithm of the pushed blobs (sha256, sha512 or blake3): the server verifies
    /// uploads with it, and pulls are verified with it.
    #[arg(long, default_value = "sha256", value_parser = parse_algorithm)]
    pub digest: Algorithm,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_algorithm(s: &str) -> Result<Algorithm, String> {
    Algorithm::parse(s).map_err(|e| e.to_string())
}

/// The arguments of `pfai bench manifests`.
#[derive(Debug, clap::Args)]
pub struct ManifestsArgs {
    /// Registry to load.
    #[command(flatten)]
    pub target: Target,
    /// How long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Parallel connections.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Use HEAD instead of GET.
    #[arg(long)]
    pub head: bool,
    /// Do not check that each manifest's bytes hash to the digest that was pushed.
    #[arg(long)]
    pub no_verify: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}
/// Which registry and repository to load.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// Registry base URL.
    #[arg(long, env = "PFAI_URL", default_value = super::client::DEFAULT_URL)]
    pub url: String,
    /// Username for Basic auth (any value works with pfai tokens).
    #[arg(long, default_value = "bench")]
    pub user: String,
    /// Token or password (omit for registries without auth).
    #[arg(long, env = "PFAI_TOKEN")]
    pub token: Option<String>,
    /// Repository name in the registry.
    #[arg(long, default_value = "bench/blobs")]
    pub repo: String,
}

/// Parses `64MiB`, `1GiB`, `512KiB`, `1000` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
        ("B", 1),
    ]
    .iter()
    .find_map(|(suf, m)| s.strip_suffix(suf).map(|n| (n, *m)))
    .unwrap_or((s, 1));
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a size: {s:?} (use e.g. 64MiB)"))?;
    if !(0.0..=1e15).contains(&n) {
        return Err(format!("size out of range: {s:?}"));
    }
    Ok((n * mult as f64) as u64)
}

/// Parses `30s`, `2m`, `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad = || format!("not a duration: {s:?} (use e.g. 30s)");
    if let Some(n) = s.strip_suffix("ms") {
        return n.parse().map(Duration::from_millis).map_err(|_| bad());
    }
    if let Some(n) = s.strip_suffix('s') {
        return n
            .parse::<f64>()
            .map(Duration::from_secs_f64)
            .map_err(|_| bad());
    }
    if let Some(n) = s.strip_suffix('m') {
        return n
            .parse::<u64>()
            .map(|m| Duration::from_secs(m * 60))
            .map_err(|_| bad());
    }
    Err(bad())
}

/// Deterministic data: SplitMix64 blocks, so every run and both registries see the same bytes.
struct Gen {
    state: u64,
}

impl Gen {
    fn new(seed: u64) -> Self {
        Gen { state: seed }
    }
    fn chunk(&mut self, len: usize) -> Bytes {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            v.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        v.truncate(len);
        Bytes::from(v)
    }
}

const GEN_CHUNK: u64 = 1 << 20;

fn blob_stream(
    seed: u64,
    size: u64,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync + 'static {
    gen_stream(Arc::new(Mutex::new(Gen::new(seed))), size)
}

/// The next `len` bytes of `g`, generated as the connection takes them: a monolithic push and
/// each chunk of a chunked one cost the client the same work at the same moments, so the two
/// figures compare the server's paths, not two load generators. (Generating the next chunk on
/// another thread while one is sent took a core from the server's hashing thread on a 2-core
/// machine: its SHA-256 time grew by a fifth.)
fn gen_stream(
    g: Arc<Mutex<Gen>>,
    len: u64,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync + 'static {
    let mut left = len;
    futures_util::stream::iter(std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = left.min(GEN_CHUNK);
        left -= n;
        Some(
            g.lock()
                .map(|mut g| g.chunk(n as usize))
                .map_err(|_| std::io::Error::other("the data generator failed")),
        )
    }))
}

fn digest_of(alg: Algorithm, seed: u64, size: u64) -> Digest {
    let mut g = Gen::new(seed);
    let mut h = Hasher::new(alg);
    let mut left = size;
    while left > 0 {
        let n = left.min(GEN_CHUNK);
        h.update(&g.chunk(n as usize));
        left -= n;
    }
    h.digest()
}

struct Reg {
    http: reqwest::Client,
    t: Target,
}

impl Reg {
    fn new(t: Target, conns: usize) -> Self {
        let http = super::client::http_builder()
            .pool_max_idle_per_host(conns.max(1))
            .build()
            .unwrap_or_default();
        Reg {
            http,
            t: Target {
                url: t.url.trim_end_matches('/').to_owned(),
                ..t
            },
        }
    }
    fn req(&self, m: Method, path_or_url: &str) -> reqwest::RequestBuilder {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.t.url)
        };
        let r = self.http.request(m, url);
        match &self.t.token {
            Some(tok) => r.basic_auth(&self.t.user, Some(tok)),
            None => r,
        }
    }
    async fn expect(
        &self,
        r: reqwest::RequestBuilder,
        want: StatusCode,
        what: &str,
    ) -> CliResult<reqwest::Response> {
        let resp = r
            .send()
            .await
            .map_err(|e| CliError::Msg(format!("{what}: {e}")))?;
        if resp.status() != want {
            let st = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(CliError::Msg(format!(
                "{what}: expected {want}, got {st}: {}",
                body.chars().take(300).collect::<String>()
            )));
        }
        Ok(resp)
    }
    /// Starts an upload session and returns its Location.
    async fn start_upload(&self) -> CliResult<String> {
        let path = format!("/v2/{}/blobs/uploads/", self.t.repo);
        let start = self
            .expect(
                self.req(Method::POST, &path),
                StatusCode::ACCEPTED,
                "start upload",
            )
            .await?;
        location(&start)
    }

    /// Monolithic as docker and skopeo do it: POST for a session, then one PUT with the blob.
    async fn put_blob(&self, body: reqwest::Body, size: u64, digest: &Digest) -> CliResult<()> {
        let loc = self.start_upload().await?;
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = self
            .req(Method::PUT, &format!("{loc}{sep}digest={digest}"))
            .header("content-length", size)
            .header("content-type", "application/octet-stream")
            .body(body);
        self.expect(r, StatusCode::CREATED, "monolithic push")
            .await
            .map(|_| ())
    }

    async fn push_monolithic(&self, seed: u64, size: u64, digest: &Digest) -> CliResult<()> {
        self.put_blob(
            reqwest::Body::wrap_stream(blob_stream(seed, size)),
            size,
            digest,
        )
        .await
    }

    /// Chunked as resumable clients do it: POST for a session, PATCH chunks with
    /// Content-Range, then PUT with the digest. Like monolithic pushes (and like docker and
    /// skopeo, which know a layer's digest before sending it), the digest was computed before
    /// the clock started, so the client's hashing does not compete with the server's.
    async fn push_chunked(
        &self,
        seed: u64,
        size: u64,
        chunk: u64,
        digest: &Digest,
    ) -> CliResult<()> {
        let start = self
            .expect(
                self.req(
                    Method::POST,
                    &format!(
                        "/v2/{}/blobs/uploads/?digest-algorithm={}",
                        self.t.repo,
                        digest.algorithm().name()
                    ),
                ),
                StatusCode::ACCEPTED,
                "start upload",
            )
            .await?;
        let mut loc = location(&start)?;
        let gen = Arc::new(Mutex::new(Gen::new(seed)));
        let mut offset = 0u64;
        while offset < size {
            let n = chunk.min(size - offset);
            let after = offset + n;
            let body = reqwest::Body::wrap_stream(gen_stream(gen.clone(), n));
            let r = self
                .req(Method::PATCH, &loc)
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("{offset}-{}", after - 1))
                .header("content-length", n)
                .body(body);
            let resp = self.expect(r, StatusCode::ACCEPTED, "PATCH chunk").await?;
            loc = location(&resp)?;
            offset = after;
        }
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = self
            .req(Method::PUT, &format!("{loc}{sep}digest={digest}"))
            .header("content-length", 0);
        self.expect(r, StatusCode::CREATED, "finish upload").await?;
        Ok(())
    }
    async fn pull(&self, digest: &Digest, verify: bool) -> CliResult<u64> {
        let resp = self
            .expect(
                self.req(Method::GET, &format!("/v2/{}/blobs/{digest}", self.t.repo)),
                StatusCode::OK,
                "pull",
            )
            .await?;
        let mut h = verify.then(|| Hasher::new(digest.algorithm()));
        let mut n = 0u64;
        let mut s = resp.bytes_stream();
        while let Some(c) = s.next().await {
            let c = c.map_err(|e| CliError::Msg(format!("pull: {e}")))?;
            n += c.len() as u64;
            if let Some(h) = h.as_mut() {
                h.update(&c);
            }
        }
        if let Some(h) = h {
            let got = h.digest();
            if &got != digest {
                return Err(CliError::Msg(format!(
                    "pull of {digest} returned content hashing to {got}"
                )));
            }
        }
        Ok(n)
    }
}

fn location(r: &reqwest::Response) -> CliResult<String> {
    r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| CliError::Msg("the registry sent no Location".into()))
}

/// Latency statistics in milliseconds.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Worst.
    pub max_ms: f64,
}

fn latency(mut micros: Vec<u64>) -> Latency {
    if micros.is_empty() {
        return Latency::default();
    }
    micros.sort_unstable();
    let at = |q: f64| micros[((micros.len() as f64 - 1.0) * q).round() as usize] as f64 / 1000.0;
    Latency {
        p50_ms: at(0.50),
        p90_ms: at(0.90),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    }
}

/// One phase of the blob benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// `push` or `pull`.
    pub phase: String,
    /// Bytes moved.
    pub bytes: u64,
    /// Wall time.
    pub seconds: f64,
    /// Throughput.
    pub mib_per_s: f64,
    /// Requests (blobs) per second.
    pub requests_per_s: f64,
    /// Per-blob latency.
    pub latency: Latency,
    /// Failed transfers.
    pub errors: u64,
    /// Whether every byte received was checked against its digest (off with `--no-verify`).
    pub verified: bool,
}

impl Phase {
    /// The figures of a phase from what it moved, how long it took and each request's latency
    /// (microseconds).
    fn measured(name: &str, bytes: u64, seconds: f64, lat: Vec<u64>, errors: u64) -> Phase {
        Phase {
            phase: name.into(),
            bytes,
            seconds,
            mib_per_s: bytes as f64 / (1 << 20) as f64 / seconds,
            requests_per_s: lat.len() as f64 / seconds,
            latency: latency(lat),
            errors,
            verified: false,
        }
    }

    /// Marks whether the phase checked what it received.
    fn verified(self, verified: bool) -> Phase {
        Phase { verified, ..self }
    }

    /// One line a reader can quote: the figure, what it was measured over, and whether the
    /// data was checked.
    fn summary(&self) -> String {
        let n = (self.requests_per_s * self.seconds).round();
        // Small documents (manifests, tags, tag pages) are counted in requests; blobs and
        // assets in bytes.
        let figure = if self.phase.contains("manifest") || self.phase.starts_with("tag") {
            format!("{:.0} req/s", self.requests_per_s)
        } else {
            format!("{:.1} MiB/s", self.mib_per_s)
        };
        format!(
            "{}: {figure} ({n} requests, {:.1} MiB in {:.2} s; p50 {:.2} ms, p99 {:.2} ms; {} errors; {})",
            self.phase,
            self.bytes as f64 / (1 << 20) as f64,
            self.seconds,
            self.latency.p50_ms,
            self.latency.p99_ms,
            self.errors,
            if self.verified { "verified" } else { "not verified" }
        )
    }
}

/// Prints a run: with `--json` one object `{facts, phases, …extra}`, else the table, then one
/// summary line per figure. Fails when any request failed.
fn report(json: bool, url: &str, phases: &[Phase], extra: serde_json::Value) -> CliResult<()> {
    if json {
        let mut v = serde_json::json!({
            "facts": facts::collect(url),
            "phases": phases,
        });
        if let (Some(obj), serde_json::Value::Object(more)) = (v.as_object_mut(), extra) {
            obj.extend(more);
        }
        super::print_json(&v);
    } else {
        print_phases(phases);
        for p in phases {
            println!("{}", p.summary());
        }
    }
    if phases.iter().any(|p| p.errors > 0) {
        return Err(CliError::Msg("some requests failed (see above)".into()));
    }
    Ok(())
}

async fn run_phase<F, Fut>(name: &str, jobs: Vec<usize>, concurrency: usize, f: F) -> Phase
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = CliResult<u64>> + Send,
{
    let t = Instant::now();
    let results: Vec<(CliResult<u64>, u64)> = futures_util::stream::iter(jobs)
        .map(|j| {
            let f = f.clone();
            async move {
                let s = Instant::now();
                let r = f(j).await;
                (r, s.elapsed().as_micros() as u64)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let seconds = t.elapsed().as_secs_f64();
    let mut bytes = 0;
    let mut errors = 0;
    let mut lat = Vec::new();
    for (r, us) in results {
        match r {
            Ok(b) => {
                bytes += b;
                lat.push(us);
            }
            Err(e) => {
                errors += 1;
                eprintln!("{name}: {e}");
            }
        }
    }
    Phase::measured(name, bytes, seconds, lat, errors)
}

fn print_phases(phases: &[Phase]) {
    let rows: Vec<Vec<String>> = phases
        .iter()
        .map(|p| {
            vec![
                p.phase.clone(),
                format!("{:.1}", p.mib_per_s),
                format!("{:.1}", p.requests_per_s),
                format!("{:.2}", p.latency.p50_ms),
                format!("{:.2}", p.latency.p90_ms),
                format!("{:.2}", p.latency.p99_ms),
                format!("{:.2}", p.latency.max_ms),
                p.errors.to_string(),
            ]
        })
        .collect();
    super::print_table(
        &[
            "PHASE", "MiB/s", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors",
        ],
        &rows,
    );
}

/// Runs a benchmark.
pub async fn run(cmd: BenchCmd) -> CliResult<()> {
    match cmd {
        BenchCmd::Blobs(a) => blobs(a).await,
        BenchCmd::Manifests(a) => manifests(a).await,
        BenchCmd::Mixed(a) => mixed::run(a).await,
        BenchCmd::Assets(a) => assets::run(a).await,
        BenchCmd::Tags(a) => tags::run(a).await,
    }
}

/// `pfai bench blobs`: push phase (unless `--pull-only`), then pull phase, then the report;
/// fails when any transfer failed.
async fn blobs(a: BlobsArgs) -> CliResult<()> {
    let reg = Arc::new(Reg::new(a.target.clone(), a.concurrency));
    let seeds: Vec<u64> = (0..a.count as u64)
        .map(|i| a.seed.wrapping_mul(1_000_003).wrapping_add(i))
        .collect();
    // Untimed: the digests of the monolithic blobs.
    let digests: Vec<Digest> = {
        let (s2, size, alg) = (seeds.clone(), a.size, a.digest);
        tokio::task::spawn_blocking(move || s2.iter().map(|s| digest_of(alg, *s, size)).collect())
            .await
            .map_err(|e| CliError::Msg(e.to_string()))?
    };
    let mut phases = Vec::new();
    let pushed = if a.pull_only {
        digests
    } else {
        let (phase, pushed) = push_phase(&a, &reg, seeds, digests).await;
        phases.push(phase);
        pushed
    };
    let listed: Vec<String> = pushed.iter().map(Digest::to_string).collect();
    if a.pulls > 0 && !pushed.is_empty() {
        phases.push(pull_phase(&a, &reg, pushed).await.verified(!a.no_verify));
    }
    report(
        a.json,
        &a.target.url,
        &phases,
        serde_json::json!({ "digests": listed }),
    )
}

/// Pushes `count` blobs (monolithic, or chunked with `--chunk`); returns the phase and the
/// digests of the blobs that made it, in seed order.
async fn push_phase(
    a: &BlobsArgs,
    reg: &Arc<Reg>,
    seeds: Vec<u64>,
    digests: Vec<Digest>,
) -> (Phase, Vec<Digest>) {
    let (size, chunk) = (a.size, a.chunk);
    let pushed = Arc::new(Mutex::new(vec![None::<Digest>; a.count]));
    let (r2, p2, s2, d2) = (
        reg.clone(),
        pushed.clone(),
        Arc::new(seeds),
        Arc::new(digests),
    );
    let phase = run_phase(
        if chunk.is_some() {
            "push (chunked)"
        } else {
            "push"
        },
        (0..a.count).collect(),
        a.concurrency,
        move |i| {
            let (reg, pushed, seeds, digests) = (r2.clone(), p2.clone(), s2.clone(), d2.clone());
            async move {
                match chunk {
                    Some(c) => {
                        reg.push_chunked(seeds[i], size, c.max(1), &digests[i])
                            .await?
                    }
                    None => reg.push_monolithic(seeds[i], size, &digests[i]).await?,
                }
                if let Ok(mut p) = pushed.lock() {
                    p[i] = Some(digests[i].clone());
                }
                Ok(size)
            }
        },
    )
    .await;
    let ok = pushed
        .lock()
        .map(|p| p.iter().flatten().cloned().collect())
        .unwrap_or_default();
    // The registry checked every pushed blob against its digest before answering 201.
    (phase.verified(true), ok)
}

/// Pulls every pushed blob `--pulls` times, in a seeded random order.
async fn pull_phase(a: &BlobsArgs, reg: &Arc<Reg>, pushed: Vec<Digest>) -> Phase {
    let mut order: Vec<usize> = (0..pushed.len() * a.pulls)
        .map(|i| i % pushed.len())
        .collect();
    let mut x = a.seed | 1;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let verify = !a.no_verify;
    let (r3, ok3) = (reg.clone(), Arc::new(pushed));
    run_phase("pull", order, a.concurrency, move |i| {
        let (reg, ok) = (r3.clone(), ok3.clone());
        async move { reg.pull(&ok[i], verify).await }
    })
    .await
}

/// `pfai bench manifests`: pushes a small image tagged `bench`, then GETs (or HEADs) it from
/// `--concurrency` loops until `--duration` is up.
async fn manifests(a: ManifestsArgs) -> CliResult<()> {
    let reg = Arc::new(Reg::new(a.target.clone(), a.concurrency));
    let digest = push_bench_image(&reg).await?;
    let check = (!a.no_verify && !a.head).then_some(digest);
    let phase = hammer_manifest(&reg, a.duration, a.concurrency, a.head, check.clone()).await;
    let phase = phase.verified(check.is_some());
    report(a.json, &a.target.url, &[phase], serde_json::Value::Null)
}

/// Sets up a small image (config and one layer) tagged `bench`; returns its manifest's digest.
async fn push_bench_image(reg: &Reg) -> CliResult<Digest> {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = Gen::new(7).chunk(4096);
    let mut descs = Vec::new();
    for (data, mt) in [
        (
            Bytes::from_static(config),
            "application/vnd.oci.image.config.v1+json",
        ),
        (layer, "application/vnd.oci.image.layer.v1.tar+gzip"),
    ] {
        let d = Digest::sha256_of(&data);
        reg.put_blob(data.clone().into(), data.len() as u64, &d)
            .await?;
        descs.push(
            serde_json::json!({"mediaType": mt, "digest": d.to_string(), "size": data.len()}),
        );
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descs[0], "layers": [descs[1]]
    }))
    .map_err(|e| CliError::Msg(e.to_string()))?;
    let digest = Digest::sha256_of(&manifest);
    let r = reg
        .req(Method::PUT, &format!("/v2/{}/manifests/bench", reg.t.repo))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest);
    reg.expect(r, StatusCode::CREATED, "push manifest").await?;
    Ok(digest)
}

/// One GET (or HEAD) of the `bench` manifest: its size, checked against `check` when given.
async fn get_manifest(reg: &Reg, head: bool, check: Option<&Digest>) -> CliResult<u64> {
    let m = if head { Method::HEAD } else { Method::GET };
    let path = format!("/v2/{}/manifests/bench", reg.t.repo);
    let r = reg
        .req(m, &path)
        .header("accept", "application/vnd.oci.image.manifest.v1+json");
    let body = reg
        .expect(r, StatusCode::OK, "manifest")
        .await?
        .bytes()
        .await
        .map_err(|e| CliError::Msg(format!("manifest: {e}")))?;
    if let Some(want) = check {
        let got = Digest::sha256_of(&body);
        if got != *want {
            return Err(CliError::Msg(format!(
                "manifest: got bytes hashing to {got}, pushed {want}"
            )));
        }
    }
    Ok(body.len() as u64)
}

/// Runs `op` from `concurrency` loops, each starting its next request when the last one
/// ends, until `duration` is up (closed loop: the server sets the pace). The first error of
/// each loop is printed.
async fn closed_loop<F, Fut>(name: &str, duration: Duration, concurrency: usize, op: F) -> Phase
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = CliResult<u64>> + Send,
{
    let deadline = Instant::now() + duration;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut bytes) = (Vec::new(), 0u64, 0u64);
            while Instant::now() < deadline {
                let t = Instant::now();
                match op().await {
                    Ok(n) => {
                        bytes += n;
                        lat.push(t.elapsed().as_micros() as u64);
                    }
                    Err(e) => {
                        if errors == 0 {
                            eprintln!("{e}");
                        }
                        errors += 1;
                    }
                }
            }
            (lat, errors, bytes)
        }));
    }
    let (mut lat, mut errors, mut bytes) = (Vec::new(), 0, 0);
    for t in tasks {
        if let Ok((l, e, b)) = t.await {
            lat.extend(l);
            errors += e;
            bytes += b;
        }
    }
    Phase::measured(name, bytes, start.elapsed().as_secs_f64(), lat, errors)
}

/// Fetches the `bench` manifest from `concurrency` loops until `duration` is up.
async fn hammer_manifest(
    reg: &Arc<Reg>,
    duration: Duration,
    concurrency: usize,
    head: bool,
    check: Option<Digest>,
) -> Phase {
    let name = if head {
        "manifest HEAD"
    } else {
        "manifest GET"
    };
    let reg = reg.clone();
    closed_loop(name, duration, concurrency, move || {
        let (reg, check) = (reg.clone(), check.clone());
        async move { get_manifest(&reg, head, check.as_ref()).await }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("x").is_err());
        assert_eq!(parse_duration("20s").unwrap(), Duration::from_secs(20));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn generated_data_is_deterministic() {
        let a: Vec<u8> = Gen::new(1).chunk(100).to_vec();
        let b: Vec<u8> = Gen::new(1).chunk(100).to_vec();
        assert_eq!(a, b);
        assert_ne!(a, Gen::new(2).chunk(100).to_vec());
        assert_eq!(digest_of(Algorithm::Sha256, 3, 3 << 20), {
            let mut all = Vec::new();
            let mut g = Gen::new(3);
            for _ in 0..3 {
                all.extend_from_slice(&g.chunk(1 << 20));
            }
            Digest::sha256_of(&all)
        });
    }
}

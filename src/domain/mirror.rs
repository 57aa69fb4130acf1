//! Mirroring from upstream registries: a repository admin defines a mirror (upstream image,
//! target image, tag glob, optional period and credentials) and the server copies the
//! matching tags into its own registry — every platform of an index and the referrers of
//! each copied manifest. Blobs the target image already links are not downloaded; every
//! downloaded blob goes through the normal upload path (digest verified before it is linked);
//! manifests are stored byte-for-byte by digest, children before parents, and the tag is
//! pointed last. So a run that stops (killed, upstream gone) leaves only complete, verified
//! items behind and the next run finishes the job without copying them again.
//!
//! A tag that moved upstream but is protected here by a registry rule is reported, not moved.
//! Upstream authentication: anonymous, Basic, and the Bearer token exchange of
//! `WWW-Authenticate: Bearer realm=…,service=…,scope=…` (Docker Hub, GHCR, distribution).

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use reqwest::header::{ACCEPT, CONTENT_TYPE, LINK, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde::Deserialize;

use super::registry::{self, manifest, upload};
use super::{protection, Core, DomainError, DomainResult};
pub use crate::api::{CreateMirror, MirrorReport, MirrorView};
use crate::auth::Principal;
use crate::ids::{Digest, OciName, OciTag, Reference, RepoPath, Role};
use crate::storage::mirrors::{self as store, MirrorRow};
use crate::storage::{accounts, blob_refs, manifests};
use crate::util::{now_unix, rfc3339};

/// Shortest period of a periodic mirror.
pub const MIN_EVERY_SECS: u64 = 60;
/// Most mirrors per repository.
pub const MAX_PER_REPO: usize = 50;
/// Most upstream tags one run looks at (pages of the tag list are followed up to this).
const MAX_TAGS: usize = 10_000;
/// Largest manifest accepted from upstream (as for pushes).
const MAX_MANIFEST: usize = 4 << 20;
/// Every manifest type pfai stores, for the upstream `Accept` header.
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// The mirrors running now (by id), so one mirror never runs twice at once.
#[derive(Default)]
pub struct Runs(Mutex<HashSet<u64>>);

/// Held for one run; frees the mirror when dropped (also when the run's future is dropped).
struct RunGuard<'a> {
    runs: &'a Runs,
    id: u64,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.runs.0.lock() {
            s.remove(&self.id);
        }
    }
}

impl Runs {
    fn claim(&self, id: u64) -> Option<RunGuard<'_>> {
        let mut s = self.0.lock().ok()?;
        if !s.insert(id) {
            return None;
        }
        Some(RunGuard { runs: self, id })
    }
}

/// Splits `https://host[:port]/name/parts` into the registry base URL and the image name.
fn split_upstream(url: &str) -> DomainResult<(String, String)> {
    let bad = |why: &str| DomainError::Invalid(format!("upstream {url:?}: {why}"));
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("expected http(s)://HOST/NAME"))?;
    if scheme != "https" && scheme != "http" {
        return Err(bad("the scheme must be http or https"));
    }
    let (host, name) = rest
        .split_once('/')
        .ok_or_else(|| bad("no image name after the host"))?;
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    {
        return Err(bad("invalid host"));
    }
    let name = name.trim_end_matches('/');
    // Upstream names follow the OCI name grammar (lowercase components joined by `/`).
    OciName::parse(name).map_err(|e| bad(&e.to_string()))?;
    Ok((format!("{scheme}://{host}"), name.to_owned()))
}

fn view(id: u64, m: &MirrorRow) -> MirrorView {
    MirrorView {
        id,
        upstream: format!("{}/{}", m.registry, m.upstream_name),
        image: m.image.clone(),
        tags: m.tags.clone(),
        every_seconds: m.every_secs,
        username: m.username.clone(),
        has_password: m.password.is_some(),
        created_by: m.created_by.clone(),
        created_at: rfc3339(m.created_at),
        last_run: m
            .last_report
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok()),
    }
}

/// Creates a mirror (repository admins). Nothing is copied until it runs.
pub async fn add(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    spec: CreateMirror,
) -> DomainResult<MirrorView> {
    core.repo_access(who, repo, Role::Admin).await?;
    let (registry, upstream_name) = split_upstream(spec.upstream.trim())?;
    let image = OciName::parse(&spec.image)
        .map_err(|e| DomainError::Invalid(format!("target image: {e}")))?;
    if image.repo() != *repo {
        return Err(DomainError::Invalid(format!(
            "target image {image} is not in repository {repo}"
        )));
    }
    if let Some(p) = &spec.tags {
        protection::compile(p)?;
    }
    if let Some(e) = spec.every_seconds {
        if e < MIN_EVERY_SECS {
            return Err(DomainError::Invalid(format!(
                "the period must be at least {MIN_EVERY_SECS} seconds"
            )));
        }
    }
    if spec.password.is_some() && spec.username.is_none() {
        return Err(DomainError::Invalid("a password needs a username".into()));
    }
    for s in [&spec.username, &spec.password].into_iter().flatten() {
        if s.is_empty() || s.len() > 4096 || s.chars().any(char::is_control) {
            return Err(DomainError::Invalid(
                "credentials must be 1 to 4096 printable characters".into(),
            ));
        }
    }
    let row = MirrorRow {
        repo: repo.key(),
        registry,
        upstream_name,
        image: image.as_str().to_owned(),
        tags: spec.tags,
        every_secs: spec.every_seconds,
        username: spec.username,
        password: spec.password,
        created_by: who.map(|p| p.username.clone()).unwrap_or_default(),
        created_at: now_unix(),
        last_run_at: 0,
        last_report: None,
    };
    let r = row.clone();
    let id = core
        .db
        .write(move |txn| {
            if store::of_repo(txn, &r.repo)?.len() >= MAX_PER_REPO {
                return Err(DomainError::Invalid(format!(
                    "at most {MAX_PER_REPO} mirrors per repository"
                )));
            }
            Ok(store::insert(txn, &r)?)
        })
        .await?;
    Ok(view(id, &row))
}

/// The mirrors of a repository (repository admins: they name upstreams and usernames).
pub async fn list(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
) -> DomainResult<Vec<MirrorView>> {
    core.repo_access(who, repo, Role::Admin).await?;
    let key = repo.key();
    let rows = core.db.read(move |txn| store::of_repo(txn, &key)).await?;
    Ok(rows.iter().map(|(id, m)| view(*id, m)).collect())
}

/// Removes a mirror (repository admins). What it copied stays.
pub async fn remove(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    id: u64,
) -> DomainResult<()> {
    core.repo_access(who, repo, Role::Admin).await?;
    let key = repo.key();
    let removed = core
        .db
        .write(move |txn| {
            match store::get(txn, id)? {
                Some(m) if m.repo == key => {}
                _ => return Ok(false),
            }
            Ok::<_, DomainError>(store::remove(txn, id)?)
        })
        .await?;
    if removed {
        Ok(())
    } else {
        Err(DomainError::NotFound(format!("{repo} has no mirror {id}")))
    }
}

/// Runs a mirror now (repository admins) and returns what changed. An upstream failure midway
/// is in the report's `error`; what was copied before it stays.
pub async fn run(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    id: u64,
) -> DomainResult<MirrorReport> {
    core.repo_access(who, repo, Role::Admin).await?;
    let key = repo.key();
    let row = core.db.read(move |txn| store::get(txn, id)).await?;
    let row = match row {
        Some(m) if m.repo == key => m,
        _ => return Err(DomainError::NotFound(format!("{repo} has no mirror {id}"))),
    };
    let Some(_guard) = core.mirror_runs.claim(id) else {
        return Err(DomainError::Conflict(format!(
            "mirror {id} is already running"
        )));
    };
    Ok(run_claimed(core, who, id, row).await)
}

/// Starts, in the background, every periodic mirror whose period has passed since its last
/// run (and that is not running). Runs act as the mirror's creator, with that user's rights
/// now.
pub async fn spawn_due(core: &std::sync::Arc<Core>) {
    let now = now_unix();
    let rows = match core.db.read(store::all).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "reading mirrors failed");
            return;
        }
    };
    for (id, row) in rows {
        let Some(every) = row.every_secs else {
            continue;
        };
        if row.last_run_at.saturating_add(every as i64) > now {
            continue;
        }
        let core = core.clone();
        tokio::spawn(async move {
            let Some(_guard) = core.mirror_runs.claim(id) else {
                return;
            };
            let name = row.created_by.clone();
            let user = core
                .db
                .read(move |txn| accounts::user(txn, &name))
                .await
                .ok()
                .flatten();
            let who = user.map(|u| Principal {
                username: u.username,
                admin: u.admin,
            });
            let report = run_claimed(&core, who.as_ref(), id, row).await;
            if let Some(e) = &report.error {
                tracing::warn!(mirror = id, error = %e, "periodic mirror run stopped");
            }
        });
    }
}

/// One run of a claimed mirror; records its start and report on the row.
async fn run_claimed(
    core: &Core,
    who: Option<&Principal>,
    id: u64,
    row: MirrorRow,
) -> MirrorReport {
    let started = now_unix();
    let mut report = MirrorReport {
        id,
        started_at: rfc3339(started),
        ..MirrorReport::default()
    };
    if let Err(e) = copy(core, who, &row, &mut report).await {
        report.error = Some(e);
    }
    let json = serde_json::to_string(&report).ok();
    let saved = core
        .db
        .write(move |txn| {
            if let Some(mut m) = store::get(txn, id)? {
                m.last_run_at = started;
                m.last_report = json;
                store::update(txn, id, &m)?;
            }
            Ok::<_, DomainError>(())
        })
        .await;
    if let Err(e) = saved {
        tracing::warn!(mirror = id, error = %e, "recording a mirror run failed");
    }
    report
}

/// How the upstream wants to be authenticated, once it said so.
#[derive(Clone)]
enum Auth {
    None,
    Basic,
    Bearer(String),
}

/// An upstream registry and one image name on it.
struct Upstream {
    http: reqwest::Client,
    base: String,
    name: String,
    creds: Option<(String, String)>,
    auth: tokio::sync::Mutex<Auth>,
}

#[derive(Deserialize)]
struct TokenReply {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct IndexDoc {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
}

/// Parses a `WWW-Authenticate` challenge: the scheme and its `key="value"` parameters
/// (values may hold commas inside quotes, as scopes do).
pub(crate) fn parse_challenge(h: &str) -> (String, Vec<(String, String)>) {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    (scheme.to_ascii_lowercase(), params)
}

/// `rel="next"` of a `Link` header: `</v2/x/tags/list?last=a&n=100>; rel="next"`.
fn next_link(h: &str) -> Option<String> {
    let (target, params) = h.split_once(';')?;
    if !params.contains("next") {
        return None;
    }
    let t = target.trim().strip_prefix('<')?.strip_suffix('>')?;
    Some(t.to_owned())
}

impl Upstream {
    fn new(row: &MirrorRow) -> Result<Upstream, String> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("pfai-mirror/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(30))
            // A stalled upstream fails the run (which the next run resumes) instead of
            // holding the mirror's run slot forever.
            .read_timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Upstream {
            http,
            base: row.registry.clone(),
            name: row.upstream_name.clone(),
            creds: row
                .username
                .clone()
                .map(|u| (u, row.password.clone().unwrap_or_default())),
            auth: tokio::sync::Mutex::new(Auth::None),
        })
    }

    /// `GET` a path (or absolute URL on the same registry), authenticating once on a 401.
    async fn get(&self, path: &str, accept: Option<&str>) -> Result<reqwest::Response, String> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            if !path.starts_with(&format!("{}/", self.base)) {
                return Err(format!("upstream sent a link to another host: {path}"));
            }
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        for attempt in 0..2 {
            let auth = self.auth.lock().await.clone();
            let mut req = self.http.get(&url);
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            req = match (&auth, &self.creds) {
                (Auth::Basic, Some((u, p))) => req.basic_auth(u, Some(p)),
                (Auth::Bearer(t), _) => req.bearer_auth(t),
                _ => req,
            };
            let resp = req
                .send()
                .await
                .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
            if resp.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                let challenge = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let next = self.authenticate(&challenge).await?;
                *self.auth.lock().await = next;
                continue;
            }
            return Ok(resp);
        }
        Err(format!(
            "GET {url}: the upstream refused the credentials (401)"
        ))
    }

    async fn authenticate(&self, challenge: &str) -> Result<Auth, String> {
        let (scheme, params) = parse_challenge(challenge);
        let param = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        match scheme.as_str() {
            "basic" if self.creds.is_some() => Ok(Auth::Basic),
            "basic" => Err("the upstream wants credentials (Basic); give --creds-file".into()),
            "bearer" => {
                let realm = param("realm").ok_or("Bearer challenge without a realm")?;
                if !realm.starts_with("https://") && !realm.starts_with("http://") {
                    return Err(format!("Bearer realm {realm:?} is not an http(s) URL"));
                }
                let scope =
                    param("scope").unwrap_or_else(|| format!("repository:{}:pull", self.name));
                let mut query = vec![("scope", scope)];
                if let Some(s) = param("service") {
                    query.push(("service", s));
                }
                let mut req = self.http.get(&realm).query(&query);
                if let Some((u, p)) = &self.creds {
                    req = req.basic_auth(u, Some(p));
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| format!("token request to {realm}: {}", error_chain(&e)))?;
                if !resp.status().is_success() {
                    return Err(format!("token request to {realm}: {}", resp.status()));
                }
                let body = read_limited(resp, 1 << 20, "token reply").await?;
                let t: TokenReply = serde_json::from_slice(&body)
                    .map_err(|e| format!("token reply from {realm}: {e}"))?;
                t.token
                    .or(t.access_token)
                    .filter(|t| !t.is_empty())
                    .map(Auth::Bearer)
                    .ok_or_else(|| format!("token reply from {realm} has no token"))
            }
            _ => Err(format!(
                "the upstream asks for an unsupported authentication: {challenge:?}"
            )),
        }
    }

    /// Every tag, following `Link` pages.
    async fn tags(&self) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        let mut next = Some(format!("/v2/{}/tags/list?n=1000", self.name));
        while let Some(path) = next.take() {
            let resp = self.get(&path, None).await?;
            if !resp.status().is_success() {
                return Err(format!("listing upstream tags: {}", resp.status()));
            }
            next = resp
                .headers()
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let body = read_limited(resp, MAX_MANIFEST, "upstream tag list").await?;
            let page: TagList =
                serde_json::from_slice(&body).map_err(|e| format!("upstream tag list: {e}"))?;
            out.extend(page.tags.unwrap_or_default());
            if out.len() > MAX_TAGS {
                return Err(format!("the upstream has more than {MAX_TAGS} tags"));
            }
        }
        Ok(out)
    }

    /// A manifest by tag or digest: its bytes, content type and digest (checked against the
    /// digest asked for). `None` when the upstream has no such manifest.
    async fn manifest(&self, reference: &str) -> Result<Option<Fetched>, String> {
        let resp = self
            .get(
                &format!("/v2/{}/manifests/{reference}", self.name),
                Some(ACCEPT_MANIFESTS),
            )
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(format!("upstream manifest {reference}: {}", resp.status()));
        }
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_owned());
        let claimed = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let what = format!("upstream manifest {reference}");
        let bytes = read_limited(resp, MAX_MANIFEST, &what).await?;
        let expected = match Digest::parse(reference) {
            Ok(d) => Some(d),
            Err(_) => claimed.as_deref().and_then(|c| Digest::parse(c).ok()),
        };
        let digest = match &expected {
            Some(d) => Digest::of(d.algorithm(), &bytes),
            None => Digest::sha256_of(&bytes),
        };
        if let Some(e) = expected {
            if e != digest {
                return Err(format!(
                    "upstream manifest {reference} has digest {digest}, not {e}"
                ));
            }
        }
        Ok(Some(Fetched {
            bytes,
            content_type: ct,
            digest,
        }))
    }

    /// The digests of the manifests that refer to `digest`: the referrers API, else the
    /// fallback tag `sha256-<hex>` (an index of them).
    async fn referrers(&self, digest: &Digest) -> Result<Vec<String>, String> {
        let resp = self
            .get(
                &format!("/v2/{}/referrers/{digest}", self.name),
                Some("application/vnd.oci.image.index.v1+json"),
            )
            .await?;
        let is_index = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/vnd.oci.image.index.v1+json"));
        if resp.status().is_success() && is_index {
            let body = read_limited(resp, MAX_MANIFEST, "upstream referrers").await?;
            let doc: IndexDoc = serde_json::from_slice(&body)
                .map_err(|e| format!("upstream referrers of {digest}: {e}"))?;
            return Ok(doc.manifests.into_iter().map(|d| d.digest).collect());
        }
        let tag = format!("{}-{}", digest.algorithm().name(), digest.hex());
        let Some(f) = self.manifest(&tag).await? else {
            return Ok(Vec::new());
        };
        let doc: IndexDoc = serde_json::from_slice(&f.bytes)
            .map_err(|e| format!("upstream referrers tag {tag}: {e}"))?;
        Ok(doc.manifests.into_iter().map(|d| d.digest).collect())
    }
}

/// Reads a response body of at most `max` bytes (JSON documents and manifests: whole in
/// memory, so bounded whatever `Content-Length` says).
async fn read_limited(
    mut resp: reqwest::Response,
    max: usize,
    what: &str,
) -> Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(format!("{what} is over {max} bytes"));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("{what}: {}", error_chain(&e)))?
    {
        if out.len() + chunk.len() > max {
            return Err(format!("{what} is over {max} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

struct Fetched {
    bytes: Vec<u8>,
    content_type: Option<String>,
    digest: Digest,
}

/// What referrers are copied for a tagged manifest: its own and, for an index, each child's
/// (a signature or SBOM is often attached to one platform's manifest, not to the index).
fn subjects(f: &Fetched) -> Vec<Digest> {
    let mut subjects = vec![f.digest.clone()];
    if let Ok(parsed) = manifest::parse(f.content_type.as_deref(), &f.bytes) {
        subjects.extend(parsed.children);
    }
    subjects
}

/// The state of one run.
struct Copier<'a> {
    core: &'a Core,
    who: Option<&'a Principal>,
    up: Upstream,
    name: OciName,
    report: &'a mut MirrorReport,
}

fn domain_msg(e: DomainError) -> String {
    e.to_string()
}

async fn copy(
    core: &Core,
    who: Option<&Principal>,
    row: &MirrorRow,
    report: &mut MirrorReport,
) -> Result<(), String> {
    let name = OciName::parse(&row.image).map_err(|e| e.to_string())?;
    registry::access(core, who, &name, Role::Write)
        .await
        .map_err(domain_msg)?;
    let matcher = match &row.tags {
        Some(p) => Some(protection::compile(p).map_err(domain_msg)?),
        None => None,
    };
    let mut c = Copier {
        core,
        who,
        up: Upstream::new(row)?,
        name,
        report,
    };
    let mut tags = c.up.tags().await?;
    tags.retain(|t| OciTag::parse(t).is_ok());
    tags.retain(|t| matcher.as_ref().is_none_or(|m| m.is_match(t)));
    tags.sort();
    for tag in tags {
        c.tag(&tag).await?;
    }
    Ok(())
}

impl Copier<'_> {
    /// Copies one tag: its manifest tree, its referrers, then points the tag.
    async fn tag(&mut self, tag: &str) -> Result<(), String> {
        let Some(f) = self.up.manifest(tag).await? else {
            return Ok(()); // deleted upstream since the listing
        };
        let (n, t) = (self.name.clone(), tag.to_owned());
        let (local, rules) = self
            .core
            .db
            .read(move |txn| {
                Ok::<_, DomainError>((
                    manifests::tagged(txn, &n, &t)?,
                    protection::RegistryRules::load(txn, &n.repo())?,
                ))
            })
            .await
            .map_err(domain_msg)?;
        let digest = f.digest.clone();
        let (bytes, ct) = (f.bytes.clone(), f.content_type.clone());
        let subjects = subjects(&f);
        match local.as_deref() {
            Some(d) if d == digest.to_string() => {
                self.referrers_of(&subjects).await?;
                self.report.tags_unchanged.push(tag.to_owned());
                return Ok(());
            }
            Some(_) if rules.protecting(tag).is_some() => {
                self.report.tags_protected.push(tag.to_owned());
                return Ok(());
            }
            _ => {}
        }
        self.manifest(f, false).await?;
        self.referrers_of(&subjects).await?;
        let tag_ref = OciTag::parse(tag).map_err(|e| e.to_string())?;
        registry::put_manifest(
            self.core,
            self.who,
            &self.name,
            &Reference::Tag(tag_ref),
            Vec::new(),
            ct,
            bytes,
        )
        .await
        .map_err(|e| format!("tag {tag}: {e}"))?;
        if local.is_some() {
            self.report.tags_moved.push(tag.to_owned());
        } else {
            self.report.tags_created.push(tag.to_owned());
        }
        Ok(())
    }

    /// Copies the referrers of each subject (see `subjects`).
    async fn referrers_of(&mut self, subjects: &[Digest]) -> Result<(), String> {
        for subject in subjects {
            for r in self.up.referrers(subject).await? {
                let d = Digest::parse(&r).map_err(|e| format!("upstream referrer {r}: {e}"))?;
                if self.has_manifest(&d).await? {
                    continue;
                }
                let Some(rf) = self.up.manifest(&r).await? else {
                    continue;
                };
                self.manifest(rf, true).await?;
            }
        }
        Ok(())
    }

    async fn has_manifest(&self, d: &Digest) -> Result<bool, String> {
        let (n, d) = (self.name.clone(), d.to_string());
        self.core
            .db
            .read(move |txn| manifests::exists(txn, &n, &d))
            .await
            .map_err(|e| e.to_string())
    }

    /// Stores a manifest by digest after its children and blobs; nothing when already here.
    fn manifest(
        &mut self,
        f: Fetched,
        referrer: bool,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            if self.has_manifest(&f.digest).await? {
                return Ok(());
            }
            let parsed = manifest::parse(f.content_type.as_deref(), &f.bytes)
                .map_err(|e| format!("upstream manifest {}: {e}", f.digest))?;
            for child in &parsed.children {
                if self.has_manifest(child).await? {
                    continue;
                }
                let Some(cf) = self.up.manifest(&child.to_string()).await? else {
                    return Err(format!(
                        "upstream index {} lists {child}, which the upstream does not have",
                        f.digest
                    ));
                };
                self.manifest(cf, false).await?;
            }
            for b in &parsed.blobs {
                self.blob(b).await?;
            }
            registry::put_manifest(
                self.core,
                self.who,
                &self.name,
                &Reference::Digest(f.digest.clone()),
                Vec::new(),
                f.content_type,
                f.bytes,
            )
            .await
            .map_err(|e| format!("storing manifest {}: {e}", f.digest))?;
            self.report.manifests_copied += 1;
            if referrer {
                self.report.referrers_copied += 1;
            }
            Ok(())
        })
    }

    /// Downloads a blob the image does not link yet, through the verifying upload path.
    async fn blob(&mut self, d: &Digest) -> Result<(), String> {
        let (n, ds) = (self.name.clone(), d.to_string());
        let linked = self
            .core
            .db
            .read(move |txn| blob_refs::is_linked(txn, &n, &ds))
            .await
            .map_err(|e| e.to_string())?;
        if linked {
            self.report.blobs_skipped += 1;
            return Ok(());
        }
        let resp = self
            .up
            .get(&format!("/v2/{}/blobs/{d}", self.up.name), None)
            .await?;
        if !resp.status().is_success() {
            return Err(format!("upstream blob {d}: {}", resp.status()));
        }
        let len = resp.content_length();
        let body = Box::pin(resp.bytes_stream());
        let got = upload::monolithic(self.core, self.who, &self.name, d, len, body)
            .await
            .map_err(|e| format!("blob {d}: {e}"))?;
        let (n, gs) = (self.name.clone(), got.to_string());
        let size = self
            .core
            .db
            .read(move |txn| blob_refs::linked_size(txn, &n, &gs))
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or(0);
        self.report.blobs_copied += 1;
        self.report.bytes_copied += size;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_keeps_commas_inside_quoted_scope() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(
            p,
            vec![
                ("realm".into(), "https://auth.docker.io/token".into()),
                ("service".into(), "registry.docker.io".into()),
                ("scope".into(), "repository:library/alpine:pull,push".into()),
            ]
        );
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(s, "basic");
        assert_eq!(p, vec![("realm".into(), "Registry Realm".into())]);
    }

    #[test]
    fn upstream_url_without_name_or_with_other_scheme_is_refused() {
        assert_eq!(
            split_upstream("http://127.0.0.1:5000/library/alpine").ok(),
            Some((
                "http://127.0.0.1:5000".to_owned(),
                "library/alpine".to_owned()
            ))
        );
        assert!(split_upstream("ftp://h/x").is_err());
        assert!(split_upstream("https://h").is_err());
        assert!(split_upstream("https://h/../x").is_err());
        assert!(split_upstream("https://us@h/x").is_err());
    }

    #[test]
    fn next_link_reads_rel_next() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?last=b&n=2")
        );
        assert_eq!(next_link("garbage"), None);
    }
}

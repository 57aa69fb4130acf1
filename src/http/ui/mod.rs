//! The web UI: server-rendered HTML pages (maud templates compiled into the binary, one embedded
//! stylesheet, no JavaScript) beside the git URL at `/<owner>/<repo>/...`, plus `/`, `/login`
//! and `/<owner>`. Every page calls the same domain functions as the REST API with the signed-in
//! user as the caller, so drafts, private repositories and protected actions follow one
//! authorization path. Sessions are cookies; every state-changing form carries a CSRF token.

mod confirm;
mod layout;
mod links;
mod markdown;
mod pages;
mod releases;
mod repo;
mod settings;

use crate::http::{drain_form, DRAIN_ON_ERROR};
use std::future::Future;

use warp::multipart::FormData;

use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::edge::{repo_path, Ids, Parsed};
use super::{base_url, raw_query, with_core, Ctx};
use crate::auth::Principal;
use crate::domain::session::{self, SignedIn};
use crate::domain::{account, DomainError, DomainResult};
use crate::ids::RepoPath;

pub use markdown::render as render_markdown;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "pfai_session";
/// The sign-in form's double-submit cookie (CSRF protection before there is a session).
pub const LOGIN_COOKIE: &str = "pfai_login";
/// Largest urlencoded form body.
const FORM_LIMIT: u64 = 2 << 20;

/// What every page handler gets: the shared state, who is asking and where the request came from.
#[derive(Clone)]
pub struct Req {
    /// Shared state.
    pub core: Ctx,
    /// The signed-in user, if any.
    pub viewer: Option<SignedIn>,
    /// The session id from the cookie (to sign out).
    session_id: Option<String>,
    /// `http(s)://host`.
    pub base: String,
    /// Whether the browser reached us over TLS (a proxy says so): cookies get `Secure`.
    pub secure: bool,
    /// Path and query of this request, for "sign in and come back".
    pub here: String,
    /// The raw query string.
    pub query: String,
    /// `Origin` (or failing that `Referer`) of the request, checked on state changes.
    origin: Option<String>,
}

/// The request facts a filter extracts, before the session is looked up.
pub struct Parts {
    core: Ctx,
    session_id: Option<String>,
    base: String,
    path: String,
    query: String,
    origin: Option<String>,
}

/// The filter that extracts `Parts`, boxed so route modules can share it.
pub type PartsFilter = BoxedFilter<(Parts,)>;

fn parts(core: Ctx) -> PartsFilter {
    with_core(core)
        .and(warp::cookie::optional::<String>(SESSION_COOKIE))
        .and(base_url())
        .and(warp::path::full())
        .and(raw_query())
        .and(warp::header::optional::<String>("origin"))
        .and(warp::header::optional::<String>("referer"))
        .map(
            |core,
             session_id,
             base,
             path: warp::path::FullPath,
             query,
             origin: Option<String>,
             referer| Parts {
                core,
                session_id,
                base,
                path: path.as_str().to_owned(),
                query,
                origin: origin.or(referer),
            },
        )
        .boxed()
}

impl Parts {
    async fn resolve(self) -> DomainResult<Req> {
        let viewer = match &self.session_id {
            Some(id) => session::resolve(&self.core, id).await?,
            None => None,
        };
        if let Some(v) = &viewer {
            tracing::Span::current().record("user", v.principal.username.as_str());
        }
        let here = if self.query.is_empty() {
            self.path
        } else {
            format!("{}?{}", self.path, self.query)
        };
        Ok(Req {
            secure: self.base.starts_with("https://"),
            core: self.core,
            viewer,
            session_id: self.session_id,
            base: self.base,
            here,
            query: self.query,
            origin: self.origin,
        })
    }
}

impl Req {
    /// The caller for domain calls.
    pub fn who(&self) -> Option<&Principal> {
        self.viewer.as_ref().map(|v| &v.principal)
    }

    /// The CSRF token to embed in forms (empty when signed out: such forms are refused anyway).
    pub fn csrf(&self) -> &str {
        self.viewer.as_ref().map(|v| v.csrf.as_str()).unwrap_or("")
    }

    /// `host[:port]` as the browser sees it, for `docker pull` lines.
    pub fn host(&self) -> &str {
        self.base
            .split_once("://")
            .map(|(_, h)| h)
            .unwrap_or(&self.base)
    }

    /// Guards a state-changing form: a signed-in user, a same-origin request, and the session's
    /// CSRF token echoed back.
    pub fn check_form(&self, form: &Form) -> DomainResult<Principal> {
        let v = self
            .viewer
            .as_ref()
            .ok_or_else(|| DomainError::Unauthenticated("sign in first".into()))?;
        self.check_origin()?;
        if !session::csrf_matches(&v.csrf, form.get("_csrf")) {
            return Err(DomainError::Forbidden(
                "the form's security token is missing or stale; reload the page and try again"
                    .into(),
            ));
        }
        Ok(v.principal.clone())
    }

    /// Refuses cross-origin form posts when the browser names the origin.
    fn check_origin(&self) -> DomainResult<()> {
        match &self.origin {
            Some(o) if o != &self.base && !o.starts_with(&format!("{}/", self.base)) => Err(
                DomainError::Forbidden("cross-site form submissions are refused".into()),
            ),
            _ => Ok(()),
        }
    }

    /// Renders a domain outcome as an error page; a signed-out visitor who needs to sign in is
    /// sent to the sign-in page and brought back afterwards.
    pub fn error(&self, e: DomainError) -> Response {
        if matches!(e, DomainError::Unauthenticated(_)) && self.viewer.is_none() {
            return redirect(&format!("/login?next={}", encode_query(&self.here)));
        }
        let (status, message) = super::error::status_and_message(&e);
        html(status, layout::error_page(self, status, &message))
    }
}

/// A decoded urlencoded form (repeated keys kept).
#[derive(Debug, Default, Clone)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Parses an `application/x-www-form-urlencoded` body.
    pub fn parse(body: &[u8]) -> Form {
        Form(super::query_pairs(&String::from_utf8_lossy(body)))
    }

    /// The first value of a field.
    pub fn get(&self, key: &str) -> Option<&str> {
        super::query_get(&self.0, key)
    }

    /// Every value of a repeated field, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A field's value, trimmed; empty when absent.
    pub fn text(&self, key: &str) -> String {
        self.get(key).unwrap_or("").trim().to_owned()
    }

    /// Whether a checkbox was ticked.
    pub fn checked(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| !v.is_empty())
    }

    /// Adds a field (multipart text parts are collected into a `Form`).
    pub fn push(&mut self, key: String, value: String) {
        self.0.push((key, value));
    }
}

/// A page with the headers every UI response carries: no script may run (CSP), nothing is
/// sniffed, framed or cached (pages embed CSRF tokens).
pub fn html(status: StatusCode, markup: maud::Markup) -> Response {
    let mut resp = Response::new(markup.into_string().into());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `303 See Other` to a local path (after a form post, or to the sign-in page).
pub fn redirect(to: &str) -> Response {
    let mut resp = Response::new(Default::default());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Percent-encodes a query value.
pub fn encode_query(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A URL path segment for a tag or asset name (tags may contain `/`).
pub fn seg(s: &str) -> String {
    crate::domain::release::url_segment(s)
}

/// The status a domain outcome gets (for pages that show a form again with the message).
pub fn status_of(e: &DomainError) -> StatusCode {
    super::error::status_and_message(e).0
}

/// Runs a page handler: resolves the session, then renders its error as a page.
async fn run<F, Fut>(parts: Parts, f: F) -> Response
where
    F: FnOnce(Req) -> Fut,
    Fut: Future<Output = DomainResult<Response>>,
{
    let rq = match parts.resolve().await {
        Ok(rq) => rq,
        Err(e) => {
            let (status, message) = super::error::status_and_message(&e);
            let mut resp = Response::new(message.into());
            *resp.status_mut() = status;
            return resp;
        }
    };
    let keep = rq.clone();
    match f(rq).await {
        Ok(resp) => resp,
        Err(e) => keep.error(e),
    }
}

/// The UI's typed edge: every page handler is opened here, with the session resolved and the
/// path's ids parsed (an id that names nothing is the error page), so handlers take a `Req`
/// and typed ids.
impl Parts {
    /// A page: the session, then the ids, then `f`.
    async fn page<I, F, Fut>(self, ids: I, f: F) -> Response
    where
        I: Ids,
        F: FnOnce(Req, I::Out) -> Fut,
        Fut: Future<Output = DomainResult<Response>>,
    {
        run(self, |rq| async move {
            let ids = ids.parsed()?;
            f(rq, ids).await
        })
        .await
    }

    /// An urlencoded form post: the session, the body (within its limit), a signed-in,
    /// same-origin caller echoing the CSRF token, then the ids, then `f`.
    async fn form<I, F, Fut>(self, form: DomainResult<Form>, ids: I, f: F) -> Response
    where
        I: Ids,
        F: FnOnce(Req, I::Out, Form) -> Fut,
        Fut: Future<Output = DomainResult<Response>>,
    {
        run(self, |rq| async move {
            let form = form?;
            rq.check_form(&form)?;
            let ids = ids.parsed()?;
            f(rq, ids, form).await
        })
        .await
    }

    /// A streamed multipart form (release files): the session, then the ids (a form refused
    /// here is drained, bounded, first), then `f`, which checks the CSRF token among the
    /// fields.
    async fn multipart<I, F, Fut>(self, ids: I, form: FormData, f: F) -> Response
    where
        I: Ids,
        F: FnOnce(Req, I::Out, FormData) -> Fut,
        Fut: Future<Output = DomainResult<Response>>,
    {
        run(self, |rq| async move {
            let mut form = form;
            match ids.parsed() {
                Ok(ids) => f(rq, ids, form).await,
                Err(e) => {
                    drain_form(&mut form, DRAIN_ON_ERROR).await;
                    Err(e)
                }
            }
        })
        .await
    }
}

/// An owner path segment that is not one of the server's own top-level routes.
fn owner_segment() -> impl Filter<Extract = (String,), Error = warp::Rejection> + Clone {
    warp::path::param::<String>().and_then(|o: String| async move {
        if account::RESERVED_OWNER_NAMES.contains(&o.as_str()) || o.starts_with('-') {
            Err(warp::reject::not_found())
        } else {
            Ok(o)
        }
    })
}

/// `/<owner>/<repo>` path segments as written, before the page's own segments.
fn repo_names() -> impl Filter<Extract = (String, String), Error = warp::Rejection> + Clone {
    owner_segment().and(warp::path::param::<String>())
}

/// `/<owner>/<repo>` path segments as a repository, before the page's own segments.
fn repo_segments() -> impl Filter<Extract = (Parsed<RepoPath>,), Error = warp::Rejection> + Clone {
    repo_names().map(|o: String, r: String| repo_path(&o, &r))
}

/// The UI path of a repository, `/<owner>/<repo>`, which every repository page link starts with.
pub fn repo_base(repo: &account::RepoView) -> String {
    format!("/{}/{}", repo.owner, repo.name)
}

/// The page of the release on `tag`.
pub fn release_url(repo: &account::RepoView, tag: &str) -> String {
    format!("{}/releases/tag/{}", repo_base(repo), seg(tag))
}

/// An urlencoded form body, read up to a limit (413 as a page past it).
fn form_body() -> impl Filter<Extract = (DomainResult<Form>,), Error = warp::Rejection> + Clone {
    super::body_stream().then(|mut body: super::BodyStream| async move {
        super::read_limited(&mut body, FORM_LIMIT)
            .await
            .map(|b| Form::parse(&b))
    })
}

/// Every UI route. Mounted last, so the APIs and git keep their paths.
pub fn routes(core: Ctx) -> BoxedFilter<(Response,)> {
    let p = parts(core.clone());
    let css = warp::path!("-" / "pfai.css").and(warp::get()).map(|| {
        let mut resp = Response::new(layout::STYLESHEET.into());
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/css; charset=utf-8"),
        );
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        );
        resp
    });
    let keys = warp::path!("-" / "attestation-keys")
        .and(warp::get())
        .and(p.clone())
        .then(|parts: Parts| parts.page((), |rq, ()| pages::attestation_keys(rq)));
    let home = warp::path::end()
        .and(warp::get())
        .and(p.clone())
        .then(|parts: Parts| parts.page((), |rq, ()| pages::home(rq)));
    let login_form = warp::path!("login")
        .and(warp::get())
        .and(p.clone())
        .then(|parts: Parts| parts.page((), |rq, ()| pages::login_form(rq)));
    let login = warp::path!("login")
        .and(warp::post())
        .and(p.clone())
        .and(warp::cookie::optional::<String>(LOGIN_COOKIE))
        .and(crate::http::peer_addr())
        .and(form_body())
        .then(|parts, cookie, peer, form| {
            run(parts, move |rq| pages::login(rq, cookie, peer, form))
        });
    let logout = warp::path!("logout")
        .and(warp::post())
        .and(p.clone())
        .and(form_body())
        .then(|parts: Parts, form| parts.form(form, (), |rq, (), _| pages::logout(rq)));
    let owner = owner_segment()
        .and(warp::path::end())
        .and(warp::get())
        .and(p.clone())
        .then(|o, parts: Parts| parts.page((), |rq, ()| pages::owner(rq, o)));
    css.or(home)
        .unify()
        .or(keys)
        .unify()
        .or(login_form)
        .unify()
        .or(login)
        .unify()
        .or(logout)
        .unify()
        .or(owner)
        .unify()
        .or(links::routes(p.clone()))
        .unify()
        .or(confirm::routes(p.clone()))
        .unify()
        .or(releases::routes(p.clone(), core.limits.asset_max))
        .unify()
        .or(settings::routes(p.clone()))
        .unify()
        .or(repo::routes(p))
        .unify()
        .boxed()
}

//! The typed request edge: path segments become ids (`RepoPath`, tag names, numeric ids) in
//! filters, and the caller is authenticated in one place, `Edge`. A handler receives a `Caller`
//! and its parsed ids, never raw `owner`/`repo` strings.
//!
//! Order matters for the wire: authentication is judged first, then the ids (a bad token is a
//! 401 even on a repository name that cannot exist, which is a 404). So an id that fails to
//! parse does not reject the route: it is carried as `Parsed<T>` (an error) and reported by
//! `Edge::rest` after authentication, through the same `error::rest` as any handler error.

use warp::reply::Response;
use warp::Filter;

use super::error::rest_reply;
use super::{credentials, decode_component, with_core, Ctx};
use crate::auth::{Credentials, Principal};
use crate::domain::{account, DomainError, DomainResult};
use crate::ids::RepoPath;

/// An id parsed from the path, or why it names nothing (reported after authentication).
pub type Parsed<T> = DomainResult<T>;

/// Parses `{owner}/{repo}` path segments; an invalid name cannot exist, so it is a 404.
pub fn repo_path(owner: &str, repo: &str) -> Parsed<RepoPath> {
    RepoPath::new(owner, repo)
        .map_err(|_| DomainError::NotFound(format!("repository {owner}/{repo} not found")))
}

/// Parses a numeric asset id segment; anything else names no asset (404).
pub fn asset_id(s: &str) -> Parsed<u64> {
    s.parse()
        .map_err(|_| DomainError::NotFound("asset not found".into()))
}

/// The next two path segments as a repository.
pub fn repo_segments() -> impl Filter<Extract = (Parsed<RepoPath>,), Error = warp::Rejection> + Clone
{
    warp::path::param::<String>()
        .and(warp::path::param::<String>())
        .map(|o: String, r: String| repo_path(&o, &r))
}

/// The next path segment as a tag (or asset, image, user) name, percent-decoded (tags may
/// contain `/`, sent as `%2F`).
pub fn name_segment() -> impl Filter<Extract = (String,), Error = warp::Rejection> + Clone {
    warp::path::param::<String>().map(|s: String| decode_component(&s))
}

/// The next path segment as an asset id.
pub fn asset_id_segment() -> impl Filter<Extract = (Parsed<u64>,), Error = warp::Rejection> + Clone
{
    warp::path::param::<String>().map(|s: String| asset_id(&s))
}

/// The parsed ids of a route, checked in order (the first that names nothing is the error).
pub trait Ids {
    /// The ids once all parsed.
    type Out;
    /// All the ids, or the first error.
    fn parsed(self) -> DomainResult<Self::Out>;
}

/// A route without ids.
impl Ids for () {
    type Out = ();
    fn parsed(self) -> DomainResult<()> {
        Ok(())
    }
}

impl<T> Ids for Parsed<T> {
    type Out = T;
    fn parsed(self) -> DomainResult<T> {
        self
    }
}

impl<A: Ids, B: Ids> Ids for (A, B) {
    type Out = (A::Out, B::Out);
    fn parsed(self) -> DomainResult<Self::Out> {
        Ok((self.0.parsed()?, self.1.parsed()?))
    }
}

/// Who is asking, once authenticated: what every REST, git and registry handler starts from.
pub struct Caller {
    /// Shared state.
    pub core: Ctx,
    /// The authenticated user (`None`: anonymous).
    pub principal: Option<Principal>,
}

impl Caller {
    /// The caller for domain calls.
    pub fn who(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }
}

/// The caller, recorded on the request's span (for the request log).
fn caller(core: Ctx, principal: Option<Principal>) -> Caller {
    if let Some(p) = &principal {
        tracing::Span::current().record("user", p.username.as_str());
    }
    Caller { core, principal }
}

/// A request not yet authenticated: the shared state and its `Authorization` header, extracted
/// where routes always read the header (after the path and method). Authentication runs when
/// the handler does (`authenticate`, `rest`), so only the route that answers authenticates.
pub struct Edge {
    core: Ctx,
    creds: Credentials,
}

/// The `Edge` of a request.
pub fn edge(core: Ctx) -> impl Filter<Extract = (Edge,), Error = warp::Rejection> + Clone {
    with_core(core)
        .and(credentials())
        .map(|core, creds| Edge { core, creds })
}

impl Edge {
    /// Authenticates by token (Bearer, or as a Basic password); passwords are refused here.
    pub async fn authenticate(self) -> DomainResult<Caller> {
        let principal = account::authenticate(&self.core, self.creds, false).await?;
        Ok(caller(self.core, principal))
    }

    /// Authenticates allowing a Basic account password (the one route that takes one: minting
    /// tokens). The TCP peer's address feeds the sign-in backoff; `X-Forwarded-For` is not
    /// trusted (no setting enables it).
    pub async fn authenticate_with_password(
        self,
        peer: Option<std::net::SocketAddr>,
    ) -> DomainResult<Caller> {
        let principal =
            account::authenticate_from(&self.core, self.creds, true, peer.map(|a| a.ip())).await?;
        Ok(caller(self.core, principal))
    }

    /// Runs a REST endpoint: authenticates, then checks the ids, then calls `f`; any error
    /// becomes the REST error reply.
    pub async fn rest<I, F, Fut>(self, ids: I, f: F) -> Response
    where
        I: Ids,
        F: FnOnce(Caller, I::Out) -> Fut,
        Fut: std::future::Future<Output = DomainResult<Response>>,
    {
        let result = async {
            let caller = self.authenticate().await?;
            let ids = ids.parsed()?;
            f(caller, ids).await
        }
        .await;
        rest_reply(result)
    }
}

//! `POST /api/v1/forge/{owner}/{repo}/releases/generate-notes`: release notes generated from the
//! git history (GitHub's endpoint of the same name), for `pfai release create --generate-notes`
//! and any client written for GitHub.

use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::forge_repo;
use crate::domain::notes::{self, GenerateNotes};
use crate::domain::DomainResult;
use crate::http::edge::{edge, Caller, Edge};
use crate::http::{body_stream, read_json, reply, BodyStream, Ctx};
use crate::ids::RepoPath;

async fn generate(c: Caller, repo: RepoPath, body: BodyStream) -> DomainResult<Response> {
    let req: GenerateNotes = read_json(&c.core, body).await?;
    let notes = notes::generate(&c.core, c.who(), &repo, req).await?;
    Ok(reply::json(StatusCode::OK, &notes))
}

/// The generate-notes route.
pub fn routes(core: Ctx) -> BoxedFilter<(Response,)> {
    forge_repo()
        .and(warp::path!("releases" / "generate-notes"))
        .and(warp::post())
        .and(edge(core))
        .and(body_stream())
        .then(|repo, e: Edge, body| e.rest(repo, |c, repo| generate(c, repo, body)))
        .boxed()
}

//! Git tags and tag-protection rules.

use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::forge_repo;
use crate::api::{NewRule, NewTag};
use crate::domain::{git_tag, protection, DomainResult};
use crate::http::edge::{edge, name_segment, Caller, Edge};
use crate::http::{
    base_url, body_stream, page_query, raw_query, read_json, reply, BodyStream, Ctx,
};
use crate::ids::RepoPath;

async fn list(c: Caller, repo: RepoPath, q: String, base: String) -> DomainResult<Response> {
    let page = page_query(&q)?;
    let tags = git_tag::list(&c.core, c.who(), &repo, page).await?;
    Ok(reply::paged(
        &tags,
        &format!("{base}/api/v1/forge/{repo}/tags"),
    ))
}

async fn get(c: Caller, repo: RepoPath, tag: String) -> DomainResult<Response> {
    Ok(reply::json(
        StatusCode::OK,
        &git_tag::get(&c.core, c.who(), &repo, &tag).await?,
    ))
}

async fn create(c: Caller, repo: RepoPath, body: BodyStream) -> DomainResult<Response> {
    let b: NewTag = read_json(&c.core, body).await?;
    let v = git_tag::create(
        &c.core,
        c.who(),
        &repo,
        &b.tag_name,
        &b.target,
        b.message.as_deref(),
    )
    .await?;
    Ok(reply::json(StatusCode::CREATED, &v))
}

async fn delete(c: Caller, repo: RepoPath, tag: String) -> DomainResult<Response> {
    git_tag::delete(&c.core, c.who(), &repo, &tag).await?;
    Ok(reply::empty(StatusCode::NO_CONTENT))
}

async fn list_rules(c: Caller, repo: RepoPath) -> DomainResult<Response> {
    Ok(reply::json(
        StatusCode::OK,
        &protection::list(&c.core, c.who(), &repo).await?,
    ))
}

async fn create_rule(c: Caller, repo: RepoPath, body: BodyStream) -> DomainResult<Response> {
    let b: NewRule = read_json(&c.core, body).await?;
    Ok(reply::json(
        StatusCode::CREATED,
        &protection::create(
            &c.core,
            c.who(),
            &repo,
            &b.pattern,
            b.target.unwrap_or_default(),
            b.immutable,
        )
        .await?,
    ))
}

async fn delete_rule(c: Caller, repo: RepoPath, id: u64) -> DomainResult<Response> {
    protection::delete(&c.core, c.who(), &repo, id).await?;
    Ok(reply::empty(StatusCode::NO_CONTENT))
}

/// The tag and protection routes.
pub fn routes(core: Ctx) -> BoxedFilter<(Response,)> {
    let e = || edge(core.clone());
    let list = forge_repo()
        .and(warp::path!("tags"))
        .and(warp::get())
        .and(e())
        .and(raw_query())
        .and(base_url())
        .then(|repo, e: Edge, q, base| e.rest(repo, |c, repo| list(c, repo, q, base)));
    let create = forge_repo()
        .and(warp::path!("tags"))
        .and(warp::post())
        .and(e())
        .and(body_stream())
        .then(|repo, e: Edge, body| e.rest(repo, |c, repo| create(c, repo, body)));
    let get = forge_repo()
        .and(warp::path("tags"))
        .and(name_segment())
        .and(warp::path::end())
        .and(warp::get())
        .and(e())
        .then(|repo, tag, e: Edge| e.rest(repo, |c, repo| get(c, repo, tag)));
    let delete = forge_repo()
        .and(warp::path("tags"))
        .and(name_segment())
        .and(warp::path::end())
        .and(warp::delete())
        .and(e())
        .then(|repo, tag, e: Edge| e.rest(repo, |c, repo| delete(c, repo, tag)));
    let list_rules = forge_repo()
        .and(warp::path!("tag-protections"))
        .and(warp::get())
        .and(e())
        .then(|repo, e: Edge| e.rest(repo, list_rules));
    let create_rule = forge_repo()
        .and(warp::path!("tag-protections"))
        .and(warp::post())
        .and(e())
        .and(body_stream())
        .then(|repo, e: Edge, body| e.rest(repo, |c, repo| create_rule(c, repo, body)));
    let delete_rule = forge_repo()
        .and(warp::path!("tag-protections" / u64))
        .and(warp::delete())
        .and(e())
        .then(|repo, id, e: Edge| e.rest(repo, move |c, repo| delete_rule(c, repo, id)));
    list.or(create)
        .unify()
        .or(get)
        .unify()
        .or(delete)
        .unify()
        .or(list_rules)
        .unify()
        .or(create_rule)
        .unify()
        .or(delete_rule)
        .unify()
        .boxed()
}

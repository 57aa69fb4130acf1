//! Git tags and tag-protection rules.

use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::repo_path;
use crate::api::{NewRule, NewTag};
use crate::auth::Credentials;
use crate::domain::{git_tag, protection, DomainResult};
use crate::http::error::rest_reply;
use crate::http::{
    base_url, body_stream, credentials, decode_component, page_query, raw_query, read_json, reply,
    who, with_core, BodyStream, Ctx,
};

async fn list(
    core: Ctx,
    o: String,
    r: String,
    creds: Credentials,
    q: String,
    base: String,
) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let repo = repo_path(&o, &r)?;
    let page = page_query(&q)?;
    let tags = git_tag::list(&core, p.as_ref(), &repo, page).await?;
    Ok(reply::paged(
        &tags,
        &format!("{base}/api/v1/forge/{repo}/tags"),
    ))
}

async fn get(
    core: Ctx,
    o: String,
    r: String,
    tag: String,
    creds: Credentials,
) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let repo = repo_path(&o, &r)?;
    Ok(reply::json(
        StatusCode::OK,
        &git_tag::get(&core, p.as_ref(), &repo, &decode_component(&tag)).await?,
    ))
}

async fn create(
    core: Ctx,
    o: String,
    r: String,
    creds: Credentials,
    body: BodyStream,
) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let repo = repo_path(&o, &r)?;
    let b: NewTag = read_json(&core, body).await?;
    let v = git_tag::create(
        &core,
        p.as_ref(),
        &repo,
        &b.tag_name,
        &b.target,
        b.message.as_deref(),
    )
    .await?;
    Ok(reply::json(StatusCode::CREATED, &v))
}

async fn delete(
    core: Ctx,
    o: String,
    r: String,
    tag: String,
    creds: Credentials,
) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let repo = repo_path(&o, &r)?;
    git_tag::delete(&core, p.as_ref(), &repo, &decode_component(&tag)).await?;
    Ok(reply::empty(StatusCode::NO_CONTENT))
}

async fn list_rules(core: Ctx, o: String, r: String, creds: Credentials) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let repo = repo_path(&o, &r)?;
    Ok(reply::json(
        StatusCode::OK,
        &protection::list(&core, p.as_ref(), &repo).await?,
    ))
}

async fn create_rule(
    core: Ctx,
    o: String,
    r: String,
    creds: Credentials,
    body: BodyStream,
) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let repo = repo_path(&o, &r)?;
    let b: NewRule = read_json(&core, body).await?;
    Ok(reply::json(
        StatusCode::CREATED,
        &protection::create(&core, p.as_ref(), &repo, &b.pattern).await?,
    ))
}

async fn delete_rule(
    core: Ctx,
    o: String,
    r: String,
    id: u64,
    creds: Credentials,
) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let repo = repo_path(&o, &r)?;
    protection::delete(&core, p.as_ref(), &repo, id).await?;
    Ok(reply::empty(StatusCode::NO_CONTENT))
}

/// The tag and protection routes.
pub fn routes(core: Ctx) -> BoxedFilter<(Response,)> {
    let c = || with_core(core.clone());
    let list = warp::path!("api" / "v1" / "forge" / String / String / "tags")
        .and(warp::get())
        .and(c())
        .and(credentials())
        .and(raw_query())
        .and(base_url())
        .then(|o, r, core, creds, q, base| list(core, o, r, creds, q, base))
        .map(rest_reply);
    let create = warp::path!("api" / "v1" / "forge" / String / String / "tags")
        .and(warp::post())
        .and(c())
        .and(credentials())
        .and(body_stream())
        .then(|o, r, core, creds, body| create(core, o, r, creds, body))
        .map(rest_reply);
    let get = warp::path!("api" / "v1" / "forge" / String / String / "tags" / String)
        .and(warp::get())
        .and(c())
        .and(credentials())
        .then(|o, r, t, core, creds| get(core, o, r, t, creds))
        .map(rest_reply);
    let delete = warp::path!("api" / "v1" / "forge" / String / String / "tags" / String)
        .and(warp::delete())
        .and(c())
        .and(credentials())
        .then(|o, r, t, core, creds| delete(core, o, r, t, creds))
        .map(rest_reply);
    let list_rules = warp::path!("api" / "v1" / "forge" / String / String / "tag-protections")
        .and(warp::get())
        .and(c())
        .and(credentials())
        .then(|o, r, core, creds| list_rules(core, o, r, creds))
        .map(rest_reply);
    let create_rule = warp::path!("api" / "v1" / "forge" / String / String / "tag-protections")
        .and(warp::post())
        .and(c())
        .and(credentials())
        .and(body_stream())
        .then(|o, r, core, creds, body| create_rule(core, o, r, creds, body))
        .map(rest_reply);
    let delete_rule =
        warp::path!("api" / "v1" / "forge" / String / String / "tag-protections" / u64)
            .and(warp::delete())
            .and(c())
            .and(credentials())
            .then(|o, r, id, core, creds| delete_rule(core, o, r, id, creds))
            .map(rest_reply);
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

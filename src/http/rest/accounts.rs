//! Users, organizations, tokens, repositories and collaborators.

use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::repo_path;
use crate::api::{NewName, NewRepo, NewUser, RoleBody};
use crate::auth::Credentials;
use crate::domain::{account, DomainError, DomainResult};
use crate::http::error::rest_reply;
use crate::http::{body_stream, credentials, read_json, reply, who, with_core, BodyStream, Ctx};
use crate::ids::Role;

fn parse_role(s: &str) -> DomainResult<Role> {
    Role::parse(s).map_err(DomainError::from)
}

async fn create_user(core: Ctx, creds: Credentials, body: BodyStream) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let u: NewUser = read_json(&core, body).await?;
    let v = account::create_user(
        &core,
        p.as_ref(),
        &u.username,
        &u.password,
        &u.email,
        u.admin,
    )
    .await?;
    Ok(reply::json(StatusCode::CREATED, &v))
}

async fn create_org(core: Ctx, creds: Credentials, body: BodyStream) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let b: NewName = read_json(&core, body).await?;
    let v = account::create_org(&core, p.as_ref(), &b.name).await?;
    Ok(reply::json(StatusCode::CREATED, &v))
}

async fn set_member(
    core: Ctx,
    org: String,
    user: String,
    creds: Credentials,
    body: BodyStream,
) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let b: RoleBody = read_json(&core, body).await?;
    account::set_org_member(&core, p.as_ref(), &org, &user, Some(parse_role(&b.role)?)).await?;
    Ok(reply::empty(StatusCode::NO_CONTENT))
}

async fn remove_member(
    core: Ctx,
    org: String,
    user: String,
    creds: Credentials,
) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    account::set_org_member(&core, p.as_ref(), &org, &user, None).await?;
    Ok(reply::empty(StatusCode::NO_CONTENT))
}

async fn mint_token(
    core: Ctx,
    creds: Credentials,
    peer: Option<std::net::SocketAddr>,
    body: BodyStream,
) -> DomainResult<Response> {
    let p = crate::http::who_with_password(&core, creds, peer).await?;
    let b: NewName = read_json(&core, body).await?;
    let v = account::mint_token(&core, p.as_ref(), &b.name).await?;
    Ok(reply::json(StatusCode::CREATED, &v))
}

async fn revoke_token(core: Ctx, id: u64, creds: Credentials) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    account::revoke_token(&core, p.as_ref(), id).await?;
    Ok(reply::empty(StatusCode::NO_CONTENT))
}

async fn whoami(core: Ctx, creds: Credentials) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    Ok(reply::json(
        StatusCode::OK,
        &account::whoami(&core, p.as_ref()).await?,
    ))
}

async fn create_repo(core: Ctx, creds: Credentials, body: BodyStream) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let b: NewRepo = read_json(&core, body).await?;
    let v = account::create_repo(
        &core,
        p.as_ref(),
        &b.owner,
        &b.name,
        b.private,
        &b.description,
    )
    .await?;
    Ok(reply::json(StatusCode::CREATED, &v))
}

async fn list_repos(core: Ctx, creds: Credentials) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    Ok(reply::json(
        StatusCode::OK,
        &account::list_repos(&core, p.as_ref()).await?,
    ))
}

async fn get_repo(
    core: Ctx,
    owner: String,
    repo: String,
    creds: Credentials,
) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let path = repo_path(&owner, &repo)?;
    Ok(reply::json(
        StatusCode::OK,
        &account::get_repo(&core, p.as_ref(), &path).await?,
    ))
}

async fn delete_repo(
    core: Ctx,
    owner: String,
    repo: String,
    creds: Credentials,
) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let path = repo_path(&owner, &repo)?;
    account::delete_repo(&core, p.as_ref(), &path).await?;
    Ok(reply::empty(StatusCode::NO_CONTENT))
}

async fn set_collaborator(
    core: Ctx,
    owner: String,
    repo: String,
    user: String,
    creds: Credentials,
    body: BodyStream,
) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let path = repo_path(&owner, &repo)?;
    let b: RoleBody = read_json(&core, body).await?;
    account::set_collaborator(&core, p.as_ref(), &path, &user, Some(parse_role(&b.role)?)).await?;
    Ok(reply::empty(StatusCode::NO_CONTENT))
}

async fn remove_collaborator(
    core: Ctx,
    owner: String,
    repo: String,
    user: String,
    creds: Credentials,
) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let path = repo_path(&owner, &repo)?;
    account::set_collaborator(&core, p.as_ref(), &path, &user, None).await?;
    Ok(reply::empty(StatusCode::NO_CONTENT))
}

/// The account and repository routes.
pub fn routes(core: Ctx) -> BoxedFilter<(Response,)> {
    let c = || with_core(core.clone());
    let create_user = warp::path!("api" / "v1" / "admin" / "users")
        .and(warp::post())
        .and(c())
        .and(credentials())
        .and(body_stream())
        .then(create_user)
        .map(rest_reply);
    let create_org = warp::path!("api" / "v1" / "orgs")
        .and(warp::post())
        .and(c())
        .and(credentials())
        .and(body_stream())
        .then(create_org)
        .map(rest_reply);
    let set_member = warp::path!("api" / "v1" / "orgs" / String / "members" / String)
        .and(warp::put())
        .and(c())
        .and(credentials())
        .and(body_stream())
        .then(|org, user, core, creds, body| set_member(core, org, user, creds, body))
        .map(rest_reply);
    let remove_member = warp::path!("api" / "v1" / "orgs" / String / "members" / String)
        .and(warp::delete())
        .and(c())
        .and(credentials())
        .then(|org, user, core, creds| remove_member(core, org, user, creds))
        .map(rest_reply);
    let mint = warp::path!("api" / "v1" / "user" / "tokens")
        .and(warp::post())
        .and(c())
        .and(credentials())
        .and(crate::http::peer_addr())
        .and(body_stream())
        .then(mint_token)
        .map(rest_reply);
    let revoke = warp::path!("api" / "v1" / "user" / "tokens" / u64)
        .and(warp::delete())
        .and(c())
        .and(credentials())
        .then(|id, core, creds| revoke_token(core, id, creds))
        .map(rest_reply);
    let me = warp::path!("api" / "v1" / "user")
        .and(warp::get())
        .and(c())
        .and(credentials())
        .then(whoami)
        .map(rest_reply);
    let create_repo = warp::path!("api" / "v1" / "forge" / "repos")
        .and(warp::post())
        .and(c())
        .and(credentials())
        .and(body_stream())
        .then(create_repo)
        .map(rest_reply);
    let list_repos = warp::path!("api" / "v1" / "forge" / "repos")
        .and(warp::get())
        .and(c())
        .and(credentials())
        .then(list_repos)
        .map(rest_reply);
    let get_repo = warp::path!("api" / "v1" / "forge" / String / String)
        .and(warp::get())
        .and(c())
        .and(credentials())
        .then(|o, r, core, creds| get_repo(core, o, r, creds))
        .map(rest_reply);
    let delete_repo = warp::path!("api" / "v1" / "forge" / String / String)
        .and(warp::delete())
        .and(c())
        .and(credentials())
        .then(|o, r, core, creds| delete_repo(core, o, r, creds))
        .map(rest_reply);
    let set_collab =
        warp::path!("api" / "v1" / "forge" / String / String / "collaborators" / String)
            .and(warp::put())
            .and(c())
            .and(credentials())
            .and(body_stream())
            .then(|o, r, u, core, creds, body| set_collaborator(core, o, r, u, creds, body))
            .map(rest_reply);
    let remove_collab =
        warp::path!("api" / "v1" / "forge" / String / String / "collaborators" / String)
            .and(warp::delete())
            .and(c())
            .and(credentials())
            .then(|o, r, u, core, creds| remove_collaborator(core, o, r, u, creds))
            .map(rest_reply);
    create_user
        .or(create_org)
        .unify()
        .or(set_member)
        .unify()
        .or(remove_member)
        .unify()
        .or(mint)
        .unify()
        .or(revoke)
        .unify()
        .or(me)
        .unify()
        .or(create_repo)
        .unify()
        .or(list_repos)
        .unify()
        .or(get_repo)
        .unify()
        .or(delete_repo)
        .unify()
        .or(set_collab)
        .unify()
        .or(remove_collab)
        .unify()
        .boxed()
}

//! Users, organizations, tokens, repositories and collaborators.

use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::forge_repo;
use crate::api::{EditUser, NewName, NewRepo, NewUser, RoleBody};
use crate::domain::{account, DomainError, DomainResult};
use crate::http::edge::{edge, Caller, Edge};
use crate::http::error::rest_reply;
use crate::http::{body_stream, peer_addr, read_json, reply, BodyStream, Ctx};
use crate::ids::{RepoPath, Role};

fn parse_role(s: &str) -> DomainResult<Role> {
    Role::parse(s).map_err(DomainError::from)
}

async fn create_user(c: Caller, body: BodyStream) -> DomainResult<Response> {
    let u: NewUser = read_json(&c.core, body).await?;
    let v = account::create_user(
        &c.core,
        c.who(),
        &u.username,
        &u.password,
        &u.email,
        u.admin,
    )
    .await?;
    Ok(reply::json(StatusCode::CREATED, &v))
}

async fn create_org(c: Caller, body: BodyStream) -> DomainResult<Response> {
    let b: NewName = read_json(&c.core, body).await?;
    let v = account::create_org(&c.core, c.who(), &b.name).await?;
    Ok(reply::json(StatusCode::CREATED, &v))
}

async fn set_member(
    c: Caller,
    org: String,
    user: String,
    body: BodyStream,
) -> DomainResult<Response> {
    let b: RoleBody = read_json(&c.core, body).await?;
    account::set_org_member(&c.core, c.who(), &org, &user, Some(parse_role(&b.role)?)).await?;
    Ok(reply::empty(StatusCode::NO_CONTENT))
}

async fn remove_member(c: Caller, org: String, user: String) -> DomainResult<Response> {
    account::set_org_member(&c.core, c.who(), &org, &user, None).await?;
    Ok(reply::empty(StatusCode::NO_CONTENT))
}

/// The one route that takes a Basic account password: the TCP peer's address feeds the sign-in
/// backoff.
async fn mint_token(
    e: Edge,
    peer: Option<std::net::SocketAddr>,
    body: BodyStream,
) -> DomainResult<Response> {
    let c = e.authenticate_with_password(peer).await?;
    let b: NewName = read_json(&c.core, body).await?;
    let v = account::mint_token(&c.core, c.who(), &b.name).await?;
    Ok(reply::json(StatusCode::CREATED, &v))
}

async fn revoke_token(c: Caller, id: u64) -> DomainResult<Response> {
    account::revoke_token(&c.core, c.who(), id).await?;
    Ok(reply::empty(StatusCode::NO_CONTENT))
}

async fn whoami(c: Caller) -> DomainResult<Response> {
    Ok(reply::json(
        StatusCode::OK,
        &account::whoami(&c.core, c.who()).await?,
    ))
}

async fn create_repo(c: Caller, body: BodyStream) -> DomainResult<Response> {
    let b: NewRepo = read_json(&c.core, body).await?;
    let v = account::create_repo(
        &c.core,
        c.who(),
        &b.owner,
        &b.name,
        b.private,
        &b.description,
    )
    .await?;
    Ok(reply::json(StatusCode::CREATED, &v))
}

async fn list_repos(c: Caller) -> DomainResult<Response> {
    Ok(reply::json(
        StatusCode::OK,
        &account::list_repos(&c.core, c.who()).await?,
    ))
}

async fn get_repo(c: Caller, repo: RepoPath) -> DomainResult<Response> {
    Ok(reply::json(
        StatusCode::OK,
        &account::get_repo(&c.core, c.who(), &repo).await?,
    ))
}

async fn delete_repo(c: Caller, repo: RepoPath) -> DomainResult<Response> {
    account::delete_repo(&c.core, c.who(), &repo).await?;
    Ok(reply::empty(StatusCode::NO_CONTENT))
}

async fn set_collaborator(
    c: Caller,
    repo: RepoPath,
    user: String,
    body: BodyStream,
) -> DomainResult<Response> {
    let b: RoleBody = read_json(&c.core, body).await?;
    account::set_collaborator(&c.core, c.who(), &repo, &user, Some(parse_role(&b.role)?)).await?;
    Ok(reply::empty(StatusCode::NO_CONTENT))
}

async fn remove_collaborator(c: Caller, repo: RepoPath, user: String) -> DomainResult<Response> {
    account::set_collaborator(&c.core, c.who(), &repo, &user, None).await?;
    Ok(reply::empty(StatusCode::NO_CONTENT))
}

async fn list_users(c: Caller) -> DomainResult<Response> {
    Ok(reply::json(
        StatusCode::OK,
        &account::list_users(&c.core, c.who()).await?,
    ))
}

async fn edit_user(c: Caller, user: String, body: BodyStream) -> DomainResult<Response> {
    let b: EditUser = read_json(&c.core, body).await?;
    let v = account::edit_user(&c.core, c.who(), &user, b).await?;
    Ok(reply::json(StatusCode::OK, &v))
}

async fn delete_user(c: Caller, user: String) -> DomainResult<Response> {
    account::delete_user(&c.core, c.who(), &user).await?;
    Ok(reply::empty(StatusCode::NO_CONTENT))
}

async fn list_members(c: Caller, org: String) -> DomainResult<Response> {
    Ok(reply::json(
        StatusCode::OK,
        &account::list_org_members(&c.core, c.who(), &org).await?,
    ))
}

async fn list_collaborators(c: Caller, repo: RepoPath) -> DomainResult<Response> {
    Ok(reply::json(
        StatusCode::OK,
        &account::list_collaborators(&c.core, c.who(), &repo).await?,
    ))
}

/// The site-admin user routes and the membership lists (`pfai admin user`, `pfai org member
/// list`, `pfai repo collaborator list`).
fn admin_routes(core: Ctx) -> BoxedFilter<(Response,)> {
    let e = || edge(core.clone());
    let list_users = warp::path!("api" / "v1" / "admin" / "users")
        .and(warp::get())
        .and(e())
        .then(|e: Edge| e.rest((), |c, ()| list_users(c)));
    let edit_user = warp::path!("api" / "v1" / "admin" / "users" / String)
        .and(warp::patch())
        .and(e())
        .and(body_stream())
        .then(|user, e: Edge, body| e.rest((), |c, ()| edit_user(c, user, body)));
    let delete_user = warp::path!("api" / "v1" / "admin" / "users" / String)
        .and(warp::delete())
        .and(e())
        .then(|user, e: Edge| e.rest((), |c, ()| delete_user(c, user)));
    let list_members = warp::path!("api" / "v1" / "orgs" / String / "members")
        .and(warp::get())
        .and(e())
        .then(|org, e: Edge| e.rest((), |c, ()| list_members(c, org)));
    let list_collabs = forge_repo()
        .and(warp::path!("collaborators"))
        .and(warp::get())
        .and(e())
        .then(|repo, e: Edge| e.rest(repo, list_collaborators));
    list_users
        .or(edit_user)
        .unify()
        .or(delete_user)
        .unify()
        .or(list_members)
        .unify()
        .or(list_collabs)
        .unify()
        .boxed()
}

/// The account and repository routes.
pub fn routes(core: Ctx) -> BoxedFilter<(Response,)> {
    let e = || edge(core.clone());
    let create_user = warp::path!("api" / "v1" / "admin" / "users")
        .and(warp::post())
        .and(e())
        .and(body_stream())
        .then(|e: Edge, body| e.rest((), |c, ()| create_user(c, body)));
    let create_org = warp::path!("api" / "v1" / "orgs")
        .and(warp::post())
        .and(e())
        .and(body_stream())
        .then(|e: Edge, body| e.rest((), |c, ()| create_org(c, body)));
    let set_member = warp::path!("api" / "v1" / "orgs" / String / "members" / String)
        .and(warp::put())
        .and(e())
        .and(body_stream())
        .then(|org, user, e: Edge, body| e.rest((), |c, ()| set_member(c, org, user, body)));
    let remove_member = warp::path!("api" / "v1" / "orgs" / String / "members" / String)
        .and(warp::delete())
        .and(e())
        .then(|org, user, e: Edge| e.rest((), |c, ()| remove_member(c, org, user)));
    let mint = warp::path!("api" / "v1" / "user" / "tokens")
        .and(warp::post())
        .and(e())
        .and(peer_addr())
        .and(body_stream())
        .then(|e, peer, body| async move { rest_reply(mint_token(e, peer, body).await) });
    let revoke = warp::path!("api" / "v1" / "user" / "tokens" / u64)
        .and(warp::delete())
        .and(e())
        .then(|id, e: Edge| e.rest((), move |c, ()| revoke_token(c, id)));
    let me = warp::path!("api" / "v1" / "user")
        .and(warp::get())
        .and(e())
        .then(|e: Edge| e.rest((), |c, ()| whoami(c)));
    let create_repo = warp::path!("api" / "v1" / "forge" / "repos")
        .and(warp::post())
        .and(e())
        .and(body_stream())
        .then(|e: Edge, body| e.rest((), |c, ()| create_repo(c, body)));
    let list_repos = warp::path!("api" / "v1" / "forge" / "repos")
        .and(warp::get())
        .and(e())
        .then(|e: Edge| e.rest((), |c, ()| list_repos(c)));
    let get_repo = forge_repo()
        .and(warp::path::end())
        .and(warp::get())
        .and(e())
        .then(|repo, e: Edge| e.rest(repo, get_repo));
    let delete_repo = forge_repo()
        .and(warp::path::end())
        .and(warp::delete())
        .and(e())
        .then(|repo, e: Edge| e.rest(repo, delete_repo));
    let set_collab = forge_repo()
        .and(warp::path!("collaborators" / String))
        .and(warp::put())
        .and(e())
        .and(body_stream())
        .then(|repo, user, e: Edge, body| {
            e.rest(repo, |c, repo| set_collaborator(c, repo, user, body))
        });
    let remove_collab = forge_repo()
        .and(warp::path!("collaborators" / String))
        .and(warp::delete())
        .and(e())
        .then(|repo, user, e: Edge| e.rest(repo, |c, repo| remove_collaborator(c, repo, user)));
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
        .or(admin_routes(core.clone()))
        .unify()
        .boxed()
}

//! Pages outside a repository: the start page, an owner's page, signing in and out.

use maud::html;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

use super::layout::{self, page};
use super::{html, redirect, Form, Req, LOGIN_COOKIE, SESSION_COOKIE};
use std::collections::HashMap;

use crate::domain::account::{self, RepoView};
use crate::domain::quota::human;
use crate::domain::release::{self, Which};
use crate::domain::session::{self, SESSION_TTL_SECS};
use crate::domain::{DomainError, DomainResult};
use crate::ids::RepoPath;

/// The latest release of a repository, as one line of an owner's repository list.
struct LatestLine {
    name: String,
    tag: String,
    when: String,
}

/// The latest release of each repository (those without one are left out).
async fn latest_releases(
    rq: &Req,
    repos: &[RepoView],
) -> DomainResult<HashMap<String, LatestLine>> {
    let mut out = HashMap::new();
    for r in repos {
        let Ok(path) = RepoPath::new(&r.owner, &r.name) else {
            continue;
        };
        match release::get(&rq.core, rq.who(), &path, Which::Latest).await {
            Ok(rel) => {
                let v = crate::http::render::release(&rq.base, &path, &rel);
                out.insert(
                    r.full_name.clone(),
                    LatestLine {
                        name: v.name,
                        when: v.published_at.unwrap_or(v.created_at),
                        tag: v.tag_name,
                    },
                );
            }
            Err(DomainError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn repo_list(repos: &[RepoView], latest: &HashMap<String, LatestLine>) -> maud::Markup {
    html! {
        @if repos.is_empty() {
            p.empty { "No repositories you can see yet." }
        } @else {
            ul.repos {
                @for r in repos {
                    li {
                        a href={ "/" (r.full_name) } { (r.full_name) }
                        @if r.private { " " span.badge.private { "Private" } }
                        @if !r.description.is_empty() { p.desc { (r.description) } }
                        @if let Some(l) = latest.get(&r.full_name) {
                            p.latest {
                                span.badge.latest { "Latest" } " "
                                a href={ "/" (r.full_name) "/releases/tag/" (super::seg(&l.tag)) } { (l.name) }
                                " · " code { (l.tag) } " · " (layout::time(&l.when))
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `/`: the repositories the viewer may see.
pub async fn home(rq: Req) -> DomainResult<Response> {
    let repos = account::list_repos(&rq.core, rq.who()).await?;
    let body = html! {
        h1 { "Repositories" }
        @if rq.viewer.is_none() {
            p.hint { "Showing public repositories. "
                a href="/login" { "Sign in" } " to see yours." }
        }
        (repo_list(&repos, &HashMap::new()))
    };
    Ok(html(StatusCode::OK, page(&rq, "Repositories", body)))
}

/// `/-/attestation-keys`: the public keys that sign release attestations (anyone may see them:
/// a consumer needs them to verify offline), the current one first marked.
pub async fn attestation_keys(rq: Req) -> DomainResult<Response> {
    let keys = crate::domain::attestation::keys(&rq.core);
    let body = html! {
        h1 { "Attestation keys" }
        p.help {
            "Release attestations are signed with Ed25519. Save a key below as "
            code { "key.pem" } " and check a release offline with "
            code { "pfai release verify TAG --attestation FILE --key key.pem" }
            ". Older keys stay listed after a rotation so older attestations still verify. "
            a href="/api/v1/attestation/keys" { "As JSON" }
        }
        @for k in keys.iter().rev() {
            section.key {
                h2 {
                    code { (layout::short_sha(&k.keyid)) }
                    @if k.current { " " span.badge { "current" } }
                }
                p { "Key id (SHA-256 of the raw public key): " code.copy { (k.keyid) } }
                p { "Created " (layout::time(&k.created_at)) }
                pre { (k.public_key_pem) }
            }
        }
    };
    Ok(html(StatusCode::OK, page(&rq, "Attestation keys", body)))
}

/// `/<owner>`: that owner's repositories the viewer may see (404 for unknown owners).
pub async fn owner(rq: Req, owner: String) -> DomainResult<Response> {
    if !account::owner_exists(&rq.core, &owner).await? {
        return Err(DomainError::NotFound(format!("{owner} not found")));
    }
    let repos: Vec<RepoView> = account::list_repos(&rq.core, rq.who())
        .await?
        .into_iter()
        .filter(|r| r.owner == owner)
        .collect();
    // Shown to the owner itself, the org's members and site admins (others get no line).
    let usage = crate::domain::quota::get(&rq.core, rq.who(), &owner)
        .await
        .ok();
    let latest = latest_releases(&rq, &repos).await?;
    // An organization's defaults, shown to its members and site admins.
    let org_settings =
        crate::domain::immutable::org_settings_for(&rq.core, rq.who(), &owner).await?;
    let body = html! {
        h1 { (owner) }
        @if let Some((s, can_edit)) = &org_settings {
            p.org-settings {
                "Immutable releases by default: " strong { @if s.immutable_releases { "on" } @else { "off" } }
                " · " a href={ "/-/orgs/" (owner) "/settings" } { @if *can_edit { "Change" } @else { "Settings" } }
            }
        }
        @if let Some(q) = &usage {
            p.storage-usage {
                "Storage: " (human(q.used_bytes)) " used"
                @if let Some(l) = q.limit_bytes { " / " (human(l)) " limit" }
                @else { " (no limit)" }
            }
        }
        (repo_list(&repos, &latest))
    };
    Ok(html(StatusCode::OK, page(&rq, &owner, body)))
}

/// Where to go after signing in: a local path only (no open redirect to another site).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/".to_owned(),
    }
}

fn set_cookie(resp: &mut Response, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// A `Set-Cookie` value: always `HttpOnly` and `SameSite=Lax`, `Secure` behind TLS.
fn cookie(rq: &Req, name: &str, value: &str, path: &str, max_age: i64) -> String {
    let secure = if rq.secure { "; Secure" } else { "" };
    format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

fn login_page(
    rq: &Req,
    status: StatusCode,
    next: &str,
    username: &str,
    error: Option<&str>,
) -> Response {
    // Double-submit token: the same random value in a cookie and in the form. A cross-site page
    // can post the form but cannot read or set our cookie, so it cannot make them match.
    let token = session::new_secret();
    let body = html! {
        section.narrow {
            h1 { "Sign in" }
            (layout::flash(error))
            form.stack method="post" action="/login" {
                input type="hidden" name="_csrf" value=(token);
                input type="hidden" name="next" value=(next);
                label for="username" { "Username" }
                input #username type="text" name="username" value=(username)
                    autocomplete="username" autocapitalize="none" required autofocus;
                label for="password" { "Password" }
                input #password type="password" name="password"
                    autocomplete="current-password" required;
                button.primary type="submit" { "Sign in" }
            }
        }
    };
    let mut resp = html(status, page(rq, "Sign in", body));
    set_cookie(&mut resp, &cookie(rq, LOGIN_COOKIE, &token, "/login", 3600));
    resp
}

/// `GET /login`.
pub async fn login_form(rq: Req) -> DomainResult<Response> {
    let pairs = crate::http::query_pairs(&rq.query);
    let next = safe_next(crate::http::query_get(&pairs, "next"));
    if rq.viewer.is_some() {
        return Ok(redirect(&next));
    }
    Ok(login_page(&rq, StatusCode::OK, &next, "", None))
}

/// `POST /login`: checks the password, opens a session, goes back where the user came from.
/// Failed attempts count against the account and the TCP peer's address; during a lockout the
/// form answers 429 with `Retry-After` and says how long to wait.
pub async fn login(
    rq: Req,
    login_cookie: Option<String>,
    peer: Option<std::net::SocketAddr>,
    form: DomainResult<Form>,
) -> DomainResult<Response> {
    let form = form?;
    let next = safe_next(form.get("next"));
    let username = form.text("username");
    rq.check_origin()?;
    let token_ok = login_cookie
        .as_deref()
        .is_some_and(|c| session::csrf_matches(c, form.get("_csrf")));
    if !token_ok {
        return Ok(login_page(
            &rq,
            StatusCode::FORBIDDEN,
            &next,
            &username,
            Some("The sign-in form expired. Please try again."),
        ));
    }
    let password = form.get("password").unwrap_or("");
    match session::sign_in(&rq.core, &username, password, peer.map(|a| a.ip())).await {
        Ok(id) => {
            let mut resp = redirect(&next);
            set_cookie(
                &mut resp,
                &cookie(&rq, SESSION_COOKIE, &id, "/", SESSION_TTL_SECS),
            );
            set_cookie(&mut resp, &cookie(&rq, LOGIN_COOKIE, "", "/login", 0));
            Ok(resp)
        }
        Err(DomainError::Unauthenticated(m)) => Ok(login_page(
            &rq,
            StatusCode::UNAUTHORIZED,
            &next,
            &username,
            Some(&m),
        )),
        Err(e @ DomainError::TooManyRequests { .. }) => {
            let mut resp = login_page(
                &rq,
                StatusCode::TOO_MANY_REQUESTS,
                &next,
                &username,
                Some(&e.to_string()),
            );
            crate::http::error::set_retry_after(&mut resp, &e);
            Ok(resp)
        }
        Err(e) => Err(e),
    }
}

/// `POST /logout`: ends the session and clears the cookie.
/// (`Parts::form` has checked the form's CSRF token.)
pub async fn logout(rq: Req) -> DomainResult<Response> {
    if let Some(id) = &rq.session_id {
        session::sign_out(&rq.core, id).await?;
    }
    let mut resp = redirect("/");
    set_cookie(&mut resp, &cookie(&rq, SESSION_COOKIE, "", "/", 0));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(
            safe_next(Some("/alice/proj/releases")),
            "/alice/proj/releases"
        );
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }
}

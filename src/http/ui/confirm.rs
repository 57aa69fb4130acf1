//! Confirmation pages for deletes: `GET` on a delete URL shows what will be deleted and a form
//! that `POST`s to the same URL (with the CSRF token). The delete buttons elsewhere are plain
//! links here, so nothing is deleted by one mis-click, and no JavaScript is needed.

use maud::{html, Markup};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::layout::{self, page, repo_header, Tab};
use super::{html, release_url, repo_base, repo_segments, seg, Parts, PartsFilter, Req};
use crate::domain::account::{self, RepoView};
use crate::domain::release::{self, Which};
use crate::domain::{git_tag, protection, DomainError, DomainResult};
use crate::http::edge::name_segment;
use crate::http::render;
use crate::ids::{RepoPath, Role};

/// The repository, for callers with at least `need` (others: sign in, or 403).
async fn repo_for(rq: &Req, path: &RepoPath, need: Role) -> DomainResult<RepoView> {
    let repo = account::get_repo(&rq.core, rq.who(), path).await?;
    if rq.viewer.is_none() {
        return Err(DomainError::Unauthenticated("sign in first".into()));
    }
    if repo.permission < Some(need) {
        return Err(DomainError::Forbidden(format!(
            "you do not have the access to {} that deleting this needs",
            repo.full_name
        )));
    }
    Ok(repo)
}

/// The confirmation page itself: a heading, what goes, and the button that does it.
#[allow(clippy::too_many_arguments)]
fn confirm_page(
    rq: &Req,
    repo: &RepoView,
    tab: Tab,
    title: &str,
    what: Markup,
    action: &str,
    button: &str,
    cancel: &str,
) -> Response {
    let body = html! {
        (repo_header(repo, tab))
        section.confirm {
            h2 { (title) }
            (what)
            form.confirm method="post" action=(action) {
                (layout::csrf_field(rq))
                div.actions {
                    button.danger type="submit" { (button) }
                    a.button href=(cancel) { "Cancel" }
                }
            }
        }
    };
    html(
        StatusCode::OK,
        page(rq, &format!("{title} · {}", repo.full_name), body),
    )
}

async fn release_delete(rq: Req, path: RepoPath, tag: String) -> DomainResult<Response> {
    let repo = repo_for(&rq, &path, Role::Write).await?;
    let rel = release::get(&rq.core, rq.who(), &path, Which::Tag(tag)).await?;
    let rel = render::release(&rq.base, &path, &rel);
    let b = repo_base(&repo);
    let t = seg(&rel.tag_name);
    let what = html! {
        p { "The release " strong { (rel.name) } " on tag " code { (rel.tag_name) } " will be deleted"
            @if rel.assets.is_empty() { "." } @else { ", with its " (rel.assets.len()) " file(s):" } }
        @if !rel.assets.is_empty() {
            ul.assetlist { @for a in &rel.assets { li { (a.name) " (" (layout::size(a.size)) ")" } } }
        }
        p.help { "The git tag " code { (rel.tag_name) } " stays. This cannot be undone." }
    };
    Ok(confirm_page(
        &rq,
        &repo,
        Tab::Releases,
        &format!("Delete release {}?", rel.tag_name),
        what,
        &format!("{b}/releases/delete/{t}"),
        "Delete this release",
        &release_url(&repo, &rel.tag_name),
    ))
}

async fn asset_delete(rq: Req, path: RepoPath, tag: String, id: u64) -> DomainResult<Response> {
    let repo = repo_for(&rq, &path, Role::Write).await?;
    let rel = release::get(&rq.core, rq.who(), &path, Which::Tag(tag)).await?;
    let rel = render::release(&rq.base, &path, &rel);
    let asset = rel
        .assets
        .iter()
        .find(|a| a.id == id)
        .ok_or_else(|| DomainError::NotFound(format!("asset {id} not found")))?;
    let b = repo_base(&repo);
    let t = seg(&rel.tag_name);
    let what = html! {
        p { "The file " strong { (asset.name) } " (" (layout::size(asset.size)) ") of release "
            strong { (rel.name) } " will be deleted." }
        p.meta {
            "SHA-256 " (layout::sha256(&asset.sha256))
            @if let Some(b3) = asset.blake3.as_deref() { " · BLAKE3 " (layout::blake3(Some(b3))) }
        }
        p.help { "This cannot be undone." }
    };
    Ok(confirm_page(
        &rq,
        &repo,
        Tab::Releases,
        &format!("Delete {}?", asset.name),
        what,
        &format!("{b}/releases/delete-asset/{t}/{id}"),
        "Delete this file",
        &format!("{b}/releases/edit/{t}"),
    ))
}

async fn tag_delete(rq: Req, path: RepoPath, tag: String) -> DomainResult<Response> {
    let repo = repo_for(&rq, &path, Role::Write).await?;
    let t = git_tag::get(&rq.core, rq.who(), &path, &tag).await?;
    let anchored = release::anchored_on(&rq.core, rq.who(), &path, vec![t.name.clone()]).await?;
    let b = repo_base(&repo);
    let what = html! {
        p { "The git tag " code { (t.name) } " (commit " (layout::short_sha(&t.commit)) ") will be deleted." }
        @if let Some(rel) = anchored.get(&t.name) {
            p { "The release " a href=(release_url(&repo, &t.name)) { (rel.name) }
                " stays, marked as having lost its tag." }
        }
        @if t.immutable {
            p.flash.bad role="alert" { "This tag is immutable: an immutable protection rule matches it, so nobody can delete it." }
        } @else if t.protected {
            p.flash.bad role="alert" { "This tag is protected: only admins of " (repo.full_name) " can delete it." }
        }
        p.help { "Clones that already fetched the tag keep it." }
    };
    Ok(confirm_page(
        &rq,
        &repo,
        Tab::Tags,
        &format!("Delete tag {}?", t.name),
        what,
        &format!("{b}/tags/delete/{}", seg(&t.name)),
        "Delete this tag",
        &format!("{b}/tags"),
    ))
}

async fn rule_delete(rq: Req, path: RepoPath, id: u64) -> DomainResult<Response> {
    let repo = repo_for(&rq, &path, Role::Admin).await?;
    let rules = protection::list(&rq.core, rq.who(), &path).await?;
    let rule = rules
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| DomainError::NotFound(format!("protection rule {id} not found")))?;
    let b = repo_base(&repo);
    let what = html! {
        p { "The tag protection rule " code { (rule.pattern) } " will be removed." }
        p.help { "Tags it matches can then be deleted or moved by anyone with write access." }
    };
    Ok(confirm_page(
        &rq,
        &repo,
        Tab::Settings,
        "Remove protection rule?",
        what,
        &format!("{b}/settings/tag-protection/{id}/delete"),
        "Remove this rule",
        &format!("{b}/settings/tag-protection"),
    ))
}

/// The `GET` routes of the confirmation pages (the `POST`s live with their pages).
pub fn routes(p: PartsFilter) -> BoxedFilter<(Response,)> {
    let release = repo_segments()
        .and(warp::path("releases"))
        .and(warp::path("delete"))
        .and(name_segment())
        .and(warp::path::end())
        .and(warp::get())
        .and(p.clone())
        .then(|repo, tag, parts: Parts| parts.page(repo, |rq, path| release_delete(rq, path, tag)));
    let asset = repo_segments()
        .and(warp::path("releases"))
        .and(warp::path("delete-asset"))
        .and(name_segment())
        .and(warp::path::param::<u64>())
        .and(warp::path::end())
        .and(warp::get())
        .and(p.clone())
        .then(|repo, tag, id: u64, parts: Parts| {
            parts.page(repo, move |rq, path| asset_delete(rq, path, tag, id))
        });
    let tag = repo_segments()
        .and(warp::path("tags"))
        .and(warp::path("delete"))
        .and(name_segment())
        .and(warp::path::end())
        .and(warp::get())
        .and(p.clone())
        .then(|repo, tag, parts: Parts| parts.page(repo, |rq, path| tag_delete(rq, path, tag)));
    let rule = repo_segments()
        .and(warp::path!("settings" / "tag-protection" / u64 / "delete"))
        .and(warp::get())
        .and(p)
        .then(|repo, id, parts: Parts| parts.page(repo, move |rq, path| rule_delete(rq, path, id)));
    release
        .or(asset)
        .unify()
        .or(tag)
        .unify()
        .or(rule)
        .unify()
        .boxed()
}

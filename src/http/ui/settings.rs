//! Release settings in the web UI: a repository's `immutableReleases` (its settings page,
//! repository admins; on, off, or inherit the organization's default) and an organization's
//! default (`/-/orgs/<org>/settings`, organization admins; shown on the organization's page to
//! its members). Both call the same domain functions as `PATCH …/settings` and
//! `PATCH /api/v1/orgs/{org}/settings`.

use maud::html;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::layout::{self, page, repo_header, Tab};
use super::repo::{admin_repo, settings_nav, titled};
use super::{form_body, html, redirect, repo_segments, Form, Parts, PartsFilter, Req};
use crate::api::{EditRepoSettings, OrgSettings};
use crate::domain::immutable;
use crate::domain::{DomainError, DomainResult};
use crate::ids::RepoPath;

/// The three choices of the repository form, as posted (`value`) and shown.
const CHOICES: [(&str, &str); 3] = [
    ("inherit", "Inherit the organization's default"),
    ("on", "On: publishing a release makes it immutable"),
    ("off", "Off"),
];

async fn repo_page(
    rq: &Req,
    path: &RepoPath,
    status: StatusCode,
    error: Option<&str>,
) -> DomainResult<Response> {
    let repo = admin_repo(rq, path).await?;
    let s = immutable::repo_settings(&rq.core, rq.who(), path).await?;
    let current = match (s.immutable_releases_source.as_str(), s.immutable_releases) {
        ("repository", true) => "on",
        ("repository", false) => "off",
        _ => "inherit",
    };
    let b = super::repo_base(&repo);
    let body = html! {
        (repo_header(&repo, Tab::Settings))
        (settings_nav(&repo, "rel"))
        h2 { "Releases" }
        p.help {
            "With " strong { "immutable releases" } " on, publishing a release locks it: its git tag can no longer be "
            "moved or deleted by anyone, its assets cannot be added, replaced or deleted, and it cannot be deleted or "
            "turned back into a draft (its name and notes stay editable). Its tag name can never be used again in this "
            "repository. The server also signs an attestation of its assets. Drafts stay editable: create a draft, "
            "attach the assets, then publish."
        }
        p.immutable-status {
            "Immutable releases are "
            strong { @if s.immutable_releases { "on" } @else { "off" } }
            @match s.immutable_releases_source.as_str() {
                "repository" => { " (set on this repository)." }
                "organization" => { " (the default of " (repo.owner) ")." }
                _ => { " (the default)." }
            }
        }
        (layout::flash(error))
        form.row method="post" action={ (b) "/settings/releases" } {
            (layout::csrf_field(rq))
            fieldset {
                legend { "Immutable releases" }
                @for (value, label) in CHOICES {
                    label.check {
                        input type="radio" name="immutable_releases" value=(value) checked[value == current];
                        " " (label)
                    }
                }
            }
            button.primary type="submit" { "Save" }
        }
    };
    Ok(titled(rq, status, "Release settings", &repo, body))
}

async fn repo_get(rq: Req, path: RepoPath) -> DomainResult<Response> {
    repo_page(&rq, &path, StatusCode::OK, None).await
}

async fn repo_set(rq: Req, path: RepoPath, form: Form) -> DomainResult<Response> {
    let value = match form.text("immutable_releases").as_str() {
        "inherit" => None,
        "on" => Some(true),
        "off" => Some(false),
        _ => {
            let e = DomainError::Invalid("immutable_releases must be inherit, on or off".into());
            return repo_page(&rq, &path, super::status_of(&e), Some(&e.to_string())).await;
        }
    };
    let edit = EditRepoSettings {
        immutable_releases: Some(value),
    };
    immutable::edit_repo_settings(&rq.core, rq.who(), &path, edit).await?;
    Ok(redirect(&format!("/{path}/settings/releases")))
}

async fn org_page(rq: Req, org: String) -> DomainResult<Response> {
    let Some((s, can_edit)) = immutable::org_settings_for(&rq.core, rq.who(), &org).await? else {
        if rq.viewer.is_none() {
            return Err(DomainError::Unauthenticated("sign in first".into()));
        }
        return Err(DomainError::NotFound(format!(
            "organization {org} not found"
        )));
    };
    let body = html! {
        h1 { a href={ "/" (org) } { (org) } " · settings" }
        p.help {
            "The default of " strong { "immutable releases" } " for the repositories of " (org)
            " that do not set it themselves (a repository's own setting wins). With it on, publishing a release "
            "locks its tag and assets for good and signs an attestation."
        }
        p.immutable-status {
            "Immutable releases by default: " strong { @if s.immutable_releases { "on" } @else { "off" } }
        }
        @if can_edit {
            form.row method="post" action={ "/-/orgs/" (org) "/settings" } {
                (layout::csrf_field(&rq))
                label.check {
                    input type="checkbox" name="immutable_releases" value="1" checked[s.immutable_releases];
                    " Make releases immutable by default"
                }
                button.primary type="submit" { "Save" }
            }
        } @else {
            p.help { "Only admins of " (org) " can change it." }
        }
    };
    Ok(html(
        StatusCode::OK,
        page(&rq, &format!("{org} · settings"), body),
    ))
}

async fn org_set(rq: Req, org: String, form: Form) -> DomainResult<Response> {
    let s = OrgSettings {
        immutable_releases: form.checked("immutable_releases"),
    };
    immutable::edit_org_settings(&rq.core, rq.who(), &org, s).await?;
    Ok(redirect(&format!("/-/orgs/{org}/settings")))
}

/// The routes of the release settings pages.
pub fn routes(p: PartsFilter) -> BoxedFilter<(Response,)> {
    let repo_get = repo_segments()
        .and(warp::path!("settings" / "releases"))
        .and(warp::get())
        .and(p.clone())
        .then(|repo, parts: Parts| parts.page(repo, repo_get));
    let repo_set = repo_segments()
        .and(warp::path!("settings" / "releases"))
        .and(warp::post())
        .and(p.clone())
        .and(form_body())
        .then(|repo, parts: Parts, form| parts.form(form, repo, repo_set));
    let org_get = warp::path!("-" / "orgs" / String / "settings")
        .and(warp::get())
        .and(p.clone())
        .then(|org: String, parts: Parts| parts.page((), move |rq, ()| org_page(rq, org)));
    let org_set = warp::path!("-" / "orgs" / String / "settings")
        .and(warp::post())
        .and(p)
        .and(form_body())
        .then(|org: String, parts: Parts, form| {
            parts.form(form, (), move |rq, (), form| org_set(rq, org, form))
        });
    repo_get
        .or(repo_set)
        .unify()
        .or(org_get)
        .unify()
        .or(org_set)
        .unify()
        .boxed()
}

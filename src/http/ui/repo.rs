//! Repository pages besides releases: the overview, the Tags tab, Settings (tag protection and
//! collaborators) and the Packages tab.

use maud::{html, Markup};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::layout::{self, page, repo_header, Tab};
use super::{
    form_body, html, redirect, release_url, repo_base, repo_names, repo_segments, seg, Form, Parts,
    PartsFilter, Req,
};
use crate::domain::account::{self, RepoView};
use crate::domain::protection::RuleTarget;
use crate::domain::release::{self, Which};
use crate::domain::{git_tag, protection, registry, DomainError, DomainResult};
use crate::http::edge::name_segment;
use crate::http::page_query;
use crate::ids::{RepoPath, Role};

pub(super) fn titled(
    rq: &Req,
    status: StatusCode,
    title: &str,
    repo: &RepoView,
    body: Markup,
) -> Response {
    html(
        status,
        page(rq, &format!("{title} · {}", repo.full_name), body),
    )
}

/// `/<owner>/<repo>`: clone URL, latest release, where to go next.
async fn overview(rq: Req, path: RepoPath) -> DomainResult<Response> {
    let repo = account::get_repo(&rq.core, rq.who(), &path).await?;
    let latest = match release::get(&rq.core, rq.who(), &path, Which::Latest).await {
        Ok(v) => Some(crate::http::render::release(&rq.base, &path, &v)),
        Err(DomainError::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    // A README that cannot be read (a damaged object) costs the README, not the page.
    let readme = match crate::domain::readme::get(&rq.core, rq.who(), &path).await {
        Ok(r) => r,
        Err(e @ (DomainError::NotFound(_) | DomainError::Forbidden(_))) => return Err(e),
        Err(e) => {
            tracing::warn!(repo = %path, error = %e, "README not readable");
            None
        }
    };
    let body = html! {
        (repo_header(&repo, Tab::Overview))
        @if !repo.description.is_empty() { p.desc { (repo.description) } }
        h2 { "Clone" }
        pre.copy { code { "git clone " (rq.base) "/" (repo.full_name) ".git" } }
        h2 { "Latest release" }
        @if let Some(l) = latest {
            p {
                a href=(release_url(&repo, &l.tag_name)) { (l.name) }
                " " span.badge.latest { "Latest" }
                " · " code { (l.tag_name) }
                " · " (layout::time(l.published_at.as_deref().unwrap_or(&l.created_at)))
            }
        } @else {
            p.empty { "No published release yet." }
        }
        @if let Some(r) = &readme {
            section.readme aria-label="README" {
                h2 { (r.name) small.muted { " · " (r.branch) } }
                @match &r.text {
                    Some(text) => div.notes { (layout::trusted(super::render_markdown(text))) },
                    None => p.hint { (r.name) " is " (layout::size(r.size)) ", more than the "
                        (layout::size(crate::domain::readme::README_MAX)) " shown here." },
                }
            }
        }
    };
    Ok(titled(&rq, StatusCode::OK, "Overview", &repo, body))
}

fn tags_page(
    rq: &Req,
    repo: &RepoView,
    list: &crate::domain::Paged<git_tag::TagView>,
    anchored: &std::collections::HashMap<String, release::AnchoredRelease>,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let b = repo_base(repo);
    let role = repo.permission;
    let body = html! {
        (repo_header(repo, Tab::Tags))
        h2 { "Tags" }
        (layout::flash(error))
        @if list.items.is_empty() { p.empty { "No tags yet. Push one with " code { "git push origin v1.0.0" } "." } }
        @else {
            div.scroll {
                table.tags.reflow {
                    thead { tr { th { "Tag" } th { "Commit" } th { "Annotation" } th { "Release" } th { span.sr { "Actions" } } } }
                    tbody {
                        @for t in &list.items {
                            tr id={ "tag-" (t.name) } {
                                td data-label="Tag" {
                                    code { (t.name) }
                                    @if t.immutable { " " span.badge.protected title="An immutable protection rule matches this tag: nobody can move or delete it" { "🔒 Immutable" } }
                                    @else if t.protected { " " span.badge.protected title="A protection rule matches this tag" { "Protected" } }
                                }
                                td data-label="Commit" { (layout::short_sha(&t.commit)) }
                                td data-label="Annotation" {
                                    @if let Some(tg) = &t.tagger {
                                        (t.message.trim()) br;
                                        small { (tg.name) " · " (layout::time(&tg.date)) }
                                    } @else { small.muted { "lightweight" } }
                                }
                                td data-label="Release" {
                                    @if let Some(rel) = anchored.get(&t.name) {
                                        a href=(release_url(repo, &t.name)) { (rel.name) }
                                        @if rel.draft { " " span.badge.draft { "Draft" } }
                                    }
                                }
                                td.rowactions {
                                    // Mirrors the server's rule; the server decides on submit.
                                    @if !t.immutable && (role >= Some(Role::Admin) || (role >= Some(Role::Write) && !t.protected)) {
                                        (layout::delete_link(&format!("{b}/tags/delete/{}", seg(&t.name)), "Delete", "small"))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        (layout::pager(&format!("{b}/tags"), list.page.page, list.has_next))
    };
    titled(rq, status, "Tags", repo, body)
}

async fn tags(rq: Req, path: RepoPath) -> DomainResult<Response> {
    tags_with(rq, path, StatusCode::OK, None).await
}

async fn tags_with(
    rq: Req,
    path: RepoPath,
    status: StatusCode,
    error: Option<String>,
) -> DomainResult<Response> {
    let repo = account::get_repo(&rq.core, rq.who(), &path).await?;
    let list = git_tag::list(&rq.core, rq.who(), &path, page_query(&rq.query)?).await?;
    let names = list.items.iter().map(|t| t.name.clone()).collect();
    let anchored = release::anchored_on(&rq.core, rq.who(), &path, names).await?;
    Ok(tags_page(
        &rq,
        &repo,
        &list,
        &anchored,
        status,
        error.as_deref(),
    ))
}

async fn delete_tag(rq: Req, path: RepoPath, tag: String) -> DomainResult<Response> {
    match git_tag::delete(&rq.core, rq.who(), &path, &tag).await {
        Ok(()) => Ok(redirect(&format!("/{path}/tags"))),
        // Refused (protected) or already gone: show the list again with the reason.
        // (An invisible repository fails again in `tags_with`, with the same 404.)
        Err(e @ (DomainError::Forbidden(_) | DomainError::NotFound(_))) => {
            let status = super::status_of(&e);
            tags_with(rq, path, status, Some(e.to_string())).await
        }
        Err(e) => Err(e),
    }
}

pub(super) fn settings_nav(repo: &RepoView, active: &str) -> Markup {
    let b = repo_base(repo);
    html! {
        nav.subtabs aria-label="Settings" {
            a href={ (b) "/settings/tag-protection" } aria-current=[(active == "tp").then_some("page")] { "Tag protection" }
            a href={ (b) "/settings/collaborators" } aria-current=[(active == "co").then_some("page")] { "Collaborators" }
            a href={ (b) "/settings/releases" } aria-current=[(active == "rel").then_some("page")] { "Releases" }
        }
    }
}

/// The repository of a settings page, for its admins only (others: sign in, or 403).
pub(super) async fn admin_repo(rq: &Req, path: &RepoPath) -> DomainResult<RepoView> {
    let repo = account::get_repo(&rq.core, rq.who(), path).await?;
    if rq.viewer.is_none() {
        return Err(DomainError::Unauthenticated("sign in first".into()));
    }
    if repo.permission < Some(Role::Admin) {
        return Err(DomainError::Forbidden(format!(
            "only admins of {} can change its settings",
            repo.full_name
        )));
    }
    Ok(repo)
}

async fn protection_page(
    rq: &Req,
    path: &RepoPath,
    pattern: &str,
    status: StatusCode,
    error: Option<&str>,
) -> DomainResult<Response> {
    let repo = admin_repo(rq, path).await?;
    let rules = protection::list(&rq.core, rq.who(), path).await?;
    let b = repo_base(&repo);
    let body = html! {
        (repo_header(&repo, Tab::Settings))
        (settings_nav(&repo, "tp"))
        h2 { "Tag protection" }
        p.help {
            "A protected tag can be created by anyone with write access, but only admins can delete or move it — "
            "through this page, the API, " code { "git push --delete" } " or a forced push. "
            "Patterns are globs matched against the whole tag name: " code { "*" } " matches any characters "
            "(including " code { "/" } "), " code { "?" } " one character, " code { "[0-9]" } " a set. "
            code { "v*" } " protects " code { "v1.2.0" } " and also " code { "version2" } "; "
            code { "v[0-9]*" } " only tags like " code { "v1.2.0" } ". Matching is case-sensitive."
        }
        p.help {
            "A rule protects git tags, registry tags (the tags of this repository's container images), or both. "
            "A protected registry tag cannot be pushed to another digest or deleted — by tag, or by deleting the manifest it points to — except by an admin; "
            "an " strong { "immutable" } " rule refuses that to admins too (what " code { "v*" } " release images want). "
            "On git tags an immutable rule works the same way: a matching tag can be created, then nobody (admins included) can move or delete it, on any path."
        }
        (layout::flash(error))
        @if rules.is_empty() { p.empty { "No tags are protected." } }
        @else {
            ul.rules {
                @for rule in &rules {
                    li {
                        code { (rule.pattern) }
                        " " span.badge.target title="What the rule protects" { (target_label(rule.target)) }
                        @if rule.immutable { " " span.badge.immutable title="Nobody, admins included, can move or delete a matching tag" { "🔒 Immutable" } }
                        small.muted { " added by " (rule.created_by) " · " (layout::time(&rule.created_at)) }
                        (layout::delete_link(&format!("{b}/settings/tag-protection/{}/delete", rule.id), "Remove", "small"))
                    }
                }
            }
        }
        form.row method="post" action={ (b) "/settings/tag-protection" } {
            (layout::csrf_field(rq))
            label for="pattern" { "Pattern" }
            input #pattern type="text" name="pattern" value=(pattern) placeholder="v*" required autocomplete="off";
            label for="target" { "Protects" }
            select #target name="target" {
                @for t in [RuleTarget::Git, RuleTarget::Registry, RuleTarget::Both] {
                    option value=(t.as_str()) selected[t == RuleTarget::Git] { (target_label(t)) }
                }
            }
            label.check { input type="checkbox" name="immutable" value="1"; " Immutable (no admin override: matching tags are never moved or deleted)" }
            button.primary type="submit" { "Add rule" }
        }
    };
    Ok(titled(rq, status, "Tag protection", &repo, body))
}

async fn protection_get(rq: Req, path: RepoPath) -> DomainResult<Response> {
    protection_page(&rq, &path, "", StatusCode::OK, None).await
}

/// How the settings page names a rule's target.
fn target_label(t: RuleTarget) -> &'static str {
    match t {
        RuleTarget::Git => "Git tags",
        RuleTarget::Registry => "Registry tags",
        RuleTarget::Both => "Git and registry tags",
    }
}

async fn protection_add(rq: Req, path: RepoPath, form: Form) -> DomainResult<Response> {
    let pattern = form.text("pattern");
    let target = match form.text("target").as_str() {
        "" => Some(RuleTarget::Git),
        t => RuleTarget::parse(t),
    };
    let immutable = form.checked("immutable");
    let created = match target {
        Some(t) => protection::create(&rq.core, rq.who(), &path, &pattern, t, immutable).await,
        None => Err(DomainError::Invalid(
            "target must be git, registry or both".into(),
        )),
    };
    match created {
        Ok(_) => Ok(redirect(&format!("/{path}/settings/tag-protection"))),
        Err(e @ (DomainError::Invalid(_) | DomainError::Conflict(_))) => {
            let status = super::status_of(&e);
            protection_page(&rq, &path, &pattern, status, Some(&e.to_string())).await
        }
        Err(e) => Err(e),
    }
}

async fn protection_delete(rq: Req, path: RepoPath, id: u64) -> DomainResult<Response> {
    protection::delete(&rq.core, rq.who(), &path, id).await?;
    Ok(redirect(&format!("/{path}/settings/tag-protection")))
}

const ROLES: [(&str, &str); 3] = [
    ("read", "Read: clone, pull, see releases"),
    ("write", "Write: push, publish releases, push images"),
    ("admin", "Admin: settings, protected tags"),
];

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Read => "read",
        Role::Write => "write",
        Role::Admin => "admin",
    }
}

async fn collaborators_page(
    rq: &Req,
    path: &RepoPath,
    status: StatusCode,
    error: Option<&str>,
) -> DomainResult<Response> {
    let repo = admin_repo(rq, path).await?;
    let people = account::list_collaborators(&rq.core, rq.who(), path).await?;
    let b = repo_base(&repo);
    let body = html! {
        (repo_header(&repo, Tab::Settings))
        (settings_nav(&repo, "co"))
        h2 { "Collaborators" }
        p.help { "The owner and site admins are admins of every repository they own; organization roles apply to all of an organization's repositories." }
        (layout::flash(error))
        @if people.is_empty() { p.empty { "No collaborators yet." } }
        @else {
            ul.rules {
                @for c in &people {
                    li {
                        strong { (c.username) }
                        form.inline method="post" action={ (b) "/settings/collaborators" } {
                            (layout::csrf_field(rq))
                            input type="hidden" name="username" value=(c.username);
                            label.sr for={ "role-" (c.username) } { "Role of " (c.username) }
                            select id={ "role-" (c.username) } name="role" {
                                @for (value, label) in ROLES {
                                    option value=(value) selected[value == role_name(c.role)] { (label) }
                                }
                            }
                            button.small type="submit" { "Change" }
                        }
                        form.inline method="post" action={ (b) "/settings/collaborators" } {
                            (layout::csrf_field(rq))
                            input type="hidden" name="username" value=(c.username);
                            input type="hidden" name="role" value="none";
                            button.danger.small type="submit" { "Remove" }
                        }
                    }
                }
            }
        }
        form.row method="post" action={ (b) "/settings/collaborators" } {
            (layout::csrf_field(rq))
            label for="username" { "Username" }
            input #username type="text" name="username" required autocomplete="off";
            label for="role" { "Role" }
            select #role name="role" {
                @for (value, label) in ROLES { option value=(value) selected[value == "write"] { (label) } }
            }
            button.primary type="submit" { "Add collaborator" }
        }
    };
    Ok(titled(rq, status, "Collaborators", &repo, body))
}

async fn collaborators_get(rq: Req, path: RepoPath) -> DomainResult<Response> {
    collaborators_page(&rq, &path, StatusCode::OK, None).await
}

async fn collaborators_set(rq: Req, path: RepoPath, form: Form) -> DomainResult<Response> {
    let user = form.text("username");
    let role = match form.text("role").as_str() {
        "none" => None,
        other => Some(Role::parse(other)?),
    };
    match account::set_collaborator(&rq.core, rq.who(), &path, &user, role).await {
        Ok(()) => Ok(redirect(&format!("/{path}/settings/collaborators"))),
        Err(e @ (DomainError::NotFound(_) | DomainError::Invalid(_))) => {
            let status = super::status_of(&e);
            collaborators_page(&rq, &path, status, Some(&e.to_string())).await
        }
        Err(e) => Err(e),
    }
}

/// The Packages tab: every image of the repository with its tags and the lines to pull them.
async fn packages(rq: Req, path: RepoPath) -> DomainResult<Response> {
    let repo = account::get_repo(&rq.core, rq.who(), &path).await?;
    let images = registry::packages(&rq.core, rq.who(), &path).await?;
    let mut sections = Vec::new();
    for image in images {
        let tags = match registry::package_tags(&rq.core, rq.who(), &path, &image.name).await {
            Ok(t) => t,
            Err(DomainError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        sections.push((image, tags));
    }
    let host = rq.host().to_owned();
    // Plain-HTTP registries need skopeo told so; behind TLS the default is right.
    let tls = if rq.secure {
        ""
    } else {
        "--src-tls-verify=false "
    };
    let body = html! {
        (repo_header(&repo, Tab::Packages))
        h2 { "Packages" }
        @if sections.is_empty() {
            p.empty { "No container images yet. Push one with " code { "skopeo copy … docker://" (host) "/" (repo.full_name) ":latest" } "." }
        }
        @for (image, tags) in &sections {
            section.package id={ "pkg-" (image.name) } {
                h3 { code { (layout::breakable(&format!("{host}/{}", image.name))) } }
                p.meta { (image.tag_count) @if image.tag_count == 1 { " tag · " } @else { " tags · " } (layout::size(image.total_size))
                    @if let Some(t) = &image.last_push { " · last push " (layout::time(t)) } }
                div.scroll {
                    table.ptags.reflow {
                        thead { tr { th { "Tag" } th { "Digest" } th { "Size" } th { "Platforms" } th { "Pushed" } th { "Pull" } } }
                        tbody {
                            @for t in tags {
                                tr {
                                    td data-label="Tag" { code { (t.tag) } @if t.protected { " " span.lock title="Protected by a registry tag-protection rule" aria-label="protected" { "🔒" } } }
                                    td data-label="Digest" { (layout::short_sha(t.digest.trim_start_matches("sha256:"))) }
                                    td.num data-label="Size" { (layout::size(t.size)) }
                                    td data-label="Platforms" { @if t.platforms.is_empty() { small.muted { "single" } } @else { (t.platforms.join(", ")) } }
                                    td data-label="Pushed" { (layout::time(&t.pushed_at)) }
                                    td.pull data-label="Pull" {
                                        code.copy.docker { (layout::breakable(&format!("docker pull {host}/{}:{}", image.name, t.tag))) }
                                        code.copy.skopeo { (layout::breakable(&format!("skopeo copy {tls}docker://{host}/{}:{} oci:{}:{}", image.name, t.tag, image.name.rsplit('/').next().unwrap_or("image"), t.tag))) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(titled(&rq, StatusCode::OK, "Packages", &repo, body))
}

/// Routes of the repository pages other than releases.
pub fn routes(p: PartsFilter) -> BoxedFilter<(Response,)> {
    let overview = repo_segments()
        .and(warp::path::end())
        .and(warp::get())
        .and(p.clone())
        .then(|repo, parts: Parts| parts.page(repo, overview));
    let tags = repo_segments()
        .and(warp::path!("tags"))
        .and(warp::get())
        .and(p.clone())
        .then(|repo, parts: Parts| parts.page(repo, tags));
    let delete_tag = repo_segments()
        .and(warp::path("tags"))
        .and(warp::path("delete"))
        .and(name_segment())
        .and(warp::path::end())
        .and(warp::post())
        .and(p.clone())
        .and(form_body())
        .then(|repo, tag, parts: Parts, form| {
            parts.form(form, repo, |rq, path, _| delete_tag(rq, path, tag))
        });
    let settings = repo_names()
        .and(warp::path!("settings"))
        .and(warp::get())
        .map(|o: String, r: String| redirect(&format!("/{o}/{r}/settings/tag-protection")));
    let protection_get = repo_segments()
        .and(warp::path!("settings" / "tag-protection"))
        .and(warp::get())
        .and(p.clone())
        .then(|repo, parts: Parts| parts.page(repo, protection_get));
    let protection_add = repo_segments()
        .and(warp::path!("settings" / "tag-protection"))
        .and(warp::post())
        .and(p.clone())
        .and(form_body())
        .then(|repo, parts: Parts, form| parts.form(form, repo, protection_add));
    let protection_delete = repo_segments()
        .and(warp::path!("settings" / "tag-protection" / u64 / "delete"))
        .and(warp::post())
        .and(p.clone())
        .and(form_body())
        .then(|repo, id, parts: Parts, form| {
            parts.form(form, repo, move |rq, path, _| {
                protection_delete(rq, path, id)
            })
        });
    let collaborators_get = repo_segments()
        .and(warp::path!("settings" / "collaborators"))
        .and(warp::get())
        .and(p.clone())
        .then(|repo, parts: Parts| parts.page(repo, collaborators_get));
    let collaborators_set = repo_segments()
        .and(warp::path!("settings" / "collaborators"))
        .and(warp::post())
        .and(p.clone())
        .and(form_body())
        .then(|repo, parts: Parts, form| parts.form(form, repo, collaborators_set));
    let packages = repo_segments()
        .and(warp::path!("packages"))
        .and(warp::get())
        .and(p)
        .then(|repo, parts: Parts| parts.page(repo, packages));
    overview
        .or(tags)
        .unify()
        .or(delete_tag)
        .unify()
        .or(settings)
        .unify()
        .or(protection_get)
        .unify()
        .or(protection_add)
        .unify()
        .or(protection_delete)
        .unify()
        .or(collaborators_get)
        .unify()
        .or(collaborators_set)
        .unify()
        .or(packages)
        .unify()
        .boxed()
}

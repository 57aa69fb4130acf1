//! The Releases tab: the list, one release, drafting, editing, deleting, and asset downloads.
//! Forms with files are multipart and streamed: each file goes straight to `upload_asset`, never
//! into memory. A new release with files is created as a draft first and published only after
//! its files are stored, so the Latest badge never points at a release with missing assets.

use futures_util::StreamExt;
use maud::{html, Markup};
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::multipart::FormData;
use warp::reply::Response;
use warp::Filter;

use super::layout::{self, page, repo_header, Tab};
use super::{
    form_body, html, redirect, release_url, repo_base, repo_segments, seg, Form, Parts,
    PartsFilter, Req,
};
use crate::domain::account::{self, RepoView};
use crate::domain::release::{
    self, AssetRef, CreateRelease, ReleaseView, UpdateRelease, UploadMeta, Which,
};
use crate::domain::{git_tag, DomainError, DomainResult, Page};
use crate::http::edge::name_segment;
use crate::http::{drain_form, DRAIN_ON_ERROR};
use crate::http::{page_query, part_file_name, part_stream, render};
use crate::ids::{RepoPath, Role};

/// Largest text field of a release form (the notes limit plus room).
const TEXT_FIELD_LIMIT: u64 = (1 << 20) + 4096;

fn can_write(repo: &RepoView) -> bool {
    repo.permission >= Some(Role::Write)
}

fn require_write(rq: &Req, repo: &RepoView) -> DomainResult<()> {
    if rq.viewer.is_none() {
        return Err(DomainError::Unauthenticated("sign in first".into()));
    }
    if can_write(repo) {
        Ok(())
    } else {
        Err(DomainError::Forbidden(format!(
            "you need write access to {} to change its releases",
            repo.full_name
        )))
    }
}

/// The Latest / Pre-release / Draft badges, exactly as the API decides them.
fn badges(r: &ReleaseView) -> Markup {
    html! {
        @if r.latest { span.badge.latest { "Latest" } " " }
        @if r.prerelease { span.badge.pre { "Pre-release" } " " }
        @if r.draft { span.badge.draft { "Draft" } " " }
        @if !r.tag_exists && !r.draft { span.badge.warn title="The git tag was deleted" { "Tag deleted" } }
        @if r.immutable { " " span.badge.immutable title="Immutable (repository setting immutableReleases): its tag and assets cannot change; only the title and notes can" { "\u{1F512} Immutable" } }
    }
}

fn release_card(repo: &RepoView, r: &ReleaseView, heading_link: bool) -> Markup {
    let b = repo_base(repo);
    let when = r.published_at.as_deref().unwrap_or(&r.created_at);
    html! {
        article.release id={ "release-" (r.id) } {
            header {
                h2 {
                    @if heading_link { a href=(release_url(repo, &r.tag_name)) { (r.name) } }
                    @else { (r.name) }
                }
                div.badges { (badges(r)) }
            }
            p.meta {
                "Tag " code { (r.tag_name) }
                " · commit " (layout::short_sha(&r.target_commit))
                " · by " strong { (r.author.username) }
                " · " (layout::time(when))
            }
            @if let Some(now) = r.tag_commit.as_deref().filter(|c| *c != r.target_commit) {
                p.hint { "The tag was moved; it now points at " (layout::short_sha(now)) "." }
            }
            @if !r.body.trim().is_empty() {
                div.notes { (layout::trusted(super::render_markdown(&r.body))) }
            }
            @if !r.assets.is_empty() {
                div.scroll {
                    table.assets.reflow {
                        caption { "Assets" }
                        thead { tr { th { "Name" } th { "Size" } th { "SHA-256" } th { "BLAKE3" } th { "Downloads" } } }
                        tbody {
                            @for a in &r.assets {
                                tr {
                                    td data-label="Name" { a href={ (b) "/releases/download/" (seg(&r.tag_name)) "/" (seg(&a.name)) } download { (a.name) } }
                                    td.num data-label="Size" { (layout::size(a.size)) }
                                    td data-label="SHA-256" { (layout::sha256(&a.sha256)) }
                                    td data-label="BLAKE3" { (layout::blake3(a.blake3.as_deref())) }
                                    td.num data-label="Downloads" { (a.download_count) }
                                }
                            }
                        }
                    }
                }
            }
            (super::links::source_code(repo, r))
            @if r.immutable {
                p.meta {
                    "Signed attestation: "
                    a href={ (b) "/releases/attestation/" (seg(&r.tag_name)) } download { "download" }
                    " · " a href="/-/attestation-keys" { "public keys" }
                    " (check with " code { "pfai release verify" } ")"
                }
            }
            @if can_write(repo) {
                div.actions {
                    a.button href={ (b) "/releases/edit/" (seg(&r.tag_name)) } { "Edit" }
                    @if !r.immutable {
                        (layout::delete_link(&format!("{b}/releases/delete/{}", seg(&r.tag_name)), "Delete", ""))
                    }
                }
            }
        }
    }
}

async fn list(rq: Req, path: RepoPath) -> DomainResult<Response> {
    let repo = account::get_repo(&rq.core, rq.who(), &path).await?;
    let p = page_query(&rq.query)?;
    let list = render::releases(
        &rq.base,
        &path,
        &release::list(&rq.core, rq.who(), &path, p).await?,
    );
    let b = repo_base(&repo);
    let body = html! {
        (repo_header(&repo, Tab::Releases))
        div.bar {
            h2 { "Releases" }
            @if can_write(&repo) { a.button.primary href={ (b) "/releases/new" } { "Draft a new release" } }
        }
        @if list.items.is_empty() { p.empty { "There are no releases yet." } }
        @for rel in &list.items { (release_card(&repo, rel, true)) }
        (layout::pager(&format!("{b}/releases"), list.page.page, list.has_next))
    };
    Ok(html(
        StatusCode::OK,
        page(&rq, &format!("Releases · {}", repo.full_name), body),
    ))
}

async fn show(rq: Req, path: RepoPath, tag: String) -> DomainResult<Response> {
    let repo = account::get_repo(&rq.core, rq.who(), &path).await?;
    let rel = release::get(&rq.core, rq.who(), &path, Which::Tag(tag)).await?;
    let rel = render::release(&rq.base, &path, &rel);
    let body = html! {
        (repo_header(&repo, Tab::Releases))
        p.crumbs { a href={ (repo_base(&repo)) "/releases" } { "Releases" } " / " (rel.tag_name) }
        (release_card(&repo, &rel, false))
    };
    Ok(html(
        StatusCode::OK,
        page(
            &rq,
            &format!("{} · {} · Releases", rel.name, repo.full_name),
            body,
        ),
    ))
}

/// What a release form holds, to show it again after a validation error.
#[derive(Debug, Default)]
struct Values {
    /// A new tag typed in.
    tag: String,
    target: String,
    title: String,
    notes: String,
    prerelease: bool,
    /// An existing tag picked from the list.
    existing_tag: String,
    /// Show the rendered notes under the form (the Preview button).
    preview: bool,
    /// Files chosen before a preview (a preview does not upload them).
    dropped_files: Vec<String>,
}

impl Values {
    fn from_form(f: &Form) -> Values {
        Values {
            tag: f.text("tag"),
            target: f.text("target"),
            title: f.text("title"),
            notes: f.get("notes").unwrap_or("").to_owned(),
            prerelease: f.checked("prerelease"),
            existing_tag: f.text("existing_tag"),
            preview: false,
            dropped_files: Vec::new(),
        }
    }

    /// The tag the release goes on: the picked existing tag or the typed new one (exactly one).
    fn chosen_tag(&self) -> DomainResult<(String, bool)> {
        match (self.existing_tag.is_empty(), self.tag.is_empty()) {
            (true, true) => Err(DomainError::Invalid(
                "choose an existing tag or type a new one".into(),
            )),
            (false, false) if self.existing_tag != self.tag => Err(DomainError::Invalid(format!(
                "choose an existing tag ({}) or type a new one ({}), not both",
                self.existing_tag, self.tag
            ))),
            (false, _) => Ok((self.existing_tag.clone(), true)),
            (true, false) => Ok((self.tag.clone(), false)),
        }
    }
}

async fn new_form_page(
    rq: &Req,
    path: &RepoPath,
    repo: &RepoView,
    v: &Values,
    status: StatusCode,
    error: Option<&str>,
) -> DomainResult<Response> {
    let tags = git_tag::list(&rq.core, rq.who(), path, Page::new(None, Some(100))?).await?;
    let branches = git_tag::branches(&rq.core, rq.who(), path).await?;
    let default_target = if v.target.is_empty() {
        branches
            .iter()
            .find(|b| *b == "main" || *b == "master")
            .or(branches.first())
            .cloned()
            .unwrap_or_default()
    } else {
        v.target.clone()
    };
    let b = repo_base(repo);
    let body = html! {
        (repo_header(repo, Tab::Releases))
        h2 { "Draft a new release" }
        (layout::flash(error))
        form.stack method="post" action={ (b) "/releases/new" } enctype="multipart/form-data" {
            (layout::csrf_field(rq))
            fieldset.tagpick {
                legend { "Tag" }
                label for="existing-tag" { "An existing tag" }
                select #existing-tag name="existing_tag" {
                    option value="" selected[v.existing_tag.is_empty()] { "— none: create a new tag —" }
                    @for t in tags.items.iter().rev() {
                        option value=(t.name) selected[t.name == v.existing_tag] { (t.name) }
                    }
                }
                label for="tag" { "or a new tag" }
                input #tag type="text" name="tag" value=(v.tag)
                    placeholder="v1.0.0" autocomplete="off" aria-describedby="tag-help";
                label for="target" { "created from branch" }
                select #target name="target" {
                    @if !default_target.is_empty() && !branches.contains(&default_target) {
                        option value=(default_target) selected { (default_target) }
                    }
                    @for br in &branches { option value=(br) selected[*br == default_target] { (br) } }
                }
                p.help #tag-help { "Pick an existing tag, or type a new one: it is created on the branch's newest commit when the release is published." }
            }
            label for="title" { "Release title" }
            input #title type="text" name="title" value=(v.title) placeholder="Defaults to the tag";
            label for="notes" { "Notes (Markdown)" }
            textarea #notes name="notes" rows="10" { (v.notes) }
            @if v.preview {
                section.preview aria-label="Preview of the notes" {
                    h3 { "Preview" }
                    @if v.notes.trim().is_empty() { p.empty { "Nothing to preview yet." } }
                    @else { div.notes { (layout::trusted(super::render_markdown(&v.notes))) } }
                }
            }
            // Before the files, so its `action` arrives before any file part (see `generating`).
            div.actions { button type="submit" name="action" value=(GENERATE) { "Generate release notes" } }
            label.check { input type="checkbox" name="prerelease" value="1" checked[v.prerelease]; " This is a pre-release" }
            label for="files" { "Attach files" }
            input #files type="file" name="files" multiple;
            @if !v.dropped_files.is_empty() {
                p.hint { "Preview does not upload files: choose " (v.dropped_files.join(", ")) " again before publishing." }
            }
            // One group for every submit button of this form (Generate release notes goes here too).
            div.actions {
                button.primary type="submit" name="action" value="publish" { "Publish release" }
                button type="submit" name="action" value="draft" { "Save draft" }
                button type="submit" name="action" value="preview" formaction={ (b) "/releases/new/preview" }
                    formenctype="application/x-www-form-urlencoded" formnovalidate { "Preview" }
            }
        }
    };
    Ok(html(
        status,
        page(rq, &format!("New release · {}", repo.full_name), body),
    ))
}

/// `POST …/releases/new/preview` (the Preview button, urlencoded: no file is uploaded): the
/// form again, as typed, with the notes rendered under it.
async fn preview(rq: Req, path: RepoPath, form: Form) -> DomainResult<Response> {
    let repo = account::get_repo(&rq.core, rq.who(), &path).await?;
    require_write(&rq, &repo)?;
    let mut v = Values::from_form(&form);
    v.preview = true;
    v.dropped_files = form
        .all("files")
        .into_iter()
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect();
    new_form_page(&rq, &path, &repo, &v, StatusCode::OK, None).await
}

async fn new_form(rq: Req, path: RepoPath) -> DomainResult<Response> {
    let repo = account::get_repo(&rq.core, rq.who(), &path).await?;
    require_write(&rq, &repo)?;
    new_form_page(&rq, &path, &repo, &Values::default(), StatusCode::OK, None).await
}

/// Reads a text part of a multipart form (bounded).
async fn read_text(part: warp::multipart::Part) -> DomainResult<String> {
    let mut s = part_stream(part);
    let bytes = crate::http::read_limited(&mut s, TEXT_FIELD_LIMIT).await?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The repository of a release form; on refusal the form is drained (bounded) first.
async fn form_repo(rq: &Req, path: &RepoPath, form: &mut FormData) -> DomainResult<RepoView> {
    let found = async {
        let repo = account::get_repo(&rq.core, rq.who(), path).await?;
        require_write(rq, &repo)?;
        Ok(repo)
    }
    .await;
    if found.is_err() {
        drain_form(form, DRAIN_ON_ERROR).await;
    }
    found
}

/// Streams one file part into a release.
async fn store_file(
    rq: &Req,
    path: &RepoPath,
    tag: &str,
    name: String,
    part: warp::multipart::Part,
) -> DomainResult<()> {
    let meta = UploadMeta {
        name: Some(name),
        label: None,
        content_type: part.content_type().map(str::to_owned),
    };
    release::upload_asset(&rq.core, rq.who(), path, tag, meta, part_stream(part)).await?;
    Ok(())
}

/// Reads a multipart form up to its next file: text fields are collected into `fields`, and
/// empty file parts ("no file chosen", which browsers still send) are skipped. `Ok(None)` at
/// the end of the form.
async fn next_file(
    form: &mut FormData,
    fields: &mut Form,
) -> DomainResult<Option<(String, warp::multipart::Part)>> {
    while let Some(part) = form.next().await {
        let part =
            part.map_err(|e| DomainError::BadRequest(format!("the form could not be read: {e}")))?;
        match part_file_name(&part) {
            None => {
                let name = part.name().to_owned();
                let value = read_text(part).await?;
                fields.push(name, value);
            }
            Some(f) if f.is_empty() => {
                let mut s = part_stream(part);
                while let Some(Ok(_)) = s.next().await {}
            }
            Some(file_name) => return Ok(Some((file_name, part))),
        }
    }
    Ok(None)
}

/// Walks a new-release form: text fields, then files. Creates the release (as a draft when
/// files follow) at the first file or at the end. Returns the tag once created.
async fn create_from_form(
    rq: &Req,
    path: &RepoPath,
    form: &mut FormData,
    fields: &mut Form,
    created: &mut Option<String>,
) -> DomainResult<()> {
    while let Some((file_name, part)) = next_file(form, fields).await? {
        if generating(fields) {
            // Only the notes are asked for: the files are drained, nothing is created.
            return Ok(());
        }
        let tag = match created.clone() {
            Some(t) => t,
            None => {
                let t = create_release(rq, path, fields, true).await?;
                *created = Some(t.clone());
                t
            }
        };
        store_file(rq, path, &tag, file_name, part).await?;
    }
    if generating(fields) {
        return Ok(());
    }
    let publish = fields.get("action") != Some("draft");
    match created.clone() {
        None => {
            let t = create_release(rq, path, fields, !publish).await?;
            *created = Some(t);
        }
        Some(tag) if publish => {
            let patch = UpdateRelease {
                draft: Some(false),
                ..UpdateRelease::default()
            };
            release::update(&rq.core, rq.who(), path, &tag, patch).await?;
        }
        Some(_) => {}
    }
    Ok(())
}

async fn create_release(
    rq: &Req,
    path: &RepoPath,
    fields: &Form,
    draft: bool,
) -> DomainResult<String> {
    rq.check_form(fields)?;
    let v = Values::from_form(fields);
    let (tag, existing) = v.chosen_tag()?;
    let input = CreateRelease {
        tag_name: tag,
        // An existing tag already names its commit; the branch is for a new tag.
        target_commit: (!existing && !v.target.is_empty()).then_some(v.target),
        name: (!v.title.is_empty()).then_some(v.title),
        body: Some(v.notes),
        draft,
        prerelease: v.prerelease,
        generate_notes: false,
        make_latest: None,
    };
    let created = release::create(&rq.core, rq.who(), path, input).await?;
    Ok(created.release.tag_name)
}

/// Whether an error is about what the user typed or sent (show the form again with it).
fn is_form_error(e: &DomainError) -> bool {
    matches!(
        e,
        DomainError::Invalid(_)
            | DomainError::Conflict(_)
            | DomainError::TooLarge(_)
            | DomainError::QuotaExceeded(_)
            | DomainError::BadRequest(_)
    )
}

async fn create(rq: Req, path: RepoPath, mut form: FormData) -> DomainResult<Response> {
    let repo = form_repo(&rq, &path, &mut form).await?;
    let mut fields = Form::default();
    let mut created = None;
    let outcome = create_from_form(&rq, &path, &mut form, &mut fields, &mut created).await;
    drain_form(&mut form, u64::MAX).await;
    match (outcome, created) {
        (Ok(()), None) if generating(&fields) => {
            generate_notes_page(&rq, &path, &repo, &fields).await
        }
        (Ok(()), Some(tag)) => Ok(redirect(&release_url(&repo, &tag))),
        (Ok(()), None) => Err(DomainError::internal("release form ended unhandled")),
        // The release exists but a file was refused: continue on its edit page.
        (Err(e), Some(tag)) if is_form_error(&e) => {
            let rel = release::get(&rq.core, rq.who(), &path, Which::Tag(tag)).await?;
            let rel = render::release(&rq.base, &path, &rel);
            edit_page(&rq, &repo, &rel, super::status_of(&e), Some(&e.to_string()))
        }
        (Err(e), None) if is_form_error(&e) => {
            let v = Values::from_form(&fields);
            new_form_page(
                &rq,
                &path,
                &repo,
                &v,
                super::status_of(&e),
                Some(&e.to_string()),
            )
            .await
        }
        (Err(e), _) => Err(e),
    }
}

/// The `action` of the draft form's "Generate release notes" button.
const GENERATE: &str = "generate-notes";

/// Whether the draft form was sent by its "Generate release notes" button.
fn generating(fields: &Form) -> bool {
    fields.get("action") == Some(GENERATE)
}

/// The draft form again, with notes generated from the git history put before what the notes
/// field held (no JavaScript: the button submits the form and this re-renders it).
async fn generate_notes_page(
    rq: &Req,
    path: &RepoPath,
    repo: &RepoView,
    fields: &Form,
) -> DomainResult<Response> {
    rq.check_form(fields)?;
    let mut v = Values::from_form(fields);
    let req = crate::domain::notes::GenerateNotes {
        tag_name: v.tag.clone(),
        target_commit: (!v.target.is_empty()).then(|| v.target.clone()),
        previous_tag_name: None,
    };
    match crate::domain::notes::generate(&rq.core, rq.who(), path, req).await {
        Ok(notes) => {
            v.notes = if v.notes.trim().is_empty() {
                notes.body
            } else {
                format!("{}\n{}", notes.body, v.notes)
            };
            new_form_page(rq, path, repo, &v, StatusCode::OK, None).await
        }
        Err(e) if is_form_error(&e) => {
            let status = super::status_of(&e);
            new_form_page(rq, path, repo, &v, status, Some(&e.to_string())).await
        }
        Err(e) => Err(e),
    }
}

fn edit_page(
    rq: &Req,
    repo: &RepoView,
    rel: &ReleaseView,
    status: StatusCode,
    error: Option<&str>,
) -> DomainResult<Response> {
    let b = repo_base(repo);
    let t = seg(&rel.tag_name);
    let body = html! {
        (repo_header(repo, Tab::Releases))
        p.crumbs { a href={ (b) "/releases" } { "Releases" } " / " a href=(release_url(repo, &rel.tag_name)) { (rel.tag_name) } " / edit" }
        h2 { "Edit release " (rel.tag_name) " " (badges(rel)) }
        (layout::flash(error))
        form.stack method="post" action={ (b) "/releases/edit/" (t) } enctype="multipart/form-data" {
            (layout::csrf_field(rq))
            label for="title" { "Release title" }
            input #title type="text" name="title" value=(rel.name) required;
            label for="notes" { "Notes (Markdown)" }
            textarea #notes name="notes" rows="10" { (rel.body) }
            label.check { input type="checkbox" name="prerelease" value="1" checked[rel.prerelease]; " This is a pre-release" }
            @if !rel.immutable {
                label for="files" { "Attach more files" }
                input #files type="file" name="files" multiple;
            }
            div.actions {
                @if rel.draft {
                    button.primary type="submit" name="action" value="publish" { "Publish release" }
                    button type="submit" name="action" value="update" { "Save draft" }
                } @else {
                    button.primary type="submit" name="action" value="update" { "Update release" }
                }
            }
        }
        @if !rel.assets.is_empty() {
            h3 { "Assets" }
            ul.assetlist {
                @for a in &rel.assets {
                    li {
                        span { (a.name) " (" (layout::size(a.size)) ")" }
                        @if !rel.immutable {
                            (layout::delete_link(&format!("{b}/releases/delete-asset/{t}/{}", a.id), "Delete asset", "small"))
                        }
                    }
                }
            }
        }
        @if rel.immutable {
            p.help { "\u{1F512} This release is immutable (repository setting immutableReleases): its tag and assets cannot change and it cannot be deleted; only the title and notes can be edited." }
        } @else {
            h3 { "Delete this release" }
            p.help { "The git tag stays; only the release and its files are removed." }
            (layout::delete_link(&format!("{b}/releases/delete/{t}"), "Delete release", ""))
        }
    };
    Ok(html(
        status,
        page(
            rq,
            &format!("Edit {} · {}", rel.tag_name, repo.full_name),
            body,
        ),
    ))
}

async fn edit_form(rq: Req, path: RepoPath, tag: String) -> DomainResult<Response> {
    let repo = account::get_repo(&rq.core, rq.who(), &path).await?;
    require_write(&rq, &repo)?;
    let rel = release::get(&rq.core, rq.who(), &path, Which::Tag(tag)).await?;
    let rel = render::release(&rq.base, &path, &rel);
    edit_page(&rq, &repo, &rel, StatusCode::OK, None)
}

async fn update_from_form(
    rq: &Req,
    path: &RepoPath,
    tag: &str,
    form: &mut FormData,
    fields: &mut Form,
) -> DomainResult<()> {
    let mut checked = false;
    while let Some((file_name, part)) = next_file(form, fields).await? {
        if !checked {
            rq.check_form(fields)?;
            checked = true;
        }
        store_file(rq, path, tag, file_name, part).await?;
    }
    rq.check_form(fields)?;
    let patch = UpdateRelease {
        name: Some(fields.text("title")).filter(|t| !t.is_empty()),
        body: Some(fields.get("notes").unwrap_or("").to_owned()),
        prerelease: Some(fields.checked("prerelease")),
        draft: (fields.get("action") == Some("publish")).then_some(false),
        ..UpdateRelease::default()
    };
    release::update(&rq.core, rq.who(), path, tag, patch).await?;
    Ok(())
}

async fn update(
    rq: Req,
    path: RepoPath,
    tag: String,
    mut form: FormData,
) -> DomainResult<Response> {
    let repo = form_repo(&rq, &path, &mut form).await?;
    let mut fields = Form::default();
    let outcome = update_from_form(&rq, &path, &tag, &mut form, &mut fields).await;
    drain_form(&mut form, u64::MAX).await;
    match outcome {
        Ok(()) => Ok(redirect(&release_url(&repo, &tag))),
        Err(e) if is_form_error(&e) => {
            let rel = release::get(&rq.core, rq.who(), &path, Which::Tag(tag)).await?;
            let rel = render::release(&rq.base, &path, &rel);
            edit_page(&rq, &repo, &rel, super::status_of(&e), Some(&e.to_string()))
        }
        Err(e) => Err(e),
    }
}

async fn delete(rq: Req, path: RepoPath, tag: String) -> DomainResult<Response> {
    release::delete(&rq.core, rq.who(), &path, &tag).await?;
    Ok(redirect(&format!("/{path}/releases")))
}

async fn delete_asset(rq: Req, path: RepoPath, tag: String, id: u64) -> DomainResult<Response> {
    release::delete_asset(&rq.core, rq.who(), &path, &tag, id).await?;
    Ok(redirect(&format!("/{path}/releases/edit/{}", seg(&tag))))
}

/// `GET …/releases/attestation/{tag}`: the release's signed attestation, with the page's
/// session (the API's URL takes tokens only, so a private release's link would 404 there).
async fn attestation(rq: Req, path: RepoPath, tag: String) -> DomainResult<Response> {
    let body = crate::domain::attestation::envelope(&rq.core, rq.who(), &path, &tag).await?;
    Ok(crate::http::rest::attestations::envelope_download(
        &path, &tag, body,
    ))
}

async fn download(
    rq: Req,
    path: RepoPath,
    tag: String,
    name: String,
    method: Method,
    range: Option<String>,
) -> DomainResult<Response> {
    let file = release::open_asset(
        &rq.core,
        rq.who(),
        &path,
        Which::Tag(tag),
        AssetRef::Name(name),
    )
    .await?;
    Ok(crate::http::rest::releases::asset_response(
        &rq.core,
        &file,
        method == Method::HEAD,
        range.as_deref(),
    ))
}

/// The Releases tab's routes.
pub fn routes(p: PartsFilter, asset_max: u64) -> BoxedFilter<(Response,)> {
    let multipart = move || {
        // Several files per form; each is still limited to `asset_max` while it streams.
        warp::multipart::form().max_length(asset_max.saturating_mul(4).saturating_add(8 << 20))
    };
    let list = repo_segments()
        .and(warp::path!("releases"))
        .and(warp::get())
        .and(p.clone())
        .then(|repo, parts: Parts| parts.page(repo, list));
    let new_form = repo_segments()
        .and(warp::path!("releases" / "new"))
        .and(warp::get())
        .and(p.clone())
        .then(|repo, parts: Parts| parts.page(repo, new_form));
    let preview = repo_segments()
        .and(warp::path!("releases" / "new" / "preview"))
        .and(warp::post())
        .and(p.clone())
        .and(form_body())
        .then(|repo, parts: Parts, form| parts.form(form, repo, preview));
    let create = repo_segments()
        .and(warp::path!("releases" / "new"))
        .and(warp::post())
        .and(p.clone())
        .and(multipart())
        .then(|repo, parts: Parts, form| parts.multipart(repo, form, create));
    let show = repo_segments()
        .and(warp::path("releases"))
        .and(warp::path("tag"))
        .and(name_segment())
        .and(warp::path::end())
        .and(warp::get())
        .and(p.clone())
        .then(|repo, tag, parts: Parts| parts.page(repo, |rq, path| show(rq, path, tag)));
    let edit_form = repo_segments()
        .and(warp::path("releases"))
        .and(warp::path("edit"))
        .and(name_segment())
        .and(warp::path::end())
        .and(warp::get())
        .and(p.clone())
        .then(|repo, tag, parts: Parts| parts.page(repo, |rq, path| edit_form(rq, path, tag)));
    let update = repo_segments()
        .and(warp::path("releases"))
        .and(warp::path("edit"))
        .and(name_segment())
        .and(warp::path::end())
        .and(warp::post())
        .and(p.clone())
        .and(multipart())
        .then(|repo, tag, parts: Parts, form| {
            parts.multipart(repo, form, |rq, path, form| update(rq, path, tag, form))
        });
    let delete = repo_segments()
        .and(warp::path("releases"))
        .and(warp::path("delete"))
        .and(name_segment())
        .and(warp::path::end())
        .and(warp::post())
        .and(p.clone())
        .and(form_body())
        .then(|repo, tag, parts: Parts, form| {
            parts.form(form, repo, |rq, path, _| delete(rq, path, tag))
        });
    let delete_asset = repo_segments()
        .and(warp::path("releases"))
        .and(warp::path("delete-asset"))
        .and(name_segment())
        .and(warp::path::param::<u64>())
        .and(warp::path::end())
        .and(warp::post())
        .and(p.clone())
        .and(form_body())
        .then(|repo, tag, id: u64, parts: Parts, form| {
            parts.form(form, repo, move |rq, path, _| {
                delete_asset(rq, path, tag, id)
            })
        });
    let attestation = repo_segments()
        .and(warp::path("releases"))
        .and(warp::path("attestation"))
        .and(name_segment())
        .and(warp::path::end())
        .and(warp::get())
        .and(p.clone())
        .then(|repo, tag, parts: Parts| parts.page(repo, |rq, path| attestation(rq, path, tag)));
    let download = repo_segments()
        .and(warp::path("releases"))
        .and(warp::path("download"))
        .and(name_segment())
        .and(name_segment())
        .and(warp::path::end())
        .and(warp::get().or(warp::head()).unify())
        .and(warp::method())
        .and(warp::header::optional::<String>("range"))
        .and(crate::http::credentials())
        .and(p)
        .then(|repo, tag, name, method, range, creds, parts: Parts| {
            parts.page(repo, |mut rq, path| async move {
                // Install scripts send a token, not a session.
                if let Some(refused) = super::links::sign_in_by_token(&mut rq, creds).await {
                    return Ok(refused);
                }
                download(rq, path, tag, name, method, range).await
            })
        });
    list.or(new_form)
        .unify()
        .or(preview)
        .unify()
        .or(create)
        .unify()
        .or(show)
        .unify()
        .or(edit_form)
        .unify()
        .or(update)
        .unify()
        .or(delete)
        .unify()
        .or(delete_asset)
        .unify()
        .or(download)
        .unify()
        .or(attestation)
        .unify()
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::Values;

    fn v(existing: &str, typed: &str) -> Values {
        Values {
            existing_tag: existing.into(),
            tag: typed.into(),
            ..Values::default()
        }
    }

    #[test]
    fn a_release_goes_on_exactly_one_chosen_tag() {
        assert_eq!(v("v1", "").chosen_tag().unwrap(), ("v1".into(), true));
        assert_eq!(v("", "v2").chosen_tag().unwrap(), ("v2".into(), false));
        assert_eq!(v("v1", "v1").chosen_tag().unwrap(), ("v1".into(), true));
        assert!(v("", "").chosen_tag().is_err());
        assert!(v("v1", "v2").chosen_tag().is_err());
    }
}

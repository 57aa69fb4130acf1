//! GitHub-shaped web links, so browsers and install scripts written for github.com work:
//! `releases/latest` (302 to the release page), `releases/latest/download/{name}` (302 to the
//! tagged download, as GitHub does), and source archives `archive/refs/tags/{tag}.tar.gz|.zip`
//! (also `archive/{tag}.…`). Besides the session, these routes (and the tagged download) take
//! a token (`Authorization: Bearer`, or as a Basic password) so `curl -fL -u user:TOKEN` works
//! on a private repository; without either, a private repository is a 404 like everywhere.

use maud::{html, Markup};
use warp::filters::BoxedFilter;
use warp::http::{header, Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::{repo_segments, seg, Parts, PartsFilter, Req};
use crate::auth::Credentials;
use crate::domain::account::{self, RepoView};
use crate::domain::archive::{self as source, Archive, ArchiveFormat};
use crate::domain::release::{self, ReleaseView, Which};
use crate::domain::session::SignedIn;
use crate::domain::{DomainError, DomainResult};
use crate::http::{credentials, decode_component, reply};
use crate::ids::RepoPath;

/// Signs the request in by token when it carries `Authorization` (scripts have no session).
/// A bad token is a plain 401, never the sign-in page a script would save as the download.
pub(super) async fn sign_in_by_token(rq: &mut Req, creds: Credentials) -> Option<Response> {
    if matches!(creds, Credentials::None) {
        return None;
    }
    match account::authenticate(&rq.core, creds, false).await {
        Ok(p) => {
            rq.viewer = p.map(|principal| SignedIn {
                principal,
                csrf: String::new(),
            });
            None
        }
        Err(e) => {
            let (status, message) = crate::http::error::status_and_message(&e);
            let mut resp = Response::new(message.into());
            *resp.status_mut() = status;
            reply::set_header(&mut resp, header::WWW_AUTHENTICATE, "Basic realm=\"pfai\"");
            Some(resp)
        }
    }
}

/// `302 Found` to a path on this server (GitHub's status for these links).
fn found(rq: &Req, path: &str) -> Response {
    let mut resp = reply::empty(StatusCode::FOUND);
    reply::set_header(&mut resp, header::LOCATION, &format!("{}{path}", rq.base));
    resp
}

/// "Source code (zip)" and "(tar.gz)" of a release whose tag exists, like GitHub and Gitea.
pub(super) fn source_code(repo: &RepoView, r: &ReleaseView) -> Markup {
    let b = super::repo_base(repo);
    html! {
        @if r.tag_exists {
            ul.source-code {
                @for f in [ArchiveFormat::Zip, ArchiveFormat::TarGz] {
                    li {
                        a href={ (b) "/archive/refs/tags/" (seg(&r.tag_name)) "." (f.ext()) } download {
                            "Source code (" (f.ext()) ")"
                        }
                    }
                }
            }
        }
    }
}

async fn latest(rq: Req, path: RepoPath) -> DomainResult<Response> {
    let rel = release::get(&rq.core, rq.who(), &path, Which::Latest).await?;
    Ok(found(
        &rq,
        &format!("/{path}/releases/tag/{}", seg(&rel.release.tag_name)),
    ))
}

async fn latest_download(rq: Req, path: RepoPath, name: String) -> DomainResult<Response> {
    let rel = release::get(&rq.core, rq.who(), &path, Which::Latest).await?;
    Ok(found(
        &rq,
        &format!(
            "/{path}/releases/download/{}/{}",
            seg(&rel.release.tag_name),
            seg(&name)
        ),
    ))
}

/// `refs/tags/{tag}.{ext}` or `{tag}.{ext}` (raw path tail) as a tag and a format.
fn archive_target(tail: &str) -> DomainResult<(String, ArchiveFormat)> {
    let tail = decode_component(tail);
    let tail = tail.strip_prefix("refs/tags/").unwrap_or(&tail);
    ArchiveFormat::split(tail)
        .filter(|(tag, _)| !tag.is_empty())
        .map(|(tag, f)| (tag.to_owned(), f))
        .ok_or_else(|| DomainError::NotFound("no such archive (.tar.gz or .zip of a tag)".into()))
}

async fn archive(
    rq: Req,
    path: RepoPath,
    tail: String,
    method: Method,
    range: Option<String>,
) -> DomainResult<Response> {
    let (tag, format) = archive_target(&tail)?;
    let head = method == Method::HEAD;
    let stream = !head && range.is_none();
    let a = source::source_archive(&rq.core, rq.who(), &path, &tag, format, stream).await?;
    let mut resp = match a.body {
        Archive::Cached(data) => {
            reply::serve_mapped(&data, range.as_deref(), head, format.content_type())
        }
        Archive::Streaming(rx) => {
            let mut resp = reply::streamed(rx).await?;
            reply::set_header(&mut resp, header::CONTENT_TYPE, format.content_type());
            resp
        }
    };
    let etag = format!("\"{}-{}\"", a.commit, format.ext());
    reply::set_header(&mut resp, header::ETAG, &etag);
    reply::set_header(
        &mut resp,
        header::CONTENT_DISPOSITION,
        &reply::content_disposition(&a.file_name),
    );
    Ok(resp)
}

/// The GitHub-shaped links' routes (mounted before the Releases tab's).
pub fn routes(p: PartsFilter) -> BoxedFilter<(Response,)> {
    let get_or_head = || warp::get().or(warp::head()).unify();
    let latest = repo_segments()
        .and(warp::path!("releases" / "latest"))
        .and(get_or_head())
        .and(credentials())
        .and(p.clone())
        .then(|repo, creds, parts: Parts| {
            parts.page(repo, |mut rq, path| async move {
                if let Some(refused) = sign_in_by_token(&mut rq, creds).await {
                    return Ok(refused);
                }
                latest(rq, path).await
            })
        });
    let latest_download = repo_segments()
        .and(warp::path("releases"))
        .and(warp::path("latest"))
        .and(warp::path("download"))
        .and(crate::http::edge::name_segment())
        .and(warp::path::end())
        .and(get_or_head())
        .and(credentials())
        .and(p.clone())
        .then(|repo, name, creds, parts: Parts| {
            parts.page(repo, |mut rq, path| async move {
                if let Some(refused) = sign_in_by_token(&mut rq, creds).await {
                    return Ok(refused);
                }
                latest_download(rq, path, name).await
            })
        });
    let archive = repo_segments()
        .and(warp::path("archive"))
        .and(warp::path::tail())
        .and(get_or_head())
        .and(warp::method())
        .and(warp::header::optional::<String>("range"))
        .and(credentials())
        .and(p)
        .then(
            |repo, tail: warp::path::Tail, method, range, creds, parts: Parts| {
                let tail = tail.as_str().to_owned();
                parts.page(repo, |mut rq, path| async move {
                    if let Some(refused) = sign_in_by_token(&mut rq, creds).await {
                        return Ok(refused);
                    }
                    archive(rq, path, tail, method, range).await
                })
            },
        );
    latest
        .or(latest_download)
        .unify()
        .or(archive)
        .unify()
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths_take_both_github_shapes_and_slashed_tags() {
        let t = |s| archive_target(s).map_err(|e| e.to_string());
        assert_eq!(
            t("refs/tags/v1.0.tar.gz"),
            Ok(("v1.0".into(), ArchiveFormat::TarGz))
        );
        assert_eq!(t("v1.0.zip"), Ok(("v1.0".into(), ArchiveFormat::Zip)));
        assert_eq!(
            t("refs/tags/release%2F1.zip"),
            Ok(("release/1".into(), ArchiveFormat::Zip))
        );
        assert!(t("refs/tags/.zip").is_err());
        assert!(t("v1.0.tar").is_err());
    }
}

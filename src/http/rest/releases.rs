//! Releases and assets: the seed's REST table plus `latest` and `latest/assets/{name}`.

use crate::http::{drain_form, DRAIN_ON_ERROR};
use futures_util::StreamExt;
use warp::filters::BoxedFilter;
use warp::http::{header, Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::forge_repo;
use crate::domain::release::{self, AssetRef, CreateRelease, UpdateRelease, UploadMeta, Which};
use crate::domain::{DomainError, DomainResult};
use crate::http::edge::{asset_id, asset_id_segment, edge, name_segment, Caller, Edge, Parsed};
use crate::http::render;
use crate::http::{
    base_url, body_stream, decode_component, page_query, part_file_name, part_stream, query_get,
    query_pairs, raw_query, read_json, reply, BodyStream, Ctx,
};
use crate::ids::RepoPath;

/// `releases/{tag}` names a release by tag, or the Latest one as `latest`.
fn release_segment() -> impl Filter<Extract = (Which,), Error = warp::Rejection> + Clone {
    warp::path::param::<String>().map(|t: String| {
        if t == "latest" {
            Which::Latest
        } else {
            Which::Tag(decode_component(&t))
        }
    })
}

/// What `releases/{tag}/assets/{asset}` downloads: on `latest`, an asset by name; on a tag, by
/// numeric id.
enum Download {
    Latest { name: String },
    Tagged { tag: String, id: u64 },
}

/// `{tag}/assets/{asset}` of a download (an id that is not a number names no asset: 404).
fn download_segments() -> impl Filter<Extract = (Parsed<Download>,), Error = warp::Rejection> + Clone
{
    warp::path::param::<String>()
        .and(warp::path("assets"))
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .map(|tag: String, asset: String| {
            if tag == "latest" {
                Ok(Download::Latest {
                    name: decode_component(&asset),
                })
            } else {
                Ok(Download::Tagged {
                    tag: decode_component(&tag),
                    id: asset_id(&asset)?,
                })
            }
        })
}

/// The request headers a download answers to.
struct DownloadHeaders {
    method: Method,
    accept: Option<String>,
    range: Option<String>,
}

async fn list(c: Caller, repo: RepoPath, q: String, base: String) -> DomainResult<Response> {
    let page = page_query(&q)?;
    let list = release::list(&c.core, c.who(), &repo, page).await?;
    Ok(reply::paged(
        &render::releases(&base, &repo, &list),
        &format!("{base}/api/v1/forge/{repo}/releases"),
    ))
}

async fn create(
    c: Caller,
    repo: RepoPath,
    base: String,
    body: BodyStream,
) -> DomainResult<Response> {
    let input: CreateRelease = read_json(&c.core, body).await?;
    let v = release::create(&c.core, c.who(), &repo, input).await?;
    Ok(reply::json(
        StatusCode::CREATED,
        &render::release(&base, &repo, &v),
    ))
}

async fn get(c: Caller, repo: RepoPath, which: Which, base: String) -> DomainResult<Response> {
    let v = release::get(&c.core, c.who(), &repo, which).await?;
    Ok(reply::json(
        StatusCode::OK,
        &render::release(&base, &repo, &v),
    ))
}

async fn update(
    c: Caller,
    repo: RepoPath,
    tag: String,
    base: String,
    body: BodyStream,
) -> DomainResult<Response> {
    let patch: UpdateRelease = read_json(&c.core, body).await?;
    let v = release::update(&c.core, c.who(), &repo, &tag, patch).await?;
    Ok(reply::json(
        StatusCode::OK,
        &render::release(&base, &repo, &v),
    ))
}

async fn delete(c: Caller, repo: RepoPath, tag: String) -> DomainResult<Response> {
    release::delete(&c.core, c.who(), &repo, &tag).await?;
    Ok(reply::empty(StatusCode::NO_CONTENT))
}

async fn upload(
    c: Caller,
    repo: RepoPath,
    tag: String,
    q: String,
    base: String,
    form: warp::multipart::FormData,
) -> DomainResult<Response> {
    let mut form = form;
    let stored = upload_first_file(&c, &repo, &tag, &q, &mut form).await;
    if stored.is_err() {
        drain_form(&mut form, DRAIN_ON_ERROR).await;
    }
    Ok(reply::json(
        StatusCode::CREATED,
        &render::asset(&base, &repo, &stored?),
    ))
}

/// Stores the first part named `file` as the asset; other parts are ignored.
async fn upload_first_file(
    c: &Caller,
    repo: &RepoPath,
    tag: &str,
    q: &str,
    form: &mut warp::multipart::FormData,
) -> DomainResult<release::AssetDetail> {
    let pairs = query_pairs(q);
    while let Some(part) = form.next().await {
        let part =
            part.map_err(|e| DomainError::BadRequest(format!("invalid multipart body: {e}")))?;
        if part.name() != "file" {
            continue;
        }
        let meta = UploadMeta {
            name: query_get(&pairs, "name")
                .map(str::to_owned)
                .or_else(|| part_file_name(&part)),
            label: query_get(&pairs, "label").map(str::to_owned),
            content_type: part.content_type().map(str::to_owned),
        };
        return release::upload_asset(&c.core, c.who(), repo, tag, meta, part_stream(part)).await;
    }
    Err(DomainError::BadRequest(
        "the multipart form has no part named \"file\"".into(),
    ))
}

async fn download(
    c: Caller,
    repo: RepoPath,
    target: Download,
    h: DownloadHeaders,
    base: String,
) -> DomainResult<Response> {
    let (which, asset_ref) = match target {
        Download::Latest { name } => (Which::Latest, AssetRef::Name(name)),
        Download::Tagged { tag, id } => {
            // `Accept: application/json` asks for the metadata (GitHub's convention, inverted:
            // bytes are the default because the seed calls this route "Download asset").
            if h.accept
                .as_deref()
                .is_some_and(|a| a.contains("application/json"))
            {
                let v = release::asset(&c.core, c.who(), &repo, &tag, id).await?;
                return Ok(reply::json(
                    StatusCode::OK,
                    &render::asset(&base, &repo, &v),
                ));
            }
            (Which::Tag(tag), AssetRef::Id(id))
        }
    };
    if h.method != Method::HEAD {
        let (w, a) = (which.clone(), asset_ref.clone());
        if let Some(url) = release::asset_redirect(&c.core, c.who(), &repo, w, a).await? {
            let mut r = reply::empty(StatusCode::TEMPORARY_REDIRECT);
            reply::set_header(&mut r, header::LOCATION, &url);
            return Ok(r);
        }
    }
    let file = release::open_asset(&c.core, c.who(), &repo, which, asset_ref).await?;
    Ok(asset_response(
        &c.core,
        &file,
        h.method == Method::HEAD,
        h.range.as_deref(),
    ))
}

/// Serves an opened asset with `Range`, `ETag` and `Content-Disposition`, counting each full
/// GET as one download. Shared by the API and the web UI's download links.
pub fn asset_response(
    core: &crate::domain::Core,
    file: &release::AssetFile,
    head: bool,
    range: Option<&str>,
) -> Response {
    let mut resp = reply::serve_mapped(&file.data, range, head, &file.asset.content_type);
    reply::set_header(
        &mut resp,
        header::ETAG,
        &format!("\"{}\"", file.asset.sha256),
    );
    reply::set_header(
        &mut resp,
        header::CONTENT_DISPOSITION,
        &reply::content_disposition(&file.asset.name),
    );
    if resp.status() == StatusCode::OK && !head {
        release::count_download(core, file.asset.id);
    }
    resp
}

async fn delete_asset(c: Caller, repo: RepoPath, tag: String, id: u64) -> DomainResult<Response> {
    release::delete_asset(&c.core, c.who(), &repo, &tag, id).await?;
    Ok(reply::empty(StatusCode::NO_CONTENT))
}

/// The release routes.
pub fn routes(core: Ctx) -> BoxedFilter<(Response,)> {
    let e = || edge(core.clone());
    let asset_max = core.limits.asset_max;
    let list = forge_repo()
        .and(warp::path!("releases"))
        .and(warp::get())
        .and(e())
        .and(raw_query())
        .and(base_url())
        .then(|repo, e: Edge, q, base| e.rest(repo, |c, repo| list(c, repo, q, base)));
    let create = forge_repo()
        .and(warp::path!("releases"))
        .and(warp::post())
        .and(e())
        .and(base_url())
        .and(body_stream())
        .then(|repo, e: Edge, base, body| e.rest(repo, |c, repo| create(c, repo, base, body)));
    let get = forge_repo()
        .and(warp::path("releases"))
        .and(release_segment())
        .and(warp::path::end())
        .and(warp::get())
        .and(e())
        .and(base_url())
        .then(|repo, which, e: Edge, base| e.rest(repo, |c, repo| get(c, repo, which, base)));
    let update = forge_repo()
        .and(warp::path("releases"))
        .and(name_segment())
        .and(warp::path::end())
        .and(warp::patch())
        .and(e())
        .and(base_url())
        .and(body_stream())
        .then(|repo, tag, e: Edge, base, body| {
            e.rest(repo, |c, repo| update(c, repo, tag, base, body))
        });
    let delete = forge_repo()
        .and(warp::path("releases"))
        .and(name_segment())
        .and(warp::path::end())
        .and(warp::delete())
        .and(e())
        .then(|repo, tag, e: Edge| e.rest(repo, |c, repo| delete(c, repo, tag)));
    let upload = forge_repo()
        .and(warp::path("releases"))
        .and(name_segment())
        .and(warp::path!("assets"))
        .and(warp::post())
        .and(e())
        .and(raw_query())
        .and(base_url())
        .and(warp::multipart::form().max_length(asset_max.saturating_add(1 << 20)))
        .then(|repo, tag, e: Edge, q, base, form| {
            e.rest(repo, |c, repo| upload(c, repo, tag, q, base, form))
        });
    let download = forge_repo()
        .and(warp::path("releases"))
        .and(download_segments())
        .and(warp::get().or(warp::head()).unify())
        .and(e())
        .and(warp::method())
        .and(warp::header::optional::<String>("accept"))
        .and(warp::header::optional::<String>("range"))
        .and(base_url())
        .then(|repo, target, e: Edge, method, accept, range, base| {
            let h = DownloadHeaders {
                method,
                accept,
                range,
            };
            e.rest((repo, target), |c, (repo, target)| {
                download(c, repo, target, h, base)
            })
        });
    let delete_asset = forge_repo()
        .and(warp::path("releases"))
        .and(name_segment())
        .and(warp::path("assets"))
        .and(asset_id_segment())
        .and(warp::path::end())
        .and(warp::delete())
        .and(e())
        .then(|repo, tag, id, e: Edge| {
            e.rest((repo, id), |c, (repo, id)| delete_asset(c, repo, tag, id))
        });
    list.or(create)
        .unify()
        .or(get)
        .unify()
        .or(update)
        .unify()
        .or(delete)
        .unify()
        .or(upload)
        .unify()
        .or(download)
        .unify()
        .or(delete_asset)
        .unify()
        .boxed()
}

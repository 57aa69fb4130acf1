//! Releases and assets: the seed's REST table plus `latest` and `latest/assets/{name}`.

use futures_util::StreamExt;
use warp::filters::BoxedFilter;
use warp::http::{header, Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::repo_path;
use crate::auth::Credentials;
use crate::domain::release::{self, AssetRef, CreateRelease, UpdateRelease, UploadMeta, Which};
use crate::domain::{DomainError, DomainResult};
use crate::http::error::rest_reply;
use crate::http::render;
use crate::http::{
    base_url, body_stream, credentials, decode_component, page_query, part_file_name, part_stream,
    query_get, query_pairs, raw_query, read_json, reply, who, with_core, BodyStream, Ctx,
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
    let list = release::list(&core, p.as_ref(), &repo, page).await?;
    Ok(reply::paged(
        &render::releases(&base, &repo, &list),
        &format!("{base}/api/v1/forge/{repo}/releases"),
    ))
}

async fn create(
    core: Ctx,
    o: String,
    r: String,
    creds: Credentials,
    base: String,
    body: BodyStream,
) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let repo = repo_path(&o, &r)?;
    let input: CreateRelease = read_json(&core, body).await?;
    let v = release::create(&core, p.as_ref(), &repo, input).await?;
    Ok(reply::json(
        StatusCode::CREATED,
        &render::release(&base, &repo, &v),
    ))
}

async fn get(
    core: Ctx,
    o: String,
    r: String,
    tag: String,
    creds: Credentials,
    base: String,
) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let repo = repo_path(&o, &r)?;
    let which = if tag == "latest" {
        Which::Latest
    } else {
        Which::Tag(decode_component(&tag))
    };
    let v = release::get(&core, p.as_ref(), &repo, which).await?;
    Ok(reply::json(
        StatusCode::OK,
        &render::release(&base, &repo, &v),
    ))
}

async fn update(
    core: Ctx,
    o: String,
    r: String,
    tag: String,
    creds: Credentials,
    base: String,
    body: BodyStream,
) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let repo = repo_path(&o, &r)?;
    let patch: UpdateRelease = read_json(&core, body).await?;
    let v = release::update(&core, p.as_ref(), &repo, &decode_component(&tag), patch).await?;
    Ok(reply::json(
        StatusCode::OK,
        &render::release(&base, &repo, &v),
    ))
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
    release::delete(&core, p.as_ref(), &repo, &decode_component(&tag)).await?;
    Ok(reply::empty(StatusCode::NO_CONTENT))
}

#[allow(clippy::too_many_arguments)]
async fn upload(
    core: Ctx,
    o: String,
    r: String,
    tag: String,
    creds: Credentials,
    q: String,
    base: String,
    form: warp::multipart::FormData,
) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let repo = repo_path(&o, &r)?;
    let pairs = query_pairs(&q);
    let mut form = form;
    // The first part named `file` is the asset; other parts are ignored.
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
        let stream = part_stream(part);
        let v = release::upload_asset(
            &core,
            p.as_ref(),
            &repo,
            &decode_component(&tag),
            meta,
            stream,
        )
        .await?;
        return Ok(reply::json(
            StatusCode::CREATED,
            &render::asset(&base, &repo, &v),
        ));
    }
    Err(DomainError::BadRequest(
        "the multipart form has no part named \"file\"".into(),
    ))
}

#[allow(clippy::too_many_arguments)]
async fn download(
    core: Ctx,
    o: String,
    r: String,
    tag: String,
    asset: String,
    method: Method,
    creds: Credentials,
    accept: Option<String>,
    range: Option<String>,
    base: String,
) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let repo = repo_path(&o, &r)?;
    let latest = tag == "latest";
    let which = if latest {
        Which::Latest
    } else {
        Which::Tag(decode_component(&tag))
    };
    let asset_ref = if latest {
        AssetRef::Name(decode_component(&asset))
    } else {
        let id = asset
            .parse()
            .map_err(|_| DomainError::NotFound("asset not found".into()))?;
        // `Accept: application/json` asks for the metadata (GitHub's convention, inverted:
        // bytes are the default because the seed calls this route "Download asset").
        if accept
            .as_deref()
            .is_some_and(|a| a.contains("application/json"))
        {
            let v = release::asset(&core, p.as_ref(), &repo, &decode_component(&tag), id).await?;
            return Ok(reply::json(
                StatusCode::OK,
                &render::asset(&base, &repo, &v),
            ));
        }
        AssetRef::Id(id)
    };
    let file = release::open_asset(&core, p.as_ref(), &repo, which, asset_ref).await?;
    Ok(asset_response(
        &core,
        &file,
        method == Method::HEAD,
        range.as_deref(),
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

async fn delete_asset(
    core: Ctx,
    o: String,
    r: String,
    tag: String,
    id: String,
    creds: Credentials,
) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let repo = repo_path(&o, &r)?;
    let id = id
        .parse()
        .map_err(|_| DomainError::NotFound("asset not found".into()))?;
    release::delete_asset(&core, p.as_ref(), &repo, &decode_component(&tag), id).await?;
    Ok(reply::empty(StatusCode::NO_CONTENT))
}

/// The release routes.
pub fn routes(core: Ctx) -> BoxedFilter<(Response,)> {
    let c = || with_core(core.clone());
    let asset_max = core.limits.asset_max;
    let list = warp::path!("api" / "v1" / "forge" / String / String / "releases")
        .and(warp::get())
        .and(c())
        .and(credentials())
        .and(raw_query())
        .and(base_url())
        .then(|o, r, core, creds, q, base| list(core, o, r, creds, q, base))
        .map(rest_reply);
    let create = warp::path!("api" / "v1" / "forge" / String / String / "releases")
        .and(warp::post())
        .and(c())
        .and(credentials())
        .and(base_url())
        .and(body_stream())
        .then(|o, r, core, creds, base, body| create(core, o, r, creds, base, body))
        .map(rest_reply);
    let get = warp::path!("api" / "v1" / "forge" / String / String / "releases" / String)
        .and(warp::get())
        .and(c())
        .and(credentials())
        .and(base_url())
        .then(|o, r, t, core, creds, base| get(core, o, r, t, creds, base))
        .map(rest_reply);
    let update = warp::path!("api" / "v1" / "forge" / String / String / "releases" / String)
        .and(warp::patch())
        .and(c())
        .and(credentials())
        .and(base_url())
        .and(body_stream())
        .then(|o, r, t, core, creds, base, body| update(core, o, r, t, creds, base, body))
        .map(rest_reply);
    let delete = warp::path!("api" / "v1" / "forge" / String / String / "releases" / String)
        .and(warp::delete())
        .and(c())
        .and(credentials())
        .then(|o, r, t, core, creds| delete(core, o, r, t, creds))
        .map(rest_reply);
    let upload =
        warp::path!("api" / "v1" / "forge" / String / String / "releases" / String / "assets")
            .and(warp::post())
            .and(c())
            .and(credentials())
            .and(raw_query())
            .and(base_url())
            .and(warp::multipart::form().max_length(asset_max.saturating_add(1 << 20)))
            .then(|o, r, t, core, creds, q, base, form| upload(core, o, r, t, creds, q, base, form))
            .map(rest_reply);
    let download = warp::path!(
        "api" / "v1" / "forge" / String / String / "releases" / String / "assets" / String
    )
    .and(warp::get().or(warp::head()).unify())
    .and(c())
    .and(warp::method())
    .and(credentials())
    .and(warp::header::optional::<String>("accept"))
    .and(warp::header::optional::<String>("range"))
    .and(base_url())
    .then(|o, r, t, a, core, m, creds, accept, range, base| {
        download(core, o, r, t, a, m, creds, accept, range, base)
    })
    .map(rest_reply);
    let delete_asset = warp::path!(
        "api" / "v1" / "forge" / String / String / "releases" / String / "assets" / String
    )
    .and(warp::delete())
    .and(c())
    .and(credentials())
    .then(|o, r, t, a, core, creds| delete_asset(core, o, r, t, a, creds))
    .map(rest_reply);
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

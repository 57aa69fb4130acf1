//! Git smart HTTP at `/<owner>/<repo>.git/...` (`info/refs`, `git-upload-pack`,
//! `git-receive-pack`). Access is checked here through the domain. For a push, every line of its
//! command section is classified before git runs (push certificates and unknown lines are
//! refused), and the pusher's role and the protection rules are handed to git's pre-receive
//! hook, which judges the updates git will apply: a refusal rejects the whole push and the client
//! prints it.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio_util::io::ReaderStream;
use warp::filters::BoxedFilter;
use warp::http::{header, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::edge::{edge, Edge};
use super::error::rest_reply;
use super::{raw_query, reply, BodyStream, Ctx};
use crate::domain::{immutable, protection, DomainError, DomainResult};
use crate::git::http_backend::{self, CgiRequest, PushParseError, PushPolicy};
use crate::ids::{RepoPath, Role};

/// Largest command section of a push we read before starting git (refs are short).
const MAX_PUSH_COMMANDS: usize = 1 << 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Service {
    UploadPack,
    ReceivePack,
}

fn repo_segment() -> impl Filter<Extract = (RepoPath,), Error = warp::Rejection> + Clone {
    warp::path::param::<String>()
        .and(warp::path::param::<String>())
        .and_then(|owner: String, repo: String| async move {
            let name = repo
                .strip_suffix(".git")
                .ok_or_else(warp::reject::not_found)?;
            RepoPath::new(&owner, name).map_err(|_| warp::reject::not_found())
        })
}

/// One smart-HTTP request, as git's CGI is handed it.
struct GitCall {
    /// The path after `<repo>.git/`.
    sub: &'static str,
    method: &'static str,
    query: String,
    headers: warp::http::HeaderMap,
    body: Option<BodyStream>,
}

async fn handle(edge: Edge, repo: RepoPath, call: GitCall) -> DomainResult<Response> {
    let GitCall {
        sub,
        method,
        query,
        headers,
        body,
    } = call;
    let service = if sub == "git-receive-pack" || query.contains("service=git-receive-pack") {
        Service::ReceivePack
    } else if sub == "git-upload-pack" || query.contains("service=git-upload-pack") {
        Service::UploadPack
    } else {
        return Err(DomainError::BadRequest(
            "only the smart HTTP protocol is served".into(),
        ));
    };
    let caller = edge.authenticate().await?;
    let (core, p) = (caller.core, caller.principal);
    let need = match service {
        Service::UploadPack => Role::Read,
        Service::ReceivePack => Role::Write,
    };
    let role = match core.repo_access(p.as_ref(), &repo, need).await {
        Ok((_, role)) => role,
        // git only sends credentials after a challenge: anonymous callers get 401, for
        // private and missing repositories alike.
        Err(DomainError::NotFound(_)) if p.is_none() => {
            return Err(DomainError::Unauthenticated(
                "authentication required".into(),
            ))
        }
        Err(e) => return Err(e),
    };

    let mut prefix = Bytes::new();
    let mut push_policy = None;
    let mut body = body.unwrap_or_else(|| Box::pin(futures_util::stream::empty()));
    if service == Service::ReceivePack && method == "POST" {
        let encoded = headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| !v.eq_ignore_ascii_case("identity"));
        if encoded {
            return Err(DomainError::BadRequest(
                "compressed push requests are not supported".into(),
            ));
        }
        prefix = read_push_commands(&mut body).await?;
        let rules = protection::rules(&core, &repo).await?;
        let patterns = rules.hook_rules();
        push_policy = Some(PushPolicy {
            hook_exe: core.git.hook_exe().map(Into::into).unwrap_or_default(),
            role,
            rules_json: serde_json::to_string(&patterns)
                .map_err(|e| DomainError::internal_from("encoding rules", e))?,
            immutable_json: immutable_hand_over(
                immutable::hook_tags(&core, &repo).await?,
                &prefix,
            )?,
        });
    }

    let header_str = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let path_info = format!("/{}/{}.git/{}", repo.owner, repo.name, sub);
    let req = CgiRequest {
        method: method.to_owned(),
        path_info,
        query,
        content_type: header_str("content-type"),
        content_encoding: header_str("content-encoding"),
        git_protocol: header_str("git-protocol"),
        remote_user: p.as_ref().map(|p| p.username.clone()).unwrap_or_default(),
        push_policy,
    };
    let cgi = http_backend::run(&core.git, req, prefix, body)
        .await
        .map_err(|e| DomainError::internal_from("git http-backend", e))?;
    let mut child = cgi.child;
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(cgi.body_start) })
        .chain(ReaderStream::new(cgi.stdout))
        .chain(futures_util::stream::once(async move {
            let _ = child.wait().await;
            Ok(Bytes::new())
        }));
    let mut resp = warp::reply::Reply::into_response(warp::reply::stream(stream));
    *resp.status_mut() =
        StatusCode::from_u16(cgi.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in cgi.headers {
        if let Ok(name) = header::HeaderName::from_bytes(k.as_bytes()) {
            reply::set_header(&mut resp, name, &v);
        }
    }
    Ok(resp)
}

/// The most bytes of immutable tag names handed to the hook whole; Linux refuses an environment
/// string over 128 KiB, which would fail every push (closed, but for good).
const MAX_IMMUTABLE_HAND_OVER: usize = 96 * 1024;

/// The JSON array of tombstoned tag names for the hook: all of them, or, for a repository with
/// more than fit, those the push's command section names (git applies nothing else). Still too
/// many is a refusal, never a shorter list.
fn immutable_hand_over(tags: Vec<String>, commands: &[u8]) -> DomainResult<String> {
    let encode = |t: &[String]| {
        serde_json::to_string(t)
            .map_err(|e| DomainError::internal_from("encoding immutable tags", e))
    };
    let all = encode(&tags)?;
    if all.len() <= MAX_IMMUTABLE_HAND_OVER {
        return Ok(all);
    }
    let named: std::collections::HashSet<String> = http_backend::parse_ref_updates(commands)
        .map(|(updates, _)| updates.into_iter().map(|u| u.name).collect())
        .unwrap_or_default();
    let touched: Vec<String> = tags
        .into_iter()
        .filter(|t| named.contains(&format!("refs/tags/{t}")))
        .collect();
    let some = encode(&touched)?;
    if some.len() > MAX_IMMUTABLE_HAND_OVER {
        return Err(DomainError::TooLarge(
            "this push touches too many tags of immutable releases to check".into(),
        ));
    }
    Ok(some)
}

/// Reads the command section of a push (up to its flush packet) so that every line is
/// classified before git starts: push certificates and unrecognised lines are refused here. The
/// bytes read are returned to be fed to git ahead of the rest of the body. Which updates are
/// allowed is decided later by the pre-receive hook, on what git will apply.
async fn read_push_commands(body: &mut BodyStream) -> DomainResult<Bytes> {
    let mut buf = BytesMut::new();
    loop {
        match http_backend::parse_ref_updates(&buf) {
            Ok((_, true)) => return Ok(buf.freeze()),
            Ok((_, false)) => {}
            Err(e @ PushParseError::PushCertificate) => {
                return Err(DomainError::Forbidden(format!("pfai: {e}")))
            }
            Err(e) => return Err(DomainError::BadRequest(format!("malformed push: {e}"))),
        }
        if buf.len() > MAX_PUSH_COMMANDS {
            return Err(DomainError::TooLarge(
                "too many ref updates in one push".into(),
            ));
        }
        match body.next().await {
            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
            Some(Err(e)) => {
                return Err(DomainError::BadRequest(format!(
                    "reading the push failed: {e}"
                )))
            }
            // A body that ends before its flush packet: git will say what is wrong with it.
            None => return Ok(buf.freeze()),
        }
    }
}

/// `POST <repo>/<service>`: the pack exchange of a fetch (`git-upload-pack`) or a push
/// (`git-receive-pack`), streamed to `git http-backend`.
fn pack_service(core: &Ctx, service: &'static str) -> BoxedFilter<(Response,)> {
    repo_segment()
        .and(warp::path(service))
        .and(warp::path::end())
        .and(warp::post())
        .and(edge(core.clone()))
        .and(warp::header::headers_cloned())
        .and(super::body_stream())
        .then(move |repo, e, headers, body| {
            let call = GitCall {
                sub: service,
                method: "POST",
                query: String::new(),
                headers,
                body: Some(body),
            };
            handle(e, repo, call)
        })
        .map(rest_reply)
        .boxed()
}

/// The smart HTTP routes.
pub fn routes(core: Ctx) -> BoxedFilter<(Response,)> {
    let e = || edge(core.clone());
    let info_refs = repo_segment()
        .and(warp::path!("info" / "refs"))
        .and(warp::get())
        .and(e())
        .and(raw_query())
        .and(warp::header::headers_cloned())
        .then(|repo, e, query, headers| {
            let call = GitCall {
                sub: "info/refs",
                method: "GET",
                query,
                headers,
                body: None,
            };
            handle(e, repo, call)
        })
        .map(rest_reply);
    let upload = pack_service(&core, "git-upload-pack");
    let receive = pack_service(&core, "git-receive-pack");
    info_refs.or(upload).unify().or(receive).unify().boxed()
}

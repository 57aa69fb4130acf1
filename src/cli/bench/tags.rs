//! `pfai bench tags`: what a repository with very many tags costs. Tags `t0000000`… are made
//! by manifest PUTs of one small image (the "tag PUT" figure), then pages of
//! `/v2/<name>/tags/list` are timed at the start, the middle and the end of the list. The
//! server's memory with that many tags is read from outside (`benches/compare.sh`).

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};

use super::{closed_loop, parse_duration, report, run_phase, Phase, Reg, Target};
use crate::cli::client::{CliError, CliResult};

/// The arguments of `pfai bench tags`.
#[derive(Debug, clap::Args)]
pub struct TagsArgs {
    /// Registry to load.
    #[command(flatten)]
    pub target: Target,
    /// Tags in the repository.
    #[arg(long, default_value_t = 10_000)]
    pub count: usize,
    /// Tags per page (`?n=`).
    #[arg(long, default_value_t = 100)]
    pub page: usize,
    /// How long each page position is timed.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Parallel connections (for the tag PUTs and the page reads).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// The tags exist from an earlier run with the same --count: skip making them.
    #[arg(long)]
    pub existing: bool,
    /// Tags below this number exist from an earlier run: make only the rest (to grow one
    /// repository from 10 000 to 1 000 000 tags step by step).
    #[arg(long, default_value_t = 0)]
    pub from: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Tag `i`: zero-padded so that the list's lexical order is numeric order.
fn tag(i: usize) -> String {
    format!("t{i:07}")
}

/// Makes the tags (unless `--existing`), then times the three page positions.
pub async fn run(a: TagsArgs) -> CliResult<()> {
    if a.count == 0 || a.page == 0 {
        return Err(CliError::Msg(
            "--count and --page must be above zero".into(),
        ));
    }
    let reg = Arc::new(Reg::new(a.target.clone(), a.concurrency));
    let mut phases = Vec::new();
    if !a.existing {
        super::push_bench_image(&reg).await?;
        let path = format!("/v2/{}/manifests/bench", reg.t.repo);
        let get = reg
            .req(Method::GET, &path)
            .header("accept", "application/vnd.oci.image.manifest.v1+json");
        let manifest = reg
            .expect(get, StatusCode::OK, "manifest")
            .await?
            .bytes()
            .await
            .map_err(|e| CliError::Msg(format!("manifest: {e}")))?;
        let r2 = reg.clone();
        let put = run_phase(
            "tag PUT",
            (a.from..a.count).collect(),
            a.concurrency,
            move |i| {
                let (reg, body) = (r2.clone(), manifest.clone());
                async move {
                    let n = body.len() as u64;
                    let path = format!("/v2/{}/manifests/{}", reg.t.repo, tag(i));
                    let r = reg
                        .req(Method::PUT, &path)
                        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                        .body(body);
                    reg.expect(r, StatusCode::CREATED, "tag PUT").await?;
                    Ok(n)
                }
            },
        )
        .await
        .verified(true);
        phases.push(put);
    }
    let positions = [
        ("tags/list first page", None),
        ("tags/list middle page", Some(a.count / 2)),
        (
            "tags/list last page",
            Some(a.count.saturating_sub(a.page + 1)),
        ),
    ];
    for (name, after) in positions {
        let last = after.map(tag);
        phases.push(time_page(&reg, name, &a, last).await);
    }
    let extra = serde_json::json!({"tags": a.count, "page": a.page});
    report(a.json, &a.target.url, &phases, extra)
}

/// GETs one page position from `--concurrency` loops for `--duration`, checking each page
/// holds the tags that follow `last` in order.
async fn time_page(reg: &Arc<Reg>, name: &str, a: &TagsArgs, last: Option<String>) -> Phase {
    let first = last
        .as_deref()
        .and_then(|l| l.strip_prefix('t'))
        .and_then(|n| n.parse::<usize>().ok())
        .map_or(0, |n| n + 1);
    let want: Vec<String> = (first..(first + a.page).min(a.count)).map(tag).collect();
    let query = match &last {
        Some(l) => format!("?n={}&last={l}", a.page),
        None => format!("?n={}", a.page),
    };
    let path = format!("/v2/{}/tags/list{query}", reg.t.repo);
    // Shared, so no request copies the expected page.
    let (reg, path, want) = (reg.clone(), Arc::new(path), Arc::new(want));
    closed_loop(name, a.duration, a.concurrency, move || {
        let (reg, path, want) = (reg.clone(), path.clone(), want.clone());
        async move { page(&reg, &path, &want).await }
    })
    .await
    .verified(true)
}

/// One page: its size, after checking it lists exactly `want`.
async fn page(reg: &Reg, path: &str, want: &[String]) -> CliResult<u64> {
    let body = reg
        .expect(reg.req(Method::GET, path), StatusCode::OK, "tags/list")
        .await?
        .bytes()
        .await
        .map_err(|e| CliError::Msg(format!("tags/list: {e}")))?;
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| CliError::Msg(format!("tags/list is not JSON: {e}")))?;
    let mut got: Vec<&str> = v["tags"]
        .as_array()
        .map(|t| t.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    // The image's own tag `bench` sorts before every `t…` tag: it takes one place on the
    // first page.
    let mut want = want;
    if got.contains(&"bench") {
        got.retain(|t| *t != "bench");
        want = &want[..want.len().saturating_sub(1)];
    }
    if got != want {
        return Err(CliError::Msg(format!(
            "tags/list {path} listed {} tags starting {:?}, expected {} starting {:?}",
            got.len(),
            got.first(),
            want.len(),
            want.first()
        )));
    }
    Ok(body.len() as u64)
}

//! `pfai bench assets`: release asset upload and download throughput through the REST API, as
//! `pfai release upload` / `download` and curl move them. The run makes a draft release with a
//! fresh tag name, uploads generated files to it, downloads each (checking its SHA-256) and
//! deletes the release unless `--keep`.

use std::sync::{Arc, Mutex};

use reqwest::{Method, StatusCode};

use super::{blob_stream, digest_of, parse_size, report, run_phase, Phase, Reg, Target};
use crate::api::AssetView;
use crate::cli::client::{CliError, CliResult};
use crate::ids::{Algorithm, Digest, Hasher};

/// The arguments of `pfai bench assets`.
#[derive(Debug, clap::Args)]
pub struct AssetsArgs {
    /// The server and the repository (`--repo OWNER/REPO`, which needs a commit on its default
    /// branch for the draft's tag).
    #[command(flatten)]
    pub target: Target,
    /// Size of each asset.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub size: u64,
    /// Assets to upload.
    #[arg(long, default_value_t = 4)]
    pub count: usize,
    /// Parallel transfers.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Downloads per asset (0: upload only).
    #[arg(long, default_value_t = 1)]
    pub pulls: usize,
    /// Skip hashing downloads (measures the server, not the client's SHA-256).
    #[arg(long)]
    pub no_verify: bool,
    /// Keep the release (and its assets) after the run.
    #[arg(long)]
    pub keep: bool,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the asset benchmark: upload phase, download phase, report, cleanup.
pub async fn run(a: AssetsArgs) -> CliResult<()> {
    let reg = Arc::new(Reg::new(a.target.clone(), a.concurrency));
    let tag = format!("bench-assets-{}-{}", a.seed, crate::util::now_unix());
    let base = format!("/api/v1/forge/{}/releases", a.target.repo);
    let create = reg
        .req(Method::POST, &base)
        .json(&serde_json::json!({"tagName": tag, "draft": true}));
    reg.expect(create, StatusCode::CREATED, "create the bench release")
        .await?;
    let release = format!("{base}/{}", crate::domain::release::url_segment(&tag));
    let outcome = measure(&a, &reg, &release).await;
    if !a.keep {
        let del = reg.req(Method::DELETE, &release);
        if let Err(e) = reg
            .expect(del, StatusCode::NO_CONTENT, "delete the bench release")
            .await
        {
            eprintln!("{e} (delete release {tag} by hand)");
        }
    }
    let phases = outcome?;
    let extra = serde_json::json!({"release": tag, "asset_size": a.size, "assets": a.count});
    report(a.json, &a.target.url, &phases, extra)
}

/// The upload and download phases against the release at `release` (an API path).
async fn measure(a: &AssetsArgs, reg: &Arc<Reg>, release: &str) -> CliResult<Vec<Phase>> {
    let seeds: Vec<u64> = (0..a.count as u64)
        .map(|i| a.seed.wrapping_mul(1_000_033).wrapping_add(i))
        .collect();
    // Untimed: what the server must report for each file.
    let size = a.size;
    let s2 = seeds.clone();
    let digests: Vec<Digest> = tokio::task::spawn_blocking(move || {
        s2.iter()
            .map(|s| digest_of(Algorithm::Sha256, *s, size))
            .collect()
    })
    .await
    .map_err(|e| CliError::Msg(e.to_string()))?;
    let digests = Arc::new(digests);
    let ids = Arc::new(Mutex::new(vec![None::<u64>; a.count]));
    let (r2, i2, s3, d2, rel) = (
        reg.clone(),
        ids.clone(),
        Arc::new(seeds),
        digests.clone(),
        release.to_owned(),
    );
    let up = run_phase(
        "asset upload",
        (0..a.count).collect(),
        a.concurrency,
        move |i| {
            let (reg, ids, seeds, digests, rel) =
                (r2.clone(), i2.clone(), s3.clone(), d2.clone(), rel.clone());
            async move {
                let asset = upload(&reg, &rel, i, seeds[i], size).await?;
                if asset.sha256 != digests[i].hex() {
                    return Err(CliError::Msg(format!(
                        "asset {} was recorded with sha256 {}, expected {}",
                        asset.name,
                        asset.sha256,
                        digests[i].hex()
                    )));
                }
                if let Ok(mut ids) = ids.lock() {
                    ids[i] = Some(asset.id);
                }
                Ok(size)
            }
        },
    )
    .await
    // The server's SHA-256 of every upload was compared with the generated data's.
    .verified(true);
    let mut phases = vec![up];
    let uploaded: Vec<(u64, Digest)> = ids
        .lock()
        .map(|ids| {
            ids.iter()
                .zip(digests.iter())
                .filter_map(|(id, d)| id.map(|id| (id, d.clone())))
                .collect()
        })
        .unwrap_or_default();
    if a.pulls == 0 || uploaded.is_empty() {
        return Ok(phases);
    }
    let verify = !a.no_verify;
    let jobs: Vec<usize> = (0..uploaded.len() * a.pulls)
        .map(|j| j % uploaded.len())
        .collect();
    let (r3, up3, rel) = (reg.clone(), Arc::new(uploaded), release.to_owned());
    let down = run_phase("asset download", jobs, a.concurrency, move |j| {
        let (reg, up, rel) = (r3.clone(), up3.clone(), rel.clone());
        async move { download(&reg, &rel, up[j].0, &up[j].1, verify).await }
    })
    .await
    .verified(verify);
    phases.push(down);
    Ok(phases)
}

/// Uploads generated file `i` (streamed, never whole in memory) as `bench-<i>.bin`.
async fn upload(reg: &Reg, release: &str, i: usize, seed: u64, size: u64) -> CliResult<AssetView> {
    let part = reqwest::multipart::Part::stream_with_length(
        reqwest::Body::wrap_stream(blob_stream(seed, size)),
        size,
    )
    .file_name(format!("bench-{i}.bin"))
    .mime_str("application/octet-stream")
    .map_err(|e| CliError::Msg(e.to_string()))?;
    let r = reg
        .req(Method::POST, &format!("{release}/assets"))
        .multipart(reqwest::multipart::Form::new().part("file", part));
    reg.expect(r, StatusCode::CREATED, "upload")
        .await?
        .json()
        .await
        .map_err(|e| CliError::Msg(format!("upload: {e}")))
}

/// Downloads asset `id`, hashing it against `digest` when `verify`; returns its length.
async fn download(
    reg: &Reg,
    release: &str,
    id: u64,
    digest: &Digest,
    verify: bool,
) -> CliResult<u64> {
    use futures_util::StreamExt;
    let r = reg
        .req(Method::GET, &format!("{release}/assets/{id}"))
        .header("accept", "application/octet-stream");
    let resp = reg.expect(r, StatusCode::OK, "download").await?;
    let mut h = verify.then(|| Hasher::new(Algorithm::Sha256));
    let mut n = 0u64;
    let mut s = resp.bytes_stream();
    while let Some(c) = s.next().await {
        let c = c.map_err(|e| CliError::Msg(format!("download: {e}")))?;
        n += c.len() as u64;
        if let Some(h) = h.as_mut() {
            h.update(&c);
        }
    }
    if let Some(h) = h {
        let got = h.digest();
        if &got != digest {
            return Err(CliError::Msg(format!(
                "asset {id} downloaded as content hashing to {got}, expected {digest}"
            )));
        }
    }
    Ok(n)
}

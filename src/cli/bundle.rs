//! `pfai bundle export|import`: air-gap bundles. The server writes and reads the file (see
//! `domain::bundle`); the CLI streams it to or from disk, reads an earlier bundle for
//! `--since`, and prints the import report.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use futures_util::StreamExt;
use reqwest::Method;
use tokio::io::AsyncWriteExt;

use super::client::Client;
use super::{CliError, CliResult};
use crate::api::{BundleExport, BundleImportReport, BundleSince};
use crate::domain::bundle as format;

/// Bundle subcommands.
#[derive(Debug, Subcommand)]
pub enum BundleCmd {
    /// Write repositories (git refs, tag rules), their releases with assets and their images
    /// into one verified file (an OCI image layout in a tar), with your read rights.
    ///
    /// Example: pfai bundle export --repo acme/app --since last.tar -o next.tar
    Export {
        /// owner/repo (repeatable).
        #[arg(long = "repo", required = true)]
        repos: Vec<String>,
        /// Only images whose NAME:TAG matches this glob (`acme/app/*:v*`).
        #[arg(long)]
        images: Option<String>,
        /// Only releases whose tag matches this glob (`v1.*`).
        #[arg(long)]
        releases: Option<String>,
        /// An earlier bundle: write only what it lacks (import it first on the other side).
        #[arg(long)]
        since: Option<PathBuf>,
        /// The file to write (written to FILE.part, renamed when complete).
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Verify a bundle (every blob's digest) and apply it: repositories, refs, rules,
    /// releases, images. Needs admin rights on the target owners. Safe to run again: what is
    /// there already is left alone. Exits 1 when any item was refused.
    ///
    /// Example: pfai bundle import next.tar
    Import {
        /// The bundle file.
        file: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn progress(len: Option<u64>, what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let (pb, template) = match len {
        Some(n) => (
            indicatif::ProgressBar::new(n),
            "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
        ),
        None => (
            indicatif::ProgressBar::new_spinner(),
            "{spinner} {msg} {bytes} {bytes_per_sec}",
        ),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        pb.set_style(style);
    }
    pb.set_message(what.to_owned());
    pb
}

/// What an earlier bundle holds: its blob digests and each repository's refs.
pub fn read_since(path: &Path) -> CliResult<BundleSince> {
    let file = std::fs::File::open(path)
        .map_err(|e| CliError::Msg(format!("cannot open {}: {e}", path.display())))?;
    let bad = |e: String| CliError::Msg(format!("{}: {e}", path.display()));
    let mut ar = tar::Archive::new(std::io::BufReader::new(file));
    let mut since = BundleSince::default();
    let mut index = None;
    for entry in ar.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let p = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if p == "index.json" {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut buf).map_err(|e| bad(e.to_string()))?;
            index = Some(buf);
        } else if let Some(d) = format::path_digest(&p) {
            since.blobs.push(d.to_string());
        }
    }
    let index = index.ok_or_else(|| bad("no index.json: not a complete bundle".into()))?;
    let index: format::Index =
        serde_json::from_slice(&index).map_err(|e| bad(format!("index.json: {e}")))?;
    for d in index.manifests {
        if d.annotations.get(format::KIND).map(String::as_str) != Some("repo") {
            continue;
        }
        if let (Some(repo), Some(refs)) = (
            d.annotations.get(format::REPO),
            d.annotations.get(format::REFS),
        ) {
            let refs: Vec<(String, String)> =
                serde_json::from_str(refs).map_err(|e| bad(format!("index.json: {e}")))?;
            since.refs.insert(repo.clone(), refs);
        }
    }
    Ok(since)
}

async fn export(c: &Client, req: BundleExport, output: &Path) -> CliResult<()> {
    let part = PathBuf::from(format!("{}.part", output.display()));
    let resp = c
        .send(c.request(Method::POST, "/api/v1/bundles/export").json(&req))
        .await
        .map_err(|e| match e {
            // The server failed while writing the start of the tar (or cut the connection).
            CliError::Api { status, message } if status >= 500 => CliError::Msg(format!(
                "the server stopped the bundle before its first byte: {message}"
            )),
            CliError::Connect { source, .. } if !source.is_connect() => CliError::Msg(format!(
                "the server stopped the bundle before its answer arrived: {source} (see its log)"
            )),
            other => other,
        })?;
    let mut file = tokio::fs::File::create(&part)
        .await
        .map_err(|e| CliError::Msg(format!("cannot write {}: {e}", part.display())))?;
    let pb = progress(None, "exporting");
    let mut stream = resp.bytes_stream();
    let mut total = 0u64;
    let result: CliResult<()> = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                CliError::Msg(format!(
                    "the server stopped the bundle after {total} bytes: {e} (see its log)"
                ))
            })?;
            file.write_all(&chunk).await?;
            total += chunk.len() as u64;
            pb.inc(chunk.len() as u64);
        }
        file.sync_all().await?;
        Ok(())
    }
    .await;
    pb.finish_and_clear();
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(e);
    }
    tokio::fs::rename(&part, output).await?;
    eprintln!("wrote {} ({total} bytes)", output.display());
    Ok(())
}

async fn import(c: &Client, path: &Path, json: bool) -> CliResult<()> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| CliError::Msg(format!("cannot open {}: {e}", path.display())))?;
    let len = file.metadata().await?.len();
    let pb = progress(Some(len), "uploading");
    let pb2 = pb.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).inspect(move |c| {
        if let Ok(c) = c {
            pb2.inc(c.len() as u64);
        }
    });
    let req = c
        .request(Method::POST, "/api/v1/bundles/import")
        .header(reqwest::header::CONTENT_TYPE, "application/x-tar")
        .header(reqwest::header::CONTENT_LENGTH, len)
        .body(reqwest::Body::wrap_stream(stream));
    let resp = c.send(req).await;
    pb.finish_and_clear();
    let report: BundleImportReport = resp?
        .json()
        .await
        .map_err(|e| CliError::Msg(format!("reading the import report: {e}")))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        for i in &report.items {
            match &i.detail {
                Some(d) => println!("{:<9} {:<7} {}: {d}", i.outcome, i.kind, i.name),
                None => println!("{:<9} {:<7} {}", i.outcome, i.kind, i.name),
            }
        }
        let count = |o: &str| report.items.iter().filter(|i| i.outcome == o).count();
        println!(
            "{} blobs ({} bytes) verified; {} created, {} updated, {} unchanged, {} refused",
            report.blobs_verified,
            report.bytes_verified,
            count("created"),
            count("updated"),
            count("unchanged"),
            count("refused")
        );
    }
    let refused = report
        .items
        .iter()
        .filter(|i| i.outcome == "refused")
        .count();
    if refused > 0 {
        return Err(CliError::Msg(format!(
            "{refused} item(s) refused (listed above); the rest was applied"
        )));
    }
    Ok(())
}

/// Runs a bundle subcommand.
pub async fn run(cmd: BundleCmd) -> CliResult<()> {
    let c = Client::from_env();
    match cmd {
        BundleCmd::Export {
            repos,
            images,
            releases,
            since,
            output,
        } => {
            let since = match since {
                Some(p) => Some(
                    tokio::task::spawn_blocking(move || read_since(&p))
                        .await
                        .map_err(|e| CliError::Msg(e.to_string()))??,
                ),
                None => None,
            };
            let req = BundleExport {
                repos,
                images,
                releases,
                since,
            };
            export(&c, req, &output).await
        }
        BundleCmd::Import { file, json } => import(&c, &file, json).await,
    }
}

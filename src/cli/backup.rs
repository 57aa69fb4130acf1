//! `pfai backup` (online against the server, or offline on a stopped server's data directory)
//! and `pfai restore`. The online path is a client like every other command: it asks the
//! server for a snapshot, fetches the files the backup directory lacks (verified against the
//! manifest while they stream), writes the manifest last and releases the snapshot.

use std::path::PathBuf;

use reqwest::Method;

use super::client::{decode, CliError, CliResult, Client};
use super::print_json;
use crate::backup::{self, BackupError, BackupManifest, BackupReport, Target};

/// `pfai backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The backup directory (created; blobs and assets of an earlier backup in it are reused).
    #[arg(long)]
    pub to: PathBuf,
    /// Back up this data directory directly instead of asking the server (the server must be
    /// stopped).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// With --data-dir: where its assets live, when not $DATA_DIR/assets.
    #[arg(long, requires = "data_dir")]
    pub asset_storage_path: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `pfai restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup directory.
    #[arg(long)]
    pub from: PathBuf,
    /// The new data directory (must not exist, or be empty).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Put the assets here instead of $DATA_DIR/assets (must not exist, or be empty); start
    /// the server with the same --asset-storage-path.
    #[arg(long)]
    pub asset_storage_path: Option<PathBuf>,
}

fn msg(e: BackupError) -> CliError {
    CliError::Msg(e.to_string())
}

/// Runs `pfai backup`.
pub async fn backup(args: BackupArgs) -> CliResult<()> {
    let report = match &args.data_dir {
        Some(d) => {
            let assets = args
                .asset_storage_path
                .clone()
                .unwrap_or_else(|| backup::default_asset_base(d));
            crate::domain::backup::offline(d, &assets, &args.to)
                .await
                .map_err(msg)?
        }
        None => online(&args.to).await?,
    };
    if args.json {
        print_json(&serde_json::to_value(&report).unwrap_or_default());
    } else {
        println!(
            "backup {} written to {}: {} file(s), {} copied ({} bytes), {} already there",
            report.id,
            args.to.display(),
            report.files,
            report.copied.len(),
            report.bytes_copied,
            report.reused
        );
    }
    Ok(())
}

async fn online(to: &std::path::Path) -> CliResult<BackupReport> {
    let c = Client::from_env();
    c.token()?;
    let target = Target::open(to).map_err(msg)?;
    let m: BackupManifest = decode(c.call(Method::POST, "/api/v1/admin/backups").await?)?;
    // Refuse a hostile or broken manifest before fetching anything.
    for f in &m.files {
        backup::rel_path(&f.path).map_err(msg)?;
    }
    let result = fetch_all(&c, &target, &m).await;
    // Release the snapshot whatever happened (the server also drops it when idle).
    let released = c
        .call(Method::DELETE, &format!("/api/v1/admin/backups/{}", m.id))
        .await;
    let report = result?;
    if let Err(e) = released {
        eprintln!("warning: releasing snapshot {} failed: {e}", m.id);
    }
    Ok(report)
}

async fn fetch_all(c: &Client, target: &Target, m: &BackupManifest) -> CliResult<BackupReport> {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let mut report = BackupReport {
        id: m.id.clone(),
        files: m.files.len() as u64,
        ..BackupReport::default()
    };
    for f in &m.files {
        if target.has(f).map_err(msg)? {
            report.reused += 1;
            continue;
        }
        let encoded: Vec<String> = f
            .path
            .split('/')
            .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
            .collect();
        let path = format!(
            "/api/v1/admin/backups/{}/files/{}",
            utf8_percent_encode(&m.id, SEGMENT),
            encoded.join("/")
        );
        let mut resp = c.send(c.request(Method::GET, &path)).await?;
        let mut w = target.writer(f).map_err(msg)?;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| CliError::Msg(format!("downloading {} was cut: {e}", f.path)))?
        {
            w.write(&chunk).map_err(msg)?;
        }
        w.finish().map_err(msg)?;
        report.copied.push(f.path.clone());
        report.bytes_copied += f.size;
    }
    target.commit(m).map_err(msg)?;
    Ok(report)
}

/// Runs `pfai restore`.
pub async fn restore(args: RestoreArgs) -> CliResult<()> {
    let RestoreArgs {
        from,
        data_dir,
        asset_storage_path,
    } = args;
    let (d, a) = (data_dir.clone(), asset_storage_path.clone());
    let r = tokio::task::spawn_blocking(move || {
        crate::domain::backup::restore(&from, &d, a.as_deref())
    })
    .await
    .map_err(|e| CliError::Msg(format!("restore failed: {e}")))?
    .map_err(|e| CliError::Msg(format!("restore refused: {e}")))?;
    println!(
        "restored {} file(s) and {} repositories into {}; start it with `pfai serve --data-dir {}{}`",
        r.files,
        r.repos,
        data_dir.display(),
        data_dir.display(),
        asset_storage_path
            .map(|a| format!(" --asset-storage-path {}", a.display()))
            .unwrap_or_default()
    );
    Ok(())
}

//! `pfai storage migrate --to s3`: moves a running server's local blobs and assets into its
//! bucket (the server must already run with `--storage s3`; see the README).

use clap::Subcommand;
use reqwest::Method;

use super::client::{decode, CliResult, Client};
use super::print_json;
use crate::api::StorageMigration;

/// Storage subcommands.
#[derive(Debug, Subcommand)]
pub enum StorageCmd {
    /// Copy every local blob and asset into the bucket, verify each, then remove the local
    /// file (site admin). The server must run with --storage s3; it serves throughout.
    ///
    /// Example: pfai storage migrate --to s3
    Migrate {
        /// The backend to move to (`s3`).
        #[arg(long)]
        to: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a storage subcommand.
pub async fn run(cmd: StorageCmd) -> CliResult<()> {
    match cmd {
        StorageCmd::Migrate { to, json } => {
            let c = Client::from_env();
            c.token()?;
            let v = c
                .call(
                    Method::POST,
                    &format!("/api/v1/admin/storage/migrate?to={}", enc(&to)),
                )
                .await?;
            if json {
                print_json(&v);
            } else {
                let r: StorageMigration = decode(v)?;
                println!(
                    "moved to {}: {} blob(s), {} bytes; {} asset(s), {} bytes",
                    r.to, r.blobs, r.blob_bytes, r.assets, r.asset_bytes
                );
            }
            Ok(())
        }
    }
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

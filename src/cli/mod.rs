//! Command-line parsing: raw arguments become validated settings once, here. `pfai serve` runs
//! the server; the other subcommands are clients or offline tools.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{self, Config};

/// pfai: releases, protected git tags and an OCI registry in one binary.
#[derive(Debug, Parser)]
#[command(name = "pfai", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (REST API, git smart HTTP, OCI registry) in this process.
    ///
    /// Example: pfai serve --listen 127.0.0.1:3000 --data-dir ./data
    Serve(ServeArgs),
}

/// Settings of `pfai serve` (flags > environment > defaults).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PFAI_LISTEN", default_value = config::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Data directory (database, blobs, repositories).
    #[arg(long, env = "DATA_DIR", default_value = config::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Where release assets are stored (default: $DATA_DIR/assets).
    #[arg(long, env = "ASSET_STORAGE_PATH")]
    pub asset_storage_path: Option<PathBuf>,
    /// Largest accepted asset, in bytes.
    #[arg(long, env = "PFAI_ASSET_MAX_BYTES", default_value_t = config::DEFAULT_ASSET_MAX)]
    pub asset_max_bytes: u64,
}

impl ServeArgs {
    /// The validated configuration.
    pub fn into_config(self) -> Config {
        let mut c = Config::new(self.data_dir, self.listen);
        c.asset_storage_path = self
            .asset_storage_path
            .filter(|p| !p.as_os_str().is_empty());
        c.limits.asset_max = self.asset_max_bytes;
        c
    }
}

//! Every server setting and its default, in one place. Precedence: flags > environment >
//! defaults (clap resolves the first two; the defaults are written here).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::domain::Limits;
use crate::storage::FaultSwitch;

/// Default listen address: loopback only, so a fresh install is not exposed.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Default largest asset: 10 GiB.
pub const DEFAULT_ASSET_MAX: u64 = 10 << 30;

/// Validated server settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Where `pfai.redb`, blobs, uploads and repositories live.
    pub data_dir: PathBuf,
    /// Base of the asset files (`$DATA_DIR/assets` when unset).
    pub asset_storage_path: Option<PathBuf>,
    /// Size limits.
    pub limits: Limits,
    /// Tests only: a switch that makes the database file's writes fail (see
    /// `storage::FaultSwitch`). Always `None` in `pfai serve`.
    #[doc(hidden)]
    pub db_faults: Option<FaultSwitch>,
}

impl Config {
    /// Defaults with a given data directory and listen address (what tests use).
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Config {
        Config {
            listen,
            data_dir,
            asset_storage_path: None,
            limits: Limits::default(),
            db_faults: None,
        }
    }

    /// The asset base directory.
    pub fn asset_base(&self) -> PathBuf {
        self.asset_storage_path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("assets"))
    }
}

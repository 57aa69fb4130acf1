//! Every server setting and its default, in one place. Precedence: flags > environment >
//! defaults (clap resolves the first two; the defaults are written here).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::domain::Limits;
use crate::storage::FaultSwitch;

/// Default listen address: loopback only, so a fresh install is not exposed.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Default largest asset: 10 GiB.
pub const DEFAULT_ASSET_MAX: u64 = 10 << 30;

/// Default bound of the local read cache of `--storage s3`: 1 GiB.
pub const DEFAULT_S3_CACHE_BYTES: u64 = 1 << 30;

/// Default time a client has to send a request's headers (from its first byte, or from
/// connecting): slowloris defence.
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 30;
/// Default time a keep-alive connection may sit with no request in flight before it is closed.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 75;
/// Default time a request body may send nothing (or a response may be refused by a client that
/// stopped reading) before the request is cut.
pub const DEFAULT_BODY_TIMEOUT_SECS: u64 = 60;
/// Default cap on concurrent connections; past it new ones get a `503` and are closed.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Connection-level limits, so that slow or idle clients cannot hold the server.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Time allowed for a request's headers, counted from the connection's start or from the
    /// first byte of a request after an idle period.
    pub header_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// A request whose body sends nothing for this long is cut (the connection closes after the
    /// error response); the same bound applies to a response the client stopped reading.
    pub body_timeout: Duration,
    /// Connections served at once; more are answered `503` and closed.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_timeout: Duration::from_secs(DEFAULT_HEADER_TIMEOUT_SECS),
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS),
            body_timeout: Duration::from_secs(DEFAULT_BODY_TIMEOUT_SECS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

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
    /// Connection timeouts and the connection cap.
    pub conn: ConnLimits,
    /// When set, `GET /metrics` wants this Bearer token.
    pub metrics_token: Option<String>,
    /// Serve HTTPS with this certificate and key (plain HTTP when `None`).
    pub tls: Option<crate::tls::TlsFiles>,
    /// Tests only: a switch that makes the database file's writes fail (see
    /// `storage::FaultSwitch`). Always `None` in `pfai serve`.
    #[doc(hidden)]
    pub db_faults: Option<FaultSwitch>,
    /// Blob and asset bytes in an S3-compatible bucket (`--storage s3`); `None`: local files.
    pub s3: Option<crate::storage::s3::S3Settings>,
}

impl Config {
    /// Defaults with a given data directory and listen address (what tests use).
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Config {
        Config {
            listen,
            data_dir,
            asset_storage_path: None,
            limits: Limits::default(),
            conn: ConnLimits::default(),
            metrics_token: None,
            tls: None,
            db_faults: None,
            s3: None,
        }
    }

    /// The asset base directory.
    pub fn asset_base(&self) -> PathBuf {
        self.asset_storage_path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("assets"))
    }
}

//! Wiring: open the stores, bootstrap the first admin, raise the open-file limit, build the
//! routes, serve them (`conn`: timeouts, connection cap, graceful shutdown), and run the periodic
//! jobs. `spawn` is used by `pfai serve` and by the tests alike.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::domain::error::Chain;
use crate::domain::registry::upload;
use crate::domain::{account, release, Core};
use crate::tls::CertStore;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Opening the data directory failed.
    #[error("cannot open the data directory: {}", Chain::of(.0))]
    Storage(#[from] crate::storage::StorageError),
    /// Bootstrapping failed.
    #[error("cannot initialise: {}", .0.chain())]
    Domain(#[from] crate::domain::DomainError),
    /// Binding the listen address failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The asset directory would hold the data directory (or be it): fsck's orphan sweep of
    /// the asset directory must never reach the database, blobs or repositories.
    #[error(
        "the asset storage path {assets} must not be the data directory or contain it ({data})"
    )]
    AssetBaseOverlaps {
        /// The asset base.
        assets: std::path::PathBuf,
        /// The data directory.
        data: std::path::PathBuf,
    },
    /// The TLS certificate or key is unusable.
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The system `git` is needed for the pack protocol.
    #[error("the `git` command is required but was not found on PATH")]
    NoGit,
}

/// A running server.
pub struct Server {
    /// The bound address (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// Shared state (tests use it to inspect storage).
    pub core: Arc<Core>,
    /// The certificate being served, when serving HTTPS.
    tls: Option<Arc<CertStore>>,
    shutdown: Option<oneshot::Sender<()>>,
    join: JoinHandle<()>,
}

impl Server {
    /// Stops accepting, lets in-flight requests finish, flushes counters, closes the database.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.join).await;
    }

    /// Waits until the server stops (after `shutdown` was triggered elsewhere).
    pub async fn wait(self) {
        let _ = self.join.await;
    }

    /// Re-reads the TLS certificate and key files and presents them to new connections (open
    /// ones keep theirs); on an error the old certificate stays. What SIGHUP does. `Ok(false)`
    /// when the server does not serve HTTPS.
    pub fn reload_tls(&self) -> Result<bool, crate::tls::TlsError> {
        match &self.tls {
            Some(store) => store.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// The certificate store, for a task that reloads it (SIGHUP) while `wait` holds the
    /// server.
    pub fn tls_store(&self) -> Option<Arc<CertStore>> {
        self.tls.clone()
    }

    /// A handle that triggers shutdown.
    pub fn take_shutdown(&mut self) -> Option<oneshot::Sender<()>> {
        self.shutdown.take()
    }
}

/// Refuses an asset base that is the data directory or one of its ancestors (a subdirectory of
/// the data directory, like the default `$DATA_DIR/assets`, is fine).
fn check_asset_base(config: &Config) -> Result<(), StartError> {
    let (data, assets) = (config.data_dir.clone(), config.asset_base());
    for d in [&data, &assets] {
        std::fs::create_dir_all(d).map_err(crate::storage::StorageError::from)?;
    }
    let canon = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    if canon(&data).starts_with(canon(&assets)) {
        return Err(StartError::AssetBaseOverlaps { assets, data });
    }
    Ok(())
}

/// Opens everything and starts serving on `config.listen`.
pub async fn spawn(config: Config) -> Result<Server, StartError> {
    if std::process::Command::new("git")
        .arg("--version")
        .output()
        .is_err()
    {
        return Err(StartError::NoGit);
    }
    check_asset_base(&config)?;
    // Before anything is opened: an unusable certificate is a start error naming the file.
    let tls = config.tls.clone().map(CertStore::load).transpose()?;
    let acceptor = match &tls {
        Some(store) => Some(tokio_rustls::TlsAcceptor::from(store.server_config()?)),
        None => None,
    };
    let core = Core::open_on(
        &config.data_dir,
        &config.asset_base(),
        config.limits.clone(),
        config.db_faults.clone(),
        config.s3.as_ref(),
    )?;
    if let Some(path) = account::bootstrap_admin(&core, &config.data_dir).await? {
        tracing::info!(path = %path.display(), "created site admin `admin`; its token is in this file");
        tracing::info!(
            "for a web UI password: stop the server and run `pfai admin set-password admin \
             --data-dir {} --password-stdin`, or with the token: `pfai admin user set-password \
             admin --password-stdin`",
            config.data_dir.display()
        );
    }
    // Before binding, so that the connection cap below fits the limit in force.
    let fd_soft = crate::conn::raise_fd_limit();
    let mut conn_limits = config.conn.clone();
    conn_limits.max_connections = crate::conn::fit_cap(conn_limits.max_connections, fd_soft);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    // Nothing is uploading yet: files in uploads/ without a session row are crash leftovers.
    match upload::purge_stale(&core, core.limits.upload_ttl_secs, 0, false).await {
        Ok(p) if !p.is_empty() => {
            tracing::info!(count = p.len(), "purged stale or orphaned upload data")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e.chain(), "purging uploads at startup failed"),
    }
    let routes = crate::http::routes(core.clone(), config.metrics_token.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let flusher = {
        let core = core.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            let mut n: u64 = 0;
            loop {
                tick.tick().await;
                n += 1;
                if let Err(e) = release::flush_downloads(&core).await {
                    tracing::warn!(error = %e.chain(), "flushing download counts failed; will retry");
                }
                // After a failed disk write: try a small write, so health recovers (and the
                // database is reopened) even while no client writes.
                if core.db.write_failure().is_some() {
                    if let Some(why) = core.db.recheck().await {
                        tracing::warn!(reason = %why, "database writes still failing");
                    }
                }
                // Every 30 seconds: start the periodic upstream mirrors that are due.
                if n % 6 == 0 {
                    crate::domain::mirror::spawn_due(&core).await;
                }
                // Every 10 minutes: purge idle upload sessions (active ones are skipped).
                if n % 120 == 0 {
                    let ttl = core.limits.upload_ttl_secs;
                    if let Err(e) = upload::purge_stale(&core, ttl, ttl.min(3600), false).await {
                        tracing::warn!(error = %e.chain(), "purging stale uploads failed");
                    }
                    // Backup snapshots no client asked for within their TTL.
                    let c = core.clone();
                    let _ = tokio::task::spawn_blocking(move || c.backups.expire()).await;
                }
            }
        })
    };
    let core2 = core.clone();
    let core3 = core.clone();
    let traffic = core.metrics.traffic.clone();
    let join = tokio::spawn(async move {
        crate::conn::serve(
            listener,
            routes,
            conn_limits,
            acceptor,
            traffic,
            async move {
                let _ = rx.await;
                core3
                    .shutting_down
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            },
        )
        .await;
        // Chunk writers still running after their 202 finish writing before the process ends.
        upload::settle_all(&core2).await;
        flusher.abort();
        // Wait for the abort, so its handle on the database is gone when we return.
        let _ = flusher.await;
        // A failed flush keeps the counts in memory; the retry runs on a reopened database
        // when the failure was a poisoned one.
        for attempt in 1..=3 {
            match release::flush_downloads(&core2).await {
                Ok(()) => break,
                Err(e) if attempt < 3 => {
                    tracing::warn!(error = %e.chain(), "flushing download counts at shutdown failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e.chain(), "flushing download counts at shutdown failed; they are lost")
                }
            }
        }
        tracing::info!("server stopped");
    });
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, data_dir = %config.data_dir.display(), "pfai listening");
    Ok(Server {
        addr,
        core,
        tls,
        shutdown: Some(tx),
        join,
    })
}

//! `pfai serve`: run the server until SIGINT/SIGTERM, then shut down gracefully; with HTTPS,
//! SIGHUP re-reads the certificate and key.

use super::{CliError, CliResult};
use crate::config::Config;

/// Runs the server in this process.
pub async fn run(config: Config) -> CliResult<()> {
    let mut server = crate::app::spawn(config)
        .await
        .map_err(|e| CliError::Msg(e.to_string()))?;
    if let Some(store) = server.tls_store() {
        tokio::spawn(reload_on_sighup(store));
    }
    let trigger = server.take_shutdown();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        if let Some(t) = trigger {
            let _ = t.send(());
        }
    });
    server.wait().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Re-reads the TLS certificate and key on every SIGHUP (`CertStore::reload` logs the outcome
/// and keeps the old pair when the new one is unusable).
#[cfg(unix)]
async fn reload_on_sighup(store: std::sync::Arc<crate::tls::CertStore>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; the TLS certificate will not be reloaded");
            return;
        }
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the TLS certificate");
        let s = store.clone();
        // File reads: off the async workers.
        let _ = tokio::task::spawn_blocking(move || s.reload()).await;
    }
}

/// No SIGHUP here: the certificate is read at start only.
#[cfg(not(unix))]
async fn reload_on_sighup(_store: std::sync::Arc<crate::tls::CertStore>) {}

//! `pfai serve`: run the server until SIGINT/SIGTERM, then shut down gracefully.

use super::{CliError, CliResult};
use crate::config::Config;

/// Runs the server in this process.
pub async fn run(config: Config) -> CliResult<()> {
    let mut server = crate::app::spawn(config)
        .await
        .map_err(|e| CliError::Msg(e.to_string()))?;
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

//! Shutdown on SIGINT/SIGTERM through CancellationTokens.
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Tokens for an orderly stop: `shutdown` is cancelled by the first SIGINT or SIGTERM,
/// `force` by a second one (stop waiting for graceful exits).
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// The first signal: stop.
    pub shutdown: CancellationToken,
    /// The second signal: stop now.
    pub force: CancellationToken,
}

/// Installs the SIGINT/SIGTERM handlers and returns the tokens they cancel.
pub fn install() -> anyhow::Result<Shutdown> {
    let tokens = Shutdown {
        shutdown: CancellationToken::new(),
        force: CancellationToken::new(),
    };
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let t = tokens.clone();
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                () = t.force.cancelled() => return,
            };
            if t.shutdown.is_cancelled() {
                tracing::warn!(signal = name, "second signal, stopping at once");
                t.force.cancel();
                return;
            }
            tracing::info!(signal = name, "shutting down");
            t.shutdown.cancel();
        }
    });
    Ok(tokens)
}

/// A token cancelled on the first SIGINT or SIGTERM (the server roles' shutdown).
pub fn shutdown_token() -> anyhow::Result<CancellationToken> {
    Ok(install()?.shutdown)
}

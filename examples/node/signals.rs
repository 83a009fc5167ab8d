//! Ctrl-C and SIGTERM.

/// Ctrl-C (SIGINT) and, on unix, SIGTERM: installed at once, so a signal that arrives while
/// the node starts is not lost.
pub struct ShutdownSignals {
    #[cfg(unix)]
    pub interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    pub terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    #[cfg(unix)]
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    #[cfg(not(unix))]
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {})
    }

    /// The name of the first signal received.
    #[cfg(unix)]
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }

    #[cfg(not(unix))]
    pub async fn recv(&mut self) -> &'static str {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "Ctrl-C",
            Err(_) => std::future::pending().await,
        }
    }
}

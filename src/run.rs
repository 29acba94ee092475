//! The daemon's life: install signal handlers, bind everything, write the pid file, serve,
//! and on SIGINT/SIGTERM stop accepting and drain. A second signal exits at once.

use std::io;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::process::{PidFile, Signals};
use crate::tunnel::{StartError, Tunnel};
use crate::upstream::ConnectTo;

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// It could not start listening.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The pid file could not be written.
    #[error(
        "cannot write pid file {path}: {source}; fix the `pid` path or its directory's permissions, or set `pid =` to write none"
    )]
    PidFile {
        /// The `pid` path.
        path: std::path::PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
}

/// Runs every service of `config` until SIGINT or SIGTERM.
pub async fn run(config: Config, connect_to: ConnectTo) -> Result<(), RunError> {
    let mut signals = Signals::install().map_err(RunError::Signals)?;
    match crate::process::raise_fd_limit() {
        Ok(n) => tracing::debug!(limit = n, "open-file limit"),
        Err(e) => warn!(error = %e, "cannot raise the open-file limit; many clients may hit EMFILE"),
    }
    let tunnel = Tunnel::bind(config.services, &connect_to).await?;
    let _pid = match &config.global.pid {
        Some(path) => Some(PidFile::create(path).map_err(|source| RunError::PidFile {
            path: path.clone(),
            source,
        })?),
        None => None,
    };
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    // `exit` skips destructors: the pid file has to be removed by hand on that path.
    let pid_path = config.global.pid.clone();
    tokio::spawn(async move {
        let first = signals.next().await;
        info!(signal = ?first, "stopping: no new connections");
        trigger.cancel();
        let second = signals.next().await;
        warn!(signal = ?second, "second signal: exiting now");
        if let Some(path) = pid_path {
            let _ = std::fs::remove_file(path);
        }
        std::process::exit(130);
    });
    let left = tunnel.serve(shutdown).await;
    info!(cut = left, "stopped");
    Ok(())
}

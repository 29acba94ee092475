//! The daemon's life: install signal handlers, bind everything, write the pid file, drop
//! privileges, serve; SIGHUP reloads (and reopens the log), SIGUSR1 reopens the log; on SIGINT/SIGTERM stop
//! accepting and drain. A second stop signal exits at once.

use std::io;

use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::daemon::Ready;
use crate::logging;
use crate::privileges::{self, DropError};
use crate::process::{Event, PidFile, Signals};
use crate::reload;
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
    /// `setuid`/`setgid` could not be applied; nothing was served.
    #[error("{0}")]
    Privileges(#[from] DropError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
}

/// Runs every service of `config` until SIGINT or SIGTERM. `log` reopens the log file on
/// SIGUSR1; `ready`, when detached, is told once everything listens.
pub async fn run(
    mut config: Config,
    connect_to: ConnectTo,
    log: logging::Handle,
    ready: Option<Ready>,
) -> Result<(), RunError> {
    let mut signals = Signals::install().map_err(RunError::Signals)?;
    match crate::process::raise_fd_limit() {
        Ok(n) => tracing::debug!(limit = n, "open-file limit"),
        Err(e) => warn!(error = %e, "cannot raise the open-file limit; many clients may hit EMFILE"),
    }
    let bound = Tunnel::bind(config.services.clone(), &connect_to).await?;
    let _pid = match &config.global.pid {
        Some(path) => Some(PidFile::create(path).map_err(|source| RunError::PidFile {
            path: path.clone(),
            source,
        })?),
        None => None,
    };
    // `exit` skips destructors: the pid file has to be removed by hand on that path.
    let pid_path = config.global.pid.clone();
    privileges::drop_to(config.global.user.as_ref(), config.global.group.as_ref())?;
    if let Some(u) = &config.global.user {
        info!(user = %u.name, uid = u.uid, "dropped privileges");
    }
    let mut tunnel = bound.start();
    if let Some(ready) = ready
        && let Err(e) = ready.done()
    {
        warn!(error = %e, "cannot detach standard input/output");
    }
    let first = loop {
        match signals.next().await {
            Event::Stop(s) => break s,
            Event::Reload => {
                // As stunnel: a reload also reopens the log file.
                reopen(&log, "SIGHUP");
                reload::reload(&mut tunnel, &mut config).await;
            }
            Event::ReopenLog => reopen(&log, "SIGUSR1"),
        }
    };
    info!(signal = ?first, "stopping: no new connections");
    tokio::spawn(async move {
        let second = signals.next_stop().await;
        warn!(signal = ?second, "second signal: exiting now");
        if let Some(path) = pid_path {
            let _ = std::fs::remove_file(path);
        }
        std::process::exit(130);
    });
    let left = tunnel.shutdown().await;
    info!(cut = left, "stopped");
    Ok(())
}

fn reopen(log: &logging::Handle, signal: &str) {
    match log.reopen() {
        Ok(Some(path)) => info!(signal, output = %path.display(), "log file reopened"),
        Ok(None) => debug!(signal, "no log file to reopen (no `output`)"),
        Err(e) => error!(signal, error = %e, "cannot reopen the log file; still writing to the old one"),
    }
}

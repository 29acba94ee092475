//! The daemon's life: install signal handlers, bind everything, write the pid file, drop
//! privileges, serve; SIGHUP reloads (and reopens the log), SIGUSR1 reopens the log; on SIGINT/SIGTERM stop
//! accepting and drain. A second stop signal exits at once.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::daemon::Ready;
use crate::logging;
use crate::metrics::{self, Metrics};
use crate::notify;
use crate::privileges::{self, DropError};
use crate::process::{Event, PidFile, Signals};
use crate::reload;
use crate::sockopt;
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
    /// The pid file names another retunnel that is still running.
    #[error(
        "pid file {path} names process {pid}, a retunnel that is still running; stop it first (`kill {pid}`), or give this instance a `pid` file of its own"
    )]
    PidInUse {
        /// The `pid` path.
        path: std::path::PathBuf,
        /// The process it names.
        pid: u32,
    },
    /// `setuid`/`setgid` could not be applied; nothing was served.
    #[error("{0}")]
    Privileges(#[from] DropError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
    /// The `metrics` address could not be bound.
    #[error("metrics: cannot listen on {addr}: {source}; {hint}")]
    Metrics {
        /// The `metrics` address.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
        /// What to do.
        hint: String,
    },
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
    if let Some(path) = &config.global.pid
        && let Some(pid) = crate::process::live_owner(path)
    {
        return Err(RunError::PidInUse {
            path: path.clone(),
            pid,
        });
    }
    let metrics = Arc::new(Metrics::default());
    let bound = Tunnel::bind(config.services.clone(), &connect_to, metrics.clone()).await?;
    let endpoint = match config.global.metrics {
        Some(addr) => Some(listen_metrics(addr)?),
        None => None,
    };
    let _pid = match &config.global.pid {
        Some(path) => Some(PidFile::create(path).map_err(|source| RunError::PidFile {
            path: path.clone(),
            source,
        })?),
        None => None,
    };
    let _address = match (&endpoint, &config.global.pid) {
        (Some(listener), Some(pid)) if config.global.metrics.is_some_and(|a| a.port() == 0) => {
            Some(note_address(listener, pid)?)
        }
        _ => None,
    };
    // `exit` skips destructors: the pid file has to be removed by hand on that path.
    let pid_path = config.global.pid.clone();
    let address_text = _address.as_ref().map(|f| f.text().to_string());
    let was = unsafe { libc::geteuid() };
    privileges::drop_to(config.global.user.as_ref(), config.global.group.as_ref())?;
    match &config.global.user {
        // `setuid = root` (the AWS guide's file) drops nothing: say so.
        Some(u) if u.uid == was => {
            info!(user = %u.name, uid = u.uid, "setuid names the user retunnel already runs as: privileges unchanged")
        }
        Some(u) => info!(user = %u.name, uid = u.uid, "dropped privileges"),
        None => {}
    }
    let mut tunnel = bound.start();
    let stop = CancellationToken::new();
    if let Some(listener) = endpoint {
        tokio::spawn(metrics::server::serve(listener, metrics.clone(), stop.clone()));
    }
    if let Some(ready) = ready
        && let Err(e) = ready.done()
    {
        warn!(error = %e, "cannot detach standard input/output");
    }
    notify::ready(&metrics);
    notify::watchdog(metrics.clone(), stop.clone());
    let first = loop {
        match signals.next().await {
            Event::Stop(s) => break s,
            Event::Reload => {
                notify::reloading();
                // As stunnel: a reload also reopens the log file.
                reopen(&log, "SIGHUP");
                let sum = reload::reload(&mut tunnel, &mut config).await;
                metrics.reloaded(sum.is_some(), sum.is_some_and(|s| s.failed == 0));
                notify::ready(&metrics);
            }
            Event::ReopenLog => reopen(&log, "SIGUSR1"),
        }
    };
    notify::stopping();
    stop.cancel();
    info!(signal = ?first, "stopping: no new connections");
    tokio::spawn(async move {
        let second = signals.next_stop().await;
        warn!(signal = ?second, "second signal: exiting now");
        if let Some(path) = pid_path {
            if let Some(text) = address_text {
                crate::process::remove_if_ours(&metrics::server::address_file(&path), &text);
            }
            crate::process::remove_if_ours(&path, &PidFile::own_text());
        }
        std::process::exit(130);
    });
    let left = tunnel.shutdown().await;
    info!(cut = left, "stopped");
    Ok(())
}

/// Binds the `metrics` address (before privileges are dropped, like the sections).
fn listen_metrics(addr: SocketAddr) -> Result<TcpListener, RunError> {
    let listener = sockopt::bind_listener(addr, &[]).map_err(|source| RunError::Metrics {
        addr,
        hint: metrics_bind_hint(&source),
        source,
    })?;
    let shown = listener.local_addr().unwrap_or(addr);
    info!(metrics = %shown, "metrics listening: /metrics, /health, /status");
    if let Some(w) = metrics::server::risk(addr) {
        warn!("{w}");
    }
    Ok(listener)
}

/// `metrics = ADDR:0`: writes the port it was given beside the pid file, where `retunnel
/// status -c FILE` looks.
fn note_address(listener: &TcpListener, pid: &std::path::Path) -> Result<PidFile, RunError> {
    let path = metrics::server::address_file(pid);
    let written = listener
        .local_addr()
        .and_then(|a| PidFile::create_with(&path, &format!("{a}\n")));
    written.map_err(|source| RunError::PidFile { path, source })
}

/// What to do when the `metrics` address cannot be bound: the hints for `accept`, about
/// `metrics`.
fn metrics_bind_hint(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => {
            "another program, or one of these sections on an overlapping address, listens there (see `ss -ltnp`); choose another port in `metrics`".into()
        }
        _ => crate::tunnel::bind_hint(e).replace("`accept`", "`metrics`"),
    }
}

fn reopen(log: &logging::Handle, signal: &str) {
    match log.reopen() {
        Ok(Some(path)) => info!(signal, output = %path.display(), "log file reopened"),
        Ok(None) => debug!(signal, "no log file to reopen (no `output`)"),
        Err(e) => error!(signal, error = %e, "cannot reopen the log file; still writing to the old one"),
    }
}

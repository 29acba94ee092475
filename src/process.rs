//! Process concerns: the pid file and the signals retunnel answers (stop, reload, reopen the
//! log). Privileges are in [`crate::privileges`], detaching in [`crate::daemon`].

use std::io;
use std::path::{Path, PathBuf};

use tokio::signal::unix::{SignalKind, signal};

/// A written pid file, removed again when dropped, unless it no longer holds what this
/// process wrote (another instance given the same `pid` path has replaced it since).
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    text: String,
}

impl PidFile {
    /// Writes this process's id to `path`, replacing a stale file. The file is created
    /// afresh (never through a symbolic link) with mode 0644: retunnel often starts as root,
    /// and a link planted in a writable pid directory must not make root truncate its target.
    pub fn create(path: &Path) -> io::Result<PidFile> {
        PidFile::create_with(path, &PidFile::own_text())
    }

    /// Writes `text` to `path` with the same care (the metrics address beside the pid file);
    /// removed when dropped, like the pid file.
    pub fn create_with(path: &Path, text: &str) -> io::Result<PidFile> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        file.write_all(text.as_bytes())?;
        Ok(PidFile {
            path: path.to_path_buf(),
            text: text.to_string(),
        })
    }

    /// What this process wrote into the file.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The text this process's pid file holds.
    pub fn own_text() -> String {
        format!("{}\n", std::process::id())
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        remove_if_ours(&self.path, &self.text);
    }
}

/// Removes `path` if it still holds `text`, what this process wrote there.
pub fn remove_if_ours(path: &Path, text: &str) {
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        let _ = std::fs::remove_file(path);
    }
}

/// The process a pid file names, if it is another retunnel that is still running (the same
/// program name, as `/proc/PID/comm` gives it): a second instance must not take its pid file.
/// A file naming a process that is gone, or that is something else now (the pid was reused
/// after a crash), is stale, as stunnel treats every existing pid file.
pub fn live_owner(path: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    if pid == std::process::id() || pid == 0 {
        return None;
    }
    let comm = |p: &str| std::fs::read_to_string(format!("/proc/{p}/comm")).ok();
    let theirs = comm(&pid.to_string())?;
    (Some(theirs) == comm("self")).then_some(pid)
}

/// Which signal asked retunnel to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (systemd, kill).
    Terminate,
}

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Stop accepting and drain (SIGINT, SIGTERM).
    Stop(Stop),
    /// Read the configuration again (SIGHUP).
    Reload,
    /// Reopen the log file, after logrotate moved it (SIGUSR1).
    ReopenLog,
}

/// Listens for SIGINT, SIGTERM, SIGHUP and SIGUSR1.
#[derive(Debug)]
pub struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers; call before anything listens, so that no signal is lost (and
    /// SIGHUP or SIGUSR1 never kill the process, their default action).
    pub fn install() -> io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }

    /// Waits for the next signal.
    pub async fn next(&mut self) -> Event {
        tokio::select! {
            _ = self.int.recv() => Event::Stop(Stop::Interrupt),
            _ = self.term.recv() => Event::Stop(Stop::Terminate),
            _ = self.hup.recv() => Event::Reload,
            _ = self.usr1.recv() => Event::ReopenLog,
        }
    }

    /// Waits for the next stop signal, ignoring the others.
    pub async fn next_stop(&mut self) -> Stop {
        loop {
            if let Event::Stop(s) = self.next().await {
                return s;
            }
        }
    }
}

/// What to do when `e` says the process (EMFILE) or the system (ENFILE) has no file
/// descriptor left; `None` for any other error.
pub fn out_of_descriptors(e: &io::Error) -> Option<&'static str> {
    match e.raw_os_error() {
        Some(libc::EMFILE) => Some(
            "out of file descriptors (EMFILE: retunnel's open-file limit is reached; each client takes two); raise `ulimit -n` or LimitNOFILE= in the systemd unit, or set `maxConnections`",
        ),
        Some(libc::ENFILE) => Some(
            "out of file descriptors (ENFILE: the system's open-file table is full); raise fs.file-max, or find what holds so many files",
        ),
        _ => None,
    }
}

/// Whether the process can open no file now: an error that hides the cause (a DNS lookup
/// that could not open /etc/hosts or a socket says "Name or service not known") is then
/// reported as what it is. Returns what to do, as [`out_of_descriptors`].
pub fn descriptors_exhausted() -> Option<&'static str> {
    match std::fs::File::open("/dev/null") {
        Ok(_) => None,
        Err(e) => out_of_descriptors(&e),
    }
}

/// Raises the soft limit on open files to the hard limit. Every tunnelled connection holds two
/// descriptors, and a soft limit of 1024 (common on EC2 images) would cap retunnel near 500
/// clients with EMFILE. Returns the limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        return Ok(lim.rlim_max);
    }
    Ok(lim.rlim_cur)
}

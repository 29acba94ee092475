//! Log set-up: `tracing` to standard error or to the `output` file, and to syslog when asked,
//! at the level `debug` sets, unless `RUST_LOG` says otherwise. The file can be reopened
//! (SIGUSR1) after logrotate moved it. Nothing secret is ever logged: no payload byte, no AUTH
//! argument, no key; only addresses, sizes, durations and reasons.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogLevel, LogMode};

/// Where syslog messages go unless `RETUNNEL_SYSLOG_SOCKET` names another datagram socket.
pub const SYSLOG_SOCKET: &str = "/dev/log";

/// Where the log goes.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `debug`.
    pub level: LogLevel,
    /// `output`: a file instead of standard error.
    pub output: Option<PathBuf>,
    /// `log`: how the file is opened at start.
    pub mode: LogMode,
    /// Also send every line to syslog.
    pub syslog: bool,
    /// Detached: standard error goes nowhere, so without `output` only syslog is written.
    pub detached: bool,
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The `output` file could not be opened.
    #[error(
        "cannot open log file {path}: {source}; fix `output` or its directory's permissions (a symbolic link is not followed: name the real file)"
    )]
    Output {
        /// The `output` path.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// No syslog daemon listens.
    #[error(
        "cannot reach syslog at {path}: {source}; set `output = FILE` (or `syslog = no`), or start a syslog daemon"
    )]
    Syslog {
        /// The socket.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
}

/// The running log, for reopening its file.
#[derive(Debug, Clone, Default)]
pub struct Handle {
    file: Option<Arc<LogFile>>,
}

impl Handle {
    /// Reopens the `output` file at its path (appending), after logrotate renamed it. On
    /// failure the old file stays in use and the error is returned.
    pub fn reopen(&self) -> io::Result<Option<&Path>> {
        let Some(f) = &self.file else { return Ok(None) };
        let new = open(&f.path, LogMode::Append)?;
        *f.lock() = new;
        Ok(Some(&f.path))
    }
}

/// Installs the global subscriber.
pub fn init(s: &Settings) -> Result<Handle, InitError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(s.level.directive()));
    let mut handle = Handle::default();
    let main: Option<Box<dyn Layer<_> + Send + Sync>> = match &s.output {
        Some(path) => {
            let file = open(path, s.mode).map_err(|source| InitError::Output {
                path: path.clone(),
                source,
            })?;
            let file = Arc::new(LogFile {
                path: path.clone(),
                file: Mutex::new(file),
            });
            handle.file = Some(file.clone());
            Some(fmt_layer().with_ansi(false).with_writer(FileSink(file)).boxed())
        }
        None if s.detached => None,
        None => {
            let colour = io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            Some(fmt_layer().with_ansi(colour).with_writer(io::stderr).boxed())
        }
    };
    let syslog = if s.syslog {
        let sink = Syslog::connect()?;
        // syslog stamps the time itself.
        Some(
            fmt_layer()
                .without_time()
                .with_ansi(false)
                .with_level(false)
                .with_writer(sink),
        )
    } else {
        None
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(main)
        .with(syslog)
        .init();
    Ok(handle)
}

fn fmt_layer<S>() -> tracing_subscriber::fmt::Layer<S> {
    tracing_subscriber::fmt::layer().with_target(false)
}

/// Opens the `output` file, never through a symbolic link (retunnel often starts as root,
/// and a link planted in a log directory must not redirect root's writes); a new file gets
/// mode 0640.
fn open(path: &Path, mode: LogMode) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = OpenOptions::new();
    o.create(true).mode(0o640).custom_flags(libc::O_NOFOLLOW);
    match mode {
        LogMode::Append => o.append(true),
        LogMode::Overwrite => o.write(true).truncate(true),
    };
    o.open(path)
}

/// The `output` file, swappable under its lock.
#[derive(Debug)]
struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl LogFile {
    fn lock(&self) -> MutexGuard<'_, File> {
        // A panic while writing a log line leaves the file usable.
        self.file.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One formatted line (tracing's fmt layer writes each event with a single `write_all`).
struct FileWriter<'a>(MutexGuard<'a, File>);

impl Write for FileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The subscriber's share of the `output` file; the [`Handle`] holds the other.
struct FileSink(Arc<LogFile>);

impl<'a> MakeWriter<'a> for FileSink {
    type Writer = FileWriter<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        FileWriter(self.0.lock())
    }
}

/// A syslog client over the local datagram socket (RFC 3164 framing, facility daemon).
#[derive(Debug)]
struct Syslog {
    path: PathBuf,
    socket: Mutex<UnixDatagram>,
    pid: u32,
}

impl Syslog {
    fn connect() -> Result<Syslog, InitError> {
        let path = std::env::var_os("RETUNNEL_SYSLOG_SOCKET")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(SYSLOG_SOCKET));
        let socket = dial(&path).map_err(|source| InitError::Syslog {
            path: path.clone(),
            source,
        })?;
        Ok(Syslog {
            path,
            socket: Mutex::new(socket),
            pid: std::process::id(),
        })
    }

    /// Sends one line; if syslogd restarted meanwhile, dials it again once. A lost log line
    /// must never stop the tunnel, so errors end here.
    fn send(&self, level: Level, line: &[u8]) {
        let mut msg = format!("<{}>retunnel[{}]: ", 3 * 8 + severity(level), self.pid).into_bytes();
        msg.extend_from_slice(line.strip_suffix(b"\n").unwrap_or(line));
        let mut socket = self.socket.lock().unwrap_or_else(|e| e.into_inner());
        match socket.send(&msg) {
            Ok(_) => {}
            // syslogd is not keeping up: drop the line rather than stall a runtime thread.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => {
                if let Ok(s) = dial(&self.path) {
                    *socket = s;
                    let _ = socket.send(&msg);
                }
            }
        }
    }
}

/// A non-blocking socket to syslogd: logging runs on the runtime's threads, and a stalled
/// syslogd must cost log lines, never the tunnel.
fn dial(path: &Path) -> io::Result<UnixDatagram> {
    let s = UnixDatagram::unbound()?;
    s.connect(path)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// The syslog severity of a tracing level (stunnel logs its normal traffic at notice/info).
fn severity(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Collects one event's text and sends it as one datagram when dropped.
struct SyslogLine<'a> {
    sink: &'a Syslog,
    level: Level,
    buf: Vec<u8>,
}

impl Write for SyslogLine<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.sink.send(self.level, &self.buf);
        }
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogLine<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        SyslogLine {
            sink: self,
            level: Level::INFO,
            buf: Vec::new(),
        }
    }
    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        SyslogLine {
            sink: self,
            level: *meta.level(),
            buf: Vec::new(),
        }
    }
}

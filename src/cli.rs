//! The command line, defined once: the binary parses it, and the shell completions and the man
//! page are generated from the same definition, so they cannot drift from what is accepted.
//! Turning flags into a [`Config`] also lives here; running it does not.

use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use clap_complete::Shell;

use crate::config::{Config, ConfigError, OneOff, Warning};
use crate::upstream::ConnectTo;

const EXAMPLE: &str = "\
Examples:
  retunnel -c redis-cli.conf          # the AWS ElastiCache guide's stunnel file, unchanged
  redis-cli -h 127.0.0.1 -p 6379

  retunnel check -c redis-cli.conf    # will it work? DNS, TCP, TLS, certificate, Redis PING

  retunnel --accept 127.0.0.1:6379 --connect master.abc.cache.amazonaws.com:6379

See tunnel.conf.example and README.md for every option.";

/// Plain TCP in, verified TLS out: reach TLS-only Redis (ElastiCache, MemoryDB) from redis-cli,
/// telnet and older clients. Reads stunnel configuration files.
#[derive(Debug, Parser)]
#[command(name = "retunnel", after_help = EXAMPLE, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do; without one, run the tunnels.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Where the tunnels come from.
    #[command(flatten)]
    pub source: Source,
    /// Detach into the background once listening (as `foreground = no`); logs go to `output`
    /// or syslog. The default is to stay in the foreground, as systemd and containers expect.
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,
    /// Serve /metrics (Prometheus), /health and /status over HTTP on ADDR:PORT (a bare port
    /// means 127.0.0.1), as the global option `metrics`, which this overrides.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check every section: bind, DNS, TCP, TLS, certificate, Redis PING. Exits 1 if any fails.
    Check(Box<CheckArgs>),
    /// Ask a running retunnel (its `metrics` endpoint) how every section is doing, one row per
    /// section. Exits 1 if a section is unhealthy, 2 if nothing answers.
    Status(StatusArgs),
    /// Print a shell completion script (for example: retunnel completions bash > /etc/bash_completion.d/retunnel).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page (roff) to standard output: retunnel man > retunnel.1
    Man {
        /// A subcommand's own page instead (retunnel man check > retunnel-check.1).
        #[arg(value_name = "SUBCOMMAND")]
        subcommand: Option<String>,
    },
}

/// `retunnel check`'s flags.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Only validate the configuration (every error and warning the daemon would give); no network.
    #[arg(long)]
    pub offline: bool,
    /// Print the result as JSON on standard output.
    #[arg(long)]
    pub json: bool,
    /// The configuration to check.
    #[command(flatten)]
    pub source: Source,
}

/// `retunnel status`'s flags.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The configuration the running retunnel was started with; its `metrics` address is asked.
    #[arg(short = 'c', long = "config", value_name = "FILE", conflicts_with = "metrics")]
    pub config: Option<PathBuf>,
    /// The metrics address to ask (a bare port means 127.0.0.1).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<String>,
    /// Print the sections as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

impl StatusArgs {
    /// The address to ask: `--metrics`, or the `metrics` option of the file; with it, the
    /// file it was read from when `metrics` leaves the port to the system (`PID.metrics`).
    pub fn address(&self) -> Result<(std::net::SocketAddr, Option<PathBuf>), String> {
        if let Some(m) = &self.metrics {
            let addr = crate::config::parse_accept(m).map_err(|e| format!("--metrics {m}: {e}"))?;
            return Ok((addr, None));
        }
        let Some(path) = &self.config else {
            return Err("give `-c FILE` (the running retunnel's configuration) or `--metrics ADDR:PORT`".into());
        };
        let (config, _) = Config::load(path).map_err(|e| e.to_string())?;
        let addr = config.global.metrics.ok_or_else(|| {
            format!(
                "{} sets no `metrics = ADDR:PORT`, so the running retunnel has no endpoint to ask; add one (for example `metrics = 127.0.0.1:9187`) and restart it",
                path.display()
            )
        })?;
        match (addr.port(), config.global.pid.as_deref()) {
            (0, Some(pid)) => {
                let file = crate::metrics::server::address_file(pid);
                Ok((given_port(path, addr, &file)?, Some(file)))
            }
            (0, None) => Err(format!(
                "{} sets `metrics = {addr}`, so the running retunnel chose a free port at start, and with no `pid` it notes that port nowhere; set `pid = PATH` (retunnel then writes the address to PATH.metrics, which `status -c` reads) or a fixed port in `metrics`, and restart it; or ask with `--metrics ADDR:PORT` (retunnel logs it: `metrics listening`)",
                path.display()
            )),
            _ => Ok((addr, None)),
        }
    }
}

/// `metrics = ADDR:0`: the port the running retunnel was given, from the file it writes
/// beside its pid file.
fn given_port(config: &Path, addr: std::net::SocketAddr, file: &Path) -> Result<std::net::SocketAddr, String> {
    let chosen = format!(
        "{} sets `metrics = {addr}`, so the running retunnel chose a free port at start",
        config.display()
    );
    let text = std::fs::read_to_string(file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "{chosen} and writes it to {}, which does not exist: is retunnel running with this file?",
            file.display()
        ),
        _ => format!("{chosen}; cannot read it from {}: {e}", file.display()),
    })?;
    text.trim()
        .parse()
        .map_err(|_| format!("{chosen}; {} does not hold an ADDR:PORT", file.display()))
}

/// A config file or the flags of a one-off tunnel.
#[derive(Debug, Args)]
pub struct Source {
    /// Configuration file (stunnel syntax).
    #[arg(short = 'c', long = "config", value_name = "FILE", conflicts_with = "connect")]
    pub config: Option<PathBuf>,

    /// The configuration file, given bare as stunnel takes it.
    #[arg(value_name = "CONFIG", conflicts_with_all = ["config", "connect"])]
    pub config_file: Option<PathBuf>,

    /// Connect to ADDR:PORT wherever the config names HOST:PORT; TLS still verifies HOST.
    /// Repeatable. For trying a config against other servers before DNS changes.
    #[arg(long = "connect-to", value_name = "HOST:PORT:ADDR:PORT")]
    pub connect_to: Vec<String>,

    /// One-off tunnel without a file: listen here for plain TCP clients.
    #[arg(long, value_name = "ADDR:PORT", requires = "connect")]
    pub accept: Option<String>,

    /// One-off tunnel: the TLS server to connect to.
    #[arg(long, value_name = "HOST:PORT", requires = "accept")]
    pub connect: Option<String>,

    /// One-off tunnel: extra CA certificates (PEM), as `CAfile`.
    #[arg(long, value_name = "FILE", requires = "connect")]
    pub cafile: Option<PathBuf>,

    /// One-off tunnel: the name the certificate must carry, as `checkHost`.
    #[arg(long, value_name = "HOST", requires = "connect")]
    pub checkhost: Option<String>,

    /// One-off tunnel: the SNI name to send, as `sni`.
    #[arg(long, value_name = "HOST", requires = "connect")]
    pub sni: Option<String>,

    /// One-off tunnel: do NOT verify the server's certificate (anyone on the path can read the traffic).
    #[arg(long, requires = "connect", conflicts_with_all = ["cafile", "checkhost"])]
    pub insecure: bool,
}

/// Why no configuration came out of the command line.
#[derive(Debug)]
pub enum SourceError {
    /// Neither a file nor `--connect` was given.
    Missing,
    /// A `--connect-to` mapping is malformed.
    ConnectTo(String),
    /// The file or the flags are invalid.
    Config(ConfigError),
}

impl Source {
    /// Loads the file, or builds the one-off section; returns the warnings too.
    pub fn load(&self) -> Result<(Config, Vec<Warning>), SourceError> {
        if let (Some(accept), Some(connect)) = (&self.accept, &self.connect) {
            let flags = OneOff {
                accept: accept.clone(),
                connect: connect.clone(),
                ca_file: self.cafile.clone(),
                check_host: self.checkhost.clone(),
                sni: self.sni.clone(),
                insecure: self.insecure,
            };
            return Config::one_off(&flags)
                .map(|c| (c, Vec::new()))
                .map_err(SourceError::Config);
        }
        let path = self
            .config
            .as_ref()
            .or(self.config_file.as_ref())
            .ok_or(SourceError::Missing)?;
        Config::load(path).map_err(SourceError::Config)
    }

    /// The `--connect-to` mappings.
    pub fn connect_to(&self) -> Result<ConnectTo, SourceError> {
        let mut map = ConnectTo::default();
        for spec in &self.connect_to {
            map.add(spec)
                .map_err(|e| SourceError::ConnectTo(format!("--connect-to {e}")))?;
        }
        Ok(map)
    }
}

/// The version line: retunnel's and the TLS library's it runs on.
pub fn version() -> String {
    format!("{} ({})", env!("CARGO_PKG_VERSION"), crate::tls::ENGINE)
}

/// The full command definition (with the version filled in).
pub fn command() -> clap::Command {
    Cli::command().version(version())
}

/// Parses the process's arguments; prints help or the error and exits on bad ones.
pub fn parse() -> Cli {
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Writes the completion script for `shell`. Generated into memory first: clap_complete
/// panics on a failed write (`retunnel completions bash | head -1`).
pub fn completions(shell: Shell, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command(), "retunnel", &mut script);
    out.write_all(&script)?;
    out.flush()
}

/// Writes the man page of retunnel, or of one of its subcommands (`retunnel-check(1)`, which
/// the main page refers to).
pub fn man(subcommand: Option<&str>, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let main = command();
    let page = match subcommand {
        None => main,
        Some(name) => {
            let Some(sub) = main.find_subcommand(name) else {
                let known: Vec<&str> = main.get_subcommands().map(|c| c.get_name()).collect();
                let msg = format!("no subcommand `{name}`; one of: {}", known.join(", "));
                return Err(std::io::Error::new(std::io::ErrorKind::NotFound, msg));
            };
            let full = format!("retunnel-{name}");
            sub.clone().name(full).version(version())
        }
    };
    clap_mangen::Man::new(page).render(out)
}

//! The `retunnel` command: parse the command line, load the config, set up logging, run,
//! and turn the outcome into a message and an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use retunnel::config::Config;
use retunnel::daemon::Detached;
use retunnel::logging;
use retunnel::upstream::ConnectTo;

const EXAMPLE: &str = "\
Example (the AWS ElastiCache guide's stunnel file runs unchanged):
  retunnel -c redis-cli.conf
  redis-cli -h 127.0.0.1 -p 6379

See tunnel.conf.example and README.md for every option.";

/// Plain TCP in, verified TLS out: reach TLS-only Redis (ElastiCache, MemoryDB) from redis-cli,
/// telnet and older clients. Reads stunnel configuration files.
#[derive(Debug, Parser)]
#[command(version, after_help = EXAMPLE)]
struct Cli {
    /// Configuration file (stunnel syntax).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,

    /// The configuration file, given bare as stunnel takes it.
    #[arg(value_name = "CONFIG", conflicts_with = "config")]
    config_file: Option<PathBuf>,

    /// Connect to ADDR:PORT wherever the config names HOST:PORT; TLS still verifies HOST.
    /// Repeatable. For trying a config against other servers before DNS changes.
    #[arg(long = "connect-to", value_name = "HOST:PORT:ADDR:PORT")]
    connect_to: Vec<String>,

    /// Detach into the background once listening (as `foreground = no`); logs go to `output`
    /// or syslog. The default is to stay in the foreground, as systemd and containers expect.
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(path) = cli.config.or(cli.config_file) else {
        eprintln!("retunnel: no configuration file; run `retunnel -c FILE` (see tunnel.conf.example), or --help");
        return ExitCode::from(2);
    };
    let mut connect_to = ConnectTo::default();
    for spec in &cli.connect_to {
        if let Err(e) = connect_to.add(spec) {
            eprintln!("retunnel: --connect-to {e}");
            return ExitCode::from(2);
        }
    }
    let (config, warnings) = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "retunnel: the configuration has {} problem(s); nothing was started:",
                e.problems.len()
            );
            for p in &e.problems {
                eprintln!("  {p}");
            }
            return ExitCode::from(2);
        }
    };
    let detach = cli.daemon || !config.global.foreground;
    // Fork before the runtime starts any thread; the parent waits until the child listens.
    let ready = if detach {
        match retunnel::daemon::detach() {
            Ok(Detached::Parent(code)) => return ExitCode::from(code),
            Ok(Detached::Child(ready)) => Some(ready),
            Err(e) => {
                eprintln!("retunnel: cannot detach into the background: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let g = &config.global;
    let settings = logging::Settings {
        level: g.log_level,
        output: g.output.clone(),
        mode: g.log_mode,
        syslog: g.syslog.unwrap_or(detach && g.output.is_none()),
        detached: detach,
    };
    let log = match logging::init(&settings) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("retunnel: {e}");
            return ExitCode::from(2);
        }
    };
    // Where an error must also be printed: the person who started retunnel reads stderr, and
    // the log is elsewhere when it is a file or when detached.
    let log_elsewhere = config.global.output.is_some() || detach;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("retunnel: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(retunnel::run::run(config, connect_to, log, ready)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            if log_elsewhere {
                eprintln!("retunnel: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

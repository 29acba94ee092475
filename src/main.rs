//! The `retunnel` command: parse the command line, load the config, set up logging, run,
//! and turn the outcome into a message and an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use retunnel::config::Config;
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
    if let Err(e) = retunnel::logging::init(config.global.log_level, config.global.output.as_deref()) {
        eprintln!(
            "retunnel: cannot open log file {}: {e}",
            config.global.output.as_deref().unwrap_or(&path).display()
        );
        return ExitCode::from(2);
    }
    let output_is_file = config.global.output.is_some();
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
    match runtime.block_on(retunnel::run::run(config, connect_to)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The log may be a file; the person who started retunnel reads stderr.
            tracing::error!("{e}");
            if output_is_file {
                eprintln!("retunnel: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

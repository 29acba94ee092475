//! The `retunnel` command: parse the command line, load the config, set up logging, run (or
//! check), and turn the outcome into a message and an exit code.

use std::process::ExitCode;

use retunnel::check::{self, Style};
use retunnel::cli::{self, CheckArgs, Command, Source, SourceError};
use retunnel::config::{Config, Warning};
use retunnel::upstream::ConnectTo;

fn main() -> ExitCode {
    let cli = cli::parse();
    match cli.command {
        Some(Command::Check(args)) => run_check(&args),
        Some(Command::Completions { shell }) => {
            cli::completions(shell, &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Some(Command::Man { subcommand }) => match cli::man(subcommand.as_deref(), &mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("retunnel: cannot write the man page: {e}");
                ExitCode::FAILURE
            }
        },
        None => run_daemon(&cli.source),
    }
}

/// The config and `--connect-to` mappings, or the exit code after the problems were printed.
fn load(source: &Source, what: &str, outcome: &str) -> Result<(Config, Vec<Warning>, ConnectTo), ExitCode> {
    let loaded = source.connect_to().and_then(|map| Ok((source.load()?, map)));
    match loaded {
        Ok(((config, warnings), map)) => Ok((config, warnings, map)),
        Err(SourceError::Missing) => {
            eprintln!(
                "{what}: no configuration; give `-c FILE` (see tunnel.conf.example) or `--accept ADDR --connect HOST:PORT`, or see --help"
            );
            Err(ExitCode::from(2))
        }
        Err(SourceError::ConnectTo(e)) => {
            eprintln!("{what}: {e}");
            Err(ExitCode::from(2))
        }
        Err(SourceError::Config(e)) => Err(problems(what, outcome, &e.problems)),
    }
}

/// Prints every problem of a configuration; returns the exit code for it.
fn problems(what: &str, outcome: &str, problems: &[String]) -> ExitCode {
    eprintln!("{what}: the configuration has {} problem(s){outcome}:", problems.len());
    for p in problems {
        eprintln!("  {p}");
    }
    ExitCode::from(2)
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Runtime::new().map_err(|e| {
        eprintln!("retunnel: cannot start the async runtime: {e}");
        ExitCode::FAILURE
    })
}

fn run_daemon(source: &Source) -> ExitCode {
    let (config, warnings, connect_to) = match load(source, "retunnel", "; nothing was started") {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = retunnel::logging::init(config.global.log_level, config.global.output.as_deref()) {
        eprintln!(
            "retunnel: cannot open log file {}: {e}",
            config.global.output.as_deref().unwrap_or(&config.path).display()
        );
        return ExitCode::from(2);
    }
    let output_is_file = config.global.output.is_some();
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
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

fn run_check(args: &CheckArgs) -> ExitCode {
    let (config, warnings, connect_to) = match load(&args.source, "retunnel check", "") {
        Ok(c) => c,
        Err(code) => return code,
    };
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if args.offline {
        let found = check::offline_problems(&config);
        if !found.is_empty() {
            return problems("retunnel check", "", &found);
        }
        print!("{}", check::render_offline(&config, &warnings, args.json));
        return ExitCode::SUCCESS;
    }
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let report = runtime.block_on(check::run(&config, &warnings, &connect_to));
    match args.json {
        true => println!("{}", check::render_json(&report)),
        false => print!("{}", check::render_text(&report, Style::detect())),
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

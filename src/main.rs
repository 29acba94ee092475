//! The `retunnel` command: parse the command line, load the config, set up logging, run (or
//! check), and turn the outcome into a message and an exit code.

use std::process::ExitCode;

use retunnel::check::{self, Style};
use retunnel::cli::{self, CheckArgs, Command, Source, SourceError, StatusArgs};
use retunnel::config::{Config, Warning};
use retunnel::daemon::Detached;
use retunnel::logging;
use retunnel::upstream::ConnectTo;

fn main() -> ExitCode {
    let cli = cli::parse();
    match cli.command {
        Some(Command::Check(args)) => run_check(&args),
        Some(Command::Status(args)) => run_status(&args),
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
        None => run_daemon(&cli.source, cli.daemon, cli.metrics.as_deref()),
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

fn run_daemon(source: &Source, daemon: bool, metrics: Option<&str>) -> ExitCode {
    let (mut config, warnings, connect_to) = match load(source, "retunnel", "; nothing was started") {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(m) = metrics {
        match retunnel::config::parse_accept(m) {
            Ok(addr) => match retunnel::config::accepting_on(&config.services, addr) {
                None => config.global.metrics = Some(addr),
                Some(s) => {
                    eprintln!(
                        "retunnel: --metrics {m}: [{}] accepts clients on {addr}; two listeners cannot share a port: choose another port for --metrics",
                        s.name
                    );
                    return ExitCode::from(2);
                }
            },
            Err(e) => {
                eprintln!("retunnel: --metrics {m}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let detach = daemon || !config.global.foreground;
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
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let outcome = runtime.block_on(retunnel::run::run(config, connect_to, log, ready));
    // A DNS lookup still running on a blocking thread (a client that arrived during shutdown)
    // must not hold up the exit: TIMEOUTclose has already been given.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match outcome {
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

fn run_status(args: &StatusArgs) -> ExitCode {
    let addr = match args.address() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("retunnel status: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let answer = match runtime.block_on(retunnel::status::ask(addr)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("retunnel status: {e}");
            return ExitCode::from(2);
        }
    };
    match args.json {
        true => println!("{}", serde_json::to_string_pretty(&answer.status).unwrap_or_default()),
        false => print!("{}", retunnel::status::render_table(&answer.status)),
    }
    match answer.healthy {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    }
}

fn run_check(args: &CheckArgs) -> ExitCode {
    let (config, mut warnings, connect_to) = match load(&args.source, "retunnel check", "") {
        Ok(c) => c,
        Err(code) => return code,
    };
    // What the daemon would warn about when it starts each section.
    for svc in &config.services {
        let risks = retunnel::tunnel::risks(svc);
        warnings.extend(risks.into_iter().map(|w| Warning(format!("[{}] {w}", svc.name))));
    }
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
    // An inspecting handshake that ran out of time may still hold a blocking thread.
    runtime.shutdown_background();
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

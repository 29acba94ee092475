//! The `retunnel` command: parse the command line, load the config, set up logging, run (or
//! check), and turn the outcome into a message and an exit code.

use std::io::Write;
use std::process::ExitCode;

use retunnel::check::{self, Style};
use retunnel::cli::{self, CheckArgs, Command, Source, SourceError, StatusArgs};
use retunnel::config::{Config, Warning};
use retunnel::daemon::Detached;
use retunnel::logging;
use retunnel::upstream::ConnectTo;

/// `print!` to standard output, except that a reader that went away (`retunnel check | head`)
/// is no error: the rest is dropped and the exit code stays what the outcome says.
macro_rules! out {
    ($($t:tt)*) => { emit(&mut std::io::stdout(), format_args!($($t)*)) };
}
/// `println!`, as [`out!`].
macro_rules! outln {
    ($($t:tt)*) => { emit(&mut std::io::stdout(), format_args!("{}\n", format_args!($($t)*))) };
}
/// `eprintln!`, as [`out!`] (`2>&1 | head` closes standard error too).
macro_rules! errln {
    ($($t:tt)*) => { emit(&mut std::io::stderr(), format_args!("{}\n", format_args!($($t)*))) };
}

/// Writes and flushes; a closed pipe ends the output quietly, and any other failure is said
/// once on standard error (if that still works) instead of panicking as `print!` does.
fn emit(w: &mut dyn Write, text: std::fmt::Arguments) {
    match w.write_fmt(text).and_then(|()| w.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            let _ = writeln!(std::io::stderr(), "retunnel: cannot write the output: {e}");
        }
        _ => {}
    }
}

/// Whether a write failed only because the reader went away (`| head`): that ends the
/// output, not the command's success.
fn written(r: std::io::Result<()>, what: &str) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            errln!("retunnel: cannot write {what}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = cli::parse();
    match cli.command {
        Some(Command::Check(args)) => run_check(&args),
        Some(Command::Status(args)) => run_status(&args),
        Some(Command::Completions { shell }) => {
            written(cli::completions(shell, &mut std::io::stdout()), "the completion script")
        }
        Some(Command::Man { subcommand }) => {
            written(cli::man(subcommand.as_deref(), &mut std::io::stdout()), "the man page")
        }
        None => run_daemon(&cli.source, cli.daemon, cli.metrics.as_deref()),
    }
}

/// The config and `--connect-to` mappings, or the exit code after the problems were printed.
fn load(source: &Source, what: &str, outcome: &str) -> Result<(Config, Vec<Warning>, ConnectTo), ExitCode> {
    let loaded = source.connect_to().and_then(|map| Ok((source.load()?, map)));
    match loaded {
        Ok(((config, warnings), map)) => Ok((config, warnings, map)),
        Err(SourceError::Missing) => {
            errln!(
                "{what}: no configuration; give `-c FILE` (see tunnel.conf.example) or `--accept ADDR --connect HOST:PORT`, or see --help"
            );
            Err(ExitCode::from(2))
        }
        Err(SourceError::ConnectTo(e)) => {
            errln!("{what}: {e}");
            Err(ExitCode::from(2))
        }
        Err(SourceError::Config(e)) => Err(problems(what, outcome, &e.problems)),
    }
}

/// Prints every problem of a configuration; returns the exit code for it.
fn problems(what: &str, outcome: &str, problems: &[String]) -> ExitCode {
    errln!("{what}: the configuration has {} problem(s){outcome}:", problems.len());
    for p in problems {
        errln!("  {p}");
    }
    ExitCode::from(2)
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Runtime::new().map_err(|e| {
        errln!("retunnel: cannot start the async runtime: {e}");
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
                    errln!(
                        "retunnel: --metrics {m}: [{}] accepts clients on {addr}; two listeners cannot share a port: choose another port for --metrics",
                        s.name
                    );
                    return ExitCode::from(2);
                }
            },
            Err(e) => {
                errln!("retunnel: --metrics {m}: {e}");
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
                errln!("retunnel: cannot detach into the background: {e}");
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
            errln!("retunnel: {e}");
            return ExitCode::from(2);
        }
    };
    // Where an error must also be printed: the person who started retunnel reads stderr, and
    // the log is elsewhere when it is a file or when detached.
    let log_elsewhere = config.global.output.is_some() || detach;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    // The control runtime (listeners, reloads, the warm sets, metrics) is one thread, and
    // worker 0; the connections run on every worker (see `retunnel::workers`).
    let threads = config.global.threads.unwrap_or_else(retunnel::workers::auto);
    let runtime = match retunnel::workers::runtime() {
        Ok(r) => r,
        Err(e) => {
            errln!("retunnel: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Each worker's event loop takes descriptors too: the limit first (`run` says what it is).
    let _ = retunnel::process::raise_fd_limit();
    if let Err(e) = retunnel::workers::start(threads, runtime.handle().clone()) {
        errln!("retunnel: cannot start {threads} worker threads (`threads`): {e}; lower `threads`");
        return ExitCode::FAILURE;
    }
    let outcome = runtime.block_on(retunnel::run::run(config, connect_to, log, ready));
    // A DNS lookup still running on a blocking thread (a client that arrived during shutdown)
    // must not hold up the exit: TIMEOUTclose has already been given.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            if log_elsewhere {
                errln!("retunnel: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run_status(args: &StatusArgs) -> ExitCode {
    let (addr, noted_in) = match args.address() {
        Ok(a) => a,
        Err(e) => {
            errln!("retunnel status: {e}");
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
            errln!("retunnel status: {e}");
            if let Some(file) = noted_in {
                errln!(
                    "retunnel status: {addr} was read from {}, which retunnel writes at start and removes at exit; one killed without a chance to clean up (kill -9) leaves it behind: start retunnel again (it replaces the file), or ask with --metrics ADDR:PORT",
                    file.display()
                );
            }
            return ExitCode::from(2);
        }
    };
    match args.json {
        true => outln!("{}", serde_json::to_string_pretty(&answer.status).unwrap_or_default()),
        false => out!("{}", retunnel::status::render_table(&answer.status)),
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
    // And about the endpoint, as the daemon warns when it binds it.
    if let Some(w) = config.global.metrics.and_then(retunnel::metrics::server::risk) {
        warnings.push(Warning(w));
    }
    for w in &warnings {
        errln!("warning: {w}");
    }
    if args.offline {
        let found = check::offline_problems(&config);
        if !found.is_empty() {
            return problems("retunnel check", "", &found);
        }
        out!("{}", check::render_offline(&config, &warnings, args.json));
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
        true => outln!("{}", check::render_json(&report)),
        false => out!("{}", check::render_text(&report, Style::detect())),
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

//! Log set-up: `tracing` to standard error or to the `output` file, at the level `debug` sets,
//! unless `RUST_LOG` says otherwise. Nothing secret is ever logged: no payload byte, no AUTH
//! argument, no key; only addresses, sizes, durations and reasons.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

use crate::config::LogLevel;

/// Installs the global subscriber. Fails only if `output` cannot be opened for appending.
pub fn init(level: LogLevel, output: Option<&Path>) -> std::io::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level.directive()));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    match output {
        Some(path) => {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            builder.with_ansi(false).with_writer(Mutex::new(file)).init();
        }
        None => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(colour).with_writer(std::io::stderr).init();
        }
    }
    Ok(())
}

//! systemd's notify protocol (`Type=notify`), through the sd-notify crate: `READY=1` once
//! everything listens, `RELOADING=1` and `READY=1` around a reload, `STOPPING=1`, a `STATUS=`
//! line, and the watchdog when systemd asks for one. Without `$NOTIFY_SOCKET` every call here
//! does nothing. A message that cannot be sent is logged, never fatal: the tunnels matter more.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::metrics::Metrics;

/// Everything listens (after privileges were dropped), or a reload is done.
pub fn ready(metrics: &Metrics) {
    let status = status(metrics);
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// A reload starts (systemd wants the monotonic time with it, to match the reload job).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now, NotifyState::Status("reloading")]),
        Err(e) => warn!(error = %e, "cannot read the monotonic clock for systemd's RELOADING message"),
    }
}

/// Shutdown starts.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: draining connections"),
    ]);
}

/// When systemd set a watchdog (`WatchdogSec=`), pings it at half the interval, with the status
/// line, until `stop`.
pub fn watchdog(metrics: Arc<Metrics>, stop: CancellationToken) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = interval / 2;
    debug!(interval_ms = interval.as_millis() as u64, "systemd watchdog enabled");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {
                    let status = status(&metrics);
                    send(&[NotifyState::Watchdog, NotifyState::Status(&status)]);
                }
            }
        }
    });
}

/// `N sections listening, M connections open`.
fn status(metrics: &Metrics) -> String {
    let sections = metrics.sections();
    let listening = sections.iter().filter(|(_, s)| s.is_listening()).count();
    let open: i64 = sections.iter().map(|(_, s)| s.open_now()).sum();
    format!(
        "{listening} of {} sections listening, {open} connections open",
        sections.len()
    )
}

fn send(states: &[NotifyState]) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if let Err(e) = sd_notify::notify(states)
        && !WARNED.swap(true, Ordering::Relaxed)
    {
        warn!(error = %e, "cannot notify systemd through $NOTIFY_SOCKET (logged once)");
    }
}

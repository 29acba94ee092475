//! The HTTP listener of `metrics = ADDR:PORT`, served by hyper: `GET /metrics` (Prometheus
//! text), `GET /health` (200 or 503 with one line of JSON) and `GET /status` (every section as
//! JSON, for `retunnel status`). It takes a bound listener and a stop signal, like the
//! sections; a slow, stuck or idle client holds only its own connection (each is its own task,
//! closed when its headers do not come in time), and never delays another's answer.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::Metrics;
use super::export;

/// Clients connected at once; one more is closed at once rather than queued behind them
/// (Prometheus scrapes one at a time; probes and `retunnel status` add a few).
const MAX_CLIENTS: usize = 128;
/// A client that has not sent its request headers by then is closed, and so is a kept-alive
/// one that sends no next request: an idle connection holds a slot this long at most.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a retunnel with `pid = PATH` and `metrics = ADDR:0` notes the port it was given, for
/// `retunnel status -c FILE`: `PATH.metrics`, holding `ADDR:PORT` and a newline.
pub fn address_file(pid: &std::path::Path) -> std::path::PathBuf {
    let mut name = pid.as_os_str().to_owned();
    name.push(".metrics");
    name.into()
}

/// What in the `metrics` address exposes the endpoint, for the start-up log.
pub fn risk(addr: std::net::SocketAddr) -> Option<String> {
    (!addr.ip().to_canonical().is_loopback()).then(|| {
        format!(
            "metrics {addr}: the metrics, health and status endpoints are reachable from the network (section names, addresses and counts, no authentication); use 127.0.0.1 unless a scraper on another host needs them"
        )
    })
}

/// Serves until `stop` fires.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, stop: CancellationToken) {
    // No section and no cluster node listener may tunnel to this port: it is retunnel's own.
    let _own = crate::own::Listening::register(listener.local_addr().ok());
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        let (sock, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE would otherwise spin this loop; the relay matters more than a scrape.
                warn!(error = %e, "metrics: accept failed; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Taken after `accept`: a client queued behind idle ones would wait for their
        // header timeout, and a health probe would fail for it.
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "metrics: {MAX_CLIENTS} clients connected already; closing this one");
            continue;
        };
        let metrics = metrics.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, metrics.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(sock), service);
            tokio::select! {
                r = conn => if let Err(e) = r {
                    debug!(%peer, error = %e, "metrics: client connection ended with an error");
                },
                () = stop.cancelled() => {}
            }
            drop(permit);
        });
    }
}

async fn answer(req: Request<Incoming>, metrics: Arc<Metrics>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET\n".into()));
    }
    let json = "application/json";
    Ok(match req.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            export::render(&metrics),
        ),
        "/health" => {
            let health = metrics.health();
            let code = match health.failing.is_empty() {
                true => StatusCode::OK,
                false => StatusCode::SERVICE_UNAVAILABLE,
            };
            reply(code, json, to_json(&health))
        }
        "/status" => reply(StatusCode::OK, json, to_json(&metrics.status())),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; retunnel serves /metrics, /health and /status\n".into(),
        ),
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

fn reply(code: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

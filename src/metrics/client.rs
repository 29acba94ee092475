//! Asking a running retunnel over its metrics endpoint (hyper's HTTP/1 client): what
//! `retunnel status` and the tests use.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long one request may take, connecting included.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Why no answer came.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Nothing answered at the address.
    #[error("nothing answers on {addr}: {source}; is retunnel running with `metrics = {addr}`?")]
    Connect {
        /// The metrics address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The request failed or the answer was not HTTP.
    #[error("{addr} did not answer as retunnel's metrics endpoint does: {source}")]
    Http {
        /// The metrics address.
        addr: SocketAddr,
        /// What hyper said.
        source: hyper::Error,
    },
    /// No answer within [`TIMEOUT`].
    #[error("{addr} did not answer within {}s", TIMEOUT.as_secs())]
    Timeout {
        /// The metrics address.
        addr: SocketAddr,
    },
}

/// `GET path` from `addr`: the status code and the body.
pub async fn get(addr: SocketAddr, path: &str) -> Result<(StatusCode, String), FetchError> {
    tokio::time::timeout(TIMEOUT, fetch(addr, path))
        .await
        .unwrap_or(Err(FetchError::Timeout { addr }))
}

async fn fetch(addr: SocketAddr, path: &str) -> Result<(StatusCode, String), FetchError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|source| FetchError::Connect { addr, source })?;
    let http = |source| FetchError::Http { addr, source };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(http)?;
    let driver = tokio::spawn(conn);
    let req = Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .expect("a GET with a path and a host header is a valid request");
    let res = sender.send_request(req).await.map_err(http)?;
    let code = res.status();
    let body = res.into_body().collect().await.map_err(http)?.to_bytes();
    driver.abort();
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

//! The client side of a test: raw sockets, redis-cli, and reading until a reply or a close.
#![allow(dead_code)]

use super::*;

/// Sends `data` over an open connection and reads until `want` has arrived (or fails the test).
pub fn exchange(s: &mut TcpStream, data: &[u8], want: &[u8]) {
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(data).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.windows(want.len()).any(|w| w == want) {
        let n = s.read(&mut buf).unwrap_or(0);
        assert!(
            n > 0,
            "connection closed before {:?}; got {:?}",
            String::from_utf8_lossy(want),
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

/// Runs `redis-cli -s PATH` (a Unix socket); returns stdout, trimmed.
pub fn redis_cli_unix(path: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("redis-cli");
    cmd.arg("-s").arg(path).args(args);
    run_cli(cmd)
}

/// Runs `redis-cli` (plain TCP) against 127.0.0.1:`port`; returns stdout, trimmed.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()]).args(args);
    run_cli(cmd)
}

/// Runs `redis-cli --tls` against 127.0.0.1:`port`, trusting `ca`; returns stdout, trimmed.
pub fn redis_cli_tls(port: u16, ca: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "--tls", "--cacert"])
        .arg(ca)
        .args(args);
    run_cli(cmd)
}

/// Runs a client to completion; stdout, trimmed, plus the exit code and stderr on failure.
pub fn run_cli(mut cmd: Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli must be installed (apt-get install redis-tools)");
    let mut s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        s.push_str(&format!(
            " [exit {:?}: {}]",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    s
}

/// Sends raw bytes over plain TCP, shuts the write side, and reads everything until close.
pub fn raw_exchange(port: u16, data: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(data).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// A plain TCP connection to 127.0.0.1:`port` (a tunnel's accept side) with read and write
/// timeouts of [`WAIT`], so that a hang fails the test instead of stalling it.
pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

/// Reads from `s` until what was read ends with `want`; fails the test on close or timeout.
pub fn read_until(s: &mut TcpStream, want: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(want) {
        match s.read(&mut buf) {
            Ok(0) => panic!(
                "closed before {:?}; got {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&got)
            ),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "{e} waiting for {:?}; got {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&got)
            ),
        }
    }
    got
}

/// Asserts that the other end closes `s` (EOF or reset) without sending a byte, and returns
/// how long that took.
pub fn expect_closed(s: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!(
            "expected a close, got {n} bytes: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => panic!("expected a close, got {e} after {:?}", started.elapsed()),
    }
    started.elapsed()
}

/// Asserts that nothing listens on 127.0.0.1:`port` any more.
pub fn assert_refused(port: u16) {
    match TcpStream::connect(("127.0.0.1", port)) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
        other => panic!("127.0.0.1:{port} should refuse connections, got {other:?}"),
    }
}

// The metrics endpoint, read with curl as an operator does.

/// `curl -s -w CODE http://127.0.0.1:PORT/PATH`: the HTTP status and the body.
pub fn get(port: u16, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl must be installed (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

/// `/metrics` now (which must answer 200).
pub fn scrape(port: u16) -> String {
    let (code, text) = get(port, "/metrics");
    assert_eq!(code, 200, "{text}");
    text
}

/// The value of one sample in a `/metrics` scrape (`name{labels}` exactly as written).
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A section's upstream TLS handshakes of one kind (`full` or `resumed`) in a scrape.
pub fn handshakes(text: &str, service: &str, kind: &str) -> Option<f64> {
    sample(
        text,
        &format!(r#"retunnel_upstream_handshakes_total{{service="{service}",kind="{kind}"}}"#),
    )
}

/// Asserts each `(series, value)` of a scrape; fails with the whole scrape.
pub fn assert_samples(text: &str, want: &[(&str, f64)]) {
    for (series, value) in want {
        assert_eq!(sample(text, series), Some(*value), "{series} in:\n{text}");
    }
}

/// Scrapes until `series` has value `want`; fails the test with the last scrape otherwise.
/// Returns that scrape.
pub fn wait_sample(port: u16, series: &str, want: f64) -> String {
    let mut last = String::new();
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(&format!("{series} = {want}"), || {
            last = get(port, "/metrics").1;
            (sample(&last, series) == Some(want)).then_some(())
        })
    }));
    assert!(found.is_ok(), "{series} never became {want}; last scrape:\n{last}");
    last
}

/// Starts `redis-benchmark -c 20 -n REQUESTS -t set,get` against 127.0.0.1:`port`, in the
/// background (stopped on drop).
pub fn start_benchmark(port: u16, requests: u64) -> Proc {
    let child = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", "20", "-n", &requests.to_string(), "-t", "set,get"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("redis-benchmark must be installed (apt-get install redis-tools)");
    Proc {
        child,
        name: "redis-benchmark".into(),
    }
}

/// Waits for a benchmark from [`start_benchmark`] to end and fails the test unless SET and GET
/// both completed all `requests` without an error; returns its output.
pub fn finish_benchmark(bench: &mut Proc, requests: u64) -> String {
    let out = std::mem::replace(&mut bench.child, Command::new("true").spawn().unwrap())
        .wait_with_output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "redis-benchmark failed: {stdout}\n{stderr}");
    let completed = format!("{requests} requests completed");
    assert_eq!(
        stdout.matches(&completed).count(),
        2,
        "SET and GET must both complete:\n{stdout}\n{stderr}"
    );
    assert!(
        !stdout.contains("Error") && !stderr.contains("Error"),
        "{stdout}\n{stderr}"
    );
    stdout
}

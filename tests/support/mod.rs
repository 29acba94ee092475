//! Shared test support: a private PKI, TLS redis-servers, a TLS echo server, and the retunnel
//! binary run as a user runs it. Everything listens on 127.0.0.1 ports the OS hands out, and
//! every process started here is killed when its handle drops. Waiting is always for an
//! event (a port accepting, a log line), never a fixed sleep.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub mod cluster;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder};

/// How long any wait in a test may take before the test fails with a message.
pub const WAIT: Duration = Duration::from_secs(20);

/// A port that was free a moment ago on 127.0.0.1 (for programs that need a number up front).
///
/// Ports come from below the kernel's ephemeral range (32768 and up on Linux), taken in turn
/// from a per-process start, each checked free by binding it. A port the kernel handed out
/// by `bind(:0)` could be handed out again — to another test's socket or to an outgoing
/// connection's local end — in the moment before the program it was meant for binds it.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `n` consecutive ports, free a moment ago and taken out of [`free_port`]'s
/// turn, so that no other test of this process is handed one of them (for `clusterPorts`).
pub fn free_ports(n: u32) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000; // 10000..32000, below the kernel's ephemeral range
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() * 997) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let first = NEXT.fetch_add(n, Ordering::Relaxed) % SPAN;
        if first + n > SPAN {
            continue; // a block never wraps around the end of the range
        }
        let all_free = (first..first + n).all(|p| TcpListener::bind(("127.0.0.1", (LOW + p) as u16)).is_ok());
        if all_free {
            return (LOW + first) as u16;
        }
    }
    panic!("no {n} free ports in 127.0.0.1:{LOW}-{}", LOW + SPAN);
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_port(port: u16) {
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on 127.0.0.1:{port} after {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn new_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// A certificate authority that signs test certificates.
pub struct Ca {
    cert: X509,
    key: PKey<Private>,
    /// The CA certificate as PEM, written to disk.
    pub pem: PathBuf,
}

/// A certificate and its key on disk.
#[derive(Clone)]
pub struct Leaf {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM PKCS#8 key.
    pub key: PathBuf,
}

/// A directory of test certificates that lives as long as the test.
pub struct Pki {
    /// Where the files are.
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        Pki {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A self-signed CA named `name`.
    pub fn ca(&self, name: &str) -> Ca {
        let key = new_key();
        let mut n = X509NameBuilder::new().unwrap();
        n.append_entry_by_text("CN", name).unwrap();
        let n = n.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&serial()).unwrap();
        b.set_subject_name(&n).unwrap();
        b.set_issuer_name(&n).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&Asn1Time::days_from_now(2).unwrap()).unwrap();
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let cert = b.build();
        let pem = self.path(&format!("{name}.pem"));
        std::fs::write(&pem, cert.to_pem().unwrap()).unwrap();
        Ca { cert, key, pem }
    }

    /// A server certificate signed by `ca`, for the DNS names and IPs in `sans`, valid from
    /// `from_days` to `to_days` relative to now (negative `to_days`: already expired).
    pub fn leaf(&self, ca: &Ca, file: &str, sans: &[&str], from_days: i64, to_days: i64) -> Leaf {
        let key = new_key();
        let cert = sign_leaf(ca, &key, sans, from_days, to_days);
        let leaf = Leaf {
            cert: self.path(&format!("{file}.pem")),
            key: self.path(&format!("{file}.key")),
        };
        std::fs::write(&leaf.cert, cert.to_pem().unwrap()).unwrap();
        std::fs::write(&leaf.key, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        leaf
    }

    /// A certificate signed by `ca` whose key is RSA, written in the old PKCS#1 form
    /// (`-----BEGIN RSA PRIVATE KEY-----`) that many private CAs still hand out.
    pub fn rsa_leaf(&self, ca: &Ca, file: &str, sans: &[&str]) -> Leaf {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let pkcs1 = rsa.private_key_to_pem().unwrap();
        let key = PKey::from_rsa(rsa).unwrap();
        let cert = sign_leaf(ca, &key, sans, -1, 2);
        let leaf = Leaf {
            cert: self.path(&format!("{file}.pem")),
            key: self.path(&format!("{file}.key")),
        };
        std::fs::write(&leaf.cert, cert.to_pem().unwrap()).unwrap();
        std::fs::write(&leaf.key, pkcs1).unwrap();
        leaf
    }

    /// The usual pair: a CA and a server certificate for localhost and 127.0.0.1 (plus `extra`).
    pub fn standard(&self, extra: &[&str]) -> (Ca, Leaf) {
        let ca = self.ca("test-ca");
        let mut sans = vec!["localhost", "127.0.0.1"];
        sans.extend_from_slice(extra);
        let leaf = self.leaf(&ca, "server", &sans, -1, 2);
        (ca, leaf)
    }
}

/// A certificate for `key`, signed by `ca`, for the DNS names and IPs in `sans`.
fn sign_leaf(ca: &Ca, key: &PKey<Private>, sans: &[&str], from_days: i64, to_days: i64) -> X509 {
    let mut n = X509NameBuilder::new().unwrap();
    n.append_entry_by_text("CN", sans.first().copied().unwrap_or("test"))
        .unwrap();
    let n = n.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&serial()).unwrap();
    b.set_subject_name(&n).unwrap();
    b.set_issuer_name(ca.cert.subject_name()).unwrap();
    b.set_pubkey(key).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    b.set_not_before(&Asn1Time::from_unix(now + from_days * 86400).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(now + to_days * 86400).unwrap())
        .unwrap();
    let mut san = SubjectAlternativeName::new();
    for s in sans {
        if s.parse::<std::net::IpAddr>().is_ok() {
            san.ip(s);
        } else {
            san.dns(s);
        }
    }
    let ext = san.build(&b.x509v3_context(Some(&ca.cert), None)).unwrap();
    b.append_extension(ext).unwrap();
    b.sign(&ca.key, MessageDigest::sha256()).unwrap();
    b.build()
}

fn serial() -> openssl::asn1::Asn1Integer {
    let mut bn = BigNum::new().unwrap();
    bn.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    bn.to_asn1_integer().unwrap()
}

/// A child process killed (and reaped) on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TLS-only redis-server on 127.0.0.1.
pub struct Redis {
    /// Its TLS port.
    pub port: u16,
    /// Its data directory.
    pub dir: tempfile::TempDir,
    pub proc: Proc,
}

impl Redis {
    /// Starts redis-server with TLS only (no plain port), serving `leaf`, plus `args`.
    pub fn start_tls(leaf: &Leaf, ca: &Ca, args: &[&str]) -> Redis {
        Self::start_tls_on(free_port(), leaf, ca, args)
    }

    /// As [`Redis::start_tls`], on a given port (an upstream that comes back where it was).
    pub fn start_tls_on(port: u16, leaf: &Leaf, ca: &Ca, args: &[&str]) -> Redis {
        Self::start_tls_at("127.0.0.1", port, leaf, ca, args)
    }

    /// As [`Redis::start_tls`], on `ip`:`port` (failover drills put two on one port).
    pub fn start_tls_at(ip: &str, port: u16, leaf: &Leaf, ca: &Ca, args: &[&str]) -> Redis {
        let mode: Vec<OsString> = vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string().into(),
            "--tls-cert-file".into(),
            leaf.cert.clone().into(),
            "--tls-key-file".into(),
            leaf.key.clone().into(),
            "--tls-ca-cert-file".into(),
            ca.pem.clone().into(),
            "--tls-auth-clients".into(),
            "no".into(),
        ];
        Self::start(ip, port, &mode, args)
    }

    /// Starts a plain-TCP redis-server (what a server-mode section sits in front of).
    pub fn start_plain(args: &[&str]) -> Redis {
        let port = free_port();
        Self::start("127.0.0.1", port, &["--port".into(), port.to_string().into()], args)
    }

    /// Runs redis-server on `ip` in a fresh directory with `mode` (its port options) plus
    /// `args`, and waits until `port` accepts.
    fn start(ip: &str, port: u16, mode: &[OsString], args: &[&str]) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--bind", ip, "--save", "", "--appendonly", "no"])
            .args(mode)
            .arg("--dir")
            .arg(dir.path())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        let proc = Proc {
            child,
            name: "redis-server".into(),
        };
        wait_until(&format!("redis-server on {ip}:{port}"), || {
            TcpStream::connect((ip, port)).ok().map(|_| ())
        });
        Redis { port, dir, proc }
    }
}

/// A private PKI and a TLS redis-server using it: the usual upstream of a client-mode test.
pub struct TlsUpstream {
    pub pki: Pki,
    pub ca: Ca,
    pub leaf: Leaf,
    pub redis: Redis,
}

impl TlsUpstream {
    /// Starts the redis-server with `args` added.
    pub fn start(args: &[&str]) -> TlsUpstream {
        let pki = Pki::new();
        let (ca, leaf) = pki.standard(&[]);
        let redis = Redis::start_tls(&leaf, &ca, args);
        TlsUpstream { pki, ca, leaf, redis }
    }

    /// A client-mode section `[name]` listening on `port`, connecting to this server by the
    /// name `localhost` and trusting its CA, plus `extra` lines.
    pub fn section(&self, name: &str, port: u16, extra: &str) -> String {
        format!(
            "[{name}]\naccept = 127.0.0.1:{port}\nconnect = localhost:{}\nCAfile = {}\n{extra}",
            self.redis.port,
            self.ca.pem.display()
        )
    }
}

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
fn run_cli(mut cmd: Command) -> String {
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

/// Everything a retunnel process wrote to stderr so far, and a way to wait for more.
#[derive(Clone, Default)]
pub struct Log(Arc<(Mutex<LogState>, Condvar)>);

#[derive(Default)]
pub struct LogState {
    text: String,
    /// The process closed its stderr (it exited).
    closed: bool,
}

impl Log {
    pub fn text(&self) -> String {
        self.0.0.lock().unwrap().text.clone()
    }

    /// Waits until the process has closed its stderr, then returns all of it.
    pub fn wait_closed(&self) -> String {
        let (lock, cv) = &*self.0;
        let guard = lock.lock().unwrap();
        let (guard, _) = cv.wait_timeout_while(guard, WAIT, |s| !s.closed).unwrap();
        assert!(guard.closed, "stderr never closed; log so far:\n{}", guard.text);
        guard.text.clone()
    }

    /// Waits until the log contains `needle` `count` times; fails the test with the log otherwise.
    pub fn wait_for_n(&self, needle: &str, count: usize) -> String {
        let deadline = Instant::now() + WAIT;
        let (lock, cv) = &*self.0;
        let mut state = lock.lock().unwrap();
        while state.text.matches(needle).count() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero() && !state.closed,
                "log never showed {count}x {needle:?}; log so far:\n{}",
                state.text
            );
            state = cv.wait_timeout(state, left).unwrap().0;
        }
        state.text.clone()
    }

    pub fn wait_for(&self, needle: &str) -> String {
        self.wait_for_n(needle, 1)
    }

    /// Where section `service` listens, from its "listening" lines so far (the address the
    /// system picked for `accept = 127.0.0.1:0`, or a socket path), in log order.
    pub fn listening(&self, service: &str) -> Vec<String> {
        let text = self.text();
        let field = |line: &str, name: &str| -> Option<String> {
            let (_, rest) = line.split_once(&format!(" {name}="))?;
            Some(rest.split_whitespace().next()?.to_string())
        };
        text.lines()
            .filter(|l| l.contains(" listening ") && field(l, "service").as_deref() == Some(service))
            .filter_map(|l| field(l, "accept"))
            .collect()
    }
}

impl Retunnel {
    /// The TCP port section `service` listens on (its first "listening" line): retunnel's
    /// own listeners bind `127.0.0.1:0`, so no port is guessed and none can be taken meanwhile.
    pub fn port(&self, service: &str) -> u16 {
        let all = self.log.listening(service);
        let first = all
            .first()
            .unwrap_or_else(|| panic!("[{service}] is not listening:\n{}", self.log.text()));
        first
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {first}"))
    }
}

/// The retunnel binary, running.
pub struct Retunnel {
    pub proc: Proc,
    pub log: Log,
    /// The config file it was given (if any).
    pub config: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

pub fn retunnel_bin() -> &'static str {
    env!("CARGO_BIN_EXE_retunnel")
}

impl Retunnel {
    /// Writes `conf` to a file and runs `retunnel -c FILE ARGS`, without waiting.
    pub fn spawn(conf: &str, args: &[&str]) -> Retunnel {
        Self::spawn_env(conf, args, &[])
    }

    pub fn spawn_env(conf: &str, args: &[&str], env: &[(&str, &Path)]) -> Retunnel {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tunnel.conf");
        std::fs::write(&path, conf).unwrap();
        let mut cmd = Command::new(retunnel_bin());
        cmd.arg("-c").arg(&path).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut r = Self::spawn_cmd(cmd, dir);
        r.config = Some(path);
        r
    }

    /// Runs a prepared command, collecting its stderr.
    pub fn spawn_cmd(mut cmd: Command, dir: tempfile::TempDir) -> Retunnel {
        // RUST_LOG would override the config's `debug`; only a test that sets it gets it.
        if !cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
            cmd.env_remove("RUST_LOG");
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Log::default();
        let sink = log.clone();
        std::thread::spawn(move || {
            let (lock, cv) = &*sink.0;
            // A test that failed while holding the lock poisons it; keep collecting anyway
            // rather than adding a second, unrelated panic to its output.
            let lock_state = || lock.lock().unwrap_or_else(|e| e.into_inner());
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut t = lock_state();
                t.text.push_str(&line);
                t.text.push('\n');
                cv.notify_all();
            }
            lock_state().closed = true;
            cv.notify_all();
        });
        Retunnel {
            proc: Proc {
                child,
                name: "retunnel".into(),
            },
            log,
            config: None,
            _dir: dir,
        }
    }

    /// Starts retunnel and waits until `services` services are listening.
    pub fn start(conf: &str, services: usize) -> Retunnel {
        let r = Self::spawn(conf, &[]);
        r.log.wait_for_n("listening", services);
        r
    }

    pub fn pid(&self) -> i32 {
        self.proc.child.id() as i32
    }

    /// Sends a signal (`libc::SIGTERM`, …).
    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.proc.child.try_wait().unwrap() {
                return st.code();
            }
            assert!(
                Instant::now() < deadline,
                "retunnel did not exit; log:\n{}",
                self.log.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Runs retunnel to completion with a config (for configs that must be refused).
pub fn run_to_exit(conf: &str, args: &[&str]) -> (Option<i32>, String) {
    let mut r = Retunnel::spawn(conf, args);
    let code = r.wait_exit();
    (code, r.log.wait_closed())
}

/// A TLS echo server on 127.0.0.1: echoes every byte until the client closes its side, then
/// closes. Runs on its own thread and runtime.
pub struct TlsEcho {
    pub addr: SocketAddr,
}

/// How a [`TlsEcho`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoMode {
    /// Every byte straight back as it arrives.
    Streaming,
    /// Nothing until the client has closed its side, then everything at once: a client only
    /// gets a reply if half-close works.
    AfterEof,
}

impl TlsEcho {
    pub fn start(leaf: &Leaf) -> TlsEcho {
        Self::start_with(leaf, "127.0.0.1:0".parse().unwrap(), EchoMode::Streaming)
    }

    /// Starts an echo server on a given address (for a port picked before the server exists).
    pub fn start_with(leaf: &Leaf, addr: SocketAddr, mode: EchoMode) -> TlsEcho {
        let cert = std::fs::read(&leaf.cert).unwrap();
        let key = std::fs::read(&leaf.key).unwrap();
        let identity = native_tls::Identity::from_pkcs8(&cert, &key).unwrap();
        let acceptor = tokio_native_tls::TlsAcceptor::from(native_tls::TlsAcceptor::new(identity).unwrap());
        let listener = TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((sock, _)) = listener.accept().await else {
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(sock).await else { return };
                        let (mut r, mut w) = tokio::io::split(tls);
                        if mode == EchoMode::Streaming {
                            let _ = tokio::io::copy(&mut r, &mut w).await;
                        } else {
                            let mut all = Vec::new();
                            let _ = tokio::io::AsyncReadExt::read_to_end(&mut r, &mut all).await;
                            let _ = tokio::io::AsyncWriteExt::write_all(&mut w, &all).await;
                        }
                        let _ = tokio::io::AsyncWriteExt::shutdown(&mut w).await;
                    });
                }
            });
        });
        TlsEcho { addr }
    }
}

impl Retunnel {
    /// Replaces the config file's text (for SIGHUP tests).
    pub fn write_config(&self, conf: &str) {
        std::fs::write(self.config.as_ref().expect("spawned from a config text"), conf).unwrap();
    }

    /// The directory the config file is in (a temporary one, removed with the process).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}

/// Waits until the file at `path` contains `needle` `count` times; returns its text.
pub fn wait_file_for_n(path: &Path, needle: &str, count: usize) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.matches(needle).count() >= count {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never showed {count}x {needle:?}; it holds:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn wait_file_for(path: &Path, needle: &str) -> String {
    wait_file_for_n(path, needle, 1)
}

/// /proc/PID/status of a running process.
pub fn proc_status(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
}

/// True once `pid` is gone or a zombie (a detached daemon is no child of the test to reap).
pub fn exited(pid: i32) -> bool {
    let status = proc_status(pid);
    status.is_empty() || status.lines().any(|l| l.starts_with("State:") && l.contains('Z'))
}

/// Waits until `pid` has exited.
pub fn wait_gone(pid: i32) {
    let deadline = Instant::now() + WAIT;
    while !exited(pid) {
        assert!(Instant::now() < deadline, "process {pid} did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A process the test did not spawn directly (a detached daemon): SIGKILLed on drop.
pub struct Pid(pub i32);

impl Drop for Pid {
    fn drop(&mut self) {
        if !exited(self.0) {
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

/// A tunnel section for redis on `port` (TLS, verified against `ca`).
pub fn section(name: &str, accept: u16, upstream: u16, ca: &Ca) -> String {
    format!(
        "[{name}]\naccept = 127.0.0.1:{accept}\nconnect = localhost:{upstream}\nCAfile = {}\n",
        ca.pem.display()
    )
}

/// What a finished retunnel run printed.
pub struct Finished {
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the retunnel binary with `args` to completion (at most [`WAIT`]), with `NO_COLOR` unset
/// so that a test sees what a user's pipe gets.
pub fn run_retunnel<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Finished {
    let mut cmd = Command::new(retunnel_bin());
    cmd.args(args).env_remove("RUST_LOG").env_remove("NO_COLOR");
    run_to_end(cmd)
}

/// Runs a command to completion (at most [`WAIT`], then it is killed and the test fails).
pub fn run_to_end(mut cmd: Command) -> Finished {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(out) = rx.recv_timeout(WAIT) else {
        unsafe { libc::kill(pid, libc::SIGKILL) };
        panic!(
            "retunnel {:?} did not finish within {WAIT:?}",
            cmd.get_args().collect::<Vec<_>>()
        );
    };
    let out = out.unwrap();
    Finished {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Writes `conf` to a file in `dir` and returns its path.
pub fn write_conf(dir: &Path, conf: &str) -> PathBuf {
    let path = dir.join("tunnel.conf");
    std::fs::write(&path, conf).unwrap();
    path
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

/// `n` random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    openssl::rand::rand_bytes(&mut v).unwrap();
    v
}

/// Polls `f` until it returns `Some`, for state that another process reaches in its own time
/// (replication, a file appearing); fails the test with `what` after [`WAIT`].
pub fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up after {WAIT:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The log lines that contain every one of `parts`.
pub fn lines_with<'a>(log: &'a str, parts: &[&str]) -> Vec<&'a str> {
    log.lines().filter(|l| parts.iter().all(|p| l.contains(p))).collect()
}

/// A TLS server on 127.0.0.1 that answers every connection with the SNI name the client sent
/// (`sni=NAME\n`, or `sni=-\n` for none), then closes. Runs on its own thread.
pub struct SniEcho {
    pub addr: SocketAddr,
}

impl SniEcho {
    pub fn start(leaf: &Leaf) -> SniEcho {
        use openssl::ssl::{NameType, SslAcceptor, SslFiletype, SslMethod};
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        b.set_private_key_file(&leaf.key, SslFiletype::PEM).unwrap();
        b.set_certificate_chain_file(&leaf.cert).unwrap();
        let acceptor = b.build();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let Ok(mut tls) = acceptor.accept(tcp) else { continue };
                let name = tls.ssl().servername(NameType::HOST_NAME).unwrap_or("-").to_string();
                let _ = tls.write_all(format!("sni={name}\n").as_bytes());
                let _ = tls.shutdown();
                // Read until the client's close: closing with unread input would send a reset,
                // which can destroy the answer before the client reads it.
                let _ = tls.read_to_end(&mut Vec::new());
            }
        });
        SniEcho { addr }
    }
}

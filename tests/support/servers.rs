//! The upstreams tests run: TLS and plain redis-servers, a TLS echo server and an SNI echo server; every process is killed when its handle drops.
#![allow(dead_code)]

use super::*;

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

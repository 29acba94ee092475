//! Where clients arrive: one `accept` address bound as a TCP listener (port 0: one the system
//! picks) or a Unix socket. A Unix socket file is created at bind and removed when its
//! listener is dropped (at exit, or when a reload drops the address); a stale one left by a
//! dead process is replaced, a live one or a file that is not a socket is an error. This module
//! only binds and accepts; what a client gets is the connection's business.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_util::either::Either;
use tracing::debug;

use crate::config::Listen;
use crate::sockopt::{self, SocketOption};

/// An accepted client: TCP, or a Unix socket connection.
pub type Client = Either<TcpStream, UnixStream>;

/// Who connected, for the connection's log span.
#[derive(Debug, Clone)]
pub enum Peer {
    /// A TCP client's address.
    Tcp(SocketAddr),
    /// A client of a Unix socket (which has no address of its own).
    Unix,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(a) => write!(f, "{a}"),
            Peer::Unix => f.write_str("unix"),
        }
    }
}

/// One bound `accept` address.
#[derive(Debug)]
pub struct Listener {
    /// The address as configured (port 0 stays 0), to match it again on reload.
    pub listen: Listen,
    inner: Either<TcpListener, UnixSocket>,
}

/// A Unix socket listener that removes its file when dropped, if the file is still its own.
#[derive(Debug)]
struct UnixSocket {
    listener: UnixListener,
    path: PathBuf,
    /// Device and inode of the socket file it created.
    id: (u64, u64),
}

impl Listener {
    /// Binds `listen`, TCP with the `a:` socket options set before `bind`.
    pub fn bind(listen: &Listen, opts: &[SocketOption]) -> io::Result<Listener> {
        let inner = match listen {
            Listen::Tcp(addr) => Either::Left(sockopt::bind_listener(*addr, opts)?),
            Listen::Unix(path) => Either::Right(UnixSocket::bind(path)?),
        };
        Ok(Listener {
            listen: listen.clone(),
            inner,
        })
    }

    /// A TCP listener bound elsewhere (a cluster node listener).
    pub fn from_tcp(listener: TcpListener) -> io::Result<Listener> {
        Ok(Listener {
            listen: Listen::Tcp(listener.local_addr()?),
            inner: Either::Left(listener),
        })
    }

    /// The bound TCP address; `None` for a Unix socket.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match &self.inner {
            Either::Left(l) => l.local_addr().ok(),
            Either::Right(_) => None,
        }
    }

    /// Waits for the next client.
    pub async fn accept(&self) -> io::Result<(Client, Peer)> {
        match &self.inner {
            Either::Left(l) => l.accept().await.map(|(s, a)| (Either::Left(s), Peer::Tcp(a))),
            Either::Right(u) => u.listener.accept().await.map(|(s, _)| (Either::Right(s), Peer::Unix)),
        }
    }

    /// Where it really listens: the bound TCP address (the port the system picked for port
    /// 0), or the socket path.
    pub fn bound(&self) -> Listen {
        match &self.inner {
            Either::Left(l) => l.local_addr().map_or_else(|_| self.listen.clone(), Listen::Tcp),
            Either::Right(u) => Listen::Unix(u.path.clone()),
        }
    }

    /// [`Listener::bound`], as text.
    pub fn local(&self) -> String {
        self.bound().to_string()
    }
}

impl UnixSocket {
    fn bind(path: &Path) -> io::Result<UnixSocket> {
        clear_stale(path)?;
        let listener = UnixListener::bind(path)?;
        let meta = std::fs::symlink_metadata(path)?;
        Ok(UnixSocket {
            listener,
            path: path.to_path_buf(),
            id: (meta.dev(), meta.ino()),
        })
    }
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        // Only our own file: another process may have replaced it meanwhile.
        let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id);
        if ours && let Err(e) = std::fs::remove_file(&self.path) {
            debug!(path = %self.path.display(), error = %e, "cannot remove the socket file");
        }
    }
}

/// Makes way for a new socket at `path`: nothing there is fine; a socket nobody answers on
/// (left by a process that died) is removed; a live socket or any other file is an error.
fn clear_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a file that is not a socket is in the way",
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process listens on this socket",
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            debug!(path = %path.display(), "replacing a stale socket file");
            std::fs::remove_file(path)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(path: &Path) -> Listen {
        Listen::Unix(path.to_path_buf())
    }

    #[tokio::test]
    async fn a_unix_socket_is_created_replaced_when_stale_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.sock");
        // A stale socket: bound, then its listener gone without removing the file.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let l = Listener::bind(&unix(&path), &[]).unwrap();
        assert_eq!(l.local(), path.display().to_string());
        // A live one is not taken over.
        let e = Listener::bind(&unix(&path), &[]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        let client = tokio::spawn({
            let path = path.clone();
            async move { UnixStream::connect(path).await.unwrap() }
        });
        let (_, peer) = l.accept().await.unwrap();
        assert_eq!(peer.to_string(), "unix");
        drop(client.await.unwrap());
        drop(l);
        assert!(!path.exists(), "the socket file outlived its listener");
    }

    #[tokio::test]
    async fn a_file_in_the_way_is_an_error_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.rdb");
        std::fs::write(&path, "precious").unwrap();
        let e = Listener::bind(&unix(&path), &[]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert!(e.to_string().contains("not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }

    #[tokio::test]
    async fn port_zero_binds_a_port_the_system_picks() {
        let l = Listener::bind(&Listen::Tcp("127.0.0.1:0".parse().unwrap()), &[]).unwrap();
        let bound: SocketAddr = l.local().parse().unwrap();
        assert_ne!(bound.port(), 0);
        assert_eq!(l.listen.to_string(), "127.0.0.1:0");
    }
}

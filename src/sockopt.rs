//! `socket = a|l|r:OPTION=VALUE`, as stunnel: socket options for the accepting socket (`a`),
//! the accepted client socket (`l`, local) and the socket towards the upstream (`r`, remote).
//!
//! This module owns the names, the parsing of one value and setting them on a socket (through
//! `socket2`, so every option is one typed call instead of a raw `setsockopt`). Options are set
//! before `bind`/`connect` where the kernel only honours them then (buffer sizes decide the TCP
//! window scale at the handshake; `SO_REUSEADDR` matters at `bind`).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::config::options::suggest_from;

/// Which socket an option is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `a`: the listening socket (accepted sockets inherit buffer sizes from it).
    Accept,
    /// `l`: each accepted client socket.
    Local,
    /// `r`: each socket towards the upstream.
    Remote,
}

/// The options retunnel can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opt {
    /// `TCP_NODELAY` (flag).
    NoDelay,
    /// `SO_KEEPALIVE` (flag).
    KeepAlive,
    /// `TCP_KEEPIDLE` (seconds before the first probe).
    KeepIdle,
    /// `TCP_KEEPINTVL` (seconds between probes).
    KeepIntvl,
    /// `TCP_KEEPCNT` (probes before the connection is dropped).
    KeepCnt,
    /// `SO_RCVBUF` (bytes; the kernel doubles it for bookkeeping).
    RcvBuf,
    /// `SO_SNDBUF` (bytes).
    SndBuf,
    /// `SO_REUSEADDR` (flag).
    ReuseAddr,
}

const NAMES: [(&str, Opt); 8] = [
    ("TCP_NODELAY", Opt::NoDelay),
    ("SO_KEEPALIVE", Opt::KeepAlive),
    ("TCP_KEEPIDLE", Opt::KeepIdle),
    ("TCP_KEEPINTVL", Opt::KeepIntvl),
    ("TCP_KEEPCNT", Opt::KeepCnt),
    ("SO_RCVBUF", Opt::RcvBuf),
    ("SO_SNDBUF", Opt::SndBuf),
    ("SO_REUSEADDR", Opt::ReuseAddr),
];

impl Opt {
    fn is_flag(self) -> bool {
        matches!(self, Opt::NoDelay | Opt::KeepAlive | Opt::ReuseAddr)
    }
}

/// One `socket` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOption {
    /// The socket it is for.
    pub side: Side,
    /// The option.
    pub opt: Opt,
    /// Its value: 0/1 for flags, else seconds, a count or bytes.
    pub value: u32,
}

/// Parses `a|l|r:OPTION=VALUE`; flags take `0`/`1`/`yes`/`no`.
pub fn parse(v: &str) -> Result<SocketOption, String> {
    let form = "write it as `a|l|r:OPTION=VALUE`, for example `l:TCP_NODELAY=1`";
    let (side, rest) = v.split_once(':').ok_or_else(|| format!("`{v}`: {form}"))?;
    let side = match side.trim().to_ascii_lowercase().as_str() {
        "a" => Side::Accept,
        "l" => Side::Local,
        "r" => Side::Remote,
        other => {
            return Err(format!(
                "`{other}` is not `a` (accepting), `l` (local) or `r` (remote); {form}"
            ));
        }
    };
    let (name, value) = rest.split_once('=').ok_or_else(|| format!("`{v}`: {form}"))?;
    let name = name.trim();
    let Some(&(_, opt)) = NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) else {
        let hint = suggest_from(name, NAMES.iter().map(|(n, _)| *n))
            .map(|s| format!("did you mean `{s}`? "))
            .unwrap_or_default();
        let known: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "unknown socket option `{name}`; {hint}retunnel sets {}",
            known.join(", ")
        ));
    };
    let value = option_value(opt, name, value.trim())?;
    Ok(SocketOption { side, opt, value })
}

fn option_value(opt: Opt, name: &str, v: &str) -> Result<u32, String> {
    if opt.is_flag() {
        return match v.to_ascii_lowercase().as_str() {
            "1" | "yes" => Ok(1),
            "0" | "no" => Ok(0),
            _ => Err(format!("{name} is a flag: `{v}` is not 1, 0, yes or no")),
        };
    }
    match v.parse::<u32>() {
        Ok(n) if n > 0 && n <= i32::MAX as u32 => Ok(n),
        _ => Err(format!("{name} needs a positive whole number, not `{v}`")),
    }
}

/// Sets the options for `side` on a socket, in the order they were written.
///
/// A keepalive parameter turns `SO_KEEPALIVE` on: on its own it would do nothing.
pub fn apply(sock: SockRef<'_>, opts: &[SocketOption], side: Side) -> io::Result<()> {
    for o in opts.iter().filter(|o| o.side == side) {
        let secs = Duration::from_secs(u64::from(o.value));
        match o.opt {
            Opt::NoDelay => sock.set_tcp_nodelay(o.value != 0)?,
            Opt::KeepAlive => sock.set_keepalive(o.value != 0)?,
            Opt::KeepIdle => sock.set_tcp_keepalive(&TcpKeepalive::new().with_time(secs))?,
            Opt::KeepIntvl => sock.set_tcp_keepalive(&TcpKeepalive::new().with_interval(secs))?,
            Opt::KeepCnt => sock.set_tcp_keepalive(&TcpKeepalive::new().with_retries(o.value))?,
            Opt::RcvBuf => sock.set_recv_buffer_size(o.value as usize)?,
            Opt::SndBuf => sock.set_send_buffer_size(o.value as usize)?,
            Opt::ReuseAddr => sock.set_reuse_address(o.value != 0)?,
        }
    }
    Ok(())
}

fn new_socket(addr: SocketAddr) -> io::Result<TcpSocket> {
    if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
}

/// Binds a listener with the `a:` options set before `bind`.
pub fn bind_listener(addr: SocketAddr, opts: &[SocketOption]) -> io::Result<TcpListener> {
    let sock = new_socket(addr)?;
    // As tokio's `TcpListener::bind`: a restart must not wait for old connections in TIME_WAIT.
    sock.set_reuseaddr(true)?;
    apply(SockRef::from(&sock), opts, Side::Accept)?;
    sock.bind(addr)?;
    // A deep accept queue: a burst of clients (a pool opening hundreds of connections at
    // once) waits in the queue instead of having SYNs dropped and retried a second later.
    sock.listen(4096)
}

/// Connects to `addr` with TCP_NODELAY (Redis is request/response: Nagle would add a round
/// trip to small replies) and then the `r:` options, set before `connect`.
pub async fn connect(addr: SocketAddr, opts: &[SocketOption]) -> io::Result<TcpStream> {
    let sock = new_socket(addr)?;
    SockRef::from(&sock).set_tcp_nodelay(true)?;
    apply(SockRef::from(&sock), opts, Side::Remote)?;
    sock.connect(addr).await
}

/// Holds back what is written to TCP socket `fd` until it is shut down (`TCP_CORK`): the last
/// reply and the close then leave in one segment, and a client that checks its connection
/// before its next command sees the close. Best effort: failing changes only the timing.
pub fn cork(fd: std::os::fd::RawFd) {
    let on: libc::c_int = 1;
    // SAFETY: `fd` is the caller's open socket for the whole call, and the option value is
    // a c_int of the size given.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sides_names_and_values() {
        let o = parse("l:TCP_NODELAY=1").unwrap();
        assert_eq!((o.side, o.opt, o.value), (Side::Local, Opt::NoDelay, 1));
        let o = parse("r:so_keepalive=yes").unwrap();
        assert_eq!((o.side, o.opt, o.value), (Side::Remote, Opt::KeepAlive, 1));
        let o = parse("a:SO_RCVBUF=65536").unwrap();
        assert_eq!((o.side, o.opt, o.value), (Side::Accept, Opt::RcvBuf, 65536));
        assert_eq!(parse("a:SO_REUSEADDR=no").unwrap().value, 0);
    }

    #[test]
    fn refuses_unknown_and_bad_values_with_a_hint() {
        let e = parse("l:TCP_NODELEY=1").unwrap_err();
        assert!(e.contains("did you mean `TCP_NODELAY`?"), "{e}");
        let e = parse("l:SO_LINGER=1").unwrap_err();
        assert!(
            e.contains("unknown socket option `SO_LINGER`") && e.contains("SO_SNDBUF"),
            "{e}"
        );
        assert!(parse("x:TCP_NODELAY=1").unwrap_err().contains("`x` is not `a`"));
        assert!(parse("TCP_NODELAY=1").unwrap_err().contains("a|l|r:OPTION=VALUE"));
        assert!(parse("l:TCP_NODELAY=2").unwrap_err().contains("is a flag"));
        assert!(parse("l:TCP_KEEPIDLE=0").unwrap_err().contains("positive whole number"));
        assert!(parse("l:SO_RCVBUF=lots").unwrap_err().contains("positive whole number"));
    }

    /// Sets every option on real sockets and reads each back with getsockopt.
    #[tokio::test]
    async fn options_are_set_on_real_sockets() {
        let all = [
            "l:TCP_NODELAY=0",
            "l:SO_KEEPALIVE=1",
            "l:TCP_KEEPIDLE=77",
            "l:TCP_KEEPINTVL=11",
            "l:TCP_KEEPCNT=4",
            "l:SO_RCVBUF=65536",
            "l:SO_SNDBUF=32768",
            "a:SO_REUSEADDR=0",
            "a:SO_RCVBUF=40000",
            "r:TCP_NODELAY=0",
        ];
        let opts: Vec<SocketOption> = all.iter().map(|s| parse(s).unwrap()).collect();
        let listener = bind_listener("127.0.0.1:0".parse().unwrap(), &opts).unwrap();
        let l = SockRef::from(&listener);
        assert!(!l.reuse_address().unwrap());
        assert_eq!(l.recv_buffer_size().unwrap(), 80000, "Linux reports twice the size set");
        let remote = connect(listener.local_addr().unwrap(), &opts).await.unwrap();
        assert!(!SockRef::from(&remote).tcp_nodelay().unwrap());
        let (local, _) = listener.accept().await.unwrap();
        apply(SockRef::from(&local), &opts, Side::Local).unwrap();
        let s = SockRef::from(&local);
        assert!(!s.tcp_nodelay().unwrap());
        assert!(s.keepalive().unwrap());
        assert_eq!(s.tcp_keepalive_time().unwrap(), Duration::from_secs(77));
        assert_eq!(s.tcp_keepalive_interval().unwrap(), Duration::from_secs(11));
        assert_eq!(s.tcp_keepalive_retries().unwrap(), 4);
        assert_eq!(s.recv_buffer_size().unwrap(), 131072);
        assert_eq!(s.send_buffer_size().unwrap(), 65536);
    }
}

//! Riding through a primary failover (`onReadonly`): what the Redis relay needs to move a
//! connection from a demoted primary to the new one without the client noticing.
//!
//! A `-READONLY` reply guarantees the command was not applied, so it may be sent again. The
//! command side records the connection's server-side state as it passes ([`Recorder`]):
//! `AUTH`, `HELLO`, `SELECT`, `CLIENT SETNAME`, `CLIENT SETINFO`, `READONLY`/`READWRITE` (the
//! last of each kind, credentials in memory only, never logged) and the last command's bytes.
//! Anything else that changes a connection's state (`MULTI`, `WATCH`, subscriptions,
//! `MONITOR`, `CLIENT TRACKING|NO-EVICT|NO-TOUCH|CACHING`, replies switched off) makes it a
//! state retunnel cannot rebuild, until `RESET`. The reply side then decides ([`plan`]):
//! replay only when the refused command is the only one in flight, is no blocking command,
//! and the state is known; else the connection closes at that reply.
//!
//! The relay's core knows nothing of DNS or TLS: the connection supplies them as a [`Reach`].

use std::fmt;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::resp::{Scanner, Side};

/// How the relay reaches the `connect` name again; implemented by the connection, which knows
/// the targets, `--connect-to` and the TLS settings.
pub trait Reach: Send + Sync {
    /// The upstream stream (TLS, usually).
    type Stream: AsyncRead + AsyncWrite + Unpin + Send;
    /// Whether the `connect` names still resolve to `addr` (a fresh lookup); `None`: unknown.
    fn still_resolves(&self, addr: SocketAddr) -> impl Future<Output = Option<bool>> + Send;
    /// A new upstream connection (TCP and TLS, each within `TIMEOUTconnect`), as a new client
    /// would get it; `Err`: why not, for the log.
    fn reopen(&self) -> impl Future<Output = Result<(Self::Stream, SocketAddr), String>> + Send;
    /// How long the new primary may take to answer the replayed state (`TIMEOUTconnect`).
    fn timeout(&self) -> Duration;
}

/// Longest command kept for sending again; a longer refused command closes the connection.
pub const MAX_KEPT: usize = 64 * 1024;
/// How long a name found still pointing at the node is believed: a replica endpoint answers
/// every write with READONLY, and one DNS lookup per refused write would be one too many.
pub const STILL_THERE_FOR: Duration = Duration::from_secs(1);
/// How long a closing client connection is read (and the bytes dropped) so that a command it
/// sent meanwhile does not turn the close into a reset, which can destroy the error reply.
pub const DRAIN_FOR: Duration = Duration::from_secs(2);

/// Kinds of state a connection carries that retunnel can set up again on a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Auth,
    Hello,
    Select,
    SetName,
    LibName,
    LibVer,
    /// `READONLY`/`READWRITE` (cluster replicas).
    ReadMode,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Auth => "AUTH",
            Kind::Hello => "HELLO",
            Kind::Select => "SELECT",
            Kind::SetName => "CLIENT SETNAME",
            Kind::LibName | Kind::LibVer => "CLIENT SETINFO",
            Kind::ReadMode => "READONLY/READWRITE",
        }
    }
}

/// Commands that may block: never sent again (a resend would restart the client's wait).
const BLOCKING: [&str; 12] = [
    "blpop",
    "brpop",
    "brpoplpush",
    "blmove",
    "blmpop",
    "bzpopmin",
    "bzpopmax",
    "bzmpop",
    "xread",
    "xreadgroup",
    "wait",
    "waitaof",
];

/// State-changing commands whose state retunnel does not rebuild.
const UNKNOWN_CLIENT: [&str; 4] = ["tracking", "no-evict", "no-touch", "caching"];

fn is(word: Option<&[u8]>, name: &str) -> bool {
    word.is_some_and(|w| w.eq_ignore_ascii_case(name.as_bytes()))
}

/// The replay state as the reply side reads it (published by the command side). Its `Debug`
/// shows no command bytes: they hold passwords.
#[derive(Default)]
pub struct Published {
    /// The commands that rebuild the state, in the order to send them.
    setup: Vec<(Kind, Vec<u8>)>,
    /// Why the state cannot be rebuilt now; `None`: it can.
    unknown: Option<&'static str>,
    /// The last whole command sent; `None`: none yet, or it was too long to keep.
    last: Option<Vec<u8>>,
    /// The last command may block.
    last_blocks: bool,
    /// Part of a further command has been sent.
    partial: bool,
}

/// Command side: records what the connection's state is made of, command by command.
#[derive(Default)]
pub struct Recorder {
    /// Bytes of the command being read; `None` once it grew past [`MAX_KEPT`].
    current: Option<Vec<u8>>,
    /// The setup commands seen, the last of each kind, in the order last sent.
    setup: Vec<(Kind, Vec<u8>)>,
    /// The setup changed since it was last published.
    setup_changed: bool,
    /// A state retunnel cannot rebuild was entered (until `RESET`).
    sticky: Option<&'static str>,
    /// `WATCH` is in force (until `EXEC`, `DISCARD`, `UNWATCH`, `RESET`).
    watching: bool,
    /// The last whole command, not yet published.
    last: Option<Option<Vec<u8>>>,
    /// The last whole command may block.
    last_blocks: bool,
    /// A buffer for a later command (see [`Recorder::spare`]).
    spare: Vec<u8>,
}

impl Recorder {
    /// A recorder at the start of a connection.
    pub fn new() -> Recorder {
        Recorder {
            current: Some(Vec::new()),
            ..Recorder::default()
        }
    }

    /// Keeps `bytes` of the command being read (up to [`MAX_KEPT`]).
    pub fn bytes(&mut self, bytes: &[u8]) {
        if let Some(cur) = &mut self.current {
            if cur.len() + bytes.len() > MAX_KEPT {
                self.current = None;
            } else {
                cur.extend_from_slice(bytes);
            }
        }
    }

    /// A command that changes no state the recorder follows, outside `MULTI`.
    pub fn ordinary_command(&mut self) {
        let spare = self.spare();
        self.last = Some(self.current.replace(spare));
        self.last_blocks = false;
    }

    /// An empty buffer for the next command: the previous command's, when it was not
    /// published (a pipeline), or the one the last publish replaced. No allocation per
    /// command, nor per read.
    fn spare(&mut self) -> Vec<u8> {
        let mut b = match self.last.take() {
            Some(Some(b)) => b,
            _ => std::mem::take(&mut self.spare),
        };
        b.clear();
        b
    }

    /// The command the scanner just completed; `in_multi`: it was sent inside `MULTI`.
    pub fn command(&mut self, s: &Scanner, in_multi: bool) {
        let spare = self.spare();
        let bytes = self.current.replace(spare);
        self.last_blocks = BLOCKING.iter().any(|c| is(s.word(0), c));
        let name = s.word(0);
        if is(name, "reset") && s.args() == 1 {
            *self = Recorder::new();
            self.setup_changed = true;
            self.last = Some(bytes);
            return;
        }
        if let Some(kind) = setup_kind(s) {
            if in_multi {
                self.sticky = Some("state was changed inside MULTI");
            } else if let Some(b) = bytes.clone() {
                self.setup.retain(|(k, _)| *k != kind);
                self.setup.push((kind, b));
                self.setup_changed = true;
            } else {
                self.sticky = Some("a state-changing command was too long to keep");
            }
        } else if is(name, "client") && UNKNOWN_CLIENT.iter().any(|c| is(s.word(1), c)) {
            self.sticky = Some("CLIENT TRACKING, NO-EVICT, NO-TOUCH or CACHING is in force");
        } else if is(name, "watch") {
            self.watching = true;
        } else if ["unwatch", "exec", "discard"].iter().any(|c| is(name, c)) {
            self.watching = false;
        }
        self.last = Some(bytes);
    }

    /// Hands what changed to the reply side; `partial`: a further command has begun, and
    /// `session`: why the relay's own session state forbids replay (MULTI, replies off).
    pub fn publish(&mut self, to: &mut Published, partial: bool, session: Option<&'static str>) {
        if std::mem::take(&mut self.setup_changed) {
            to.setup = self.setup.clone();
        }
        if let Some(last) = self.last.take() {
            if let Some(old) = std::mem::replace(&mut to.last, last) {
                self.spare = old;
            }
            to.last_blocks = self.last_blocks;
        }
        to.partial = partial;
        to.unknown = self.sticky.or(session).or(self.watching.then_some("WATCH is in force"));
    }
}

fn setup_kind(s: &Scanner) -> Option<Kind> {
    let (name, sub) = (s.word(0), s.word(1));
    let kind = match () {
        _ if is(name, "auth") => Kind::Auth,
        _ if is(name, "hello") && s.args() > 1 => Kind::Hello,
        _ if is(name, "select") => Kind::Select,
        _ if is(name, "readonly") || is(name, "readwrite") => Kind::ReadMode,
        _ if is(name, "client") && is(sub, "setname") => Kind::SetName,
        _ if is(name, "client") && is(sub, "setinfo") && is(s.word(2), "lib-name") => Kind::LibName,
        _ if is(name, "client") && is(sub, "setinfo") && is(s.word(2), "lib-ver") => Kind::LibVer,
        _ => return None,
    };
    Some(kind)
}

/// What to send to the new primary: the setup, then the refused command.
pub struct Plan {
    setup: Vec<(Kind, Vec<u8>)>,
    command: Vec<u8>,
}

/// Kinds and sizes only: the bytes hold passwords (`AUTH`, `HELLO … AUTH`).
fn redacted(setup: &[(Kind, Vec<u8>)]) -> Vec<(Kind, usize)> {
    setup.iter().map(|(k, b)| (*k, b.len())).collect()
}

impl fmt::Debug for Published {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Published")
            .field("setup", &redacted(&self.setup))
            .field("unknown", &self.unknown)
            .field("last_len", &self.last.as_ref().map(Vec::len))
            .field("last_blocks", &self.last_blocks)
            .field("partial", &self.partial)
            .finish()
    }
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("setup", &redacted(&self.setup))
            .field("sticky", &self.sticky)
            .field("watching", &self.watching)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plan")
            .field("setup", &redacted(&self.setup))
            .field("command_len", &self.command.len())
            .finish()
    }
}

/// Whether the connection can move to the new primary; `Err`: why not, for the log.
/// `others`: commands other than the refused one are awaiting replies.
pub fn plan(p: &Published, others: bool) -> Result<Plan, &'static str> {
    if others {
        return Err("other commands were already sent to the old primary");
    }
    if p.partial {
        return Err("the client was sending another command");
    }
    if let Some(why) = p.unknown {
        return Err(why);
    }
    if p.last_blocks {
        return Err("the refused command may block");
    }
    let command = p.last.clone().ok_or("the refused command is too long to keep")?;
    Ok(Plan {
        setup: p.setup.clone(),
        command,
    })
}

/// Opens a new upstream, rebuilds the state there and sends the refused command again.
/// The stream returned has the command's reply coming.
pub async fn rebuild<R: Reach>(reach: &R, plan: Plan) -> Result<(R::Stream, SocketAddr), String> {
    let (mut up, addr) = reach.reopen().await?;
    let io = |e: std::io::Error| format!("{addr}: {e}");
    if !plan.setup.is_empty() {
        let all: Vec<u8> = plan.setup.iter().flat_map(|(_, b)| b.iter().copied()).collect();
        up.write_all(&all).await.map_err(io)?;
        up.flush().await.map_err(io)?;
        let kinds: Vec<Kind> = plan.setup.iter().map(|(k, _)| *k).collect();
        match tokio::time::timeout(reach.timeout(), setup_replies(&mut up, &kinds)).await {
            Err(_) => return Err(format!("{addr} did not answer the connection's setup in time")),
            Ok(r) => r.map_err(|e| format!("{addr}: {e}"))?,
        }
    }
    up.write_all(&plan.command).await.map_err(io)?;
    up.flush().await.map_err(io)?;
    Ok((up, addr))
}

/// Reads one reply per setup command; `Err` names the first refused (never its arguments).
async fn setup_replies<S: AsyncRead + Unpin>(up: &mut S, kinds: &[Kind]) -> Result<(), String> {
    let mut scanner = Scanner::new(Side::Server);
    let mut buf = [0u8; 4096];
    let mut left = kinds.iter();
    let mut first: Option<u8> = None;
    loop {
        let n = up.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the new primary closed while the state was set up".into());
        }
        let mut i = 0;
        while i < n {
            if scanner.at_frame_start() {
                first = Some(buf[i]);
            }
            let (used, done) = scanner.feed(&buf[i..n]).map_err(|e| e.to_string())?;
            i += used;
            if !done || first == Some(b'>') {
                continue; // a push frame answers no command
            }
            let kind = left.next().ok_or("the new primary sent more replies than asked")?;
            if matches!(first, Some(b'-' | b'!')) {
                return Err(format!("the new primary refused {}", kind.name()));
            }
            if left.len() == 0 {
                return if i == n {
                    Ok(())
                } else {
                    Err("the new primary sent more replies than asked".into())
                };
            }
        }
    }
}

/// How the upstream's write half passes from the reply side, which opens the new upstream,
/// to the command side, which writes to it.
#[derive(Debug)]
pub struct Switch<W> {
    /// The new write half, until the command side takes it.
    slot: Mutex<Option<W>>,
    /// The upstream's generation: bumped when a new one is in the slot.
    generation: watch::Sender<u64>,
    /// The client connection is closing: the command side stops forwarding and drains.
    pub closing: CancellationToken,
}

impl<W> Default for Switch<W> {
    fn default() -> Self {
        Switch {
            slot: Mutex::new(None),
            generation: watch::Sender::new(0),
            closing: CancellationToken::new(),
        }
    }
}

impl<W> Switch<W> {
    /// Puts a new write half in place; returns its generation.
    pub fn put(&self, w: W) -> u64 {
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(w);
        let mut next = 0;
        self.generation.send_modify(|g| {
            *g += 1;
            next = *g;
        });
        next
    }

    /// The generation of the newest upstream.
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// Waits until the upstream is newer than generation `seen` and takes it; `None`: the
    /// connection is closing instead.
    pub async fn next(&self, seen: &mut u64) -> Option<W> {
        let mut rx = self.generation.subscribe();
        tokio::select! {
            r = rx.wait_for(|g| *g != *seen) => *seen = *r.ok()?,
            () = self.closing.cancelled() => return None,
        }
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// What a READONLY reply leads to.
#[derive(Debug)]
pub enum Verdict<S> {
    /// Deliver it; the connection goes on.
    Pass,
    /// Deliver it, then close the client connection.
    Close,
    /// The command went to the new primary (this stream): drop the error.
    Replayed(S, SocketAddr),
}

/// Reads the client until it closes (at most [`DRAIN_FOR`] and 1 MiB), dropping the bytes:
/// closing with bytes unread would send a reset, which can destroy the reply just sent.
pub async fn drain<R: AsyncRead + Unpin>(from: &mut R) {
    let read_all = async {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < 1 << 20 {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_FOR, read_all).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records `commands` as the command side would, and publishes.
    fn record(commands: &[u8]) -> Published {
        let mut s = Scanner::new(Side::Client);
        let mut r = Recorder::new();
        let mut p = Published::default();
        let mut i = 0;
        while i < commands.len() {
            let (used, done) = s.feed(&commands[i..]).unwrap();
            r.bytes(&commands[i..i + used]);
            i += used;
            if done {
                r.command(&s, false);
            }
        }
        r.publish(&mut p, !s.at_frame_start(), None);
        p
    }

    fn setup_text(p: &Published) -> String {
        let all: Vec<u8> = p.setup.iter().flat_map(|(_, b)| b.clone()).collect();
        String::from_utf8(all).unwrap()
    }

    #[test]
    fn keeps_the_last_of_each_kind_in_the_order_sent() {
        let p = record(
            b"SELECT 1\r\nAUTH u p\r\nCLIENT SETNAME a\r\nHELLO 3\r\nSELECT 2\r\nCLIENT SETINFO LIB-NAME x\r\nSET k v\r\n",
        );
        assert_eq!(
            setup_text(&p),
            "AUTH u p\r\nCLIENT SETNAME a\r\nHELLO 3\r\nSELECT 2\r\nCLIENT SETINFO LIB-NAME x\r\n"
        );
        let plan = plan(&p, false).unwrap();
        assert_eq!(plan.command, b"SET k v\r\n");
        let p = record(b"SELECT 1\r\nRESET\r\nINCR k\r\n");
        assert_eq!(setup_text(&p), "", "RESET forgets the state");
        assert!(plan_of(&p).is_ok());
    }

    fn plan_of(p: &Published) -> Result<Plan, &'static str> {
        plan(p, false)
    }

    #[test]
    fn debug_output_shows_no_command_bytes() {
        let p = record(b"AUTH user s3cret-pw\r\nSET k v\r\n");
        let shown = format!("{p:?} {:?}", plan_of(&p).unwrap());
        assert!(!shown.contains("s3cret") && shown.contains("Auth"), "{shown}");
    }

    #[test]
    fn refuses_what_it_cannot_rebuild() {
        let cases: [(&[u8], &str); 6] = [
            (b"WATCH k\r\nINCR k\r\n", "WATCH"),
            (b"CLIENT TRACKING on\r\nINCR k\r\n", "TRACKING"),
            (b"BLMOVE a b LEFT LEFT 0\r\n", "block"),
            (b"INCR k\r\nGET", "another command"),
            (b"CLIENT NO-EVICT on\r\nRESET x\r\nINCR k\r\n", "NO-EVICT"),
            (b"WATCH k\r\nRESET\r\nSET k v\r\nHELLO 2 AUTH", "another command"),
        ];
        for (commands, why) in cases {
            let e = plan_of(&record(commands)).unwrap_err();
            assert!(e.contains(why), "{}: {e}", String::from_utf8_lossy(commands));
        }
        let p = record(b"WATCH k\r\nUNWATCH\r\nINCR k\r\n");
        assert!(plan_of(&p).is_ok());
        assert!(plan(&p, true).is_err(), "other commands in flight");
        let mut long = b"SET k ".to_vec();
        long.extend(vec![b'x'; MAX_KEPT]);
        long.extend(b"\r\n");
        assert!(plan_of(&record(&long)).unwrap_err().contains("too long"));
    }
}

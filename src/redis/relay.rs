//! The Redis-aware relay: bytes pass through unchanged, except the replies that name cluster
//! nodes, which are held whole and rewritten to point at local node listeners.
//!
//! Client → server, a [`Scanner`] reads each command's name and first arguments and queues
//! what its reply will be ([`Expect`]); server → client, another finds each reply's bounds
//! and takes the next expectation. `MULTI`/`EXEC`, `CLIENT REPLY OFF|SKIP|ON`, `RESET` and
//! RESP3 push frames keep the pairing exact. Once replies can no longer be paired (after
//! `SUBSCRIBE`, `MONITOR`, commands that are not RESP, or when the commands awaiting replies
//! would take over 4 MiB to follow), both directions stop pairing and only `-MOVED`/`-ASK` are
//! rewritten: they are recognised by their content alone, so that never needs the pairing.
//!
//! A `-READONLY` reply may mean the primary moved (a failover: the `connect` name now resolves
//! elsewhere, and this connection still talks to the old primary, now a replica). Then, by
//! `onReadonly`: the refused command is sent again to the new primary, with the connection's
//! state rebuilt first, when [`failover`] can rebuild it (`replay`); else the error is
//! delivered and the client connection closed at that reply, so that the client reconnects
//! (`close`); or the error just passes (`pass`). A READONLY from a node the name still
//! resolves to (a replica or reader endpoint) always passes.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::failover::{self, Reach, Recorder, Switch, Verdict};
use super::nodes::Cluster;
use super::resp::{Scanner, Side};
use super::rewrite::{self, Addresses, Topo};
use crate::config::OnReadonly;
use crate::metrics::{Rewrite, ServiceMetrics};
use crate::relay::{Counters, End};

/// Client → server read buffer, as the plain relay's: requests are small.
const BUF_SIZE: usize = 16 * 1024;
/// Server → client read buffer, as the plain relay's: several TLS records per read.
const DOWN_BUF_SIZE: usize = 64 * 1024;
/// Largest topology or `EXEC` reply held for rewriting; a bigger one passes unchanged with a
/// warning. `CLUSTER SLOTS|SHARDS|NODES` of a 500-node cluster take well under 1 MiB.
pub const MAX_HELD: usize = 4 * 1024 * 1024;
/// Longest error held to see whether it is a redirect (`-MOVED 16383 <host>:<port>`, a host
/// name being at most 255 bytes); a longer one passes unchanged.
pub const MAX_ERROR_HELD: usize = 4 * 1024;
/// Most memory the expectations not yet answered may take (a client that pipelines without
/// reading its replies queues them without end); past it the connection stops pairing.
const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;
/// Most commands one `MULTI` is followed through; past it the connection stops pairing.
const MAX_MULTI: usize = 64 * 1024;

/// What the reply to a command is, as far as rewriting goes.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// Nothing to rewrite.
    Plain,
    /// A topology reply.
    Topo(Topo),
    /// `EXEC` of a transaction that queued topology commands, in order.
    Exec(Box<[Option<Topo>]>),
    /// From this reply on, replies cannot be paired with commands.
    Untrack,
    /// `HELLO 2|3`: if the server refuses it, the protocol assumed for pub/sub is wrong.
    Hello,
    /// A RESP3 pub/sub command: answered by push frames, or by one error (`-MOVED` to
    /// `SSUBSCRIBE`) that cannot be told from an error answering the next command.
    Pushes,
}

/// Expectations, oldest first, with runs of `Plain` counted rather than stored one by one.
#[derive(Debug, Default)]
struct Queue {
    runs: VecDeque<(Expect, u64)>,
    /// The memory the runs take, about: what [`MAX_QUEUED_BYTES`] is checked against.
    bytes: usize,
}

impl Queue {
    fn push(&mut self, e: Expect) {
        if let Some((Expect::Plain, n)) = self.runs.back_mut()
            && e == Expect::Plain
        {
            *n += 1;
            return;
        }
        self.bytes += weight(&e);
        self.runs.push_back((e, 1));
    }

    fn pop(&mut self) -> Option<Expect> {
        let (e, n) = self.runs.front_mut()?;
        *n -= 1;
        if *n > 0 {
            return Some(e.clone());
        }
        let (e, _) = self.runs.pop_front()?;
        self.bytes -= weight(&e);
        Some(e)
    }
}

fn weight(e: &Expect) -> usize {
    let exec = if let Expect::Exec(queued) = e { queued.len() } else { 0 };
    std::mem::size_of::<(Expect, u64)>() + exec
}

/// What both directions of a connection share.
#[derive(Debug, Default)]
struct Pairing {
    /// Expectations the reply side has not taken yet.
    queue: Queue,
    /// Replies are no longer paired with commands (either side decided): nothing is queued
    /// any more, or the queue would grow with every command for the rest of the connection.
    stopped: bool,
    /// What moving to a new primary needs (`onReadonly = replay`).
    replay: failover::Published,
    /// The upstream is being replaced: the command side holds its bytes until it is.
    frozen: bool,
    /// [`RESET_FIRST`] went out: its reply is due before the client's.
    reset_sent: bool,
    /// The reply side's answer to [`Conn::gone`]: the upstream is at a clean point, handed
    /// back for reuse.
    reusable: Option<bool>,
    /// The client's `QUIT` is answered here, not sent: when the upstream is handed back, the
    /// reply side sends the client the `+OK` Redis would have.
    quit: bool,
}

impl Pairing {
    fn stop(&mut self) {
        self.stopped = true;
        self.queue = Queue::default();
    }
}

/// Queues a batch of expectations; false once pairing has stopped (then or before).
#[cfg(test)]
fn queue_batch(pairing: &Mutex<Pairing>, batch: &mut Vec<Expect>) -> bool {
    queue_locked(&mut pairing.lock().unwrap_or_else(|p| p.into_inner()), batch)
}

fn queue_locked(p: &mut Pairing, batch: &mut Vec<Expect>) -> bool {
    if p.stopped {
        batch.clear();
        return false;
    }
    batch.drain(..).for_each(|e| p.queue.push(e));
    if p.queue.bytes > MAX_QUEUED_BYTES {
        warn!(
            max_bytes = MAX_QUEUED_BYTES,
            "the client sent more commands than retunnel follows before their replies came; from now on only MOVED/ASK redirects are rewritten on this connection"
        );
        p.stop();
        return false;
    }
    true
}

/// The client's session state that decides which commands get a reply, and what kind.
#[derive(Debug, Default)]
struct Session {
    /// Inside `MULTI`: the topology kind of each queued command.
    multi: Option<Vec<Option<Topo>>>,
    /// The transaction queued a command that changes which replies come (`CLIENT REPLY`,
    /// pub/sub, `MONITOR`, `HELLO`): Redis 7.0 then cuts or extends EXEC's own reply, so
    /// nothing after it can be paired.
    multi_unpaired: bool,
    /// `CLIENT REPLY OFF`: no replies until `CLIENT REPLY ON`.
    reply_off: bool,
    /// `CLIENT REPLY SKIP`: the next command gets no reply.
    skip_next: bool,
    /// `HELLO 3` was sent: pub/sub confirmations come as push frames, answering no command.
    resp3: bool,
    /// A command was sent whose effect `RESET` may not undo: the upstream is not reused
    /// (see [`super::reuse`]). A `RESET` from the client does not clear this.
    barred: Option<&'static str>,
}

impl Session {
    /// Why the session's state forbids sending the last command again, if it does.
    fn unreplayable(&self) -> Option<&'static str> {
        match () {
            _ if self.multi.is_some() => Some("inside MULTI"),
            _ if self.reply_off || self.skip_next => Some("replies are switched off (CLIENT REPLY)"),
            _ => None,
        }
    }

    /// Why the upstream may not be reset and kept for another client at this point, if so.
    fn unreusable(&self) -> Option<&'static str> {
        match () {
            _ if self.barred.is_some() => self.barred,
            _ if self.multi.is_some() => Some("inside MULTI"),
            _ if self.reply_off || self.skip_next => Some("replies are switched off (CLIENT REPLY)"),
            _ => None,
        }
    }
}

/// Commands whose confirmations depend on the protocol version.
pub(super) const PUBSUB: [&str; 6] = [
    "subscribe",
    "psubscribe",
    "ssubscribe",
    "unsubscribe",
    "punsubscribe",
    "sunsubscribe",
];

fn is(word: Option<&[u8]>, name: &str) -> bool {
    word.is_some_and(|w| w.eq_ignore_ascii_case(name.as_bytes()))
}

/// A `CLIENT REPLY` that Redis obeys: exactly three arguments, the last `ON`, `OFF` or `SKIP`.
/// Any other `CLIENT REPLY` gets an error reply like any failed command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyMode {
    On,
    Off,
    Skip,
}

fn reply_mode(s: &Scanner) -> Option<ReplyMode> {
    if s.args() != 3 || !is(s.word(0), "client") || !is(s.word(1), "reply") {
        return None;
    }
    let arg = s.word(2);
    [
        ("on", ReplyMode::On),
        ("off", ReplyMode::Off),
        ("skip", ReplyMode::Skip),
    ]
    .into_iter()
    .find_map(|(word, mode)| is(arg, word).then_some(mode))
}

impl Session {
    /// The expectation for the command the scanner just completed; `None`: it gets no reply.
    /// As Redis 7.0 does (each case checked against it): a `CLIENT REPLY SKIP` silences the
    /// next command whatever it is, an empty one included; `SKIP` while `OFF` is ignored;
    /// `ON` and `RESET` turn replies on before they answer; `RESET` runs even inside `MULTI`;
    /// inside `MULTI` every other command, `CLIENT REPLY` too, is only queued (`+QUEUED`).
    fn command(&mut self, s: &Scanner) -> Option<Expect> {
        let skipped = std::mem::take(&mut self.skip_next);
        if s.words() == 0 {
            return None; // an empty inline line or `*0`: Redis skips it without a reply
        }
        if let Some(why) = super::reuse::bars_reuse(s) {
            self.barred = Some(why);
        }
        if is(s.word(0), "reset") && s.args() == 1 {
            *self = Session {
                barred: self.barred,
                ..Session::default()
            };
            return (!skipped).then_some(Expect::Plain);
        }
        if self.multi.is_none()
            && let Some(mode) = reply_mode(s)
        {
            match mode {
                ReplyMode::On => {
                    self.reply_off = false;
                    return Some(Expect::Plain);
                }
                ReplyMode::Off => self.reply_off = true,
                ReplyMode::Skip => self.skip_next = !self.reply_off,
            }
            return None;
        }
        let expect = self.expect(s);
        // Untracking even when Redis stays silent: stopping early only costs rewrites, while
        // a wrong pairing would rewrite user data (`CLIENT REPLY ON` inside MULTI while OFF).
        (expect == Expect::Untrack || !self.reply_off && !skipped).then_some(expect)
    }

    /// What the reply to a command is (if it gets one), following `MULTI`/`EXEC` and the
    /// commands that change how replies come.
    fn expect(&mut self, s: &Scanner) -> Expect {
        let name = s.word(0);
        if self.multi.is_some() {
            return self.queued(s);
        }
        if PUBSUB.iter().any(|c| is(name, c)) {
            // RESP3 confirms with push frames; RESP2 with arrays, as many as channels, and then
            // sends messages unasked (and refuses topology commands until it unsubscribes).
            return if self.resp3 { Expect::Pushes } else { Expect::Untrack };
        }
        if is(name, "monitor") {
            return Expect::Untrack;
        }
        if is(name, "hello") && s.words() > 1 {
            self.resp3 = is(s.word(1), "3");
            return Expect::Hello;
        }
        if is(name, "multi") && s.args() == 1 {
            self.multi = Some(Vec::new());
        }
        topology_command(s).map_or(Expect::Plain, Expect::Topo)
    }

    /// A command inside `MULTI`: queued (`+QUEUED`), or `EXEC`/`DISCARD` ending it.
    /// As Redis 7.0 does: `EXEC` with arguments ends the transaction with an error;
    /// `DISCARD` with arguments is an error that leaves it open.
    fn queued(&mut self, s: &Scanner) -> Expect {
        let name = s.word(0);
        let one_word = s.args() == 1;
        if is(name, "discard") && !one_word {
            return Expect::Plain;
        }
        if is(name, "exec") || is(name, "discard") {
            let queued = self.multi.take().unwrap_or_default();
            let unpaired = std::mem::take(&mut self.multi_unpaired);
            return match () {
                _ if !is(name, "exec") || !one_word => Expect::Plain,
                _ if unpaired => Expect::Untrack,
                _ if queued.iter().any(Option::is_some) => Expect::Exec(queued.into()),
                _ => Expect::Plain,
            };
        }
        let others = ["monitor", "hello"].iter().chain(&PUBSUB);
        if reply_mode(s).is_some() || others.clone().any(|c| is(name, c)) {
            self.multi_unpaired = true;
        }
        let Some(queued) = &mut self.multi else {
            return Expect::Plain;
        };
        if queued.len() >= MAX_MULTI {
            if !std::mem::replace(&mut self.multi_unpaired, true) {
                warn!(
                    max_commands = MAX_MULTI,
                    "a transaction queued more commands than retunnel follows; from now on only MOVED/ASK redirects are rewritten on this connection"
                );
            }
            return Expect::Untrack;
        }
        queued.push(topology_command(s));
        Expect::Plain
    }
}

fn topology_command(s: &Scanner) -> Option<Topo> {
    if !is(s.word(0), "cluster") {
        return None;
    }
    let sub = s.word(1)?;
    let topo = match sub.to_ascii_lowercase().as_slice() {
        b"slots" => Topo::Slots,
        b"shards" => Topo::Shards,
        b"nodes" => Topo::Nodes,
        b"replicas" | b"slaves" => Topo::Replicas,
        _ => return None,
    };
    Some(topo)
}

/// The connection's upstream, and how to reach its `connect` name again.
pub struct Upstream<'a, R: Reach> {
    /// The stream, connected (and TLS set up).
    pub stream: R::Stream,
    /// The address it reached.
    pub addr: SocketAddr,
    /// How to tell a moved primary and reach the new one.
    pub reach: &'a R,
    /// What a READONLY from a primary that moved away does.
    pub on_readonly: OnReadonly,
    /// Send `RESET` ahead of the client's first command and drop its reply: the connection
    /// was opened (and logged in as the server then allowed) before this client came; see
    /// [`RESET_FIRST`].
    pub reset_first: bool,
    /// Hand the upstream back when the client leaves at a clean point (see [`super::reuse`]).
    pub reuse: bool,
}

/// What goes ahead of the first command on a connection kept warm. Redis logs a new
/// connection in as `default` when `default` needs no password, and keeps it logged in when
/// a password is set later (`CONFIG SET requirepass`); `RESET` logs it in again as a new
/// connection would be now. Pipelined with the client's bytes, it costs no round trip.
pub const RESET_FIRST: &[u8] = b"RESET\r\n";

/// What both directions of a connection share.
struct Conn<'a, R: Reach> {
    pairing: Mutex<Pairing>,
    /// Hands a new upstream's write half to the command side.
    switch: Switch<WriteHalf<R::Stream>>,
    reach: &'a R,
    on_readonly: OnReadonly,
    /// The client's TCP socket, to send a closing reply and the close together.
    client_fd: Option<RawFd>,
    /// [`Upstream::reset_first`].
    reset_first: bool,
    /// [`Upstream::reuse`].
    reuse: bool,
    /// The client closed its side with the session clean: the reply side says whether the
    /// upstream is at a clean point too ([`Pairing::reusable`]) and answers on `verdict`.
    gone: tokio::sync::Notify,
    verdict: tokio::sync::Notify,
}

/// Relays one client of a `protocol = redis` section (or node listener) until both
/// directions are done, a side fails, the connection idles too long, or a failover closes it.
pub async fn relay<C, R>(
    (client, client_fd): (C, Option<RawFd>),
    upstream: Upstream<'_, R>,
    local_ip: IpAddr,
    cluster: Arc<Cluster>,
    idle: Option<Duration>,
    counters: Arc<Counters>,
) -> (End, Option<R::Stream>)
where
    C: AsyncRead + AsyncWrite + Unpin,
    R: Reach,
{
    let (client_r, client_w) = tokio::io::split(client);
    let (up_r, up_w) = tokio::io::split(upstream.stream);
    let conn = Conn {
        pairing: Mutex::new(Pairing::default()),
        switch: Switch::default(),
        reach: upstream.reach,
        on_readonly: upstream.on_readonly,
        client_fd,
        reset_first: upstream.reset_first,
        reuse: upstream.reuse,
        gone: tokio::sync::Notify::new(),
        verdict: tokio::sync::Notify::new(),
    };
    // A redirect naming no host means the node this connection reached.
    let base_host = upstream.addr.ip().to_string();
    let map = |host: &str, port: u16, seen| cluster.local_port(host, port, seen);
    let addrs = Addresses {
        local_ip: local_ip.to_string(),
        base_host: &base_host,
        map: &map,
    };
    let mut back = None;
    let both = async {
        let halves = tokio::try_join!(
            commands(client_r, up_w, &conn, &counters),
            replies(
                up_r,
                client_w,
                &conn,
                upstream.addr,
                &addrs,
                &counters,
                cluster.metrics()
            )
        )?;
        if let (Some(w), Some(r)) = halves
            && r.is_pair_of(&w)
        {
            back = Some(r.unsplit(w));
        }
        Ok(())
    };
    let end = crate::relay::until_idle(both, idle, &counters).await;
    (end, back)
}

/// Client → server: forwards every byte, queueing what each command's reply will be. When
/// the upstream is being replaced, holds the bytes until the new one is in place.
async fn commands<Rd, R>(
    mut from: Rd,
    mut to: WriteHalf<R::Stream>,
    conn: &Conn<'_, R>,
    counters: &Counters,
) -> io::Result<Option<WriteHalf<R::Stream>>>
where
    Rd: AsyncRead + Unpin,
    R: Reach,
{
    let mut buf = vec![0u8; BUF_SIZE];
    let mut scanner = Scanner::new(Side::Client);
    let mut session = Session::default();
    let mut recorder = (conn.on_readonly == OnReadonly::Replay).then(Recorder::new);
    let mut following = true;
    let mut batch = Vec::new();
    let mut generation = 0;
    let mut reset_first = conn.reset_first;
    // Made once: a new one per read would register with the token and leave it again.
    let closing = conn.switch.closing.cancelled();
    tokio::pin!(closing);
    loop {
        let n = tokio::select! {
            biased;
            r = from.read(&mut buf) => r.map_err(crate::relay::client_side)?,
            () = &mut closing => {
                failover::drain(&mut from).await;
                return Ok(None);
            }
        };
        counters.add_up(n as u64);
        // A `QUIT` alone, after every reply came (a client library closing): answered here,
        // so that the upstream survives for the next client. Otherwise it goes to Redis,
        // which answers and closes, and the connection is not reused.
        if conn.reuse
            && following
            && generation == 0
            && scanner.at_frame_start()
            && n <= QUIT_MAX
            && lone_quit(&buf[..n])
        {
            conn.pairing.lock().unwrap_or_else(|p| p.into_inner()).quit = true;
            if client_left_clean(conn, &session).await {
                debug!("the client said QUIT; answered by retunnel, its upstream connection kept");
                return Ok(Some(to));
            }
            conn.pairing.lock().unwrap_or_else(|p| p.into_inner()).quit = false;
        }
        if following {
            following = scan_commands(&buf[..n], &mut scanner, &mut session, &mut batch, recorder.as_mut());
        }
        let frozen = {
            let mut p = conn.pairing.lock().unwrap_or_else(|p| p.into_inner());
            following &= queue_locked(&mut p, &mut batch);
            if let Some(r) = &mut recorder {
                r.publish(&mut p.replay, !scanner.at_frame_start(), session.unreplayable());
            }
            p.reset_sent |= reset_first && n > 0;
            p.frozen
        };
        if frozen || conn.switch.generation() != generation {
            match conn.switch.next(&mut generation).await {
                Some(w) => to = w,
                None => {
                    failover::drain(&mut from).await;
                    return Ok(None);
                }
            }
        }
        if n == 0 {
            let clean = following && generation == 0 && scanner.at_frame_start();
            if conn.reuse && clean && client_left_clean(conn, &session).await {
                return Ok(Some(to));
            }
            return to.shutdown().await.map(|()| None);
        }
        // Queued before it is sent: the reply cannot arrive before its expectation.
        let sent = match std::mem::take(&mut reset_first) {
            true => crate::relay::write_flushed(&mut to, &[RESET_FIRST, &buf[..n]].concat()).await,
            false => crate::relay::write_flushed(&mut to, &buf[..n]).await,
        };
        if let Err(e) = sent {
            // Redis closed (QUIT, a protocol error): its last replies still go out.
            return crate::relay::drain_then(&mut from, e).await.map(|()| None);
        }
    }
}

/// The client closed its side after whole commands: whether the upstream is at a clean point
/// to be reused. The session says for the commands; the reply side, asked, for the replies.
async fn client_left_clean<R: Reach>(conn: &Conn<'_, R>, session: &Session) -> bool {
    if let Some(why) = session.unreusable() {
        debug!(reason = why, "the client left; its upstream connection is not reused");
        return false;
    }
    conn.gone.notify_one();
    conn.verdict.notified().await;
    conn.pairing.lock().unwrap_or_else(|p| p.into_inner()).reusable == Some(true)
}

/// The longest a lone `QUIT` is (`*1\r\n$4\r\nQUIT\r\n` is 14 bytes; inline, spaces may pad
/// it): longer reads are not looked at.
const QUIT_MAX: usize = 32;

/// Whether `data` is exactly one `QUIT` command without arguments (inline or RESP).
fn lone_quit(data: &[u8]) -> bool {
    let mut scanner = Scanner::new(Side::Client);
    matches!(scanner.feed(data), Ok((used, true)) if used == data.len())
        && scanner.args() == 1
        && is(scanner.word(0), "quit")
}

/// Scans one read of commands; false when the stream can no longer be followed.
fn scan_commands(
    data: &[u8],
    scanner: &mut Scanner,
    session: &mut Session,
    batch: &mut Vec<Expect>,
    recorder: Option<&mut Recorder>,
) -> bool {
    scan(data, scanner, session, batch, recorder, true)
}

/// [`scan_commands`]; `shortcut`: an ordinary command ([`super::names`]) outside `MULTI`,
/// with replies on, is paired with a plain reply without asking the session and recorder
/// (tests compare the two ways).
fn scan(
    data: &[u8],
    scanner: &mut Scanner,
    session: &mut Session,
    batch: &mut Vec<Expect>,
    mut recorder: Option<&mut Recorder>,
    shortcut: bool,
) -> bool {
    let mut i = 0;
    while i < data.len() {
        match scanner.feed(&data[i..]) {
            Ok((used, done)) => {
                if let Some(r) = recorder.as_deref_mut() {
                    r.bytes(&data[i..i + used]);
                }
                i += used;
                if !done {
                    continue;
                }
                if shortcut
                    && session.multi.is_none()
                    && !session.reply_off
                    && !session.skip_next
                    && scanner.word(0).is_some_and(super::names::ordinary)
                {
                    if let Some(r) = recorder.as_deref_mut() {
                        r.ordinary_command();
                    }
                    batch.push(Expect::Plain);
                    continue;
                }
                if let Some(r) = recorder.as_deref_mut() {
                    r.command(scanner, session.multi.is_some());
                }
                if let Some(e) = session.command(scanner) {
                    batch.push(e);
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot follow the client's commands; from now on only MOVED/ASK redirects are rewritten on this connection");
                batch.push(Expect::Untrack);
                return false;
            }
        }
    }
    true
}

/// What the frame being read is held for.
#[derive(Debug)]
enum Hold {
    /// Not held: it passes as it comes.
    No,
    /// An error reply: a redirect if it says so.
    Redirect,
    /// A reply to rewrite.
    Reply(Expect),
    /// The reply to [`RESET_FIRST`], which the client did not ask for: dropped.
    Dropped,
}

impl Hold {
    /// The most bytes held for this; past it the frame passes unchanged.
    fn limit(&self) -> usize {
        match self {
            Hold::Redirect | Hold::Dropped => MAX_ERROR_HELD,
            _ => MAX_HELD,
        }
    }
}

/// Server → client state.
struct Replies<'a> {
    scanner: Scanner,
    /// Expectations taken from the shared queue, consumed in order.
    local: Queue,
    pairing: &'a Mutex<Pairing>,
    /// Replies are still paired with commands.
    tracking: bool,
    hold: Hold,
    held: Vec<u8>,
    addrs: &'a Addresses<'a>,
    /// Counts the rewrites.
    metrics: &'a ServiceMetrics,
    /// What the frame being read answers, as far as known.
    answering: Option<Expect>,
    /// A lookup found the `connect` name still pointing at this node; believed until then.
    still_there_until: Option<Instant>,
    /// The first reply answers [`RESET_FIRST`]: not the client's.
    drop_first: bool,
}

impl<'a> Replies<'a> {
    fn new(pairing: &'a Mutex<Pairing>, addrs: &'a Addresses<'a>, metrics: &'a ServiceMetrics) -> Replies<'a> {
        Replies {
            scanner: Scanner::new(Side::Server),
            local: Queue::default(),
            pairing,
            tracking: true,
            hold: Hold::No,
            held: Vec::new(),
            addrs,
            metrics,
            answering: None,
            still_there_until: None,
            drop_first: false,
        }
    }

    fn next_expect(&mut self) -> Option<Expect> {
        if let Some(e) = self.local.pop() {
            return Some(e);
        }
        let mut shared = self.pairing.lock().unwrap_or_else(|p| p.into_inner());
        if shared.stopped {
            self.tracking = false; // the command side stopped, and said why
            return None;
        }
        std::mem::swap(&mut self.local, &mut shared.queue);
        drop(shared);
        self.local.pop()
    }

    /// Replies can no longer be paired: stop, and have the command side stop queueing.
    fn untrack(&mut self) {
        self.tracking = false;
        self.local = Queue::default();
        self.pairing.lock().unwrap_or_else(|p| p.into_inner()).stop();
    }

    /// Decides, at the first byte of a top-level frame, whether to hold it.
    fn frame_starts(&mut self, first: u8) {
        self.hold = Hold::No;
        if matches!(first, b'>' | b'|') {
            return; // push frames and attributes answer no command
        }
        if std::mem::take(&mut self.drop_first) {
            self.hold = Hold::Dropped;
            return;
        }
        let mut expect = if self.tracking { self.next_expect() } else { None };
        while expect == Some(Expect::Pushes) && first != b'-' {
            expect = self.next_expect(); // a reply that is no error answers a later command
        }
        match &expect {
            // Redis answers only whole commands, except when it refuses the bytes as a
            // protocol error (`*99999999`, a bulk length over `proto-max-bulk-len`): then
            // an error comes before the command is whole here, and Redis closes.
            None if self.tracking && first == b'-' => {
                info!(
                    "an error came before the client's command was complete (Redis refusing the client's bytes as a protocol error closes the connection); from now on only MOVED/ASK redirects are rewritten on this connection"
                );
                self.untrack();
            }
            None if self.tracking => {
                warn!(
                    "a reply came with no command waiting for it; from now on only MOVED/ASK redirects are rewritten on this connection"
                );
                self.untrack();
            }
            Some(Expect::Hello) if first == b'-' => {
                warn!(
                    "the server refused HELLO; from now on only MOVED/ASK redirects are rewritten on this connection"
                );
                self.untrack();
            }
            Some(Expect::Pushes) => {
                warn!(
                    "an error came after a RESP3 pub/sub command and may answer either it or the next command; from now on only MOVED/ASK redirects are rewritten on this connection"
                );
                self.untrack();
            }
            Some(Expect::Untrack) => {
                debug!("subscribe or monitor mode: only MOVED/ASK redirects are rewritten from here on");
                self.untrack();
            }
            _ => {}
        }
        self.answering = expect.clone();
        self.hold = match expect {
            _ if first == b'-' => Hold::Redirect,
            Some(e @ (Expect::Topo(_) | Expect::Exec(_))) => Hold::Reply(e),
            _ => Hold::No,
        };
    }

    /// The bytes to send for the held frame, now complete.
    fn release(&mut self) -> Vec<u8> {
        let held = std::mem::take(&mut self.held);
        let (new, kind) = match std::mem::replace(&mut self.hold, Hold::No) {
            Hold::No => (None, Rewrite::Topology),
            Hold::Redirect => (rewrite::redirect(&held, self.addrs), Rewrite::Redirect),
            Hold::Reply(Expect::Topo(t)) => (rewrite::topology(&held, t, self.addrs), Rewrite::Topology),
            Hold::Reply(Expect::Exec(q)) => (rewrite::exec(&held, &q, self.addrs), Rewrite::Topology),
            Hold::Reply(_) => (None, Rewrite::Topology),
            Hold::Dropped => {
                reset_answered(&held);
                return Vec::new();
            }
        };
        match new {
            Some(new) => {
                self.metrics.rewritten(kind);
                new
            }
            None => held,
        }
    }
}

/// Server → client: forwards replies, rewriting those that name cluster nodes. A reply that
/// is not RESP ends the connection: passing it on could split a later rewrite mid-frame.
async fn replies<W, R>(
    mut from: ReadHalf<R::Stream>,
    mut to: W,
    conn: &Conn<'_, R>,
    mut upstream: SocketAddr,
    addrs: &Addresses<'_>,
    counters: &Counters,
    metrics: &ServiceMetrics,
) -> io::Result<Option<ReadHalf<R::Stream>>>
where
    W: AsyncWrite + Unpin,
    R: Reach,
{
    // However this side ends, the command side waiting for its verdict gets one.
    let _answer = Verdicts(conn);
    let mut buf = vec![0u8; DOWN_BUF_SIZE];
    let mut st = Replies::new(&conn.pairing, addrs, metrics);
    st.drop_first = conn.reset_first;
    let mut asked = false;
    'read: loop {
        let n = match conn.reuse && !asked {
            false => from.read(&mut buf).await?,
            true => tokio::select! {
                r = from.read(&mut buf) => r?,
                () = conn.gone.notified() => {
                    asked = true;
                    if st.hand_back(conn) {
                        if conn.pairing.lock().unwrap_or_else(|p| p.into_inner()).quit {
                            // What Redis answers QUIT with; the client may be gone already.
                            let _ = crate::relay::write_flushed(&mut to, b"+OK\r\n").await;
                        }
                        let _ = to.shutdown().await;
                        return Ok(Some(from));
                    }
                    continue 'read;
                }
            },
        };
        if n == 0 && !st.scanner.at_frame_start() {
            // Killed mid-value: the log must not read like a clean close, and the client is
            // closed without the rest (RESP lengths let it see the reply is cut).
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "upstream closed mid-reply (the server went away in the middle of a reply)",
            ));
        }
        if n == 0 {
            return to.shutdown().await.map(|()| None);
        }
        counters.add_down(n as u64);
        let data = &buf[..n];
        let (mut i, mut from_i) = (0, 0);
        while i < n {
            if st.scanner.at_frame_start() {
                st.frame_starts(data[i]);
                if !matches!(st.hold, Hold::No) {
                    to.write_all(&data[from_i..i]).await?;
                    from_i = i;
                }
            }
            let (used, done) = st.scanner.feed(&data[i..]).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the server sent bytes that are not RESP ({e}); closing the connection"),
                )
            })?;
            if !matches!(st.hold, Hold::No) {
                st.held.extend_from_slice(&data[i..i + used]);
                from_i = i + used;
                if st.held.len() > st.hold.limit() {
                    if matches!(st.hold, Hold::Dropped) {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "the server answered RESET with a long reply; closing the connection",
                        ));
                    }
                    if matches!(st.hold, Hold::Reply(_)) {
                        warn!(max_bytes = MAX_HELD, "reply too large to rewrite; passing it unchanged");
                    }
                    to.write_all(&std::mem::take(&mut st.held)).await?;
                    st.hold = Hold::No;
                }
            }
            i += used;
            if !done || matches!(st.hold, Hold::No) {
                continue;
            }
            if conn.on_readonly != OnReadonly::Pass && is_readonly(&st.held) {
                match st.readonly(conn, upstream, i < n).await {
                    Verdict::Pass => {}
                    Verdict::Close => {
                        metrics.readonly(false);
                        if let Some(fd) = conn.client_fd {
                            crate::sockopt::cork(fd);
                        }
                        to.write_all(&std::mem::take(&mut st.held)).await?;
                        to.flush().await?;
                        let _ = to.shutdown().await;
                        conn.switch.closing.cancel();
                        return Ok(None);
                    }
                    Verdict::Replayed(stream, addr) => {
                        metrics.readonly(true);
                        let (r, w) = tokio::io::split(stream);
                        conn.switch.put(w);
                        conn.pairing.lock().unwrap_or_else(|p| p.into_inner()).frozen = false;
                        (from, upstream) = (r, addr);
                        st.held.clear();
                        st.hold = Hold::No;
                        continue 'read;
                    }
                }
            }
            let out = st.release();
            to.write_all(&out).await?;
        }
        to.write_all(&data[from_i..n]).await?;
    }
}

/// Says, once per process, when a server does not take `RESET` (Redis before 6.2): warm
/// connections then cannot be logged in afresh.
fn reset_answered(reply: &[u8]) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if reply.starts_with(b"+RESET\r") || SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let first = String::from_utf8_lossy(reply.split(|&b| b == b'\r').next().unwrap_or_default());
    warn!(reply = %first, "the server refused RESET (Redis before 6.2?): a warm connection keeps the login it was opened with, so a password set on the server since then is not asked for (see README, Warm connections)");
}

/// Answers the command side's verdict request when the reply side ends without one.
struct Verdicts<'c, 'a, R: Reach>(&'c Conn<'a, R>);

impl<R: Reach> Drop for Verdicts<'_, '_, R> {
    fn drop(&mut self) {
        let mut p = self.0.pairing.lock().unwrap_or_else(|p| p.into_inner());
        if p.reusable.is_none() {
            p.reusable = Some(false);
            drop(p);
            self.0.verdict.notify_one();
        }
    }
}

impl Replies<'_> {
    /// The client left: whether every reply it asked for has been delivered and nothing is
    /// held, so that the upstream can be reset for reuse. Tells the command side either way.
    fn hand_back<R: Reach>(&self, conn: &Conn<'_, R>) -> bool {
        let mut p = self.pairing.lock().unwrap_or_else(|p| p.into_inner());
        let clean = self.tracking
            && !p.stopped
            && self.scanner.at_frame_start()
            && matches!(self.hold, Hold::No)
            && self.local.runs.is_empty()
            && p.queue.runs.is_empty()
            && !(self.drop_first && p.reset_sent)
            && conn.switch.generation() == 0;
        p.reusable = Some(clean);
        drop(p);
        conn.verdict.notify_one();
        if !clean {
            debug!("replies were still due when the client left or quit; its upstream connection is not reused");
        }
        clean
    }
}

/// A `-READONLY` error: the node is a replica now.
fn is_readonly(frame: &[u8]) -> bool {
    frame.starts_with(b"-READONLY ") || frame.starts_with(b"-READONLY\r")
}

impl Replies<'_> {
    /// The node answered READONLY (`more`: further replies are already here). Tells a primary
    /// that moved (the name no longer resolves to `upstream`) from a replica, and for a moved
    /// one sends the command to the new primary where the state allows it.
    async fn readonly<R: Reach>(&mut self, conn: &Conn<'_, R>, upstream: SocketAddr, more: bool) -> Verdict<R::Stream> {
        if self.still_there_until.is_some_and(|t| Instant::now() < t) {
            return Verdict::Pass;
        }
        match conn.reach.still_resolves(upstream).await {
            Some(false) => {}
            Some(true) => {
                debug!(%upstream, "READONLY from a node the name still resolves to (a replica or reader endpoint): passed on");
                self.still_there_until = Some(Instant::now() + failover::STILL_THERE_FOR);
                return Verdict::Pass;
            }
            None => {
                debug!(%upstream, "READONLY, and the name cannot be looked up now: passed on");
                return Verdict::Pass;
            }
        }
        if conn.on_readonly == OnReadonly::Close {
            info!(%upstream, "the primary moved away from this node (READONLY); closing the client connection after the error so that it reconnects (onReadonly = close)");
            return Verdict::Close;
        }
        let plan = {
            let mut p = conn.pairing.lock().unwrap_or_else(|p| p.into_inner());
            let others = more || !self.local.runs.is_empty() || !p.queue.runs.is_empty();
            let plan = match p.stopped {
                true => Err("replies can no longer be paired (subscriptions, MONITOR, or a stream not followed)"),
                false => failover::plan(&p.replay, others),
            };
            p.frozen = plan.is_ok();
            plan
        };
        let plan = match plan {
            Ok(plan) => plan,
            Err(why) => {
                info!(%upstream, reason = why, "the primary moved away from this node (READONLY), and the command cannot be sent again; closing the client connection after the error so that it reconnects");
                return Verdict::Close;
            }
        };
        match failover::rebuild(conn.reach, plan).await {
            Ok((stream, addr)) => {
                info!(%upstream, new = %addr, "the primary moved away from this node (READONLY); the connection moved to the new primary and the command was sent again");
                let answering = self.answering.take().unwrap_or(Expect::Plain);
                self.local.push(answering);
                Verdict::Replayed(stream, addr)
            }
            Err(e) => {
                warn!(%upstream, error = %e, "the primary moved away from this node (READONLY), and the new primary could not take the connection; closing the client connection after the error");
                Verdict::Close
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio::io::{DuplexStream, duplex};

    const NODE: &str = "127.0.0.1:6379";

    /// A name that still resolves to the node: READONLY passes.
    struct Fixed;

    impl Reach for Fixed {
        type Stream = DuplexStream;
        async fn still_resolves(&self, _: SocketAddr) -> Option<bool> {
            Some(true)
        }
        async fn reopen(&self) -> Result<(DuplexStream, SocketAddr), String> {
            Err("not in this test".into())
        }
        fn timeout(&self) -> Duration {
            Duration::from_secs(5)
        }
    }

    /// Runs `replies` over `server`'s bytes, written `step` bytes at a time, with `expects`
    /// queued as if the commands had been sent; returns what the client got.
    fn run_replies(expects: Vec<Expect>, server: &[u8], step: usize, map: &rewrite::NodeMap) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let conn = Conn {
                pairing: Mutex::new(Pairing::default()),
                switch: Switch::default(),
                reach: &Fixed,
                on_readonly: OnReadonly::Replay,
                client_fd: None,
                reset_first: false,
                reuse: false,
                gone: tokio::sync::Notify::new(),
                verdict: tokio::sync::Notify::new(),
            };
            expects
                .into_iter()
                .for_each(|e| conn.pairing.lock().unwrap().queue.push(e));
            let (mut srv, relay_in) = duplex(step.max(1));
            let relay_in = tokio::io::split(relay_in).0;
            let (relay_out, mut cli) = duplex(1 << 20);
            let addrs = Addresses {
                local_ip: "127.0.0.1".into(),
                base_host: "base",
                map,
            };
            let counters = Counters::default();
            let metrics = crate::metrics::Metrics::default().service("t");
            let data = server.to_vec();
            let writer = async move {
                for chunk in data.chunks(step.max(1)) {
                    srv.write_all(chunk).await.unwrap();
                }
            };
            let reader = async {
                let mut out = Vec::new();
                cli.read_to_end(&mut out).await.unwrap();
                out
            };
            let (_, r, out) = tokio::join!(
                writer,
                replies(
                    relay_in,
                    relay_out,
                    &conn,
                    NODE.parse().unwrap(),
                    &addrs,
                    &counters,
                    &metrics
                ),
                reader
            );
            r.unwrap();
            out
        })
    }

    #[test]
    fn rewrites_in_flight_and_passes_the_rest() {
        let map = |h: &str, p: u16, _| (h == "10.0.0.1" && p == 6379).then_some(17001);
        let nodes = "id 10.0.0.1:6379@16379 master - 0 0 1 connected 0-16383\n";
        let server = format!(
            "$1\r\nx\r\n>2\r\n$7\r\nmessage\r\n$1\r\ny\r\n${}\r\n{nodes}\r\n-MOVED 1 10.0.0.1:6379\r\n+OK\r\n",
            nodes.len()
        );
        let expects = vec![Expect::Plain, Expect::Topo(Topo::Nodes), Expect::Plain, Expect::Plain];
        let want_nodes = "id 127.0.0.1:17001@16379 master - 0 0 1 connected 0-16383\n";
        let want = format!(
            "$1\r\nx\r\n>2\r\n$7\r\nmessage\r\n$1\r\ny\r\n${}\r\n{want_nodes}\r\n-MOVED 1 127.0.0.1:17001\r\n+OK\r\n",
            want_nodes.len()
        );
        for step in [1, 3, 7, 64, 4096] {
            let out = run_replies(expects.clone(), server.as_bytes(), step, &map);
            assert_eq!(String::from_utf8(out).unwrap(), want, "step {step}");
        }
    }

    #[test]
    fn resp3_pubsub_keeps_the_pairing_unless_an_error_makes_it_ambiguous() {
        let map = |h: &str, p: u16, _| (h == "10.0.0.1" && p == 6379).then_some(17001);
        let nodes = "id 10.0.0.1:6379@16379 master - 0 0 1 connected 0-16383\n";
        let reply = format!("${}\r\n{nodes}\r\n", nodes.len());
        let push = ">3\r\n$10\r\nssubscribe\r\n$1\r\na\r\n:1\r\n";
        let expects = vec![Expect::Pushes, Expect::Topo(Topo::Nodes)];
        let out = run_replies(expects.clone(), format!("{push}{reply}").as_bytes(), 5, &map);
        assert!(
            String::from_utf8(out).unwrap().contains("127.0.0.1:17001@"),
            "paired past the pushes"
        );
        let out = run_replies(expects, format!("-ERR no\r\n{reply}").as_bytes(), 5, &map);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("-ERR no\r\n{reply}"),
            "ambiguous: untouched"
        );
    }

    proptest! {
        /// Whatever the replies and their expectations, nothing that names no known node
        /// changes by a byte, however the stream is split.
        #[test]
        fn never_changes_a_byte_it_need_not(
            frames in proptest::collection::vec(crate::redis::resp::tests::arb_frame(), 1..8),
            topo in proptest::collection::vec(any::<bool>(), 8),
            step in 1usize..64,
        ) {
            let data: Vec<u8> = frames.concat();
            let expects = topo.iter().map(|&t| if t { Expect::Topo(Topo::Slots) } else { Expect::Plain }).collect();
            let out = run_replies(expects, &data, step, &|_, _, _| None);
            prop_assert_eq!(out, data);
        }
    }

    /// Commands made of the names the session and recorder look at, ordinary ones, and the
    /// arguments that matter to them, in any case, inline or RESP.
    fn arb_commands() -> impl Strategy<Value = Vec<u8>> {
        let names = prop::sample::select(
            &[
                "GET",
                "set",
                "multi",
                "EXEC",
                "discard",
                "client",
                "CLIENT",
                "reset",
                "hello",
                "subscribe",
                "monitor",
                "cluster",
                "auth",
                "select",
                "watch",
                "unwatch",
                "blpop",
                "quit",
                "ping",
                "xread",
                "readonly",
            ][..],
        );
        let args = prop::sample::select(
            &[
                "reply", "OFF", "on", "skip", "setname", "setinfo", "lib-name", "tracking", "3", "slots", "x", "nodes",
            ][..],
        );
        let command = (names, proptest::collection::vec(args, 0..4), any::<bool>()).prop_map(|(name, args, inline)| {
            let words: Vec<&str> = std::iter::once(name).chain(args).collect();
            match inline {
                true => format!("{}\r\n", words.join(" ")).into_bytes(),
                false => {
                    let items = words
                        .iter()
                        .map(|w| crate::redis::resp::tests::blob(b'$', w.as_bytes()))
                        .collect();
                    crate::redis::resp::tests::aggregate(b'*', words.len(), items)
                }
            }
        });
        proptest::collection::vec(command, 1..24).prop_map(|c| c.concat())
    }

    proptest! {
        /// The short path for ordinary commands pairs and records exactly what asking the
        /// session and the recorder would, whatever came before (MULTI, CLIENT REPLY, WATCH…).
        #[test]
        fn the_short_path_agrees_with_the_session_and_recorder(data in arb_commands(), step in 1usize..80) {
            let run = |shortcut: bool| {
                let (mut s, mut session, mut batch) = (Scanner::new(Side::Client), Session::default(), Vec::new());
                let mut recorder = Recorder::new();
                let mut published = Vec::new();
                for chunk in data.chunks(step) {
                    scan(chunk, &mut s, &mut session, &mut batch, Some(&mut recorder), shortcut);
                    let mut p = failover::Published::default();
                    recorder.publish(&mut p, !s.at_frame_start(), session.unreplayable());
                    published.push(format!("{p:?} {:?}", session));
                }
                (batch, published)
            };
            prop_assert_eq!(run(true), run(false));
        }
    }

    fn expectations(commands: &[u8]) -> Vec<Expect> {
        let mut s = Scanner::new(Side::Client);
        let mut session = Session::default();
        let mut out = Vec::new();
        assert!(scan_commands(commands, &mut s, &mut session, &mut out, None));
        out
    }

    #[test]
    fn pairs_commands_with_reply_kinds() {
        let e = expectations(b"GET a\r\ncluster slots\r\n\r\n*2\r\n$7\r\ncluster\r\n$5\r\nnodes\r\n");
        assert_eq!(e, [Expect::Plain, Expect::Topo(Topo::Slots), Expect::Topo(Topo::Nodes)]);
        let e = expectations(b"MULTI\r\nSET a b\r\nCLUSTER SHARDS\r\nEXEC\r\nMULTI\r\nGET a\r\nEXEC\r\n");
        let exec = Expect::Exec(vec![None, Some(Topo::Shards)].into());
        assert_eq!(
            e[..5],
            [Expect::Plain, Expect::Plain, Expect::Plain, exec, Expect::Plain]
        );
        assert_eq!(e.len(), 7);
        let e =
            expectations(b"CLIENT REPLY SKIP\r\nGET a\r\nGET b\r\nCLIENT REPLY OFF\r\nGET c\r\nCLIENT REPLY ON\r\n");
        assert_eq!(e, [Expect::Plain, Expect::Plain]);
        let e = expectations(b"*0\r\n*-1\r\n  \r\n*1\r\n$20\r\naaaaaaaaaaaaaaaaaaaa\r\n");
        assert_eq!(
            e,
            [Expect::Plain],
            "empty commands get no reply; an unknown long one gets an error"
        );
        let e = expectations(b"SSUBSCRIBE ch\r\n");
        assert_eq!(e, [Expect::Untrack]);
        let e = expectations(b"HELLO 3\r\nSSUBSCRIBE a b\r\nCLUSTER SLOTS\r\nUNSUBSCRIBE\r\nMONITOR\r\n");
        let want = [
            Expect::Hello,
            Expect::Pushes,
            Expect::Topo(Topo::Slots),
            Expect::Pushes,
            Expect::Untrack,
        ];
        assert_eq!(e, want, "RESP3 pub/sub answers with pushes");
    }

    /// Each sequence's replies as redis-server 7.0 sends them (one `Plain` per reply).
    #[test]
    fn client_reply_and_reset_pair_as_redis_answers() {
        let plain = |n: usize| vec![Expect::Plain; n];
        let cases: [(&[u8], Vec<Expect>); 14] = [
            (b"CLIENT REPLY bogus\r\nGET k\r\n", plain(2)), // -ERR syntax error, $-1
            (b"CLIENT REPLY\r\nGET k\r\n", plain(2)),       // -ERR wrong number of arguments
            (b"CLIENT REPLY ON x\r\nCLIENT REPLY OFF x\r\nGET k\r\n", plain(3)),
            (
                b"CLIENT REPLY OFF\r\nCLIENT REPLY SKIP\r\nGET k\r\nCLIENT REPLY ON\r\nGET k\r\n",
                plain(2),
            ),
            (b"CLIENT REPLY OFF\r\nRESET\r\nGET k\r\n", plain(2)), // +RESET, $-1
            (b"CLIENT REPLY SKIP\r\nRESET\r\nGET k\r\n", plain(1)), // RESET skipped
            (b"MULTI\r\nRESET\r\nGET k\r\n", plain(3)),            // +OK +RESET $-1
            (b"CLIENT REPLY OFF\r\nRESET x\r\nGET k\r\nCLIENT REPLY ON\r\n", plain(1)), // no reset
            (b"RESET x\r\nGET k\r\n", plain(2)),                   // -ERR wrong number of arguments, $-1
            (b"CLIENT REPLY SKIP\r\nCLIENT REPLY ON\r\nGET k\r\n", plain(2)), // +OK $-1
            (
                b"CLIENT REPLY SKIP\r\nCLIENT REPLY OFF\r\nGET k\r\nCLIENT REPLY ON\r\n",
                plain(1),
            ),
            (b"CLIENT REPLY SKIP\r\n\r\nGET k\r\n", plain(1)), // the empty line takes the skip
            (b"CLIENT REPLY SKIP\r\nFOO\r\nGET k\r\n", plain(1)),
            (
                b"CLIENT REPLY SKIP\r\nCLIENT REPLY SKIP\r\nGET k\r\nGET k\r\n",
                plain(1),
            ),
        ];
        for (commands, want) in cases {
            assert_eq!(expectations(commands), want, "{}", String::from_utf8_lossy(commands));
        }
        // Inside MULTI, CLIENT REPLY is queued, and EXEC's reply is then cut short by it.
        let e = expectations(b"MULTI\r\nCLIENT REPLY OFF\r\nCLUSTER NODES\r\nEXEC\r\n");
        assert_eq!(e, [Expect::Plain, Expect::Plain, Expect::Plain, Expect::Untrack]);
        let e = expectations(b"MULTI x\r\nCLUSTER NODES\r\nEXEC\r\n");
        assert_eq!(
            e,
            [Expect::Plain, Expect::Topo(Topo::Nodes), Expect::Plain],
            "MULTI x is an error"
        );
        let e = expectations(b"MULTI\r\nCLUSTER NODES\r\nEXEC x\r\nCLUSTER NODES\r\n");
        assert_eq!(
            e[2..],
            [Expect::Plain, Expect::Topo(Topo::Nodes)],
            "EXEC x aborts the transaction"
        );
        let e = expectations(b"MULTI\r\nDISCARD x\r\nCLUSTER NODES\r\nEXEC\r\n");
        assert_eq!(
            e[3],
            Expect::Exec(vec![Some(Topo::Nodes)].into()),
            "DISCARD x leaves it open"
        );
        let e = expectations(b"MULTI\r\nCLIENT REPLY bogus\r\nCLUSTER NODES\r\nEXEC\r\n");
        assert_eq!(e[3], Expect::Exec(vec![None, Some(Topo::Nodes)].into()));
        let e = expectations(b"CLIENT REPLY OFF\r\nMULTI\r\nCLIENT REPLY ON\r\nEXEC\r\nGET k\r\n");
        assert_eq!(
            e,
            [Expect::Untrack],
            "EXEC turns replies on from inside: it untracks, silenced or not"
        );
    }

    fn no_nodes() -> Addresses<'static> {
        Addresses {
            local_ip: "127.0.0.1".into(),
            base_host: "base",
            map: &|_, _, _| None,
        }
    }

    #[test]
    fn once_pairing_stops_nothing_more_is_queued() {
        let pairing = Mutex::new(Pairing::default());
        let addrs = no_nodes();
        let metrics = crate::metrics::Metrics::default().service("t");
        let mut replies = Replies::new(&pairing, &addrs, &metrics);
        let mut batch = expectations(b"MONITOR\r\nCLUSTER NODES\r\n");
        assert!(queue_batch(&pairing, &mut batch));
        replies.frame_starts(b'+'); // MONITOR's +OK: what follows is the server's log
        assert!(!replies.tracking);
        let mut batch = vec![Expect::Topo(Topo::Nodes); 1000];
        assert!(!queue_batch(&pairing, &mut batch), "the command side is told to stop");
        let p = pairing.lock().unwrap();
        assert!(p.stopped && p.queue.runs.is_empty() && batch.is_empty());
    }

    #[test]
    fn a_client_that_never_reads_replies_queues_a_bounded_amount() {
        let pairing = Mutex::new(Pairing::default());
        let mut sent = 0;
        loop {
            let mut batch = vec![
                Expect::Topo(Topo::Slots),
                Expect::Plain,
                Expect::Exec(vec![None; 100].into()),
            ];
            sent += 1;
            if !queue_batch(&pairing, &mut batch) {
                break;
            }
            assert!(pairing.lock().unwrap().queue.bytes <= MAX_QUEUED_BYTES);
            assert!(sent < 1_000_000, "never stopped");
        }
        assert!(pairing.lock().unwrap().queue.runs.is_empty());
        // The reply side stops too, quietly: the command side said why.
        let addrs = no_nodes();
        let metrics = crate::metrics::Metrics::default().service("t");
        let mut replies = Replies::new(&pairing, &addrs, &metrics);
        replies.frame_starts(b'*');
        assert!(!replies.tracking && matches!(replies.hold, Hold::No));
        // A transaction is followed up to MAX_MULTI commands; past that, pairing stops.
        let mut commands = b"MULTI\r\n".to_vec();
        commands.extend(b"CLUSTER NODES\r\n".repeat(MAX_MULTI + 2));
        commands.extend(b"EXEC\r\n");
        let e = expectations(&commands);
        assert_eq!(e.len(), MAX_MULTI + 4);
        assert!(e[..=MAX_MULTI].iter().all(|e| *e == Expect::Plain));
        assert!(
            e[MAX_MULTI + 1..].iter().all(|e| *e == Expect::Untrack),
            "{:?}",
            &e[MAX_MULTI..]
        );
    }

    #[test]
    fn queue_counts_runs() {
        let mut q = Queue::default();
        for _ in 0..3 {
            q.push(Expect::Plain);
        }
        q.push(Expect::Topo(Topo::Nodes));
        assert_eq!(q.runs.len(), 2);
        assert_eq!(q.pop(), Some(Expect::Plain));
        assert_eq!(q.pop(), Some(Expect::Plain));
        assert_eq!(q.pop(), Some(Expect::Plain));
        assert_eq!(q.pop(), Some(Expect::Topo(Topo::Nodes)));
        assert_eq!(q.pop(), None);
    }

    /// The primary moved: the name resolves elsewhere, and `reopen` reaches `new` (once).
    struct Moved {
        new: Mutex<Option<DuplexStream>>,
    }

    impl Reach for Moved {
        type Stream = DuplexStream;
        async fn still_resolves(&self, _: SocketAddr) -> Option<bool> {
            Some(false)
        }
        async fn reopen(&self) -> Result<(DuplexStream, SocketAddr), String> {
            let new = self.new.lock().unwrap().take().ok_or("reopened twice")?;
            Ok((new, "127.0.0.3:6379".parse().unwrap()))
        }
        fn timeout(&self) -> Duration {
            Duration::from_secs(5)
        }
    }

    /// A server that, for each `(command, reply)`, reads until `command` came and answers;
    /// then reads until the relay closes (after `QUIT`: closes itself, as Redis does).
    async fn serve(mut s: DuplexStream, script: &[(&str, &str)]) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        for (command, reply) in script {
            while !got.ends_with(command.as_bytes()) {
                let n = s.read(&mut buf).await.unwrap();
                assert!(
                    n > 0,
                    "closed before {command:?}; got {:?}",
                    String::from_utf8_lossy(&got)
                );
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(reply.as_bytes()).await.unwrap();
        }
        if script.last().is_some_and(|(c, _)| c.starts_with("QUIT")) {
            return got;
        }
        while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        got
    }

    const READONLY: &str = "-READONLY You can't write against a read only replica.\r\n";

    /// Runs a client through the relay: each `(command, reply)` is sent and its reply awaited,
    /// then (`hang_up`: after closing its side) the client reads until the relay closes, and
    /// nothing more may come. `new`: the new primary's server end and script, if it is to be
    /// reached; returns what it received.
    async fn through<R: Reach<Stream = DuplexStream>>(
        reach: &R,
        on_readonly: OnReadonly,
        hang_up: bool,
        client: &[(&str, &str)],
        old: &[(&str, &str)],
        new: Option<(DuplexStream, &[(&str, &str)])>,
    ) -> Vec<u8> {
        let text = "[c]\naccept = 127.0.0.1:7000\nconnect = db.example.com:6379\nprotocol = redis\n";
        let (config, _) = crate::config::Config::parse(text, std::path::Path::new("t.conf")).unwrap();
        let metrics = crate::metrics::Metrics::default().service("c");
        let cluster = Cluster::for_section(&config.services[0], &Default::default(), &metrics).unwrap();
        let (mut cli, cli_end) = duplex(4096);
        let (old_end, old_srv) = duplex(4096);
        let upstream = Upstream {
            stream: old_end,
            addr: NODE.parse().unwrap(),
            reach,
            on_readonly,
            reset_first: false,
            reuse: false,
        };
        let counters = Arc::new(Counters::default());
        let relay = relay(
            (cli_end, None),
            upstream,
            "127.0.0.1".parse().unwrap(),
            cluster,
            None,
            counters,
        );
        // Moved in: the client closes once it has read everything, as a real one does.
        let client = async move {
            for (command, reply) in client {
                cli.write_all(command.as_bytes()).await.unwrap();
                let mut got = vec![0u8; reply.len()];
                cli.read_exact(&mut got).await.unwrap();
                assert_eq!(String::from_utf8_lossy(&got), *reply, "after {command:?}");
            }
            if hang_up {
                cli.shutdown().await.unwrap();
            }
            let mut rest = Vec::new();
            cli.read_to_end(&mut rest).await.unwrap();
            assert_eq!(String::from_utf8_lossy(&rest), "", "nothing more for the client");
        };
        let new_side = async {
            match new {
                Some((srv, script)) => serve(srv, script).await,
                None => Vec::new(),
            }
        };
        let all = async { tokio::join!(client, relay, serve(old_srv, old), new_side) };
        let (_, _, _, reached) = tokio::time::timeout(Duration::from_secs(20), all)
            .await
            .expect("the relay hangs");
        reached
    }

    fn moved_to() -> (Moved, DuplexStream) {
        let (new_end, new_srv) = duplex(4096);
        let moved = Moved {
            new: Mutex::new(Some(new_end)),
        };
        (moved, new_srv)
    }

    #[tokio::test]
    async fn replay_rebuilds_the_state_and_resends_the_refused_command() {
        let auth = ("AUTH u p\r\n", "+OK\r\n");
        let old = [auth, ("SET k v\r\n", READONLY)];
        let rest = [
            ("SET k v\r\n", "+OK\r\n"),
            ("GET k\r\n", "$1\r\nv\r\n"),
            ("QUIT\r\n", "+OK\r\n"),
        ];
        let new = [&[auth][..], &rest].concat();
        let (moved, new_srv) = moved_to();
        let got = through(&moved, OnReadonly::Replay, false, &new, &old, Some((new_srv, &new))).await;
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "AUTH u p\r\nSET k v\r\nGET k\r\nQUIT\r\n"
        );
    }

    #[tokio::test]
    async fn close_delivers_the_error_and_closes_where_replay_is_unsafe() {
        // Inside MULTI, replay mode closes too.
        let script = [("MULTI\r\n", "+OK\r\n"), ("SET k v\r\n", READONLY)];
        let (moved, _new_srv) = moved_to();
        through(&moved, OnReadonly::Replay, false, &script, &script, None).await;
        assert!(moved.new.lock().unwrap().is_some(), "the new primary was reached");
        let script = [("SET k v\r\n", READONLY)];
        let (moved, _new_srv) = moved_to();
        through(&moved, OnReadonly::Close, false, &script, &script, None).await;
        assert!(moved.new.lock().unwrap().is_some(), "the new primary was reached");
    }

    #[tokio::test]
    async fn readonly_from_a_node_the_name_still_points_at_passes() {
        let script = [("SET k v\r\n", READONLY), ("PING\r\n", "+PONG\r\n")];
        through(&Fixed, OnReadonly::Replay, true, &script, &script, None).await;
    }

    #[test]
    fn only_a_lone_quit_is_one() {
        assert!(lone_quit(b"*1\r\n$4\r\nQUIT\r\n"));
        assert!(lone_quit(b"quit\r\n"));
        assert!(!lone_quit(b"*2\r\n$4\r\nQUIT\r\n$1\r\nx\r\n"));
        assert!(!lone_quit(b"QUIT\r\nPING\r\n"));
        assert!(!lone_quit(b"PING\r\nQUIT\r\n"));
        assert!(!lone_quit(b"QUI"));
    }
}

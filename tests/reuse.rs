//! Redis connection reuse (`protocol = redis` with `prewarm`) against real TLS redis-servers.
//! Safety is the point: a client that gets a reused upstream connection must see exactly what
//! a client on a brand-new one sees (`CLIENT INFO`'s user, db, name, resp, flags and the
//! subscription counts; `ACL WHOAMI`), whatever the previous client did (AUTH, SELECT,
//! CLIENT SETNAME, HELLO 3, CLIENT TRACKING), and with `requirepass` set it must get NOAUTH,
//! never the previous client's login. Reuse must also really happen (the same `CLIENT ID`),
//! and not happen after SUBSCRIBE, inside MULTI, with a reply outstanding, or when the server
//! refuses RESET.

mod support;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use support::*;

const PASSWORD: &str = "s3cret-pw";

/// One RESP connection to a retunnel port.
struct Conn {
    r: BufReader<TcpStream>,
}

impl Conn {
    fn open(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        Conn { r: BufReader::new(s) }
    }

    /// Sends one command and reads its whole reply, rendered as text (arrays and maps as
    /// their elements joined by spaces).
    fn cmd(&mut self, args: &[&str]) -> String {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.r.get_mut().write_all(out.as_bytes()).unwrap();
        self.reply()
    }

    fn reply(&mut self) -> String {
        let mut line = String::new();
        let n = self.r.read_line(&mut line).unwrap();
        assert!(n > 0, "the connection closed instead of replying");
        let (kind, rest) = line.trim_end().split_at(1);
        let count = |s: &str| s.parse::<i64>().unwrap();
        match kind {
            "$" | "=" | "!" => {
                let len = count(rest);
                if len < 0 {
                    return "(nil)".into();
                }
                let mut b = vec![0u8; len as usize + 2];
                self.r.read_exact(&mut b).unwrap();
                String::from_utf8_lossy(&b[..len as usize]).into_owned()
            }
            "*" | ">" | "~" | "%" | "|" => {
                let n = count(rest);
                let n = if matches!(kind, "%" | "|") { n * 2 } else { n };
                let items: Vec<String> = (0..n.max(0)).map(|_| self.reply()).collect();
                if kind == "|" {
                    return self.reply(); // an attribute, then the reply it annotates
                }
                items.join(" ")
            }
            "_" => "(nil)".into(),
            _ => line.trim_end().to_string(),
        }
    }

    /// Closes the connection (both directions), as a client that is done does.
    fn close(self) {
        drop(self);
    }
}

/// The `CLIENT INFO` fields that describe a connection's state (not its identity, age or
/// buffers), as `name=value` pairs.
fn state(info: &str) -> Vec<String> {
    const FIELDS: [&str; 13] = [
        "user", "db", "name", "resp", "flags", "sub", "psub", "ssub", "multi", "redir", "lib-name", "lib-ver", "watch",
    ];
    info.split_whitespace()
        .filter(|kv| FIELDS.iter().any(|f| kv.split('=').next() == Some(*f)))
        .map(str::to_string)
        .collect()
}

fn field<'a>(info: &'a str, name: &str) -> &'a str {
    info.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name} in {info}"))
}

/// `redis-cli --tls` straight to the server, as the test's own `admin` user.
fn direct(up: &TlsUpstream, args: &[&str]) -> String {
    let login = ["--no-auth-warning", "--user", "admin", "--pass", "admin-pw"];
    redis_cli_tls(up.redis.port, &up.ca.pem, &[&login[..], args].concat())
}

/// A TLS redis-server with an `admin` user for the test's own look-ups, and retunnel in front
/// of it: `[warm]` with `prewarm = 1` (reuse on), `[fresh]` without (every client on a new
/// connection).
fn setup(server_args: &[&str]) -> (TlsUpstream, Retunnel, u16, u16) {
    let up = TlsUpstream::start(server_args);
    let mut acl = vec!["acl", "setuser", "admin", "on", ">admin-pw", "~*", "&*", "+@all"];
    if server_args.contains(&"--requirepass") {
        acl.splice(0..0, ["--no-auth-warning", "-a", PASSWORD]);
    }
    let admin = redis_cli_tls(up.redis.port, &up.ca.pem, &acl);
    assert_eq!(admin, "OK");
    let (warm, fresh) = (free_port(), free_port());
    let conf = format!(
        "debug = 7\n{}{}",
        up.section("warm", warm, "protocol = redis\nprewarm = 1\n"),
        up.section("fresh", fresh, "protocol = redis\n")
    );
    let rt = Retunnel::start(&conf, 2);
    rt.log.wait_for("warm upstream connection ready ready=1");
    (up, rt, warm, fresh)
}

/// Makes the warm set hold only the connection `id`: every other idle client connection
/// retunnel keeps is killed on the server (retunnel notices a closed one before handing it
/// out, and skips it). Waits until `id` is back in the set.
fn only_warm(up: &TlsUpstream, rt: &Retunnel, kept_before: usize, id: &str) {
    rt.log.wait_for_n("kept for the next client (reuse)", kept_before + 1);
    let list = direct(up, &["client", "list"]);
    for line in list.lines() {
        let other = field(line, "id");
        if other != id && field(line, "user") != "admin" && field(line, "cmd") != "client|list" {
            direct(up, &["client", "kill", "id", other]);
        }
    }
}

/// The previous client logged in as another user, chose a database and a name, switched to
/// RESP3 and turned tracking on: the next client, on the very same upstream connection, is
/// in the state a brand-new connection is in.
#[test]
fn a_reused_connection_carries_nothing_of_the_previous_client() {
    let (up, rt, warm, fresh) = setup(&[]);
    direct(
        &up,
        &["acl", "setuser", "alice", "on", ">alice-pw", "~*", "&*", "+@all"],
    );
    let mut a = Conn::open(warm);
    assert_eq!(a.cmd(&["AUTH", "alice", "alice-pw"]), "+OK");
    assert_eq!(a.cmd(&["SELECT", "3"]), "+OK");
    assert_eq!(a.cmd(&["CLIENT", "SETNAME", "previous"]), "+OK");
    assert!(a.cmd(&["HELLO", "3"]).contains("proto :3"));
    assert_eq!(a.cmd(&["CLIENT", "TRACKING", "on"]), "+OK");
    assert_eq!(a.cmd(&["GET", "k"]), "(nil)");
    let id = a.cmd(&["CLIENT", "ID"]);
    let dirty = a.cmd(&["CLIENT", "INFO"]);
    assert!(field(&dirty, "flags").contains('t'), "{dirty}");
    a.close();
    only_warm(&up, &rt, 0, id.trim_start_matches(':'));

    let mut b = Conn::open(warm);
    assert_eq!(
        b.cmd(&["CLIENT", "ID"]),
        id,
        "the next client must get the reused connection"
    );
    let reused = b.cmd(&["CLIENT", "INFO"]);
    let whoami = b.cmd(&["ACL", "WHOAMI"]);
    let mut f = Conn::open(fresh);
    let new = f.cmd(&["CLIENT", "INFO"]);
    assert_eq!(state(&reused), state(&new), "reused: {reused}\nnew: {new}");
    assert_eq!(whoami, f.cmd(&["ACL", "WHOAMI"]));
    assert_eq!(whoami, "default");
    assert_eq!(b.cmd(&["GET", "k"]), "(nil)", "RESP2 again: a null bulk");
}

/// With `requirepass`, the next client on a reused connection must authenticate: NOAUTH
/// first, the same connection once it sends the password. The previous client had logged in.
#[test]
fn with_requirepass_the_next_client_gets_noauth_never_the_previous_login() {
    let (up, rt, warm, fresh) = setup(&["--requirepass", PASSWORD]);
    let mut a = Conn::open(warm);
    assert_eq!(a.cmd(&["AUTH", PASSWORD]), "+OK");
    assert_eq!(a.cmd(&["SELECT", "2"]), "+OK");
    assert_eq!(a.cmd(&["CLIENT", "SETNAME", "logged-in"]), "+OK");
    let id = a.cmd(&["CLIENT", "ID"]);
    a.close();
    only_warm(&up, &rt, 0, id.trim_start_matches(':'));

    let mut b = Conn::open(warm);
    let refused = b.cmd(&["ACL", "WHOAMI"]);
    assert!(refused.starts_with("-NOAUTH"), "{refused}");
    assert!(b.cmd(&["GET", "k"]).starts_with("-NOAUTH"));
    assert_eq!(b.cmd(&["AUTH", PASSWORD]), "+OK");
    assert_eq!(
        b.cmd(&["CLIENT", "ID"]),
        id,
        "the NOAUTH came from the reused connection"
    );
    let reused = b.cmd(&["CLIENT", "INFO"]);
    let mut f = Conn::open(fresh);
    assert!(f.cmd(&["PING"]).starts_with("-NOAUTH"));
    assert_eq!(f.cmd(&["AUTH", PASSWORD]), "+OK");
    let new = f.cmd(&["CLIENT", "INFO"]);
    assert_eq!(state(&reused), state(&new), "reused: {reused}\nnew: {new}");
}

/// What RESET cannot be trusted to undo, or what leaves replies in flight, is never reused:
/// SUBSCRIBE, an open MULTI, a command whose reply had not come when the client left, and
/// `CLIENT NO-EVICT` (Redis 7.0's RESET keeps it). Each of those connections is closed.
#[test]
fn subscribed_in_multi_or_mid_reply_connections_are_closed_not_reused() {
    let (up, rt, warm, _) = setup(&[]);
    let cases: [&[&[&str]]; 4] = [
        &[&["SUBSCRIBE", "ch"]],
        &[&["MULTI"], &["SET", "k", "v"]],
        &[&["CLIENT", "NO-EVICT", "on"]],
        &[&["HELLO", "3"], &["SSUBSCRIBE", "ch"]],
    ];
    for commands in cases {
        let mut c = Conn::open(warm);
        let id = c.cmd(&["CLIENT", "ID"]);
        for args in commands {
            c.cmd(args);
        }
        c.close();
        let id = id.trim_start_matches(':').to_string();
        wait_until(&format!("{commands:?}: connection {id} closed"), || {
            (!direct(&up, &["client", "list"]).contains(&format!("id={id} "))).then_some(())
        });
    }
    // A reply outstanding: the client sends a blocking command and leaves at once.
    let mut c = Conn::open(warm);
    let id = c.cmd(&["CLIENT", "ID"]);
    c.r.get_mut().write_all(b"BLPOP nothing 0\r\n").unwrap();
    wait_until("the client blocked", || {
        direct(&up, &["client", "list"]).contains("cmd=blpop").then_some(())
    });
    drop(c);
    let id = id.trim_start_matches(':').to_string();
    wait_until(&format!("blocked connection {id} closed"), || {
        (!direct(&up, &["client", "list"]).contains(&format!("id={id} "))).then_some(())
    });
    assert!(
        !rt.log.text().contains("kept for the next client (reuse)"),
        "{}",
        rt.log.text()
    );
}

/// A clean client's connection really is reused, again and again: a run of clients, one
/// after the other, is served on few upstream connections, not one each.
#[test]
fn clean_clients_share_few_upstream_connections() {
    let (_up, rt, warm, _) = setup(&[]);
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..20 {
        let mut c = Conn::open(warm);
        assert_eq!(c.cmd(&["SET", "k", &i.to_string()]), "+OK");
        ids.insert(c.cmd(&["CLIENT", "ID"]));
        c.close();
        rt.log.wait_for_n("kept for the next client (reuse)", i + 1);
    }
    assert!(
        ids.len() <= 3,
        "20 clients used {} upstream connections: {ids:?}",
        ids.len()
    );
}

/// A server without RESET (here renamed away, as Redis before 6.2 lacks it) gets no reuse and
/// one log line, and its clients are still served.
#[test]
fn a_server_refusing_reset_gets_no_reuse_and_one_log_line() {
    let (_up, rt, warm, _) = setup(&["--rename-command", "RESET", ""]);
    for _ in 0..3 {
        let mut c = Conn::open(warm);
        assert_eq!(c.cmd(&["SET", "k", "v"]), "+OK");
        c.close();
    }
    let mut c = Conn::open(warm);
    assert_eq!(c.cmd(&["GET", "k"]), "v");
    let log = rt.log.wait_for("upstream connections are not reused");
    assert_eq!(log.matches("upstream connections are not reused").count(), 1, "{log}");
    // The RESET ahead of a warm connection's first command was refused too: said once.
    assert_eq!(log.matches("keeps the login it was opened with").count(), 1, "{log}");
    assert!(!log.contains("kept for the next client (reuse)"), "{log}");
}

/// A client library that closes with `QUIT` (phpredis does) gets Redis's `+OK` and the close
/// from retunnel, and its upstream connection is reused; a `QUIT` with replies outstanding
/// goes to Redis as before, and that connection is not reused.
#[test]
fn quit_is_answered_here_and_the_upstream_is_kept() {
    let (up, rt, warm, _) = setup(&[]);
    let mut c = Conn::open(warm);
    assert_eq!(c.cmd(&["SELECT", "3"]), "+OK");
    let id = c.cmd(&["CLIENT", "ID"]);
    assert_eq!(c.cmd(&["QUIT"]), "+OK");
    let mut rest = Vec::new();
    c.r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "bytes after QUIT's reply: {rest:?}");
    rt.log.wait_for("the client said QUIT; answered by retunnel");
    only_warm(&up, &rt, 0, id.trim_start_matches(':'));

    // The next client gets that very connection, reset (database 0 again).
    let mut next = Conn::open(warm);
    assert_eq!(
        next.cmd(&["CLIENT", "ID"]),
        id,
        "the upstream connection was not reused"
    );
    assert!(next.cmd(&["CLIENT", "INFO"]).contains(" db=0 "));
    // Inline, as telnet sends it.
    next.r.get_mut().write_all(b"quit\r\n").unwrap();
    let mut rest = String::new();
    next.r.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "+OK\r\n");
    only_warm(&up, &rt, 1, id.trim_start_matches(':'));

    // Pipelined behind a command whose reply has not come: Redis answers both and closes.
    let mut last = Conn::open(warm);
    let last_id = last.cmd(&["CLIENT", "ID"]);
    last.r.get_mut().write_all(b"SET k v\r\nQUIT\r\n").unwrap();
    let mut rest = String::new();
    last.r.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "+OK\r\n+OK\r\n");
    last.close();
    rt.log
        .wait_for("not reused reason=\"QUIT went to Redis, which closes the connection\"");
    let after = Conn::open(warm).cmd(&["CLIENT", "ID"]);
    assert_ne!(
        after, last_id,
        "a connection Redis closed after QUIT was handed out again"
    );
    assert_eq!(rt.log.text().matches("answered by retunnel").count(), 2);
}

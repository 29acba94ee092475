//! Fault drills with real processes (issue 11): what retunnel does when the upstream dies,
//! stalls or restarts, when descriptors run out, when clients are slow, and under a SIGHUP
//! storm. Each waits for events (a log line, a reply, a close); bounds are hang guards only.
//! Drills that already exist elsewhere: a silent upstream bounded by TIMEOUTconnect
//! (`tunnel_e2e::upstream_that_never_handshakes_is_cut_at_timeout_connect`), reload under
//! redis-benchmark (`reload.rs`).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

/// A `protocol = redis` section (`redis = true`) or a plain one to `up`.
fn section(up: &TlsUpstream, name: &str, redis: bool, extra: &str) -> String {
    let mode = if redis { "protocol = redis\n" } else { "" };
    up.section(name, 0, &format!("{mode}{extra}\n"))
}

/// Reads what is left on `s` until the other end closes it (EOF or reset); returns how many
/// bytes came.
fn drain_to_close(s: &mut TcpStream) -> usize {
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return n,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return n,
            Err(e) => panic!("expected the value to be cut by a close, got {e} after {n} bytes"),
        }
    }
}

/// The upstream is SIGKILLed while a 32 MiB value is on its way: the client gets fewer bytes
/// than the value's length then a close (never a clean end that reads as a whole value); in
/// Redis mode the log says the reply was cut; once Redis is back, new clients are served.
#[test]
fn upstream_killed_mid_value() {
    const LEN: usize = 32 << 20;
    let mut up = TlsUpstream::start(&[]);
    let conf = [section(&up, "plain", false, ""), section(&up, "redis", true, "")].concat();
    let rt = Retunnel::start(&conf, 2);
    let set = format!("redis.call('SET', 'big', string.rep('x', {LEN})) return 1");
    assert_eq!(redis_cli(rt.port("plain"), &["EVAL", &set, "0"]).trim(), "1");
    let header = format!("${LEN}\r\n");
    let mut clients: Vec<(&str, TcpStream)> = ["plain", "redis"]
        .into_iter()
        .map(|name| {
            let mut c = connect(rt.port(name));
            c.write_all(b"GET big\r\n").unwrap();
            // The start of the value, then the client stops reading: the rest waits in
            // Redis's output buffer when it is killed.
            let mut start = vec![0u8; 1 << 16];
            c.read_exact(&mut start).unwrap();
            assert!(start.starts_with(header.as_bytes()), "[{name}] not the value");
            (name, c)
        })
        .collect();
    up.redis.proc.child.kill().unwrap();
    up.redis.proc.child.wait().unwrap();
    for (name, c) in &mut clients {
        let got = (1 << 16) + drain_to_close(c);
        assert!(
            got < header.len() + LEN + 2,
            "[{name}] the whole value came ({got} bytes) from a killed server"
        );
    }
    let log = rt.log.wait_for("upstream closed mid-reply");
    let cut = lines_with(
        &log,
        &["connection closed", "service=redis", "upstream closed mid-reply"],
    );
    assert_eq!(cut.len(), 1, "{log}");
    assert!(!cut[0].contains("reason=closed"), "{}", cut[0]);
    // Redis back on its port: new clients of both sections are served.
    up.redis = Redis::start_tls_on(up.redis.port, &up.leaf, &up.ca, &[]);
    for name in ["plain", "redis"] {
        assert_eq!(redis_cli(rt.port(name), &["PING"]).trim(), "PONG", "[{name}]");
    }
}

/// User and system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn ticks_per_second() -> u64 {
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as u64
}

/// Open descriptors of `pid`.
fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// retunnel under a 64-descriptor limit (soft and hard, so it cannot raise it) with 150
/// clients: the log names descriptor exhaustion and its fix (not a DNS failure), once per
/// burst; the accept loop does not spin; once the clients leave, service resumes.
#[test]
fn descriptor_exhaustion_is_named_logged_once_and_recovered_from() {
    const LIMIT: u64 = 64;
    let up = TlsUpstream::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let path = write_conf(dir.path(), &section(&up, "s", false, ""));
    let mut cmd = Command::new(retunnel_bin());
    cmd.arg("-c").arg(&path);
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let rt = Retunnel::spawn_cmd(cmd, dir);
    rt.log.wait_for("listening");
    let port = rt.port("s");
    assert_eq!(raw_exchange(port, b"PING\r\n"), b"+PONG\r\n");
    // More clients than descriptors, each holding its connection open.
    let mut held: Vec<TcpStream> = (0..150).map(|_| connect(port)).collect();
    for c in &mut held {
        let _ = c.write_all(b"PING\r\n");
    }
    let log = rt.log.wait_for("out of file descriptors (EMFILE");
    let start = (Instant::now(), cpu_ticks(rt.pid()));
    // Watch the process for a second of wall time: a spinning accept loop would use about
    // a second of CPU; a loaded machine only makes the ratio smaller.
    let watched = wait_until("a second of watching", || {
        (start.0.elapsed() >= Duration::from_secs(1)).then(|| start.0.elapsed())
    });
    let used = (cpu_ticks(rt.pid()) - start.1) as f64 / ticks_per_second() as f64;
    assert!(
        used < watched.as_secs_f64() / 2.0,
        "{used:.2} s of CPU in {watched:?}: spinning"
    );
    let log_now = rt.log.text();
    assert!(!log_now.contains("Name or service not known"), "{log}");
    assert!(log_now.contains("ulimit -n"), "{log_now}");
    let accept_errors = lines_with(&log_now, &["cannot accept clients"]).len();
    let resumed = lines_with(&log_now, &["accepting again"]).len();
    assert!(accept_errors <= resumed + 1, "more than one line per burst:\n{log_now}");
    // The clients leave: descriptors free up and a new client is served.
    drop(held);
    wait_until("a new client served after the burst", || {
        let mut s = connect(port);
        s.write_all(b"PING\r\n").ok()?;
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).ok()?;
        (&buf == b"+PONG\r\n").then_some(())
    });
    assert!(fd_count(rt.pid()) < LIMIT as usize);
}

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
    rt.log.wait_for("out of file descriptors (EMFILE");
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
    // A lookup that failed for want of a descriptor is named as such. One can still race a
    // descriptor freed meanwhile (the check after the failure then finds one free) and keep
    // the resolver's own words: those must be the exception.
    let named = lines_with(&log_now, &["cannot resolve host: out of file descriptors (EMFILE"]).len();
    let unnamed = lines_with(&log_now, &["Name or service not known"]).len();
    assert!(
        unnamed == 0 || unnamed < named,
        "{named} named, {unnamed} not:\n{log_now}"
    );
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

/// A TLS server (certificate for localhost) that answers each client's first bytes with the
/// start of a bulk reply (`$10\r\nhello`) and then holds the connection without another byte.
fn stalling_upstream(leaf: &Leaf) -> u16 {
    use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod};
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    b.set_private_key_file(&leaf.key, SslFiletype::PEM).unwrap();
    b.set_certificate_chain_file(&leaf.cert).unwrap();
    let acceptor = b.build();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for tcp in listener.incoming().flatten() {
            let Ok(mut tls) = acceptor.accept(tcp) else { continue };
            let _ = tls.read(&mut [0u8; 64]);
            let _ = tls.write_all(b"$10\r\nhello");
            held.push(tls); // open, silent, until the test process ends
        }
    });
    port
}

/// An upstream that stops in the middle of a reply: the client is closed after TIMEOUTidle
/// (plain and Redis mode), with the reason in the log, and not left waiting.
#[test]
fn upstream_stalled_mid_reply_is_bounded_by_timeout_idle() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let port = stalling_upstream(&leaf);
    let conf: String = [("plain", ""), ("redis", "protocol = redis\n")]
        .iter()
        .map(|(name, mode)| {
            format!(
                "[{name}]\naccept = 127.0.0.1:0\nconnect = localhost:{port}\nCAfile = {}\nTIMEOUTidle = 1\n{mode}",
                ca.pem.display()
            )
        })
        .collect();
    let rt = Retunnel::start(&conf, 2);
    for name in ["plain", "redis"] {
        let mut c = connect(rt.port(name));
        c.write_all(b"GET k\r\n").unwrap();
        read_until(&mut c, b"hello");
        // `connect` sets a read timeout of WAIT: a client left hanging fails here.
        expect_closed(&mut c);
    }
    let log = rt.log.wait_for_n("idle for 1s (TIMEOUTidle)", 2);
    for name in ["plain", "redis"] {
        let lines = lines_with(&log, &["connection closed", &format!("service={name}"), "TIMEOUTidle"]);
        assert_eq!(lines.len(), 1, "{log}");
    }
}

/// redis-server killed and started again under 50 clients: every client sees its connection
/// close; while Redis is down a new client is refused (Redis mode: with an error reply); once
/// it listens again, each of the 50 is served on its first new connection.
#[test]
fn redis_restarted_under_50_clients() {
    let mut up = TlsUpstream::start(&[]);
    let rt = Retunnel::start(
        &[section(&up, "plain", false, ""), section(&up, "redis", true, "")].concat(),
        2,
    );
    let ports = [rt.port("plain"), rt.port("redis")];
    let mut clients: Vec<TcpStream> = (0..50).map(|i| connect(ports[i % 2])).collect();
    for c in &mut clients {
        exchange(c, b"PING\r\n", b"+PONG\r\n");
    }
    up.redis.proc.child.kill().unwrap();
    up.redis.proc.child.wait().unwrap();
    for c in &mut clients {
        expect_closed(c);
    }
    assert!(redis_cli(ports[0], &["PING"]).contains("exit"), "Redis is down");
    assert!(
        redis_cli(ports[1], &["PING"]).contains("cannot reach upstream"),
        "Redis is down"
    );
    up.redis = Redis::start_tls_on(up.redis.port, &up.leaf, &up.ca, &[]);
    let served = (0..50)
        .filter(|i| {
            let mut c = connect(ports[i % 2]);
            c.write_all(b"PING\r\n").is_ok() && {
                let mut reply = [0u8; 7];
                c.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
            }
        })
        .count();
    assert_eq!(
        served, 50,
        "clients not served on their first try after Redis came back"
    );
    assert!(!rt.log.text().contains("panicked"));
}

/// Raises this test process's open-file limit to its hard limit (it holds thousands of
/// client sockets).
fn raise_own_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

/// Clients that connect and never send (1,000) and clients that send `PING\r\n` a byte a
/// second (200): meanwhile a normal client keeps being served, and every slow client gets its
/// reply. (The outside test used 2,000 and 500; scaled down for CI time: each client is also
/// a TLS connection that the single-threaded redis-server must accept.)
#[test]
fn slow_clients_do_not_hold_up_a_normal_one() {
    const IDLE: usize = 1000;
    const DRIP: usize = 200;
    raise_own_fd_limit();
    let up = TlsUpstream::start(&["--maxclients", "10000"]);
    let rt = Retunnel::start(&section(&up, "s", false, ""), 1);
    let port = rt.port("s");
    let idle: Vec<TcpStream> = (0..IDLE).map(|_| connect(port)).collect();
    let mut slow: Vec<TcpStream> = (0..DRIP).map(|_| connect(port)).collect();
    // Every slow client has its upstream connection before the drip starts.
    wait_until("every slow client connected upstream", || {
        let info = redis_cli_tls(up.redis.port, &up.ca.pem, &["INFO", "clients"]);
        let n: usize = info
            .lines()
            .find_map(|l| l.strip_prefix("connected_clients:"))
            .and_then(|n| n.trim().parse().ok())?;
        (n > IDLE + DRIP).then_some(())
    });
    let round = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let drip = {
        let round = round.clone();
        std::thread::spawn(move || {
            for (i, byte) in b"PING\r\n".iter().enumerate() {
                for s in &mut slow {
                    s.write_all(&[*byte]).unwrap();
                }
                round.store(i + 1, std::sync::atomic::Ordering::SeqCst);
                // Pacing of the load, not a wait for an event: these clients are slow.
                std::thread::sleep(Duration::from_secs(1));
            }
            slow
        })
    };
    // The normal client works while the slow ones drip, until they have sent their last byte.
    let mut normal = connect(port);
    let (mut pings, mut slowest) = (0, Duration::ZERO);
    while round.load(std::sync::atomic::Ordering::SeqCst) < 6 {
        let t = Instant::now();
        exchange(&mut normal, b"PING\r\n", b"+PONG\r\n");
        let mut fresh = connect(port);
        exchange(&mut fresh, b"PING\r\n", b"+PONG\r\n");
        slowest = slowest.max(t.elapsed());
        pings += 1;
    }
    assert!(pings > 0);
    eprintln!(
        "normal client: {pings} rounds (a PING on its connection + a new connection's PING) while slow clients dripped; slowest round {slowest:?}"
    );
    for mut s in drip.join().unwrap() {
        let mut reply = [0u8; 7];
        s.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"+PONG\r\n");
    }
    drop(idle);
}

/// 50 SIGHUPs, each changing the file (a section added, then removed), under redis-benchmark:
/// no failed request, and once the load ends retunnel holds as many descriptors as before
/// (no leaked listener or connection).
#[test]
fn sighup_storm_under_redis_benchmark_fails_no_request_and_leaks_nothing() {
    let up = TlsUpstream::start(&[]);
    let (bench_port, extra) = (free_port(), free_port());
    let base = up.section("bench", bench_port, "");
    let with_extra = format!("{base}\n{}", up.section("extra", extra, ""));
    let rt = Retunnel::start(&base, 1);
    let path = rt.config.clone().unwrap();
    let before = fd_count(rt.pid());
    assert_eq!(redis_cli(bench_port, &["PING"]), "PONG");
    let requests = 40_000u64;
    let mut bench = start_benchmark(bench_port, requests);
    for i in 1..=50 {
        // Written whole, then renamed: a reload never reads half a file.
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, if i % 2 == 1 { &with_extra } else { &base }).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        rt.signal(libc::SIGHUP);
        rt.log.wait_for_n("reloaded", i);
    }
    let log = rt.log.text();
    assert_eq!(lines_with(&log, &["reloaded", "failed=0"]).len(), 50, "{log}");
    assert!(
        bench.child.try_wait().unwrap().is_none(),
        "redis-benchmark ended before the storm did; the test proves nothing"
    );
    finish_benchmark(&mut bench, requests);
    assert_refused(extra);
    // The benchmark's connections close as it exits: back to the descriptors of before.
    let after = wait_until("descriptors back to where they were", || {
        let n = fd_count(rt.pid());
        (n <= before).then_some(n)
    });
    assert_eq!(after, before, "descriptors leaked");
}

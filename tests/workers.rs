//! `threads`: connections run on worker threads, each with its own event loop. With a real
//! TLS redis-server: the workers are started, clients held open at once are spread over them
//! and each is served, also on a warm connection that was opened on another thread.

mod support;
use std::collections::BTreeSet;

use support::*;

/// The process's threads named as workers (the control thread is worker 0 and keeps its name).
fn worker_threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("retunnel-worker"))
        .count()
}

#[test]
fn clients_are_spread_over_the_worker_threads_and_each_is_served() {
    let up = TlsUpstream::start(&[]);
    let port = free_port();
    let conf = format!("debug = 7\nthreads = 3\n{}", up.section("w", port, "prewarm = 3\n"));
    let rt = Retunnel::start(&conf, 1);
    assert_eq!(
        worker_threads(rt.pid()),
        2,
        "threads = 3: the control thread and two more"
    );
    rt.log.wait_for("warm upstream connection ready ready=3");

    // Held open together, the fewest-open rule gives each thread one of the first three.
    let mut clients: Vec<_> = (0..3).map(|_| connect(port)).collect();
    for round in 0..3 {
        for (i, c) in clients.iter_mut().enumerate() {
            let value = format!("v{round}-{i}");
            let set = format!("*3\r\n$3\r\nSET\r\n$2\r\nk{i}\r\n${}\r\n{value}\r\n", value.len());
            exchange(c, set.as_bytes(), b"+OK\r\n");
            exchange(
                c,
                format!("*2\r\n$3\r\nGET\r\n$2\r\nk{i}\r\n").as_bytes(),
                value.as_bytes(),
            );
        }
    }
    drop(clients);
    let log = rt.log.wait_for_n("connection closed", 3);
    let workers: BTreeSet<&str> = lines_with(&log, &["connection closed"])
        .iter()
        .filter_map(|l| l.split("worker=").nth(1)?.split(['}', ' ']).next())
        .collect();
    assert_eq!(workers, BTreeSet::from(["0", "1", "2"]), "{log}");
    // Warm connections are opened on the control thread; clients on the others got them too.
    for w in ["1", "2"] {
        assert!(
            !lines_with(&log, &[&format!("worker={w}"), "using a warm upstream connection"]).is_empty(),
            "worker {w} used no warm connection:\n{log}"
        );
    }
}

#[test]
fn one_thread_serves_everything_on_the_control_thread() {
    let up = TlsUpstream::start(&[]);
    let port = free_port();
    let rt = Retunnel::start(&format!("threads = 1\n{}", up.section("w", port, "")), 1);
    assert_eq!(worker_threads(rt.pid()), 0);
    let mut a = connect(port);
    let mut b = connect(port);
    exchange(&mut a, b"PING\r\n", b"+PONG\r\n");
    exchange(&mut b, b"PING\r\n", b"+PONG\r\n");
    assert_eq!(redis_cli(port, &["ping"]), "PONG");
}

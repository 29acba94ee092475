//! Process concerns through the retunnel binary: dropping privileges, detaching, the log file
//! (`log = overwrite|append`, SIGUSR1 reopen), syslog, and `include`.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;

use support::*;

/// The uid or gid that `nobody`/`nogroup` have here.
const NOBODY: u32 = 65534;

fn ids_are(status: &str, key: &str, want: u32) -> bool {
    retunnel::privileges::check_ids(status, key, want).is_ok()
}

#[test]
#[ignore = "needs root"]
fn drops_privileges_to_nobody_after_binding_and_writing_the_pid_file() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let port = free_port();
    let pid_file = pki.path("retunnel.pid");
    let conf = format!(
        "setuid = nobody\nsetgid = nogroup\npid = {}\n{}",
        pid_file.display(),
        section("redis", port, redis.port, &ca)
    );
    let rt = Retunnel::start(&conf, 1);
    rt.log.wait_for("dropped privileges");
    let status = proc_status(rt.pid());
    assert!(ids_are(&status, "Uid:", NOBODY), "{status}");
    assert!(ids_are(&status, "Gid:", NOBODY), "{status}");
    assert!(status.contains("Groups:\t65534"), "{status}");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        rt.pid().to_string(),
        "the pid file was written (as root) before the drop"
    );
    assert_eq!(redis_cli(port, &["set", "k", "v"]), "OK");
    assert_eq!(redis_cli(port, &["get", "k"]), "v");
}

#[test]
#[ignore = "needs root"]
fn setuid_alone_also_leaves_the_root_group() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let echo = TlsEcho::start(&leaf);
    let port = free_port();
    let conf = format!("setuid = {NOBODY}\n{}", section("echo", port, echo.addr.port(), &ca));
    let rt = Retunnel::start(&conf, 1);
    rt.log.wait_for("dropped privileges");
    let status = proc_status(rt.pid());
    assert!(
        ids_are(&status, "Uid:", NOBODY) && ids_are(&status, "Gid:", NOBODY),
        "{status}"
    );
    assert_eq!(raw_exchange(port, b"hello"), b"hello");
}

#[test]
#[ignore = "needs root"]
fn a_drop_that_fails_stops_retunnel_instead_of_serving() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = free_port();
    let conf = format!("setuid = root\n[a]\naccept = {port}\nconnect = localhost:1\n");
    let path = write_conf(dir.path(), &conf);
    // Started as nobody, it cannot become root: it must exit, not serve as nobody regardless.
    let out = Command::new(retunnel_bin())
        .arg("-c")
        .arg(&path)
        .uid(NOBODY)
        .gid(NOBODY)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot switch to user root (uid 0)") && stderr.contains("only root can switch users"),
        "{stderr}"
    );
}

#[test]
fn unknown_user_or_group_is_refused_before_anything_listens() {
    let port = free_port();
    let conf =
        format!("setuid = no-such-user-xyz\nsetgid = no-such-group-xyz\n[a]\naccept = {port}\nconnect = localhost:1\n");
    let (code, log) = run_to_exit(&conf, &[]);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("tunnel.conf:1: setuid: there is no user `no-such-user-xyz`"),
        "{log}"
    );
    assert!(
        log.contains("tunnel.conf:2: setgid: there is no group `no-such-group-xyz`"),
        "{log}"
    );
}

#[test]
#[ignore = "needs root"]
fn after_the_drop_a_reload_cannot_bind_a_low_port_and_says_so_while_the_rest_runs() {
    // Two free privileged ports, found now (root can bind them; nobody cannot).
    let mut free_low = (600..1000).filter(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok());
    let (first_low, low) = (free_low.next().unwrap(), free_low.next().unwrap());
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let port = free_port();
    // A low port at start works: it is bound before the drop.
    let conf = format!(
        "setuid = nobody\n{}{}",
        section("redis", port, redis.port, &ca),
        section("first-low", first_low, redis.port, &ca)
    );
    let rt = Retunnel::start(&conf, 2);
    rt.log.wait_for("dropped privileges");
    rt.write_config(&format!("{conf}{}", section("low", low, redis.port, &ca)));
    rt.signal(libc::SIGHUP);
    let log = rt.log.wait_for("reloaded");
    assert!(
        log.contains(&format!("[low] cannot listen on 127.0.0.1:{low}"))
            && log.contains("ports below 1024 need root")
            && log.contains("this section is not running"),
        "{log}"
    );
    assert!(log.contains("failed=1"), "{log}");
    assert_eq!(redis_cli(port, &["ping"]), "PONG");
    assert_eq!(redis_cli(first_low, &["ping"]), "PONG");
}

/// Runs `retunnel -d -c FILE` in `dir` to the parent's exit: (exit code, stderr). The run ends
/// once the parent exited and the daemon let go of the pipes (it does so when ready).
fn run_detached(dir: &Path, conf: &str, env: &[(&str, &Path)]) -> (Option<i32>, String) {
    let path = write_conf(dir, conf);
    let mut cmd = Command::new(retunnel_bin());
    cmd.arg("-d").arg("-c").arg(&path).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let done = run_to_end(cmd);
    (done.code, done.stderr)
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

#[test]
fn daemon_mode_detaches_once_listening_writes_the_pid_and_logs_to_output() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let port = free_port();
    let (pid_file, log_file) = (pki.path("d.pid"), pki.path("d.log"));
    let conf = format!(
        "pid = {}\noutput = {}\n{}",
        pid_file.display(),
        log_file.display(),
        section("redis", port, redis.port, &ca)
    );
    let (code, stderr) = run_detached(pki.dir.path(), &conf, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let daemon = Pid(read_pid(&pid_file));
    // Listening before the parent returned: no wait needed.
    assert_eq!(redis_cli(port, &["ping"]), "PONG");
    wait_file_for(&log_file, "listening");
    let sid = std::fs::read_to_string(format!("/proc/{}/stat", daemon.0)).unwrap();
    let fields: Vec<&str> = sid.rsplit_once(')').unwrap().1.split_whitespace().collect();
    assert_eq!(
        fields[3],
        daemon.0.to_string(),
        "the daemon leads its own session: {sid}"
    );
    unsafe { libc::kill(daemon.0, libc::SIGTERM) };
    wait_gone(daemon.0);
    wait_file_for(&log_file, "stopped");
    assert!(!pid_file.exists(), "the pid file is removed at exit");
}

#[test]
fn daemon_mode_that_cannot_start_fails_in_the_foreground_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let log_file = dir.path().join("d.log");
    let conf = format!(
        "output = {}\n[a]\naccept = {port}\nconnect = localhost:1\n",
        log_file.display()
    );
    let (code, stderr) = run_detached(dir.path(), &conf, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}

/// A syslog daemon's socket in a temporary directory.
struct SyslogSink {
    socket: UnixDatagram,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SyslogSink {
    fn bind() -> SyslogSink {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(WAIT)).unwrap();
        SyslogSink {
            socket,
            path,
            _dir: dir,
        }
    }

    /// Receives datagrams until one contains `needle`; returns it.
    fn wait_for(&self, needle: &str) -> String {
        let mut buf = vec![0u8; 8192];
        let mut seen = Vec::new();
        loop {
            let n = self
                .socket
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no syslog message with {needle:?} ({e}); got {seen:#?}"));
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.contains(needle) {
                return msg;
            }
            seen.push(msg);
        }
    }
}

#[test]
fn syslog_yes_sends_each_line_with_facility_and_severity() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let echo = TlsEcho::start(&leaf);
    let sink = SyslogSink::bind();
    let port = free_port();
    let conf = format!("syslog = yes\n{}", section("echo", port, echo.addr.port(), &ca));
    let rt = Retunnel::spawn_env(&conf, &[], &[("RETUNNEL_SYSLOG_SOCKET", &sink.path)]);
    rt.log.wait_for("listening"); // the foreground keeps standard error too
    let msg = sink.wait_for("listening");
    assert!(
        msg.starts_with(&format!("<30>retunnel[{}]: ", rt.pid())),
        "daemon.info: {msg}"
    );
    assert!(msg.contains("service=echo"), "{msg}");
    assert!(!msg.ends_with('\n'), "{msg:?}");
    assert_eq!(raw_exchange(port, b"secret-payload"), b"secret-payload");
    let msg = sink.wait_for("connection closed");
    assert!(!msg.contains("secret-payload"), "{msg}");
}

#[test]
fn a_daemon_without_output_logs_to_syslog_by_default() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let echo = TlsEcho::start(&leaf);
    let sink = SyslogSink::bind();
    let port = free_port();
    let pid_file = pki.path("d.pid");
    let conf = format!(
        "pid = {}\n{}",
        pid_file.display(),
        section("echo", port, echo.addr.port(), &ca)
    );
    let (code, stderr) = run_detached(pki.dir.path(), &conf, &[("RETUNNEL_SYSLOG_SOCKET", &sink.path)]);
    assert_eq!(code, Some(0), "{stderr}");
    let daemon = Pid(read_pid(&pid_file));
    sink.wait_for("listening");
    unsafe { libc::kill(daemon.0, libc::SIGTERM) };
    sink.wait_for("stopped");
    wait_gone(daemon.0);
}

#[test]
fn syslog_that_nobody_listens_on_is_an_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-syslog-here");
    let port = free_port();
    let conf = format!("syslog = yes\n[a]\naccept = {port}\nconnect = localhost:1\n");
    let mut rt = Retunnel::spawn_env(&conf, &[], &[("RETUNNEL_SYSLOG_SOCKET", &missing)]);
    assert_eq!(rt.wait_exit(), Some(2));
    let log = rt.log.wait_closed();
    assert!(
        log.contains("cannot reach syslog at") && log.contains("output = FILE"),
        "{log}"
    );
}

#[test]
fn sigusr1_reopens_the_log_file_after_logrotate_moved_it() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let echo = TlsEcho::start(&leaf);
    let port = free_port();
    let log_file = pki.path("retunnel.log");
    let rotated = pki.path("retunnel.log.1");
    let conf = format!(
        "output = {}\n{}",
        log_file.display(),
        section("echo", port, echo.addr.port(), &ca)
    );
    let rt = Retunnel::spawn(&conf, &[]);
    wait_file_for(&log_file, "listening");
    std::fs::rename(&log_file, &rotated).unwrap();
    rt.signal(libc::SIGUSR1);
    wait_file_for(&log_file, "log file reopened");
    assert_eq!(raw_exchange(port, b"ping"), b"ping");
    wait_file_for(&log_file, "connection closed");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("listening") && !old.contains("connection closed"), "{old}");
    assert!(
        rt.log.text().is_empty(),
        "nothing on stderr with `output`: {}",
        rt.log.text()
    );
}

#[test]
fn log_overwrite_starts_the_file_empty_and_append_keeps_it() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let echo = TlsEcho::start(&leaf);
    for (mode, keeps) in [("overwrite", false), ("append", true)] {
        let log_file = pki.path(&format!("{mode}.log"));
        std::fs::write(&log_file, "OLD LINE\n").unwrap();
        let port = free_port();
        let conf = format!(
            "output = {}\nlog = {mode}\n{}",
            log_file.display(),
            section("echo", port, echo.addr.port(), &ca)
        );
        let _rt = Retunnel::spawn(&conf, &[]);
        let text = wait_file_for(&log_file, "listening");
        assert_eq!(text.contains("OLD LINE"), keeps, "log = {mode}:\n{text}");
    }
}

#[test]
fn include_reads_every_conf_file_of_the_directory_in_name_order() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let echo = TlsEcho::start(&leaf);
    let dir = tempfile::tempdir().unwrap();
    let confd = dir.path().join("conf.d");
    std::fs::create_dir(&confd).unwrap();
    let (zeta, alpha) = (free_port(), free_port());
    std::fs::write(confd.join("10-z.conf"), section("zeta", zeta, echo.addr.port(), &ca)).unwrap();
    std::fs::write(confd.join("20-a.conf"), section("alpha", alpha, echo.addr.port(), &ca)).unwrap();
    std::fs::write(confd.join("README"), "not a config = at all [").unwrap();
    let main = dir.path().join("main.conf");
    std::fs::write(&main, "; sections live in conf.d\ninclude = conf.d\n").unwrap();
    let mut cmd = Command::new(retunnel_bin());
    cmd.arg("-c").arg(&main);
    let rt = Retunnel::spawn_cmd(cmd, dir);
    let log = rt.log.wait_for_n("listening", 2);
    let (z, a) = (log.find("service=zeta").unwrap(), log.find("service=alpha").unwrap());
    assert!(z < a, "10-z.conf is read before 20-a.conf:\n{log}");
    assert_eq!(raw_exchange(zeta, b"z"), b"z");
    assert_eq!(raw_exchange(alpha, b"a"), b"a");
}

#[test]
fn errors_in_included_files_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let confd = dir.path().join("conf.d");
    std::fs::create_dir(&confd).unwrap();
    let port = free_port();
    std::fs::write(
        confd.join("redis.conf"),
        format!("[redis]\naccept = {port}\nconect = localhost:6379\n"),
    )
    .unwrap();
    // run_to_exit writes its tunnel.conf in a directory of its own, which has neither.
    let conf = "include = conf.d\ninclude = missing.d\n";
    let (code, log) = run_to_exit(conf, &[]);
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("tunnel.conf:1: include: cannot read directory"), "{log}");
    assert!(log.contains("tunnel.conf:2: include: cannot read directory"), "{log}");

    let main = dir.path().join("main.conf");
    std::fs::write(&main, "include = conf.d\n").unwrap();
    let out = Command::new(retunnel_bin()).arg("-c").arg(&main).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let file = confd.join("redis.conf");
    assert!(
        stderr.contains(&format!(
            "{}:3: [redis] conect: unknown option; did you mean `connect`?",
            file.display()
        )),
        "{stderr}"
    );
}

/// Tester finding 10: two instances given the same `pid` path. The second used to overwrite
/// the first's pid file, and the first, exiting, deleted the second's `.pid` and
/// `.pid.metrics`. Now a pid file naming a running retunnel stops the start (before anything
/// binds), one naming a process that is gone or not retunnel is stale and replaced, and an
/// instance removes its files at exit only while they still hold what it wrote.
#[test]
fn a_pid_file_is_not_taken_from_a_running_retunnel_nor_removed_once_not_ours() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("shared.pid");
    let metrics_file = dir.path().join("shared.pid.metrics");
    let conf = |port: u16| {
        format!(
            "pid = {}\nmetrics = 127.0.0.1:0\n[a]\naccept = {port}\nconnect = localhost:1\n",
            pid_file.display()
        )
    };
    // The pid file is written once everything listens: wait for it to hold the pid.
    let holds = |pid: i32| {
        let text = std::fs::read_to_string(&pid_file).unwrap_or_default();
        (text.trim().parse() == Ok(pid)).then_some(())
    };
    let mut first = Retunnel::start(&conf(free_port()), 1);
    wait_until("the pid file", || holds(first.pid()));
    let second_port = free_port();
    let (code, log) = run_to_exit(&conf(second_port), &[]);
    assert_eq!(code, Some(1), "{log}");
    let want = format!(
        "pid file {} names process {}, a retunnel that is still running; stop it first (`kill {}`)",
        pid_file.display(),
        first.pid(),
        first.pid()
    );
    assert!(log.contains(&want), "{log}");
    assert!(!log.contains("listening"), "nothing was bound: {log}");
    assert_refused(second_port);
    assert_eq!(read_pid(&pid_file), first.pid(), "left as it was");
    // Files another instance wrote since are not removed at exit.
    std::fs::write(&pid_file, "4194304\n").unwrap();
    std::fs::write(&metrics_file, "127.0.0.1:1\n").unwrap();
    first.signal(libc::SIGTERM);
    first.wait_exit();
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), "4194304\n");
    assert_eq!(std::fs::read_to_string(&metrics_file).unwrap(), "127.0.0.1:1\n");
    // A stale file (a pid no process has, or a process that is not retunnel: this test)
    // is replaced, and removed at exit.
    for stale in ["4194304".to_string(), std::process::id().to_string()] {
        std::fs::write(&pid_file, format!("{stale}\n")).unwrap();
        let mut rt = Retunnel::start(&conf(free_port()), 1);
        wait_until("the pid file", || holds(rt.pid()));
        rt.signal(libc::SIGTERM);
        rt.wait_exit();
        assert!(!pid_file.exists() && !metrics_file.exists(), "removed at exit");
    }
}

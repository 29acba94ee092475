//! The command line itself: one-off tunnels without a file, the bare config argument, clap's
//! refusals, `--version`, `--help`, completions and the man page.

mod support;
use std::process::Command;

use support::*;

/// Starts `retunnel ARGS` and waits until it listens.
fn start(args: &[&str]) -> Retunnel {
    let mut cmd = Command::new(retunnel_bin());
    cmd.args(args);
    let r = Retunnel::spawn_cmd(cmd, tempfile::tempdir().unwrap());
    r.log.wait_for("listening");
    r
}

/// A TLS redis-server with the standard test PKI, and a one-off tunnel to
/// `CONNECT_HOST:its port` with `flags` (`{ca}` stands for the CA file). Returns the tunnel's
/// port; the Pki and the servers live as long as the returned guards.
fn one_off(connect_host: &str, flags: &[&str]) -> (u16, Retunnel, Redis, Pki) {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let port = free_port();
    let accept = format!("127.0.0.1:{port}");
    let connect = format!("{connect_host}:{}", redis.port);
    let ca_path = ca.pem.to_str().unwrap();
    let mut args = vec!["--accept", &accept, "--connect", &connect];
    args.extend(flags.iter().map(|f| if *f == "{ca}" { ca_path } else { f }));
    (port, start(&args), redis, pki)
}

#[test]
fn one_off_tunnel_carries_redis() {
    let (port, rt, _redis, _pki) = one_off("localhost", &["--cafile", "{ca}"]);
    assert_eq!(redis_cli(port, &["set", "one-off", "works"]), "OK");
    assert_eq!(redis_cli(port, &["get", "one-off"]), "works");
    assert!(rt.log.text().contains("verify chain + host"), "{}", rt.log.text());
}

#[test]
fn one_off_checkhost_is_verified() {
    let (port, rt, _redis, _pki) = one_off("127.0.0.1", &["--cafile", "{ca}", "--checkhost", "other.example"]);
    assert_ne!(redis_cli(port, &["ping"]), "PONG");
    rt.log.wait_for("other.example rejected");
}

#[test]
fn one_off_insecure_skips_verification_and_says_so() {
    let (port, rt, _redis, _pki) = one_off("localhost", &["--insecure"]);
    assert_eq!(redis_cli(port, &["ping"]), "PONG");
    assert!(rt.log.text().contains("NOT verified"), "{}", rt.log.text());
}

#[test]
fn check_takes_one_off_flags() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let accept = format!("127.0.0.1:{}", free_port());
    let connect = format!("localhost:{}", redis.port);
    let out = run_retunnel(&[
        "check",
        "--accept",
        &accept,
        "--connect",
        &connect,
        "--cafile",
        ca.pem.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.starts_with("SECTION"), "{}", out.stdout);
    assert!(out.stdout.contains("PONG"), "{}", out.stdout);
}

#[test]
fn bare_config_argument_still_runs() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let conf = format!(
        "[redis]\naccept = 127.0.0.1:{port}\nconnect = localhost:{}\nCAfile = {}\n",
        redis.port,
        ca.pem.display()
    );
    let path = write_conf(dir.path(), &conf);
    let _rt = start(&[path.to_str().unwrap()]);
    assert_eq!(redis_cli(port, &["ping"]), "PONG");
}

#[test]
fn clap_refuses_config_with_connect_and_half_a_one_off() {
    let out = run_retunnel(&["-c", "x.conf", "--accept", "127.0.0.1:6379", "--connect", "h:1"]);
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("cannot be used with"), "{}", out.stderr);
    let out = run_retunnel(&[
        "check",
        "-c",
        "x.conf",
        "--accept",
        "127.0.0.1:6379",
        "--connect",
        "h:1",
    ]);
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("cannot be used with"), "{}", out.stderr);
    let out = run_retunnel(&["--connect", "h:1"]);
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("--accept"), "{}", out.stderr);
    let out = run_retunnel(&["--accept", "nowhere:1", "--connect", "bad host:1"]);
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains("--accept `nowhere` is not an IP address"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--connect"), "{}", out.stderr);
}

#[test]
fn version_names_the_tls_library() {
    let out = run_retunnel(&["--version"]);
    assert_eq!(out.code, Some(0));
    assert!(
        out.stdout.starts_with(&format!(
            "retunnel {} (rustls 0.23, aws-lc-rs provider)",
            env!("CARGO_PKG_VERSION")
        )),
        "{}",
        out.stdout
    );
}

#[test]
fn help_shows_real_examples() {
    let out = run_retunnel(&["--help"]);
    assert_eq!(out.code, Some(0));
    for example in [
        "retunnel -c redis-cli.conf",
        "retunnel check -c",
        "retunnel --accept 127.0.0.1:6379 --connect",
    ] {
        assert!(out.stdout.contains(example), "{example} missing:\n{}", out.stdout);
    }
}

#[test]
fn completions_and_man_page_come_from_the_cli() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run_retunnel(&["completions", shell]);
        assert_eq!(out.code, Some(0), "{shell}: {}", out.stderr);
        assert!(out.stdout.len() > 500, "{shell}: {}", out.stdout);
        assert!(
            out.stdout.contains("check") && out.stdout.contains("connect-to"),
            "{shell}"
        );
    }
    let man = run_retunnel(&["man"]);
    assert_eq!(man.code, Some(0), "{}", man.stderr);
    assert!(
        man.stdout.starts_with(".ie"),
        "roff expected: {}",
        &man.stdout[..80.min(man.stdout.len())]
    );
    assert!(man.stdout.contains(".TH retunnel"), "{}", man.stdout);
    assert!(
        man.stdout.contains("retunnel\\-check(1)") && man.stdout.contains("rustls"),
        "{}",
        man.stdout
    );
    let page = run_retunnel(&["man", "check"]);
    assert_eq!(page.code, Some(0), "{}", page.stderr);
    assert!(
        page.stdout.contains(".TH retunnel-check") && page.stdout.contains("offline"),
        "{}",
        page.stdout
    );
    let bad = run_retunnel(&["man", "nope"]);
    assert_eq!(bad.code, Some(1));
    assert!(
        bad.stderr.contains("no subcommand `nope`; one of: check"),
        "{}",
        bad.stderr
    );
}

/// Runs `retunnel ARGS` with standard output on a pipe whose reader is gone already, as
/// `| head -1` leaves it once it has its line (and with `both`, standard error too, as
/// `2>&1 | head`); returns the exit code and what went to standard error otherwise.
fn into_closed_pipe(args: &[&str], both: bool) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = Command::new(retunnel_bin());
    cmd.args(args).env_remove("RUST_LOG").stdin(std::process::Stdio::null());
    cmd.stdout(writer.try_clone().unwrap());
    match both {
        true => cmd.stderr(writer),
        false => cmd.stderr(std::process::Stdio::piped()),
    };
    let child = cmd.spawn().unwrap();
    drop(cmd); // our copies of the pipe's writer: only the child's are left
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let out = rx.recv_timeout(WAIT).expect("retunnel finishes").unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Tester finding 9: `retunnel completions bash | head -1` and `retunnel check --offline -c
/// many.conf 2>&1 | head -2` panicked (exit 101) when the pipe closed. A reader that went
/// away now ends the output quietly, and the exit code says what the command found.
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    for args in [&["completions", "bash"][..], &["man"], &["--help"], &["--version"]] {
        let (code, stderr) = into_closed_pipe(args, false);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
    let dir = tempfile::tempdir().unwrap();
    let many: String = (1..=50)
        .map(|i| {
            format!(
                "[s{i}]\naccept = {}\nconnect = db.example.com:6379\ndebug = 7\n",
                20000 + i
            )
        })
        .collect();
    let path = write_conf(dir.path(), &many);
    let path = path.to_str().unwrap();
    assert_eq!(into_closed_pipe(&["check", "--offline", "-c", path], true).0, Some(0));
    let bad = write_conf(dir.path(), &format!("{many}[broken]\naccept = 1\n"));
    let bad = bad.to_str().unwrap();
    assert_eq!(into_closed_pipe(&["check", "--offline", "-c", bad], true).0, Some(2));
}

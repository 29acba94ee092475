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

//! `retunnel check` end to end: the binary against local TLS redis-servers set up to fail in
//! each way a user meets (wrong host, unknown CA, expired certificate, closed port,
//! unresolvable name, password set, replica), plus the happy path, `--json` and `--offline`.

mod support;
use serde_json::Value;
use support::*;

/// A one-section config for `connect`, with `CAfile` when given.
fn section(name: &str, connect: &str, ca: Option<&Ca>) -> String {
    let ca = ca
        .map(|c| format!("CAfile = {}\n", c.pem.display()))
        .unwrap_or_default();
    format!(
        "[{name}]\nclient = yes\naccept = 127.0.0.1:{}\nconnect = {connect}\n{ca}\n",
        free_port()
    )
}

/// Runs `retunnel check --json -c FILE` and parses the report.
fn check_json(conf: &str) -> (Option<i32>, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_conf(dir.path(), conf);
    let out = run_retunnel(&["check".as_ref(), "--json".as_ref(), "-c".as_ref(), path.as_os_str()]);
    let json: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\nstderr:\n{}", out.stdout, out.stderr));
    (out.code, json, out.stderr)
}

/// Runs `retunnel check -c FILE` (the table).
fn check_text(conf: &str) -> Finished {
    let dir = tempfile::tempdir().unwrap();
    let path = write_conf(dir.path(), conf);
    run_retunnel(&["check".as_ref(), "-c".as_ref(), path.as_os_str()])
}

/// The first target of the first section.
fn first_target(report: &Value) -> &Value {
    &report["sections"][0]["targets"][0]
}

fn mark<'a>(t: &'a Value, step: &str) -> &'a str {
    t[step]["mark"]
        .as_str()
        .unwrap_or_else(|| panic!("no {step} mark in {t:#}"))
}

fn message<'a>(t: &'a Value, step: &str) -> &'a str {
    t[step]["message"].as_str().unwrap()
}

#[test]
fn happy_path_json() {
    let pki = Pki::new();
    let ca = pki.ca("test-ca");
    let leaf = pki.leaf(&ca, "server", &["localhost", "127.0.0.1"], -1, 90);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let (code, r, stderr) = check_json(&section("cache", &format!("localhost:{}", redis.port), Some(&ca)));
    assert_eq!(code, Some(0), "{r:#}\n{stderr}");
    assert_eq!(r["ok"], true);
    let s = &r["sections"][0];
    assert_eq!(s["name"], "cache");
    assert_eq!(s["bind"]["mark"], "ok");
    let t = first_target(&r);
    for step in ["dns", "tls", "certificate", "redis"] {
        assert_eq!(mark(t, step), "ok", "{step}: {t:#}");
    }
    assert!(
        t["addresses"].as_array().unwrap().iter().any(|a| a == "127.0.0.1"),
        "{t:#}"
    );
    // Where localhost also resolves to ::1, that address is refused (redis listens on
    // 127.0.0.1 only): a warning, not a failure, as the daemon falls through to the next.
    let connects = t["connects"].as_array().unwrap();
    let v4 = connects
        .iter()
        .find(|c| c["address"].as_str().unwrap().starts_with("127.0.0.1:"));
    let v4 = v4.unwrap_or_else(|| panic!("{t:#}"));
    assert!(v4["error"].is_null() && v4["ms"].as_f64().unwrap() >= 0.0, "{t:#}");
    let tcp_ok = connects.iter().all(|c| c["error"].is_null());
    assert_eq!(mark(t, "tcp"), if tcp_ok { "ok" } else { "warn" }, "{t:#}");
    assert!(t["session"]["version"].as_str().unwrap().starts_with("TLSv1."), "{t:#}");
    assert!(t["session"]["cipher"].as_str().is_some(), "{t:#}");
    let cert = &t["cert"];
    assert_eq!(cert["subject"], "CN=localhost");
    assert_eq!(cert["issuer"], "CN=test-ca");
    assert_eq!(cert["sans"], serde_json::json!(["DNS:localhost", "IP:127.0.0.1"]));
    assert!((88..=90).contains(&cert["days_left"].as_i64().unwrap()), "{cert:#}");
    assert_eq!(t["server"]["reply"], "PONG");
    assert_eq!(t["server"]["role"], "primary");
    assert!(t["server"]["version"].as_str().unwrap().contains('.'), "{t:#}");
    assert_eq!(t["verify_problems"], serde_json::json!([]));
}

#[test]
fn happy_path_table_is_plain_when_piped() {
    let pki = Pki::new();
    let ca = pki.ca("test-ca");
    let leaf = pki.leaf(&ca, "server", &["localhost"], -1, 90);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let out = check_text(&section("cache", &format!("localhost:{}", redis.port), Some(&ca)));
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let row = out.stdout.lines().find(|l| l.starts_with("cache ")).unwrap();
    let ticks = row.matches('✓').count();
    assert!(
        ticks + row.matches('!').count() == 6 && ticks >= 5,
        "one mark per step: {row}"
    );
    assert!(out.stdout.contains("PONG in"), "{}", out.stdout);
    assert!(out.stdout.contains("all 1 section(s) OK"), "{}", out.stdout);
    assert!(!out.stdout.contains('\x1b'), "no colour into a pipe:\n{}", out.stdout);
}

#[test]
fn expiring_certificate_warns_but_passes() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]); // valid for two more days
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let (code, r, _) = check_json(&section("cache", &format!("localhost:{}", redis.port), Some(&ca)));
    assert_eq!(code, Some(0), "{r:#}");
    let t = first_target(&r);
    assert_eq!(mark(t, "certificate"), "warn", "{t:#}");
    let days = t["cert"]["days_left"].as_i64().unwrap();
    assert!((1..=2).contains(&days), "{t:#}");
    assert!(
        message(t, "certificate").contains(&format!("expires in {days} day(s)")),
        "{t:#}"
    );
    assert_eq!(mark(t, "redis"), "ok");
}

#[test]
fn wrong_host_names_the_covered_names() {
    let pki = Pki::new();
    let ca = pki.ca("test-ca");
    let leaf = pki.leaf(&ca, "server", &["db.example.net", "replica.example.net"], -1, 90);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let (code, r, _) = check_json(&section("cache", &format!("localhost:{}", redis.port), Some(&ca)));
    assert_eq!(code, Some(1), "{r:#}");
    assert_eq!(r["ok"], false);
    let t = first_target(&r);
    // The server speaks TLS, but the section's handshake fails: the tls row says so.
    assert_eq!(mark(t, "tls"), "fail", "{t:#}");
    let tls = message(t, "tls");
    assert!(
        tls.contains("fails on the certificate") && tls.contains("TLSv1."),
        "{tls}"
    );
    assert_eq!(mark(t, "certificate"), "fail");
    let m = message(t, "certificate");
    assert!(
        m.contains("host name mismatch")
            && m.contains("db.example.net, replica.example.net")
            && m.contains("not localhost"),
        "{m}"
    );
    assert_eq!(mark(t, "redis"), "skip");
}

#[test]
fn unknown_ca_names_the_issuer() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let (code, r, _) = check_json(&section("cache", &format!("localhost:{}", redis.port), None));
    assert_eq!(code, Some(1), "{r:#}");
    let t = first_target(&r);
    assert_eq!(mark(t, "certificate"), "fail");
    let m = message(t, "certificate");
    assert!(
        m.contains("unknown CA") && m.contains("CN=test-ca") && m.contains("CAfile"),
        "{m}"
    );
    assert_eq!(
        t["cert"]["subject"], "CN=localhost",
        "the certificate is still described: {t:#}"
    );
}

#[test]
fn expired_certificate_says_expired() {
    let pki = Pki::new();
    let ca = pki.ca("test-ca");
    let leaf = pki.leaf(&ca, "server", &["localhost"], -30, -2);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let (code, r, _) = check_json(&section("cache", &format!("localhost:{}", redis.port), Some(&ca)));
    assert_eq!(code, Some(1), "{r:#}");
    let t = first_target(&r);
    assert_eq!(mark(t, "certificate"), "fail");
    let m = message(t, "certificate");
    assert!(m.starts_with("expired: CN=localhost was valid until"), "{m}");
    assert!(t["cert"]["days_left"].as_i64().unwrap() < 0, "{t:#}");
}

#[test]
fn closed_port_fails_at_tcp() {
    let (code, r, _) = check_json(&section("cache", &format!("127.0.0.1:{}", free_port()), None));
    assert_eq!(code, Some(1), "{r:#}");
    let t = first_target(&r);
    assert_eq!(mark(t, "dns"), "ok");
    assert_eq!(mark(t, "tcp"), "fail");
    assert!(message(t, "tcp").contains("connection refused"), "{t:#}");
    for step in ["tls", "certificate", "redis"] {
        assert_eq!(mark(t, step), "skip", "{step}: {t:#}");
    }
}

#[test]
fn unresolvable_name_fails_at_dns() {
    // .invalid never resolves (RFC 6761); no network is contacted for it.
    let (code, r, _) = check_json(&section("cache", "no-such-cache.invalid:6379", None));
    assert_eq!(code, Some(1), "{r:#}");
    let t = first_target(&r);
    assert_eq!(mark(t, "dns"), "fail");
    assert!(
        message(t, "dns").contains("no-such-cache.invalid does not resolve"),
        "{t:#}"
    );
    assert_eq!(mark(t, "tcp"), "skip");
}

#[test]
fn password_protected_server_is_reachable_with_noauth() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &["--requirepass", "s3cret-pw"]);
    let conf = section("cache", &format!("localhost:{}", redis.port), Some(&ca));
    let (code, r, _) = check_json(&conf);
    assert_eq!(code, Some(0), "{r:#}");
    let t = first_target(&r);
    assert_eq!(mark(t, "redis"), "ok");
    assert!(message(t, "redis").contains("reachable: NOAUTH"), "{t:#}");
    assert_eq!(t["server"]["auth_required"], true);
    assert!(t["server"]["role"].is_null(), "no role without a password: {t:#}");
    let out = check_text(&conf);
    assert!(out.stdout.contains("NOAUTH"), "{}", out.stdout);
    assert!(!out.stdout.contains("s3cret"), "{}", out.stdout);
}

#[test]
fn replica_reports_its_role_and_primary() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let primary = Redis::start_tls(&leaf, &ca, &[]);
    let port = primary.port.to_string();
    let replica = Redis::start_tls(
        &leaf,
        &ca,
        &["--replicaof", "127.0.0.1", &port, "--tls-replication", "yes"],
    );
    let conf = format!(
        "{}{}",
        section("primary", &format!("localhost:{}", primary.port), Some(&ca)),
        section("replica", &format!("localhost:{}", replica.port), Some(&ca))
    );
    let (code, r, _) = check_json(&conf);
    assert_eq!(code, Some(0), "{r:#}");
    assert_eq!(r["sections"][0]["targets"][0]["server"]["role"], "primary");
    let server = &r["sections"][1]["targets"][0]["server"];
    assert_eq!(server["role"], "replica", "{server:#}");
    assert!(
        server["primary"]
            .as_str()
            .unwrap()
            .starts_with(&format!("127.0.0.1:{port} (link ")),
        "{server:#}"
    );
}

#[test]
fn busy_accept_port_warns_and_one_bad_section_fails_the_run() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    let good = section("good", &format!("localhost:{}", redis.port), Some(&ca));
    let dead = section("dead", &format!("127.0.0.1:{}", free_port()), Some(&ca));
    let conf = format!(
        "{good}{dead}[busy]\naccept = 127.0.0.1:{busy}\nconnect = localhost:{}\nCAfile = {}\n",
        redis.port,
        ca.pem.display()
    );
    let out = check_text(&conf);
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert!(out.stdout.contains("1 of 3 section(s) FAILED"), "{}", out.stdout);
    // A port in use is what a running config looks like: a warning, so that `check` works
    // as a health check of a live tunnel.
    let busy_row = out.stdout.lines().find(|l| l.starts_with("busy ")).unwrap();
    assert!(!busy_row.contains('✗'), "{busy_row}");
    assert!(
        out.stdout.contains(&format!("cannot listen on 127.0.0.1:{busy}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("expected if this config is already running"),
        "{}",
        out.stdout
    );
    let dead_row = out.stdout.lines().find(|l| l.starts_with("dead ")).unwrap();
    assert!(dead_row.contains('✗'), "{dead_row}");
    let good_row = out.stdout.lines().find(|l| l.starts_with("good ")).unwrap();
    assert!(!good_row.contains('✗'), "{good_row}");
}

#[test]
fn server_mode_section_checks_its_plain_upstream() {
    let pki = Pki::new();
    let (_ca, leaf) = pki.standard(&[]);
    let plain = Redis::start_plain(&[]);
    let conf = format!(
        "[front]\nclient = no\naccept = 127.0.0.1:{}\nconnect = 127.0.0.1:{}\ncert = {}\nkey = {}\n",
        free_port(),
        plain.port,
        leaf.cert.display(),
        leaf.key.display()
    );
    let (code, r, _) = check_json(&conf);
    assert_eq!(code, Some(0), "{r:#}");
    let t = first_target(&r);
    assert_eq!(mark(t, "tls"), "skip", "{t:#}");
    assert_eq!(mark(t, "redis"), "ok", "{t:#}");
}

#[test]
fn offline_prints_warnings_and_needs_no_network() {
    let conf = "[cache]\naccept = 127.0.0.1:6379\nconnect = no-such-cache.invalid:6379\nrenegotiation = no\n";
    let dir = tempfile::tempdir().unwrap();
    let path = write_conf(dir.path(), conf);
    let out = run_retunnel(&["check".as_ref(), "--offline".as_ref(), path.as_os_str()]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("renegotiation: is a stunnel option retunnel does not use"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.contains("valid, 1 section(s), 1 warning(s)"),
        "{}",
        out.stdout
    );
    let json = run_retunnel(&[
        "check".as_ref(),
        "--offline".as_ref(),
        "--json".as_ref(),
        path.as_os_str(),
    ]);
    let v: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["sections"][0]["connect"][0], "no-such-cache.invalid:6379");
    assert_eq!(v["warnings"].as_array().unwrap().len(), 1);
}

#[test]
fn offline_reports_every_problem_and_exits_2() {
    let conf = "[a]\naccept = 127.0.0.1:6379\nconect = x:1\n[b]\naccept = 127.0.0.1:6380\n";
    let dir = tempfile::tempdir().unwrap();
    let path = write_conf(dir.path(), conf);
    let out = run_retunnel(&["check".as_ref(), "--offline".as_ref(), "-c".as_ref(), path.as_os_str()]);
    assert_eq!(out.code, Some(2), "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("did you mean `connect`?"), "{}", out.stderr);
    assert!(out.stderr.contains("[b]: no `connect`"), "{}", out.stderr);
}

/// Runs `retunnel check -c FILE` on a pseudo-terminal (util-linux `script`), as a user sees it.
fn check_on_terminal(path: &std::path::Path, no_color: bool) -> String {
    let mut cmd = std::process::Command::new("script");
    let line = format!("{} check -c {}", retunnel_bin(), path.display());
    cmd.args(["-qec", &line, "/dev/null"]).env_remove("NO_COLOR");
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    let out = run_to_end(cmd);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    out.stdout
}

#[test]
fn colour_only_on_a_terminal_without_no_color() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_conf(
        dir.path(),
        &section("cache", &format!("127.0.0.1:{}", free_port()), None),
    );
    let coloured = check_on_terminal(&path, false);
    assert!(
        coloured.contains("\x1b[31m✗\x1b[0m"),
        "red cross expected:\n{coloured:?}"
    );
    assert!(
        coloured.contains("\x1b[32m✓\x1b[0m"),
        "green tick expected:\n{coloured:?}"
    );
    let plain = check_on_terminal(&path, true);
    assert!(
        plain.contains('✗') && !plain.contains('\x1b'),
        "NO_COLOR must win:\n{plain:?}"
    );
}

#[test]
fn a_section_works_when_one_of_its_targets_does() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let conf = format!(
        "[cache]\naccept = 127.0.0.1:{}\nconnect = 127.0.0.1:{}\nconnect = localhost:{}\nCAfile = {}\n",
        free_port(),
        free_port(),
        redis.port,
        ca.pem.display()
    );
    let (code, r, _) = check_json(&conf);
    assert_eq!(code, Some(0), "{r:#}");
    let targets = r["sections"][0]["targets"].as_array().unwrap();
    assert_eq!(mark(&targets[0], "tcp"), "fail");
    assert_eq!(mark(&targets[1], "redis"), "ok");
    let out = check_text(&conf);
    let row = out.stdout.lines().find(|l| l.starts_with("cache ")).unwrap();
    assert!(row.ends_with("(2 targets, see below)") && !row.contains('✗'), "{row}");
}

#[test]
fn a_plain_tcp_port_is_named_as_not_tls() {
    // A server that answers anything with a Redis error line, as a plain-text Redis port does.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut sock in listener.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut sock, b"-ERR unknown command\r\n");
        }
    });
    let (code, r, _) = check_json(&section("cache", &format!("127.0.0.1:{port}"), None));
    assert_eq!(code, Some(1), "{r:#}");
    let t = first_target(&r);
    assert_eq!(mark(t, "tcp"), "ok");
    assert_eq!(mark(t, "tls"), "fail");
    assert!(message(t, "tls").contains("plain-TCP port"), "{t:#}");
}

#[test]
fn unverified_section_warns_and_says_what_verification_would_find() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let conf = format!(
        "[cache]\naccept = 127.0.0.1:{}\nconnect = localhost:{}\nverifyChain = no\n",
        free_port(),
        redis.port
    );
    let (code, r, _) = check_json(&conf);
    assert_eq!(code, Some(0), "{r:#}");
    let t = first_target(&r);
    assert_eq!(mark(t, "certificate"), "warn");
    let m = message(t, "certificate");
    assert!(
        m.contains("NOT verified") && m.contains("would fail: unknown CA"),
        "{m}"
    );
    assert_eq!(mark(t, "redis"), "ok");
}

#[test]
fn offline_loads_the_tls_settings_as_the_daemon_does() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let conf = format!(
        "[cache]\naccept = 127.0.0.1:6379\nconnect = localhost:6380\nCAfile = {}\n",
        not_pem.display()
    );
    let path = write_conf(dir.path(), &conf);
    let out = run_retunnel(&["check".as_ref(), "--offline".as_ref(), path.as_os_str()]);
    assert_eq!(out.code, Some(2), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("[cache]") && out.stderr.contains("holds no PEM certificate"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_tls_server_that_is_not_redis_fails_at_redis() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let echo = TlsEcho::start(&leaf);
    let (code, r, _) = check_json(&section("cache", &format!("localhost:{}", echo.addr.port()), Some(&ca)));
    assert_eq!(code, Some(1), "{r:#}");
    let t = first_target(&r);
    assert_eq!(mark(t, "tls"), "ok");
    assert_eq!(mark(t, "redis"), "fail");
    assert!(message(t, "redis").contains("is this port Redis?"), "{t:#}");
}

#[test]
fn connect_to_checks_an_unchanged_config_against_another_server() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&["cache.example.invalid"]);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let dir = tempfile::tempdir().unwrap();
    let path = write_conf(dir.path(), &section("cache", "cache.example.invalid:6379", Some(&ca)));
    let map = format!("cache.example.invalid:6379:127.0.0.1:{}", redis.port);
    let out = run_retunnel(&["check", "--json", "--connect-to", &map, path.to_str().unwrap()]);
    let r: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(out.code, Some(0), "{r:#}");
    let t = first_target(&r);
    assert_eq!(t["connect_to"], format!("127.0.0.1:{}", redis.port));
    assert_eq!(t["cert"]["verified_name"], "cache.example.invalid");
    assert_eq!(mark(t, "redis"), "ok");
}

#[test]
fn a_server_that_trickles_bytes_cannot_stall_check() {
    // Answers the ClientHello one byte every 100 ms: each read completes within the socket
    // timeout, so only a bound on the whole handshake ends it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                // A TLS handshake record header announcing 16 KiB, then its body byte by byte.
                if std::io::Write::write_all(&mut s, b"\x16\x03\x03\x40\x00").is_err() {
                    return;
                }
                for _ in 0..200 {
                    if std::io::Write::write_all(&mut s, b"\x00").is_err() {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            });
        }
    });
    let conf = format!(
        "{}TIMEOUTconnect = 1\n",
        section("slow", &format!("127.0.0.1:{port}"), None)
    );
    let started = std::time::Instant::now();
    let (code, r, _) = check_json(&conf);
    let took = started.elapsed();
    assert_eq!(code, Some(1), "{r:#}");
    assert_eq!(mark(first_target(&r), "tls"), "fail", "{r:#}");
    assert!(took < std::time::Duration::from_secs(8), "check took {took:?}");
}

#[test]
fn offline_reports_what_the_daemon_warns_about_at_start() {
    let conf = "[open]\naccept = 0.0.0.0:7300\nconnect = cache.invalid:6379\nverify = 0\n";
    let dir = tempfile::tempdir().unwrap();
    let path = write_conf(dir.path(), conf);
    let out = run_retunnel(&["check".as_ref(), "--offline".as_ref(), path.as_os_str()]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("2 warning(s)"), "{}", out.stdout);
    for w in ["accepted from the network", "NOT verified"] {
        assert!(out.stderr.contains(w), "{w}: {}", out.stderr);
    }
}

/// Server mode with a certificate and key the daemon cannot use (a key of another
/// certificate, a password-protected key, no key): the daemon refuses to start, and `check
/// --offline` and `check` refuse with the daemon's own sentence. (A DER `cert` is a
/// configuration error, at its line, for all three.)
#[test]
fn an_unusable_server_mode_cert_or_key_fails_check_as_it_fails_the_daemon() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let other = pki.leaf(&ca, "other", &["localhost"], 0, 30);
    let key = openssl::pkey::PKey::private_key_from_pem(&std::fs::read(&leaf.key).unwrap()).unwrap();
    let locked = pki.path("locked.key");
    let pem = key
        .private_key_to_pem_pkcs8_passphrase(openssl::symm::Cipher::aes_256_cbc(), b"secret")
        .unwrap();
    std::fs::write(&locked, pem).unwrap();
    let plain = Redis::start_plain(&[]);
    let cases = [
        (
            leaf.cert.clone(),
            Some(other.key.clone()),
            "does not belong to the certificate",
        ),
        (leaf.cert.clone(), Some(locked), "protected by a password"),
        (leaf.cert.clone(), None, "holds no PEM private key"),
    ];
    for (cert, key, problem) in cases {
        let key = key.map(|k| format!("key = {}\n", k.display())).unwrap_or_default();
        let conf = format!(
            "[front]\nclient = no\naccept = 127.0.0.1:{}\nconnect = 127.0.0.1:{}\ncert = {}\n{key}",
            free_port(),
            plain.port,
            cert.display()
        );
        let (code, log) = run_to_exit(&conf, &[]);
        assert_ne!(code, Some(0), "{log}");
        let line = log
            .lines()
            .find(|l| l.contains(problem))
            .unwrap_or_else(|| panic!("{log}"));
        let said = &line[line.find("[front] ").unwrap_or_else(|| panic!("{line}"))..];
        let dir = tempfile::tempdir().unwrap();
        let path = write_conf(dir.path(), &conf);
        let offline = run_retunnel(&["check".as_ref(), "--offline".as_ref(), path.as_os_str()]);
        assert_eq!(offline.code, Some(2), "{}{}", offline.stdout, offline.stderr);
        assert!(
            offline.stderr.contains(said),
            "daemon: {said}\ncheck --offline: {}",
            offline.stderr
        );
        let (code, r, _) = check_json(&conf);
        assert_eq!(code, Some(1), "{r:#}");
        let bind = &r["sections"][0]["bind"];
        assert_eq!(bind["mark"], "fail", "{r:#}");
        let m = bind["message"].as_str().unwrap();
        assert!(
            said.ends_with(m.split_once(": ").unwrap().1),
            "daemon: {said}\ncheck: {m}"
        );
    }
}

/// Pinning without the chain (`verify = 4`, and `verifyChain = no` + `verifyPeer = yes`):
/// check's certificate row says what the daemon decides: pinned when the server's certificate
/// is the one in CAfile, and the daemon's own reason and fix when it is not (not "unknown CA",
/// which is no reason for a section that does not check the chain).
#[test]
fn pinning_is_reported_as_the_daemon_judges_it() {
    let pki = Pki::new();
    let ca = pki.ca("pin-ca");
    let pinned = pki.leaf(&ca, "pinned", &["localhost"], -1, 2);
    let other = pki.leaf(&ca, "other", &["localhost"], -1, 2);
    let (pinned_up, other_up) = (Redis::start_tls(&pinned, &ca, &[]), Redis::start_tls(&other, &ca, &[]));
    for how in ["verify = 4", "verifyChain = no\nverifyPeer = yes"] {
        let conf = |up: &Redis| {
            format!(
                "[pin]\naccept = 127.0.0.1:{}\nconnect = localhost:{}\nCAfile = {}\n{how}\n",
                free_port(),
                up.port,
                pinned.cert.display()
            )
        };
        let (code, r, _) = check_json(&conf(&pinned_up));
        assert_eq!(code, Some(0), "{how}: {r:#}");
        let t = first_target(&r);
        assert_eq!(mark(t, "certificate"), "ok", "{how}: {t:#}");
        let m = message(t, "certificate");
        assert!(
            m.starts_with("pinned to CAfile/CApath") && !m.contains("NOT verified"),
            "{how}: {m}"
        );
        let (code, r, _) = check_json(&conf(&other_up));
        assert_eq!(code, Some(1), "{how}: {r:#}");
        let t = first_target(&r);
        assert_eq!(mark(t, "certificate"), "fail", "{how}: {t:#}");
        let m = message(t, "certificate");
        assert!(
            m.contains("not one of the certificates in CAfile/CApath")
                && m.contains("add the server's certificate to CAfile")
                && !m.contains("unknown CA"),
            "{how}: {m}"
        );
    }
}

/// `checkIP`: the section verifies the certificate by the address, not by `sni`, so check
/// names the address it was verified for, never the `sni` name the certificate lacks.
#[test]
fn a_certificate_verified_by_check_ip_is_reported_for_that_address() {
    let pki = Pki::new();
    let ca = pki.ca("ip-ca");
    let leaf = pki.leaf(&ca, "server", &["localhost", "127.0.0.1"], -1, 90);
    let redis = Redis::start_tls(&leaf, &ca, &[]);
    let conf = format!(
        "[byip]\naccept = 127.0.0.1:{}\nconnect = 127.0.0.1:{}\nCAfile = {}\nsni = foo.example\ncheckIP = 127.0.0.1\n",
        free_port(),
        redis.port,
        ca.pem.display()
    );
    let (code, r, _) = check_json(&conf);
    assert_eq!(code, Some(0), "{r:#}");
    let t = first_target(&r);
    assert_eq!(mark(t, "certificate"), "ok", "{t:#}");
    let m = message(t, "certificate");
    assert_eq!(m, "verified for 127.0.0.1 (checkIP)");
    assert_eq!(t["verify_problems"], serde_json::json!([]), "{t:#}");
}

/// Against a server that demands client certificates, check says so with the fix (set
/// `cert` and `key`), not rustls's "received fatal alert: CertificateRequired"; TLS 1.3
/// servers say it only after the handshake, when the PING is read; TLS 1.2 servers send
/// the alert they also send for no common cipher suite, so both causes are named.
#[test]
fn a_server_that_demands_a_client_certificate_is_named_with_the_fix() {
    let pki = Pki::new();
    let (ca, leaf) = pki.standard(&[]);
    let redis = Redis::start_tls(&leaf, &ca, &["--tls-auth-clients", "yes"]);
    for version in ["TLSv1.3", "TLSv1.2"] {
        let conf = format!(
            "{}sslVersion = {version}\n",
            section("mtls", &format!("localhost:{}", redis.port), Some(&ca))
        );
        let (code, r, _) = check_json(&conf);
        assert_eq!(code, Some(1), "{version}: {r:#}");
        let all = r.to_string();
        assert!(all.contains("requires a client certificate"), "{version}: {all}");
        assert!(all.contains("set `cert` and `key`"), "{version}: {all}");
        assert!(
            !all.contains("CertificateRequired") && !all.contains("fatal alert"),
            "{version}: {all}"
        );
    }
}

/// Tester finding 3: a section whose `connect` is its own `accept` is a config error in
/// `check --offline` (as at start), naming both lines.
#[test]
fn offline_refuses_a_connect_to_its_own_accept() {
    let conf = "[loop]\naccept = 6391\nconnect = localhost:6391\n";
    let dir = tempfile::tempdir().unwrap();
    let path = write_conf(dir.path(), conf);
    let out = run_retunnel(&["check".as_ref(), "--offline".as_ref(), path.as_os_str()]);
    assert_eq!(out.code, Some(2), "{}{}", out.stdout, out.stderr);
    let line3 = format!(
        "{}:3: [loop] connect: localhost:6391 is this section's own `accept`",
        path.display()
    );
    let line2 = format!("({}:2: accept = 6391)", path.display());
    for part in [line3.as_str(), line2.as_str(), "connect to itself"] {
        assert!(out.stderr.contains(part), "{part:?} missing in {}", out.stderr);
    }
}

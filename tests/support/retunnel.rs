//! The retunnel binary run as a user runs it: its config file, its log (waited on line by line), signals, exit, and processes it leaves.
#![allow(dead_code)]

use super::*;

/// Everything a retunnel process wrote to stderr so far, and a way to wait for more.
#[derive(Clone, Default)]
pub struct Log(Arc<(Mutex<LogState>, Condvar)>);

#[derive(Default)]
pub struct LogState {
    text: String,
    /// The process closed its stderr (it exited).
    closed: bool,
}

impl Log {
    pub fn text(&self) -> String {
        self.0.0.lock().unwrap().text.clone()
    }

    /// Waits until the process has closed its stderr, then returns all of it.
    pub fn wait_closed(&self) -> String {
        let (lock, cv) = &*self.0;
        let guard = lock.lock().unwrap();
        let (guard, _) = cv.wait_timeout_while(guard, WAIT, |s| !s.closed).unwrap();
        assert!(guard.closed, "stderr never closed; log so far:\n{}", guard.text);
        guard.text.clone()
    }

    /// Waits until the log contains `needle` `count` times; fails the test with the log otherwise.
    pub fn wait_for_n(&self, needle: &str, count: usize) -> String {
        let deadline = Instant::now() + WAIT;
        let (lock, cv) = &*self.0;
        let mut state = lock.lock().unwrap();
        while state.text.matches(needle).count() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero() && !state.closed,
                "log never showed {count}x {needle:?}; log so far:\n{}",
                state.text
            );
            state = cv.wait_timeout(state, left).unwrap().0;
        }
        state.text.clone()
    }

    pub fn wait_for(&self, needle: &str) -> String {
        self.wait_for_n(needle, 1)
    }

    /// Where section `service` listens, from its "listening" lines so far (the address the
    /// system picked for `accept = 127.0.0.1:0`, or a socket path), in log order.
    pub fn listening(&self, service: &str) -> Vec<String> {
        let text = self.text();
        let field = |line: &str, name: &str| -> Option<String> {
            let (_, rest) = line.split_once(&format!(" {name}="))?;
            Some(rest.split_whitespace().next()?.to_string())
        };
        text.lines()
            .filter(|l| l.contains(" listening ") && field(l, "service").as_deref() == Some(service))
            .filter_map(|l| field(l, "accept"))
            .collect()
    }
}

impl Retunnel {
    /// The TCP port section `service` listens on (its first "listening" line): retunnel's
    /// own listeners bind `127.0.0.1:0`, so no port is guessed and none can be taken meanwhile.
    pub fn port(&self, service: &str) -> u16 {
        let all = self.log.listening(service);
        let first = all
            .first()
            .unwrap_or_else(|| panic!("[{service}] is not listening:\n{}", self.log.text()));
        first
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {first}"))
    }
}

/// The retunnel binary, running.
pub struct Retunnel {
    pub proc: Proc,
    pub log: Log,
    /// The config file it was given (if any).
    pub config: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

pub fn retunnel_bin() -> &'static str {
    env!("CARGO_BIN_EXE_retunnel")
}

impl Retunnel {
    /// Writes `conf` to a file and runs `retunnel -c FILE ARGS`, without waiting.
    pub fn spawn(conf: &str, args: &[&str]) -> Retunnel {
        Self::spawn_env(conf, args, &[])
    }

    pub fn spawn_env(conf: &str, args: &[&str], env: &[(&str, &Path)]) -> Retunnel {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tunnel.conf");
        std::fs::write(&path, conf).unwrap();
        let mut cmd = Command::new(retunnel_bin());
        cmd.arg("-c").arg(&path).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut r = Self::spawn_cmd(cmd, dir);
        r.config = Some(path);
        r
    }

    /// Runs a prepared command, collecting its stderr.
    pub fn spawn_cmd(mut cmd: Command, dir: tempfile::TempDir) -> Retunnel {
        // RUST_LOG would override the config's `debug`; only a test that sets it gets it.
        if !cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
            cmd.env_remove("RUST_LOG");
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Log::default();
        let sink = log.clone();
        std::thread::spawn(move || {
            let (lock, cv) = &*sink.0;
            // A test that failed while holding the lock poisons it; keep collecting anyway
            // rather than adding a second, unrelated panic to its output.
            let lock_state = || lock.lock().unwrap_or_else(|e| e.into_inner());
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut t = lock_state();
                t.text.push_str(&line);
                t.text.push('\n');
                cv.notify_all();
            }
            lock_state().closed = true;
            cv.notify_all();
        });
        Retunnel {
            proc: Proc {
                child,
                name: "retunnel".into(),
            },
            log,
            config: None,
            _dir: dir,
        }
    }

    /// Starts retunnel and waits until `services` services are listening.
    pub fn start(conf: &str, services: usize) -> Retunnel {
        let r = Self::spawn(conf, &[]);
        r.log.wait_for_n("listening", services);
        r
    }

    pub fn pid(&self) -> i32 {
        self.proc.child.id() as i32
    }

    /// Sends a signal (`libc::SIGTERM`, …).
    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.proc.child.try_wait().unwrap() {
                return st.code();
            }
            assert!(
                Instant::now() < deadline,
                "retunnel did not exit; log:\n{}",
                self.log.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Runs retunnel to completion with a config (for configs that must be refused).
pub fn run_to_exit(conf: &str, args: &[&str]) -> (Option<i32>, String) {
    let mut r = Retunnel::spawn(conf, args);
    let code = r.wait_exit();
    (code, r.log.wait_closed())
}

impl Retunnel {
    /// Replaces the config file's text (for SIGHUP tests).
    pub fn write_config(&self, conf: &str) {
        std::fs::write(self.config.as_ref().expect("spawned from a config text"), conf).unwrap();
    }

    /// The directory the config file is in (a temporary one, removed with the process).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}

/// Waits until the file at `path` contains `needle` `count` times; returns its text.
pub fn wait_file_for_n(path: &Path, needle: &str, count: usize) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.matches(needle).count() >= count {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never showed {count}x {needle:?}; it holds:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn wait_file_for(path: &Path, needle: &str) -> String {
    wait_file_for_n(path, needle, 1)
}

/// /proc/PID/status of a running process.
pub fn proc_status(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
}

/// True once `pid` is gone or a zombie (a detached daemon is no child of the test to reap).
pub fn exited(pid: i32) -> bool {
    let status = proc_status(pid);
    status.is_empty() || status.lines().any(|l| l.starts_with("State:") && l.contains('Z'))
}

/// Waits until `pid` has exited.
pub fn wait_gone(pid: i32) {
    let deadline = Instant::now() + WAIT;
    while !exited(pid) {
        assert!(Instant::now() < deadline, "process {pid} did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A process the test did not spawn directly (a detached daemon): SIGKILLed on drop.
pub struct Pid(pub i32);

impl Drop for Pid {
    fn drop(&mut self) {
        if !exited(self.0) {
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

/// A tunnel section for redis on `port` (TLS, verified against `ca`).
pub fn section(name: &str, accept: u16, upstream: u16, ca: &Ca) -> String {
    format!(
        "[{name}]\naccept = 127.0.0.1:{accept}\nconnect = localhost:{upstream}\nCAfile = {}\n",
        ca.pem.display()
    )
}

/// What a finished retunnel run printed.
pub struct Finished {
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the retunnel binary with `args` to completion (at most [`WAIT`]), with `NO_COLOR` unset
/// so that a test sees what a user's pipe gets.
pub fn run_retunnel<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Finished {
    let mut cmd = Command::new(retunnel_bin());
    cmd.args(args).env_remove("RUST_LOG").env_remove("NO_COLOR");
    run_to_end(cmd)
}

/// Runs a command to completion (at most [`WAIT`], then it is killed and the test fails).
pub fn run_to_end(mut cmd: Command) -> Finished {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(out) = rx.recv_timeout(WAIT) else {
        unsafe { libc::kill(pid, libc::SIGKILL) };
        panic!(
            "retunnel {:?} did not finish within {WAIT:?}",
            cmd.get_args().collect::<Vec<_>>()
        );
    };
    let out = out.unwrap();
    Finished {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Writes `conf` to a file in `dir` and returns its path.
pub fn write_conf(dir: &Path, conf: &str) -> PathBuf {
    let path = dir.join("tunnel.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

//! A service binary of this workspace running as a child process, as users run it: started
//! with flags, probed on its metrics port, stopped with SIGTERM or killed with SIGKILL.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::kafka_bootstrap;

/// A binary of this workspace, built by `cargo build --workspace` with the same profile as
/// the running test or benchmark.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // Test binaries live in target/<profile>/deps, other binaries in target/<profile>.
    let mut dir = exe.parent().expect("target dir");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("profile dir");
    }
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: build the workspace first (scripts/test does)",
        bin.display()
    );
    bin
}

pub struct ServiceProcess {
    child: Child,
    pub name: String,
    port: u16,
    log: PathBuf,
}

impl ServiceProcess {
    /// Starts `bin` with `args` and `--metrics-bind` on a free port; its output goes to
    /// `<STACK_RUN_DIR>/<log>.log`.
    pub fn start(bin: &str, log: &str, args: &[String]) -> Self {
        let log_dir = std::env::var("STACK_RUN_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| std::env::temp_dir());
        let log_path = log_dir.join(format!("{log}.log"));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("service log file");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(workspace_bin(bin))
            .args(args)
            .args(["--metrics-bind", &format!("127.0.0.1:{port}")])
            .env("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::from(log_file.try_clone().expect("log")))
            .stderr(Stdio::from(log_file))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        Self {
            child,
            name: log.to_owned(),
            port,
            log: log_path,
        }
    }

    /// Every thread's stack, from gdb attached for a moment: what a process that went quiet
    /// is waiting on. The reason instead when gdb is missing or cannot attach.
    pub fn backtraces(&self) -> String {
        match Command::new("gdb")
            .args(["-p", &self.child.id().to_string(), "-batch"])
            .args(["-ex", "thread apply all bt"])
            .output()
        {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => format!("no backtraces: gdb: {e}"),
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where its `/metrics`, `/healthz` and `/readyz` answer.
    pub fn metrics_address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The status line of `GET path` on the processor's metrics port, if it answers.
    pub fn get(&self, path: &str) -> Option<String> {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(conn, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut answer = String::new();
        conn.read_to_string(&mut answer).ok()?;
        Some(answer)
    }

    /// Waits until `/readyz` says the processor owns restored partitions.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self
                .get("/readyz")
                .is_some_and(|a| a.starts_with("HTTP/1.0 200"))
            {
                return;
            }
            assert!(self.is_running(), "{} exited; see its log", self.name);
            assert!(
                Instant::now() < deadline,
                "{} not ready in {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no commit, no abort, no goodbye.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGKILL, for a process held in place (a struct's field): replace it afterwards.
    pub fn kill_in_place(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "{} exited with {status}", self.name);
                return;
            }
            if Instant::now() >= deadline {
                // What it waits on, for the next look at a shutdown that hangs.
                eprintln!("{} did not stop:\n{}", self.name, self.backtraces());
                panic!("{} did not stop", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status, once the process has exited by itself within `timeout`.
    pub fn exited_within(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

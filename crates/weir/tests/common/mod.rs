//! Helpers shared by the integration tests: running commands, and a
//! `weir broker` child process on a free 127.0.0.1 port.
// Each test file compiles this module and uses a part of it.
#![allow(dead_code)]

pub mod proxy;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd` with `stdin` (or an empty input) and collects its output.
pub fn run_with_stdin(cmd: &mut Command, stdin: Option<&str>) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let mut input = child.stdin.take().expect("stdin is piped");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("writing stdin");
    }
    drop(input);
    child.wait_with_output().expect("waiting for the child")
}

/// A `weir broker` child process.
pub struct Broker {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    /// Its data directory.
    pub dir: PathBuf,
    log_file: PathBuf,
    args: Vec<String>,
    _tmp: tempfile::TempDir,
}

///
/// Chosen below the kernel's ephemeral range (32768 and up by default), so
/// no outgoing connection's source port (brokers of a cluster connect to
/// each other from their own 127.0.0.x) can take it before the server
/// binds it; free on 127.0.0.1 to .4, where the cluster tests put nodes.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 20);
    for _ in 0..10_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // A multiplicative hash spreads the tries of concurrent tests.
        let port =
            16_000 + (seed.wrapping_add(n).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % 16_000;
        let port = port as u16;
        if (1..=4).all(|i| TcpListener::bind((format!("127.0.0.{i}").as_str(), port)).is_ok()) {
            return port;
        }
    }
    panic!("no free port below the ephemeral range");
}

/// Waits until something accepts connections on the port (at most 10 s).
pub fn wait_port(port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on 127.0.0.1:{port} after 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

impl Broker {
    pub fn start(args: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        Self::start_with(tmp, dir, args)
    }

    /// A broker whose data lives in `dir` (its log stays elsewhere).
    pub fn start_in(dir: &Path, args: &[&str]) -> Self {
        Self::start_with(tempfile::tempdir().unwrap(), dir.to_owned(), args)
    }

    /// A broker whose first listener is on `port`.
    pub fn start_on(port: u16, args: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        Self::start_at(tmp, dir, port, args)
    }

    /// A broker whose data lives in `dir` and whose first listener is on
    /// `port`.
    pub fn start_in_on(dir: &Path, port: u16, args: &[&str]) -> Self {
        Self::start_at(tempfile::tempdir().unwrap(), dir.to_owned(), port, args)
    }

    fn start_with(tmp: tempfile::TempDir, dir: PathBuf, args: &[&str]) -> Self {
        Self::start_at(tmp, dir, free_port(), args)
    }

    fn start_at(tmp: tempfile::TempDir, dir: PathBuf, port: u16, args: &[&str]) -> Self {
        let mut b = Broker {
            child: None,
            port,
            dir,
            log_file: tmp.path().join("broker.log"),
            args: args.iter().map(|s| s.to_string()).collect(),
            _tmp: tmp,
        };
        b.spawn();
        b
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("broker")
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(&self.args)
            .env("WEIR_LOG", "info")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting weir broker");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "broker did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    assert!(
                        status.success(),
                        "broker exited with {status}:\n{}",
                        self.log()
                    );
                    return;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("broker did not stop on SIGTERM:\n{}", self.log());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Fails with how to install it unless `python3` can import `module`.
pub fn need_python_module(module: &str, install: &str) {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "python3 cannot import {module}: {install}");
}

pub fn need_command(cmd: &str, install: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "{cmd} is not installed: {install}");
}

pub fn run_ok(out: Output, what: &str, broker: &Broker) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}\nbroker log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        broker.log()
    );
    stdout
}

pub fn kcat(broker: &Broker, args: &[&str], stdin: Option<&str>) -> String {
    need_command("kcat", "apt-get install -y kcat");
    let out = run_with_stdin(
        Command::new("kcat")
            .arg("-b")
            .arg(broker.bootstrap())
            .args(args),
        stdin,
    );
    run_ok(out, &format!("kcat {args:?}"), broker)
}

/// Rows in `table` of the SQLite file `db` (-1 when unreadable).
pub fn sqlite_count(db: &Path, table: &str) -> i64 {
    let Ok(c) = rusqlite::Connection::open(db) else {
        return -1;
    };
    c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap_or(-1)
}

/// A child process killed when dropped, so a failing test leaves nothing
/// running.
pub struct Proc(pub Child);

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `weir pipeline run FILE` in `dir`.
pub fn start_pipeline(dir: &Path, file: &str) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["pipeline", "run", file])
            .current_dir(dir)
            .env("WEIR_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// SIGTERM and a clean exit.
pub fn sigterm(mut child: Proc) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "pipeline exited with {status}");
}

//! Real Kafka clients against the real `weir broker` binary: kcat
//! (librdkafka from Debian), confluent-kafka and kafka-python from PyPI,
//! kafka-python from Debian. Each test starts its own broker on a free
//! 127.0.0.1 port in a temporary directory and stops it by its PID.
//!
//! The clients are installed by `.ci/run`; a missing one fails the test
//! with the command that installs it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop")
}

/// A `weir broker` child process.
struct Broker {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
    _tmp: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Broker {
    fn start(args: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let mut b = Broker {
            child: None,
            port: free_port(),
            dir: tmp.path().join("data"),
            args: args.iter().map(|s| s.to_string()).collect(),
            _tmp: tmp,
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.with_extension("log"))
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

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }

    /// SIGTERM and wait for a clean exit.
    fn stop(&mut self) {
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
    fn kill9(&mut self) {
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

fn need_command(cmd: &str, install: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "{cmd} is not installed: {install}");
}

fn need_python_module(python: &str, module: &str, install: &str) {
    let ok = Command::new(python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "{python} cannot import {module}: {install}");
}

fn run_ok(out: Output, what: &str, broker: &Broker) -> String {
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

fn python(python: &str, script: &str, args: &[&str], broker: &Broker) -> String {
    let out = Command::new(python)
        .current_dir(interop_dir())
        .arg(script)
        .arg("--bootstrap")
        .arg(broker.bootstrap())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {python} {script}: {e}"));
    run_ok(out, &format!("{python} {script} {args:?}"), broker)
}

fn kcat(broker: &Broker, args: &[&str], stdin: Option<&str>) -> String {
    need_command("kcat", "apt-get install -y kcat");
    let mut child = Command::new("kcat")
        .arg("-b")
        .arg(broker.bootstrap())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    run_ok(out, &format!("kcat {args:?}"), broker)
}

const PIP: &str = "python3 -m pip install confluent-kafka kafka-python";

#[test]
fn kcat_lists_produces_and_consumes_with_keys_and_headers() {
    let broker = Broker::start(&[]);
    let meta = kcat(&broker, &["-L"], None);
    assert!(meta.contains("1 brokers"), "{meta}");
    kcat(
        &broker,
        &["-P", "-t", "logs", "-K:", "-H", "source=web1"],
        Some("a:first\nb:second\n:no key\n"),
    );
    kcat(
        &broker,
        &["-P", "-t", "logs", "-z", "snappy", "-X", "acks=all"],
        Some("third\n"),
    );
    let out = kcat(
        &broker,
        &["-C", "-t", "logs", "-e", "-f", "%o|%k|%s|%h\n"],
        None,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec![
            "0|a|first|source=web1",
            "1|b|second|source=web1",
            "2||no key|source=web1",
            "3||third|"
        ],
        "{out}"
    );
    let meta = kcat(&broker, &["-L", "-t", "logs"], None);
    assert!(meta.contains("topic \"logs\" with 1 partitions"), "{meta}");
    // Reading from an offset and the end offset.
    let out = kcat(
        &broker,
        &["-C", "-t", "logs", "-o", "2", "-e", "-f", "%s\n"],
        None,
    );
    assert_eq!(out, "no key\nthird\n");
    let out = kcat(&broker, &["-Q", "-t", "logs:0:-1"], None);
    assert!(out.contains("offset 4"), "{out}");
}

#[test]
fn confluent_kafka_every_codec_and_acks_survives_a_restart() {
    need_python_module("python3", "confluent_kafka", PIP);
    let mut broker = Broker::start(&[]);
    python(
        "python3",
        "confluent_roundtrip.py",
        &["produce", "--count", "100000"],
        &broker,
    );
    broker.stop();
    for entry in std::fs::read_dir(&broker.dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert!(
                path.join("clean-shutdown").exists(),
                "{} was not closed cleanly",
                path.display()
            );
        }
    }
    broker.spawn();
    let log = broker.log();
    assert!(
        !log.contains("recovery cut"),
        "a clean restart cut data:\n{log}"
    );
    python(
        "python3",
        "confluent_roundtrip.py",
        &["verify", "--count", "100000"],
        &broker,
    );
}

#[test]
fn acks_all_data_survives_kill_9() {
    need_python_module("python3", "confluent_kafka", PIP);
    let mut broker = Broker::start(&[]);
    python(
        "python3",
        "confluent_roundtrip.py",
        &["produce", "--count", "20000"],
        &broker,
    );
    broker.kill9();
    broker.spawn();
    python(
        "python3",
        "confluent_roundtrip.py",
        &["verify", "--count", "20000"],
        &broker,
    );
}

/// librdkafka's idempotent producer keeps sending while the broker is
/// killed and restarted: its retries are de-duplicated, nothing is lost.
#[test]
fn idempotent_producer_across_a_broker_crash_has_no_duplicates() {
    need_python_module("python3", "confluent_kafka", PIP);
    let mut broker = Broker::start(&[]);
    kcat(&broker, &["-P", "-t", "idem", "-p", "0"], None);
    let producer = Command::new("python3")
        .current_dir(interop_dir())
        .args([
            "idempotent.py",
            "produce",
            "--count",
            "20000",
            "--bootstrap",
            &broker.bootstrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    broker.kill9();
    std::thread::sleep(Duration::from_millis(300));
    broker.spawn();
    let out = producer.wait_with_output().unwrap();
    run_ok(out, "idempotent producer", &broker);
    let out = python(
        "python3",
        "idempotent.py",
        &["verify", "--count", "20000"],
        &broker,
    );
    assert!(out.contains("no duplicates"), "{out}");
}

/// A child process whose stdout (or stderr) lines are collected as they come.
struct Watched {
    child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Watched {
    fn spawn(mut cmd: Command, stderr: bool) -> Self {
        let mut child = if stderr {
            cmd.stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        } else {
            cmd.stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        let pipe: Box<dyn Read + Send> = if stderr {
            Box::new(child.stderr.take().unwrap())
        } else {
            Box::new(child.stdout.take().unwrap())
        };
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Watched { child, lines }
    }

    /// Partitions in the newest "assigned [...]" line (or kcat's "assigned:" line).
    fn assigned(&self) -> Option<Vec<i32>> {
        let lines = self.lines.lock().unwrap();
        let line = lines
            .iter()
            .rev()
            .find(|l| l.contains("assigned") || l.contains("revoked"))?;
        if line.contains("revoked") {
            return Some(vec![]);
        }
        if let Some(rest) = line.strip_prefix("assigned [") {
            return Some(
                rest.trim_end_matches(']')
                    .split(',')
                    .filter_map(|x| x.trim().parse().ok())
                    .collect(),
            );
        }
        // kcat: "... assigned: six [0], six [3]"
        let tail = line.split("assigned:").nth(1)?;
        Some(
            tail.split('[')
                .skip(1)
                .filter_map(|x| x.split(']').next()?.trim().parse().ok())
                .collect(),
        )
    }

    fn wait(&self, what: &str, broker: &Broker, secs: u64, ok: impl Fn(&[i32]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if self.assigned().as_deref().is_some_and(&ok) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: assignment never right; lines: {:?}\nbroker log:\n{}",
                self.lines.lock().unwrap(),
                broker.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn groups_member(broker: &Broker, topic: &str, group: &str) -> Watched {
    let mut cmd = Command::new("python3");
    cmd.current_dir(interop_dir()).args([
        "groups.py",
        "member",
        "--topic",
        topic,
        "--group",
        group,
        "--seconds",
        "120",
        "--bootstrap",
        &broker.bootstrap(),
    ]);
    Watched::spawn(cmd, false)
}

#[test]
fn consumer_groups_balance_with_eager_and_cooperative_assignment() {
    need_python_module("python3", "confluent_kafka", PIP);
    let broker = Broker::start(&[]);
    for (strategy, topic) in [("range", "eager"), ("cooperative-sticky", "coop")] {
        let out = python(
            "python3",
            "groups.py",
            &[
                "balance",
                "--strategy",
                strategy,
                "--topic",
                topic,
                "--group",
                topic,
            ],
            &broker,
        );
        assert!(out.contains("balance ok"), "{out}");
    }
}

#[test]
fn a_killed_member_is_evicted_after_its_session_timeout() {
    need_python_module("python3", "confluent_kafka", PIP);
    let broker = Broker::start(&[]);
    let a = groups_member(&broker, "evict", "ev");
    a.wait("first member", &broker, 30, |p| p.len() == 6);
    let mut b = groups_member(&broker, "evict", "ev");
    b.wait("second member", &broker, 30, |p| p.len() == 3);
    let _ = b.child.kill();
    let _ = b.child.wait();
    // The killed member's session (6 s) expires; the survivor takes all six.
    let t = Instant::now();
    a.wait("after the kill", &broker, 30, |p| p.len() == 6);
    assert!(
        t.elapsed() >= Duration::from_secs(3),
        "rebalanced before the session could expire"
    );
}

#[test]
fn committed_offsets_survive_kill_9() {
    need_python_module("python3", "confluent_kafka", PIP);
    let mut broker = Broker::start(&[]);
    let common = ["--topic", "resume", "--group", "rg", "--count", "1000"];
    let out = python(
        "python3",
        "groups.py",
        &[&["resume-produce"][..], &common].concat(),
        &broker,
    );
    assert!(out.contains("committed 500"), "{out}");
    broker.kill9();
    broker.spawn();
    let out = python(
        "python3",
        "groups.py",
        &[&["resume-consume"][..], &common].concat(),
        &broker,
    );
    assert!(out.contains("nothing lost or repeated"), "{out}");
}

#[test]
fn kafka_python_kcat_and_confluent_kafka_share_a_group() {
    need_python_module("python3", "confluent_kafka", PIP);
    need_python_module("python3", "kafka", PIP);
    need_command("kcat", "apt-get install -y kcat");
    let broker = Broker::start(&[]);
    let out = python(
        "python3",
        "groups.py",
        &["balance", "--topic", "mixed", "--group", "warmup"],
        &broker,
    );
    assert!(out.contains("balance ok"), "{out}");
    let confluent = groups_member(&broker, "mixed", "mix");
    let mut kp = Command::new("python3");
    kp.current_dir(interop_dir()).args([
        "kafka_python_member.py",
        "--topic",
        "mixed",
        "--group",
        "mix",
        "--seconds",
        "120",
        "--bootstrap",
        &broker.bootstrap(),
    ]);
    let kafka_python = Watched::spawn(kp, false);
    let mut kc = Command::new("kcat");
    kc.args(["-b", &broker.bootstrap(), "-G", "mix", "mixed"]);
    let kcat_member = Watched::spawn(kc, true);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sets = [
            confluent.assigned(),
            kafka_python.assigned(),
            kcat_member.assigned(),
        ];
        if let [Some(a), Some(b), Some(c)] = &sets {
            let mut all: Vec<i32> = a.iter().chain(b).chain(c).copied().collect();
            all.sort_unstable();
            if !a.is_empty() && !b.is_empty() && !c.is_empty() && all == (0..6).collect::<Vec<_>>()
            {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no shared assignment: {sets:?}\nbroker log:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn confluent_kafka_admin_client_and_positioning() {
    need_python_module("python3", "confluent_kafka", PIP);
    let broker = Broker::start(&[]);
    let out = python("python3", "confluent_admin.py", &[], &broker);
    assert!(out.contains("admin ok"), "{out}");
}

#[test]
fn kafka_python_from_pypi() {
    need_python_module("python3", "kafka", PIP);
    let broker = Broker::start(&[]);
    let out = python("python3", "kafka_python_client.py", &[], &broker);
    assert!(out.contains("kafka-python ok"), "{out}");
}

#[test]
fn kafka_python_from_debian() {
    need_python_module(
        "/usr/bin/python3",
        "kafka",
        "apt-get install -y python3-kafka",
    );
    let broker = Broker::start(&[]);
    let out = python("/usr/bin/python3", "kafka_python_client.py", &[], &broker);
    assert!(
        out.contains("kafka-python 2."),
        "expected Debian's kafka-python 2.x: {out}"
    );
    assert!(out.contains("kafka-python ok"), "{out}");
}

#[test]
fn seed_producer_then_console_consumer_from_beginning() {
    need_python_module("python3", "kafka", PIP);
    let broker = Broker::start(&[]);
    python("python3", "seed_producer.py", &["--count", "200"], &broker);
    let out = kcat(
        &broker,
        &["-C", "-t", "oceanic", "-o", "beginning", "-e"],
        None,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 200, "{out}");
    for line in lines {
        assert!(
            line.starts_with("{\"pressure\": ")
                && line.contains("\"temperature\": ")
                && line.contains("\"visibility\": "),
            "{line}"
        );
    }
}

#[test]
fn message_size_limits_and_auto_create_off() {
    need_python_module("python3", "confluent_kafka", PIP);
    let broker = Broker::start(&[
        "--set",
        "auto.create.topics.enable=false",
        "--set",
        "message.max.bytes=2097152",
    ]);
    let out = python("python3", "limits.py", &[], &broker);
    assert!(out.contains("limits ok"), "{out}");
}

/// Frames that lie, garbage, unknown APIs and oversized requests close only
/// their own connection; the broker keeps serving everyone else.
#[test]
fn garbage_never_disturbs_the_broker() {
    let broker = Broker::start(&["--set", "socket.request.max.bytes=1048576"]);
    // A healthy connection kept open across the abuse.
    kcat(&broker, &["-P", "-t", "steady"], Some("before\n"));
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let frame = |body: &[u8]| {
        let mut f = (body.len() as i32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    };
    let mut attacks: Vec<Vec<u8>> = vec![
        vec![0xff, 0xff, 0xff, 0xff],                          // negative length
        (200_000_000i32).to_be_bytes().to_vec(),               // above socket.request.max.bytes
        frame(&[0, 0]),                                        // shorter than a header
        frame(&[0x7f, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]),          // unknown API key
        frame(&[0, 18, 0x7f, 0, 0, 0, 0, 1, 0, 0]),            // ApiVersions, absurd version
        frame(&[0, 0, 0, 9, 0, 0, 0, 1, 0xff, 0xff, 9, 9, 9]), // Produce v9, garbage body
        frame(&[0, 1, 0, 12, 0, 0, 0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff]), // Fetch v12, garbage
        frame(&[0, 3, 0, 12, 0, 0, 0, 7, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x0f]), // Metadata, huge varint
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),                         // wrong protocol
    ];
    // Served APIs get most of the random bodies: their decoders run.
    const SERVED: &[u8] = &[0, 1, 2, 3, 18, 19, 20, 21, 22, 32, 33, 35, 37, 44, 60];
    for i in 0..2000 {
        let key = if i % 4 == 0 {
            (rand() % 70) as u8
        } else {
            SERVED[(rand() % SERVED.len() as u64) as usize]
        };
        let version = (rand() % 14) as u8;
        let mut body = vec![0, key, 0, version, 0, 0, 0, 1, 0, 0];
        let n = (rand() % 300) as usize;
        body.extend((0..n).map(|_| rand() as u8));
        attacks.push(frame(&body));
    }
    if let Ok(p) = std::env::var("WEIR_DUMP_ATTACKS") {
        let mut all = Vec::new();
        for a in &attacks {
            all.extend_from_slice(&(a.len() as u32).to_be_bytes());
            all.extend_from_slice(a);
        }
        std::fs::write(p, all).unwrap();
    }
    for (i, attack) in attacks.iter().enumerate() {
        let mut s = TcpStream::connect(("127.0.0.1", broker.port)).unwrap_or_else(|e| {
            panic!(
                "broker gone after attack {}: {e}\n{:02x?}\n{}",
                i.saturating_sub(1),
                attacks[i.saturating_sub(1)],
                broker.log()
            )
        });
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(attack);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    // ApiVersions with an unsupported version gets a v0 answer (KIP-511).
    let mut s = TcpStream::connect(("127.0.0.1", broker.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&frame(&[0, 18, 0, 99, 0, 0, 0, 42, 0, 0]))
        .unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut resp).unwrap();
    assert_eq!(&resp[..4], &42i32.to_be_bytes(), "correlation id");
    assert_eq!(&resp[4..6], &35i16.to_be_bytes(), "UNSUPPORTED_VERSION");
    // Still serving.
    kcat(&broker, &["-P", "-t", "steady"], Some("after\n"));
    let out = kcat(&broker, &["-C", "-t", "steady", "-e", "-f", "%s\n"], None);
    assert_eq!(out, "before\nafter\n");
    let log = broker.log();
    assert!(!log.contains("panicked"), "{log}");
}

//! Real Kafka clients against the real `weir broker` binary: kcat
//! (librdkafka from Debian), confluent-kafka and kafka-python from PyPI,
//! kafka-python from Debian. Each test starts its own broker on a free
//! 127.0.0.1 port in a temporary directory and stops it by its PID.
//!
//! The clients are installed by `.ci/run`; a missing one fails the test
//! with the command that installs it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Broker, kcat, need_command, run_ok, sigterm, sqlite_count, start_pipeline};

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop")
}

fn need_python_module(python: &str, module: &str, install: &str) {
    let ok = Command::new(python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "{python} cannot import {module}: {install}");
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
        // The metadata log has no clean-shutdown marker: every write to it
        // is synced.
        if path.is_dir() && !path.ends_with("__cluster_metadata-0") {
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
    // The first member's own line about giving up half may come later.
    a.wait("first member sharing", &broker, 30, |p| p.len() == 3);
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

fn gen_to_topic(broker: &Broker, kind: &str, count: u64, topic: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "gen",
            kind,
            "--count",
            &count.to_string(),
            "--brokers",
            &broker.bootstrap(),
            "--topic",
            topic,
        ])
        .output()
        .unwrap();
    run_ok(out, "weir gen", broker);
}

fn wait_for_rows(db: &Path, table: &str, want: i64, secs: u64, broker: &Broker) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while sqlite_count(db, table) < want {
        assert!(
            Instant::now() < deadline,
            "{table} has {} of {want} rows\n{}",
            sqlite_count(db, table),
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Flow A: generator -> topic `oceanic` -> kafka source (group) -> JSON
/// (Telegraf rules) -> SQLite table `kafka_consumer`.
#[test]
fn flow_a_from_the_topic_into_sqlite() {
    let broker = Broker::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    gen_to_topic(&broker, "sensors", 5000, "oceanic");
    std::fs::write(
        tmp.path().join("flowa.toml"),
        format!(
            "[sources.kafka]\ntype = \"kafka\"\nbrokers = \"{}\"\ntopics = [\"oceanic\"]\ngroup = \"telegraf\"\nformat = \"json\"\n\n[sinks.store]\ntype = \"sqlite\"\ninputs = [\"kafka\"]\npath = \"store.db\"\n",
            broker.bootstrap()
        ),
    )
    .unwrap();
    let db = tmp.path().join("store.db");
    let p = start_pipeline(tmp.path(), "flowa.toml");
    wait_for_rows(&db, "kafka_consumer", 5000, 60, &broker);
    sigterm(p);
    let c = rusqlite::Connection::open(&db).unwrap();
    let (n, t_min, t_max): (i64, f64, f64) = c
        .query_row(
            "SELECT count(*), min(temperature), max(temperature) FROM kafka_consumer",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(n, 5000);
    assert!(t_min >= 0.0 && t_max < 100.0);
    let host: String = c
        .query_row("SELECT host FROM kafka_consumer LIMIT 1", [], |r| r.get(0))
        .unwrap();
    assert!(!host.is_empty(), "Telegraf's host tag");
}

/// Flow B: nginx lines -> topic -> parse_nginx -> geoip -> SQLite with
/// province and ISP filled.
#[test]
fn flow_b_from_the_topic_through_geoip_into_sqlite() {
    let broker = Broker::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    gen_to_topic(&broker, "nginx", 3000, "nginxlog");
    let xdb = weir_pipeline::geoip::build::xdb(&[(
        std::net::Ipv4Addr::new(0, 0, 0, 1),
        std::net::Ipv4Addr::new(255, 255, 255, 254),
        "中国|0|测试省|测试市|测试网",
    )]);
    std::fs::write(tmp.path().join("geo.xdb"), xdb).unwrap();
    std::fs::write(
        tmp.path().join("flowb.toml"),
        format!(
            "[sources.kafka]\ntype = \"kafka\"\nbrokers = \"{}\"\ntopics = [\"nginxlog\"]\ngroup = \"etl\"\n\n[transforms.parse]\ntype = \"parse_nginx\"\ninputs = [\"kafka\"]\n\n[transforms.geo]\ntype = \"geoip\"\ninputs = [\"parse\"]\ndatabase = \"geo.xdb\"\n\n[sinks.store]\ntype = \"sqlite\"\ninputs = [\"geo\"]\npath = \"store.db\"\n",
            broker.bootstrap()
        ),
    )
    .unwrap();
    let db = tmp.path().join("store.db");
    let p = start_pipeline(tmp.path(), "flowb.toml");
    wait_for_rows(&db, "access_log", 3000, 60, &broker);
    sigterm(p);
    let c = rusqlite::Connection::open(&db).unwrap();
    let filled: i64 = c
        .query_row(
            "SELECT count(*) FROM access_log WHERE province <> '' AND isp <> ''",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(filled, 3000);
    let bandwidth: i64 = c
        .query_row(
            "SELECT sum(bytes) FROM access_log WHERE province = '测试省'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(bandwidth > 0);
}

/// kill -9 the pipeline again and again while it consumes 100k events:
/// SQLite ends with exactly 100k rows (offsets stored with the rows).
#[test]
fn pipeline_kill_9_loses_and_duplicates_nothing() {
    let broker = Broker::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    gen_to_topic(&broker, "sensors", 100_000, "oceanic");
    std::fs::write(
        tmp.path().join("eo.toml"),
        format!(
            // A static member: a restarted pipeline takes its partitions
            // back at once instead of waiting for the dead one's session.
            "[sources.kafka]\ntype = \"kafka\"\nbrokers = \"{}\"\ntopics = [\"oceanic\"]\ngroup = \"eo\"\nformat = \"json\"\n\n[sources.kafka.librdkafka]\n\"group.instance.id\" = \"eo-1\"\n\"session.timeout.ms\" = \"6000\"\n\n[sinks.store]\ntype = \"sqlite\"\ninputs = [\"kafka\"]\npath = \"store.db\"\nbatch = 500\n",
            broker.bootstrap()
        ),
    )
    .unwrap();
    let db = tmp.path().join("store.db");
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let mut p = start_pipeline(tmp.path(), "eo.toml");
        std::thread::sleep(Duration::from_millis(700 + 300 * (kills % 3)));
        let done = sqlite_count(&db, "kafka_consumer") >= 100_000;
        let _ = p.kill();
        let _ = p.wait();
        if done {
            break;
        }
        kills += 1;
        assert!(
            Instant::now() < deadline,
            "only {} rows after {kills} kills",
            sqlite_count(&db, "kafka_consumer")
        );
    }
    assert!(
        kills >= 2,
        "the pipeline finished before it could be killed enough: {kills}"
    );
    assert_eq!(sqlite_count(&db, "kafka_consumer"), 100_000);
}

/// Anonymous resident memory of a process in bytes (Linux `/proc`): what it
/// allocated, without the pages of its own executable (tens of MiB of a
/// debug build, which vary with what the binary links in).
fn anon_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A sink that stops taking data (a FIFO nobody reads) while 150k lines of
/// 1 KiB (~150 MB) wait in the topic: the pipeline's memory stays bounded
/// (librdkafka's prefetch is capped, channels are bounded) and, once the
/// reader drains the FIFO, every line comes out once.
#[test]
fn a_stalled_sink_keeps_memory_bounded_and_loses_nothing() {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let broker = Broker::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let total = 150_000u64;
    // Uncompressed: what librdkafka queues is what it fetched.
    let pad = "x".repeat(1000);
    let input: String = (0..total).map(|i| format!("{i:08} {pad}\n")).collect();
    kcat(&broker, &["-P", "-t", "stall"], Some(&input));
    drop(input);
    let fifo = tmp.path().join("out.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo failed");
    // Opened for reading without blocking (O_NONBLOCK), so the pipeline's
    // open for writing succeeds; nothing is read yet.
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(0o4000)
        .open(&fifo)
        .unwrap();
    std::fs::write(
        tmp.path().join("stall.toml"),
        format!(
            "[sources.kafka]\ntype = \"kafka\"\nbrokers = \"{}\"\ntopics = [\"stall\"]\ngroup = \"stall\"\n\n[sinks.out]\ntype = \"file\"\ninputs = [\"kafka\"]\npath = \"out.fifo\"\n",
            broker.bootstrap()
        ),
    )
    .unwrap();
    let mut p = start_pipeline(tmp.path(), "stall.toml");
    let pid = p.id();
    let mut peak = 0;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(200));
        peak = peak.max(anon_rss_bytes(pid));
    }
    assert!(
        p.try_wait().unwrap().is_none(),
        "the pipeline exited while stalled"
    );
    // librdkafka's defaults would queue 64 MiB (100k messages) here.
    assert!(
        peak < 48 << 20,
        "a stalled pipeline grew to {} MiB",
        peak >> 20
    );
    // Drain: every line arrives exactly once.
    let mut lines = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let deadline = Instant::now() + Duration::from_secs(120);
    while lines < total {
        match reader.read(&mut buf) {
            Ok(n) => lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("reading the FIFO: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "only {lines} of {total} lines arrived"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let extra = reader.read(&mut buf).unwrap_or(0);
    assert_eq!(extra, 0, "more lines than were produced");
    let _ = p.kill();
    let _ = p.wait();
}

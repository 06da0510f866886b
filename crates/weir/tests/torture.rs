//! Torture, bounded for CI: the broker killed with SIGKILL again and again
//! while an idempotent acks=all producer sends numbered messages. At the end
//! every acknowledged message is in the topic exactly once, in order.
//! Also `weir bench`, run small, as a user would.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Broker, kcat};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

struct Acked(Arc<Mutex<Vec<u64>>>);

impl rdkafka::ClientContext for Acked {}

impl ProducerContext for Acked {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, n: usize) {
        if result.is_ok() {
            self.0.lock().unwrap().push(n as u64);
        }
    }
}

#[test]
fn acknowledged_messages_survive_repeated_sigkill_exactly_once_in_order() {
    // The group member must be able to join between two kills.
    let mut broker = Broker::start(&["--set", "group.initial.rebalance.delay.ms=0"]);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let producer: BaseProducer<Acked> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "60000")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .create_with_context(Acked(acked.clone()))
        .unwrap();
    let producer = Arc::new(producer);
    let sender = {
        let (producer, stop) = (producer.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let body = format!("{n:010}");
                match producer
                    .send(BaseRecord::<(), str, usize>::with_opaque_to("numbers", n).payload(&body))
                {
                    Ok(()) => n += 1,
                    Err(_) => {
                        producer.poll(Duration::from_millis(5));
                        continue;
                    }
                }
                producer.poll(Duration::ZERO);
                if n.is_multiple_of(100) {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            n
        })
    };
    // A group member reads along and commits what it has read; after every
    // restart it must resume from its committed offset: never skip ahead.
    let group = {
        let (bootstrap, stop) = (broker.bootstrap(), stop.clone());
        std::thread::spawn(move || group_member_under_kills(&bootstrap, &stop))
    };
    // Kill and restart the broker at uneven moments.
    let mut cycles = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(torture_secs()) {
        std::thread::sleep(Duration::from_millis(700 + 311 * (cycles % 4)));
        broker.kill9();
        std::thread::sleep(Duration::from_millis(100 + 50 * (cycles % 3)));
        broker.spawn();
        cycles += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    let (read, committed) = group.join().unwrap();
    producer
        .flush(Duration::from_secs(90))
        .expect("every message delivered or failed");
    let acked: BTreeSet<u64> = acked.lock().unwrap().iter().copied().collect();
    assert!(cycles >= 10, "only {cycles} kill cycles");
    assert!(
        acked.len() > 1000,
        "only {} of {sent} acknowledged",
        acked.len()
    );
    // Read everything back.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "torture-check")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("numbers", 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut seen: Vec<u64> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "reading back took too long ({} read)",
            seen.len()
        );
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => seen.push(
                std::str::from_utf8(m.payload().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap(),
            ),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => panic!("reading back: {e}"),
            None => {}
        }
    }
    let stored: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(
        stored.len(),
        seen.len(),
        "{} duplicated messages",
        seen.len() - stored.len()
    );
    let lost: Vec<&u64> = acked.difference(&stored).take(5).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but lost, e.g. {lost:?} ({cycles} kills)"
    );
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "out of order");
    // The group's committed offset survived every kill.
    assert!(
        read > 100 && committed > 0,
        "the group member read {read}, committed {committed}"
    );
    let member: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "torture-group")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition("numbers", 0);
    let stored = member
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    let offset = stored.elements()[0].offset().to_raw().unwrap_or(-1);
    assert!(
        offset >= committed,
        "committed offset went back from {committed} to {offset} ({cycles} kills)"
    );
    // Clients close while the broker still answers (a consumer closing
    // against a stopped broker waits for its coordinator for ~40 s).
    drop((member, consumer, producer));
    broker.stop();
}

/// How long the crash torture runs: 25 s in CI, longer with
/// WEIR_TORTURE_SECS (see scripts/torture-long.sh).
fn torture_secs() -> u64 {
    std::env::var("WEIR_TORTURE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25)
}

/// Consumes "numbers" in group torture-group, committing synchronously every
/// 200 messages, until `stop`. Asserts that no offset is skipped (each
/// message is at most one past the highest seen). Returns how many were
/// read and the highest offset whose commit the broker acknowledged.
fn group_member_under_kills(bootstrap: &str, stop: &AtomicBool) -> (u64, i64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "torture-group")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .create()
        .unwrap();
    consumer.subscribe(&["numbers"]).unwrap();
    let (mut read, mut next, mut committed) = (0u64, 0i64, 0i64);
    while !stop.load(Ordering::Relaxed) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            assert!(
                m.offset() <= next,
                "the group member skipped from {next} to {} after a restart",
                m.offset()
            );
            next = next.max(m.offset() + 1);
            read += 1;
            if read % 200 == 0 {
                let mut tpl = rdkafka::TopicPartitionList::new();
                tpl.add_partition_offset("numbers", 0, rdkafka::Offset::Offset(m.offset() + 1))
                    .unwrap();
                if consumer
                    .commit(&tpl, rdkafka::consumer::CommitMode::Sync)
                    .is_ok()
                {
                    committed = committed.max(m.offset() + 1);
                }
            }
        }
    }
    (read, committed)
}

#[test]
fn weir_bench_measures_a_broker_and_the_parser() {
    let broker = Broker::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("results.jsonl");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("bench")
            .args(args)
            .args(["--json", json.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let b = broker.bootstrap();
    let p = run(&[
        "produce",
        "-b",
        &b,
        "--topic",
        "bt",
        "--messages",
        "20000",
        "--acks",
        "all",
        "--partitions",
        "2",
        "--quiet",
    ]);
    assert!(
        p.starts_with("produce: ") && p.contains("msg/s") && p.contains("p99.9"),
        "{p}"
    );
    let c = run(&[
        "consume",
        "-b",
        &b,
        "--topic",
        "bt",
        "--messages",
        "20000",
        "--quiet",
    ]);
    assert!(c.starts_with("consume: "), "{c}");
    let r = run(&[
        "roundtrip",
        "-b",
        &b,
        "--topic",
        "rt",
        "--messages",
        "2000",
        "--rate",
        "2000",
        "--quiet",
    ]);
    assert!(r.starts_with("roundtrip: ") && r.contains("p99"), "{r}");
    let l = run(&["pipeline", "--messages", "10000"]);
    assert!(l.starts_with("pipeline parse_nginx: "), "{l}");
    // End to end: the lines go through the broker into SQLite.
    let e = run(&[
        "pipeline",
        "-b",
        &b,
        "--topic",
        "nginx",
        "--messages",
        "5000",
    ]);
    assert!(
        e.starts_with("pipeline topic -> parse_nginx -> sqlite: "),
        "{e}"
    );
    let m = run(&[
        "limits",
        "--dir",
        tmp.path().to_str().unwrap(),
        "--bytes",
        "20000000",
    ]);
    assert!(m.starts_with("limits: loopback TCP "), "{m}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0]["bench"], "produce");
    assert_eq!(lines[0]["messages"], 20000);
    assert!(lines[0]["msgs_per_s"].as_f64().unwrap() > 0.0);
    assert!(lines[2]["p99_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(lines[4]["messages"], 5000, "every row stored");
    for k in [
        "tcp_mb_per_s",
        "page_cache_mb_per_s",
        "fdatasync_mb_per_s",
        "memcpy_mb_per_s",
    ] {
        assert!(lines[5][k].as_f64().unwrap() > 0.0, "{k}: {}", lines[5]);
    }
}

/// The null broker acknowledges everything and stores nothing: librdkafka
/// produces to it and consumes from it as from a real broker.
#[test]
fn the_null_broker_serves_librdkafka_producers_and_consumers() {
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let null = common::Proc(
        std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args([
                "bench",
                "null-broker",
                "--listen",
                &addr,
                "--partitions",
                "2",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::wait_port(port);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("bench")
            .args(args)
            .args(["-b", &addr, "--quiet"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let p = run(&[
        "produce",
        "--topic",
        "n",
        "--messages",
        "50000",
        "--acks",
        "all",
    ]);
    assert!(p.starts_with("produce: "), "{p}");
    let p = run(&[
        "produce",
        "--topic",
        "n",
        "--messages",
        "50000",
        "--acks",
        "all",
        "-X",
        "enable.idempotence=true",
    ]);
    assert!(p.starts_with("produce: "), "{p}");
    let c = run(&["consume", "--topic", "n", "--messages", "200000"]);
    assert!(c.starts_with("consume: "), "{c}");
    // --partitions is honoured.
    let p = run(&[
        "produce",
        "--topic",
        "wide",
        "--partitions",
        "3",
        "--messages",
        "3000",
    ]);
    assert!(p.starts_with("produce: "), "{p}");
    common::need_command("kcat", "apt-get install -y kcat");
    let meta = std::process::Command::new("kcat")
        .args(["-b", &addr, "-L", "-t", "wide"])
        .output()
        .unwrap();
    let meta = String::from_utf8_lossy(&meta.stdout);
    assert!(meta.contains("with 3 partitions"), "{meta}");
    common::sigterm(null);
}

/// Unmounts on drop.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

fn produce_numbers(broker: &Broker, from: u64, count: u64) -> (Vec<u64>, Vec<String>) {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    struct Ctx(Arc<Mutex<Vec<u64>>>, Arc<Mutex<Vec<String>>>);
    impl rdkafka::ClientContext for Ctx {}
    impl ProducerContext for Ctx {
        type DeliveryOpaque = usize;
        fn delivery(&self, result: &DeliveryResult<'_>, n: usize) {
            match result {
                Ok(_) => self.0.lock().unwrap().push(n as u64),
                Err((e, _)) => self.1.lock().unwrap().push(e.to_string()),
            }
        }
    }
    let producer: BaseProducer<Ctx> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("acks", "all")
        .set("enable.idempotence", "false")
        .set("retries", "0")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "15000")
        .create_with_context(Ctx(acked.clone(), errors.clone()))
        .unwrap();
    let body = "x".repeat(1000);
    for n in from..from + count {
        let payload = format!("{n:010}{body}");
        while producer
            .send(
                BaseRecord::<(), str, usize>::with_opaque_to("full", n as usize).payload(&payload),
            )
            .is_err()
        {
            producer.poll(Duration::from_millis(5));
        }
        producer.poll(Duration::ZERO);
    }
    let started = Instant::now();
    producer
        .flush(Duration::from_secs(60))
        .expect("every message answered, not hung");
    assert!(started.elapsed() < Duration::from_secs(60));
    let a = acked.lock().unwrap().clone();
    let e = errors.lock().unwrap().clone();
    (a, e)
}

#[test]
fn a_full_disk_gives_producers_errors_and_production_resumes_when_space_returns() {
    if std::env::var_os("WEIR_SKIP_MOUNT_TESTS").is_some() {
        return; // explicit opt-out where mounting is impossible (README)
    }
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
        .arg(&mnt)
        .status()
        .expect("running mount");
    assert!(
        status.success(),
        "mount -t tmpfs needs root (CI runs as root); WEIR_SKIP_MOUNT_TESTS=1 skips this explicitly"
    );
    let guard = Tmpfs(mnt.clone());
    let mut broker = Broker::start_in(&mnt.join("data"), &["--set", "log.segment.bytes=1048576"]);
    // 20 MB into 6 MB: the broker must answer with errors, not hang.
    let (acked, errors) = produce_numbers(&broker, 0, 20_000);
    assert!(
        !errors.is_empty(),
        "no producer saw an error on a full disk"
    );
    assert!(acked.len() > 1000, "only {} messages fit", acked.len());
    // Space comes back: production resumes.
    let status = std::process::Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(status.success());
    let (more, errors) = produce_numbers(&broker, 100_000, 2000);
    assert!(
        errors.is_empty(),
        "errors after space returned: {:?}",
        &errors[..errors.len().min(3)]
    );
    assert_eq!(more.len(), 2000);
    // Every acknowledged message is readable, once; and after a restart.
    broker.stop();
    broker.spawn();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "full-check")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("full", 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "reading back took too long");
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => seen.push(
                std::str::from_utf8(&m.payload().unwrap()[..10])
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
            ),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => panic!("reading back: {e}"),
            None => {}
        }
    }
    let stored: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(stored.len(), seen.len(), "duplicates");
    for n in acked.iter().chain(more.iter()) {
        assert!(stored.contains(n), "acknowledged message {n} is missing");
    }
    broker.stop();
    drop(guard);
}

/// A proxy in front of the broker that keeps every client-to-broker frame
/// (length prefix included). The broker advertises the proxy, so a real
/// client's whole session, bootstrap and leader connections alike, goes
/// through it.
struct Recorder {
    addr: String,
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
    upstream: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
}

impl Recorder {
    fn start() -> Self {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let r = Recorder {
            addr: listener.local_addr().unwrap().to_string(),
            frames: Arc::default(),
            upstream: Arc::default(),
            stop: Arc::default(),
        };
        let (frames, upstream, stop) = (r.frames.clone(), r.upstream.clone(), r.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(upstream.lock().unwrap().as_str()) else {
                    continue;
                };
                let (mut c_read, mut s_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut s_read, mut c_write) = (server, client);
                let frames = frames.clone();
                std::thread::spawn(move || {
                    loop {
                        let mut len = [0u8; 4];
                        if c_read.read_exact(&mut len).is_err() {
                            break;
                        }
                        let mut body = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
                        if c_read.read_exact(&mut body).is_err() {
                            break;
                        }
                        let mut frame = len.to_vec();
                        frame.extend_from_slice(&body);
                        frames.lock().unwrap().push(frame.clone());
                        if s_write.write_all(&frame).is_err() {
                            break;
                        }
                    }
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s_read, &mut c_write);
                    let _ = c_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        r
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Real librdkafka frames (ApiVersions, Metadata, Produce with real
/// batches, Fetch, group and offset requests), mutated (bit flips, bytes
/// overwritten, truncation, lengths that lie) and thrown at the broker,
/// which must keep serving well-behaved clients and never panic.
#[test]
fn mutated_real_frames_never_disturb_the_broker() {
    let recorder = Recorder::start();
    let broker = Broker::start(&[
        "--set",
        "socket.request.max.bytes=1048576",
        "--advertised-listener",
        &recorder.addr,
    ]);
    *recorder.upstream.lock().unwrap() = broker.bootstrap();
    let proxy = recorder.addr.as_str();
    {
        let run = |args: &[&str], stdin: Option<&str>| {
            let out = common::run_with_stdin(
                std::process::Command::new("kcat")
                    .args(["-b", proxy])
                    .args(args),
                stdin,
            );
            assert!(
                out.status.success(),
                "kcat {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(
            &["-P", "-t", "fuzzed", "-k", "key", "-z", "lz4"],
            Some("one\ntwo\nthree\n"),
        );
        run(&["-C", "-t", "fuzzed", "-e", "-q"], None);
        run(&["-G", "fuzzers", "-e", "-q", "fuzzed"], None);
    }
    let frames = recorder.frames.lock().unwrap().clone();
    let keys: BTreeSet<i16> = frames
        .iter()
        .filter(|f| f.len() >= 6)
        .map(|f| i16::from_be_bytes([f[4], f[5]]))
        .collect();
    for api in [0i16, 1, 3, 18] {
        assert!(
            keys.contains(&api),
            "no frame of API {api} recorded: {keys:?}"
        );
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    use std::io::{Read, Write};
    let rounds = (1500 * torture_secs() / 25) as u32;
    for round in 0..rounds {
        let mut f = frames[(rand() % frames.len() as u64) as usize].clone();
        match rand() % 5 {
            0 => {
                // Flip a few bits after the length prefix.
                for _ in 0..1 + rand() % 4 {
                    let i = 4 + (rand() as usize % (f.len() - 4).max(1));
                    if i < f.len() {
                        f[i] ^= 1 << (rand() % 8);
                    }
                }
            }
            1 => {
                // Overwrite a run of bytes with random ones.
                let start = 4 + (rand() as usize % (f.len() - 4).max(1));
                let end = (start + 1 + rand() as usize % 16).min(f.len());
                for b in &mut f[start.min(end)..end] {
                    *b = rand() as u8;
                }
            }
            2 => {
                // Truncate, keeping the declared length (the rest never comes).
                let keep = 4 + rand() as usize % (f.len() - 4).max(1);
                f.truncate(keep);
            }
            3 => {
                // Truncate and declare the shorter length.
                let keep = 4 + rand() as usize % (f.len() - 4).max(1);
                f.truncate(keep);
                let len = (keep - 4) as i32;
                f[..4].copy_from_slice(&len.to_be_bytes());
            }
            _ => {
                // A length that lies upwards, then garbage.
                let len = i32::from_be_bytes([f[0], f[1], f[2], f[3]]) + (rand() % 1000) as i32;
                f[..4].copy_from_slice(&len.to_be_bytes());
                f.extend((0..rand() % 64).map(|_| rand() as u8));
            }
        }
        let mut s = std::net::TcpStream::connect(("127.0.0.1", broker.port))
            .unwrap_or_else(|e| panic!("broker gone at round {round}: {e}\n{}", broker.log()));
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let _ = s.write_all(&f);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
        if round % 500 == 499 {
            // A well-behaved client is still served.
            kcat(
                &broker,
                &["-P", "-t", "steady"],
                Some(&format!("r{round}\n")),
            );
        }
    }
    let out = kcat(
        &broker,
        &["-C", "-t", "steady", "-e", "-q", "-f", "%s\n"],
        None,
    );
    assert_eq!(out, "r499\nr999\nr1499\n");
    let log = broker.log();
    assert!(!log.contains("panicked"), "{log}");
}

//! Log compaction through a real `weir broker` and librdkafka clients: a
//! compacted topic converges to the latest value of each key, deletes
//! disappear after `delete.retention.ms`, and acknowledged updates survive
//! kill -9 while the cleaner runs. A checker reads the topic back and
//! decides.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Broker, run_with_stdin};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

/// Creates a compacted topic with `weir topic create`.
fn create_compacted(broker: &Broker, topic: &str, extra: &[&str]) {
    let mut args = vec![
        "topic",
        "create",
        topic,
        "-p",
        "1",
        "-c",
        "cleanup.policy=compact",
        "-c",
        "min.cleanable.dirty.ratio=0.01",
    ];
    for e in extra {
        args.extend(["-c", e]);
    }
    let out = run_with_stdin(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(&args)
            .args(["--brokers", &broker.bootstrap()]),
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Delivery reports: (key, value) of every acknowledged message, in the
/// order the acknowledgements came.
/// Acknowledged (key, value) pairs, shared with the delivery callback.
type Log = Arc<Mutex<Vec<(String, Option<String>)>>>;

struct Acked(Log);

impl rdkafka::ClientContext for Acked {}

impl ProducerContext for Acked {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(m) = result {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let value = m.payload().map(|v| String::from_utf8_lossy(v).into_owned());
            self.0.lock().unwrap().push((key, value));
        }
    }
}

fn producer(broker: &Broker, acked: &Log) -> BaseProducer<Acked> {
    ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .create_with_context(Acked(acked.clone()))
        .unwrap()
}

/// Sends one update (`None`: a tombstone), waiting while the queue is full.
fn send(p: &BaseProducer<Acked>, topic: &str, key: &str, value: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut r = BaseRecord::<str, str, ()>::with_opaque_to(topic, ()).key(key);
        if let Some(v) = value {
            r = r.payload(v);
        }
        match p.send(r) {
            Ok(()) => {
                p.poll(Duration::ZERO);
                return;
            }
            Err(_) => {
                assert!(Instant::now() < deadline, "the producer queue stayed full");
                p.poll(Duration::from_millis(5));
            }
        }
    }
}

/// Everything in the topic, from the beginning: (offset, key, value).
fn read_all(broker: &Broker, topic: &str) -> Vec<(i64, String, Option<String>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "compaction-check")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .set("fetch.message.max.bytes", "4096")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "reading back took too long ({} read)",
            out.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push((
                m.offset(),
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.payload().map(|v| String::from_utf8_lossy(v).into_owned()),
            )),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return out,
            Some(Err(e)) => panic!("consuming: {e}"),
            None => {}
        }
    }
}

/// The checker: offsets only grow, and the latest record of each key in
/// the topic is the latest acknowledged update of that key (a deleted key
/// may also be gone entirely).
fn check_latest(read: &[(i64, String, Option<String>)], acked: &[(String, Option<String>)]) {
    for w in read.windows(2) {
        assert!(
            w[0].0 < w[1].0,
            "offsets out of order: {} then {}",
            w[0].0,
            w[1].0
        );
    }
    let expected: BTreeMap<&str, &Option<String>> =
        acked.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let got: BTreeMap<&str, &Option<String>> =
        read.iter().map(|(_, k, v)| (k.as_str(), v)).collect();
    for (k, v) in &expected {
        match got.get(k) {
            Some(g) => assert_eq!(g, v, "latest value of {k}"),
            None => assert!(v.is_none(), "{k} lost its latest value {v:?}"),
        }
    }
    for k in got.keys() {
        assert!(expected.contains_key(k), "{k} was never written");
    }
}

#[test]
fn a_compacted_topic_keeps_the_latest_value_of_each_key_of_100k_updates() {
    let broker = Broker::start(&["--set", "log.cleaner.backoff.ms=100"]);
    create_compacted(
        &broker,
        "profiles",
        &[
            "segment.bytes=65536",
            "delete.retention.ms=2000",
            "segment.ms=1000",
        ],
    );
    let acked = Arc::new(Mutex::new(Vec::new()));
    let p = producer(&broker, &acked);
    for i in 0..100_000 {
        let value = format!("v{i}-{}", "x".repeat(i % 40));
        send(&p, "profiles", &format!("k{}", i % 1000), Some(&value));
    }
    for k in 0..100 {
        send(&p, "profiles", &format!("k{k}"), None);
    }
    p.flush(Duration::from_secs(60)).unwrap();
    // segment.ms rolls the segment holding the deletes on the next append.
    std::thread::sleep(Duration::from_millis(1100));
    send(&p, "profiles", "end", Some("end"));
    p.flush(Duration::from_secs(30)).unwrap();
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), 100_101, "every update acknowledged");
    // Converges: one record per live key (900 + "end"), the deletes gone
    // once delete.retention.ms has passed since they were first cleaned.
    let deadline = Instant::now() + Duration::from_secs(60);
    let read = loop {
        let read = read_all(&broker, "profiles");
        check_latest(&read, &acked);
        if read.len() == 901 && read.iter().all(|r| r.2.is_some()) {
            break read;
        }
        assert!(
            Instant::now() < deadline,
            "not compacted after 60 s: {} records, {} tombstones",
            read.len(),
            read.iter().filter(|r| r.2.is_none()).count()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(read.last().unwrap().0, 100_100, "offsets are never reused");
    for k in 0..100 {
        assert!(
            !read.iter().any(|r| r.1 == format!("k{k}")),
            "k{k} was deleted"
        );
    }
    assert!(
        broker.log().contains("log cleaner compacted a partition"),
        "{}",
        broker.log()
    );
}

#[test]
fn acknowledged_updates_survive_kill_9_during_cleaning() {
    let mut broker = Broker::start(&["--set", "log.cleaner.backoff.ms=20"]);
    create_compacted(
        &broker,
        "state",
        &["segment.bytes=16384", "segment.ms=1000"],
    );
    let acked = Arc::new(Mutex::new(Vec::new()));
    for round in 0..6u32 {
        let p = producer(&broker, &acked);
        for i in 0..20_000u32 {
            let key = format!("k{}", (i * 7 + round) % 500);
            send(&p, "state", &key, Some(&format!("r{round}-{i}")));
        }
        p.flush(Duration::from_secs(60)).unwrap();
        drop(p);
        // Kill while the cleaner works through what was just written.
        std::thread::sleep(Duration::from_millis(30 + 70 * u64::from(round % 3)));
        broker.kill9();
        broker.spawn();
        let acked = acked.lock().unwrap().clone();
        let read = read_all(&broker, "state");
        check_latest(&read, &acked);
        assert_eq!(read.last().map(|r| r.0), Some(acked.len() as i64 - 1));
    }
    // In the end the cleaner finishes its work: one record per key, once
    // segment.ms rolled the last updates out of the active segment.
    std::thread::sleep(Duration::from_millis(1100));
    let p = producer(&broker, &acked);
    send(&p, "state", "end", Some("end"));
    p.flush(Duration::from_secs(30)).unwrap();
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), 120_001);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let read = read_all(&broker, "state");
        check_latest(&read, &acked);
        if read.len() == 501 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} records after 60 s; broker log:\n{}",
            read.len(),
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

//! Kafka behaviours real clients rely on beyond produce and consume, each
//! checked with a real client against the real `weir broker` binary:
//! fetch size limits (KIP-74), ListOffsets max-timestamp (KIP-734), group
//! types (ListGroups v5), transactional producers failing fast, old
//! Produce versions, a prompt shutdown with clients connected.
//! The Python cases are in `tests/interop/semantics.py`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Broker, need_command, need_python_module, run_ok, run_with_stdin};

const PIP: &str = "python3 -m pip install confluent-kafka";

fn case(broker: &Broker, name: &str, args: &[&str]) -> String {
    need_python_module("confluent_kafka", PIP);
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop");
    let out = Command::new("python3")
        .current_dir(dir)
        .arg("semantics.py")
        .arg("--bootstrap")
        .arg(broker.bootstrap())
        .arg(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running semantics.py {name}: {e}"));
    run_ok(out, &format!("semantics.py {name} {args:?}"), broker)
}

#[test]
fn a_consumer_below_two_partitions_of_large_messages_consumes_everything() {
    let broker = Broker::start(&[]);
    let out = case(&broker, "fetch-limits", &[]);
    assert!(out.contains("consumed 30 of 30"), "{out}");
}

#[test]
fn every_kafka_topic_config_round_trips_and_refusals_say_why() {
    let broker = Broker::start(&[]);
    let out = case(&broker, "configs", &[]);
    assert!(out.contains("configs round-trip"), "{out}");
}

#[test]
fn acks_all_needs_min_insync_replicas() {
    let broker = Broker::start(&[]);
    case(&broker, "min-insync", &[]);
}

const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

#[test]
fn max_timestamp_names_the_record_in_every_codec() {
    let broker = Broker::start(&[]);
    for codec in CODECS {
        let out = case(&broker, "max-timestamp", &["--codec", codec]);
        assert!(out.contains("at offset 1"), "{out}");
    }
}

#[test]
fn keyless_records_on_a_compacted_topic_fail_alone_in_every_codec() {
    let broker = Broker::start(&[]);
    for codec in CODECS {
        case(&broker, "record-errors", &["--codec", codec]);
    }
}

#[test]
fn a_topic_with_a_compression_type_stores_every_batch_in_it() {
    let mut broker = Broker::start(&[]);
    let mut topics = Vec::new();
    for codec in CODECS {
        let out = case(&broker, "recompression", &["--codec", codec]);
        let topic = out
            .split("topic ")
            .nth(1)
            .map(|t| t.trim().to_owned())
            .unwrap_or_else(|| panic!("no topic in {out}"));
        topics.push(topic);
    }
    broker.stop();
    for topic in topics {
        let dump = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["log", "dump", "--batches"])
            .arg(broker.dir.join(format!("{topic}-0")))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&dump.stdout);
        let batches: Vec<&str> = text.lines().filter(|l| l.contains("compression")).collect();
        assert!(!batches.is_empty(), "{text}");
        assert!(
            batches.iter().all(|l| l.contains("compression Some(Gzip)")),
            "{topic}: every batch stored in gzip:\n{text}"
        );
    }
}

#[test]
fn group_listings_carry_the_classic_type_and_honour_type_filters() {
    let broker = Broker::start(&[]);
    case(&broker, "group-types", &[]);
}

#[test]
fn init_transactions_fails_at_once_with_a_fatal_error() {
    let mut broker = Broker::start(&[]);
    let out = case(&broker, "transactions", &[]);
    assert!(out.contains("not supported"), "{out}");
    broker.stop();
    assert!(
        broker.log().contains("transactions are not supported"),
        "the broker says why:\n{}",
        broker.log()
    );
}

#[test]
fn old_produce_versions_are_refused_with_unsupported_version_and_logged() {
    need_command("kcat", "apt-get install -y kcat");
    let mut broker = Broker::start(&[]);
    // librdkafka sends ApiVersions unless it assumes a 0.9 broker; then it
    // produces with Produce v1 (message format v1).
    let out = run_with_stdin(
        Command::new("timeout")
            .args(["30", "kcat", "-b", &broker.bootstrap(), "-P", "-t", "old"])
            .args(["-X", "api.version.request=false"])
            .args(["-X", "broker.version.fallback=0.9.0"]),
        Some("one\n"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "kcat fails the message: {stderr}"
    );
    assert!(
        stderr.contains("API version not supported"),
        "kcat is told why: {stderr}"
    );
    broker.stop();
    assert!(
        broker.log().contains("Produce v1 is not supported"),
        "the broker logs the refusal:\n{}",
        broker.log()
    );
}

#[test]
fn sigterm_with_idle_and_busy_clients_stops_within_a_second_and_cleanly() {
    need_command("kcat", "apt-get install -y kcat");
    let mut broker = Broker::start(&[]);
    let lines: String = (0..2000).map(|i| format!("message {i}\n")).collect();
    common::kcat(&broker, &["-P", "-t", "idle"], Some(&lines));
    // A group member and a plain consumer waiting at the end of the topic,
    // and a kcat metadata client, all connected and idle.
    let mut clients: Vec<common::Proc> = Vec::new();
    for args in [
        vec!["-G", "idle-group", "idle"],
        vec!["-C", "-t", "idle", "-o", "end"],
    ] {
        clients.push(common::Proc(
            Command::new("kcat")
                .arg("-b")
                .arg(broker.bootstrap())
                .args(&args)
                .arg("-q")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        ));
    }
    std::thread::sleep(Duration::from_secs(4));
    let t = Instant::now();
    broker.stop();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(1), "stopping took {took:?}");
    assert!(
        broker.dir.join("idle-0/clean-shutdown").exists(),
        "the log was not closed cleanly:\n{}",
        broker.log()
    );
}

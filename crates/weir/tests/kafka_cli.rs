//! `weir topic`, `weir produce`, `weir consume` and `weir group` against a
//! real `weir broker`, as a Kafka user runs them; answers cross-checked
//! with kcat.

mod common;

use std::process::{Command, Output};

use common::{Broker, kcat, run_with_stdin};

fn weir(broker: &Broker, args: &[&str], stdin: Option<&str>) -> Output {
    run_with_stdin(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(args)
            .args(["--brokers", &broker.bootstrap()]),
        stdin,
    )
}

fn ok(broker: &Broker, args: &[&str], stdin: Option<&str>) -> String {
    let out = weir(broker, args, stdin);
    assert!(
        out.status.success(),
        "weir {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(broker: &Broker, args: &[&str]) -> String {
    let out = weir(broker, args, None);
    assert!(!out.status.success(), "weir {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn topics_are_created_described_altered_and_deleted() {
    let broker = Broker::start(&[]);
    let out = ok(
        &broker,
        &[
            "topic",
            "create",
            "oceanic",
            "-p",
            "3",
            "-c",
            "retention.ms=86400000",
        ],
        None,
    );
    assert_eq!(out.trim(), "Created topic oceanic.");
    assert!(fails(&broker, &["topic", "create", "oceanic"]).contains("already exists"));
    assert!(
        ok(
            &broker,
            &["topic", "create", "oceanic", "--if-not-exists"],
            None
        )
        .contains("exists already")
    );
    assert!(ok(&broker, &["topic", "list"], None).contains("oceanic\t3 partitions"));
    let kcat_meta = kcat(&broker, &["-L", "-t", "oceanic"], None);
    assert!(kcat_meta.contains("3 partitions"), "{kcat_meta}");
    ok(
        &broker,
        &[
            "topic",
            "alter-config",
            "oceanic",
            "--set",
            "retention.bytes=1048576",
        ],
        None,
    );
    let d = ok(&broker, &["topic", "describe", "oceanic"], None);
    let first = d.lines().next().unwrap();
    assert!(
        first.starts_with("Topic: oceanic\tPartitionCount: 3\tReplicationFactor: 1")
            && first.contains("retention.bytes=1048576")
            && first.contains("retention.ms=86400000"),
        "{d}"
    );
    assert_eq!(d.lines().filter(|l| l.contains("Leader: 0")).count(), 3);
    assert_eq!(
        ok(&broker, &["topic", "delete", "oceanic"], None).trim(),
        "Deleted topic oceanic."
    );
    assert!(fails(&broker, &["topic", "describe", "oceanic"]).contains("Unknown topic"));
}

#[test]
fn produce_and_consume_with_keys_headers_offsets_and_formats() {
    let broker = Broker::start(&[]);
    ok(&broker, &["topic", "create", "t", "-p", "1"], None);
    let out = ok(
        &broker,
        &["produce", "t", "-K", ":", "-H", "src=cli", "-z", "lz4"],
        Some("k1:one\nk2:two\nthree\n"),
    );
    assert_eq!(out.trim(), "produced 3 messages to t");
    // kcat sees what weir produced.
    let k = kcat(
        &broker,
        &["-C", "-t", "t", "-e", "-q", "-f", "%k|%s|%h\n"],
        None,
    );
    assert_eq!(k, "k1|one|src=cli\nk2|two|src=cli\n|three|src=cli\n");
    // And weir reads what kcat produced.
    kcat(&broker, &["-P", "-t", "t", "-k", "k4"], Some("four\n"));
    let all = ok(
        &broker,
        &[
            "consume",
            "t",
            "--from-beginning",
            "-e",
            "-f",
            "%o:%k:%s\\n",
        ],
        None,
    );
    assert_eq!(all, "0:k1:one\n1:k2:two\n2::three\n3:k4:four\n");
    assert_eq!(
        ok(&broker, &["consume", "t", "--offset", "2", "-e"], None),
        "three\nfour\n"
    );
    assert_eq!(
        ok(&broker, &["consume", "t", "--offset", "-1", "-e"], None),
        "four\n"
    );
    assert_eq!(
        ok(
            &broker,
            &["consume", "t", "--from-beginning", "-c", "2"],
            None
        ),
        "one\ntwo\n"
    );
    assert_eq!(
        ok(
            &broker,
            &["consume", "t", "--from-time", "0", "-e", "-c", "1"],
            None
        ),
        "one\n"
    );
    // A file, with its progress bar on stderr.
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("lines.txt");
    std::fs::write(
        &f,
        (0..1000).map(|i| format!("line {i}\n")).collect::<String>(),
    )
    .unwrap();
    let out = weir(
        &broker,
        &["produce", "t", "--file", f.to_str().unwrap()],
        None,
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("100.0%"));
    assert!(
        fails(&broker, &["consume", "missing-topic", "-e"]).contains("unknown topic missing-topic")
    );
}

#[test]
fn groups_are_listed_described_reset_and_deleted() {
    let broker = Broker::start(&[]);
    // One partition: which partitions a member reads first is up to
    // librdkafka, and only partitions with commits have a lag to show.
    ok(&broker, &["topic", "create", "g", "-p", "1"], None);
    let lines: String = (0..10).map(|i| format!("{i}:m{i}\n")).collect();
    ok(&broker, &["produce", "g", "-K", ":"], Some(&lines));
    // A group member reads 6 of 10 and commits.
    let first = ok(&broker, &["consume", "g", "-g", "readers", "-c", "6"], None);
    assert_eq!(first.lines().count(), 6);
    assert!(ok(&broker, &["group", "list"], None).contains("readers"));
    let d = ok(&broker, &["group", "describe", "readers"], None);
    let lag: i64 = d
        .lines()
        .filter(|l| l.starts_with("g\t"))
        .map(|l| l.split('\t').nth(4).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(lag, 4, "{d}");
    // The group resumes where it committed.
    let rest = ok(&broker, &["consume", "g", "-g", "readers", "-e"], None);
    assert_eq!(rest.lines().count(), 4);
    let mut seen: Vec<&str> = first.lines().chain(rest.lines()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 10);
    // Reset to the beginning: everything again.
    let reset = ok(
        &broker,
        &[
            "group",
            "reset-offsets",
            "readers",
            "--topic",
            "g",
            "--to-earliest",
        ],
        None,
    );
    assert_eq!(reset.trim(), "readers\tg\t0\t0");
    assert_eq!(
        ok(&broker, &["consume", "g", "-g", "readers", "-e"], None)
            .lines()
            .count(),
        10
    );
    ok(
        &broker,
        &[
            "group",
            "reset-offsets",
            "readers",
            "--topic",
            "g",
            "--to-latest",
        ],
        None,
    );
    assert_eq!(
        ok(&broker, &["consume", "g", "-g", "readers", "-e"], None),
        ""
    );
    assert_eq!(
        ok(&broker, &["group", "delete", "readers"], None).trim(),
        "Deleted group readers."
    );
    assert!(!ok(&broker, &["group", "list"], None).contains("readers"));
}

#[test]
fn an_unreachable_broker_is_one_clear_line() {
    let out = run_with_stdin(
        Command::new(env!("CARGO_BIN_EXE_weir")).args([
            "topic",
            "list",
            "--brokers",
            "127.0.0.1:1",
        ]),
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.trim().lines().count() == 1 && err.contains("cannot reach a broker at 127.0.0.1:1"),
        "{err}"
    );
}

/// `weir broker --config server.properties`: a one-node KRaft
/// `server.properties` in Kafka's own shape runs as it is (named
/// listeners, log.dirs from the file), and kcat produces and consumes.
#[test]
fn weir_broker_runs_from_a_kafka_server_properties() {
    let tmp = tempfile::tempdir().unwrap();
    let (port, controller) = (common::free_port(), common::free_port());
    let data = tmp.path().join("kraft-logs");
    let props = tmp.path().join("server.properties");
    std::fs::write(
        &props,
        format!(
            "# one node, broker and controller\n\
             process.roles=broker,controller\n\
             node.id=1\n\
             controller.quorum.voters=1@127.0.0.1:{controller}\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
             inter.broker.listener.name=PLAINTEXT\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
             controller.listener.names=CONTROLLER\n\
             listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
             num.network.threads=3\n\
             num.io.threads=8\n\
             log.dirs={}\n\
             num.partitions=1\n\
             offsets.topic.replication.factor=1\n\
             transaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\n\
             log.retention.hours=168\n\
             log.retention.check.interval.ms=300000\n",
            data.display()
        ),
    )
    .unwrap();
    let child = common::Proc(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["broker", "--config"])
            .arg(&props)
            .env("WEIR_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::wait_port(port);
    common::need_command("kcat", "apt-get install -y kcat");
    let bootstrap = format!("127.0.0.1:{port}");
    let run = |args: &[&str], stdin: Option<&str>| {
        let out = run_with_stdin(
            Command::new("kcat").arg("-b").arg(&bootstrap).args(args),
            stdin,
        );
        assert!(
            out.status.success(),
            "kcat {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["-P", "-t", "props"], Some("a\nb\nc\n"));
    let got = run(&["-C", "-t", "props", "-e", "-o", "beginning"], None);
    assert_eq!(got.lines().collect::<Vec<_>>(), ["a", "b", "c"]);
    assert!(
        data.join("meta.properties").exists(),
        "log.dirs from the file"
    );
    let meta = std::fs::read_to_string(data.join("meta.properties")).unwrap();
    assert!(meta.contains("node.id=1"), "{meta}");
    common::sigterm(child);
    // Three voters without a controller listener are refused at start,
    // saying why.
    std::fs::write(
        &props,
        format!(
            "process.roles=broker,controller\nnode.id=1\ncontroller.quorum.voters=1@127.0.0.1:1,2@127.0.0.1:2,3@127.0.0.1:3\nlisteners=PLAINTEXT://127.0.0.1:{port}\nlog.dirs={}\n",
            data.display()
        ),
    )
    .unwrap();
    let out = run_with_stdin(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["broker", "--config"])
            .arg(&props),
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("listeners") && err.contains("needs a controller listener"),
        "{err}"
    );
}

//! The `http` source as Telegraf and curl users reach it: line protocol
//! POSTed to the CnosDB and InfluxDB write endpoints of a running
//! pipeline lands in a Weir topic and in SQLite before the answer comes.

mod common;

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Broker, free_port, kcat, need_command, sigterm, sqlite_count, start_pipeline};

/// curl's answer: (status, body).
fn curl(args: &[&str]) -> (u16, String) {
    need_command("curl", "apt-get install -y curl");
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn line_protocol_posted_lands_in_a_topic_and_in_sqlite() {
    let broker = Broker::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        tmp.path().join("ingest.toml"),
        format!(
            "data_dir = \"data\"\n\n[sources.write]\ntype = \"http\"\naddress = \"127.0.0.1:{port}\"\nusername = \"root\"\n\n[sinks.topic]\ntype = \"kafka\"\ninputs = [\"write\"]\nbrokers = \"{}\"\ntopic = \"metrics\"\nencoding = \"line_protocol\"\n\n[sinks.store]\ntype = \"sqlite\"\ninputs = [\"write\"]\npath = \"store.db\"\nbatch = 100\n",
            broker.bootstrap()
        ),
    )
    .unwrap();
    let pipeline = start_pipeline(tmp.path(), "ingest.toml");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the http source did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let base = format!("http://127.0.0.1:{port}");
    // Flow A's shape, as Telegraf's outputs.http sends it to CnosDB.
    let lines: String = (0..1000)
        .map(|i| {
            format!(
                "kafka_consumer,host=web1 pressure={}.5,temperature=20.{} {}\n",
                i % 10,
                i % 10,
                1_700_000_000_000_000_000i64 + i
            )
        })
        .collect();
    let file = tmp.path().join("lines.txt");
    std::fs::write(&file, &lines).unwrap();
    let data = format!("@{}", file.display());
    let (status, body) = curl(&[
        "-u",
        "root:",
        "-XPOST",
        &format!("{base}/api/v1/write?db=public"),
        "--data-binary",
        &data,
    ]);
    assert_eq!(status, 200, "{body}");
    // Stored before the answer: no waiting here.
    assert_eq!(
        sqlite_count(&tmp.path().join("store.db"), "kafka_consumer"),
        1000
    );
    // InfluxDB 1.x endpoint, gzip body, seconds precision, u/p parameters.
    std::fs::write(
        tmp.path().join("more.txt"),
        "cpu,host=a usage=0.5 1700000000\ncpu,host=b usage=0.7 1700000001\n",
    )
    .unwrap();
    let gz = Command::new("gzip")
        .arg("-k")
        .arg(tmp.path().join("more.txt"))
        .status()
        .unwrap();
    assert!(gz.success());
    let data = format!("@{}", tmp.path().join("more.txt.gz").display());
    let (status, body) = curl(&[
        "-XPOST",
        "-H",
        "Content-Encoding: gzip",
        &format!("{base}/write?db=telegraf&precision=s&u=root&p="),
        "--data-binary",
        &data,
    ]);
    assert_eq!(status, 204, "{body}");
    assert_eq!(sqlite_count(&tmp.path().join("store.db"), "cpu"), 2);
    // A bad line: 400 naming it, nothing stored.
    let (status, body) = curl(&[
        "-u",
        "root:",
        "-XPOST",
        &format!("{base}/write?db=t"),
        "--data-binary",
        "cpu usage=1\ncpu usage=\n",
    ]);
    assert_eq!(status, 400);
    assert!(body.contains("line 2"), "{body}");
    // No credentials: 401.
    let (status, _) = curl(&[
        "-XPOST",
        &format!("{base}/api/v1/write?db=public"),
        "--data-binary",
        "m v=1",
    ]);
    assert_eq!(status, 401);
    assert_eq!(curl(&["-I", &format!("{base}/ping")]).0, 204);
    // The topic holds the 1002 accepted points as line protocol.
    let got = kcat(
        &broker,
        &["-C", "-t", "metrics", "-e", "-q", "-f", "%s\n"],
        None,
    );
    let points: Vec<&str> = got.lines().collect();
    assert_eq!(points.len(), 1002);
    assert!(
        points[0].starts_with(
            "kafka_consumer,host=web1 pressure=0.5,temperature=20 1700000000000000000"
        ),
        "{}",
        points[0]
    );
    assert!(
        points.contains(&"cpu,host=b usage=0.7 1700000001000000000"),
        "{points:?}"
    );
    sigterm(pipeline);
}

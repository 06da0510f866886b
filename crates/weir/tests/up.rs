//! `weir up` as a newcomer runs it: both flows visible through `weir sql`
//! within 30 s, line protocol POSTed to the CnosDB endpoint stored, data
//! kept across a restart, a clean stop on SIGTERM.
//!
//! The IP database comes from the npm registry on first use (kept in
//! `~/.cache/weir`); without npm the flow B check fails saying so.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Proc, free_port};

fn up(data: &Path, kafka: u16, http: u16, extra: &[&str]) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.with_extension("log"))
        .unwrap();
    Proc(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("up")
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{kafka}")])
            .args(["--http", &format!("127.0.0.1:{http}")])
            .args(extra)
            .env("WEIR_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    )
}

/// `weir sql --format csv`: the single value of a one-cell answer.
fn sql_value(http: u16, statement: &str) -> Option<i64> {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "sql",
            "--http",
            &format!("127.0.0.1:{http}"),
            "--format",
            "csv",
            statement,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

fn stop(mut p: Proc) {
    let _ = Command::new("kill")
        .args(["-TERM", &p.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = p.try_wait().unwrap() {
            assert!(status.success(), "weir up exited with {status}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "weir up did not stop within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn both_flows_show_in_weir_sql_within_30_s_and_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (kafka, http) = (free_port(), free_port());
    let started = Instant::now();
    let p = up(&data, kafka, http, &[]);
    let log = || std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
    let flows = "SELECT CAST((SELECT count(*) FROM kafka_consumer) > 0 AND \
                 (SELECT count(*) FROM access_log WHERE province NOT IN ('', 'private') AND isp <> '') > 0 AS BIGINT)";
    while sql_value(http, flows) != Some(1) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no rows with province and ISP in 30 s (an IP database needs npm: apt-get install -y npm)\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // Backslash commands work one-shot too.
    let tables = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["sql", "--http", &format!("127.0.0.1:{http}"), "\\d"])
        .output()
        .unwrap();
    let tables = String::from_utf8_lossy(&tables.stdout);
    assert!(
        tables.contains("kafka_consumer") && tables.contains("access_log"),
        "{tables}"
    );
    // Weir stands in for the time-series database of flow A.
    let url =
        weir_pipeline::http::Url::parse(&format!("http://127.0.0.1:{http}/api/v1/write?db=public"))
            .unwrap();
    let (status, _) = weir_pipeline::http::request(
        "POST",
        &url,
        &[],
        b"ship_metrics,host=a speed=12.5 1700000000000000000\nship_metrics,host=b speed=3 1700000000000000001\n",
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        sql_value(http, "select count(*) from ship_metrics"),
        Some(2)
    );
    let rows = sql_value(http, "select count(*) from kafka_consumer").unwrap();
    stop(p);
    // The data is still there after a restart, without the generators.
    let p = up(&data, kafka, http, &["--no-demo"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", http)).is_err() {
        assert!(
            Instant::now() < deadline,
            "weir up did not restart\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let again = sql_value(http, "select count(*) from kafka_consumer").unwrap();
    assert!(
        again >= rows,
        "{again} rows after the restart, {rows} before"
    );
    assert_eq!(
        sql_value(http, "select count(*) from ship_metrics"),
        Some(2)
    );
    stop(p);
}

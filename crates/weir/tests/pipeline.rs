//! `weir pipeline` as a user runs it: TOML files, stdin, SQLite.

mod common;

use std::process::Command;

fn weir(args: &[&str], stdin: Option<&str>, dir: &std::path::Path) -> std::process::Output {
    common::run_with_stdin(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(args)
            .current_dir(dir)
            .env("WEIR_LOG", "info"),
        stdin,
    )
}

#[test]
fn flow_a_generator_to_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("a.toml"),
        r#"
        [sources.sensors]
        type = "generator"
        format = "sensors"
        count = 3000

        [transforms.parse]
        type = "parse_json"
        inputs = ["sensors"]
        host = "web1"

        [sinks.store]
        type = "sqlite"
        inputs = ["parse"]
        path = "data/store.db"
        batch = 500
        "#,
    )
    .unwrap();
    let out = weir(&["pipeline", "check", "a.toml"], None, tmp.path());
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok: 3 components")
    );
    let out = weir(&["pipeline", "run", "a.toml"], None, tmp.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = rusqlite::Connection::open(tmp.path().join("data/store.db")).unwrap();
    let (n, lo, hi, host): (i64, f64, f64, String) = db
        .query_row(
            "SELECT count(*), min(pressure), max(visibility), max(host) FROM kafka_consumer",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(n, 3000);
    assert!(lo >= 0.0 && hi < 100.0);
    assert_eq!(host, "web1");
}

#[test]
fn a_bad_line_is_counted_and_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("b.toml"),
        "[sources.in]\ntype = \"stdin\"\n[transforms.p]\ntype = \"parse_nginx\"\ninputs = [\"in\"]\n[sinks.out]\ntype = \"stdout\"\ninputs = [\"p\"]\n",
    )
    .unwrap();
    let good = r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.0" 200 5 "-" "ua""#;
    let input = format!("{good}\n{good}\nthis is not an access line\n{good}\n");
    let out = weir(&["pipeline", "run", "b.toml"], Some(&input), tmp.path());
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad event skipped") && err.contains("errors=1"),
        "{err}"
    );
}

#[test]
fn flow_b_nginx_parse_geoip_to_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let xdb = weir_pipeline::geoip::build::xdb(&[(
        std::net::Ipv4Addr::new(0, 0, 0, 1),
        std::net::Ipv4Addr::new(255, 255, 255, 254),
        "中国|0|测试省|测试市|测试网",
    )]);
    std::fs::write(tmp.path().join("geo.xdb"), xdb).unwrap();
    std::fs::write(
        tmp.path().join("b.toml"),
        r#"
        [sources.web]
        type = "generator"
        format = "nginx"
        count = 2000

        [transforms.parse]
        type = "parse_nginx"
        inputs = ["web"]

        [transforms.geo]
        type = "geoip"
        inputs = ["parse"]
        database = "geo.xdb"

        [sinks.store]
        type = "sqlite"
        inputs = ["geo"]
        path = "store.db"
        "#,
    )
    .unwrap();
    let out = weir(&["pipeline", "run", "b.toml"], None, tmp.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = rusqlite::Connection::open(tmp.path().join("store.db")).unwrap();
    let total: i64 = db
        .query_row("SELECT count(*) FROM access_log", [], |r| r.get(0))
        .unwrap();
    let located: i64 = db
        .query_row(
            "SELECT count(*) FROM access_log WHERE province = '测试省' AND isp = '测试网'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let private: i64 = db
        .query_row(
            "SELECT count(*) FROM access_log WHERE province = 'private'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(total, 2000);
    assert_eq!(located + private, 2000, "every row has a province");
    assert!(
        located > 1500 && private > 50,
        "located {located}, private {private}"
    );
    let bytes: i64 = db
        .query_row("SELECT sum(bytes) FROM access_log", [], |r| r.get(0))
        .unwrap();
    assert!(bytes > 0);
}

#[test]
fn a_missing_database_fails_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("c.toml"),
        "[sources.in]\ntype = \"stdin\"\n[transforms.g]\ntype = \"geoip\"\ninputs = [\"in\"]\ndatabase = \"none.xdb\"\n[sinks.out]\ntype = \"stdout\"\ninputs = [\"g\"]\n",
    )
    .unwrap();
    let out = weir(&["pipeline", "run", "c.toml"], None, tmp.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("g: reading none.xdb"), "{err}");
}

#[test]
fn bad_events_go_to_the_dead_letter_output() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("d.toml"),
        r#"
        [sources.in]
        type = "stdin"
        [transforms.p]
        type = "parse_influx"
        inputs = ["in"]
        [sinks.good]
        type = "file"
        inputs = ["p"]
        path = "good.jsonl"
        [sinks.dead]
        type = "file"
        inputs = ["p.errors"]
        path = "dead.jsonl"
        "#,
    )
    .unwrap();
    let out = weir(
        &["pipeline", "run", "d.toml"],
        Some("cpu v=1 1\nnot line protocol\ncpu v=2 2\n"),
        tmp.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let good = std::fs::read_to_string(tmp.path().join("good.jsonl")).unwrap();
    assert_eq!(good.lines().count(), 2);
    let dead = std::fs::read_to_string(tmp.path().join("dead.jsonl")).unwrap();
    assert_eq!(dead.lines().count(), 1, "{dead}");
    assert!(
        dead.contains("\"raw\":\"not line protocol\"") && dead.contains("\"error\":"),
        "{dead}"
    );
}

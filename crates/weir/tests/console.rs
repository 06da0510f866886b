//! The web console and `/metrics` against a running `weir up` with both
//! demo flows: every console endpoint over HTTP, the read-only default and
//! the admin changes, `/metrics` parsed by the Prometheus client library's
//! own text parser (Python `prometheus_client`), and the pages rendered by
//! headless Chromium (Debian `chromium`): the overview, a topic page with
//! its messages and the flow B bandwidth chart.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Proc, free_port, need_command, need_python_module};
use serde_json::{Value, json};
use weir_pipeline::http::{Url, request};

struct Up {
    proc: Option<Proc>,
    http: u16,
    kafka: u16,
    _tmp: tempfile::TempDir,
}

impl Up {
    fn start(extra: &[&str], config: Option<&str>) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let (kafka, http) = (free_port(), free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
        cmd.arg("up")
            .arg("--data-dir")
            .arg(tmp.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{kafka}")])
            .args(["--http", &format!("127.0.0.1:{http}")])
            .args(extra)
            .env("WEIR_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(tmp.path().join("up.log")).unwrap(),
            ));
        if let Some(text) = config {
            let path = tmp.path().join("weir.toml");
            std::fs::write(&path, text).unwrap();
            cmd.arg("--config").arg(path);
        }
        let up = Self {
            proc: Some(Proc(cmd.spawn().unwrap())),
            http,
            kafka,
            _tmp: tmp,
        };
        up.wait_for(30, "the console answering", |u| {
            u.get("/api/v1/console/overview").0 == 200
        });
        up
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._tmp.path().join("up.log")).unwrap_or_default()
    }

    /// A request; bodies go as JSON, as the console's page sends them.
    fn call(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let json: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("Content-Type", "application/json")]
        };
        self.call_with(method, path, json, body)
    }

    fn call_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        let url = Url::parse(&format!("http://127.0.0.1:{}{path}", self.http)).unwrap();
        match request(method, &url, headers, body, Duration::from_secs(20)) {
            Ok((status, body)) => (status, String::from_utf8_lossy(&body).into_owned()),
            Err(e) => (0, e),
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.call("GET", path, b"")
    }

    /// GET that must answer 200 with JSON.
    fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    fn wait_for(&self, secs: u64, what: &str, ok: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !ok(self) {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {secs} s\nweir up log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// SIGTERM; the broker must close its logs cleanly (the console must
    /// not keep it alive).
    fn stop(mut self) {
        if let Some(p) = self.proc.take() {
            common::sigterm(p);
        }
        let log = self.log();
        assert!(
            !log.contains("requests still running"),
            "the broker did not close cleanly:\n{log}"
        );
    }
}

fn find<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_array()
        .and_then(|l| l.iter().find(|x| x[key] == value))
        .unwrap_or_else(|| panic!("no {key} = {value} in {list}"))
}

#[test]
fn every_console_endpoint_answers_and_changes_are_refused_by_default() {
    let up = Up::start(&[], None);
    // Both flows running: messages in the topics, rows stored, two samples
    // of history.
    up.wait_for(40, "both flows storing rows", |u| {
        let o = u.json("/api/v1/console/overview");
        o["pipelines"][0]["stored"].as_u64().unwrap_or(0) > 20
            && o["series"].as_array().is_some_and(|s| !s.is_empty())
    });

    let o = up.json("/api/v1/console/overview");
    assert_eq!(o["broker"]["bootstrap"], format!("127.0.0.1:{}", up.kafka));
    assert!(o["broker"]["topics"].as_u64().unwrap() >= 2, "{o}");
    assert!(o["broker"]["messages"].as_u64().unwrap() > 0, "{o}");
    assert!(o["broker"]["data_bytes"].as_u64().unwrap() > 0, "{o}");
    assert_eq!(o["pipelines"][0]["name"], "flows");
    assert_eq!(o["admin"], false);
    let last = o["series"].as_array().unwrap().last().unwrap().clone();
    assert!(last["t"].as_i64().unwrap() > 1_700_000_000_000, "{last}");
    assert!(last.get("messages_in_per_s").is_some(), "{last}");
    assert!(o["broker"]["messages_out_per_s"].is_number(), "{o}");

    let t = up.json("/api/v1/console/topics");
    let oceanic = find(&t["topics"], "name", "oceanic");
    assert_eq!(oceanic["partitions"], 1);
    assert!(oceanic["messages"].as_u64().unwrap() > 0, "{oceanic}");
    assert!(oceanic["bytes_in"].as_u64().unwrap() > 0, "{oceanic}");
    assert_eq!(
        find(&t["topics"], "name", "__consumer_offsets")["internal"],
        true
    );

    let topic = up.json("/api/v1/console/topics/oceanic");
    assert!(topic["partitions"][0]["log_end_offset"].as_u64().unwrap() > 0);
    assert!(topic["configs"]["retention.ms"].is_string(), "{topic}");
    assert_eq!(up.get("/api/v1/console/topics/nope").0, 404);

    // The message browser: latest, from an offset, from a time.
    let m = up.json("/api/v1/console/topics/oceanic/messages?limit=5");
    let msgs = m["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 5, "{m}");
    assert!(msgs[0]["json"]["temperature"].is_number(), "{m}");
    let m = up.json("/api/v1/console/topics/oceanic/messages?offset=0&limit=3&partition=0");
    let offsets: Vec<i64> = m["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(offsets, vec![0, 1, 2], "{m}");
    let hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - 3_600_000;
    let m = up.json(&format!(
        "/api/v1/console/topics/nginxlog/messages?time={hour_ago}&limit=2"
    ));
    assert_eq!(m["messages"].as_array().unwrap().len(), 2, "{m}");
    assert_eq!(m["messages"][0]["offset"], 0, "{m}");
    assert!(
        m["messages"][0]["value"]
            .as_str()
            .unwrap()
            .contains("HTTP/1.1"),
        "{m}"
    );
    assert_eq!(
        up.get("/api/v1/console/topics/oceanic/messages?partition=7")
            .0,
        404
    );
    for bad in [
        "limit=lots",
        "limit=0",
        "limit=-1",
        "limit=501",
        "offset=-5",
        "offset=3&time=0",
    ] {
        let (status, body) = up.get(&format!("/api/v1/console/topics/oceanic/messages?{bad}"));
        assert_eq!(status, 400, "{bad}: {body}");
    }
    assert_eq!(up.call("PUT", "/api/v1/console/topics", b"").0, 405);
    // SQL on the embedded store only reads.
    let (status, body) = up.call(
        "POST",
        "/api/v1/sql?db=public",
        b"drop table if exists kafka_consumer",
    );
    assert_eq!(status, 403, "{body}");
    for denied in [
        &b"create external table p (a varchar) stored as csv location '/etc/passwd'"[..],
        b"copy (select 1) to '/tmp/out.csv'",
        b"create database other",
    ] {
        let (status, body) = up.call("POST", "/api/v1/sql?db=public", denied);
        assert_eq!(status, 403, "{body}");
    }
    let (status, body) = up.call("POST", "/api/v1/sql?db=public", b"show tables");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("table_name\n"), "{body}");

    // Groups: the flows' consumers, their members, offsets and lag.
    up.wait_for(20, "flow A's group to commit", |u| {
        u.json("/api/v1/console/groups/weir-flow-a")["offsets"]
            .as_array()
            .is_some_and(|o| !o.is_empty())
    });
    let g = up.json("/api/v1/console/groups");
    let a = find(&g["groups"], "group", "weir-flow-a");
    assert_eq!(a["members"], 1, "{g}");
    // Brokers: this one, alive, the controller, leading every partition.
    let b = up.json("/api/v1/console/brokers");
    let me = &b["brokers"][0];
    assert_eq!(b["brokers"].as_array().map(Vec::len), Some(1), "{b}");
    assert_eq!(
        (&me["state"], &me["controller"]),
        (&json!("alive"), &json!(true)),
        "{b}"
    );
    assert!(me["partitions_led"].as_u64().unwrap() >= 2, "{b}");
    let g = up.json("/api/v1/console/groups/weir-flow-a");
    assert_eq!(g["members"][0]["assignment"]["oceanic"][0], 0, "{g}");
    let off = find(&g["offsets"], "topic", "oceanic");
    assert!(off["committed"].as_i64().unwrap() > 0, "{g}");
    assert!(off["lag"].is_u64(), "{g}");
    up.wait_for(10, "a lag sample of flow A's group", |u| {
        u.json("/api/v1/console/groups/weir-flow-a")["lag_history"]
            .as_array()
            .is_some_and(|h| h.iter().any(|s| s["partitions"]["oceanic/0"].is_u64()))
    });
    assert_eq!(up.get("/api/v1/console/groups/nope").0, 404);

    // Pipelines: the component graph with counters.
    let p = up.json("/api/v1/console/pipelines");
    let comps = &p["pipelines"][0]["components"];
    assert_eq!(find(comps, "id", "sensor_generator")["role"], "source");
    assert_eq!(find(comps, "id", "parse_nginx")["type"], "parse_nginx");
    let sink = find(comps, "id", "kafka_consumer");
    assert_eq!(sink["role"], "sink");
    assert_eq!(sink["inputs"][0], "oceanic");
    assert!(sink["events_out"].as_u64().unwrap() > 0, "{sink}");

    // Read-only by default.
    for (method, path, body) in [
        ("POST", "/api/v1/console/topics", &br#"{"name":"x"}"#[..]),
        ("DELETE", "/api/v1/console/topics/oceanic", b""),
        (
            "POST",
            "/api/v1/console/groups/weir-flow-a/reset",
            br#"{"topic":"oceanic","to":"earliest"}"#,
        ),
    ] {
        let (status, answer) = up.call(method, path, body);
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert!(answer.contains("admin = true"), "{answer}");
    }
    assert!(
        up.json("/api/v1/console/topics/oceanic")["partitions"][0]["log_end_offset"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(up.get("/api/v1/console/nothing").0, 404);

    // The page and its assets.
    let (status, html) = up.get("/console/");
    assert_eq!(status, 200);
    assert!(html.contains("/console/app.js"), "{html}");
    let (status, js) = up.get("/console/app.js");
    assert!(status == 200 && js.contains("lineChart"), "{status}");
    assert_eq!(up.get("/console/app.css").0, 200);
    up.stop();
}

#[test]
fn admin_console_creates_and_deletes_topics_and_resets_offsets() {
    let up = Up::start(&["--no-demo"], Some("[console]\nadmin = true\n"));
    assert_eq!(up.json("/api/v1/console/overview")["admin"], true);
    let (status, body) = up.call(
        "POST",
        "/api/v1/console/topics",
        br#"{"name":"made-here","partitions":3,"configs":{"retention.ms":"3600000"}}"#,
    );
    assert_eq!(status, 201, "{body}");
    let topic = up.json("/api/v1/console/topics/made-here");
    assert_eq!(topic["partitions"].as_array().unwrap().len(), 3);
    assert_eq!(topic["overrides"]["retention.ms"], "3600000");
    let (status, body) = up.call("POST", "/api/v1/console/topics", br#"{"name":"made-here"}"#);
    assert_eq!(status, 400, "{body}");
    for bad in [
        r#"{"name":"p","partitions":0}"#,
        r#"{"name":"p","partitions":4294967297}"#,
        "not json",
    ] {
        let (status, body) = up.call("POST", "/api/v1/console/topics", bad.as_bytes());
        assert_eq!(status, 400, "{bad}: {body}");
    }
    // Only the console's own page may change things: JSON bodies, not
    // cross-site requests.
    let (status, body) = up.call_with(
        "POST",
        "/api/v1/console/topics",
        &[("Content-Type", "text/plain")],
        br#"{"name":"csrf"}"#,
    );
    assert_eq!(status, 415, "{body}");
    let (status, body) = up.call_with(
        "DELETE",
        "/api/v1/console/topics/made-here",
        &[("Sec-Fetch-Site", "cross-site")],
        b"",
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(up.get("/api/v1/console/topics/csrf").0, 404);

    // A group with committed offsets, then reset to the beginning.
    let brokers = format!("127.0.0.1:{}", up.kafka);
    let out = common::run_with_stdin(
        Command::new(env!("CARGO_BIN_EXE_weir")).args([
            "produce",
            "-b",
            &brokers,
            "made-here",
            "--partition",
            "0",
        ]),
        Some("a\nb\nc\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "consume",
            "-b",
            &brokers,
            "made-here",
            "-g",
            "readers+1&x/y",
            "--from-beginning",
            "-c",
            "3",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let g = up.json("/api/v1/console/groups/readers%2B1%26x%2Fy");
    assert_eq!(
        find(&g["offsets"], "topic", "made-here")["committed"],
        3,
        "{g}"
    );
    let (status, body) = up.call(
        "POST",
        "/api/v1/console/groups/readers%2B1%26x%2Fy/reset",
        br#"{"topic":"made-here","to":"earliest"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let g = up.json("/api/v1/console/groups/readers%2B1%26x%2Fy");
    let p0 = g["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["partition"] == 0)
        .unwrap();
    assert_eq!(p0["committed"], 0, "{g}");
    assert_eq!(p0["lag"], 3, "{g}");

    let (status, body) = up.call("DELETE", "/api/v1/console/topics/made-here", b"");
    assert_eq!(status, 200, "{body}");
    up.wait_for(10, "the topic gone", |u| {
        u.get("/api/v1/console/topics/made-here").0 == 404
    });
    up.stop();
}

/// One sample of `/metrics` as the Prometheus parser reads it.
#[derive(Debug)]
struct Sample {
    family: String,
    kind: String,
    name: String,
    labels: std::collections::BTreeMap<String, String>,
    value: f64,
}

/// Parses exposition text with `prometheus_client.parser`.
fn prometheus_parse(text: &str) -> Vec<Sample> {
    let script = "import sys, json\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = []\n\
        for f in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in f.samples:\n\
        \x20       out.append({'family': f.name, 'kind': f.type, 'name': s.name, 'labels': s.labels, 'value': s.value})\n\
        print(json.dumps(out))\n";
    need_python_module(
        "prometheus_client",
        "python3 -m pip install prometheus-client (its text parser reads /metrics)",
    );
    let out = common::run_with_stdin(Command::new("python3").args(["-c", script]), Some(text));
    assert!(
        out.status.success(),
        "prometheus_client rejected /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    parsed
        .into_iter()
        .map(|s| Sample {
            family: s["family"].as_str().unwrap_or_default().to_owned(),
            kind: s["kind"].as_str().unwrap_or_default().to_owned(),
            name: s["name"].as_str().unwrap_or_default().to_owned(),
            labels: s["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default(),
            value: s["value"].as_f64().unwrap_or(f64::NAN),
        })
        .collect()
}

#[test]
fn metrics_parse_with_the_prometheus_parser_and_cover_broker_topics_groups_pipelines() {
    let up = Up::start(&[], None);
    up.wait_for(40, "flow A's group to commit", |u| {
        u.json("/api/v1/console/groups")["groups"]
            .as_array()
            .is_some_and(|g| {
                g.iter()
                    .any(|x| x["group"] == "weir-flow-a" && x["partitions"] == 1)
            })
    });
    // Flow B reads its topic too (both flows start together; under load
    // one may be a little behind the other).
    up.wait_for(40, "flow B to read nginxlog", |u| {
        u.get("/metrics").1.lines().any(|l| {
            l.strip_prefix("weir_topic_bytes_out_total{topic=\"nginxlog\"} ")
                .is_some_and(|v| v.trim() != "0")
        })
    });
    let (status, text) = up.get("/metrics");
    assert_eq!(status, 200);
    let samples = prometheus_parse(&text);
    let one = |name: &str, labels: &[(&str, &str)]| -> &Sample {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };
    assert!(one("weir_broker_requests_total", &[("api", "Produce")]).value > 0.0);
    assert!(one("weir_broker_requests_total", &[("api", "Fetch")]).value > 0.0);
    let h = one(
        "weir_broker_request_duration_seconds_count",
        &[("api", "Produce")],
    );
    assert_eq!(h.kind, "histogram");
    assert_eq!(h.family, "weir_broker_request_duration_seconds");
    one(
        "weir_broker_request_duration_seconds_bucket",
        &[("api", "Metadata"), ("le", "+Inf")],
    );
    assert!(one("weir_broker_connections_open", &[]).value >= 1.0);
    assert!(one("weir_topic_bytes_in_total", &[("topic", "oceanic")]).value > 0.0);
    assert!(one("weir_topic_bytes_out_total", &[("topic", "nginxlog")]).value > 0.0);
    assert!(one("weir_topic_messages_in_total", &[("topic", "oceanic")]).value > 0.0);
    assert!(one("weir_topic_messages_out_total", &[("topic", "oceanic")]).value > 0.0);
    assert!(
        one(
            "weir_partition_size_bytes",
            &[("topic", "oceanic"), ("partition", "0")]
        )
        .value
            > 0.0
    );
    one(
        "weir_partition_log_end_offset",
        &[("topic", "nginxlog"), ("partition", "0")],
    );
    one("weir_log_fsync_duration_seconds_bucket", &[("le", "+Inf")]);
    one(
        "weir_group_lag",
        &[
            ("group", "weir-flow-a"),
            ("topic", "oceanic"),
            ("partition", "0"),
        ],
    );
    assert!(
        one(
            "weir_group_committed_offset",
            &[("group", "weir-flow-a"), ("topic", "oceanic")]
        )
        .value
            > 0.0
    );
    assert!(
        one(
            "weir_pipeline_events_out_total",
            &[("pipeline", "flows"), ("component", "kafka_consumer")]
        )
        .value
            > 0.0
    );
    one(
        "weir_pipeline_errors_total",
        &[("pipeline", "flows"), ("component", "parse_nginx")],
    );
    one("weir_pipeline_lag", &[("component", "oceanic")]);
    assert!(one("process_resident_memory_bytes", &[]).value > 1e6);
    // Counters are named *_total; every histogram ends in a +Inf bucket
    // equal to its count.
    for s in &samples {
        if s.kind == "counter" {
            assert!(s.name.ends_with("_total"), "{s:?}");
        }
        if s.kind == "histogram" && s.name.ends_with("_count") {
            let inf = samples
                .iter()
                .find(|b| {
                    b.name == format!("{}_bucket", s.family)
                        && b.labels.get("le").map(String::as_str) == Some("+Inf")
                        && s.labels.iter().all(|(k, v)| b.labels.get(k) == Some(v))
                })
                .unwrap_or_else(|| panic!("no +Inf bucket for {s:?}"));
            assert_eq!(inf.value, s.value, "{s:?}");
        }
    }
    up.stop();
}

/// The page as headless Chromium renders it after its scripts ran.
fn render(url: &str, profile: &Path) -> String {
    need_command(
        "chromium",
        "apt-get install chromium (the console's browser test runs it headless)",
    );
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=15000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn headless_chromium_renders_the_overview_a_topic_and_the_flow_b_chart() {
    let up = Up::start(&[], None);
    up.wait_for(40, "flow B rows with provinces", |u| {
        let (status, body) = u.call(
            "POST",
            "/api/v1/sql?db=public",
            b"select count(*) from access_log where province is not null and province != ''",
        );
        status == 200
            && body
                .lines()
                .nth(1)
                .and_then(|l| l.trim().parse::<u64>().ok())
                > Some(20)
    });
    let profile = tempfile::tempdir().unwrap();
    let base = format!("http://127.0.0.1:{}/console/", up.http);

    let dom = render(&format!("{base}#/"), profile.path());
    assert!(dom.contains("id=\"overview-cards\""), "{dom}");
    assert!(dom.contains(&format!("127.0.0.1:{}", up.kafka)), "{dom}");
    assert!(dom.contains("Messages in / s"), "{dom}");
    assert!(
        dom.contains("id=\"pipelines-table\"") && dom.contains(">flows<"),
        "{dom}"
    );

    let dom = render(&format!("{base}#/topics/oceanic"), profile.path());
    assert!(dom.contains("Topic oceanic"), "{dom}");
    assert!(dom.contains("id=\"partitions-table\""), "{dom}");
    assert!(dom.contains("id=\"messages-table\""), "{dom}");
    assert!(
        dom.contains("temperature"),
        "messages with JSON values: {dom}"
    );
    assert!(dom.contains("retention.ms"), "configs: {dom}");

    let dom = render(&format!("{base}#/data"), profile.path());
    let province = dom
        .split("id=\"chart-province\"")
        .nth(1)
        .and_then(|rest| rest.split("id=\"chart-isp\"").next())
        .unwrap_or_else(|| panic!("no flow B province chart: {dom}"));
    assert!(province.contains("Bandwidth by province"), "{province}");
    assert!(
        province.contains("<svg class=\"chart\"") && province.contains("<path"),
        "the chart has no lines: {province}"
    );
    assert!(dom.contains("Status codes"), "{dom}");
    up.stop();
}

#[test]
fn weir_broker_serves_the_console_and_metrics_with_http() {
    let http = free_port();
    let mut broker = common::Broker::start(&["--http", &format!("127.0.0.1:{http}")]);
    common::wait_port(http);
    let out = common::run_with_stdin(
        Command::new(env!("CARGO_BIN_EXE_weir")).args([
            "produce",
            "-b",
            &broker.bootstrap(),
            "standalone",
        ]),
        Some("one\ntwo\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let get = |path: &str| {
        let url = Url::parse(&format!("http://127.0.0.1:{http}{path}")).unwrap();
        let (status, body) = request("GET", &url, &[], b"", Duration::from_secs(20)).unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    let (status, body) = get("/api/v1/console/topics");
    assert_eq!(status, 200, "{body}");
    let t: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        find(&t["topics"], "name", "standalone")["messages"],
        2,
        "{t}"
    );
    let (status, body) = get("/api/v1/console/overview");
    assert_eq!(status, 200, "{body}");
    let o: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(o["pipelines"].as_array().map(Vec::len), Some(0), "{o}");
    let (status, text) = get("/metrics");
    assert_eq!(status, 200);
    let samples = prometheus_parse(&text);
    assert!(
        samples
            .iter()
            .any(|s| s.name == "weir_topic_messages_in_total"
                && s.labels.get("topic").map(String::as_str) == Some("standalone")
                && s.value == 2.0),
        "{text}"
    );
    assert_eq!(get("/console/").0, 200);
    assert_eq!(get("/health").0, 200);
    assert_eq!(get("/elsewhere").0, 404);
    let (status, body) = get("/api/v1/sql?q=select%201");
    assert!(status == 404 && body.contains("weir up"), "{status} {body}");
    // A browser keeps its connection open; the broker still stops cleanly.
    let _idle = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
    broker.stop();
    assert!(
        !broker.log().contains("requests still running"),
        "{}",
        broker.log()
    );
}

//! The embedded time-series store through `weir up`: line protocol over
//! HTTP (a million points, types kept, schemas growing, bad lines and
//! type conflicts refused whole), CnosDB's statements and time SQL, and
//! kill -9 during ingest over HTTP and from a topic with a checker that
//! decides whether anything acknowledged was lost or anything doubled.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Proc, free_port, wait_port};
use weir_pipeline::http::{Url, request};
use weir_pipeline::store::{Answer, Cell};

struct Up {
    proc: Proc,
    http: u16,
    kafka: u16,
    log: std::path::PathBuf,
}

fn up(data: &Path, kafka: u16, http: u16, config: Option<&Path>) -> Up {
    let log = data.with_extension("log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.arg("up")
        .arg("--data-dir")
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{kafka}")])
        .args(["--http", &format!("127.0.0.1:{http}")])
        .arg("--no-demo")
        .env("WEIR_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(file));
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let proc = Proc(cmd.spawn().unwrap());
    wait_port(http);
    Up {
        proc,
        http,
        kafka,
        log,
    }
}

impl Up {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn post(&self, path: &str, body: &[u8]) -> (u16, String) {
        let url = Url::parse(&format!("http://127.0.0.1:{}{path}", self.http)).unwrap();
        match request("POST", &url, &[], body, Duration::from_secs(60)) {
            Ok((s, b)) => (s, String::from_utf8_lossy(&b).into_owned()),
            Err(e) => (0, e.to_string()),
        }
    }

    fn sql(&self, db: &str, q: &str) -> Result<Answer, String> {
        match self.post(&format!("/api/v1/sql?db={db}"), q.as_bytes()) {
            (200, body) => Ok(Answer::from_csv(&body)),
            (s, body) => Err(format!("{s}: {body}")),
        }
    }

    fn cells(&self, db: &str, q: &str) -> Vec<Vec<String>> {
        let a = self
            .sql(db, q)
            .unwrap_or_else(|e| panic!("{q}: {e}\n{}", self.log()));
        a.rows
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|c| match c {
                        Cell::Text(t) => t,
                        other => format!("{other:?}"),
                    })
                    .collect()
            })
            .collect()
    }

    fn one(&self, db: &str, q: &str) -> String {
        self.cells(db, q)
            .first()
            .and_then(|r| r.first().cloned())
            .unwrap_or_default()
    }

    fn kill9(mut self) {
        let _ = self.proc.0.kill();
        let _ = self.proc.0.wait();
    }
}

const T0: i64 = 1_796_601_600_000_000_000; // 2026-12-07T00:00:00Z

#[test]
fn a_million_points_over_http_are_all_queryable_with_their_types_and_bad_writes_store_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let w = up(&tmp.path().join("data"), free_port(), free_port(), None);
    let n: i64 = 1_000_000;
    let per = 20_000;
    for start in (0..n).step_by(per) {
        let mut body = String::with_capacity(per * 90);
        for i in start..start + per as i64 {
            body.push_str(&format!(
                "m,host=h{} f={i}.5,i={i}i,u={i}u,b={},s=\"x{i}\" {}\n",
                i % 10,
                i % 2 == 0,
                T0 + i * 1_000_000
            ));
        }
        let (status, msg) = w.post("/write?db=lp", body.as_bytes());
        assert_eq!(status, 204, "{msg}");
    }
    let sums = w.cells(
        "lp",
        "select count(*), sum(i), sum(u), count(distinct host), sum(case when b then 1 else 0 end), max(s) from m",
    );
    let want_sum = (n * (n - 1) / 2).to_string();
    assert_eq!(
        sums[0],
        [
            n.to_string(),
            want_sum.clone(),
            want_sum,
            "10".into(),
            (n / 2).to_string(),
            "x999999".into()
        ]
    );
    let describe = w.cells("lp", "DESCRIBE TABLE m");
    let kinds: Vec<String> = describe.iter().map(|r| r.join(" ")).collect();
    assert_eq!(
        kinds,
        [
            "time TIMESTAMP(NANOSECOND) TIME",
            "host STRING TAG",
            "f DOUBLE FIELD",
            "i BIGINT FIELD",
            "u BIGINT UNSIGNED FIELD",
            "b BOOLEAN FIELD",
            "s STRING FIELD"
        ]
    );
    // CnosDB-style time SQL.
    assert_eq!(
        w.one(
            "lp",
            "select count(*) from m where time > '2026-12-07T00:10:00Z'"
        ),
        (n - 600_001).to_string()
    );
    let minutes = w.cells(
        "lp",
        "select date_bin(interval '1 minute', time) as t, count(*) from m group by t order by t limit 2",
    );
    assert_eq!(
        minutes,
        [
            ["2026-12-07T00:00:00Z", "60000"],
            ["2026-12-07T00:01:00Z", "60000"]
        ]
    );
    assert_eq!(
        w.one("lp", "select time from m where i = 1"),
        "2026-12-07T00:00:00.001000000Z"
    );
    assert_eq!(
        w.one(
            "lp",
            "select count(*) from m where time > now() - interval '1 hour'"
        ),
        "0"
    );
    // A new tag and field extend the table; older rows read them as null.
    let (status, msg) = w.post(
        "/write?db=lp",
        format!("m,host=a,dc=x extra=1i {}\n", T0 - 1).as_bytes(),
    );
    assert_eq!(status, 204, "{msg}");
    assert_eq!(w.one("lp", "select count(extra) from m"), "1");
    assert_eq!(
        w.one("lp", "select count(*) from m where dc is null"),
        n.to_string()
    );
    // A bad line rejects the whole body, naming the line; a type
    // conflict is refused whole too.
    let (status, msg) = w.post("/write?db=lp", b"m f=1.5 1\nm f= 2\n");
    assert!(status == 400 && msg.contains("line 2"), "{status} {msg}");
    let (status, msg) = w.post("/write?db=lp", b"m f=2.5 1\nm f=\"text\" 2\n");
    assert!(
        status == 400 && msg.contains("column") && msg.contains("Str"),
        "{status} {msg}"
    );
    assert_eq!(w.one("lp", "select count(*) from m"), (n + 1).to_string());
    // CnosDB's statements.
    let dbs = w.cells("lp", "SHOW DATABASES");
    assert!(dbs.iter().any(|r| r[0] == "lp"), "{dbs:?}");
    assert_eq!(w.cells("lp", "SHOW TABLES"), [["m"]]);
    let denied = w
        .sql("lp", "CREATE DATABASE other WITH TTL '30d'")
        .unwrap_err();
    assert!(denied.starts_with("403"), "{denied}");
    // Everything is still there after a clean restart.
    let (kafka, http) = (w.kafka, w.http);
    let data = tmp.path().join("data");
    stop(w);
    let w = up(&data, kafka, http, None);
    assert_eq!(
        w.one("lp", "select count(*), sum(i) from m"),
        (n + 1).to_string()
    );
    stop(w);
}

fn stop(mut w: Up) {
    let _ = Command::new("kill")
        .args(["-TERM", &w.proc.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = w.proc.try_wait().unwrap() {
            assert!(
                status.success(),
                "weir up exited with {status}\n{}",
                w.log()
            );
            return;
        }
        assert!(Instant::now() < deadline, "weir up did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cnosdb_database_statements_retention_and_compaction_through_weir_up() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("weir.toml");
    std::fs::write(
        &config,
        "[console]\nadmin = true\n\n[store]\nflush_seconds = 1\n",
    )
    .unwrap();
    let w = up(
        &tmp.path().join("data"),
        free_port(),
        free_port(),
        Some(&config),
    );
    w.sql("public", "CREATE DATABASE metrics WITH TTL '2d'")
        .unwrap();
    w.sql("public", "CREATE DATABASE IF NOT EXISTS metrics")
        .unwrap();
    assert!(
        w.sql("public", "CREATE DATABASE metrics")
            .unwrap_err()
            .contains("exists")
    );
    assert_eq!(
        w.cells("public", "DESCRIBE DATABASE metrics"),
        [["metrics", "2d"]]
    );
    w.sql("public", "ALTER DATABASE metrics SET TTL '7d'")
        .unwrap();
    assert_eq!(
        w.cells("public", "DESCRIBE DATABASE metrics"),
        [["metrics", "7d"]]
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let day = 86_400_000_000_000i64;
    let body = format!("cpu v=1 {}\ncpu v=2 {}\n", now - 10 * day, now);
    assert_eq!(w.post("/write?db=metrics", body.as_bytes()).0, 204);
    assert_eq!(w.one("metrics", "select count(*) from cpu"), "2");
    // Flushed within a second, the file of ten days ago is past the TTL
    // and goes at the maintenance after the flush.
    let files = tmp.path().join("data/store/metrics/data");
    let parquet = || {
        std::fs::read_dir(&files)
            .map(|d| d.count())
            .unwrap_or(usize::MAX)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while w.one("metrics", "select count(*) from cpu") != "1" || parquet() != 1 {
        assert!(
            Instant::now() < deadline,
            "the expired file stayed: {} rows, {} files",
            w.one("metrics", "select count(*) from cpu"),
            parquet()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        w.one("metrics", "select cast(sum(v) as bigint) from cpu"),
        "2"
    );
    // Three flushes more of today make four small files of one day and
    // tier, merged into one with the answers unchanged.
    for i in 0..3 {
        let body = format!("cpu v={} {}\n", 10 + i, now + i + 1);
        assert_eq!(w.post("/write?db=metrics", body.as_bytes()).0, 204);
        // Each in a flush of its own: a new file (or, the last, the merge).
        let deadline = Instant::now() + Duration::from_secs(20);
        while parquet() != i as usize + 2 && !(i == 2 && parquet() == 1) {
            assert!(Instant::now() < deadline, "no flush: {} files", parquet());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while parquet() != 1 {
        assert!(
            Instant::now() < deadline,
            "four small files not merged: {}",
            parquet()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        w.cells(
            "metrics",
            "select count(*), cast(sum(v) as bigint) from cpu"
        ),
        [["4", "35"]]
    );
    w.sql("public", "DROP DATABASE metrics").unwrap();
    assert!(w.sql("metrics", "select 1").unwrap_err().starts_with("404"));
    w.sql("public", "DROP DATABASE IF EXISTS metrics").unwrap();
    stop(w);
}

/// `seq` values 0..n of every batch a writer got a 204 for, and of the
/// batches whose answer it never saw.
#[derive(Default)]
struct Sent {
    acked: BTreeSet<i64>,
    unsure: BTreeSet<i64>,
}

#[test]
fn kill_9_during_http_ingest_loses_no_acknowledged_point_and_tears_no_write() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (kafka, http) = (free_port(), free_port());
    let per = 500i64;
    let mut sent = Sent::default();
    let mut batch = 0i64;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for round in 0..5 {
        let w = up(&data, kafka, http, None);
        let deadline = Instant::now() + Duration::from_millis(400 + (rng % 1200));
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Writers race the kill: the answer of the last batch is unsure.
        let writer = {
            let url = Url::parse(&format!("http://127.0.0.1:{http}/write?db=k")).unwrap();
            let first = batch;
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut b = first;
                loop {
                    let mut body = String::new();
                    for j in 0..per {
                        body.push_str(&format!(
                            "k,w=r{round} batch={b}i,seq={j}i {}\n",
                            T0 + b * per + j
                        ));
                    }
                    match request("POST", &url, &[], body.as_bytes(), Duration::from_secs(10)) {
                        Ok((204, _)) => acked.push(b),
                        _ => return (acked, b),
                    }
                    b += 1;
                }
            })
        };
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        w.kill9();
        let (acked, last) = writer.join().unwrap();
        assert!(
            !acked.is_empty() || round > 0,
            "nothing acknowledged in round {round}"
        );
        sent.acked.extend(acked);
        sent.unsure.insert(last);
        batch = last + 1;
    }
    let w = up(&data, kafka, http, None);
    let stored = w.cells("k", "select batch, count(*), sum(seq), count(distinct seq) from k group by batch order by batch");
    let whole = (per * (per - 1) / 2).to_string();
    let mut present = BTreeSet::new();
    for r in &stored {
        let b: i64 = r[0].parse().unwrap();
        assert_eq!(
            r[1..],
            [per.to_string(), whole.clone(), per.to_string()],
            "batch {b} torn or doubled"
        );
        assert!(
            sent.acked.contains(&b) || sent.unsure.contains(&b),
            "batch {b} was never sent"
        );
        present.insert(b);
    }
    let lost: Vec<&i64> = sent.acked.difference(&present).collect();
    assert!(
        lost.is_empty(),
        "acknowledged batches lost: {lost:?}\n{}",
        w.log()
    );
    stop(w);
}

#[test]
fn kill_9_during_ingest_from_a_topic_stores_every_record_exactly_once() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (kafka, http) = (free_port(), free_port());
    std::fs::write(
        tmp.path().join("events.toml"),
        format!(
            "[sources.events]\ntype = \"kafka\"\nbrokers = \"127.0.0.1:{kafka}\"\ntopics = [\"events\"]\ngroup = \"to-store\"\nformat = \"influx\"\n\n\
             [sinks.store]\ntype = \"store\"\ninputs = [\"events\"]\ndatabase = \"ev\"\nbatch = 500\n"
        ),
    )
    .unwrap();
    let config = tmp.path().join("weir.toml");
    std::fs::write(&config, "[up]\npipelines = [\"events.toml\"]\n").unwrap();
    let n = 60_000i64;
    let w = up(&data, kafka, http, Some(&config));
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{kafka}"))
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for i in 0..n {
        let payload = format!("events seq={i}i {}", T0 + i);
        loop {
            match producer.send(BaseRecord::<(), str>::to("events").payload(&payload)) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    drop(producer);
    // Kill it three times while the pipeline stores.
    let mut w = Some(w);
    for k in 0..3u64 {
        std::thread::sleep(Duration::from_millis(300 + 400 * k));
        w.take().unwrap().kill9();
        w = Some(up(&data, kafka, http, Some(&config)));
    }
    let w = w.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let count = w
            .sql("ev", "select count(*) from events")
            .ok()
            .and_then(|a| match a.rows.first().and_then(|r| r.first()) {
                Some(Cell::Text(t)) => t.parse::<i64>().ok(),
                _ => None,
            });
        if count == Some(n) {
            break;
        }
        assert!(
            count.is_none_or(|c| c <= n),
            "{count:?} rows for {n} records: doubled"
        );
        assert!(
            Instant::now() < deadline,
            "{count:?} of {n} rows after 120 s\n{}",
            w.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        w.cells(
            "ev",
            "select count(*), count(distinct seq), sum(seq) from events"
        )[0],
        [n.to_string(), n.to_string(), (n * (n - 1) / 2).to_string()]
    );
    stop(w);
}

#[test]
fn a_sqlite_store_of_the_previous_version_is_read_in_once_with_its_offsets() {
    use weir_pipeline::event::Event;
    use weir_pipeline::sinks::sqlite::SqliteSink;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("store")).unwrap();
    let file = data.join("store/public.sqlite");
    {
        let mut sink = SqliteSink::open(&file).unwrap();
        let events: Vec<Event> = (0..2500i64)
            .map(|i| {
                let mut e = Event::raw("", T0 + i)
                    .with_tag("host", &format!("h{}", i % 3))
                    .with_field("temperature", i as f64 / 2.0)
                    .with_field("n", i);
                e.raw = None;
                e.name = "kafka_consumer".into();
                e
            })
            .collect();
        let offsets = [(("oceanic".to_owned(), 0), 2500i64)].into_iter().collect();
        sink.write("flows", &events, &offsets).unwrap();
    }
    let (kafka, http) = (free_port(), free_port());
    let w = up(&data, kafka, http, None);
    assert_eq!(
        w.cells(
            "public",
            "select count(*), sum(n), count(distinct host), sum(temperature) from kafka_consumer"
        )[0],
        ["2500", "3123750", "3", "1561875"]
    );
    let kinds: Vec<String> = w
        .cells("public", "DESCRIBE TABLE kafka_consumer")
        .iter()
        .map(|r| format!("{} {}", r[0], r[2]))
        .collect();
    assert!(
        kinds.contains(&"host TAG".to_owned()) && kinds.contains(&"n FIELD".to_owned()),
        "{kinds:?}"
    );
    assert!(!file.exists() && data.join("store/public.sqlite.imported").exists());
    // Once only: a restart does not read it again.
    stop(w);
    let w = up(&data, kafka, http, None);
    assert_eq!(
        w.one("public", "select count(*) from kafka_consumer"),
        "2500"
    );
    stop(w);
}

struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Batch `b` of `per` points whose strings do not compress (so files
/// fill the disk as fast as the log does).
fn noisy_batch(b: i64, per: i64, base: i64) -> String {
    let mut x = (b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut body = String::new();
    for i in 0..per {
        let mut noise = String::with_capacity(96);
        for _ in 0..6 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.push_str(&format!("{x:016x}"));
        }
        body.push_str(&format!(
            "fill,batch={b} seq={i}i,noise=\"{noise}\" {}\n",
            base + b * per + i
        ));
    }
    body
}

/// The store on a small tmpfs: writes fill it and are refused with 507
/// (a clear error, nothing torn), flushes fail and keep their rows; with
/// space back, writes and flushes work again, and every acknowledged
/// batch is there once, before and after a restart.
#[test]
fn a_full_disk_refuses_writes_with_507_and_the_store_recovers_when_space_returns() {
    if std::env::var_os("WEIR_SKIP_MOUNT_TESTS").is_some() {
        return; // explicit opt-out where mounting is impossible (README)
    }
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&mnt)
        .status()
        .expect("running mount");
    assert!(
        status.success(),
        "mount -t tmpfs needs root (CI runs as root); WEIR_SKIP_MOUNT_TESTS=1 skips this explicitly"
    );
    let guard = Tmpfs(mnt.clone());
    let config = tmp.path().join("weir.toml");
    std::fs::write(&config, "[store]\nflush_seconds = 1\n").unwrap();
    let (kafka, http) = (free_port(), free_port());
    let w = up(&mnt, kafka, http, Some(&config));
    let per = 2000i64;
    let base = 1_796_601_600_000_000_000i64;
    let (mut acked, mut refused) = (BTreeSet::new(), 0);
    let mut b = 0i64;
    // About 250 KB a batch into 24 MB: full within 200 batches.
    while refused < 3 {
        assert!(b < 200, "the disk never filled\n{}", w.log());
        match w.post("/write?db=public", noisy_batch(b, per, base).as_bytes()) {
            (204, _) => {
                acked.insert(b);
            }
            (507, body) => {
                assert!(body.contains("space"), "{body}");
                refused += 1;
            }
            (s, body) => panic!("batch {b}: {s} {body}\n{}", w.log()),
        }
        b += 1;
    }
    assert!(acked.len() > 10, "only {} batches fit", acked.len());
    // Queries still answer, with every acknowledged point.
    assert_eq!(
        w.one("public", "select count(*) from fill"),
        (acked.len() as i64 * per).to_string()
    );
    let status = Command::new("mount")
        .args(["-o", "remount,size=256m"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..5 {
        let (s, body) = w.post("/write?db=public", noisy_batch(b, per, base).as_bytes());
        assert_eq!(s, 204, "after space returned: {body}\n{}", w.log());
        acked.insert(b);
        b += 1;
    }
    let check = |w: &Up| {
        let got = w.cells(
            "public",
            "select batch, count(*), count(distinct seq) from fill group by batch order by batch",
        );
        let want: Vec<Vec<String>> = acked
            .iter()
            .map(|b| vec![b.to_string(), per.to_string(), per.to_string()])
            .collect();
        let mut got_sorted = got.clone();
        got_sorted.sort_by_key(|r| r[0].parse::<i64>().unwrap_or(-1));
        assert_eq!(got_sorted, want, "{}", w.log());
    };
    check(&w);
    // The buffers reach files again: a flush trims the log.
    let wal = mnt.join("store/public/wal");
    let wal_bytes = || -> u64 {
        std::fs::read_dir(&wal)
            .map(|d| {
                d.filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while wal_bytes() > 1 << 20 {
        assert!(
            Instant::now() < deadline,
            "the log keeps {} bytes: no flush after space returned\n{}",
            wal_bytes(),
            w.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    stop(w);
    let w = up(&mnt, kafka, http, Some(&config));
    check(&w);
    stop(w);
    drop(guard);
}

/// `weir bench store` (BENCHMARKS.md's figures) runs as documented: the
/// same rows into the store and into SQLite, each answering every question.
#[test]
fn the_store_benchmark_writes_both_engines_and_answers_every_question() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("results.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["bench", "store", "--rows", "30000", "--sqlite"])
        .arg("--dir")
        .arg(tmp.path().join("bench"))
        .arg("--json")
        .arg(&json)
        .env("WEIR_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8, "{lines:#?}");
    for engine in ["weir", "sqlite"] {
        let of = |bench: &str| -> Vec<&serde_json::Value> {
            lines
                .iter()
                .filter(|l| l["engine"] == engine && l["bench"] == bench)
                .collect()
        };
        let ingest = of("store ingest");
        assert_eq!(ingest.len(), 1);
        assert_eq!(ingest[0]["rows"], 30000, "{engine}");
        assert!(ingest[0]["bytes_per_row"].as_f64().unwrap() > 0.0);
        let questions = of("store query");
        assert_eq!(questions.len(), 3, "{engine}");
        // Rows over 24 hours: the last hour holds 60 or 61 minutes.
        let minutes = questions[1]["answer_rows"].as_u64().unwrap();
        assert!((60..=61).contains(&minutes), "{engine}: {minutes} minutes");
        for q in [&questions[0], &questions[2]] {
            let n = q["answer_rows"].as_u64().unwrap();
            assert!((1..=10).contains(&n), "{engine}: {q}");
        }
    }
    assert!(
        !tmp.path().join("bench").exists(),
        "the data is removed without --keep"
    );
}

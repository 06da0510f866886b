//! Queries through DataFusion over real files: buffered and flushed rows
//! answer alike, CnosDB-style time SQL works, time predicates prune
//! whole files, schemas grow, types are kept, and the bounds hold
//! (read-only, memory, time, answer size).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use weir_log::FsStorage;
use weir_store::{Batch, QueryError, QueryLimits, Row, Store, StoreConfig, StoreError, Value};

const MINUTE: i64 = 60_000_000_000;
/// 2026-11-30T00:00:00Z.
const NOV30: i64 = 1_796_601_600_000_000_000 - 7 * 24 * 60 * MINUTE;

fn config(limits: QueryLimits) -> StoreConfig {
    StoreConfig {
        flush_bytes: usize::MAX / 4,
        flush_age: Duration::from_secs(3600),
        maintain_every: Duration::from_secs(3600),
        compaction: weir_store::Policy::default(),
        query: limits,
    }
}

fn open(dir: &Path, limits: QueryLimits) -> Arc<Store> {
    Store::open(Arc::new(FsStorage), dir, config(limits)).unwrap()
}

fn access(time: i64, province: &str, isp: &str, bytes: i64) -> Row {
    Row {
        table: "access".into(),
        time,
        tags: vec![
            ("province".into(), province.into()),
            ("isp".into(), isp.into()),
        ],
        fields: vec![
            ("bytes".into(), Value::Int(bytes)),
            ("status".into(), Value::UInt(200)),
            ("ok".into(), Value::Bool(bytes % 2 == 0)),
            ("path".into(), Value::Str(format!("/p/{bytes}"))),
            ("ms".into(), Value::Float(bytes as f64 / 10.0)),
        ],
    }
}

fn write(store: &Store, rows: Vec<Row>) {
    store
        .write(
            "public",
            Batch {
                rows,
                positions: vec![],
            },
        )
        .unwrap();
}

/// An answer as lines of `|`-separated cells (RFC 3339 times).
fn lines(store: &Arc<Store>, sql: &str) -> Vec<String> {
    let a = store
        .query_blocking("public", sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    table(&a.batches)
}

fn table(batches: &[RecordBatch]) -> Vec<String> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let fmts: Vec<ArrayFormatter<'_>> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            let cells: Vec<String> = fmts.iter().map(|f| f.value(r).to_string()).collect();
            out.push(cells.join("|"));
        }
    }
    out
}

fn sample(store: &Store) {
    let mut rows = Vec::new();
    for i in 0..600i64 {
        let province = ["beijing", "shanghai", "guangdong"][(i % 3) as usize];
        let isp = ["telecom", "mobile"][(i % 2) as usize];
        rows.push(access(NOV30 + i * MINUTE / 10, province, isp, i));
    }
    write(store, rows);
}

const QUERIES: &[&str] = &[
    "select province, isp, sum(bytes) as b, count(*) as n from access group by province, isp order by province, isp",
    "select date_bin(interval '1 minute', time) as minute, count(*) as n, sum(bytes) as b from access group by minute order by minute",
    "select count(*) from access where time > '2026-11-30T00:30:00Z'",
    "select time, province, bytes, status, ok, path, ms from access where bytes = 7",
    "select upper(province), count(*) from access where regexp_like(isp, '^tele') group by 1 order by 1",
];

#[test]
fn buffered_and_flushed_rows_give_the_same_answers_to_time_series_sql() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), QueryLimits::default());
    sample(&store);
    let before: Vec<Vec<String>> = QUERIES.iter().map(|q| lines(&store, q)).collect();
    assert_eq!(
        before[0],
        [
            "beijing|mobile|30000|100",
            "beijing|telecom|29700|100",
            "guangdong|mobile|30200|100",
            "guangdong|telecom|29900|100",
            "shanghai|mobile|29800|100",
            "shanghai|telecom|30100|100"
        ]
    );
    assert_eq!(before[1].len(), 60, "600 rows, 6 s apart: 60 minutes");
    assert_eq!(before[1][0], "2026-11-30T00:00:00Z|10|45");
    assert_eq!(before[2], ["299"]);
    assert_eq!(
        before[3],
        ["2026-11-30T00:00:42Z|shanghai|7|200|false|/p/7|0.7"]
    );
    assert_eq!(before[4], ["BEIJING|100", "GUANGDONG|100", "SHANGHAI|100"]);
    store.flush("public").unwrap();
    assert_eq!(store.files("public").unwrap().len(), 1);
    let after: Vec<Vec<String>> = QUERIES.iter().map(|q| lines(&store, q)).collect();
    assert_eq!(before, after);
    // Half in files, half buffered, and after a restart.
    sample(&store);
    let doubled = lines(&store, "select count(*), sum(bytes) from access");
    assert_eq!(doubled, ["1200|359400"]);
    drop(store);
    let store = open(dir.path(), QueryLimits::default());
    assert_eq!(
        lines(&store, "select count(*), sum(bytes) from access"),
        doubled
    );
    // Recent rows: `now() - interval` works against the time column.
    write(&store, vec![access(now_ns() - 5 * MINUTE, "x", "y", 1)]);
    assert_eq!(
        lines(
            &store,
            "select count(*) from access where time > now() - interval '1 hour'"
        ),
        ["1"]
    );
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

#[test]
fn time_predicates_prune_whole_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), QueryLimits::default());
    // One file per day for three days.
    for day in 0..3 {
        write(
            &store,
            vec![access(NOV30 + day * 1440 * MINUTE, "p", "i", day)],
        );
        store.flush("public").unwrap();
    }
    let files = store.files("public").unwrap();
    assert_eq!(files.len(), 3);
    // Remove the first day's file from under the store: a query that
    // reads it fails, one whose predicate excludes it does not.
    std::fs::remove_file(dir.path().join("public/data").join(files[0].file_name())).unwrap();
    assert_eq!(
        lines(
            &store,
            "select bytes from access where time >= '2026-12-01T00:00:00Z' order by time"
        ),
        ["1", "2"]
    );
    assert_eq!(
        lines(
            &store,
            "select bytes from access where time between '2026-12-02T00:00:00Z' and '2026-12-02T01:00:00Z'"
        ),
        ["2"]
    );
    let e = store
        .query_blocking("public", "select count(*) from access")
        .unwrap_err();
    assert!(
        e.to_string().contains("not found") || e.to_string().contains("No such file"),
        "{e}"
    );
}

#[test]
fn new_columns_extend_a_table_and_older_rows_read_them_as_null() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), QueryLimits::default());
    let row = |time, fields: Vec<(&str, Value)>| Row {
        table: "cpu".into(),
        time,
        tags: vec![("host".into(), "a".into())],
        fields: fields.into_iter().map(|(k, v)| (k.into(), v)).collect(),
    };
    write(&store, vec![row(1, vec![("usage", Value::Float(0.5))])]);
    store.flush("public").unwrap();
    write(
        &store,
        vec![row(
            2,
            vec![("usage", Value::Float(0.7)), ("temp", Value::Int(40))],
        )],
    );
    let q = "select time, host, usage, temp from cpu order by time";
    let want = [
        "1970-01-01T00:00:00.000000001Z|a|0.5|NULL",
        "1970-01-01T00:00:00.000000002Z|a|0.7|40",
    ];
    assert_eq!(lines(&store, q), want);
    store.flush("public").unwrap();
    assert_eq!(lines(&store, q), want);
    // A tag written where a string field is (or the reverse) takes the
    // column's kind.
    write(
        &store,
        vec![Row {
            table: "cpu".into(),
            time: 4,
            tags: vec![("note".into(), "x".into())],
            fields: vec![],
        }],
    );
    write(
        &store,
        vec![Row {
            table: "cpu".into(),
            time: 5,
            tags: vec![],
            fields: vec![
                ("note".into(), Value::Str("y".into())),
                ("host".into(), Value::Str("b".into())),
            ],
        }],
    );
    assert_eq!(
        lines(
            &store,
            "select host, note from cpu where note is not null order by time"
        ),
        ["NULL|x", "b|y"]
    );
    // A conflicting type is refused and changes nothing.
    let e = store
        .write(
            "public",
            Batch {
                rows: vec![row(3, vec![("temp", Value::Str("hot".into()))])],
                positions: vec![],
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("temp"), "{e}");
    assert_eq!(lines(&store, "select count(*) from cpu"), ["4"]);
}

#[test]
fn queries_are_read_only_and_cannot_reach_files_outside_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), QueryLimits::default());
    sample(&store);
    for sql in [
        "create external table p (a varchar) stored as csv location '/etc/passwd'",
        "select * from '/etc/passwd'",
        "select * from read_csv('/etc/passwd')",
        "select * from read_parquet('/etc/passwd')",
        "copy access to '/tmp/weir-out.csv'",
        "insert into access (time) values (1)",
        "create table t as select 1",
        "create view v as select 1",
        "drop table access",
        "set datafusion.execution.batch_size = 1",
        "select * from information_schema.tables",
    ] {
        let e = store.query_blocking("public", sql).unwrap_err();
        assert!(
            matches!(e, StoreError::Query(QueryError::Invalid(_))),
            "{sql}: {e:?}"
        );
    }
    assert!(!Path::new("/tmp/weir-out.csv").exists());
    assert_eq!(lines(&store, "select count(*) from access"), ["600"]);
    let e = store.query_blocking("public", "selec 1").unwrap_err();
    assert!(e.to_string().contains("selec"), "{e}");
}

#[test]
fn a_query_past_the_memory_pool_fails_with_a_clear_error_and_the_store_answers_on() {
    let dir = tempfile::tempdir().unwrap();
    let limits = QueryLimits {
        memory_bytes: 4 << 20,
        spill_bytes: 0,
        ..QueryLimits::default()
    };
    let store = open(dir.path(), limits);
    let rows: Vec<Row> = (0..100_000i64)
        .map(|i| access(NOV30 + i, &format!("p{i}"), "isp", i))
        .collect();
    write(&store, rows);
    let e = store
        .query_blocking(
            "public",
            "select province, path, count(*) from access group by province, path order by 3 desc",
        )
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Query(QueryError::Memory { .. })),
        "{e:?}"
    );
    assert!(e.to_string().contains("more memory"), "{e}");
    assert_eq!(lines(&store, "select count(*) from access"), ["100000"]);
}

#[test]
fn a_slow_query_is_cancelled_at_the_timeout_and_a_huge_answer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let limits = QueryLimits {
        timeout: Duration::from_millis(300),
        max_rows: 1000,
        spill_bytes: 0,
        ..QueryLimits::default()
    };
    let store = open(dir.path(), limits);
    let rows: Vec<Row> = (0..20_000i64)
        .map(|i| access(NOV30 + i, "p", "i", i))
        .collect();
    write(&store, rows);
    let started = std::time::Instant::now();
    let e = store
        .query_blocking(
            "public",
            "select count(*) from access a, access b, access c where a.bytes + b.bytes + c.bytes = -1",
        )
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Query(QueryError::Timeout(_))),
        "{e:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let e = store
        .query_blocking("public", "select * from access")
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Query(QueryError::TooLarge(1000))),
        "{e:?}"
    );
    assert_eq!(lines(&store, "select count(*) from access"), ["20000"]);
}

#[test]
fn a_store_opened_by_a_relative_path_reads_its_files() {
    // Each test runs in its own process (nextest): changing directory is safe.
    let dir = tempfile::tempdir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    let store = open(Path::new("./weir-data/store"), QueryLimits::default());
    sample(&store);
    store.flush("public").unwrap();
    assert_eq!(lines(&store, "select count(*) from access"), ["600"]);
}

/// Sixteen flushes of interleaved time ranges (the later ones with a new
/// column) merge into fewer files, and every query answers the same
/// before and after, the merged files sorted and their time ranges right.
#[test]
fn compaction_keeps_every_answer_identical() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), QueryLimits::default());
    for part in 0..16i64 {
        let mut rows = Vec::new();
        for i in (part..600).step_by(16) {
            let province = ["beijing", "shanghai", "guangdong"][(i % 3) as usize];
            let isp = ["telecom", "mobile"][(i % 2) as usize];
            let mut row = access(NOV30 + i * MINUTE / 10, province, isp, i);
            if part >= 8 {
                row.fields.push(("late".into(), Value::Int(part)));
            }
            rows.push(row);
        }
        write(&store, rows);
        store.flush("public").unwrap();
    }
    let queries: Vec<&str> = QUERIES
        .iter()
        .copied()
        .chain([
            "select time, bytes, late from access order by time",
            "select count(late), sum(late) from access",
        ])
        .collect();
    let before: Vec<Vec<String>> = queries.iter().map(|q| lines(&store, q)).collect();
    assert_eq!(store.files("public").unwrap().len(), 16);
    let (_, merges) = store.maintain().unwrap();
    let files = store.files("public").unwrap();
    assert_eq!((merges, files.len()), (5, 1), "{files:?}");
    let after: Vec<Vec<String>> = queries.iter().map(|q| lines(&store, q)).collect();
    assert_eq!(before, after);
    assert_eq!(
        (files[0].min_time, files[0].max_time, files[0].rows),
        (NOV30, NOV30 + 599 * MINUTE / 10, 600)
    );
    // Only the listed file is left.
    let on_disk = std::fs::read_dir(dir.path().join("public").join("data"))
        .unwrap()
        .count();
    assert_eq!(on_disk, 1);
}

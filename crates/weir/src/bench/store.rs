//! `weir bench store`: flow B's rows (nginx lines through parse_nginx and,
//! with `--geoip`, the IP database) written into the embedded store the way
//! its `store` sink writes them, then the bytes a row takes on disk and the
//! time of the questions people ask of it; with `--sqlite`, the same rows
//! and questions against a SQLite file (the `sqlite` sink's tables, the
//! store before the columnar one) in the same run.
//!
//! Without `--geoip` each address gets a stand-in location (one of 31
//! provinces and 5 ISPs chosen by its first two octets) so the rows have
//! flow B's columns and cardinalities without an IP database.
//!
//! The rows' times are spread evenly over the `--hours` before now, so
//! "the last hour" holds 1/hours of them. Lines are generated and parsed on
//! a second thread while the first writes; the generator's own rate is
//! reported too, so a rate at the generator's ceiling says so.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use weir_pipeline::event::Event;
use weir_pipeline::sinks::{EmbeddedStore, Outcome};

/// `weir bench store` settings.
#[derive(Debug, clap::Args, Clone)]
pub(crate) struct StoreBench {
    /// Rows to write.
    #[arg(long, default_value_t = 20_000_000)]
    pub rows: u64,
    /// Directory for the store (and the SQLite file); emptied first,
    /// removed afterwards unless --keep.
    #[arg(long, default_value = "weir-bench-store")]
    pub dir: PathBuf,
    /// The rows span this many hours before now.
    #[arg(long, default_value_t = 24)]
    pub hours: u64,
    /// IP database (.ipdb, .xdb, .mmdb) for province and ISP, as flow B.
    #[arg(long)]
    pub geoip: Option<PathBuf>,
    /// Also the same rows and questions in SQLite, in the same run.
    #[arg(long)]
    pub sqlite: bool,
    /// Leave the data in --dir.
    #[arg(long)]
    pub keep: bool,
    /// Append the results as JSON lines to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Rows per write: what a `store` sink's batch of flow B is at most.
const BATCH: usize = 10_000;

/// The questions, in the store's SQL (CnosDB's) and in SQLite's.
const QUESTIONS: &[(&str, &str, &str)] = &[
    (
        "bandwidth by province and ISP",
        "select province, isp, sum(bytes) as bandwidth from access_log \
         group by province, isp order by bandwidth desc limit 10",
        "select province, isp, sum(bytes) as bandwidth from access_log \
         group by province, isp order by bandwidth desc limit 10",
    ),
    (
        "bandwidth per minute, last hour",
        "select date_bin(interval '1 minute', time) as minute, sum(bytes) as bandwidth \
         from access_log where time > now() - interval '1 hour' group by minute order by minute",
        "select time / 60000000000 * 60000000000 as minute, sum(bytes) as bandwidth \
         from access_log where time > (cast(strftime('%s', 'now') as integer) - 3600) * 1000000000 \
         group by minute order by minute",
    ),
    (
        "top client addresses",
        "select client_ip, count(*) as hits from access_log \
         group by client_ip order by hits desc limit 10",
        "select client_ip, count(*) as hits from access_log \
         group by client_ip order by hits desc limit 10",
    ),
];

const PROVINCES: &[&str] = &[
    "北京",
    "天津",
    "河北",
    "山西",
    "内蒙古",
    "辽宁",
    "吉林",
    "黑龙江",
    "上海",
    "江苏",
    "浙江",
    "安徽",
    "福建",
    "江西",
    "山东",
    "河南",
    "湖北",
    "湖南",
    "广东",
    "广西",
    "海南",
    "重庆",
    "四川",
    "贵州",
    "云南",
    "西藏",
    "陕西",
    "甘肃",
    "青海",
    "宁夏",
    "新疆",
];
const ISPS: &[&str] = &["电信", "联通", "移动", "教育网", "鹏博士"];

/// The stand-in location of `client_ip` (see the module's doc).
fn stand_in(e: &mut Event) {
    use weir_pipeline::event::{Text, Value};
    let Some(Value::Str(ip)) = e.fields.get("client_ip") else {
        return;
    };
    let mut octets = ip.split('.').filter_map(|o| o.parse::<usize>().ok());
    let (a, b) = (octets.next().unwrap_or(0), octets.next().unwrap_or(0));
    let province = PROVINCES[(a * 7 + b) % PROVINCES.len()];
    let isp = ISPS[(a + b * 3) % ISPS.len()];
    for (k, v) in [
        ("country", "中国"),
        ("province", province),
        ("city", province),
        ("isp", isp),
    ] {
        e.fields
            .insert(Text::new_static(k), Value::Str(Text::from(v)));
    }
}

/// Makes flow B's events on a thread, in batches, over a bounded channel.
fn generate(
    rows: u64,
    hours: u64,
    geoip: Option<&Path>,
) -> Result<(Receiver<Vec<Event>>, std::thread::JoinHandle<f64>)> {
    use weir_pipeline::generate::{Rng, nginx_line};
    let parser = weir_pipeline::transforms::nginx::NginxParser::new("combined", "access_log")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let geo = match geoip {
        Some(p) => Some(weir_pipeline::geoip::GeoEnricher::new(
            weir_pipeline::geoip::GeoDb::open(p).map_err(|e| anyhow::anyhow!("{e}"))?,
            "client_ip",
            "",
        )),
        None => None,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let span = (hours.max(1) * 3600) as i64;
    let start = now - span;
    let (tx, rx) = sync_channel::<Vec<Event>>(4);
    let handle = std::thread::Builder::new()
        .name("bench-generate".into())
        .spawn(move || {
            let mut rng = Rng::new(1);
            let mut busy = Duration::ZERO;
            let mut batch = Vec::with_capacity(BATCH);
            for i in 0..rows {
                let t = Instant::now();
                let secs = start + (i as i128 * span as i128 / rows as i128) as i64;
                let line = nginx_line(&mut rng, secs);
                if let Ok(mut e) = parser.parse(&line) {
                    match &geo {
                        Some(g) => g.apply(&mut e),
                        None => stand_in(&mut e),
                    }
                    batch.push(e);
                }
                busy += t.elapsed();
                if batch.len() == BATCH || i + 1 == rows {
                    if tx.send(std::mem::take(&mut batch)).is_err() {
                        break;
                    }
                    batch.reserve(BATCH);
                }
            }
            rows as f64 / busy.as_secs_f64().max(1e-9)
        })?;
    Ok((rx, handle))
}

/// Peak resident memory since the last [`reset_peak`] (VmHWM), in bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Starts a new peak for [`peak_rss`] (Linux: writing 5 to clear_refs).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn dir_bytes(dir: &Path, only: &dyn Fn(&Path) -> bool) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in entries.flatten() {
        let p = e.path();
        match e.metadata() {
            Ok(m) if m.is_dir() => total += dir_bytes(&p, only),
            Ok(m) if only(&p) => total += m.len(),
            _ => {}
        }
    }
    total
}

/// Best and first of three runs of `ask`, which returns the answer's rows.
fn time_question(mut ask: impl FnMut() -> Result<usize>) -> Result<(f64, f64, usize)> {
    let mut times = Vec::new();
    let mut rows = 0;
    for _ in 0..3 {
        let t = Instant::now();
        rows = ask()?;
        times.push(t.elapsed().as_secs_f64());
    }
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    Ok((best, times[0], rows))
}

struct Ingest {
    secs: f64,
    rows: u64,
    generator_rows_per_s: f64,
    peak_rss: u64,
}

fn ingest(
    cfg: &StoreBench,
    mut write: impl FnMut(&[Event]) -> Result<()>,
    out: &mut impl Write,
) -> Result<Ingest> {
    reset_peak();
    let (rx, generator) = generate(cfg.rows, cfg.hours, cfg.geoip.as_deref())?;
    let started = Instant::now();
    let mut rows = 0u64;
    let mut shown = Instant::now();
    for batch in rx {
        write(&batch)?;
        rows += batch.len() as u64;
        if shown.elapsed() > Duration::from_secs(5) {
            shown = Instant::now();
            let _ = writeln!(
                out,
                "  {rows} rows, {:.0} rows/s",
                rows as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let generator_rows_per_s = generator
        .join()
        .map_err(|_| anyhow::anyhow!("the generator thread panicked"))?;
    Ok(Ingest {
        secs,
        rows,
        generator_rows_per_s,
        peak_rss: peak_rss(),
    })
}

fn emit(v: serde_json::Value, out: &mut impl Write, json: Option<&PathBuf>) -> Result<()> {
    if let Some(path) = json {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(f, "{v}")?;
    }
    writeln!(out, "{v}")?;
    Ok(())
}

/// Runs the benchmark.
pub(crate) fn run(cfg: &StoreBench, out: &mut impl Write) -> Result<()> {
    let _ = std::fs::remove_dir_all(&cfg.dir);
    std::fs::create_dir_all(&cfg.dir).with_context(|| format!("creating {}", cfg.dir.display()))?;
    let result = (|| -> Result<()> {
        columnar(cfg, out)?;
        if cfg.sqlite {
            sqlite(cfg, out)?;
        }
        Ok(())
    })();
    if !cfg.keep {
        let _ = std::fs::remove_dir_all(&cfg.dir);
    }
    result
}

fn columnar(cfg: &StoreBench, out: &mut impl Write) -> Result<()> {
    let dir = cfg.dir.join("store");
    let tsdb = crate::tsdb::Tsdb::open(&dir, false, weir_store::StoreConfig::default())?;
    writeln!(
        out,
        "store: writing {} rows into {}",
        cfg.rows,
        dir.display()
    )?;
    let positions = weir_pipeline::ack::Positions::new();
    let ing = ingest(
        cfg,
        |events| match tsdb.write("public", "bench", events, &positions) {
            Outcome::Stored => Ok(()),
            Outcome::Rejected(e) | Outcome::Retry(e) => bail!("the store refused a batch: {e}"),
        },
        out,
    )?;
    let store = tsdb.store().clone();
    let t = Instant::now();
    store.flush_all()?;
    let flush_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut merges = 0;
    loop {
        let (_, m) = store.maintain()?;
        if m == 0 {
            break;
        }
        merges += m;
    }
    let compact_secs = t.elapsed().as_secs_f64();
    let files = store.files("public")?;
    let parquet = dir_bytes(&dir, &|p| p.extension().is_some_and(|e| e == "parquet"));
    let all = dir_bytes(&dir, &|_| true);
    emit(
        serde_json::json!({
            "bench": "store ingest",
            "engine": "weir",
            "rows": ing.rows,
            "rows_per_s": ing.rows as f64 / ing.secs,
            "seconds": ing.secs,
            "generator_rows_per_s": ing.generator_rows_per_s,
            "flush_seconds": flush_secs,
            "compaction_seconds": compact_secs,
            "merges": merges,
            "files": files.len(),
            "parquet_bytes": parquet,
            "bytes_per_row": parquet as f64 / ing.rows.max(1) as f64,
            "directory_bytes": all,
            "peak_rss_mb": ing.peak_rss as f64 / 1048576.0,
        }),
        out,
        cfg.json.as_ref(),
    )?;
    for (name, sql, _) in QUESTIONS {
        reset_peak();
        let (best, first, rows) = time_question(|| {
            Ok(store
                .query_blocking("public", sql)
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?
                .rows())
        })?;
        emit(
            serde_json::json!({
                "bench": "store query",
                "engine": "weir",
                "question": name,
                "rows": ing.rows,
                "best_seconds": best,
                "first_seconds": first,
                "answer_rows": rows,
                "peak_rss_mb": peak_rss() as f64 / 1048576.0,
            }),
            out,
            cfg.json.as_ref(),
        )?;
    }
    store.close()?;
    Ok(())
}

fn sqlite(cfg: &StoreBench, out: &mut impl Write) -> Result<()> {
    let path = cfg.dir.join("bench.sqlite");
    let mut db = weir_pipeline::sinks::sqlite::SqliteSink::open(&path)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    writeln!(
        out,
        "sqlite: writing {} rows into {}",
        cfg.rows,
        path.display()
    )?;
    let offsets = weir_pipeline::sinks::sqlite::Offsets::new();
    let ing = ingest(
        cfg,
        |events| {
            db.write("bench", events, &offsets)
                .map_err(|e| anyhow::anyhow!("{e}"))
        },
        out,
    )?;
    let bytes = dir_bytes(&cfg.dir, &|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("bench.sqlite"))
    });
    emit(
        serde_json::json!({
            "bench": "store ingest",
            "engine": "sqlite",
            "rows": ing.rows,
            "rows_per_s": ing.rows as f64 / ing.secs,
            "seconds": ing.secs,
            "generator_rows_per_s": ing.generator_rows_per_s,
            "bytes_per_row": bytes as f64 / ing.rows.max(1) as f64,
            "directory_bytes": bytes,
            "peak_rss_mb": ing.peak_rss as f64 / 1048576.0,
        }),
        out,
        cfg.json.as_ref(),
    )?;
    let conn = db.connection();
    for (name, _, sql) in QUESTIONS {
        reset_peak();
        let (best, first, rows) = time_question(|| {
            let mut stmt = conn.prepare(sql).with_context(|| name.to_string())?;
            let mut rows = stmt.query([])?;
            let mut n = 0;
            while rows.next()?.is_some() {
                n += 1;
            }
            Ok(n)
        })?;
        emit(
            serde_json::json!({
                "bench": "store query",
                "engine": "sqlite",
                "question": name,
                "rows": ing.rows,
                "best_seconds": best,
                "first_seconds": first,
                "answer_rows": rows,
                "peak_rss_mb": peak_rss() as f64 / 1048576.0,
            }),
            out,
            cfg.json.as_ref(),
        )?;
    }
    Ok(())
}

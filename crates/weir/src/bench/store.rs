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
//! "the last hour" holds 1/hours of them. The rows are made first (lines
//! generated, parsed and located: `--pool` of them, the generator's rate
//! reported), then written in batches cycling through that pool with each
//! row's time set to its place in the whole run, so the ingest rate is the
//! store's (what its `store` sink is given: parsed events), not the
//! generator's.

use std::io::Write;
use std::path::{Path, PathBuf};
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
    /// Distinct rows made before writing (at most --rows); the writes
    /// cycle through them with fresh times.
    #[arg(long, default_value_t = 2_000_000)]
    pub pool: u64,
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

/// Makes `rows` of flow B's events in batches: (the batches, rows made per
/// second).
fn generate(rows: u64, geoip: Option<&Path>) -> Result<(Vec<Vec<Event>>, f64)> {
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
    let started = Instant::now();
    let mut rng = Rng::new(1);
    let mut out = Vec::new();
    let mut batch = Vec::with_capacity(BATCH);
    let mut made = 0u64;
    while made < rows {
        let line = nginx_line(&mut rng, 1_700_000_000);
        if let Ok(mut e) = parser.parse(&line) {
            match &geo {
                Some(g) => g.apply(&mut e),
                None => stand_in(&mut e),
            }
            batch.push(e);
            made += 1;
        }
        if batch.len() == BATCH || made == rows {
            out.push(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
        }
    }
    Ok((out, rows as f64 / started.elapsed().as_secs_f64().max(1e-9)))
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
    let (mut pool, generator_rows_per_s) =
        generate(cfg.pool.clamp(1, cfg.rows.max(1)), cfg.geoip.as_deref())?;
    reset_peak();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i64;
    let span = (cfg.hours.max(1) * 3600) as i128 * 1_000_000_000;
    let start = now - span as i64;
    let total = cfg.rows.max(1) as i128;
    let started = Instant::now();
    let mut rows = 0u64;
    let mut shown = Instant::now();
    'writing: loop {
        for batch in &mut pool {
            let n = (cfg.rows - rows).min(batch.len() as u64) as usize;
            if n == 0 {
                break 'writing;
            }
            for (j, e) in batch[..n].iter_mut().enumerate() {
                e.timestamp_ns = start + ((rows + j as u64) as i128 * span / total) as i64;
            }
            write(&batch[..n])?;
            rows += n as u64;
            if shown.elapsed() > Duration::from_secs(5) {
                shown = Instant::now();
                let _ = writeln!(
                    out,
                    "  {rows} rows, {:.0} rows/s",
                    rows as f64 / started.elapsed().as_secs_f64()
                );
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
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
            "rows_per_s_with_flush": ing.rows as f64 / (ing.secs + flush_secs),
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

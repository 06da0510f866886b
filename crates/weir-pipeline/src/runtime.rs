//! The topology runtime: one thread per component, bounded channels between
//! them (a slow sink slows its inputs; memory stays bounded), events moved
//! in small batches. A stop flag makes sources finish; every component
//! drains what it received, sinks flush, and `Running::wait` returns.
//! Bad events are counted and sampled in the log (at most one line per
//! second per component); they never stop a pipeline.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{Component, Condition, Encoding, GenFormat, PipelineConfig, Spec};
use crate::event::{Event, Value};
use crate::generate::{Rng, nginx_line, sensor_line};
use crate::geoip::{GeoDb, GeoEnricher};
use crate::sinks::sqlite::SqliteSink;
use crate::transforms::json::JsonParser;
use crate::transforms::nginx::NginxParser;

/// Batches in flight per channel.
const CHANNEL_BATCHES: usize = 16;
/// Events per batch from a source.
const BATCH: usize = 256;

/// Counters of one component.
#[derive(Debug, Default)]
pub struct Counters {
    /// Events received.
    pub events_in: AtomicU64,
    /// Events sent on (or stored, for sinks).
    pub events_out: AtomicU64,
    /// Events dropped as bad, or failed writes.
    pub errors: AtomicU64,
    /// Bytes of raw input read (sources).
    pub bytes: AtomicU64,
    /// Messages behind the end of the assigned partitions (Kafka sources).
    pub lag: AtomicU64,
    /// The latest bad events or failed writes (at most one a second is
    /// kept, the last 20): Unix milliseconds and what was wrong.
    pub recent_errors: std::sync::Mutex<std::collections::VecDeque<(i64, String)>>,
}

impl Counters {
    /// The latest error samples, oldest first.
    pub fn error_samples(&self) -> Vec<(i64, String)> {
        self.recent_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    fn sample_error(&self, text: String) {
        let mut r = self.recent_errors.lock().unwrap_or_else(|e| e.into_inner());
        if r.len() == 20 {
            r.pop_front();
        }
        r.push_back((now_ns() / 1_000_000, text));
    }
}

enum Msg {
    Events(Vec<Event>),
    End,
}

/// Why a pipeline could not start.
#[derive(Debug, thiserror::Error)]
#[error("{component}: {message}")]
pub struct StartError {
    /// The component.
    pub component: String,
    /// What failed.
    pub message: String,
}

/// A running pipeline.
#[derive(Debug)]
pub struct Running {
    threads: Vec<(String, JoinHandle<()>)>,
    /// Counters by component.
    pub counters: BTreeMap<String, Arc<Counters>>,
}

impl Running {
    /// Waits until every component has finished.
    pub fn wait(self) {
        for (_, t) in self.threads {
            let _ = t.join();
        }
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Logs a bad event at most once a second per component.
struct Sampler {
    last: Option<Instant>,
    suppressed: u64,
}

impl Sampler {
    /// Logs (and keeps as a sample in `counters`) at most once a second.
    fn bad(&mut self, counters: &Counters, component: &str, what: &str, detail: &str) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|l| now.duration_since(l) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(component, suppressed = self.suppressed, "{what}: {detail}");
        counters.sample_error(format!("{what}: {detail:.1000}"));
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// Sends a batch to every output (cloning for all but the last).
fn fan_out(outputs: &[SyncSender<Msg>], mut events: Vec<Event>) -> bool {
    let mut delivered = false;
    for (i, tx) in outputs.iter().enumerate() {
        let batch = if i + 1 == outputs.len() {
            std::mem::take(&mut events)
        } else {
            events.clone()
        };
        delivered |= tx.send(Msg::Events(batch)).is_ok();
    }
    delivered
}

fn end(outputs: &[SyncSender<Msg>]) {
    for tx in outputs {
        let _ = tx.send(Msg::End);
    }
}

/// What the program running a pipeline provides to it.
#[derive(Debug, Clone, Default)]
pub struct Services {
    /// The store `store` sinks write into.
    pub store: Option<Arc<dyn crate::sinks::EmbeddedStore>>,
}

/// Starts every component. The stop flag makes sources end.
pub fn start(
    cfg: &PipelineConfig,
    pipeline: &str,
    stop: Arc<AtomicBool>,
) -> Result<Running, StartError> {
    start_with(cfg, pipeline, stop, &Services::default())
}

/// [`start`] with the services of the program running it.
pub fn start_with(
    cfg: &PipelineConfig,
    pipeline: &str,
    stop: Arc<AtomicBool>,
    services: &Services,
) -> Result<Running, StartError> {
    let mut receivers: BTreeMap<String, Receiver<Msg>> = BTreeMap::new();
    let mut senders: BTreeMap<String, SyncSender<Msg>> = BTreeMap::new();
    for c in &cfg.components {
        if !c.spec.is_source() {
            let (tx, rx) = sync_channel(CHANNEL_BATCHES);
            senders.insert(c.id.clone(), tx);
            receivers.insert(c.id.clone(), rx);
        }
    }
    // Each component's outputs: the channels of the components naming it.
    let outputs = |id: &str| -> Vec<SyncSender<Msg>> {
        cfg.components
            .iter()
            .filter(|c| c.inputs.iter().any(|i| i == id))
            .filter_map(|c| senders.get(&c.id).cloned())
            .collect()
    };
    let mut running = Running {
        threads: Vec::new(),
        counters: BTreeMap::new(),
    };
    // Build every component first, so a bad database or path fails before
    // anything runs.
    let mut built: Vec<(Component, Box<dyn FnOnce() + Send>)> = Vec::new();
    for c in &cfg.components {
        let counters = Arc::new(Counters::default());
        running.counters.insert(c.id.clone(), counters.clone());
        let outs = outputs(&c.id);
        let rx = receivers.remove(&c.id);
        let inputs = c.inputs.len();
        let id = c.id.clone();
        let err = |m: String| StartError {
            component: id.clone(),
            message: m,
        };
        // Every sink and transform has its channel (the config checked).
        let input =
            |rx: Option<Receiver<Msg>>| rx.ok_or_else(|| err("has no input channel".to_owned()));
        let job: Box<dyn FnOnce() + Send> = match &c.spec {
            Spec::Generator {
                format,
                rate,
                count,
                seed,
            } => {
                let (format, rate, count, seed, stop) =
                    (*format, *rate, *count, *seed, stop.clone());
                Box::new(move || generator(format, rate, count, seed, &stop, &outs, &counters))
            }
            Spec::Stdin => {
                let stop = stop.clone();
                Box::new(move || stdin_source(&stop, &outs, &counters))
            }
            Spec::FileSource(fc) => {
                let registry = fc.registry.clone().unwrap_or_else(|| {
                    cfg.data_dir
                        .join("pipelines")
                        .join(pipeline)
                        .join(format!("{}.registry.json", c.id))
                });
                let skip = stored_positions(cfg, pipeline, services).map_err(err)?;
                let mut src = crate::file::FileSource::new(fc.clone(), registry, skip)
                    .map_err(|e| err(e.to_string()))?;
                let stop = stop.clone();
                Box::new(move || {
                    src.run(&stop, Duration::from_secs(30), &counters, |batch| {
                        fan_out(&outs, batch)
                    });
                    end(&outs);
                })
            }
            Spec::Http(hc) => {
                let emit_outs = outs.clone();
                let emit_counters = counters.clone();
                let ingest = crate::ingest::Ingest::new(hc.clone(), move |_db, batch| {
                    emit_counters
                        .events_out
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    if fan_out(&emit_outs, batch) {
                        Ok(())
                    } else {
                        Err((503, "the pipeline is shutting down".to_owned()))
                    }
                });
                let handler: crate::http::Handler =
                    Arc::new(move |req: crate::http::Request| ingest.handle(&req));
                let server = crate::http::Server::start(&hc.address, hc.max_body, handler)
                    .map_err(|e| err(format!("listening on {}: {e}", hc.address)))?;
                tracing::info!(address = %server.local_addr(), "http source listening");
                let stop = stop.clone();
                Box::new(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    drop(server);
                    end(&outs);
                })
            }
            Spec::Kafka { source, format } => {
                let skip = stored_positions(cfg, pipeline, services).map_err(err)?;
                let mut src = crate::kafka::KafkaSource::new(source, skip).map_err(err)?;
                let (stop, format, name) = (stop.clone(), format.clone(), c.id.clone());
                Box::new(move || {
                    let json = JsonParser::new(Some(crate::config::hostname()));
                    let mut sampler = Sampler {
                        last: None,
                        suppressed: 0,
                    };
                    src.run(&stop, Duration::from_secs(30), &counters.lag, |batch| {
                        let bytes: usize = batch
                            .iter()
                            .filter_map(|e| e.raw.as_ref())
                            .map(String::len)
                            .sum();
                        counters.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                        counters
                            .events_in
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        let events: Vec<Event> = match format.as_str() {
                            "json" => batch
                                .into_iter()
                                .flat_map(|e| {
                                    let parsed = Transform::Json(json.clone()).apply(e.clone());
                                    carry(&e, parsed, &counters, &mut sampler, &name)
                                })
                                .collect(),
                            "influx" => batch
                                .into_iter()
                                .flat_map(|e| {
                                    let parsed =
                                        Transform::Influx(crate::transforms::influx::Precision::Ns)
                                            .apply(e.clone());
                                    carry(&e, parsed, &counters, &mut sampler, &name)
                                })
                                .collect(),
                            _ => batch,
                        };
                        counters
                            .events_out
                            .fetch_add(events.len() as u64, Ordering::Relaxed);
                        events.is_empty() || fan_out(&outs, events)
                    });
                    end(&outs);
                })
            }
            Spec::KafkaSink {
                brokers,
                topic,
                compression,
                encoding,
                key_field,
                extra,
                exactly_once,
            } => {
                let state = exactly_once.then(|| {
                    cfg.data_dir
                        .join("pipelines")
                        .join(pipeline)
                        .join(format!("{}.kafka-state.json", c.id))
                });
                let sink = crate::kafka::KafkaSink::new(brokers, topic, compression, extra, state)
                    .map_err(err)?;
                let (rx, encoding, key_field, stop) = (
                    input(rx)?,
                    encoding.clone(),
                    key_field.clone(),
                    stop.clone(),
                );
                Box::new(move || {
                    kafka_sink(
                        sink,
                        &encoding,
                        key_field.as_deref(),
                        rx,
                        inputs,
                        &counters,
                        &stop,
                    )
                })
            }
            Spec::Sqlite { path, batch } => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
                }
                let sink = SqliteSink::open(path).map_err(|e| err(e.to_string()))?;
                let (batch, rx, pipeline) = (*batch, input(rx)?, pipeline.to_owned());
                let name = c.id.clone();
                let stop = stop.clone();
                Box::new(move || {
                    let mut ctx = SinkCtx::new(&name, &[], &counters, &stop);
                    sqlite_sink(sink, batch, &pipeline, rx, inputs, &mut ctx);
                })
            }
            Spec::Store { database, batch } => {
                let store = services.store.clone().ok_or_else(|| {
                    err("the `store` sink writes into the embedded store of `weir up`: run this pipeline there (`weir up --pipeline FILE`), or use a `sqlite` sink".to_owned())
                })?;
                let (database, batch, rx, pipeline) =
                    (database.clone(), *batch, input(rx)?, pipeline.to_owned());
                let (name, stop) = (c.id.clone(), stop.clone());
                let dead = outputs(&format!("{}.errors", c.id));
                Box::new(move || {
                    let mut ctx = SinkCtx::new(&name, &dead, &counters, &stop);
                    store_sink(&*store, &database, batch, &pipeline, rx, inputs, &mut ctx);
                    end(&dead);
                })
            }
            Spec::LineProtocol(lc) => {
                let sink =
                    crate::sinks::line_protocol::LineProtocolSink::new(lc.clone()).map_err(err)?;
                let (rx, stop, name) = (input(rx)?, stop.clone(), c.id.clone());
                let dead = outputs(&format!("{}.errors", c.id));
                let batching = Batching {
                    size: lc.batch,
                    flush: lc.flush,
                };
                Box::new(move || {
                    let mut write = |b: &[Event]| sink.send(b);
                    let mut ctx = SinkCtx::new(&name, &dead, &counters, &stop);
                    batch_sink(&mut write, &batching, rx, inputs, &mut ctx);
                    end(&dead);
                })
            }
            Spec::Mysql(mc) => {
                let mut sink =
                    crate::sinks::mysql::MysqlSink::new(mc.clone(), pipeline).map_err(err)?;
                let (rx, stop, name) = (input(rx)?, stop.clone(), c.id.clone());
                let dead = outputs(&format!("{}.errors", c.id));
                let batching = Batching {
                    size: mc.batch,
                    flush: Duration::from_millis(mc.flush_ms),
                };
                Box::new(move || {
                    let mut write = |b: &[Event]| sink.write(b);
                    let mut ctx = SinkCtx::new(&name, &dead, &counters, &stop);
                    batch_sink(&mut write, &batching, rx, inputs, &mut ctx);
                    end(&dead);
                })
            }
            Spec::Stdout(enc) => {
                let (enc, rx) = (*enc, input(rx)?);
                Box::new(move || write_sink(std::io::stdout().lock(), enc, rx, inputs, &counters))
            }
            Spec::File { path, encoding } => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| err(format!("opening {}: {e}", path.display())))?;
                let (enc, rx) = (*encoding, input(rx)?);
                Box::new(move || {
                    write_sink(std::io::BufWriter::new(file), enc, rx, inputs, &counters)
                })
            }
            spec => {
                let t = Transform::build(spec).map_err(err)?;
                let (rx, name) = (input(rx)?, c.id.clone());
                let dead = outputs(&format!("{}.errors", c.id));
                Box::new(move || transform(&name, t, rx, inputs, &outs, &dead, &counters))
            }
        };
        built.push((c.clone(), job));
    }
    drop(senders);
    for (c, job) in built {
        let handle = std::thread::Builder::new()
            .name(format!("weir-{}", c.id))
            .spawn(job)
            .map_err(|e| StartError {
                component: c.id.clone(),
                message: format!("starting its thread: {e}"),
            })?;
        running.threads.push((c.id, handle));
    }
    Ok(running)
}

/// Exactly-once: the positions every sink of the pipeline already stored,
/// which sources skip. Only store and SQLite sinks keep positions; with
/// any other sink (or a stream one of them lacks) nothing is skipped.
fn stored_positions(
    cfg: &PipelineConfig,
    pipeline: &str,
    services: &Services,
) -> Result<crate::ack::Positions, String> {
    let mut per_sink = Vec::new();
    for s in cfg.components.iter().filter(|s| s.spec.is_sink()) {
        if let (Spec::Store { database, .. }, Some(store)) = (&s.spec, &services.store) {
            per_sink.push(store.positions(database, pipeline));
            continue;
        }
        let Spec::Sqlite { path, .. } = &s.spec else {
            return Ok(crate::ack::Positions::new());
        };
        if !path.exists() {
            return Ok(crate::ack::Positions::new());
        }
        let stored = SqliteSink::open(path)
            .and_then(|db| db.offsets(pipeline))
            .map_err(|e| format!("reading stored offsets from {}: {e}", path.display()))?;
        per_sink.push(stored);
    }
    let Some((first, rest)) = per_sink.split_first() else {
        return Ok(crate::ack::Positions::new());
    };
    Ok(first
        .iter()
        .filter_map(|(tp, &next)| {
            rest.iter()
                .map(|m| m.get(tp).copied())
                .try_fold(next, |lowest, n| n.map(|n| lowest.min(n)))
                .map(|lowest| (tp.clone(), lowest))
        })
        .collect())
}

fn generator(
    format: GenFormat,
    rate: Option<f64>,
    count: Option<u64>,
    seed: u64,
    stop: &AtomicBool,
    outs: &[SyncSender<Msg>],
    counters: &Counters,
) {
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let mut made = 0u64;
    while !stop.load(Ordering::Relaxed) && count.is_none_or(|c| made < c) {
        let mut n = BATCH as u64;
        if let Some(c) = count {
            n = n.min(c - made);
        }
        if let Some(r) = rate {
            // Stay on schedule: sleep until the next event is due.
            let due = started + Duration::from_secs_f64(made as f64 / r);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait.min(Duration::from_millis(100)));
                continue;
            }
            let behind = (started.elapsed().as_secs_f64() * r) as u64 - made;
            n = n.min(behind.max(1));
        }
        let ts = now_ns();
        let batch: Vec<Event> = (0..n)
            .map(|_| {
                let line = match format {
                    GenFormat::Sensors => sensor_line(&mut rng),
                    GenFormat::Nginx => nginx_line(&mut rng, ts / 1_000_000_000),
                };
                Event::raw(line, ts)
            })
            .collect();
        made += n;
        counters.events_out.fetch_add(n, Ordering::Relaxed);
        if !fan_out(outs, batch) {
            break;
        }
    }
    end(outs);
}

fn stdin_source(stop: &AtomicBool, outs: &[SyncSender<Msg>], counters: &Counters) {
    let stdin = std::io::stdin();
    let mut batch = Vec::with_capacity(BATCH);
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        counters
            .bytes
            .fetch_add(line.len() as u64 + 1, Ordering::Relaxed);
        batch.push(Event::raw(line, now_ns()));
        if batch.len() == BATCH {
            counters
                .events_out
                .fetch_add(BATCH as u64, Ordering::Relaxed);
            if !fan_out(outs, std::mem::take(&mut batch)) || stop.load(Ordering::Relaxed) {
                break;
            }
        }
    }
    counters
        .events_out
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    fan_out(outs, batch);
    end(outs);
}

enum Transform {
    Json(JsonParser),
    Influx(crate::transforms::influx::Precision),
    Nginx(NginxParser),
    Geoip(Box<GeoEnricher>),
    Filter(String, Condition),
    Set(BTreeMap<String, String>),
    Rename(BTreeMap<String, String>),
    Remove(Vec<String>),
}

impl Transform {
    fn build(spec: &Spec) -> Result<Self, String> {
        Ok(match spec {
            Spec::ParseJson {
                name,
                tag_keys,
                string_fields,
                time_key,
                host,
            } => {
                let mut p = JsonParser::new(host.clone());
                p.name.clone_from(name);
                p.tag_keys.clone_from(tag_keys);
                p.string_fields.clone_from(string_fields);
                if let Some((k, f)) = time_key {
                    p.time_key = Some(k.clone());
                    p.time_format = *f;
                }
                Transform::Json(p)
            }
            Spec::ParseInflux { precision } => Transform::Influx(*precision),
            Spec::ParseNginx { format, name } => {
                Transform::Nginx(NginxParser::new(format, name).map_err(|e| e.to_string())?)
            }
            Spec::Geoip {
                database,
                field,
                prefix,
            } => Transform::Geoip(Box::new(GeoEnricher::new(
                GeoDb::open(database).map_err(|e| e.to_string())?,
                field,
                prefix,
            ))),
            Spec::Filter { field, condition } => {
                Transform::Filter(field.clone(), condition.clone())
            }
            Spec::Set(m) => Transform::Set(m.clone()),
            Spec::Rename(m) => Transform::Rename(m.clone()),
            Spec::Remove(v) => Transform::Remove(v.clone()),
            _ => return Err("not a transform".to_owned()),
        })
    }

    /// Applies to one event; `Err` is a bad event (with why), `Ok(vec![])`
    /// a filtered one. Parsers keep the tags and fields the raw event
    /// already had (a file line's `file` and `offset`) unless they set them.
    fn apply(&self, e: Event) -> Result<Vec<Event>, String> {
        let parses = matches!(
            self,
            Transform::Json(_) | Transform::Influx(_) | Transform::Nginx(_)
        );
        if parses && (!e.fields.is_empty() || !e.tags.is_empty()) {
            let (fields, tags) = (e.fields.clone(), e.tags.clone());
            let mut out = self.apply_one(e)?;
            for x in &mut out {
                for (k, v) in &fields {
                    if !x.fields.contains_key(k) {
                        x.fields.insert(k.clone(), v.clone());
                    }
                }
                for (k, v) in &tags {
                    if !x.tags.contains_key(k) {
                        x.tags.insert(k.clone(), v.clone());
                    }
                }
            }
            return Ok(out);
        }
        self.apply_one(e)
    }

    fn apply_one(&self, mut e: Event) -> Result<Vec<Event>, String> {
        match self {
            Transform::Json(p) => {
                let raw = e.raw.take().ok_or("no raw line to parse")?;
                p.parse(&raw, e.timestamp_ns)
                    .map_err(|err| format!("{err}: {raw:.200}"))
            }
            Transform::Influx(precision) => {
                let raw = e.raw.take().ok_or("no raw line to parse")?;
                let mut out = Vec::new();
                for line in raw.lines() {
                    if let Some(ev) =
                        crate::transforms::influx::parse_line(line, *precision, e.timestamp_ns)
                            .map_err(|err| format!("{err}: {line:.200}"))?
                    {
                        out.push(ev);
                    }
                }
                Ok(out)
            }
            Transform::Nginx(p) => {
                let raw = e.raw.take().ok_or("no raw line to parse")?;
                p.parse(&raw)
                    .map(|x| vec![x])
                    .map_err(|err| format!("{err}: {raw:.200}"))
            }
            Transform::Geoip(g) => {
                g.apply(&mut e);
                Ok(vec![e])
            }
            Transform::Filter(field, cond) => {
                let v = e
                    .fields
                    .get(field.as_str())
                    .map(ToString::to_string)
                    .or_else(|| e.tags.get(field.as_str()).map(ToString::to_string));
                let num = || v.as_deref().and_then(|s| s.parse::<f64>().ok());
                let keep = match cond {
                    Condition::Equals(x) => v.as_deref() == Some(x.as_str()),
                    Condition::NotEquals(x) => v.as_deref() != Some(x.as_str()),
                    Condition::Exists => v.is_some(),
                    Condition::Greater(x) => num().is_some_and(|n| n > *x),
                    Condition::Less(x) => num().is_some_and(|n| n < *x),
                };
                Ok(if keep { vec![e] } else { vec![] })
            }
            Transform::Set(m) => {
                for (k, v) in m {
                    e.fields.insert(k.into(), Value::Str(v.into()));
                }
                Ok(vec![e])
            }
            Transform::Rename(m) => {
                for (from, to) in m {
                    if let Some(v) = e.fields.remove(from.as_str()) {
                        e.fields.insert(to.into(), v);
                    } else if let Some(v) = e.tags.remove(from.as_str()) {
                        e.tags.insert(to.into(), v);
                    }
                }
                Ok(vec![e])
            }
            Transform::Remove(ks) => {
                for k in ks {
                    e.fields.remove(k.as_str());
                    e.tags.remove(k.as_str());
                }
                Ok(vec![e])
            }
        }
    }
}

/// The batches arriving on `rx` until each of its `inputs` has ended (or
/// every sender is gone).
fn batches(rx: &Receiver<Msg>, inputs: usize) -> impl Iterator<Item = Vec<Event>> + '_ {
    let mut ended = 0;
    std::iter::from_fn(move || {
        loop {
            match rx.recv().ok()? {
                Msg::End => {
                    ended += 1;
                    if ended == inputs {
                        return None;
                    }
                }
                Msg::Events(b) => return Some(b),
            }
        }
    })
}

/// Runs a transform. Bad events are counted, sampled in the log and, when
/// something reads this transform's `.errors` output, sent there with an
/// `error` field saying why.
fn transform(
    name: &str,
    t: Transform,
    rx: Receiver<Msg>,
    inputs: usize,
    outs: &[SyncSender<Msg>],
    dead: &[SyncSender<Msg>],
    counters: &Counters,
) {
    let mut sampler = Sampler {
        last: None,
        suppressed: 0,
    };
    for batch in batches(&rx, inputs) {
        counters
            .events_in
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut out = Vec::with_capacity(batch.len());
        let mut bad = Vec::new();
        for e in batch {
            let original = (!dead.is_empty()).then(|| e.clone());
            let (ack, origin) = (e.ack.clone(), e.origin.clone());
            match t.apply(e) {
                Ok(v) => out.extend(v.into_iter().map(|mut x| {
                    // Derived events keep the source batch's acknowledgement.
                    if x.ack.is_none() {
                        x.ack.clone_from(&ack);
                        x.origin.clone_from(&origin);
                    }
                    x
                })),
                Err(why) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    sampler.bad(counters, name, "bad event skipped", &why);
                    if let Some(mut o) = original {
                        o.fields.insert("error".into(), Value::from(why));
                        bad.push(o);
                    }
                }
            }
        }
        if !bad.is_empty() {
            fan_out(dead, bad);
        }
        counters
            .events_out
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        if !out.is_empty() {
            fan_out(outs, out);
        }
    }
    end(outs);
    end(dead);
}

/// The SQLite sink: batches by size or after 200 ms, each batch and the
/// positions after it in one transaction; events at or below positions an
/// earlier run stored are dropped (a source sent them again).
fn sqlite_sink(
    mut sink: SqliteSink,
    batch: usize,
    pipeline: &str,
    rx: Receiver<Msg>,
    inputs: usize,
    ctx: &mut SinkCtx<'_>,
) {
    let mut stored = sink.offsets(pipeline).unwrap_or_default();
    let mut write = |events: &[Event]| {
        let fresh: Vec<Event> = events
            .iter()
            .filter(|e| !crate::ack::stored_before(&stored, e))
            .cloned()
            .collect();
        let positions = crate::ack::positions_after(events);
        match sink.write(pipeline, &fresh, &positions) {
            Ok(()) => {
                crate::ack::advance(&mut stored, positions);
                crate::sinks::Outcome::Stored
            }
            // A locked or full database: the same batch again later.
            Err(e) => crate::sinks::Outcome::Retry(e.to_string()),
        }
    };
    let batching = Batching {
        size: batch,
        flush: Duration::from_millis(200),
    };
    batch_sink(&mut write, &batching, rx, inputs, ctx);
}

/// The store sink: batches by size or after 200 ms, each batch with the
/// positions after it in one durable write; events at or below positions
/// an earlier run stored are dropped (a source sent them again). A batch
/// the store refuses (a column written with another type) is halved
/// until the refused events are alone, and those go to `<sink>.errors`.
fn store_sink(
    store: &dyn crate::sinks::EmbeddedStore,
    database: &str,
    batch: usize,
    pipeline: &str,
    rx: Receiver<Msg>,
    inputs: usize,
    ctx: &mut SinkCtx<'_>,
) {
    let mut stored = store.positions(database, pipeline);
    let mut write = |events: &[Event]| {
        let fresh: Vec<Event> = events
            .iter()
            .filter(|e| !crate::ack::stored_before(&stored, e))
            .cloned()
            .collect();
        let positions = crate::ack::positions_after(events);
        let outcome = store.write(database, pipeline, &fresh, &positions);
        if outcome == crate::sinks::Outcome::Stored {
            crate::ack::advance(&mut stored, positions);
        }
        outcome
    };
    let batching = Batching {
        size: batch,
        flush: Duration::from_millis(200),
    };
    batch_sink(&mut write, &batching, rx, inputs, ctx);
}

/// A parsed message keeps its source message's acknowledgement; a bad one
/// is counted and dropped (which acknowledges it).
fn carry(
    original: &Event,
    parsed: Result<Vec<Event>, String>,
    counters: &Counters,
    sampler: &mut Sampler,
    name: &str,
) -> Vec<Event> {
    match parsed {
        Ok(v) => v
            .into_iter()
            .map(|mut x| {
                x.ack.clone_from(&original.ack);
                x.origin.clone_from(&original.origin);
                x
            })
            .collect(),
        Err(why) => {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            sampler.bad(counters, name, "bad message skipped", &why);
            Vec::new()
        }
    }
}

fn kafka_sink(
    mut sink: crate::kafka::KafkaSink,
    encoding: &str,
    key_field: Option<&str>,
    rx: Receiver<Msg>,
    inputs: usize,
    counters: &Counters,
    stop: &AtomicBool,
) {
    // Learn what earlier runs delivered before producing anything; the
    // inputs wait meanwhile (a cluster that is down holds the pipeline).
    if let Err(e) = sink.recover(stop) {
        tracing::error!(error = %e, "kafka sink cannot start");
        counters.errors.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut ended = 0;
    let mut saved = Instant::now();
    loop {
        counters
            .events_out
            .store(sink.delivered.load(Ordering::Relaxed), Ordering::Relaxed);
        if saved.elapsed() >= Duration::from_secs(1) {
            sink.save_state();
            saved = Instant::now();
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Msg::Events(b)) => {
                counters
                    .events_in
                    .fetch_add(b.len() as u64, Ordering::Relaxed);
                for e in b {
                    if sink.already_delivered(&e) {
                        continue; // dropped: acknowledged, not produced again
                    }
                    let payload = match (encoding, &e.raw) {
                        ("text", Some(raw)) => raw.clone(),
                        ("json", _) => e.to_json(),
                        _ => e.to_line_protocol(),
                    };
                    let key = key_field.and_then(|k| {
                        e.fields
                            .get(k)
                            .map(ToString::to_string)
                            .or_else(|| e.tags.get(k).map(ToString::to_string))
                    });
                    sink.send(&payload, key.as_deref(), e);
                }
                sink.poll();
            }
            Ok(Msg::End) => {
                ended += 1;
                if ended == inputs {
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => sink.poll(),
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    if !sink.flush(Duration::from_secs(30)) {
        tracing::warn!("kafka sink: messages still undelivered at shutdown");
    }
    sink.save_state();
    counters
        .events_out
        .store(sink.delivered.load(Ordering::Relaxed), Ordering::Relaxed);
    let failed = sink.failures.load(Ordering::Relaxed);
    counters.errors.fetch_add(failed, Ordering::Relaxed);
}

/// How a batching database sink groups its writes.
struct Batching {
    /// Events per write.
    size: usize,
    /// How long a partial batch waits for more.
    flush: Duration,
}

/// What a batching sink's writes share.
struct SinkCtx<'a> {
    name: &'a str,
    dead: &'a [SyncSender<Msg>],
    counters: &'a Counters,
    stop: &'a AtomicBool,
    sampler: Sampler,
    /// When retrying began after the stop flag was set.
    giving_up_since: Option<Instant>,
}

impl<'a> SinkCtx<'a> {
    fn new(
        name: &'a str,
        dead: &'a [SyncSender<Msg>],
        counters: &'a Counters,
        stop: &'a AtomicBool,
    ) -> Self {
        Self {
            name,
            dead,
            counters,
            stop,
            sampler: Sampler {
                last: None,
                suppressed: 0,
            },
            giving_up_since: None,
        }
    }
}

/// A database sink: batches events by size or age and writes each batch
/// until it is stored ([`deliver`]).
fn batch_sink(
    write: &mut dyn FnMut(&[Event]) -> crate::sinks::Outcome,
    cfg: &Batching,
    rx: Receiver<Msg>,
    inputs: usize,
    ctx: &mut SinkCtx<'_>,
) {
    let mut pending: Vec<Event> = Vec::new();
    let mut oldest: Option<Instant> = None;
    let mut ended = 0;
    loop {
        let wait = oldest.map_or(cfg.flush, |t| cfg.flush.saturating_sub(t.elapsed()));
        let mut finished = false;
        match rx.recv_timeout(wait.max(Duration::from_millis(1))) {
            Ok(Msg::Events(b)) => {
                ctx.counters
                    .events_in
                    .fetch_add(b.len() as u64, Ordering::Relaxed);
                oldest.get_or_insert_with(Instant::now);
                pending.extend(b);
            }
            Ok(Msg::End) => {
                ended += 1;
                finished = ended == inputs;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => finished = true,
        }
        let due = oldest.is_some_and(|t| t.elapsed() >= cfg.flush);
        while pending.len() >= cfg.size || (!pending.is_empty() && (due || finished)) {
            let rest = pending.split_off(pending.len().min(cfg.size));
            let batch = std::mem::replace(&mut pending, rest);
            deliver(write, batch, ctx);
        }
        if pending.is_empty() {
            oldest = None;
        }
        if finished {
            break;
        }
    }
}

/// Writes one batch until it is stored: retries with a growing pause while
/// the database is unreachable (the inputs wait); isolates rejected events
/// by halving, counts them and sends them to the `.errors` output. After a
/// stop, retrying goes on for 30 s in all; then what is left stays
/// unacknowledged (not dropped, which would acknowledge it), so its source
/// sends it again on the next start.
fn deliver(
    write: &mut dyn FnMut(&[Event]) -> crate::sinks::Outcome,
    batch: Vec<Event>,
    ctx: &mut SinkCtx<'_>,
) {
    use crate::sinks::Outcome;
    let mut pause = Duration::from_millis(100);
    loop {
        if ctx
            .giving_up_since
            .is_some_and(|t| t.elapsed() > Duration::from_secs(30))
        {
            tracing::error!(
                component = ctx.name,
                events = batch.len(),
                "giving up at shutdown; the source will send these again"
            );
            std::mem::forget(batch);
            return;
        }
        match write(&batch) {
            Outcome::Stored => {
                ctx.counters
                    .events_out
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                return; // dropped: acknowledged
            }
            Outcome::Rejected(_) if batch.len() > 1 => {
                let mut first = batch;
                let second = first.split_off(first.len() / 2);
                deliver(write, first, ctx);
                deliver(write, second, ctx);
                return;
            }
            Outcome::Rejected(why) => {
                ctx.counters.errors.fetch_add(1, Ordering::Relaxed);
                ctx.sampler
                    .bad(ctx.counters, ctx.name, "event rejected", &why);
                if !ctx.dead.is_empty() {
                    let mut e = batch;
                    for x in &mut e {
                        x.fields.insert("error".into(), Value::from(why.as_str()));
                    }
                    fan_out(ctx.dead, e);
                }
                return;
            }
            Outcome::Retry(why) => {
                ctx.counters.errors.fetch_add(1, Ordering::Relaxed);
                ctx.sampler
                    .bad(ctx.counters, ctx.name, "write failed, retrying", &why);
                if ctx.stop.load(Ordering::Relaxed) {
                    ctx.giving_up_since.get_or_insert_with(Instant::now);
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        }
    }
}

fn write_sink(
    mut w: impl Write,
    enc: Encoding,
    rx: Receiver<Msg>,
    inputs: usize,
    counters: &Counters,
) {
    for b in batches(&rx, inputs) {
        counters
            .events_in
            .fetch_add(b.len() as u64, Ordering::Relaxed);
        for e in &b {
            let line = match enc {
                Encoding::Json => e.to_json(),
                Encoding::LineProtocol => e.to_line_protocol(),
            };
            if writeln!(w, "{line}").is_err() {
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        counters
            .events_out
            .fetch_add(b.len() as u64, Ordering::Relaxed);
        let _ = w.flush();
    }
    let _ = w.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Request, Response, Server};
    use std::sync::Mutex;

    /// A write endpoint that fails the first `fail_first` requests with
    /// 503, rejects any body holding `reject`, and keeps the lines of the
    /// bodies it accepts.
    fn scripted_server(
        fail_first: usize,
        reject: &'static str,
    ) -> (Server, Arc<Mutex<Vec<String>>>) {
        let stored = Arc::new(Mutex::new(Vec::new()));
        let calls = Arc::new(AtomicU64::new(0));
        let s = stored.clone();
        let server = Server::start(
            "127.0.0.1:0",
            1 << 24,
            Arc::new(move |req: Request| {
                if calls.fetch_add(1, Ordering::SeqCst) < fail_first as u64 {
                    return Response::empty(503);
                }
                let body = String::from_utf8_lossy(&req.body).into_owned();
                if body.contains(reject) {
                    return Response::json(400, &serde_json::json!({"error": "unable to parse"}));
                }
                s.lock().unwrap().extend(body.lines().map(str::to_owned));
                Response::empty(204)
            }),
        )
        .unwrap();
        (server, stored)
    }

    #[test]
    fn line_protocol_sink_retries_isolates_rejected_points_and_dead_letters_them() {
        let (server, stored) = scripted_server(2, "pressure=3.3,");
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join("dead.jsonl");
        let toml = format!(
            "[sources.gen]\ntype = \"generator\"\nformat = \"sensors\"\ncount = 2000\n\n\
             [transforms.json]\ntype = \"parse_json\"\ninputs = [\"gen\"]\nhost = \"\"\n\n\
             [sinks.tsdb]\ntype = \"line_protocol\"\ninputs = [\"json\"]\nurl = \"http://{}/api/v1/write?db=public\"\nbatch = 300\nflush_ms = 50\n\n\
             [sinks.dead]\ntype = \"file\"\ninputs = [\"tsdb.errors\"]\npath = \"{}\"\n",
            server.local_addr(),
            dead.display()
        );
        let cfg = PipelineConfig::parse(&toml).unwrap();
        let running = start(&cfg, "t", Arc::new(AtomicBool::new(false))).unwrap();
        let counters = running.counters.clone();
        running.wait();
        let stored = stored.lock().unwrap();
        let dead_lines = std::fs::read_to_string(&dead).unwrap();
        let rejected: Vec<&str> = dead_lines.lines().collect();
        assert!(
            !rejected.is_empty(),
            "the generator makes some pressure=3.3 readings"
        );
        assert!(
            rejected
                .iter()
                .all(|l| l.contains("\"pressure\":3.3") && l.contains("unable to parse"))
        );
        assert!(stored.iter().all(|l| !l.contains("pressure=3.3,")));
        assert!(
            stored.iter().all(|l| l.starts_with("kafka_consumer,host=")),
            "a host tag is added: {}",
            stored[0]
        );
        assert_eq!(
            stored.len() + rejected.len(),
            2000,
            "each point once: stored or dead-lettered"
        );
        let c = &counters["tsdb"];
        assert_eq!(c.events_out.load(Ordering::Relaxed) as usize, stored.len());
        assert!(c.errors.load(Ordering::Relaxed) as usize >= rejected.len() + 2);
    }
}

//! The web console and `/metrics`, served on the HTTP port of `weir up` and
//! `weir broker --http`.
//!
//! * `/console/`: a single page (HTML, JS, CSS embedded in the binary, no
//!   build step, no internet) that draws everything from the JSON below.
//! * `/api/v1/console/...`: overview (with a rate history sampled every
//!   2 s, last 10 minutes), topics, a topic (partitions, configs), its
//!   messages (latest N, from an offset, from a time), groups, a group
//!   (members, assignment, offsets, lag and its history), pipelines (the
//!   component graph with counters and recent error samples). Data charts
//!   and the SQL box use `/api/v1/sql` on the embedded store.
//! * Changes (create or delete a topic, reset a group's offsets) only when
//!   `[console] admin = true`; otherwise they answer 403.
//! * `/metrics`: Prometheus text of the broker (`weir_broker::metrics`),
//!   the pipelines and the process.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use serde_json::{Value, json};
use weir_broker::Broker;
use weir_broker::metrics::label;
use weir_pipeline::config::PipelineConfig;
use weir_pipeline::http::{Request, Response};
use weir_pipeline::runtime::Counters;

const INDEX_HTML: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const APP_CSS: &str = include_str!("console/app.css");

/// Samples kept for the charts (every 2 s: 10 minutes).
const HISTORY: usize = 300;
const SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// One component of a running pipeline, as the console shows it.
struct ComponentView {
    id: String,
    kind: &'static str,
    role: &'static str,
    inputs: Vec<String>,
    counters: Arc<Counters>,
}

/// A running pipeline.
struct PipelineView {
    name: String,
    components: Vec<ComponentView>,
}

/// Totals at one moment; rates are differences between samples.
#[derive(Clone, Default)]
struct Sample {
    at_ms: i64,
    messages_in: u64,
    messages_out: u64,
    bytes_in: u64,
    bytes_out: u64,
    /// Per pipeline: events stored by its sinks, errors, lag.
    pipelines: BTreeMap<String, (u64, u64, u64)>,
    /// Per group: lag per topic-partition.
    groups: BTreeMap<String, BTreeMap<String, u64>>,
}

/// What the console serves.
pub(crate) struct Console {
    /// Weak: the HTTP threads and the sampler must not keep the broker
    /// alive, or it could not close its logs cleanly at shutdown.
    broker: std::sync::Weak<Broker>,
    bootstrap: String,
    pipelines: Mutex<Vec<PipelineView>>,
    history: Mutex<VecDeque<Sample>>,
    admin: bool,
    /// `weir up` has an embedded store (SQL, the Data view); `weir broker`
    /// has not.
    store: bool,
    started: Instant,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn error(status: u16, message: impl std::fmt::Display) -> Response {
    Response::json(
        status,
        &json!({"error_code": status.to_string(), "error_message": message.to_string()}),
    )
}

impl Console {
    pub(crate) fn new(
        broker: Arc<Broker>,
        bootstrap: String,
        admin: bool,
        store: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            broker: Arc::downgrade(&broker),
            bootstrap,
            pipelines: Mutex::new(Vec::new()),
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            admin,
            store,
            started: Instant::now(),
        })
    }

    /// Adds a running pipeline.
    pub(crate) fn add_pipeline(
        &self,
        name: &str,
        config: &PipelineConfig,
        counters: &BTreeMap<String, Arc<Counters>>,
    ) {
        let components = config
            .components
            .iter()
            .filter_map(|c| {
                Some(ComponentView {
                    id: c.id.clone(),
                    kind: c.spec.type_name(),
                    role: if c.spec.is_source() {
                        "source"
                    } else if c.spec.is_sink() {
                        "sink"
                    } else {
                        "transform"
                    },
                    inputs: c.inputs.clone(),
                    counters: counters.get(&c.id)?.clone(),
                })
            })
            .collect();
        self.pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(PipelineView {
                name: name.to_owned(),
                components,
            });
    }

    /// The status line of `weir up`: events/s out of each component since
    /// the last call (generators and their `to_` sinks left out, and
    /// components with no traffic yet), and the total lag.
    pub(crate) fn status_line(&self, last: &mut BTreeMap<String, u64>, secs: f64) -> String {
        let pipelines = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        let mut parts = BTreeMap::new();
        let mut lag = 0;
        for c in pipelines.iter().flat_map(|p| &p.components) {
            lag += c.counters.lag.load(Ordering::Relaxed);
            let (events_in, out) = (
                c.counters.events_in.load(Ordering::Relaxed),
                c.counters.events_out.load(Ordering::Relaxed),
            );
            if c.id.starts_with("to_")
                || c.id.ends_with("generator")
                || (events_in == 0 && out == 0)
            {
                continue;
            }
            let before = last.insert(c.id.clone(), out).unwrap_or(out);
            parts.insert(
                c.id.clone(),
                format!("{} {:.0}/s", c.id, (out - before) as f64 / secs),
            );
        }
        let parts: Vec<String> = parts.into_values().collect();
        format!("{} | lag {lag}", parts.join(", "))
    }

    /// Samples totals every 2 s until `stop`.
    pub(crate) fn start_sampler(self: &Arc<Self>, stop: Arc<AtomicBool>) {
        let me = self.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Some(broker) = me.broker.upgrade() else {
                    return;
                };
                let s = Live {
                    broker,
                    console: &me,
                }
                .sample();
                {
                    let mut h = me.history.lock().unwrap_or_else(|e| e.into_inner());
                    if h.len() == HISTORY {
                        h.pop_front();
                    }
                    h.push_back(s);
                }
                let until = Instant::now() + SAMPLE_EVERY;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        });
    }

    /// Answers a console, API or metrics request; `None` if the path is
    /// not the console's. `req.path` is already percent-decoded.
    pub(crate) fn route(&self, req: &Request) -> Option<Response> {
        let path = req.path.as_str();
        let method = req.method.as_str();
        if matches!(method, "POST" | "DELETE")
            && path.starts_with("/api/v1/console/")
            && let Some(r) = cross_site(req)
        {
            return Some(r);
        }
        match (method, path) {
            ("GET", "/") | ("GET", "/console") => {
                return Some(Response::empty(302).with_header("Location", "/console/"));
            }
            ("GET", "/console/") => {
                return Some(Response::new(200, "text/html; charset=utf-8", INDEX_HTML));
            }
            ("GET", "/console/app.js") => {
                return Some(Response::new(200, "text/javascript; charset=utf-8", APP_JS));
            }
            ("GET", "/console/app.css") => {
                return Some(Response::new(200, "text/css; charset=utf-8", APP_CSS));
            }
            _ => {}
        }
        let ours = path == "/metrics" || path.starts_with("/api/v1/console/");
        if !ours {
            return None;
        }
        let Some(broker) = self.broker.upgrade() else {
            return Some(error(503, "the broker is shutting down"));
        };
        let live = Live {
            broker,
            console: self,
        };
        live.route(req)
    }
}

impl Live<'_> {
    fn route(&self, req: &Request) -> Option<Response> {
        let path = req.path.as_str();
        let method = req.method.as_str();
        Some(match (method, path) {
            ("GET", "/metrics") => Response::new(200, "text/plain; version=0.0.4", self.metrics()),
            ("GET", "/api/v1/console/overview") => Response::json(200, &self.overview()),
            ("GET", "/api/v1/console/topics") => Response::json(200, &self.topics()),
            ("POST", "/api/v1/console/topics") => self.create_topic(req),
            ("GET", "/api/v1/console/groups") => Response::json(200, &self.groups()),
            ("GET", "/api/v1/console/brokers") => Response::json(200, &self.brokers()),
            ("GET", "/api/v1/console/pipelines") => Response::json(200, &self.pipelines_json()),
            // Topic names cannot hold '/'; group names can, so a group is
            // everything after the prefix (less a final "/reset").
            (_, p) if p.starts_with("/api/v1/console/topics/") => {
                let rest = &p["/api/v1/console/topics/".len()..];
                match (method, rest.split_once('/')) {
                    ("GET", Some((name, "messages"))) => self.messages(name, req),
                    ("GET", None) => self.topic(rest),
                    ("DELETE", None) => self.delete_topic(rest),
                    _ => error(404, format!("no such console endpoint: {method} {p}")),
                }
            }
            (_, p) if p.starts_with("/api/v1/console/groups/") => {
                let rest = &p["/api/v1/console/groups/".len()..];
                match (method, rest.strip_suffix("/reset")) {
                    ("GET", _) => self.group(rest),
                    ("POST", Some(name)) => self.reset_group(name, req),
                    _ => error(404, format!("no such console endpoint: {method} {p}")),
                }
            }
            (
                _,
                "/api/v1/console/overview"
                | "/api/v1/console/topics"
                | "/api/v1/console/groups"
                | "/api/v1/console/brokers"
                | "/api/v1/console/pipelines"
                | "/metrics",
            ) => error(405, format!("{method} is not allowed on {path}")),
            (_, p) if p.starts_with("/api/v1/console/") => {
                error(404, format!("no such console endpoint: {method} {p}"))
            }
            _ => return None,
        })
    }
}

/// The console while the broker is alive: holds it for one request.
struct Live<'a> {
    broker: Arc<Broker>,
    console: &'a Console,
}

impl std::ops::Deref for Live<'_> {
    type Target = Console;
    fn deref(&self) -> &Console {
        self.console
    }
}

impl Live<'_> {
    fn sample(&self) -> Sample {
        let t = weir_broker::metrics::totals(&self.broker);
        let mut s = Sample {
            at_ms: now_ms(),
            messages_in: t.messages_in,
            messages_out: t.messages_out,
            bytes_in: t.bytes_in,
            bytes_out: t.bytes_out,
            ..Sample::default()
        };
        for p in self
            .pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let mut v = (0, 0, 0);
            for c in &p.components {
                if c.role == "sink" {
                    v.0 += c.counters.events_out.load(Ordering::Relaxed);
                }
                v.1 += c.counters.errors.load(Ordering::Relaxed);
                v.2 += c.counters.lag.load(Ordering::Relaxed);
            }
            s.pipelines.insert(p.name.clone(), v);
        }
        for (g, _, _) in self.broker.groups().list() {
            let lags = self
                .broker
                .group_lag(&g)
                .into_iter()
                .filter_map(|l| Some((format!("{}/{}", l.topic, l.partition), l.lag?)))
                .collect();
            s.groups.insert(g, lags);
        }
        s
    }

    fn overview(&self) -> Value {
        let topics = self.broker.topics().all();
        let (mut size, mut partitions, mut messages) = (0u64, 0usize, 0u64);
        for t in topics.iter().filter(|t| !t.name.starts_with("__")) {
            partitions += t.partition_count();
            for p in &t.partitions {
                size += p.log.size_bytes();
                messages += held(&p.log);
            }
        }
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let series: Vec<Value> = history
            .iter()
            .zip(history.iter().skip(1))
            .map(|(a, b)| {
                let secs = ((b.at_ms - a.at_ms) as f64 / 1000.0).max(0.001);
                let rate = |x: u64, y: u64| y.saturating_sub(x) as f64 / secs;
                let events: BTreeMap<&String, f64> = b
                    .pipelines
                    .iter()
                    .map(|(k, v)| (k, rate(a.pipelines.get(k).map_or(v.0, |p| p.0), v.0)))
                    .collect();
                json!({
                    "t": b.at_ms,
                    "messages_in_per_s": rate(a.messages_in, b.messages_in),
                    "messages_out_per_s": rate(a.messages_out, b.messages_out),
                    "bytes_in_per_s": rate(a.bytes_in, b.bytes_in),
                    "bytes_out_per_s": rate(a.bytes_out, b.bytes_out),
                    "events_per_s": events,
                })
            })
            .collect();
        let latest = series.last().cloned().unwrap_or(json!({}));
        let pipelines: Vec<Value> = self
            .pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|p| {
                let (mut errors, mut lag, mut stored) = (0, 0, 0);
                for c in &p.components {
                    errors += c.counters.errors.load(Ordering::Relaxed);
                    lag += c.counters.lag.load(Ordering::Relaxed);
                    if c.role == "sink" {
                        stored += c.counters.events_out.load(Ordering::Relaxed);
                    }
                }
                json!({
                    "name": p.name,
                    "components": p.components.len(),
                    "events_per_s": latest["events_per_s"][&p.name].as_f64().unwrap_or(0.0),
                    "stored": stored, "errors": errors, "lag": lag,
                })
            })
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": self.started.elapsed().as_secs(),
            "broker": {
                "bootstrap": self.bootstrap,
                "cluster_id": self.broker.meta().cluster_id,
                "node_id": self.broker.meta().node_id,
                "data_bytes": size,
                "topics": topics.iter().filter(|t| !t.name.starts_with("__")).count(),
                "partitions": partitions,
                "messages": messages,
                "connections": self.broker.metrics().connections.load(Ordering::Relaxed),
                "groups": self.broker.groups().list().len(),
                "messages_in_per_s": latest["messages_in_per_s"].as_f64().unwrap_or(0.0),
                "messages_out_per_s": latest["messages_out_per_s"].as_f64().unwrap_or(0.0),
                "bytes_in_per_s": latest["bytes_in_per_s"].as_f64().unwrap_or(0.0),
                "bytes_out_per_s": latest["bytes_out_per_s"].as_f64().unwrap_or(0.0),
            },
            "pipelines": pipelines,
            "series": series,
            "admin": self.admin,
            "store": self.store,
        })
    }

    fn brokers(&self) -> Value {
        let cluster = self.broker.cluster();
        let list: Vec<Value> = cluster
            .brokers()
            .into_iter()
            .map(|b| {
                let (host, port) = b
                    .endpoints
                    .first()
                    .map_or((String::new(), 0), |e| (e.1.clone(), e.2));
                json!({
                    "id": b.id,
                    "address": format!("{host}:{port}"),
                    "epoch": b.epoch,
                    "state": if b.fenced { "fenced" } else { "alive" },
                    "controller": b.controller,
                    "partitions_led": b.leads,
                    "replicas": b.replicas,
                })
            })
            .collect();
        json!({
            "this": self.broker.meta().node_id,
            "controller": cluster.controller(),
            "brokers": list,
        })
    }

    fn topics(&self) -> Value {
        let mut topics = self.broker.topics().all();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        let list: Vec<Value> = topics
            .iter()
            .map(|t| {
                let (mut size, mut messages, mut end) = (0u64, 0u64, 0u64);
                for p in &t.partitions {
                    size += p.log.size_bytes();
                    messages += held(&p.log);
                    end += p.log.log_end_offset();
                }
                let stats = &t.stats;
                json!({
                    "name": t.name,
                    "id": t.id.to_string(),
                    "internal": t.name.starts_with("__"),
                    "partitions": t.partition_count(),
                    "size_bytes": size,
                    "messages": messages,
                    "end_offsets": end,
                    "retention_ms": t.config.retention_ms,
                    "retention_bytes": t.config.retention_bytes,
                    "bytes_in": stats.bytes_in.load(Ordering::Relaxed),
                    "bytes_out": stats.bytes_out.load(Ordering::Relaxed),
                })
            })
            .collect();
        json!({ "topics": list })
    }

    fn topic(&self, name: &str) -> Response {
        let Some(t) = self.broker.topics().get(name) else {
            return error(404, format!("no topic {name}"));
        };
        let partitions: Vec<Value> = t
            .partitions
            .iter()
            .map(|p| {
                let segments = p.log.segments();
                let info = t.assignment.get(p.index as usize);
                json!({
                    "partition": p.index,
                    "leader": info.map_or(-1, |i| i.leader),
                    "replicas": info.map(|i| i.replicas.clone()).unwrap_or_default(),
                    "isr": info.map(|i| i.isr.clone()).unwrap_or_default(),
                    "log_start_offset": p.log.log_start_offset(),
                    "log_end_offset": p.log.log_end_offset(),
                    "high_watermark": p.high_watermark(),
                    "size_bytes": p.log.size_bytes(),
                    "segments": segments.len(),
                })
            })
            .collect();
        let configs: BTreeMap<&str, String> = t.config.entries().into_iter().collect();
        Response::json(
            200,
            &json!({
                "name": t.name,
                "id": t.id.to_string(),
                "partitions": partitions,
                "configs": configs,
                "overrides": t.overrides,
            }),
        )
    }

    /// `?limit=N` (default 20, at most 500) and one of `offset=`, `time=`
    /// (ms) or nothing (the latest N); `partition=` or all partitions.
    fn messages(&self, name: &str, req: &Request) -> Response {
        let Some(t) = self.broker.topics().get(name) else {
            return error(404, format!("no topic {name}"));
        };
        let num = |k: &str| -> Result<Option<i64>, Response> {
            match req.param(k).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| error(400, format!("{k}={v} is not a number"))),
            }
        };
        let (limit, partition, offset, time) =
            match (num("limit"), num("partition"), num("offset"), num("time")) {
                (Ok(l), Ok(p), Ok(o), Ok(t)) => (l.unwrap_or(20), p, o, t),
                (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => return e,
            };
        if !(1..=500).contains(&limit) {
            return error(400, format!("limit={limit}: from 1 to 500 messages"));
        }
        if offset.is_some_and(|o| o < 0) {
            return error(400, "offset must be 0 or more");
        }
        if offset.is_some() && time.is_some() {
            return error(400, "give offset or time, not both");
        }
        let partitions: Vec<i32> = match partition {
            Some(p) if p < 0 || p as usize >= t.partition_count() => {
                return error(404, format!("{name} has no partition {p}"));
            }
            Some(p) => vec![p as i32],
            None => t.partitions.iter().map(|p| p.index).collect(),
        };
        let start = match (offset, time) {
            (Some(o), _) => Start::Offset(o),
            (None, Some(t)) => Start::Time(t),
            (None, None) => Start::Latest,
        };
        match browse(&self.bootstrap, name, &partitions, start, limit as usize) {
            Ok((messages, complete)) => Response::json(
                200,
                &json!({ "topic": name, "messages": messages, "complete": complete }),
            ),
            Err(e) => error(502, format!("{e:#}")),
        }
    }

    fn groups(&self) -> Value {
        let mut list = self.broker.groups().list();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        let groups: Vec<Value> = list
            .into_iter()
            .map(|(g, protocol, state)| {
                let lags = self.broker.group_lag(&g);
                let members = self
                    .broker
                    .groups()
                    .describe(&g)
                    .map_or(0, |v| v.members.len());
                json!({
                    "group": g,
                    "protocol_type": protocol,
                    "state": format!("{state:?}"),
                    "members": members,
                    "partitions": lags.len(),
                    "lag": lags.iter().filter_map(|l| l.lag).sum::<u64>(),
                })
            })
            .collect();
        json!({ "groups": groups })
    }

    fn group(&self, id: &str) -> Response {
        let view = self.broker.groups().describe(id);
        let lags = self.broker.group_lag(id);
        if view.is_none() && lags.is_empty() {
            return error(404, format!("no group {id}"));
        }
        let members: Vec<Value> = view
            .as_ref()
            .map(|v| {
                v.members
                    .iter()
                    .map(|(member, instance, client, host, _, assignment)| {
                        json!({
                            "member_id": member, "instance_id": instance,
                            "client_id": client, "client_host": host,
                            "assignment": decode_assignment(assignment),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let offsets: Vec<Value> = lags
            .iter()
            .map(|l| {
                json!({
                    "topic": l.topic, "partition": l.partition,
                    "committed": l.committed, "end": l.end, "lag": l.lag,
                })
            })
            .collect();
        let history: Vec<Value> = self
            .history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|s| {
                let lags = s.groups.get(id)?;
                Some(json!({"t": s.at_ms, "lag": lags.values().sum::<u64>(), "partitions": lags}))
            })
            .collect();
        Response::json(
            200,
            &json!({
                "group": id,
                "state": view.as_ref().map(|v| format!("{:?}", v.state)),
                "protocol_type": view.as_ref().map(|v| v.protocol_type.clone()),
                "assignor": view.as_ref().map(|v| v.protocol_name.clone()),
                "members": members,
                "offsets": offsets,
                "lag_history": history,
            }),
        )
    }

    fn pipelines_json(&self) -> Value {
        let list: Vec<Value> = self
            .pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|p| {
                let components: Vec<Value> = p
                    .components
                    .iter()
                    .map(|c| {
                        let samples: Vec<Value> = c
                            .counters
                            .error_samples()
                            .into_iter()
                            .map(|(t, text)| json!({"t": t, "error": text}))
                            .collect();
                        json!({
                            "id": c.id, "type": c.kind, "role": c.role, "inputs": c.inputs,
                            "events_in": c.counters.events_in.load(Ordering::Relaxed),
                            "events_out": c.counters.events_out.load(Ordering::Relaxed),
                            "errors": c.counters.errors.load(Ordering::Relaxed),
                            "lag": c.counters.lag.load(Ordering::Relaxed),
                            "bytes": c.counters.bytes.load(Ordering::Relaxed),
                            "error_samples": samples,
                        })
                    })
                    .collect();
                json!({ "name": p.name, "components": components })
            })
            .collect();
        json!({ "pipelines": list })
    }

    fn refuse_unless_admin(&self) -> Option<Response> {
        (!self.admin).then(|| {
            error(
                403,
                "the console is read-only; set admin = true in the [console] table of weir.toml to allow changes",
            )
        })
    }

    fn conn(&self) -> crate::kafka_cli::Conn {
        crate::kafka_cli::Conn::to(&self.bootstrap)
    }

    /// `{"name": .., "partitions": 1, "configs": {"retention.ms": ".."}}`
    fn create_topic(&self, req: &Request) -> Response {
        if let Some(r) = self.refuse_unless_admin() {
            return r;
        }
        let body: Value = match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(e) => return error(400, format!("the body is not JSON: {e}")),
        };
        let Some(name) = body["name"].as_str().filter(|n| !n.is_empty()) else {
            return error(400, "a topic needs a name");
        };
        let configs = body["configs"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_owned))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let partitions = match &body["partitions"] {
            Value::Null => 1,
            v => match v.as_i64().and_then(|n| i32::try_from(n).ok()) {
                Some(n @ 1..=10_000) => n,
                _ => return error(400, format!("partitions must be 1 to 10000, got {v}")),
            },
        };
        let replication_factor = match &body["replication_factor"] {
            Value::Null => -1,
            v => match v.as_i64().and_then(|n| i32::try_from(n).ok()) {
                Some(n @ (-1 | 1..=32_767)) => n,
                _ => {
                    return error(
                        400,
                        format!("replication_factor must be -1 or 1 to 32767, got {v}"),
                    );
                }
            },
        };
        let cmd = crate::kafka_cli::TopicCommand::Create {
            name: name.to_owned(),
            partitions,
            replication_factor,
            configs,
            if_not_exists: false,
        };
        let mut out = Vec::new();
        match crate::kafka_cli::topic(&self.conn(), cmd, &mut out) {
            Ok(()) => Response::json(201, &json!({"created": name})),
            Err(e) => error(400, format!("{e:#}")),
        }
    }

    fn delete_topic(&self, name: &str) -> Response {
        if let Some(r) = self.refuse_unless_admin() {
            return r;
        }
        let cmd = crate::kafka_cli::TopicCommand::Delete {
            name: name.to_owned(),
        };
        let mut out = Vec::new();
        match crate::kafka_cli::topic(&self.conn(), cmd, &mut out) {
            Ok(()) => Response::json(200, &json!({"deleted": name})),
            Err(e) => error(400, format!("{e:#}")),
        }
    }

    /// `{"topic": .., "to": "earliest" | "latest" | OFFSET}`
    fn reset_group(&self, group: &str, req: &Request) -> Response {
        if let Some(r) = self.refuse_unless_admin() {
            return r;
        }
        let body: Value = match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(e) => return error(400, format!("the body is not JSON: {e}")),
        };
        let Some(topic) = body["topic"].as_str() else {
            return error(400, "name the topic to reset");
        };
        let to = &body["to"];
        let cmd = crate::kafka_cli::GroupCommand::ResetOffsets {
            group: group.to_owned(),
            topic: topic.to_owned(),
            to_earliest: to == "earliest",
            to_latest: to == "latest",
            to_offset: to.as_i64(),
            to_time: None,
        };
        if !(to == "earliest" || to == "latest" || to.is_i64()) {
            return error(400, "\"to\" is \"earliest\", \"latest\" or an offset");
        }
        let mut out = Vec::new();
        match crate::kafka_cli::group(&self.conn(), cmd, &mut out) {
            Ok(()) => Response::json(
                200,
                &json!({"group": group, "result": String::from_utf8_lossy(&out)}),
            ),
            Err(e) => error(400, format!("{e:#}")),
        }
    }

    /// Prometheus text: the broker's, the pipelines', the process's.
    pub(crate) fn metrics(&self) -> String {
        use std::fmt::Write;
        let mut out = weir_broker::metrics::render(&self.broker);
        let pipelines = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        let each =
            |out: &mut String, name: &str, kind: &str, help: &str, f: &dyn Fn(&Counters) -> u64| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                for p in pipelines.iter() {
                    for c in &p.components {
                        let _ = writeln!(
                            out,
                            "{name}{{pipeline=\"{}\",component=\"{}\",type=\"{}\"}} {}",
                            label(&p.name),
                            label(&c.id),
                            c.kind,
                            f(&c.counters)
                        );
                    }
                }
            };
        each(
            &mut out,
            "weir_pipeline_events_in_total",
            "counter",
            "Events a pipeline component received.",
            &|c| c.events_in.load(Ordering::Relaxed),
        );
        each(
            &mut out,
            "weir_pipeline_events_out_total",
            "counter",
            "Events a pipeline component sent on (sinks: stored).",
            &|c| c.events_out.load(Ordering::Relaxed),
        );
        each(
            &mut out,
            "weir_pipeline_errors_total",
            "counter",
            "Bad events and failed writes of a pipeline component.",
            &|c| c.errors.load(Ordering::Relaxed),
        );
        each(
            &mut out,
            "weir_pipeline_input_bytes_total",
            "counter",
            "Raw bytes a source read.",
            &|c| c.bytes.load(Ordering::Relaxed),
        );
        each(
            &mut out,
            "weir_pipeline_lag",
            "gauge",
            "Messages a Kafka source is behind the end of its partitions.",
            &|c| c.lag.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP weir_uptime_seconds Seconds since start.\n# TYPE weir_uptime_seconds gauge\nweir_uptime_seconds {}",
            self.started.elapsed().as_secs()
        );
        if let Some(rss) = resident_bytes() {
            let _ = writeln!(
                out,
                "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}"
            );
        }
        out
    }
}

/// Answers a console, API or metrics request behind the HTTP credentials
/// (when set); `None` for paths that are not the console's.
pub(crate) fn guarded(
    console: &Console,
    req: &Request,
    auth: Option<&(String, String)>,
) -> Option<Response> {
    let p = req.path.as_str();
    let ours = p == "/"
        || p == "/metrics"
        || p == "/console"
        || p.starts_with("/console/")
        || p.starts_with("/api/v1/console/");
    if !ours {
        return None;
    }
    if let Some(r) = crate::up::denied(req, auth) {
        return Some(r);
    }
    console.route(req)
}

/// Resident memory of this process (Linux: VmRSS in /proc/self/status).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Messages a partition holds (its offsets are read one after the other,
/// so a concurrent DeleteRecords must not underflow this).
fn held(log: &weir_log::Log) -> u64 {
    let start = log.log_start_offset();
    log.log_end_offset().saturating_sub(start)
}

/// Changes must come from the console's own page: a JSON body (which a
/// cross-site form cannot send without a preflight this server never
/// grants) and no cross-site fetch metadata.
fn cross_site(req: &Request) -> Option<Response> {
    if req
        .header("sec-fetch-site")
        .is_some_and(|s| s.eq_ignore_ascii_case("cross-site"))
    {
        return Some(error(403, "cross-site requests cannot change anything"));
    }
    let json = req
        .header("content-type")
        .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/json"));
    (req.method == "POST" && !json)
        .then(|| error(415, "send the body as Content-Type: application/json"))
}

/// A consumer-protocol assignment (version, then topics with partitions),
/// as `topic: [partitions]`; empty if it does not parse.
fn decode_assignment(bytes: &[u8]) -> BTreeMap<String, Vec<i32>> {
    fn take<const N: usize>(b: &mut &[u8]) -> Option<[u8; N]> {
        let (head, rest) = b.split_first_chunk::<N>()?;
        *b = rest;
        Some(*head)
    }
    let mut out = BTreeMap::new();
    let mut b = bytes;
    let parse = |b: &mut &[u8], out: &mut BTreeMap<String, Vec<i32>>| -> Option<()> {
        take::<2>(b)?;
        let topics = i32::from_be_bytes(take::<4>(b)?);
        for _ in 0..topics.max(0) {
            let len = i16::from_be_bytes(take::<2>(b)?).max(0) as usize;
            let name = String::from_utf8_lossy(b.get(..len)?).into_owned();
            *b = &b[len..];
            let n = i32::from_be_bytes(take::<4>(b)?);
            let mut parts = Vec::new();
            for _ in 0..n.max(0) {
                parts.push(i32::from_be_bytes(take::<4>(b)?));
            }
            out.insert(name, parts);
        }
        Some(())
    };
    let _ = parse(&mut b, &mut out);
    out
}

/// Where the message browser starts.
#[derive(Debug, Clone, Copy)]
enum Start {
    Latest,
    Offset(i64),
    Time(i64),
}

/// Up to `limit` messages of each listed partition, read with a
/// librdkafka consumer (so every compression codec is decoded).
fn browse(
    bootstrap: &str,
    topic: &str,
    partitions: &[i32],
    start: Start,
    limit: usize,
) -> Result<(Vec<Value>, bool)> {
    let consumer: BaseConsumer = crate::kafka_cli::client_config(bootstrap, &[])?
        .set("group.id", "weir-console")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .context("creating a consumer")?;
    let timeout = Duration::from_secs(5);
    let mut tpl = rdkafka::TopicPartitionList::new();
    let mut wanted: BTreeMap<i32, i64> = BTreeMap::new();
    for &p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .with_context(|| format!("reading the offsets of {topic}/{p}"))?;
        let from = match start {
            Start::Latest => high.saturating_sub(limit as i64).max(low),
            Start::Offset(o) => o.max(low).min(high),
            Start::Time(_) => low,
        };
        if from < high {
            tpl.add_partition_offset(topic, p, rdkafka::Offset::Offset(from))?;
            wanted.insert(p, high.min(from + limit as i64));
        }
    }
    if let Start::Time(ms) = start {
        let mut times = rdkafka::TopicPartitionList::new();
        for &p in wanted.keys() {
            times.add_partition_offset(topic, p, rdkafka::Offset::Offset(ms))?;
        }
        let found = consumer
            .offsets_for_times(times, timeout)
            .context("finding offsets for the time")?;
        tpl = rdkafka::TopicPartitionList::new();
        let mut found_at = BTreeMap::new();
        for e in found.elements() {
            // -1: nothing at or after that time in this partition.
            if let Some(o) = e.offset().to_raw().filter(|&o| o >= 0) {
                tpl.add_partition_offset(topic, e.partition(), rdkafka::Offset::Offset(o))?;
                found_at.insert(e.partition(), o + limit as i64);
            }
        }
        wanted = found_at;
    }
    if wanted.is_empty() {
        return Ok((Vec::new(), true));
    }
    consumer.assign(&tpl)?;
    let mut out = Vec::new();
    let mut open: BTreeMap<i32, i64> = wanted.clone();
    let deadline = Instant::now() + timeout;
    while !open.is_empty() && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let p = m.partition();
                if let Some(&end) = open.get(&p) {
                    if m.offset() < end {
                        out.push(message_json(&m));
                    }
                    if m.offset() + 1 >= end {
                        open.remove(&p);
                    }
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => return Err(e).context("reading messages"),
            None => {}
        }
    }
    out.sort_by_key(|m| {
        (
            m["timestamp"].as_i64(),
            m["partition"].as_i64(),
            m["offset"].as_i64(),
        )
    });
    // `limit` in all: the newest for "latest", else the first.
    if out.len() > limit {
        if matches!(start, Start::Latest) {
            out.drain(..out.len() - limit);
        } else {
            out.truncate(limit);
        }
    }
    // Partitions still open at the deadline: what came back is partial.
    Ok((out, open.is_empty()))
}

/// Values longer than this are cut in the browser's answer.
const SHOWN_BYTES: usize = 64 * 1024;

fn bytes_json(b: Option<&[u8]>) -> Value {
    match b {
        None => Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => {
                let mut end = s.len().min(SHOWN_BYTES);
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                Value::String(s[..end].to_owned())
            }
            Err(_) => json!({
                "base64": weir_pipeline::http::base64_encode(&b[..b.len().min(SHOWN_BYTES)])
            }),
        },
    }
}

fn message_json(m: &rdkafka::message::BorrowedMessage<'_>) -> Value {
    let headers: Vec<Value> = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|x| json!({"key": x.key, "value": bytes_json(x.value)}))
                .collect()
        })
        .unwrap_or_default();
    let value = m.payload();
    let parsed = value
        .filter(|v| v.len() <= SHOWN_BYTES)
        .and_then(|v| serde_json::from_slice::<Value>(v).ok());
    json!({
        "partition": m.partition(),
        "offset": m.offset(),
        "timestamp": m.timestamp().to_millis(),
        "key": bytes_json(m.key()),
        "headers": headers,
        "value": bytes_json(value),
        "json": parsed.filter(|v| v.is_object() || v.is_array()),
        "size": value.map_or(0, <[u8]>::len),
        "truncated": value.is_some_and(|v| v.len() > SHOWN_BYTES),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_decode_and_garbage_gives_nothing() {
        let mut b = vec![0, 0, 0, 0, 0, 1, 0, 3];
        b.extend_from_slice(b"abc");
        b.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0]);
        let got = decode_assignment(&b);
        assert_eq!(got.get("abc"), Some(&vec![0, 5]));
        assert!(decode_assignment(&[0, 0, 0, 0, 0, 9]).is_empty());
        assert!(decode_assignment(&[]).is_empty());
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        let text = "é".repeat(SHOWN_BYTES);
        let v = bytes_json(Some(text.as_bytes()));
        let s = v.as_str().unwrap();
        assert!(
            s.len() <= SHOWN_BYTES && s.len() >= SHOWN_BYTES - 1,
            "{}",
            s.len()
        );
        let binary = vec![0xff; SHOWN_BYTES * 2];
        let v = bytes_json(Some(&binary));
        assert!(v["base64"].as_str().unwrap().len() <= SHOWN_BYTES * 4 / 3 + 4);
    }
}

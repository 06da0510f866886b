//! Broker metrics: requests and their latency per API, connections, bytes
//! and messages per topic, and the Prometheus text of everything the broker
//! knows (partition sizes and offsets, group offsets and lag, fsync
//! latency). Recording is a few relaxed atomic adds on counters the
//! request already holds (per-topic counters live in the topic itself);
//! nothing here takes a lock on the produce or fetch path.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use weir_log::metrics::{Histogram, Snapshot};

use crate::Broker;

/// API keys are below this (the table is indexed by key).
const MAX_API_KEY: usize = 96;

/// Counters of one API.
#[derive(Debug, Default)]
struct ApiStats {
    requests: AtomicU64,
    latency: Histogram,
}

/// Counters of one topic.
#[derive(Debug, Default)]
pub struct TopicStats {
    /// Record-set bytes accepted by Produce.
    pub bytes_in: AtomicU64,
    /// Record-set bytes sent by Fetch.
    pub bytes_out: AtomicU64,
    /// Messages (offsets) appended.
    pub messages_in: AtomicU64,
    /// Messages (offsets) sent by Fetch.
    pub messages_out: AtomicU64,
}

/// Everything the broker counts.
#[derive(Debug)]
pub struct BrokerMetrics {
    apis: Vec<ApiStats>,
    /// Connections open now.
    pub connections: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// The log cleaner's counters.
    pub cleaner: crate::cleaner::CleanerStats,
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        Self {
            apis: (0..MAX_API_KEY).map(|_| ApiStats::default()).collect(),
            connections: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            cleaner: crate::cleaner::CleanerStats::default(),
        }
    }
}

/// Totals over every topic, for rates.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Bytes produced.
    pub bytes_in: u64,
    /// Bytes fetched.
    pub bytes_out: u64,
    /// Messages produced.
    pub messages_in: u64,
    /// Messages fetched.
    pub messages_out: u64,
}

impl BrokerMetrics {
    /// Counts one answered request and how long it took.
    pub fn request(&self, api: ApiKey, took: Duration) {
        if let Some(a) = self.apis.get(api as i16 as usize) {
            a.requests.fetch_add(1, Ordering::Relaxed);
            a.latency.observe(took);
        }
    }

    /// Requests answered per API since start, for APIs used at least once.
    pub fn requests(&self) -> Vec<(String, u64)> {
        self.apis
            .iter()
            .enumerate()
            .filter_map(|(key, a)| {
                let n = a.requests.load(Ordering::Relaxed);
                let api = ApiKey::try_from(key as i16).ok()?;
                (n > 0).then(|| (format!("{api:?}"), n))
            })
            .collect()
    }
}

/// Traffic summed over every topic, for rates.
pub fn totals(broker: &Broker) -> Totals {
    let mut t = Totals::default();
    for topic in broker.topics().all() {
        let s = &topic.stats;
        t.bytes_in += s.bytes_in.load(Ordering::Relaxed);
        t.bytes_out += s.bytes_out.load(Ordering::Relaxed);
        t.messages_in += s.messages_in.load(Ordering::Relaxed);
        t.messages_out += s.messages_out.load(Ordering::Relaxed);
    }
    t
}

/// Escapes a label value for the Prometheus text format.
pub fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The broker's metrics in the Prometheus text exposition format.
pub fn render(broker: &Broker) -> String {
    let m = broker.metrics();
    let mut out = String::with_capacity(16 * 1024);

    header(
        &mut out,
        "weir_broker_requests_total",
        "counter",
        "Kafka requests answered, by API.",
    );
    for (key, a) in m.apis.iter().enumerate() {
        let n = a.requests.load(Ordering::Relaxed);
        if let (true, Ok(api)) = (n > 0, ApiKey::try_from(key as i16)) {
            let _ = writeln!(out, "weir_broker_requests_total{{api=\"{api:?}\"}} {n}");
        }
    }
    header(
        &mut out,
        "weir_broker_request_duration_seconds",
        "histogram",
        "Time from a request's arrival to its answer, by API (long-polling fetches include their wait).",
    );
    for (key, a) in m.apis.iter().enumerate() {
        if let (true, Ok(api)) = (
            a.requests.load(Ordering::Relaxed) > 0,
            ApiKey::try_from(key as i16),
        ) {
            a.latency.snapshot().render(
                "weir_broker_request_duration_seconds",
                &format!("api=\"{api:?}\""),
                &mut out,
            );
        }
    }
    header(
        &mut out,
        "weir_broker_connections_open",
        "gauge",
        "Client connections open now.",
    );
    let _ = writeln!(
        out,
        "weir_broker_connections_open {}",
        m.connections.load(Ordering::Relaxed)
    );
    header(
        &mut out,
        "weir_broker_connections_total",
        "counter",
        "Client connections accepted since start.",
    );
    let _ = writeln!(
        out,
        "weir_broker_connections_total {}",
        m.connections_total.load(Ordering::Relaxed)
    );

    let c = &m.cleaner;
    for (name, kind, help, value) in [
        (
            "weir_log_cleaner_passes_total",
            "counter",
            "Log-cleaner passes completed.",
            &c.passes,
        ),
        (
            "weir_log_cleaner_errors_total",
            "counter",
            "Log-cleaner passes that failed.",
            &c.errors,
        ),
        (
            "weir_log_cleaner_records_removed_total",
            "counter",
            "Records the log cleaner removed (superseded, tombstones past delete.retention.ms).",
            &c.records_removed,
        ),
        (
            "weir_log_cleaner_tombstones_removed_total",
            "counter",
            "Tombstones the log cleaner removed.",
            &c.tombstones_removed,
        ),
        (
            "weir_log_cleaner_bytes_read_total",
            "counter",
            "Bytes of segments the log cleaner rewrote.",
            &c.bytes_read,
        ),
        (
            "weir_log_cleaner_bytes_written_total",
            "counter",
            "Bytes of the segments that replaced them.",
            &c.bytes_written,
        ),
        (
            "weir_log_cleaner_last_pass_milliseconds",
            "gauge",
            "How long the last log-cleaner pass took.",
            &c.last_pass_ms,
        ),
    ] {
        header(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
    }

    let mut topics = broker.topics().all();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    for (name, help, get) in [
        (
            "weir_topic_bytes_in_total",
            "Record bytes produced to a topic.",
            (|s: &TopicStats| s.bytes_in.load(Ordering::Relaxed)) as fn(&TopicStats) -> u64,
        ),
        (
            "weir_topic_bytes_out_total",
            "Record bytes fetched from a topic.",
            |s: &TopicStats| s.bytes_out.load(Ordering::Relaxed),
        ),
        (
            "weir_topic_messages_in_total",
            "Messages produced to a topic.",
            |s: &TopicStats| s.messages_in.load(Ordering::Relaxed),
        ),
        (
            "weir_topic_messages_out_total",
            "Messages fetched from a topic (consumers and replays count each time).",
            |s: &TopicStats| s.messages_out.load(Ordering::Relaxed),
        ),
    ] {
        header(&mut out, name, "counter", help);
        for t in &topics {
            let _ = writeln!(
                out,
                "{name}{{topic=\"{}\"}} {}",
                label(&t.name),
                get(&t.stats)
            );
        }
    }

    let mut fsync = Snapshot::empty();
    let mut sizes = String::new();
    let mut starts = String::new();
    let mut ends = String::new();
    let mut hws = String::new();
    let mut isrs = String::new();
    let (mut under, mut under_min) = (0u64, 0u64);
    let min_isr = broker.config().replication.min_insync_replicas;
    for t in &topics {
        let topic_min = t
            .overrides
            .get("min.insync.replicas")
            .and_then(|v| v.trim().parse::<i32>().ok())
            .unwrap_or(min_isr);
        for p in &t.partitions {
            let labels = format!("topic=\"{}\",partition=\"{}\"", label(&t.name), p.index);
            let _ = writeln!(
                hws,
                "weir_partition_high_watermark{{{labels}}} {}",
                p.high_watermark()
            );
            // What the leader knows: counted where the partition is led.
            if let (Some(info), Some(isr)) = (t.assignment.get(p.index as usize), p.replica.isr()) {
                let _ = writeln!(
                    isrs,
                    "weir_partition_in_sync_replicas{{{labels}}} {}",
                    isr.len()
                );
                under += u64::from(isr.len() < info.replicas.len());
                under_min += u64::from((isr.len() as i32) < topic_min);
            }
            let _ = writeln!(
                sizes,
                "weir_partition_size_bytes{{{labels}}} {}",
                p.log.size_bytes()
            );
            let _ = writeln!(
                starts,
                "weir_partition_log_start_offset{{{labels}}} {}",
                p.log.log_start_offset()
            );
            let _ = writeln!(
                ends,
                "weir_partition_log_end_offset{{{labels}}} {}",
                p.log.log_end_offset()
            );
            fsync.add(&p.log.sync_latency());
        }
    }
    header(
        &mut out,
        "weir_partition_size_bytes",
        "gauge",
        "Bytes stored by a partition.",
    );
    out.push_str(&sizes);
    header(
        &mut out,
        "weir_partition_log_start_offset",
        "gauge",
        "First offset a partition still holds.",
    );
    out.push_str(&starts);
    header(
        &mut out,
        "weir_partition_log_end_offset",
        "gauge",
        "Offset the next message of a partition will get.",
    );
    out.push_str(&ends);
    header(
        &mut out,
        "weir_partition_high_watermark",
        "gauge",
        "Offset below which a partition's messages are on every in-sync replica (what consumers see).",
    );
    out.push_str(&hws);
    header(
        &mut out,
        "weir_partition_in_sync_replicas",
        "gauge",
        "In-sync replicas of a replicated partition led by this broker.",
    );
    out.push_str(&isrs);
    header(
        &mut out,
        "weir_under_replicated_partitions",
        "gauge",
        "Partitions led by this broker with fewer in-sync replicas than replicas (Kafka's UnderReplicatedPartitions).",
    );
    let _ = writeln!(out, "weir_under_replicated_partitions {under}");
    header(
        &mut out,
        "weir_under_min_isr_partitions",
        "gauge",
        "Partitions led by this broker with fewer in-sync replicas than min.insync.replicas: acks=all is refused there.",
    );
    let _ = writeln!(out, "weir_under_min_isr_partitions {under_min}");
    let offline = broker
        .cluster()
        .image()
        .topics
        .values()
        .flat_map(|t| t.partitions.iter())
        .filter(|p| p.leader < 0)
        .count();
    header(
        &mut out,
        "weir_offline_partitions",
        "gauge",
        "Partitions of the cluster without a leader (Kafka's OfflinePartitionsCount).",
    );
    let _ = writeln!(out, "weir_offline_partitions {offline}");
    header(
        &mut out,
        "weir_log_fsync_duration_seconds",
        "histogram",
        "Time of each group-commit round (fsync of the partition's data files), all partitions.",
    );
    fsync.render("weir_log_fsync_duration_seconds", "", &mut out);

    let mut groups: Vec<String> = broker.groups().list().into_iter().map(|g| g.0).collect();
    groups.sort();
    let mut committed = String::new();
    let mut lags = String::new();
    let mut members = String::new();
    for g in &groups {
        let n = broker.groups().describe(g).map_or(0, |v| v.members.len());
        let _ = writeln!(members, "weir_group_members{{group=\"{}\"}} {n}", label(g));
        for l in broker.group_lag(g) {
            let labels = format!(
                "group=\"{}\",topic=\"{}\",partition=\"{}\"",
                label(g),
                label(&l.topic),
                l.partition
            );
            let _ = writeln!(
                committed,
                "weir_group_committed_offset{{{labels}}} {}",
                l.committed
            );
            if let Some(lag) = l.lag {
                let _ = writeln!(lags, "weir_group_lag{{{labels}}} {lag}");
            }
        }
    }
    header(
        &mut out,
        "weir_group_members",
        "gauge",
        "Members of a consumer group.",
    );
    out.push_str(&members);
    header(
        &mut out,
        "weir_group_committed_offset",
        "gauge",
        "Offset a consumer group committed for a partition.",
    );
    out.push_str(&committed);
    header(
        &mut out,
        "weir_group_lag",
        "gauge",
        "Messages between a group's committed offset and the partition's end.",
    );
    out.push_str(&lags);
    out
}

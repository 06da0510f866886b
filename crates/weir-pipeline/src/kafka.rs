//! Kafka through librdkafka (rdkafka): a consumer-group source and a
//! producer sink. Weir's broker and any Kafka cluster look the same here;
//! extra librdkafka settings (`security.protocol`, `sasl.*`, `ssl.*`, ...)
//! pass through from the pipeline config.
//!
//! The source commits offsets only when the [`AckTracker`] says every sink
//! stored the events before them (at-least-once); with `skip_below`
//! positions taken from a SQLite sink that stores offsets in its own
//! transactions, messages already stored are skipped (exactly-once).
//!
//! The sink is an idempotent producer with acks=all. With exactly-once on
//! (the default), every message carries its event's origin in headers
//! (`weir.origin` = `<stream>#<partition>`, `weir.next` = the position after
//! it) and the sink keeps a state file: the highest position delivered per
//! origin, and per partition the offset up to which that is known. On start
//! it reads the topic from those offsets to its end, so it knows everything
//! an earlier run delivered, even one killed before saving, and drops
//! events a source sends again (a file source resuming from its registry):
//! no line reaches the topic twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::ack::{AckRef, AckTracker, Origin, Positions};
use crate::event::Event;

/// Settings of a Kafka source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// Consumer group.
    pub group: String,
    /// Where a new group starts: `earliest` or `latest`.
    pub start: String,
    /// Extra librdkafka settings.
    pub extra: BTreeMap<String, String>,
}

/// Builds a librdkafka client config: defaults, then the user's extras
/// (which may override them), then the settings correctness depends on.
fn client(
    brokers: &str,
    defaults: &[(&str, &str)],
    extra: &BTreeMap<String, String>,
    forced: &[(&str, &str)],
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for (k, v) in extra {
        c.set(k, v);
    }
    for (k, v) in forced {
        c.set(*k, *v);
    }
    c
}

/// A consumer-group source.
pub struct KafkaSource {
    consumer: BaseConsumer,
    tracker: Arc<AckTracker>,
    skip_below: Positions,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource").finish_non_exhaustive()
    }
}

impl KafkaSource {
    /// Connects and subscribes. `skip_below` holds positions already stored
    /// by an exactly-once sink.
    pub fn new(cfg: &SourceConfig, skip_below: Positions) -> Result<Self, String> {
        // Bound what librdkafka prefetches, so memory stays bounded; when
        // the bound is reached, fetch again soon after it drains instead of
        // librdkafka's default pause of a second (which alone would cap a
        // partition at one prefetch queue per second).
        let defaults = [
            ("queued.max.messages.kbytes", "16384"),
            ("queued.min.messages", "100000"),
            ("fetch.queue.backoff.ms", "10"),
        ];
        let forced = [
            ("group.id", cfg.group.as_str()),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", cfg.start.as_str()),
        ];
        let c = client(&cfg.brokers, &defaults, &cfg.extra, &forced);
        let consumer: BaseConsumer = c
            .create()
            .map_err(|e| format!("creating the consumer: {e}"))?;
        let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| format!("subscribing to {topics:?}: {e}"))?;
        Ok(Self {
            consumer,
            tracker: Arc::new(AckTracker::default()),
            skip_below,
        })
    }

    /// Messages between this consumer's positions and the ends of its
    /// assigned partitions.
    fn lag(&self) -> u64 {
        let Ok(positions) = self.consumer.position() else {
            return 0;
        };
        positions
            .elements()
            .iter()
            .filter_map(|e| {
                let Offset::Offset(pos) = e.offset() else {
                    return None;
                };
                let (_, high) = self
                    .consumer
                    .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(1))
                    .ok()?;
                Some((high - pos).max(0) as u64)
            })
            .sum()
    }

    fn commit(&self, mode: CommitMode) {
        if let Some(positions) = self.tracker.take_committable() {
            let mut tpl = TopicPartitionList::new();
            for ((topic, partition), next) in positions {
                let _ = tpl.add_partition_offset(&topic, partition, Offset::Offset(next));
            }
            if let Err(e) = self.consumer.commit(&tpl, mode) {
                tracing::warn!(error = %e, "committing offsets failed; they will be committed again");
            }
        }
    }

    /// Polls until `stop`, handing batches of raw events to `emit` (which
    /// returns false when downstream is gone). On stop, waits up to
    /// `drain` for the in-flight batches to be stored, then commits.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        drain: Duration,
        lag: &std::sync::atomic::AtomicU64,
        mut emit: impl FnMut(Vec<Event>) -> bool,
    ) {
        let mut last_commit = Instant::now();
        let mut last_lag = Instant::now();
        let mut sampler_at: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            let mut batch = Vec::new();
            let mut positions = Positions::new();
            let deadline = Instant::now() + Duration::from_millis(50);
            while batch.len() < 512 && Instant::now() < deadline {
                let Some(msg) = self.consumer.poll(Duration::from_millis(20)) else {
                    break;
                };
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        if sampler_at.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                            tracing::warn!(error = %e, "kafka consumer error");
                            sampler_at = Some(Instant::now());
                        }
                        continue;
                    }
                };
                let (topic, partition, offset) =
                    (msg.topic().to_owned(), msg.partition(), msg.offset());
                let next = positions
                    .entry((topic.clone(), partition))
                    .or_insert(offset + 1);
                *next = (*next).max(offset + 1);
                if self
                    .skip_below
                    .get(&(topic.clone(), partition))
                    .is_some_and(|&stored| offset < stored)
                {
                    continue; // already stored by an exactly-once sink
                }
                let line = msg
                    .payload()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .unwrap_or_default();
                let ts = msg
                    .timestamp()
                    .to_millis()
                    .map_or_else(now_ns, |ms| message_time_ns(ms, partition, offset));
                let mut e = Event::raw(line, ts);
                e.origin = Some(Origin {
                    topic,
                    partition,
                    offset,
                    next: offset + 1,
                });
                batch.push(e);
            }
            if !positions.is_empty() {
                let ack = self.tracker.register(positions);
                for e in &mut batch {
                    e.ack = Some(AckRef(ack.clone()));
                }
                drop(ack);
                if !batch.is_empty() && !emit(batch) {
                    break;
                }
            }
            if last_commit.elapsed() > Duration::from_millis(500) {
                self.commit(CommitMode::Async);
                last_commit = Instant::now();
            }
            if last_lag.elapsed() > Duration::from_secs(5) {
                lag.store(self.lag(), Ordering::Relaxed);
                last_lag = Instant::now();
            }
        }
        let until = Instant::now() + drain;
        while self.tracker.in_flight() > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.commit(CommitMode::Sync);
    }
}

/// Reads `topic` from the offsets `state` accounts for to the current end
/// of every partition, folding the origins found in headers into `state`.
/// With `fresh` (no state file yet) there is nothing of ours to find: the
/// scan starts at the current ends.
fn scan_topic(
    brokers: &str,
    extra: &BTreeMap<String, String>,
    topic: &str,
    state: &mut DeliveredState,
    fresh: bool,
) -> Result<(), String> {
    use rdkafka::message::Headers;
    let consumer: BaseConsumer = client(
        brokers,
        &[],
        extra,
        &[
            ("group.id", "weir-sink-recovery"),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
        ],
    )
    .create()
    .map_err(|e| format!("creating a consumer: {e}"))?;
    let timeout = Duration::from_secs(10);
    let meta = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| format!("metadata of {topic}: {e}"))?;
    let Some(t) = meta.topics().iter().find(|t| t.name() == topic) else {
        return Ok(());
    };
    if t.partitions().is_empty() {
        return Ok(()); // not created yet: nothing delivered
    }
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in t.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), timeout)
            .map_err(|e| format!("offsets of {topic}/{}: {e}", p.id()))?;
        let from = match state.partitions.get(&p.id()) {
            Some(&done) => (done + 1).max(low),
            None if fresh => high,
            None => low,
        };
        state.partitions.insert(p.id(), high - 1);
        if from < high {
            tpl.add_partition_offset(topic, p.id(), Offset::Offset(from))
                .map_err(|e| e.to_string())?;
            ends.insert(p.id(), high);
        }
    }
    if ends.is_empty() {
        return Ok(());
    }
    consumer
        .assign(&tpl)
        .map_err(|e| format!("assigning {topic}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(format!("reading {topic} to its end took too long"));
        }
        let Some(msg) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let msg = match msg {
            Ok(m) => m,
            Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                ends.remove(&p);
                continue;
            }
            Err(e) => return Err(format!("reading {topic}: {e}")),
        };
        if let Some(h) = msg.headers() {
            let get = |name: &str| {
                h.iter()
                    .find(|x| x.key == name)
                    .and_then(|x| x.value)
                    .and_then(|v| std::str::from_utf8(v).ok())
            };
            if let (Some(origin), Some(next)) = (get("weir.origin"), get("weir.next"))
                && let Ok(next) = next.parse::<i64>()
            {
                let slot = state.positions.entry(origin.to_owned()).or_insert(next);
                *slot = (*slot).max(next);
            }
        }
        if ends
            .get(&msg.partition())
            .is_some_and(|&end| msg.offset() + 1 >= end)
        {
            ends.remove(&msg.partition());
        }
    }
    Ok(())
}

/// An event's time from its message's (millisecond) timestamp. The
/// nanoseconds below the millisecond come from the offset and partition,
/// so messages of one millisecond get distinct times (a time-series
/// database would otherwise keep only the last point of a series per
/// timestamp) and a message delivered again gets the same time (its point
/// is overwritten, not duplicated). Distinct for up to 1000 messages per
/// millisecond per partition and 1000 partitions.
pub fn message_time_ns(ms: i64, partition: i32, offset: i64) -> i64 {
    let sub = offset.rem_euclid(1000) * 1000 + i64::from(partition).rem_euclid(1000);
    ms.saturating_mul(1_000_000).saturating_add(sub)
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// What an exactly-once sink knows it delivered.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveredState {
    /// Per partition of the topic: the offset up to which (inclusive)
    /// `positions` accounts for every message.
    pub partitions: BTreeMap<i32, i64>,
    /// Per origin (`<stream>#<partition>`): the highest `next` delivered.
    pub positions: BTreeMap<String, i64>,
}

impl DeliveredState {
    fn to_json(&self) -> String {
        serde_json::json!({
            "version": 1,
            "partitions": self.partitions.iter().map(|(p, o)| (p.to_string(), *o)).collect::<BTreeMap<_, _>>(),
            "positions": self.positions,
        })
        .to_string()
    }

    fn from_json(text: &str) -> Option<Self> {
        let doc: serde_json::Value = serde_json::from_str(text).ok()?;
        let partitions = doc["partitions"]
            .as_object()?
            .iter()
            .map(|(p, o)| Some((p.parse().ok()?, o.as_i64()?)))
            .collect::<Option<_>>()?;
        let positions = doc["positions"]
            .as_object()?
            .iter()
            .map(|(k, v)| Some((k.clone(), v.as_i64()?)))
            .collect::<Option<_>>()?;
        Some(Self {
            partitions,
            positions,
        })
    }

    fn delivered(&mut self, partition: i32, offset: i64, origin: Option<(String, i64)>) {
        if let Some((key, next)) = origin {
            let slot = self.positions.entry(key).or_insert(next);
            *slot = (*slot).max(next);
        }
        let slot = self.partitions.entry(partition).or_insert(offset);
        *slot = (*slot).max(offset);
    }
}

/// The key an origin is known by in headers and state.
fn origin_key(o: &Origin) -> String {
    format!("{}#{}", o.topic, o.partition)
}

/// Producer context: an event is dropped (acknowledged) only once Kafka
/// confirmed it; failures are counted; deliveries update the state.
#[derive(Debug)]
pub struct DeliveryContext {
    failures: Arc<std::sync::atomic::AtomicU64>,
    delivered: Arc<std::sync::atomic::AtomicU64>,
    state: Option<Arc<std::sync::Mutex<DeliveredState>>>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Event>;

    fn delivery(&self, result: &DeliveryResult<'_>, event: Self::DeliveryOpaque) {
        match result {
            Err((e, _)) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "kafka delivery failed");
            }
            Ok(msg) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                if let Some(state) = &self.state {
                    let origin = event.origin.as_ref().map(|o| (origin_key(o), o.next));
                    state.lock().unwrap_or_else(|p| p.into_inner()).delivered(
                        msg.partition(),
                        msg.offset(),
                        origin,
                    );
                }
            }
        }
        drop(event);
    }
}

/// Exactly-once bookkeeping of a sink: its state file and what it holds.
#[derive(Debug)]
struct ExactlyOnce {
    path: std::path::PathBuf,
    state: Arc<std::sync::Mutex<DeliveredState>>,
    /// What earlier runs delivered (read at start): events at or below it
    /// are dropped.
    earlier: BTreeMap<String, i64>,
    saved: DeliveredState,
}

/// A producer sink.
pub struct KafkaSink {
    producer: BaseProducer<DeliveryContext>,
    topic: String,
    brokers: String,
    extra: BTreeMap<String, String>,
    exactly_once: Option<ExactlyOnce>,
    /// Deliveries that failed for good.
    pub failures: Arc<std::sync::atomic::AtomicU64>,
    /// Messages the cluster confirmed.
    pub delivered: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// An idempotent producer with acks=all; with `state` (a file path),
    /// exactly-once as described in the module documentation.
    pub fn new(
        brokers: &str,
        topic: &str,
        compression: &str,
        extra: &BTreeMap<String, String>,
        state: Option<std::path::PathBuf>,
    ) -> Result<Self, String> {
        let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let delivered = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let exactly_once = state.map(|path| ExactlyOnce {
            path,
            state: Arc::default(),
            earlier: BTreeMap::new(),
            saved: DeliveredState::default(),
        });
        let c = client(
            brokers,
            &[("linger.ms", "5"), ("compression.type", compression)],
            extra,
            &[("acks", "all"), ("enable.idempotence", "true")],
        );
        let producer = c
            .create_with_context(DeliveryContext {
                failures: failures.clone(),
                delivered: delivered.clone(),
                state: exactly_once.as_ref().map(|x| x.state.clone()),
            })
            .map_err(|e| format!("creating the producer: {e}"))?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
            brokers: brokers.to_owned(),
            extra: extra.clone(),
            exactly_once,
            failures,
            delivered,
        })
    }

    /// Exactly-once start: loads the state file, reads the topic from the
    /// offsets it names (or, with no file, from the current ends) to its
    /// end, and saves the result, before anything is produced. Retries
    /// until the cluster answers or `stop` is set.
    pub fn recover(&mut self, stop: &AtomicBool) -> Result<(), String> {
        let Some(x) = self.exactly_once.as_mut() else {
            return Ok(());
        };
        let mut state = match std::fs::read_to_string(&x.path) {
            Ok(text) => DeliveredState::from_json(&text)
                .ok_or_else(|| format!("{}: not a valid sink state file", x.path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => DeliveredState::default(),
            Err(e) => return Err(format!("reading {}: {e}", x.path.display())),
        };
        let fresh = !x.path.exists();
        let mut attempt = 0u32;
        loop {
            match scan_topic(&self.brokers, &self.extra, &self.topic, &mut state, fresh) {
                Ok(()) => break,
                Err(e) if !stop.load(Ordering::Relaxed) => {
                    attempt += 1;
                    tracing::warn!(topic = %self.topic, error = %e, attempt, "reading what earlier runs delivered; retrying");
                    std::thread::sleep(
                        Duration::from_secs(1).min(Duration::from_millis(200) * attempt),
                    );
                }
                Err(e) => return Err(e),
            }
        }
        crate::file::write_atomically(&x.path, state.to_json().as_bytes())
            .map_err(|e| format!("writing {}: {e}", x.path.display()))?;
        x.earlier = state.positions.clone();
        *x.state.lock().unwrap_or_else(|p| p.into_inner()) = state.clone();
        x.saved = state;
        Ok(())
    }

    /// Whether an earlier run already delivered this event.
    pub fn already_delivered(&self, e: &Event) -> bool {
        match (&self.exactly_once, &e.origin) {
            (Some(x), Some(o)) => x
                .earlier
                .get(&origin_key(o))
                .is_some_and(|&done| o.next <= done),
            _ => false,
        }
    }

    /// Saves the state file when deliveries changed it.
    pub fn save_state(&mut self) {
        let Some(x) = self.exactly_once.as_mut() else {
            return;
        };
        let now = x.state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if now == x.saved {
            return;
        }
        match crate::file::write_atomically(&x.path, now.to_json().as_bytes()) {
            Ok(()) => x.saved = now,
            Err(e) => {
                tracing::warn!(path = %x.path.display(), error = %e, "saving the sink state failed")
            }
        }
    }

    /// Sends one payload; the event is kept until delivery.
    pub fn send(&self, payload: &str, key: Option<&str>, event: Event) {
        let headers = match (&self.exactly_once, &event.origin) {
            (Some(_), Some(o)) => Some(
                rdkafka::message::OwnedHeaders::new()
                    .insert(rdkafka::message::Header {
                        key: "weir.origin",
                        value: Some(origin_key(o).as_bytes()),
                    })
                    .insert(rdkafka::message::Header {
                        key: "weir.next",
                        value: Some(o.next.to_string().as_bytes()),
                    }),
            ),
            _ => None,
        };
        let mut opaque = Box::new(event);
        loop {
            let mut record = BaseRecord::with_opaque_to(&self.topic, opaque).payload(payload);
            if let Some(k) = key {
                record = record.key(k);
            }
            if let Some(h) = &headers {
                record = record.headers(h.clone());
            }
            match self.producer.send(record) {
                Ok(()) => return,
                Err((e, rec)) => {
                    // Queue full: serve delivery reports and retry.
                    opaque = rec.delivery_opaque;
                    if !matches!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ) {
                        self.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "kafka produce failed");
                        return;
                    }
                    self.producer.poll(Duration::from_millis(50));
                }
            }
        }
    }

    /// Serves delivery reports.
    pub fn poll(&self) {
        self.producer.poll(Duration::ZERO);
    }

    /// Waits for everything in flight.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.producer.flush(timeout).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_times_are_distinct_within_a_millisecond_and_stable() {
        let t = |p, o| message_time_ns(1_700_000_000_123, p, o);
        assert_eq!(t(0, 0), 1_700_000_000_123_000_000);
        let mut seen = std::collections::BTreeSet::new();
        for p in 0..8 {
            for o in 0..500 {
                assert!(seen.insert(t(p, o)), "{p}/{o}");
                assert!(
                    t(p, o) / 1_000_000 == 1_700_000_000_123,
                    "stays in its millisecond"
                );
            }
        }
        assert_eq!(t(3, 77), t(3, 77));
    }

    #[test]
    fn delivered_state_round_trips_and_only_grows() {
        let mut s = DeliveredState::default();
        s.delivered(0, 10, Some(("file:a#0".to_owned(), 100)));
        s.delivered(0, 9, Some(("file:a#0".to_owned(), 50)));
        s.delivered(1, 3, None);
        assert_eq!(s.partitions[&0], 10);
        assert_eq!(s.positions["file:a#0"], 100);
        assert_eq!(DeliveredState::from_json(&s.to_json()), Some(s));
        assert_eq!(DeliveredState::from_json("{}"), None);
    }
}

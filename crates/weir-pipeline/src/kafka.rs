//! Kafka through librdkafka (rdkafka): a consumer-group source and a
//! producer sink. Weir's broker and any Kafka cluster look the same here;
//! extra librdkafka settings (`security.protocol`, `sasl.*`, `ssl.*`, ...)
//! pass through from the pipeline config.
//!
//! The source commits offsets only when the [`AckTracker`] says every sink
//! stored the events before them (at-least-once); with `skip_below`
//! positions taken from a SQLite sink that stores offsets in its own
//! transactions, messages already stored are skipped (exactly-once).

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
        // Bound what librdkafka prefetches, so memory stays bounded.
        let defaults = [
            ("queued.max.messages.kbytes", "16384"),
            ("queued.min.messages", "10000"),
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
                    .map_or_else(now_ns, |ms| ms.saturating_mul(1_000_000));
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

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Producer context: an event is dropped (acknowledged) only once Kafka
/// confirmed it; failures are counted.
#[derive(Debug)]
pub struct DeliveryContext {
    failures: Arc<std::sync::atomic::AtomicU64>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Event>;

    fn delivery(&self, result: &DeliveryResult<'_>, event: Self::DeliveryOpaque) {
        if let Err((e, _)) = result {
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "kafka delivery failed");
        }
        drop(event);
    }
}

/// A producer sink.
pub struct KafkaSink {
    producer: BaseProducer<DeliveryContext>,
    topic: String,
    /// Deliveries that failed for good.
    pub failures: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// An idempotent producer with acks=all.
    pub fn new(
        brokers: &str,
        topic: &str,
        compression: &str,
        extra: &BTreeMap<String, String>,
    ) -> Result<Self, String> {
        let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let c = client(
            brokers,
            &[("linger.ms", "5"), ("compression.type", compression)],
            extra,
            &[("acks", "all"), ("enable.idempotence", "true")],
        );
        let producer = c
            .create_with_context(DeliveryContext {
                failures: failures.clone(),
            })
            .map_err(|e| format!("creating the producer: {e}"))?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
            failures,
        })
    }

    /// Sends one payload; the event is kept until delivery.
    pub fn send(&self, payload: &str, key: Option<&str>, event: Event) {
        let mut opaque = Box::new(event);
        loop {
            let mut record = BaseRecord::with_opaque_to(&self.topic, opaque).payload(payload);
            if let Some(k) = key {
                record = record.key(k);
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

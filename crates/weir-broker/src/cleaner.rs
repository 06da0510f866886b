//! The log cleaner thread: compacts every log whose `cleanup.policy`
//! includes `compact` (user topics and `__consumer_offsets` alike), one
//! pass at a time, as Kafka's `LogCleaner` does with one cleaner thread.
//!
//! Each round asks every log whether a pass is due
//! ([`weir_log::Log::cleanable`]), cleans the most urgent one (a log past
//! `max.compaction.lag.ms` or with tombstones due first, then the dirtiest
//! by ratio), and goes straight on to the next; when nothing is due it
//! sleeps `log.cleaner.backoff.ms`. The offset map of a pass holds at most
//! `log.cleaner.dedupe.buffer.size` bytes of entries (what the dirty part
//! needs, never more). The choice is the pure function [`pick`]; the
//! thread around it stays thin.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{info, warn};
use weir_log::{CleanStats, Cleanable, Log, MAP_ENTRY_BYTES};

use crate::Broker;

/// Cleaner settings (`log.cleaner.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanerConfig {
    /// `log.cleaner.enable`.
    pub enable: bool,
    /// `log.cleaner.dedupe.buffer.size`: the offset map's memory.
    pub dedupe_buffer_bytes: u64,
    /// `log.cleaner.backoff.ms`: the sleep when no log needs cleaning.
    pub backoff_ms: u64,
    /// `log.cleaner.io.max.bytes.per.second`: the most a pass reads per
    /// second (`None`: unlimited, Kafka's default).
    pub io_max_bytes_per_second: Option<u64>,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        Self {
            enable: true,
            dedupe_buffer_bytes: 128 << 20,
            backoff_ms: 15_000,
            io_max_bytes_per_second: None,
        }
    }
}

/// Counters of the cleaner, for metrics.
#[derive(Debug, Default)]
pub struct CleanerStats {
    /// Passes completed.
    pub passes: AtomicU64,
    /// Passes that failed.
    pub errors: AtomicU64,
    /// Records removed.
    pub records_removed: AtomicU64,
    /// Of those, tombstones.
    pub tombstones_removed: AtomicU64,
    /// Bytes of segments read and rewritten.
    pub bytes_read: AtomicU64,
    /// Bytes of the segments that replaced them.
    pub bytes_written: AtomicU64,
    /// Duration of the last pass, in ms.
    pub last_pass_ms: AtomicU64,
}

impl CleanerStats {
    fn add(&self, s: &CleanStats, took: Duration) {
        self.passes.fetch_add(1, Ordering::Relaxed);
        self.records_removed
            .fetch_add(s.records_removed, Ordering::Relaxed);
        self.tombstones_removed
            .fetch_add(s.tombstones_removed, Ordering::Relaxed);
        self.bytes_read.fetch_add(s.bytes_read, Ordering::Relaxed);
        self.bytes_written
            .fetch_add(s.bytes_written, Ordering::Relaxed);
        self.last_pass_ms
            .store(took.as_millis() as u64, Ordering::Relaxed);
    }
}

/// Which candidate to clean: urgent ones first, then the highest dirty
/// ratio (ties: more dirty bytes). `None` when there is none.
pub fn pick(candidates: &[Cleanable]) -> Option<usize> {
    candidates
        .iter()
        .enumerate()
        .max_by(|(_, a), (_, b)| {
            (a.urgent, a.dirty_ratio, a.dirty_bytes)
                .partial_cmp(&(b.urgent, b.dirty_ratio, b.dirty_bytes))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .map(|(i, _)| i)
}

/// Offset-map entries for a pass over `dirty_bytes` with a `budget` of
/// bytes: enough for one key per 64 dirty bytes (a small record), never
/// more than the budget holds, at least 1024.
pub fn map_entries(dirty_bytes: u64, budget: u64) -> usize {
    let need = dirty_bytes / 64 + 1024;
    let cap = (budget / MAP_ENTRY_BYTES).max(1024);
    need.min(cap) as usize
}

/// Holds a pass to a byte rate: after `bytes` in total, `elapsed` since
/// the pass began, how long to sleep so the average stays at `rate`.
pub fn throttle_delay(rate: u64, bytes: u64, elapsed: Duration) -> Duration {
    if rate == 0 {
        return Duration::ZERO;
    }
    let due = Duration::from_secs_f64(bytes as f64 / rate as f64);
    due.saturating_sub(elapsed)
}

/// The running cleaner thread.
#[derive(Debug)]
pub struct LogCleaner {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl LogCleaner {
    /// Starts the thread (when `log.cleaner.enable` is true).
    pub fn start(broker: Arc<Broker>) -> Option<Self> {
        let cfg = broker.config.cleaner;
        if !cfg.enable {
            return None;
        }
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("log-cleaner".to_owned())
            .spawn(move || run(&broker, cfg, &flag))
            .map_err(|e| warn!(error = %e, "could not start the log cleaner"))
            .ok()?;
        Some(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread: a running pass ends at its next batch, leaving
    /// the log whole. Blocks until it has.
    pub fn stop(mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn stopping(flag: &(Mutex<bool>, Condvar)) -> bool {
    *flag.0.lock().unwrap_or_else(|p| p.into_inner())
}

fn run(broker: &Broker, cfg: CleanerConfig, flag: &(Mutex<bool>, Condvar)) {
    while !stopping(flag) {
        if !round(broker, cfg, flag) {
            let (lock, cv) = flag;
            let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
            if !*guard {
                let _ = cv.wait_timeout(guard, Duration::from_millis(cfg.backoff_ms));
            }
        }
    }
}

/// One choice and one pass. Returns whether a pass ran and made progress
/// (so the next round follows at once).
fn round(broker: &Broker, cfg: CleanerConfig, flag: &(Mutex<bool>, Condvar)) -> bool {
    let now = now_ms();
    let mut logs: Vec<(String, i32, Arc<Log>)> = Vec::new();
    let mut candidates = Vec::new();
    for topic in broker.topics.all() {
        for p in &topic.partitions {
            if let Some(c) = p.log.cleanable(now) {
                logs.push((topic.name.clone(), p.index, p.log.clone()));
                candidates.push(c);
            }
        }
    }
    let Some(i) = pick(&candidates) else {
        return false;
    };
    if stopping(flag) {
        return false;
    }
    let (topic, partition, log) = &logs[i];
    let entries = map_entries(candidates[i].dirty_bytes, cfg.dedupe_buffer_bytes);
    let started = std::time::Instant::now();
    let mut read = 0u64;
    let mut throttle = |bytes: u64| {
        if let Some(rate) = cfg.io_max_bytes_per_second {
            read += bytes;
            let wait = throttle_delay(rate, read, started.elapsed());
            // Sleep in short steps, so a stop request is seen soon.
            if !wait.is_zero() && !stopping(flag) {
                std::thread::sleep(wait.min(Duration::from_millis(100)));
            }
        }
    };
    match log.clean_throttled(now, entries, &mut throttle) {
        Ok(s) => {
            broker.metrics.cleaner.add(&s, started.elapsed());
            if s.records_removed > 0 {
                info!(%topic, partition, removed = s.records_removed, tombstones = s.tombstones_removed, read = s.bytes_read, written = s.bytes_written, ms = started.elapsed().as_millis() as u64, "log cleaner compacted a partition");
            }
            // A pass that stopped, or found nothing to do, waits for the
            // next round rather than spinning on the same log.
            !s.stopped && (s.records_read > 0 || s.map_full)
        }
        Err(e) => {
            broker
                .metrics
                .cleaner
                .errors
                .fetch_add(1, Ordering::Relaxed);
            warn!(%topic, partition, error = %e, "log cleaner pass failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(urgent: bool, ratio: f64, bytes: u64) -> Cleanable {
        Cleanable {
            dirty_bytes: bytes,
            cleanable_bytes: bytes * 2,
            dirty_ratio: ratio,
            urgent,
        }
    }

    #[test]
    fn urgent_logs_go_first_then_the_dirtiest() {
        assert_eq!(pick(&[]), None);
        assert_eq!(pick(&[c(false, 0.6, 10), c(false, 0.9, 5)]), Some(1));
        assert_eq!(pick(&[c(false, 0.9, 10), c(true, 0.1, 5)]), Some(1));
        assert_eq!(pick(&[c(false, 0.5, 10), c(false, 0.5, 50)]), Some(1));
    }

    #[test]
    fn the_throttle_keeps_the_average_rate() {
        let r = 1_000_000;
        assert_eq!(
            throttle_delay(r, 500_000, Duration::from_millis(100)),
            Duration::from_millis(400)
        );
        assert_eq!(
            throttle_delay(r, 500_000, Duration::from_secs(1)),
            Duration::ZERO
        );
        assert_eq!(throttle_delay(0, 500_000, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn the_map_is_sized_to_the_dirty_part_within_the_budget() {
        assert_eq!(map_entries(0, 128 << 20), 1024);
        assert_eq!(map_entries(64 * 10_000, 128 << 20), 11_024);
        assert_eq!(map_entries(u64::MAX / 2, 1 << 20), (1 << 20) / 32);
        assert_eq!(map_entries(u64::MAX / 2, 0), 1024);
    }
}

//! The group coordinators of this broker: one [`Coordinator`] per
//! `__consumer_offsets` partition this broker leads, as Kafka spreads
//! groups: group `g` lives in partition `abs(javaHashCode(g)) % n` and is
//! coordinated by that partition's leader. When this broker becomes a
//! partition's leader its groups and offsets are loaded from the log;
//! when it stops leading it, they are dropped here (clients are answered
//! NOT_COORDINATOR and find the new coordinator).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::coordinator::{Coordinator, GroupView};
use super::machine::{Limits, State};
use super::offsets::OffsetStore;
use crate::topics::Topic;

/// Java's `String.hashCode` (over UTF-16 code units, wrapping), which
/// Kafka uses to place a group.
pub fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The `__consumer_offsets` partition of `group` among `partitions`
/// (Kafka's `Utils.abs(hashCode) % partitions`).
pub fn partition_for(group: &str, partitions: usize) -> i32 {
    let h = java_hash(group);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    if partitions == 0 {
        return 0;
    }
    (abs as i64 % partitions as i64) as i32
}

/// The coordinators this broker runs, by `__consumer_offsets` partition.
#[derive(Debug)]
pub struct Coordinators {
    limits: Limits,
    loaded: RwLock<BTreeMap<i32, Arc<Coordinator>>>,
    /// Partitions of `__consumer_offsets` (0 until it exists).
    partitions: std::sync::atomic::AtomicUsize,
    /// One `follow` at a time.
    following: std::sync::Mutex<()>,
    /// The broker's registry: commits wait for the in-sync replicas of
    /// their offsets partition and wake its followers.
    registry: Option<Arc<crate::topics::Registry>>,
}

impl Coordinators {
    /// None loaded yet.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            loaded: RwLock::default(),
            partitions: std::sync::atomic::AtomicUsize::new(0),
            following: std::sync::Mutex::default(),
            registry: None,
        }
    }

    /// Commits are replicated through `registry`'s partitions.
    pub fn with_registry(mut self, registry: Arc<crate::topics::Registry>) -> Self {
        self.registry = Some(registry);
        self
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<i32, Arc<Coordinator>>> {
        self.loaded.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Partitions of `__consumer_offsets`.
    pub fn partition_count(&self) -> usize {
        self.partitions.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The partition a group lives in.
    pub fn partition_of(&self, group: &str) -> i32 {
        partition_for(group, self.partition_count())
    }

    /// The coordinator of `group` if it is here (`None`: NOT_COORDINATOR).
    pub fn for_group(&self, group: &str) -> Option<Arc<Coordinator>> {
        self.read().get(&self.partition_of(group)).cloned()
    }

    /// Every coordinator here.
    pub fn all(&self) -> Vec<Arc<Coordinator>> {
        self.read().values().cloned().collect()
    }

    /// Loads the partitions of `offsets` this broker now leads and drops
    /// the ones it no longer leads. Blocking (reads the logs).
    pub fn follow(&self, offsets: Option<&Topic>) {
        let _one = self.following.lock().unwrap_or_else(|p| p.into_inner());
        let Some(topic) = offsets else {
            // No offsets topic (not created yet, or deleted): nothing here.
            self.partitions
                .store(0, std::sync::atomic::Ordering::Relaxed);
            let gone = std::mem::take(&mut *self.loaded.write().unwrap_or_else(|p| p.into_inner()));
            for c in gone.values() {
                c.resign();
            }
            return;
        };
        // Which to drop and which to load, under a short lock; the logs are
        // read outside it, so group requests never wait for a load.
        let (gone, wanted) = {
            let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
            let mut gone = Vec::new();
            loaded.retain(|p, c| {
                let keep = topic
                    .led(*p)
                    .is_ok_and(|part| Arc::ptr_eq(&part.log, c.offsets.log()));
                if !keep {
                    gone.push((*p, c.clone()));
                }
                keep
            });
            let wanted: Vec<(i32, Arc<crate::topics::Partition>)> = (0..topic.partition_count()
                as i32)
                .filter(|p| !loaded.contains_key(p))
                .filter_map(|p| topic.led(p).ok().map(|part| (p, part.clone())))
                .collect();
            (gone, wanted)
        };
        for (p, c) in gone {
            c.resign();
            tracing::info!(
                partition = p,
                "no longer coordinating the groups of this offsets partition"
            );
        }
        let mut fresh = Vec::new();
        for (p, part) in wanted {
            match OffsetStore::load(part.log.clone()) {
                Ok(store) => {
                    let store = match &self.registry {
                        Some(r) => store.replicated_by(part, r.clone()),
                        None => store,
                    };
                    fresh.push((p, Arc::new(Coordinator::new(store, self.limits))));
                }
                Err(e) => {
                    tracing::warn!(partition = p, error = %e, "could not load an offsets partition; its groups are not coordinated here")
                }
            }
        }
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        for (p, c) in fresh {
            loaded.insert(p, c);
            tracing::info!(
                partition = p,
                "coordinating the groups of this offsets partition"
            );
        }
        // Set last: groups route to a partition only once it is loaded.
        self.partitions.store(
            topic.partition_count(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// (group, protocol type, state) of every group coordinated here.
    pub fn list(&self) -> Vec<(String, String, State)> {
        self.all().iter().flat_map(|c| c.list()).collect()
    }

    /// A group coordinated here.
    pub fn describe(&self, group: &str) -> Option<GroupView> {
        self.for_group(group)?.describe(group)
    }

    /// Session expiry and join phases, for every coordinator.
    pub fn tick(&self) {
        for c in self.all() {
            c.tick();
        }
    }

    /// Offset expiry, for every coordinator.
    pub fn expire_offsets(&self, retention_ms: i64) {
        for c in self.all() {
            c.expire_offsets(retention_ms);
        }
    }

    /// Drops the committed offsets of a deleted topic everywhere here.
    pub fn forget_topic(&self, topic: &str) {
        for c in self.all() {
            c.forget_topic(topic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_placed_as_kafka_places_them() {
        // Values of Java's "...".hashCode().
        assert_eq!(java_hash(""), 0);
        assert_eq!(java_hash("hello"), 99_162_322);
        assert_eq!(java_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("hello", 50), 99_162_322 % 50);
        // Negative hashes use their absolute value.
        let h = java_hash("console-consumer-1234");
        assert_eq!(
            partition_for("console-consumer-1234", 16),
            (h.unsigned_abs() % 16) as i32
        );
        // Non-ASCII counts UTF-16 units.
        assert_eq!(java_hash("é"), 0xe9);
        assert_eq!(java_hash("😀"), 0xd83d * 31 + 0xde00);
        assert_eq!(partition_for("anything", 1), 0);
    }
}

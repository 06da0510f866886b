//! The leader-epoch cache of a partition (KIP-101): which leader epoch
//! started at which offset. It answers OffsetForLeaderEpoch and the
//! follower's divergence check (KIP-595): the end offset of an epoch is
//! where the next larger epoch starts, or the log end for the latest.
//!
//! Kept in `<partition>/leader-epoch-checkpoint` in Kafka's layout: a
//! version line (`0`), a count line, then `epoch startOffset` per line.
//! This module is the pure part (the entries, the file text, the queries);
//! the log writes the file atomically when an epoch starts and after
//! truncation.

/// The checkpoint's file name (Kafka's).
pub const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";

/// Epochs and the offsets they start at, both ascending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<(i32, u64)>,
}

impl EpochCache {
    /// The entries, ascending.
    pub fn entries(&self) -> &[(i32, u64)] {
        &self.entries
    }

    /// The latest epoch, if any.
    pub fn latest(&self) -> Option<i32> {
        self.entries.last().map(|e| e.0)
    }

    /// Records that `epoch` starts at `offset` (a batch of that epoch was
    /// appended there). An epoch not larger than the latest changes
    /// nothing; entries starting at or after `offset` are dropped first (a
    /// log truncated and written again). Returns whether it changed.
    pub fn assign(&mut self, epoch: i32, offset: u64) -> bool {
        if epoch < 0 || self.latest().is_some_and(|l| epoch <= l) {
            return false;
        }
        self.entries.retain(|e| e.1 < offset);
        if self.latest().is_some_and(|l| epoch <= l) {
            return false;
        }
        self.entries.push((epoch, offset));
        true
    }

    /// OffsetForLeaderEpoch: for `epoch`, the largest known epoch not above
    /// it and the offset where the next larger epoch starts (`log_end` for
    /// the latest); `None` when every known epoch is larger (Kafka answers
    /// UNDEFINED_EPOCH and offset -1).
    pub fn end_offset_for(&self, epoch: i32, log_end: u64) -> Option<(i32, u64)> {
        let i = self.entries.iter().rposition(|e| e.0 <= epoch)?;
        let end = self.entries.get(i + 1).map_or(log_end, |next| next.1);
        Some((self.entries[i].0, end))
    }

    /// The log was cut at `offset` (everything from it on is gone): epochs
    /// starting there or later are forgotten.
    pub fn truncate_to(&mut self, offset: u64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.1 < offset);
        before != self.entries.len()
    }

    /// The log now starts at `offset`: epochs wholly before it are
    /// dropped, the one covering it now starts there.
    pub fn start_at(&mut self, offset: u64) -> bool {
        let covering = self.entries.iter().rposition(|e| e.1 <= offset);
        let Some(i) = covering else { return false };
        let changed = i > 0 || self.entries[0].1 != offset;
        self.entries.drain(..i);
        self.entries[0].1 = offset;
        changed
    }

    /// The file text.
    pub fn encode(&self) -> String {
        let mut out = format!("0\n{}\n", self.entries.len());
        for (e, o) in &self.entries {
            out.push_str(&format!("{e} {o}\n"));
        }
        out
    }

    /// Parses [`EpochCache::encode`]'s text (or Kafka's); `None` if it is
    /// not that (the caller then rebuilds from the log).
    pub fn decode(text: &str) -> Option<Self> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next()? != "0" {
            return None;
        }
        let count: usize = lines.next()?.parse().ok()?;
        let mut entries = Vec::with_capacity(count.min(1 << 16));
        for _ in 0..count {
            let (e, o) = lines.next()?.split_once(' ')?;
            let entry: (i32, u64) = (e.trim().parse().ok()?, o.trim().parse().ok()?);
            if entries
                .last()
                .is_some_and(|l: &(i32, u64)| entry.0 <= l.0 || entry.1 < l.1)
            {
                return None;
            }
            entries.push(entry);
        }
        if lines.next().is_some() {
            return None;
        }
        Some(Self { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_answer_offset_for_leader_epoch_as_kafka_does() {
        let mut c = EpochCache::default();
        assert_eq!(c.end_offset_for(0, 10), None);
        assert!(c.assign(0, 0));
        assert!(c.assign(2, 100));
        assert!(!c.assign(2, 150), "the same epoch again");
        assert!(!c.assign(1, 200), "an older epoch");
        assert!(c.assign(5, 300));
        assert_eq!(c.end_offset_for(0, 400), Some((0, 100)));
        // Epoch 1 never led: the largest below it is 0, which ended at 100.
        assert_eq!(c.end_offset_for(1, 400), Some((0, 100)));
        assert_eq!(c.end_offset_for(2, 400), Some((2, 300)));
        assert_eq!(c.end_offset_for(4, 400), Some((2, 300)));
        assert_eq!(c.end_offset_for(5, 400), Some((5, 400)));
        assert_eq!(c.end_offset_for(9, 400), Some((5, 400)));
        assert_eq!(c.end_offset_for(-1, 400), None);
        // Truncated into epoch 2: epoch 5 is gone.
        assert!(c.truncate_to(250));
        assert_eq!(c.entries(), &[(0, 0), (2, 100)]);
        // Written again in a new epoch from where the log was cut.
        assert!(c.assign(6, 250));
        // A log starting later keeps the epoch covering its start.
        assert!(c.start_at(120));
        assert_eq!(c.entries(), &[(2, 120), (6, 250)]);
        assert!(!c.start_at(120));
        // A new epoch at an offset some entries reach: they go.
        let mut d = EpochCache::default();
        d.assign(1, 0);
        d.assign(3, 50);
        assert!(d.assign(7, 40));
        assert_eq!(d.entries(), &[(1, 0), (7, 40)]);
    }

    #[test]
    fn the_checkpoint_round_trips_and_garbage_is_refused() {
        let mut c = EpochCache::default();
        c.assign(0, 0);
        c.assign(4, 1234);
        let text = c.encode();
        assert_eq!(text, "0\n2\n0 0\n4 1234\n");
        assert_eq!(EpochCache::decode(&text), Some(c));
        assert_eq!(EpochCache::decode("0\n0\n"), Some(EpochCache::default()));
        for bad in [
            "",
            "1\n0\n",
            "0\n2\n0 0\n",
            "0\n1\nx 0\n",
            "0\n2\n4 0\n3 10\n",
            "0\n1\n0 0\n9 9\n",
        ] {
            assert_eq!(EpochCache::decode(bad), None, "{bad:?}");
        }
    }
}

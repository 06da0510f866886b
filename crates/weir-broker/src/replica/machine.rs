//! The replication decisions of one partition, as pure state machines
//! (docs/design/replication.md): the leader's view of its followers, the
//! in-sync replica set it proposes, its high watermark; the divergence
//! check a leader answers a follower's fetch with; where a follower
//! truncates. Inputs and the time come in, decisions go out; the fetchers
//! and handlers around them do the I/O.

use std::collections::{BTreeMap, BTreeSet};

use weir_log::epochs::EpochCache;

/// Settings of a partition's replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `min.insync.replicas`.
    pub min_isr: usize,
    /// `replica.lag.time.max.ms`.
    pub lag_max_ms: i64,
}

/// An ISR change for the controller (Kafka's AlterPartition): accepted
/// only while the partition is still at `partition_epoch`, so a proposal
/// made before another change (a broker fenced meanwhile) cannot undo it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// The new ISR.
    pub isr: Vec<i32>,
    /// The partition epoch the leader saw.
    pub partition_epoch: i32,
}

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Follower {
    /// Its last fetch offset: everything below is durably on it.
    fetch_offset: u64,
    /// When it last was caught up with the leader's end.
    caught_up_ms: i64,
    /// The leader's end at its previous fetch, and that fetch's time.
    previous: Option<(u64, i64)>,
}

/// The leader side of a partition, for one leader epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    me: i32,
    epoch: i32,
    settings: Settings,
    replicas: Vec<i32>,
    /// The ISR as committed in the metadata, and its partition epoch.
    isr: BTreeSet<i32>,
    partition_epoch: i32,
    /// An ISR change proposed and not yet committed or refused.
    pending: Option<BTreeSet<i32>>,
    followers: BTreeMap<i32, Follower>,
    /// The leader's own durable end.
    end: u64,
    /// Where this leader epoch started on its log.
    epoch_start: u64,
    hw: u64,
}

impl Leader {
    /// Broker `me` leads from `epoch`, its log durable up to `end`, its
    /// high watermark `hw` (from before, or its end's lower bound); every
    /// follower counts as caught up at `now_ms` (it gets
    /// `replica.lag.time.max.ms` to show it is).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: i32,
        epoch: i32,
        replicas: &[i32],
        isr: &[i32],
        partition_epoch: i32,
        end: u64,
        hw: u64,
        settings: Settings,
        now_ms: i64,
    ) -> Self {
        let followers = replicas
            .iter()
            .filter(|&&r| r != me)
            .map(|&r| {
                (
                    r,
                    Follower {
                        fetch_offset: 0,
                        caught_up_ms: now_ms,
                        previous: None,
                    },
                )
            })
            .collect();
        Self {
            me,
            epoch,
            settings,
            replicas: replicas.to_vec(),
            isr: isr.iter().copied().collect(),
            partition_epoch,
            pending: None,
            followers,
            end,
            epoch_start: end,
            hw: hw.min(end),
        }
    }

    /// The high watermark.
    pub fn hw(&self) -> u64 {
        self.hw
    }

    /// The leader epoch.
    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    /// The partition epoch of the committed ISR.
    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch
    }

    /// New settings (a topic's `min.insync.replicas` changed).
    pub fn set_settings(&mut self, settings: Settings) {
        self.settings = settings;
        self.advance_hw();
    }

    /// The committed ISR.
    pub fn isr(&self) -> Vec<i32> {
        self.isr.iter().copied().collect()
    }

    /// Whether an acks=all produce may be appended now.
    pub fn enough_replicas(&self) -> bool {
        self.isr.len() >= self.settings.min_isr
    }

    /// The ISR the high watermark waits for: the committed one and any
    /// member a pending change adds (Kafka's "maximal ISR"), so a
    /// follower joining is counted before its addition commits.
    fn maximal_isr(&self) -> BTreeSet<i32> {
        let mut m = self.isr.clone();
        if let Some(p) = &self.pending {
            m.extend(p.iter().copied());
        }
        m
    }

    fn advance_hw(&mut self) {
        if self.isr.len() < self.settings.min_isr {
            return;
        }
        let low = self
            .maximal_isr()
            .iter()
            .map(|r| {
                if *r == self.me {
                    self.end
                } else {
                    self.followers.get(r).map_or(0, |f| f.fetch_offset)
                }
            })
            .min()
            .unwrap_or(self.end);
        if low > self.hw {
            self.hw = low;
        }
    }

    /// The leader's log became durable up to `end`.
    pub fn appended(&mut self, end: u64) {
        self.end = self.end.max(end);
        self.advance_hw();
    }

    /// Follower `id` fetched from `offset` at `now_ms` (everything below
    /// it is durably on that follower). Returns an ISR change to propose,
    /// if it should now join.
    pub fn fetched(&mut self, id: i32, offset: u64, now_ms: i64) -> Option<Proposal> {
        let end = self.end;
        let f = self.followers.get_mut(&id)?;
        f.fetch_offset = offset.min(end);
        if offset >= end {
            f.caught_up_ms = now_ms;
        } else if let Some((prev_end, prev_ms)) = f.previous
            && offset >= prev_end
        {
            // It has what the leader had at its previous fetch.
            f.caught_up_ms = f.caught_up_ms.max(prev_ms);
        }
        f.previous = Some((end, now_ms));
        self.advance_hw();
        let joins = !self.isr.contains(&id)
            && self.pending.is_none()
            && offset >= self.hw
            && offset >= self.epoch_start;
        joins.then(|| {
            self.propose(|isr| {
                isr.insert(id);
            })
        })
    }

    fn propose(&mut self, change: impl FnOnce(&mut BTreeSet<i32>)) -> Proposal {
        let mut next = self.isr.clone();
        change(&mut next);
        self.pending = Some(next.clone());
        Proposal {
            isr: next.into_iter().collect(),
            partition_epoch: self.partition_epoch,
        }
    }

    /// Time passes: an ISR change to propose if a follower fell behind
    /// for longer than `replica.lag.time.max.ms` (one at a time, none
    /// while a change is pending).
    pub fn tick(&mut self, now_ms: i64) -> Option<Proposal> {
        if self.pending.is_some() {
            return None;
        }
        let lagging: Vec<i32> = self
            .isr
            .iter()
            .filter(|r| **r != self.me)
            .filter(|r| {
                self.followers
                    .get(r)
                    .is_some_and(|f| now_ms - f.caught_up_ms > self.settings.lag_max_ms)
            })
            .copied()
            .collect();
        if lagging.is_empty() {
            return None;
        }
        Some(self.propose(|isr| {
            for r in &lagging {
                isr.remove(r);
            }
        }))
    }

    /// The metadata has this ISR at `partition_epoch` (this leader's
    /// proposal committed, another change, or a proposal refused: the
    /// pending one is over either way).
    pub fn isr_committed(&mut self, isr: &[i32], partition_epoch: i32) {
        self.isr = isr.iter().copied().collect();
        self.partition_epoch = partition_epoch;
        self.pending = None;
        self.advance_hw();
    }

    /// The replicas of the partition.
    pub fn replicas(&self) -> &[i32] {
        &self.replicas
    }
}

/// The leader's answer to a follower's position (KIP-595): `None` when
/// `(last_fetched_epoch, fetch_offset)` is on the leader's log, else the
/// epoch and end offset the follower must truncate to (at most).
pub fn diverging(
    epochs: &EpochCache,
    log_end: u64,
    last_fetched_epoch: i32,
    fetch_offset: u64,
) -> Option<(i32, u64)> {
    if last_fetched_epoch < 0 {
        return None;
    }
    match epochs.end_offset_for(last_fetched_epoch, log_end) {
        Some((epoch, end)) if epoch == last_fetched_epoch && end >= fetch_offset => None,
        Some((epoch, end)) => Some((epoch, end)),
        // Every epoch of the leader is newer: nothing of the follower's
        // can be trusted past the leader's first epoch's start.
        None => Some((-1, epochs.entries().first().map_or(0, |e| e.1))),
    }
}

/// Where a follower truncates when the leader reports `(epoch, end)` as
/// diverging (KIP-279): at the leader's end for that epoch, or earlier
/// where its own log left that epoch sooner; never past its own end.
pub fn truncation_point(own: &EpochCache, own_end: u64, epoch: i32, end: u64) -> u64 {
    let mine = if epoch < 0 {
        own_end
    } else {
        own.end_offset_for(epoch, own_end).map_or(0, |(_, o)| o)
    };
    end.min(mine).min(own_end)
}

//! Partition replication (docs/design/replication.md).
//!
//! * `machine`: the decisions as pure state machines (the leader's view of
//!   its followers, the ISR it proposes, its high watermark; the
//!   divergence answer; the follower's truncation point), tested by a
//!   seeded simulation of replicas under crashes, lost messages and
//!   successive failovers.
//! * [`Replica`]: one hosted partition's role (the only replica, leader or
//!   follower) and high watermark, set from the metadata image and fed by
//!   appends and replica fetches; a thin lock around `machine::Leader`.
//! * `fetcher`: one task per leader broker copying the partitions this
//!   broker follows from it, with Kafka's Fetch.

mod fetcher;
pub(crate) mod isr;
pub mod machine;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use weir_log::Log;
use weir_meta::PartitionInfo;

pub use fetcher::Fetchers;
pub use machine::{Proposal, Settings};

/// The high watermark of a partition with one replica: its log end.
const LOG_END: u64 = u64::MAX;

/// What this broker is for one partition.
#[derive(Debug)]
enum Role {
    /// The partition has one replica, this one: the HW is the log end.
    Single,
    /// This broker leads it.
    Leader(Box<machine::Leader>),
    /// Another broker (-1: none now) leads it in `epoch`.
    Follower { leader: i32, epoch: i32 },
}

/// One hosted partition's replication state.
#[derive(Debug)]
pub struct Replica {
    role: Mutex<Role>,
    /// The high watermark (`LOG_END` for a single replica).
    hw: AtomicU64,
}

impl Default for Replica {
    fn default() -> Self {
        Self {
            role: Mutex::new(Role::Single),
            hw: AtomicU64::new(LOG_END),
        }
    }
}

/// Why an acks=all produce may not be appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooFewInSync {
    /// In-sync replicas now.
    pub isr: usize,
    /// `min.insync.replicas`.
    pub min: usize,
}

impl Replica {
    fn role(&self) -> std::sync::MutexGuard<'_, Role> {
        self.role.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The high watermark: what consumers may read, and what acks=all
    /// waits for.
    pub fn high_watermark(&self, log: &Log) -> u64 {
        let end = log.log_end_offset();
        match self.hw.load(Ordering::Acquire) {
            LOG_END => end,
            hw => hw.min(end),
        }
    }

    /// Whether the partition has more than one replica.
    pub fn replicated(&self) -> bool {
        !matches!(*self.role(), Role::Single)
    }

    /// Takes the role the image gives broker `me` for this partition.
    /// A new leadership starts from the log's end and the HW known so
    /// far; an ISR change of the same leadership is passed on. Returns
    /// whether this broker leads now.
    pub fn follow_image(
        &self,
        info: &PartitionInfo,
        me: i32,
        log: &Log,
        settings: Settings,
        now_ms: i64,
    ) -> bool {
        let mut role = self.role();
        if info.replicas.len() <= 1 {
            *role = Role::Single;
            self.hw.store(LOG_END, Ordering::Release);
            return info.leader == me;
        }
        if info.leader != me {
            if let Role::Leader(l) = &*role {
                // Kept as the follower's starting point.
                self.hw.store(l.hw(), Ordering::Release);
            } else if matches!(*role, Role::Single) {
                self.hw.store(0, Ordering::Release);
            }
            *role = Role::Follower {
                leader: info.leader,
                epoch: info.leader_epoch,
            };
            return false;
        }
        match &mut *role {
            Role::Leader(l) if l.epoch() == info.leader_epoch => {
                l.set_settings(settings);
                if l.partition_epoch() != info.partition_epoch {
                    l.isr_committed(&info.isr, info.partition_epoch);
                    self.hw.store(l.hw(), Ordering::Release);
                }
            }
            _ => {
                let hw = match self.hw.load(Ordering::Acquire) {
                    LOG_END => 0,
                    hw => hw,
                };
                let leader = machine::Leader::new(
                    me,
                    info.leader_epoch,
                    &info.replicas,
                    &info.isr,
                    info.partition_epoch,
                    log.log_end_offset(),
                    hw,
                    settings,
                    now_ms,
                );
                self.hw.store(leader.hw(), Ordering::Release);
                *role = Role::Leader(Box::new(leader));
            }
        }
        true
    }

    /// Whether this broker leads the partition (or is its only replica).
    pub fn leads(&self) -> bool {
        !matches!(*self.role(), Role::Follower { .. })
    }

    /// The leader and leader epoch this broker follows, if it does.
    pub fn following(&self) -> Option<(i32, i32)> {
        match &*self.role() {
            Role::Follower { leader, epoch } => Some((*leader, *epoch)),
            _ => None,
        }
    }

    /// Before an acks=all append: whether the ISR is large enough.
    pub fn check_in_sync(&self, min_isr: usize) -> Result<(), TooFewInSync> {
        match &*self.role() {
            Role::Leader(l) if l.isr().len() < min_isr => Err(TooFewInSync {
                isr: l.isr().len(),
                min: min_isr,
            }),
            Role::Single if min_isr > 1 => Err(TooFewInSync {
                isr: 1,
                min: min_isr,
            }),
            _ => Ok(()),
        }
    }

    /// The leader appended: its log ends at `end`. Returns whether the HW
    /// moved.
    pub fn leader_appended(&self, end: u64) -> bool {
        let mut role = self.role();
        let Role::Leader(l) = &mut *role else {
            return false;
        };
        let before = l.hw();
        l.appended(end);
        self.publish(l, before)
    }

    fn publish(&self, l: &machine::Leader, before: u64) -> bool {
        self.hw.store(l.hw(), Ordering::Release);
        l.hw() > before
    }

    /// Follower `id` fetched from `offset` (everything below is durably
    /// on it). Returns an ISR change to propose, with the leader epoch,
    /// and whether the HW moved; `None` when this broker does not lead.
    pub fn follower_fetched(
        &self,
        id: i32,
        offset: u64,
        end: u64,
        now_ms: i64,
    ) -> Option<(Option<(Proposal, i32)>, bool)> {
        let mut role = self.role();
        let Role::Leader(l) = &mut *role else {
            return None;
        };
        let before = l.hw();
        l.appended(end);
        let proposal = l.fetched(id, offset, now_ms).map(|p| (p, l.epoch()));
        Some((proposal, self.publish(l, before)))
    }

    /// Time passes on a leader: an ISR shrink to propose, with the leader
    /// epoch.
    pub fn tick(&self, now_ms: i64) -> Option<(Proposal, i32)> {
        match &mut *self.role() {
            Role::Leader(l) => l.tick(now_ms).map(|p| (p, l.epoch())),
            _ => None,
        }
    }

    /// A proposal was refused or lost: the leader takes the ISR the image
    /// has, so it may propose again.
    pub fn proposal_over(&self, info: &PartitionInfo, leader_epoch: i32) {
        if let Role::Leader(l) = &mut *self.role()
            && l.epoch() == leader_epoch
        {
            l.isr_committed(&info.isr, info.partition_epoch);
            self.hw.store(l.hw(), Ordering::Release);
        }
    }

    /// A follower learned the leader's HW: its own is that, up to what it
    /// holds.
    pub fn follower_hw(&self, leader_hw: u64, end: u64) {
        if matches!(*self.role(), Role::Follower { .. }) {
            self.hw.store(leader_hw.min(end), Ordering::Release);
        }
    }

    /// The committed ISR, where this broker leads.
    pub fn isr(&self) -> Option<Vec<i32>> {
        match &*self.role() {
            Role::Leader(l) => Some(l.isr()),
            _ => None,
        }
    }
}

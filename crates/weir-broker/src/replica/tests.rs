//! A seeded simulation of one partition's replicas: a leader taking
//! acks=all produces, followers fetching (responses lost at random),
//! ISR changes sent to a controller (lost at random), time passing,
//! replicas crashing (losing what they had not synced) and restarting,
//! the controller electing from the ISR. After every step the invariants
//! of docs/design/replication.md are checked; at the end, healed, every
//! replica converges.

use std::collections::BTreeMap;

use weir_log::epochs::EpochCache;

use super::machine::{Leader, Proposal, Settings, diverging, truncation_point};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One replica's log: (epoch, value) per offset.
#[derive(Debug, Clone, Default)]
struct Replica {
    log: Vec<(i32, u64)>,
    /// The prefix that survives a crash.
    durable: usize,
    epochs: EpochCache,
    alive: bool,
    /// The high watermark this replica last learned (as leader, or from
    /// its leader's fetch answers).
    hw: u64,
}

impl Replica {
    fn truncate(&mut self, to: u64) {
        let to = to as usize;
        self.log.truncate(to);
        self.durable = self.durable.min(to);
        self.epochs.truncate_to(to as u64);
    }
    fn append(&mut self, epoch: i32, value: u64) {
        self.epochs.assign(epoch, self.log.len() as u64);
        self.log.push((epoch, value));
    }
    fn last_epoch(&self) -> i32 {
        self.log.last().map_or(-1, |e| e.0)
    }
}

const N: usize = 3;
const SETTINGS: Settings = Settings {
    min_isr: 2,
    lag_max_ms: 1000,
};

struct Sim {
    rng: Rng,
    now: i64,
    replicas: Vec<Replica>,
    /// The metadata: leader (-1 none), leader epoch, ISR, partition epoch.
    leader_id: i32,
    epoch: i32,
    isr: Vec<i32>,
    partition_epoch: i32,
    leader: Option<Leader>,
    /// ISR changes on their way to the controller, with the leader epoch
    /// of the leader that sent them.
    proposals: Vec<(i32, Proposal)>,
    /// acks=all produces waiting: (leader epoch, offset, value).
    waiting: Vec<(i32, u64, u64)>,
    /// Acknowledged: offset -> value.
    acked: BTreeMap<u64, u64>,
    leaders_by_epoch: BTreeMap<i32, i32>,
    hw_by_epoch: BTreeMap<i32, u64>,
    next_value: u64,
    /// What happened, so the test knows the run was not trivial.
    stats: Stats,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    elections: u64,
    truncations: u64,
    isr_changes: u64,
    crashes: u64,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut s = Self {
            rng: Rng(seed),
            now: 0,
            replicas: vec![
                Replica {
                    alive: true,
                    ..Replica::default()
                };
                N
            ],
            leader_id: -1,
            epoch: -1,
            isr: (0..N as i32).collect(),
            partition_epoch: 0,
            leader: None,
            proposals: Vec::new(),
            waiting: Vec::new(),
            acked: BTreeMap::new(),
            leaders_by_epoch: BTreeMap::new(),
            hw_by_epoch: BTreeMap::new(),
            next_value: 0,
            stats: Stats::default(),
        };
        s.elect(0);
        s
    }

    /// The controller makes `id` leader with a new epoch.
    fn elect(&mut self, id: i32) {
        self.stats.elections += 1;
        self.epoch += 1;
        self.leader_id = id;
        let r = &mut self.replicas[id as usize];
        // The new epoch starts at its end (recorded with its first batch
        // in the log; here at once, as the design says).
        let end = r.log.len() as u64;
        r.epochs.assign(self.epoch, end);
        // What it knew as a follower bounds its high watermark; the
        // simulation gives it the previous committed one it holds.
        let hw = self
            .hw_by_epoch
            .values()
            .max()
            .copied()
            .unwrap_or(0)
            .min(end);
        let replicas: Vec<i32> = (0..N as i32).collect();
        self.partition_epoch += 1;
        self.leader = Some(Leader::new(
            id,
            self.epoch,
            &replicas,
            &self.isr,
            self.partition_epoch,
            end,
            hw,
            SETTINGS,
            self.now,
        ));
        assert!(
            self.leaders_by_epoch.insert(self.epoch, id).is_none(),
            "R1: two leaders for epoch {}",
            self.epoch
        );
        // Produces waiting under an older leader fail (the client retries).
        self.waiting.clear();
    }

    fn produce(&mut self) {
        let Some(l) = &self.leader else { return };
        if !l.enough_replicas() {
            return;
        }
        let value = self.next_value;
        self.next_value += 1;
        let r = &mut self.replicas[self.leader_id as usize];
        let offset = r.log.len() as u64;
        r.append(self.epoch, value);
        self.waiting.push((self.epoch, offset, value));
    }

    fn leader_sync(&mut self) {
        let Some(l) = &mut self.leader else { return };
        let r = &mut self.replicas[self.leader_id as usize];
        r.durable = r.log.len();
        l.appended(r.durable as u64);
    }

    fn fetch(&mut self) {
        if self.leader.is_none() {
            return;
        }
        let f = self.rng.below(N as u64) as i32;
        if f == self.leader_id || !self.replicas[f as usize].alive {
            return;
        }
        let leader_log = self.replicas[self.leader_id as usize].clone();
        let follower = &self.replicas[f as usize];
        let offset = follower.log.len() as u64;
        let lfe = follower.last_epoch();
        if let Some((e, end)) =
            diverging(&leader_log.epochs, leader_log.log.len() as u64, lfe, offset)
        {
            if self.rng.chance(10) {
                return; // the answer is lost
            }
            let to = truncation_point(&follower.epochs, offset, e, end);
            let known = follower.hw;
            assert!(
                to >= known.min(offset),
                "R5: follower {f} truncates to {to}, below the high watermark {known} it knew"
            );
            if to < offset {
                self.stats.truncations += 1;
            }
            self.replicas[f as usize].truncate(to);
            return;
        }
        let now = self.now;
        let proposal = self.leader.as_mut().and_then(|l| l.fetched(f, offset, now));
        if let Some(p) = proposal {
            self.proposals.push((self.epoch, p));
        }
        if self.rng.chance(10) {
            return; // the answer is lost
        }
        let n = 1 + self.rng.below(4) as usize;
        let from = offset as usize;
        let upto = (from + n).min(leader_log.log.len());
        let r = &mut self.replicas[f as usize];
        for &(e, v) in &leader_log.log[from..upto] {
            r.append(e, v);
        }
        // Synced before the next fetch says where it is.
        r.durable = r.log.len();
        let hw = self.leader.as_ref().map_or(0, Leader::hw);
        r.hw = r.hw.max(hw.min(r.log.len() as u64));
    }

    /// The metadata changed the ISR: the leader learns it.
    fn commit_isr(&mut self, isr: Vec<i32>) {
        self.stats.isr_changes += 1;
        self.isr = isr;
        self.partition_epoch += 1;
        let (isr, pe) = (self.isr.clone(), self.partition_epoch);
        if let Some(l) = &mut self.leader {
            l.isr_committed(&isr, pe);
        }
    }

    fn controller(&mut self) {
        if self.proposals.is_empty() {
            return;
        }
        let (epoch, p) = self.proposals.remove(0);
        if self.rng.chance(10) {
            return; // lost: the leader proposes again later (see `step`)
        }
        let stale = epoch != self.epoch || p.partition_epoch != self.partition_epoch;
        // Only live brokers may join (a fenced one is refused).
        let dead = p.isr.iter().any(|r| !self.replicas[*r as usize].alive);
        if self.leader.is_none() {
            return;
        }
        if stale || dead {
            // Refused: the leader hears the current state.
            let (isr, pe) = (self.isr.clone(), self.partition_epoch);
            if epoch == self.epoch
                && let Some(l) = &mut self.leader
            {
                l.isr_committed(&isr, pe);
            }
            return;
        }
        self.commit_isr(p.isr);
    }

    fn tick(&mut self) {
        self.now += self.rng.below(400) as i64;
        let now = self.now;
        if let Some(p) = self.leader.as_mut().and_then(|l| l.tick(now)) {
            self.proposals.push((self.epoch, p));
        }
    }

    fn crash(&mut self) {
        let id = self.rng.below(N as u64) as i32;
        let alive = self.replicas.iter().filter(|r| r.alive).count();
        if !self.replicas[id as usize].alive || alive == 1 {
            return;
        }
        self.stats.crashes += 1;
        let r = &mut self.replicas[id as usize];
        r.alive = false;
        let durable = r.durable as u64;
        r.truncate(durable);
        // Fenced: out of the ISR unless it is the last member.
        if self.isr.len() > 1 && self.isr.contains(&id) {
            let isr = self.isr.iter().copied().filter(|&x| x != id).collect();
            self.commit_isr(isr);
        }
        if id == self.leader_id {
            self.leader = None;
            self.leader_id = -1;
            let next = self
                .isr
                .iter()
                .copied()
                .find(|&x| self.replicas[x as usize].alive);
            if let Some(n) = next {
                self.elect(n);
            }
        }
    }

    fn restart(&mut self) {
        let id = self.rng.below(N as u64) as i32;
        if self.replicas[id as usize].alive {
            return;
        }
        self.replicas[id as usize].alive = true;
        if self.leader.is_none() && self.isr.contains(&id) {
            self.elect(id);
        }
    }

    fn acks(&mut self) {
        let Some(l) = &self.leader else { return };
        let hw = l.hw();
        let epoch = self.epoch;
        let last = self.hw_by_epoch.entry(epoch).or_insert(0);
        assert!(hw >= *last, "R2: high watermark went back in epoch {epoch}");
        *last = hw;
        let me = &mut self.replicas[self.leader_id as usize];
        me.hw = me.hw.max(hw);
        let (done, rest): (Vec<_>, Vec<_>) = self
            .waiting
            .drain(..)
            .partition(|&(e, offset, _)| e == epoch && offset < hw);
        self.waiting = rest;
        for (_, offset, value) in done {
            assert!(
                self.acked.insert(offset, value).is_none(),
                "offset {offset} acknowledged twice"
            );
        }
    }

    fn check(&self) {
        let Some(l) = &self.leader else { return };
        let leader = &self.replicas[self.leader_id as usize];
        let hw = l.hw() as usize;
        // R4: everything acknowledged is on the leader, where it was.
        for (&offset, &value) in &self.acked {
            assert_eq!(
                leader.log.get(offset as usize).map(|e| e.1),
                Some(value),
                "R4: acknowledged offset {offset} lost or changed"
            );
        }
        // R3: every live ISR member equals the leader up to the HW.
        for &m in &self.isr {
            let r = &self.replicas[m as usize];
            if m == self.leader_id || !r.alive {
                continue;
            }
            assert!(
                r.log.len() >= hw && r.log[..hw] == leader.log[..hw],
                "R3: ISR member {m} differs from leader {} below the HW {hw} (epoch {}, isr {:?})\nleader {:?}\nmember {:?}\nleader epochs {:?}\nmember epochs {:?}",
                self.leader_id,
                self.epoch,
                self.isr,
                &leader.log[hw.saturating_sub(5)..leader.log.len().min(hw + 3)],
                &r.log[hw.saturating_sub(5).min(r.log.len())..r.log.len().min(hw + 3)],
                leader.epochs.entries(),
                r.epochs.entries()
            );
        }
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..=24 => self.produce(),
            25..=34 => self.leader_sync(),
            35..=69 => self.fetch(),
            70..=79 => self.controller(),
            80..=91 => self.tick(),
            92..=95 => self.crash(),
            _ => self.restart(),
        }
        // A leader whose proposal was lost hears the current state again
        // (its request timed out), so it may propose again.
        if let Some(l) = &mut self.leader
            && self.proposals.is_empty()
            && self.rng.chance(5)
        {
            let (isr, pe) = (self.isr.clone(), self.partition_epoch);
            l.isr_committed(&isr, pe);
        }
        self.acks();
        self.check();
    }

    /// Everyone back, no loss, until converged.
    fn heal(&mut self) {
        for id in 0..N as i32 {
            if !self.replicas[id as usize].alive {
                self.replicas[id as usize].alive = true;
                if self.leader.is_none() && self.isr.contains(&id) {
                    self.elect(id);
                }
            }
        }
        assert!(
            self.leader.is_some(),
            "no leader after every replica is back"
        );
        // Requests in flight time out; the leader hears the current state.
        self.proposals.clear();
        let (isr, pe) = (self.isr.clone(), self.partition_epoch);
        if let Some(l) = &mut self.leader {
            l.isr_committed(&isr, pe);
        }
        for _ in 0..2000 {
            self.leader_sync();
            for f in 0..N as i32 {
                if f == self.leader_id {
                    continue;
                }
                let leader_log = self.replicas[self.leader_id as usize].clone();
                let r = &mut self.replicas[f as usize];
                let offset = r.log.len() as u64;
                if let Some((e, end)) = diverging(
                    &leader_log.epochs,
                    leader_log.log.len() as u64,
                    r.last_epoch(),
                    offset,
                ) {
                    let to = truncation_point(&r.epochs, offset, e, end);
                    r.truncate(to);
                    continue;
                }
                let now = self.now;
                if let Some(p) = self.leader.as_mut().and_then(|l| l.fetched(f, offset, now)) {
                    self.commit_isr(p.isr);
                }
                let r = &mut self.replicas[f as usize];
                for &(e, v) in &leader_log.log[offset as usize..] {
                    r.append(e, v);
                }
                r.durable = r.log.len();
            }
            self.now += 10;
            self.acks();
            self.check();
        }
        let leader = &self.replicas[self.leader_id as usize];
        for (i, r) in self.replicas.iter().enumerate() {
            assert_eq!(r.log, leader.log, "replica {i} did not converge");
        }
        assert_eq!(self.isr.len(), N, "every replica back in the ISR");
        assert_eq!(self.leader.as_ref().unwrap().hw(), leader.log.len() as u64);
    }
}

#[test]
fn seeded_replicas_never_lose_what_was_acknowledged_and_converge() {
    let mut total = Stats::default();
    let mut acked = 0;
    // 200 seeds: fewer miss some cases (a stale ISR proposal accepted
    // without the partition-epoch guard shows up near seed 160).
    for seed in 0..200 {
        let mut s = Sim::new(seed);
        for _ in 0..3000 {
            s.step();
        }
        s.heal();
        assert!(
            !s.acked.is_empty(),
            "seed {seed}: nothing was ever acknowledged"
        );
        acked += s.acked.len();
        total.elections += s.stats.elections;
        total.truncations += s.stats.truncations;
        total.isr_changes += s.stats.isr_changes;
        total.crashes += s.stats.crashes;
    }
    // The runs were not trivial: failovers, divergent tails cut, the ISR
    // shrinking and growing.
    assert!(
        total.elections > 1_000
            && total.truncations > 100
            && total.isr_changes > 2_500
            && acked > 10_000,
        "{total:?}, {acked} acknowledged"
    );
}

#[test]
fn the_high_watermark_waits_for_min_isr_and_the_isr_follows_the_lag() {
    let settings = Settings {
        min_isr: 2,
        lag_max_ms: 1000,
    };
    let mut l = Leader::new(1, 3, &[1, 2, 3], &[1, 2, 3], 7, 10, 10, settings, 0);
    l.appended(20);
    assert_eq!(l.hw(), 10, "followers have not fetched yet");
    assert_eq!(l.fetched(2, 20, 100), None);
    assert_eq!(l.hw(), 10, "follower 3 is in the ISR and behind");
    assert_eq!(l.fetched(3, 15, 100), None);
    assert_eq!(l.hw(), 15);
    // Follower 3 stops fetching: out after the lag time (2 keeps up).
    assert_eq!(l.tick(900), None);
    assert_eq!(l.fetched(2, 20, 1100), None);
    let p = l.tick(1200).unwrap();
    assert_eq!((p.isr, p.partition_epoch), (vec![1, 2], 7));
    assert_eq!(l.tick(1300), None, "one change at a time");
    l.isr_committed(&[1, 2], 8);
    assert_eq!(l.hw(), 20, "the HW moves without the laggard");
    // Alone, the leader holds the HW (min.insync.replicas 2).
    l.isr_committed(&[1], 9);
    assert!(!l.enough_replicas());
    l.appended(30);
    assert_eq!(l.hw(), 20);
    // Follower 3 catches up past the HW and this epoch's start: joins.
    let p = l.fetched(3, 30, 2000).unwrap();
    assert_eq!((p.isr, p.partition_epoch), (vec![1, 3], 9));
    l.isr_committed(&[1, 3], 10);
    assert_eq!(l.hw(), 30);
}

#[test]
fn divergence_is_found_where_the_epochs_differ() {
    let mut leader = EpochCache::default();
    leader.assign(0, 0);
    leader.assign(2, 10);
    leader.assign(4, 20);
    // A follower at the leader's end of epoch 4: no divergence.
    assert_eq!(diverging(&leader, 25, 4, 25), None);
    // A follower with epoch-2 data past the leader's epoch-2 end.
    assert_eq!(diverging(&leader, 25, 2, 15), None);
    assert_eq!(diverging(&leader, 25, 2, 22), Some((2, 20)));
    // A follower that wrote in epoch 3, which the leader never had.
    assert_eq!(diverging(&leader, 25, 3, 18), Some((2, 20)));
    let mut follower = EpochCache::default();
    follower.assign(0, 0);
    follower.assign(2, 10);
    follower.assign(3, 16);
    // It truncates where its own epoch 2 ended (16), before the leader's 20.
    assert_eq!(truncation_point(&follower, 18, 2, 20), 16);
    assert_eq!(
        truncation_point(&follower, 12, 2, 20),
        12,
        "never past its end"
    );
}

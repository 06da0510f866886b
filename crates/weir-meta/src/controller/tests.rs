//! The controller's decisions, one by one and under a seeded simulation
//! of brokers starting, dying, restarting and changing controllers.

use super::*;
use crate::image::Refused;

/// Applies a decision's records as the quorum would, at the next indexes;
/// returns the index of the first one.
fn commit(image: &mut Image, next_index: &mut u64, records: &[MetaRecord]) -> Result<u64, Refused> {
    let first = *next_index;
    for r in records {
        image.apply(*next_index, r)?;
        *next_index += 1;
    }
    Ok(first)
}

struct Sim {
    image: Image,
    index: u64,
    controller: Controller,
    /// Fencings, partitions gone offline, leaders elected.
    fences: usize,
    offline: usize,
    elected: usize,
}

impl Sim {
    fn new() -> Self {
        Self {
            image: Image::default(),
            index: 1,
            controller: Controller::new(ControllerConfig::default(), 0),
            fences: 0,
            offline: 0,
            elected: 0,
        }
    }
    fn count(&mut self, records: &[MetaRecord]) {
        for r in records {
            match r {
                MetaRecord::FenceBroker { .. } => self.fences += 1,
                MetaRecord::PartitionChange(PartitionChange {
                    leader: Some(-1), ..
                }) => self.offline += 1,
                MetaRecord::PartitionChange(PartitionChange {
                    leader: Some(_), ..
                }) => self.elected += 1,
                _ => {}
            }
        }
    }
    fn run(&mut self, now: i64, req: Request) -> (Answer, u64) {
        let d = self.controller.handle(&self.image, now, req);
        self.count(&d.records);
        let first = commit(&mut self.image, &mut self.index, &d.records)
            .unwrap_or_else(|e| panic!("the controller proposed a refused record: {e}"));
        (d.answer, first)
    }
    fn tick(&mut self, now: i64) {
        let records = self.controller.tick(&self.image, now);
        self.count(&records);
        commit(&mut self.image, &mut self.index, &records).unwrap();
    }
    /// Registers and unfences a broker; returns its epoch.
    fn join(&mut self, now: i64, broker: i32) -> u64 {
        let (a, epoch) = self.run(now, register(broker));
        assert_eq!(a, Answer::Registered);
        let applied = self.image.applied;
        let (a, _) = self.run(now, heartbeat(broker, epoch, applied));
        assert!(
            matches!(a, Answer::Heartbeat { fenced: false, .. }),
            "{a:?}"
        );
        epoch
    }
}

fn register(broker: i32) -> Request {
    Request::Register {
        broker,
        incarnation: Uuid::new_v4(),
        endpoints: vec![Endpoint {
            listener: "PLAINTEXT".into(),
            host: format!("127.0.0.{broker}"),
            port: 9092,
        }],
        rack: None,
        raft: None,
    }
}

fn heartbeat(broker: i32, epoch: u64, applied: u64) -> Request {
    Request::Heartbeat {
        broker,
        epoch,
        applied,
        shutting_down: false,
    }
}

fn create(name: &str, partitions: i32, rf: i16) -> Request {
    Request::CreateTopic {
        name: name.into(),
        partitions,
        replication_factor: rf,
        configs: BTreeMap::new(),
        id: Uuid::new_v4(),
    }
}

#[test]
fn a_broker_registers_fenced_and_is_unfenced_once_caught_up() {
    let mut s = Sim::new();
    let (_, epoch) = s.run(0, register(1));
    assert!(s.image.brokers[&1].fenced);
    // Not caught up yet: still fenced.
    let (a, _) = s.run(10, heartbeat(1, epoch, epoch - 1));
    assert_eq!(
        a,
        Answer::Heartbeat {
            fenced: true,
            shutdown_ok: false
        }
    );
    let (a, _) = s.run(20, heartbeat(1, epoch, epoch));
    assert!(matches!(a, Answer::Heartbeat { fenced: false, .. }));
    assert_eq!(s.image.live_brokers(), [1]);
    // A heartbeat from an older registration is refused.
    let (_, newer) = s.run(30, register(1));
    let (a, _) = s.run(40, heartbeat(1, epoch, 100));
    assert!(matches!(
        a,
        Answer::Refused(MetaError::StaleBrokerEpoch { current, .. }) if current == newer
    ));
}

#[test]
fn twelve_partitions_spread_their_leaders_over_three_brokers() {
    let mut s = Sim::new();
    for b in 1..=3 {
        s.join(0, b);
    }
    let (a, _) = s.run(0, create("t", 12, 1));
    assert_eq!(a, Answer::Done);
    let mut led = BTreeMap::new();
    for p in &s.image.topic("t").unwrap().partitions {
        *led.entry(p.leader).or_insert(0) += 1;
        assert_eq!(p.replicas, [p.leader]);
    }
    assert_eq!(led.values().copied().collect::<Vec<_>>(), [4, 4, 4]);
    // Replicas of RF 3 are three different brokers, leaders still spread.
    s.run(0, create("r", 6, 3));
    let mut leaders = BTreeMap::new();
    for p in &s.image.topic("r").unwrap().partitions {
        let mut r = p.replicas.clone();
        r.sort_unstable();
        assert_eq!(r, [1, 2, 3]);
        *leaders.entry(p.leader).or_insert(0) += 1;
    }
    assert_eq!(leaders.len(), 3);
    // Refusals.
    let (a, _) = s.run(0, create("t", 1, 1));
    assert_eq!(a, Answer::Refused(MetaError::TopicExists("t".into())));
    let (a, _) = s.run(0, create("big", 1, 4));
    assert!(matches!(
        a,
        Answer::Refused(MetaError::InvalidReplicationFactor { .. })
    ));
    let (a, _) = s.run(0, create("none", 0, 1));
    assert!(matches!(
        a,
        Answer::Refused(MetaError::InvalidPartitions(_))
    ));
    // More partitions keep the replication factor.
    let (a, _) = s.run(
        0,
        Request::CreatePartitions {
            name: "r".into(),
            count: 9,
        },
    );
    assert_eq!(a, Answer::Done);
    assert_eq!(s.image.topic("r").unwrap().partitions.len(), 9);
    assert!(
        s.image
            .topic("r")
            .unwrap()
            .partitions
            .iter()
            .all(|p| p.replicas.len() == 3)
    );
    let (a, _) = s.run(0, Request::DeleteTopic { name: "t".into() });
    assert_eq!(a, Answer::Done);
    assert!(s.image.topic("t").is_none());
}

#[test]
fn a_silent_broker_is_fenced_and_its_partitions_fail_over_or_go_offline() {
    let mut s = Sim::new();
    let epochs: Vec<u64> = (1..=3).map(|b| s.join(0, b)).collect();
    s.run(0, create("one", 3, 1));
    s.run(0, create("three", 3, 3));
    let led_by_1 = s.image.led_by(1).len();
    assert!(led_by_1 >= 2);
    // Brokers 2 and 3 keep heartbeating; broker 1 is silent.
    let mut now = 0;
    while now < 12_000 {
        now += 1000;
        for b in [2, 3] {
            let applied = s.image.applied;
            s.run(now, heartbeat(b, epochs[b as usize - 1], applied));
        }
        s.tick(now);
    }
    assert!(s.image.brokers[&1].fenced);
    for t in s.image.topics.values() {
        for p in &t.partitions {
            assert_ne!(p.leader, 1);
            if p.replicas == [1] {
                assert_eq!(p.leader, -1, "RF 1 on the dead broker: offline");
                assert_eq!(p.isr, [1]);
            } else {
                assert!(p.leader == 2 || p.leader == 3);
                assert!(!p.isr.contains(&1), "{p:?}");
            }
        }
    }
    // Broker 1 restarts: a new registration, unfenced once caught up; its
    // offline partitions come back to it.
    let e1 = s.join(now, 1);
    assert!(e1 > epochs[0]);
    for t in s.image.topics.values() {
        for p in &t.partitions {
            assert!(p.leader != -1, "{} {p:?}", t.name);
        }
    }
}

#[test]
fn a_new_controller_fences_nobody_at_once_and_a_controlled_shutdown_moves_leaders() {
    let mut s = Sim::new();
    let e: Vec<u64> = (1..=2).map(|b| s.join(0, b)).collect();
    s.run(0, create("t", 4, 2));
    // A new controller at 100 s has heard from nobody yet.
    s.controller = Controller::new(ControllerConfig::default(), 100_000);
    s.tick(100_000);
    s.tick(108_999);
    assert!(s.image.live_brokers().len() == 2);
    s.tick(109_000);
    assert!(
        s.image.live_brokers().is_empty(),
        "silent since the takeover"
    );
    // Controlled shutdown of broker 1 after both rejoin.
    let e1 = s.join(110_000, 1);
    let e2 = s.join(110_000, 2);
    assert!(e1 > e[0] && e2 > e[1]);
    let applied = s.image.applied;
    let (a, _) = s.run(
        110_500,
        Request::Heartbeat {
            broker: 1,
            epoch: e1,
            applied,
            shutting_down: true,
        },
    );
    assert_eq!(
        a,
        Answer::Heartbeat {
            fenced: true,
            shutdown_ok: true
        }
    );
    assert!(s.image.led_by(1).is_empty());
    assert_eq!(s.image.led_by(2).len(), 4);
}

#[test]
fn producer_id_blocks_never_overlap() {
    let mut s = Sim::new();
    let e1 = s.join(0, 1);
    let e2 = s.join(0, 2);
    let mut firsts = Vec::new();
    for i in 0..10 {
        let (broker, epoch) = if i % 2 == 0 { (1, e1) } else { (2, e2) };
        match s.run(0, Request::AllocateProducerIds { broker, epoch }).0 {
            Answer::ProducerIds { first } => firsts.push(first),
            other => panic!("{other:?}"),
        }
    }
    let expected: Vec<i64> = (0..10).map(|i| i * PRODUCER_ID_BLOCK).collect();
    assert_eq!(firsts, expected);
    let (a, _) = s.run(
        0,
        Request::AllocateProducerIds {
            broker: 3,
            epoch: 1,
        },
    );
    assert_eq!(a, Answer::Refused(MetaError::UnknownBroker(3)));
}

/// xorshift64*: a small seeded generator for the simulation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The invariants after every step (M2-M5 of docs/design/cluster.md).
#[derive(Default)]
struct Checker {
    broker_epochs: BTreeMap<i32, u64>,
    leader_epochs: BTreeMap<(Uuid, usize), i32>,
    leader_of_epoch: BTreeMap<(Uuid, usize, i32), i32>,
    blocks: Vec<i64>,
}

impl Checker {
    fn check(&mut self, image: &Image) {
        for b in image.brokers.values() {
            let seen = self.broker_epochs.entry(b.id).or_insert(b.epoch);
            assert!(b.epoch >= *seen, "broker {} epoch went back", b.id);
            *seen = b.epoch;
        }
        for t in image.topics.values() {
            for (i, p) in t.partitions.iter().enumerate() {
                let seen = self
                    .leader_epochs
                    .entry((t.id, i))
                    .or_insert(p.leader_epoch);
                assert!(p.leader_epoch >= *seen, "leader epoch went back: {p:?}");
                *seen = p.leader_epoch;
                let leader = self
                    .leader_of_epoch
                    .entry((t.id, i, p.leader_epoch))
                    .or_insert(p.leader);
                assert_eq!(*leader, p.leader, "two leaders in epoch {}", p.leader_epoch);
                assert!(
                    p.leader == -1 || image.brokers.get(&p.leader).is_some_and(|b| !b.fenced),
                    "{} {i} led by fenced or unknown broker {}",
                    t.name,
                    p.leader
                );
                assert!(p.leader == -1 || p.isr.contains(&p.leader));
                assert!(p.isr.iter().all(|r| p.replicas.contains(r)));
                assert!(!p.isr.is_empty());
            }
        }
    }
    fn block(&mut self, first: i64) {
        assert!(!self.blocks.contains(&first), "block {first} given twice");
        assert!(
            first
                >= self
                    .blocks
                    .iter()
                    .max()
                    .map_or(0, |m| m + PRODUCER_ID_BLOCK)
        );
        self.blocks.push(first);
    }
}

#[test]
fn seeded_simulation_keeps_the_invariants_under_crashes_and_controller_changes() {
    let (mut fences, mut offline, mut elected) = (0, 0, 0);
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut s = Sim::new();
        let mut check = Checker::default();
        // Broker id -> (alive, epoch).
        let mut procs: BTreeMap<i32, (bool, Option<u64>)> =
            (1..=4).map(|b| (b, (false, None))).collect();
        let mut now = 0i64;
        let mut topics = 0;
        for _ in 0..400 {
            now += rng.below(1500) as i64;
            match rng.below(20) {
                0 => {
                    // A broker dies (kill -9): it stops talking.
                    let b = 1 + rng.below(4) as i32;
                    procs.get_mut(&b).unwrap().0 = false;
                }
                1 | 2 => {
                    // A dead broker starts again: a new registration.
                    let b = 1 + rng.below(4) as i32;
                    if !procs[&b].0 {
                        let (_, epoch) = s.run(now, register(b));
                        procs.insert(b, (true, Some(epoch)));
                    }
                }
                3 => {
                    let name = format!("t{topics}");
                    topics += 1;
                    let rf = 1 + rng.below(3) as i16;
                    let parts = 1 + rng.below(6) as i32;
                    s.run(now, create(&name, parts, rf));
                }
                4 if topics > 0 => {
                    let name = format!("t{}", rng.below(topics));
                    s.run(now, Request::DeleteTopic { name });
                }
                5 => {
                    // The controller moves to another node.
                    s.controller = Controller::new(ControllerConfig::default(), now);
                }
                6 => {
                    let b = 1 + rng.below(4) as i32;
                    if let (true, Some(epoch)) = procs[&b]
                        && let Answer::ProducerIds { first } = s
                            .run(now, Request::AllocateProducerIds { broker: b, epoch })
                            .0
                    {
                        check.block(first);
                    }
                }
                7 => {
                    // A controlled shutdown.
                    let b = 1 + rng.below(4) as i32;
                    if let (true, Some(epoch)) = procs[&b] {
                        let applied = s.image.applied;
                        s.run(
                            now,
                            Request::Heartbeat {
                                broker: b,
                                epoch,
                                applied,
                                shutting_down: true,
                            },
                        );
                        procs.get_mut(&b).unwrap().0 = false;
                    }
                }
                _ => {
                    // Live brokers heartbeat (some lagging behind).
                    for (&b, &(alive, epoch)) in &procs {
                        if let (true, Some(epoch)) = (alive, epoch) {
                            let lag = rng.below(3);
                            let applied = s.image.applied.saturating_sub(lag);
                            s.run(now, heartbeat(b, epoch, applied));
                        }
                    }
                    s.tick(now);
                }
            }
            check.check(&s.image);
        }
        // Settle: every live broker heartbeats for a while; every dead one
        // ends fenced; every partition with a live in-sync replica has a
        // leader.
        for _ in 0..15 {
            now += 1000;
            for (&b, &(alive, epoch)) in &procs {
                if let (true, Some(epoch)) = (alive, epoch) {
                    let applied = s.image.applied;
                    s.run(now, heartbeat(b, epoch, applied));
                }
            }
            s.tick(now);
            check.check(&s.image);
        }
        for (&b, &(alive, _)) in &procs {
            if let Some(info) = s.image.brokers.get(&b) {
                assert_eq!(info.fenced, !alive, "seed {seed}: broker {b}");
            }
        }
        for t in s.image.topics.values() {
            for p in &t.partitions {
                let any_live = p.isr.iter().any(|r| procs.get(r).is_some_and(|x| x.0));
                assert_eq!(p.leader != -1, any_live, "seed {seed}: {} {p:?}", t.name);
            }
        }
        fences += s.fences;
        offline += s.offline;
        elected += s.elected;
    }
    // The runs did exercise what they check.
    assert!(
        fences > 200 && offline > 100 && elected > 200,
        "{fences} {offline} {elected}"
    );
}

#[test]
fn a_one_node_data_directory_migrates_once() {
    let mut s = Sim::new();
    s.join(0, 1);
    let id = Uuid::new_v4();
    let mut configs = BTreeMap::new();
    configs.insert("cleanup.policy".to_owned(), "compact".to_owned());
    let migrate = Request::Migrate {
        broker: 1,
        topics: vec![("old".into(), id, 3, configs)],
        next_producer_id: 5000,
        cluster_id: "first".into(),
    };
    assert_eq!(s.run(0, migrate.clone()).0, Answer::Done);
    let t = s.image.topic("old").unwrap();
    assert_eq!(t.id, id, "the id is kept");
    assert_eq!(t.configs["cleanup.policy"], "compact");
    assert_eq!(t.partitions.len(), 3);
    assert!(
        t.partitions
            .iter()
            .all(|p| p.leader == 1 && p.replicas == [1])
    );
    assert!(s.image.migrated);
    assert_eq!(s.image.next_producer_id, 5000);
    assert_eq!(s.image.cluster_id.as_deref(), Some("first"));
    // Again, even from another node: nothing happens.
    let before = s.index;
    s.run(0, migrate);
    let (answer, _) = s.run(
        0,
        Request::Migrate {
            broker: 2,
            topics: Vec::new(),
            next_producer_id: 0,
            cluster_id: "second".into(),
        },
    );
    assert_eq!(answer, Answer::Done);
    assert_eq!(s.index, before);
    assert_eq!(s.image.cluster_id.as_deref(), Some("first"));
}

#[test]
fn a_repeated_registration_of_the_same_process_keeps_its_epoch() {
    let mut s = Sim::new();
    let r = register(1);
    let (_, epoch) = s.run(0, r.clone());
    let before = s.index;
    let (a, _) = s.run(5, r);
    assert_eq!(a, Answer::AlreadyRegistered { epoch });
    assert_eq!(s.index, before, "nothing written");
    // A new process (another incarnation) gets a new epoch.
    let (a, newer) = s.run(10, register(1));
    assert_eq!(a, Answer::Registered);
    assert!(newer > epoch);
}

#[test]
fn alter_partition_is_guarded_by_leader_partition_and_broker_epochs() {
    let mut s = Sim::new();
    let e1 = s.join(0, 1);
    let e2 = s.join(0, 2);
    let e3 = s.join(0, 3);
    let (a, _) = s.run(0, create("r", 1, 3));
    assert_eq!(a, Answer::Done);
    let t = s.image.topic("r").unwrap().clone();
    let p = t.partitions[0].clone();
    let leader = p.leader;
    let epochs = BTreeMap::from([(1, e1), (2, e2), (3, e3)]);
    let alter = |isr: Vec<i32>, leader_epoch: i32, partition_epoch: i32, broker: i32| {
        Request::AlterPartition {
            broker,
            epoch: epochs[&broker],
            topic: t.id,
            partition: 0,
            leader_epoch,
            partition_epoch,
            isr,
        }
    };
    let others: Vec<i32> = p
        .replicas
        .iter()
        .copied()
        .filter(|&r| r != leader)
        .collect();
    // The leader drops a follower: committed, the partition epoch moves.
    let (a, _) = s.run(
        1,
        alter(
            vec![leader, others[0]],
            p.leader_epoch,
            p.partition_epoch,
            leader,
        ),
    );
    assert_eq!(
        a,
        Answer::PartitionChanged {
            partition_epoch: p.partition_epoch + 1
        }
    );
    assert_eq!(
        s.image.topic("r").unwrap().partitions[0].isr,
        vec![leader, others[0]]
    );
    // The same proposal again, now stale: refused.
    let (a, _) = s.run(
        2,
        alter(vec![leader], p.leader_epoch, p.partition_epoch, leader),
    );
    assert!(
        matches!(a, Answer::Refused(MetaError::StalePartitionEpoch { .. })),
        "{a:?}"
    );
    // From a follower, or an old leader epoch: refused.
    let pe = p.partition_epoch + 1;
    let (a, _) = s.run(3, alter(vec![others[0]], p.leader_epoch, pe, others[0]));
    assert!(
        matches!(a, Answer::Refused(MetaError::NotLeader { .. })),
        "{a:?}"
    );
    let (a, _) = s.run(3, alter(vec![leader], p.leader_epoch - 1, pe, leader));
    assert!(
        matches!(a, Answer::Refused(MetaError::NotLeader { .. })),
        "{a:?}"
    );
    // An ISR without its leader, or with a stranger: refused.
    let (a, _) = s.run(3, alter(vec![others[0]], p.leader_epoch, pe, leader));
    assert!(
        matches!(a, Answer::Refused(MetaError::InvalidIsr(_))),
        "{a:?}"
    );
    let (a, _) = s.run(3, alter(vec![leader, 9], p.leader_epoch, pe, leader));
    assert!(
        matches!(a, Answer::Refused(MetaError::InvalidIsr(_))),
        "{a:?}"
    );
    // A fenced broker cannot join back.
    let dropped = others[1];
    let (a, _) = s.run(
        4,
        Request::Heartbeat {
            broker: dropped,
            epoch: epochs[&dropped],
            applied: s.image.applied,
            shutting_down: true,
        },
    );
    assert!(matches!(a, Answer::Heartbeat { fenced: true, .. }), "{a:?}");
    let pe = s.image.topic("r").unwrap().partitions[0].partition_epoch;
    let (a, _) = s.run(
        5,
        alter(vec![leader, others[0], dropped], p.leader_epoch, pe, leader),
    );
    assert!(
        matches!(a, Answer::Refused(MetaError::InvalidIsr(_))),
        "{a:?}"
    );
    // A stale broker epoch: refused.
    let (a, _) = s.run(
        6,
        Request::AlterPartition {
            broker: leader,
            epoch: epochs[&leader] + 1000,
            topic: t.id,
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: pe,
            isr: vec![leader],
        },
    );
    assert!(
        matches!(a, Answer::Refused(MetaError::StaleBrokerEpoch { .. })),
        "{a:?}"
    );
}

#[test]
fn preferred_leaders_come_back_at_the_imbalance_check() {
    let mut s = Sim::new();
    s.controller = Controller::new(
        ControllerConfig {
            leader_imbalance_check_interval_ms: 10_000,
            ..ControllerConfig::default()
        },
        0,
    );
    let e: Vec<u64> = (1..=3).map(|b| s.join(0, b)).collect();
    s.run(0, create("t", 6, 3));
    let of_t = |s: &Sim, f: fn(&crate::image::PartitionInfo) -> i32| -> Vec<i32> {
        s.image
            .topics
            .values()
            .flat_map(|t| t.partitions.iter().map(f))
            .collect()
    };
    let preferred = of_t(&s, |p| p.replicas[0]);
    let leaders = |s: &Sim| of_t(s, |p| p.leader);
    assert_eq!(leaders(&s), preferred);
    // Broker 1 shuts down: its two partitions move; it comes back and
    // catches up (the ISR takes it back, as its leaders would propose).
    let applied = s.image.applied;
    s.run(
        1000,
        Request::Heartbeat {
            broker: 1,
            epoch: e[0],
            applied,
            shutting_down: true,
        },
    );
    assert!(s.image.led_by(1).is_empty());
    let e1 = s.join(2000, 1);
    assert!(e1 > e[0]);
    let beat = |s: &mut Sim, now: i64| {
        for (b, epoch) in [(1, e1), (2, e[1]), (3, e[2])] {
            let applied = s.image.applied;
            s.run(now, heartbeat(b, epoch, applied));
        }
    };
    // At the first check it is out of the ISRs: it is not given them.
    beat(&mut s, 9000);
    s.tick(10_000);
    assert!(s.image.led_by(1).is_empty());
    let id = *s.image.topics.keys().next().unwrap();
    for i in 0..6 {
        let p = s.image.topics[&id].partitions[i].clone();
        if !p.isr.contains(&1) {
            let mut isr = p.isr.clone();
            isr.push(1);
            commit(
                &mut s.image,
                &mut s.index,
                &[MetaRecord::PartitionChange(PartitionChange {
                    topic: id,
                    partition: i as i32,
                    leader: None,
                    isr: Some(isr),
                    replicas: None,
                })],
            )
            .unwrap();
        }
    }
    // In sync again: it leads its preferred partitions at the next check,
    // not before.
    beat(&mut s, 18_000);
    s.tick(19_999);
    assert!(s.image.led_by(1).is_empty());
    s.tick(20_000);
    assert_eq!(leaders(&s), preferred);
    // Off: never.
    let mut s2 = Sim::new();
    s2.controller = Controller::new(
        ControllerConfig {
            auto_leader_rebalance: false,
            leader_imbalance_check_interval_ms: 10,
            ..ControllerConfig::default()
        },
        0,
    );
    for b in 1..=2 {
        s2.join(0, b);
    }
    s2.run(0, create("t", 2, 2));
    let id = *s2.image.topics.keys().next().unwrap();
    let second = s2.image.topics[&id].partitions[0].replicas[1];
    commit(
        &mut s2.image,
        &mut s2.index,
        &[MetaRecord::PartitionChange(PartitionChange {
            topic: id,
            partition: 0,
            leader: Some(second),
            isr: None,
            replicas: None,
        })],
    )
    .unwrap();
    assert!(s2.controller.tick(&s2.image, 100).is_empty());
}

#[test]
fn with_unclean_election_a_live_out_of_sync_replica_takes_an_offline_partition() {
    for unclean in [false, true] {
        let mut s = Sim::new();
        let e: Vec<u64> = (1..=2).map(|b| s.join(0, b)).collect();
        let mut req = create("u", 1, 2);
        if let Request::CreateTopic { configs, .. } = &mut req {
            configs.insert("unclean.leader.election.enable".into(), unclean.to_string());
        }
        s.run(0, req);
        let id = *s.image.topics.keys().next().unwrap();
        let leader = s.image.topics[&id].partitions[0].leader;
        let other = if leader == 1 { 2 } else { 1 };
        // The follower fell out of the ISR, then the leader died.
        commit(
            &mut s.image,
            &mut s.index,
            &[MetaRecord::PartitionChange(PartitionChange {
                topic: id,
                partition: 0,
                leader: None,
                isr: Some(vec![leader]),
                replicas: None,
            })],
        )
        .unwrap();
        let mut now = 0;
        while now < 12_000 {
            now += 1000;
            let applied = s.image.applied;
            s.run(now, heartbeat(other, e[other as usize - 1], applied));
            s.tick(now);
        }
        let p = &s.image.topics[&id].partitions[0];
        if unclean {
            assert_eq!((p.leader, p.isr.clone()), (other, vec![other]), "{p:?}");
        } else {
            assert_eq!((p.leader, p.isr.clone()), (-1, vec![leader]), "{p:?}");
        }
    }
}

fn credential(user: &str, mechanism: &str, key: u8) -> ScramCredential {
    ScramCredential {
        user: user.into(),
        mechanism: mechanism.into(),
        salt: vec![key; 8],
        iterations: 4096,
        stored_key: vec![key; 32],
        server_key: vec![key.wrapping_add(1); 32],
    }
}

#[test]
fn scram_credentials_are_set_replaced_removed_and_bootstrapped_once() {
    let mut s = Sim::new();
    s.join(0, 1);
    let alter = |upsertions, deletions, if_absent| Request::AlterUserScram {
        upsertions,
        deletions,
        if_absent,
    };
    let (a, _) = s.run(
        0,
        alter(
            vec![
                credential("alice", "SCRAM-SHA-256", 1),
                credential("alice", "SCRAM-SHA-512", 2),
            ],
            vec![],
            false,
        ),
    );
    assert_eq!(a, Answer::ScramAltered { missing: vec![] });
    assert_eq!(s.image.scram["alice"].len(), 2);
    // A bootstrap (if_absent) does not undo a later change ...
    s.run(
        0,
        alter(vec![credential("alice", "SCRAM-SHA-256", 9)], vec![], true),
    );
    assert_eq!(s.image.scram["alice"]["SCRAM-SHA-256"].salt, vec![1; 8]);
    // ... a change replaces.
    s.run(
        0,
        alter(vec![credential("alice", "SCRAM-SHA-256", 3)], vec![], false),
    );
    assert_eq!(s.image.scram["alice"]["SCRAM-SHA-256"].salt, vec![3; 8]);
    // Deletions: what exists goes; what does not is reported.
    let (a, _) = s.run(
        0,
        alter(
            vec![],
            vec![
                ("alice".into(), "SCRAM-SHA-256".into()),
                ("bob".into(), "SCRAM-SHA-256".into()),
            ],
            false,
        ),
    );
    assert_eq!(
        a,
        Answer::ScramAltered {
            missing: vec![("bob".into(), "SCRAM-SHA-256".into())]
        }
    );
    assert_eq!(
        s.image.scram["alice"].keys().collect::<Vec<_>>(),
        ["SCRAM-SHA-512"]
    );
    s.run(
        0,
        alter(
            vec![],
            vec![("alice".into(), "SCRAM-SHA-512".into())],
            false,
        ),
    );
    assert!(
        !s.image.scram.contains_key("alice"),
        "a user with none is gone"
    );
}

#[test]
fn acls_are_created_once_and_deleted_by_filter_on_the_image_decided_on() {
    use crate::acl::{AclBinding, AclFilter, operation, pattern, permission, resource};
    let mut s = Sim::new();
    s.join(0, 1);
    let b = |name: &str, op: i8| AclBinding {
        resource_type: resource::TOPIC,
        resource_name: name.into(),
        pattern_type: pattern::LITERAL,
        principal: "User:alice".into(),
        host: "*".into(),
        operation: op,
        permission: permission::ALLOW,
    };
    let before = s.image.applied;
    let (a, _) = s.run(
        0,
        Request::CreateAcls {
            bindings: vec![
                b("t1", operation::READ),
                b("t1", operation::READ),
                b("t2", operation::WRITE),
            ],
        },
    );
    assert_eq!(a, Answer::Done);
    assert_eq!(
        s.image.applied - before,
        2,
        "a binding named twice is one record"
    );
    assert_eq!(s.image.acls.len(), 2);
    // Creating what exists writes nothing.
    let before = s.image.applied;
    s.run(
        0,
        Request::CreateAcls {
            bindings: vec![b("t2", operation::WRITE)],
        },
    );
    assert_eq!(s.image.applied, before);
    let by_name = |name: &str| AclFilter {
        resource_type: resource::ANY,
        resource_name: Some(name.into()),
        pattern_type: pattern::ANY,
        principal: None,
        host: None,
        operation: operation::ANY,
        permission: permission::ANY,
    };
    let (a, _) = s.run(
        0,
        Request::DeleteAcls {
            filters: vec![by_name("t1"), by_name("t1"), by_name("none")],
        },
    );
    assert_eq!(
        a,
        Answer::AclsDeleted {
            matched: vec![
                vec![b("t1", operation::READ)],
                vec![b("t1", operation::READ)],
                vec![]
            ]
        }
    );
    assert_eq!(
        s.image.acls.iter().cloned().collect::<Vec<_>>(),
        vec![b("t2", operation::WRITE)]
    );
}

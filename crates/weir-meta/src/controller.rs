//! The active controller's decisions, as a pure state machine.
//!
//! The controller reads the [`Image`] (the metadata as committed and
//! applied) and its own in-memory liveness table (when each broker last
//! heartbeated), takes one [`Request`] or a [`Controller::tick`] at a time
//! with the time passed in, and answers with the records to propose and
//! the [`Answer`] to give once they are committed. The node around it
//! proposes the records, waits for them to be applied, then handles the
//! next input: decisions are always made against an image that includes
//! every earlier decision.
//!
//! What it decides, as Kafka's KRaft controller does:
//! * registration: a broker registers fenced, with its epoch the log index
//!   of its registration; a heartbeat from a broker whose applied metadata
//!   reached its registration unfences it;
//! * liveness: a broker with no heartbeat for `broker.session.timeout.ms`
//!   is fenced; a new controller starts every broker's timer at its own
//!   start, so a controller change fences nobody;
//! * leadership: a fenced broker's partitions get the first other unfenced
//!   in-sync replica as leader (leader epoch + 1), or no leader (-1) when
//!   none is left; an unfenced broker takes back the partitions that have
//!   no leader and hold it in their ISR;
//! * topics: replicas placed round-robin over the unfenced brokers from a
//!   rotating start, so leaders spread evenly;
//! * producer ids: blocks of 1000, never overlapping.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::image::Image;
use crate::record::{
    ConfigResource, Endpoint, MetaRecord, PartitionChange, PartitionRecord, ScramCredential,
};

/// Producer ids per block.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// Controller settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerConfig {
    /// `broker.session.timeout.ms`.
    pub session_timeout_ms: i64,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `num.partitions`.
    pub default_partitions: i32,
    /// `auto.leader.rebalance.enable`: preferred leaders come back.
    pub auto_leader_rebalance: bool,
    /// `leader.imbalance.check.interval.seconds`, in ms.
    pub leader_imbalance_check_interval_ms: i64,
    /// `leader.imbalance.per.broker.percentage`: a broker's preferred
    /// partitions led elsewhere, above which they are given back.
    pub leader_imbalance_per_broker_percentage: i64,
    /// `unclean.leader.election.enable` for topics that do not set it.
    pub unclean_leader_election: bool,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            session_timeout_ms: 9_000,
            default_replication_factor: 1,
            default_partitions: 1,
            auto_leader_rebalance: true,
            leader_imbalance_check_interval_ms: 300_000,
            leader_imbalance_per_broker_percentage: 10,
            unclean_leader_election: false,
        }
    }
}

/// An input to the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A broker process starting (BrokerRegistration).
    Register {
        /// Broker id.
        broker: i32,
        /// Random per process start.
        incarnation: Uuid,
        /// Its listeners.
        endpoints: Vec<Endpoint>,
        /// `broker.rack`.
        rack: Option<String>,
        /// For a broker that is not a voter: where its metadata node
        /// listens, so the controller adds it to the quorum as a learner
        /// (it then receives the metadata log).
        #[serde(default)]
        raft: Option<String>,
    },
    /// A broker's heartbeat (BrokerHeartbeat).
    Heartbeat {
        /// Broker id.
        broker: i32,
        /// Its epoch.
        epoch: u64,
        /// The metadata index it applied.
        applied: u64,
        /// It is shutting down (controlled shutdown).
        shutting_down: bool,
    },
    /// CreateTopics, one topic.
    CreateTopic {
        /// Name (validated by the broker that received it).
        name: String,
        /// Partitions (-1: `num.partitions`).
        partitions: i32,
        /// Replication factor (-1: `default.replication.factor`).
        replication_factor: i16,
        /// Config overrides (validated by the broker).
        configs: BTreeMap<String, String>,
        /// Its id (given, so a retried request is recognisable; and so
        /// this machine stays deterministic).
        id: Uuid,
    },
    /// DeleteTopics, one topic.
    DeleteTopic {
        /// Name.
        name: String,
    },
    /// CreatePartitions: grow a topic to `count` partitions.
    CreatePartitions {
        /// Name.
        name: String,
        /// The new total.
        count: i32,
    },
    /// AlterConfigs: set (`Some`) or remove (`None`) configs.
    AlterConfigs {
        /// What they configure.
        resource: ConfigResource,
        /// The changes.
        changes: Vec<(String, Option<String>)>,
    },
    /// The first start of a data directory written by the one-node
    /// version: its topics become metadata, led by that node.
    Migrate {
        /// The node that held them.
        broker: i32,
        /// (name, id, partitions, config overrides).
        topics: Vec<(String, Uuid, i32, BTreeMap<String, String>)>,
        /// The first producer id not yet used there.
        next_producer_id: i64,
        /// Its `meta.properties` cluster id: the cluster's, if it has none.
        cluster_id: String,
    },
    /// A partition leader changes its ISR (Kafka's AlterPartition).
    AlterPartition {
        /// The leader's broker id.
        broker: i32,
        /// Its broker epoch (KIP-903).
        epoch: u64,
        /// The topic's id.
        topic: Uuid,
        /// Partition index.
        partition: i32,
        /// The leader epoch it leads in.
        leader_epoch: i32,
        /// The partition epoch it saw.
        partition_epoch: i32,
        /// The new ISR.
        isr: Vec<i32>,
    },
    /// A broker needs producer ids (AllocateProducerIds).
    AllocateProducerIds {
        /// Broker id.
        broker: i32,
        /// Its epoch.
        epoch: u64,
    },
    /// AlterUserScramCredentials (validated by the broker that received
    /// it): credentials to set and (user, mechanism) pairs to remove.
    AlterUserScram {
        /// Set (replacing the same user and mechanism).
        upsertions: Vec<ScramCredential>,
        /// Removed.
        deletions: Vec<(String, String)>,
        /// Set only the credentials of users without one of that
        /// mechanism (the first admin of a bootstrap file, which must not
        /// undo a later password change).
        if_absent: bool,
    },
    /// CreateAcls (validated by the broker): bindings to add; those
    /// already present are left as they are.
    CreateAcls {
        /// The bindings.
        bindings: Vec<crate::acl::AclBinding>,
    },
    /// DeleteAcls: every binding some filter matches on the image the
    /// controller decides on is removed.
    DeleteAcls {
        /// The filters, in request order.
        filters: Vec<crate::acl::AclFilter>,
    },
}

/// Why a request was refused, mapped to Kafka's error codes by the broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MetaError {
    /// TOPIC_ALREADY_EXISTS.
    #[error("topic {0} exists already")]
    TopicExists(String),
    /// UNKNOWN_TOPIC_OR_PARTITION.
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    /// INVALID_REPLICATION_FACTOR.
    #[error("replication factor {asked} is larger than the {live} available brokers")]
    InvalidReplicationFactor {
        /// Asked for.
        asked: i16,
        /// Unfenced brokers.
        live: usize,
    },
    /// INVALID_PARTITIONS.
    #[error("{0}")]
    InvalidPartitions(String),
    /// STALE_BROKER_EPOCH.
    #[error("broker {broker} epoch {given} is stale (current {current})")]
    StaleBrokerEpoch {
        /// Broker id.
        broker: i32,
        /// Given.
        given: u64,
        /// Current.
        current: u64,
    },
    /// BROKER_ID_NOT_REGISTERED.
    #[error("broker {0} is not registered")]
    UnknownBroker(i32),
    /// UNKNOWN_TOPIC_ID / UNKNOWN_TOPIC_OR_PARTITION.
    #[error("partition {1} of topic {0} does not exist")]
    UnknownPartition(Uuid, i32),
    /// FENCED_LEADER_EPOCH / NOT_LEADER_OR_FOLLOWER: the sender does not
    /// lead the partition in that epoch.
    #[error("broker {broker} does not lead in epoch {given} (leader {leader}, epoch {current})")]
    NotLeader {
        /// The sender.
        broker: i32,
        /// Its epoch.
        given: i32,
        /// The leader.
        leader: i32,
        /// The current leader epoch.
        current: i32,
    },
    /// INVALID_UPDATE_VERSION: the partition changed since the sender saw it.
    #[error("partition epoch {given} is not the current {current}")]
    StalePartitionEpoch {
        /// Given.
        given: i32,
        /// Current.
        current: i32,
    },
    /// INELIGIBLE_REPLICA / INVALID_REQUEST: the new ISR is not possible.
    #[error("{0}")]
    InvalidIsr(String),
}

/// What a request is answered with once its records are applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// Registered: the epoch is the log index of the first record.
    Registered,
    /// The same process registered before (its answer was lost): its
    /// registration stands, with this epoch.
    AlreadyRegistered {
        /// The broker epoch.
        epoch: u64,
    },
    /// A heartbeat: whether the broker is (still) fenced afterwards, and
    /// whether it may finish shutting down.
    Heartbeat {
        /// Fenced after the records apply.
        fenced: bool,
        /// A controlled shutdown is complete.
        shutdown_ok: bool,
    },
    /// Done (topic created, deleted, configs set, ...).
    Done,
    /// An AlterPartition committed: the partition's new epoch.
    PartitionChanged {
        /// The partition epoch after the change.
        partition_epoch: i32,
    },
    /// Producer ids `[first, first + PRODUCER_ID_BLOCK)`.
    ProducerIds {
        /// First id of the block.
        first: i64,
    },
    /// Refused; no records.
    Refused(MetaError),
    /// AlterUserScram done, but these (user, mechanism) deletions named no
    /// credential (RESOURCE_NOT_FOUND for those users).
    ScramAltered {
        /// Deletions that found nothing.
        missing: Vec<(String, String)>,
    },
    /// DeleteAcls done: for each filter, the bindings it matched (and
    /// that are now gone).
    AclsDeleted {
        /// Per filter, in request order.
        matched: Vec<Vec<crate::acl::AclBinding>>,
    },
}

/// A decision: records to propose, then the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Records to commit, in order.
    pub records: Vec<MetaRecord>,
    /// The answer once they are applied.
    pub answer: Answer,
}

impl Decision {
    fn refuse(e: MetaError) -> Self {
        Self {
            records: Vec::new(),
            answer: Answer::Refused(e),
        }
    }
}

/// The controller's own state: liveness and the placement cursor.
#[derive(Debug, Clone)]
pub struct Controller {
    config: ControllerConfig,
    /// Last heartbeat (ms) per broker id, as seen by this controller.
    last_heartbeat: BTreeMap<i32, i64>,
    /// Where the next topic's first replica goes.
    next_start: usize,
    /// When this controller took over.
    started_ms: i64,
    /// When preferred leaders were last checked.
    rebalanced_ms: i64,
}

impl Controller {
    /// A controller taking over at `now_ms`.
    pub fn new(config: ControllerConfig, now_ms: i64) -> Self {
        Self {
            config,
            last_heartbeat: BTreeMap::new(),
            next_start: 0,
            started_ms: now_ms,
            rebalanced_ms: now_ms,
        }
    }

    fn check_epoch(image: &Image, broker: i32, epoch: u64) -> Result<(), MetaError> {
        let b = image
            .brokers
            .get(&broker)
            .ok_or(MetaError::UnknownBroker(broker))?;
        if b.epoch != epoch {
            return Err(MetaError::StaleBrokerEpoch {
                broker,
                given: epoch,
                current: b.epoch,
            });
        }
        Ok(())
    }

    /// Handles one request against `image` at `now_ms`.
    pub fn handle(&mut self, image: &Image, now_ms: i64, request: Request) -> Decision {
        match request {
            Request::Register {
                broker,
                incarnation,
                endpoints,
                rack,
                ..
            } => {
                self.last_heartbeat.insert(broker, now_ms);
                if let Some(b) = image.brokers.get(&broker)
                    && b.incarnation == incarnation
                {
                    return Decision {
                        records: Vec::new(),
                        answer: Answer::AlreadyRegistered { epoch: b.epoch },
                    };
                }
                // A new registration replaces the old one: whatever the old
                // epoch led is re-elected when it is fenced (it is: every
                // registration starts fenced).
                let mut records = vec![MetaRecord::RegisterBroker {
                    broker,
                    incarnation,
                    endpoints,
                    rack,
                }];
                records.extend(self.leaders_away_from(image, broker));
                Decision {
                    records,
                    answer: Answer::Registered,
                }
            }
            Request::Heartbeat {
                broker,
                epoch,
                applied,
                shutting_down,
            } => {
                if let Err(e) = Self::check_epoch(image, broker, epoch) {
                    return Decision::refuse(e);
                }
                self.last_heartbeat.insert(broker, now_ms);
                let fenced = image.brokers[&broker].fenced;
                if shutting_down {
                    let mut records = self.leaders_away_from(image, broker);
                    if !fenced {
                        records.insert(0, MetaRecord::FenceBroker { broker, epoch });
                    }
                    return Decision {
                        records,
                        answer: Answer::Heartbeat {
                            fenced: true,
                            shutdown_ok: true,
                        },
                    };
                }
                if fenced && applied >= epoch {
                    let mut records = vec![MetaRecord::UnfenceBroker { broker, epoch }];
                    records.extend(self.leaders_back_to(image, broker));
                    return Decision {
                        records,
                        answer: Answer::Heartbeat {
                            fenced: false,
                            shutdown_ok: false,
                        },
                    };
                }
                Decision {
                    records: Vec::new(),
                    answer: Answer::Heartbeat {
                        fenced,
                        shutdown_ok: false,
                    },
                }
            }
            Request::CreateTopic {
                name,
                partitions,
                replication_factor,
                configs,
                id,
            } => self.create_topic(image, name, partitions, replication_factor, configs, id),
            Request::DeleteTopic { name } => match image.names.get(&name) {
                Some(id) => Decision {
                    records: vec![MetaRecord::RemoveTopic { id: *id }],
                    answer: Answer::Done,
                },
                None => Decision::refuse(MetaError::UnknownTopic(name)),
            },
            Request::CreatePartitions { name, count } => {
                let Some(t) = image.topic(&name) else {
                    return Decision::refuse(MetaError::UnknownTopic(name));
                };
                let have = t.partitions.len() as i32;
                if count <= have {
                    return Decision::refuse(MetaError::InvalidPartitions(format!(
                        "topic {name} has {have} partitions; the new count must be larger, not {count}"
                    )));
                }
                let rf = t.partitions.first().map_or(1, |p| p.replicas.len()) as i16;
                match self.place(image, have, count - have, rf) {
                    Ok(placed) => Decision {
                        records: placed
                            .into_iter()
                            .map(|(partition, replicas)| {
                                partition_record(t.id, partition, replicas)
                            })
                            .collect(),
                        answer: Answer::Done,
                    },
                    Err(e) => Decision::refuse(e),
                }
            }
            Request::AlterConfigs { resource, changes } => {
                if let ConfigResource::Topic(name) = &resource
                    && image.topic(name).is_none()
                {
                    return Decision::refuse(MetaError::UnknownTopic(name.clone()));
                }
                Decision {
                    records: changes
                        .into_iter()
                        .map(|(name, value)| MetaRecord::Config {
                            resource: resource.clone(),
                            name,
                            value,
                        })
                        .collect(),
                    answer: Answer::Done,
                }
            }
            Request::AlterUserScram {
                upsertions,
                deletions,
                if_absent,
            } => {
                let has = |user: &str, mechanism: &str| {
                    image
                        .scram
                        .get(user)
                        .is_some_and(|m| m.contains_key(mechanism))
                };
                let mut records = Vec::new();
                let mut missing = Vec::new();
                for (user, mechanism) in deletions {
                    if has(&user, &mechanism) {
                        records.push(MetaRecord::RemoveUserScram { user, mechanism });
                    } else {
                        missing.push((user, mechanism));
                    }
                }
                records.extend(
                    upsertions
                        .into_iter()
                        .filter(|c| !if_absent || !has(&c.user, &c.mechanism))
                        .map(MetaRecord::UserScram),
                );
                Decision {
                    records,
                    answer: Answer::ScramAltered { missing },
                }
            }
            Request::CreateAcls { bindings } => {
                let mut seen = std::collections::BTreeSet::new();
                Decision {
                    records: bindings
                        .into_iter()
                        .filter(|b| !image.acls.contains(b) && seen.insert(b.clone()))
                        .map(MetaRecord::Acl)
                        .collect(),
                    answer: Answer::Done,
                }
            }
            Request::DeleteAcls { filters } => {
                let matched: Vec<Vec<_>> = filters
                    .iter()
                    .map(|f| {
                        image
                            .acls
                            .iter()
                            .filter(|b| f.matches(b))
                            .cloned()
                            .collect()
                    })
                    .collect();
                let gone: std::collections::BTreeSet<_> = matched.iter().flatten().collect();
                Decision {
                    records: gone
                        .into_iter()
                        .map(|b| MetaRecord::RemoveAcl(b.clone()))
                        .collect(),
                    answer: Answer::AclsDeleted { matched },
                }
            }
            Request::Migrate {
                broker,
                topics,
                next_producer_id,
                cluster_id,
            } => {
                let mut records = Vec::new();
                if image.cluster_id.is_none() {
                    records.push(MetaRecord::ClusterId { id: cluster_id });
                }
                if image.migrated || !image.topics.is_empty() {
                    return Decision {
                        records,
                        answer: Answer::Done,
                    };
                }
                for (name, id, partitions, configs) in topics {
                    let placed = (0..partitions).map(|p| (p, vec![broker])).collect();
                    records.extend(topic_records(name, id, configs, placed));
                }
                if next_producer_id > image.next_producer_id
                    && let Some(b) = image.brokers.get(&broker)
                {
                    records.push(MetaRecord::ProducerIds {
                        broker,
                        epoch: b.epoch,
                        next: next_producer_id,
                    });
                }
                records.push(MetaRecord::Migrated);
                Decision {
                    records,
                    answer: Answer::Done,
                }
            }
            Request::AlterPartition {
                broker,
                epoch,
                topic,
                partition,
                leader_epoch,
                partition_epoch,
                isr,
            } => {
                if let Err(e) = Self::check_epoch(image, broker, epoch) {
                    return Decision::refuse(e);
                }
                let Some(p) = image.topics.get(&topic).and_then(|t| {
                    usize::try_from(partition)
                        .ok()
                        .and_then(|i| t.partitions.get(i))
                }) else {
                    return Decision::refuse(MetaError::UnknownPartition(topic, partition));
                };
                if p.leader != broker || p.leader_epoch != leader_epoch {
                    return Decision::refuse(MetaError::NotLeader {
                        broker,
                        given: leader_epoch,
                        leader: p.leader,
                        current: p.leader_epoch,
                    });
                }
                if p.partition_epoch != partition_epoch {
                    return Decision::refuse(MetaError::StalePartitionEpoch {
                        given: partition_epoch,
                        current: p.partition_epoch,
                    });
                }
                let mut sorted = isr.clone();
                sorted.sort_unstable();
                sorted.dedup();
                if sorted.len() != isr.len() || !isr.contains(&broker) {
                    return Decision::refuse(MetaError::InvalidIsr(format!(
                        "an ISR holds its leader and each replica once: {isr:?}"
                    )));
                }
                if let Some(r) = isr.iter().find(|r| !p.replicas.contains(r)) {
                    return Decision::refuse(MetaError::InvalidIsr(format!(
                        "broker {r} is not a replica of the partition"
                    )));
                }
                // A broker joining must be registered and unfenced (KIP-903:
                // a fenced or restarted one may have lost its tail).
                if let Some(r) = isr
                    .iter()
                    .find(|r| !p.isr.contains(r) && image.brokers.get(r).is_none_or(|b| b.fenced))
                {
                    return Decision::refuse(MetaError::InvalidIsr(format!(
                        "broker {r} is fenced and cannot join the ISR"
                    )));
                }
                if isr == p.isr {
                    return Decision {
                        records: Vec::new(),
                        answer: Answer::PartitionChanged {
                            partition_epoch: p.partition_epoch,
                        },
                    };
                }
                Decision {
                    records: vec![MetaRecord::PartitionChange(PartitionChange {
                        topic,
                        partition,
                        leader: None,
                        isr: Some(isr),
                        replicas: None,
                    })],
                    answer: Answer::PartitionChanged {
                        partition_epoch: p.partition_epoch + 1,
                    },
                }
            }
            Request::AllocateProducerIds { broker, epoch } => {
                if let Err(e) = Self::check_epoch(image, broker, epoch) {
                    return Decision::refuse(e);
                }
                let first = image.next_producer_id;
                Decision {
                    records: vec![MetaRecord::ProducerIds {
                        broker,
                        epoch,
                        next: first + PRODUCER_ID_BLOCK,
                    }],
                    answer: Answer::ProducerIds { first },
                }
            }
        }
    }

    fn create_topic(
        &mut self,
        image: &Image,
        name: String,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        id: Uuid,
    ) -> Decision {
        if let Some(existing) = image.names.get(&name) {
            // The same request again (its answer was lost in a controller
            // change) is answered as done.
            if *existing == id {
                return Decision {
                    records: Vec::new(),
                    answer: Answer::Done,
                };
            }
            return Decision::refuse(MetaError::TopicExists(name));
        }
        let partitions = if partitions == -1 {
            self.config.default_partitions
        } else {
            partitions
        };
        if partitions < 1 {
            return Decision::refuse(MetaError::InvalidPartitions(format!(
                "the number of partitions must be at least 1, not {partitions}"
            )));
        }
        let rf = if replication_factor == -1 {
            self.config.default_replication_factor
        } else {
            replication_factor
        };
        let placed = match self.place(image, 0, partitions, rf) {
            Ok(p) => p,
            Err(e) => return Decision::refuse(e),
        };
        Decision {
            records: topic_records(name, id, configs, placed),
            answer: Answer::Done,
        }
    }

    /// Replicas for partitions `first..first + count`: round-robin over
    /// the unfenced brokers sorted by id, from a rotating start.
    fn place(
        &mut self,
        image: &Image,
        first: i32,
        count: i32,
        rf: i16,
    ) -> Result<Vec<(i32, Vec<i32>)>, MetaError> {
        let live = image.live_brokers();
        if rf < 1 || rf as usize > live.len() {
            return Err(MetaError::InvalidReplicationFactor {
                asked: rf,
                live: live.len(),
            });
        }
        let n = live.len();
        let start = self.next_start % n;
        self.next_start = self.next_start.wrapping_add(1);
        Ok((0..count)
            .map(|i| {
                let lead = (start + i as usize) % n;
                let replicas = (0..rf as usize).map(|r| live[(lead + r) % n]).collect();
                (first + i, replicas)
            })
            .collect())
    }

    /// Time passes: brokers silent for `broker.session.timeout.ms` are
    /// fenced and lose their leaderships; offline partitions whose topic
    /// allows unclean election get a live replica; every
    /// `leader.imbalance.check.interval.seconds`, preferred leaders come
    /// back.
    pub fn tick(&mut self, image: &Image, now_ms: i64) -> Vec<MetaRecord> {
        let fenced = self.fence_silent(image, now_ms);
        if !fenced.is_empty() {
            return fenced;
        }
        let unclean = self.unclean_elections(image);
        if !unclean.is_empty() {
            return unclean;
        }
        if self.config.auto_leader_rebalance
            && now_ms.saturating_sub(self.rebalanced_ms)
                >= self.config.leader_imbalance_check_interval_ms
        {
            self.rebalanced_ms = now_ms;
            return self.preferred_leaders(image);
        }
        Vec::new()
    }

    /// Whether `topic` may elect a replica outside its ISR.
    fn unclean_allowed(&self, image: &Image, topic: Uuid) -> bool {
        image
            .topics
            .get(&topic)
            .and_then(|t| t.configs.get("unclean.leader.election.enable"))
            .map_or(self.config.unclean_leader_election, |v| {
                v.trim().eq_ignore_ascii_case("true")
            })
    }

    /// Offline partitions of topics allowing unclean election that have a
    /// live replica: it leads, alone in the ISR (what only it had is all
    /// there is; data the old ISR had may be lost, by configuration).
    fn unclean_elections(&self, image: &Image) -> Vec<MetaRecord> {
        let mut out = Vec::new();
        for t in image.topics.values() {
            if !self.unclean_allowed(image, t.id) {
                continue;
            }
            for (i, p) in t.partitions.iter().enumerate() {
                if p.leader != -1 {
                    continue;
                }
                let live = p
                    .replicas
                    .iter()
                    .copied()
                    .find(|r| image.brokers.get(r).is_some_and(|b| !b.fenced));
                if let Some(r) = live {
                    out.push(MetaRecord::PartitionChange(PartitionChange {
                        topic: t.id,
                        partition: i as i32,
                        leader: Some(r),
                        isr: Some(vec![r]),
                        replicas: None,
                    }));
                }
            }
        }
        out
    }

    /// Preferred leader election (Kafka's auto leader rebalance): for each
    /// broker whose share of preferred partitions (it is their first
    /// replica) led elsewhere is above
    /// `leader.imbalance.per.broker.percentage`, those it can take (it is
    /// live and in their ISR) get it back as leader.
    fn preferred_leaders(&self, image: &Image) -> Vec<MetaRecord> {
        let mut preferred: BTreeMap<i32, (usize, Vec<(Uuid, i32)>)> = BTreeMap::new();
        for t in image.topics.values() {
            for (i, p) in t.partitions.iter().enumerate() {
                let Some(&first) = p.replicas.first() else {
                    continue;
                };
                if p.replicas.len() < 2 {
                    continue;
                }
                let entry = preferred.entry(first).or_default();
                entry.0 += 1;
                let live = image.brokers.get(&first).is_some_and(|b| !b.fenced);
                if p.leader != first && live && p.isr.contains(&first) {
                    entry.1.push((t.id, i as i32));
                }
            }
        }
        let mut out = Vec::new();
        for (broker, (total, movable)) in preferred {
            let imbalance = (movable.len() * 100 / total.max(1)) as i64;
            if movable.is_empty() || imbalance <= self.config.leader_imbalance_per_broker_percentage
            {
                continue;
            }
            for (topic, partition) in movable {
                out.push(MetaRecord::PartitionChange(PartitionChange {
                    topic,
                    partition,
                    leader: Some(broker),
                    isr: None,
                    replicas: None,
                }));
            }
        }
        out
    }

    /// Brokers silent for `broker.session.timeout.ms`: fenced, their
    /// leaderships moved.
    fn fence_silent(&mut self, image: &Image, now_ms: i64) -> Vec<MetaRecord> {
        let expired: Vec<(i32, u64)> = image
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .filter(|b| {
                let last = *self.last_heartbeat.entry(b.id).or_insert(self.started_ms);
                now_ms.saturating_sub(last) >= self.config.session_timeout_ms
            })
            .map(|b| (b.id, b.epoch))
            .collect();
        if expired.is_empty() {
            return Vec::new();
        }
        // Each fencing is decided on the image the previous ones left, so
        // two brokers fenced together never hand a partition to each other.
        let mut scratch = image.clone();
        let mut records = Vec::new();
        for (broker, epoch) in expired {
            let mut these = vec![MetaRecord::FenceBroker { broker, epoch }];
            these.extend(self.leaders_away_from(&scratch, broker));
            for r in &these {
                let _ = scratch.apply(scratch.applied + 1, r);
            }
            records.extend(these);
        }
        records
    }

    /// The partition changes that take `broker` out: it leaves every ISR
    /// that has other members (the last member stays: it holds all the
    /// data, and without unclean election only it may lead again), and
    /// the partitions it led get the first other unfenced ISR member as
    /// leader, or none.
    fn leaders_away_from(&self, image: &Image, broker: i32) -> Vec<MetaRecord> {
        let mut out = Vec::new();
        for t in image.topics.values() {
            for (i, p) in t.partitions.iter().enumerate() {
                if p.leader != broker && !p.isr.contains(&broker) {
                    continue;
                }
                let isr: Vec<i32> = if p.isr.len() > 1 {
                    p.isr.iter().copied().filter(|&r| r != broker).collect()
                } else {
                    p.isr.clone()
                };
                let live = |r: i32| r != broker && image.brokers.get(&r).is_some_and(|b| !b.fenced);
                let mut isr = isr;
                let leader = if p.leader == broker {
                    match isr.iter().copied().find(|&r| live(r)) {
                        Some(r) => r,
                        // No other in-sync replica: offline, unless the
                        // topic allows an unclean election.
                        None => match p.replicas.iter().copied().find(|&r| live(r)) {
                            Some(r) if self.unclean_allowed(image, t.id) => {
                                isr = vec![r];
                                r
                            }
                            _ => -1,
                        },
                    }
                } else {
                    p.leader
                };
                if leader == p.leader && isr == p.isr {
                    continue;
                }
                out.push(MetaRecord::PartitionChange(PartitionChange {
                    topic: t.id,
                    partition: i as i32,
                    leader: (leader != p.leader).then_some(leader),
                    isr: (isr != p.isr).then_some(isr),
                    replicas: None,
                }));
            }
        }
        out
    }

    /// The partition changes that give `broker` the partitions with no
    /// leader whose ISR holds it.
    fn leaders_back_to(&self, image: &Image, broker: i32) -> Vec<MetaRecord> {
        let mut out = Vec::new();
        for t in image.topics.values() {
            for (i, p) in t.partitions.iter().enumerate() {
                if p.leader == -1 && p.isr.contains(&broker) {
                    out.push(MetaRecord::PartitionChange(PartitionChange {
                        topic: t.id,
                        partition: i as i32,
                        leader: Some(broker),
                        isr: None,
                        replicas: None,
                    }));
                }
            }
        }
        out
    }
}

/// A new topic's records: the topic, its configs, its partitions.
fn topic_records(
    name: String,
    id: Uuid,
    configs: BTreeMap<String, String>,
    placed: Vec<(i32, Vec<i32>)>,
) -> Vec<MetaRecord> {
    let mut records = vec![MetaRecord::Topic {
        name: name.clone(),
        id,
    }];
    records.extend(configs.into_iter().map(|(k, v)| MetaRecord::Config {
        resource: ConfigResource::Topic(name.clone()),
        name: k,
        value: Some(v),
    }));
    records.extend(
        placed
            .into_iter()
            .map(|(partition, replicas)| partition_record(id, partition, replicas)),
    );
    records
}

fn partition_record(topic: Uuid, partition: i32, replicas: Vec<i32>) -> MetaRecord {
    MetaRecord::Partition(PartitionRecord {
        topic,
        partition,
        leader: replicas[0],
        isr: replicas.clone(),
        replicas,
        leader_epoch: 0,
        partition_epoch: 0,
    })
}

#[cfg(test)]
mod tests;

//! The image: the cluster metadata as of an applied log index. Every node
//! replays the same records into it, so every node that applied index `i`
//! holds the same image (invariant M1 of `docs/design/cluster.md`).
//!
//! [`Image::apply`] is pure and total: a record that does not fit the
//! image (a stale broker epoch, an unknown topic) changes nothing but the
//! applied index and returns why, the same way on every node. The
//! controller checks its records against the image before proposing them,
//! so a refused record is a bug made harmless, never a divergence.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::record::{ConfigResource, Endpoint, MetaRecord, PartitionRecord, ScramCredential};

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    /// Broker id.
    pub id: i32,
    /// Broker epoch: the log index of its latest registration.
    pub epoch: u64,
    /// The process incarnation that registered.
    pub incarnation: Uuid,
    /// Its listeners.
    pub endpoints: Vec<Endpoint>,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// Fenced: may not lead.
    pub fenced: bool,
}

/// A partition's replica state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    /// Replica brokers, the preferred leader first.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Leader, -1 for none.
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Partition epoch.
    pub partition_epoch: i32,
}

/// A topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Config overrides.
    pub configs: BTreeMap<String, String>,
    /// Partitions by index (0, 1, 2, ... without holes).
    pub partitions: Vec<PartitionInfo>,
}

/// Why a record changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The broker is not registered.
    #[error("broker {0} is not registered")]
    UnknownBroker(i32),
    /// No such SCRAM credential to remove.
    #[error("user {user:?} has no {mechanism} credential")]
    UnknownCredential {
        /// The user.
        user: String,
        /// The mechanism.
        mechanism: String,
    },
    /// The record names an older registration of the broker.
    #[error("broker {broker} epoch {given} is not its current epoch {current}")]
    StaleBrokerEpoch {
        /// Broker id.
        broker: i32,
        /// The epoch in the record.
        given: u64,
        /// The registered epoch.
        current: u64,
    },
    /// No topic with this id.
    #[error("topic {0} does not exist")]
    UnknownTopic(Uuid),
    /// No topic with this name.
    #[error("topic {0} does not exist")]
    UnknownTopicName(String),
    /// A topic with this name or id exists.
    #[error("topic {0} exists already")]
    TopicExists(String),
    /// The partition is not the next index, or does not exist.
    #[error("partition {partition} of {topic}: {reason}")]
    BadPartition {
        /// Topic id.
        topic: Uuid,
        /// Partition index.
        partition: i32,
        /// What is wrong.
        reason: &'static str,
    },
    /// Producer ids would go backwards.
    #[error("producer ids may only grow (next {next}, given {given})")]
    ProducerIdsBackwards {
        /// Current next id.
        next: i64,
        /// The record's.
        given: i64,
    },
}

/// The cluster metadata as of `applied`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The last log index applied.
    pub applied: u64,
    /// Registered brokers by id.
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// Topics by id.
    pub topics: BTreeMap<Uuid, TopicInfo>,
    /// Topic ids by name.
    pub names: BTreeMap<String, Uuid>,
    /// Broker configs (`None`: cluster default).
    pub broker_configs: BTreeMap<Option<i32>, BTreeMap<String, String>>,
    /// The next producer id no broker was given.
    pub next_producer_id: i64,
    /// The one-node version's topics were imported.
    pub migrated: bool,
    /// The cluster id, once the first node set it.
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// Ids of every topic removed (so a broker deletes the logs of a topic
    /// only when the metadata says it was removed, never because it does
    /// not know it).
    #[serde(default)]
    pub removed: std::collections::BTreeSet<Uuid>,
    /// SCRAM credentials: user -> mechanism -> credential.
    #[serde(default)]
    pub scram: BTreeMap<String, BTreeMap<String, ScramCredential>>,
    /// ACL bindings.
    #[serde(default)]
    pub acls: std::collections::BTreeSet<crate::acl::AclBinding>,
}

impl Image {
    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.get(self.names.get(name)?)
    }

    /// Unfenced brokers, by id.
    pub fn live_brokers(&self) -> Vec<i32> {
        self.brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| b.id)
            .collect()
    }

    fn broker_at(&self, broker: i32, epoch: u64) -> Result<(), Refused> {
        let b = self
            .brokers
            .get(&broker)
            .ok_or(Refused::UnknownBroker(broker))?;
        if b.epoch != epoch {
            return Err(Refused::StaleBrokerEpoch {
                broker,
                given: epoch,
                current: b.epoch,
            });
        }
        Ok(())
    }

    /// Applies the record at log index `index` (indexes must grow; the
    /// caller is the Raft state machine). Returns why it changed nothing,
    /// if it did not fit; the applied index moves either way.
    pub fn apply(&mut self, index: u64, record: &MetaRecord) -> Result<(), Refused> {
        self.applied = self.applied.max(index);
        match record {
            MetaRecord::RegisterBroker {
                broker,
                incarnation,
                endpoints,
                rack,
            } => {
                self.brokers.insert(
                    *broker,
                    BrokerInfo {
                        id: *broker,
                        epoch: index,
                        incarnation: *incarnation,
                        endpoints: endpoints.clone(),
                        rack: rack.clone(),
                        fenced: true,
                    },
                );
            }
            MetaRecord::FenceBroker { broker, epoch }
            | MetaRecord::UnfenceBroker { broker, epoch } => {
                self.broker_at(*broker, *epoch)?;
                let fenced = matches!(record, MetaRecord::FenceBroker { .. });
                if let Some(b) = self.brokers.get_mut(broker) {
                    b.fenced = fenced;
                }
            }
            MetaRecord::UnregisterBroker { broker, epoch } => {
                self.broker_at(*broker, *epoch)?;
                self.brokers.remove(broker);
            }
            MetaRecord::Topic { name, id } => {
                if self.names.contains_key(name) || self.topics.contains_key(id) {
                    return Err(Refused::TopicExists(name.clone()));
                }
                self.names.insert(name.clone(), *id);
                self.topics.insert(
                    *id,
                    TopicInfo {
                        id: *id,
                        name: name.clone(),
                        configs: BTreeMap::new(),
                        partitions: Vec::new(),
                    },
                );
            }
            MetaRecord::Config {
                resource,
                name,
                value,
            } => {
                let configs = match resource {
                    ConfigResource::Topic(topic) => {
                        let id = *self
                            .names
                            .get(topic)
                            .ok_or_else(|| Refused::UnknownTopicName(topic.clone()))?;
                        match self.topics.get_mut(&id) {
                            Some(t) => &mut t.configs,
                            None => return Err(Refused::UnknownTopic(id)),
                        }
                    }
                    ConfigResource::Broker(b) => self.broker_configs.entry(*b).or_default(),
                };
                match value {
                    Some(v) => {
                        configs.insert(name.clone(), v.clone());
                    }
                    None => {
                        configs.remove(name);
                    }
                }
            }
            MetaRecord::Partition(p) => self.add_partition(p)?,
            MetaRecord::PartitionChange(c) => {
                let t = self
                    .topics
                    .get_mut(&c.topic)
                    .ok_or(Refused::UnknownTopic(c.topic))?;
                let p = usize::try_from(c.partition)
                    .ok()
                    .and_then(|i| t.partitions.get_mut(i))
                    .ok_or(Refused::BadPartition {
                        topic: c.topic,
                        partition: c.partition,
                        reason: "no such partition",
                    })?;
                if let Some(r) = &c.replicas {
                    p.replicas = r.clone();
                }
                if let Some(isr) = &c.isr {
                    p.isr = isr.clone();
                }
                if let Some(l) = c.leader
                    && l != p.leader
                {
                    p.leader = l;
                    p.leader_epoch += 1;
                }
                p.partition_epoch += 1;
            }
            MetaRecord::RemoveTopic { id } => {
                let t = self.topics.remove(id).ok_or(Refused::UnknownTopic(*id))?;
                self.names.remove(&t.name);
                self.removed.insert(*id);
            }
            MetaRecord::ProducerIds {
                broker,
                epoch,
                next,
            } => {
                self.broker_at(*broker, *epoch)?;
                if *next <= self.next_producer_id {
                    return Err(Refused::ProducerIdsBackwards {
                        next: self.next_producer_id,
                        given: *next,
                    });
                }
                self.next_producer_id = *next;
            }
            MetaRecord::Migrated => self.migrated = true,
            MetaRecord::ClusterId { id } => {
                // The first one stands.
                if self.cluster_id.is_none() {
                    self.cluster_id = Some(id.clone());
                }
            }
            MetaRecord::UserScram(c) => {
                self.scram
                    .entry(c.user.clone())
                    .or_default()
                    .insert(c.mechanism.clone(), c.clone());
            }
            MetaRecord::RemoveUserScram { user, mechanism } => {
                let gone = self.scram.get_mut(user).and_then(|m| m.remove(mechanism));
                if gone.is_none() {
                    return Err(Refused::UnknownCredential {
                        user: user.clone(),
                        mechanism: mechanism.clone(),
                    });
                }
                if self.scram.get(user).is_some_and(BTreeMap::is_empty) {
                    self.scram.remove(user);
                }
            }
            // Adding a binding twice or removing one that is gone changes
            // nothing: the controller only proposes real changes, and a
            // replay must not stop on either.
            MetaRecord::Acl(b) => {
                self.acls.insert(b.clone());
            }
            MetaRecord::RemoveAcl(b) => {
                self.acls.remove(b);
            }
        }
        Ok(())
    }

    fn add_partition(&mut self, p: &PartitionRecord) -> Result<(), Refused> {
        let t = self
            .topics
            .get_mut(&p.topic)
            .ok_or(Refused::UnknownTopic(p.topic))?;
        if usize::try_from(p.partition).ok() != Some(t.partitions.len()) {
            return Err(Refused::BadPartition {
                topic: p.topic,
                partition: p.partition,
                reason: "not the next partition index",
            });
        }
        t.partitions.push(PartitionInfo {
            replicas: p.replicas.clone(),
            isr: p.isr.clone(),
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
        });
        Ok(())
    }

    /// Partitions (topic name, index, state) led by `broker`.
    pub fn led_by(&self, broker: i32) -> Vec<(&str, i32, &PartitionInfo)> {
        self.topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(move |(_, p)| p.leader == broker)
                    .map(move |(i, p)| (t.name.as_str(), i as i32, p))
            })
            .collect()
    }

    /// The image as bytes, for snapshots.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses [`Image::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::PartitionChange;

    fn register(image: &mut Image, index: u64, broker: i32) {
        image
            .apply(
                index,
                &MetaRecord::RegisterBroker {
                    broker,
                    incarnation: Uuid::new_v4(),
                    endpoints: vec![],
                    rack: None,
                },
            )
            .unwrap();
    }

    #[test]
    fn brokers_register_fenced_with_their_index_as_epoch() {
        let mut i = Image::default();
        register(&mut i, 5, 1);
        assert_eq!(i.brokers[&1].epoch, 5);
        assert!(i.brokers[&1].fenced);
        assert!(i.live_brokers().is_empty());
        i.apply(
            6,
            &MetaRecord::UnfenceBroker {
                broker: 1,
                epoch: 5,
            },
        )
        .unwrap();
        assert_eq!(i.live_brokers(), [1]);
        // A record for an older registration changes nothing.
        register(&mut i, 9, 1);
        let before = i.clone();
        let err = i
            .apply(
                10,
                &MetaRecord::UnfenceBroker {
                    broker: 1,
                    epoch: 5,
                },
            )
            .unwrap_err();
        assert!(matches!(err, Refused::StaleBrokerEpoch { current: 9, .. }));
        assert_eq!(i.applied, 10);
        assert_eq!(i.brokers, before.brokers);
    }

    #[test]
    fn topics_partitions_and_changes_apply_in_order() {
        let mut i = Image::default();
        let id = Uuid::new_v4();
        i.apply(
            1,
            &MetaRecord::Topic {
                name: "t".into(),
                id,
            },
        )
        .unwrap();
        assert!(
            i.apply(
                2,
                &MetaRecord::Topic {
                    name: "t".into(),
                    id: Uuid::new_v4()
                }
            )
            .is_err()
        );
        let part = |n| PartitionRecord {
            topic: id,
            partition: n,
            replicas: vec![1],
            isr: vec![1],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
        };
        i.apply(3, &MetaRecord::Partition(part(0))).unwrap();
        assert!(
            i.apply(4, &MetaRecord::Partition(part(2))).is_err(),
            "a hole"
        );
        i.apply(5, &MetaRecord::Partition(part(1))).unwrap();
        let change = |leader| {
            MetaRecord::PartitionChange(PartitionChange {
                topic: id,
                partition: 1,
                leader,
                isr: None,
                replicas: None,
            })
        };
        i.apply(6, &change(Some(-1))).unwrap();
        i.apply(7, &change(Some(-1))).unwrap();
        let p = &i.topic("t").unwrap().partitions[1];
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (-1, 1, 2));
        i.apply(
            8,
            &MetaRecord::Config {
                resource: ConfigResource::Topic("t".into()),
                name: "cleanup.policy".into(),
                value: Some("compact".into()),
            },
        )
        .unwrap();
        assert_eq!(i.topic("t").unwrap().configs["cleanup.policy"], "compact");
        let again = Image::decode(&i.encode()).unwrap();
        assert_eq!(again, i);
        i.apply(9, &MetaRecord::RemoveTopic { id }).unwrap();
        assert!(i.topic("t").is_none());
        assert!(i.apply(10, &change(Some(1))).is_err());
    }

    #[test]
    fn producer_id_blocks_only_grow() {
        let mut i = Image::default();
        register(&mut i, 1, 1);
        let ids = |next| MetaRecord::ProducerIds {
            broker: 1,
            epoch: 1,
            next,
        };
        i.apply(2, &ids(1000)).unwrap();
        assert!(i.apply(3, &ids(1000)).is_err());
        assert_eq!(i.next_producer_id, 1000);
    }
}

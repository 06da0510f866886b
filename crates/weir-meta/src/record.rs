//! The metadata records: what the quorum orders and every node replays.
//! Each is Kafka's KRaft record of the same name reduced to what Weir
//! uses. Encoded as versioned JSON (metadata is small and rare next to
//! partition data; readable in a dump).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One listener of a broker.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Endpoint {
    /// Listener name (`PLAINTEXT`, ...).
    pub listener: String,
    /// Host clients connect to.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// What a config record is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConfigResource {
    /// A topic, by name.
    Topic(String),
    /// A broker (`None`: the cluster-wide default).
    Broker(Option<i32>),
}

/// A new partition (or a partition as a whole, after migration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    /// The topic's id.
    pub topic: Uuid,
    /// Partition index.
    pub partition: i32,
    /// Replica brokers, the preferred leader first.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Leader broker, -1 for none.
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Partition epoch (bumped by every change).
    pub partition_epoch: i32,
}

/// A change to a partition: each field that is `Some` replaces the
/// current value. The partition epoch is bumped; the leader epoch too
/// when the leader changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChange {
    /// The topic's id.
    pub topic: Uuid,
    /// Partition index.
    pub partition: i32,
    /// New leader (-1: none).
    pub leader: Option<i32>,
    /// New ISR.
    pub isr: Option<Vec<i32>>,
    /// New replicas.
    pub replicas: Option<Vec<i32>>,
}

/// A user's SCRAM credential for one mechanism, as the broker keeps it:
/// salt, iterations, StoredKey and ServerKey (RFC 5802), never the
/// password or the salted password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    /// The user name.
    pub user: String,
    /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// The salt.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// H(ClientKey).
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys stay out of logs.
        f.debug_struct("ScramCredential")
            .field("user", &self.user)
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// One metadata record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaRecord {
    /// A broker (re)registered; its epoch is this record's log index.
    RegisterBroker {
        /// Broker id.
        broker: i32,
        /// Random per process start: a restart is a new incarnation.
        incarnation: Uuid,
        /// Its listeners.
        endpoints: Vec<Endpoint>,
        /// `broker.rack`.
        rack: Option<String>,
    },
    /// The broker may not lead or host in-sync replicas.
    FenceBroker {
        /// Broker id.
        broker: i32,
        /// The registration this applies to.
        epoch: u64,
    },
    /// The broker caught up and may lead again.
    UnfenceBroker {
        /// Broker id.
        broker: i32,
        /// The registration this applies to.
        epoch: u64,
    },
    /// The broker left the cluster.
    UnregisterBroker {
        /// Broker id.
        broker: i32,
        /// The registration this applies to.
        epoch: u64,
    },
    /// A new topic (its partitions follow as `Partition` records).
    Topic {
        /// Name.
        name: String,
        /// Id.
        id: Uuid,
    },
    /// A config set (`value` `None`: removed, back to the default).
    Config {
        /// What it configures.
        resource: ConfigResource,
        /// Config name.
        name: String,
        /// Value.
        value: Option<String>,
    },
    /// A new partition.
    Partition(PartitionRecord),
    /// A change to a partition.
    PartitionChange(PartitionChange),
    /// A topic and its partitions are gone.
    RemoveTopic {
        /// Its id.
        id: Uuid,
    },
    /// A block of producer ids given to a broker: the ids below `next`
    /// and at or above the previous `next` are its.
    ProducerIds {
        /// Broker id.
        broker: i32,
        /// Its epoch.
        epoch: u64,
        /// The next free producer id after the block.
        next: i64,
    },
    /// The topics of a one-node data directory were imported.
    Migrated,
    /// The cluster's id (the first node's `meta.properties` id; every
    /// node takes it).
    ClusterId {
        /// Kafka's 22-character cluster id.
        id: String,
    },
    /// A user's SCRAM credential set (replacing one of the same mechanism).
    UserScram(ScramCredential),
    /// A user's SCRAM credential of one mechanism removed.
    RemoveUserScram {
        /// The user name.
        user: String,
        /// The mechanism.
        mechanism: String,
    },
    /// An ACL binding added (Kafka's AccessControlEntryRecord).
    Acl(crate::acl::AclBinding),
    /// An ACL binding removed (RemoveAccessControlEntryRecord).
    RemoveAcl(crate::acl::AclBinding),
}

/// Why bytes did not decode into a record.
#[derive(Debug, thiserror::Error)]
#[error("undecodable metadata record: {0}")]
pub struct DecodeError(String);

const VERSION: u8 = 1;

impl MetaRecord {
    /// The record's bytes: a version byte, then JSON.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        // Serializing these plain types cannot fail.
        out.extend(serde_json::to_vec(self).unwrap_or_default());
        out
    }

    /// Parses what [`MetaRecord::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes.split_first() {
            Some((&VERSION, json)) => {
                serde_json::from_slice(json).map_err(|e| DecodeError(e.to_string()))
            }
            Some((v, _)) => Err(DecodeError(format!("unknown version {v}"))),
            None => Err(DecodeError("empty".to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_an_error() {
        let records = [
            MetaRecord::RegisterBroker {
                broker: 2,
                incarnation: Uuid::new_v4(),
                endpoints: vec![Endpoint {
                    listener: "PLAINTEXT".into(),
                    host: "127.0.0.2".into(),
                    port: 9092,
                }],
                rack: None,
            },
            MetaRecord::PartitionChange(PartitionChange {
                topic: Uuid::new_v4(),
                partition: 3,
                leader: Some(-1),
                isr: None,
                replicas: Some(vec![1, 2]),
            }),
            MetaRecord::Config {
                resource: ConfigResource::Broker(None),
                name: "x".into(),
                value: None,
            },
            MetaRecord::Migrated,
            MetaRecord::ClusterId {
                id: "k-_KkMW6R8qS73Nf7n0WVg".into(),
            },
            MetaRecord::UserScram(ScramCredential {
                user: "alice".into(),
                mechanism: "SCRAM-SHA-256".into(),
                salt: vec![1, 2, 3],
                iterations: 4096,
                stored_key: vec![9; 32],
                server_key: vec![8; 32],
            }),
            MetaRecord::RemoveUserScram {
                user: "alice".into(),
                mechanism: "SCRAM-SHA-512".into(),
            },
            MetaRecord::Acl(crate::acl::AclBinding {
                resource_type: crate::acl::resource::TOPIC,
                resource_name: "logs-".into(),
                pattern_type: crate::acl::pattern::PREFIXED,
                principal: "User:alice".into(),
                host: "*".into(),
                operation: crate::acl::operation::WRITE,
                permission: crate::acl::permission::ALLOW,
            }),
        ];
        for r in records {
            assert_eq!(MetaRecord::decode(&r.encode()).unwrap(), r);
        }
        // A credential's keys never reach a log line.
        let c = format!(
            "{:?}",
            MetaRecord::UserScram(ScramCredential {
                user: "u".into(),
                mechanism: "SCRAM-SHA-256".into(),
                salt: vec![7; 4],
                iterations: 4096,
                stored_key: vec![250; 32],
                server_key: vec![251; 32],
            })
        );
        assert!(
            !c.contains("250") && !c.contains("251") && c.contains("4096"),
            "{c}"
        );
        assert!(MetaRecord::decode(b"").is_err());
        assert!(MetaRecord::decode(b"\x02{}").is_err());
        assert!(MetaRecord::decode(b"\x01{not json").is_err());
    }
}

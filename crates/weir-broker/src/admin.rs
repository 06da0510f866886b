//! Topic changes (CreateTopics, DeleteTopics, CreatePartitions,
//! AlterConfigs): checked here as the broker that received them, decided
//! by the active controller through the metadata quorum, and answered once
//! this broker's registry shows them. Any broker accepts them; clients
//! never see NOT_CONTROLLER.

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;
use weir_meta::{Answer, ConfigResource, MetaError, Request};

use crate::Broker;
use crate::topics::{Topic, TopicError};

fn refused(e: MetaError) -> TopicError {
    match e {
        MetaError::TopicExists(n) => TopicError::Exists(n),
        MetaError::UnknownTopic(n) => TopicError::Unknown(n),
        MetaError::InvalidPartitions(m) => TopicError::InvalidPartitions(m),
        e @ MetaError::InvalidReplicationFactor { .. } => {
            TopicError::InvalidReplicationFactor(e.to_string())
        }
        other => TopicError::Storage(other.to_string()),
    }
}

fn done(answer: Answer) -> Result<(), TopicError> {
    match answer {
        Answer::Done => Ok(()),
        Answer::Refused(e) => Err(refused(e)),
        other => Err(TopicError::Storage(format!(
            "unexpected answer from the controller: {other:?}"
        ))),
    }
}

impl Broker {
    /// Creates a topic (`replication_factor` -1: the default). With
    /// `validate_only`, checks and returns what would be created.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, TopicError> {
        let config = self.topics.check_new(name, partitions, &overrides)?;
        let rf = if replication_factor == -1 {
            self.config.replication.default_replication_factor
        } else {
            replication_factor
        };
        let live = self.cluster.image().live_brokers().len();
        if rf < 1 || rf as usize > live {
            return Err(TopicError::InvalidReplicationFactor(format!(
                "replication factor {rf} is not possible: it must be at least 1 and at most the {live} available brokers"
            )));
        }
        if validate_only {
            return Ok(Arc::new(Topic {
                name: name.to_owned(),
                id: Uuid::nil(),
                partitions: Vec::new(),
                assignment: Arc::default(),
                me: self.meta.node_id,
                meta_index: 0,
                overrides,
                config,
                stats: Arc::default(),
            }));
        }
        let id = Uuid::new_v4();
        let answer = self
            .cluster
            .request(Request::CreateTopic {
                name: name.to_owned(),
                partitions,
                replication_factor: rf,
                configs: overrides,
                id,
            })
            .await?;
        done(answer)?;
        tracing::info!(
            topic = name,
            partitions,
            replication_factor = rf,
            "created topic"
        );
        self.topics.get_by_id(id).ok_or_else(|| {
            TopicError::Timeout(format!(
                "topic {name} was created but is not visible here yet"
            ))
        })
    }

    /// Deletes a topic; returns its id. `__consumer_offsets` cannot be
    /// deleted (every group's offsets are in it).
    pub async fn delete_topic(&self, name: &str) -> Result<Uuid, TopicError> {
        if name == crate::OFFSETS_TOPIC {
            return Err(TopicError::InvalidName(
                name.to_owned(),
                "an internal topic cannot be deleted",
            ));
        }
        let id = self
            .topics
            .get(name)
            .map(|t| t.id)
            .ok_or_else(|| TopicError::Unknown(name.to_owned()))?;
        done(
            self.cluster
                .request(Request::DeleteTopic {
                    name: name.to_owned(),
                })
                .await?,
        )?;
        Ok(id)
    }

    /// Grows a topic to `count` partitions.
    pub async fn add_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let topic = self
            .topics
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_owned()))?;
        let now = topic.partition_count() as i32;
        if count <= now {
            return Err(TopicError::InvalidPartitions(format!(
                "topic {name} has {now} partitions; the new count must be larger, got {count}"
            )));
        }
        if validate_only {
            return Ok(());
        }
        done(
            self.cluster
                .request(Request::CreatePartitions {
                    name: name.to_owned(),
                    count,
                })
                .await?,
        )
    }

    /// Replaces a topic's config overrides (AlterConfigs semantics).
    pub async fn set_topic_overrides(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let topic = self
            .topics
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_owned()))?;
        self.topics.check_overrides(&overrides)?;
        if validate_only {
            return Ok(());
        }
        let mut changes: Vec<(String, Option<String>)> = topic
            .overrides
            .keys()
            .filter(|k| !overrides.contains_key(*k))
            .map(|k| (k.clone(), None))
            .collect();
        changes.extend(
            overrides
                .into_iter()
                .filter(|(k, v)| topic.overrides.get(k) != Some(v))
                .map(|(k, v)| (k, Some(v))),
        );
        if changes.is_empty() {
            return Ok(());
        }
        done(
            self.cluster
                .request(Request::AlterConfigs {
                    resource: ConfigResource::Topic(name.to_owned()),
                    changes,
                })
                .await?,
        )
    }
}

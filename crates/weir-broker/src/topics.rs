//! The topic registry: this broker's view of every topic of the cluster
//! (names, ids, configs, where each partition's replicas are and who
//! leads it), built from the metadata image, plus the partitions hosted
//! here, each backed by one `weir-log` log in
//! `<data-dir>/<topic>-<partition>/`.
//!
//! [`Registry::apply_image`] is the only way topics change: it opens the
//! logs of partitions newly assigned here, changes configs, and deletes
//! the logs of topics the image removed. What is hosted here is recorded
//! in `<data-dir>/topics.toml` with the metadata index at which each topic
//! was first seen, so a topic missing from an image is deleted only once
//! that image has passed its creation (an image replayed at start may be
//! behind the logs). A data directory of the one-node version (no index)
//! is imported into the metadata at its first start (`Migrate`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};
use uuid::Uuid;
use weir_log::{Flusher, Log, LogConfig, LogError};
use weir_meta::{Image, PartitionInfo};

use crate::error::BrokerError;

/// One partition: its log and where it belongs.
#[derive(Debug)]
pub struct Partition {
    /// Partition index.
    pub index: i32,
    /// The log.
    pub log: Arc<Log>,
    /// Its replication role and high watermark.
    pub replica: crate::replica::Replica,
}

impl Partition {
    fn new(index: i32, log: Arc<Log>) -> Self {
        Self {
            index,
            log,
            replica: crate::replica::Replica::default(),
        }
    }

    /// The high watermark: consumers read below it.
    pub fn high_watermark(&self) -> u64 {
        self.replica.high_watermark(&self.log)
    }

    /// Blocks until the high watermark passes `upto` (every in-sync
    /// replica has what this leader wrote below it), for writes made to
    /// the log directly (the group coordinator's). At once for a partition
    /// of one replica.
    pub fn wait_replicated(&self, upto: u64, within: Duration) -> Result<(), Unreplicated> {
        let deadline = std::time::Instant::now() + within;
        self.replica.leader_appended(self.log.log_end_offset());
        loop {
            if self.high_watermark() >= upto {
                return Ok(());
            }
            if !self.replica.leads() {
                return Err(Unreplicated::NotLeader);
            }
            if std::time::Instant::now() >= deadline {
                return Err(Unreplicated::TimedOut);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Why a write was not replicated in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unreplicated {
    /// Leadership moved away first.
    #[error("leadership moved before the write was replicated")]
    NotLeader,
    /// The in-sync replicas did not all have it in time.
    #[error("the in-sync replicas did not all have the write in time")]
    TimedOut,
}

/// A topic as it is now. Changes replace the whole `Arc<Topic>`; the
/// partitions are shared between versions.
#[derive(Debug, Clone)]
pub struct Topic {
    /// Name.
    pub name: String,
    /// Topic id (KIP-516).
    pub id: Uuid,
    /// The partitions hosted here, by index (every partition on a single
    /// broker; see [`Topic::led`] to reach one by index).
    pub partitions: Vec<Arc<Partition>>,
    /// Every partition's replicas, ISR, leader and epochs, from the image.
    pub assignment: Arc<Vec<PartitionInfo>>,
    /// This broker's id.
    pub me: i32,
    /// The metadata index at which this broker first saw the topic (0:
    /// from a one-node data directory not imported yet).
    pub meta_index: u64,
    /// Topic-level config overrides, by Kafka name.
    pub overrides: BTreeMap<String, String>,
    /// Effective log config (broker defaults + overrides).
    pub config: LogConfig,
    /// Traffic counters, shared by every version of this topic and gone
    /// with it when it is deleted.
    pub stats: Arc<crate::metrics::TopicStats>,
}

/// Why a partition cannot be served here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unled {
    /// No such partition.
    Unknown,
    /// Another broker leads it (-1: none does right now).
    NotLeader {
        /// The leader, -1 for none.
        leader: i32,
        /// Its leader epoch.
        epoch: i32,
    },
    /// Hosted here but its log could not be opened.
    Offline,
}

impl Unled {
    /// The Kafka error code for a request to this partition.
    pub fn code(self) -> kafka_protocol::ResponseError {
        use kafka_protocol::ResponseError as E;
        match self {
            Unled::Unknown => E::UnknownTopicOrPartition,
            Unled::NotLeader { .. } => E::NotLeaderOrFollower,
            Unled::Offline => E::KafkaStorageError,
        }
    }
}

impl Topic {
    /// Number of partitions in the cluster.
    pub fn partition_count(&self) -> usize {
        self.assignment.len()
    }

    /// The hosted partition `index`, leader or not.
    pub fn hosted(&self, index: i32) -> Option<&Arc<Partition>> {
        self.partitions
            .binary_search_by_key(&index, |p| p.index)
            .ok()
            .map(|i| &self.partitions[i])
    }

    /// Partition `index` if this broker leads it.
    pub fn led(&self, index: i32) -> Result<&Arc<Partition>, Unled> {
        let info = usize::try_from(index)
            .ok()
            .and_then(|i| self.assignment.get(i))
            .ok_or(Unled::Unknown)?;
        if info.leader != self.me {
            return Err(Unled::NotLeader {
                leader: info.leader,
                epoch: info.leader_epoch,
            });
        }
        self.hosted(index).ok_or(Unled::Offline)
    }

    /// KIP-320: a client's `current_leader_epoch` for partition `index`
    /// against this leader's (-1: the client does not say): older is
    /// FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH (this broker has
    /// not caught up with the metadata yet).
    pub fn check_epoch(
        &self,
        index: i32,
        current: i32,
    ) -> Result<(), kafka_protocol::ResponseError> {
        use kafka_protocol::ResponseError as E;
        if current < 0 {
            return Ok(());
        }
        let mine = self.leader_epoch(index);
        match current.cmp(&mine) {
            std::cmp::Ordering::Less => Err(E::FencedLeaderEpoch),
            std::cmp::Ordering::Greater => Err(E::UnknownLeaderEpoch),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    /// The leader epoch of partition `index` (-1 if there is none).
    pub fn leader_epoch(&self, index: i32) -> i32 {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.assignment.get(i))
            .map_or(-1, |p| p.leader_epoch)
    }

    /// `min.insync.replicas` (the topic's, else the broker's `default`):
    /// an acks=all produce needs this many in-sync replicas.
    pub fn min_insync_replicas(&self, default: i32) -> i32 {
        self.overrides
            .get("min.insync.replicas")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default)
    }
}

/// What `topics.toml` holds per topic.
#[derive(Debug, Serialize, Deserialize)]
struct StoredTopic {
    name: String,
    id: String,
    /// Partitions in the cluster (the one-node version: all hosted here).
    partitions: i32,
    #[serde(default)]
    configs: BTreeMap<String, String>,
    /// The partitions hosted here (absent: `0..partitions`).
    #[serde(default)]
    hosted: Option<Vec<i32>>,
    /// The metadata index at which the topic was first seen here.
    #[serde(default)]
    meta_index: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredTopics {
    #[serde(default)]
    topics: Vec<StoredTopic>,
}

/// Why a topic operation failed, one variant per Kafka error code.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// TOPIC_ALREADY_EXISTS.
    #[error("topic {0} already exists")]
    Exists(String),
    /// UNKNOWN_TOPIC_OR_PARTITION.
    #[error("topic {0} does not exist")]
    Unknown(String),
    /// INVALID_TOPIC_EXCEPTION.
    #[error("invalid topic name {0:?}: {1}")]
    InvalidName(String, &'static str),
    /// INVALID_PARTITIONS.
    #[error("{0}")]
    InvalidPartitions(String),
    /// INVALID_CONFIG.
    #[error("{0}")]
    InvalidConfig(String),
    /// KAFKA_STORAGE_ERROR.
    #[error(transparent)]
    Log(#[from] LogError),
    /// KAFKA_STORAGE_ERROR (metadata file).
    #[error("{0}")]
    Storage(String),
    /// INVALID_REPLICATION_FACTOR.
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// REQUEST_TIMED_OUT: the metadata quorum did not answer in time.
    #[error("{0}")]
    Timeout(String),
}

impl TopicError {
    /// The Kafka error code.
    pub fn code(&self) -> kafka_protocol::ResponseError {
        use kafka_protocol::ResponseError as E;
        match self {
            TopicError::Exists(_) => E::TopicAlreadyExists,
            TopicError::Unknown(_) => E::UnknownTopicOrPartition,
            TopicError::InvalidName(..) => E::InvalidTopicException,
            TopicError::InvalidPartitions(_) => E::InvalidPartitions,
            TopicError::InvalidConfig(_) => E::InvalidConfig,
            TopicError::Log(e) => crate::error::log_error_code(e),
            TopicError::Storage(_) => E::KafkaStorageError,
            TopicError::InvalidReplicationFactor(_) => E::InvalidReplicationFactor,
            TopicError::Timeout(_) => E::RequestTimedOut,
        }
    }
}

/// Kafka's topic-name rule: 1-249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_name(name: &str) -> Result<(), TopicError> {
    let bad = |why| Err(TopicError::InvalidName(name.to_owned(), why));
    if name.is_empty() {
        return bad("empty");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not allowed");
    }
    if name == "__cluster_metadata" {
        return bad("reserved for the cluster metadata log");
    }
    if name.len() > 249 {
        return bad("longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// All topics of the broker.
#[derive(Debug)]
pub struct Registry {
    data_dir: PathBuf,
    defaults: LogConfig,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises changes to the set of topics and their persistence.
    change: Mutex<()>,
    /// Bumped after every append, so long-polling fetches wake up.
    appended: watch::Sender<u64>,
    flusher: Flusher,
    /// The index of the last image applied (older ones are skipped).
    applied: std::sync::atomic::AtomicU64,
    /// `topics.toml` could not be written: written again at the next image.
    unsaved: std::sync::atomic::AtomicBool,
    /// The broker's replication settings.
    replication: crate::config::ReplicationConfig,
}

/// Kafka's per-partition file naming the topic id, so a directory is
/// never taken for another topic's.
const PARTITION_METADATA: &str = "partition.metadata";

fn partition_metadata(id: Uuid) -> String {
    format!("version: 0\ntopic_id: {id}\n")
}

/// The topic id a partition directory says it belongs to.
fn read_partition_id(dir: &Path) -> Option<Uuid> {
    let text = std::fs::read_to_string(dir.join(PARTITION_METADATA)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("topic_id:"))
        .and_then(|v| Uuid::parse_str(v.trim()).ok())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn effective(
    defaults: &LogConfig,
    overrides: &BTreeMap<String, String>,
) -> Result<LogConfig, TopicError> {
    crate::topic_config::effective(defaults, overrides).map_err(TopicError::InvalidConfig)
}

impl Registry {
    /// Opens every topic recorded in `topics.toml`.
    pub fn open(data_dir: &Path, defaults: LogConfig) -> Result<Self, BrokerError> {
        let path = data_dir.join("topics.toml");
        let stored: StoredTopics = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| BrokerError::Metadata {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoredTopics::default(),
            Err(source) => {
                return Err(BrokerError::Io {
                    what: "reading",
                    path,
                    source,
                });
            }
        };
        let flusher = Flusher::start(
            std::time::Duration::from_millis(200),
            Arc::new(weir_log::SystemClock),
        );
        let mut topics = BTreeMap::new();
        for t in stored.topics {
            let id = Uuid::parse_str(&t.id).map_err(|e| BrokerError::Metadata {
                path: path.clone(),
                reason: format!("topic {}: bad id: {e}", t.name),
            })?;
            let config = effective(&defaults, &t.configs).map_err(|e| BrokerError::Metadata {
                path: path.clone(),
                reason: format!("topic {}: {e}", t.name),
            })?;
            let hosted = t
                .hosted
                .clone()
                .unwrap_or_else(|| (0..t.partitions).collect());
            let mut partitions = Vec::new();
            for p in hosted {
                let dir = data_dir.join(format!("{}-{p}", t.name));
                let log = Arc::new(Log::open_dir(&dir, config.clone(), now_ms())?);
                if read_partition_id(&dir) != Some(id) {
                    // Written by the one-node version, which kept none.
                    write_atomic(&dir, PARTITION_METADATA, partition_metadata(id).as_bytes())
                        .map_err(|source| BrokerError::Io {
                            what: "writing",
                            path: dir.join(PARTITION_METADATA),
                            source,
                        })?;
                }
                flusher.register(&log);
                partitions.push(Arc::new(Partition::new(p, log)));
            }
            partitions.sort_by_key(|p| p.index);
            info!(topic = %t.name, partitions = partitions.len(), "opened topic");
            // Served once the image holds it (apply_image fills these in).
            topics.insert(
                t.name.clone(),
                Arc::new(Topic {
                    name: t.name,
                    id,
                    partitions,
                    assignment: Arc::default(),
                    me: -1,
                    meta_index: t.meta_index,
                    overrides: t.configs,
                    config,
                    stats: Arc::default(),
                }),
            );
        }
        let (appended, _) = watch::channel(0);
        Ok(Self {
            data_dir: data_dir.to_owned(),
            defaults,
            topics: RwLock::new(topics),
            change: Mutex::new(()),
            appended,
            flusher,
            applied: std::sync::atomic::AtomicU64::new(0),
            unsaved: std::sync::atomic::AtomicBool::new(false),
            replication: crate::config::ReplicationConfig::default(),
        })
    }

    /// With these replication settings (before the registry is shared).
    pub fn with_replication(mut self, replication: crate::config::ReplicationConfig) -> Self {
        self.replication = replication;
        self
    }

    /// The broker's replication settings.
    pub fn replication(&self) -> &crate::config::ReplicationConfig {
        &self.replication
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Topic>>> {
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Topic>>> {
        self.topics.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A topic by name.
    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.read().get(name).cloned()
    }

    /// A topic by id.
    pub fn get_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.read().values().find(|t| t.id == id).cloned()
    }

    /// Every topic, by name.
    pub fn all(&self) -> Vec<Arc<Topic>> {
        self.read().values().cloned().collect()
    }

    /// The broker's topic-config defaults.
    pub fn defaults(&self) -> &LogConfig {
        &self.defaults
    }

    /// Tells long-polling fetches that data arrived.
    pub fn notify_appended(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes after every append.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Writes `topics.toml` atomically from the current registry.
    fn persist(&self) -> Result<(), TopicError> {
        let stored = StoredTopics {
            topics: self
                .read()
                .values()
                .map(|t| StoredTopic {
                    name: t.name.clone(),
                    id: t.id.to_string(),
                    partitions: t.partition_count() as i32,
                    configs: t.overrides.clone(),
                    hosted: Some(t.partitions.iter().map(|p| p.index).collect()),
                    meta_index: t.meta_index,
                })
                .collect(),
        };
        let text = toml::to_string(&stored).map_err(|e| TopicError::Storage(e.to_string()))?;
        write_atomic(&self.data_dir, "topics.toml", text.as_bytes())
            .map_err(|e| TopicError::Storage(format!("writing topics.toml: {e}")))
    }

    /// Checks a new topic's name, partition count and configs as the
    /// broker that receives CreateTopics does, before the controller
    /// decides; returns the effective config.
    pub fn check_new(
        &self,
        name: &str,
        partitions: i32,
        overrides: &BTreeMap<String, String>,
    ) -> Result<LogConfig, TopicError> {
        validate_name(name)?;
        if partitions < 1 {
            return Err(TopicError::InvalidPartitions(format!(
                "number of partitions must be at least 1, got {partitions}"
            )));
        }
        let config = effective(&self.defaults, overrides)?;
        if self.get(name).is_some() {
            return Err(TopicError::Exists(name.to_owned()));
        }
        if self
            .read()
            .keys()
            .any(|k| k.replace('.', "_") == name.replace('.', "_"))
        {
            return Err(TopicError::InvalidName(
                name.to_owned(),
                "collides with an existing topic ('.' and '_' are interchangeable in metric names)",
            ));
        }
        Ok(config)
    }

    /// Checks a topic's complete new set of config overrides.
    pub fn check_overrides(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<LogConfig, TopicError> {
        effective(&self.defaults, overrides)
    }

    /// Makes the registry what `image` says, for broker `me`: new topics
    /// and partitions assigned here get their logs opened (and any left
    /// over from an earlier topic of the same name deleted first), configs
    /// change, topics the image removed are closed and deleted. Returns
    /// the names of the topics removed. Blocking (opens and deletes
    /// files).
    pub fn apply_image(&self, image: &Image, me: i32) -> Vec<String> {
        use std::sync::atomic::Ordering;
        let _guard = self.change.lock().unwrap_or_else(|p| p.into_inner());
        if image.applied < self.applied.load(Ordering::Relaxed) {
            // An older image than one already applied (the start-up pass
            // and the reconcile task may race): nothing to learn from it.
            return Vec::new();
        }
        self.applied.store(image.applied, Ordering::Relaxed);
        let current = self.read().clone();
        let mut next: BTreeMap<String, Arc<Topic>> = BTreeMap::new();
        let mut removed = Vec::new();
        let hw_moved = std::cell::Cell::new(false);
        // Topics the image no longer has (or has under another id) first,
        // so a topic re-created under the same name opens fresh logs.
        for (name, t) in &current {
            if image.topics.contains_key(&t.id) {
                continue;
            }
            if image.removed.contains(&t.id) {
                self.remove_logs(t, false);
                removed.push(name.clone());
                continue;
            }
            if !image.migrated || t.meta_index > image.applied {
                // Not imported yet, or created after what this image has
                // seen (an image replayed at start can be behind the logs):
                // kept until the image catches up.
                next.insert(name.clone(), t.clone());
                continue;
            }
            // Never in this cluster's metadata: set aside, not deleted.
            self.remove_logs(t, true);
        }
        for info in image.topics.values() {
            if next.contains_key(&info.name) {
                // A stale local topic of that name waits for its removal.
                continue;
            }
            let existing = current.get(&info.name).filter(|t| t.id == info.id);
            let config = match effective(&self.defaults, &info.configs) {
                Ok(c) => c,
                Err(e) => {
                    warn!(topic = %info.name, error = %e, "topic configs invalid here; broker defaults used");
                    self.defaults.clone()
                }
            };
            let mut partitions = Vec::new();
            for (index, p) in info.partitions.iter().enumerate() {
                let index = index as i32;
                if !p.replicas.contains(&me) {
                    continue;
                }
                let settings = crate::replica::Settings {
                    min_isr: usize::try_from(
                        info.configs
                            .get("min.insync.replicas")
                            .and_then(|v| v.trim().parse::<i32>().ok())
                            .unwrap_or(self.replication.min_insync_replicas),
                    )
                    .unwrap_or(1),
                    lag_max_ms: self.replication.lag_time_max_ms,
                };
                let take_role = |part: &Partition| {
                    if p.leader == me {
                        // Batches appended from now on carry this epoch.
                        part.log.set_leader_epoch(p.leader_epoch);
                    }
                    let before = part.high_watermark();
                    part.replica
                        .follow_image(p, me, &part.log, settings, now_ms());
                    // An ISR shrink can move the HW: acks=all waiters and
                    // long polls must hear of it.
                    if part.high_watermark() > before {
                        hw_moved.set(true);
                    }
                };
                if let Some(have) = existing.and_then(|t| t.hosted(index)) {
                    take_role(have);
                    partitions.push(have.clone());
                    continue;
                }
                match self.open_partition(&info.name, info.id, index, &config) {
                    Ok(log) => {
                        let part = Partition::new(index, log);
                        take_role(&part);
                        partitions.push(Arc::new(part));
                    }
                    Err(e) => {
                        warn!(topic = %info.name, partition = index, error = %e, "could not open a partition assigned here; it stays offline")
                    }
                }
            }
            if existing.is_some_and(|t| t.config != config) {
                for p in &partitions {
                    p.log.set_config(config.clone());
                }
            }
            if existing.is_none() {
                info!(topic = %info.name, partitions = info.partitions.len(), hosted = partitions.len(), "topic opened");
            }
            let meta_index = match existing.map(|t| t.meta_index) {
                Some(i) if i > 0 => i,
                _ => image.applied,
            };
            next.insert(
                info.name.clone(),
                Arc::new(Topic {
                    name: info.name.clone(),
                    id: info.id,
                    partitions,
                    assignment: Arc::new(info.partitions.clone()),
                    me,
                    meta_index,
                    overrides: info.configs.clone(),
                    config,
                    stats: existing.map(|t| t.stats.clone()).unwrap_or_default(),
                }),
            );
        }
        let changed = next.len() != current.len()
            || next.iter().any(|(n, t)| {
                current.get(n).is_none_or(|c| {
                    c.id != t.id
                        || c.meta_index != t.meta_index
                        || c.overrides != t.overrides
                        || c.assignment.len() != t.assignment.len()
                        || c.partitions.len() != t.partitions.len()
                })
            });
        *self.write() = next;
        if hw_moved.get() {
            self.notify_appended();
        }
        if changed || self.unsaved.load(Ordering::Relaxed) {
            match self.persist() {
                Ok(()) => self.unsaved.store(false, Ordering::Relaxed),
                Err(e) => {
                    self.unsaved.store(true, Ordering::Relaxed);
                    warn!(error = %e, "could not record the hosted topics; trying again at the next change");
                }
            }
        }
        removed
    }

    /// Opens partition `index` of topic `id` here: its directory if it
    /// holds this topic's log (`partition.metadata` says so; the record of
    /// hosted topics may have been lost), else a new one, after setting
    /// aside whatever another topic left there.
    fn open_partition(
        &self,
        name: &str,
        id: Uuid,
        index: i32,
        config: &LogConfig,
    ) -> Result<Arc<Log>, TopicError> {
        let dir = self.data_dir.join(format!("{name}-{index}"));
        if dir.exists() && read_partition_id(&dir) != Some(id) {
            let aside = self.data_dir.join(format!(
                "{name}-{index}.{}-stray",
                read_partition_id(&dir).unwrap_or_else(Uuid::nil).simple()
            ));
            warn!(dir = %dir.display(), to = %aside.display(), "a directory of another topic of the same name is set aside");
            let _ = std::fs::remove_dir_all(&aside);
            std::fs::rename(&dir, &aside).map_err(|e| {
                TopicError::Storage(format!("setting aside {}: {e}", dir.display()))
            })?;
        }
        let log = Arc::new(Log::open_dir(&dir, config.clone(), now_ms())?);
        if read_partition_id(&dir) != Some(id) {
            write_atomic(&dir, PARTITION_METADATA, partition_metadata(id).as_bytes())
                .map_err(|e| TopicError::Storage(format!("writing {}: {e}", dir.display())))?;
        }
        self.flusher.register(&log);
        Ok(log)
    }

    /// Closes a removed topic's partitions and deletes their logs (a stray
    /// one, never in the metadata, is set aside instead, as Kafka does).
    fn remove_logs(&self, topic: &Topic, stray: bool) {
        for p in &topic.partitions {
            // A cleaning pass over it ends first (at its next batch), and
            // nothing writes into the directory any more.
            p.log.retire();
            let dir = p.log.dir().to_owned();
            let result = if stray {
                let aside = dir.with_file_name(format!(
                    "{}-{}.{}-stray",
                    topic.name,
                    p.index,
                    topic.id.simple()
                ));
                warn!(dir = %dir.display(), to = %aside.display(), "a partition the cluster does not know is set aside");
                std::fs::rename(&dir, &aside)
            } else {
                std::fs::remove_dir_all(&dir)
            };
            if let Err(e) = result {
                warn!(dir = %dir.display(), error = %e, "could not remove a deleted topic's partition");
            }
        }
        if !stray {
            info!(topic = %topic.name, "deleted topic");
        }
    }

    /// Runs retention on every partition.
    pub fn apply_retention(&self) {
        let now = now_ms();
        for topic in self.all() {
            for p in &topic.partitions {
                match p.log.apply_retention(now) {
                    Ok(out) if out.segments > 0 => {
                        info!(topic = %topic.name, partition = p.index, segments = out.segments, bytes = out.bytes, "retention deleted segments");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        warn!(topic = %topic.name, partition = p.index, error = %e, "retention failed")
                    }
                }
            }
        }
    }

    /// Closes every log cleanly (writing the clean-shutdown markers).
    pub fn close(self) {
        let Registry {
            topics, flusher, ..
        } = self;
        flusher.stop();
        let topics = topics.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut logs = Vec::new();
        for (_, topic) in topics {
            let Ok(topic) = Arc::try_unwrap(topic) else {
                continue;
            };
            for p in topic.partitions {
                let Ok(p) = Arc::try_unwrap(p) else { continue };
                logs.push((topic.name.clone(), p.index, p.log));
            }
        }
        // Each close waits for a few fsyncs; closing several logs at once
        // lets the file system commit them together, so a broker with
        // many partitions still stops promptly.
        let next = Mutex::new(logs.into_iter());
        let workers = CLOSE_THREADS.min(next.lock().map_or(1, |l| l.len()).max(1));
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        let item = next.lock().ok().and_then(|mut l| l.next());
                        let Some((topic, index, log)) = item else { break };
                        match Arc::try_unwrap(log) {
                            Ok(log) => {
                                if let Err(e) = log.close() {
                                    warn!(%topic, partition = index, error = %e, "clean close failed");
                                }
                            }
                            Err(log) => {
                                // Still referenced (a request in flight): sync at least.
                                let _ = log.checkpoint();
                            }
                        }
                    }
                });
            }
        });
    }
}

/// Logs closed at once at shutdown.
const CLOSE_THREADS: usize = 8;

/// Writes a file atomically: temp file, fsync, rename, directory fsync.
pub(crate) fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        for ok in ["oceanic", "nginx.log", "a_b-c", &"x".repeat(249)] {
            validate_name(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "has space",
            "slash/",
            &"x".repeat(250),
            "ünïcode",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    use weir_meta::{MetaRecord, PartitionRecord};

    fn topic_records(name: &str, id: Uuid, replicas: &[i32]) -> Vec<MetaRecord> {
        let mut out = vec![MetaRecord::Topic {
            name: name.to_owned(),
            id,
        }];
        for (p, r) in replicas.iter().enumerate() {
            out.push(MetaRecord::Partition(PartitionRecord {
                topic: id,
                partition: p as i32,
                replicas: vec![*r],
                isr: vec![*r],
                leader: *r,
                leader_epoch: 0,
                partition_epoch: 0,
            }));
        }
        out
    }

    fn apply(image: &mut Image, records: Vec<MetaRecord>) {
        let index = image.applied + 1;
        for r in records {
            image.apply(index, &r).unwrap();
        }
    }

    #[test]
    fn the_registry_follows_the_image_and_survives_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = Registry::open(tmp.path(), LogConfig::default()).unwrap();
        let mut image = Image::default();
        apply(&mut image, vec![MetaRecord::Migrated]);
        let orders = Uuid::new_v4();
        // Partitions 0 and 2 here (broker 1), 1 on broker 2.
        apply(&mut image, topic_records("orders", orders, &[1, 2, 1]));
        apply(
            &mut image,
            vec![MetaRecord::Config {
                resource: weir_meta::ConfigResource::Topic("orders".into()),
                name: "retention.ms".into(),
                value: Some("1000".into()),
            }],
        );
        assert!(reg.apply_image(&image, 1).is_empty());
        let t = reg.get("orders").unwrap();
        assert_eq!(t.id, orders);
        assert_eq!(t.partition_count(), 3);
        assert_eq!(t.partitions.len(), 2);
        assert!(t.led(0).is_ok() && t.led(2).is_ok());
        assert_eq!(
            t.led(1).unwrap_err(),
            Unled::NotLeader {
                leader: 2,
                epoch: 0
            }
        );
        assert_eq!(t.led(3).unwrap_err(), Unled::Unknown);
        // A leadership change reaches the log: new batches carry the epoch.
        apply(
            &mut image,
            vec![MetaRecord::PartitionChange(weir_meta::PartitionChange {
                topic: orders,
                partition: 0,
                leader: Some(-1),
                isr: None,
                replicas: None,
            })],
        );
        apply(
            &mut image,
            vec![MetaRecord::PartitionChange(weir_meta::PartitionChange {
                topic: orders,
                partition: 0,
                leader: Some(1),
                isr: None,
                replicas: None,
            })],
        );
        reg.apply_image(&image, 1);
        let t = reg.get("orders").unwrap();
        assert_eq!(t.leader_epoch(0), 2);
        let mut b = weir_log::batch::encode_batch(&[weir_log::batch::Record {
            timestamp: 1,
            key: None,
            value: Some(b"e".to_vec()),
            headers: vec![],
        }]);
        t.led(0).unwrap().log.append(&mut b, 1).unwrap();
        assert_eq!(
            weir_log::batch::BatchHeader::parse(&b)
                .unwrap()
                .partition_leader_epoch,
            2
        );
        assert_eq!(t.config.retention_ms, Some(1000));
        assert!(tmp.path().join("orders-2").exists() && !tmp.path().join("orders-1").exists());
        assert!(matches!(
            reg.check_new("orders", 1, &BTreeMap::new()),
            Err(TopicError::Exists(_))
        ));
        assert!(matches!(
            reg.check_new("bad name", 1, &BTreeMap::new()),
            Err(TopicError::InvalidName(..))
        ));
        let mut bad = BTreeMap::new();
        bad.insert("retention.ms".to_owned(), "soon".to_owned());
        assert!(matches!(
            reg.check_new("x", 1, &bad),
            Err(TopicError::InvalidConfig(_))
        ));
        reg.close();

        // Reopened with an image that is behind (as after a crash, before
        // the log is replayed): the topic is kept, not deleted.
        let reg = Registry::open(tmp.path(), LogConfig::default()).unwrap();
        let mut behind = Image::default();
        apply(&mut behind, vec![MetaRecord::Migrated]);
        reg.apply_image(&behind, 1);
        assert!(tmp.path().join("orders-0").exists());
        reg.apply_image(&image, 1);
        assert_eq!(reg.get("orders").unwrap().partitions.len(), 2);

        // Removed, then re-created under the same name: fresh logs.
        apply(&mut image, vec![MetaRecord::RemoveTopic { id: orders }]);
        assert_eq!(reg.apply_image(&image, 1), vec!["orders".to_owned()]);
        assert!(reg.get("orders").is_none() && !tmp.path().join("orders-0").exists());
        let again = Uuid::new_v4();
        apply(&mut image, topic_records("orders", again, &[1]));
        reg.apply_image(&image, 1);
        assert_eq!(reg.get("orders").unwrap().id, again);
        reg.close();
        let reg = Registry::open(tmp.path(), LogConfig::default()).unwrap();
        reg.apply_image(&image, 1);
        let t = reg.get_by_id(again).unwrap();
        assert_eq!(t.partitions.len(), 1);
        t.partitions[0]
            .log
            .append(
                &mut weir_log::batch::encode_batch(&[weir_log::batch::Record {
                    timestamp: 1,
                    key: None,
                    value: Some(b"kept".to_vec()),
                    headers: vec![],
                }]),
                1,
            )
            .unwrap();
        drop(t);
        reg.close();

        // The record of hosted topics lost: the directory says whose it
        // is, and its data is kept.
        std::fs::remove_file(tmp.path().join("topics.toml")).unwrap();
        let reg = Registry::open(tmp.path(), LogConfig::default()).unwrap();
        reg.apply_image(&image, 1);
        assert_eq!(
            reg.get("orders").unwrap().partitions[0]
                .log
                .log_end_offset(),
            1
        );
        reg.close();

        // A directory of another topic under the name is set aside.
        let mut other = Image::default();
        apply(&mut other, vec![MetaRecord::Migrated]);
        apply(&mut other, topic_records("orders", Uuid::new_v4(), &[1]));
        std::fs::remove_file(tmp.path().join("topics.toml")).unwrap();
        let reg2 = Registry::open(tmp.path(), LogConfig::default()).unwrap();
        reg2.apply_image(&other, 1);
        assert_eq!(
            reg2.get("orders").unwrap().partitions[0]
                .log
                .log_end_offset(),
            0
        );
        assert!(std::fs::read_dir(tmp.path()).unwrap().any(|e| {
            e.unwrap().file_name().to_string_lossy() == format!("orders-0.{}-stray", again.simple())
        }));
        reg2.close();
    }

    #[test]
    fn a_one_node_directory_waits_for_its_import_and_strays_are_set_aside() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("topics.toml"),
            "[[topics]]\nname = \"old\"\nid = \"5a0c8b8e-8d0e-4d6e-9a43-7d1d6a2f0c11\"\npartitions = 2\n",
        )
        .unwrap();
        let reg = Registry::open(tmp.path(), LogConfig::default()).unwrap();
        assert_eq!(reg.get("old").unwrap().partitions.len(), 2);
        // Not imported yet: kept.
        reg.apply_image(&Image::default(), 1);
        assert!(reg.get("old").is_some());
        // The cluster was formed without it: set aside, not deleted.
        let mut image = Image::default();
        apply(&mut image, vec![MetaRecord::Migrated]);
        reg.apply_image(&image, 1);
        assert!(reg.get("old").is_none());
        assert!(!tmp.path().join("old-0").exists());
        let aside = std::fs::read_dir(tmp.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with("-stray")
            })
            .count();
        assert_eq!(aside, 2);
        reg.close();
    }
}

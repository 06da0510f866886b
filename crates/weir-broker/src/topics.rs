//! The topic registry: topics, their ids, partitions and config overrides,
//! persisted in `<data-dir>/topics.toml` and backed by one `weir-log` log
//! per partition in `<data-dir>/<topic>-<partition>/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};
use uuid::Uuid;
use weir_log::{Flusher, Log, LogConfig, LogError};

use crate::error::BrokerError;

/// One partition: its log and where it belongs.
#[derive(Debug)]
pub struct Partition {
    /// Partition index.
    pub index: i32,
    /// The log.
    pub log: Arc<Log>,
}

/// A topic as it is now. Changes replace the whole `Arc<Topic>`; the
/// partitions are shared between versions.
#[derive(Debug, Clone)]
pub struct Topic {
    /// Name.
    pub name: String,
    /// Topic id (KIP-516).
    pub id: Uuid,
    /// Partitions, by index.
    pub partitions: Vec<Arc<Partition>>,
    /// Topic-level config overrides, by Kafka name.
    pub overrides: BTreeMap<String, String>,
    /// Effective log config (broker defaults + overrides).
    pub config: LogConfig,
    /// Traffic counters, shared by every version of this topic and gone
    /// with it when it is deleted.
    pub stats: Arc<crate::metrics::TopicStats>,
}

impl Topic {
    /// `min.insync.replicas`: an acks=all produce needs this many in-sync
    /// replicas.
    pub fn min_insync_replicas(&self) -> i32 {
        self.overrides
            .get("min.insync.replicas")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(1)
    }
}

/// What `topics.toml` holds per topic.
#[derive(Debug, Serialize, Deserialize)]
struct StoredTopic {
    name: String,
    id: String,
    partitions: i32,
    #[serde(default)]
    configs: BTreeMap<String, String>,
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
    change: tokio::sync::Mutex<()>,
    /// Bumped after every append, so long-polling fetches wake up.
    appended: watch::Sender<u64>,
    flusher: Flusher,
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
            let mut partitions = Vec::new();
            for p in 0..t.partitions {
                let log = Arc::new(Log::open_dir(
                    data_dir.join(format!("{}-{p}", t.name)),
                    config.clone(),
                    now_ms(),
                )?);
                flusher.register(&log);
                partitions.push(Arc::new(Partition { index: p, log }));
            }
            info!(topic = %t.name, partitions = t.partitions, "opened topic");
            topics.insert(
                t.name.clone(),
                Arc::new(Topic {
                    name: t.name,
                    id,
                    partitions,
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
            change: tokio::sync::Mutex::new(()),
            appended,
            flusher,
        })
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
                    partitions: t.partitions.len() as i32,
                    configs: t.overrides.clone(),
                })
                .collect(),
        };
        let text = toml::to_string(&stored).map_err(|e| TopicError::Storage(e.to_string()))?;
        write_atomic(&self.data_dir, "topics.toml", text.as_bytes())
            .map_err(|e| TopicError::Storage(format!("writing topics.toml: {e}")))
    }

    /// Creates a topic. `validate_only` checks without creating.
    pub async fn create(
        &self,
        name: &str,
        partitions: i32,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, TopicError> {
        validate_name(name)?;
        if partitions < 1 {
            return Err(TopicError::InvalidPartitions(format!(
                "number of partitions must be at least 1, got {partitions}"
            )));
        }
        let config = effective(&self.defaults, &overrides)?;
        let _guard = self.change.lock().await;
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
        let topic = Topic {
            name: name.to_owned(),
            id: Uuid::new_v4(),
            partitions: Vec::new(),
            overrides,
            config,
            stats: Arc::default(),
        };
        if validate_only {
            return Ok(Arc::new(topic));
        }
        let topic = self.with_partitions(topic, partitions)?;
        self.write().insert(name.to_owned(), topic.clone());
        if let Err(e) = self.persist() {
            self.write().remove(name);
            return Err(e);
        }
        info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// Adds partitions up to `count` to a copy of `topic`.
    fn with_partitions(&self, mut topic: Topic, count: i32) -> Result<Arc<Topic>, TopicError> {
        for p in topic.partitions.len() as i32..count {
            let dir = self.data_dir.join(format!("{}-{p}", topic.name));
            if dir.exists() {
                // Left over from a topic deleted while the broker was down.
                let _ = std::fs::remove_dir_all(&dir);
            }
            let log = Arc::new(Log::open_dir(dir, topic.config.clone(), now_ms())?);
            self.flusher.register(&log);
            topic.partitions.push(Arc::new(Partition { index: p, log }));
        }
        Ok(Arc::new(topic))
    }

    /// Opens an internal topic at start-up, creating it if missing.
    pub fn ensure(
        &self,
        name: &str,
        partitions: i32,
        overrides: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, TopicError> {
        if let Some(t) = self.get(name) {
            return Ok(t);
        }
        let config = effective(&self.defaults, &overrides)?;
        let topic = Topic {
            name: name.to_owned(),
            id: Uuid::new_v4(),
            partitions: Vec::new(),
            overrides,
            config,
            stats: Arc::default(),
        };
        let topic = self.with_partitions(topic, partitions)?;
        self.write().insert(name.to_owned(), topic.clone());
        self.persist()?;
        info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// Grows a topic to `count` partitions (CreatePartitions).
    pub async fn add_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _guard = self.change.lock().await;
        let topic = self
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_owned()))?;
        let now = topic.partitions.len() as i32;
        if count <= now {
            return Err(TopicError::InvalidPartitions(format!(
                "topic {name} has {now} partitions; the new count must be larger, got {count}"
            )));
        }
        if validate_only {
            return Ok(());
        }
        let grown = self.with_partitions((*topic).clone(), count)?;
        self.write().insert(name.to_owned(), grown);
        self.persist()?;
        info!(topic = name, from = now, to = count, "added partitions");
        Ok(())
    }

    /// Replaces a topic's config overrides (AlterConfigs semantics).
    pub async fn set_overrides(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let _guard = self.change.lock().await;
        let topic = self
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_owned()))?;
        let config = effective(&self.defaults, &overrides)?;
        if validate_only {
            return Ok(());
        }
        for p in &topic.partitions {
            p.log.set_config(config.clone());
        }
        let mut changed = (*topic).clone();
        changed.overrides = overrides;
        changed.config = config;
        self.write().insert(name.to_owned(), Arc::new(changed));
        self.persist()?;
        Ok(())
    }

    /// Deletes a topic and its data.
    pub async fn delete(&self, name: &str) -> Result<Uuid, TopicError> {
        let _guard = self.change.lock().await;
        let topic = self
            .write()
            .remove(name)
            .ok_or_else(|| TopicError::Unknown(name.to_owned()))?;
        if let Err(e) = self.persist() {
            self.write().insert(name.to_owned(), topic);
            return Err(e);
        }
        for p in &topic.partitions {
            // A cleaning pass over it ends first (at its next batch).
            p.log.stop_cleaning();
            let dir = p.log.dir().to_owned();
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                warn!(dir = %dir.display(), error = %e, "could not remove a deleted topic's partition");
            }
        }
        info!(topic = name, "deleted topic");
        Ok(topic.id)
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

    #[tokio::test]
    async fn topics_survive_reopen_with_ids_and_configs() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = Registry::open(tmp.path(), LogConfig::default()).unwrap();
        let mut cfg = BTreeMap::new();
        cfg.insert("retention.ms".to_owned(), "1000".to_owned());
        let t = reg.create("orders", 3, cfg, false).await.unwrap();
        assert!(matches!(
            reg.create("orders", 1, BTreeMap::new(), false).await,
            Err(TopicError::Exists(_))
        ));
        assert!(matches!(
            reg.create("bad name", 1, BTreeMap::new(), false).await,
            Err(TopicError::InvalidName(..))
        ));
        let mut bad = BTreeMap::new();
        bad.insert("retention.ms".to_owned(), "soon".to_owned());
        assert!(matches!(
            reg.create("x", 1, bad, false).await,
            Err(TopicError::InvalidConfig(_))
        ));
        reg.add_partitions("orders", 5, false).await.unwrap();
        reg.close();
        let reg = Registry::open(tmp.path(), LogConfig::default()).unwrap();
        let again = reg.get("orders").unwrap();
        assert_eq!(again.id, t.id);
        assert_eq!(again.partitions.len(), 5);
        assert_eq!(again.config.retention_ms, Some(1000));
        assert!(reg.get_by_id(t.id).is_some());
        reg.delete("orders").await.unwrap();
        assert!(!tmp.path().join("orders-0").exists());
        reg.close();
        let reg = Registry::open(tmp.path(), LogConfig::default()).unwrap();
        assert!(reg.all().is_empty());
        reg.close();
    }
}

//! `weir-broker`: the Kafka wire-protocol server on top of `weir-log`.
//!
//! * `server`: the one place that reads and writes Kafka frames
//!   (length prefix, request header, response header), per connection.
//! * `handlers`: one module per API area; each turns wire types into calls
//!   on the topic registry and logs, and the results back into responses.
//! * `cluster`: the broker's side of the metadata quorum: registration,
//!   heartbeats, and the registry kept equal to the metadata image.
//! * `topics`: the topic registry (names, ids, partitions, configs), as
//!   the metadata image says, with the logs hosted here.
//! * `topic_config`: Kafka's topic configs, their types, synonyms and what
//!   this broker does with each.
//! * `config`: broker settings under Kafka's names.
//! * `error`: the one mapping from storage errors to Kafka error codes.
//!
//! Architecture invariant: no pipeline or SQL code lives here; storage is
//! reached only through `weir-log`.

mod admin;
pub mod alloc;
pub mod cleaner;
pub mod cluster;
pub mod config;
pub mod error;
pub mod groups;
mod handlers;
mod meta;
pub mod metrics;
pub mod null;
mod producers;
pub mod replica;
pub mod security;
mod server;
mod topic_config;
pub mod topics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

pub use config::BrokerConfig;
pub use error::{BrokerError, ConfigError};
pub use meta::ClusterMeta;
use topics::Registry;

/// Shared state of a running broker.
#[derive(Debug)]
pub struct Broker {
    config: BrokerConfig,
    meta: ClusterMeta,
    topics: Arc<Registry>,
    cluster: Arc<cluster::Cluster>,
    producer_ids: producers::ProducerIds,
    groups: Arc<groups::coordinators::Coordinators>,
    fetchers: Arc<replica::Fetchers>,
    metrics: metrics::BrokerMetrics,
    /// The reconcile and heartbeat tasks.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Consumer lag of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Committed offset.
    pub committed: i64,
    /// Log end offset (`None` if the partition no longer exists).
    pub end: Option<u64>,
    /// End minus committed.
    pub lag: Option<u64>,
}

/// The internal topic holding committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

impl Broker {
    /// Opens the data directory and joins the metadata quorum: registers,
    /// waits to be unfenced, imports a one-node data directory at its
    /// first start, and opens every topic the image assigns here.
    pub async fn open(config: BrokerConfig) -> Result<Self, BrokerError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| BrokerError::Io {
            what: "creating",
            path: config.data_dir.clone(),
            source,
        })?;
        config.kraft.check()?;
        let node_id = config
            .kraft
            .node_id
            .or_else(|| config.kraft.voters.first().map(|v| v.0));
        let meta = ClusterMeta::load_or_create(&config.data_dir, node_id)?;
        let topics = Arc::new(
            Registry::open(&config.data_dir, config.log_defaults.clone())?
                .with_replication(config.replication),
        );
        let cluster = Arc::new(cluster::Cluster::start(&config, meta.node_id).await?);
        let coordinators = Arc::new(
            groups::coordinators::Coordinators::new(config.group_limits)
                .with_registry(topics.clone()),
        );
        let inter_broker = config.inter_broker_listener_name();
        let local = config
            .client_binds()
            .into_iter()
            .find(|(name, _)| *name == inter_broker)
            .map(|(_, addr)| addr.ip());
        let fetchers = Arc::new(replica::Fetchers::new(
            meta.node_id,
            config.replication,
            inter_broker,
            local,
            cluster.clone(),
        ));
        let mut tasks = vec![tokio::spawn(cluster.clone().reconcile(topics.clone(), {
            let (groups, topics, fetchers) =
                (coordinators.clone(), topics.clone(), fetchers.clone());
            move |image: &weir_meta::Image, gone: Vec<String>| {
                groups.follow(topics.get(OFFSETS_TOPIC).as_deref());
                for t in gone {
                    groups.forget_topic(&t);
                }
                fetchers.update(&topics, image);
            }
        }))];
        cluster.join().await;
        let image = cluster.image();
        if !image.migrated || image.cluster_id.is_none() {
            // Every topic of this directory: a one-node version's, or this
            // node's own after its metadata log was lost.
            let old: Vec<_> = topics
                .all()
                .into_iter()
                .filter(|t| !image.topics.contains_key(&t.id))
                .map(|t| {
                    let count = t.partitions.iter().map(|p| p.index + 1).max().unwrap_or(0);
                    (t.name.clone(), t.id, count, t.overrides.clone())
                })
                .collect();
            if !old.is_empty() {
                info!(
                    topics = old.len(),
                    "importing the topics of this data directory into the cluster metadata"
                );
            }
            let answer = cluster
                .request(weir_meta::Request::Migrate {
                    broker: meta.node_id,
                    topics: old,
                    next_producer_id: producers::legacy_next(&config.data_dir)?,
                    cluster_id: meta.cluster_id.clone(),
                })
                .await
                .map_err(|e| BrokerError::Cluster(e.to_string()))?;
            if let weir_meta::Answer::Refused(e) = answer {
                return Err(BrokerError::Cluster(format!("importing the topics: {e}")));
            }
        }
        let meta = match cluster.image().cluster_id.clone() {
            Some(id) if meta.provisional => {
                if id != meta.cluster_id {
                    info!(cluster_id = %id, "taking the cluster id of the metadata quorum");
                }
                ClusterMeta::adopt(&config.data_dir, id)?
            }
            Some(id) if id != meta.cluster_id => {
                return Err(BrokerError::Cluster(format!(
                    "this data directory belongs to cluster {}, but the metadata quorum is cluster {id}: a node cannot move between clusters (start it with an empty data directory)",
                    meta.cluster_id
                )));
            }
            _ => meta,
        };
        cluster.reconcile_now(topics.clone()).await;
        match security::bootstrap::apply(&cluster, &config.data_dir).await {
            Ok(0) => {}
            Ok(n) => info!(credentials = n, "SCRAM users of the bootstrap file stored"),
            Err(e) => {
                tracing::warn!(error = %e, "the SCRAM users of the bootstrap file were not stored; retried at the next start")
            }
        }
        coordinators.follow(topics.get(OFFSETS_TOPIC).as_deref());
        fetchers.update(&topics, &cluster.image());
        tasks.push(tokio::spawn(cluster.clone().heartbeats()));
        tasks.push(tokio::spawn(replica::isr::shrink_task(
            cluster.clone(),
            topics.clone(),
        )));
        Ok(Self {
            config,
            meta,
            topics,
            cluster,
            producer_ids: producers::ProducerIds::default(),
            groups: coordinators,
            fetchers,
            metrics: metrics::BrokerMetrics::default(),
            tasks,
        })
    }

    /// Creates `__consumer_offsets` if it does not exist yet, as Kafka
    /// does at the first FindCoordinator (so its partitions spread over
    /// the brokers that are up by then, not only the first one).
    pub async fn ensure_offsets_topic(&self) -> Result<(), topics::TopicError> {
        if self.topics.get(OFFSETS_TOPIC).is_some() {
            return Ok(());
        }
        let mut compact = std::collections::BTreeMap::new();
        compact.insert("cleanup.policy".to_owned(), "compact".to_owned());
        // Small segments, so compaction can drop whole ones soon.
        compact.insert("segment.bytes".to_owned(), "16777216".to_owned());
        let answer = self
            .cluster
            .request(weir_meta::Request::CreateTopic {
                name: OFFSETS_TOPIC.to_owned(),
                partitions: self.config.offsets_topic_partitions,
                // Capped at the brokers alive now, as Kafka does.
                replication_factor: self
                    .config
                    .replication
                    .offsets_topic_replication_factor
                    .min(self.cluster.image().live_brokers().len().max(1) as i16),
                configs: compact,
                id: uuid::Uuid::new_v4(),
            })
            .await?;
        match answer {
            weir_meta::Answer::Done
            | weir_meta::Answer::Refused(weir_meta::MetaError::TopicExists(_)) => Ok(()),
            other => Err(topics::TopicError::Storage(format!(
                "creating {OFFSETS_TOPIC}: {other:?}"
            ))),
        }
    }

    /// The broker's place in the cluster.
    pub fn cluster(&self) -> &cluster::Cluster {
        &self.cluster
    }

    /// The cluster, shared (for tasks that outlive a request).
    pub(crate) fn cluster_shared(&self) -> &Arc<cluster::Cluster> {
        &self.cluster
    }

    /// Request, connection and per-topic counters.
    pub fn metrics(&self) -> &metrics::BrokerMetrics {
        &self.metrics
    }

    /// The topic registry.
    pub fn topics(&self) -> &Registry {
        &self.topics
    }

    /// Producer id allocation.
    pub(crate) fn producer_ids(&self) -> &producers::ProducerIds {
        &self.producer_ids
    }

    /// The group coordinators of this broker (one per `__consumer_offsets`
    /// partition it leads).
    pub fn groups(&self) -> &groups::coordinators::Coordinators {
        &self.groups
    }

    /// Cluster and node ids.
    pub fn meta(&self) -> &ClusterMeta {
        &self.meta
    }

    /// Settings.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// Per partition with a committed offset in `group`: the committed
    /// offset, the log end offset and the lag between them.
    pub fn group_lag(&self, group: &str) -> Vec<PartitionLag> {
        let Some(coordinator) = self.groups.for_group(group) else {
            return Vec::new();
        };
        coordinator
            .offsets
            .of_group(group)
            .into_iter()
            .map(|(topic, partition, c)| {
                let end = self
                    .topics
                    .get(&topic)
                    .and_then(|t| t.led(partition).ok().map(|p| p.high_watermark()));
                PartitionLag {
                    lag: end.map(|e| e.saturating_sub(c.offset.max(0) as u64)),
                    topic,
                    partition,
                    committed: c.offset,
                    end,
                }
            })
            .collect()
    }

    /// Leaves the cluster (a controlled shutdown) and stops the
    /// metadata node; the logs stay open until [`Broker::close`].
    pub async fn leave(&self) {
        for t in &self.tasks {
            t.abort();
        }
        self.fetchers.stop();
        self.cluster.shutdown().await;
    }

    /// Closes every partition cleanly.
    pub fn close(self) {
        let Broker {
            topics,
            groups,
            tasks,
            ..
        } = self;
        drop(tasks);
        drop(groups);
        match Arc::try_unwrap(topics) {
            Ok(topics) => topics.close(),
            Err(_) => tracing::warn!(
                "the topic registry is still in use at shutdown; logs will be recovered at the next start"
            ),
        }
    }
}

/// Resolves once `rx` holds `true` (or its sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Decodes one request frame (without its length prefix) exactly as the
/// server does, returning the API and version, or why it was refused.
/// The entry point of the request-decoding fuzz target.
pub fn decode_request(frame: bytes::Bytes) -> Result<(i16, i16), String> {
    match server::decode(frame).map_err(|e| e.to_string())? {
        server::Decoded::Request(r) => Ok((r.api as i16, r.version)),
        server::Decoded::ApiVersionsFallback { .. } => Ok((18, 0)),
        server::Decoded::OldProduce { version, .. } => Ok((0, version)),
    }
}

/// How long a controlled shutdown waits for the controller to move this
/// broker's leaderships before the broker stops anyway.
const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// A broker listening on its socket.
#[derive(Debug)]
pub struct RunningBroker {
    /// Where it listens (the bound address, useful with port 0).
    pub addr: SocketAddr,
    broker: Arc<Broker>,
    /// Every client listener, by name.
    listeners: Vec<(Arc<str>, TcpListener)>,
}

impl RunningBroker {
    /// Opens the data directory and binds the listeners. If a configured
    /// port is 0 the bound port is also what Metadata advertises.
    pub async fn bind(mut config: BrokerConfig) -> Result<Self, BrokerError> {
        let mut bound = Vec::new();
        for (name, want) in config.client_binds() {
            let failed = |source| BrokerError::Io {
                what: "binding",
                path: want.to_string().into(),
                source,
            };
            let listener = TcpListener::bind(want).await.map_err(failed)?;
            let addr = listener.local_addr().map_err(failed)?;
            bound.push((name, addr, listener));
        }
        let addr = bound[0].1;
        config.listen = addr;
        config.more_listeners = bound[1..]
            .iter()
            .map(|(name, addr, _)| (name.clone(), *addr))
            .collect();
        let listeners = bound
            .into_iter()
            .map(|(name, _, l)| (Arc::from(name.as_str()), l))
            .collect();
        let broker = Arc::new(Broker::open(config).await?);
        Ok(Self {
            addr,
            broker,
            listeners,
        })
    }

    /// The shared broker state.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Serves until `shutdown` turns true, then closes every log cleanly.
    pub async fn serve(self, mut shutdown: watch::Receiver<bool>) -> Result<(), BrokerError> {
        let Self {
            addr,
            broker,
            listeners,
        } = self;
        info!(%addr, cluster_id = %broker.meta.cluster_id, node_id = broker.meta.node_id, "broker listening");
        let retention = {
            let broker = broker.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(
                    broker.config.retention_check_interval_ms,
                ));
                loop {
                    tick.tick().await;
                    let b = broker.clone();
                    let _ = tokio::task::spawn_blocking(move || b.topics.apply_retention()).await;
                }
            })
        };
        let groups = {
            let broker = broker.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                let mut n = 0u64;
                loop {
                    tick.tick().await;
                    broker.groups.tick();
                    n += 1;
                    if n.is_multiple_of(600) {
                        let b = broker.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            b.groups.expire_offsets(b.config.offsets_retention_ms);
                        })
                        .await;
                    }
                }
            })
        };
        let cleaner = cleaner::LogCleaner::start(broker.clone());
        // Connections close on `close`, after a controlled shutdown has
        // moved this broker's leaderships while clients were still served.
        let (close_tx, close) = watch::channel(false);
        let connections: Vec<_> = listeners
            .into_iter()
            .map(|(name, l)| {
                tokio::spawn(server::accept_loop(broker.clone(), name, l, close.clone()))
            })
            .collect();
        stopped(&mut shutdown).await;
        broker
            .cluster
            .controlled_shutdown(CONTROLLED_SHUTDOWN_TIMEOUT)
            .await;
        let _ = close_tx.send(true);
        for c in connections {
            let _ = c.await;
        }
        retention.abort();
        groups.abort();
        broker.leave().await;
        if let Some(c) = cleaner {
            // A running pass stops at its next batch.
            let _ = tokio::task::spawn_blocking(move || c.stop()).await;
        }
        // Let in-flight requests drop their references to the logs.
        for _ in 0..50 {
            if Arc::strong_count(&broker) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        match Arc::try_unwrap(broker) {
            Ok(broker) => tokio::task::spawn_blocking(move || broker.close())
                .await
                .unwrap_or_default(),
            Err(_) => tracing::warn!(
                "requests still running at shutdown; logs will be recovered at the next start"
            ),
        }
        info!("broker stopped");
        Ok(())
    }
}

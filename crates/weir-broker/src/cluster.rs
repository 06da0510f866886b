//! The broker's side of the metadata quorum (docs/design/cluster.md).
//!
//! Every broker runs a [`MetaNode`] (`weir-meta`): with no quorum
//! configured it is a one-voter quorum of itself, on a loopback port only
//! it uses, so a single broker behaves as before. Around it:
//!
//! * registration: at start the broker registers (a new incarnation per
//!   process, its advertised listeners) and heartbeats until the controller
//!   unfences it; only then does it serve clients, as Kafka's brokers do;
//! * heartbeats every `broker.heartbeat.interval.ms`, re-registering if
//!   the controller no longer knows this registration; a controlled
//!   shutdown heartbeat at stop moves leadership away first;
//! * reconciliation: every applied image is applied to the topic
//!   [`Registry`] (logs opened, configs changed, removed topics deleted),
//!   and [`Cluster::request`] answers an admin change only once the
//!   registry here shows it (invariant M6).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};
use uuid::Uuid;
use weir_meta::node::{MetaNode, NodeConfig};
use weir_meta::{Answer, ControllerConfig, Endpoint, Image, MetaError, Request};

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::topics::{Registry, TopicError};

/// How long an admin change may wait for the quorum.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The directory of the metadata log, under the data directory (Kafka's name).
pub const METADATA_DIR: &str = "__cluster_metadata-0";

/// A broker as the metadata shows it (the console's Brokers page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerStatus {
    /// Broker id.
    pub id: i32,
    /// Where clients reach it (listener, host, port).
    pub endpoints: Vec<(String, String, u16)>,
    /// Its broker epoch.
    pub epoch: u64,
    /// Fenced: no heartbeat within the session timeout (or shutting down).
    pub fenced: bool,
    /// It is the active controller.
    pub controller: bool,
    /// Partitions it leads.
    pub leads: usize,
    /// Partitions it holds a replica of.
    pub replicas: usize,
}

/// This broker in the cluster.
#[derive(Debug)]
pub struct Cluster {
    node: MetaNode,
    me: i32,
    incarnation: Uuid,
    /// The broker epoch of the current registration (0: none yet).
    epoch: AtomicU64,
    endpoints: Vec<Endpoint>,
    /// Where this node's metadata node listens, when it is not a voter
    /// (the controller adds it as a learner).
    raft_addr: Option<String>,
    heartbeat: Duration,
    /// The image index the registry reflects.
    reconciled: watch::Sender<u64>,
    /// A controlled shutdown began: heartbeats say so (and never ask to
    /// be unfenced again).
    leaving: std::sync::atomic::AtomicBool,
}

/// Runs a controller-only node (`process.roles=controller`): a voter of
/// the metadata quorum serving no clients, until `shutdown` turns true.
pub async fn run_controller(
    config: BrokerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), BrokerError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| BrokerError::Io {
        what: "creating",
        path: config.data_dir.clone(),
        source,
    })?;
    config.kraft.check()?;
    let meta = crate::ClusterMeta::load_or_create(&config.data_dir, config.kraft.node_id)?;
    let node = MetaNode::start(
        node_config(&config, meta.node_id)?,
        Arc::new(weir_log::FsStorage),
    )
    .await
    .map_err(|e| BrokerError::Cluster(e.to_string()))?;
    info!(node_id = meta.node_id, addr = %node.local_addr(), "controller running");
    crate::stopped(&mut shutdown).await;
    node.shutdown().await;
    info!("controller stopped");
    Ok(())
}

/// The settings of the metadata node of a broker.
fn node_config(config: &BrokerConfig, me: i32) -> Result<NodeConfig, BrokerError> {
    let kraft = &config.kraft;
    let bad = |reason: String| {
        BrokerError::Config(crate::ConfigError::Invalid {
            key: "listeners".to_owned(),
            value: String::new(),
            reason,
        })
    };
    let listen: SocketAddr = match kraft.controller_listener() {
        Some(l) => crate::config::resolve(l).map_err(bad)?,
        // A broker-only node: beside its broker listener, a port of its own
        // (it tells the controller at registration).
        None if !kraft.voters.is_empty() => SocketAddr::new(config.listen.ip(), 0),
        // A quorum of one: nobody else connects.
        None => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let voters: BTreeMap<u64, String> = if kraft.voters.is_empty() {
        BTreeMap::from([(me as u64, listen.to_string())])
    } else {
        kraft
            .voters
            .iter()
            .map(|(id, host, port)| (*id as u64, format!("{host}:{port}")))
            .collect()
    };
    let single = voters.len() == 1 && voters.contains_key(&(me as u64));
    let mut node = NodeConfig::new(
        me as u64,
        voters,
        listen,
        config.data_dir.join(METADATA_DIR),
    );
    node.controller = ControllerConfig {
        session_timeout_ms: config.session_timeout_ms as i64,
        default_replication_factor: config.replication.default_replication_factor,
        default_partitions: config.num_partitions,
        auto_leader_rebalance: config.replication.auto_leader_rebalance,
        leader_imbalance_check_interval_ms: config
            .replication
            .leader_imbalance_check_interval_s
            .saturating_mul(1000),
        leader_imbalance_per_broker_percentage: config
            .replication
            .leader_imbalance_per_broker_percentage,
        unclean_leader_election: config.replication.unclean_leader_election,
    };
    if single {
        // Nobody to wait for: elect at once.
        node.election_ms = (150, 300);
        node.heartbeat_ms = 50;
    }
    Ok(node)
}

impl Cluster {
    /// Starts the metadata node of broker `me`.
    pub async fn start(config: &BrokerConfig, me: i32) -> Result<Self, BrokerError> {
        let node_config = node_config(config, me)?;
        let voter = config.kraft.voters.is_empty() || config.kraft.voters.iter().any(|v| v.0 == me);
        let node = MetaNode::start(node_config, Arc::new(weir_log::FsStorage))
            .await
            .map_err(|e| BrokerError::Cluster(e.to_string()))?;
        // A broker-only node's metadata endpoint: its CONTROLLER listener
        // as advertised when it has one, else its broker host with the
        // port its metadata node took.
        let raft_addr = (!voter).then(|| {
            config
                .kraft
                .controller_listener()
                .and_then(|l| config.kraft.advertised.iter().find(|a| a.name == l.name))
                .map(|a| format!("{}:{}", a.host, a.port))
                .unwrap_or_else(|| {
                    format!("{}:{}", config.advertised().0, node.local_addr().port())
                })
        });
        let endpoints = config
            .advertised_endpoints()
            .into_iter()
            .map(|(listener, host, port)| Endpoint {
                listener,
                host,
                port,
            })
            .collect();
        let (reconciled, _) = watch::channel(0);
        Ok(Self {
            node,
            me,
            incarnation: Uuid::new_v4(),
            epoch: AtomicU64::new(0),
            endpoints,
            raft_addr,
            heartbeat: Duration::from_millis(config.heartbeat_interval_ms),
            reconciled,
            leaving: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// This broker's id.
    pub fn me(&self) -> i32 {
        self.me
    }

    /// The current broker epoch (0 before registration).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// The applied image.
    pub fn image(&self) -> Arc<Image> {
        self.node.image().borrow().clone()
    }

    /// The active controller, if one is known.
    pub fn controller(&self) -> Option<i32> {
        self.node.leader().map(|l| l as i32)
    }

    /// Every registered broker, by id.
    pub fn brokers(&self) -> Vec<BrokerStatus> {
        let image = self.image();
        let controller = self.controller();
        image
            .brokers
            .values()
            .map(|b| {
                let parts = image.topics.values().flat_map(|t| t.partitions.iter());
                let (mut leads, mut replicas) = (0, 0);
                for p in parts {
                    leads += usize::from(p.leader == b.id);
                    replicas += usize::from(p.replicas.contains(&b.id));
                }
                BrokerStatus {
                    id: b.id,
                    endpoints: b
                        .endpoints
                        .iter()
                        .map(|e| (e.listener.clone(), e.host.clone(), e.port))
                        .collect(),
                    epoch: b.epoch,
                    fenced: b.fenced,
                    controller: controller == Some(b.id),
                    leads,
                    replicas,
                }
            })
            .collect()
    }

    /// Sends a request to the active controller; once it is committed,
    /// waits until the registry here reflects it.
    pub async fn request(&self, request: Request) -> Result<Answer, TopicError> {
        let (answer, index) = self.call(request).await?;
        let mut rx = self.reconciled.subscribe();
        let _ = tokio::time::timeout(REQUEST_TIMEOUT, rx.wait_for(|i| *i >= index)).await;
        Ok(answer)
    }

    /// Sends a request to the active controller and waits for this node's
    /// image to include it; returns the answer and the entry's index.
    async fn call(&self, request: Request) -> Result<(Answer, u64), TopicError> {
        self.node
            .request(request, REQUEST_TIMEOUT)
            .await
            .map_err(|e| TopicError::Timeout(e.to_string()))
    }

    /// Asks the controller to change a partition's ISR (AlterPartition)
    /// as its leader in `leader_epoch`.
    pub async fn alter_partition(
        &self,
        topic: Uuid,
        partition: i32,
        leader_epoch: i32,
        proposal: crate::replica::Proposal,
    ) -> Result<Answer, TopicError> {
        self.call(Request::AlterPartition {
            broker: self.me,
            epoch: self.epoch(),
            topic,
            partition,
            leader_epoch,
            partition_epoch: proposal.partition_epoch,
            isr: proposal.isr,
        })
        .await
        .map(|(answer, _)| answer)
    }

    async fn register(&self) -> Result<u64, TopicError> {
        let (answer, _) = self
            .call(Request::Register {
                broker: self.me,
                incarnation: self.incarnation,
                endpoints: self.endpoints.clone(),
                rack: None,
                raft: self.raft_addr.clone(),
            })
            .await?;
        let epoch = match answer {
            Answer::AlreadyRegistered { epoch } => epoch,
            Answer::Registered => self
                .image()
                .brokers
                .get(&self.me)
                .filter(|b| b.incarnation == self.incarnation)
                .map_or(0, |b| b.epoch),
            other => {
                return Err(TopicError::Storage(format!(
                    "unexpected answer to a registration: {other:?}"
                )));
            }
        };
        self.epoch.store(epoch, Ordering::Relaxed);
        Ok(epoch)
    }

    /// One heartbeat; `Ok(fenced)`.
    async fn heartbeat_once(&self, shutting_down: bool) -> Result<bool, TopicError> {
        let (answer, _) = self
            .call(Request::Heartbeat {
                broker: self.me,
                epoch: self.epoch(),
                applied: self.image().applied,
                shutting_down,
            })
            .await?;
        match answer {
            Answer::Heartbeat { fenced, .. } => Ok(fenced),
            Answer::Refused(MetaError::StaleBrokerEpoch { .. } | MetaError::UnknownBroker(_)) => {
                warn!("the controller no longer knows this registration; registering again");
                self.epoch.store(0, Ordering::Relaxed);
                Ok(true)
            }
            other => Err(TopicError::Storage(format!(
                "unexpected answer to a heartbeat: {other:?}"
            ))),
        }
    }

    /// Registers and heartbeats until unfenced (retrying through elections
    /// and a quorum not formed yet, logging while it waits).
    pub async fn join(&self) {
        let started = tokio::time::Instant::now();
        let mut logged = started;
        loop {
            let done = if self.epoch() == 0 {
                self.register().await.map(|_| false)
            } else {
                self.heartbeat_once(false).await.map(|fenced| !fenced)
            };
            match done {
                Ok(true) => {
                    info!(
                        node_id = self.me,
                        epoch = self.epoch(),
                        "registered with the controller"
                    );
                    return;
                }
                Ok(false) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => {
                    if logged.elapsed() > Duration::from_secs(5) {
                        warn!(error = %e, waited = ?started.elapsed(), "waiting for the metadata quorum");
                        logged = tokio::time::Instant::now();
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Heartbeats forever (run as a task).
    pub async fn heartbeats(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let r = if self.epoch() == 0 {
                self.register().await.map(|_| ())
            } else {
                self.heartbeat_once(self.leaving.load(Ordering::Relaxed))
                    .await
                    .map(|_| ())
            };
            if let Err(e) = r {
                warn!(error = %e, "heartbeat to the controller failed");
            }
        }
    }

    /// Keeps the registry equal to the applied image (run as a task);
    /// `applied` runs after each change, told the topics deleted.
    pub async fn reconcile(
        self: Arc<Self>,
        registry: Arc<Registry>,
        applied: impl Fn(&Image, Vec<String>) + Send + Sync + 'static,
    ) {
        let applied = Arc::new(applied);
        let mut rx = self.node.image();
        loop {
            let image = rx.borrow_and_update().clone();
            let (reg, me) = (registry.clone(), self.me);
            let img = image.clone();
            let then = applied.clone();
            let done =
                tokio::task::spawn_blocking(move || then(&img, reg.apply_image(&img, me))).await;
            if let Err(e) = done {
                warn!(error = %e, "applying the metadata image failed");
            }
            self.reconciled.send_if_modified(|i| {
                let newer = image.applied > *i;
                *i = (*i).max(image.applied);
                newer
            });
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Applies the current image to the registry now (at start, before
    /// the reconcile task runs).
    pub async fn reconcile_now(&self, registry: Arc<Registry>) {
        let image = self.image();
        let me = self.me;
        let img = image.clone();
        let _ = tokio::task::spawn_blocking(move || registry.apply_image(&img, me)).await;
        self.reconciled.send_if_modified(|i| {
            let newer = image.applied > *i;
            *i = (*i).max(image.applied);
            newer
        });
    }

    /// The first step of a controlled shutdown (SIGTERM), while clients
    /// are still served: tells the controller, which moves the
    /// leaderships of this broker to other in-sync replicas and takes it
    /// out of every ISR, then waits until this broker's registry reflects
    /// that, so producers are sent to the new leaders
    /// (NOT_LEADER_OR_FOLLOWER with the new leader) rather than losing
    /// their connection. Nothing to do without another live broker.
    /// Returns how many partitions it still leads (0 when done).
    pub async fn controlled_shutdown(&self, within: Duration) -> usize {
        let image = self.image();
        let others = image.brokers.values().any(|b| b.id != self.me && !b.fenced);
        if self.epoch() == 0 || !others {
            return 0;
        }
        self.leaving.store(true, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + within;
        let request = || Request::Heartbeat {
            broker: self.me,
            epoch: self.epoch(),
            applied: self.image().applied,
            shutting_down: true,
        };
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, self.call(request())).await {
                Ok(Ok((_, index))) => {
                    let mut rx = self.reconciled.subscribe();
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let _ = tokio::time::timeout(left, rx.wait_for(|i| *i >= index)).await;
                    break;
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "controlled shutdown: the controller did not answer; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(_) => break,
            }
        }
        let led = self
            .image()
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| p.leader == self.me && p.replicas.len() > 1)
            .count();
        if led == 0 {
            info!("controlled shutdown: the partitions led here have other leaders");
        } else {
            warn!(led, "controlled shutdown: some partitions still led here");
        }
        led
    }

    /// Leaves the cluster: tells the controller (if a controlled
    /// shutdown did not already), so the partitions led here get other
    /// leaders (or none) before the process goes, then stops the
    /// metadata node.
    pub async fn shutdown(&self) {
        if self.epoch() != 0 {
            let _ = tokio::time::timeout(Duration::from_secs(3), self.heartbeat_once(true)).await;
        }
        self.node.shutdown().await;
    }
}

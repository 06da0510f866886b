//! A metadata node: the Raft group member, the controller role when it is
//! the leader, and the way in for brokers (registration, heartbeats,
//! admin changes), all thin I/O around the pure parts.
//!
//! * The Raft node ([`crate::raft`]) over the node's [`MetaStore`] and the
//!   TCP network ([`crate::network`]) on the controller listener. A voter
//!   whose store is pristine bootstraps the group with every voter of
//!   `controller.quorum.voters` (each pristine voter does the same, with the
//!   same membership, so any of them may come up first).
//! * The controller task: while this node leads, it owns a
//!   [`Controller`], takes one request at a time (local or forwarded),
//!   writes the decision's records as one Raft entry and answers once the
//!   entry is applied, so every decision sees every earlier one; it ticks
//!   (fencing silent brokers) every `tick` interval. On taking over it
//!   first waits until every committed entry is applied.
//! * [`MetaNode::request`] sends a request to the current leader: this
//!   node's controller task or another node's over the wire, retrying
//!   through elections until a deadline.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use weir_log::Storage;

use crate::controller::{Answer, Controller, ControllerConfig, Request};
use crate::image::Image;
use crate::network::{ControllerReply, Network, Peer, Rpc, RpcReply, read_frame, write_frame};
use crate::raft::{Command, LogStore, NodeId, Raft, StateMachine};
use crate::store::MetaStore;

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// `node.id`.
    pub node_id: NodeId,
    /// `controller.quorum.voters`: id -> `host:port` of their controller listener.
    pub voters: BTreeMap<NodeId, String>,
    /// This node's controller listener.
    pub listen: SocketAddr,
    /// The metadata directory.
    pub dir: PathBuf,
    /// The controller's settings.
    pub controller: ControllerConfig,
    /// Raft heartbeat, in ms.
    pub heartbeat_ms: u64,
    /// Raft election timeout range, in ms.
    pub election_ms: (u64, u64),
    /// A snapshot after this many entries.
    pub snapshot_every: u64,
    /// Entries kept in the log behind the latest snapshot (a peer further
    /// behind catches up from the snapshot).
    pub keep_after_snapshot: u64,
    /// Purge the log only once this many entries can go.
    pub purge_batch: u64,
    /// How often the controller looks for silent brokers.
    pub tick: Duration,
}

impl NodeConfig {
    /// Defaults for a node: Raft heartbeat 100 ms, elections after 1-2 s,
    /// a snapshot every 1000 entries, a controller tick every 250 ms.
    pub fn new(
        node_id: NodeId,
        voters: BTreeMap<NodeId, String>,
        listen: SocketAddr,
        dir: PathBuf,
    ) -> Self {
        Self {
            node_id,
            voters,
            listen,
            dir,
            controller: ControllerConfig::default(),
            heartbeat_ms: 100,
            election_ms: (1000, 2000),
            snapshot_every: 1000,
            keep_after_snapshot: 100,
            purge_batch: 64,
            tick: Duration::from_millis(250),
        }
    }
}

/// Why a node could not start or a request could not be served.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The store.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Binding the controller listener.
    #[error("binding the controller listener {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// openraft refused to start.
    #[error("raft: {0}")]
    Raft(String),
    /// No controller answered in time.
    #[error("no active controller answered within {0:?}")]
    NoController(Duration),
}

type Call = (Request, oneshot::Sender<ControllerReply>);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A running metadata node.
pub struct MetaNode {
    id: NodeId,
    addr: SocketAddr,
    raft: Raft,
    image: watch::Receiver<Arc<Image>>,
    calls: mpsc::Sender<Call>,
    voters: BTreeMap<NodeId, String>,
    /// Where connections to the other nodes leave from.
    local: Option<std::net::IpAddr>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for MetaNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaNode")
            .field("id", &self.id)
            .field("leader", &self.leader())
            .finish_non_exhaustive()
    }
}

impl MetaNode {
    /// Opens the store, starts Raft, serves the controller listener and
    /// bootstraps the group if this voter is pristine.
    pub async fn start(config: NodeConfig, storage: Arc<dyn Storage>) -> Result<Self, NodeError> {
        let store = Arc::new(Mutex::new(MetaStore::open(storage, &config.dir)?));
        let sm = StateMachine::open(store.clone())?;
        let image = sm.subscribe();
        let raft_config = Config {
            cluster_name: "weir".to_owned(),
            heartbeat_interval: config.heartbeat_ms,
            election_timeout_min: config.election_ms.0,
            election_timeout_max: config.election_ms.1,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            max_in_snapshot_log_to_keep: config.keep_after_snapshot,
            purge_batch_size: config.purge_batch,
            ..Config::default()
        }
        .validate()
        .map_err(|e| NodeError::Raft(e.to_string()))?;
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            Network {
                local: Some(config.listen.ip()),
            },
            LogStore::new(store),
            sm,
        )
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| NodeError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| NodeError::Bind {
            addr: config.listen,
            source,
        })?;
        let (calls, rx) = mpsc::channel::<Call>(256);
        let tasks = vec![
            tokio::spawn(serve(listener, raft.clone(), calls.clone())),
            tokio::spawn(controller_task(
                config.node_id,
                raft.clone(),
                image.clone(),
                rx,
                config.controller,
                config.tick,
            )),
        ];
        let pristine = !raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        if pristine && config.voters.contains_key(&config.node_id) {
            let members: BTreeMap<NodeId, BasicNode> = config
                .voters
                .iter()
                .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
                .collect();
            if let Err(e) = raft.initialize(members).await {
                tracing::debug!(error = %e, "metadata quorum already initialized");
            }
        }
        Ok(Self {
            id: config.node_id,
            addr,
            raft,
            image,
            calls,
            voters: config.voters,
            local: Some(config.listen.ip()),
            tasks: Mutex::new(tasks),
        })
    }

    /// The image as it changes.
    pub fn image(&self) -> watch::Receiver<Arc<Image>> {
        self.image.clone()
    }

    /// The Raft leader (the active controller) this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Sends `request` to the active controller and waits for its answer
    /// and for this node's image to include it (invariant M6). Returns the
    /// answer and the log index of the entry written (if none, of the last
    /// entry the answer was decided on, which this node has applied too).
    pub async fn request(
        &self,
        request: Request,
        within: Duration,
    ) -> Result<(Answer, u64), NodeError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut peers: BTreeMap<NodeId, Peer> = BTreeMap::new();
        // A node that knows no leader (a learner not added yet) asks the
        // voters in turn, following the leader each one names.
        let voters: Vec<NodeId> = self.voters.keys().copied().collect();
        let mut hint: Option<NodeId> = None;
        let mut turn = 0usize;
        loop {
            if tokio::time::Instant::now() >= deadline {
                return Err(NodeError::NoController(within));
            }
            let target = self.leader().or(hint.take()).or_else(|| {
                turn += 1;
                voters.get(turn % voters.len().max(1)).copied()
            });
            let reply = match target {
                Some(l) if l == self.id => {
                    let (tx, rx) = oneshot::channel();
                    if self.calls.send((request.clone(), tx)).await.is_err() {
                        return Err(NodeError::NoController(within));
                    }
                    // The controller task may be stuck on a write that
                    // cannot commit (no quorum): the deadline still holds.
                    tokio::time::timeout_at(deadline, rx)
                        .await
                        .ok()
                        .and_then(Result::ok)
                }
                Some(l) => match self.voters.get(&l) {
                    Some(addr) => {
                        let peer = peers
                            .entry(l)
                            .or_insert_with(|| Peer::new(l, addr.clone(), self.local));
                        match peer
                            .call(&Rpc::Controller(request.clone()), Duration::from_secs(5))
                            .await
                        {
                            Ok(RpcReply::Controller(r)) => Some(r),
                            _ => None,
                        }
                    }
                    None => None,
                },
                None => None,
            };
            match reply {
                Some(ControllerReply::Answered { answer, index }) => {
                    self.wait_applied(index, deadline).await;
                    return Ok((answer, index));
                }
                Some(ControllerReply::NotController { leader }) => hint = leader,
                None => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_applied(&self, index: u64, deadline: tokio::time::Instant) {
        let mut rx = self.image.clone();
        let _ = tokio::time::timeout_at(deadline, rx.wait_for(|i| i.applied >= index)).await;
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Where this node's quorum listener is bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until some node leads the quorum (`false` if none did
    /// within `within`).
    pub async fn wait_for_leader(&self, within: Duration) -> bool {
        let mut m = self.raft.metrics();
        tokio::time::timeout(within, m.wait_for(|m| m.current_leader.is_some()))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops Raft and every task of the node (a second call does nothing).
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// The controller listener: Raft RPCs and forwarded controller calls.
async fn serve(listener: TcpListener, raft: Raft, calls: mpsc::Sender<Call>) {
    // Dropped with this task: stopping the node closes every connection,
    // as a dead process would.
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (raft, calls) = (raft.clone(), calls.clone());
        while conns.try_join_next().is_some() {}
        conns.spawn(async move {
            while let Ok(rpc) = read_frame::<Rpc>(&mut stream).await {
                let reply = match rpc {
                    Rpc::Append(r) => RpcReply::Append(raft.append_entries(r).await),
                    Rpc::Vote(r) => RpcReply::Vote(raft.vote(r).await),
                    Rpc::Snapshot(r) => RpcReply::Snapshot(raft.install_snapshot(r).await),
                    Rpc::Controller(req) => {
                        let (tx, rx) = oneshot::channel();
                        let r = if calls.send((req, tx)).await.is_ok() {
                            rx.await.ok()
                        } else {
                            None
                        };
                        RpcReply::Controller(
                            r.unwrap_or(ControllerReply::NotController { leader: None }),
                        )
                    }
                };
                if write_frame(&mut stream, &reply).await.is_err() {
                    break;
                }
            }
        });
    }
}

fn leads(raft: &Raft, id: NodeId) -> (bool, Option<NodeId>) {
    let m = raft.metrics().borrow().clone();
    (
        m.state == ServerState::Leader && m.current_leader == Some(id),
        m.current_leader,
    )
}

/// Writes a decision's records as one entry; `Some(index)` once applied,
/// `None` when this node stopped leading.
async fn write(raft: &Raft, records: Vec<crate::record::MetaRecord>) -> Option<u64> {
    // A leader cut off from its quorum cannot commit: give up after a
    // while (the caller retries through whoever leads then; every request
    // is idempotent or harmless to repeat).
    match tokio::time::timeout(WRITE_TIMEOUT, raft.client_write(Command(records))).await {
        Ok(Ok(resp)) => Some(resp.log_id.index),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "metadata write failed; no longer the controller");
            None
        }
        Err(_) => {
            tracing::warn!("a metadata write did not commit within {WRITE_TIMEOUT:?}: no quorum?");
            None
        }
    }
}

/// How long a controller waits for one of its writes to commit.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes a broker that is not a voter a learner of the quorum at `addr`
/// (or moves it there), so it receives the metadata log.
async fn add_learner(raft: &Raft, id: NodeId, addr: &str) {
    use openraft::ChangeMembers;
    let (voter, known) = {
        let m = raft.metrics().borrow().membership_config.clone();
        let membership = m.membership();
        (
            membership.voter_ids().any(|v| v == id),
            membership
                .nodes()
                .find(|(n, _)| **n == id)
                .map(|(_, node)| node.addr.clone()),
        )
    };
    if voter {
        // A voter's address is fixed by controller.quorum.voters.
        return;
    }
    let node = BTreeMap::from([(
        id,
        BasicNode {
            addr: addr.to_owned(),
        },
    )]);
    let change = match known.as_deref() {
        Some(a) if a == addr => return,
        Some(_) => ChangeMembers::SetNodes(node),
        None => ChangeMembers::AddNodes(node),
    };
    if let Err(e) = raft.change_membership(change, false).await {
        tracing::warn!(node = id, error = %e, "could not add a broker to the metadata quorum as a learner");
    }
}

async fn controller_task(
    id: NodeId,
    raft: Raft,
    image: watch::Receiver<Arc<Image>>,
    mut calls: mpsc::Receiver<Call>,
    config: ControllerConfig,
    tick: Duration,
) {
    let mut controller: Option<Controller> = None;
    let mut ticker = tokio::time::interval(tick);
    loop {
        let call = tokio::select! {
            c = calls.recv() => match c {
                Some(c) => Some(c),
                None => return,
            },
            _ = ticker.tick() => None,
        };
        let (leader, known) = leads(&raft, id);
        if !leader {
            controller = None;
            if let Some((_, tx)) = call {
                let _ = tx.send(ControllerReply::NotController { leader: known });
            }
            continue;
        }
        if controller.is_none() {
            // Decide only on an image holding every committed entry.
            if raft.ensure_linearizable().await.is_err() {
                if let Some((_, tx)) = call {
                    let _ = tx.send(ControllerReply::NotController { leader: None });
                }
                continue;
            }
            controller = Some(Controller::new(config, now_ms()));
        }
        let Some(c) = controller.as_mut() else {
            continue;
        };
        let current = image.borrow().clone();
        match call {
            Some((req, tx)) => {
                if let Request::Register {
                    broker,
                    raft: Some(addr),
                    ..
                } = &req
                {
                    add_learner(&raft, *broker as NodeId, addr).await;
                }
                // A heartbeat that changes nothing is not held up by the
                // asker's catching up (its liveness does not depend on it).
                let liveness = matches!(req, Request::Heartbeat { .. });
                let d = c.handle(&current, now_ms(), req);
                if d.records.is_empty() {
                    // The answer rests on everything applied so far (say,
                    // a cluster id another node set): the asker waits to
                    // have applied as much before it acts on the answer.
                    let _ = tx.send(ControllerReply::Answered {
                        answer: d.answer,
                        index: if liveness { 0 } else { current.applied },
                    });
                    continue;
                }
                match write(&raft, d.records).await {
                    Some(index) => {
                        let _ = tx.send(ControllerReply::Answered {
                            answer: d.answer,
                            index,
                        });
                    }
                    None => {
                        controller = None;
                        let _ = tx.send(ControllerReply::NotController { leader: None });
                    }
                }
            }
            None => {
                let records = c.tick(&current, now_ms());
                if !records.is_empty() && write(&raft, records).await.is_none() {
                    controller = None;
                }
            }
        }
    }
}

//! Followers copy their leaders with Kafka's Fetch: one task per leader
//! broker, fetching every partition this broker follows from it in one
//! request (`ReplicaState` with this broker's id and epoch, each
//! partition's log end as its fetch offset and the epoch of its last
//! batch as `LastFetchedEpoch`). An answer's batches are appended as they
//! are and fsynced before the next fetch, so a fetch offset is a durable
//! position; a `DivergingEpoch` answer truncates the log where the leader
//! says it differs (KIP-595), never anywhere else.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, info, warn};
use uuid::Uuid;
use weir_meta::Image;

use crate::cluster::Cluster;
use crate::config::ReplicationConfig;
use crate::topics::{Partition, Registry};

/// The Fetch version followers send (topic ids, `ReplicaState`).
const VERSION: i16 = 15;
/// Largest response a follower accepts.
const MAX_RESPONSE: usize = 256 << 20;

/// One partition followed from a leader.
#[derive(Debug, Clone)]
struct Followed {
    topic: Uuid,
    name: String,
    index: i32,
    epoch: i32,
    partition: Arc<Partition>,
}

/// What one fetcher does now.
#[derive(Debug, Clone, Default)]
struct Plan {
    /// The leader's inter-broker address.
    addr: Option<(String, u16)>,
    parts: Vec<Followed>,
}

#[derive(Debug)]
struct Task {
    plan: watch::Sender<Plan>,
    handle: tokio::task::JoinHandle<()>,
}

/// The fetchers of this broker, one per leader it follows partitions of.
#[derive(Debug)]
pub struct Fetchers {
    me: i32,
    config: ReplicationConfig,
    /// The inter-broker listener: the leaders' endpoint to fetch from.
    listener: String,
    /// The address this broker's inter-broker listener binds, when it
    /// names one: connections to leaders leave from it.
    local: Option<IpAddr>,
    /// This broker in the cluster: its epoch goes into every fetch.
    cluster: Arc<Cluster>,
    runtime: tokio::runtime::Handle,
    tasks: Mutex<BTreeMap<i32, Task>>,
}

impl Fetchers {
    /// Fetchers for broker `me` (call inside the runtime), fetching from
    /// the leaders' endpoints on `listener`, leaving from `local` when
    /// given.
    pub fn new(
        me: i32,
        config: ReplicationConfig,
        listener: String,
        local: Option<IpAddr>,
        cluster: Arc<Cluster>,
    ) -> Self {
        Self {
            me,
            config,
            listener,
            local: local.filter(|ip| !ip.is_unspecified()),
            cluster,
            runtime: tokio::runtime::Handle::current(),
            tasks: Mutex::new(BTreeMap::new()),
        }
    }

    /// Makes the fetchers follow what the registry says this broker
    /// follows, from the leaders' addresses in `image`.
    pub fn update(&self, registry: &Registry, image: &Image) {
        let mut want: BTreeMap<i32, Vec<Followed>> = BTreeMap::new();
        for t in registry.all() {
            for p in &t.partitions {
                if let Some((leader, epoch)) = p.replica.following()
                    && leader >= 0
                    && leader != self.me
                {
                    want.entry(leader).or_default().push(Followed {
                        topic: t.id,
                        name: t.name.clone(),
                        index: p.index,
                        epoch,
                        partition: p.clone(),
                    });
                }
            }
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|leader, task| {
            let keep = want.contains_key(leader);
            if !keep {
                task.handle.abort();
            }
            keep
        });
        for (leader, parts) in want {
            let addr = image
                .brokers
                .get(&leader)
                .and_then(|b| {
                    b.endpoints
                        .iter()
                        .find(|e| e.listener == self.listener)
                        .or(b.endpoints.first())
                })
                .map(|e| (e.host.clone(), e.port));
            let plan = Plan { addr, parts };
            match tasks.get(&leader) {
                Some(task) if !task.handle.is_finished() => {
                    task.plan.send_replace(plan);
                }
                _ => {
                    let (tx, rx) = watch::channel(plan);
                    let (me, config) = (self.me, self.config);
                    let cluster = self.cluster.clone();
                    let handle = self
                        .runtime
                        .spawn(run(me, leader, config, self.local, cluster, rx));
                    tasks.insert(leader, Task { plan: tx, handle });
                }
            }
        }
    }

    /// Stops every fetcher.
    pub fn stop(&self) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for (_, t) in std::mem::take(&mut *tasks) {
            t.handle.abort();
        }
    }
}

/// One fetcher: connects to the leader, fetches, applies, repeats; on a
/// broken connection it reconnects after a pause.
async fn run(
    me: i32,
    leader: i32,
    config: ReplicationConfig,
    local: Option<IpAddr>,
    cluster: Arc<Cluster>,
    mut plan: watch::Receiver<Plan>,
) {
    let mut logged_down = false;
    loop {
        let addr = plan.borrow_and_update().addr.clone();
        let Some((host, port)) = addr else {
            if plan.changed().await.is_err() {
                return;
            }
            continue;
        };
        let stream = match tokio::time::timeout(
            Duration::from_secs(5),
            weir_meta::network::connect_from(&host, port, local),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                if !logged_down {
                    warn!(leader, %host, port, error = %e, "cannot reach the leader to replicate from; retrying");
                    logged_down = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        if logged_down {
            info!(leader, %host, port, "replicating from the leader again");
            logged_down = false;
        }
        let mut conn = Conn {
            stream,
            correlation: 0,
        };
        loop {
            let current = plan.borrow().clone();
            if current.addr != Some((host.clone(), port)) {
                break;
            }
            if current.parts.is_empty() {
                if plan.changed().await.is_err() {
                    return;
                }
                continue;
            }
            let parts = current.parts.clone();
            let request = build(me, cluster.epoch(), &config, &parts);
            let wait = Duration::from_millis(config.fetch_wait_max_ms.max(0) as u64);
            let response = match conn.fetch(&request, wait + Duration::from_secs(10)).await {
                Ok(r) => r,
                Err(e) => {
                    debug!(leader, error = %e, "replica fetch failed; reconnecting");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    break;
                }
            };
            let applied = tokio::task::spawn_blocking(move || apply(&parts, response)).await;
            match applied {
                Ok(Outcome::Progress) => {}
                Ok(Outcome::Stalled) | Err(_) => {
                    // Nothing usable (the leader moved, or a log failed):
                    // wait for the metadata to change, or retry soon.
                    let _ = tokio::time::timeout(Duration::from_millis(500), plan.changed()).await;
                }
            }
        }
    }
}

fn build(
    me: i32,
    broker_epoch: u64,
    config: &ReplicationConfig,
    parts: &[Followed],
) -> FetchRequest {
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    let mut state = ReplicaState::default();
    state.replica_id = BrokerId(me);
    state.replica_epoch = broker_epoch as i64;
    req.replica_state = state;
    req.max_wait_ms = config.fetch_wait_max_ms;
    req.min_bytes = 1;
    req.max_bytes = config
        .fetch_max_bytes
        .saturating_mul(10)
        .max(config.fetch_max_bytes);
    req.session_epoch = -1;
    let mut topics: BTreeMap<Uuid, FetchTopic> = BTreeMap::new();
    for f in parts {
        let t = topics.entry(f.topic).or_insert_with(|| {
            let mut t = FetchTopic::default();
            t.topic_id = f.topic;
            t.topic = kafka_protocol::messages::TopicName(StrBytes::from_string(f.name.clone()));
            t
        });
        let log = &f.partition.log;
        let mut p = FetchPartition::default();
        p.partition = f.index;
        p.current_leader_epoch = f.epoch;
        p.fetch_offset = log.log_end_offset() as i64;
        p.last_fetched_epoch = log.epoch_cache().latest().unwrap_or(-1);
        p.log_start_offset = log.log_start_offset() as i64;
        p.partition_max_bytes = config.fetch_max_bytes;
        t.partitions.push(p);
    }
    req.topics = topics.into_values().collect();
    req
}

enum Outcome {
    /// Something was appended, truncated or confirmed.
    Progress,
    /// Every partition answered an error.
    Stalled,
}

/// Applies one answer: truncations, appends, one fsync per partition, the
/// leader's HW.
fn apply(parts: &[Followed], response: FetchResponse) -> Outcome {
    let now = crate::handlers::now_ms();
    let mut progress = false;
    for t in &response.responses {
        for pd in &t.partitions {
            let Some(f) = parts
                .iter()
                .find(|f| f.topic == t.topic_id && f.index == pd.partition_index)
            else {
                continue;
            };
            let log = &f.partition.log;
            if pd.error_code != 0 {
                let err = ResponseError::try_from_code(pd.error_code);
                if err == Some(ResponseError::OffsetOutOfRange)
                    && pd.log_start_offset > log.log_end_offset() as i64
                {
                    // Retention on the leader went past everything here.
                    if let Err(e) = log.truncate_fully_and_start_at(pd.log_start_offset as u64) {
                        warn!(topic = %f.name, partition = f.index, error = %e, "could not restart the log at the leader's start");
                    } else {
                        progress = true;
                    }
                    continue;
                }
                debug!(topic = %f.name, partition = f.index, error = ?err, "replica fetch refused");
                continue;
            }
            progress = true;
            if pd.diverging_epoch.end_offset >= 0 {
                let end = log.log_end_offset();
                let point = super::machine::truncation_point(
                    &log.epoch_cache(),
                    end,
                    pd.diverging_epoch.epoch,
                    pd.diverging_epoch.end_offset as u64,
                );
                info!(topic = %f.name, partition = f.index, epoch = pd.diverging_epoch.epoch, leader_end = pd.diverging_epoch.end_offset, from = end, to = point, "the log diverges from the leader's: truncating");
                if let Err(e) = log.truncate_to(point) {
                    warn!(topic = %f.name, partition = f.index, error = %e, "truncation failed");
                }
                continue;
            }
            if let Some(records) = pd.records.as_ref().filter(|r| !r.is_empty()) {
                let appended = log
                    .append_replicated(records, now)
                    .and_then(|_| log.flush());
                if let Err(e) = appended {
                    warn!(topic = %f.name, partition = f.index, error = %e, "could not append what the leader sent");
                    continue;
                }
            }
            if pd.high_watermark >= 0 {
                f.partition
                    .replica
                    .follower_hw(pd.high_watermark as u64, log.log_end_offset());
            }
        }
    }
    if progress {
        Outcome::Progress
    } else {
        Outcome::Stalled
    }
}

/// A connection to a leader.
struct Conn {
    stream: TcpStream,
    correlation: i32,
}

impl Conn {
    async fn fetch(
        &mut self,
        request: &FetchRequest,
        timeout: Duration,
    ) -> Result<FetchResponse, String> {
        self.correlation = self.correlation.wrapping_add(1);
        let mut header = RequestHeader::default();
        header.request_api_key = ApiKey::Fetch as i16;
        header.request_api_version = VERSION;
        header.correlation_id = self.correlation;
        header.client_id = Some(StrBytes::from_static_str("weir-replica-fetcher"));
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0);
        header
            .encode(&mut buf, FetchRequest::header_version(VERSION))
            .map_err(|e| e.to_string())?;
        request
            .encode(&mut buf, VERSION)
            .map_err(|e| e.to_string())?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let exchange = async {
            self.stream
                .write_all(&buf)
                .await
                .map_err(|e| e.to_string())?;
            let len = self.stream.read_i32().await.map_err(|e| e.to_string())?;
            let len = usize::try_from(len)
                .ok()
                .filter(|l| *l <= MAX_RESPONSE)
                .ok_or_else(|| format!("bad response length {len}"))?;
            let mut body = vec![0u8; len];
            self.stream
                .read_exact(&mut body)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(Bytes::from(body))
        };
        let mut body = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| "the leader did not answer in time".to_owned())??;
        let h = ResponseHeader::decode(&mut body, FetchResponse::header_version(VERSION))
            .map_err(|e| e.to_string())?;
        if h.correlation_id != self.correlation {
            return Err(format!(
                "answer to request {} where {} was asked",
                h.correlation_id, self.correlation
            ));
        }
        FetchResponse::decode(&mut body, VERSION).map_err(|e| e.to_string())
    }
}

//! The group coordinator: the state machines of every group behind one
//! lock, the parked JoinGroup/SyncGroup requests (one-shot channels keyed
//! by group and member), a clock, and the committed-offset store.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::machine::{
    Delivery, Group, GroupError, Join, JoinResult, Limits, Now, State, SyncResult,
};
use super::offsets::OffsetStore;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Join,
    Sync,
}

type WaiterKey = (String, String, Kind);

#[derive(Debug, Default)]
struct Inner {
    groups: BTreeMap<String, Group>,
    waiters: HashMap<WaiterKey, oneshot::Sender<Delivery>>,
}

/// A read-only view of a group (DescribeGroups).
#[derive(Debug, Clone)]
pub struct GroupView {
    /// State name.
    pub state: State,
    /// Protocol type.
    pub protocol_type: String,
    /// Chosen assignor.
    pub protocol_name: String,
    /// (member id, instance id, client id, client host, metadata, assignment)
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

/// All groups of this broker.
#[derive(Debug)]
pub struct Coordinator {
    inner: Mutex<Inner>,
    /// Committed offsets.
    pub offsets: OffsetStore,
    limits: Limits,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Inner {
    fn deliver(&mut self, group: &str, out: Vec<Delivery>) {
        for d in out {
            let key = match &d {
                Delivery::Join(m, _) => (group.to_owned(), m.clone(), Kind::Join),
                Delivery::Sync(m, _) => (group.to_owned(), m.clone(), Kind::Sync),
            };
            if let Some(tx) = self.waiters.remove(&key) {
                let _ = tx.send(d);
            }
        }
    }

    fn park(&mut self, group: &str, member: String, kind: Kind) -> oneshot::Receiver<Delivery> {
        let (tx, rx) = oneshot::channel();
        // A newer request from the same member replaces an older one.
        self.waiters.insert((group.to_owned(), member, kind), tx);
        rx
    }
}

impl Coordinator {
    /// A coordinator over the given offset store.
    pub fn new(offsets: OffsetStore, limits: Limits) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            offsets,
            limits,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// JoinGroup; waits while the rebalance is in progress.
    pub async fn join(&self, group: &str, j: Join) -> JoinResult {
        let rx = {
            let mut inner = self.lock();
            let mut out = Vec::new();
            let g = inner
                .groups
                .entry(group.to_owned())
                .or_insert_with(|| Group::new(group));
            let now = g.join(j, now_ms(), &self.limits, &mut out);
            match now {
                Now::Reply(r) => {
                    inner.deliver(group, out);
                    return r;
                }
                Now::Park { member_id } => {
                    let rx = inner.park(group, member_id, Kind::Join);
                    inner.deliver(group, out);
                    rx
                }
            }
        };
        match rx.await {
            Ok(Delivery::Join(_, r)) => r,
            _ => JoinResult {
                error: Some(GroupError::RebalanceInProgress),
                generation: -1,
                protocol_type: String::new(),
                protocol_name: String::new(),
                leader: String::new(),
                member_id: String::new(),
                members: Vec::new(),
            },
        }
    }

    /// SyncGroup; a follower waits for the leader's assignment.
    pub async fn sync(
        &self,
        group: &str,
        member: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResult {
        let rx = {
            let mut inner = self.lock();
            let mut out = Vec::new();
            let Some(g) = inner.groups.get_mut(group) else {
                return SyncResult {
                    error: Some(GroupError::UnknownMemberId),
                    protocol_type: String::new(),
                    protocol_name: String::new(),
                    assignment: Bytes::new(),
                };
            };
            match g.sync(member, generation, assignments, now_ms(), &mut out) {
                Now::Reply(r) => {
                    inner.deliver(group, out);
                    return r;
                }
                Now::Park { member_id } => {
                    let rx = inner.park(group, member_id, Kind::Sync);
                    inner.deliver(group, out);
                    rx
                }
            }
        };
        match rx.await {
            Ok(Delivery::Sync(_, r)) => r,
            _ => SyncResult {
                error: Some(GroupError::RebalanceInProgress),
                protocol_type: String::new(),
                protocol_name: String::new(),
                assignment: Bytes::new(),
            },
        }
    }

    /// Heartbeat.
    pub fn heartbeat(&self, group: &str, member: &str, generation: i32) -> Option<GroupError> {
        let mut inner = self.lock();
        match inner.groups.get_mut(group) {
            Some(g) => g.heartbeat(member, generation, now_ms()),
            None => Some(GroupError::UnknownMemberId),
        }
    }

    /// LeaveGroup for one member.
    pub fn leave(&self, group: &str, member: &str, instance: Option<&str>) -> Option<GroupError> {
        let mut inner = self.lock();
        let mut out = Vec::new();
        let result = match inner.groups.get_mut(group) {
            Some(g) => g.leave(member, instance, now_ms(), &mut out),
            None => Some(GroupError::UnknownMemberId),
        };
        inner.deliver(group, out);
        result
    }

    /// Expires sessions and ends join phases; run periodically.
    pub fn tick(&self) {
        let mut inner = self.lock();
        let now = now_ms();
        let mut all = Vec::new();
        for (id, g) in inner.groups.iter_mut() {
            let mut out = Vec::new();
            g.tick(now, &mut out);
            if !out.is_empty() {
                all.push((id.clone(), out));
            }
        }
        for (id, out) in all {
            inner.deliver(&id, out);
        }
    }

    /// Whether this member may commit offsets now.
    pub fn check_commit(&self, group: &str, member: &str, generation: i32) -> Option<GroupError> {
        let inner = self.lock();
        match inner.groups.get(group) {
            Some(g) => g.check_commit(member, generation),
            None if generation < 0 && member.is_empty() => None,
            None => Some(GroupError::UnknownMemberId),
        }
    }

    /// A group, if it exists (in the coordinator or by its offsets).
    pub fn describe(&self, group: &str) -> Option<GroupView> {
        let inner = self.lock();
        match inner.groups.get(group) {
            Some(g) => Some(GroupView {
                state: g.state,
                protocol_type: g.protocol_type.clone(),
                protocol_name: g.protocol_name.clone(),
                members: g
                    .members
                    .values()
                    .map(|m| {
                        let meta = m
                            .protocols
                            .iter()
                            .find(|(n, _)| *n == g.protocol_name)
                            .map(|(_, d)| d.clone())
                            .unwrap_or_default();
                        (
                            m.id.clone(),
                            m.instance_id.clone(),
                            m.client_id.clone(),
                            m.client_host.clone(),
                            meta,
                            m.assignment.clone(),
                        )
                    })
                    .collect(),
            }),
            None => (!self.offsets.of_group(group).is_empty()).then(|| GroupView {
                state: State::Empty,
                protocol_type: "consumer".to_owned(),
                protocol_name: String::new(),
                members: Vec::new(),
            }),
        }
    }

    /// Every known group with its protocol type and state.
    pub fn list(&self) -> Vec<(String, String, State)> {
        let inner = self.lock();
        let mut out: BTreeMap<String, (String, State)> = inner
            .groups
            .iter()
            .map(|(id, g)| (id.clone(), (g.protocol_type.clone(), g.state)))
            .collect();
        for g in self.offsets.groups() {
            out.entry(g)
                .or_insert_with(|| ("consumer".to_owned(), State::Empty));
        }
        out.into_iter().map(|(id, (t, s))| (id, t, s)).collect()
    }

    /// Deletes an empty group and its committed offsets.
    pub fn delete(&self, group: &str) -> Result<(), GroupError> {
        {
            let mut inner = self.lock();
            match inner.groups.get(group) {
                Some(g) if !g.members.is_empty() => return Err(GroupError::NonEmptyGroup),
                Some(_) => {
                    inner.groups.remove(group);
                }
                None if self.offsets.of_group(group).is_empty() => {
                    return Err(GroupError::GroupIdNotFound);
                }
                None => {}
            }
        }
        let keys = self.offsets.keys_where(|k, _| k.0 == group);
        self.offsets
            .write(keys.into_iter().map(|k| (k, None)).collect())
            .map_err(|_| GroupError::NonEmptyGroup)
    }

    /// Drops committed offsets of groups without members whose newest
    /// commit is older than `retention_ms` (`offsets.retention.minutes`).
    pub fn expire_offsets(&self, retention_ms: i64) {
        let now = now_ms() as i64;
        let active: Vec<String> = {
            let inner = self.lock();
            inner
                .groups
                .iter()
                .filter(|(_, g)| !g.members.is_empty())
                .map(|(id, _)| id.clone())
                .collect()
        };
        let mut newest: BTreeMap<String, i64> = BTreeMap::new();
        for k in self.offsets.keys_where(|_, _| true) {
            if let Some(c) = self.offsets.get(&k) {
                let e = newest.entry(k.0.clone()).or_insert(i64::MIN);
                *e = (*e).max(c.commit_timestamp);
            }
        }
        let expired: Vec<String> = newest
            .into_iter()
            .filter(|(g, t)| !active.contains(g) && now.saturating_sub(*t) > retention_ms)
            .map(|(g, _)| g)
            .collect();
        if expired.is_empty() {
            return;
        }
        let keys = self.offsets.keys_where(|k, _| expired.contains(&k.0));
        if let Err(e) = self
            .offsets
            .write(keys.into_iter().map(|k| (k, None)).collect())
        {
            tracing::warn!(error = %e, "expiring committed offsets failed");
        }
    }

    /// Drops the committed offsets of a deleted topic.
    pub fn forget_topic(&self, topic: &str) {
        let keys = self.offsets.keys_where(|k, _| k.1 == topic);
        if let Err(e) = self
            .offsets
            .write(keys.into_iter().map(|k| (k, None)).collect())
        {
            tracing::warn!(topic, error = %e, "dropping committed offsets of a deleted topic failed");
        }
    }

    /// Whether an active member of a consumer group subscribes to `topic`
    /// (read from its ConsumerProtocolSubscription).
    pub fn subscribed_to(&self, group: &str, topic: &str) -> bool {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::Decodable;
        let inner = self.lock();
        inner.groups.get(group).is_some_and(|g| {
            g.protocol_type == "consumer"
                && g.members.values().any(|m| {
                    m.protocols.iter().any(|(_, meta)| {
                        let mut b = meta.clone();
                        if b.len() < 2 {
                            return false;
                        }
                        let version = i16::from_be_bytes([b[0], b[1]]);
                        let _ = bytes::Buf::get_i16(&mut b);
                        let decoded =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                ConsumerProtocolSubscription::decode(&mut b, version.clamp(0, 3))
                            }));
                        matches!(decoded, Ok(Ok(s)) if s.topics.iter().any(|t| t.as_str() == topic))
                    })
                })
        })
    }
}

//! The group coordinator: the state machines of every group behind one
//! lock, the parked JoinGroup/SyncGroup requests (one-shot channels keyed
//! by group and member), a clock, and the committed-offset store.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::machine::{
    Delivery, Group, GroupError, Join, JoinResult, Limits, Member, Now, State, SyncResult,
};
use super::offsets::{GroupRecord, MemberRecord, OffsetStore};

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
    /// This broker stopped leading the offsets partition: every request
    /// (and every parked one) is answered NOT_COORDINATOR.
    resigned: std::sync::atomic::AtomicBool,
    /// Committed offsets.
    pub offsets: OffsetStore,
    limits: Limits,
}

/// What a restart must see again: state, generation and member ids (a
/// static member replaced in place changes only its id).
fn fingerprint(g: &Group) -> (State, i32, Vec<String>) {
    (g.state, g.generation, g.members.keys().cloned().collect())
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

    /// Delivers `out` to the members it names, then either gives the
    /// caller its answer or parks it until the group settles.
    fn reply_or_park<T>(
        &mut self,
        group: &str,
        now: Now<T>,
        kind: Kind,
        out: Vec<Delivery>,
    ) -> Result<T, oneshot::Receiver<Delivery>> {
        let parked = match now {
            Now::Reply(r) => Ok(r),
            Now::Park { member_id } => Err(self.park(group, member_id, kind)),
        };
        self.deliver(group, out);
        parked
    }
}

impl Coordinator {
    /// A coordinator over the given offset store; groups persisted in it
    /// come back as they were (members keep their ids and generation, their
    /// sessions restart now), so a broker restart needs no rebalance.
    pub fn new(offsets: OffsetStore, limits: Limits) -> Self {
        let now = now_ms();
        let mut inner = Inner::default();
        for (id, r) in offsets.take_loaded_groups() {
            let members = r
                .members
                .into_iter()
                .map(|m| Member {
                    id: m.member_id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols: r
                        .protocol_name
                        .iter()
                        .map(|p| (p.clone(), m.subscription.clone()))
                        .collect(),
                    assignment: m.assignment,
                    awaiting_join: false,
                    awaiting_sync: false,
                    session_deadline: now,
                })
                .collect();
            let g = Group::restored(
                &id,
                r.generation,
                &r.protocol_type,
                r.protocol_name.as_deref().unwrap_or(""),
                r.leader,
                members,
                now,
            );
            inner.groups.insert(id, g);
        }
        Self {
            inner: Mutex::new(inner),
            resigned: std::sync::atomic::AtomicBool::new(false),
            offsets,
            limits,
        }
    }

    /// Persists a group whose generation or state changed into Stable or
    /// Empty (the states a restart can resume from).
    fn persist_if_changed(&self, g: &Group, before: (State, i32, Vec<String>)) {
        let after = fingerprint(g);
        if after == before || !matches!(g.state, State::Stable | State::Empty) {
            return;
        }
        let record = group_record(g);
        if let Err(e) = self.offsets.write_group(&g.id, Some(&record)) {
            tracing::warn!(group = %g.id, error = %e, "could not persist group metadata");
        }
    }
}

/// The persisted form of a group.
fn group_record(g: &Group) -> GroupRecord {
    {
        GroupRecord {
            protocol_type: g.protocol_type.clone(),
            generation: g.generation,
            protocol_name: (!g.protocol_name.is_empty()).then(|| g.protocol_name.clone()),
            leader: g.leader.clone(),
            timestamp: now_ms() as i64,
            members: g
                .members
                .values()
                .map(|m| MemberRecord {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m
                        .protocols
                        .iter()
                        .find(|(n, _)| *n == g.protocol_name)
                        .map(|(_, d)| d.clone())
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }
}

impl Coordinator {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops coordinating (the offsets partition moved away): parked
    /// JoinGroup / SyncGroup requests are answered NOT_COORDINATOR now, so
    /// their clients find the new coordinator at once.
    pub fn resign(&self) {
        self.resigned
            .store(true, std::sync::atomic::Ordering::Release);
        // Dropping the senders wakes every parked request.
        self.lock().waiters.clear();
    }

    /// Whether [`Coordinator::resign`] was called.
    pub fn resigned(&self) -> bool {
        self.resigned.load(std::sync::atomic::Ordering::Acquire)
    }

    fn lost(&self) -> GroupError {
        if self.resigned() {
            GroupError::NotCoordinator
        } else {
            GroupError::RebalanceInProgress
        }
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
            let before = fingerprint(g);
            let now = g.join(j, now_ms(), &self.limits, &mut out);
            self.persist_if_changed(g, before);
            match inner.reply_or_park(group, now, Kind::Join, out) {
                Ok(r) => return r,
                Err(rx) => rx,
            }
        };
        match rx.await {
            Ok(Delivery::Join(_, r)) => r,
            _ => JoinResult {
                error: Some(self.lost()),
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
        instance: Option<&str>,
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
            let before = fingerprint(g);
            let now = g.sync(
                member,
                instance,
                generation,
                assignments,
                now_ms(),
                &mut out,
            );
            self.persist_if_changed(g, before);
            match inner.reply_or_park(group, now, Kind::Sync, out) {
                Ok(r) => return r,
                Err(rx) => rx,
            }
        };
        match rx.await {
            Ok(Delivery::Sync(_, r)) => r,
            _ => SyncResult {
                error: Some(self.lost()),
                protocol_type: String::new(),
                protocol_name: String::new(),
                assignment: Bytes::new(),
            },
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &self,
        group: &str,
        member: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Option<GroupError> {
        let mut inner = self.lock();
        match inner.groups.get_mut(group) {
            Some(g) => g.heartbeat(member, instance, generation, now_ms()),
            None => Some(GroupError::UnknownMemberId),
        }
    }

    /// LeaveGroup for one member.
    pub fn leave(&self, group: &str, member: &str, instance: Option<&str>) -> Option<GroupError> {
        let mut inner = self.lock();
        let mut out = Vec::new();
        let result = match inner.groups.get_mut(group) {
            Some(g) => {
                let before = fingerprint(g);
                let r = g.leave(member, instance, now_ms(), &mut out);
                self.persist_if_changed(g, before);
                r
            }
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
            let before = fingerprint(g);
            g.tick(now, &mut out);
            self.persist_if_changed(g, before);
            if !out.is_empty() {
                all.push((id.clone(), out));
            }
        }
        for (id, out) in all {
            inner.deliver(&id, out);
        }
    }

    /// Whether this member may commit offsets now.
    pub fn check_commit(
        &self,
        group: &str,
        member: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Option<GroupError> {
        let inner = self.lock();
        match inner.groups.get(group) {
            Some(g) => g.check_commit(member, instance, generation),
            None if generation < 0 => None,
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
                    if let Err(e) = self.offsets.write_group(group, None) {
                        tracing::warn!(group, error = %e, "could not record the group's deletion");
                    }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::groups::offsets::Committed;

    fn store(dir: &std::path::Path) -> OffsetStore {
        let log = weir_log::Log::open_dir(
            dir.join("__consumer_offsets-0"),
            weir_log::LogConfig {
                cleanup_policy: weir_log::CleanupPolicy::Compact,
                ..weir_log::LogConfig::default()
            },
            0,
        )
        .unwrap();
        OffsetStore::load(Arc::new(log)).unwrap()
    }

    const LIMITS: Limits = Limits {
        min_session_timeout_ms: 1_000,
        max_session_timeout_ms: 60_000,
        initial_rebalance_delay_ms: 0,
    };

    fn join(member: &str) -> Join {
        Join {
            member_id: member.to_owned(),
            instance_id: None,
            client_id: "c".to_owned(),
            client_host: "/127.0.0.1".to_owned(),
            session_timeout_ms: 30_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".to_owned(),
            protocols: vec![("range".to_owned(), Bytes::from_static(b"sub"))],
            require_known_member_id: false,
        }
    }

    #[tokio::test]
    async fn a_stable_group_survives_a_coordinator_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let c = Coordinator::new(store(tmp.path()), LIMITS);
        let r = c.join("g", join("")).await;
        assert_eq!(r.generation, 1);
        let s = c
            .sync(
                "g",
                &r.member_id,
                None,
                1,
                vec![(r.member_id.clone(), Bytes::from_static(b"p0"))],
            )
            .await;
        assert_eq!(s.error, None);
        c.offsets
            .write(vec![(
                ("g".to_owned(), "t".to_owned(), 0),
                Some(Committed {
                    offset: 42,
                    leader_epoch: -1,
                    metadata: "m".to_owned(),
                    commit_timestamp: 1,
                }),
            )])
            .unwrap();
        drop(c);

        let c = Coordinator::new(store(tmp.path()), LIMITS);
        // The member carries on with its id and generation: no rebalance.
        assert_eq!(c.heartbeat("g", &r.member_id, None, 1), None);
        let view = c.describe("g").unwrap();
        assert_eq!(view.state, State::Stable);
        assert_eq!(view.members[0].5, Bytes::from_static(b"p0"));
        let s = c.sync("g", &r.member_id, None, 1, vec![]).await;
        assert_eq!(s.assignment, Bytes::from_static(b"p0"));
        assert_eq!(
            c.offsets
                .get(&("g".to_owned(), "t".to_owned(), 0))
                .unwrap()
                .offset,
            42
        );

        // Once everyone leaves and the group is deleted, nothing comes back.
        assert_eq!(c.leave("g", &r.member_id, None), None);
        c.delete("g").unwrap();
        drop(c);
        let c = Coordinator::new(store(tmp.path()), LIMITS);
        assert!(c.describe("g").is_none());
        assert!(c.list().is_empty());
    }

    #[tokio::test]
    async fn offsets_of_idle_groups_expire_and_deleted_topics_are_forgotten() {
        let tmp = tempfile::tempdir().unwrap();
        let c = Coordinator::new(store(tmp.path()), LIMITS);
        let at = |t: i64| Committed {
            offset: 1,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp: t,
        };
        let now = now_ms() as i64;
        c.offsets
            .write(vec![
                (
                    ("old".to_owned(), "t".to_owned(), 0),
                    Some(at(now - 120_000)),
                ),
                (("new".to_owned(), "t".to_owned(), 0), Some(at(now))),
                (("new".to_owned(), "gone".to_owned(), 0), Some(at(now))),
            ])
            .unwrap();
        c.expire_offsets(60_000);
        assert!(
            c.offsets.of_group("old").is_empty(),
            "idle for longer than the retention"
        );
        assert_eq!(c.offsets.of_group("new").len(), 2);
        c.forget_topic("gone");
        assert_eq!(c.offsets.of_group("new").len(), 1);
    }

    #[tokio::test]
    async fn the_log_cleaner_keeps_the_live_state_and_drops_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let c = Coordinator::new(store(tmp.path()), LIMITS);
        let r = c.join("g", join("")).await;
        c.sync(
            "g",
            &r.member_id,
            None,
            1,
            vec![(r.member_id.clone(), Bytes::from_static(b"p0"))],
        )
        .await;
        // 3000 commits of the same two partitions.
        for i in 0..1_500 {
            let entry = |p| {
                (
                    ("g".to_owned(), "t".to_owned(), p),
                    Some(Committed {
                        offset: i,
                        leader_epoch: -1,
                        metadata: String::new(),
                        commit_timestamp: 1,
                    }),
                )
            };
            c.offsets.write(vec![entry(0), entry(1)]).unwrap();
        }
        // The broker's cleaner compacts __consumer_offsets like any
        // compacted topic: only sealed segments, so roll first.
        let log = c.offsets.log().clone();
        log.roll().unwrap();
        let stats = log.clean(i64::MAX / 2, 1 << 16).unwrap();
        assert!(stats.records_removed >= 2_997, "{stats:?}");
        drop(c);
        let mut live = 0;
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let r = log.read(offset, 1 << 20).unwrap();
            let mut buf = &r.records[..];
            while !buf.is_empty() {
                let (h, len) =
                    weir_log::batch::check_batch(buf, weir_log::batch::Strictness::Stored).unwrap();
                live += h.records_count;
                buf = &buf[len..];
            }
            offset = r.next_offset;
        }
        assert!(live <= 3, "{live} records still live after compaction");
        drop(log);
        let c = Coordinator::new(store(tmp.path()), LIMITS);
        assert_eq!(
            c.offsets
                .get(&("g".to_owned(), "t".to_owned(), 1))
                .unwrap()
                .offset,
            1_499
        );
        assert_eq!(
            c.heartbeat("g", &r.member_id, None, 1),
            None,
            "the group survived compaction"
        );
    }
}

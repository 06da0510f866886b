//! The classic consumer-group rebalance protocol as a pure state machine.
//!
//! Every call takes `now` (ms) and returns what to answer; requests that
//! must wait (a JoinGroup until the rebalance completes, a follower's
//! SyncGroup until the leader's) are *parked*, and later calls return
//! [`Delivery`]s that complete them. No sockets, tasks or clocks here: the
//! handlers own those, and the tests drive this directly.
//!
//! States follow Kafka's group coordinator: Empty -> PreparingRebalance
//! (members (re)join) -> CompletingRebalance (the leader assigns) -> Stable.

use std::collections::BTreeMap;

use bytes::Bytes;

/// Timing limits of the coordinator (Kafka's broker settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long a new group waits for
    /// more members before its first generation.
    pub initial_rebalance_delay_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
        }
    }
}

/// Errors, one per Kafka error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupError {
    /// UNKNOWN_MEMBER_ID (25).
    UnknownMemberId,
    /// ILLEGAL_GENERATION (22).
    IllegalGeneration,
    /// REBALANCE_IN_PROGRESS (27).
    RebalanceInProgress,
    /// INCONSISTENT_GROUP_PROTOCOL (23).
    InconsistentGroupProtocol,
    /// INVALID_SESSION_TIMEOUT (26).
    InvalidSessionTimeout,
    /// MEMBER_ID_REQUIRED (79).
    MemberIdRequired,
    /// FENCED_INSTANCE_ID (82).
    FencedInstanceId,
    /// GROUP_ID_NOT_FOUND (69).
    GroupIdNotFound,
    /// NON_EMPTY_GROUP (68).
    NonEmptyGroup,
    /// INVALID_GROUP_ID (24).
    InvalidGroupId,
    /// NOT_COORDINATOR (16): the group is coordinated by another broker.
    NotCoordinator,
}

impl GroupError {
    /// The Kafka error code.
    pub fn code(self) -> i16 {
        match self {
            Self::UnknownMemberId => 25,
            Self::IllegalGeneration => 22,
            Self::RebalanceInProgress => 27,
            Self::InconsistentGroupProtocol => 23,
            Self::InvalidSessionTimeout => 26,
            Self::MemberIdRequired => 79,
            Self::FencedInstanceId => 82,
            Self::GroupIdNotFound => 69,
            Self::NonEmptyGroup => 68,
            Self::InvalidGroupId => 24,
            Self::NotCoordinator => 16,
        }
    }
}

/// Group state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No members.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Waiting for the leader's assignment.
    CompletingRebalance,
    /// Assigned and running.
    Stable,
}

impl State {
    /// Kafka's name for the state (DescribeGroups / ListGroups).
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
        }
    }
}

/// A JoinGroup, in domain terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    /// Empty for a new member.
    pub member_id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Client id (DescribeGroups).
    pub client_id: String,
    /// Client host (DescribeGroups).
    pub client_host: String,
    /// `session.timeout.ms`.
    pub session_timeout_ms: i32,
    /// `max.poll.interval.ms` / rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// "consumer" for consumers.
    pub protocol_type: String,
    /// (assignor name, subscription metadata), in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member first gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    /// Error, if any.
    pub error: Option<GroupError>,
    /// The new generation.
    pub generation: i32,
    /// Protocol type of the group.
    pub protocol_type: String,
    /// Chosen assignor.
    pub protocol_name: String,
    /// Leader's member id.
    pub leader: String,
    /// The member's id (new members learn theirs here).
    pub member_id: String,
    /// For the leader only: every member with its subscription.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    /// Error, if any.
    pub error: Option<GroupError>,
    /// Protocol type.
    pub protocol_type: String,
    /// Chosen assignor.
    pub protocol_name: String,
    /// This member's assignment.
    pub assignment: Bytes,
}

/// An answer for a request that was parked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Completes the member's parked JoinGroup.
    Join(String, JoinResult),
    /// Completes the member's parked SyncGroup.
    Sync(String, SyncResult),
}

/// What a call decided: an answer now, or park the request; plus answers
/// for other parked requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Now<T> {
    /// Answer the caller.
    Reply(T),
    /// Keep the caller's request until a [`Delivery`] for its member id.
    Park {
        /// The id the delivery will name.
        member_id: String,
    },
}

/// One member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Member id.
    pub id: String,
    /// Static id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Supported protocols with metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// Current assignment.
    pub assignment: Bytes,
    /// Has a parked JoinGroup in this rebalance.
    pub awaiting_join: bool,
    /// Has a parked SyncGroup.
    pub awaiting_sync: bool,
    /// When its session expires without a heartbeat.
    pub session_deadline: u64,
}

/// One consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Group id.
    pub id: String,
    /// State.
    pub state: State,
    /// Generation (0 before the first).
    pub generation: i32,
    /// Protocol type ("consumer").
    pub protocol_type: String,
    /// Chosen assignor of the current generation.
    pub protocol_name: String,
    /// Leader member id.
    pub leader: Option<String>,
    /// Members by id.
    pub members: BTreeMap<String, Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, with their expiry.
    pub pending: BTreeMap<String, u64>,
    /// When the join phase ends even if not everyone rejoined.
    pub rebalance_deadline: u64,
    /// A new group's first join phase lasts at least until this.
    pub initial_delay_until: u64,
    next_member: u64,
}

impl Group {
    /// A new, empty group.
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            state: State::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol_name: String::new(),
            leader: None,
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            rebalance_deadline: 0,
            initial_delay_until: 0,
            next_member: 0,
        }
    }

    /// A group as it was persisted: Stable with its members (their sessions
    /// restart now), or Empty keeping its generation.
    pub fn restored(
        id: &str,
        generation: i32,
        protocol_type: &str,
        protocol_name: &str,
        leader: Option<String>,
        members: Vec<Member>,
        now: u64,
    ) -> Self {
        let mut g = Self::new(id);
        g.generation = generation;
        g.protocol_type = protocol_type.to_owned();
        g.protocol_name = protocol_name.to_owned();
        g.leader = leader;
        for mut m in members {
            m.awaiting_join = false;
            m.awaiting_sync = false;
            m.session_deadline = now + m.session_timeout_ms.max(0) as u64;
            g.members.insert(m.id.clone(), m);
        }
        g.state = if g.members.is_empty() {
            State::Empty
        } else {
            State::Stable
        };
        if g.leader.as_ref().is_none_or(|l| !g.members.contains_key(l)) {
            g.leader = g.members.keys().next().cloned();
        }
        g
    }

    /// `<client id or instance id>-<uuid>`, as Kafka forms member ids.
    fn new_member_id(&mut self, client_id: &str, instance: Option<&str>) -> String {
        self.next_member += 1;
        let prefix = instance.unwrap_or(client_id);
        format!("{prefix}-{}", uuid::Uuid::new_v4())
    }

    /// A request naming a static instance under an id that is not the
    /// instance's current member id comes from a replaced process.
    fn fenced(&self, member_id: &str, instance: Option<&str>) -> bool {
        instance
            .and_then(|i| self.member_by_instance(i))
            .is_some_and(|m| m.id != member_id)
    }

    fn member_by_instance(&self, instance: &str) -> Option<&Member> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance))
    }

    /// Protocols every member supports, in the order members vote for them.
    fn choose_protocol(&self) -> Option<String> {
        let mut candidates: Vec<&str> = self
            .members
            .values()
            .next()?
            .protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        candidates.retain(|c| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == c))
        });
        // Each member votes for its most preferred common protocol.
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((n, _)) = m
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(&n.as_str()))
            {
                *votes.entry(n.as_str()).or_default() += 1;
            }
        }
        candidates
            .iter()
            .max_by_key(|c| {
                (
                    votes.get(*c).copied().unwrap_or(0),
                    std::cmp::Reverse(candidates.iter().position(|x| x == *c)),
                )
            })
            .map(|c| (*c).to_owned())
    }

    fn supports_common_protocol(&self, join: &Join) -> bool {
        if self.members.is_empty() {
            return !join.protocols.is_empty();
        }
        if join.protocol_type != self.protocol_type {
            return false;
        }
        join.protocols.iter().any(|(n, _)| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(p, _)| p == n))
        })
    }

    fn start_rebalance(&mut self, now: u64) {
        if self.state == State::PreparingRebalance {
            return;
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms.max(0) as u64)
            .max()
            .unwrap_or(0);
        self.rebalance_deadline = now + timeout;
        self.state = State::PreparingRebalance;
    }

    fn error_join(&self, member_id: &str, error: GroupError) -> JoinResult {
        JoinResult {
            error: Some(error),
            generation: -1,
            protocol_type: self.protocol_type.clone(),
            protocol_name: String::new(),
            leader: String::new(),
            member_id: member_id.to_owned(),
            members: Vec::new(),
        }
    }

    fn join_result(&self, member_id: &str) -> JoinResult {
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .values()
                .map(|m| {
                    let meta = m
                        .protocols
                        .iter()
                        .find(|(n, _)| *n == self.protocol_name)
                        .map(|(_, d)| d.clone())
                        .unwrap_or_default();
                    (m.id.clone(), m.instance_id.clone(), meta)
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader,
            member_id: member_id.to_owned(),
            members,
        }
    }

    fn sync_result(&self, m: &Member) -> SyncResult {
        SyncResult {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: m.assignment.clone(),
        }
    }

    /// Ends the join phase if everyone rejoined (and a new group's initial
    /// delay passed), or the rebalance deadline passed: members that did
    /// not rejoin are dropped, the generation advances, every parked join
    /// is answered.
    fn maybe_complete_join(&mut self, now: u64, out: &mut Vec<Delivery>) {
        if self.state != State::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|m| m.awaiting_join);
        let delayed = now < self.initial_delay_until;
        if (delayed || !all_joined) && now < self.rebalance_deadline.max(self.initial_delay_until) {
            return;
        }
        self.members.retain(|_, m| m.awaiting_join);
        self.generation += 1;
        if self.members.is_empty() {
            self.state = State::Empty;
            self.leader = None;
            self.protocol_name.clear();
            return;
        }
        self.protocol_name = self.choose_protocol().unwrap_or_default();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = State::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.join_result(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.awaiting_join = false;
                m.assignment = Bytes::new();
                m.session_deadline = now + m.session_timeout_ms.max(0) as u64;
            }
            out.push(Delivery::Join(id, result));
        }
    }

    /// JoinGroup.
    pub fn join(
        &mut self,
        j: Join,
        now: u64,
        limits: &Limits,
        out: &mut Vec<Delivery>,
    ) -> Now<JoinResult> {
        if j.session_timeout_ms < limits.min_session_timeout_ms
            || j.session_timeout_ms > limits.max_session_timeout_ms
        {
            return Now::Reply(self.error_join(&j.member_id, GroupError::InvalidSessionTimeout));
        }
        if !self.supports_common_protocol(&j) {
            return Now::Reply(
                self.error_join(&j.member_id, GroupError::InconsistentGroupProtocol),
            );
        }
        let mut member_id = j.member_id.clone();
        if member_id.is_empty() {
            if let Some(instance) = j.instance_id.as_deref() {
                // A static member rejoining with a new id replaces its old self.
                let new_id = self.new_member_id(&j.client_id, Some(instance));
                if let Some(old) = self.member_by_instance(instance).map(|m| m.id.clone()) {
                    if let Some(mut m) = self.members.remove(&old) {
                        if m.awaiting_sync {
                            out.push(Delivery::Sync(
                                old.clone(),
                                SyncResult {
                                    error: Some(GroupError::FencedInstanceId),
                                    protocol_type: self.protocol_type.clone(),
                                    protocol_name: String::new(),
                                    assignment: Bytes::new(),
                                },
                            ));
                        }
                        if m.awaiting_join {
                            out.push(Delivery::Join(
                                old.clone(),
                                self.error_join(&old, GroupError::FencedInstanceId),
                            ));
                        }
                        m.id = new_id.clone();
                        m.awaiting_join = false;
                        m.awaiting_sync = false;
                        if self.leader.as_deref() == Some(old.as_str()) {
                            self.leader = Some(new_id.clone());
                        }
                        self.members.insert(new_id.clone(), m);
                    }
                    let unchanged = self
                        .members
                        .get(&new_id)
                        .is_some_and(|m| m.protocols == j.protocols);
                    if self.state == State::Stable
                        && unchanged
                        && self.leader.as_deref() != Some(new_id.as_str())
                    {
                        // Known static member, same subscription: no rebalance.
                        if let Some(m) = self.members.get_mut(&new_id) {
                            m.session_deadline = now + j.session_timeout_ms as u64;
                        }
                        return Now::Reply(self.join_result(&new_id));
                    }
                }
                member_id = new_id;
            } else if j.require_known_member_id {
                let id = self.new_member_id(&j.client_id, None);
                self.pending
                    .insert(id.clone(), now + j.session_timeout_ms as u64);
                let mut r = self.error_join(&id, GroupError::MemberIdRequired);
                r.member_id = id;
                return Now::Reply(r);
            } else {
                member_id = self.new_member_id(&j.client_id, None);
            }
        } else if self.fenced(&member_id, j.instance_id.as_deref()) {
            return Now::Reply(self.error_join(&member_id, GroupError::FencedInstanceId));
        } else if !self.members.contains_key(&member_id)
            && self.pending.remove(&member_id).is_none()
        {
            return Now::Reply(self.error_join(&member_id, GroupError::UnknownMemberId));
        }

        let existing = self.members.get(&member_id).cloned();
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        if let Some(m) = &existing
            && m.protocols == j.protocols
            && (self.state == State::CompletingRebalance
                || (self.state == State::Stable && !is_leader))
        {
            // The same join again: answer with the current generation (the
            // leader gets the member list again). In Stable a leader's join
            // asks for a new assignment, so it rebalances.
            return Now::Reply(self.join_result(&member_id));
        }
        // Members in the middle of a sync (this one included) are told to rejoin.
        self.fail_parked_syncs(GroupError::RebalanceInProgress, out);
        if self.members.is_empty() {
            self.protocol_type = j.protocol_type.clone();
            if self.state == State::Empty {
                self.initial_delay_until = now + limits.initial_rebalance_delay_ms;
            }
        }
        let member = Member {
            id: member_id.clone(),
            instance_id: j.instance_id.clone(),
            client_id: j.client_id,
            client_host: j.client_host,
            session_timeout_ms: j.session_timeout_ms,
            rebalance_timeout_ms: j.rebalance_timeout_ms,
            protocols: j.protocols,
            assignment: existing.map(|m| m.assignment).unwrap_or_default(),
            awaiting_join: true,
            awaiting_sync: false,
            session_deadline: now + j.session_timeout_ms as u64,
        };
        self.members.insert(member_id.clone(), member);
        self.start_rebalance(now);
        self.maybe_complete_join(now, out);
        // If that completed the join phase our own answer is among the deliveries.
        if let Some(pos) = out
            .iter()
            .position(|d| matches!(d, Delivery::Join(id, _) if *id == member_id))
            && let Delivery::Join(_, r) = out.remove(pos)
        {
            return Now::Reply(r);
        }
        Now::Park { member_id }
    }

    fn fail_parked_syncs(&mut self, error: GroupError, out: &mut Vec<Delivery>) {
        let protocol_type = self.protocol_type.clone();
        for m in self.members.values_mut().filter(|m| m.awaiting_sync) {
            m.awaiting_sync = false;
            out.push(Delivery::Sync(
                m.id.clone(),
                SyncResult {
                    error: Some(error),
                    protocol_type: protocol_type.clone(),
                    protocol_name: String::new(),
                    assignment: Bytes::new(),
                },
            ));
        }
    }

    fn sync_error(&self, error: GroupError) -> Now<SyncResult> {
        Now::Reply(SyncResult {
            error: Some(error),
            protocol_type: self.protocol_type.clone(),
            protocol_name: String::new(),
            assignment: Bytes::new(),
        })
    }

    /// SyncGroup. The leader's call carries every member's assignment.
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now: u64,
        out: &mut Vec<Delivery>,
    ) -> Now<SyncResult> {
        if self.fenced(member_id, instance_id) {
            return self.sync_error(GroupError::FencedInstanceId);
        }
        let Some(m) = self.members.get(member_id) else {
            return self.sync_error(GroupError::UnknownMemberId);
        };
        if generation != self.generation {
            return self.sync_error(GroupError::IllegalGeneration);
        }
        let session = m.session_timeout_ms.max(0) as u64;
        match self.state {
            State::Empty => self.sync_error(GroupError::UnknownMemberId),
            State::PreparingRebalance => self.sync_error(GroupError::RebalanceInProgress),
            State::Stable => {
                let m = &self.members[member_id];
                Now::Reply(self.sync_result(m))
            }
            State::CompletingRebalance => {
                if let Some(m) = self.members.get_mut(member_id) {
                    m.session_deadline = now + session;
                }
                if self.leader.as_deref() != Some(member_id) {
                    if let Some(m) = self.members.get_mut(member_id) {
                        m.awaiting_sync = true;
                    }
                    return Now::Park {
                        member_id: member_id.to_owned(),
                    };
                }
                let mut given: BTreeMap<String, Bytes> = assignments.into_iter().collect();
                for m in self.members.values_mut() {
                    m.assignment = given.remove(&m.id).unwrap_or_default();
                }
                self.state = State::Stable;
                let waiting: Vec<String> = self
                    .members
                    .values()
                    .filter(|m| m.awaiting_sync)
                    .map(|m| m.id.clone())
                    .collect();
                for id in waiting {
                    if let Some(m) = self.members.get_mut(&id) {
                        m.awaiting_sync = false;
                    }
                    let result = self.sync_result(&self.members[&id]);
                    out.push(Delivery::Sync(id, result));
                }
                Now::Reply(self.sync_result(&self.members[member_id]))
            }
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: u64,
    ) -> Option<GroupError> {
        if self.fenced(member_id, instance_id) {
            return Some(GroupError::FencedInstanceId);
        }
        let state = self.state;
        let current = self.generation;
        let Some(m) = self.members.get_mut(member_id) else {
            return Some(GroupError::UnknownMemberId);
        };
        if generation != current {
            return Some(GroupError::IllegalGeneration);
        }
        m.session_deadline = now + m.session_timeout_ms.max(0) as u64;
        match state {
            State::Empty => Some(GroupError::UnknownMemberId),
            State::PreparingRebalance => Some(GroupError::RebalanceInProgress),
            State::CompletingRebalance | State::Stable => None,
        }
    }

    /// LeaveGroup for one member (by id, or by static id).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: u64,
        out: &mut Vec<Delivery>,
    ) -> Option<GroupError> {
        let id = match instance_id {
            Some(instance) => match self.member_by_instance(instance) {
                Some(m) if member_id.is_empty() || m.id == member_id => m.id.clone(),
                Some(_) => return Some(GroupError::FencedInstanceId),
                None => return Some(GroupError::UnknownMemberId),
            },
            None => member_id.to_owned(),
        };
        if self.pending.remove(&id).is_some() {
            return None;
        }
        let Some(m) = self.members.remove(&id) else {
            return Some(GroupError::UnknownMemberId);
        };
        if m.awaiting_join {
            out.push(Delivery::Join(
                id.clone(),
                self.error_join(&id, GroupError::UnknownMemberId),
            ));
        }
        if m.awaiting_sync {
            out.push(Delivery::Sync(
                id.clone(),
                SyncResult {
                    error: Some(GroupError::UnknownMemberId),
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: String::new(),
                    assignment: Bytes::new(),
                },
            ));
        }
        self.member_gone(now, out);
        None
    }

    /// After a member left or expired: rebalance the rest, or go empty.
    fn member_gone(&mut self, now: u64, out: &mut Vec<Delivery>) {
        if self.members.is_empty() && self.state != State::PreparingRebalance {
            self.state = State::Empty;
            self.leader = None;
            self.generation += 1;
            self.protocol_name.clear();
            return;
        }
        self.fail_parked_syncs(GroupError::RebalanceInProgress, out);
        self.start_rebalance(now);
        self.maybe_complete_join(now, out);
    }

    /// Time passes: expire sessions and pending member ids, end join phases
    /// at their deadline.
    pub fn tick(&mut self, now: u64, out: &mut Vec<Delivery>) {
        self.pending.retain(|_, deadline| *deadline > now);
        // Members parked in a join are waited for until the rebalance deadline.
        let expired: Vec<String> = self
            .members
            .values()
            // A member parked in a join or a sync cannot heartbeat: its
            // parked request counts as one (the rebalance deadline bounds it).
            .filter(|m| !m.awaiting_join && !m.awaiting_sync && m.session_deadline <= now)
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            if let Some(m) = self.members.remove(id)
                && m.awaiting_sync
            {
                out.push(Delivery::Sync(
                    id.clone(),
                    SyncResult {
                        error: Some(GroupError::UnknownMemberId),
                        protocol_type: self.protocol_type.clone(),
                        protocol_name: String::new(),
                        assignment: Bytes::new(),
                    },
                ));
            }
        }
        if !expired.is_empty() {
            self.member_gone(now, out);
        }
        self.maybe_complete_join(now, out);
    }

    /// Whether a member of the current generation may commit offsets.
    pub fn check_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Option<GroupError> {
        if self.fenced(member_id, instance_id) {
            return Some(GroupError::FencedInstanceId);
        }
        if generation < 0 {
            // A "simple" consumer committing outside group membership.
            return (!self.members.is_empty()).then_some(GroupError::UnknownMemberId);
        }
        if !self.members.contains_key(member_id) {
            return Some(GroupError::UnknownMemberId);
        }
        if generation != self.generation {
            return Some(GroupError::IllegalGeneration);
        }
        (self.state == State::CompletingRebalance).then_some(GroupError::RebalanceInProgress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        min_session_timeout_ms: 6_000,
        max_session_timeout_ms: 1_800_000,
        initial_rebalance_delay_ms: 0,
    };

    fn join(member: &str) -> Join {
        Join {
            member_id: member.to_owned(),
            instance_id: None,
            client_id: "c".to_owned(),
            client_host: "/127.0.0.1".to_owned(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".to_owned(),
            protocols: vec![("range".to_owned(), Bytes::from_static(b"sub"))],
            require_known_member_id: true,
        }
    }

    /// Joins a new member through MEMBER_ID_REQUIRED; returns its id.
    fn first_join(g: &mut Group, now: u64, out: &mut Vec<Delivery>) -> (String, Now<JoinResult>) {
        let Now::Reply(r) = g.join(join(""), now, &LIMITS, out) else {
            panic!("expected MEMBER_ID_REQUIRED")
        };
        assert_eq!(r.error, Some(GroupError::MemberIdRequired));
        let id = r.member_id.clone();
        let now_result = g.join(join(&id), now, &LIMITS, out);
        (id, now_result)
    }

    fn joined(out: &mut Vec<Delivery>) -> BTreeMap<String, JoinResult> {
        let mut m = BTreeMap::new();
        out.retain(|d| match d {
            Delivery::Join(id, r) => {
                m.insert(id.clone(), r.clone());
                false
            }
            _ => true,
        });
        m
    }

    #[test]
    fn a_single_member_becomes_leader_and_stable() {
        let mut g = Group::new("g");
        let mut out = vec![];
        let (id, now) = first_join(&mut g, 0, &mut out);
        let Now::Reply(r) = now else {
            panic!("a lone member completes at once")
        };
        assert_eq!(
            (r.generation, r.leader.as_str(), r.protocol_name.as_str()),
            (1, id.as_str(), "range")
        );
        assert_eq!(r.members.len(), 1, "the leader sees every member");
        let Now::Reply(s) = g.sync(
            &id,
            None,
            1,
            vec![(id.clone(), Bytes::from_static(b"p0"))],
            1,
            &mut out,
        ) else {
            panic!()
        };
        assert_eq!(s.assignment, Bytes::from_static(b"p0"));
        assert_eq!(g.state, State::Stable);
        assert_eq!(g.heartbeat(&id, None, 1, 2), None);
        assert_eq!(
            g.heartbeat(&id, None, 0, 2),
            Some(GroupError::IllegalGeneration)
        );
        assert_eq!(
            g.heartbeat("nobody", None, 1, 2),
            Some(GroupError::UnknownMemberId)
        );
    }

    #[test]
    fn a_join_storm_ends_in_one_generation_with_everyone() {
        let mut g = Group::new("g");
        let mut out = vec![];
        let (a, _) = first_join(&mut g, 0, &mut out);
        let mut a_result = joined(&mut out);
        if let Some(r) = a_result.remove(&a) {
            // a alone completed generation 1; now the others arrive.
            assert_eq!(r.generation, 1);
            g.sync(&a, None, 1, vec![], 1, &mut out);
        }
        // Three more members join; a must rejoin to see them.
        let mut ids = vec![a.clone()];
        for _ in 0..3 {
            let (id, now) = first_join(&mut g, 10, &mut out);
            assert!(matches!(now, Now::Park { .. }), "waits for the others");
            ids.push(id);
        }
        assert_eq!(g.state, State::PreparingRebalance);
        assert_eq!(
            g.heartbeat(&a, None, 1, 11),
            Some(GroupError::RebalanceInProgress)
        );
        let last = g.join(join(&a), 12, &LIMITS, &mut out);
        let mut results = joined(&mut out);
        if let Now::Reply(r) = last {
            results.insert(a.clone(), r);
        }
        assert_eq!(results.len(), 4, "every member answered: {results:?}");
        let gens: Vec<i32> = results.values().map(|r| r.generation).collect();
        assert!(gens.iter().all(|&x| x == 2));
        let leaders: Vec<&JoinResult> =
            results.values().filter(|r| !r.members.is_empty()).collect();
        assert_eq!(leaders.len(), 1, "exactly one leader gets the member list");
        assert_eq!(leaders[0].members.len(), 4);
        // Followers park in sync until the leader assigns.
        let leader = leaders[0].leader.clone();
        for id in ids.iter().filter(|i| **i != leader) {
            assert!(matches!(
                g.sync(id, None, 2, vec![], 13, &mut out),
                Now::Park { .. }
            ));
        }
        let assignments: Vec<(String, Bytes)> = ids
            .iter()
            .map(|i| (i.clone(), Bytes::from(i.clone())))
            .collect();
        let Now::Reply(mine) = g.sync(&leader, None, 2, assignments, 14, &mut out) else {
            panic!()
        };
        assert_eq!(mine.assignment, Bytes::from(leader.clone()));
        let synced = std::mem::take(&mut out);
        assert_eq!(synced.len(), 3);
        for d in synced {
            let Delivery::Sync(id, r) = d else { panic!() };
            assert_eq!(
                r.assignment,
                Bytes::from(id),
                "each follower gets its own assignment"
            );
        }
        assert_eq!(g.state, State::Stable);
    }

    #[test]
    fn silent_members_are_evicted_after_their_session_timeout() {
        let mut g = Group::new("g");
        let mut out = vec![];
        let (a, _) = first_join(&mut g, 0, &mut out);
        joined(&mut out);
        g.sync(&a, None, 1, vec![], 0, &mut out);
        let (b, _) = first_join(&mut g, 100, &mut out);
        g.join(join(&a), 100, &LIMITS, &mut out);
        joined(&mut out);
        assert_eq!(g.generation, 2);
        let leader = g.leader.clone().unwrap();
        let follower = if leader == a { b.clone() } else { a.clone() };
        g.sync(&follower, None, 2, vec![], 100, &mut out);
        g.sync(&leader, None, 2, vec![], 100, &mut out);
        out.clear();
        // The leader keeps heartbeating; the follower goes silent.
        for t in (1_000..=10_000).step_by(1_000) {
            assert_eq!(g.heartbeat(&leader, None, 2, t), None);
            g.tick(t, &mut out);
        }
        assert!(g.members.contains_key(&follower), "not yet expired at 10 s");
        g.tick(10_101, &mut out);
        assert!(
            !g.members.contains_key(&follower),
            "expired after the 10 s session"
        );
        assert_eq!(g.state, State::PreparingRebalance);
        assert_eq!(
            g.heartbeat(&leader, None, 2, 10_200),
            Some(GroupError::RebalanceInProgress)
        );
        // The survivor rejoins alone and gets the next generation.
        let Now::Reply(r) = g.join(join(&leader), 10_300, &LIMITS, &mut out) else {
            panic!()
        };
        assert_eq!((r.generation, r.members.len()), (3, 1));
    }

    #[test]
    fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_deadline() {
        let mut g = Group::new("g");
        let mut out = vec![];
        let (a, _) = first_join(&mut g, 0, &mut out);
        joined(&mut out);
        g.sync(&a, None, 1, vec![], 0, &mut out);
        let (b, now) = first_join(&mut g, 1_000, &mut out);
        assert!(matches!(now, Now::Park { .. }));
        // a keeps heartbeating (busy processing) but never rejoins; b waits
        // until the 30 s rebalance deadline, then the group goes on without a.
        for t in (5_000..=30_000).step_by(5_000) {
            assert_eq!(
                g.heartbeat(&a, None, 1, t),
                Some(GroupError::RebalanceInProgress)
            );
            g.tick(t, &mut out);
            assert!(joined(&mut out).is_empty(), "completed early at {t}");
        }
        g.tick(31_000, &mut out);
        let r = joined(&mut out);
        assert_eq!(r[&b].generation, 2);
        assert_eq!(r[&b].leader, b);
        assert!(!g.members.contains_key(&a));
    }

    #[test]
    fn old_generations_are_fenced() {
        let mut g = Group::new("g");
        let mut out = vec![];
        let (a, _) = first_join(&mut g, 0, &mut out);
        joined(&mut out);
        g.sync(&a, None, 1, vec![], 0, &mut out);
        assert_eq!(g.check_commit(&a, None, 1), None);
        let (_b, _) = first_join(&mut g, 5, &mut out);
        g.join(join(&a), 5, &LIMITS, &mut out);
        joined(&mut out);
        assert_eq!(g.generation, 2);
        assert_eq!(
            g.check_commit(&a, None, 1),
            Some(GroupError::IllegalGeneration)
        );
        assert_eq!(
            g.check_commit(&a, None, 2),
            Some(GroupError::RebalanceInProgress),
            "before the assignment"
        );
        let Now::Reply(s) = g.sync(&a, None, 1, vec![], 6, &mut out) else {
            panic!()
        };
        assert_eq!(s.error, Some(GroupError::IllegalGeneration));
        assert_eq!(
            g.check_commit("stranger", None, 2),
            Some(GroupError::UnknownMemberId)
        );
        assert_eq!(
            g.check_commit("", None, -1),
            Some(GroupError::UnknownMemberId),
            "simple commits only for empty groups"
        );
    }

    #[test]
    fn static_members_rejoin_without_a_rebalance() {
        let mut g = Group::new("g");
        let mut out = vec![];
        let static_join = |instance: &str, member: &str| Join {
            instance_id: Some(instance.to_owned()),
            ..join(member)
        };
        let Now::Reply(r1) = g.join(static_join("i1", ""), 0, &LIMITS, &mut out) else {
            panic!()
        };
        let leader = r1.member_id.clone();
        g.sync(
            &leader,
            None,
            1,
            vec![(leader.clone(), Bytes::from_static(b"L"))],
            0,
            &mut out,
        );
        let Now::Park { member_id: f } = g.join(static_join("i2", ""), 1, &LIMITS, &mut out) else {
            panic!()
        };
        g.join(static_join("i1", &leader), 1, &LIMITS, &mut out);
        joined(&mut out);
        g.sync(&f, None, 2, vec![], 2, &mut out);
        g.sync(
            &leader,
            None,
            2,
            vec![
                (leader.clone(), Bytes::from_static(b"L")),
                (f.clone(), Bytes::from_static(b"F")),
            ],
            2,
            &mut out,
        );
        out.clear();
        assert_eq!(g.state, State::Stable);
        // The follower restarts (new process, no member id) with the same
        // instance id: same generation, same assignment, no rebalance.
        let Now::Reply(r) = g.join(static_join("i2", ""), 3, &LIMITS, &mut out) else {
            panic!("rebalanced")
        };
        assert_eq!(r.generation, 2);
        assert_ne!(r.member_id, f);
        assert_eq!(g.state, State::Stable);
        let Now::Reply(s) = g.sync(&r.member_id, None, 2, vec![], 4, &mut out) else {
            panic!()
        };
        assert_eq!(s.assignment, Bytes::from_static(b"F"));
        // The old incarnation is fenced.
        assert_eq!(
            g.heartbeat(&f, Some("i2"), 2, 5),
            Some(GroupError::FencedInstanceId)
        );
        assert_eq!(
            g.check_commit(&f, Some("i2"), 2),
            Some(GroupError::FencedInstanceId)
        );
        let Now::Reply(old) = g.join(static_join("i2", &f), 5, &LIMITS, &mut out) else {
            panic!()
        };
        assert_eq!(old.error, Some(GroupError::FencedInstanceId));
        assert_eq!(
            g.leave(&f, Some("i2"), 5, &mut out),
            Some(GroupError::FencedInstanceId)
        );
        // Leaving by instance id removes it and rebalances the rest.
        assert_eq!(g.leave("", Some("i2"), 6, &mut out), None);
        assert_eq!(g.state, State::PreparingRebalance);
    }

    #[test]
    fn protocol_and_timeout_checks() {
        let mut g = Group::new("g");
        let mut out = vec![];
        let mut bad = join("");
        bad.session_timeout_ms = 10;
        let Now::Reply(r) = g.join(bad, 0, &LIMITS, &mut out) else {
            panic!()
        };
        assert_eq!(r.error, Some(GroupError::InvalidSessionTimeout));
        let (_a, _) = first_join(&mut g, 0, &mut out);
        let mut other = join("");
        other.protocols = vec![("roundrobin".to_owned(), Bytes::new())];
        other.require_known_member_id = false;
        let Now::Reply(r) = g.join(other, 1, &LIMITS, &mut out) else {
            panic!()
        };
        assert_eq!(r.error, Some(GroupError::InconsistentGroupProtocol));
        let Now::Reply(r) = g.join(join("made-up"), 1, &LIMITS, &mut out) else {
            panic!()
        };
        assert_eq!(r.error, Some(GroupError::UnknownMemberId));
    }

    #[test]
    fn the_protocol_all_members_support_is_chosen_by_vote() {
        let mut g = Group::new("g");
        let mut out = vec![];
        let with = |protocols: &[&str]| Join {
            protocols: protocols
                .iter()
                .map(|p| ((*p).to_owned(), Bytes::new()))
                .collect(),
            require_known_member_id: false,
            ..join("")
        };
        let Now::Reply(a) = g.join(with(&["cooperative-sticky", "range"]), 0, &LIMITS, &mut out)
        else {
            panic!()
        };
        g.sync(&a.member_id, None, 1, vec![], 0, &mut out);
        g.join(with(&["range", "cooperative-sticky"]), 1, &LIMITS, &mut out);
        g.join(with(&["range"]), 1, &LIMITS, &mut out);
        g.join(
            Join {
                member_id: a.member_id.clone(),
                ..with(&["cooperative-sticky", "range"])
            },
            2,
            &LIMITS,
            &mut out,
        );
        assert_eq!(g.protocol_name, "range");
        assert_eq!(g.members.len(), 3);
    }

    #[test]
    fn a_new_group_waits_for_the_initial_delay() {
        let limits = Limits {
            initial_rebalance_delay_ms: 3_000,
            ..LIMITS
        };
        let mut g = Group::new("g");
        let mut out = vec![];
        let mut j = join("");
        j.require_known_member_id = false;
        assert!(matches!(
            g.join(j.clone(), 0, &limits, &mut out),
            Now::Park { .. }
        ));
        assert!(matches!(
            g.join(j, 1_000, &limits, &mut out),
            Now::Park { .. }
        ));
        g.tick(2_999, &mut out);
        assert!(out.is_empty());
        g.tick(3_000, &mut out);
        let r = joined(&mut out);
        assert_eq!(r.len(), 2);
        assert!(r.values().all(|x| x.generation == 1));
    }

    /// Two members in CompletingRebalance with the follower parked in sync.
    fn parked_follower() -> (Group, String, String, Vec<Delivery>) {
        let mut g = Group::new("g");
        let mut out = vec![];
        let (a, _) = first_join(&mut g, 0, &mut out);
        joined(&mut out);
        g.sync(&a, None, 1, vec![], 0, &mut out);
        let (b, _) = first_join(&mut g, 10, &mut out);
        g.join(join(&a), 10, &LIMITS, &mut out);
        joined(&mut out);
        let leader = g.leader.clone().unwrap();
        let follower = if leader == a { b } else { a };
        assert!(matches!(
            g.sync(&follower, None, 2, vec![], 20, &mut out),
            Now::Park { .. }
        ));
        (g, leader, follower, out)
    }

    fn sync_answered(out: &[Delivery], id: &str) -> Option<Option<GroupError>> {
        out.iter().find_map(|d| match d {
            Delivery::Sync(m, r) if m == id => Some(r.error),
            _ => None,
        })
    }

    #[test]
    fn a_parked_sync_is_answered_when_its_member_leaves_or_rejoins() {
        let (mut g, _leader, follower, mut out) = parked_follower();
        g.leave(&follower, None, 30, &mut out);
        assert_eq!(
            sync_answered(&out, &follower),
            Some(Some(GroupError::UnknownMemberId))
        );

        let (mut g, _leader, follower, mut out) = parked_follower();
        let mut changed = join(&follower);
        changed.protocols = vec![("range".to_owned(), Bytes::from_static(b"new subscription"))];
        g.join(changed, 30, &LIMITS, &mut out);
        assert_eq!(
            sync_answered(&out, &follower),
            Some(Some(GroupError::RebalanceInProgress))
        );
    }

    #[test]
    fn a_parked_follower_waits_for_a_slow_leader_without_expiring() {
        let (mut g, leader, follower, mut out) = parked_follower();
        // The leader heartbeats for 20 s (twice the session) before assigning.
        for t in (1_000..=20_000).step_by(1_000) {
            assert_eq!(g.heartbeat(&leader, None, 2, t), None);
            g.tick(t, &mut out);
        }
        assert!(
            g.members.contains_key(&follower),
            "the parked follower was expired"
        );
        g.sync(
            &leader,
            None,
            2,
            vec![(follower.clone(), Bytes::from_static(b"F"))],
            20_500,
            &mut out,
        );
        assert_eq!(sync_answered(&out, &follower), Some(None));
    }

    #[test]
    fn the_leader_repeating_its_join_while_completing_gets_the_members_again() {
        let (mut g, leader, _follower, mut out) = parked_follower();
        let Now::Reply(r) = g.join(join(&leader), 25, &LIMITS, &mut out) else {
            panic!("rebalanced")
        };
        assert_eq!((r.generation, r.members.len()), (2, 2));
        assert_eq!(g.state, State::CompletingRebalance);
    }
}

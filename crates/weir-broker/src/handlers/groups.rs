//! Consumer groups on the wire: FindCoordinator, JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups,
//! ListGroups, DeleteGroups, OffsetDelete. Wire types become calls on the
//! coordinator here and nowhere else.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::producer::TRANSACTIONS_UNSUPPORTED;
use super::s;
use std::sync::Arc;

use crate::Broker;
use crate::groups::coordinator::Coordinator;
use crate::groups::machine::{GroupError, Join, JoinResult, SyncResult};
use crate::groups::offsets::Committed;

const KEY_GROUP: i8 = 0;
const KEY_TRANSACTION: i8 = 1;
/// `offset.metadata.max.bytes`.
const MAX_METADATA: usize = 4096;

fn code(e: Option<GroupError>) -> i16 {
    e.map_or(0, GroupError::code)
}

fn opt(s: &str) -> Option<StrBytes> {
    Some(StrBytes::from_string(s.to_owned()))
}

/// The coordinator of `group` here; COORDINATOR_LOAD_IN_PROGRESS while
/// this broker leads the group's offsets partition but has not loaded it
/// yet (the client retries here), else NOT_COORDINATOR (the client asks
/// FindCoordinator again).
///
/// "Leads" is asked of the replicated metadata too: another broker's
/// FindCoordinator may name this one as soon as the metadata does, before
/// this broker has opened the topic or applied its leadership. Answering
/// NOT_COORDINATOR in that window would send the client back to the same
/// answer, and some calls (librdkafka's `committed()`) give up on it.
fn coordinator(broker: &Broker, group: &str) -> Result<Arc<Coordinator>, i16> {
    if let Some(c) = broker.groups().for_group(group).filter(|c| !c.resigned()) {
        return Ok(c);
    }
    let leads_here = broker.topics().get(crate::OFFSETS_TOPIC).is_some_and(|t| {
        let p = crate::groups::coordinators::partition_for(group, t.partition_count());
        t.led(p).is_ok()
    });
    let leads = leads_here || {
        let image = broker.cluster().image();
        image
            .names
            .get(crate::OFFSETS_TOPIC)
            .and_then(|id| image.topics.get(id))
            .is_some_and(|t| {
                let p = crate::groups::coordinators::partition_for(group, t.partitions.len());
                usize::try_from(p)
                    .ok()
                    .and_then(|i| t.partitions.get(i))
                    .is_some_and(|info| info.leader == broker.cluster().me())
            })
    };
    Err(if leads {
        ResponseError::CoordinatorLoadInProgress.code()
    } else {
        ResponseError::NotCoordinator.code()
    })
}

/// Where a group's coordinator is: the leader of its `__consumer_offsets`
/// partition, as (node, host, port), or the error to answer.
fn locate(
    broker: &Broker,
    group: &str,
    listener: &str,
) -> Result<(i32, String, u16), (i16, String)> {
    let unavailable = |why: String| (ResponseError::CoordinatorNotAvailable.code(), why);
    let topic = broker
        .topics()
        .get(crate::OFFSETS_TOPIC)
        .ok_or_else(|| unavailable(format!("{} does not exist yet", crate::OFFSETS_TOPIC)))?;
    let p = crate::groups::coordinators::partition_for(group, topic.partition_count());
    let leader = topic
        .assignment
        .get(p as usize)
        .map_or(-1, |info| info.leader);
    super::metadata::live_brokers(broker, listener)
        .into_iter()
        .find(|b| b.0 == leader)
        .map(|(id, host, port, _)| (id, host, port))
        .ok_or_else(|| unavailable(format!("{}-{p} has no leader", crate::OFFSETS_TOPIC)))
}

pub(super) async fn find_coordinator(
    broker: &Broker,
    req: FindCoordinatorRequest,
    version: i16,
    listener: &str,
) -> FindCoordinatorResponse {
    if req.key_type == KEY_GROUP {
        // Bounded well inside a client's request timeout: without the topic
        // the answer is COORDINATOR_NOT_AVAILABLE, which clients retry.
        match tokio::time::timeout(
            std::time::Duration::from_secs(5),
            broker.ensure_offsets_topic(),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not create {}", crate::OFFSETS_TOPIC),
            Err(_) => tracing::warn!("creating {} is taking long", crate::OFFSETS_TOPIC),
        }
    }
    let answer = |key_type: i8, key: &str| -> Result<(i32, String, u16), (i16, String)> {
        match key_type {
            KEY_GROUP => locate(broker, key, listener),
            // Not retriable, so a transactional producer's
            // init_transactions() fails at once instead of waiting forever
            // for a coordinator (clients treat this error as fatal).
            KEY_TRANSACTION => {
                tracing::warn!(
                    "FindCoordinator for a transaction refused: {TRANSACTIONS_UNSUPPORTED}"
                );
                Err((
                    ResponseError::TransactionalIdAuthorizationFailed.code(),
                    TRANSACTIONS_UNSUPPORTED.to_owned(),
                ))
            }
            _ => Err((
                ResponseError::InvalidRequest.code(),
                format!("coordinator key type {key_type} is not supported"),
            )),
        }
    };
    let mut resp = FindCoordinatorResponse::default();
    if version >= 4 {
        for key in req.coordinator_keys {
            let mut c = find_coordinator_response::Coordinator::default();
            match answer(req.key_type, key.as_str()) {
                Ok((node, host, port)) => {
                    c.node_id = BrokerId(node);
                    c.host = s(host);
                    c.port = i32::from(port);
                }
                Err((code, message)) => {
                    c.node_id = BrokerId(-1);
                    c.host = s("");
                    c.port = -1;
                    c.error_code = code;
                    c.error_message = Some(s(message));
                }
            }
            c.key = key;
            resp.coordinators.push(c);
        }
    } else {
        match answer(req.key_type, req.key.as_str()) {
            Ok((node, host, port)) => {
                resp.node_id = BrokerId(node);
                resp.host = s(host);
                resp.port = i32::from(port);
            }
            Err((code, message)) => {
                resp.error_code = code;
                if version >= 1 {
                    resp.error_message = Some(s(message));
                }
                resp.node_id = BrokerId(-1);
                resp.host = s("");
                resp.port = -1;
            }
        }
    }
    resp
}

fn join_response(r: JoinResult, version: i16) -> JoinGroupResponse {
    let mut resp = JoinGroupResponse::default();
    resp.error_code = code(r.error);
    resp.generation_id = r.generation;
    if version >= 7 {
        resp.protocol_type = opt(&r.protocol_type);
    }
    resp.protocol_name = if version >= 7 && r.protocol_name.is_empty() && r.error.is_some() {
        None
    } else {
        opt(&r.protocol_name)
    };
    resp.leader = s(r.leader);
    resp.member_id = s(r.member_id);
    resp.members = r
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            let mut m = join_group_response::JoinGroupResponseMember::default();
            m.member_id = s(id);
            if version >= 5 {
                m.group_instance_id = instance.map(s);
            }
            m.metadata = metadata;
            m
        })
        .collect();
    resp
}

pub(super) async fn join_group(
    broker: &Broker,
    req: JoinGroupRequest,
    client_id: &str,
    client_host: &str,
    version: i16,
) -> JoinGroupResponse {
    let group = req.group_id.0.as_str().to_owned();
    if group.is_empty() {
        let mut resp = JoinGroupResponse::default();
        resp.error_code = GroupError::InvalidGroupId.code();
        resp.generation_id = -1;
        return resp;
    }
    let join = Join {
        member_id: req.member_id.as_str().to_owned(),
        instance_id: req
            .group_instance_id
            .as_ref()
            .map(|i| i.as_str().to_owned()),
        client_id: client_id.to_owned(),
        client_host: client_host.to_owned(),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: it is the session timeout.
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.as_str().to_owned(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.as_str().to_owned(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let c = match coordinator(broker, &group) {
        Ok(c) => c,
        Err(code) => {
            let mut resp = JoinGroupResponse::default();
            resp.error_code = code;
            resp.generation_id = -1;
            return resp;
        }
    };
    let result = c.join(&group, join).await;
    join_response(result, version)
}

fn sync_response(r: SyncResult, version: i16) -> SyncGroupResponse {
    let mut resp = SyncGroupResponse::default();
    resp.error_code = code(r.error);
    if version >= 5 && r.error.is_none() {
        resp.protocol_type = opt(&r.protocol_type);
        resp.protocol_name = opt(&r.protocol_name);
    }
    resp.assignment = r.assignment;
    resp
}

pub(super) async fn sync_group(
    broker: &Broker,
    req: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    let assignments = req
        .assignments
        .into_iter()
        .map(|a| (a.member_id.as_str().to_owned(), a.assignment))
        .collect();
    let c = match coordinator(broker, req.group_id.0.as_str()) {
        Ok(c) => c,
        Err(code) => {
            let mut resp = SyncGroupResponse::default();
            resp.error_code = code;
            return resp;
        }
    };
    let r = c
        .sync(
            req.group_id.0.as_str(),
            req.member_id.as_str(),
            req.group_instance_id.as_ref().map(|i| i.as_str()),
            req.generation_id,
            assignments,
        )
        .await;
    sync_response(r, version)
}

pub(super) fn heartbeat(broker: &Broker, req: HeartbeatRequest) -> HeartbeatResponse {
    let mut resp = HeartbeatResponse::default();
    let c = match coordinator(broker, req.group_id.0.as_str()) {
        Ok(c) => c,
        Err(code) => {
            resp.error_code = code;
            return resp;
        }
    };
    resp.error_code = code(c.heartbeat(
        req.group_id.0.as_str(),
        req.member_id.as_str(),
        req.group_instance_id.as_ref().map(|i| i.as_str()),
        req.generation_id,
    ));
    resp
}

pub(super) fn leave_group(
    broker: &Broker,
    req: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let group = req.group_id.0.as_str();
    let mut resp = LeaveGroupResponse::default();
    let c = match coordinator(broker, group) {
        Ok(c) => c,
        Err(code) => {
            resp.error_code = code;
            return resp;
        }
    };
    if version < 3 {
        resp.error_code = code(c.leave(group, req.member_id.as_str(), None));
        return resp;
    }
    for m in req.members {
        let instance = m.group_instance_id.as_ref().map(|i| i.as_str());
        let mut r = leave_group_response::MemberResponse::default();
        r.error_code = code(c.leave(group, m.member_id.as_str(), instance));
        r.member_id = m.member_id;
        r.group_instance_id = m.group_instance_id;
        resp.members.push(r);
    }
    resp
}

pub(super) async fn offset_commit(
    broker: &Broker,
    req: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let group = req.group_id.0.as_str().to_owned();
    let c = coordinator(broker, &group);
    let check = match &c {
        Ok(c) => c.check_commit(
            &group,
            req.member_id.as_str(),
            req.group_instance_id.as_ref().map(|i| i.as_str()),
            req.generation_id_or_member_epoch,
        ),
        Err(_) => Some(GroupError::NotCoordinator),
    };
    let now = super::now_ms();
    let mut writes = Vec::new();
    let mut resp = OffsetCommitResponse::default();
    for t in req.topics {
        let topic = broker.topics().get(t.name.0.as_str());
        let mut tr = offset_commit_response::OffsetCommitResponseTopic::default();
        tr.name = t.name.clone();
        tr.topic_id = t.topic_id;
        for p in t.partitions {
            let mut pr = offset_commit_response::OffsetCommitResponsePartition::default();
            pr.partition_index = p.partition_index;
            let metadata = p
                .committed_metadata
                .as_ref()
                .map(|m| m.as_str().to_owned())
                .unwrap_or_default();
            pr.error_code = if let Some(e) = check {
                e.code()
            } else if topic.as_ref().is_none_or(|t| {
                p.partition_index < 0 || p.partition_index as usize >= t.partition_count()
            }) {
                ResponseError::UnknownTopicOrPartition.code()
            } else if metadata.len() > MAX_METADATA {
                ResponseError::OffsetMetadataTooLarge.code()
            } else {
                writes.push((
                    (
                        group.clone(),
                        t.name.0.as_str().to_owned(),
                        p.partition_index,
                    ),
                    Some(Committed {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata,
                        commit_timestamp: now,
                    }),
                ));
                0
            };
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    if let (false, Ok(coordinator)) = (writes.is_empty(), c) {
        let written = tokio::task::spawn_blocking(move || coordinator.offsets.write(writes)).await;
        use crate::groups::offsets::CommitError;
        use crate::topics::Unreplicated;
        let code = match written {
            Ok(Ok(())) => 0,
            // As Kafka answers: clients find the coordinator again, or
            // retry the commit.
            Ok(Err(CommitError::Unreplicated(Unreplicated::NotLeader))) => {
                ResponseError::NotCoordinator.code()
            }
            Ok(Err(CommitError::Unreplicated(Unreplicated::TimedOut))) => {
                ResponseError::RequestTimedOut.code()
            }
            _ => ResponseError::KafkaStorageError.code(),
        };
        if code != 0 {
            for p in resp.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                if p.error_code == 0 {
                    p.error_code = code;
                }
            }
        }
    }
    resp
}

/// (partition, committed offset, leader epoch, metadata) for a topic.
fn committed(
    c: &Coordinator,
    group: &str,
    topic: &str,
    partitions: Option<&[i32]>,
) -> Vec<(i32, i64, i32, String)> {
    let store = &c.offsets;
    match partitions {
        Some(ps) => ps
            .iter()
            .map(
                |&p| match store.get(&(group.to_owned(), topic.to_owned(), p)) {
                    Some(c) => (p, c.offset, c.leader_epoch, c.metadata),
                    None => (p, -1, -1, String::new()),
                },
            )
            .collect(),
        None => store
            .of_group(group)
            .into_iter()
            .filter(|(t, _, _)| t == topic)
            .map(|(_, p, c)| (p, c.offset, c.leader_epoch, c.metadata))
            .collect(),
    }
}

fn topics_of_group(c: &Coordinator, group: &str) -> Vec<String> {
    let mut t: Vec<String> = c
        .offsets
        .of_group(group)
        .into_iter()
        .map(|(t, _, _)| t)
        .collect();
    t.dedup();
    t
}

pub(super) fn offset_fetch(
    broker: &Broker,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    /// The topics (and partitions) to answer for: those asked, or with no
    /// list every topic the group has committed for (all partitions).
    fn wanted_topics(
        c: &Coordinator,
        group: &str,
        asked: Option<Vec<(String, Vec<i32>)>>,
    ) -> Vec<(String, Option<Vec<i32>>)> {
        match asked {
            Some(ts) => ts.into_iter().map(|(t, p)| (t, Some(p))).collect(),
            None => topics_of_group(c, group)
                .into_iter()
                .map(|t| (t, None))
                .collect(),
        }
    }

    let mut resp = OffsetFetchResponse::default();
    if version >= 8 {
        for g in req.groups {
            let group = g.group_id.0.as_str();
            let mut gr = offset_fetch_response::OffsetFetchResponseGroup::default();
            gr.group_id = g.group_id.clone();
            let asked = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.0.as_str().to_owned(), t.partition_indexes))
                    .collect()
            });
            let c = match coordinator(broker, group) {
                Ok(c) => c,
                Err(code) => {
                    gr.error_code = code;
                    resp.groups.push(gr);
                    continue;
                }
            };
            let wanted = wanted_topics(&c, group, asked);
            for (topic, parts) in wanted {
                let mut tr = offset_fetch_response::OffsetFetchResponseTopics::default();
                tr.name = TopicName(s(topic.clone()));
                for (p, offset, epoch, meta) in committed(&c, group, &topic, parts.as_deref()) {
                    let mut pr = offset_fetch_response::OffsetFetchResponsePartitions::default();
                    pr.partition_index = p;
                    pr.committed_offset = offset;
                    pr.committed_leader_epoch = epoch;
                    pr.metadata = Some(s(meta));
                    tr.partitions.push(pr);
                }
                gr.topics.push(tr);
            }
            resp.groups.push(gr);
        }
        return resp;
    }
    let group = req.group_id.0.as_str();
    let asked = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.as_str().to_owned(), t.partition_indexes))
            .collect()
    });
    let c = match coordinator(broker, group) {
        Ok(c) => c,
        Err(code) => {
            // v2+ has a group-level error; v0-1 carry it per partition.
            resp.error_code = code;
            for (topic, parts) in asked.unwrap_or_default() {
                let mut tr = offset_fetch_response::OffsetFetchResponseTopic::default();
                tr.name = TopicName(s(topic));
                for p in parts {
                    let mut pr = offset_fetch_response::OffsetFetchResponsePartition::default();
                    pr.partition_index = p;
                    pr.committed_offset = -1;
                    pr.error_code = code;
                    tr.partitions.push(pr);
                }
                resp.topics.push(tr);
            }
            return resp;
        }
    };
    let wanted = wanted_topics(&c, group, asked);
    for (topic, parts) in wanted {
        let mut tr = offset_fetch_response::OffsetFetchResponseTopic::default();
        tr.name = TopicName(s(topic.clone()));
        for (p, offset, epoch, meta) in committed(&c, group, &topic, parts.as_deref()) {
            let mut pr = offset_fetch_response::OffsetFetchResponsePartition::default();
            pr.partition_index = p;
            pr.committed_offset = offset;
            if version >= 5 {
                pr.committed_leader_epoch = epoch;
            }
            pr.metadata = Some(s(meta));
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}

pub(super) fn describe_groups(
    broker: &Broker,
    req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let mut resp = DescribeGroupsResponse::default();
    for id in req.groups {
        let mut g = describe_groups_response::DescribedGroup::default();
        g.group_id = id.clone();
        let c = match coordinator(broker, id.0.as_str()) {
            Ok(c) => c,
            Err(code) => {
                g.error_code = code;
                g.group_state = s("");
                resp.groups.push(g);
                continue;
            }
        };
        match c.describe(id.0.as_str()) {
            Some(v) => {
                g.group_state = s(v.state.name());
                g.protocol_type = s(v.protocol_type);
                g.protocol_data = s(v.protocol_name);
                g.members = v
                    .members
                    .into_iter()
                    .map(|(mid, instance, client_id, host, meta, assignment)| {
                        let mut m = describe_groups_response::DescribedGroupMember::default();
                        m.member_id = s(mid);
                        if version >= 4 {
                            m.group_instance_id = instance.map(s);
                        }
                        m.client_id = s(client_id);
                        m.client_host = s(host);
                        m.member_metadata = meta;
                        m.member_assignment = assignment;
                        m
                    })
                    .collect();
            }
            None => {
                // Kafka describes an unknown group as Dead with no members.
                g.group_state = s("Dead");
                if version >= 6 {
                    g.error_code = GroupError::GroupIdNotFound.code();
                }
            }
        }
        resp.groups.push(g);
    }
    resp
}

pub(super) fn list_groups(
    broker: &Broker,
    req: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let mut resp = ListGroupsResponse::default();
    let states: Vec<String> = req
        .states_filter
        .iter()
        .map(|s| s.as_str().to_lowercase())
        .collect();
    // Every group here is a classic one (KIP-848's `consumer` and KIP-932's
    // `share` groups do not exist yet); type names are case-insensitive.
    let classic_wanted = req.types_filter.is_empty()
        || req
            .types_filter
            .iter()
            .any(|t| t.as_str().eq_ignore_ascii_case("classic"));
    if !classic_wanted {
        return resp;
    }
    for (id, protocol_type, state) in broker.groups().list() {
        if !states.is_empty() && !states.contains(&state.name().to_lowercase()) {
            continue;
        }
        let mut g = list_groups_response::ListedGroup::default();
        g.group_id = GroupId(s(id));
        g.protocol_type = s(protocol_type);
        if version >= 4 {
            g.group_state = s(state.name());
        }
        if version >= 5 {
            g.group_type = s("classic");
        }
        resp.groups.push(g);
    }
    resp
}

pub(super) async fn delete_groups(
    broker: &Broker,
    req: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut resp = DeleteGroupsResponse::default();
    for id in req.groups_names {
        let mut r = delete_groups_response::DeletableGroupResult::default();
        let c = match coordinator(broker, id.0.as_str()) {
            Ok(c) => c,
            Err(code) => {
                r.group_id = id;
                r.error_code = code;
                resp.results.push(r);
                continue;
            }
        };
        let name = id.0.as_str().to_owned();
        let result = tokio::task::spawn_blocking(move || c.delete(&name)).await;
        r.group_id = id;
        r.error_code = match result {
            Ok(Ok(())) => 0,
            Ok(Err(e)) => e.code(),
            Err(_) => ResponseError::KafkaStorageError.code(),
        };
        resp.results.push(r);
    }
    resp
}

pub(super) async fn offset_delete(
    broker: &Broker,
    req: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let group = req.group_id.0.as_str().to_owned();
    let mut resp = OffsetDeleteResponse::default();
    let c = match coordinator(broker, &group) {
        Ok(c) => c,
        Err(code) => {
            resp.error_code = code;
            return resp;
        }
    };
    if c.describe(&group).is_none() {
        resp.error_code = GroupError::GroupIdNotFound.code();
        return resp;
    }
    let mut deletes = Vec::new();
    for t in req.topics {
        let topic = t.name.0.as_str().to_owned();
        let subscribed = c.subscribed_to(&group, &topic);
        let mut tr = offset_delete_response::OffsetDeleteResponseTopic::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = offset_delete_response::OffsetDeleteResponsePartition::default();
            pr.partition_index = p.partition_index;
            if subscribed {
                pr.error_code = ResponseError::GroupSubscribedToTopic.code();
            } else {
                deletes.push(((group.clone(), topic.clone(), p.partition_index), None));
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    if !matches!(
        tokio::task::spawn_blocking(move || c.offsets.write(deletes)).await,
        Ok(Ok(()))
    ) {
        resp.error_code = ResponseError::KafkaStorageError.code();
    }
    resp
}

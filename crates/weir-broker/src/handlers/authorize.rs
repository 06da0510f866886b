//! Kafka's per-API authorization (docs/design/security.md, invariant S4),
//! kept in one place beside the handlers rather than inside each: before
//! a handler runs, [`before`] takes out of the request every part the
//! principal may not touch (or answers the whole request with Kafka's
//! error), and after it, [`after`] puts those parts' refusals into the
//! response and fills `authorized_operations` where the client asked.
//! The handlers only ever see what is allowed.
//!
//! What each API needs is Kafka's table: Produce WRITE on the topic, Fetch
//! READ (CLUSTER_ACTION on the cluster for a follower), ListOffsets and
//! OffsetForLeaderEpoch DESCRIBE, Metadata DESCRIBE (unauthorised topics
//! left out of a listing; auto-creation needs CREATE), group APIs READ on
//! the group (and READ on the topic to commit), OffsetFetch and
//! DescribeGroups DESCRIBE, DeleteGroups and OffsetDelete DELETE,
//! CreateTopics CREATE on the cluster or the topic, DeleteTopics and
//! DeleteRecords DELETE, CreatePartitions ALTER, configs
//! DESCRIBE_CONFIGS / ALTER_CONFIGS on the topic or the cluster,
//! InitProducerId IDEMPOTENT_WRITE on the cluster or WRITE on some topic,
//! the ACL and SCRAM APIs DESCRIBE / ALTER on the cluster.

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;
use weir_meta::Image;
use weir_meta::acl::{CLUSTER_NAME, operation as op, resource};

use super::{Conn, s};
use crate::Broker;
use crate::security::authorizer::{ANONYMOUS, AuthorizerConfig, Subject, authorize, authorize_any};

const TOPIC_DENIED: i16 = 29;
const GROUP_DENIED: i16 = 30;
const CLUSTER_DENIED: i16 = 31;
const TXN_DENIED: i16 = 53;
const CLUSTER_DENIED_MESSAGE: &str = "Cluster authorization failed.";

/// The checks of one request: the settings, the image's bindings, who asks.
pub(crate) struct Authz<'a> {
    cfg: &'a AuthorizerConfig,
    /// `None` when no authorizer is set: everything is allowed.
    image: Option<Arc<Image>>,
    subject: Subject<'a>,
}

impl<'a> Authz<'a> {
    pub(crate) fn new(broker: &'a Broker, conn: &'a Conn) -> Self {
        let cfg = &broker.config().authorizer;
        Self {
            cfg,
            image: cfg.enabled.then(|| broker.cluster().image()),
            subject: Subject {
                principal: conn.principal.as_deref().unwrap_or(ANONYMOUS),
                host: conn.client_host.trim_start_matches('/'),
            },
        }
    }

    fn allows(&self, operation: i8, resource_type: i8, name: &str) -> bool {
        match &self.image {
            None => true,
            Some(i) => authorize(
                self.cfg,
                &i.acls,
                self.subject,
                operation,
                resource_type,
                name,
            ),
        }
    }

    fn cluster(&self, operation: i8) -> bool {
        self.allows(operation, resource::CLUSTER, CLUSTER_NAME)
    }

    fn topic(&self, operation: i8, name: &str) -> bool {
        self.allows(operation, resource::TOPIC, name)
    }

    fn group(&self, operation: i8, name: &str) -> bool {
        self.allows(operation, resource::GROUP, name)
    }

    /// A topic's name from its id (`None`: no such topic, left to the
    /// handler, which answers UNKNOWN_TOPIC_ID).
    fn name_of(&self, id: Uuid) -> Option<String> {
        self.image
            .as_ref()
            .and_then(|i| i.topics.get(&id).map(|t| t.name.clone()))
    }

    /// The topics this principal may describe, by name (for listings).
    fn describable_topics(&self) -> BTreeSet<String> {
        self.image.as_ref().map_or_else(BTreeSet::new, |i| {
            i.names
                .keys()
                .filter(|n| self.topic(op::DESCRIBE, n))
                .cloned()
                .collect()
        })
    }

    /// Kafka's `authorized_operations` bit set: bit `o` for each allowed
    /// operation `o` of `ops`.
    fn operations(&self, resource_type: i8, name: &str, ops: &[i8]) -> i32 {
        ops.iter()
            .filter(|&&o| self.allows(o, resource_type, name))
            .fold(0, |bits, &o| bits | (1 << o))
    }

    fn on(&self) -> bool {
        self.image.is_some()
    }
}

/// The operations Kafka reports for each resource type.
const TOPIC_OPS: &[i8] = &[
    op::READ,
    op::WRITE,
    op::CREATE,
    op::DELETE,
    op::ALTER,
    op::DESCRIBE,
    op::DESCRIBE_CONFIGS,
    op::ALTER_CONFIGS,
];
const GROUP_OPS: &[i8] = &[op::READ, op::DESCRIBE, op::DELETE];
const CLUSTER_OPS: &[i8] = &[
    op::CREATE,
    op::ALTER,
    op::DESCRIBE,
    op::CLUSTER_ACTION,
    op::DESCRIBE_CONFIGS,
    op::ALTER_CONFIGS,
    op::IDEMPOTENT_WRITE,
];

/// A refused topic: its name, id and the partitions asked for.
type TopicRef = (TopicName, Uuid, Vec<i32>);

/// What [`before`] took out, for [`after`].
#[derive(Default)]
pub(crate) struct Denied {
    /// Topics refused, in request order.
    topics: Vec<TopicRef>,
    /// Groups (or coordinator keys) refused.
    names: Vec<StrBytes>,
    /// Config resources refused: type, name, error.
    resources: Vec<(i8, StrBytes, i16)>,
    /// A listing shows only these topics (Metadata or OffsetFetch of all).
    visible: Option<BTreeSet<String>>,
    /// OffsetFetch v8+: per group, the topics refused.
    group_topics: Vec<(GroupId, Vec<TopicRef>)>,
    /// The error of refused coordinator keys.
    code: i16,
    /// ListGroups shows only groups this principal may describe.
    filter_groups: bool,
    /// Fill `authorized_operations` of topics / the cluster / groups.
    topic_ops: bool,
    cluster_ops: bool,
    group_ops: bool,
}

/// What to do with a request.
pub(crate) enum Checked {
    /// Run the handler on what is left, then [`after`].
    Run(Box<RequestKind>, Denied),
    /// Refused as a whole: this is the answer.
    Answer(Box<ResponseKind>),
}

/// Kafka's text for an error code.
fn describe(code: i16) -> String {
    ResponseError::try_from_code(code).map_or_else(String::new, |e| e.to_string())
}

fn answer(r: ResponseKind) -> Checked {
    Checked::Answer(Box::new(r))
}

/// Takes out of a topic list the topics not allowed `operation`; a topic
/// given by id only is named from the image first (unknown ids stay).
fn split_topics<T>(
    authz: &Authz<'_>,
    items: &mut Vec<T>,
    operation: i8,
    key: impl Fn(&T) -> (TopicName, Uuid, Vec<i32>),
    denied: &mut Vec<TopicRef>,
) {
    items.retain(|t| {
        let (name, id, parts) = key(t);
        let named = if name.0.is_empty() && !id.is_nil() {
            match authz.name_of(id) {
                Some(n) => n,
                None => return true,
            }
        } else {
            name.0.to_string()
        };
        if authz.topic(operation, &named) {
            true
        } else {
            denied.push((name, id, parts));
            false
        }
    });
}

/// A Produce with the topics the principal may not write taken out (also
/// used by the pipelined acks=all path). A transactional produce is left
/// whole: the handler refuses it.
pub(crate) fn before_produce(authz: &Authz<'_>, r: &mut ProduceRequest) -> Denied {
    let mut d = Denied::default();
    if authz.on() && r.transactional_id.is_none() {
        split_topics(
            authz,
            &mut r.topic_data,
            op::WRITE,
            |t| {
                (
                    t.name.clone(),
                    t.topic_id,
                    t.partition_data.iter().map(|p| p.index).collect(),
                )
            },
            &mut d.topics,
        );
    }
    d
}

/// The request with what may not be done taken out, or its refusal.
pub(crate) fn before(authz: &Authz<'_>, request: RequestKind, version: i16) -> Checked {
    let mut d = Denied::default();
    // Asked-for operation bits are filled even without an authorizer.
    match &request {
        RequestKind::Metadata(r) => {
            d.topic_ops = version >= 8 && r.include_topic_authorized_operations;
            d.cluster_ops = (8..=10).contains(&version) && r.include_cluster_authorized_operations;
        }
        RequestKind::DescribeCluster(r) => d.cluster_ops = r.include_cluster_authorized_operations,
        RequestKind::DescribeGroups(r) => {
            d.group_ops = version >= 3 && r.include_authorized_operations
        }
        _ => {}
    }
    if !authz.on() {
        return Checked::Run(Box::new(request), d);
    }
    let request = match request {
        RequestKind::Produce(mut r) => {
            d = before_produce(authz, &mut r);
            RequestKind::Produce(r)
        }
        RequestKind::Fetch(mut r) => {
            let replica = if version >= 15 {
                r.replica_state.replica_id.0
            } else {
                r.replica_id.0
            };
            if replica >= 0 && !authz.cluster(op::CLUSTER_ACTION) {
                for t in r.topics.drain(..) {
                    d.topics.push((
                        t.topic,
                        t.topic_id,
                        t.partitions.iter().map(|p| p.partition).collect(),
                    ));
                }
            } else {
                split_topics(
                    authz,
                    &mut r.topics,
                    op::READ,
                    |t| {
                        (
                            t.topic.clone(),
                            t.topic_id,
                            t.partitions.iter().map(|p| p.partition).collect(),
                        )
                    },
                    &mut d.topics,
                );
            }
            if !d.topics.is_empty() {
                // The refusal is the answer: do not long-poll for it.
                r.max_wait_ms = 0;
            }
            RequestKind::Fetch(r)
        }
        RequestKind::Metadata(mut r) => {
            match &mut r.topics {
                // v0: an empty list means all topics too.
                None => d.visible = Some(authz.describable_topics()),
                Some(topics) if topics.is_empty() && version == 0 => {
                    d.visible = Some(authz.describable_topics())
                }
                Some(topics) => {
                    topics.retain(|t| {
                        let name = match (&t.name, t.topic_id) {
                            (Some(n), _) => n.0.to_string(),
                            (None, id) => match authz.name_of(id) {
                                Some(n) => n,
                                None => return true,
                            },
                        };
                        if authz.topic(op::DESCRIBE, &name) {
                            true
                        } else {
                            d.topics.push((TopicName(s(name)), t.topic_id, Vec::new()));
                            false
                        }
                    });
                    if topics.is_empty() && version == 0 {
                        // Emptied, a v0 list would ask for every topic.
                        d.visible = Some(BTreeSet::new());
                    }
                    // Auto-creation needs CREATE on the cluster or on each topic.
                    if r.allow_auto_topic_creation
                        && !authz.cluster(op::CREATE)
                        && !topics.iter().all(|t| {
                            t.name
                                .as_ref()
                                .is_some_and(|n| authz.topic(op::CREATE, n.0.as_str()))
                        })
                    {
                        r.allow_auto_topic_creation = false;
                    }
                }
            }
            RequestKind::Metadata(r)
        }
        RequestKind::ListOffsets(mut r) => {
            split_topics(
                authz,
                &mut r.topics,
                op::DESCRIBE,
                |t| {
                    (
                        t.name.clone(),
                        Uuid::nil(),
                        t.partitions.iter().map(|p| p.partition_index).collect(),
                    )
                },
                &mut d.topics,
            );
            RequestKind::ListOffsets(r)
        }
        RequestKind::OffsetForLeaderEpoch(mut r) => {
            if r.replica_id.0 >= 0 && !authz.cluster(op::CLUSTER_ACTION) {
                let mut resp = OffsetForLeaderEpochResponse::default();
                resp.topics = r
                    .topics
                    .into_iter()
                    .map(|t| {
                        epoch_refusal(
                            (
                                t.topic,
                                Uuid::nil(),
                                t.partitions.iter().map(|p| p.partition).collect(),
                            ),
                            CLUSTER_DENIED,
                        )
                    })
                    .collect();
                return answer(ResponseKind::OffsetForLeaderEpoch(resp));
            }
            split_topics(
                authz,
                &mut r.topics,
                op::DESCRIBE,
                |t| {
                    (
                        t.topic.clone(),
                        Uuid::nil(),
                        t.partitions.iter().map(|p| p.partition).collect(),
                    )
                },
                &mut d.topics,
            );
            RequestKind::OffsetForLeaderEpoch(r)
        }
        RequestKind::DeleteRecords(mut r) => {
            split_topics(
                authz,
                &mut r.topics,
                op::DELETE,
                |t| {
                    (
                        t.name.clone(),
                        Uuid::nil(),
                        t.partitions.iter().map(|p| p.partition_index).collect(),
                    )
                },
                &mut d.topics,
            );
            RequestKind::DeleteRecords(r)
        }
        RequestKind::CreateTopics(mut r) => {
            if !authz.cluster(op::CREATE) {
                split_topics(
                    authz,
                    &mut r.topics,
                    op::CREATE,
                    |t| (t.name.clone(), Uuid::nil(), Vec::new()),
                    &mut d.topics,
                );
            }
            RequestKind::CreateTopics(r)
        }
        RequestKind::DeleteTopics(mut r) => {
            split_topics(
                authz,
                &mut r.topic_names,
                op::DELETE,
                |n| (n.clone(), Uuid::nil(), Vec::new()),
                &mut d.topics,
            );
            split_topics(
                authz,
                &mut r.topics,
                op::DELETE,
                |t| (t.name.clone().unwrap_or_default(), t.topic_id, Vec::new()),
                &mut d.topics,
            );
            RequestKind::DeleteTopics(r)
        }
        RequestKind::CreatePartitions(mut r) => {
            split_topics(
                authz,
                &mut r.topics,
                op::ALTER,
                |t| (t.name.clone(), Uuid::nil(), Vec::new()),
                &mut d.topics,
            );
            RequestKind::CreatePartitions(r)
        }
        RequestKind::DescribeConfigs(mut r) => {
            r.resources.retain(|c| {
                config_allowed(
                    authz,
                    c.resource_type,
                    &c.resource_name,
                    op::DESCRIBE_CONFIGS,
                    &mut d,
                )
            });
            RequestKind::DescribeConfigs(r)
        }
        RequestKind::AlterConfigs(mut r) => {
            r.resources.retain(|c| {
                config_allowed(
                    authz,
                    c.resource_type,
                    &c.resource_name,
                    op::ALTER_CONFIGS,
                    &mut d,
                )
            });
            RequestKind::AlterConfigs(r)
        }
        RequestKind::IncrementalAlterConfigs(mut r) => {
            r.resources.retain(|c| {
                config_allowed(
                    authz,
                    c.resource_type,
                    &c.resource_name,
                    op::ALTER_CONFIGS,
                    &mut d,
                )
            });
            RequestKind::IncrementalAlterConfigs(r)
        }
        RequestKind::DescribeLogDirs(r) => {
            if !authz.cluster(op::DESCRIBE) {
                let mut resp = DescribeLogDirsResponse::default();
                resp.error_code = CLUSTER_DENIED;
                return answer(ResponseKind::DescribeLogDirs(resp));
            }
            RequestKind::DescribeLogDirs(r)
        }
        RequestKind::DescribeCluster(r) => {
            if !authz.cluster(op::DESCRIBE) {
                let mut resp = DescribeClusterResponse::default();
                resp.error_code = CLUSTER_DENIED;
                resp.error_message = Some(s(CLUSTER_DENIED_MESSAGE));
                return answer(ResponseKind::DescribeCluster(resp));
            }
            RequestKind::DescribeCluster(r)
        }
        RequestKind::FindCoordinator(mut r) => {
            let (resource_type, code) = match r.key_type {
                1 => (resource::TRANSACTIONAL_ID, TXN_DENIED),
                _ => (resource::GROUP, GROUP_DENIED),
            };
            if version < 4 {
                if !authz.allows(op::DESCRIBE, resource_type, r.key.as_str()) {
                    let mut resp = FindCoordinatorResponse::default();
                    resp.error_code = code;
                    resp.error_message = Some(s(describe(code)));
                    resp.node_id = BrokerId(-1);
                    resp.port = -1;
                    return answer(ResponseKind::FindCoordinator(resp));
                }
            } else {
                r.coordinator_keys.retain(|k| {
                    let ok = authz.allows(op::DESCRIBE, resource_type, k.as_str());
                    if !ok {
                        d.names.push(k.clone());
                    }
                    ok
                });
                d.code = code;
            }
            RequestKind::FindCoordinator(r)
        }
        RequestKind::JoinGroup(r) => {
            if !authz.group(op::READ, r.group_id.0.as_str()) {
                let mut resp = JoinGroupResponse::default();
                resp.error_code = GROUP_DENIED;
                resp.generation_id = -1;
                resp.member_id = r.member_id.clone();
                if version >= 7 {
                    resp.protocol_name = None;
                }
                return answer(ResponseKind::JoinGroup(resp));
            }
            RequestKind::JoinGroup(r)
        }
        RequestKind::SyncGroup(r) => {
            if !authz.group(op::READ, r.group_id.0.as_str()) {
                let mut resp = SyncGroupResponse::default();
                resp.error_code = GROUP_DENIED;
                return answer(ResponseKind::SyncGroup(resp));
            }
            RequestKind::SyncGroup(r)
        }
        RequestKind::Heartbeat(r) => {
            if !authz.group(op::READ, r.group_id.0.as_str()) {
                let mut resp = HeartbeatResponse::default();
                resp.error_code = GROUP_DENIED;
                return answer(ResponseKind::Heartbeat(resp));
            }
            RequestKind::Heartbeat(r)
        }
        RequestKind::LeaveGroup(r) => {
            if !authz.group(op::READ, r.group_id.0.as_str()) {
                let mut resp = LeaveGroupResponse::default();
                resp.error_code = GROUP_DENIED;
                return answer(ResponseKind::LeaveGroup(resp));
            }
            RequestKind::LeaveGroup(r)
        }
        RequestKind::OffsetCommit(mut r) => {
            if !authz.group(op::READ, r.group_id.0.as_str()) {
                let mut resp = OffsetCommitResponse::default();
                resp.topics = r
                    .topics
                    .into_iter()
                    .map(|t| {
                        commit_refusal(
                            (
                                t.name,
                                t.topic_id,
                                t.partitions.iter().map(|p| p.partition_index).collect(),
                            ),
                            GROUP_DENIED,
                        )
                    })
                    .collect();
                return answer(ResponseKind::OffsetCommit(resp));
            }
            split_topics(
                authz,
                &mut r.topics,
                op::READ,
                |t| {
                    (
                        t.name.clone(),
                        t.topic_id,
                        t.partitions.iter().map(|p| p.partition_index).collect(),
                    )
                },
                &mut d.topics,
            );
            RequestKind::OffsetCommit(r)
        }
        RequestKind::OffsetFetch(mut r) => {
            if version < 8 {
                if !authz.group(op::DESCRIBE, r.group_id.0.as_str()) {
                    let mut resp = OffsetFetchResponse::default();
                    resp.error_code = GROUP_DENIED;
                    if version < 2 {
                        resp.topics = r
                            .topics
                            .unwrap_or_default()
                            .into_iter()
                            .map(|t| {
                                fetch_offset_refusal(
                                    (t.name, Uuid::nil(), t.partition_indexes),
                                    GROUP_DENIED,
                                )
                            })
                            .collect();
                    }
                    return answer(ResponseKind::OffsetFetch(resp));
                }
                match &mut r.topics {
                    None => d.visible = Some(authz.describable_topics()),
                    Some(topics) => split_topics(
                        authz,
                        topics,
                        op::DESCRIBE,
                        |t| (t.name.clone(), Uuid::nil(), t.partition_indexes.clone()),
                        &mut d.topics,
                    ),
                }
            } else {
                let mut visible = None;
                r.groups.retain_mut(|g| {
                    if !authz.group(op::DESCRIBE, g.group_id.0.as_str()) {
                        d.names.push(g.group_id.0.clone());
                        return false;
                    }
                    match &mut g.topics {
                        None => {
                            visible.get_or_insert_with(|| authz.describable_topics());
                        }
                        Some(topics) => {
                            let mut refused = Vec::new();
                            split_topics(
                                authz,
                                topics,
                                op::DESCRIBE,
                                |t| (t.name.clone(), t.topic_id, t.partition_indexes.clone()),
                                &mut refused,
                            );
                            if !refused.is_empty() {
                                d.group_topics.push((g.group_id.clone(), refused));
                            }
                        }
                    }
                    true
                });
                d.visible = visible;
            }
            RequestKind::OffsetFetch(r)
        }
        RequestKind::DescribeGroups(mut r) => {
            r.groups.retain(|g| {
                let ok = authz.group(op::DESCRIBE, g.0.as_str());
                if !ok {
                    d.names.push(g.0.clone());
                }
                ok
            });
            RequestKind::DescribeGroups(r)
        }
        RequestKind::ListGroups(r) => {
            d.filter_groups = !authz.cluster(op::DESCRIBE);
            RequestKind::ListGroups(r)
        }
        RequestKind::DeleteGroups(mut r) => {
            r.groups_names.retain(|g| {
                let ok = authz.group(op::DELETE, g.0.as_str());
                if !ok {
                    d.names.push(g.0.clone());
                }
                ok
            });
            RequestKind::DeleteGroups(r)
        }
        RequestKind::OffsetDelete(mut r) => {
            if !authz.group(op::DELETE, r.group_id.0.as_str()) {
                let mut resp = OffsetDeleteResponse::default();
                resp.error_code = GROUP_DENIED;
                return answer(ResponseKind::OffsetDelete(resp));
            }
            split_topics(
                authz,
                &mut r.topics,
                op::READ,
                |t| {
                    (
                        t.name.clone(),
                        Uuid::nil(),
                        t.partitions.iter().map(|p| p.partition_index).collect(),
                    )
                },
                &mut d.topics,
            );
            RequestKind::OffsetDelete(r)
        }
        RequestKind::InitProducerId(r) => {
            let allowed = match &r.transactional_id {
                Some(id) => authz.allows(op::WRITE, resource::TRANSACTIONAL_ID, id.0.as_str()),
                None => {
                    authz.cluster(op::IDEMPOTENT_WRITE)
                        || authz.image.as_ref().is_none_or(|i| {
                            authorize_any(
                                authz.cfg,
                                &i.acls,
                                authz.subject,
                                op::WRITE,
                                resource::TOPIC,
                            )
                        })
                }
            };
            if !allowed {
                let mut resp = InitProducerIdResponse::default();
                resp.error_code = if r.transactional_id.is_some() {
                    TXN_DENIED
                } else {
                    CLUSTER_DENIED
                };
                resp.producer_id = ProducerId(-1);
                resp.producer_epoch = -1;
                return answer(ResponseKind::InitProducerId(resp));
            }
            RequestKind::InitProducerId(r)
        }
        RequestKind::DescribeUserScramCredentials(r) => {
            if !authz.cluster(op::DESCRIBE) {
                let mut resp = DescribeUserScramCredentialsResponse::default();
                resp.error_code = CLUSTER_DENIED;
                resp.error_message = Some(s(CLUSTER_DENIED_MESSAGE));
                return answer(ResponseKind::DescribeUserScramCredentials(resp));
            }
            RequestKind::DescribeUserScramCredentials(r)
        }
        RequestKind::AlterUserScramCredentials(r) => {
            if !authz.cluster(op::ALTER) {
                use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
                let users = r
                    .deletions
                    .iter()
                    .map(|d| &d.name)
                    .chain(r.upsertions.iter().map(|u| &u.name));
                let mut seen = BTreeSet::new();
                let mut resp = AlterUserScramCredentialsResponse::default();
                resp.results = users
                    .into_iter()
                    .filter(|u| seen.insert(u.as_str().to_owned()))
                    .map(|u| {
                        let mut res = AlterUserScramCredentialsResult::default();
                        res.user = u.clone();
                        res.error_code = CLUSTER_DENIED;
                        res.error_message = Some(s(CLUSTER_DENIED_MESSAGE));
                        res
                    })
                    .collect();
                return answer(ResponseKind::AlterUserScramCredentials(resp));
            }
            RequestKind::AlterUserScramCredentials(r)
        }
        RequestKind::DescribeAcls(r) => {
            if !authz.cluster(op::DESCRIBE) {
                let mut resp = DescribeAclsResponse::default();
                resp.error_code = CLUSTER_DENIED;
                resp.error_message = Some(s(CLUSTER_DENIED_MESSAGE));
                return answer(ResponseKind::DescribeAcls(resp));
            }
            RequestKind::DescribeAcls(r)
        }
        RequestKind::CreateAcls(r) => {
            if !authz.cluster(op::ALTER) {
                use kafka_protocol::messages::create_acls_response::AclCreationResult;
                let mut resp = CreateAclsResponse::default();
                resp.results = r
                    .creations
                    .iter()
                    .map(|_| {
                        let mut res = AclCreationResult::default();
                        res.error_code = CLUSTER_DENIED;
                        res.error_message = Some(s(CLUSTER_DENIED_MESSAGE));
                        res
                    })
                    .collect();
                return answer(ResponseKind::CreateAcls(resp));
            }
            RequestKind::CreateAcls(r)
        }
        RequestKind::DeleteAcls(r) => {
            if !authz.cluster(op::ALTER) {
                use kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
                let mut resp = DeleteAclsResponse::default();
                resp.filter_results = r
                    .filters
                    .iter()
                    .map(|_| {
                        let mut res = DeleteAclsFilterResult::default();
                        res.error_code = CLUSTER_DENIED;
                        res.error_message = Some(s(CLUSTER_DENIED_MESSAGE));
                        res
                    })
                    .collect();
                return answer(ResponseKind::DeleteAcls(resp));
            }
            RequestKind::DeleteAcls(r)
        }
        // ApiVersions and the SASL APIs need no permission.
        other => other,
    };
    Checked::Run(Box::new(request), d)
}

/// Config resources: a topic's are checked on the topic, a broker's (and
/// broker loggers') on the cluster.
fn config_allowed(
    authz: &Authz<'_>,
    resource_type: i8,
    name: &StrBytes,
    operation: i8,
    d: &mut Denied,
) -> bool {
    const TOPIC: i8 = 2;
    let (ok, code) = if resource_type == TOPIC {
        (authz.topic(operation, name.as_str()), TOPIC_DENIED)
    } else {
        (authz.cluster(operation), CLUSTER_DENIED)
    };
    if !ok {
        d.resources.push((resource_type, name.clone(), code));
    }
    ok
}

fn epoch_refusal(
    (name, _, parts): TopicRef,
    code: i16,
) -> offset_for_leader_epoch_response::OffsetForLeaderTopicResult {
    let mut t = offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default();
    t.topic = name;
    t.partitions = parts
        .into_iter()
        .map(|p| {
            let mut e = offset_for_leader_epoch_response::EpochEndOffset::default();
            e.partition = p;
            e.error_code = code;
            e.leader_epoch = -1;
            e.end_offset = -1;
            e
        })
        .collect();
    t
}

fn commit_refusal(
    (name, id, parts): TopicRef,
    code: i16,
) -> offset_commit_response::OffsetCommitResponseTopic {
    let mut t = offset_commit_response::OffsetCommitResponseTopic::default();
    t.name = name;
    t.topic_id = id;
    t.partitions = parts
        .into_iter()
        .map(|p| {
            let mut e = offset_commit_response::OffsetCommitResponsePartition::default();
            e.partition_index = p;
            e.error_code = code;
            e
        })
        .collect();
    t
}

fn fetch_offset_refusal(
    (name, _, parts): TopicRef,
    code: i16,
) -> offset_fetch_response::OffsetFetchResponseTopic {
    let mut t = offset_fetch_response::OffsetFetchResponseTopic::default();
    t.name = name;
    t.partitions = parts
        .into_iter()
        .map(|p| {
            let mut e = offset_fetch_response::OffsetFetchResponsePartition::default();
            e.partition_index = p;
            e.committed_offset = -1;
            e.error_code = code;
            e
        })
        .collect();
    t
}

/// A Produce's refusals (also used by the pipelined acks=all path).
pub(crate) fn after_produce(resp: &mut ProduceResponse, denied: Denied) {
    for (name, id, parts) in denied.topics {
        let mut t = produce_response::TopicProduceResponse::default();
        t.name = name;
        t.topic_id = id;
        t.partition_responses = parts
            .into_iter()
            .map(|p| {
                super::produce::partition_error(p, ResponseError::TopicAuthorizationFailed, None)
            })
            .collect();
        resp.responses.push(t);
    }
}

/// The refused config resources of `d` as results of type `$result`
/// (the three config APIs' results share these fields).
macro_rules! config_refusals {
    ($list:expr, $result:ty, $d:expr) => {
        for (resource_type, name, code) in $d.resources {
            let mut t = <$result>::default();
            t.error_code = code;
            t.error_message = Some(s("Authorization failed."));
            t.resource_type = resource_type;
            t.resource_name = name;
            $list.push(t);
        }
    };
}

/// Puts the refusals of what [`before`] took out into the response, and
/// fills `authorized_operations` where asked.
pub(crate) fn after(authz: &Authz<'_>, response: &mut ResponseKind, d: Denied) {
    match response {
        ResponseKind::Produce(r) => after_produce(r, d),
        ResponseKind::Fetch(r) => {
            for (name, id, parts) in d.topics {
                let mut t = fetch_response::FetchableTopicResponse::default();
                t.topic = name;
                t.topic_id = id;
                t.partitions = parts
                    .into_iter()
                    .map(|p| {
                        let mut e = fetch_response::PartitionData::default();
                        e.partition_index = p;
                        e.error_code = TOPIC_DENIED;
                        e.high_watermark = -1;
                        e.last_stable_offset = -1;
                        e.log_start_offset = -1;
                        e
                    })
                    .collect();
                r.responses.push(t);
            }
        }
        ResponseKind::Metadata(r) => {
            if let Some(visible) = &d.visible {
                r.topics.retain(|t| {
                    t.name
                        .as_ref()
                        .is_some_and(|n| visible.contains(n.0.as_str()))
                });
            }
            for (name, id, _) in d.topics {
                let mut t = metadata_response::MetadataResponseTopic::default();
                t.error_code = TOPIC_DENIED;
                t.name = Some(name);
                t.topic_id = id;
                r.topics.push(t);
            }
            if d.topic_ops {
                for t in &mut r.topics {
                    if t.error_code == 0
                        && let Some(n) = &t.name
                    {
                        t.topic_authorized_operations =
                            authz.operations(resource::TOPIC, n.0.as_str(), TOPIC_OPS);
                    }
                }
            }
            if d.cluster_ops {
                r.cluster_authorized_operations =
                    authz.operations(resource::CLUSTER, CLUSTER_NAME, CLUSTER_OPS);
            }
        }
        ResponseKind::DescribeCluster(r) if d.cluster_ops && r.error_code == 0 => {
            r.cluster_authorized_operations =
                authz.operations(resource::CLUSTER, CLUSTER_NAME, CLUSTER_OPS);
        }
        ResponseKind::ListOffsets(r) => {
            for (name, _, parts) in d.topics {
                let mut t = list_offsets_response::ListOffsetsTopicResponse::default();
                t.name = name;
                t.partitions = parts
                    .into_iter()
                    .map(|p| {
                        let mut e = list_offsets_response::ListOffsetsPartitionResponse::default();
                        e.partition_index = p;
                        e.error_code = TOPIC_DENIED;
                        e.timestamp = -1;
                        e.offset = -1;
                        e.leader_epoch = -1;
                        e
                    })
                    .collect();
                r.topics.push(t);
            }
        }
        ResponseKind::OffsetForLeaderEpoch(r) => {
            r.topics
                .extend(d.topics.into_iter().map(|t| epoch_refusal(t, TOPIC_DENIED)));
        }
        ResponseKind::DeleteRecords(r) => {
            for (name, _, parts) in d.topics {
                let mut t = delete_records_response::DeleteRecordsTopicResult::default();
                t.name = name;
                t.partitions = parts
                    .into_iter()
                    .map(|p| {
                        let mut e =
                            delete_records_response::DeleteRecordsPartitionResult::default();
                        e.partition_index = p;
                        e.low_watermark = -1;
                        e.error_code = TOPIC_DENIED;
                        e
                    })
                    .collect();
                r.topics.push(t);
            }
        }
        ResponseKind::CreateTopics(r) => {
            for (name, _, _) in d.topics {
                let mut t = create_topics_response::CreatableTopicResult::default();
                t.name = name;
                t.error_code = TOPIC_DENIED;
                t.error_message = Some(s("Authorization failed."));
                t.num_partitions = -1;
                t.replication_factor = -1;
                t.topic_config_error_code = TOPIC_DENIED;
                r.topics.push(t);
            }
        }
        ResponseKind::DeleteTopics(r) => {
            for (name, id, _) in d.topics {
                let mut t = delete_topics_response::DeletableTopicResult::default();
                t.name = (!name.0.is_empty()).then_some(name);
                t.topic_id = id;
                t.error_code = TOPIC_DENIED;
                t.error_message = Some(s("Authorization failed."));
                r.responses.push(t);
            }
        }
        ResponseKind::CreatePartitions(r) => {
            for (name, _, _) in d.topics {
                let mut t = create_partitions_response::CreatePartitionsTopicResult::default();
                t.name = name;
                t.error_code = TOPIC_DENIED;
                t.error_message = Some(s("Authorization failed."));
                r.results.push(t);
            }
        }
        ResponseKind::DescribeConfigs(r) => config_refusals!(
            r.results,
            describe_configs_response::DescribeConfigsResult,
            d
        ),
        ResponseKind::AlterConfigs(r) => config_refusals!(
            r.responses,
            alter_configs_response::AlterConfigsResourceResponse,
            d
        ),
        ResponseKind::IncrementalAlterConfigs(r) => config_refusals!(
            r.responses,
            incremental_alter_configs_response::AlterConfigsResourceResponse,
            d
        ),
        ResponseKind::FindCoordinator(r) => {
            let code = d.code;
            for key in d.names {
                let mut c = find_coordinator_response::Coordinator::default();
                c.key = key;
                c.node_id = BrokerId(-1);
                c.port = -1;
                c.error_code = code;
                c.error_message = Some(s(describe(code)));
                r.coordinators.push(c);
            }
        }
        ResponseKind::OffsetCommit(r) => {
            r.topics.extend(
                d.topics
                    .into_iter()
                    .map(|t| commit_refusal(t, TOPIC_DENIED)),
            );
        }
        ResponseKind::OffsetFetch(r) => {
            if let Some(visible) = &d.visible {
                r.topics.retain(|t| visible.contains(t.name.0.as_str()));
                for g in &mut r.groups {
                    g.topics.retain(|t| {
                        visible.contains(t.name.0.as_str())
                            || (t.name.0.is_empty()
                                && authz
                                    .name_of(t.topic_id)
                                    .is_some_and(|n| visible.contains(&n)))
                    });
                }
            }
            r.topics.extend(
                d.topics
                    .into_iter()
                    .map(|t| fetch_offset_refusal(t, TOPIC_DENIED)),
            );
            for (group, refused) in d.group_topics {
                if let Some(g) = r.groups.iter_mut().find(|g| g.group_id == group) {
                    for (name, id, parts) in refused {
                        let mut t = offset_fetch_response::OffsetFetchResponseTopics::default();
                        t.name = name;
                        t.topic_id = id;
                        t.partitions = parts
                            .into_iter()
                            .map(|p| {
                                let mut e =
                                    offset_fetch_response::OffsetFetchResponsePartitions::default();
                                e.partition_index = p;
                                e.committed_offset = -1;
                                e.error_code = TOPIC_DENIED;
                                e
                            })
                            .collect();
                        g.topics.push(t);
                    }
                }
            }
            for group in d.names {
                let mut g = offset_fetch_response::OffsetFetchResponseGroup::default();
                g.group_id = GroupId(group);
                g.error_code = GROUP_DENIED;
                r.groups.push(g);
            }
        }
        ResponseKind::DescribeGroups(r) => {
            for group in d.names {
                let mut g = describe_groups_response::DescribedGroup::default();
                g.error_code = GROUP_DENIED;
                g.error_message = Some(s("Group authorization failed."));
                g.group_id = GroupId(group);
                r.groups.push(g);
            }
            if d.group_ops {
                for g in &mut r.groups {
                    if g.error_code == 0 {
                        g.authorized_operations =
                            authz.operations(resource::GROUP, g.group_id.0.as_str(), GROUP_OPS);
                    }
                }
            }
        }
        ResponseKind::ListGroups(r) if d.filter_groups => {
            r.groups
                .retain(|g| authz.group(op::DESCRIBE, g.group_id.0.as_str()));
        }
        ResponseKind::DeleteGroups(r) => {
            for group in d.names {
                let mut g = delete_groups_response::DeletableGroupResult::default();
                g.group_id = GroupId(group);
                g.error_code = GROUP_DENIED;
                r.results.push(g);
            }
        }
        ResponseKind::OffsetDelete(r) => {
            for (name, _, parts) in d.topics {
                let mut t = offset_delete_response::OffsetDeleteResponseTopic::default();
                t.name = name;
                t.partitions = parts
                    .into_iter()
                    .map(|p| {
                        let mut e =
                            offset_delete_response::OffsetDeleteResponsePartition::default();
                        e.partition_index = p;
                        e.error_code = TOPIC_DENIED;
                        e
                    })
                    .collect();
                r.topics.push(t);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_meta::AclBinding;
    use weir_meta::acl::{pattern, permission};

    fn image(topics: &[&str], acls: Vec<AclBinding>) -> Image {
        let mut i = Image::default();
        for (n, t) in topics.iter().enumerate() {
            let id = Uuid::from_u128(n as u128 + 1);
            i.names.insert((*t).to_owned(), id);
            i.topics.insert(
                id,
                weir_meta::TopicInfo {
                    name: (*t).to_owned(),
                    id,
                    configs: Default::default(),
                    partitions: Vec::new(),
                },
            );
        }
        i.acls = acls.into_iter().collect();
        i
    }

    fn allow(rt: i8, name: &str, pt: i8, o: i8) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pt,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: o,
            permission: permission::ALLOW,
        }
    }

    fn authz<'a>(cfg: &'a AuthorizerConfig, image: Image) -> Authz<'a> {
        Authz {
            cfg,
            image: Some(Arc::new(image)),
            subject: Subject {
                principal: "User:alice",
                host: "127.0.0.1",
            },
        }
    }

    fn on() -> AuthorizerConfig {
        AuthorizerConfig {
            enabled: true,
            ..Default::default()
        }
    }

    fn run(a: &Authz<'_>, req: RequestKind, version: i16) -> (RequestKind, Denied) {
        match before(a, req, version) {
            Checked::Run(r, d) => (*r, d),
            Checked::Answer(_) => panic!("answered whole"),
        }
    }

    #[test]
    fn a_produce_keeps_the_allowed_topics_and_answers_the_others_refused() {
        let cfg = on();
        let a = authz(
            &cfg,
            image(
                &["logs", "secret"],
                vec![allow(resource::TOPIC, "lo", pattern::PREFIXED, op::WRITE)],
            ),
        );
        let mut req = ProduceRequest::default();
        for name in ["logs", "secret"] {
            let mut t = produce_request::TopicProduceData::default();
            t.name = TopicName(s(name));
            let mut p = produce_request::PartitionProduceData::default();
            p.index = 3;
            t.partition_data.push(p);
            req.topic_data.push(t);
        }
        let (req, denied) = run(&a, RequestKind::Produce(req), 9);
        let RequestKind::Produce(req) = req else {
            unreachable!()
        };
        assert_eq!(req.topic_data.len(), 1);
        assert_eq!(req.topic_data[0].name.0.as_str(), "logs");
        let mut resp = ResponseKind::Produce(ProduceResponse::default());
        after(&a, &mut resp, denied);
        let ResponseKind::Produce(resp) = resp else {
            unreachable!()
        };
        assert_eq!(resp.responses[0].name.0.as_str(), "secret");
        assert_eq!(resp.responses[0].partition_responses[0].index, 3);
        assert_eq!(
            resp.responses[0].partition_responses[0].error_code,
            TOPIC_DENIED
        );
    }

    #[test]
    fn metadata_listings_hide_what_may_not_be_described_and_v0_never_widens() {
        let cfg = on();
        let a = authz(
            &cfg,
            image(
                &["logs", "secret"],
                vec![allow(resource::TOPIC, "logs", pattern::LITERAL, op::READ)],
            ),
        );
        // All topics: only logs survives the listing.
        let mut req = MetadataRequest::default();
        req.topics = None;
        let (_, denied) = run(&a, RequestKind::Metadata(req), 12);
        let mut resp = MetadataResponse::default();
        for name in ["logs", "secret"] {
            let mut t = metadata_response::MetadataResponseTopic::default();
            t.name = Some(TopicName(s(name)));
            resp.topics.push(t);
        }
        let mut resp = ResponseKind::Metadata(resp);
        after(&a, &mut resp, denied);
        let ResponseKind::Metadata(r) = &resp else {
            unreachable!()
        };
        assert_eq!(r.topics.len(), 1);
        // v0 naming only a refused topic: the emptied list must not mean
        // "all", and the topic comes back refused; no auto-creation.
        let mut req = MetadataRequest::default();
        let mut t = metadata_request::MetadataRequestTopic::default();
        t.name = Some(TopicName(s("secret")));
        req.topics = Some(vec![t]);
        let (req, denied) = run(&a, RequestKind::Metadata(req), 0);
        let RequestKind::Metadata(req) = req else {
            unreachable!()
        };
        assert_eq!(req.topics.map(|t| t.len()), Some(0));
        let mut resp = MetadataResponse::default();
        let mut t = metadata_response::MetadataResponseTopic::default();
        t.name = Some(TopicName(s("logs")));
        resp.topics.push(t);
        let mut resp = ResponseKind::Metadata(resp);
        after(&a, &mut resp, denied);
        let ResponseKind::Metadata(r) = &resp else {
            unreachable!()
        };
        assert_eq!(r.topics.len(), 1);
        assert_eq!(r.topics[0].error_code, TOPIC_DENIED);
        assert_eq!(r.topics[0].name.as_ref().unwrap().0.as_str(), "secret");
        // A topic alice may describe but not create is not auto-created.
        let mut req = MetadataRequest::default();
        let mut t = metadata_request::MetadataRequestTopic::default();
        t.name = Some(TopicName(s("logs")));
        req.topics = Some(vec![t]);
        let (req, _) = run(&a, RequestKind::Metadata(req), 12);
        let RequestKind::Metadata(req) = req else {
            unreachable!()
        };
        assert!(!req.allow_auto_topic_creation);
    }

    #[test]
    fn group_apis_are_refused_whole_and_authorized_operations_are_filled() {
        let cfg = on();
        let a = authz(
            &cfg,
            image(
                &[],
                vec![allow(resource::GROUP, "mine", pattern::LITERAL, op::READ)],
            ),
        );
        let mut join = JoinGroupRequest::default();
        join.group_id = GroupId(s("theirs"));
        match before(&a, RequestKind::JoinGroup(join), 9) {
            Checked::Answer(r) => match *r {
                ResponseKind::JoinGroup(r) => {
                    assert_eq!(r.error_code, GROUP_DENIED);
                    assert_eq!(r.generation_id, -1);
                }
                _ => panic!("not a JoinGroup answer"),
            },
            Checked::Run(..) => panic!("joined a group without READ"),
        }
        let mut req = DescribeGroupsRequest::default();
        req.groups = vec![GroupId(s("mine")), GroupId(s("theirs"))];
        req.include_authorized_operations = true;
        let (_, denied) = run(&a, RequestKind::DescribeGroups(req), 5);
        let mut resp = DescribeGroupsResponse::default();
        let mut g = describe_groups_response::DescribedGroup::default();
        g.group_id = GroupId(s("mine"));
        resp.groups.push(g);
        let mut resp = ResponseKind::DescribeGroups(resp);
        after(&a, &mut resp, denied);
        let ResponseKind::DescribeGroups(r) = &resp else {
            unreachable!()
        };
        // READ, and DESCRIBE implied by it; not DELETE.
        assert_eq!(
            r.groups[0].authorized_operations,
            (1 << op::READ) | (1 << op::DESCRIBE)
        );
        assert_eq!(r.groups[1].error_code, GROUP_DENIED);
    }
}

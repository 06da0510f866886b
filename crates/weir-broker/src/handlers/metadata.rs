//! Metadata and DescribeCluster: who the broker is and what topics exist.
//! Metadata also auto-creates topics when the client and the broker allow.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::*;
use uuid::Uuid;

use super::s;
use crate::Broker;
use crate::topics::{Topic, TopicError};

fn topic_entry(t: &Topic, live: &[i32]) -> MetadataResponseTopic {
    let mut e = MetadataResponseTopic::default();
    e.name = Some(TopicName(s(t.name.clone())));
    e.topic_id = t.id;
    e.is_internal = t.name.starts_with("__");
    e.partitions = t
        .assignment
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut mp = MetadataResponsePartition::default();
            mp.partition_index = i as i32;
            mp.leader_id = BrokerId(p.leader);
            mp.leader_epoch = p.leader_epoch;
            if p.leader < 0 {
                mp.error_code = ResponseError::LeaderNotAvailable.code();
            }
            mp.replica_nodes = p.replicas.iter().map(|&r| BrokerId(r)).collect();
            mp.isr_nodes = p.isr.iter().map(|&r| BrokerId(r)).collect();
            mp.offline_replicas = p
                .replicas
                .iter()
                .filter(|r| !live.contains(r))
                .map(|&r| BrokerId(r))
                .collect();
            mp
        })
        .collect();
    e
}

/// The live (unfenced) brokers and where clients reach them: (id, host,
/// port, rack) on `listener`, the one the asking client came in on.
pub(super) fn live_brokers(
    broker: &Broker,
    listener: &str,
) -> Vec<(i32, String, u16, Option<String>)> {
    let image = broker.cluster().image();
    image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .filter_map(|b| {
            let e = b.endpoints.iter().find(|e| e.listener == listener)?;
            Some((b.id, e.host.clone(), e.port, b.rack.clone()))
        })
        .collect()
}

fn error_entry(name: Option<&str>, id: Uuid, err: ResponseError) -> MetadataResponseTopic {
    let mut e = MetadataResponseTopic::default();
    e.name = name.map(|n| TopicName(s(n)));
    e.topic_id = id;
    e.error_code = err.code();
    e
}

pub(super) async fn metadata(
    broker: &Broker,
    req: MetadataRequest,
    version: i16,
    listener: &str,
) -> MetadataResponse {
    let mut resp = MetadataResponse::default();
    let brokers = live_brokers(broker, listener);
    let live: Vec<i32> = brokers.iter().map(|b| b.0).collect();
    resp.brokers = brokers
        .into_iter()
        .map(|(id, host, port, rack)| {
            let mut b = MetadataResponseBroker::default();
            b.node_id = BrokerId(id);
            b.host = s(host);
            b.port = i32::from(port);
            b.rack = rack.map(s);
            b
        })
        .collect();
    resp.cluster_id = Some(s(broker.meta().cluster_id.clone()));
    // As Kafka's KRaft brokers do, clients are given a live broker as the
    // "controller" (this one): any broker takes admin requests and
    // forwards them to the active controller, so an admin client never
    // waits on a controller that just died.
    resp.controller_id = BrokerId(broker.meta().node_id);

    let topics = broker.topics();
    // v0: an empty list means all topics; v1+: null means all topics.
    let all = match &req.topics {
        None => true,
        Some(list) => list.is_empty() && version == 0,
    };
    if all {
        resp.topics = topics
            .all()
            .iter()
            .filter(|t| !t.assignment.is_empty())
            .map(|t| topic_entry(t, &live))
            .collect();
        return resp;
    }
    // Before v4 the field is not sent and decodes as its default, true;
    // the authorizer may have turned it off (no CREATE permission).
    let allow_create = req.allow_auto_topic_creation && broker.config().auto_create_topics;
    for wanted in req.topics.unwrap_or_default() {
        let entry = match wanted.name.as_ref().map(|n| n.0.as_str().to_owned()) {
            Some(name) => match topics.get(&name).filter(|t| !t.assignment.is_empty()) {
                Some(t) => topic_entry(&t, &live),
                None if allow_create => {
                    let partitions = broker.config().num_partitions;
                    match broker
                        .create_topic(&name, partitions, -1, BTreeMap::new(), false)
                        .await
                    {
                        Ok(t) => topic_entry(&t, &live),
                        // Another request created it meanwhile.
                        Err(TopicError::Exists(_)) => match topics.get(&name) {
                            Some(t) => topic_entry(&t, &live),
                            None => error_entry(
                                Some(&name),
                                Uuid::nil(),
                                ResponseError::UnknownTopicOrPartition,
                            ),
                        },
                        Err(e) => error_entry(Some(&name), Uuid::nil(), e.code()),
                    }
                }
                None => error_entry(
                    Some(&name),
                    Uuid::nil(),
                    ResponseError::UnknownTopicOrPartition,
                ),
            },
            None => match topics
                .get_by_id(wanted.topic_id)
                .filter(|t| !t.assignment.is_empty())
            {
                Some(t) => topic_entry(&t, &live),
                None => error_entry(None, wanted.topic_id, ResponseError::UnknownTopicId),
            },
        };
        resp.topics.push(entry);
    }
    resp
}

pub(super) fn describe_cluster(
    broker: &Broker,
    _req: DescribeClusterRequest,
    listener: &str,
) -> DescribeClusterResponse {
    let mut resp = DescribeClusterResponse::default();
    resp.cluster_id = s(broker.meta().cluster_id.clone());
    // A live broker that forwards admin requests (see Metadata).
    resp.controller_id = BrokerId(broker.meta().node_id);
    resp.endpoint_type = 1;
    resp.brokers = live_brokers(broker, listener)
        .into_iter()
        .map(|(id, host, port, rack)| {
            let mut b = DescribeClusterBroker::default();
            b.broker_id = BrokerId(id);
            b.host = s(host);
            b.port = i32::from(port);
            b.rack = rack.map(s);
            b
        })
        .collect();
    resp
}

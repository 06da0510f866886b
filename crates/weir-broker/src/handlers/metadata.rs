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

fn topic_entry(node: i32, t: &Topic) -> MetadataResponseTopic {
    let mut e = MetadataResponseTopic::default();
    e.name = Some(TopicName(s(t.name.clone())));
    e.topic_id = t.id;
    e.is_internal = t.name.starts_with("__");
    e.partitions = t
        .partitions
        .iter()
        .map(|p| {
            let mut mp = MetadataResponsePartition::default();
            mp.partition_index = p.index;
            mp.leader_id = BrokerId(node);
            mp.leader_epoch = 0;
            mp.replica_nodes = vec![BrokerId(node)];
            mp.isr_nodes = vec![BrokerId(node)];
            mp
        })
        .collect();
    e
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
) -> MetadataResponse {
    let node = broker.meta().node_id;
    let (host, port) = broker.config().advertised();
    let mut resp = MetadataResponse::default();
    let mut b = MetadataResponseBroker::default();
    b.node_id = BrokerId(node);
    b.host = s(host);
    b.port = i32::from(port);
    resp.brokers = vec![b];
    resp.cluster_id = Some(s(broker.meta().cluster_id.clone()));
    resp.controller_id = BrokerId(node);

    let topics = broker.topics();
    // v0: an empty list means all topics; v1+: null means all topics.
    let all = match &req.topics {
        None => true,
        Some(list) => list.is_empty() && version == 0,
    };
    if all {
        resp.topics = topics.all().iter().map(|t| topic_entry(node, t)).collect();
        return resp;
    }
    let allow_create =
        (version < 4 || req.allow_auto_topic_creation) && broker.config().auto_create_topics;
    for wanted in req.topics.unwrap_or_default() {
        let entry = match wanted.name.as_ref().map(|n| n.0.as_str().to_owned()) {
            Some(name) => match topics.get(&name) {
                Some(t) => topic_entry(node, &t),
                None if allow_create => {
                    let partitions = broker.config().num_partitions;
                    match topics
                        .create(&name, partitions, BTreeMap::new(), false)
                        .await
                    {
                        Ok(t) => topic_entry(node, &t),
                        // Another request created it meanwhile.
                        Err(TopicError::Exists(_)) => match topics.get(&name) {
                            Some(t) => topic_entry(node, &t),
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
            None => match topics.get_by_id(wanted.topic_id) {
                Some(t) => topic_entry(node, &t),
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
) -> DescribeClusterResponse {
    let node = broker.meta().node_id;
    let (host, port) = broker.config().advertised();
    let mut resp = DescribeClusterResponse::default();
    resp.cluster_id = s(broker.meta().cluster_id.clone());
    resp.controller_id = BrokerId(node);
    resp.endpoint_type = 1;
    let mut b = DescribeClusterBroker::default();
    b.broker_id = BrokerId(node);
    b.host = s(host);
    b.port = i32::from(port);
    resp.brokers = vec![b];
    resp
}

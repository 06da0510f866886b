//! Produce: validate and append each partition's batches; with acks=all,
//! answer only after the data is fsynced (group-committed per partition).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use tracing::debug;

use super::{now_ms, s};
use crate::Broker;
use crate::error::log_error_code;
use crate::topics::{Partition, Unled};

pub(super) fn partition_error(
    index: i32,
    err: ResponseError,
    message: Option<String>,
) -> PartitionProduceResponse {
    let mut p = PartitionProduceResponse::default();
    p.index = index;
    p.error_code = err.code();
    p.base_offset = -1;
    p.log_append_time_ms = -1;
    p.log_start_offset = -1;
    p.error_message = message.map(s);
    p
}

/// Returns `None` for acks=0 (no response is sent).
pub(super) async fn produce(
    broker: &Broker,
    req: ProduceRequest,
    version: i16,
    listener: &str,
) -> Option<ProduceResponse> {
    let acks = req.acks;
    let (resp, waits) = append(broker, req, version, listener);
    if acks == 0 {
        return None;
    }
    Some(wait(resp, waits).await)
}

/// A partition's acks=all response waiting for the leader's log to be
/// durable up to an offset and the high watermark to pass it.
pub(crate) struct Wait {
    topic: usize,
    partition: usize,
    part: Arc<Partition>,
    upto: u64,
    min_isr: usize,
    deadline: tokio::time::Instant,
    wake: tokio::sync::watch::Receiver<u64>,
}

/// The first half of a produce: validates and appends every partition's
/// batches, in order, now. The acks=all durability waits it returns may run
/// while the connection goes on to its next request (see `server`).
pub(crate) fn append(
    broker: &Broker,
    req: ProduceRequest,
    version: i16,
    listener: &str,
) -> (ProduceResponse, Vec<Wait>) {
    let acks = req.acks;
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_millis(req.timeout_ms.clamp(0, 3_600_000) as u64);
    let mut resp = ProduceResponse::default();
    // Appends are done first, then the acks=all waits run concurrently.
    let mut waits: Vec<Wait> = Vec::new();
    let mut appended = false;
    let mut moved_to: Vec<i32> = Vec::new();
    for topic in req.topic_data {
        let mut tr = TopicProduceResponse::default();
        tr.name = topic.name.clone();
        tr.topic_id = topic.topic_id;
        let found = if version >= 13 {
            broker.topics().get_by_id(topic.topic_id)
        } else {
            broker.topics().get(topic.name.0.as_str())
        };
        let unknown = if version >= 13 {
            ResponseError::UnknownTopicId
        } else {
            ResponseError::UnknownTopicOrPartition
        };
        for pd in topic.partition_data {
            let index = pd.index;
            if !matches!(acks, -1..=1) {
                tr.partition_responses.push(partition_error(
                    index,
                    ResponseError::InvalidRequiredAcks,
                    Some(format!("acks must be -1, 0 or 1, got {acks}")),
                ));
                continue;
            }
            if req.transactional_id.is_some() {
                tr.partition_responses.push(partition_error(
                    index,
                    ResponseError::TransactionalIdAuthorizationFailed,
                    Some(super::producer::TRANSACTIONS_UNSUPPORTED.to_owned()),
                ));
                continue;
            }
            let led = match &found {
                Some(t) => t.led(index).cloned(),
                None => Err(Unled::Unknown),
            };
            let partition = match led {
                Ok(p) => p,
                Err(Unled::Unknown) => {
                    tr.partition_responses
                        .push(partition_error(index, unknown, None));
                    continue;
                }
                Err(e) => {
                    let mut p = partition_error(index, e.code(), None);
                    // KIP-951: where the partition went, so the client
                    // re-routes without a metadata round trip.
                    if let Unled::NotLeader { leader, epoch } = e
                        && version >= 10
                    {
                        p.current_leader.leader_id = BrokerId(leader);
                        p.current_leader.leader_epoch = epoch;
                        if leader >= 0 && !moved_to.contains(&leader) {
                            moved_to.push(leader);
                        }
                    }
                    tr.partition_responses.push(p);
                    continue;
                }
            };
            let default_min = broker.topics().replication().min_insync_replicas;
            let min_isr = found
                .as_ref()
                .map_or(1, |t| t.min_insync_replicas(default_min))
                .max(1) as usize;
            if acks == -1
                && let Err(few) = partition.replica.check_in_sync(min_isr)
            {
                tr.partition_responses.push(partition_error(
                    index,
                    ResponseError::NotEnoughReplicas,
                    Some(format!(
                        "the partition has {} in-sync replicas, fewer than min.insync.replicas {}",
                        few.isr, few.min
                    )),
                ));
                continue;
            }
            let Some(records) = pd.records else {
                tr.partition_responses.push(partition_error(
                    index,
                    ResponseError::CorruptMessage,
                    Some("no records".to_owned()),
                ));
                continue;
            };
            let mut data = records.to_vec();
            match partition.log.append(&mut data, now_ms()) {
                Ok(info) => {
                    if let (false, Some(t)) = (info.duplicate, &found) {
                        let stats = &t.stats;
                        stats
                            .bytes_in
                            .fetch_add(data.len() as u64, Ordering::Relaxed);
                        stats
                            .messages_in
                            .fetch_add(info.last_offset + 1 - info.base_offset, Ordering::Relaxed);
                    }
                    if info.duplicate {
                        debug!(topic = %topic.name.0.as_str(), partition = index, offset = info.base_offset, "duplicate batch from an idempotent producer");
                    }
                    appended |= !info.duplicate;
                    partition
                        .replica
                        .leader_appended(partition.log.log_end_offset());
                    let mut p = PartitionProduceResponse::default();
                    p.index = index;
                    p.base_offset = info.base_offset as i64;
                    p.log_append_time_ms = info.log_append_time_ms;
                    p.log_start_offset = info.log_start_offset as i64;
                    if acks == -1 {
                        waits.push(Wait {
                            topic: resp.responses.len(),
                            partition: tr.partition_responses.len(),
                            part: partition.clone(),
                            upto: info.last_offset + 1,
                            min_isr,
                            deadline,
                            wake: broker.topics().subscribe(),
                        });
                    }
                    tr.partition_responses.push(p);
                }
                Err(e) => {
                    debug!(topic = %topic.name.0.as_str(), partition = index, error = %e, "produce rejected");
                    let mut p = partition_error(index, log_error_code(&e), Some(e.to_string()));
                    // KIP-467: name the records that made the batch fail,
                    // so the client fails exactly those with their reason.
                    if let weir_log::LogError::InvalidRecords { records, .. } = &e {
                        p.record_errors = records
                            .iter()
                            .map(|(i, why)| {
                                let mut r = produce_response::BatchIndexAndErrorMessage::default();
                                r.batch_index = i32::try_from(*i).unwrap_or(i32::MAX);
                                r.batch_index_error_message = Some(s(why.clone()));
                                r
                            })
                            .collect();
                    }
                    tr.partition_responses.push(p);
                }
            }
        }
        resp.responses.push(tr);
    }
    if appended {
        broker.topics().notify_appended();
    }
    resp.node_endpoints = super::metadata::live_brokers(broker, listener)
        .into_iter()
        .filter(|b| moved_to.contains(&b.0))
        .map(|(id, host, port, rack)| {
            let mut e = produce_response::NodeEndpoint::default();
            e.node_id = BrokerId(id);
            e.host = s(host);
            e.port = i32::from(port);
            e.rack = rack.map(s);
            e
        })
        .collect();
    (resp, waits)
}

/// The second half of an acks=all produce: waits (group commit) until
/// every appended partition is durable here, then until its high
/// watermark passes the batch (every in-sync replica has it on disk); a
/// failed fsync fails its partition, an ISR shrunk below
/// `min.insync.replicas` meanwhile NOT_ENOUGH_REPLICAS_AFTER_APPEND, the
/// request's timeout REQUEST_TIMED_OUT.
pub(crate) async fn wait(mut resp: ProduceResponse, waits: Vec<Wait>) -> ProduceResponse {
    let flushes: Vec<_> = waits
        .into_iter()
        .map(|w| {
            let log = w.part.log.clone();
            let upto = w.upto;
            (
                w,
                tokio::task::spawn_blocking(move || log.flush_until(upto)),
            )
        })
        .collect();
    for (w, handle) in flushes {
        let (t, p) = (w.topic, w.partition);
        let failed = match handle.await {
            Ok(Ok(_)) => replicated(w).await,
            Ok(Err(e)) => Some((log_error_code(&e), e.to_string())),
            Err(e) => Some((ResponseError::KafkaStorageError, e.to_string())),
        };
        if let Some((code, message)) = failed {
            let pr = &mut resp.responses[t].partition_responses[p];
            let index = pr.index;
            *pr = partition_error(index, code, Some(message));
        }
    }
    resp
}

/// Waits until the high watermark passes `w.upto`.
async fn replicated(mut w: Wait) -> Option<(ResponseError, String)> {
    loop {
        w.wake.borrow_and_update();
        if w.part.high_watermark() >= w.upto {
            return None;
        }
        if !w.part.replica.leads() {
            return Some((
                ResponseError::NotLeaderOrFollower,
                "leadership moved before the batch was replicated".to_owned(),
            ));
        }
        if let Err(few) = w.part.replica.check_in_sync(w.min_isr) {
            return Some((
                ResponseError::NotEnoughReplicasAfterAppend,
                format!(
                    "the ISR shrank to {} replicas, fewer than min.insync.replicas {}, before the batch was replicated",
                    few.isr, few.min
                ),
            ));
        }
        let left = w
            .deadline
            .saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Some((
                ResponseError::RequestTimedOut,
                "the in-sync replicas did not all have the batch within the request's timeout"
                    .to_owned(),
            ));
        }
        // Woken by appends, follower fetches and ISR changes; a look every
        // 100 ms as well, so no path that moves the HW can be missed.
        let look = left.min(std::time::Duration::from_millis(100));
        if let Ok(Err(_)) = tokio::time::timeout(look, w.wake.changed()).await {
            tokio::time::sleep(look).await;
        }
    }
}

/// The body of a Produce v0-v2 response refusing every partition with
/// UNSUPPORTED_VERSION. The protocol crate encodes Produce from v3 only, so
/// these three old layouts are written here: per partition index, error
/// and base offset (v2 adds the log append time), then the throttle time
/// from v1 on.
pub(crate) fn old_version_refusal(req: &ProduceRequest, version: i16) -> bytes::BytesMut {
    use bytes::BufMut;
    let mut out = bytes::BytesMut::with_capacity(64);
    out.put_i32(req.topic_data.len() as i32);
    for topic in &req.topic_data {
        let name = topic.name.0.as_bytes();
        out.put_i16(name.len().min(i16::MAX as usize) as i16);
        out.put_slice(&name[..name.len().min(i16::MAX as usize)]);
        out.put_i32(topic.partition_data.len() as i32);
        for p in &topic.partition_data {
            out.put_i32(p.index);
            out.put_i16(ResponseError::UnsupportedVersion.code());
            out.put_i64(-1);
            if version >= 2 {
                out.put_i64(-1);
            }
        }
    }
    if version >= 1 {
        out.put_i32(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::{Decodable, Encodable};

    /// Produce v2's response is laid out exactly as v3's, which the crate
    /// encodes: the hand-written refusal must match it byte for byte.
    #[test]
    fn old_refusal_matches_the_v3_layout() {
        let mut req = ProduceRequest::default();
        for (name, parts) in [("a", 2), ("topic-b", 1)] {
            let mut t = produce_request::TopicProduceData::default();
            t.name = TopicName(s(name));
            for i in 0..parts {
                let mut p = produce_request::PartitionProduceData::default();
                p.index = i;
                t.partition_data.push(p);
            }
            req.topic_data.push(t);
        }
        let mut want = ProduceResponse::default();
        for t in &req.topic_data {
            let mut tr = TopicProduceResponse::default();
            tr.name = t.name.clone();
            for p in &t.partition_data {
                let mut pr = partition_error(p.index, ResponseError::UnsupportedVersion, None);
                pr.log_start_offset = -1;
                tr.partition_responses.push(pr);
            }
            want.responses.push(tr);
        }
        let mut v3 = bytes::BytesMut::new();
        want.encode(&mut v3, 3).unwrap();
        // v3 adds log_start_offset (v5+) and nothing else before v5, so
        // v2 and v3 agree.
        assert_eq!(old_version_refusal(&req, 2).to_vec(), v3.to_vec());
        // v1 drops the log append time, v0 also the throttle time.
        let v1 = old_version_refusal(&req, 1);
        assert_eq!(v1.len(), v3.len() - 3 * 8);
        assert_eq!(old_version_refusal(&req, 0).len(), v1.len() - 4);
        // And v2's bytes decode as a v3 response with the error everywhere.
        let back = ProduceResponse::decode(&mut old_version_refusal(&req, 2).freeze(), 3).unwrap();
        assert!(
            back.responses
                .iter()
                .flat_map(|t| &t.partition_responses)
                .all(|p| p.error_code == ResponseError::UnsupportedVersion.code())
        );
    }
}

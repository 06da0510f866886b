//! Fetch: whole stored batches from each partition, long-polling on
//! appends (never busy-polling) until `min_bytes` or `max_wait_ms`.
//! Fetch sessions (KIP-227) are answered as full fetches (session id 0).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::*;

use super::s;
use crate::Broker;
use crate::error::log_error_code;
use crate::topics::Unled;

pub(super) async fn fetch(
    broker: &Broker,
    req: FetchRequest,
    version: i16,
    listener: &str,
) -> FetchResponse {
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let mut appended = broker.topics().subscribe();
    // A follower's fetch (ReplicaState from v15, replica_id before).
    let replica = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let replica = (replica >= 0).then_some(replica);
    if let Some(id) = replica {
        note_positions(broker, &req, version, id);
    }
    loop {
        appended.borrow_and_update();
        let (resp, bytes, sent) = read_once(broker, &req, version, replica, listener);
        let now = Instant::now();
        if bytes >= req.min_bytes.max(0) as usize || now >= deadline || has_error(&resp) {
            count(&sent);
            return resp;
        }
        // Wait for the next append anywhere (or the deadline), then reread.
        if tokio::time::timeout(deadline - now, appended.changed())
            .await
            .is_err()
        {
            let (resp, _, sent) = read_once(broker, &req, version, replica, listener);
            count(&sent);
            return resp;
        }
    }
}

/// What a read sent per topic: the topic's counters, bytes, messages.
type Sent = Vec<(std::sync::Arc<crate::metrics::TopicStats>, u64, u64)>;

/// Counts the reads that are answered (not the ones a long poll dropped).
fn count(sent: &Sent) {
    for (stats, bytes, messages) in sent {
        stats.bytes_out.fetch_add(*bytes, Ordering::Relaxed);
        stats.messages_out.fetch_add(*messages, Ordering::Relaxed);
    }
}

fn has_error(resp: &FetchResponse) -> bool {
    resp.responses
        .iter()
        .flat_map(|t| &t.partitions)
        .any(|p| p.error_code != 0)
}

/// A follower's fetch tells the leader where each of its logs ends
/// (durably): the leader's HW may move, and the follower may join the ISR.
fn note_positions(broker: &Broker, req: &FetchRequest, version: i16, id: i32) {
    // KIP-903: a fetch from an earlier incarnation of that broker (a
    // process that should be gone, whose log may have lost an unsynced
    // tail since) does not count toward the ISR or the HW.
    if version >= 15 && req.replica_state.replica_epoch >= 0 {
        let current = broker
            .cluster()
            .image()
            .brokers
            .get(&id)
            .map(|b| b.epoch as i64);
        if current != Some(req.replica_state.replica_epoch) {
            tracing::debug!(
                replica = id,
                epoch = req.replica_state.replica_epoch,
                ?current,
                "a fetch from a stale broker epoch: its positions are not counted"
            );
            return;
        }
    }
    let now = super::now_ms();
    let mut moved = false;
    for ft in &req.topics {
        let topic = if version >= 13 {
            broker.topics().get_by_id(ft.topic_id)
        } else {
            broker.topics().get(ft.topic.0.as_str())
        };
        let Some(topic) = topic else { continue };
        for fp in &ft.partitions {
            let Ok(partition) = topic.led(fp.partition) else {
                continue;
            };
            if fp.fetch_offset < 0
                || topic
                    .check_epoch(fp.partition, fp.current_leader_epoch)
                    .is_err()
            {
                continue;
            }
            let log = &partition.log;
            let end = log.log_end_offset();
            let offset = fp.fetch_offset as u64;
            if crate::replica::machine::diverging(
                &log.epoch_cache(),
                end,
                fp.last_fetched_epoch,
                offset,
            )
            .is_some()
            {
                continue;
            }
            let Some((proposal, hw_moved)) =
                partition.replica.follower_fetched(id, offset, end, now)
            else {
                continue;
            };
            moved |= hw_moved;
            if let Some((proposal, epoch)) = proposal {
                crate::replica::isr::propose(
                    broker.cluster_shared().clone(),
                    topic.id,
                    partition.clone(),
                    proposal,
                    epoch,
                );
            }
        }
    }
    if moved {
        broker.topics().notify_appended();
    }
}

fn read_once(
    broker: &Broker,
    req: &FetchRequest,
    version: i16,
    replica: Option<i32>,
    listener: &str,
) -> (FetchResponse, usize, Sent) {
    let mut resp = FetchResponse::default();
    let mut counted = Sent::new();
    let mut remaining = if req.max_bytes <= 0 {
        i32::MAX as usize
    } else {
        req.max_bytes as usize
    };
    let mut total = 0usize;
    let mut moved_to: Vec<i32> = Vec::new();
    for ft in &req.topics {
        let topic = if version >= 13 {
            broker.topics().get_by_id(ft.topic_id)
        } else {
            broker.topics().get(ft.topic.0.as_str())
        };
        let mut tr = FetchableTopicResponse::default();
        tr.topic = ft.topic.clone();
        tr.topic_id = ft.topic_id;
        let (mut sent, mut messages) = (0u64, 0u64);
        for fp in &ft.partitions {
            let mut pd = PartitionData::default();
            pd.partition_index = fp.partition;
            let led = match &topic {
                Some(t) => t.led(fp.partition),
                None => Err(Unled::Unknown),
            };
            let led = match (led, &topic) {
                (Ok(part), Some(t)) => match t.check_epoch(fp.partition, fp.current_leader_epoch) {
                    Ok(()) => Ok(part),
                    Err(e) => {
                        pd.error_code = e.code();
                        pd.high_watermark = -1;
                        pd.last_stable_offset = -1;
                        pd.log_start_offset = -1;
                        tr.partitions.push(pd);
                        continue;
                    }
                },
                (led, _) => led,
            };
            let Ok(partition) = led else {
                pd.error_code = match led {
                    Err(Unled::Unknown) if version >= 13 && topic.is_none() => {
                        ResponseError::UnknownTopicId.code()
                    }
                    Err(e) => e.code().code(),
                    Ok(_) => 0,
                };
                if let Err(Unled::NotLeader { leader, epoch }) = led
                    && version >= 12
                {
                    pd.current_leader.leader_id = BrokerId(leader);
                    pd.current_leader.leader_epoch = epoch;
                    if leader >= 0 && !moved_to.contains(&leader) {
                        moved_to.push(leader);
                    }
                }
                pd.high_watermark = -1;
                pd.last_stable_offset = -1;
                pd.log_start_offset = -1;
                tr.partitions.push(pd);
                continue;
            };
            let log = &partition.log;
            let hw = partition.high_watermark();
            pd.high_watermark = hw as i64;
            pd.last_stable_offset = hw as i64;
            pd.log_start_offset = log.log_start_offset() as i64;
            pd.aborted_transactions = Some(Vec::new());
            // A follower reads up to the log end, once its log is known to
            // be a prefix of this one (KIP-595); a consumer up to the HW.
            let upper = match replica {
                Some(_) => {
                    let end = log.log_end_offset();
                    if let Some((epoch, end_offset)) = crate::replica::machine::diverging(
                        &log.epoch_cache(),
                        end,
                        fp.last_fetched_epoch,
                        fp.fetch_offset.max(0) as u64,
                    ) {
                        pd.diverging_epoch.epoch = epoch;
                        pd.diverging_epoch.end_offset = end_offset as i64;
                        pd.records = Some(Bytes::new());
                        tr.partitions.push(pd);
                        continue;
                    }
                    end
                }
                None => hw,
            };
            if remaining == 0 && total > 0 {
                pd.records = Some(Bytes::new());
                tr.partitions.push(pd);
                continue;
            }
            // KIP-74: only the first partition that has data may exceed the
            // limits, by one whole batch, so a consumer always progresses;
            // every later partition gets what still fits, possibly nothing.
            let limit = (fp.partition_max_bytes.max(0) as usize).min(remaining);
            let min_one = total == 0;
            let offset = fp.fetch_offset;
            let result = if offset < 0 {
                Err(weir_log::LogError::OffsetOutOfRange {
                    offset: 0,
                    start: log.log_start_offset(),
                    end: upper,
                })
            } else {
                log.read_bounded(offset as u64, limit, upper, min_one)
            };
            match result {
                Ok(r) => {
                    pd.log_start_offset = r.log_start_offset as i64;
                    total += r.records.len();
                    sent += r.records.len() as u64;
                    messages += offsets_in(&r.records);
                    remaining = remaining.saturating_sub(r.records.len());
                    pd.records = Some(Bytes::from(r.records));
                }
                Err(e) => {
                    pd.error_code = log_error_code(&e).code();
                    pd.records = Some(Bytes::new());
                }
            }
            tr.partitions.push(pd);
        }
        if let (Some(t), true) = (&topic, sent > 0) {
            counted.push((t.stats.clone(), sent, messages));
        }
        resp.responses.push(tr);
    }
    if version >= 16 {
        resp.node_endpoints = super::metadata::live_brokers(broker, listener)
            .into_iter()
            .filter(|b| moved_to.contains(&b.0))
            .map(|(id, host, port, rack)| {
                let mut e = fetch_response::NodeEndpoint::default();
                e.node_id = BrokerId(id);
                e.host = s(host);
                e.port = i32::from(port);
                e.rack = rack.map(s);
                e
            })
            .collect();
    }
    (resp, total, counted)
}

/// Offsets covered by the whole batches in `records` (stored batches, so
/// their headers were validated on append): last offset delta + 1 each.
fn offsets_in(records: &[u8]) -> u64 {
    let (mut pos, mut n) = (0usize, 0u64);
    while let Some(h) = records.get(pos..pos + 27) {
        let len = i32::from_be_bytes([h[8], h[9], h[10], h[11]]);
        let delta = i32::from_be_bytes([h[23], h[24], h[25], h[26]]);
        if len <= 0 {
            break;
        }
        n += u64::try_from(delta).map_or(0, |d| d + 1);
        pos += 12 + len as usize;
    }
    n
}

/// Record sets at least this long are sent from their own buffer instead
/// of being copied into the encoded response.
const ZERO_COPY_MIN: usize = 4096;

/// Encodes a Fetch response body as a list of chunks whose concatenation is
/// exactly what `FetchResponse::encode` writes, except that large record
/// sets are handed on as the buffers read from the log rather than copied:
/// the connection writes them to the socket directly. `None` when the
/// response uses a field this encoder does not write (tagged fields), so
/// the caller falls back to the generic encoder.
pub(crate) fn encode_chunks(resp: &FetchResponse, version: i16) -> Option<Vec<Bytes>> {
    use bytes::BufMut;
    if !(4..=18).contains(&version) || !plain(resp, version) {
        return None;
    }
    let flexible = version >= 12;
    let mut chunks = Vec::new();
    let mut head = bytes::BytesMut::with_capacity(256);
    head.put_i32(resp.throttle_time_ms);
    if version >= 7 {
        head.put_i16(resp.error_code);
        head.put_i32(resp.session_id);
    }
    put_len(&mut head, flexible, Some(resp.responses.len()));
    for t in &resp.responses {
        if version <= 12 {
            let name = t.topic.0.as_bytes();
            if flexible {
                put_uvarint(&mut head, name.len() as u64 + 1);
            } else {
                head.put_i16(i16::try_from(name.len()).ok()?);
            }
            head.put_slice(name);
        }
        if version >= 13 {
            head.put_slice(t.topic_id.as_bytes());
        }
        put_len(&mut head, flexible, Some(t.partitions.len()));
        for p in &t.partitions {
            head.put_i32(p.partition_index);
            head.put_i16(p.error_code);
            head.put_i64(p.high_watermark);
            head.put_i64(p.last_stable_offset);
            if version >= 5 {
                head.put_i64(p.log_start_offset);
            }
            let aborted = p.aborted_transactions.as_ref();
            put_len(&mut head, flexible, aborted.map(Vec::len));
            for a in aborted.into_iter().flatten() {
                head.put_i64(a.producer_id.0);
                head.put_i64(a.first_offset);
                if flexible {
                    head.put_u8(0);
                }
            }
            if version >= 11 {
                head.put_i32(p.preferred_read_replica.0);
            }
            let records = p.records.as_ref();
            put_len(&mut head, flexible, records.map(Bytes::len));
            if let Some(records) = records {
                if records.len() >= ZERO_COPY_MIN {
                    chunks.push(head.split().freeze());
                    chunks.push(records.clone());
                } else {
                    head.put_slice(records);
                }
            }
            if flexible {
                head.put_u8(0);
            }
        }
        if flexible {
            head.put_u8(0);
        }
    }
    if flexible {
        head.put_u8(0);
    }
    chunks.push(head.freeze());
    Some(chunks)
}

/// Whether the response only uses fields `encode_chunks` writes.
fn plain(resp: &FetchResponse, version: i16) -> bool {
    resp.unknown_tagged_fields.is_empty()
        && resp.node_endpoints.is_empty()
        && (version >= 7 || resp.session_id == 0)
        && resp.responses.iter().all(|t| {
            t.unknown_tagged_fields.is_empty()
                && t.partitions.iter().all(|p| {
                    p.unknown_tagged_fields.is_empty()
                        && p.diverging_epoch == Default::default()
                        && p.current_leader == Default::default()
                        && p.snapshot_id == Default::default()
                        && (version >= 11 || p.preferred_read_replica.0 == -1)
                        && p.aborted_transactions
                            .iter()
                            .flatten()
                            .all(|a| a.unknown_tagged_fields.is_empty())
                })
        })
}

/// An array or bytes length: INT32 (-1 for null), or in flexible versions
/// an unsigned varint of length + 1 (0 for null).
fn put_len(buf: &mut bytes::BytesMut, flexible: bool, len: Option<usize>) {
    use bytes::BufMut;
    match (flexible, len) {
        (true, Some(n)) => put_uvarint(buf, n as u64 + 1),
        (true, None) => buf.put_u8(0),
        (false, Some(n)) => buf.put_i32(n as i32),
        (false, None) => buf.put_i32(-1),
    }
}

fn put_uvarint(buf: &mut bytes::BytesMut, mut v: u64) {
    use bytes::BufMut;
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::AbortedTransaction;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn sample(records: &[usize]) -> FetchResponse {
        let mut resp = FetchResponse::default();
        resp.throttle_time_ms = 7;
        for (t, name) in ["a", "topic-two"].iter().enumerate() {
            let mut tr = FetchableTopicResponse::default();
            tr.topic = TopicName(StrBytes::from_static_str(name));
            tr.topic_id = uuid::Uuid::from_u128(0x1234_5678_9abc_def0_u128 + t as u128);
            for (i, &len) in records.iter().enumerate() {
                let mut pd = PartitionData::default();
                pd.partition_index = i as i32;
                pd.error_code = if len == 0 { 3 } else { 0 };
                pd.high_watermark = 1_000_000 + i as i64;
                pd.last_stable_offset = 999_999;
                pd.log_start_offset = 12;
                pd.aborted_transactions = match i % 3 {
                    0 => Some(Vec::new()),
                    1 => None,
                    _ => Some(vec![AbortedTransaction::default(); 2]),
                };
                pd.records = if i % 4 == 3 {
                    None
                } else {
                    Some(Bytes::from(
                        (0..len).map(|b| (b * 31 + i) as u8).collect::<Vec<_>>(),
                    ))
                };
                tr.partitions.push(pd);
            }
            resp.responses.push(tr);
        }
        resp
    }

    #[test]
    fn chunks_equal_the_generic_encoding_in_every_version() {
        for version in 4..=18 {
            for sizes in [vec![], vec![0], vec![10, 5000, 0, 200_000, 4096, 4095]] {
                let resp = sample(&sizes);
                let mut want = bytes::BytesMut::new();
                resp.encode(&mut want, version).unwrap();
                let chunks = encode_chunks(&resp, version).unwrap();
                let got: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
                assert_eq!(got, want.to_vec(), "version {version}, sizes {sizes:?}");
                // Large record sets are shared, not copied.
                let shared = resp
                    .responses
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .filter_map(|p| p.records.as_ref())
                    .filter(|r| r.len() >= ZERO_COPY_MIN)
                    .count();
                let passed = chunks
                    .iter()
                    .filter(|c| {
                        resp.responses
                            .iter()
                            .flat_map(|t| &t.partitions)
                            .filter_map(|p| p.records.as_ref())
                            .any(|r| r.as_ptr() == c.as_ptr() && !r.is_empty())
                    })
                    .count();
                assert_eq!(passed, shared, "version {version}");
            }
        }
    }

    #[test]
    fn tagged_fields_fall_back_to_the_generic_encoder() {
        let mut resp = sample(&[10]);
        resp.responses[0].partitions[0].diverging_epoch.epoch = 4;
        assert!(encode_chunks(&resp, 12).is_none());
        assert!(encode_chunks(&sample(&[10]), 3).is_none());
    }
}

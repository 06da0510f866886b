//! ListOffsets (earliest, latest, max timestamp, by time) and DeleteRecords.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::*;

use crate::Broker;
use crate::error::log_error_code;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub(super) fn list_offsets(
    broker: &Broker,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let mut resp = ListOffsetsResponse::default();
    for lt in req.topics {
        let topic = broker.topics().get(lt.name.0.as_str());
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = lt.name;
        for lp in lt.partitions {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = lp.partition_index;
            pr.timestamp = -1;
            pr.offset = -1;
            let led = match &topic {
                Some(t) => t.led(lp.partition_index),
                None => Err(crate::topics::Unled::Unknown),
            };
            let partition = match led {
                Ok(p) => p,
                Err(e) => {
                    pr.error_code = e.code().code();
                    tr.partitions.push(pr);
                    continue;
                }
            };
            if let Some(Err(e)) = topic
                .as_ref()
                .map(|t| t.check_epoch(lp.partition_index, lp.current_leader_epoch))
            {
                pr.error_code = e.code();
                tr.partitions.push(pr);
                continue;
            }
            let log = &partition.log;
            if version >= 4 {
                pr.leader_epoch = topic
                    .as_ref()
                    .map_or(-1, |t| t.leader_epoch(lp.partition_index));
            }
            match lp.timestamp {
                LATEST | LATEST_TIERED => pr.offset = partition.high_watermark() as i64,
                EARLIEST | EARLIEST_LOCAL => pr.offset = log.log_start_offset() as i64,
                MAX_TIMESTAMP => {
                    if let Some((ts, offset)) = log.max_timestamp() {
                        pr.timestamp = ts;
                        pr.offset = offset as i64;
                    }
                }
                ts if ts >= 0 => match log.offset_for_timestamp(ts) {
                    Ok(Some((offset, found))) => {
                        pr.offset = offset as i64;
                        pr.timestamp = found;
                    }
                    Ok(None) => {}
                    Err(e) => pr.error_code = log_error_code(&e).code(),
                },
                _ => pr.error_code = ResponseError::InvalidRequest.code(),
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}

pub(super) async fn delete_records(
    broker: &Broker,
    req: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let mut resp = DeleteRecordsResponse::default();
    for dt in req.topics {
        let topic = broker.topics().get(dt.name.0.as_str());
        let mut tr = DeleteRecordsTopicResult::default();
        tr.name = dt.name;
        for dp in dt.partitions {
            let mut pr = DeleteRecordsPartitionResult::default();
            pr.partition_index = dp.partition_index;
            pr.low_watermark = -1;
            let led = match &topic {
                Some(t) => t.led(dp.partition_index).cloned(),
                None => Err(crate::topics::Unled::Unknown),
            };
            let partition = match led {
                Ok(p) => p,
                Err(e) => {
                    pr.error_code = e.code().code();
                    tr.partitions.push(pr);
                    continue;
                }
            };
            // -1 means "up to the high watermark".
            let offset = if dp.offset == -1 {
                partition.high_watermark()
            } else if dp.offset < 0 {
                pr.error_code = ResponseError::OffsetOutOfRange.code();
                tr.partitions.push(pr);
                continue;
            } else {
                dp.offset as u64
            };
            let log = partition.log.clone();
            match tokio::task::spawn_blocking(move || log.delete_records_before(offset)).await {
                Ok(Ok(start)) => pr.low_watermark = start as i64,
                Ok(Err(e)) => pr.error_code = log_error_code(&e).code(),
                Err(_) => pr.error_code = ResponseError::KafkaStorageError.code(),
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}

/// OffsetForLeaderEpoch (KIP-101 / KIP-320): for each partition, the
/// largest leader epoch of its log not above the one asked and the offset
/// where the next epoch starts, so a consumer (or a follower) can tell
/// whether its position is still on the leader's log.
pub(super) fn offset_for_leader_epoch(
    broker: &Broker,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    use kafka_protocol::messages::offset_for_leader_epoch_response::{
        EpochEndOffset, OffsetForLeaderTopicResult,
    };
    let mut resp = OffsetForLeaderEpochResponse::default();
    for t in req.topics {
        let topic = broker.topics().get(t.topic.0.as_str());
        let mut tr = OffsetForLeaderTopicResult::default();
        tr.topic = t.topic;
        for p in t.partitions {
            let mut e = EpochEndOffset::default();
            e.partition = p.partition;
            e.leader_epoch = -1;
            e.end_offset = -1;
            let led = match &topic {
                Some(t) => t.led(p.partition).map_err(|u| u.code()).and_then(|part| {
                    t.check_epoch(p.partition, p.current_leader_epoch)
                        .map(|()| part)
                }),
                None => Err(ResponseError::UnknownTopicOrPartition),
            };
            match led {
                Ok(part) => {
                    if let Some((epoch, end)) = part.log.end_offset_for_epoch(p.leader_epoch) {
                        e.leader_epoch = epoch;
                        e.end_offset = end as i64;
                    }
                }
                Err(code) => e.error_code = code.code(),
            }
            tr.partitions.push(e);
        }
        resp.topics.push(tr);
    }
    resp
}

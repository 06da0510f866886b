//! Fetch: whole stored batches from each partition, long-polling on
//! appends (never busy-polling) until `min_bytes` or `max_wait_ms`.
//! Fetch sessions (KIP-227) are answered as full fetches (session id 0).

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::*;

use crate::Broker;
use crate::error::log_error_code;

pub(super) async fn fetch(broker: &Broker, req: FetchRequest, version: i16) -> FetchResponse {
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let mut appended = broker.topics().subscribe();
    loop {
        appended.borrow_and_update();
        let (resp, bytes) = read_once(broker, &req, version);
        let now = Instant::now();
        if bytes >= req.min_bytes.max(0) as usize || now >= deadline || has_error(&resp) {
            return resp;
        }
        // Wait for the next append anywhere (or the deadline), then reread.
        if tokio::time::timeout(deadline - now, appended.changed())
            .await
            .is_err()
        {
            return read_once(broker, &req, version).0;
        }
    }
}

fn has_error(resp: &FetchResponse) -> bool {
    resp.responses
        .iter()
        .flat_map(|t| &t.partitions)
        .any(|p| p.error_code != 0)
}

fn read_once(broker: &Broker, req: &FetchRequest, version: i16) -> (FetchResponse, usize) {
    let mut resp = FetchResponse::default();
    let mut remaining = if req.max_bytes <= 0 {
        i32::MAX as usize
    } else {
        req.max_bytes as usize
    };
    let mut total = 0usize;
    for ft in &req.topics {
        let topic = if version >= 13 {
            broker.topics().get_by_id(ft.topic_id)
        } else {
            broker.topics().get(ft.topic.0.as_str())
        };
        let mut tr = FetchableTopicResponse::default();
        tr.topic = ft.topic.clone();
        tr.topic_id = ft.topic_id;
        for fp in &ft.partitions {
            let mut pd = PartitionData::default();
            pd.partition_index = fp.partition;
            let partition = topic
                .as_ref()
                .and_then(|t| t.partitions.get(usize::try_from(fp.partition).ok()?));
            let Some(partition) = partition else {
                pd.error_code = if version >= 13 {
                    ResponseError::UnknownTopicId.code()
                } else {
                    ResponseError::UnknownTopicOrPartition.code()
                };
                pd.high_watermark = -1;
                pd.last_stable_offset = -1;
                pd.log_start_offset = -1;
                tr.partitions.push(pd);
                continue;
            };
            let log = &partition.log;
            let hw = log.log_end_offset();
            pd.high_watermark = hw as i64;
            pd.last_stable_offset = hw as i64;
            pd.log_start_offset = log.log_start_offset() as i64;
            pd.aborted_transactions = Some(Vec::new());
            if remaining == 0 && total > 0 {
                pd.records = Some(Bytes::new());
                tr.partitions.push(pd);
                continue;
            }
            let limit = (fp.partition_max_bytes.max(0) as usize).min(remaining);
            let offset = fp.fetch_offset;
            let result = if offset < 0 {
                Err(weir_log::LogError::OffsetOutOfRange {
                    offset: 0,
                    start: log.log_start_offset(),
                    end: hw,
                })
            } else {
                log.read_bounded(offset as u64, limit, hw)
            };
            match result {
                Ok(r) => {
                    pd.log_start_offset = r.log_start_offset as i64;
                    total += r.records.len();
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
        resp.responses.push(tr);
    }
    (resp, total)
}

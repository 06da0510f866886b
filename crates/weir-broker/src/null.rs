//! A broker that stores nothing: it acknowledges every produce without
//! writing it and answers every fetch with the same in-memory batch, its
//! offsets rewritten. It measures a client's own ceiling on this machine
//! (`weir bench null-broker`): whatever a client reaches against it, no
//! real broker can beat from the same client.
//!
//! It speaks just enough of the protocol for benchmark clients: ApiVersions,
//! Metadata, CreateTopics, InitProducerId, FindCoordinator, ListOffsets,
//! Produce and Fetch. Anything else closes the connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use weir_log::batch;

use crate::handlers::s;
use crate::server::{Close, Decoded, Request, decode, encode_reply};

/// The end offset the null broker reports for every partition: consumers
/// can read this many messages of the template batch.
const END: i64 = 1 << 50;

/// Topics the null broker pretends to have, with the offsets it handed out.
#[derive(Default)]
struct State {
    topics: HashMap<String, (uuid::Uuid, Vec<i64>)>,
}

/// What the null broker needs to know.
#[derive(Debug, Clone)]
pub struct NullConfig {
    /// Partitions of a topic first named in Metadata.
    pub partitions: i32,
    /// Bytes per message in the batch fetches return.
    pub message_bytes: usize,
}

/// Serves until `shutdown` turns true.
pub async fn serve_null(
    listener: TcpListener,
    config: NullConfig,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let template = Bytes::from(template_batch(config.message_bytes));
    let state = Arc::new(Mutex::new(State::default()));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let _ = stream.set_nodelay(true);
                let ctx = Ctx { addr, config: config.clone(), template: template.clone(), state: state.clone() };
                tokio::spawn(async move {
                    let _ = connection(ctx, stream).await;
                });
            }
            _ = crate::stopped(&mut shutdown) => return Ok(()),
        }
    }
}

struct Ctx {
    addr: SocketAddr,
    config: NullConfig,
    template: Bytes,
    state: Arc<Mutex<State>>,
}

/// About 1 MB of `size`-byte messages in one uncompressed batch.
fn template_batch(size: usize) -> Vec<u8> {
    let count = (1_000_000 / (size + 20)).clamp(1, 100_000);
    let now = crate::handlers::now_ms();
    let records: Vec<batch::Record> = (0..count)
        .map(|_| batch::Record {
            timestamp: now,
            key: None,
            value: Some(vec![b'x'; size]),
            headers: Vec::new(),
        })
        .collect();
    batch::encode_batch(&records)
}

async fn connection(ctx: Ctx, stream: TcpStream) -> Result<(), Close> {
    let (rd, wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);
    loop {
        let len = rd.read_i32().await?;
        if !(0..=200 << 20).contains(&len) {
            return Err(Close::TooLarge(i64::from(len), 200 << 20));
        }
        let mut buf = BytesMut::zeroed(len as usize);
        rd.read_exact(&mut buf).await?;
        let req = match decode(buf.freeze())? {
            Decoded::Request(req) => *req,
            Decoded::ApiVersionsFallback { .. } => return Err(Close::UnknownApi(18)),
            Decoded::OldProduce { version, .. } => {
                return Err(Close::UnsupportedVersion(ApiKey::Produce, version));
            }
        };
        let Request {
            api,
            version,
            correlation_id,
            body,
            ..
        } = req;
        let Some(response) = answer(&ctx, api, body)? else {
            continue;
        };
        for chunk in encode_reply(api, version, correlation_id, &response)? {
            wr.write_all(&chunk).await?;
        }
        if rd.buffer().is_empty() {
            wr.flush().await?;
        }
    }
}

/// The response to one request, `None` for acks=0.
fn answer(ctx: &Ctx, api: ApiKey, body: RequestKind) -> Result<Option<ResponseKind>, Close> {
    let mut state = ctx.state.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Some(match body {
        RequestKind::ApiVersions(_) => {
            ResponseKind::ApiVersions(crate::handlers::api_versions_body(0))
        }
        RequestKind::Metadata(r) => {
            let mut resp = MetadataResponse::default();
            let mut b = MetadataResponseBroker::default();
            b.node_id = BrokerId(0);
            b.host = s(ctx.addr.ip().to_string());
            b.port = i32::from(ctx.addr.port());
            resp.brokers = vec![b];
            resp.cluster_id = Some(s("weir-null"));
            resp.controller_id = BrokerId(0);
            let names: Vec<String> = match r.topics {
                Some(list) => list
                    .iter()
                    .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                    .collect(),
                None => state.topics.keys().cloned().collect(),
            };
            for name in names {
                let (id, offsets) = topic(&mut state, &name, ctx.config.partitions);
                let mut t = MetadataResponseTopic::default();
                t.name = Some(TopicName(s(name)));
                t.topic_id = *id;
                t.partitions = (0..offsets.len() as i32)
                    .map(|i| {
                        let mut p = MetadataResponsePartition::default();
                        p.partition_index = i;
                        p.leader_id = BrokerId(0);
                        p.replica_nodes = vec![BrokerId(0)];
                        p.isr_nodes = vec![BrokerId(0)];
                        p
                    })
                    .collect();
                resp.topics.push(t);
            }
            ResponseKind::Metadata(resp)
        }
        RequestKind::CreateTopics(r) => {
            let mut resp = CreateTopicsResponse::default();
            for t in r.topics {
                let name = t.name.0.to_string();
                let mut result = CreatableTopicResult::default();
                result.name = t.name;
                // A topic only named so far (Metadata creates on sight)
                // takes the partition count asked for.
                let written = state
                    .topics
                    .get(&name)
                    .is_some_and(|(_, offsets)| offsets.iter().any(|&o| o > 0));
                if written {
                    result.error_code = ResponseError::TopicAlreadyExists.code();
                } else {
                    state.topics.remove(&name);
                    topic(&mut state, &name, t.num_partitions.max(1));
                }
                resp.topics.push(result);
            }
            ResponseKind::CreateTopics(resp)
        }
        RequestKind::InitProducerId(_) => {
            let mut resp = InitProducerIdResponse::default();
            resp.producer_id = ProducerId(1);
            ResponseKind::InitProducerId(resp)
        }
        RequestKind::FindCoordinator(r) => {
            let mut resp = FindCoordinatorResponse::default();
            resp.node_id = BrokerId(0);
            resp.host = s(ctx.addr.ip().to_string());
            resp.port = i32::from(ctx.addr.port());
            for key in r.coordinator_keys {
                let mut c = find_coordinator_response::Coordinator::default();
                c.key = key;
                c.node_id = BrokerId(0);
                c.host = s(ctx.addr.ip().to_string());
                c.port = i32::from(ctx.addr.port());
                resp.coordinators.push(c);
            }
            ResponseKind::FindCoordinator(resp)
        }
        RequestKind::ListOffsets(r) => {
            let mut resp = ListOffsetsResponse::default();
            for t in r.topics {
                let mut tr = ListOffsetsTopicResponse::default();
                tr.name = t.name;
                for p in t.partitions {
                    let mut pr = ListOffsetsPartitionResponse::default();
                    pr.partition_index = p.partition_index;
                    pr.offset = if p.timestamp == -2 { 0 } else { END };
                    pr.timestamp = -1;
                    tr.partitions.push(pr);
                }
                resp.topics.push(tr);
            }
            ResponseKind::ListOffsets(resp)
        }
        RequestKind::Produce(r) => {
            if r.acks == 0 {
                return Ok(None);
            }
            let mut resp = ProduceResponse::default();
            for t in r.topic_data {
                let name = t.name.0.to_string();
                let mut tr = TopicProduceResponse::default();
                tr.name = t.name;
                let (_, offsets) = topic(&mut state, &name, ctx.config.partitions);
                for p in t.partition_data {
                    let mut pr = PartitionProduceResponse::default();
                    pr.index = p.index;
                    pr.log_append_time_ms = -1;
                    let count = p.records.as_deref().map_or(0, count_offsets);
                    match usize::try_from(p.index)
                        .ok()
                        .and_then(|i| offsets.get_mut(i))
                    {
                        Some(next) => {
                            pr.base_offset = *next;
                            *next += count;
                        }
                        None => pr.error_code = ResponseError::UnknownTopicOrPartition.code(),
                    }
                    tr.partition_responses.push(pr);
                }
                resp.responses.push(tr);
            }
            ResponseKind::Produce(resp)
        }
        RequestKind::Fetch(r) => {
            let mut resp = FetchResponse::default();
            for t in r.topics {
                let mut tr = FetchableTopicResponse::default();
                tr.topic = t.topic;
                tr.topic_id = t.topic_id;
                for p in t.partitions {
                    let mut pd = PartitionData::default();
                    pd.partition_index = p.partition;
                    pd.high_watermark = END;
                    pd.last_stable_offset = END;
                    pd.log_start_offset = 0;
                    let mut records = ctx.template.to_vec();
                    batch::set_base_offset(&mut records, p.fetch_offset);
                    pd.records = Some(Bytes::from(records));
                    tr.partitions.push(pd);
                }
                resp.responses.push(tr);
            }
            ResponseKind::Fetch(resp)
        }
        _ => return Err(Close::UnknownApi(api as i16)),
    }))
}

/// A topic's id and next offsets, created on first mention.
fn topic<'a>(state: &'a mut State, name: &str, partitions: i32) -> &'a mut (uuid::Uuid, Vec<i64>) {
    state
        .topics
        .entry(name.to_owned())
        .or_insert_with(|| (uuid::Uuid::new_v4(), vec![0; partitions.max(1) as usize]))
}

/// Offsets the batches in a produced record set take.
fn count_offsets(records: &[u8]) -> i64 {
    batch::check_batches(records).map_or(0, |batches| {
        batches.iter().map(|b| b.offset_count() as i64).sum()
    })
}

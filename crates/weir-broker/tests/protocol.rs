//! Protocol-level behaviour through a raw Kafka client built on the
//! `kafka-protocol` crate: the cases real clients never send (corrupt
//! batches, bad acks), exact error codes, acks=0, pipelining, long polls.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use weir_broker::{BrokerConfig, RunningBroker};
use weir_log::batch::{self, Record};

struct TestBroker {
    addr: std::net::SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start(settings: &[(&str, &str)]) -> TestBroker {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = BrokerConfig::new(dir.path().join("data"), "127.0.0.1:0".parse().unwrap());
    for (k, v) in settings {
        cfg.set(k, v).unwrap();
    }
    let running = RunningBroker::bind(cfg).await.unwrap();
    let addr = running.addr;
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        running.serve(rx).await.unwrap();
    });
    TestBroker {
        addr,
        stop,
        task,
        _dir: dir,
    }
}

impl TestBroker {
    /// Stops the broker; its data directory lives as long as the result.
    async fn shutdown(self) -> tempfile::TempDir {
        let _ = self.stop.send(true);
        self.task.await.unwrap();
        self._dir
    }
}

struct Client {
    stream: TcpStream,
    next_id: i32,
}

impl Client {
    async fn connect(b: &TestBroker) -> Self {
        Client {
            stream: TcpStream::connect(b.addr).await.unwrap(),
            next_id: 1,
        }
    }

    fn encode<R: Request>(&mut self, req: &R, version: i16) -> (i32, BytesMut) {
        let id = self.next_id;
        self.next_id += 1;
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = id;
        header.client_id = Some(StrBytes::from_static_str("protocol-test"));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .unwrap();
        req.encode(&mut body, version).unwrap();
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.put_slice(&body);
        (id, frame)
    }

    async fn send<R: Request>(&mut self, req: &R, version: i16) -> i32 {
        let (id, frame) = self.encode(req, version);
        self.stream.write_all(&frame).await.unwrap();
        id
    }

    async fn recv<R: Request>(&mut self, version: i16) -> (i32, R::Response) {
        let len = self.stream.read_i32().await.unwrap();
        let mut buf = vec![0u8; len as usize];
        self.stream.read_exact(&mut buf).await.unwrap();
        let mut buf = Bytes::from(buf);
        let header =
            ResponseHeader::decode(&mut buf, R::Response::header_version(version)).unwrap();
        let body = R::Response::decode(&mut buf, version).unwrap();
        assert!(!buf.has_remaining(), "trailing bytes in the response");
        (header.correlation_id, body)
    }

    async fn call<R: Request>(&mut self, req: &R, version: i16) -> R::Response {
        let id = self.send(req, version).await;
        let (got, resp) = self.recv::<R>(version).await;
        assert_eq!(got, id, "correlation id");
        resp
    }
}

fn records(n: usize, ts: i64) -> Vec<u8> {
    let recs: Vec<Record> = (0..n)
        .map(|i| Record {
            timestamp: ts + i as i64,
            key: None,
            value: Some(format!("m{i}").into_bytes()),
            headers: vec![],
        })
        .collect();
    batch::encode_batch(&recs)
}

fn produce_req(topic: &str, acks: i16, data: Vec<u8>) -> ProduceRequest {
    let mut p = PartitionProduceData::default();
    p.index = 0;
    p.records = Some(Bytes::from(data));
    let mut t = TopicProduceData::default();
    t.name = TopicName(StrBytes::from_string(topic.to_owned()));
    t.partition_data = vec![p];
    let mut r = ProduceRequest::default();
    r.acks = acks;
    r.timeout_ms = 5000;
    r.topic_data = vec![t];
    r
}

fn fetch_req(topic: &str, offset: i64, max_wait_ms: i32, min_bytes: i32) -> FetchRequest {
    let mut p = FetchPartition::default();
    p.partition = 0;
    p.fetch_offset = offset;
    p.partition_max_bytes = 1 << 20;
    let mut t = FetchTopic::default();
    t.topic = TopicName(StrBytes::from_string(topic.to_owned()));
    t.partitions = vec![p];
    let mut r = FetchRequest::default();
    r.replica_id = BrokerId(-1);
    r.max_wait_ms = max_wait_ms;
    r.min_bytes = min_bytes;
    r.max_bytes = 1 << 20;
    r.topics = vec![t];
    r
}

async fn create(c: &mut Client, name: &str, configs: &[(&str, &str)]) {
    let mut t = create_topics_request::CreatableTopic::default();
    t.name = TopicName(StrBytes::from_string(name.to_owned()));
    t.num_partitions = 1;
    t.replication_factor = 1;
    t.configs = configs
        .iter()
        .map(|(k, v)| {
            let mut c = create_topics_request::CreatableTopicConfig::default();
            c.name = StrBytes::from_string((*k).to_owned());
            c.value = Some(StrBytes::from_string((*v).to_owned()));
            c
        })
        .collect();
    let mut r = CreateTopicsRequest::default();
    r.topics = vec![t];
    r.timeout_ms = 5000;
    let resp = c.call(&r, 7).await;
    assert_eq!(
        resp.topics[0].error_code, 0,
        "{:?}",
        resp.topics[0].error_message
    );
}

#[tokio::test]
async fn api_versions_lists_every_served_api_and_answers_unknown_versions_in_v0() {
    let b = start(&[]).await;
    let mut c = Client::connect(&b).await;
    let resp = c.call(&ApiVersionsRequest::default(), 3).await;
    assert_eq!(resp.error_code, 0);
    let keys: BTreeMap<i16, (i16, i16)> = resp
        .api_keys
        .iter()
        .map(|k| (k.api_key, (k.min_version, k.max_version)))
        .collect();
    assert_eq!(
        keys.get(&0),
        Some(&(3, 13)),
        "Produce from v3 (RecordBatch v2)"
    );
    assert_eq!(keys.get(&1).map(|r| r.0), Some(4), "Fetch");
    for key in [
        2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 21, 22, 32, 33, 35, 37, 42, 44, 47, 60,
    ] {
        assert!(keys.contains_key(&key), "API {key} missing from {keys:?}");
    }
    // Transactions are not served, so they are not advertised.
    assert!(!keys.contains_key(&24), "AddPartitionsToTxn advertised");
    b.shutdown().await;
}

#[tokio::test]
async fn produce_errors_carry_the_kafka_codes() {
    let b = start(&[("message.max.bytes", "10000")]).await;
    let mut c = Client::connect(&b).await;
    create(&mut c, "t", &[]).await;

    let ok = c.call(&produce_req("t", 1, records(3, 1000)), 9).await;
    let p = &ok.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 0));

    let mut corrupt = records(2, 1000);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    let r = c.call(&produce_req("t", 1, corrupt), 9).await;
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 2,
        "CORRUPT_MESSAGE"
    );

    let r = c.call(&produce_req("t", 1, records(200, 1000)), 9).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let huge = batch::encode_batch(&[Record {
        timestamp: 0,
        key: None,
        value: Some(vec![b'x'; 20_000]),
        headers: vec![],
    }]);
    let r = c.call(&produce_req("t", 1, huge), 9).await;
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 10,
        "MESSAGE_TOO_LARGE"
    );

    let r = c.call(&produce_req("t", 7, records(1, 0)), 9).await;
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 21,
        "INVALID_REQUIRED_ACKS"
    );

    let future = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 7_200_000;
    let r = c.call(&produce_req("t", 1, records(1, future)), 9).await;
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 32,
        "INVALID_TIMESTAMP"
    );

    let r = c.call(&produce_req("nope", 1, records(1, 0)), 9).await;
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );

    // The log holds exactly the accepted batches.
    let f = c.call(&fetch_req("t", 0, 0, 0), 12).await;
    assert_eq!(f.responses[0].partitions[0].high_watermark, 203);
    b.shutdown().await;
}

#[tokio::test]
async fn acks_zero_gets_no_response_and_pipelined_requests_answer_in_order() {
    let b = start(&[]).await;
    let mut c = Client::connect(&b).await;
    create(&mut c, "p", &[]).await;
    // acks=0, then two more requests sent before reading anything.
    c.send(&produce_req("p", 0, records(2, 0)), 9).await;
    let first = c.send(&produce_req("p", 1, records(1, 0)), 9).await;
    let second = c.send(&ApiVersionsRequest::default(), 3).await;
    let (id, resp) = c.recv::<ProduceRequest>(9).await;
    assert_eq!(id, first, "the acks=0 request must not be answered");
    assert_eq!(resp.responses[0].partition_responses[0].base_offset, 2);
    let (id, _) = c.recv::<ApiVersionsRequest>(3).await;
    assert_eq!(id, second);
    b.shutdown().await;
}

#[tokio::test]
async fn fetch_long_polls_until_data_arrives_and_reports_offsets_out_of_range() {
    let b = start(&[]).await;
    let mut c = Client::connect(&b).await;
    create(&mut c, "lp", &[]).await;

    // Nothing there: waits max_wait_ms, then answers empty.
    let t = Instant::now();
    let f = c.call(&fetch_req("lp", 0, 300, 1), 12).await;
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(290),
        "returned after {waited:?}"
    );
    assert!(
        f.responses[0].partitions[0]
            .records
            .as_ref()
            .is_none_or(|r| r.is_empty())
    );

    // A waiting fetch is woken by a produce on another connection.
    let addr = b.addr;
    let producer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut p = Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            next_id: 1,
        };
        p.call(&produce_req("lp", 1, records(4, 0)), 9).await;
    });
    let t = Instant::now();
    let f = c.call(&fetch_req("lp", 0, 10_000, 1), 12).await;
    let waited = t.elapsed();
    producer.await.unwrap();
    assert!(
        waited < Duration::from_secs(5),
        "not woken by the append: {waited:?}"
    );
    let part = &f.responses[0].partitions[0];
    assert_eq!(part.high_watermark, 4);
    assert_eq!(part.log_start_offset, 0);
    let data = part.records.clone().unwrap();
    assert_eq!(batch::decode_records(&data).unwrap().len(), 4);

    let f = c.call(&fetch_req("lp", 99, 0, 0), 12).await;
    assert_eq!(
        f.responses[0].partitions[0].error_code, 1,
        "OFFSET_OUT_OF_RANGE"
    );
    assert_eq!(f.responses[0].partitions[0].high_watermark, 4);
    b.shutdown().await;
}

#[tokio::test]
async fn list_offsets_earliest_latest_and_by_time() {
    let b = start(&[]).await;
    let mut c = Client::connect(&b).await;
    create(&mut c, "lo", &[]).await;
    // Batches of 5 records stamped 1000*i .. 1000*i+4.
    for i in 0..10 {
        c.call(&produce_req("lo", 1, records(5, 1000 * i)), 9).await;
    }
    let query = |ts: i64| {
        let mut p = ListOffsetsPartition::default();
        p.partition_index = 0;
        p.timestamp = ts;
        let mut t = ListOffsetsTopic::default();
        t.name = TopicName(StrBytes::from_static_str("lo"));
        t.partitions = vec![p];
        let mut r = ListOffsetsRequest::default();
        r.replica_id = BrokerId(-1);
        r.topics = vec![t];
        r
    };
    let mut ask = async |ts: i64, version: i16| {
        let r = c.call(&query(ts), version).await;
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0);
        (p.offset, p.timestamp)
    };
    assert_eq!(ask(-2, 7).await.0, 0, "earliest");
    assert_eq!(ask(-1, 7).await.0, 50, "latest");
    assert_eq!(
        ask(-3, 7).await,
        (49, 9004),
        "max timestamp: the record holding it (KIP-734)"
    );
    assert_eq!(ask(3002, 7).await, (17, 3002), "exact record by time");
    assert_eq!(
        ask(3005, 1).await,
        (20, 4000),
        "first record at or after the time"
    );
    assert_eq!(ask(99_999, 7).await, (-1, -1), "after every record");
    b.shutdown().await;
}

fn all_topics() -> MetadataRequest {
    let mut r = MetadataRequest::default();
    r.topics = None;
    r
}

#[tokio::test]
async fn topics_and_data_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = BrokerConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap());
    cfg.set("num.partitions", "2").unwrap();
    let run = |cfg: BrokerConfig| async move {
        let running = RunningBroker::bind(cfg).await.unwrap();
        let addr = running.addr;
        let id = running.broker().meta().cluster_id.clone();
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(async move { running.serve(rx).await.unwrap() });
        (addr, id, stop, task)
    };
    let (addr, cluster, stop, task) = run(cfg.clone()).await;
    let mut c = Client {
        stream: TcpStream::connect(addr).await.unwrap(),
        next_id: 1,
    };
    create(&mut c, "keep", &[("retention.ms", "86400000")]).await;
    c.call(&produce_req("keep", -1, records(3, 5)), 9).await;
    let md = c.call(&all_topics(), 12).await;
    let id = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "keep"))
        .unwrap()
        .topic_id;
    drop(c);
    stop.send(true).unwrap();
    task.await.unwrap();
    assert!(
        dir.path()
            .join("keep-0")
            .join(weir_log::CLEAN_SHUTDOWN_FILE)
            .exists(),
        "no clean-shutdown marker"
    );

    let (addr, cluster2, stop, task) = run(cfg).await;
    assert_eq!(cluster, cluster2, "cluster id changed");
    let mut c = Client {
        stream: TcpStream::connect(addr).await.unwrap(),
        next_id: 1,
    };
    let md = c.call(&all_topics(), 12).await;
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "keep"))
        .unwrap();
    assert_eq!(t.topic_id, id, "topic id changed");
    assert_eq!(t.partitions.len(), 1);
    let f = c.call(&fetch_req("keep", 0, 0, 0), 12).await;
    assert_eq!(f.responses[0].partitions[0].high_watermark, 3);
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn simple_commits_are_fetched_back_and_lag_is_computed() {
    let dir = tempfile::tempdir().unwrap();
    let running = RunningBroker::bind(BrokerConfig::new(
        dir.path(),
        "127.0.0.1:0".parse().unwrap(),
    ))
    .await
    .unwrap();
    let broker = running.broker().clone();
    let addr = running.addr;
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(async move { running.serve(rx).await.unwrap() });
    let mut c = Client {
        stream: TcpStream::connect(addr).await.unwrap(),
        next_id: 1,
    };
    create(&mut c, "lag", &[]).await;
    c.call(&produce_req("lag", 1, records(10, 0)), 9).await;
    // The coordinator first, as every client asks (it creates
    // __consumer_offsets): this broker.
    let mut fc = FindCoordinatorRequest::default();
    fc.key = StrBytes::from_static_str("solo");
    let found = c.call(&fc, 3).await;
    assert_eq!((found.error_code, found.node_id.0), (0, 0), "{found:?}");
    // A commit outside group membership (generation -1, no member id).
    let mut p = offset_commit_request::OffsetCommitRequestPartition::default();
    p.partition_index = 0;
    p.committed_offset = 4;
    p.committed_metadata = Some(StrBytes::from_static_str("where I was"));
    let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
    t.name = TopicName(StrBytes::from_static_str("lag"));
    t.partitions = vec![p];
    let mut r = OffsetCommitRequest::default();
    r.group_id = GroupId(StrBytes::from_static_str("solo"));
    r.generation_id_or_member_epoch = -1;
    r.topics = vec![t];
    let resp = c.call(&r, 8).await;
    assert_eq!(resp.topics[0].partitions[0].error_code, 0);

    let mut f = OffsetFetchRequest::default();
    f.group_id = GroupId(StrBytes::from_static_str("solo"));
    f.topics = None;
    let resp = c.call(&f, 7).await;
    let part = &resp.topics[0].partitions[0];
    assert_eq!(
        (
            part.committed_offset,
            part.metadata.as_ref().unwrap().as_str()
        ),
        (4, "where I was")
    );

    let lag = broker.group_lag("solo");
    assert_eq!(lag.len(), 1);
    assert_eq!(
        (lag[0].committed, lag[0].end, lag[0].lag),
        (4, Some(10), Some(6))
    );
    drop(broker);
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn log_append_time_topics_stamp_the_broker_time() {
    let b = start(&[]).await;
    let mut c = Client::connect(&b).await;
    create(
        &mut c,
        "lat",
        &[("message.timestamp.type", "LogAppendTime")],
    )
    .await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let r = c.call(&produce_req("lat", 1, records(2, 5)), 9).await;
    let p = &r.responses[0].partition_responses[0];
    assert!(
        p.log_append_time_ms >= before,
        "log_append_time_ms {}",
        p.log_append_time_ms
    );
    let f = c.call(&fetch_req("lat", 0, 0, 0), 12).await;
    let data = f.responses[0].partitions[0].records.clone().unwrap();
    let recs = batch::decode_records(&data).unwrap();
    assert!(
        recs.iter()
            .all(|(_, r)| r.timestamp == p.log_append_time_ms)
    );
    b.shutdown().await;
}

/// One batch of one record whose value is `size` bytes.
fn sized_batch(size: usize) -> Vec<u8> {
    batch::encode_batch(&[Record {
        timestamp: 0,
        key: None,
        value: Some(vec![7u8; size]),
        headers: vec![],
    }])
}

fn fetch_all(topic: &str, offsets: &[i64], partition_max: i32, max: i32) -> FetchRequest {
    let mut t = FetchTopic::default();
    t.topic = TopicName(StrBytes::from_string(topic.to_owned()));
    for (i, &offset) in offsets.iter().enumerate() {
        let mut p = FetchPartition::default();
        p.partition = i as i32;
        p.fetch_offset = offset;
        p.partition_max_bytes = partition_max;
        t.partitions.push(p);
    }
    let mut r = FetchRequest::default();
    r.replica_id = BrokerId(-1);
    r.max_bytes = max;
    r.topics = vec![t];
    r
}

#[tokio::test]
async fn fetch_gives_the_one_oversized_batch_only_to_the_first_partition_with_data() {
    let b = start(&[]).await;
    let mut c = Client::connect(&b).await;
    let mut t = create_topics_request::CreatableTopic::default();
    t.name = TopicName(StrBytes::from_static_str("kip74"));
    t.num_partitions = 3;
    t.replication_factor = 1;
    let mut r = CreateTopicsRequest::default();
    r.topics = vec![t];
    assert_eq!(c.call(&r, 7).await.topics[0].error_code, 0);
    let one = sized_batch(2000);
    for partition in 0..3 {
        let mut req = produce_req("kip74", 1, one.clone());
        req.topic_data[0].partition_data[0].index = partition;
        let resp = c.call(&req, 9).await;
        assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    }
    let sizes = |f: &FetchResponse| -> Vec<usize> {
        f.responses[0]
            .partitions
            .iter()
            .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
            .collect()
    };
    let n = one.len();
    // Room for one and a half batches: the first partition's batch, and
    // nothing partial or over the limit for the others.
    let f = c
        .call(
            &fetch_all("kip74", &[0, 0, 0], 1 << 20, (n * 3 / 2) as i32),
            12,
        )
        .await;
    assert_eq!(sizes(&f), vec![n, 0, 0]);
    // Limits below one batch: the first partition still gets one whole
    // batch (so the consumer progresses), the others nothing.
    let f = c.call(&fetch_all("kip74", &[0, 0, 0], 100, 100), 12).await;
    assert_eq!(sizes(&f), vec![n, 0, 0]);
    // The partition-level limit alone also holds back later partitions.
    let f = c
        .call(&fetch_all("kip74", &[0, 0, 0], 100, 1 << 20), 12)
        .await;
    assert_eq!(sizes(&f), vec![n, 0, 0]);
    // With the first partition read to its end, the next one is first.
    let f = c.call(&fetch_all("kip74", &[1, 0, 0], 100, 100), 12).await;
    assert_eq!(sizes(&f), vec![0, n, 0]);
    // Enough room for everything: everything.
    let f = c
        .call(&fetch_all("kip74", &[0, 0, 0], 1 << 20, 1 << 20), 12)
        .await;
    assert_eq!(sizes(&f), vec![n, n, n]);
    b.shutdown().await;
}

#[tokio::test]
async fn produce_v0_to_v2_is_answered_unsupported_version_and_the_connection_stays() {
    let b = start(&[]).await;
    let mut c = Client::connect(&b).await;
    create(&mut c, "old", &[]).await;
    for version in 0..=2i16 {
        // Produce v0-v2 bodies are v3's without the transactional id.
        let req = produce_req("old", 1, records(2, 0));
        let mut v3 = BytesMut::new();
        req.encode(&mut v3, 3).unwrap();
        let body = &v3[2..];
        let mut header = RequestHeader::default();
        header.request_api_key = ApiKey::Produce as i16;
        header.request_api_version = version;
        header.correlation_id = 77 + i32::from(version);
        header.client_id = Some(StrBytes::from_static_str("old-client"));
        let mut frame = BytesMut::new();
        header.encode(&mut frame, 1).unwrap();
        frame.put_slice(body);
        let mut out = BytesMut::new();
        out.put_i32(frame.len() as i32);
        out.put_slice(&frame);
        c.stream.write_all(&out).await.unwrap();
        let len = c.stream.read_i32().await.unwrap();
        let mut buf = vec![0u8; len as usize];
        c.stream.read_exact(&mut buf).await.unwrap();
        let mut buf = Bytes::from(buf);
        assert_eq!(buf.get_i32(), 77 + i32::from(version), "correlation id");
        // topics [name, partitions [index, error, base offset, (v2) append time]], (v1+) throttle
        assert_eq!(buf.get_i32(), 1);
        let name_len = buf.get_i16() as usize;
        assert_eq!(&buf.split_to(name_len)[..], b"old");
        assert_eq!(buf.get_i32(), 1);
        assert_eq!(buf.get_i32(), 0, "partition");
        assert_eq!(buf.get_i16(), 35, "UNSUPPORTED_VERSION in v{version}");
        assert_eq!(buf.get_i64(), -1);
        if version >= 2 {
            assert_eq!(buf.get_i64(), -1);
        }
        if version >= 1 {
            assert_eq!(buf.get_i32(), 0, "throttle");
        }
        assert!(!buf.has_remaining(), "trailing bytes in v{version}");
    }
    // Nothing was stored, and the connection still serves.
    let f = c.call(&fetch_req("old", 0, 0, 0), 12).await;
    assert_eq!(f.responses[0].partitions[0].high_watermark, 0);
    b.shutdown().await;
}

#[tokio::test]
async fn shutdown_is_prompt_and_clean_whatever_clients_are_doing() {
    let b = start(&[]).await;
    let mut c = Client::connect(&b).await;
    create(&mut c, "busy", &[]).await;
    for _ in 0..64 {
        c.call(&produce_req("busy", 1, sized_batch(60_000)), 9)
            .await;
    }
    // A client that asks for megabytes and never reads its answers.
    let mut deaf = Client::connect(&b).await;
    for _ in 0..200 {
        let (_, frame) = deaf.encode(&fetch_all("busy", &[0], 4 << 20, 4 << 20), 12);
        if tokio::time::timeout(Duration::from_millis(50), deaf.stream.write_all(&frame))
            .await
            .is_err()
        {
            break;
        }
    }
    // A client that sent half a request.
    let mut half = Client::connect(&b).await;
    let (_, frame) = half.encode(&fetch_req("busy", 0, 0, 0), 12);
    half.stream
        .write_all(&frame[..frame.len() / 2])
        .await
        .unwrap();
    // A long poll waiting for data that never comes, and an idle client.
    let mut polling = Client::connect(&b).await;
    polling.send(&fetch_req("busy", 64, 60_000, 1), 12).await;
    let _idle = Client::connect(&b).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let t = Instant::now();
    let dir = b.shutdown().await;
    let took = t.elapsed();
    let data_dir = dir.path().join("data");
    assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
    assert!(
        data_dir.join("busy-0").join("clean-shutdown").exists(),
        "busy-0 was not closed cleanly"
    );
}

/// A data directory written by the one-node version (`topics.toml`, the
/// partition logs, committed offsets, `producer-ids`, no metadata log)
/// opens with its topics, ids, configs, data and offsets, imported into
/// the cluster metadata once; producer ids continue after the old ones.
#[tokio::test]
async fn a_one_node_data_directory_is_imported_into_the_metadata() {
    use std::sync::Arc;
    use weir_broker::groups::offsets::{Committed, OffsetStore};
    let dir = tempfile::tempdir().unwrap();
    let old_id = "5a0c8b8e-8d0e-4d6e-9a43-7d1d6a2f0c11";
    std::fs::write(
        dir.path().join("topics.toml"),
        format!(
            "[[topics]]\nname = \"old\"\nid = \"{old_id}\"\npartitions = 2\n\n[topics.configs]\n\"retention.ms\" = \"86400000\"\n\n\
             [[topics]]\nname = \"__consumer_offsets\"\nid = \"0b8e0c5a-0d8e-4e6d-9a43-7d1d6a2f0c12\"\npartitions = 1\n\n[topics.configs]\n\"cleanup.policy\" = \"compact\"\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("producer-ids"), "5000\n").unwrap();
    let log = weir_log::Log::open_dir(dir.path().join("old-0"), weir_log::LogConfig::default(), 0)
        .unwrap();
    log.append(&mut records(3, 5), 10).unwrap();
    log.close().unwrap();
    let offsets = Arc::new(
        weir_log::Log::open_dir(
            dir.path().join("__consumer_offsets-0"),
            weir_log::LogConfig::default(),
            0,
        )
        .unwrap(),
    );
    OffsetStore::load(offsets.clone())
        .unwrap()
        .write(vec![(
            ("g".to_owned(), "old".to_owned(), 0),
            Some(Committed {
                offset: 2,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp: 10,
            }),
        )])
        .unwrap();
    Arc::try_unwrap(offsets).unwrap().close().unwrap();

    for round in 0..2 {
        let cfg = BrokerConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap());
        let running = RunningBroker::bind(cfg).await.unwrap();
        let broker = running.broker().clone();
        assert!(broker.cluster().image().migrated);
        let addr = running.addr;
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(async move { running.serve(rx).await.unwrap() });
        let mut c = Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            next_id: 1,
        };
        let md = c.call(&all_topics(), 12).await;
        let t = md
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "old"))
            .unwrap_or_else(|| panic!("round {round}: {md:?}"));
        assert_eq!(t.topic_id.to_string(), old_id);
        assert_eq!(t.partitions.len(), 2);
        assert!(
            t.partitions
                .iter()
                .all(|p| p.error_code == 0 && p.leader_id.0 == 0)
        );
        let f = c.call(&fetch_req("old", 0, 0, 0), 12).await;
        assert_eq!(f.responses[0].partitions[0].high_watermark, 3);
        let topic = broker.topics().get("old").unwrap();
        assert_eq!(topic.config.retention_ms, Some(86_400_000));
        let lag = broker.group_lag("g");
        assert_eq!(lag.len(), 1, "{lag:?}");
        assert_eq!((lag[0].committed, lag[0].lag), (2, Some(1)));
        let mut init = InitProducerIdRequest::default();
        init.transactional_id = None;
        init.transaction_timeout_ms = 60_000;
        init.producer_id = ProducerId(-1);
        init.producer_epoch = -1;
        let pid = c.call(&init, 4).await;
        assert_eq!(pid.error_code, 0);
        assert!(
            pid.producer_id.0 >= 5000 + 1000 * round,
            "round {round}: producer id {} reused an old block",
            pid.producer_id.0
        );
        drop(c);
        drop(broker);
        stop.send(true).unwrap();
        task.await.unwrap();
    }
}

/// KIP-101 / KIP-320: OffsetForLeaderEpoch answers from the log's epochs;
/// a client's current leader epoch that is not the leader's gets
/// FENCED_LEADER_EPOCH (older) or UNKNOWN_LEADER_EPOCH (newer).
#[tokio::test]
async fn leader_epochs_are_served_and_checked() {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    let b = start(&[]).await;
    let mut c = Client::connect(&b).await;
    create(&mut c, "epochs", &[]).await;
    c.call(&produce_req("epochs", -1, records(3, 5)), 9).await;
    let md = c.call(&all_topics(), 12).await;
    let epoch = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "epochs"))
        .unwrap()
        .partitions[0]
        .leader_epoch;
    let ask = |current: i32, wanted: i32| {
        let mut p = OffsetForLeaderPartition::default();
        p.partition = 0;
        p.current_leader_epoch = current;
        p.leader_epoch = wanted;
        let mut t = OffsetForLeaderTopic::default();
        t.topic = TopicName(StrBytes::from_static_str("epochs"));
        t.partitions = vec![p];
        let mut r = OffsetForLeaderEpochRequest::default();
        r.replica_id = BrokerId(-1);
        r.topics = vec![t];
        r
    };
    let got = c.call(&ask(epoch, epoch), 4).await;
    let e = &got.topics[0].partitions[0];
    assert_eq!(
        (e.error_code, e.leader_epoch, e.end_offset),
        (0, epoch, 3),
        "{got:?}"
    );
    let got = c.call(&ask(epoch + 1, epoch), 4).await;
    assert_eq!(
        got.topics[0].partitions[0].error_code,
        kafka_protocol::ResponseError::UnknownLeaderEpoch.code()
    );
    // Fetch with the leader's epoch works, with a newer one it is refused.
    let mut f = fetch_req("epochs", 0, 0, 0);
    f.topics[0].partitions[0].current_leader_epoch = epoch;
    let r = c.call(&f, 12).await;
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
    assert_eq!(r.responses[0].partitions[0].high_watermark, 3);
    f.topics[0].partitions[0].current_leader_epoch = epoch + 3;
    let r = c.call(&f, 12).await;
    assert_eq!(
        r.responses[0].partitions[0].error_code,
        kafka_protocol::ResponseError::UnknownLeaderEpoch.code()
    );
    if epoch > 0 {
        f.topics[0].partitions[0].current_leader_epoch = epoch - 1;
        let r = c.call(&f, 12).await;
        assert_eq!(
            r.responses[0].partitions[0].error_code,
            kafka_protocol::ResponseError::FencedLeaderEpoch.code()
        );
    }
    b.shutdown().await;
}

"""Kafka semantics that clients rely on, checked with confluent-kafka
(librdkafka 2.x) against a running broker. Run by crates/weir/tests/semantics.rs:

    semantics.py --bootstrap HOST:PORT CASE [--codec CODEC]

Each case creates its own topics, checks what a client sees and exits
non-zero with FAILED: ... on the first difference from Kafka's behaviour.
"""
import sys
import time
import uuid

from confluent_kafka import (ConsumerGroupType, Consumer, KafkaError,
                             KafkaException, Producer, TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from common import args, check

opts = args(("case", {}), ("--codec", {"default": "none"}))
conf = {"bootstrap.servers": opts.bootstrap}
admin = AdminClient(conf)


def create(topic, partitions=1, config=None):
    fs = admin.create_topics([NewTopic(topic, partitions, 1, config=config or {})])
    for f in fs.values():
        f.result(30)


def fetch_limits():
    """KIP-74: a consumer whose fetch.max.bytes is below two partitions'
    worth of 900 KiB messages still consumes everything."""
    topic = f"big-{uuid.uuid4().hex[:8]}"
    create(topic, 3)
    size = 900 * 1024
    p = Producer({**conf, "linger.ms": 0, "compression.type": "none"})
    for i in range(30):
        value = (f"{i}:".encode() * size)[:size]
        p.produce(topic, value=value, key=str(i).encode(), partition=i % 3)
        p.poll(0)
    check(p.flush(60) == 0, "not every 900 KiB message was delivered")
    c = Consumer({**conf, "group.id": topic, "auto.offset.reset": "earliest",
                  "fetch.max.bytes": 1000000,
                  "receive.message.max.bytes": 1000512})
    c.subscribe([topic])
    seen = set()
    deadline = time.time() + 25
    while len(seen) < 30 and time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        check(m.error() is None, f"consumer error {m.error()}")
        i = int(m.key())
        check(len(m.value()) == size and m.value().startswith(f"{i}:".encode()),
              f"message {i} came back damaged")
        check(m.partition() == i % 3, f"message {i} in partition {m.partition()}")
        seen.add(i)
    c.close()
    check(len(seen) == 30, f"consumed {len(seen)} of 30 messages in 25 s")
    print("consumed 30 of 30")


def max_timestamp():
    """KIP-734: ListOffsets MAX_TIMESTAMP names the record with the largest
    timestamp, not its batch, in every codec."""
    topic = f"maxts-{opts.codec}-{uuid.uuid4().hex[:8]}"
    create(topic)
    now = int(time.time() * 1000)
    # Two records in one batch, the second newer; then a batch older than both.
    p = Producer({**conf, "linger.ms": 500, "compression.type": opts.codec})
    p.produce(topic, value=b"first", timestamp=now - 5000)
    p.produce(topic, value=b"second", timestamp=now - 1000)
    check(p.flush(30) == 0, "produce failed")
    p.produce(topic, value=b"third", timestamp=now - 9000)
    check(p.flush(30) == 0, "produce failed")
    tp = TopicPartition(topic, 0)
    got = admin.list_offsets({tp: OffsetSpec.max_timestamp()})[tp].result(30)
    check(got.offset == 1 and got.timestamp == now - 1000,
          f"max timestamp: offset {got.offset} timestamp {got.timestamp}, "
          f"want offset 1 timestamp {now - 1000}")
    latest = admin.list_offsets({tp: OffsetSpec.latest()})[tp].result(30)
    check(latest.offset == 3, f"latest offset {latest.offset}")
    print(f"{opts.codec}: max timestamp at offset {got.offset}")


def group_types():
    """ListGroups v5: every group is classic, type filters are honoured."""
    group = f"g-{uuid.uuid4().hex[:8]}"
    topic = f"gt-{uuid.uuid4().hex[:8]}"
    create(topic)
    c = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    deadline = time.time() + 20
    while not c.assignment() and time.time() < deadline:
        c.poll(0.2)
    check(c.assignment(), "the consumer got no assignment")

    def listed(**kw):
        res = admin.list_consumer_groups(request_timeout=10, **kw).result(15)
        return {g.group_id: g for g in res.valid}

    every = listed()
    check(group in every, f"{group} not listed: {list(every)}")
    check(every[group].type == ConsumerGroupType.CLASSIC,
          f"type {every[group].type}, want CLASSIC")
    classic = listed(types={ConsumerGroupType.CLASSIC})
    check(group in classic, "not listed with types={CLASSIC}")
    consumer = listed(types={ConsumerGroupType.CONSUMER})
    check(group not in consumer, "a classic group listed with types={CONSUMER}")
    c.close()
    print("group types ok")


def transactions():
    """Until transactions exist, init_transactions() fails at once with a
    fatal error instead of retrying forever."""
    p = Producer({**conf, "transactional.id": f"tx-{uuid.uuid4().hex[:8]}"})
    start = time.time()
    try:
        p.init_transactions(30)
    except KafkaException as e:
        err = e.args[0]
        took = time.time() - start
        print(f"init_transactions failed after {took:.2f} s: {err}")
        check(took < 5, f"init_transactions took {took:.1f} s to fail")
        check(err.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
              f"error {err.code()}, want TRANSACTIONAL_ID_AUTHORIZATION_FAILED")
        check(not err.retriable(), "the error is retriable")
        return
    check(False, "init_transactions succeeded")


# Every topic config of Kafka 3.9 (4.0 dropped the three deprecated ones,
# still accepted here as 3.x does), each with a valid value that is not its
# default.
EVERY_CONFIG = {
    "cleanup.policy": "compact,delete",
    "compression.gzip.level": "5",
    "compression.lz4.level": "4",
    "compression.type": "zstd",
    "compression.zstd.level": "7",
    "delete.retention.ms": "1000",
    "file.delete.delay.ms": "1000",
    "flush.messages": "1000",
    "flush.ms": "1000",
    "follower.replication.throttled.replicas": "0:1",
    "index.interval.bytes": "1024",
    "leader.replication.throttled.replicas": "*",
    "local.retention.bytes": "1000",
    "local.retention.ms": "1000",
    "max.compaction.lag.ms": "100000",
    "max.message.bytes": "2000000",
    "message.downconversion.enable": "false",
    "message.format.version": "2.8",
    "message.timestamp.after.max.ms": "60000",
    "message.timestamp.before.max.ms": "60000",
    "message.timestamp.difference.max.ms": "60000",
    "message.timestamp.type": "LogAppendTime",
    "min.cleanable.dirty.ratio": "0.1",
    "min.compaction.lag.ms": "1000",
    "min.insync.replicas": "1",
    "preallocate": "true",
    "remote.log.copy.disable": "true",
    "remote.log.delete.on.disable": "true",
    "retention.bytes": "1000000",
    "retention.ms": "1000000",
    "segment.bytes": "1000000",
    "segment.index.bytes": "1000000",
    "segment.jitter.ms": "1000",
    "segment.ms": "1000000",
    "unclean.leader.election.enable": "true",
}


def configs():
    """Every Kafka topic config round-trips through CreateTopics,
    IncrementalAlterConfigs, AlterConfigs and DescribeConfigs; refused ones
    say why."""
    from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry,
                                       ConfigResource, ConfigSource)

    def describe(topic):
        res = ConfigResource(ConfigResource.Type.TOPIC, topic)
        return admin.describe_configs([res])[res].result(30)

    topic = f"cfg-{uuid.uuid4().hex[:8]}"
    create(topic)
    before = describe(topic)
    missing = set(EVERY_CONFIG) - set(before)
    check(not missing, f"DescribeConfigs lacks {sorted(missing)}")
    check(all(e.source == ConfigSource.DEFAULT_CONFIG.value for e in before.values()),
          "a new topic has only defaults")
    retention = before["retention.ms"]
    check(retention.synonyms and any(n.startswith("log.retention") for n in retention.synonyms),
          f"retention.ms synonyms {retention.synonyms}")
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
        for k, v in EVERY_CONFIG.items()])
    admin.incremental_alter_configs([res])[res].result(30)
    after = describe(topic)
    for k, v in EVERY_CONFIG.items():
        e = after[k]
        check(e.value == v, f"{k}: described {e.value!r} after setting {v!r}")
        check(e.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, f"{k}: source {e.source}")
    # DELETE puts a config back to its default.
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    admin.incremental_alter_configs([res])[res].result(30)
    e = describe(topic)["retention.ms"]
    check(e.value == retention.value and e.source == ConfigSource.DEFAULT_CONFIG.value,
          f"retention.ms after DELETE: {e.value} from {e.source}")
    # AlterConfigs replaces the whole set.
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"segment.ms": "5000"})
    admin.alter_configs([res])[res].result(30)
    now = describe(topic)
    check(now["segment.ms"].value == "5000", "AlterConfigs did not set segment.ms")
    check(now["preallocate"].source == ConfigSource.DEFAULT_CONFIG.value,
          "AlterConfigs did not replace the other overrides")
    # All of them at creation.
    created = f"cfg-all-{uuid.uuid4().hex[:8]}"
    create(created, config=EVERY_CONFIG)
    got = describe(created)
    for k, v in EVERY_CONFIG.items():
        check(got[k].value == v, f"created with {k}={v}, described {got[k].value}")
    # Refusals say why, as Kafka does.
    for k, v, why in [("remote.storage.enable", "true", "Tiered Storage"),
                      ("no.such.config", "1", "Unknown topic config"),
                      ("min.insync.replicas", "0", "min.insync.replicas"),
                      ("compression.type", "brotli", "compression.type")]:
        fs = admin.create_topics([NewTopic(f"bad-{uuid.uuid4().hex[:8]}", 1, 1, config={k: v})])
        try:
            list(fs.values())[0].result(30)
            check(False, f"{k}={v} was accepted")
        except KafkaException as e:
            err = e.args[0]
            check(err.code() == KafkaError.INVALID_CONFIG and why in err.str(),
                  f"{k}={v}: {err}")
    print(f"{len(EVERY_CONFIG)} configs round-trip")


def min_insync():
    """acks=all on a topic whose min.insync.replicas exceeds its replicas
    fails with NOT_ENOUGH_REPLICAS; acks=1 still works."""
    topic = f"isr-{uuid.uuid4().hex[:8]}"
    create(topic, config={"min.insync.replicas": "2"})
    results = []
    for acks in ("all", "1"):
        p = Producer({**conf, "acks": acks, "retries": 0, "enable.idempotence": False,
                      "message.timeout.ms": 5000})
        p.produce(topic, value=b"x", on_delivery=lambda err, msg: results.append((acks, err)))
        p.flush(10)
    check(len(results) == 2, f"deliveries {results}")
    check(results[0][1] is not None and results[0][1].code() == KafkaError.NOT_ENOUGH_REPLICAS,
          f"acks=all: {results[0][1]}")
    check(results[1][1] is None, f"acks=1: {results[1][1]}")
    print("min.insync.replicas enforced")


def record_errors():
    """KIP-467: on a compacted topic a record without a key fails with
    INVALID_RECORD and a reason; keyed records go through."""
    topic = f"compacted-{uuid.uuid4().hex[:8]}"
    create(topic, config={"cleanup.policy": "compact"})
    results = {}

    def done(name):
        return lambda err, msg: results.__setitem__(name, err)

    p = Producer({**conf, "linger.ms": 0, "retries": 0, "compression.type": opts.codec})
    p.produce(topic, key=b"k1", value=b"one", on_delivery=done("keyed-1"))
    p.flush(10)
    p.produce(topic, value=b"no key", on_delivery=done("keyless"))
    p.flush(10)
    p.produce(topic, key=b"k2", value=b"two", on_delivery=done("keyed-2"))
    check(p.flush(10) == 0, "deliveries outstanding")
    check(results["keyed-1"] is None and results["keyed-2"] is None, f"keyed: {results}")
    err = results["keyless"]
    check(err is not None and err.code() == KafkaError.INVALID_RECORD,
          f"keyless record: {err}")
    print(f"keyless record refused: {err}")
    tp = TopicPartition(topic, 0)
    latest = admin.list_offsets({tp: OffsetSpec.latest()})[tp].result(30)
    check(latest.offset == 2, f"{latest.offset} records stored, want 2")


def recompression():
    """compression.type=gzip: batches the producer sent in another codec
    are stored in gzip and read back intact."""
    topic = f"gz-{uuid.uuid4().hex[:8]}"
    create(topic, config={"compression.type": "gzip"})
    p = Producer({**conf, "linger.ms": 50, "compression.type": opts.codec})
    for i in range(1000):
        p.produce(topic, key=str(i).encode(), value=(f"value {i} " * 20).encode())
    check(p.flush(30) == 0, "produce failed")
    c = Consumer({**conf, "group.id": topic, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, 0, 0)])
    got = {}
    deadline = time.time() + 20
    while len(got) < 1000 and time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        check(m.error() is None, f"consumer error {m.error()}")
        got[int(m.key())] = m.value()
    c.close()
    check(len(got) == 1000, f"read {len(got)} of 1000")
    check(all(got[i] == (f"value {i} " * 20).encode() for i in range(1000)), "values differ")
    print(f"{opts.codec} -> gzip: 1000 read back; topic {topic}")


CASES = {
    "record-errors": record_errors,
    "recompression": recompression,
    "configs": configs,
    "min-insync": min_insync,
    "fetch-limits": fetch_limits,
    "max-timestamp": max_timestamp,
    "group-types": group_types,
    "transactions": transactions,
}

if opts.case not in CASES:
    print(f"unknown case {opts.case}; cases: {', '.join(CASES)}", file=sys.stderr)
    sys.exit(2)
CASES[opts.case]()

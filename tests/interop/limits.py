"""Size limits and auto-creation, seen from confluent-kafka.

Run against a broker started with message.max.bytes=2097152 and
auto.create.topics.enable=false. (Kafka's default, 1048588, bounds the whole
batch, so a value of exactly 1 MiB plus its record and batch headers would
not fit it.)
"""
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from common import args, check

a = args()
admin = AdminClient({"bootstrap.servers": a.bootstrap})
admin.create_topics([NewTopic("big", num_partitions=1, replication_factor=1)])["big"].result(10)


def send(topic, value):
    results = []
    p = Producer({"bootstrap.servers": a.bootstrap, "message.max.bytes": 10_000_000,
                  "compression.type": "none", "message.timeout.ms": 5000,
                  "topic.metadata.refresh.interval.ms": 500,
                  "topic.metadata.propagation.max.ms": 1000})
    p.produce(topic, value=value, on_delivery=lambda err, msg: results.append(err))
    p.flush(15)
    check(len(results) == 1, f"no delivery report for {topic}")
    return results[0]


# A 1 MiB message is accepted.
err = send("big", b"x" * (1 << 20))
check(err is None, f"1 MiB message refused: {err}")

# Above max.message.bytes: MESSAGE_TOO_LARGE.
err = send("big", b"y" * (3 << 20))
check(err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE,
      f"3 MiB message: expected MESSAGE_TOO_LARGE, got {err}")

# Auto-creation is off: an unknown topic is not created.
err = send("no-such-topic", b"z")
check(err is not None and err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC),
      f"unknown topic: expected UNKNOWN_TOPIC_OR_PARTITION, got {err}")
md = admin.list_topics(topic="no-such-topic", timeout=10)
t = md.topics.get("no-such-topic")
check(t is not None and t.error is not None and t.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART,
      f"metadata for an unknown topic: {t and t.error}")
check("no-such-topic" not in admin.list_topics(timeout=10).topics, "topic was auto-created")
print("limits ok")

"""confluent-kafka AdminClient and consumer positioning against the broker."""
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, ConfigResource, NewPartitions, NewTopic, ResourceType)

from common import args, check

a = args()
admin = AdminClient({"bootstrap.servers": a.bootstrap})

# create_topics, with configs; a replication factor above 1 is refused.
fs = admin.create_topics([
    NewTopic("adm", num_partitions=2, replication_factor=1, config={"retention.ms": "3600000"}),
    NewTopic("adm-rf3", num_partitions=1, replication_factor=3),
])
fs["adm"].result(10)
try:
    fs["adm-rf3"].result(10)
    check(False, "replication factor 3 was accepted")
except KafkaException as e:
    check(e.args[0].code() == 38, f"expected INVALID_REPLICATION_FACTOR, got {e}")
    print("rf3 refused:", e.args[0].str())
md = admin.list_topics(timeout=10)
check("adm" in md.topics and len(md.topics["adm"].partitions) == 2, f"topic list: {md.topics}")

# create_partitions
admin.create_partitions([NewPartitions("adm", 4)])["adm"].result(10)
md = admin.list_topics(timeout=10)
check(len(md.topics["adm"].partitions) == 4, "partitions not added")

# describe_configs: the override and the defaults with their sources
res = admin.describe_configs([ConfigResource(ResourceType.TOPIC, "adm")])
configs = list(res.values())[0].result(10)
check(configs["retention.ms"].value == "3600000", f"retention.ms = {configs['retention.ms'].value}")
check(not configs["retention.ms"].is_default, "override reported as default")
check(configs["segment.bytes"].is_default, "segment.bytes should be a default")
check(configs["segment.bytes"].value == "1073741824", f"segment.bytes = {configs['segment.bytes'].value}")

# alter_configs (replaces the overrides) and incremental_alter_configs
admin.alter_configs([ConfigResource(ResourceType.TOPIC, "adm", set_config={"retention.ms": "7200000"})])
time.sleep(0.2)
configs = list(admin.describe_configs([ConfigResource(ResourceType.TOPIC, "adm")]).values())[0].result(10)
check(configs["retention.ms"].value == "7200000", "alter_configs did not apply")
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry
r = admin.incremental_alter_configs([ConfigResource(
    ResourceType.TOPIC, "adm",
    incremental_configs=[ConfigEntry("max.message.bytes", "2000000", incremental_operation=AlterConfigOpType.SET)],
)])
list(r.values())[0].result(10)
configs = list(admin.describe_configs([ConfigResource(ResourceType.TOPIC, "adm")]).values())[0].result(10)
check(configs["max.message.bytes"].value == "2000000", "incremental_alter_configs did not apply")
check(configs["retention.ms"].value == "7200000", "incremental_alter_configs lost another override")

# produce with timestamps, then offsets_for_times, seek and delete_records
p = Producer({"bootstrap.servers": a.bootstrap})
base = 1_700_000_000_000
for i in range(100):
    p.produce("adm", value=f"v{i}".encode(), partition=1, timestamp=base + i * 1000)
check(p.flush(10) == 0, "produce failed")

c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "adm-reader", "enable.auto.commit": False})
found = c.offsets_for_times([TopicPartition("adm", 1, base + 41_500)], timeout=10)
check(found[0].offset == 42, f"offsets_for_times gave {found[0].offset}, expected 42")
found = c.offsets_for_times([TopicPartition("adm", 1, base + 1_000_000)], timeout=10)
check(found[0].offset == -1, f"a time after every record gave {found[0].offset}, expected -1 (end)")
low, high = c.get_watermark_offsets(TopicPartition("adm", 1), timeout=10)
check((low, high) == (0, 100), f"watermarks {(low, high)}")
c.assign([TopicPartition("adm", 1, 0)])
c.seek(TopicPartition("adm", 1, 70))
msgs = []
deadline = time.time() + 10
while len(msgs) < 30 and time.time() < deadline:
    msgs += [m for m in c.consume(30, timeout=0.5) if not m.error()]
check([m.value() for m in msgs[:3]] == [b"v70", b"v71", b"v72"], f"seek read {[m.value() for m in msgs[:3]]}")
check(msgs[0].timestamp()[1] == base + 70_000, f"timestamp {msgs[0].timestamp()}")

res = admin.delete_records([TopicPartition("adm", 1, 60)])
deleted = list(res.values())[0].result(10)
low, high = c.get_watermark_offsets(TopicPartition("adm", 1), timeout=10, cached=False)
check(low == 60, f"low watermark after delete_records: {low}")
c.close()

# delete_topics
admin.delete_topics(["adm"])["adm"].result(10)
time.sleep(0.2)
md = admin.list_topics(timeout=10)
check("adm" not in md.topics, "topic still listed after delete")
# describe_cluster: this broker, its cluster id and node 0 as controller
cluster = admin.describe_cluster().result(10)
check(cluster.cluster_id and len(cluster.cluster_id) == 22, f"cluster id {cluster.cluster_id}")
check([n.id for n in cluster.nodes] == [0] and cluster.controller.id == 0, f"nodes {cluster.nodes}")
print("admin ok")

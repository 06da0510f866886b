"""kafka-python (PyPI 3.x or Debian's 2.0.2, whichever runs this script):
admin create/delete topics, produce, consume from the beginning."""
import json
import sys
import time

import kafka
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from common import args, check

a = args(("--topic", {"default": "kp"}))
print("kafka-python", kafka.__version__, "on python", sys.version.split()[0])
admin = KafkaAdminClient(bootstrap_servers=a.bootstrap)
admin.create_topics([NewTopic(name=a.topic, num_partitions=3, replication_factor=1)])
check(a.topic in admin.list_topics(), "created topic not listed")

producer = KafkaProducer(bootstrap_servers=a.bootstrap, acks="all",
                         key_serializer=str.encode, value_serializer=lambda v: json.dumps(v).encode())
for i in range(300):
    producer.send(a.topic, key=f"k{i % 7}", value={"i": i})
producer.flush(30)
producer.close()

consumer = KafkaConsumer(a.topic, bootstrap_servers=a.bootstrap, group_id=None,
                         auto_offset_reset="earliest", consumer_timeout_ms=5000)
got = sorted(json.loads(m.value)["i"] for m in consumer)
consumer.close()
check(got == list(range(300)), f"read {len(got)} of 300")

# describe_log_dirs (kafka-python 2.1+): the log dir holds the topic
if hasattr(admin, "describe_log_dirs"):
    text = str(admin.describe_log_dirs())
    check(a.topic in text, f"describe_log_dirs does not show {a.topic}: {text[:500]}")

admin.delete_topics([a.topic])
deadline = time.time() + 10
while a.topic in admin.list_topics() and time.time() < deadline:
    time.sleep(0.2)
check(a.topic not in admin.list_topics(), "deleted topic still listed")
admin.close()
print("kafka-python ok")

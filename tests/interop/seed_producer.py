"""The reference flow's producer, as users wrote it: kafka-python sending
JSON sensor readings to `oceanic`, one message each."""
import json
import random

from kafka import KafkaProducer

from common import args

a = args(("--count", {"type": int, "default": 200}))
producer = KafkaProducer(bootstrap_servers=[a.bootstrap],
                         value_serializer=lambda v: json.dumps(v).encode("utf-8"))
rng = random.Random(7)
for _ in range(a.count):
    reading = {
        "pressure": round(rng.uniform(0, 10), 1),
        "temperature": round(rng.uniform(0, 100), 1),
        "visibility": round(rng.uniform(0, 100), 1),
    }
    producer.send("oceanic", reading)
producer.flush()
producer.close()
print(f"sent {a.count}")

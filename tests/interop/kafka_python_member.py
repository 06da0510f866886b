"""A kafka-python group member that prints its assignment as it changes."""
import time

from kafka import KafkaConsumer

from common import args

a = args(("--topic", {"default": "six"}), ("--group", {"default": "g"}), ("--seconds", {"type": float, "default": 30}))
c = KafkaConsumer(a.topic, bootstrap_servers=a.bootstrap, group_id=a.group, client_id="kafka-python-member",
                  session_timeout_ms=6000, heartbeat_interval_ms=500, auto_offset_reset="earliest")
last = None
deadline = time.time() + a.seconds
while time.time() < deadline:
    c.poll(timeout_ms=100)
    now = sorted(tp.partition for tp in c.assignment())
    if now != last:
        print("assigned", now, flush=True)
        last = now
c.close()

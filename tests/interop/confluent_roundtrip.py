"""confluent-kafka (librdkafka): every compression codec and acks level.

`produce` sends N messages per (codec, acks) topic; `verify` reads every topic
back and compares each message byte for byte (run after a broker restart).
"""
import sys

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from common import args, check, payload

CASES = [
    ("none", "all"), ("gzip", "all"), ("snappy", "all"), ("lz4", "all"), ("zstd", "all"),
    ("none", "0"), ("none", "1"), ("lz4", "1"),
]


def topic_name(codec, acks):
    return f"rt-{codec}-acks{acks}"


def produce(bootstrap, n):
    for codec, acks in CASES:
        topic = topic_name(codec, acks)
        errors = []
        p = Producer({
            "bootstrap.servers": bootstrap,
            "compression.type": codec,
            "acks": acks,
            "linger.ms": 5,
            "enable.idempotence": False,
        })

        def report(err, msg):
            if err is not None:
                errors.append(err)

        for i in range(n):
            key, value = payload(topic, i)
            while True:
                try:
                    p.produce(topic, value=value, key=key, headers=[("i", str(i).encode())], on_delivery=report)
                    break
                except BufferError:
                    p.poll(0.1)
            if i % 1000 == 0:
                p.poll(0)
        left = p.flush(60)
        check(left == 0, f"{topic}: {left} messages not delivered")
        check(not errors, f"{topic}: delivery errors {errors[:3]}")
        print(f"produced {n} to {topic}")


def verify(bootstrap, n):
    for codec, acks in CASES:
        topic = topic_name(codec, acks)
        c = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": "verify",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        })
        c.assign([TopicPartition(topic, 0, 0)])
        seen = 0
        idle = 0
        while seen < n and idle < 50:
            msgs = c.consume(num_messages=10000, timeout=0.2)
            if not msgs:
                idle += 1
                continue
            idle = 0
            for m in msgs:
                if m.error():
                    check(m.error().code() == KafkaError._PARTITION_EOF, f"{topic}: {m.error()}")
                    continue
                key, value = payload(topic, seen)
                check(m.offset() == seen, f"{topic}: offset {m.offset()} where {seen} was expected")
                check(m.key() == key and m.value() == value, f"{topic}: message {seen} differs")
                check(m.headers() == [("i", str(seen).encode())], f"{topic}: headers of {seen} differ: {m.headers()}")
                seen += 1
        c.close()
        check(seen == n, f"{topic}: read {seen} of {n}")
        print(f"verified {n} from {topic}")


if __name__ == "__main__":
    a = args(("mode", {"choices": ["produce", "verify"]}), ("--count", {"type": int, "default": 100000}))
    (produce if a.mode == "produce" else verify)(a.bootstrap, a.count)
    sys.exit(0)

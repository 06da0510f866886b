"""Clients against a cluster of brokers (run by crates/weir/tests/cluster.rs).

`produce-confluent` / `produce-kafka-python` send N keyed messages whose
values are `<tag>:<i>` with acks=all (confluent: idempotent, with a
--message-timeout-ms delivery timeout); `consume` reads with a consumer group
until it has seen --expect distinct values (or --timeout passes), commits,
and prints `distinct N duplicates D`; with --max it stops after that many
messages, committing what it read, so a later run resumes there; --out
writes the distinct values read, one per line. `produce-acked` sends
--count values to one --partition with acks=all and a --timeout-ms
delivery timeout (--acks, --retries as given), writes to --out the values
acknowledged and prints the delivery errors seen by name.
"""
import sys
import time

from common import args, check


def produce_confluent(bootstrap, topic, tag, n, message_timeout_ms=60000):
    from confluent_kafka import Producer

    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "enable.idempotence": True, "message.timeout.ms": message_timeout_ms})

    def report(err, _msg):
        if err is not None:
            errors.append(err)

    for i in range(n):
        while True:
            try:
                p.produce(topic, key=f"{tag}-{i}".encode(), value=f"{tag}:{i}".encode(),
                          on_delivery=report)
                break
            except BufferError:
                p.poll(0.1)
        if i % 1000 == 0:
            p.poll(0)
    left = p.flush(60)
    check(left == 0, f"{left} messages not delivered")
    check(not errors, f"delivery errors {errors[:3]}")
    print(f"produced {n}")


def produce_acked(bootstrap, topic, tag, n, partition, timeout_ms, out, acks="all", retries=None):
    """One partition; writes the values the broker acknowledged."""
    from confluent_kafka import Producer

    acked, failed, errors = [], [], set()
    conf = {"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 1,
            "message.timeout.ms": timeout_ms, "request.timeout.ms": timeout_ms}
    if retries is not None:
        conf["retries"] = retries
    p = Producer(conf)

    def report(err, msg):
        (failed if err is not None else acked).append(msg.value())
        if err is not None:
            errors.add(err.name())

    for i in range(n):
        p.produce(topic, value=f"{tag}:{i}".encode(), partition=partition, on_delivery=report)
    p.flush(timeout_ms / 1000 + 10)
    with open(out, "w") as f:
        for v in acked:
            f.write(v.decode() + "\n")
    print(f"acked {len(acked)} failed {len(failed)} errors {','.join(sorted(errors))}")


def produce_kafka_python(bootstrap, topic, tag, n):
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", linger_ms=5,
                      retries=10, request_timeout_ms=30000)
    futures = [p.send(topic, key=f"{tag}-{i}".encode(), value=f"{tag}:{i}".encode())
               for i in range(n)]
    p.flush(60)
    for f in futures:
        f.get(timeout=60)
    p.close()
    print(f"produced {n}")


def consume(bootstrap, topic, group, expect, maximum, timeout, out, every):
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    seen = set()
    total = 0
    deadline = time.time() + timeout
    while len(seen) < expect and time.time() < deadline:
        if maximum and total >= maximum:
            break
        msg = c.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            print(f"consumer error: {msg.error()}", file=sys.stderr)
            continue
        total += 1
        seen.add(msg.value())
        if total % every == 0:
            c.commit(message=msg, asynchronous=False)
    if total % every:
        c.commit(asynchronous=False)
    c.close()
    print(f"distinct {len(seen)} duplicates {total - len(seen)}")
    if out:
        with open(out, "w") as f:
            for v in sorted(seen):
                f.write(v.decode() + "\n")


def main():
    a = args(("mode", {}), ("--topic", {"required": True}), ("--tag", {"default": "m"}),
             ("--count", {"type": int, "default": 0}), ("--group", {"default": "g"}),
             ("--expect", {"type": int, "default": 0}), ("--max", {"type": int, "default": 0}),
             ("--timeout", {"type": float, "default": 60}), ("--out", {"default": ""}),
             ("--commit-every", {"type": int, "default": 1}),
             ("--partition", {"type": int, "default": 0}),
             ("--timeout-ms", {"type": int, "default": 1000}),
             ("--acks", {"default": "all"}),
             ("--message-timeout-ms", {"type": int, "default": 60000}), ("--retries", {"type": int, "default": None}))
    if a.mode == "produce-confluent":
        produce_confluent(a.bootstrap, a.topic, a.tag, a.count, a.message_timeout_ms)
    elif a.mode == "produce-acked":
        produce_acked(a.bootstrap, a.topic, a.tag, a.count, a.partition, a.timeout_ms, a.out,
                      a.acks, a.retries)
    elif a.mode == "produce-kafka-python":
        produce_kafka_python(a.bootstrap, a.topic, a.tag, a.count)
    elif a.mode == "consume":
        consume(a.bootstrap, a.topic, a.group, a.expect, a.max, a.timeout, a.out, a.commit_every)
    else:
        check(False, f"unknown mode {a.mode}")


if __name__ == "__main__":
    main()

"""Clients against a cluster of brokers (run by crates/weir/tests/cluster.rs).

`produce-confluent` / `produce-kafka-python` send N keyed messages whose
values are `<tag>:<i>` with acks=all (confluent: idempotent, with a
--message-timeout-ms delivery timeout), stopping early once the file --until
names exists, and print `produced N`; `consume` reads with a consumer group
until it has seen --expect distinct values (or --timeout passes), commits,
and prints `distinct N duplicates D`; with --max it stops after that many
messages, committing what it read, so a later run resumes there; --out
writes the distinct values read, one per line. `check-log` reads every
partition to its end and checks --expect-tags (`tag=count,...`): each value
exactly once, in order within its partition. `commit-once` reads --count
messages in --group, prints `read N`, commits once a line arrives on stdin, prints the acknowledged `committed p:offset`
and holds for --timeout seconds; `committed` prints the group's commits. `produce-acked` sends
--count values to one --partition with acks=all and a --timeout-ms
delivery timeout (--acks, --retries as given), writes to --out the values
acknowledged and prints the delivery errors seen by name.
"""
import os
import sys
import time

from common import args, check


def stop_requested(until, i):
    """Every 500 messages: whether the file `until` names exists."""
    return bool(until) and i % 500 == 0 and os.path.exists(until)


def produce_confluent(bootstrap, topic, tag, n, message_timeout_ms=60000, until=""):
    from confluent_kafka import Producer

    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "enable.idempotence": True, "message.timeout.ms": message_timeout_ms})

    def report(err, _msg):
        if err is not None:
            errors.append(err)

    sent = 0
    for i in range(n):
        if stop_requested(until, i):
            break
        while True:
            try:
                p.produce(topic, key=f"{tag}-{i}".encode(), value=f"{tag}:{i}".encode(),
                          on_delivery=report)
                break
            except BufferError:
                p.poll(0.1)
        sent = i + 1
        if i % 1000 == 0:
            p.poll(0)
    left = p.flush(60)
    check(left == 0, f"{left} messages not delivered")
    check(not errors, f"delivery errors {errors[:3]}")
    print(f"produced {sent}")


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


def produce_kafka_python(bootstrap, topic, tag, n, idempotent=False, until=""):
    from kafka import KafkaProducer

    extra = {"enable_idempotence": True} if idempotent else {}
    p = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", linger_ms=5,
                      retries=10, request_timeout_ms=30000, **extra)
    futures = []
    for i in range(n):
        if stop_requested(until, i):
            break
        futures.append(p.send(topic, key=f"{tag}-{i}".encode(), value=f"{tag}:{i}".encode()))
    p.flush(60)
    for f in futures:
        f.get(timeout=60)
    p.close()
    print(f"produced {len(futures)}")


def check_log(bootstrap, topic, expect):
    """Reads every partition of the topic to its end (no group) and checks
    each tag's values: `expect` is `tag=count,...`. Per tag: every value
    0..count-1 present exactly once, and in increasing order within each
    partition (an idempotent producer's order)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "check-log",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    meta = c.list_topics(topic, timeout=10)
    parts = sorted(meta.topics[topic].partitions)
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    left = set(parts)
    seen = {}
    last = {}
    reordered = 0
    deadline = time.time() + 120
    while left and time.time() < deadline:
        msg = c.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == -191:  # _PARTITION_EOF
                left.discard(msg.partition())
            else:
                print(f"consumer error: {msg.error()}", file=sys.stderr)
            continue
        tag, i = msg.value().decode().rsplit(":", 1)
        i = int(i)
        seen.setdefault(tag, []).append(i)
        key = (tag, msg.partition())
        if key in last and i <= last[key]:
            reordered += 1
        last[key] = i
    c.close()
    check(not left, f"partitions not read to their end: {sorted(left)}")
    ok = True
    for pair in expect.split(","):
        tag, count = pair.split("=")
        got = seen.get(tag, [])
        distinct = set(got)
        missing = [i for i in range(int(count)) if i not in distinct]
        dups = len(got) - len(distinct)
        print(f"tag {tag} distinct {len(distinct)} duplicates {dups} missing {len(missing)} "
              f"first missing {missing[:5]}")
        ok = ok and not missing and dups == 0
    print(f"reordered {reordered}")
    check(ok and reordered == 0, "lost, duplicated or reordered messages")


def commit_once(bootstrap, topic, group, n, hold):
    """Reads n messages in a group, commits them synchronously, prints the
    acknowledged commit, then holds (so the test can kill brokers)."""
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = 0
    deadline = time.time() + 60
    while got < n and time.time() < deadline:
        msgs = c.consume(n - got, 1.0)
        got += len([m for m in msgs if not m.error()])
    check(got == n, f"read {got} of {n}")
    print(f"read {got}", flush=True)
    sys.stdin.readline()
    done = c.commit(asynchronous=False)
    print("committed " + ",".join(f"{tp.partition}:{tp.offset}" for tp in done), flush=True)
    time.sleep(hold)


def committed(bootstrap, topic, group):
    """Prints the group's committed offsets of every partition."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
    got = c.committed([TopicPartition(topic, p) for p in parts], timeout=20)
    print("committed " + ",".join(f"{tp.partition}:{tp.offset}" for tp in got))
    c.close()


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
             ("--message-timeout-ms", {"type": int, "default": 60000}),
             ("--idempotent", {"action": "store_true"}), ("--until", {"default": ""}), ("--expect-tags", {"default": ""}), ("--retries", {"type": int, "default": None}))
    if a.mode == "produce-confluent":
        produce_confluent(a.bootstrap, a.topic, a.tag, a.count, a.message_timeout_ms, a.until)
    elif a.mode == "produce-acked":
        produce_acked(a.bootstrap, a.topic, a.tag, a.count, a.partition, a.timeout_ms, a.out,
                      a.acks, a.retries)
    elif a.mode == "produce-kafka-python":
        produce_kafka_python(a.bootstrap, a.topic, a.tag, a.count, a.idempotent, a.until)
    elif a.mode == "commit-once":
        commit_once(a.bootstrap, a.topic, a.group, a.count, a.timeout)
    elif a.mode == "committed":
        committed(a.bootstrap, a.topic, a.group)
    elif a.mode == "check-log":
        check_log(a.bootstrap, a.topic, a.expect_tags)
    elif a.mode == "consume":
        consume(a.bootstrap, a.topic, a.group, a.expect, a.max, a.timeout, a.out, a.commit_every)
    else:
        check(False, f"unknown mode {a.mode}")


if __name__ == "__main__":
    main()

"""confluent-kafka with enable.idempotence=true while the broker is killed
and restarted under it: `produce` sends 0..N-1, `verify` checks each value
is in the topic exactly once and in order."""
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from common import args, check

a = args(("mode", {"choices": ["produce", "verify"]}), ("--count", {"type": int, "default": 20000}))
TOPIC = "idem"

if a.mode == "produce":
    errors = []
    p = Producer({
        "bootstrap.servers": a.bootstrap,
        "enable.idempotence": True,
        "linger.ms": 5,
        "message.timeout.ms": 60000,
        "retry.backoff.ms": 50,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 200,
    })
    for i in range(a.count):
        while True:
            try:
                p.produce(TOPIC, value=str(i).encode(), partition=0,
                          on_delivery=lambda err, msg: err and errors.append(err))
                break
            except BufferError:
                p.poll(0.05)
        if i % 250 == 0:
            p.poll(0)
            time.sleep(0.02)
    left = p.flush(60)
    check(left == 0, f"{left} messages undelivered")
    check(not errors, f"delivery errors: {errors[:3]}")
    print(f"produced {a.count}")
else:
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "idem-verify", "enable.auto.commit": False})
    c.assign([TopicPartition(TOPIC, 0, 0)])
    got = []
    idle = 0
    while idle < 20:
        msgs = c.consume(5000, timeout=0.2)
        if not msgs:
            idle += 1
            continue
        idle = 0
        got += [int(m.value()) for m in msgs if not m.error()]
    c.close()
    dups = len(got) - len(set(got))
    check(dups == 0, f"{dups} duplicates")
    check(got == list(range(a.count)), f"read {len(got)} values, first differences: "
          f"{[(i, v) for i, v in enumerate(got) if v != i][:5]}")
    print(f"verified {a.count}, no duplicates")

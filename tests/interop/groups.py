"""Consumer groups with confluent-kafka.

`balance`: three members of one group on a six-partition topic get disjoint
partitions covering all six; one leaves and the other two take its share;
run with --strategy range (eager) or cooperative-sticky.

`member`: one group member that keeps polling (the test kills it with
SIGKILL to check it is evicted after its session timeout); prints its
assignment as it changes.

`resume-produce` / `resume-consume`: committed offsets across a broker crash.
"""
import sys
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from common import args, check

a = args(("mode", {"choices": ["balance", "member", "resume-produce", "resume-consume"]}),
         ("--strategy", {"default": "range"}), ("--topic", {"default": "six"}),
         ("--group", {"default": "g"}), ("--count", {"type": int, "default": 0}),
         ("--seconds", {"type": float, "default": 30}))


def ensure_topic(partitions):
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    fs = admin.create_topics([NewTopic(a.topic, num_partitions=partitions, replication_factor=1)])
    try:
        fs[a.topic].result(10)
    except Exception as e:  # already there
        check("already exists" in str(e), f"create topic: {e}")


def consumer(name, extra=None):
    conf = {
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "client.id": name,
        "partition.assignment.strategy": a.strategy,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "auto.offset.reset": "earliest",
    }
    conf.update(extra or {})
    return Consumer(conf)


class Member:
    def __init__(self, name):
        self.name = name
        self.assigned = set()
        self.stop = False
        self.c = consumer(name)

        def on_assign(c, parts):
            if a.strategy == "cooperative-sticky":
                self.assigned |= {p.partition for p in parts}
            else:
                self.assigned = {p.partition for p in parts}

        def on_revoke(c, parts):
            if a.strategy == "cooperative-sticky":
                self.assigned -= {p.partition for p in parts}
            else:
                self.assigned = set()

        self.c.subscribe([a.topic], on_assign=on_assign, on_revoke=on_revoke)
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            self.c.poll(0.1)

    def close(self):
        self.stop = True
        self.t.join()
        self.c.close()


def wait_for(members, want, what):
    deadline = time.time() + a.seconds
    while time.time() < deadline:
        sets = [m.assigned for m in members]
        union = set().union(*sets)
        disjoint = sum(len(s) for s in sets) == len(union)
        if union == want and disjoint and all(sets):
            print(what, [sorted(s) for s in sets])
            return
        time.sleep(0.1)
    check(False, f"{what}: assignments never settled: {[sorted(m.assigned) for m in members]}")


if a.mode == "balance":
    ensure_topic(6)
    members = [Member(f"m{i}") for i in range(3)]
    wait_for(members, set(range(6)), "three members:")
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    d = admin.describe_consumer_groups([a.group])[a.group].result(10)
    check(len(d.members) == 3, f"described members: {d.members}")
    check(all(m.host == "/127.0.0.1" for m in d.members), f"hosts: {[m.host for m in d.members]}")
    check(sorted(m.client_id for m in d.members) == ["m0", "m1", "m2"], "client ids")
    check("STABLE" in str(d.state), f"state {d.state}")
    check(d.partition_assignor == a.strategy, f"assignor {d.partition_assignor}")
    listed = [g.group_id for g in admin.list_consumer_groups().result(10).valid]
    check(a.group in listed, f"list_consumer_groups: {listed}")
    members[0].close()
    wait_for(members[1:], set(range(6)), "after one left:")
    for m in members[1:]:
        m.close()
    print("balance ok")
elif a.mode == "member":
    ensure_topic(6)
    m = Member(a.group + "-member")
    last = None
    deadline = time.time() + a.seconds
    while time.time() < deadline:
        now = sorted(m.assigned)
        if now != last:
            print("assigned", now, flush=True)
            last = now
        time.sleep(0.1)
elif a.mode == "resume-produce":
    ensure_topic(1)
    p = Producer({"bootstrap.servers": a.bootstrap})
    for i in range(a.count):
        p.produce(a.topic, value=str(i).encode(), partition=0)
    check(p.flush(30) == 0, "produce failed")
    # Consume the first half and commit it synchronously.
    c = consumer("half", {"enable.auto.commit": False})
    c.subscribe([a.topic])
    got = []
    deadline = time.time() + a.seconds
    while len(got) < a.count // 2 and time.time() < deadline:
        m = c.poll(0.2)
        if m is not None and not m.error():
            got.append(int(m.value()))
            if len(got) == a.count // 2:
                c.commit(message=m, asynchronous=False)
    check(len(got) == a.count // 2, f"read {len(got)}")
    committed = c.committed([TopicPartition(a.topic, 0)], timeout=10)
    check(committed[0].offset == a.count // 2, f"committed {committed[0].offset}")
    c.close()
    print("committed", a.count // 2)
else:
    c = consumer("resumer", {"enable.auto.commit": False})
    c.subscribe([a.topic])
    got = []
    deadline = time.time() + a.seconds
    while len(got) < a.count - a.count // 2 and time.time() < deadline:
        m = c.poll(0.2)
        if m is not None and not m.error():
            got.append(int(m.value()))
    c.close()
    check(got == list(range(a.count // 2, a.count)), f"resumed at {got[:3]}..., {len(got)} read")
    print("resumed from the committed offset with nothing lost or repeated")
sys.exit(0)

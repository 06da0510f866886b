#!/usr/bin/env python3
"""Failover time of a replicated partition: kill -9 of its leader to the
first acks=all write acknowledged after the kill, over several runs.

    scripts/bench-failover.py --weir target/release/weir [--runs 20]
        [--session-ms 9000] [--dir /tmp/weir-failover]

Starts three `weir broker` processes (broker and controller each) on
127.0.0.1-3, creates a topic of one partition with three replicas, and runs
an idempotent acks=all producer sending one message every 5 ms. Each run
kills the current leader with SIGKILL, measures the time to the first
acknowledgement of a message sent after the kill, restarts the victim and
waits until it is back in the ISR. Prints every run, then p50, p99 and max.
Needs confluent-kafka (pip install confluent-kafka). Stops everything it
started.
"""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, args, i, voters, ports):
        self.id = i
        self.host = f"127.0.0.{i}"
        self.port, self.ctl = ports
        self.args = args
        self.voters = voters
        self.dir = os.path.join(args.dir, f"node-{i}")
        self.proc = None

    def start(self):
        log = open(os.path.join(self.args.dir, f"node-{self.id}.log"), "a")
        self.proc = subprocess.Popen(
            [self.args.weir, "broker", "--data-dir", self.dir, "--node-id", str(self.id),
             "--controller-quorum", self.voters,
             "--set", f"listeners=PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.ctl}",
             "--set", f"broker.session.timeout.ms={self.args.session_ms}",
             "--set", f"broker.heartbeat.interval.ms={max(self.args.session_ms // 8, 100)}",
             "--set", "leader.imbalance.check.interval.seconds=3600"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def partition_state(admin, topic):
    md = admin.list_topics(topic, timeout=5)
    p = md.topics[topic].partitions.get(0)
    return (p.leader, sorted(p.isrs)) if p else (-1, [])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weir", required=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--session-ms", type=int, default=9000)
    ap.add_argument("--dir", default="/tmp/weir-failover")
    args = ap.parse_args()
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    shutil.rmtree(args.dir, ignore_errors=True)
    os.makedirs(args.dir)
    ports = {i: (free_port(), free_port()) for i in (1, 2, 3)}
    voters = ",".join(f"{i}@127.0.0.{i}:{ports[i][1]}" for i in (1, 2, 3))
    nodes = {i: Node(args, i, voters, ports[i]) for i in (1, 2, 3)}
    bootstrap = ",".join(f"127.0.0.{i}:{ports[i][0]}" for i in (1, 2, 3))
    stop = threading.Event()
    try:
        for n in nodes.values():
            n.start()
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        deadline = time.time() + 60
        while True:
            try:
                if len(admin.list_topics(timeout=2).brokers) == 3:
                    break
            except Exception:
                pass
            if time.time() > deadline:
                sys.exit("the cluster did not form")
            time.sleep(0.2)
        admin.create_topics([NewTopic("failover", 1, 3)])[ "failover"].result(30)

        acked = []  # (send time, ack time)
        lock = threading.Lock()

        def produce():
            p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "log_level": 0,
                          "enable.idempotence": True, "linger.ms": 0,
                          "message.timeout.ms": 120000, "retry.backoff.ms": 20,
                          "retry.backoff.max.ms": 100,
                          "topic.metadata.refresh.interval.ms": 1000})
            i = 0
            while not stop.is_set():
                sent = time.monotonic()

                def report(err, _msg, sent=sent):
                    if err is None:
                        with lock:
                            acked.append((sent, time.monotonic()))
                p.produce("failover", value=str(i).encode(), on_delivery=report)
                i += 1
                p.poll(0.005)
            p.flush(30)

        t = threading.Thread(target=produce, daemon=True)
        t.start()
        times = []
        for run in range(args.runs):
            deadline = time.time() + 60
            while True:
                leader, isr = partition_state(admin, "failover")
                if leader > 0 and isr == [1, 2, 3]:
                    break
                if time.time() > deadline:
                    sys.exit(f"run {run}: not in sync: leader {leader} isr {isr}")
                time.sleep(0.1)
            time.sleep(0.5)
            killed = time.monotonic()
            nodes[leader].kill()
            deadline = killed + 60
            took = None
            while took is None and time.monotonic() < deadline:
                with lock:
                    after = [a for (s, a) in acked if s > killed]
                if after:
                    took = min(after) - killed
                time.sleep(0.01)
            if took is None:
                sys.exit(f"run {run}: nothing acknowledged within 60 s of the kill")
            times.append(took)
            print(f"run {run + 1}: leader {leader} killed, first acknowledged write after "
                  f"{took * 1000:.0f} ms", flush=True)
            nodes[leader].start()
        times.sort()

        def pct(q):
            return times[min(len(times) - 1, int(q * len(times)))] * 1000

        print(f"failover over {len(times)} runs (broker.session.timeout.ms={args.session_ms}): "
              f"p50 {pct(0.5):.0f} ms, p99 {pct(0.99):.0f} ms, max {times[-1] * 1000:.0f} ms")
    finally:
        stop.set()
        for n in nodes.values():
            n.kill()


if __name__ == "__main__":
    main()

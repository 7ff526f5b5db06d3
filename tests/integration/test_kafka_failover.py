"""A router killed with SIGKILL loses nothing: two routers share the
consume_only partitions (one consumer group, cooperative-sticky); while 10
subscribers receive a 10,000-record QoS 1 stream, one router is killed -9.
The survivor takes its partitions and resends what was not committed, so
every subscriber gets every message (QoS 1: duplicates allowed), and per
MQTT topic the order of first deliveries is the produced order.
"""

import os
import signal
import threading
import time

import pytest

import clients
from kafka import (KafkaSplit, create_topics, kafka, pb, stop_checked, unique,  # noqa: F401
                   wait_assigned)

N = 10_000
TOPICS = 8
SUBS = 10


class Collector:
    """Counts what each subscriber received (on Paho's network threads)."""

    def __init__(self, n):
        self.cond = threading.Condition()
        self.got = [[] for _ in range(n)]

    def hook(self, i, c):
        def on_message(client, userdata, msg):
            with self.cond:
                self.got[i].append((msg.topic, msg.payload))
                self.cond.notify_all()
        c.c.on_message = on_message

    def wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    counts = [len(set(g)) for g in self.got]
                    raise AssertionError(f"{what}: not within {timeout} s (distinct per subscriber: {counts})")
                self.cond.wait(left)


def owned(proc):
    """Partitions a router holds now, from its RTR-ASSIGN / RTR-REVOKE lines."""
    held = set()
    with proc.cond:
        lines = list(proc.lines)
    for _, _, q in lines:
        if q is None:
            continue
        msg = q.get("msg", "")
        if q.get("id") == "RTR-ASSIGN":
            held.add(msg[len("consuming "):])
        elif q.get("id") == "RTR-REVOKE":
            held.discard(msg[len("no longer consuming "):])
    return held


@pytest.mark.timeout(300)
def test_router_kill9_loses_nothing(kafka, pb):
    from confluent_kafka import Producer

    note = unique("hw-failover")
    create_topics(kafka.bootstrap, [note], partitions=4)
    d = KafkaSplit(kafka.bootstrap, [{"name": "notify", "mode": "consume_only", "topic": note}],
                   n_routers=2,
                   properties={"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"},
                   broker_sets=["broker.max_queued_messages=1000000",
                                "broker.max_queued_bytes=1000000000"])
    made = []
    try:
        d.start()
        # Both routers hold partitions before the stream starts.
        for r in d.routers:
            wait_assigned(d, [note], timeout=60, procs=[r])
        base = unique("kk")
        col = Collector(SUBS)
        for i in range(SUBS):
            c = clients.Client(d.endpoint(i % 2, "tcp"), unique("ks"))
            made.append(c)
            col.hook(i, c)
            c.connect()
            c.subscribe(f"{base}/#", qos=1)

        want = [(f"{base}/t{t}", f"{t}:{j}".encode()) for j in range(N // TOPICS)
                for t in range(TOPICS)]
        p = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True,
                      "linger.ms": 5})
        for topic, payload in want:
            t = int(topic.rsplit("t", 1)[1])
            rec = pb.DownstreamMessage(topic=topic, payload=payload, qos=1).SerializeToString()
            # MQTT topic t -> partition t % 4: every partition, both routers.
            p.produce(note, rec, key=topic.encode(), partition=t % 4)
            p.poll(0)
        assert p.flush(30) == 0

        col.wait(lambda: len(col.got[0]) >= N // 5, 120, "a fifth of the stream")
        victim, survivor = d.routers
        os.kill(victim.popen.pid, signal.SIGKILL)
        with col.cond:
            at_kill = min(len(set(g)) for g in col.got)
        victim.popen.wait(timeout=10)
        assert at_kill < N, "the kill must land while the stream is still flowing"
        held = owned(victim)
        assert held, "the killed router held partitions"
        after = len(survivor.lines)

        wanted = set(want)
        col.wait(lambda: all(wanted <= set(g) for g in col.got), 180,
                 "every subscriber gets every message")
        for i, g in enumerate(col.got):
            firsts = {}
            for topic, payload in g:
                seq = int(payload.split(b":")[1])
                if payload not in firsts.setdefault(topic, {}):
                    firsts[topic][payload] = seq
            for topic, seen in firsts.items():
                order = list(seen.values())  # dicts keep insertion order
                assert order == sorted(order), f"subscriber {i}: {topic} out of order"
        # The survivor takes over the killed router's partitions once the
        # group notices the death (session.timeout.ms, 6 s). That can come
        # after the last delivery, when the victim had handed on all its
        # records before the kill: wait for the assignment, not for a line
        # that happened to come first.
        taken = set()

        def took(text, q):
            if q is not None and q.get("id") == "RTR-ASSIGN":
                taken.add(q.get("msg", "")[len("consuming "):])
            return held <= taken

        survivor.wait_line(took, 60, f"RTR-ASSIGN of {sorted(held)}", start=after)
        assert held <= taken, f"survivor took {taken}, the killed router held {held}"
        assert survivor.alive()
    except BaseException:
        print(d.tails())
        raise
    finally:
        for c in made:
            c.close()
        stop_checked(d, killed=("router-1",))

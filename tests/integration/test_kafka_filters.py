"""Built-in filters of a `filtered` pipeline, end to end: the all-in-one
hawser with router.mode kafka and a pipeline with
`builtin: {max_bytes, words_file, rate_per_s, burst}` (no external filter
process), a real Kafka and real MQTT clients (Paho).

- an accepted publish goes client -> raw topic -> (the router's filter) ->
  clean topic (same key, same record) -> subscribers;
- too large, a listed word, or over the client's rate: never delivered,
  never on the clean topic, counted by reason;
- raw offsets are committed once every raw record is done (accepted ones
  only after their clean copy was acknowledged).
"""

import os
import re
import time
import urllib.request

import pytest

import clients
from kafka import (KafkaAllInOne, consume_all, create_topics, kafka, pb,  # noqa: F401
                   stop_checked, unique, wait_assigned)

T = 30.0
MAX_BYTES = 64


@pytest.fixture(scope="module")
def topics(kafka):
    t = {"raw": unique("hw-fraw"), "clean": unique("hw-fclean")}
    create_topics(kafka.bootstrap, list(t.values()), partitions=2)
    return t


@pytest.fixture(scope="module")
def dep(kafka, topics, tmp_path_factory):
    words = tmp_path_factory.mktemp("words") / "words.txt"
    words.write_text("# test list\nforbidden\nBadWord\n")
    pipelines = [{"name": "mod", "filter": "live/+/comments", "mode": "filtered",
                  "topic": topics["raw"], "clean_topic": topics["clean"], "key": "client_id",
                  "builtin": {"max_bytes": MAX_BYTES, "words_file": str(words),
                              "rate_per_s": 1, "burst": 2}}]
    d = KafkaAllInOne(kafka.bootstrap, pipelines, group=unique("hw-filter-group"))
    try:
        d.start()
        wait_assigned(d, [topics["raw"], topics["clean"]])
    except BaseException:
        d.stop()
        raise
    yield d
    stop_checked(d)


def metrics(dep):
    with urllib.request.urlopen(dep.http_base() + "/metrics", timeout=5) as r:
        return r.read().decode()


def sample(text, name, label, value):
    m = re.search(r"^" + re.escape(name) + r'\{' + label + r'="' + re.escape(value)
                  + r'"\} (\d+)$', text, re.M)
    return int(m.group(1)) if m else None


def committed_at_end(bootstrap, group, topic):
    """True when the group's committed offset of every partition of topic
    is the partition's high watermark."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    try:
        parts = list(c.list_topics(topic, timeout=10).topics[topic].partitions)
        tps = c.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        for tp in tps:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
            if hi > 0 and tp.offset != hi:
                return False
        return True
    finally:
        c.close()


def test_builtin_filters(dep, kafka, topics, pb):
    sub = clients.Client(dep.endpoint(0, "tcp"), client_id=dep.client_id("f-sub"))
    sub.connect()
    sub.subscribe("live/+/comments", qos=1)
    alice = clients.Client(dep.endpoint(0, "tcp"), client_id=dep.client_id("f-alice"))
    alice.connect()

    # Accepted: reaches the subscriber through raw -> filter -> clean.
    alice.publish("live/1/comments", b"hello there", qos=1)
    m = sub.expect(timeout=T, what="the accepted comment")
    assert (m.topic, m.payload) == ("live/1/comments", b"hello there")

    # Rejected by size and by word; both wait in the raw topic only. A
    # marker from another client (its own bucket) comes after them.
    alice.publish("live/1/comments", b"x" * (MAX_BYTES + 1), qos=1)
    alice.publish("live/1/comments", b"this is FORBIDDEN talk", qos=1)
    alice.publish("live/1/comments", b"a badword, twice: badword", qos=1)
    bob = clients.Client(dep.endpoint(0, "tcp"), client_id=dep.client_id("f-bob"))
    bob.connect()
    bob.publish("live/2/comments", b"marker", qos=1)
    m = sub.expect(timeout=T, what="the marker after the rejected ones")
    assert (m.topic, m.payload) == ("live/2/comments", b"marker")

    # Rate: a burst of 2 for a fresh client (1 token/s after that).
    carol = clients.Client(dep.endpoint(0, "tcp"), client_id=dep.client_id("f-carol"))
    carol.connect()
    start = time.monotonic()
    for i in range(8):
        carol.publish("live/3/comments", b"c%d" % i, qos=1)
    elapsed = time.monotonic() - start
    bob.publish("live/2/comments", b"marker2", qos=1)
    got = []
    while True:
        m = sub.expect(timeout=T, what="carol's accepted comments and marker2")
        if m.payload == b"marker2":
            break
        got.append(m.payload)
    # 2 from the burst, plus at most one a second of elapsed time (judged
    # when consumed, a little later than published).
    assert 2 <= len(got) <= 2 + int(elapsed) + 2, (got, elapsed)
    # One key, one partition: judged in order, so the burst is c0, c1.
    idx = [int(p[1:]) for p in got]
    assert idx[:2] == [0, 1] and idx == sorted(set(idx)), got
    rate_rejected = 8 - len(got)

    # The clean topic holds exactly the accepted records, keyed as the raw
    # ones (key: client_id).
    accepted = 1 + 1 + len(got) + 1  # hello, marker, carol's, marker2
    clean = consume_all(kafka.bootstrap, topics["clean"], lambda r: True, accepted, timeout=T)
    payloads = sorted(pb.UpstreamMessage.FromString(r.value()).payload for r in clean)
    assert payloads == sorted([b"hello there", b"marker", b"marker2"] + got)
    for r in clean:
        up = pb.UpstreamMessage.FromString(r.value())
        assert r.key() == up.client_id.encode()

    # Counted per pipeline and per reason.
    deadline = time.monotonic() + T
    while True:
        text = metrics(dep)
        by_reason = {r: sample(text, "hawser_router_filter_rejected_reason_total", "reason", r)
                     for r in ("size", "words", "rate")}
        if by_reason == {"size": 1, "words": 2, "rate": rate_rejected} or time.monotonic() > deadline:
            break
        time.sleep(0.1)  # poll interval of the condition above
    assert by_reason == {"size": 1, "words": 2, "rate": rate_rejected}, text
    assert sample(text, "hawser_router_filter_rejected_total", "pipeline", "mod") == 3 + rate_rejected
    assert sample(text, "hawser_router_filter_accepted_total", "pipeline", "mod") == accepted

    # Every raw record is done: the group's raw offsets reach the end.
    deadline = time.monotonic() + T
    while not committed_at_end(kafka.bootstrap, dep.group, topics["raw"]):
        assert time.monotonic() < deadline, "raw offsets not committed to the end"
        time.sleep(0.2)  # poll interval
    for c in (sub, alice, bob, carol):
        c.close()


def test_bad_words_file_stops_startup(kafka, topics, tmp_path):
    pipelines = [{"name": "mod2", "filter": "x/#", "mode": "filtered", "topic": topics["raw"] + "-2",
                  "clean_topic": topics["clean"] + "-2",
                  "builtin": {"words_file": os.path.join(str(tmp_path), "missing.txt")}}]
    d = KafkaAllInOne(kafka.bootstrap, pipelines)
    try:
        with pytest.raises(Exception):
            d.start()
        proc = d.procs[0]
        proc.popen.wait(timeout=T)
        assert proc.popen.returncode != 0
        assert "missing.txt" in proc.tail()
    finally:
        d.stop()

"""Kafka unavailable: a client's QoS 1 PUBLISH is acknowledged only after
Kafka took the record. While Kafka is stopped PUBACKs wait; when it returns
they are sent (success), every record is in Kafka exactly once and in
order; if it stays away longer than router.kafka.message_timeout_ms, MQTT 5
clients get PUBACK 0x80, 3.1.1 clients (whose PUBACK has no reason code)
have their connection closed unacknowledged and send the message again on
reconnect, and nothing was acknowledged that Kafka did not take.

These tests stop and restart the session's Kafka (same port, data kept).
"""

import queue

import pytest

import clients
from kafka import (KafkaAllInOne, consume_all, create_topics, kafka, pb,  # noqa: F401
                   stop_checked, unique, wait_assigned)

T = 60.0


def puback_codes(c):
    q = queue.Queue()
    c.c.on_publish = lambda client, userdata, mid, rc, props: q.put((mid, rc.value))
    return q


def no_puback(q, window):
    """Absence check: nothing on q within window seconds."""
    try:
        got = q.get(timeout=window)
    except queue.Empty:
        return
    raise AssertionError(f"PUBACK {got} arrived while Kafka was stopped")


@pytest.fixture
def outage(kafka):
    """Stops Kafka on request; always restarts it afterwards."""
    stopped = []

    def stop():
        kafka.stop()
        stopped.append(True)

    def start():
        kafka.start()
        stopped.clear()
    yield stop, start
    if stopped:
        kafka.start()


def run_dep(kafka, pipelines, topics_to_wait, **kw):
    d = KafkaAllInOne(kafka.bootstrap, pipelines, **kw)
    d.start()
    if topics_to_wait:
        wait_assigned(d, topics_to_wait, timeout=T)
    return d


def test_puback_withheld_until_kafka_returns(kafka, pb, outage):
    tele, chat = unique("hw-out-tele"), unique("hw-out-chat")
    create_topics(kafka.bootstrap, [tele, chat])
    d = run_dep(kafka, [
        {"name": "tele", "filter": "ko/tele/#", "mode": "publish_only", "topic": tele},
        {"name": "chat", "filter": "ko/chat/#", "mode": "publish_consume", "topic": chat},
    ], [chat], message_timeout_ms=120000)
    made = []
    try:
        def mk():
            c = clients.Client(d.endpoint(0, "tcp"), unique("ko"))
            made.append(c)
            c.connect()
            return c
        sub = mk()
        ctopic = f"ko/chat/{unique('room')}"
        sub.subscribe(ctopic, qos=1)
        pub = mk()
        codes = puback_codes(pub)
        topic = f"ko/tele/{unique('dev')}"

        info = pub.publish(topic, b"before", qos=1, timeout=T)
        assert codes.get(timeout=T) == (info.mid, 0)

        stop, start = outage
        stop()
        mids = [pub.c.publish(topic, f"during-{i}".encode(), qos=1).mid for i in range(5)]
        cmid = pub.c.publish(ctopic, b"chat-during", qos=1).mid
        no_puback(codes, 3.0)
        sub.expect_nothing(window=0.1)

        start()
        acked = {}
        while len(acked) < 6:
            mid, rc = codes.get(timeout=T)
            acked[mid] = rc
        assert acked == {m: 0 for m in mids + [cmid]}
        # The publish_consume message reaches its subscriber once.
        m = sub.expect(timeout=T, what="the chat message published during the outage")
        assert m.payload == b"chat-during"

        recs = consume_all(kafka.bootstrap, tele, lambda r: r.key() == topic.encode(),
                           settle_count=6, timeout=T)
        payloads = []
        for r in recs:
            up = pb.UpstreamMessage()
            up.ParseFromString(r.value())
            payloads.append(up.payload)
        assert payloads == [b"before"] + [f"during-{i}".encode() for i in range(5)], \
            "every acknowledged record is in Kafka exactly once, in order"
        sub.expect_nothing(window=0.5)
    except BaseException:
        print(d.tails())
        raise
    finally:
        for c in made:
            c.close()
        stop_checked(d)


def test_puback_failure_after_message_timeout(kafka, pb, outage):
    tele = unique("hw-out-fail")
    create_topics(kafka.bootstrap, [tele])
    d = run_dep(kafka, [
        {"name": "tele", "filter": "kf/#", "mode": "publish_only", "topic": tele},
    ], [], message_timeout_ms=3000)
    made = []
    try:
        pub = clients.Client(d.endpoint(0, "tcp"), unique("kf"))
        made.append(pub)
        pub.connect()
        codes = puback_codes(pub)
        # A 3.1.1 PUBACK has no reason code: it would read as success.
        old = clients.Client(d.endpoint(0, "tcp"), unique("kf3"), version=4, clean=False)
        made.append(old)
        old.connect()
        codes3 = puback_codes(old)
        topic = f"kf/{unique('dev')}"
        topic3 = f"kf/{unique('dev3')}"
        info = pub.publish(topic, b"ok-before", qos=1, timeout=T)
        assert codes.get(timeout=T) == (info.mid, 0)

        stop, start = outage
        stop()
        mid = pub.c.publish(topic, b"lost", qos=1).mid
        pub3 = old.c.publish(topic3, b"v3-during", qos=1).mid
        got = codes.get(timeout=30)
        assert got == (mid, 0x80), "an MQTT 5 client learns that Kafka did not take it"
        try:
            old.discq.get(timeout=30)
        except queue.Empty:
            raise AssertionError("the 3.1.1 publisher's connection stayed open") from None
        assert codes3.empty(), "a 3.1.1 client got a PUBACK for a record Kafka did not take"

        start()
        info = pub.publish(topic, b"ok-after", qos=1, timeout=T)
        assert codes.get(timeout=T) == (info.mid, 0)
        # Reconnected, Paho sends the unacknowledged PUBLISH again (DUP).
        old.connect()
        assert codes3.get(timeout=T) == (pub3, 0)

        def payloads_of(t, n):
            recs = consume_all(kafka.bootstrap, tele, lambda r: r.key() == t.encode(),
                               settle_count=n, timeout=T)
            out = []
            for r in recs:
                up = pb.UpstreamMessage()
                up.ParseFromString(r.value())
                out.append(up.payload)
            return out
        payloads = payloads_of(topic, 2)
        # "lost" may or may not have reached Kafka before the timeout; what
        # matters is the acknowledged ones are there.
        assert payloads[0] == b"ok-before" and payloads[-1] == b"ok-after"
        assert b"v3-during" in payloads_of(topic3, 1), "the 3.1.1 publish, sent again, is in Kafka"
    except BaseException:
        print(d.tails())
        raise
    finally:
        for c in made:
            c.close()
        stop_checked(d)

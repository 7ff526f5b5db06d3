"""Client lifecycle events end to end: the split tiers (router, 2 brokers,
2 edges) with router.kafka.events_topic set (routers and brokers), a real
Kafka, a real MQTT client (Paho), and the records read back and decoded
with the project's schema (hawser.v1.ClientEvent).

- connect, subscribe, unsubscribe, disconnect: four records keyed by the
  client id, in that order, with the filters granted / removed, the
  disconnect reason, the broker and edge node ids and the schema headers.
- a connection that drops without DISCONNECT is reported as "network";
  one replaced by a new connection with the same client id as
  "taken_over".
"""

import socket

import pytest

import clients
import harness
from kafka import KafkaSplit, consume, create_topics, kafka, pb, stop_checked, unique  # noqa: F401

T = 30.0


class EventsSplit(KafkaSplit):
    """KafkaSplit with router.kafka.events_topic on every router and broker."""

    def __init__(self, bootstrap, pipelines, events_topic):
        super().__init__(bootstrap, pipelines,
                         broker_sets=[f"router.kafka.events_topic={events_topic}"])
        lines = self.config.splitlines()
        at = next(i for i, line in enumerate(lines) if line.strip().startswith("message_timeout_ms:"))
        lines.insert(at + 1, f"    events_topic: \"{events_topic}\"")
        self.config = "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def events_topic(kafka):
    t = unique("hw-events")
    create_topics(kafka.bootstrap, [t, t + "-unused"])
    return t


@pytest.fixture(scope="module")
def dep(kafka, events_topic):
    # router.mode kafka needs a pipeline; this one is never used.
    pipelines = [{"name": "unused", "filter": "ev-unused/#", "mode": "publish_only",
                  "topic": events_topic + "-unused"}]
    d = harness.start(EventsSplit(kafka.bootstrap, pipelines, events_topic))
    yield d
    stop_checked(d)


def events_of(bootstrap, topic, pb, cid, n):
    recs = consume(bootstrap, topic, n, timeout=T,
                   pred=lambda m: m.key() == cid.encode())
    assert len(recs) == n, f"{len(recs)} of {n} events for {cid} within {T} s"
    out = []
    for m in recs:
        headers = dict(m.headers() or [])
        assert headers.get("content-type") == b"application/x-protobuf"
        assert headers.get("hawser-schema") == b"hawser.v1.ClientEvent"
        out.append(pb.ClientEvent.FromString(m.value()))
    return out


def test_connect_subscribe_unsubscribe_disconnect(dep, kafka, events_topic, pb):
    cid = dep.client_id("ev")
    c = clients.Client(dep.endpoint(0, "tcp"), client_id=cid)
    c.connect()
    c.subscribe([("ev/a/#", 1), ("ev/b", 0)])
    c.unsubscribe("ev/a/#")
    c.disconnect()
    evs = events_of(kafka.bootstrap, events_topic, pb, cid, 4)
    K = pb.ClientEvent
    assert [e.kind for e in evs] == [K.CONNECTED, K.SUBSCRIBED, K.UNSUBSCRIBED, K.DISCONNECTED]
    assert list(evs[1].topics) == ["ev/a/#", "ev/b"]
    assert list(evs[2].topics) == ["ev/a/#"]
    assert evs[3].reason == "normal"
    for e in evs:
        assert e.client_id == cid
        assert e.broker_id in ("broker-1", "broker-2")
        assert e.edge_id == "edge-1"
        assert e.at_us > 0
    assert [e.at_us for e in evs] == sorted(e.at_us for e in evs)


def test_dropped_connection_is_network(dep, kafka, events_topic, pb):
    cid = dep.client_id("ev-drop")
    c = clients.Client(dep.endpoint(1, "tcp"), client_id=cid)
    c.connect()
    # Drop the TCP connection without DISCONNECT.
    c.c.socket().shutdown(socket.SHUT_RDWR)
    evs = events_of(kafka.bootstrap, events_topic, pb, cid, 2)
    assert [e.kind for e in evs] == [pb.ClientEvent.CONNECTED, pb.ClientEvent.DISCONNECTED]
    assert evs[1].reason == "network"
    assert evs[1].edge_id == "edge-2"
    c.close()


def test_takeover(dep, kafka, events_topic, pb):
    cid = dep.client_id("ev-take")
    first = clients.Client(dep.endpoint(0, "tcp"), client_id=cid)
    first.connect()
    second = clients.Client(dep.endpoint(1, "tcp"), client_id=cid)
    second.connect()
    evs = events_of(kafka.bootstrap, events_topic, pb, cid, 3)
    K = pb.ClientEvent
    assert [e.kind for e in evs] == [K.CONNECTED, K.DISCONNECTED, K.CONNECTED]
    assert evs[1].reason == "taken_over"
    assert (evs[1].edge_id, evs[2].edge_id) == ("edge-1", "edge-2")
    second.close()
    first.close()

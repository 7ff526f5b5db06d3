"""The edge re-homes connections when a broker dies (docs/cluster.md, "Edge:
re-homing a connection"), on a dedicated split deployment (router, two
brokers, two edges) with the memory session store and
cluster.member_down_ms=300.

With the memory store the broker that takes the slot over has no session to
resume: the contract is that it refuses the ConnResume and the client is
told so (MQTT 5 DISCONNECT 0x8B) at once, instead of hanging on a dead
broker until its keepalive runs out. Connections of the surviving broker
are not disturbed, and a client of the dead broker that reconnects is
served by the survivor. (Transparent failover with the Redis store is
tests/integration/test_failover.py.)
"""

import time

import pytest

import harness
import mqttraw

pytestmark = pytest.mark.hawser_only

DOWN_MS = 300


def _metric(port, name):
    return harness.metric_sum(f"http://127.0.0.1:{port}", name)


def _kill(dep, name):
    """SIGKILL one process of the deployment and forget it."""
    p = next(p for p in dep.procs if p.name == name)
    p.popen.kill()
    p.popen.wait(timeout=10)
    dep.procs.remove(p)


def test_broker_death_moves_connections_memory_store():
    dep = harness.Split(extra=["--set", f"cluster.member_down_ms={DOWN_MS}"]).start()
    lost = kept = again = None
    try:
        # lost: owned by broker-1 (dies); kept: owned by broker-2. Both on edge-1.
        cid_lost = dep.client_id("rehome-lost", broker=0)
        cid_kept = dep.client_id("rehome-kept", broker=1)
        topic = f"rehome/{time.monotonic_ns()}"
        lost = mqttraw.RawClient(dep.endpoint(0, "tcp"), version=5)
        assert lost.handshake(cid_lost).reason == 0
        kept = mqttraw.RawClient(dep.endpoint(0, "tcp"), version=5)
        assert kept.handshake(cid_kept).reason == 0
        kept.send(mqttraw.subscribe(1, [(topic, 1)], version=5))
        assert kept.recv().type == mqttraw.SUBACK

        _kill(dep, "broker-1")

        # The edge moves `lost` to broker-2 with ConnResume; broker-2 has no
        # session to resume and refuses with ConnClose, well before a
        # keepalive could have noticed anything: an MQTT 5 client is told
        # why (DISCONNECT 0x8B; the edge sends the protocol version with
        # ConnResume, since broker-2 has no session to read it from).
        t0 = time.monotonic()
        got = lost.wait_closed(timeout=10)
        assert [(p.type, p.reason) for p in got] == [(mqttraw.DISCONNECT, 0x8B)], got
        assert time.monotonic() - t0 < 5
        assert _metric(dep.edges[0].http, "hawser_edge_rehomed_total") >= 1
        assert _metric(dep.edges[0].http,
                       'hawser_edge_connections_closed_total{cause="broker_close"}') == 1

        # `kept` never noticed: it still talks to broker-2.
        kept.send(mqttraw.packet(mqttraw.PINGREQ, 0, b""))
        assert kept.recv().type == mqttraw.PINGRESP
        kept.send(mqttraw.publish(topic, b"still here", qos=1, pid=7, version=5))
        seen = {p.type: p for p in (kept.recv(), kept.recv())}
        assert seen[mqttraw.PUBACK].pid == 7
        assert seen[mqttraw.PUBLISH].payload == b"still here"

        # The client of the dead broker reconnects and broker-2 serves it.
        again = mqttraw.RawClient(dep.endpoint(0, "tcp"), version=5)
        assert again.handshake(cid_lost).reason == 0
        again.send(mqttraw.publish(topic, b"back", qos=1, pid=1, version=5))
        ack = again.recv()
        assert ack.type == mqttraw.PUBACK and ack.pid == 1
        msg = kept.recv()
        assert msg.type == mqttraw.PUBLISH and msg.payload == b"back"
        assert not dep.dead(), "\n".join(dep.dead())
    finally:
        for c in (lost, kept, again):
            if c is not None:
                c.close()
        dep.stop()

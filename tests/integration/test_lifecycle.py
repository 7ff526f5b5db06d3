"""Process lifecycle an operator relies on: SIGTERM drains clients and exits."""

import time

import pytest

import harness
import mqttraw

pytestmark = pytest.mark.hawser_only


@pytest.fixture
def own_allinone():
    dep = harness.AllInOne(extra=["--set", "edge.drain_timeout_ms=3000"])
    dep.start()
    yield dep
    dep.stop()


@pytest.mark.parametrize("transport", ["tcp", "ws"])
def test_sigterm_drains_clients_and_exits_zero(own_allinone, transport):
    dep = own_allinone
    ep = dep.endpoint(0, transport)
    v5 = mqttraw.RawClient(ep, version=5)
    assert v5.handshake("drain-v5").reason == 0
    v4 = mqttraw.RawClient(ep, version=4)
    assert v4.handshake("drain-v4").reason == 0
    proc = dep.procs[0]
    start = time.monotonic()
    proc.popen.terminate()  # SIGTERM
    got5 = v5.wait_closed(timeout=6)
    assert [p.type for p in got5] == [mqttraw.DISCONNECT], f"v5 client got {got5}"
    assert got5[0].reason in (0x8B, 0x9C), f"DISCONNECT reason 0x{got5[0].reason:02x}"
    assert v4.wait_closed(timeout=6) == []
    assert proc.popen.wait(timeout=10) == 0, proc.tail()
    assert time.monotonic() - start < 6, "drain took longer than its 3 s deadline allows"
    # Nothing listens any more.
    with pytest.raises(OSError):
        mqttraw.RawClient(ep, version=4, timeout=2)


def test_slow_consumer_is_disconnected_others_unaffected():
    # A subscriber that stops reading while QoS 1 messages pile up must be
    # cut off at edge.write_queue_bytes instead of growing memory; other
    # clients carry on (DESIGN: per-connection bounded write queue).
    import clients
    dep = harness.AllInOne(extra=["--set", "edge.write_queue_bytes=65536"])
    dep.start()
    try:
        ep = dep.endpoint(0, "tcp")
        t = "slow/consumer"
        slow = mqttraw.RawClient(ep, version=5, rcvbuf=4096)
        slow.handshake("slow-1", props=[(mqttraw.P_RECEIVE_MAXIMUM, 1000)])
        slow.send(mqttraw.subscribe(1, [(t, 1)], version=5))
        assert slow.recv().type == mqttraw.SUBACK
        healthy = clients.Client(ep, "healthy-1")
        healthy.connect()
        healthy.subscribe("healthy/t", qos=1)
        pub = clients.Client(ep, "flooder-1")
        pub.connect()
        payload = b"z" * 32768
        before = harness.metric_sum(dep.http_base(0), "hawser_edge_slow_consumer_disconnects_total")
        for _ in range(400):  # 12.8 MB, far beyond socket buffers + 64 KiB
            pub.publish(t, payload, qos=1)
        # The slow client, reading now, finds its connection closed.
        slow.sock.settimeout(None)
        try:
            got = slow.wait_closed(timeout=10)
        except TimeoutError:
            raise AssertionError("the slow consumer was never disconnected") from None
        assert len(got) < 400, "every message reached the client that did not read"
        after = harness.metric_sum(dep.http_base(0), "hawser_edge_slow_consumer_disconnects_total")
        assert after >= before + 1, f"slow consumer disconnects {before} -> {after}"
        pub.publish("healthy/t", b"still here", qos=1)
        assert healthy.expect().payload == b"still here"
        pub.close()
        healthy.close()
        assert not dep.dead(), dep.tails()
    finally:
        dep.stop()

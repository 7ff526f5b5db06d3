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

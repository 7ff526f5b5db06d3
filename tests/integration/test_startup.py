"""A split deployment is usable as soon as every process says READY.

The router starts before the brokers (harness.Split), so its first dials fail
and are retried in the background. A QoS 1 publish acknowledged right after
startup must still reach a subscriber whose session sits on the other broker:
the router queues offers for a broker it is still dialing and waits for its
Ack instead of skipping it.
"""

import pytest

import harness
from clients import Client


@pytest.mark.hawser_only
def test_first_qos1_publish_after_startup_crosses_brokers():
    dep = harness.start_deployment("split")
    try:
        sub = Client(dep.endpoint(1, "tcp"), dep.client_id("early-sub", broker=1), version=5)
        sub.connect()
        sub.subscribe("early/t", qos=1)
        pub = Client(dep.endpoint(0, "tcp"), dep.client_id("early-pub", broker=0), version=5)
        pub.connect()
        pub.publish("early/t", b"first", qos=1)  # returns once PUBACK arrived
        m = sub.expect(what="the first QoS 1 message after startup")
        assert (m.topic, m.payload, m.qos) == ("early/t", b"first", 1)
        sub.close()
        pub.close()
    finally:
        statuses = dep.stop()
    assert all(code == 0 for _, code in statuses), f"unclean exits: {statuses}"


@pytest.mark.hawser_only
def test_sighup_stops_no_process():
    """Operators HUP every process after a config change: the broker reloads,
    the edge and router have nothing to reload; none of them may stop (HUP's
    default action would drop every connection of an edge)."""
    import signal
    dep = harness.start_deployment("split")
    try:
        sub = Client(dep.endpoint(1, "tcp"), dep.client_id("hup-sub", broker=1), version=5)
        sub.connect()
        sub.subscribe("hup/t", qos=1)
        acks = {"edge": "EDGE-SIGNAL", "broker": "BRK-AUTH-RELOAD", "router": "RTR-SIGNAL"}
        for p in dep.procs:
            start = len(p.lines)
            p.popen.send_signal(signal.SIGHUP)
            p.wait_id(acks[p.name.split("-")[0]], timeout=10, start=start)
        pub = Client(dep.endpoint(0, "tcp"), dep.client_id("hup-pub", broker=0), version=5)
        pub.connect()
        pub.publish("hup/t", b"after-hup", qos=1)
        assert sub.expect(what="a message after SIGHUP").payload == b"after-hup"
        assert not dep.dead(), dep.dead()
        sub.close()
        pub.close()
    finally:
        statuses = dep.stop()
    assert all(code == 0 for _, code in statuses), f"unclean exits: {statuses}"


def _nofile(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError(f"no open-files line in /proc/{pid}/limits")


@pytest.mark.hawser_only
def test_edge_bounds_its_open_files_limit():
    """Debian's libwebsockets scans a table as long as the open-files limit
    on every WebSocket or HTTP close: the edge lowers its soft limit to
    edge.max_connections + 4096 and leaves the hard limit alone, and clients
    on every transport still work under it."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard <= 200 + 4096:
        pytest.skip(f"the hard open-files limit ({hard}) leaves nothing to lower")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the edge inherits it
    try:
        dep = harness.start(harness.AllInOne(["--set", "edge.max_connections=200"]))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        (p,) = dep.procs
        assert _nofile(p.popen.pid) == (200 + 4096, hard)
        assert p.lines_with_id("EDGE-FD-LIMIT"), "the edge did not say it lowered the limit"
        subs = []
        for transport in ("tcp", "ws"):
            c = Client(dep.endpoint(0, transport), dep.client_id(f"fd-{transport}"), version=5)
            c.connect()
            c.subscribe("fd/t", qos=1)
            subs.append(c)
        subs[0].publish("fd/t", b"under-the-limit", qos=1)
        for c in subs:
            assert c.expect(what="a message under the lowered limit").payload == b"under-the-limit"
            c.close()
    finally:
        statuses = dep.stop()
    assert all(code == 0 for _, code in statuses), f"unclean exits: {statuses}"

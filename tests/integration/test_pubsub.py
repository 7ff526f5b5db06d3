"""Publish/subscribe behaviour every MQTT client relies on (MQTT 3.1.1 and 5.0).

Publisher and subscriber sit on different edges (and on sessions owned by
different brokers) in the split deployment.
"""

import pytest

from clients import SubscribeOptions


@pytest.mark.parametrize("version", [4, 5])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_roundtrip_each_qos(gw, version, qos):
    t = gw.topic("room")
    sub = gw.subscriber(version=version)
    granted = sub.subscribe(t, qos=2)
    assert granted[0].value == 2, f"SUBACK granted {granted[0]} for a QoS 2 subscription"
    pub = gw.publisher(version=version)
    for i in range(3):
        pub.publish(t, f"m{i}".encode(), qos=qos)
    got = sub.expect_n(3, what=f"QoS {qos} messages")
    assert [m.payload for m in got] == [b"m0", b"m1", b"m2"], "payloads or order changed"
    assert all(m.topic == t for m in got)
    # Delivered QoS is min(publish QoS, granted QoS).
    assert [m.qos for m in got] == [qos] * 3
    assert not any(m.retain for m in got)


def test_subscription_qos_downgrades_delivery(gw):
    t = gw.topic("down")
    sub = gw.subscriber(version=4)
    granted = sub.subscribe(t, qos=0)
    assert granted[0].value == 0
    pub = gw.publisher(version=4)
    pub.publish(t, b"x", qos=2)
    m = sub.expect()
    assert (m.payload, m.qos) == (b"x", 0)


def test_large_payload_roundtrip(gw):
    t = gw.topic("big")
    sub = gw.subscriber()
    sub.subscribe(t, qos=1)
    pub = gw.publisher()
    payload = bytes(range(256)) * 200  # 51200 bytes, below the 64 KiB limit
    pub.publish(t, payload, qos=1)
    m = sub.expect()
    assert m.payload == payload


def test_unsubscribe_stops_delivery(gw):
    t = gw.topic("u")
    sub = gw.subscriber(version=5)
    sub.subscribe(t, qos=1)
    sub.subscribe(t + "-other", qos=1)
    pub = gw.publisher(version=5)
    pub.publish(t, b"before", qos=1)
    assert sub.expect().payload == b"before"
    rcs = sub.unsubscribe(t)
    assert rcs[0].value == 0, f"UNSUBACK reason {rcs[0]}"
    pub.publish(t, b"after", qos=1)
    # The marker goes to a subscription that is still there, after the
    # publish that must not arrive: once it is received, "after" would have been too.
    pub.publish(t + "-other", b"marker", qos=1)
    m = sub.expect()
    assert (m.topic, m.payload) == (t + "-other", b"marker"), f"got {m.topic} {m.payload!r}"
    sub.expect_nothing(0.3)


def test_unsubscribe_unknown_filter_v5_reason(gw):
    sub = gw.client(version=5)
    rcs = sub.unsubscribe(gw.topic("never-subscribed"))
    assert rcs[0].value == 0x11, f"expected 0x11 No subscription existed, got {rcs[0]}"


def test_wildcards(gw):
    base = gw.topic("w")
    plus = gw.subscriber(version=4)
    plus.subscribe(f"{base}/+/temp", qos=1)
    hash_ = gw.subscriber(version=4)
    hash_.subscribe(f"{base}/#", qos=1)
    pub = gw.publisher(version=4)
    topics = [f"{base}/a/temp", f"{base}/a/b/temp", f"{base}/b/temp/x", f"{base}", f"{base}/c/temp"]
    for i, tp in enumerate(topics):
        pub.publish(tp, str(i).encode(), qos=1)
    got_plus = [m.topic for m in plus.expect_n(2, what="+ matches")]
    assert got_plus == [f"{base}/a/temp", f"{base}/c/temp"]
    # "#" also matches the parent level itself (MQTT-4.7.1-2).
    got_hash = [m.topic for m in hash_.expect_n(5, what="# matches")]
    assert got_hash == topics
    plus.expect_nothing(0.2)


def test_overlapping_subscriptions_deliver_once_v5(gw):
    # MQTT 5 3.3.4: with overlapping subscriptions the server delivers the
    # message once per matching subscription or once in total; either way
    # with the maximum QoS of the matches when delivered once. Count >= 1 and
    # <= 2, each copy intact.
    t = gw.topic("ov/x")
    sub = gw.subscriber(version=5)
    sub.subscribe([(t, SubscribeOptions(qos=0)), (t.rsplit("/", 1)[0] + "/#", SubscribeOptions(qos=1))])
    pub = gw.publisher(version=5)
    pub.publish(t, b"once", qos=1)
    pub.publish(t + "-end", b"marker", qos=1)  # matches only the # filter
    copies = []
    while True:
        m = sub.expect(what="copies of the overlapping message, then the marker")
        if m.payload == b"marker":
            break
        assert (m.topic, m.payload) == (t, b"once")
        copies.append(m.qos)
    assert 1 <= len(copies) <= 2, f"{len(copies)} copies for 2 overlapping subscriptions"
    if len(copies) == 1:
        assert copies == [1], "one copy must carry the maximum granted QoS"
    else:
        assert sorted(copies) == [0, 1]


def test_dollar_topics_not_matched_by_leading_wildcards(gw):
    # MQTT-4.7.2-1: filters starting with # or + do not match topics that
    # start with $. An explicit $ filter does.
    u = gw.topic("d").replace("/", "")
    everything = gw.subscriber(version=5)
    everything.subscribe("#", qos=1)
    plus = gw.subscriber(version=5)
    plus.subscribe(f"+/{u}/x", qos=1)
    explicit = gw.subscriber(version=5)
    explicit.subscribe(f"$SYS/{u}/x", qos=1)
    explicit.subscribe(f"$hawser-test/{u}/x", qos=1)
    pub = gw.publisher(version=5)

    accepted = []
    for tp in (f"$SYS/{u}/x", f"$hawser-test/{u}/x"):
        info = pub.c.publish(tp, b"dollar", qos=1)
        info.wait_for_publish(timeout=5)
        assert info.is_published(), f"no PUBACK for {tp}"
        accepted.append(tp)
    # A normal marker last: the "#" and "+" subscribers must see it, and no $ topic before it.
    pub.publish(f"m/{u}/x", b"marker", qos=1)
    m = everything.expect(what="marker on #")
    while m.topic != f"m/{u}/x":
        assert not m.topic.startswith("$"), f"# matched {m.topic}"
        m = everything.expect(what="marker on #")
    m = plus.expect(what="marker on +")
    assert m.topic == f"m/{u}/x", f"+ matched {m.topic}"
    # The gateway may refuse client publishes to $SYS; whatever it accepted
    # for delivery must reach the explicit subscriber.
    got = {m.topic for m in explicit.expect_n(1, what="explicit $ subscription")}
    assert got & set(accepted), "an explicit $ filter received nothing"


def test_qos1_publish_without_subscribers_is_acked(gw):
    pub = gw.publisher(version=5)
    info = pub.publish(gw.topic("nobody"), b"x", qos=1)
    assert info.is_published()


# --- retained messages -------------------------------------------------------

@pytest.mark.parametrize("version", [4, 5])
def test_retained_set_receive_clear(gw, version):
    t = gw.topic("r")
    pub = gw.publisher(version=version)
    pub.publish(t, b"first", qos=1, retain=True)
    pub.publish(t, b"state", qos=1, retain=True)  # replaces "first"

    late = gw.subscriber(version=version)
    late.subscribe(t, qos=1)
    m = late.expect(what="retained message on subscribe")
    assert (m.payload, m.retain) == (b"state", True)
    late.expect_nothing(0.3)

    # A live message to an existing subscription: retain flag 0 (3.1.1
    # MQTT-3.3.1-9; 5.0 with Retain As Published 0, the default).
    pub.publish(t, b"live", qos=1, retain=True)
    m = late.expect()
    assert (m.payload, m.retain) == (b"live", False)

    # Clearing: a retained message with an empty payload removes it and is
    # not itself stored (MQTT-3.3.1-10/11).
    pub.publish(t, b"", qos=1, retain=True)
    assert late.expect().payload == b""
    fresh = gw.subscriber(version=version)
    fresh.subscribe(t, qos=1)
    pub.publish(t, b"marker", qos=1, retain=False)
    m = fresh.expect(what="marker after clear")
    assert (m.payload, m.retain) == (b"marker", False), "retained message survived the clear"


def test_retained_with_wildcard_subscription(gw):
    base = gw.topic("rw")
    pub = gw.publisher()
    pub.publish(f"{base}/a", b"A", qos=1, retain=True)
    pub.publish(f"{base}/b/c", b"C", qos=1, retain=True)
    pub.publish(f"{base}/nope", b"N", qos=1, retain=False)
    sub = gw.subscriber()
    sub.subscribe(f"{base}/#", qos=1)
    got = sorted((m.topic, m.payload, m.retain) for m in sub.expect_n(2))
    assert got == [(f"{base}/a", b"A", True), (f"{base}/b/c", b"C", True)]
    sub.expect_nothing(0.3)
    # clean up, so later tests subscribing to "#" see fewer retained messages
    pub.publish(f"{base}/a", b"", qos=1, retain=True)
    pub.publish(f"{base}/b/c", b"", qos=1, retain=True)


def test_retained_qos_is_min_of_stored_and_granted(gw):
    t = gw.topic("rq")
    pub = gw.publisher(version=4)
    pub.publish(t, b"q1", qos=1, retain=True)
    sub = gw.subscriber(version=4)
    sub.subscribe(t, qos=0)
    m = sub.expect()
    assert (m.payload, m.qos, m.retain) == (b"q1", 0, True)
    pub.publish(t, b"", qos=1, retain=True)


@pytest.mark.parametrize("version", [4, 5])
def test_qos2_duplicate_publish_delivered_once(gw, version):
    # A QoS 2 PUBLISH sent again (DUP) before PUBREL is the same message:
    # subscribers get it exactly once (MQTT 4.3.3).
    import mqttraw
    t = gw.topic("q2dup")
    sub = gw.subscriber(version=5)
    sub.subscribe(t, qos=2)
    c = gw.raw(edge=0, version=version)
    c.handshake(gw.cid("q2", broker=0))
    c.send(mqttraw.publish(t, b"exactly-once", qos=2, pid=7, version=version))
    rec = c.recv()
    assert (rec.type, rec.pid) == (mqttraw.PUBREC, 7), rec
    c.send(mqttraw.publish(t, b"exactly-once", qos=2, pid=7, version=version, dup=True))
    rec = c.recv()
    assert (rec.type, rec.pid) == (mqttraw.PUBREC, 7), rec
    c.send(mqttraw.packet(mqttraw.PUBREL, 0x02, b"\x00\x07"))
    comp = c.recv()
    assert (comp.type, comp.pid) == (mqttraw.PUBCOMP, 7), comp
    # The marker has the same topic and QoS, so it is ordered after the
    # first message (MQTT 4.6).
    c.send(mqttraw.publish(t, b"end", qos=2, pid=8, version=version))
    assert c.recv().type == mqttraw.PUBREC
    c.send(mqttraw.packet(mqttraw.PUBREL, 0x02, b"\x00\x08"))
    assert c.recv().type == mqttraw.PUBCOMP
    got = []
    m = sub.expect()
    while m.payload != b"end":
        got.append(m.payload)
        m = sub.expect()
    assert got == [b"exactly-once"], f"QoS 2 copies before the marker: {got}"


@pytest.mark.hawser_only
def test_websocket_frames_larger_than_the_rx_buffer():
    """edge.ws_rx_buffer=128 (the smallest): libwebsockets hands every
    WebSocket frame over in pieces of at most 128 bytes; small and large
    messages still arrive whole, over WebSocket and TCP alike."""
    import harness
    from clients import Client
    dep = harness.start(harness.AllInOne(["--set", "edge.ws_rx_buffer=128"]))
    try:
        t = "rxbuf/t"
        subs = []
        for transport in ("ws", "tcp"):
            c = Client(dep.endpoint(0, transport), dep.client_id(f"rxbuf-sub-{transport}"), version=5)
            c.connect()
            c.subscribe(t, qos=1)
            subs.append(c)
        pub = Client(dep.endpoint(0, "ws"), dep.client_id("rxbuf-pub"), version=5)
        pub.connect()
        payloads = [b"s" * 20, bytes(range(256)) * 20, b"m" * 127, b"b" * 129]
        for p in payloads:
            pub.publish(t, p, qos=1)
        for c in subs:
            got = c.expect_n(len(payloads), what="messages larger and smaller than the rx buffer")
            assert [m.payload for m in got] == payloads
            c.close()
        pub.close()
    finally:
        statuses = dep.stop()
    assert all(code == 0 for _, code in statuses), f"unclean exits: {statuses}"

"""MQTT 3.1.1 publishers that keep many QoS 1 messages in flight.

A 3.1.1 client cannot be told a Receive Maximum, and Paho, Mosquitto's
clients and most others keep 20-100 PUBLISHes awaiting PUBACK. The broker
holds them to broker.max_inflight (default 65535, the packet id space), not
to the broker.receive_maximum (32) that MQTT 5 clients are told, so such a
client is never closed for it (services/broker/README.md).
"""

import queue
import time

# At most broker.max_queued_messages (1000): the subscriber's window (32)
# plus its queue must hold the whole burst, or the queue bound drops the
# oldest (a documented policy, not what this test is about) whenever the
# subscriber is slower than the publisher.
N = 1000
IN_FLIGHT = 64
DEADLINE = 60.0


def test_v311_publisher_with_64_in_flight(gw):
    t = gw.topic("burst")
    sub = gw.subscriber(version=4)
    sub.subscribe(t, qos=1)
    pub = gw.publisher(version=4, connect=False)
    pub.c.max_inflight_messages_set(IN_FLIGHT)
    acked = queue.Queue()
    pub.c.on_publish = lambda client, userdata, mid, rc, props: acked.put(mid)
    pub.connect()

    mids = set()
    for i in range(N):
        info = pub.c.publish(t, f"m{i}".encode(), qos=1)
        assert info.rc == 0, f"publish {i} not queued: rc={info.rc}"
        mids.add(info.mid)

    deadline = time.monotonic() + DEADLINE
    got = set()
    while len(got) < N and time.monotonic() < deadline:
        # A closed connection fails at once rather than at the deadline.
        assert pub.discq.empty(), f"connection closed after {len(got)} PUBACKs: {pub.discq.get()}"
        try:
            got.add(acked.get(timeout=0.2))
        except queue.Empty:
            pass
    assert got == mids, f"{len(got)} of {N} PUBACKs within {DEADLINE} s"
    assert pub.discq.empty() and pub.connected, "the publisher's connection was closed"

    msgs = sub.expect_n(N, timeout=DEADLINE, what="the burst")
    assert [m.payload for m in msgs] == [f"m{i}".encode() for i in range(N)], "lost or reordered"

"""Persistent sessions on the Redis session store (store.backend=redis), with a
real redis-server (AOF, appendfsync always) started by redis_fixture.

- a QoS 1 subscriber with a persistent session leaves, 1,000 QoS 1 messages
  are published, it comes back through the OTHER edge and gets all 1,000 in
  order with session present;
- the same with every broker restarted while it is away (the session then
  exists only in Redis);
- the QoS 1 window: Receive Maximum 5 means at most 5 unacknowledged in
  flight, and one PUBACK lets exactly one more out;
- Redis killed (SIGKILL) and restarted mid-stream: every message the
  publisher got a PUBACK for reaches the subscriber, and the gateway
  reconnects to Redis by itself;
- clean start deletes the session's keys.
"""

import queue
import threading
import time

import pytest

import clients
import harness
import redis_fixture as rf

pytestmark = pytest.mark.hawser_only

N = 1000


@pytest.fixture(scope="module")
def redis():
    r = rf.RedisServer(fsync="always").start()
    yield r
    r.cleanup()


@pytest.fixture(scope="module")
def split(redis):
    dep = rf.start(rf.RedisSplit(redis, n_brokers=2))
    yield dep
    statuses = dep.stop()
    bad = [(n, rc) for n, rc in statuses if rc != 0]
    assert not bad, f"processes did not exit 0 on SIGTERM: {bad}\n{dep.tails()}"


def _client(dep, edge, cid, closer, **kw):
    c = clients.Client(dep.endpoint(edge, "tcp"), cid, **kw)
    closer.append(c)
    return c


def _publish_all(pub, topic, n, start=0, timeout=60):
    """Publishes n QoS 1 messages (payload = index) pipelined through Paho's
    window and waits for every PUBACK."""
    infos = [pub.c.publish(topic, str(start + i).encode(), qos=1) for i in range(n)]
    deadline = time.monotonic() + timeout
    for i, info in enumerate(infos):
        info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
        assert info.is_published(), f"message {start + i} not acknowledged within {timeout} s"


def _payloads(c, n, timeout=60, what="messages"):
    return [int(m.payload) for m in c.expect_n(n, timeout=timeout, what=what)]


def _dedup_in_order(seq):
    """Drops repeats of values already seen (QoS 1 may redeliver)."""
    seen, out = set(), []
    for v in seq:
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out


def test_persistent_session_resumes_through_other_edge(split, closer):
    dep = split
    topic = f"rs/{time.monotonic_ns()}/a"
    cid = dep.client_id("rs-sub", broker=1)
    sub = _client(dep, 1, cid, closer, version=4, clean=False)
    flags, _ = sub.connect()
    sub.subscribe(topic, qos=1)
    sub.disconnect()

    pub = _client(dep, 0, dep.client_id("rs-pub", broker=0), closer, version=5)
    pub.connect()
    _publish_all(pub, topic, N)

    back = _client(dep, 0, cid, closer, version=4, clean=False)  # the other edge
    flags, _ = back.connect()
    assert flags.session_present, "a persistent session must be present on reconnect"
    got = _payloads(back, N, what="queued messages after reconnect")
    assert got == list(range(N)), "all 1,000 queued messages, in order, exactly once"
    back.expect_nothing(0.3)


def test_session_survives_restart_of_every_broker(split, closer):
    dep = split
    topic = f"rs/{time.monotonic_ns()}/b"
    cid = dep.client_id("rs-sub", broker=1)
    sub = _client(dep, 1, cid, closer, version=5, clean=True, session_expiry=600)
    sub.connect()
    sub.subscribe(topic, qos=1)
    sub.disconnect()

    pub = _client(dep, 0, dep.client_id("rs-pub", broker=0), closer, version=5)
    pub.connect()
    _publish_all(pub, topic, N)
    pub.disconnect()

    for i in range(dep.n_brokers):
        assert dep.restart_broker(i) == 0, "a broker must exit 0 on SIGTERM"

    def make():
        c = _client(dep, 0, cid, closer, version=5, clean=False, session_expiry=600)
        return c
    back, flags = rf.connect_retry(make)
    assert flags.session_present, "the session must be loaded from Redis by the restarted broker"
    got = _payloads(back, N, what="queued messages after the brokers restarted")
    assert got == list(range(N))

    # The subscription came back too: a new publish is delivered live (the
    # router re-dials the restarted brokers in the background, so publish
    # until one arrives, with a deadline).
    pub2, _ = rf.connect_retry(lambda: _client(dep, 1, dep.client_id("rs-pub", broker=0), closer, version=5))
    deadline = time.monotonic() + 20
    while True:
        _publish_all(pub2, topic, 1, start=N)
        try:
            assert int(back.msgq.get(timeout=0.5).payload) == N
            break
        except queue.Empty:
            assert time.monotonic() < deadline, "the restored subscription never matched"


def test_receive_maximum_window_with_redis(split, closer):
    dep = split
    topic = f"rs/{time.monotonic_ns()}/w"
    cid = dep.client_id("rs-win", broker=1)
    sub = _client(dep, 1, cid, closer, version=5, clean=True, session_expiry=600,
                  manual_ack=True, receive_maximum=5)
    sub.connect()
    sub.subscribe(topic, qos=1)
    pub = _client(dep, 0, dep.client_id("rs-pub", broker=0), closer, version=5)
    pub.connect()
    _publish_all(pub, topic, 20)

    first = sub.expect_n(5, what="the first window")
    assert [int(m.payload) for m in first] == [0, 1, 2, 3, 4]
    sub.expect_nothing(1.0)  # a client that does not acknowledge gets no more
    sub.ack(first[0])
    nxt = sub.expect(what="the message the PUBACK made room for")
    assert int(nxt.payload) == 5
    sub.expect_nothing(0.5)  # exactly one slot was freed
    for m in first[1:] + [nxt]:
        sub.ack(m)
    rest = []
    for _ in range(14):
        m = sub.expect(what="the rest, acknowledged one by one")
        rest.append(int(m.payload))
        sub.ack(m)
    assert rest == list(range(6, 20))


def test_unacknowledged_resent_with_dup_before_queued(split, closer):
    dep = split
    topic = f"rs/{time.monotonic_ns()}/d"
    cid = dep.client_id("rs-dup", broker=1)
    sub = _client(dep, 1, cid, closer, version=5, clean=True, session_expiry=600,
                  manual_ack=True, receive_maximum=3)
    sub.connect()
    sub.subscribe(topic, qos=1)
    pub = _client(dep, 0, dep.client_id("rs-pub", broker=0), closer, version=5)
    pub.connect()
    _publish_all(pub, topic, 10)
    first = sub.expect_n(3, what="the first window")
    sub.ack(first[0])
    assert int(sub.expect().payload) == 3
    sub.close()  # network drop: 1, 2, 3 unacknowledged

    # Restart the owner so the in-flight list must come from Redis.
    assert dep.restart_broker(1) == 0
    back, flags = rf.connect_retry(lambda: _client(dep, 0, cid, closer, version=5, clean=False,
                                                   session_expiry=600))
    assert flags.session_present
    got = back.expect_n(9, what="resent then queued")
    assert [int(m.payload) for m in got] == list(range(1, 10))
    assert [m.dup for m in got[:3]] == [True, True, True], "unacknowledged ones carry DUP"
    assert not any(m.dup for m in got[3:])


def test_clean_start_deletes_the_session_keys(split, redis, closer):
    dep = split
    cid = dep.client_id("rs-clean", broker=0)
    sub = _client(dep, 0, cid, closer, version=4, clean=False)
    sub.connect()
    sub.subscribe(f"rs/{time.monotonic_ns()}/c", qos=1)
    sub.disconnect()
    assert rf.keys(redis, f"*}}:c:{cid}:*"), "a persistent session is kept in Redis"
    again = _client(dep, 1, cid, closer, version=4, clean=True)
    flags, _ = again.connect()
    assert not flags.session_present
    again.disconnect()
    assert rf.keys(redis, f"*}}:c:{cid}:*") == [], "clean session leaves nothing in Redis"


def test_redis_restart_mid_stream_loses_no_acknowledged_message(split, redis, closer):
    dep = split
    topic = f"rs/{time.monotonic_ns()}/r"
    cid = dep.client_id("rs-crash", broker=1)
    sub = _client(dep, 1, cid, closer, version=5, clean=True, session_expiry=600)
    sub.connect()
    sub.subscribe(topic, qos=1)
    pub = _client(dep, 0, dep.client_id("rs-pub", broker=0), closer, version=5)
    pub.connect()

    total = 2000
    infos = []
    acked_before_kill = threading.Event()

    def produce():
        for i in range(total):
            infos.append(pub.c.publish(topic, str(i).encode(), qos=1))
            if i == 400:
                infos[200].wait_for_publish(timeout=30)
                acked_before_kill.set()

    errors0 = rf.metric(dep, "broker-2", "hawser_broker_store_errors_total")
    t = threading.Thread(target=produce, daemon=True)
    t.start()
    assert acked_before_kill.wait(30), "the stream did not start"
    redis.kill()
    redis.start()  # same port and AOF directory
    t.join(60)
    deadline = time.monotonic() + 90
    for info in infos:
        info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
    acked = [i for i, info in enumerate(infos) if info.is_published()]
    assert len(acked) == total, f"only {len(acked)} of {total} acknowledged after Redis came back"

    got = []
    deadline = time.monotonic() + 90
    while len(set(got)) < total and time.monotonic() < deadline:
        try:
            got.append(int(sub.msgq.get(timeout=max(0.1, deadline - time.monotonic())).payload))
        except queue.Empty:
            break
    assert rf.metric(dep, "broker-2", "hawser_broker_store_errors_total") > errors0, \
        "the subscriber's broker never saw Redis go away: the kill missed the stream"
    assert rf.metric(dep, "broker-2", "hawser_broker_store_latency_seconds_count") > 0
    missing = sorted(set(acked) - set(got))
    assert not missing, f"acknowledged messages lost: {missing[:20]} ({len(missing)})"
    assert _dedup_in_order(got) == list(range(total)), "order kept (duplicates allowed)"

    # The gateway reconnected by itself: a new persistent session works.
    c2 = _client(dep, 0, dep.client_id("rs-after", broker=1), closer, version=4, clean=False)
    c2.connect()
    c2.subscribe(topic + "/after", qos=1)
    assert rf.keys(redis, f"*}}:c:{c2.c._client_id.decode()}:s")


def test_retained_message_survives_broker_restart(split, closer):
    dep = split
    topic = f"rs/{time.monotonic_ns()}/retained"
    pub = _client(dep, 0, dep.client_id("rs-pub", broker=0), closer, version=5)
    pub.connect()
    pub.publish(topic, b"kept", qos=1, retain=True)
    pub.disconnect()
    for i in range(dep.n_brokers):
        assert dep.restart_broker(i) == 0
    sub, _ = rf.connect_retry(lambda: _client(dep, 1, dep.client_id("rs-ret", broker=1), closer,
                                              version=5))
    sub.subscribe(topic, qos=1)
    m = sub.expect(what="the retained message, loaded from Redis by the restarted broker")
    assert m.payload == b"kept" and m.retain

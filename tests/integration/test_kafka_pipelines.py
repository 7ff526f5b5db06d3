"""Kafka pipelines end to end: the all-in-one hawser with router.mode kafka,
the split tiers, and the split tiers with the brokers on a real Redis
(store.backend=redis), against a real Kafka (scripts/kafka.sh), real MQTT
clients (Paho), and records read and written with the project's protobuf
schema.

- publish_only: a client's QoS 1 publish becomes a hawser.v1.UpstreamMessage
  record (key = MQTT topic, content-type/schema headers) and reaches no
  subscriber.
- consume_only: DownstreamMessage records a backend produces reach
  subscribers, in order per topic.
- publish_consume: client -> Kafka -> client, in order.
- filtered (external filter): client -> raw topic; a filter process (here the
  test) moves accepted records to the clean topic -> subscribers.
- router.direct false: a publish no pipeline takes is refused with 0x90.
"""

import queue

import pytest

import clients
import harness
from kafka import (KafkaAllInOne, KafkaSplit, consume, create_topics, kafka, pb,  # noqa: F401
                   produce, stop_checked, unique, wait_assigned)

T = 30.0  # deadline for anything that crosses Kafka


@pytest.fixture(scope="module")
def topics(kafka):
    t = {k: unique(f"hw-{k}") for k in ("tele", "chat", "note", "raw", "clean")}
    create_topics(kafka.bootstrap, list(t.values()))
    return t


@pytest.fixture(scope="module")
def redis():
    import redis_fixture
    r = redis_fixture.RedisServer(fsync="always").start()
    yield r
    r.cleanup()


@pytest.fixture(scope="module", params=["allinone", "split", "split-redis"])
def dep(kafka, topics, request):
    pipelines = [
        {"name": "telemetry", "filter": "kt/tele/#", "mode": "publish_only", "topic": topics["tele"]},
        {"name": "chat", "filter": "kt/chat/#", "mode": "publish_consume", "topic": topics["chat"]},
        {"name": "notify", "mode": "consume_only", "topic": topics["note"]},
        {"name": "moderated", "filter": "kt/mod/#", "mode": "filtered", "topic": topics["raw"],
         "clean_topic": topics["clean"]},
    ]
    # Each deployment its own consumer group: both read every record.
    if request.param == "allinone":
        d = KafkaAllInOne(kafka.bootstrap, pipelines, direct=False)
    elif request.param == "split":
        d = KafkaSplit(kafka.bootstrap, pipelines, direct=False)
    else:  # the brokers' sessions in a real Redis: consume, deliver, commit after Redis took it
        r = request.getfixturevalue("redis")
        d = KafkaSplit(kafka.bootstrap, pipelines, direct=False, broker_sets=[
            "store.backend=redis", f"store.redis_url={r.url}", f"store.key_prefix={unique('kr')}:"])
    try:
        d.start()
        wait_assigned(d, [topics["chat"], topics["note"], topics["clean"]], timeout=T,
                      procs=getattr(d, "routers", None))
        yield d
    except BaseException:
        print(d.tails())
        raise
    finally:
        stop_checked(d)


@pytest.fixture
def mk(dep, request):
    made = []

    def make(edge=0, username=None, **kw):
        # In the split deployment subscribers (edge=1) sit on the other edge
        # and, by client id, usually on the other broker.
        c = clients.Client(dep.endpoint(edge, "tcp"), unique("kc"), **kw)
        if username is not None:
            c.c.username_pw_set(username)  # the empty auth chain takes it as is
        made.append(c)
        c.connect()
        return c
    yield make
    for c in made:
        c.close()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        print(dep.tails())


def node_ids(dep, edge):
    """The node ids (node.id) of edge number `edge` and of the brokers a
    client can land on, as the deployments in kafka.py set them."""
    if isinstance(dep, KafkaAllInOne):
        return "allinone", {"allinone"}
    return f"edge-{edge + 1}", {"broker-1", "broker-2"}


def puback_codes(c):
    """Hooks Paho's on_publish: returns a queue of (mid, reason code value)."""
    q = queue.Queue()
    c.c.on_publish = lambda client, userdata, mid, rc, props: q.put((mid, rc.value))
    return q


def test_publish_only_record_in_kafka(dep, kafka, topics, pb, mk):
    sub = mk(edge=1)
    sub.subscribe("kt/tele/#", qos=1)
    user = unique("user")
    pub = mk(username=user)
    codes = puback_codes(pub)
    topic = f"kt/tele/{unique('dev')}"
    info = pub.publish(topic, b"\x00temp=21\xff", qos=1, timeout=T,
                       UserProperty=[("unit", "C")], ContentType="text/plain")
    mid, rc = codes.get(timeout=T)
    assert (mid, rc) == (info.mid, 0x00), "PUBACK must say success once Kafka took the record"

    recs = consume(kafka.bootstrap, topics["tele"], 1, timeout=T,
                   pred=lambda m: m.key() == topic.encode())
    assert len(recs) == 1, f"no record keyed {topic} in {topics['tele']}"
    r = recs[0]
    headers = dict(r.headers() or [])
    assert headers.get("content-type") == b"application/x-protobuf"
    assert headers.get("hawser-schema") == b"hawser.v1.UpstreamMessage"
    assert headers.get("hawser-schema-version") == b"1"
    up = pb.UpstreamMessage()
    up.ParseFromString(r.value())
    assert up.topic == topic
    assert up.payload == b"\x00temp=21\xff"
    assert up.qos == 1
    assert up.client_id == pub.c._client_id.decode()
    # Who published it: the authenticated user and the nodes it went through.
    edge_id, broker_ids = node_ids(dep, 0)
    assert up.user_id == user
    assert up.edge_id == edge_id
    assert up.broker_id in broker_ids
    assert up.content_type == "text/plain"
    assert [(p.key, p.value) for p in up.user_properties] == [("unit", "C")]
    assert up.received_at_us > 0
    # publish_only goes to Kafka and nowhere else.
    sub.expect_nothing(window=1.0)


def test_consume_only_backend_to_subscribers_in_order(dep, kafka, topics, pb, mk):
    topic = f"kt/note/{unique('user')}"
    subs = [mk(edge=1), mk(edge=0)]
    for s in subs:
        s.subscribe(topic, qos=1)
    recs = []
    for i in range(50):
        d = pb.DownstreamMessage(topic=topic, payload=f"n{i}".encode(), qos=1)
        if i == 0:
            d.user_properties.add(key="from", value="backend")
            d.content_type = "text/plain"
        recs.append((topic.encode(), d.SerializeToString()))
    produce(kafka.bootstrap, topics["note"], recs)
    for s in subs:
        got = s.expect_n(50, timeout=T, what="consume_only deliveries")
        assert [m.payload for m in got] == [f"n{i}".encode() for i in range(50)]
        assert all(m.topic == topic and m.qos == 1 for m in got)
        first = got[0].properties
        assert ("from", "backend") in first.UserProperty
        assert first.ContentType == "text/plain"


def test_consume_only_skips_malformed_record(dep, kafka, topics, pb, mk):
    topic = f"kt/note/{unique('bad')}"
    s = mk(edge=1)
    s.subscribe(topic, qos=1)
    good = pb.DownstreamMessage(topic=topic, payload=b"after", qos=1).SerializeToString()
    wild = pb.DownstreamMessage(topic="kt/note/+", payload=b"wild", qos=1).SerializeToString()
    # Same key: same partition, so "after" comes after the bad ones.
    produce(kafka.bootstrap, topics["note"], [(topic.encode(), b"\xff\xff not protobuf"),
                                              (topic.encode(), wild),
                                              (topic.encode(), good)])
    m = s.expect(timeout=T, what="the record after the malformed ones")
    assert m.payload == b"after"


def test_publish_consume_client_to_client_in_order(dep, kafka, topics, pb, mk):
    topic = f"kt/chat/{unique('room')}"
    sub = mk(edge=1)
    sub.subscribe(topic, qos=1)
    pub = mk()
    for i in range(20):
        pub.publish(topic, f"m{i}".encode(), qos=1, timeout=T)
    got = sub.expect_n(20, timeout=T, what="publish_consume deliveries")
    assert [m.payload for m in got] == [f"m{i}".encode() for i in range(20)]
    # And the records are in Kafka, keyed by the MQTT topic.
    recs = consume(kafka.bootstrap, topics["chat"], 20, timeout=T,
                   pred=lambda m: m.key() == topic.encode())
    vals = []
    for r in recs:
        up = pb.UpstreamMessage()
        up.ParseFromString(r.value())
        vals.append(up.payload)
    assert vals == [f"m{i}".encode() for i in range(20)]
    # Per-pipeline metrics saw them: produced (Kafka acked), consumed, and
    # the end-to-end latency histogram.
    body = harness_metrics(dep)
    assert metric(body, 'hawser_router_kafka_produced_total{pipeline="chat"}') >= 20
    assert metric(body, 'hawser_router_kafka_consumed_total{pipeline="chat"}') >= 20
    assert metric(body, "hawser_router_kafka_e2e_seconds_count") >= 20


def test_filtered_with_external_filter(dep, kafka, topics, pb, mk):
    topic = f"kt/mod/{unique('live')}"
    sub = mk(edge=1)
    sub.subscribe(topic, qos=1)
    pub = mk()
    for text in (b"hello", b"badword here", b"bye"):
        pub.publish(topic, text, qos=1, timeout=T)
    # The external filter: read raw, drop what contains "badword", write
    # the rest to clean.
    raw = consume(kafka.bootstrap, topics["raw"], 3, timeout=T,
                  pred=lambda m: m.key() == topic.encode())
    assert len(raw) == 3
    clean = []
    for r in raw:
        up = pb.UpstreamMessage()
        up.ParseFromString(r.value())
        if b"badword" not in up.payload:
            clean.append((r.key(), r.value()))
    # Nothing reached subscribers before the filter let it through.
    sub.expect_nothing(window=0.5)
    produce(kafka.bootstrap, topics["clean"], clean)
    got = sub.expect_n(2, timeout=T, what="filtered deliveries")
    assert [m.payload for m in got] == [b"hello", b"bye"]


def test_unmatched_topic_refused_when_direct_is_off(dep, mk):
    sub = mk(edge=1)
    sub.subscribe("kt/other/#", qos=1)
    pub = mk()
    codes = puback_codes(pub)
    info = pub.publish("kt/other/x", b"nope", qos=1, timeout=T)
    mid, rc = codes.get(timeout=T)
    assert (mid, rc) == (info.mid, 0x90)
    sub.expect_nothing(window=0.5)
    body = harness_metrics(dep)
    assert "hawser_router_refused_total 1" in body


def metric(body, name):
    """The value of the sample `name` (with its labels) in a /metrics body."""
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no sample {name} in /metrics:\n{body}")


def harness_metrics(dep):
    """The router's metrics: the all-in-one serves one registry from its
    edge; a split router serves its own."""
    import urllib.request
    if dep.tier_http:
        base = f"http://127.0.0.1:{dep.tier_http['router-1']}"
    else:
        base = dep.http_base(0)
    with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
        return r.read().decode()

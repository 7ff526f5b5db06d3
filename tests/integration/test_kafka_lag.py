"""Consumer lag per partition (hawser_router_consumer_lag) with a real
Kafka: the split tiers with one consume_only pipeline on a 2-partition
topic and router.kafka.lag_interval_ms short.

- every assigned partition gets a gauge, labelled "<topic>[<partition>]";
  after records were delivered to a subscriber the lag of every partition
  is 0;
- with every broker gone the router cannot deliver (its partitions are
  paused): records produced meanwhile show up as lag, counted from Kafka's
  own high watermark.
"""

import re
import time
import urllib.request

import pytest

import clients
from kafka import (KafkaSplit, create_topics, kafka, pb, produce, stop_checked,  # noqa: F401
                   unique, wait_assigned)

T = 30.0


class LagSplit(KafkaSplit):
    def __init__(self, bootstrap, pipelines):
        super().__init__(bootstrap, pipelines)
        lines = self.config.splitlines()
        at = next(i for i, line in enumerate(lines) if line.strip().startswith("message_timeout_ms:"))
        lines.insert(at + 1, "    lag_interval_ms: 200")
        self.config = "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def topic(kafka):
    t = unique("hw-lag")
    create_topics(kafka.bootstrap, [t], partitions=2)
    return t


@pytest.fixture(scope="module")
def dep(kafka, topic):
    d = LagSplit(kafka.bootstrap, [{"name": "notify", "mode": "consume_only", "topic": topic}])
    try:
        d.start()
        wait_assigned(d, [topic], procs=d.routers)
    except BaseException:
        d.stop()
        raise
    yield d
    stop_checked(d, killed=("broker-1", "broker-2"))


def lags(dep, topic):
    """{partition: lag} from the router's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{dep.tier_http['router-1']}/metrics",
                                timeout=5) as r:
        text = r.read().decode()
    out = {}
    pat = re.compile(r'^hawser_router_consumer_lag\{partition="' + re.escape(topic)
                     + r'\[(\d+)\]"\} (-?\d+)$', re.M)
    for m in pat.finditer(text):
        out[int(m.group(1))] = int(m.group(2))
    return out


def wait_lags(dep, topic, pred, what):
    """Polls /metrics (every 0.1 s) until pred({partition: lag}) holds or
    the deadline passes."""
    last = None
    deadline = time.monotonic() + T
    while time.monotonic() < deadline:
        last = lags(dep, topic)
        if pred(last):
            return last
        time.sleep(0.1)  # poll interval of the condition above
    raise AssertionError(f"{what}: hawser_router_consumer_lag for {topic} stayed {last}")


def test_lag_zero_after_delivery_then_rises_without_brokers(dep, kafka, topic, pb):
    sub = clients.Client(dep.endpoint(0, "tcp"), client_id=dep.client_id("lag-sub"))
    sub.connect()
    sub.subscribe("lag/#", qos=1)
    recs = [(f"lag/{i % 2}".encode(),
             pb.DownstreamMessage(topic=f"lag/{i % 2}", payload=b"x%d" % i, qos=1).SerializeToString())
            for i in range(10)]
    produce(kafka.bootstrap, topic, recs)
    sub.expect_n(10, timeout=T, what="records delivered")
    got = wait_lags(dep, topic, lambda l: set(l) == {0, 1} and all(v == 0 for v in l.values()),
                    "lag 0 on both partitions")
    assert got == {0: 0, 1: 0}
    sub.close()

    # No broker left: nothing can be delivered, records wait in Kafka.
    for b in dep.procs:
        if b.name.startswith("broker-"):
            assert b.stop() == 0
    more = [(b"lag/0", pb.DownstreamMessage(topic="lag/0", payload=b"y", qos=1).SerializeToString())
            for _ in range(7)]
    produce(kafka.bootstrap, topic, more)
    got = wait_lags(dep, topic, lambda l: sum(l.values()) == 7, "lag 7 while no broker is up")
    assert sorted(got.values()) == [0, 7]

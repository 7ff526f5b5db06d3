"""The router's HTTP publish API (POST /v1/publish) with real processes: a
router, one broker, one edge, a real MQTT subscriber (Paho) and plain
urllib requests, as a backend would send them.

- A JSON request is answered 200 only once the broker took the message,
  and the subscriber gets it with its properties; protobuf bodies
  (hawser.v1.DownstreamMessage) work the same.
- 200 {"result":"no_match"} when nobody subscribed.
- 401 for a missing or wrong token, 400 for a bad body, 413 over
  router.publish_max_bytes, 404 on a router without router.publish_token.
- 503 when the broker is gone.
- hawser_router_http_publish_requests_total counts the answers.
"""

import base64
import json
import re
import time
import urllib.error
import urllib.request

import pytest

import clients
import harness
from kafka import pb, stop_checked  # noqa: F401 (pytest fixture)

TOKEN = "s3cret-token"
MAX_BYTES = 2048


class PublishApi(harness.Deployment):
    """router (direct mode, HTTP publish API on), 1 broker, 1 edge."""
    name = "publish-api"

    def __init__(self, token=TOKEN):
        super().__init__()
        self.token = token
        self.router = None
        self.broker = None

    def start(self):
        r, b, e = harness.free_ports(3)
        router, broker = f"tcp://127.0.0.1:{r}", f"tcp://127.0.0.1:{b}"
        self.brokers = [broker]
        self.router = self._spawn("router", [harness.binary("hawser-router")]
                                  + harness._common_sets("router-1") + [
            "--set", f"router.listen={router}", "--set", f"router.brokers={broker}",
            "--set", "router.http_listen=127.0.0.1:0",
            "--set", f"router.publish_token={self.token}",
            "--set", f"router.publish_max_bytes={MAX_BYTES}",
            "--set", "router.publish_timeout_ms=3000"])
        self.broker = self._spawn("broker-1", [harness.binary("hawser-broker")]
                                  + harness._common_sets("broker-1") + [
            "--set", f"broker.listen={broker}", "--set", f"broker.routers={router}",
            "--set", "broker.http_listen=127.0.0.1:0"])
        ep = self._spawn("edge-1", [harness.binary("hawser-edge")] + harness._common_sets("edge-1")
                         + harness._edge_sets() + [
            "--set", f"edge.listen=tcp://127.0.0.1:{e}", "--set", f"edge.brokers={broker}"])
        idx, _, _ = self.router.wait_id("RTR-READY")
        for line in self.router.lines_with_id("RTR-LISTEN", upto=idx + 1):
            m = re.search(r"http_port=(-?\d+)", line.get("msg", ""))
            if m:
                self.tier_http["router"] = int(m.group(1))
        self.broker.wait_id("BRK-READY")
        self.edges = [harness._read_edge(ep)]
        return self

    def url(self, path="/v1/publish"):
        return f"http://127.0.0.1:{self.tier_http['router']}{path}"


def post(url, body, token=TOKEN, ctype="application/json", timeout=15.0):
    """POSTs body (dict -> JSON, or bytes); returns (status, parsed JSON or
    raw bytes)."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    headers = {"Content-Type": ctype}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


@pytest.fixture(scope="module")
def dep():
    d = harness.start(PublishApi())
    yield d
    # Every process exits 0 on SIGTERM (the router with its HTTP API on);
    # the last test stops the broker itself.
    stop_checked(d, killed=("broker-1",))


@pytest.fixture
def sub(dep):
    c = clients.Client(dep.endpoint(0, "tcp"), client_id=dep.client_id("api-sub"))
    c.connect()
    yield c
    c.close()


def test_json_publish_reaches_subscriber(dep, sub):
    sub.subscribe("api/json/#", qos=1)
    status, body = post(dep.url(), {
        "topic": "api/json/1", "payload": "héllo", "qos": 1, "message_expiry": 60,
        "content_type": "text/plain", "user_properties": {"source": "backend", "n": "1"}})
    assert (status, body) == (200, {"result": "matched"})
    m = sub.expect(what="the HTTP-published message")
    assert m.topic == "api/json/1"
    assert m.payload == "héllo".encode()
    assert m.qos == 1
    assert m.properties.ContentType == "text/plain"
    assert ("source", "backend") in m.properties.UserProperty
    assert ("n", "1") in m.properties.UserProperty
    # payload_base64 carries arbitrary bytes.
    status, body = post(dep.url(), {"topic": "api/json/2", "qos": 0,
                                    "payload_base64": base64.b64encode(b"\x00\xff\x10").decode()})
    assert status == 200, body
    m = sub.expect(what="the base64 message")
    assert (m.topic, m.payload) == ("api/json/2", b"\x00\xff\x10")


def test_protobuf_publish(dep, sub, pb):
    sub.subscribe("api/pb/#", qos=1)
    msg = pb.DownstreamMessage(topic="api/pb/1", payload=b"from protobuf", qos=1,
                               user_properties=[pb.UserProperty(key="k", value="v")])
    status, body = post(dep.url(), msg.SerializeToString(), ctype="application/x-protobuf")
    assert (status, body) == (200, {"result": "matched"})
    m = sub.expect(what="the protobuf message")
    assert (m.topic, m.payload) == ("api/pb/1", b"from protobuf")
    assert ("k", "v") in m.properties.UserProperty


def test_no_subscriber(dep):
    status, body = post(dep.url(), {"topic": "api/nobody/here", "payload": "x"})
    assert (status, body) == (200, {"result": "no_match"})


def test_refusals(dep, sub):
    sub.subscribe("api/bad/#", qos=1)
    assert post(dep.url(), {"topic": "api/bad/1", "payload": "x"}, token=None)[0] == 401
    assert post(dep.url(), {"topic": "api/bad/1", "payload": "x"}, token="wrong")[0] == 401
    status, body = post(dep.url(), {"topic": "api/bad/+", "payload": "x"})
    assert status == 400 and "topic" in body["error"]
    status, body = post(dep.url(), {"topic": "api/bad/1", "qos": 7})
    assert status == 400 and "qos" in body["error"]
    status, body = post(dep.url(), {"topic": "api/bad/1", "payload": "x" * (MAX_BYTES + 1)})
    assert status == 413, body
    status, body = post(dep.url(), b"\xff\xfe", ctype="application/x-protobuf")
    assert status == 400, body
    # None of them reached the subscriber.
    sub.expect_nothing(0.3)


def test_metrics_count_answers(dep):
    assert post(dep.url(), {"topic": "api/m/1", "payload": "x"})[0] == 200
    with urllib.request.urlopen(dep.url("/metrics"), timeout=5) as r:
        text = r.read().decode()
    m = re.search(r'^hawser_router_http_publish_requests_total\{code="200"\} (\d+)$', text, re.M)
    assert m and int(m.group(1)) >= 1, text
    assert re.search(r'^hawser_router_http_publish_requests_total\{code="401"\} \d+$', text, re.M)


def test_api_off_without_token():
    d = PublishApi(token="")
    try:
        d.start()
        status, _ = post(d.url(), {"topic": "a", "payload": "x"})
        assert status == 404
    finally:
        stop_checked(d)


def test_503_when_the_broker_is_gone(dep):
    # Last in this module: it stops the broker.
    assert post(dep.url(), {"topic": "api/gone/1", "payload": "x"})[0] == 200
    assert dep.broker.stop() == 0
    deadline = time.monotonic() + 15
    status, body = None, None
    while time.monotonic() < deadline:
        status, body = post(dep.url(), {"topic": "api/gone/1", "payload": "x"})
        if status == 503:
            break
    assert status == 503, (status, body)
    assert "error" in body

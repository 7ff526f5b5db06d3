"""Bad peer input closes that one connection; everyone else carries on.

Each test keeps a healthy subscriber and publisher on the same gateway, sends
the bad bytes on a separate raw connection, asserts that connection is
closed (with the MQTT 5 DISCONNECT reason where the gateway promises one),
then proves the healthy pair still works. The fixture then checks that no
gateway process died.
"""

import itertools

import pytest

import harness
import mqttraw
from mqttraw import CONNACK, DISCONNECT

_seq = itertools.count()


class Healthy:
    def __init__(self, gw):
        self.gw = gw
        self.t = gw.topic("healthy")
        self.sub = gw.subscriber(version=5)
        self.sub.subscribe(self.t, qos=1)
        self.pub = gw.publisher(version=4)
        self.check()

    def check(self):
        payload = f"alive-{next(_seq)}".encode()
        self.pub.publish(self.t, payload, qos=1)
        m = self.sub.expect(what="healthy round trip")
        assert m.payload == payload


@pytest.fixture
def healthy(gw):
    return Healthy(gw)


def _connected(gw, version, edge=0):
    c = gw.raw(edge=edge, version=version)
    ack = c.handshake(gw.cid("bad"))
    assert ack.reason == 0
    return c


def _assert_closed(c, version, reasons, required):
    """The connection closes; on v5 the only packet allowed before the
    close is a DISCONNECT with one of `reasons` (required if `required`)."""
    try:
        got = c.wait_closed(timeout=5)
    except TimeoutError:
        raise AssertionError("the gateway kept the connection open after bad input") from None
    if version == 5:
        assert all(p.type == DISCONNECT for p in got), f"packets before close: {got}"
        if required:
            assert len(got) == 1, f"expected one DISCONNECT with reason in {[hex(r) for r in reasons]}, got {got}"
        for p in got:
            assert p.reason in reasons, f"DISCONNECT reason 0x{p.reason:02x}, expected one of {[hex(r) for r in reasons]}"
    else:
        assert got == [], f"3.1.1 has no DISCONNECT from the server; got {got}"


@pytest.mark.parametrize("version", [4, 5])
def test_reserved_packet_type(gw, healthy, version):
    c = _connected(gw, version)
    c.send(bytes([0x00, 0x00]))  # packet type 0 is reserved
    _assert_closed(c, version, {0x81, 0x82}, required=False)
    healthy.check()


@pytest.mark.parametrize("version", [4, 5])
def test_bad_remaining_length_varint(gw, healthy, version):
    c = _connected(gw, version)
    c.send(bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]))  # 5-byte varint
    _assert_closed(c, version, {0x81}, required=False)
    healthy.check()


@pytest.mark.parametrize("version", [4, 5])
@pytest.mark.parametrize("topic", ["a/+/b", "a/#", "x\u0000y"])
def test_publish_with_invalid_topic_name(gw, healthy, version, topic):
    c = _connected(gw, version)
    c.send(mqttraw.publish(topic, b"x", qos=1, pid=1, version=version))
    _assert_closed(c, version, {0x81, 0x82, 0x90}, required=True)
    healthy.check()


@pytest.mark.parametrize("version", [4, 5])
def test_subscribe_with_bad_fixed_header_flags(gw, healthy, version):
    c = _connected(gw, version)
    c.send(mqttraw.subscribe(1, [("a/b", 1)], version=version, flags=0x00))  # must be 0b0010
    _assert_closed(c, version, {0x81}, required=True)
    healthy.check()


@pytest.mark.parametrize("version", [4, 5])
def test_subscribe_with_bad_filter(gw, healthy, version):
    c = _connected(gw, version)
    c.send(mqttraw.subscribe(1, [("a/#/b", 1)], version=version))
    # A malformed filter: close (3.1.1), or v5 SUBACK 0x8F / DISCONNECT.
    try:
        p = c.recv(timeout=5)
    except mqttraw.Closed:
        p = None
    if p is not None and p.type == mqttraw.SUBACK:
        assert version == 5 and p.codes[0] in (0x8F, 0x80), f"SUBACK accepted a/#/b: {p.codes}"
    elif p is not None:
        assert version == 5 and p.type == DISCONNECT and p.reason in (0x81, 0x82, 0x8F), p
        _assert_closed(c, version, {0x81, 0x82, 0x8F}, required=False)
    healthy.check()


@pytest.mark.mosquitto_differs("mosquitto's websocket path waits for the whole oversized body",
                                when=lambda p: p["transport"] == "ws")
@pytest.mark.parametrize("version", [4, 5])
def test_oversized_packet(gw, healthy, version):
    c = _connected(gw, version)
    size = harness.MAX_PACKET_SIZE + 1000
    header = bytes([0x30]) + mqttraw.varint(size)
    # The header announces the size; the gateway must not wait for the body.
    c.send(header + mqttraw.mqtt_str("big/t") + b"x" * 1000)
    _assert_closed(c, version, {0x95}, required=True)
    healthy.check()


@pytest.mark.parametrize("version", [4, 5])
def test_second_connect_is_protocol_error(gw, healthy, version):
    c = _connected(gw, version)
    c.send(mqttraw.connect(gw.cid("again"), version=version))
    _assert_closed(c, version, {0x82}, required=False)
    healthy.check()


def test_first_packet_not_connect(gw, healthy):
    c = gw.raw(edge=0, version=4)
    c.send(mqttraw.subscribe(1, [("a/b", 1)]))
    try:
        got = c.wait_closed(timeout=5)
    except TimeoutError:
        raise AssertionError("connection stayed open without CONNECT") from None
    assert all(p.type != CONNACK or p.reason != 0 for p in got), f"accepted: {got}"
    healthy.check()


def test_garbage_instead_of_connect(gw, healthy):
    c = gw.raw(edge=0, version=4)
    c.send(b"\x10\x7f" + b"\xff" * 127)  # CONNECT with a nonsense body
    try:
        got = c.wait_closed(timeout=5)
    except TimeoutError:
        raise AssertionError("connection stayed open after a garbage CONNECT") from None
    assert all(p.type == CONNACK and p.reason != 0 for p in got), f"got {got}"
    healthy.check()


@pytest.mark.parametrize("level", [2, 6])
def test_unsupported_protocol_level(gw, healthy, level):
    c = gw.raw(edge=0, version=4)
    var = mqttraw.mqtt_str("MQTT") + bytes([level, 0x02]) + b"\x00\x1e"
    c.send(mqttraw.packet(mqttraw.CONNECT, 0, var + mqttraw.mqtt_str(gw.cid("old"))))
    got = c.wait_closed(timeout=5)
    # MQTT-3.1.2-2: CONNACK 0x01 (unacceptable protocol level), then close.
    # A v5 server may answer 0x84 (unsupported protocol version).
    assert len(got) <= 1 and all(p.type == CONNACK and p.reason in (0x01, 0x84) for p in got), got
    healthy.check()


def test_many_bad_connections_do_not_hurt(gw, healthy):
    for i in range(20):
        c = gw.raw(edge=i % 2, version=5)
        c.handshake(gw.cid("burst"))
        c.send(bytes([0xF0 if i % 2 else 0x00, 0x00]))
        c.wait_closed(timeout=5)
        c.close()
    healthy.check()

"""MQTT 5.0 features a v5 client relies on, end to end through the gateway."""

import time

import pytest

import harness
import mqttraw
from clients import SubscribeOptions, props
from paho.mqtt.packettypes import PacketTypes


def test_user_properties_and_metadata_pass_through(gw):
    t = gw.topic("props")
    sub = gw.subscriber(version=5)
    sub.subscribe(t, qos=1)
    pub = gw.publisher(version=5)
    pub.publish(t, b'{"a":1}', qos=1,
                UserProperty=[("trace", "abc"), ("trace", "def"), ("k", "v")],
                ContentType="application/json", ResponseTopic=t + "/reply",
                CorrelationData=b"\x00\x01corr", PayloadFormatIndicator=1)
    m = sub.expect()
    p = m.properties
    # Order of user properties with the same name is kept (MQTT-3.3.2-18).
    assert p.UserProperty == [("trace", "abc"), ("trace", "def"), ("k", "v")]
    assert p.ContentType == "application/json"
    assert p.ResponseTopic == t + "/reply"
    assert p.CorrelationData == b"\x00\x01corr"
    assert p.PayloadFormatIndicator == 1


def test_message_expiry_drops_stale_offline_messages(gw):
    t = gw.topic("exp")
    cid = gw.cid("expiry", broker=1)
    sub = gw.client(edge=1, client_id=cid, version=5, clean=False, session_expiry=300)
    sub.subscribe(t, qos=1)
    sub.disconnect()
    pub = gw.publisher(version=5)
    pub.publish(t, b"short-lived", qos=1, MessageExpiryInterval=1)
    pub.publish(t, b"long-lived", qos=1, MessageExpiryInterval=100)
    time.sleep(2.2)  # let the first message's 1 s lifetime pass (the behaviour under test)
    again = gw.client(edge=1, client_id=cid, version=5, clean=False, session_expiry=300)
    m = again.expect(what="the unexpired message")
    assert m.payload == b"long-lived", f"expired message delivered: {m.payload!r}"
    # The forwarded expiry is the remaining lifetime (MQTT-3.3.2-6).
    assert 90 <= m.properties.MessageExpiryInterval <= 98
    again.expect_nothing(0.3)
    again.disconnect()
    gw.client(edge=1, client_id=cid, version=5, clean=True).disconnect()


def test_retained_message_expires(gw):
    t = gw.topic("rexp")
    pub = gw.publisher(version=5)
    pub.publish(t, b"stale", qos=1, retain=True, MessageExpiryInterval=1)
    time.sleep(1.6)  # the retained message's lifetime (behaviour under test)
    sub = gw.subscriber(version=5)
    sub.subscribe(t, qos=1)
    pub.publish(t, b"marker", qos=1)
    m = sub.expect()
    assert m.payload == b"marker", "expired retained message was delivered"


def test_topic_alias_from_client(gw):
    t = gw.topic("alias")
    sub = gw.subscriber(version=5)
    sub.subscribe(t, qos=1)
    c = gw.raw(edge=0, version=5)
    ack = c.handshake(gw.cid("aliaser", broker=0))
    assert ack.prop(mqttraw.P_TOPIC_ALIAS_MAXIMUM, 0) >= 1, \
        f"server offers no topic aliases: {ack.props}"
    c.send(mqttraw.publish(t, b"one", qos=1, pid=1, version=5,
                           props=[(mqttraw.P_TOPIC_ALIAS, 1)]))
    assert c.recv().type == mqttraw.PUBACK
    c.send(mqttraw.publish("", b"two", qos=1, pid=2, version=5,
                           props=[(mqttraw.P_TOPIC_ALIAS, 1)]))
    ack2 = c.recv()
    assert (ack2.type, ack2.pid) == (mqttraw.PUBACK, 2) and ack2.reason in (0, 0x10), ack2
    got = sub.expect_n(2)
    assert [(m.topic, m.payload) for m in got] == [(t, b"one"), (t, b"two")]
    # The alias is not forwarded to the subscriber, which announced none.
    assert all(getattr(m.properties, "TopicAlias", None) in (None, 0) for m in got)


def test_topic_alias_above_maximum_is_protocol_error(gw):
    c = gw.raw(edge=0, version=5)
    ack = c.handshake(gw.cid("alias-bad"))
    maximum = ack.prop(mqttraw.P_TOPIC_ALIAS_MAXIMUM, 0)
    c.send(mqttraw.publish("a/b", b"x", qos=0, version=5,
                           props=[(mqttraw.P_TOPIC_ALIAS, maximum + 1)]))
    got = c.wait_closed()
    assert all(p.type == mqttraw.DISCONNECT for p in got), got
    if got:
        assert got[0].reason == 0x94, f"expected 0x94 Topic Alias invalid, got {got[0]!r}"


def test_subscription_identifier(gw):
    base = gw.topic("sid")
    sub = gw.subscriber(version=5)
    sub.subscribe(f"{base}/+", qos=1, properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=7))
    sub.subscribe(f"{base}/x", qos=1, properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=300))
    pub = gw.publisher(version=5)
    pub.publish(f"{base}/z", b"z", qos=1)
    m = sub.expect()
    assert (m.payload, m.properties.SubscriptionIdentifier) == (b"z", [7])
    # x matches both: the identifiers of both subscriptions reach the client,
    # in one copy or in two (MQTT-3.3.4-3/4/5).
    pub.publish(f"{base}/x", b"x", qos=1)
    pub.publish(f"{base}/end", b"end", qos=1)
    ids = []
    m = sub.expect()
    while m.payload != b"end":
        assert m.payload == b"x"
        ids.extend(m.properties.SubscriptionIdentifier)
        m = sub.expect()
    assert sorted(ids) == [7, 300], f"identifiers delivered for x: {ids}"
    assert m.properties.SubscriptionIdentifier == [7]


@pytest.mark.mosquitto_differs("mosquitto 2.0.11 sends two more messages after one PUBACK "
                                "when the window is full (checked with a raw client)")
def test_receive_maximum_limits_unacked_qos1(gw):
    t = gw.topic("rm")
    sub = gw.subscriber(version=5, manual_ack=True, receive_maximum=2)
    sub.subscribe(t, qos=1)
    pub = gw.publisher(version=5)
    for i in range(6):
        pub.publish(t, f"m{i}".encode(), qos=1)
    first = sub.expect_n(2, what="the first window")
    assert [m.payload for m in first] == [b"m0", b"m1"]
    sub.expect_nothing(0.7)  # window full: a third would break Receive Maximum 2
    sub.ack(first[0])
    m = sub.expect(what="the next message after one PUBACK")
    assert m.payload == b"m2"
    sub.expect_nothing(0.5)
    rest = [m]
    sub.ack(first[1])
    sub.ack(m)
    while len(rest) < 4:
        m = sub.expect(what="remaining messages as the window opens")
        rest.append(m)
        sub.ack(m)
    assert [m.payload for m in rest] == [b"m2", b"m3", b"m4", b"m5"]


def test_no_local(gw):
    t = gw.topic("nl")
    me = gw.client(edge=0, version=5, broker=0)
    me.subscribe(t, options=SubscribeOptions(qos=1, noLocal=True))
    me.publish(t, b"mine", qos=1)
    other = gw.client(edge=1, version=5, broker=1)
    other.publish(t, b"theirs", qos=1)
    m = me.expect()
    assert m.payload == b"theirs", "no_local subscription received its own publish"
    me.expect_nothing(0.3)


def test_local_delivery_without_no_local(gw):
    t = gw.topic("nl0")
    me = gw.client(edge=0, version=5)
    me.subscribe(t, options=SubscribeOptions(qos=1, noLocal=False))
    me.publish(t, b"mine", qos=1)
    assert me.expect().payload == b"mine"


@pytest.mark.parametrize("rap", [False, True])
def test_retain_as_published(gw, rap):
    t = gw.topic("rap")
    sub = gw.subscriber(version=5)
    sub.subscribe(t, options=SubscribeOptions(qos=1, retainAsPublished=rap))
    pub = gw.publisher(version=5)
    pub.publish(t, b"r", qos=1, retain=True)
    m = sub.expect()
    assert m.retain is rap
    pub.publish(t, b"", qos=1, retain=True)


def test_retain_handling(gw):
    t = gw.topic("rh")
    pub = gw.publisher(version=5)
    pub.publish(t, b"kept", qos=1, retain=True)
    sub = gw.subscriber(version=5)

    def subscribe_and_first(rh):
        sub.subscribe(t, options=SubscribeOptions(qos=1, retainHandling=rh))
        pub.publish(t, b"marker", qos=1)  # not retained
        first = sub.expect(what=f"first message after subscribe with retain handling {rh}")
        if first.payload == b"kept":
            assert first.retain
            assert sub.expect().payload == b"marker"
        else:
            assert first.payload == b"marker"
        return first.payload

    # 2: never send retained messages.
    assert subscribe_and_first(SubscribeOptions.RETAIN_DO_NOT_SEND) == b"marker"
    sub.unsubscribe(t)
    # 1: only if the subscription is new.
    assert subscribe_and_first(SubscribeOptions.RETAIN_SEND_IF_NEW_SUB) == b"kept"
    assert subscribe_and_first(SubscribeOptions.RETAIN_SEND_IF_NEW_SUB) == b"marker"
    # 0: at every subscribe, also when it replaces an existing one.
    assert subscribe_and_first(SubscribeOptions.RETAIN_SEND_ON_SUBSCRIBE) == b"kept"
    assert subscribe_and_first(SubscribeOptions.RETAIN_SEND_ON_SUBSCRIBE) == b"kept"
    pub.publish(t, b"", qos=1, retain=True)


def test_session_expiry_zero_discards_on_disconnect(gw):
    t = gw.topic("se0")
    cid = gw.cid("se0", broker=1)
    c = gw.client(edge=1, client_id=cid, version=5, clean=False, session_expiry=0)
    c.subscribe(t, qos=1)
    c.disconnect()
    again = gw.client(edge=1, client_id=cid, version=5, clean=False, session_expiry=0, connect=False)
    flags, _ = again.connect()
    assert not flags.session_present, "session with expiry 0 outlived its connection"


def test_connack_advertises_limits(gw):
    c = gw.raw(edge=0, version=5)
    ack = c.handshake(gw.cid("limits"), props=[(mqttraw.P_MAXIMUM_PACKET_SIZE, 1 << 20)])
    assert ack.reason == 0
    mps = ack.prop(mqttraw.P_MAXIMUM_PACKET_SIZE)
    assert mps == harness.MAX_PACKET_SIZE, f"CONNACK Maximum Packet Size {mps}"


def test_server_respects_client_maximum_packet_size(gw):
    # MQTT-3.1.2-25: the server must not send a packet larger than the
    # client's Maximum Packet Size; it drops it instead and carries on.
    t = gw.topic("cmps")
    c = gw.raw(edge=1, version=5)
    c.handshake(gw.cid("small", broker=1), props=[(mqttraw.P_MAXIMUM_PACKET_SIZE, 512)])
    c.send(mqttraw.subscribe(1, [(t, 1)], version=5))
    assert c.recv().type == mqttraw.SUBACK
    pub = gw.publisher(version=5)
    pub.publish(t, b"x" * 2000, qos=1)
    pub.publish(t, b"small", qos=1)
    p = c.recv()
    assert (p.type, p.payload) == (mqttraw.PUBLISH, b"small"), f"got {p!r}"

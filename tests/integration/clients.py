"""A thin, synchronous-looking wrapper around Paho (paho-mqtt 2.x).

Every Paho callback feeds a queue; tests wait on those queues with
deadlines. The network thread never reconnects behind a test's back: an
unexpected disconnect is recorded and the loop stops.
"""

import queue
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

TIMEOUT = 5.0


def props(packet_type, **kw):
    """Properties(packet_type) with attributes set from kw (Paho names,
    e.g. UserProperty=[("k","v")], MessageExpiryInterval=10)."""
    p = Properties(packet_type)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


class Client:
    def __init__(self, endpoint, client_id="", version=5, clean=True, session_expiry=None,
                 keepalive=30, manual_ack=False, receive_maximum=None, will=None,
                 connect_props=None):
        self.ep = endpoint
        self.version = version
        self.clean = clean
        self.keepalive = keepalive
        self.session_expiry = session_expiry
        self.receive_maximum = receive_maximum
        self.connect_props = connect_props or {}
        kw = dict(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                  client_id=client_id,
                  protocol=mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311,
                  transport="websockets" if endpoint.transport == "ws" else "tcp",
                  manual_ack=manual_ack)
        if version != 5:
            kw["clean_session"] = clean
        self.c = mqtt.Client(**kw)
        if endpoint.transport == "ws":
            self.c.ws_set_options(path=endpoint.path)
        if will:
            wp = None
            if version == 5 and will.get("props"):
                wp = props(PacketTypes.WILLMESSAGE, **will["props"])
            self.c.will_set(will["topic"], will.get("payload"), will.get("qos", 0),
                            will.get("retain", False), properties=wp)
        self.connq = queue.Queue()
        self.msgq = queue.Queue()
        self.discq = queue.Queue()
        self.subq = queue.Queue()
        self.unsubq = queue.Queue()
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_disconnect = self._on_disconnect
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subq.put((mid, rcs, p))
        self.c.on_unsubscribe = lambda c, u, mid, rcs, p: self.unsubq.put((mid, rcs, p))
        self.connected = False
        self.closing = False

    # --- callbacks (network thread) ---------------------------------------
    def _on_connect(self, c, u, flags, rc, p):
        self.connq.put((flags, rc, p))

    def _on_message(self, c, u, msg):
        self.msgq.put(msg)

    def _on_disconnect(self, c, u, flags, rc, p):
        self.connected = False
        self.discq.put((rc, p))
        c.loop_stop()  # no automatic reconnect: the test decides

    # --- API ----------------------------------------------------------------
    def connect(self, timeout=TIMEOUT):
        """Connects and waits for a successful CONNACK; returns (flags, props)."""
        cp = None
        if self.version == 5:
            kw = dict(self.connect_props)
            if self.session_expiry is not None:
                kw["SessionExpiryInterval"] = self.session_expiry
            if self.receive_maximum is not None:
                kw["ReceiveMaximum"] = self.receive_maximum
            cp = props(PacketTypes.CONNECT, **kw) if kw else None
            self.c.connect(self.ep.host, self.ep.port, self.keepalive,
                           clean_start=self.clean, properties=cp)
        else:
            self.c.connect(self.ep.host, self.ep.port, self.keepalive)
        self.c.loop_start()
        try:
            flags, rc, p = self.connq.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no CONNACK from {self.ep.url()} within {timeout} s") from None
        assert not rc.is_failure, f"CONNACK refused by {self.ep.url()}: {rc}"
        self.connected = True
        return flags, p

    def subscribe(self, topic, qos=1, timeout=TIMEOUT, options=None, properties=None):
        """Subscribes and waits for the SUBACK; returns its reason codes.
        topic may be a list of (filter, qos or SubscribeOptions)."""
        if self.version == 5 and options is not None:
            result, mid = self.c.subscribe(topic, options=options, properties=properties)
        elif isinstance(topic, list):
            result, mid = self.c.subscribe(topic, properties=properties)
        else:
            if self.version == 5:
                result, mid = self.c.subscribe(topic, options=SubscribeOptions(qos=qos),
                                               properties=properties)
            else:
                result, mid = self.c.subscribe(topic, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS, f"subscribe not sent: {result}"
        try:
            got_mid, rcs, _ = self.subq.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no SUBACK for {topic!r} within {timeout} s") from None
        assert got_mid == mid
        for rc in rcs:
            assert not rc.is_failure, f"SUBACK refused {topic!r}: {rc}"
        return rcs

    def unsubscribe(self, topic, timeout=TIMEOUT):
        result, mid = self.c.unsubscribe(topic)
        assert result == mqtt.MQTT_ERR_SUCCESS
        try:
            got_mid, rcs, _ = self.unsubq.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no UNSUBACK for {topic!r} within {timeout} s") from None
        assert got_mid == mid
        return rcs

    def publish(self, topic, payload, qos=0, retain=False, timeout=TIMEOUT, **properties):
        """Publishes and waits until it is complete (sent for QoS 0, PUBACK
        for QoS 1, PUBCOMP for QoS 2). Returns the MQTTMessageInfo."""
        p = props(PacketTypes.PUBLISH, **properties) if properties else None
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=p)
        info.wait_for_publish(timeout=timeout)
        assert info.is_published(), (
            f"publish to {topic!r} qos {qos} not completed within {timeout} s (rc={info.rc})")
        return info

    def expect(self, timeout=TIMEOUT, what="a message"):
        """The next received message; fails the test at the deadline."""
        try:
            return self.msgq.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{what}: nothing received within {timeout} s") from None

    def expect_n(self, n, timeout=TIMEOUT, what="messages"):
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < n:
            left = deadline - time.monotonic()
            try:
                out.append(self.msgq.get(timeout=max(0.0, left)))
            except queue.Empty:
                got = [(m.topic, m.payload) for m in out]
                raise AssertionError(f"{what}: got {len(out)} of {n} within {timeout} s: {got}") from None
        return out

    def expect_nothing(self, window=0.5):
        """Asserts that no message arrives within `window` seconds (an
        absence check, used only after a positive event has synchronized)."""
        try:
            m = self.msgq.get(timeout=window)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message on {m.topic!r}: {m.payload!r}")

    def ack(self, msg):
        self.c.ack(msg.mid, msg.qos)

    def disconnect(self, reason=None, properties=None, timeout=TIMEOUT):
        """Clean DISCONNECT; waits for the network loop to finish."""
        self.closing = True
        if self.connected:
            if self.version == 5 and reason is not None:
                from paho.mqtt.reasoncodes import ReasonCode
                rc = ReasonCode(PacketTypes.DISCONNECT, identifier=reason)
                self.c.disconnect(reasoncode=rc, properties=properties)
            else:
                self.c.disconnect()
            try:
                self.discq.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError("DISCONNECT did not complete") from None
        self.c.loop_stop()

    def close(self):
        """Best-effort teardown for fixtures."""
        self.closing = True
        try:
            if self.connected:
                self.c.disconnect()
        except Exception:
            pass
        self.c.loop_stop()
        try:
            if self.c.socket() is not None:
                self.c.socket().close()
        except Exception:
            pass

"""A deliberately small MQTT client over raw sockets (TCP or WebSocket).

Paho hides the wire; some tests need it: malformed packets, a client that
goes silent, an abrupt close, reading the exact DISCONNECT a server sends.
This module encodes just enough of MQTT 3.1.1 / 5.0 (written from the OASIS
specifications) and a minimal RFC 6455 client for the WebSocket transport.
Every read has a deadline; nothing here sleeps.
"""

import base64
import os
import select
import socket
import struct
import time

# Packet types (fixed header high nibble).
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

# v5 property identifiers and their wire types.
P_PAYLOAD_FORMAT = 0x01
P_MESSAGE_EXPIRY = 0x02
P_SESSION_EXPIRY = 0x11
P_ASSIGNED_CLIENT_ID = 0x12
P_SERVER_KEEPALIVE = 0x13
P_REASON_STRING = 0x1F
P_RECEIVE_MAXIMUM = 0x21
P_TOPIC_ALIAS_MAXIMUM = 0x22
P_TOPIC_ALIAS = 0x23
P_USER_PROPERTY = 0x26
P_MAXIMUM_PACKET_SIZE = 0x27
P_SUBSCRIPTION_ID = 0x0B
P_WILL_DELAY = 0x18
P_SERVER_REFERENCE = 0x1C

_PROP_TYPES = {
    0x01: "byte", 0x02: "u32", 0x03: "str", 0x08: "str", 0x09: "bin",
    0x0B: "varint", 0x11: "u32", 0x12: "str", 0x13: "u16", 0x15: "str",
    0x16: "bin", 0x17: "byte", 0x18: "u32", 0x19: "byte", 0x1A: "str",
    0x1C: "str", 0x1F: "str", 0x21: "u16", 0x22: "u16", 0x23: "u16",
    0x24: "byte", 0x25: "byte", 0x26: "pair", 0x27: "u32", 0x28: "byte",
    0x29: "byte", 0x2A: "byte",
}


class ProtocolError(Exception):
    """The peer sent bytes this decoder cannot parse."""


def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            b |= 0x80
        out.append(b)
        if not n:
            return bytes(out)


def mqtt_str(s):
    b = s.encode() if isinstance(s, str) else bytes(s)
    return struct.pack("!H", len(b)) + b


def encode_props(props):
    """props: list of (id, value); user properties as (0x26, (k, v))."""
    out = bytearray()
    for pid, val in props or []:
        out += varint(pid)
        kind = _PROP_TYPES[pid]
        if kind == "byte":
            out += struct.pack("!B", val)
        elif kind == "u16":
            out += struct.pack("!H", val)
        elif kind == "u32":
            out += struct.pack("!I", val)
        elif kind == "varint":
            out += varint(val)
        elif kind in ("str", "bin"):
            out += mqtt_str(val)
        elif kind == "pair":
            out += mqtt_str(val[0]) + mqtt_str(val[1])
    return varint(len(out)) + bytes(out)


def packet(ptype, flags, body):
    return bytes([(ptype << 4) | flags]) + varint(len(body)) + body


def connect(client_id, version=4, keepalive=30, clean=True, will=None,
            props=None, username=None, password=None):
    """will: dict(topic, payload, qos=0, retain=False, props=None)."""
    flags = 0x02 if clean else 0
    payload = mqtt_str(client_id)
    if will:
        flags |= 0x04 | (will.get("qos", 0) << 3) | (0x20 if will.get("retain") else 0)
        if version == 5:
            payload += encode_props(will.get("props"))
        payload += mqtt_str(will["topic"]) + mqtt_str(will["payload"])
    if username is not None:
        flags |= 0x80
        payload += mqtt_str(username)
    if password is not None:
        flags |= 0x40
        payload += mqtt_str(password)
    var = mqtt_str("MQTT") + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == 5:
        var += encode_props(props)
    return packet(CONNECT, 0, var + payload)


def publish(topic, payload, qos=0, retain=False, pid=1, version=4, props=None, dup=False):
    flags = (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    body = mqtt_str(topic)
    if qos:
        body += struct.pack("!H", pid)
    if version == 5:
        body += encode_props(props)
    return packet(PUBLISH, flags, body + (payload.encode() if isinstance(payload, str) else payload))


def subscribe(pid, filters, version=4, props=None, flags=0x02):
    """filters: list of (topic filter, options byte)."""
    body = struct.pack("!H", pid)
    if version == 5:
        body += encode_props(props)
    for f, opts in filters:
        body += mqtt_str(f) + bytes([opts])
    return packet(SUBSCRIBE, flags, body)


def puback(pid, version=4):
    return packet(PUBACK, 0, struct.pack("!H", pid))


def disconnect(version=4, reason=None, props=None):
    if version == 5 and reason is not None:
        return packet(DISCONNECT, 0, bytes([reason]) + encode_props(props))
    return packet(DISCONNECT, 0, b"")


PINGREQ_BYTES = bytes([0xC0, 0x00])


def _decode_props(buf, i):
    n, i = _read_varint(buf, i)
    end = i + n
    props = []
    while i < end:
        pid, i = _read_varint(buf, i)
        kind = _PROP_TYPES.get(pid)
        if kind is None:
            raise ProtocolError(f"unknown property 0x{pid:02x}")
        if kind == "byte":
            val = buf[i]; i += 1
        elif kind == "u16":
            val = struct.unpack_from("!H", buf, i)[0]; i += 2
        elif kind == "u32":
            val = struct.unpack_from("!I", buf, i)[0]; i += 4
        elif kind == "varint":
            val, i = _read_varint(buf, i)
        elif kind in ("str", "bin"):
            ln = struct.unpack_from("!H", buf, i)[0]
            val = bytes(buf[i + 2:i + 2 + ln]); i += 2 + ln
            if kind == "str":
                val = val.decode()
        else:
            k, i = _read_str(buf, i)
            v, i = _read_str(buf, i)
            val = (k, v)
        props.append((pid, val))
    return props, end


def _read_varint(buf, i):
    mult, val = 1, 0
    for _ in range(4):
        if i >= len(buf):
            raise ProtocolError("truncated varint")
        b = buf[i]; i += 1
        val += (b & 0x7F) * mult
        if not b & 0x80:
            return val, i
        mult *= 128
    raise ProtocolError("varint longer than 4 bytes")


def _read_str(buf, i):
    ln = struct.unpack_from("!H", buf, i)[0]
    return bytes(buf[i + 2:i + 2 + ln]).decode(), i + 2 + ln


class Packet:
    def __init__(self, ptype, flags, body, version):
        self.type, self.flags, self.body = ptype, flags, bytes(body)
        self.reason = None
        self.props = []
        self.session_present = None
        self.topic = self.payload = self.pid = None
        self.qos = (flags >> 1) & 3
        self.retain = bool(flags & 1)
        self.dup = bool(flags & 8)
        b = self.body
        if ptype == CONNACK:
            self.session_present = bool(b[0] & 1)
            self.reason = b[1]
            if version == 5 and len(b) > 2:
                self.props, _ = _decode_props(b, 2)
        elif ptype == DISCONNECT:
            self.reason = b[0] if b else 0
            if version == 5 and len(b) > 1:
                self.props, _ = _decode_props(b, 1)
        elif ptype == PUBLISH:
            self.topic, i = _read_str(b, 0)
            if self.qos:
                self.pid = struct.unpack_from("!H", b, i)[0]; i += 2
            if version == 5:
                self.props, i = _decode_props(b, i)
            self.payload = b[i:]
        elif ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK):
            self.pid = struct.unpack_from("!H", b, 0)[0]
            rest = b[2:]
            if ptype == SUBACK or ptype == UNSUBACK:
                if version == 5:
                    _, i = _decode_props(b, 2)
                    rest = b[i:]
                self.codes = list(rest)
            else:
                self.reason = rest[0] if rest else 0

    def prop(self, pid, default=None):
        for k, v in self.props:
            if k == pid:
                return v
        return default

    def __repr__(self):
        names = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC",
                 6: "PUBREL", 7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE",
                 11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH"}
        extra = ""
        if self.reason is not None:
            extra += f" reason=0x{self.reason:02x}"
        if self.topic is not None:
            extra += f" topic={self.topic!r} payload={self.payload!r}"
        return f"<{names.get(self.type, self.type)}{extra}>"


class Closed(Exception):
    """The server closed the connection."""


class RawClient:
    """One MQTT connection over TCP or WebSocket (subprotocol mqtt, path /mqtt)."""

    def __init__(self, endpoint, version=4, timeout=5.0, rcvbuf=None):
        self.version = version
        self.ep = endpoint
        if rcvbuf is None:
            self.sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
        else:  # a small receive buffer must be set before connect()
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect((endpoint.host, endpoint.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.raw = bytearray()     # undecoded transport bytes (ws frames)
        self.stream = bytearray()  # MQTT byte stream
        self.eof = False
        self.ws = endpoint.transport == "ws"
        if self.ws:
            self._ws_handshake(timeout)

    # --- transport ---------------------------------------------------------
    def _ws_handshake(self, timeout):
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {self.ep.path} HTTP/1.1\r\nHost: {self.ep.host}:{self.ep.port}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Protocol: mqtt\r\n\r\n")
        self.sock.sendall(req.encode())
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.raw:
            if not self._fill(deadline):
                raise Closed(f"closed during websocket handshake: {bytes(self.raw)!r}")
        head, _, rest = bytes(self.raw).partition(b"\r\n\r\n")
        status = head.split(b"\r\n")[0]
        if b" 101 " not in status + b" ":
            raise ProtocolError(f"websocket upgrade refused: {head!r}")
        self.raw = bytearray(rest)

    def _fill(self, deadline):
        """Reads more transport bytes; False on EOF. Raises TimeoutError."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no data from server before the deadline")
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            raise TimeoutError("no data from server before the deadline")
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.raw += data
        return True

    def _pump(self, deadline):
        """Moves transport bytes into the MQTT stream; False on close."""
        if not self.ws:
            if self.raw:
                self.stream += self.raw
                self.raw.clear()
                return True
            if self.eof:
                return False
            ok = self._fill(deadline)
            self.stream += self.raw
            self.raw.clear()
            return ok
        while True:
            frame = self._ws_frame()
            if frame is not None:
                op, data = frame
                if op == 0x8:
                    self.eof = True
                    return False
                if op in (0x0, 0x2):
                    self.stream += data
                    return True
                if op == 0x9:  # ping -> pong
                    self._ws_send(0xA, data)
                continue
            if self.eof or not self._fill(deadline):
                return False

    def _ws_frame(self):
        b = self.raw
        if len(b) < 2:
            return None
        op = b[0] & 0x0F
        ln = b[1] & 0x7F
        i = 2
        if ln == 126:
            if len(b) < 4:
                return None
            ln = struct.unpack_from("!H", b, 2)[0]; i = 4
        elif ln == 127:
            if len(b) < 10:
                return None
            ln = struct.unpack_from("!Q", b, 2)[0]; i = 10
        if b[1] & 0x80:
            raise ProtocolError("server sent a masked websocket frame")
        if len(b) < i + ln:
            return None
        data = bytes(b[i:i + ln])
        del b[:i + ln]
        return op, data

    def _ws_send(self, op, data):
        mask = os.urandom(4)
        ln = len(data)
        if ln < 126:
            head = bytes([0x80 | op, 0x80 | ln])
        elif ln < 65536:
            head = bytes([0x80 | op, 0x80 | 126]) + struct.pack("!H", ln)
        else:
            head = bytes([0x80 | op, 0x80 | 127]) + struct.pack("!Q", ln)
        masked = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
        self.sock.sendall(head + mask + masked)

    def send(self, data):
        """Sends MQTT bytes (one websocket binary frame on ws)."""
        if self.ws:
            self._ws_send(0x2, data)
        else:
            self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Abrupt close: RST instead of FIN, no DISCONNECT, no ws close frame."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    # --- MQTT --------------------------------------------------------------
    def recv(self, timeout=5.0):
        """Returns the next packet; raises Closed on close, TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            pkt = self._parse()
            if pkt is not None:
                return pkt
            if not self._pump(deadline):
                raise Closed(f"server closed the connection (pending bytes {bytes(self.stream)!r})")

    def _parse(self):
        s = self.stream
        if len(s) < 2:
            return None
        try:
            ln, i = _read_varint(s, 1)
        except ProtocolError:
            if len(s) >= 5:
                raise
            return None
        if len(s) < i + ln:
            return None
        pkt = Packet(s[0] >> 4, s[0] & 0x0F, s[i:i + ln], self.version)
        del s[:i + ln]
        return pkt

    def wait_closed(self, timeout=5.0):
        """Reads until the server closes; returns the packets read first.
        Raises TimeoutError if the connection is still open at the deadline."""
        deadline = time.monotonic() + timeout
        got = []
        while True:
            try:
                got.append(self.recv(max(0.0, deadline - time.monotonic())))
            except Closed:
                return got

    def handshake(self, client_id, timeout=5.0, **kw):
        """Sends CONNECT and returns the CONNACK packet."""
        self.send(connect(client_id, version=self.version, **kw))
        pkt = self.recv(timeout)
        if pkt.type != CONNACK:
            raise ProtocolError(f"expected CONNACK, got {pkt!r}")
        return pkt

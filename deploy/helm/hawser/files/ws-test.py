# helm test: MQTT 3.1.1 over WebSocket through the edge Service, with the
# Python standard library only. Subscribes at QoS 1, publishes at QoS 1 to
# its own topic, and succeeds only when its PUBACK and its own message came
# back. Every wait is bounded by DEADLINE seconds.
import base64, os, socket, struct, sys, time

host, port = os.environ["HOST"], int(os.environ["WS_PORT"])
deadline = time.monotonic() + int(os.environ["DEADLINE"])
topic = ("hawser/helm-test-ws/%s/%d" % (os.environ.get("POD", "local"), os.getpid())).encode()
want = b"hello-ws-%d" % os.getpid()


def fail(why):
    print("FAIL: MQTT over WebSocket through %s:%d: %s" % (host, port, why))
    sys.exit(1)


def connect():
    while True:
        try:
            return socket.create_connection((host, port), timeout=5)
        except OSError as e:
            if time.monotonic() > deadline:
                fail("cannot connect: %s" % e)
            time.sleep(1)  # the Service may not route yet: retry until DEADLINE


s = connect()
s.settimeout(max(1.0, deadline - time.monotonic()))
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET /mqtt HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Protocol: mqtt\r\n\r\n" % (host, port, key)).encode())
head = b""
while b"\r\n\r\n" not in head:
    c = s.recv(1)
    if not c:
        fail("closed during the WebSocket handshake")
    head += c
lines = head.decode("latin-1").split("\r\n")
if " 101 " not in lines[0] + " ":
    fail("handshake answered %r" % lines[0])
proto = [l.split(":", 1)[1].strip() for l in lines if l.lower().startswith("sec-websocket-protocol:")]
if proto != ["mqtt"]:
    fail("subprotocol %r, want mqtt" % proto)


def exact(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            fail("connection closed")
        b += c
    return b


def send(pkt):
    mask = os.urandom(4)
    n = len(pkt)
    hdr = bytes([0x82]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n))
    s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(pkt)))


stream = b""


def packet():
    """Next whole MQTT packet from the binary frames (unfragmented server
    frames; control frames other than close are skipped)."""
    global stream
    while True:
        if len(stream) >= 2:
            rl, mult, i = 0, 1, 1
            while i < len(stream) and i <= 4:
                rl += (stream[i] & 0x7F) * mult
                mult *= 128
                i += 1
                if stream[i - 1] & 0x80 == 0:
                    if len(stream) >= i + rl:
                        pkt, stream = stream[:i + rl], stream[i + rl:]
                        return pkt
                    break
        b0, b1 = exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", exact(8))[0]
        data = exact(n)
        if b0 & 0x0F == 0x8:
            fail("server closed the WebSocket")
        if b0 & 0x0F in (0x1, 0x2, 0x0):
            stream += data


def utf8(b):
    return struct.pack("!H", len(b)) + b


def mqtt(first, body):
    rl, enc = len(body), b""
    while True:
        d, rl = rl % 128, rl // 128
        enc += bytes([d | (0x80 if rl else 0)])
        if not rl:
            return bytes([first]) + enc + body


send(mqtt(0x10, utf8(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", 30)
          + utf8(b"helm-ws-%d" % os.getpid())))
p = packet()
if p != b"\x20\x02\x00\x00":
    fail("CONNACK %r" % p)
send(mqtt(0x82, struct.pack("!H", 1) + utf8(topic) + b"\x01"))
p = packet()
if p != b"\x90\x03\x00\x01\x01":
    fail("SUBACK %r" % p)
send(mqtt(0x32, utf8(topic) + struct.pack("!H", 2) + want))
acked = got = False
while not (acked and got):
    p = packet()
    if p == b"\x40\x02\x00\x02":
        acked = True
    elif p[0] & 0xF0 == 0x30:
        # PUBLISH: skip the remaining-length varint, then topic, packet id
        # (QoS 1), payload.
        i = 1
        while p[i] & 0x80:
            i += 1
        body = p[i + 1:]
        tl = struct.unpack("!H", body[:2])[0]
        t, rest = body[2:2 + tl], body[2 + tl:]
        pid, payload = rest[:2], rest[2:]
        if t != topic or payload != want:
            fail("message %r on %r" % (payload, t))
        send(mqtt(0x40, pid))
        got = True
    else:
        fail("unexpected packet %r" % p)
print("ok: MQTT over WebSocket publish/subscribe through %s:%d" % (host, port))

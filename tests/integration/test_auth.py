"""Authentication and ACL through real clients against the running gateway
(issue 4): JWT, the HTTP CONNECT callback, delegated ACL callbacks, and an
ACL table with the wildcard bypass attempts, on the all-in-one and the split
deployment.

One deployment per kind serves every test here (module scope): the chain is
[jwt, http], so a password shaped like a JWT is decided by the JWT method
and any other credentials by the callback service tests/auth/callback_server.py,
which the module starts. Tokens are made here with PyJWT.

Exact CONNACK / SUBACK / PUBACK codes are read with the raw client
(mqttraw), which shows the wire bytes for both protocol versions.
"""

import json
import os
import queue
import select
import sys
import time
import urllib.request

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import clients
import harness
import mqttraw
import redis_fixture

pytestmark = pytest.mark.hawser_only

SECRET = "it-hs256-secret-0123456789abcdef0123456789"
CALLBACK_SERVER = os.path.join(harness.ROOT, "tests", "auth", "callback_server.py")
KINDS = ["allinone", "split"]
# The same suite with the brokers' sessions in a real Redis (store.backend=redis).
STORE_KINDS = KINDS + ["allinone-redis", "split-redis"]

# Global rules of the deployment (docs/auth.md, setup 3 and more).
RULES = [
    {"permission": "deny", "topic": "user/%u/private/#", "action": "publish"},
    {"topic": "user/%u/#"},
    {"topic": "device/%c/+", "action": "publish", "max_qos": 1, "retain": False},
    {"topic": "tenant/%{tenant}/broadcast", "action": "subscribe", "max_qos": 1},
    {"topic": "live/+/chat", "action": "both", "max_qos": 0},
    {"topic": "live/+/video", "action": "subscribe", "delegate": "paid"},
    {"topic": "pay/+/in", "action": "publish", "delegate": "paid"},
    {"topic": "down/+", "action": "subscribe", "delegate": "down"},
    {"topic": "downopen/+", "action": "subscribe", "delegate": "downopen"},
    {"permission": "deny", "topic": "public/secret/#", "action": "subscribe"},
    {"topic": "public/#", "action": "subscribe"},
]

# The callback service's users (CONNECT) and delegated answers (ACL).
CALLBACK_CONFIG = {
    "users": {
        "carol": {"password": "carol-pw", "result": "allow", "user": "u-carol"},
        "dave": {"password": "dave-pw", "result": "deny"},
        "slow": {"password": "slow-pw", "result": "allow", "delay_s": 3},
        "broken": {"password": "broken-pw", "status": 500},
        "cached": {"password": "cached-pw", "result": "allow"},
        "probe": {"password": "probe-pw", "result": "allow"},
        "admin": {"password": "admin-pw", "result": "allow",
                  "acl": [{"topic": "#", "action": "subscribe"},
                          {"topic": "$SYS/#", "action": "subscribe"}]},
    },
    "acl_allow": ["live/ok", "pay/ok/"],
    "acl_allow_users": {"alice": ["live/vip"]},
}


# --- tokens ------------------------------------------------------------------
def token(sub="alice", exp_in=600, nbf_in=None, key=SECRET, alg="HS256", **claims):
    now = int(time.time())
    body = {"sub": sub, "exp": now + exp_in}
    if nbf_in is not None:
        body["nbf"] = now + nbf_in
    body.update(claims)
    return jwt.encode(body, key, algorithm=alg)


def es256_key():
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


# --- deployments -------------------------------------------------------------
class AuthAllInOne(harness.AllInOne):
    def __init__(self, broker_args):
        super().__init__(extra=broker_args)


class AuthSplit(harness.Split):
    """The split tiers with extra arguments for the brokers only (harness's
    `extra` goes to the edges)."""

    def __init__(self, broker_args):
        super().__init__()
        self.broker_args = list(broker_args)

    def _spawn(self, name, argv, env=None):
        if name.startswith("broker-"):
            argv = argv + self.broker_args
        return super()._spawn(name, argv, env)


def broker_procs(dep):
    return [p for p in dep.procs if p.name in ("hawser",) or p.name.startswith("broker-")]


def paho(ep, cid, user, password, version=5):
    c = clients.Client(ep, cid, version=version)
    c.c.username_pw_set(user, password)
    c.connect(timeout=10)
    return c


def probe_split(dep, user, password):
    """Waits (deadline) until a publish from a session on each broker reaches
    a subscriber on each broker through different edges (the links are
    dialed in the background); conftest's probe, with credentials."""
    topic = f"user/{user}/probe{time.monotonic_ns()}"
    subs = [paho(dep.endpoint(b, "tcp"), dep.client_id("probe-sub", broker=b), user, password)
            for b in range(2)]
    pubs = [paho(dep.endpoint(1 - b, "tcp"), dep.client_id("probe-pub", broker=b), user, password)
            for b in range(2)]
    try:
        for s in subs:
            s.subscribe(topic + "/#", qos=1, timeout=10)
        deadline = time.monotonic() + 20
        for b, pub in enumerate(pubs):
            seen = [False, False]
            while not all(seen):
                if time.monotonic() > deadline:
                    raise harness.StartupError(f"split auth deployment: no cross-broker "
                                               f"delivery (seen={seen})\n" + dep.tails())
                pub.publish(f"{topic}/p{b}", b"probe", qos=0)
                for i, s in enumerate(subs):
                    try:
                        while not seen[i]:
                            seen[i] = s.msgq.get(timeout=0.5).topic == f"{topic}/p{b}"
                    except queue.Empty:
                        pass
    finally:
        for c in subs + pubs:
            c.close()


def start_deployment(kind, broker_args, probe=None, redis=None):
    if kind == "allinone-redis":
        dep = redis_fixture.RedisAllInOne(redis, extra=broker_args)
    elif kind == "split-redis":
        dep = redis_fixture.RedisSplit(redis, broker_extra=broker_args)
    else:
        dep = AuthAllInOne(broker_args) if kind == "allinone" else AuthSplit(broker_args)
    try:
        dep.start()
        if kind.startswith("split") and probe is not None:
            probe_split(dep, *probe)
    except BaseException:
        dep.stop()
        raise
    return dep


def stop_deployment(dep):
    was_dead = {p.name for p in dep.procs if not p.alive()}
    statuses = dep.stop()
    bad = [(n, rc) for n, rc in statuses if rc != 0 and n not in was_dead]
    assert not bad, f"auth deployment did not shut down cleanly: {bad}\n{dep.tails()}"
    assert not was_dead, f"processes died during the auth tests: {was_dead}\n{dep.tails()}"


class CallbackService:
    def __init__(self, tmp, config):
        path = os.path.join(tmp, "callback.json")
        with open(path, "w") as f:
            json.dump(config, f)
        self.proc = harness.Proc("callback", [sys.executable, CALLBACK_SERVER, "--config", path])
        _, text, _ = self.proc.wait_line(lambda t, _: t.startswith("LISTEN port="), 10,
                                         "LISTEN line")
        self.port = int(text.split("=")[1])
        self.base = f"http://127.0.0.1:{self.port}"

    def calls(self):
        with urllib.request.urlopen(self.base + "/calls", timeout=5) as r:
            return json.loads(r.read())

    def stop(self):
        self.proc.stop()


@pytest.fixture(scope="module")
def callback_service(tmp_path_factory):
    svc = CallbackService(str(tmp_path_factory.mktemp("auth-callback")), CALLBACK_CONFIG)
    yield svc
    svc.stop()


def auth_yaml(cb_port, dead_port):
    cb = f"http://127.0.0.1:{cb_port}"
    dead = f"http://127.0.0.1:{dead_port}/acl"
    lines = [
        "auth:",
        "  chain: [jwt, http]",
        "  acl_default: deny",
        "  listener_chains: {ws: [jwt]}",
        "  jwt:",
        "    alg: HS256",
        f"    key: {json.dumps(SECRET)}",
        "    leeway_s: 5",
        "    attr_claims: [tenant]",
        "    acl_claim: acl",
        "  http:",
        f"    url: {json.dumps(cb + '/auth')}",
        "    timeout_ms: 700",
        "    retries: 0",
        "    cache_ttl_ms: 60000",
        "    on_error: deny",
        "  callbacks:",
        f"    paid: {json.dumps({'url': cb + '/acl', 'timeout_ms': 3000, 'cache_ttl_ms': 60000})}",
        f"    down: {json.dumps({'url': dead, 'timeout_ms': 1000, 'retries': 0, 'on_error': 'deny'})}",
        f"    downopen: {json.dumps({'url': dead, 'timeout_ms': 1000, 'retries': 0, 'on_error': 'allow'})}",
        "  rules:",
    ] + [f"    - {json.dumps(r)}" for r in RULES]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module", params=STORE_KINDS)
def adep(request, callback_service, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"auth-{request.param}")
    conf = tmp / "hawser.yaml"
    conf.write_text(auth_yaml(callback_service.port, harness.free_port()))
    redis = None
    if request.param.endswith("-redis"):
        redis = redis_fixture.RedisServer().start()
    try:
        dep = start_deployment(request.param, ["-c", str(conf)], probe=("probe", "probe-pw"),
                               redis=redis)
        yield dep
        stop_deployment(dep)
    finally:
        if redis is not None:
            redis.cleanup()


@pytest.fixture
def raws(adep):
    made = []

    def make(version, edge=0):
        c = mqttraw.RawClient(adep.endpoint(edge, "tcp"), version=version)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def connack(make, version, cid, **kw):
    c = make(version)
    return c, c.handshake(cid, **kw).reason


OK = 0x00
BAD_CREDS = {4: 0x04, 5: 0x86}
NOT_AUTH = {4: 0x05, 5: 0x87}
VERSIONS = [4, 5]


# --- JWT ---------------------------------------------------------------------
JWT_CASES = {
    "valid": (lambda: token(), None),
    "expired": (lambda: token(exp_in=-3600), BAD_CREDS),
    "not_yet_valid": (lambda: token(nbf_in=3600), BAD_CREDS),
    "wrong_key": (lambda: token(key="another-secret-another-secret-0123"), BAD_CREDS),
    "wrong_alg_hs512": (lambda: token(alg="HS512"), BAD_CREDS),
    "wrong_alg_es256": (lambda: token(alg="ES256", key=es256_key()), BAD_CREDS),
    "alg_none": (lambda: token(alg="none", key=None), BAD_CREDS),
    "no_exp": (lambda: jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256"), BAD_CREDS),
    "malformed": (lambda: "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln", BAD_CREDS),
    "tampered": (lambda: token()[:-4] + "AAAA", BAD_CREDS),
}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", list(JWT_CASES))
def test_jwt_connack(adep, raws, version, case):
    make_token, refused = JWT_CASES[case]
    c, code = connack(raws, version, adep.client_id(f"jwt-{case}"), username="alice",
                      password=make_token())
    want = OK if refused is None else refused[version]
    assert code == want, f"{case} over {version}: CONNACK 0x{code:02x}, expected 0x{want:02x}"
    if refused is not None:
        c.wait_closed()  # a refused CONNECT is closed right after the CONNACK


@pytest.mark.parametrize("version", VERSIONS)
def test_jwt_in_password_then_packets_in_order(adep, raws, version):
    """CONNECT, SUBSCRIBE and PUBLISH sent back to back: the packets that
    arrive while the CONNECT is authenticated are handled after it, in order."""
    c = raws(version)
    t = f"user/alice/order{time.monotonic_ns()}"
    c.send(mqttraw.connect(adep.client_id("jwt-order"), version=version, username="x",
                           password=token()) +
           mqttraw.subscribe(1, [(t, 1)], version=version) +
           mqttraw.publish(t, b"hello", qos=1, pid=2, version=version))
    got = [c.recv() for _ in range(4)]
    kinds = [p.type for p in got]
    assert kinds[0] == mqttraw.CONNACK and got[0].reason == 0
    assert kinds[1] == mqttraw.SUBACK and got[1].codes == [1]
    rest = sorted(kinds[2:])
    # A second PUBLISH here (new packet id, no DUP) was the router offering
    # the message again to a broker that had delivered it already.
    assert rest == [mqttraw.PUBLISH, mqttraw.PUBACK], \
        f"{[(p, p.pid, p.dup) for p in got]}\n{adep.tails()}"


@pytest.mark.parametrize("version", VERSIONS)
def test_no_credentials_refused_without_anonymous(adep, raws, version):
    _, code = connack(raws, version, adep.client_id("anon"))
    assert code == NOT_AUTH[version]


@pytest.mark.parametrize("version", VERSIONS)
def test_will_topic_is_checked_by_the_acl(adep, raws, version):
    """A will is a publish like any other: one to another user's topic
    refuses the CONNECT (else it would bypass the ACL at disconnect)."""
    _, code = connack(raws, version, adep.client_id("will-bad"), username="alice",
                      password=token(), will={"topic": "user/bob/inbox", "payload": "x"})
    assert code == NOT_AUTH[version]
    _, code = connack(raws, version, adep.client_id("will-ok"), username="alice",
                      password=token(), will={"topic": "user/alice/gone", "payload": "x"})
    assert code == OK


@pytest.mark.parametrize("version", VERSIONS)
def test_listener_chain_ws_is_jwt_only(adep, version):
    """auth.listener_chains gives WebSocket clients their own chain (jwt):
    a JWT works there, the callback's users do not."""
    ws = mqttraw.RawClient(adep.endpoint(0, "ws"), version=version)
    try:
        assert ws.handshake(adep.client_id("ws-jwt"), username="alice",
                            password=token()).reason == OK
        ws.send(mqttraw.subscribe(1, [("user/bob/#", 1), ("user/alice/#", 1)], version=version))
        assert ws.recv().codes == [0x87 if version == 5 else 0x80, 1]
    finally:
        ws.close()
    ws = mqttraw.RawClient(adep.endpoint(0, "ws"), version=version)
    try:
        assert ws.handshake(adep.client_id("ws-cb"), username="carol",
                            password="carol-pw").reason == BAD_CREDS[version]
    finally:
        ws.close()


def test_v5_authentication_method_refused(adep, raws):
    _, code = connack(raws, 5, adep.client_id("method"), props=[(0x15, "SCRAM-SHA-1")])
    assert code == 0x8C


# --- HTTP CONNECT callback ---------------------------------------------------
CALLBACK_CASES = {
    "allow": ("carol", "carol-pw", None),
    "wrong_password": ("carol", "nope", NOT_AUTH),
    "deny": ("dave", "dave-pw", NOT_AUTH),
    "unknown_user": ("mallory", "x", NOT_AUTH),
    "service_error_500": ("broken", "broken-pw", NOT_AUTH),
}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", list(CALLBACK_CASES))
def test_callback_connack(adep, raws, version, case):
    user, pw, refused = CALLBACK_CASES[case]
    _, code = connack(raws, version, adep.client_id(f"cb-{case}"), username=user, password=pw)
    want = OK if refused is None else refused[version]
    assert code == want, f"{case} over {version}: CONNACK 0x{code:02x}, expected 0x{want:02x}"


@pytest.mark.parametrize("version", VERSIONS)
def test_callback_timeout_denies_and_blocks_no_one_else(adep, raws, version):
    """The service answers `slow` after 3 s, past timeout_ms (700): the CONNECT
    is refused as with the service down; meanwhile other clients are served."""
    slow = raws(version)
    started = time.monotonic()
    slow.send(mqttraw.connect(adep.client_id("cb-slow"), version=version, username="slow",
                              password="slow-pw"))
    other = raws(version)
    assert other.handshake(adep.client_id("cb-other"), username="carol",
                           password="carol-pw").reason == 0
    t = "user/u-carol/x"
    other.send(mqttraw.publish(t, b"p", qos=1, pid=7, version=version))
    ack = other.recv()
    assert ack.type == mqttraw.PUBACK and ack.pid == 7
    # The other client was served while the slow CONNECT still waited (its
    # answer is due only at the 700 ms timeout).
    assert not select.select([slow.sock], [], [], 0)[0] and not slow.stream, \
        "the slow CONNECT was answered before another client was served"
    pkt = slow.recv(timeout=5)
    assert pkt.type == mqttraw.CONNACK and pkt.reason == NOT_AUTH[version], pkt
    assert time.monotonic() - started >= 0.6, "answered before the callback timeout"


def test_callback_cache_hit(adep, raws, callback_service):
    """The same credentials (client id, user, password, listener) again within
    cache_ttl_ms: the service sees one call."""
    cid = adep.client_id("cb-cached")
    before = callback_service.calls()["auth"]
    for _ in range(3):
        c = raws(5)
        assert c.handshake(cid, username="cached", password="cached-pw").reason == 0
        c.send(mqttraw.disconnect(5))
        c.wait_closed()
    assert callback_service.calls()["auth"] - before == 1
    # Other credentials are another call.
    c = raws(5)
    assert c.handshake(adep.client_id("cb-cached2"), username="cached",
                       password="cached-pw").reason == 0
    assert callback_service.calls()["auth"] - before == 2


def test_acl_callback_cache_hit(adep, raws, callback_service):
    c = raws(5)
    assert c.handshake(adep.client_id("acl-cache"), username="x", password=token()).reason == 0
    topic = f"live/ok{time.monotonic_ns()}/video"
    before = callback_service.calls()["acl"]
    for pid in (1, 2, 3):
        c.send(mqttraw.subscribe(pid, [(topic, 1)], version=5))
        ack = c.recv()
        assert ack.type == mqttraw.SUBACK and ack.pid == pid and ack.codes == [1]
    assert callback_service.calls()["acl"] - before == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_subscribe_mixing_delegated_and_local_verdicts(adep, raws, version):
    """One SUBSCRIBE whose filters are decided partly by callbacks (two at
    once) and partly by local rules: one SUBACK, codes in filter order, and a
    PUBLISH sent right behind it is answered after it."""
    deny = 0x87 if version == 5 else 0x80
    n = time.monotonic_ns()
    c = raws(version)
    assert c.handshake(adep.client_id("mix"), username="x", password=token()).reason == 0
    c.send(mqttraw.subscribe(1, [(f"live/ok{n}/video", 1), ("user/bob/#", 1),
                                 (f"live/no{n}/video", 1), ("user/alice/#", 2)],
                             version=version) +
           mqttraw.publish("user/alice/mix", b"m", qos=1, pid=2, version=version))
    first = c.recv()
    assert first.type == mqttraw.SUBACK and first.pid == 1, first
    assert first.codes == [1, deny, deny, 2]
    seen = set()
    while seen != {mqttraw.PUBACK, mqttraw.PUBLISH}:
        seen.add(c.recv().type)


def test_acl_callback_down(adep, raws):
    """A delegated callback that cannot be reached: on_error decides."""
    c = raws(5)
    assert c.handshake(adep.client_id("acl-down"), username="x", password=token()).reason == 0
    c.send(mqttraw.subscribe(1, [("down/1", 1)], version=5) +
           mqttraw.subscribe(2, [("downopen/1", 1)], version=5))
    a, b = c.recv(), c.recv()
    assert (a.pid, a.codes) == (1, [0x87])
    assert (b.pid, b.codes) == (2, [1])


# --- ACL table -----------------------------------------------------------------
# (user, action, topic, qos, retain, expected): subscribe expects the QoS
# granted or DENY; publish ALLOW or DENY. "{cid}" is the client's own id.
DENY, ALLOW = "deny", "allow"
ACL_TABLE = [
    # alice (JWT, tenant acme): her own tree
    ("alice", "sub", "user/alice/#", 1, False, 1),
    ("alice", "sub", "user/alice/inbox", 2, False, 2),
    ("alice", "sub", "user/alice/+/x", 1, False, 1),
    ("alice", "sub", "user/alice/private/x", 1, False, 1),
    # ... and the bypass attempts
    ("alice", "sub", "user/+/inbox", 1, False, DENY),
    ("alice", "sub", "user/#", 1, False, DENY),
    ("alice", "sub", "#", 1, False, DENY),
    ("alice", "sub", "+/bob/#", 1, False, DENY),
    ("alice", "sub", "+/alice/#", 1, False, DENY),
    ("alice", "sub", "+/+/inbox", 1, False, DENY),
    ("alice", "sub", "user/bob/inbox", 1, False, DENY),
    ("alice", "sub", "$SYS/#", 0, False, DENY),
    ("alice", "sub", "$SYS/broker/load", 0, False, DENY),
    ("alice", "sub", "+/broker/load", 0, False, DENY),
    # attributes, QoS caps, delegation
    ("alice", "sub", "tenant/acme/broadcast", 2, False, 1),
    ("alice", "sub", "tenant/globex/broadcast", 1, False, DENY),
    ("alice", "sub", "tenant/+/broadcast", 1, False, DENY),
    ("alice", "sub", "live/5/chat", 1, False, 0),
    ("alice", "sub", "live/+/chat", 2, False, 0),
    ("alice", "sub", "live/ok1/video", 1, False, 1),
    ("alice", "sub", "live/9/video", 1, False, DENY),
    ("alice", "sub", "live/vip/video", 1, False, 1),
    ("alice", "sub", "live/#", 1, False, DENY),
    ("alice", "sub", "live/+/video", 1, False, DENY),
    ("alice", "sub", "public/news", 1, False, 1),
    ("alice", "sub", "public/#", 1, False, DENY),
    ("alice", "sub", "public/secret/x", 1, False, DENY),
    ("alice", "sub", "device/{cid}/temp", 1, False, DENY),
    ("alice", "pub", "user/alice/x", 1, False, ALLOW),
    ("alice", "pub", "user/alice/x", 0, False, ALLOW),
    ("alice", "pub", "user/alice/private/x", 1, False, DENY),
    ("alice", "pub", "user/bob/x", 1, False, DENY),
    ("alice", "pub", "user/bob/x", 0, False, DENY),
    ("alice", "pub", "device/{cid}/temp", 1, False, ALLOW),
    ("alice", "pub", "device/{cid}/temp", 1, True, DENY),
    ("alice", "pub", "device/{cid}/temp", 2, False, DENY),
    ("alice", "pub", "device/other/temp", 1, False, DENY),
    ("alice", "pub", "live/5/chat", 1, False, DENY),
    ("alice", "pub", "live/5/chat", 0, False, ALLOW),
    ("alice", "pub", "$SYS/broker/load", 1, False, DENY),
    ("alice", "pub", "pay/ok/in", 1, False, ALLOW),
    ("alice", "pub", "pay/no/in", 1, False, DENY),
    ("alice", "pub", "user/alice/after-delegation", 1, False, ALLOW),
    ("alice", "pub", "public/news", 1, False, DENY),
    ("alice", "pub", "tenant/acme/broadcast", 1, False, DENY),
    # bob (JWT, tenant globex)
    ("bob", "sub", "user/bob/#", 1, False, 1),
    ("bob", "sub", "user/alice/#", 1, False, DENY),
    ("bob", "sub", "tenant/globex/broadcast", 1, False, 1),
    ("bob", "sub", "tenant/acme/broadcast", 1, False, DENY),
    ("bob", "sub", "live/vip/video", 1, False, DENY),
    ("bob", "pub", "user/alice/inbox", 1, False, DENY),
    ("bob", "pub", "user/bob/x", 1, False, ALLOW),
    # carol (callback; the service names her u-carol, no tenant)
    ("carol", "sub", "user/u-carol/#", 1, False, 1),
    ("carol", "sub", "user/carol/#", 1, False, DENY),
    ("carol", "sub", "tenant/acme/broadcast", 1, False, DENY),
    ("carol", "pub", "user/u-carol/x", 1, False, ALLOW),
    ("carol", "pub", "user/carol/x", 1, False, DENY),
]

CREDENTIALS = {
    "alice": lambda: ("alice", token("alice", tenant="acme")),
    "bob": lambda: ("bob", token("bob", tenant="globex")),
    "carol": lambda: ("carol", "carol-pw"),
}


def _sniffer(adep, version_tag):
    """An admin client (per-client rules from the callback: # and $SYS/#)
    that sees every delivered publish."""
    s = mqttraw.RawClient(adep.endpoint(len(adep.edges) - 1, "tcp"), version=5)
    assert s.handshake(adep.client_id(f"sniff-{version_tag}", broker=1), username="admin",
                       password="admin-pw").reason == 0
    s.send(mqttraw.subscribe(1, [("#", 1), ("$SYS/#", 1)], version=5))
    ack = s.recv()
    assert ack.type == mqttraw.SUBACK and ack.codes == [1, 1], ack
    return s


@pytest.mark.parametrize("version", VERSIONS)
def test_acl_table(adep, version):
    """Every case through a real client: SUBACK codes, PUBACK codes (v5), and
    that denied publishes are never delivered (a sniffer subscribed to
    everything sees exactly the allowed ones). Each user's packets are sent
    back to back, so those that arrive while a delegated check waits for the
    callback are held and answered in order."""
    assert len(ACL_TABLE) >= 40
    run = f"r{version}-{time.monotonic_ns()}"
    sniffer = _sniffer(adep, run)
    conns, failures, expected = [], [], set()
    try:
        for user in ("alice", "bob", "carol"):
            name, pw = CREDENTIALS[user]()
            c = mqttraw.RawClient(adep.endpoint(0, "tcp"), version=version)
            conns.append(c)
            cid = adep.client_id(f"acl-{user}", broker=0)
            assert c.handshake(cid, username=name, password=pw).reason == 0, user
            out, want = [], {}  # packet bytes; pid -> (case, expected ack)
            pid = 0
            for i, (u, action, topic, qos, retain, exp) in enumerate(ACL_TABLE):
                if u != user:
                    continue
                topic = topic.replace("{cid}", cid)
                pid += 1
                case = (u, action, topic, qos, retain, exp)
                if action == "sub":
                    out.append(mqttraw.subscribe(pid, [(topic, qos)], version=version))
                    code = exp if exp != DENY else (0x87 if version == 5 else 0x80)
                    want[pid] = (case, mqttraw.SUBACK, code)
                    continue
                payload = f"{run}:{i}".encode()
                out.append(mqttraw.publish(topic, payload, qos=qos, retain=retain, pid=pid,
                                           version=version))
                if exp == ALLOW:
                    expected.add(payload)
                if qos == 1:
                    code = 0x87 if exp == DENY and version == 5 else None
                    want[pid] = (case, mqttraw.PUBACK, code)
                elif qos == 2:
                    code = 0x87 if exp == DENY and version == 5 else None
                    want[pid] = (case, mqttraw.PUBREC, code)
            sentinel = f"{run}:end-{user}".encode()
            own = CREDENTIALS[user]()[0] if user != "carol" else "u-carol"
            pid += 1
            out.append(mqttraw.publish(f"user/{own}/end", sentinel, qos=1, pid=pid,
                                       version=version))
            want[pid] = (("sentinel",), mqttraw.PUBACK, None)
            expected.add(sentinel)
            c.send(b"".join(out))
            order = []
            while len(order) < len(want):
                p = c.recv(timeout=10)
                if p.type == mqttraw.PUBLISH:  # her own publishes, delivered back
                    if p.qos:
                        c.send(mqttraw.puback(p.pid, version))
                    continue
                if p.type == mqttraw.PUBREC:
                    c.send(mqttraw.packet(mqttraw.PUBREL, 2, p.pid.to_bytes(2, "big")))
                if p.type == mqttraw.PUBCOMP:
                    continue
                order.append(p.pid)
                case, kind, code = want[p.pid]
                got = p.codes[0] if kind == mqttraw.SUBACK else p.reason
                if p.type != kind or (code is not None and got != code) or \
                        (code is None and kind != mqttraw.SUBACK and got is not None and got >= 0x80):
                    failures.append(f"{case}: got {p!r} codes={getattr(p, 'codes', None)}, "
                                    f"expected type {kind} code {code}")
            # SUBACKs keep the order of the SUBSCRIBEs, delegated or not
            # (PUBACKs of allowed QoS 1 publishes wait for the router, so a
            # denial may overtake them).
            subs = [p for p in order if want[p][1] == mqttraw.SUBACK]
            assert subs == sorted(subs), f"{user}: SUBACKs out of order {subs}"
        # Every allowed publish arrives; nothing else does (each publisher's
        # sentinel comes after all its earlier publishes).
        seen = set()
        ends = {p for p in expected if b":end-" in p}
        while not ends <= seen:
            p = sniffer.recv(timeout=10)
            if p.type == mqttraw.PUBLISH and p.payload.startswith(run.encode()):
                seen.add(bytes(p.payload))
                if p.qos:
                    sniffer.send(mqttraw.puback(p.pid, 5))
        unexpected = seen - expected
        missing = expected - seen
        if unexpected:
            failures.append("denied publishes delivered: " + ", ".join(
                str(ACL_TABLE[int(x.split(b":")[1])]) for x in unexpected))
        if missing:
            failures.append("allowed publishes not delivered: " + ", ".join(
                str(ACL_TABLE[int(x.split(b":")[1])]) if b"end-" not in x else x.decode()
                for x in missing))
    finally:
        for c in conns + [sniffer]:
            c.close()
    assert not failures, f"{len(failures)} ACL case(s) failed:\n" + "\n".join(failures)

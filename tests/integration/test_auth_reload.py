"""Auth configuration reloaded on SIGHUP without dropping connections, the
password file method, a CONNECT callback service that is down, and
--check-config on the auth section; all-in-one and split deployments.

The deployment reads its auth section from a YAML file (-c): the test
rewrites the file, sends SIGHUP to every broker process (the `hawser`
process in the all-in-one) and waits for each one's BRK-AUTH-RELOAD log
line before using the new rules.
"""

import base64
import hashlib
import json
import os
import signal

import pytest

import harness
import mqttraw
from test_auth import KINDS, start_deployment, stop_deployment

pytestmark = pytest.mark.hawser_only

USERS = {"rita": "rita-pw", "sam": "sam-pw"}


def passwd_line(user, password, iterations=1000):
    salt = os.urandom(16)
    h = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations, 32)
    return "%s:$pbkdf2-sha256$%d$%s$%s" % (user, iterations, base64.b64encode(salt).decode(),
                                           base64.b64encode(h).decode())


def config_text(passwd, dead_url, rules):
    lines = [
        "auth:",
        "  chain: [file, http]",
        "  acl_default: deny",
        "  file:",
        f"    path: {json.dumps(passwd)}",
        "  http:",
        f"    url: {json.dumps(dead_url)}",
        "    timeout_ms: 1000",
        "    retries: 0",
        "    on_error: deny",
        "  rules:",
    ] + [f"    - {json.dumps(r)}" for r in rules]
    return "\n".join(lines) + "\n"


class Reloadable:
    def __init__(self, kind, tmp):
        self.passwd = str(tmp / "passwd")
        with open(self.passwd, "w") as f:
            f.write("# test users\n" + "".join(passwd_line(u, p) + "\n" for u, p in USERS.items()))
        self.conf = tmp / "hawser.yaml"
        self.dead = f"http://127.0.0.1:{harness.free_port()}/auth"
        self.write([{"topic": "room/a/#"}, {"topic": "probe/#"}])
        self.dep = start_deployment(kind, ["-c", str(self.conf)], probe=None)
        self.brokers = [p for p in self.dep.procs
                        if p.name == "hawser" or p.name.startswith("broker-")]

    def write(self, rules):
        self.conf.write_text(config_text(self.passwd, self.dead, rules))

    def sighup(self, pred, what):
        """Sends SIGHUP to every broker process and waits for its
        BRK-AUTH-RELOAD line matching pred(msg)."""
        marks = [len(p.lines) for p in self.brokers]
        for p in self.brokers:
            p.popen.send_signal(signal.SIGHUP)
        for p, mark in zip(self.brokers, marks):
            p.wait_line(lambda t, j: j is not None and j.get("id") == "BRK-AUTH-RELOAD" and
                        pred(j.get("msg", "")), 10, what, start=mark)


@pytest.fixture(scope="module", params=KINDS)
def rdep(request, tmp_path_factory):
    r = Reloadable(request.param, tmp_path_factory.mktemp(f"auth-reload-{request.param}"))
    yield r
    stop_deployment(r.dep)


def login(rdep, version, user="rita", edge=0):
    c = mqttraw.RawClient(rdep.dep.endpoint(edge, "tcp"), version=version)
    ack = c.handshake(rdep.dep.client_id(f"rl-{user}"), username=user, password=USERS[user])
    assert ack.reason == 0, ack
    return c


def suback(c, pid, topic, version):
    c.send(mqttraw.subscribe(pid, [(topic, 1)], version=version))
    while True:
        p = c.recv()
        if p.type == mqttraw.SUBACK:
            assert p.pid == pid
            return p.codes[0]


@pytest.mark.parametrize("version", [4, 5])
def test_password_file_and_service_down(rdep, version):
    deny_creds = 0x86 if version == 5 else 0x04
    not_auth = 0x87 if version == 5 else 0x05
    login(rdep, version).close()
    c = mqttraw.RawClient(rdep.dep.endpoint(0, "tcp"), version=version)
    assert c.handshake(rdep.dep.client_id("rl-bad"), username="rita",
                       password="wrong").reason == deny_creds
    c.close()
    # Not in the file: the chain goes on to the callback, whose service is
    # down (nothing listens): on_error deny.
    c = mqttraw.RawClient(rdep.dep.endpoint(0, "tcp"), version=version)
    assert c.handshake(rdep.dep.client_id("rl-down"), username="zoe",
                       password="x").reason == not_auth
    c.close()


def test_sighup_reload_applies_to_new_subscriptions_without_dropping(rdep):
    denied = 0x87
    c = login(rdep, 5)
    other = login(rdep, 4, user="sam", edge=1)
    try:
        assert suback(c, 1, "room/a/x", 5) == 1
        assert suback(c, 2, "room/b/x", 5) == denied
        assert suback(other, 1, "room/b/x", 4) == 0x80

        rdep.write([{"topic": "room/b/#"}, {"topic": "probe/#"}])
        rdep.sighup(lambda m: "reloaded" in m, "BRK-AUTH-RELOAD reloaded")
        # The same connections, new rules.
        assert suback(c, 3, "room/b/x", 5) == 1
        assert suback(c, 4, "room/a/y", 5) == denied
        assert suback(other, 2, "room/b/x", 4) == 1

        # A bad file is refused, naming the rule; the running rules stay.
        rdep.write([{"topic": "room/c/#/x"}])
        rdep.sighup(lambda m: "rejected" in m and "auth.rules: rule" in m and "room/c/#/x" in m,
                    "BRK-AUTH-RELOAD rejected naming the rule")
        assert suback(c, 5, "room/b/z", 5) == 1
        assert suback(c, 6, "room/c/z", 5) == denied

        # Both connections stayed up throughout: their session still works
        # end to end (the subscription made before the reload delivers).
        c.send(mqttraw.publish("room/b/x", b"after", qos=1, pid=9, version=5))
        got = {}
        while "puback" not in got or "pub" not in got:
            p = c.recv()
            if p.type == mqttraw.PUBACK and p.pid == 9:
                got["puback"] = p.reason
            elif p.type == mqttraw.PUBLISH and p.topic == "room/b/x":
                got["pub"] = p.payload
                c.send(mqttraw.puback(p.pid, 5))
        assert got["puback"] < 0x80 and got["pub"] == b"after"
        while True:
            p = other.recv()
            if p.type == mqttraw.PUBLISH:
                assert (p.topic, p.payload) == ("room/b/x", b"after")
                break
    finally:
        rdep.write([{"topic": "room/a/#"}, {"topic": "probe/#"}])
        rdep.sighup(lambda m: "reloaded" in m, "BRK-AUTH-RELOAD reloaded (restore)")
        c.close()
        other.close()
    assert not rdep.dep.dead()


@pytest.mark.parametrize("binary", ["hawser", "hawser-broker"])
def test_check_config_validates_auth_rules(tmp_path, binary):
    conf = tmp_path / "bad.yaml"
    conf.write_text(config_text("", "http://127.0.0.1:1/auth", [{"topic": "a/#/b"}])
                    .replace("  chain: [file, http]\n", "  chain: [http]\n")
                    .replace('    path: ""\n', "").replace("  file:\n", ""))
    r = harness.run_cli(binary, ["-c", str(conf), "--check-config"])
    assert r.returncode == 2, r
    assert "auth.rules" in r.stderr and "a/#/b" in r.stderr, r.stderr
    conf.write_text(conf.read_text().replace("a/#/b", "a/+/b"))
    r = harness.run_cli(binary, ["-c", str(conf), "--check-config"])
    assert r.returncode == 0 and "config ok" in r.stdout, r

"""Third-party clients end to end: mosquitto_sub/mosquitto_pub (the command
line tools of the issue) and MQTT.js over WebSocket (the browser client)."""

import os
import queue
import shutil
import subprocess
import threading

import pytest

import harness

JS_DIR = os.path.join(harness.ROOT, "tests", "js")


def _tool(name):
    path = shutil.which(name)
    if path is None:
        raise AssertionError(f"{name} is not installed: run scripts/deps.sh (mosquitto-clients)")
    return path


def _lines(proc):
    """A queue fed with proc's stdout lines by a thread (None at EOF)."""
    q = queue.Queue()

    def pump():
        for line in iter(proc.stdout.readline, ""):
            q.put(line.rstrip("\n"))
        q.put(None)
    threading.Thread(target=pump, daemon=True).start()
    return q


def _get(q, timeout, what, proc):
    try:
        line = q.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"{what}: nothing within {timeout} s") from None
    if line is None:
        proc.wait(timeout=5)
        raise AssertionError(f"{what}: process exited ({proc.returncode}): {proc.stderr.read()}")
    return line


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_mosquitto_sub_and_pub(deployment, version):
    # The scenario: mosquitto_sub -t 'chat/#' -q 1, then
    # mosquitto_pub -t chat/room1 -m hi -q 1 (on another edge when split).
    sub_ep = deployment.endpoint(1, "tcp")
    pub_ep = deployment.endpoint(0, "tcp")
    base = f"chat{os.getpid()}{version}"
    # stdbuf: mosquitto_sub's -d lines are stdio-buffered on a pipe.
    sub = subprocess.Popen(
        [_tool("stdbuf"), "-oL", _tool("mosquitto_sub"), "-h", "127.0.0.1", "-p", str(sub_ep.port), "-V", version,
         "-t", f"{base}/#", "-q", "1", "-v", "-d", "-i", deployment.client_id("msub", broker=1)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out = _lines(sub)
        # -d prints the SUBACK; wait for it before publishing.
        line = _get(out, 10, "mosquitto_sub SUBACK", sub)
        while "SUBACK" not in line:
            line = _get(out, 10, "mosquitto_sub SUBACK", sub)
        pub = subprocess.run(
            [_tool("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(pub_ep.port), "-V", version,
             "-t", f"{base}/room1", "-m", "hi", "-q", "1", "-i", deployment.client_id("mpub", broker=0)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=15)
        assert pub.returncode == 0, f"mosquitto_pub failed ({pub.returncode}): {pub.stderr}"
        line = _get(out, 10, "message at mosquitto_sub", sub)
        while not line.startswith(f"{base}/room1"):
            line = _get(out, 10, "message at mosquitto_sub", sub)
        assert line == f"{base}/room1 hi"
    finally:
        sub.terminate()
        sub.wait(timeout=5)


def test_mosquitto_pub_retained_then_sub_one_shot(deployment):
    ep = deployment.endpoint(0, "tcp")
    t = f"state{os.getpid()}/lamp"
    pub = subprocess.run([_tool("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(ep.port),
                          "-t", t, "-m", "on", "-q", "1", "-r"],
                         capture_output=True, text=True, timeout=15)
    assert pub.returncode == 0, pub.stderr
    # -C 1: exit after one message; -W: give up after 10 s (non-zero exit).
    sub = subprocess.run([_tool("mosquitto_sub"), "-h", "127.0.0.1",
                          "-p", str(deployment.endpoint(1, "tcp").port),
                          "-t", t, "-q", "1", "-C", "1", "-W", "10", "-v"],
                         capture_output=True, text=True, timeout=20)
    assert sub.returncode == 0, f"mosquitto_sub: {sub.returncode} {sub.stderr}"
    assert sub.stdout.strip() == f"{t} on"
    subprocess.run([_tool("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(ep.port),
                    "-t", t, "-n", "-q", "1", "-r"], capture_output=True, timeout=15, check=True)


@pytest.mark.parametrize("version", ["4", "5"])
def test_mqttjs_over_websocket(deployment, version):
    import clients
    node = shutil.which("node")
    assert node, "node is not installed: run scripts/deps.sh"
    assert os.path.isdir(os.path.join(JS_DIR, "node_modules", "mqtt")), \
        "tests/js/node_modules/mqtt missing: run scripts/deps.sh"
    ws = deployment.endpoint(0, "ws")
    topic = f"js{os.getpid()}v{version}"
    watcher = clients.Client(deployment.endpoint(1, "tcp"), deployment.client_id("watch", broker=1))
    watcher.connect()
    js = None
    try:
        watcher.subscribe(f"{topic}/from-js", qos=1)
        js = subprocess.Popen([node, os.path.join(JS_DIR, "roundtrip.mjs"),
                               f"ws://127.0.0.1:{ws.port}/mqtt", topic, version],
                              cwd=JS_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        out = _lines(js)
        assert _get(out, 15, "MQTT.js READY (its own QoS 1 round trip)", js) == "READY"
        pub = clients.Client(deployment.endpoint(1, "ws"), deployment.client_id("pahopub", broker=0))
        pub.connect()
        pub.publish(f"{topic}/from-paho", b"hello from paho", qos=1)
        pub.close()
        assert _get(out, 10, "MQTT.js received the Paho message", js) == "GOT hello from paho"
        m = watcher.expect(what="MQTT.js publish at a Paho subscriber")
        assert m.payload == b"hello from MQTT.js"
        assert js.wait(timeout=10) == 0, js.stderr.read()
    finally:
        watcher.close()
        if js is not None and js.poll() is None:
            js.kill()
            js.wait(timeout=5)

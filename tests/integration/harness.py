"""Processes and deployments for the integration suite.

A Proc runs one binary with its stdout/stderr read by one thread each; every
line is kept, JSON lines are parsed, and callers wait for a line matching a
predicate with a deadline (a condition variable, never a sleep).

A Deployment is a set of Procs that together serve MQTT: the all-in-one
`hawser`, the split tiers (1 router, 2 brokers, 2 edges), or, only when the
developer asks for it with HAWSER_TEST_TARGET=mosquitto, a Mosquitto broker
used to check the suite's own logic against a reference implementation.
"""

import collections
import dataclasses
import json
import os
import random
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN_DIR = os.environ.get("HAWSER_BIN_DIR", os.path.join(ROOT, "build", "bin"))
TARGET = os.environ.get("HAWSER_TEST_TARGET", "hawser")
STARTUP_TIMEOUT = 15.0
MAX_PACKET_SIZE = 65536  # configured on every gateway the suite starts


class StartupError(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    transport: str  # "tcp" | "ws"
    path: str = "/mqtt"

    def url(self):
        if self.transport == "ws":
            return f"ws://{self.host}:{self.port}{self.path}"
        return f"mqtt://{self.host}:{self.port}"


@dataclasses.dataclass
class EdgeInfo:
    mqtt: int
    ws: int
    http: int | None  # None: no HTTP (mosquitto)


def _ephemeral_low():
    """The first port of the kernel's ephemeral range (outgoing connections
    take their local port from it)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_handed_out = collections.deque(maxlen=256)


def free_ports(n):
    """n distinct TCP ports that were free a moment ago on 127.0.0.1, for NNG
    inbox URLs, which peers must know before the process starts. They are
    taken below the ephemeral range: a port from it could become the local
    port of some process's outgoing connection (a tier dialling another)
    between this choice and the listener's bind ("Address in use", seen in
    CI), while a port below it is only ever taken by a bind. Ports handed
    out lately are not handed out again (their listener may not be up yet)."""
    low, high = 10000, _ephemeral_low() - 1
    socks, ports = [], []
    try:
        while len(ports) < n:
            # An ephemeral range that starts low leaves no room: the kernel's pick.
            port = random.randint(low, high) if high - low >= 1000 else 0
            if port in _handed_out:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # taken (or in TIME_WAIT): try another
                s.close()
                continue
            port = s.getsockname()[1]
            socks.append(s)
            ports.append(port)
            _handed_out.append(port)
    finally:
        for s in socks:
            s.close()
    return ports


def free_port():
    return free_ports(1)[0]


def binary(name):
    path = os.path.join(BIN_DIR, name)
    if not os.access(path, os.X_OK):
        raise StartupError(f"{path} is missing or not executable: run scripts/build.sh")
    return path


class Proc:
    """One child process whose output lines are collected by reader threads."""

    def __init__(self, name, argv, env=None, cwd=None):
        self.name = name
        self.argv = argv
        self.lines = []  # (stream, raw text, parsed JSON or None)
        self.cond = threading.Condition()
        self._open_streams = 2
        full_env = dict(os.environ)
        for k in list(full_env):
            if k.startswith("HAWSER_") and k not in ("HAWSER_BIN_DIR", "HAWSER_TEST_TARGET"):
                del full_env[k]  # a developer's shell must not change the suite
        full_env.pop("HAWSER_BIN_DIR", None)
        full_env.pop("HAWSER_TEST_TARGET", None)
        full_env.update(env or {})
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=full_env, cwd=cwd, start_new_session=True)
        self._threads = [
            threading.Thread(target=self._reader, args=("stdout", self.popen.stdout), daemon=True),
            threading.Thread(target=self._reader, args=("stderr", self.popen.stderr), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _reader(self, stream, f):
        for raw in iter(f.readline, b""):
            text = raw.decode(errors="replace").rstrip("\n")
            parsed = None
            if text.startswith("{"):
                try:
                    parsed = json.loads(text)
                except ValueError:
                    parsed = None
            with self.cond:
                self.lines.append((stream, text, parsed))
                self.cond.notify_all()
        with self.cond:
            self._open_streams -= 1
            self.cond.notify_all()

    def wait_line(self, pred, timeout, what, start=0):
        """Waits for a line (from index start) with pred(text, parsed) true.
        Returns (index, text, parsed). Raises StartupError on exit or deadline."""
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    _, text, parsed = self.lines[i]
                    if pred(text, parsed):
                        return i, text, parsed
                    i += 1
                if self._open_streams == 0:
                    self.popen.wait(timeout=5)
                    raise StartupError(
                        f"{self.name} exited (status {self.popen.returncode}) before {what}\n"
                        + self.tail())
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StartupError(f"{self.name}: no {what} within {timeout:.0f} s\n" + self.tail())
                self.cond.wait(left)

    def wait_id(self, log_id, timeout=STARTUP_TIMEOUT, start=0):
        return self.wait_line(lambda t, p: p is not None and p.get("id") == log_id,
                              timeout, f"log line {log_id}", start)

    def lines_with_id(self, log_id, upto=None):
        with self.cond:
            lines = self.lines[:upto] if upto is not None else list(self.lines)
        return [p for _, _, p in lines if p is not None and p.get("id") == log_id]

    def alive(self):
        return self.popen.poll() is None

    def tail(self, n=40):
        with self.cond:
            lines = self.lines[-n:]
        body = "\n".join(f"    {s}: {t}" for s, t, _ in lines) or "    (no output)"
        return f"--- last {len(lines)} output lines of {self.name} ({' '.join(self.argv)}):\n{body}"

    def stop(self, timeout=10.0):
        """SIGTERM, wait, then SIGKILL. Returns the exit status."""
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        for t in self._threads:
            t.join(timeout=5)
        return self.popen.returncode


def run_cli(name, args, env=None, timeout=20.0):
    """Runs a binary to completion; returns CompletedProcess (text)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HAWSER_")}
    full_env.update(env or {})
    return subprocess.run([binary(name)] + list(args), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=full_env, timeout=timeout)


# --- slot ownership, mirrored from libs/core/slot.c ---------------------------
M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF
HW_SLOTS = 1024


def _fmix32(h):
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    h ^= h >> 16
    return h


def _fmix64(k):
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & M64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & M64
    k ^= k >> 33
    return k


def slot_of(client_id):
    h = 2166136261
    for b in client_id.encode():
        h ^= b
        h = (h * 16777619) & M32
    return _fmix32(h) % HW_SLOTS


def slot_owner(slot, members):
    best, best_w = -1, 0
    for i, m in enumerate(members):
        h = 14695981039346656037
        for b in m.encode():
            h ^= b
            h = (h * 1099511628211) & M64
        w = _fmix64(h ^ _fmix64((slot + 0x9E3779B97F4A7C15) & M64))
        if best < 0 or w > best_w or (w == best_w and m < members[best]):
            best, best_w = i, w
    return best


# --- deployments ---------------------------------------------------------------
class Deployment:
    name = "?"

    def __init__(self, extra=None):
        self.extra = list(extra or [])  # more --set flags for every process
        self.procs = []
        self.edges = []
        self.brokers = []  # broker member URLs (split only)
        self.tier_http = {}  # process name -> HTTP port of brokers/routers (split only)
        self.tmp = tempfile.mkdtemp(prefix=f"hawser-it-{self.name}-")
        self._ids = 0

    def endpoint(self, edge, transport):
        e = self.edges[edge % len(self.edges)]
        return Endpoint("127.0.0.1", e.mqtt if transport == "tcp" else e.ws, transport)

    def http_base(self, edge=0):
        port = self.edges[edge].http
        return None if port is None else f"http://127.0.0.1:{port}"

    def client_id(self, prefix, broker=None):
        """A fresh client id; in the split deployment, one whose session is
        owned by broker index `broker` (None: any)."""
        while True:
            self._ids += 1
            cid = f"{prefix}-{os.getpid()}-{self._ids}"
            if broker is None or not self.brokers:
                return cid
            if slot_owner(slot_of(cid), self.brokers) == broker % len(self.brokers):
                return cid

    def dead(self):
        """Descriptions of processes that are no longer running."""
        return [f"{p.name} exited with status {p.popen.returncode}\n{p.tail()}"
                for p in self.procs if not p.alive()]

    def tails(self):
        return "\n".join(p.tail() for p in self.procs)

    def stop(self):
        """Stops every process (edges first); returns [(name, exit status)]
        (-9: it ignored SIGTERM and was killed)."""
        return [(p.name, p.stop()) for p in reversed(self.procs)]

    def _spawn(self, name, argv, env=None):
        p = Proc(name, argv, env=env)
        self.procs.append(p)
        return p


def start(dep):
    """dep.start(), stopping whatever it started if that fails; returns dep."""
    try:
        return dep.start()
    except BaseException:
        dep.stop()
        raise


def read_http_port(proc, listen_id, ready_id):
    """Waits for proc's `ready_id` line and returns the http_port its
    `listen_id` line (RTR-LISTEN, BRK-LISTEN) announced before it."""
    idx, _, _ = proc.wait_id(ready_id)
    for p in proc.lines_with_id(listen_id, upto=idx + 1):
        m = re.search(r"http_port=(-?\d+)", p.get("msg", ""))
        if m:
            return int(m.group(1))
    raise StartupError(f"{proc.name}: no {listen_id} line with http_port before {ready_id}\n{proc.tail()}")


def metric_sum(base, name):
    """Sum of every sample of metric `name` (any labels) on base + /metrics,
    base being http://host:port."""
    import urllib.request
    with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _common_sets(node):
    return ["--set", f"node.id={node}", "--set", "log.level=info"]


def _edge_sets():
    return ["--set", "edge.mqtt_listen=127.0.0.1:0", "--set", "edge.ws_listen=127.0.0.1:0",
            "--set", "edge.http_listen=127.0.0.1:0",
            "--set", f"edge.max_packet_size={MAX_PACKET_SIZE}"]


def _read_edge(proc):
    idx, _, _ = proc.wait_id("EDGE-READY")
    ports = {}
    for p in proc.lines_with_id("EDGE-LISTEN", upto=idx + 1):
        m = re.match(r"listener=(\w+) port=(\d+)", p.get("msg", ""))
        if m:
            ports[m.group(1)] = int(m.group(2))
    for need in ("mqtt", "ws", "http"):
        if need not in ports:
            raise StartupError(f"{proc.name}: no EDGE-LISTEN line for listener={need} "
                               f"before EDGE-READY (saw {ports})\n{proc.tail()}")
    return EdgeInfo(ports["mqtt"], ports["ws"], ports["http"])


class AllInOne(Deployment):
    name = "allinone"

    def start(self):
        # One broker worker, as on a one-core pod: with the memory store the
        # broker's and the router's passes then run on the edge's loop thread
        # (inline passes, services/broker/src/worker.c). The split
        # deployment's brokers keep one worker per CPU.
        p = self._spawn("hawser", [binary("hawser")] + _common_sets("allinone") + _edge_sets()
                        + ["--set", "broker.workers=1"] + self.extra)
        self.edges = [_read_edge(p)]
        return self


class Split(Deployment):
    """router, 2 brokers, 2 edges; NNG inbox ports are chosen up front because
    every peer needs the others' URLs on its command line."""
    name = "split"

    def start(self):
        r, b1, b2, e1, e2 = free_ports(5)
        router = f"tcp://127.0.0.1:{r}"
        self.brokers = [f"tcp://127.0.0.1:{b1}", f"tcp://127.0.0.1:{b2}"]
        brokers = ",".join(self.brokers)
        rp = self._spawn("router", [binary("hawser-router")] + _common_sets("router-1") + [
            "--set", f"router.listen={router}", "--set", f"router.brokers={brokers}",
            "--set", "router.http_listen=127.0.0.1:0"])
        # The router is up before any broker exists: its dials to the brokers
        # fail and are retried in the background. Publishes acknowledged in
        # that window must still reach every broker's subscribers
        # (test_startup.py); starting in this order keeps that case covered.
        rp.wait_id("RTR-READY")
        bps = []
        for i, url in enumerate(self.brokers):
            bps.append(self._spawn(f"broker-{i + 1}", [binary("hawser-broker")] + _common_sets(f"broker-{i + 1}") + [
                "--set", f"broker.listen={url}", "--set", f"broker.routers={router}",
                "--set", f"broker.peers={brokers}",
                "--set", "broker.http_listen=127.0.0.1:0"]))
        eps = []
        for i, port in enumerate((e1, e2)):
            eps.append(self._spawn(f"edge-{i + 1}", [binary("hawser-edge")] + _common_sets(f"edge-{i + 1}") + _edge_sets() + [
                "--set", f"edge.listen=tcp://127.0.0.1:{port}", "--set", f"edge.brokers={brokers}"] + self.extra))
        self.tier_http = {}
        for proc, listen, ready in [(rp, "RTR-LISTEN", "RTR-READY")] + [(bp, "BRK-LISTEN", "BRK-READY") for bp in bps]:
            self.tier_http[proc.name] = read_http_port(proc, listen, ready)
        self.edges = [_read_edge(ep) for ep in eps]
        return self


class Mosquitto(Deployment):
    """Development reference only (HAWSER_TEST_TARGET=mosquitto): one
    mosquitto with one TCP + one WebSocket listener per simulated edge."""

    def __init__(self, name, n_edges, extra=None):
        self.name = name
        super().__init__(extra)
        self.n_edges = n_edges

    def start(self):
        ports = free_ports(2 * self.n_edges)
        conf = os.path.join(self.tmp, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write("per_listener_settings false\nallow_anonymous true\npersistence false\n"
                    f"max_packet_size {MAX_PACKET_SIZE}\nlog_dest stderr\nlog_type all\n"
                    "max_keepalive 65535\n")
            for i in range(self.n_edges):
                f.write(f"listener {ports[2 * i]} 127.0.0.1\n")
                f.write(f"listener {ports[2 * i + 1]} 127.0.0.1\nprotocol websockets\n")
        exe = "/usr/sbin/mosquitto"
        if not os.access(exe, os.X_OK):
            raise StartupError("mosquitto is not installed: run scripts/deps.sh")
        p = self._spawn("mosquitto", [exe, "-c", conf])
        p.wait_line(lambda t, _: "running" in t and "mosquitto version" in t, STARTUP_TIMEOUT,
                    "'mosquitto version ... running'")
        self.edges = [EdgeInfo(ports[2 * i], ports[2 * i + 1], None) for i in range(self.n_edges)]
        return self


def start_deployment(name):
    if TARGET == "mosquitto":
        dep = Mosquitto(name, 1 if name == "allinone" else 2)
    elif TARGET == "hawser":
        dep = AllInOne() if name == "allinone" else Split()
    else:
        raise StartupError(f"HAWSER_TEST_TARGET={TARGET!r}: expected hawser or mosquitto")
    try:
        return dep.start()
    except BaseException:
        dep.stop()
        raise

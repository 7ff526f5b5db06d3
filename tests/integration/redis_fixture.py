"""A real redis-server for the Redis session store tests, and deployments
whose brokers use it (store.backend=redis).

RedisServer runs /usr/bin/redis-server on a free loopback port with its
working directory (AOF, no RDB) in a temporary directory, so nothing is
written anywhere else; `kill()` (SIGKILL) and `start()` again on the same
port and directory simulate a Redis crash and restart.

RedisSplit is the split deployment (1 router, N brokers, 2 edges) with every
broker on the Redis store; `restart_broker(i)` stops broker i (SIGTERM) and
starts a new process with the same arguments, so whatever survives is what
Redis holds. RedisAllInOne is the all-in-one `hawser` on the Redis store.
Both expose the attributes the behaviour suite's Gateway uses.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time

import harness

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def redis_ping(port, timeout=1.0):
    """True when a Redis on 127.0.0.1:port answers PING with PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_cmd(port, *args, timeout=5.0):
    """Runs one command; returns the raw RESP reply bytes (for small replies)."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(out)
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


class RedisServer:
    def __init__(self, fsync="always"):
        if not os.access(REDIS_SERVER, os.X_OK):
            raise harness.StartupError("redis-server is not installed (apt-get install redis-server)")
        self.dir = tempfile.mkdtemp(prefix="hawser-it-redis-")
        self.port = harness.free_port()
        self.fsync = fsync
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout=harness.STARTUP_TIMEOUT):
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.dir, "--save", "", "--appendonly", "yes",
                "--appendfsync", self.fsync, "--daemonize", "no", "--protected-mode", "no",
                "--logfile", ""]
        self.proc = harness.Proc("redis", argv)
        self.proc.wait_line(lambda t, _: "Ready to accept connections" in t, timeout,
                            "'Ready to accept connections'")
        return self

    def kill(self):
        """SIGKILL: a crash; the AOF is what survives."""
        if self.proc is not None and self.proc.alive():
            self.proc.popen.kill()
            self.proc.popen.wait(timeout=10)

    def stop(self):
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _store_sets(redis, prefix):
    return ["--set", "store.backend=redis", "--set", f"store.redis_url={redis.url}",
            "--set", f"store.key_prefix={prefix}", "--set", "store.redis_timeout_ms=1000"]


class RedisAllInOne(harness.AllInOne):
    name = "allinone-redis"

    def __init__(self, redis, extra=None):
        super().__init__(list(extra or []) + _store_sets(redis, f"it{os.getpid()}a:"))
        self.redis = redis


class RedisSplit(harness.Deployment):
    """router, n_brokers brokers on the Redis store, 2 edges."""
    name = "split-redis"

    def __init__(self, redis, n_brokers=2, extra=None, broker_extra=None):
        super().__init__(extra)
        self.redis = redis
        self.n_brokers = n_brokers
        self.broker_extra = list(broker_extra or [])
        self.broker_procs = []
        self.broker_argv = []

    def _broker_ready(self, proc):
        self.tier_http[proc.name] = harness.read_http_port(proc, "BRK-LISTEN", "BRK-READY")

    def start(self):
        ports = harness.free_ports(3 + self.n_brokers)
        router = f"tcp://127.0.0.1:{ports[0]}"
        self.brokers = [f"tcp://127.0.0.1:{p}" for p in ports[1:1 + self.n_brokers]]
        brokers = ",".join(self.brokers)
        rp = self._spawn("router", [harness.binary("hawser-router")] + harness._common_sets("router-1") + [
            "--set", f"router.listen={router}", "--set", f"router.brokers={brokers}",
            "--set", "router.http_listen=127.0.0.1:0"])
        rp.wait_id("RTR-READY")
        prefix = f"it{os.getpid()}s:"
        for i, url in enumerate(self.brokers):
            argv = [harness.binary("hawser-broker")] + harness._common_sets(f"broker-{i + 1}") + [
                "--set", f"broker.listen={url}", "--set", f"broker.routers={router}",
                "--set", f"broker.peers={brokers}",
                "--set", "broker.http_listen=127.0.0.1:0"] + _store_sets(self.redis, prefix) + self.broker_extra
            self.broker_argv.append(argv)
            self.broker_procs.append(self._spawn(f"broker-{i + 1}", argv))
        eps = []
        for i, port in enumerate(ports[1 + self.n_brokers:]):
            eps.append(self._spawn(f"edge-{i + 1}", [harness.binary("hawser-edge")] + harness._common_sets(f"edge-{i + 1}") + harness._edge_sets() + [
                "--set", f"edge.listen=tcp://127.0.0.1:{port}", "--set", f"edge.brokers={brokers}"] + self.extra))
        for bp in self.broker_procs:
            self._broker_ready(bp)
        self.edges = [harness._read_edge(ep) for ep in eps]
        return self

    def restart_broker(self, i):
        """Stops broker i (SIGTERM) and starts it again; returns the exit status
        of the old process."""
        old = self.broker_procs[i]
        rc = old.stop()
        self.procs.remove(old)
        p = self._spawn(old.name, self.broker_argv[i])
        self.broker_procs[i] = p
        self._broker_ready(p)
        return rc


start = harness.start  # the name the Redis tests use


def connect_retry(make_client, deadline_s=20.0):
    """Connects a fresh client from make_client() until a CONNACK accepts it
    (the tiers' links re-dial in the background after a restart); returns
    (client, connack flags)."""
    deadline = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < deadline:
        c = make_client()
        try:
            flags, _ = c.connect(timeout=3)
            return c, flags
        except (AssertionError, OSError) as e:
            last = e
            c.close()
    raise AssertionError(f"no accepting CONNACK within {deadline_s} s: {last}")


def metric(dep, proc_name, name):
    """Sum of the samples of metric `name` on a broker's /metrics."""
    return harness.metric_sum(f"http://127.0.0.1:{dep.tier_http[proc_name]}", name)


def keys(redis, pattern):
    """The key names matching pattern (KEYS; small test databases only)."""
    out = subprocess.run(["redis-cli", "-p", str(redis.port), "--raw", "KEYS", pattern],
                         capture_output=True, text=True, timeout=10)
    return [k for k in out.stdout.splitlines() if k]

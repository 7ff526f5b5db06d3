"""Kafka fixtures for the integration suite (tests/integration/test_kafka_*.py).

- `kafka` (session): a real single-node Apache Kafka (KRaft) started by
  scripts/kafka.sh in a fresh run directory on free loopback ports, stopped
  at the end of the session. `KafkaNode.stop()` / `.start()` stop and restart
  it on the same port with its data kept (for tests that need Kafka gone).
- `pb`: the project's protobuf schema (proto/hawser/v1/messages.proto)
  compiled for Python with grpc_tools.protoc into a temporary directory.
- `KafkaAllInOne`: the all-in-one `hawser` with router.mode kafka and the
  pipelines a test asks for, on top of the harness's Deployment.
- helpers to create topics, produce records and read them back (confluent-
  kafka), each waiting on events with deadlines.

Test modules import the fixtures by name:
    from kafka import kafka, pb  # noqa: F401 (pytest fixtures)
"""

import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

import harness

ROOT = harness.ROOT
KAFKA_SH = os.path.join(ROOT, "scripts", "kafka.sh")
START_TIMEOUT = 120  # seconds; includes the first Maven fetch


class KafkaNode:
    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.bootstrap = None

    def _sh(self, cmd, timeout):
        env = dict(os.environ, HAWSER_KAFKA_DIR=self.run_dir, HAWSER_KAFKA_TIMEOUT="90")
        r = subprocess.run(["bash", KAFKA_SH, cmd], env=env, capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode != 0:
            raise harness.StartupError(f"scripts/kafka.sh {cmd} failed ({r.returncode}):\n"
                                       f"{r.stdout}\n{r.stderr}")
        return r.stdout

    def start(self):
        out = self._sh("start", START_TIMEOUT)
        for line in out.splitlines():
            if line.startswith("bootstrap="):
                self.bootstrap = line.split("=", 1)[1].strip()
        if not self.bootstrap:
            raise harness.StartupError(f"scripts/kafka.sh start printed no bootstrap=: {out}")
        return self

    def stop(self):
        self._sh("stop", 60)

    def log_tail(self, n=40):
        try:
            with open(os.path.join(self.run_dir, "server.log")) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no server.log)"


@pytest.fixture(scope="session")
def kafka():
    # Without a JVM and Maven there is no real Kafka. scripts/deps.sh installs
    # both, so their absence is a broken setup: the Kafka tests fail with
    # this reason, never skip (a skip would pass CI silently) or fake Kafka.
    missing = [t for t in ("java", "mvn") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"Kafka tests need {' and '.join(missing)} "
                    "(Debian: apt-get install openjdk-17-jre-headless maven)")
    run_dir = tempfile.mkdtemp(prefix="hawser-kafka-")
    node = KafkaNode(run_dir)
    try:
        node.start()
        yield node
    finally:
        try:
            node.stop()
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pb():
    """hawser.v1 messages_pb2, generated from the committed .proto."""
    out = tempfile.mkdtemp(prefix="hawser-pb-")
    from grpc_tools import protoc
    import grpc_tools
    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    rc = protoc.main(["protoc", f"-I{os.path.join(ROOT, 'proto')}", f"-I{include}",
                      f"--python_out={out}", "hawser/v1/messages.proto"])
    assert rc == 0, "protoc failed on proto/hawser/v1/messages.proto"
    sys.path.insert(0, out)
    try:
        yield importlib.import_module("hawser.v1.messages_pb2")
    finally:
        sys.path.remove(out)
        shutil.rmtree(out, ignore_errors=True)


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_topics(bootstrap, names, partitions=4, timeout=30.0):
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futs = admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1)
                                for n in names], operation_timeout=timeout)
    for name, f in futs.items():
        f.result(timeout=timeout)


def produce(bootstrap, topic, records, timeout=30.0):
    """Produces [(key, value bytes)] with acks=all and waits for every
    delivery report."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    errors = []
    for key, value in records:
        p.produce(topic, value, key=key,
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
    left = p.flush(timeout)
    assert left == 0, f"{left} records not delivered to {topic} within {timeout} s"
    assert not errors, f"delivery errors: {errors}"


def consume(bootstrap, topic, n, timeout=30.0, pred=None):
    """Reads topic from the beginning (a fresh group) until n records (that
    match pred) arrived or the deadline passed; returns every matching record
    read, in arrival order."""
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("it-reader"),
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            if pred is None or pred(m):
                out.append(m)
    finally:
        c.close()
    return out


def consume_all(bootstrap, topic, pred, settle_count, timeout=30.0):
    """Reads the whole topic: returns every record matching pred once
    settle_count of them were seen and the end of every partition was
    reached (so a duplicate after them would have been read too)."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("it-reader"),
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    md = c.list_topics(topic, timeout=10)
    parts = list(md.topics[topic].partitions)
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    out, eof = [], set()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() == -191:  # _PARTITION_EOF
                    eof.add(m.partition())
                    if len(eof) == len(parts) and len(out) >= settle_count:
                        break
                continue
            eof.discard(m.partition())
            if pred(m):
                out.append(m)
    finally:
        c.close()
    return out


def _kafka_config(bootstrap, pipelines, direct, message_timeout_ms, group, properties):
    import json
    lines = ["router:", "  mode: kafka", f"  direct: {'true' if direct else 'false'}",
             "  kafka:", f"    brokers: \"{bootstrap}\"",
             f"    group: \"{group}\"",
             f"    message_timeout_ms: {message_timeout_ms}"]
    if properties:
        lines.append("    properties: " + json.dumps(properties))
    lines.append("  pipelines:")
    for p in pipelines:
        lines.append("    - " + json.dumps(p))
    return "\n".join(lines) + "\n"


class KafkaSplit(harness.Deployment):
    """The split tiers pointed at Kafka: n_routers routers (one consumer
    group), 2 brokers, 2 edges. Every router has the same pipelines; each
    broker sends a publisher's messages to router[slot % n_routers]."""
    name = "kafka-split"

    def __init__(self, bootstrap, pipelines, n_routers=1, direct=True, message_timeout_ms=60000,
                 group=None, properties=None, broker_sets=()):
        super().__init__()
        self.config = _kafka_config(bootstrap, pipelines, direct, message_timeout_ms,
                                    group or unique("hawser-it"), properties)
        self.n_routers = n_routers
        self.broker_sets = list(broker_sets)
        self.routers = []  # Procs

    def start(self):
        conf = os.path.join(self.tmp, "hawser.yaml")
        with open(conf, "w") as f:
            f.write(self.config)
        ports = harness.free_ports(self.n_routers + 4)
        rurls = [f"tcp://127.0.0.1:{p}" for p in ports[:self.n_routers]]
        self.brokers = [f"tcp://127.0.0.1:{p}" for p in ports[self.n_routers:self.n_routers + 2]]
        brokers = ",".join(self.brokers)
        for i, url in enumerate(rurls):
            self.routers.append(self._spawn(f"router-{i + 1}", [
                harness.binary("hawser-router"), "--config", conf]
                + harness._common_sets(f"router-{i + 1}") + [
                "--set", f"router.listen={url}", "--set", f"router.brokers={brokers}",
                "--set", "router.http_listen=127.0.0.1:0"]))
        bps = []
        for i, url in enumerate(self.brokers):
            sets = []
            for kv in self.broker_sets:
                sets += ["--set", kv]
            bps.append(self._spawn(f"broker-{i + 1}", [harness.binary("hawser-broker")]
                                   + harness._common_sets(f"broker-{i + 1}") + [
                "--set", f"broker.listen={url}", "--set", f"broker.routers={','.join(rurls)}",
                "--set", f"broker.peers={brokers}",
                "--set", "broker.http_listen=127.0.0.1:0"] + sets))
        eps = []
        for i, port in enumerate(ports[-2:]):
            eps.append(self._spawn(f"edge-{i + 1}", [harness.binary("hawser-edge")]
                                   + harness._common_sets(f"edge-{i + 1}") + harness._edge_sets() + [
                "--set", f"edge.listen=tcp://127.0.0.1:{port}", "--set", f"edge.brokers={brokers}"]))
        for proc in self.routers:
            idx, _, _ = proc.wait_id("RTR-READY")
            for line in proc.lines_with_id("RTR-LISTEN", upto=idx + 1):
                m = re.search(r"http_port=(-?\d+)", line.get("msg", ""))
                if m:
                    self.tier_http[proc.name] = int(m.group(1))
        for proc in bps:
            proc.wait_id("BRK-READY")
        self.edges = [harness._read_edge(ep) for ep in eps]
        return self


class KafkaAllInOne(harness.Deployment):
    """The all-in-one hawser pointed at Kafka with `pipelines` (a list of
    dicts as in router.pipelines)."""
    name = "kafka-allinone"

    def __init__(self, bootstrap, pipelines, direct=True, message_timeout_ms=60000,
                 group=None):
        super().__init__()
        self.bootstrap = bootstrap
        self.pipelines = pipelines
        self.direct = direct
        self.message_timeout_ms = message_timeout_ms
        self.group = group or unique("hawser-it")

    def config_text(self):
        return _kafka_config(self.bootstrap, self.pipelines, self.direct,
                             self.message_timeout_ms, self.group, None)

    def start(self):
        conf = os.path.join(self.tmp, "hawser.yaml")
        with open(conf, "w") as f:
            f.write(self.config_text())
        p = self._spawn("hawser", [harness.binary("hawser"), "--config", conf]
                        + harness._common_sets("allinone") + harness._edge_sets())
        self.edges = [harness._read_edge(p)]
        return self


def wait_assigned(dep, topics, timeout=30.0, procs=None):
    """Waits until the routers (`procs`, default: the deployment's first
    process) logged RTR-ASSIGN for at least one partition of every topic in
    `topics`, between them (their consumers joined the group)."""
    procs = procs or [dep.procs[0]]
    want = set(topics)

    def seen():
        have = set()
        for proc in procs:
            for q in proc.lines_with_id("RTR-ASSIGN"):
                msg = q.get("msg", "")
                for w in want:
                    if msg.startswith(f"consuming {w}["):
                        have.add(w)
        return have

    # Each router's lines are waited on in turn (a condition variable per
    # process, so slices of at most 0.5 s) until the union covers `want`.
    deadline = time.monotonic() + timeout
    while True:
        for proc in procs:
            if seen() >= want:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise harness.StartupError(
                    f"no RTR-ASSIGN for {sorted(want - seen())} within {timeout:.0f} s\n"
                    + "\n".join(p.tail() for p in procs))
            try:
                proc.wait_line(lambda t, p: seen() >= want, min(0.5, left), "RTR-ASSIGN")
                return
            except harness.StartupError:
                if not proc.alive():
                    raise


def stop_checked(dep, killed=()):
    """Stops dep (SIGTERM, edges first) and fails unless every process that
    was running exited 0: processes in `killed` (names) were killed by the
    test, and processes that died earlier are reported with their output."""
    dead = [x for x in dep.dead() if x.split(" ", 1)[0] not in killed]
    was_dead = {p.name for p in dep.procs if not p.alive()}
    statuses = dep.stop()
    bad = [(n, rc) for n, rc in statuses if rc != 0 and n not in was_dead]
    assert not dead, "process(es) died during the test:\n" + "\n".join(dead)
    assert not bad, (f"not a clean SIGTERM shutdown (name, exit status): {bad}\n"
                     + dep.tails())

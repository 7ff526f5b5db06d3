"""Fixtures: real gateway processes from build/bin on loopback, real clients.

Deployments ("allinone", "split") are started once per session parameter and
shared by the tests that use them; every test gets its own topics and client
ids, and after each test the fixture checks that every gateway process is
still running (a crash fails the test that caused it, and the next test gets
a fresh deployment). On a failure the tail of every process's output is
printed.

HAWSER_TEST_TARGET=mosquitto (development only, never the default) runs the
same behaviour tests against Debian's mosquitto to validate the suite itself;
tests marked hawser_only are deselected then.
"""

import itertools
import queue
import sys
import time
import warnings

import pytest

import clients
import harness
import mqttraw

DEPLOYMENTS = ["allinone", "split"]
TRANSPORTS = ["tcp", "ws"]
_test_counter = itertools.count(1)


def pytest_configure(config):
    config.addinivalue_line("markers", "hawser_only: needs Hawser itself (metrics, CLI, config)")
    config.addinivalue_line("markers", "mosquitto_differs(why): the reference broker does not "
                            "do what this test requires of Hawser (deselected on that target only)")


def pytest_collection_modifyitems(config, items):
    if harness.TARGET == "hawser":
        return
    keep, drop = [], []
    for item in items:
        skip = (item.get_closest_marker("hawser_only") is not None or
                item.path.name.startswith("test_kafka"))  # Kafka pipelines are Hawser's own
        differs = item.get_closest_marker("mosquitto_differs")
        if differs is not None:
            when = differs.kwargs.get("when")
            params = item.callspec.params if hasattr(item, "callspec") else {}
            skip = skip or when is None or when(params)
        (drop if skip else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_report_header(config):
    line = f"hawser integration: target={harness.TARGET} binaries={harness.BIN_DIR}"
    if harness.TARGET != "hawser":
        line += "  (DEVELOPMENT TARGET: not a test of Hawser)"
    return line


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _probe_split(dep):
    """Waits (deadline) until a publish from a session on each broker reaches a
    subscriber on each broker through different edges: the inter-tier links
    are dialed in the background, so READY lines alone do not prove them up."""
    topic = f"probe/{time.monotonic_ns()}"
    subs = []
    for b in range(2):
        c = clients.Client(dep.endpoint(b, "tcp"), dep.client_id("probe-sub", broker=b), version=5)
        c.connect(timeout=10)
        c.subscribe(topic + "/#", qos=1, timeout=10)
        subs.append(c)
    pubs = []
    for b in range(2):
        c = clients.Client(dep.endpoint(1 - b, "tcp"), dep.client_id("probe-pub", broker=b), version=5)
        c.connect(timeout=10)
        pubs.append(c)
    attempts = 0
    deadline = time.monotonic() + 20
    try:
        for b, pub in enumerate(pubs):
            seen = [False, False]
            while not all(seen):
                if time.monotonic() > deadline:
                    raise harness.StartupError(
                        f"split deployment: publishes from broker {b} never reached both "
                        f"brokers' subscribers (seen={seen})\n" + dep.tails())
                attempts += 1
                pub.publish(f"{topic}/p{b}", b"probe", qos=0, timeout=10)
                for i, s in enumerate(subs):
                    if seen[i]:
                        continue
                    try:
                        while True:
                            m = s.msgq.get(timeout=0.5)
                            if m.topic == f"{topic}/p{b}":
                                seen[i] = True
                                break
                    except queue.Empty:
                        pass
    finally:
        for c in subs + pubs:
            c.close()
    if attempts > 2:
        warnings.warn(f"split deployment needed {attempts} probe publishes (2 expected) "
                      "before messages crossed every broker")


class DeploymentSlot:
    def __init__(self, name):
        self.name = name
        self.dep = None
        self.starts = 0
        self.start_error = None  # (test id, short reason) of a failed start

    def live(self, test_id):
        if self.dep is not None and not self.dep.dead():
            return self.dep
        if self.start_error is not None:
            # Starting failed once already: fail fast instead of printing
            # the same startup log for every remaining test.
            pytest.fail(f"the {self.name} deployment failed to start (full output in "
                        f"{self.start_error[0]}): {self.start_error[1]}", pytrace=False)
        if self.dep is not None:
            self.dep.stop()
            self.dep = None
        self.starts += 1
        try:
            dep = harness.start_deployment(self.name)
            try:
                if self.name == "split":
                    _probe_split(dep)
            except BaseException:
                dep.stop()
                raise
        except Exception as e:
            self.start_error = (test_id, (str(e).splitlines() or [repr(e)])[0])
            raise
        self.dep = dep
        return dep

    def stop(self):
        if self.dep is None:
            return
        dep, self.dep = self.dep, None
        was_dead = {p.name for p in dep.procs if not p.alive()}
        statuses = dep.stop()
        # A clean SIGTERM shutdown exits 0 (processes that died during a test
        # were reported by that test already).
        bad = [(n, rc) for n, rc in statuses if rc != 0 and n not in was_dead]
        if bad:
            pytest.fail(f"{self.name} deployment did not shut down cleanly on SIGTERM "
                        f"(name, exit status): {bad}\n{dep.tails()}")


@pytest.fixture(scope="session", params=DEPLOYMENTS)
def deployment_slot(request):
    slot = DeploymentSlot(request.param)
    yield slot
    slot.stop()


class Gateway:
    """What a behaviour test sees: a live deployment, a transport, and
    helpers that create clients which are closed after the test."""

    def __init__(self, dep, transport, request):
        self.dep = dep
        self.transport = transport
        self.n = next(_test_counter)
        self._clients = []
        self.split = len(dep.edges) > 1

    # Edges: publishers use edge 0, subscribers edge 1 (the same edge when
    # the deployment has only one).
    def ep(self, edge=0, transport=None):
        return self.dep.endpoint(edge, transport or self.transport)

    @property
    def pub_ep(self):
        return self.ep(0)

    @property
    def sub_ep(self):
        return self.ep(1)

    def topic(self, name=""):
        return f"it{self.n}-{time.monotonic_ns() % 10**9}/{name}".rstrip("/")

    def cid(self, prefix, broker=None):
        return self.dep.client_id(prefix, broker)

    def client(self, edge=0, client_id=None, broker=None, connect=True, transport=None, **kw):
        """A Paho client on `edge`; client id owned by broker index `broker`
        in the split deployment (publishers default to broker 0, callers pass
        broker=1 for subscribers to cross brokers)."""
        if client_id is None:
            client_id = self.cid("c", broker)
        c = clients.Client(self.ep(edge, transport), client_id, **kw)
        self._clients.append(c)
        if connect:
            c.connect()
        return c

    def subscriber(self, **kw):
        kw.setdefault("broker", 1)
        return self.client(edge=1, **kw)

    def publisher(self, **kw):
        kw.setdefault("broker", 0)
        return self.client(edge=0, **kw)

    def raw(self, edge=0, version=4, transport=None):
        c = mqttraw.RawClient(self.ep(edge, transport), version=version)
        self._clients.append(c)
        return c

    def close(self):
        for c in self._clients:
            try:
                c.close()
            except Exception:
                pass


def _live(deployment_slot, request):
    dep = deployment_slot.live(request.node.nodeid)
    yield dep
    dead = dep.dead()
    failed = any(getattr(request.node, "rep_" + w, None) is not None and
                 getattr(request.node, "rep_" + w).failed for w in ("setup", "call"))
    if failed or dead:
        sys.stdout.write("\n" + dep.tails() + "\n")
    if dead:
        pytest.fail("gateway process(es) died during this test:\n" + "\n".join(dead))


@pytest.fixture
def closer():
    """A list the test appends its clients to; each is closed afterwards."""
    made = []
    yield made
    for c in made:
        c.close()


@pytest.fixture(params=TRANSPORTS)
def transport(request):
    return request.param


@pytest.fixture
def deployment(deployment_slot, request):
    """A live deployment (no transport parameter)."""
    yield from _live(deployment_slot, request)


@pytest.fixture
def gw(deployment_slot, transport, request):
    """A live deployment seen through one transport (tcp or ws)."""
    for dep in _live(deployment_slot, request):
        g = Gateway(dep, transport, request)
        try:
            yield g
        finally:
            g.close()

"""The behaviour suite (sessions, publish/subscribe, MQTT 5) again with every
broker on the Redis session store (store.backend=redis, real redis-server
with AOF): the tests are imported from their modules and run here against
the Redis-backed all-in-one and split deployments, over TCP only (the
transport does not touch the store, and this keeps the suite time down).
"""

import pytest

import conftest
import redis_fixture as rf
from test_pubsub import *  # noqa: F401,F403
from test_session import *  # noqa: F401,F403
from test_v5 import *  # noqa: F401,F403

pytestmark = pytest.mark.hawser_only


class RedisDeploymentSlot:
    """conftest.DeploymentSlot for the Redis-backed deployments."""

    def __init__(self, name, redis):
        self.name = name
        self.redis = redis
        self.dep = None

    def live(self, test_id):
        if self.dep is not None and not self.dep.dead():
            return self.dep
        if self.dep is not None:
            self.dep.stop()
            self.dep = None
        if self.name == "allinone-redis":
            dep = rf.start(rf.RedisAllInOne(self.redis))
        else:
            dep = rf.start(rf.RedisSplit(self.redis))
            try:
                conftest._probe_split(dep)
            except BaseException:
                dep.stop()
                raise
        self.dep = dep
        return dep

    def stop(self):
        if self.dep is None:
            return
        dep, self.dep = self.dep, None
        was_dead = {p.name for p in dep.procs if not p.alive()}
        bad = [(n, rc) for n, rc in dep.stop() if rc != 0 and n not in was_dead]
        if bad:
            pytest.fail(f"{self.name} deployment did not shut down cleanly on SIGTERM: {bad}\n"
                        f"{dep.tails()}")


@pytest.fixture(scope="module")
def redis_server():
    r = rf.RedisServer(fsync="always").start()
    yield r
    r.cleanup()


@pytest.fixture(scope="module", params=["allinone-redis", "split-redis"])
def deployment_slot(request, redis_server):
    slot = RedisDeploymentSlot(request.param, redis_server)
    yield slot
    slot.stop()


@pytest.fixture(params=["tcp"])
def transport(request):
    return request.param

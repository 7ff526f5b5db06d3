"""A split deployment is usable as soon as every process says READY.

The router starts before the brokers (harness.Split), so its first dials fail
and are retried in the background. A QoS 1 publish acknowledged right after
startup must still reach a subscriber whose session sits on the other broker:
the router queues offers for a broker it is still dialing and waits for its
Ack instead of skipping it.
"""

import pytest

import harness
from clients import Client


@pytest.mark.hawser_only
def test_first_qos1_publish_after_startup_crosses_brokers():
    dep = harness.start_deployment("split")
    try:
        sub = Client(dep.endpoint(1, "tcp"), dep.client_id("early-sub", broker=1), version=5)
        sub.connect()
        sub.subscribe("early/t", qos=1)
        pub = Client(dep.endpoint(0, "tcp"), dep.client_id("early-pub", broker=0), version=5)
        pub.connect()
        pub.publish("early/t", b"first", qos=1)  # returns once PUBACK arrived
        m = sub.expect(what="the first QoS 1 message after startup")
        assert (m.topic, m.payload, m.qos) == ("early/t", b"first", 1)
        sub.close()
        pub.close()
    finally:
        statuses = dep.stop()
    assert all(code == 0 for _, code in statuses), f"unclean exits: {statuses}"

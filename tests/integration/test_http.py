"""The operator's view: /metrics (Prometheus text) and health probes."""

import re
import urllib.error
import urllib.request

import pytest

import clients

pytestmark = pytest.mark.hawser_only


def _get(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode(errors="replace")


def _sum(text, name):
    """Sum of all samples of metric `name` (any labels) in Prometheus text."""
    total, found = 0.0, False
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)$", line)
        if m:
            total += float(m.group(2))
            found = True
    assert found, f"metric {name} not in /metrics"
    return total


def test_healthz_and_readyz(deployment):
    for i in range(len(deployment.edges)):
        base = deployment.http_base(i)
        status, _, _ = _get(base + "/healthz")
        assert status == 200, f"edge {i} /healthz -> {status}"
        status, _, _ = _get(base + "/readyz")
        assert status == 200, f"edge {i} /readyz -> {status} while serving"


def test_unknown_path_is_404(deployment):
    status, _, _ = _get(deployment.http_base(0) + "/no-such-page")
    assert status == 404


def test_metrics_exposition_and_connection_counter(deployment):
    base = deployment.http_base(0)
    status, ctype, text = _get(base + "/metrics")
    assert status == 200
    assert ctype.startswith("text/plain"), ctype
    assert "# TYPE hawser_edge_" in text, "no hawser_edge_ metric families"
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})?\s+[-+0-9.eEInfNa]+$", line), \
                f"not Prometheus text format: {line!r}"
    before = _sum(text, "hawser_edge_connections_accepted_total")
    c = clients.Client(deployment.endpoint(0, "tcp"), deployment.client_id("metrics"))
    c.connect()
    try:
        after = _sum(_get(base + "/metrics")[2], "hawser_edge_connections_accepted_total")
        assert after >= before + 1, f"accepted connections {before} -> {after}"
        assert _sum(_get(base + "/metrics")[2], "hawser_edge_connections") >= 1
    finally:
        c.disconnect()


def test_split_tiers_serve_metrics(deployment):
    if not deployment.tier_http:
        assert deployment.name == "allinone"
        # The all-in-one serves every tier's metrics from the edge's registry.
        text = _get(deployment.http_base(0) + "/metrics")[2]
        assert "hawser_edge_" in text
        return
    for name, port in deployment.tier_http.items():
        assert port > 0, f"{name} reported no HTTP port"
        status, _, text = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200, f"{name} /metrics -> {status}"
        tier = "router" if name.startswith("router") else "broker"
        assert f"hawser_{tier}_" in text or "hawser_link_" in text, f"{name} /metrics has no hawser_{tier}_ metrics"
        status, _, _ = _get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200, f"{name} /healthz -> {status}"

"""Configuration and command line, on every binary: a bad value stops
startup with exit status 2 and names the key; precedence is
default < file < environment < --set."""

import os
import re

import pytest

import harness

pytestmark = pytest.mark.hawser_only

BINARIES = ["hawser", "hawser-edge", "hawser-broker", "hawser-router"]


def _mps(printed):
    m = re.search(r"^\s*max_packet_size:\s*\"?(\d+)\"?\s*$", printed, re.M)
    assert m, f"--print-config shows no edge max_packet_size:\n{printed}"
    return int(m.group(1))


@pytest.mark.parametrize("binary", BINARIES)
def test_check_config_ok(binary):
    r = harness.run_cli(binary, ["--check-config"])
    assert r.returncode == 0, f"--check-config failed: {r.returncode}\n{r.stdout}{r.stderr}"


@pytest.mark.parametrize("binary", BINARIES)
def test_help_and_version(binary):
    r = harness.run_cli(binary, ["--help"])
    assert r.returncode == 0
    assert "--set" in r.stdout + r.stderr
    r = harness.run_cli(binary, ["--version"])
    assert r.returncode == 0
    assert re.search(r"\d+\.\d+\.\d+", r.stdout + r.stderr)


@pytest.mark.parametrize("binary", BINARIES)
def test_bad_set_value_exits_2_naming_key(binary):
    r = harness.run_cli(binary, ["--set", "edge.max_packet_size=0"])
    assert r.returncode == 2, f"exit {r.returncode}\n{r.stderr}"
    assert "edge.max_packet_size" in r.stderr


def test_unknown_set_key(tmp_path):
    r = harness.run_cli("hawser", ["--set", "edge.no_such_key=1"])
    assert r.returncode == 2
    assert "edge.no_such_key" in r.stderr


def test_set_without_equals_is_usage_error():
    r = harness.run_cli("hawser", ["--set", "edge.max_packet_size"])
    assert r.returncode == 2
    assert "edge.max_packet_size" in r.stderr


def test_unknown_key_in_yaml_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("edge:\n  max_packet_size: 1000\n  bogus_setting: 7\n")
    r = harness.run_cli("hawser", ["-c", str(f), "--check-config"])
    assert r.returncode == 2, f"exit {r.returncode}\n{r.stderr}"
    assert "bogus_setting" in r.stderr


def test_bad_value_in_yaml_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("broker:\n  allow_anonymous: perhaps\n")
    r = harness.run_cli("hawser", ["-c", str(f), "--check-config"])
    assert r.returncode == 2
    assert "allow_anonymous" in r.stderr


def test_missing_config_file():
    r = harness.run_cli("hawser", ["-c", "/nonexistent/hawser.yaml", "--check-config"])
    assert r.returncode == 2
    assert "/nonexistent/hawser.yaml" in r.stderr


def test_bad_env_value_exits_2_naming_key():
    r = harness.run_cli("hawser", ["--check-config"], env={"HAWSER_EDGE_MAX_PACKET_SIZE": "lots"})
    assert r.returncode == 2, f"exit {r.returncode}\n{r.stderr}"
    assert "HAWSER_EDGE_MAX_PACKET_SIZE" in r.stderr or "edge.max_packet_size" in r.stderr


def test_unknown_env_variable_is_an_error():
    r = harness.run_cli("hawser", ["--check-config"], env={"HAWSER_EDGE_MAX_PAKET_SIZE": "10"})
    assert r.returncode == 2
    assert "HAWSER_EDGE_MAX_PAKET_SIZE" in r.stderr


def test_precedence_file_env_set(tmp_path):
    f = tmp_path / "hawser.yaml"
    f.write_text("edge:\n  max_packet_size: 1111\n")
    env = {"HAWSER_EDGE_MAX_PACKET_SIZE": "2222"}
    r = harness.run_cli("hawser", ["--print-config"])
    assert r.returncode == 0, r.stderr
    default = _mps(r.stdout)
    r = harness.run_cli("hawser", ["-c", str(f), "--print-config"])
    assert r.returncode == 0, r.stderr
    assert _mps(r.stdout) == 1111 != default
    r = harness.run_cli("hawser", ["-c", str(f), "--print-config"], env=env)
    assert _mps(r.stdout) == 2222, "environment must override the file"
    r = harness.run_cli("hawser", ["-c", str(f), "--print-config", "--set", "edge.max_packet_size=3333"], env=env)
    assert _mps(r.stdout) == 3333, "--set must override the environment"


def test_print_config_round_trips_as_a_file(tmp_path):
    r = harness.run_cli("hawser", ["--print-config", "--set", "edge.max_packet_size=4444"])
    assert r.returncode == 0, r.stderr
    f = tmp_path / "printed.yaml"
    f.write_text(r.stdout)
    r2 = harness.run_cli("hawser", ["-c", str(f), "--print-config"])
    assert r2.returncode == 0, f"printed config does not load back:\n{r2.stderr}"
    assert _mps(r2.stdout) == 4444


def test_listen_conflict_fails_startup():
    # A port that is taken: startup fails (non-zero), it does not run half-bound.
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = harness.run_cli("hawser", ["--set", f"edge.mqtt_listen=127.0.0.1:{port}",
                                       "--set", "edge.ws_listen=127.0.0.1:0",
                                       "--set", "edge.http_listen=127.0.0.1:0"], timeout=20)
    assert r.returncode != 0
    assert str(port) in r.stderr


def test_allinone_embedded_defaults():
    # What scripts/run.sh serves: MQTT 1883, WebSocket 8083, HTTP 9100, and
    # the tiers joined by inproc:// links.
    r = harness.run_cli("hawser", ["--print-config"])
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for want in ("0.0.0.0:1883", "0.0.0.0:8083", "0.0.0.0:9100", "inproc://"):
        assert want in out, f"{want} not in the all-in-one's effective config:\n{out}"


def test_config_reference_doc_is_current():
    """docs/config.md is generated from the config table: a key added to the
    table without regenerating the doc fails here, so the reference users
    read never lags the binaries."""
    r = harness.run_cli("hawser-edge", ["--config-reference"])
    assert r.returncode == 0, r.stderr
    with open(os.path.join(harness.ROOT, "docs", "config.md"), encoding="utf-8") as f:
        committed = f.read()
    assert committed == r.stdout, (
        "docs/config.md is stale: regenerate it with "
        "`build/bin/hawser-edge --config-reference > docs/config.md`")

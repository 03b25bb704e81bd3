"""``costeff_policy_influence_pct``: ramp watch publishes the policy's influence, the reaper's default query
reads it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from costeff.artifacts import utc_now
from costeff.ledger import Ledger, import_sample
from costeff.ramp.watch import policy_influence_pct
from costeff.reaper.config import PrometheusConfig, Target

sys.path.insert(0, str(Path(__file__).parent / "mlserver_runtime"))

from launcher import free_port  # noqa: E402


@pytest.mark.parametrize("step,expected", [
    ({"from_pct": 0.0, "to_pct": 5.0}, 5.0),  # a promotion counts once decided: capacity before capital
    ({"from_pct": 10.0, "to_pct": 5.0}, 10.0),  # a rollback counts once the ledger shows it
    ({"from_pct": None, "to_pct": 0.0}, 0.0),  # no step in the ledger yet: the plan's first
    ({"from_pct": None, "to_pct": None}, None),
])
def test_influence_is_the_larger_of_the_current_and_the_decided_step(step, expected):
    assert policy_influence_pct(step) == expected


def test_the_default_query_reads_the_exported_series_per_model():
    query = PrometheusConfig().query("influence_pct", Target(name="policy-triton", model="policy"))
    assert query == 'max(costeff_policy_influence_pct{model="policy"})'
    assert 'model="policy-a"' in PrometheusConfig().query("influence_pct", Target("policy-a"))


def _influence(port: int) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {s.labels["model"]: s.value for f in text_string_to_metric_families(body)
            if f.name == "costeff_policy_influence_pct" for s in f.samples}


@pytest.mark.slow
def test_ramp_watch_process_serves_the_influence_of_its_decision(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    import_sample(ledger, end=utc_now().date() - timedelta(days=1))
    port = free_port()
    env = {**os.environ, "COSTEFF_ARTIFACTS": str(tmp_path / "artifacts"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "costeff", "ramp", "watch", "--ledger", str(ledger.path),
                             "--interval", "3600", "--metrics-port", str(port), "--policy-model", "policy",
                             "--out", str(tmp_path / "watch")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert "HOLD" in proc.stdout.readline()  # the first decision is made before the first interval
        step = json.loads((tmp_path / "watch" / "ramp_decision.json").read_text())["step"]
        assert _influence(port) == {"policy": max(step["from_pct"], step["to_pct"])}
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_before_any_decision_there_is_no_series(tmp_path):
    from costeff.ramp.watch import RampMetrics

    metrics = RampMetrics(free_port(), model="policy")
    try:
        assert _influence(metrics.server.server_address[1]) == {}  # unknown, never "0"
    finally:
        metrics.close()

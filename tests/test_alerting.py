"""Watched gates: ``costeff ramp watch`` gauges and history, alerting rules under promtool, and every
Grafana query run against Debian's real Prometheus scraping the drift and ramp exporters."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import requests

sys.path.insert(0, str(Path(__file__).parent / "mlserver_runtime"))

from launcher import free_port  # noqa: E402

from costeff.artifacts import utc_now  # noqa: E402
from costeff.cli import main  # noqa: E402
from costeff.ledger import Ledger, import_sample  # noqa: E402
from costeff.ramp import DecideConfig  # noqa: E402
from costeff.ramp.watch import RampMetrics, RampWatcher, history  # noqa: E402
from costeff.reaper.live import ReaperMetrics  # noqa: E402
from workspace_support import env_workspace, flag_store, env_home  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "costeff-alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "costeff-alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "costeff-dashboard.json"


def _sample_ledger(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    import_sample(ledger, end=utc_now().date() - timedelta(days=1))
    return ledger


def test_ramp_watch_keeps_history_and_exports_the_cost_gate(tmp_path):
    ledger = _sample_ledger(tmp_path)
    metrics = RampMetrics()
    watcher = RampWatcher(DecideConfig(ledger=ledger.path), tmp_path / "watch", metrics, workspace=env_workspace())
    assert watcher.run(threading.Event(), 0.01, max_rounds=2).rounds == 2
    rows = history(tmp_path / "watch")
    assert [r["decision"] for r in rows] == ["HOLD", "HOLD"] and "cost_ratio" in rows[0]["gates_failed"]
    latest = json.loads((tmp_path / "watch" / "ramp_decision.json").read_text())
    value = metrics.registry.get_sample_value
    assert value("costeff_ramp_cost_ratio") == pytest.approx(latest["cost_ratio_pct"] / 100)
    assert value("costeff_ramp_cost_ratio_cap") == pytest.approx(latest["cost_ratio_cap_pct"] / 100)
    assert value("costeff_ramp_cost_per_trade_usd") == pytest.approx(latest["cost_per_trade_usd"])
    assert value("costeff_ramp_decision", {"decision": "HOLD"}) == 1
    assert value("costeff_ramp_decision", {"decision": "PROMOTE"}) == 0
    assert value("costeff_ramp_gate_passed", {"gate": "cost_ratio"}) == 0
    assert value("costeff_ramp_gate_passed", {"gate": "live_action_drift_pct"}) == 0  # NO-DATA fails closed


def test_ramp_watch_survives_a_broken_round(tmp_path, capsys):
    (tmp_path / "broken.sqlite").write_text("not sqlite")
    code = main(["ramp", "watch", "--ledger", str(tmp_path / "broken.sqlite"), "--interval", "0.01",
                 "--max-rounds", "2", "--out", str(tmp_path / "watch")])
    out = capsys.readouterr().out
    assert code == 0 and out.count("error: ") == 2  # both rounds failed, the watcher did not
    assert history(tmp_path / "watch") == []


@pytest.fixture(scope="module")
def promtool():
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool (Debian's prometheus package) is not installed")
    return binary


@pytest.mark.slow
def test_alerting_rules_pass_promtool_check_and_unit_tests(promtool):
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0 and "SUCCESS: 7 rules found" in check.stdout, check.stdout + check.stderr
    unit = subprocess.run([promtool, "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent,
                          capture_output=True, text=True)
    assert unit.returncode == 0 and "SUCCESS" in unit.stdout, unit.stdout + unit.stderr


def _exported_names() -> set[str]:
    from costeff.drift.watch import DriftMetrics

    names = set()
    for registry in (DriftMetrics().registry, RampMetrics().registry, ReaperMetrics().registry):
        for family in registry.collect():
            names |= {family.name} | ({f"{family.name}_total"} if family.type == "counter" else set())
    return names


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bcosteff_[a-z_]+", expr))


def test_rules_and_dashboard_name_only_exported_metrics():
    exported = _exported_names()
    rules = set(re.findall(r"\bcosteff_[a-z_]+", RULES.read_text()))
    queries = {t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]}
    used = rules | set().union(*map(_metric_names, queries))
    assert used and used <= exported, used - exported


@pytest.fixture(scope="module")
def exporters(tmp_path_factory):
    """The real long-lived parts, one round each, serving their metrics: drift (one failing window, a skipped
    file, a dry-run rollback), ramp (the synthetic sample ledger, which holds on the cost gate) and the reaper
    (a dry-run round over an idle target: one proposed reap)."""
    from costeff.drift.watch import DriftMetrics, DriftWatcher, WatchConfig
    from test_drift_check import observations, perturbed
    from test_serving import _tiny_policy

    work = tmp_path_factory.mktemp("exporters")
    patch = pytest.MonkeyPatch()
    patch.setenv("COSTEFF_ARTIFACTS", str(work / "artifacts"))
    ref = _tiny_policy(work / "ref.onnx", seed=4)
    far = perturbed(ref, work / "far.onnx", 0.5)
    (work / "logs").mkdir()
    np.save(work / "logs" / "a.npy", observations(300))
    np.save(work / "logs" / "b.npy", np.zeros((3, 2), np.float32))
    patch.setenv("KUBECONFIG", str(work / "no-kubeconfig"))  # the reaper's dry run reads no cluster here
    patch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    drift = DriftMetrics(free_port())
    ramp = RampMetrics(free_port())
    reaper = ReaperMetrics(free_port())
    try:
        DriftWatcher(WatchConfig(ref, work / "logs", work / "state.json", served=far, fail_windows=1),
                     drift, workspace=env_workspace()).cycle()
        RampWatcher(DecideConfig(ledger=_sample_ledger(work).path), work / "ramp", ramp,
                    workspace=env_workspace()).round()
        _reaper_round(reaper, work)
        yield [m.server.server_address[1] for m in (drift, ramp, reaper)]
    finally:
        for metrics in (drift, ramp, reaper):
            metrics.close()
        patch.undo()


def _reaper_round(metrics, work):
    from costeff.audit import AuditLog
    from costeff.reaper.config import DecisionConfig, ReaperConfig, ScheduleConfig, Target
    from costeff.reaper.live import Actuators, _watch_tick, _WatchState
    from costeff.reaper.signals import Sample

    now = time.time()
    idle = [Sample(now - 600 + i * 60, "policy", 1.0, 0.0, 0.0) for i in range(11)]
    config = ReaperConfig(decision=DecisionConfig(window_s=300, stale_after_s=120),
                          schedule=ScheduleConfig(enabled=False), targets=(Target("policy", namespace="trading"),))

    class Source:
        def samples(self, target, window_s, at):
            return idle

    _watch_tick(config, Source(), False, Actuators(flags=flag_store()), AuditLog(work / "audit", home=env_home()), 2.0,
                metrics, _WatchState(), now=now)


@pytest.fixture(scope="module")
def prometheus(exporters, tmp_path_factory):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Debian's prometheus is not installed (scripts/install-prometheus.sh)")
    work = tmp_path_factory.mktemp("prometheus")
    targets = ", ".join(f"'127.0.0.1:{p}'" for p in exporters)
    (work / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files: ['{RULES}']\n"
        f"scrape_configs:\n  - job_name: costeff\n    static_configs:\n      - targets: [{targets}]\n")
    port = free_port()
    proc = subprocess.Popen([binary, f"--config.file={work / 'prometheus.yml'}",
                             f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: len(_query(url, "up == 1")) == 3, 120, "prometheus never scraped the three exporters")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _query(url: str, expr: str) -> list:
    body = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def _wait(check, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (requests.RequestException, KeyError, ValueError):
            pass
        time.sleep(0.5)
    pytest.fail(message)


@pytest.mark.server
@pytest.mark.slow
def test_every_dashboard_query_returns_data_from_real_prometheus(prometheus):
    queries = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    assert len(queries) >= 18
    # rate() and increase() need two scrapes of each series
    _wait(lambda: all(_query(prometheus, q) for q in queries), 120,
          f"queries without data: {[q for q in queries if not _query(prometheus, q)]}")
    hold = _query(prometheus, "costeff_ramp_decision == 1")
    assert [r["metric"]["decision"] for r in hold] == ["HOLD"]
    drift = float(_query(prometheus, "costeff_action_drift_ratio")[0]["value"][1])
    assert drift > 0.005  # the far variant drifts: the alert's condition holds in real PromQL
    proposed = _query(prometheus, "sum by (action, mode) (costeff_reaper_actions_total)")
    assert [(r["metric"]["action"], r["metric"]["mode"], r["value"][1]) for r in proposed] == [("reap", "dry-run", "1")]


@pytest.mark.server
@pytest.mark.slow
def test_prometheus_loads_the_rules_and_evaluates_the_drift_alert(prometheus):
    def pending():
        alerts = requests.get(f"{prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        return {a["labels"]["alertname"]: a["state"] for a in alerts}

    _wait(lambda: pending().get("CosteffActionDriftHigh") == "pending", 120, "drift alert never went pending")
    rules = requests.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert {r["name"] for g in rules for r in g["rules"]} >= {"CosteffCostRatioAboveCap", "CosteffDriftWatcherDown"}

"""The reaper acting on a real Triton 2.51: Triton's own counters and the policy's influence read through Debian's
real Prometheus, models unloaded and loaded again through Triton's model-repository API, every step audited."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import requests

sys.path.insert(0, str(Path(__file__).parent))

from costeff.cli import main  # noqa: E402
from test_serving import _profile, _tiny_policy  # noqa: E402
from prometheus_support import prometheus as prometheus_at  # noqa: E402
from prometheus_support import query as _query  # noqa: E402
from prometheus_support import wait_until as _wait  # noqa: E402
from triton_support import free_ports, triton_env  # noqa: E402
from workspace_support import audit_log, flag_store  # noqa: E402

pytestmark = [pytest.mark.server, pytest.mark.slow]
MODELS = ("policy", "busy")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    from costeff.serving.tritonserver import Ports, TritonServer

    env = triton_env()
    root = tmp_path_factory.mktemp("reap_triton")
    patch = pytest.MonkeyPatch()
    patch.setenv("COSTEFF_ARTIFACTS", str(root / "artifacts"))
    try:
        model = _tiny_policy(root / "policy.onnx")
        for name in MODELS:
            assert main(["triton", "build", str(model), "--profile", str(_profile(root, model)), "--repository",
                         str(root / "repo"), "--name", name, "--instance-kind", "cpu"]) == 0
    finally:
        patch.undo()
    with TritonServer(env, root / "repo", Ports.from_http(free_ports())) as server:
        yield server


@pytest.fixture(scope="module")
def influence():
    """The policy's influence per model, as `costeff ramp watch` exports it, set by the test."""
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    registry = CollectorRegistry()
    gauge = Gauge("costeff_policy_influence_pct", "policy influence", ["model"], registry=registry)
    for name in MODELS:
        gauge.labels(name).set(0)
    port = _free_port()
    server, _ = start_http_server(port, "127.0.0.1", registry=registry)
    yield SimpleNamespace(port=port, set=lambda model, value: gauge.labels(model).set(value))
    server.shutdown()


@pytest.fixture(scope="module")
def prometheus(triton, influence, tmp_path_factory):
    with prometheus_at(tmp_path_factory.mktemp("prometheus"), {"triton": triton.ports.metrics,
                                                                 "ramp": influence.port}, 60) as url:
        yield url


def _config(tmp_path: Path, url: str, model: str, name: str | None = None, queries: str = "") -> Path:
    """Short windows for a test; the shipped default queries for a Triton target (Triton's own counters)."""
    path = tmp_path / f"reaper-{name or model}.toml"
    path.write_text(
        '[decision]\nwindow_s = 3\nstale_after_s = 3\nfactors = ["influence", "requests"]\n'
        "[schedule]\nenabled = false\n[prometheus]\nstep_s = 1\ntimeout_s = 5\n"
        + (f"[prometheus.queries]\n{queries}" if queries else "")
        + f'[[targets]]\nname = "{name or model}"\nkind = "triton"\nurl = "{url}"\nmodel = "{model}"\n'
        "usd_per_hour = 1.5\n")
    return path


def _reap(capsys, prometheus: str, config: Path, *extra: str) -> tuple[int, dict]:
    code = main(["reap", "--prometheus", prometheus, "--config", str(config), "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def _ready(triton, model: str) -> bool:
    return requests.get(f"http://{triton.http_url}/v2/models/{model}/ready", timeout=10).status_code == 200


def _state(triton, model: str) -> set[str]:
    index = requests.post(f"http://{triton.http_url}/v2/repository/index", json={}, timeout=10).json()
    return {e["state"] for e in index if e["name"] == model}


def _actions(event: str = "reaper.action") -> list[dict]:

    return [r["payload"] for r in audit_log().records() if r["event"] == event]


def _idle_verdict(capsys, prometheus: str, config: Path) -> dict:
    """Dry runs until the verdict is REAP (Prometheus has a full window of idle samples)."""
    def round_():
        code, out = _reap(capsys, prometheus, config)
        return code == 0 and out["verdicts"][0]["idle"] and out

    return _wait(round_, 60, "never idle although influence 0 and no requests")


def test_influence_keeps_the_model_then_idle_unloads_it_and_restore_loads_it(triton, influence, prometheus, tmp_path,
                                                                              capsys):
    config = _config(tmp_path, triton.http_url, "policy")
    influence.set("policy", 5)
    _wait(lambda: _query(prometheus, 'costeff_policy_influence_pct{model="policy"} == 5'), 20, "influence not scraped")
    code, kept = _reap(capsys, prometheus, config, "--apply")
    assert code == 0 and not kept["actions"] and any("influence 5%" in r for r in kept["verdicts"][0]["reasons"])
    assert _ready(triton, "policy")

    influence.set("policy", 0)
    dry = _idle_verdict(capsys, prometheus, config)
    assert dry["actions"][0]["would_change"] and "would unload policy" in dry["actions"][0]["detail"]
    assert _ready(triton, "policy")  # a dry run changes nothing

    code, applied = _reap(capsys, prometheus, config, "--apply")
    action = applied["actions"][0]
    assert code == 0 and action["changed"] and action["target"] == f"triton/{triton.http_url}/policy"
    assert action["before"]["versions"] == ["1"] and action["usd_per_hour_saved"] == 1.5
    assert not _ready(triton, "policy") and _state(triton, "policy") == {"UNAVAILABLE"}
    assert _ready(triton, "busy")  # only the idle model goes

    assert main(["reap", "restore", "--apply"]) == 0
    assert "loaded policy" in capsys.readouterr().out
    assert _ready(triton, "policy") and _state(triton, "policy") == {"READY"}
    reap, restore = [a for a in _actions() if a["mode"] == "apply"]
    assert restore["restores"] == reap["action_id"] and restore["changed"]
    assert main(["audit", "verify"]) == 0
    capsys.readouterr()
    assert main(["reap", "restore", "--apply"]) == 0  # nothing open any more: nothing loaded twice
    assert "nothing to restore" in capsys.readouterr().out


def test_traffic_keeps_the_model_loaded(triton, prometheus, tmp_path, capsys):
    rows = np.zeros((1, 4, 3), np.float32)
    body = {"inputs": [{"name": "obs", "shape": list(rows.shape), "datatype": "FP32", "data": rows.ravel().tolist()}]}
    for _ in range(5):
        assert requests.post(f"http://{triton.http_url}/v2/models/busy/infer", json=body, timeout=30).ok
    _wait(lambda: _query(prometheus, 'sum(rate(nv_inference_request_success{model="busy"}[5m])) > 0'), 30,
          "Triton's request counter never reached Prometheus")
    code, out = _reap(capsys, prometheus, _config(tmp_path, triton.http_url, "busy"), "--apply")
    assert code == 0 and not out["actions"] and not out["verdicts"][0]["idle"]
    assert any("requests/s >" in r for r in out["verdicts"][0]["reasons"])
    assert _ready(triton, "busy")


def test_an_unreachable_triton_or_an_unknown_model_is_kept_and_the_reason_audited(triton, prometheus, tmp_path,
                                                                                  capsys):
    """The signals say idle (they are the real model's), but the server or model the target names cannot be
    acted on: one failed action each, audited, exit 3, and nothing changes."""
    dead = f"127.0.0.1:{_free_port()}"
    real = ("influence_pct = 'max(costeff_policy_influence_pct{model=\"policy\"})'\n"
            "requests_per_s = 'sum(rate(nv_inference_request_success{model=\"policy\"}[5m]))'\n")
    for url, model, why in ((dead, "policy", "unreachable"), (triton.http_url, "ghost", "does not know model")):
        config = _config(tmp_path, url, model, name=f"{model}-{why.split()[0]}", queries=real)
        _wait(lambda config=config: _reap(capsys, prometheus, config)[1]["verdicts"][0]["idle"], 60, "never idle")
        code, out = _reap(capsys, prometheus, config, "--apply")
        action = out["actions"][0]
        assert code == 3 and action["failed"] and not action["changed"] and why in action["error"]
        assert why in _actions()[-1]["error"] and not _actions()[-1]["changed"]
    assert _ready(triton, "policy")
    assert main(["reap", "restore", "--apply"]) == 0  # a failed reap opened nothing
    assert "nothing to restore" in capsys.readouterr().out


def test_a_daemon_records_one_failure_not_one_per_round(triton, prometheus, tmp_path):
    """Idle signals every round, a Triton that cannot unload: the first round records the failure, the next
    rounds hold off (the verdict says why) until a decision window has passed."""
    import threading

    from costeff.reaper.config import load_config
    from costeff.reaper.live import Actuators, watch
    from costeff.reaper.metrics import ReaperMetrics
    from costeff.reaper.prometheus import PrometheusSource
    from costeff.reaper.triton_target import TritonModels

    real = ("influence_pct = 'max(costeff_policy_influence_pct{model=\"policy\"})'\n"
            "requests_per_s = 'sum(rate(nv_inference_request_success{model=\"policy\"}[5m]))'\n")
    config = load_config(_config(tmp_path, f"127.0.0.1:{_free_port()}", "policy", queries=real))
    config = config.with_prometheus_url(prometheus)
    stop, verdicts = threading.Event(), []

    class Rounds(ReaperMetrics):
        def observe(self, result):
            super().observe(result)
            verdicts.append(result.verdicts[0])
            if sum(v["idle"] for v in verdicts) >= 4:
                stop.set()

    metrics = Rounds()
    watch(config, PrometheusSource(config.prometheus), True,
          Actuators(triton=TritonModels(retry_after_s=3600), flags=flag_store()), audit_log(), 0.0, 0.2, metrics, stop)
    failed = [a for a in _actions() if a.get("failed")]
    assert len(failed) == 1 and "unreachable" in failed[0]["error"]
    held = [v for v in verdicts if v.get("held_off")]
    assert len(held) >= 3 and all("unreachable" in v["held_off"] for v in held)


def test_rbac_ignores_triton_targets(tmp_path, capsys):
    config = tmp_path / "reaper.toml"
    config.write_text('[[targets]]\nname = "policy"\nkind = "triton"\nurl = "127.0.0.1:8000"\nmodel = "policy"\n'
                      '[[targets]]\nresource = "policy-triton"\nnamespace = "trading"\n')
    assert main(["reap", "rbac", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "policy-triton" in out and "127.0.0.1" not in out and "triton/" not in out

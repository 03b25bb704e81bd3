"""The programme as one live system: real Triton 2.51, Debian's Prometheus, and `costeff ramp watch`,
`costeff reap --watch --apply` and `costeff drift watch --apply --url` as real processes.

The ramp watcher publishes the policy's influence from the ledger; Prometheus scrapes it and Triton's
counters; the reaper unloads the idle model, loads it again once the ledger shows the policy trading;
the drift watcher rolls a drifting version back and Triton serves the earlier one. Every step audited."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import requests

sys.path.insert(0, str(Path(__file__).parent))

from costeff.artifacts import utc_now  # noqa: E402
from costeff.cli import main  # noqa: E402
from costeff.ledger import Ledger, import_sample  # noqa: E402
from test_drift_check import observations, perturbed  # noqa: E402
from test_reap_triton import _free_port, _query, _wait  # noqa: E402
from test_serving import _profile, _tiny_policy  # noqa: E402
from triton_support import free_ports, triton_env  # noqa: E402
from workspace_support import audit_log  # noqa: E402

pytestmark = [pytest.mark.server, pytest.mark.slow]


def _ledger(path: Path, influence_pct: float) -> None:
    with sqlite3.connect(path) as db:
        db.execute("UPDATE economics SET influence_pct = ?", (influence_pct,))


def _records(event: str) -> list[dict]:

    return [r["payload"] for r in audit_log().records() if r["event"] == event]


class Processes:
    """The long-lived commands, each logging to its own file, stopped with SIGTERM."""

    def __init__(self, work: Path) -> None:
        self.work, self.procs = work, {}

    def start(self, name: str, *args: str) -> None:
        log = open(self.work / f"{name}.log", "w")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "costeff", *args], stdout=log,
                                            stderr=subprocess.STDOUT, env=env)

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{(self.work / f'{n}.log').read_text()[-2000:]}" for n in self.procs)

    def alive(self) -> None:
        dead = [n for n, p in self.procs.items() if p.poll() is not None]
        assert not dead, f"{dead} exited early:\n{self.logs()}"

    def stop(self) -> dict[str, int]:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        return codes


def _prometheus(work: Path, targets: list[int]) -> tuple[subprocess.Popen, str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Debian's prometheus is not installed (scripts/install-prometheus.sh)")
    jobs = "".join(f"  - job_name: j{p}\n    static_configs:\n      - targets: ['127.0.0.1:{p}']\n" for p in targets)
    (work / "prometheus.yml").write_text(f"global:\n  scrape_interval: 1s\nscrape_configs:\n{jobs}")
    port = _free_port()
    proc = subprocess.Popen([binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"


def _applied() -> list[dict]:
    return [a for a in _records("reaper.action") if a["mode"] == "apply"]


def _ready(url: str) -> bool:
    return requests.get(f"http://{url}/v2/models/policy/ready", timeout=10).status_code == 200


def _served(url: str) -> list[str]:
    return requests.get(f"http://{url}/v2/models/policy", timeout=10).json()["versions"]


def test_reaper_ramp_and_drift_watch_run_the_policys_triton_together(tmp_path):
    from costeff.serving.tritonserver import Ports, TritonServer

    ref = _tiny_policy(tmp_path / "ref.onnx", seed=4)
    for model in (perturbed(ref, tmp_path / "close.onnx", 1e-4), perturbed(ref, tmp_path / "far.onnx", 0.5)):
        assert main(["triton", "build", str(model), "--profile", str(_profile(tmp_path, model)), "--repository",
                     str(tmp_path / "repo"), "--name", "policy", "--instance-kind", "cpu"]) == 0  # v2 drifts
    ledger = Ledger(tmp_path / "ledger.sqlite")
    import_sample(ledger, end=utc_now().date() - timedelta(days=1))
    _ledger(ledger.path, 0.0)  # shadow mode: the policy moves no capital
    (tmp_path / "logs").mkdir()
    ramp_port = _free_port()
    with TritonServer(triton_env(), tmp_path / "repo", Ports.from_http(free_ports())) as triton:
        url = triton.http_url
        prometheus, prom_url = _prometheus(tmp_path, [triton.ports.metrics, ramp_port])
        (tmp_path / "reaper.toml").write_text(
            '[decision]\nwindow_s = 3\nstale_after_s = 3\nfactors = ["influence", "requests"]\n'
            "[schedule]\nenabled = false\n[prometheus]\nstep_s = 1\ntimeout_s = 5\n"
            f'[[targets]]\nname = "policy"\nkind = "triton"\nurl = "{url}"\nmodel = "policy"\n')
        procs = Processes(tmp_path)
        try:
            procs.start("ramp", "ramp", "watch", "--ledger", str(ledger.path), "--interval", "1", "--metrics-port",
                        str(ramp_port), "--policy-model", "policy", "--out", str(tmp_path / "ramp"))
            procs.start("reaper", "reap", "--prometheus", prom_url, "--config", str(tmp_path / "reaper.toml"),
                        "--apply", "--watch", "--interval", "1")
            procs.start("drift", "drift", "watch", "--reference", str(ref), "--repository", str(tmp_path / "repo"),
                        "--name", "policy", "--observations", str(tmp_path / "logs"), "--interval", "1",
                        "--fail-windows", "1", "--apply", "--url", url)
            _wait(lambda: procs.alive() or _query(prom_url, 'costeff_policy_influence_pct{model="policy"} == 0'),
                  60, "ramp watch's influence never reached Prometheus")

            # No traffic, no influence: the reaper unloads the model from Triton.
            reap = _wait(lambda: procs.alive() or _applied(), 90, f"never unloaded\n{procs.logs()}")
            assert [a["action"] for a in reap] == ["reap"] and reap[0]["changed"] and not _ready(url)

            # The ledger shows the policy trading at 5 %: ramp watch publishes it, the reaper loads the model.
            _ledger(ledger.path, 5.0)
            applied = _wait(lambda: procs.alive() or len(_applied()) == 2 and _applied(), 90,
                            f"never loaded again\n{procs.logs()}")
            restore = applied[-1]
            assert restore["action"] == "restore" and restore["restores"] == reap[0]["action_id"] and _ready(url)

            # Version 2 drifts on live rows: drift watch rolls back and Triton serves version 1.
            np.save(tmp_path / "logs" / "a.npy", observations(300, seed=1))
            _wait(lambda: procs.alive() or _served(url) == ["1"], 90, f"Triton never served v1\n{procs.logs()}")
            assert _ready(url)  # the reaper left the model loaded: influence 5 %
        finally:
            codes = procs.stop()
            prometheus.terminate()
            prometheus.wait(10)
    assert codes["reaper"] == 143, procs.logs()  # 128 + SIGTERM after a clean stop
    assert [r["to_version"] for r in _records("triton.rollback")] == [1]
    assert main(["audit", "verify"]) == 0
    assert json.loads((tmp_path / "ramp" / "ramp_decision.json").read_text())["step"]["from_pct"] == 5.0

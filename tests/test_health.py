"""``/healthz`` and ``/readyz`` on the metrics listener of every long-lived command.

The probe semantics are pinned with a controlled clock; then each daemon runs as a
real process and its probes are asked over HTTP, as the kubelet asks them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "mlserver_runtime"))

from launcher import free_port  # noqa: E402

from costeff import health  # noqa: E402
from costeff.cli import main  # noqa: E402

CLI = [sys.executable, "-c", "import sys; from costeff.cli import main; sys.exit(main(sys.argv[1:]))"]


def _get(port: int, path: str) -> tuple[int, dict | str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            code, body = r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        code, body = exc.code, exc.read().decode()
    return code, json.loads(body) if path in ("/healthz", "/readyz") else body


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def probed():
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    Gauge("costeff_test_gauge", "a gauge", registry=registry).set(7)
    clock = Clock()
    beat = health.Heartbeat(interval_s=10, stale_after=3, clock=clock)
    port = free_port()
    server = health.serve(registry, port, "127.0.0.1", beat)
    yield port, beat, clock
    health.close(server)


def test_ready_only_after_a_successful_round_and_only_while_it_is_recent(probed):
    port, beat, clock = probed
    assert _get(port, "/healthz")[0] == 200
    code, body = _get(port, "/readyz")
    assert code == 503 and body["status"] == "starting" and body["since_last_success_s"] is None
    beat.begin()
    clock.now += 2
    beat.beat(ok=True)
    assert _get(port, "/readyz")[0] == 200
    for _ in range(3):  # rounds go on failing (Prometheus down, say): the loop is alive, not doing its job
        clock.now += 11
        beat.begin()
        beat.beat(ok=False)
    assert _get(port, "/healthz")[0] == 200
    code, body = _get(port, "/readyz")
    assert code == 503 and body["status"] == "stale" and body["failures_in_a_row"] == 3
    assert body["since_last_success_s"] == 33 and body["stale_after_s"] == 30
    beat.begin()
    beat.beat(ok=True)
    assert _get(port, "/readyz")[0] == 200


def test_liveness_fails_when_a_round_hangs_or_the_loop_stops(probed):
    port, beat, clock = probed
    beat.begin()
    beat.beat(ok=True)
    beat.begin()
    clock.now += 29
    assert _get(port, "/healthz")[0] == 200  # a long round, within 3 intervals
    clock.now += 2
    code, body = _get(port, "/healthz")
    assert code == 503 and body["status"] == "stuck" and body["round_running_s"] == 31
    assert _get(port, "/readyz")[0] == 503  # never ready while stuck
    beat.beat(ok=True)
    assert _get(port, "/healthz")[0] == 200
    clock.now += 31  # no round started since: the loop is gone
    assert _get(port, "/healthz")[0] == 503


def test_metrics_are_still_served_and_other_paths_are_404(probed):
    port, _, _ = probed
    assert "costeff_test_gauge 7.0" in _get(port, "/metrics")[1]
    assert _get(port, "/nothing")[0] == 404


def test_a_port_in_use_is_a_clear_error():
    from prometheus_client import CollectorRegistry

    from costeff.errors import InputError

    port = free_port()
    first = health.serve(CollectorRegistry(), port)
    try:
        with pytest.raises(InputError, match=f"--metrics-port {port}"):
            health.serve(CollectorRegistry(), port)
    finally:
        health.close(first)


def test_stale_after_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["ramp", "watch", "--stale-after", "0", "--max-rounds", "1"])
    assert exit_.value.code == 2
    assert "--stale-after" in capsys.readouterr().err


# ---------------------------------------------------------------- the real daemons

def _wait(port: int, path: str, want: int, proc: subprocess.Popen, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.communicate()
        try:
            code, body = _get(port, path)
            if code == want:
                return body
        except (urllib.error.URLError, ConnectionError):
            pass  # not listening yet
        assert time.monotonic() < deadline, f"{path} never answered {want}"
        time.sleep(0.1)


def _stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode


@pytest.mark.server
def test_ramp_watch_process_is_ready_then_unready_when_its_ledger_breaks(tmp_path):
    from test_alerting import _sample_ledger

    ledger = _sample_ledger(tmp_path)
    port = free_port()
    proc = subprocess.Popen(CLI + ["ramp", "watch", "--ledger", str(ledger.path), "--interval", "0.3",
                                   "--stale-after", "3", "--out", str(tmp_path / "watch"), "--metrics-port",
                                   str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ.copy())
    try:
        body = _wait(port, "/readyz", 200, proc)
        assert body["status"] == "ok" and body["interval_s"] == 0.3
        ledger.path.write_text("not sqlite any more")  # every round fails from now on
        body = _wait(port, "/readyz", 503, proc)
        assert body["status"] == "stale" and body["failures_in_a_row"] >= 1
        assert _get(port, "/healthz")[0] == 200  # failing rounds: unready, not restarted
        assert "costeff_ramp_rounds_total" in _get(port, "/metrics")[1]
    finally:
        code = _stop(proc)
    assert code == 143


@pytest.mark.server
def test_reaper_process_without_signals_is_live_but_never_ready(tmp_path):
    from test_reap_daemon import _config, _free_port

    dead = f"http://127.0.0.1:{_free_port()}"  # nothing listens: no signals, no action
    port = free_port()
    proc = subprocess.Popen(CLI + ["reap", "--prometheus", dead, "--config", str(_config(tmp_path)), "--watch",
                                   "--interval", "0.2", "--metrics-port", str(port), "--stale-after", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        _wait(port, "/healthz", 200, proc)
        deadline = time.monotonic() + 120
        while (body := _get(port, "/readyz")[1])["failures_in_a_row"] < 2:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        assert _get(port, "/readyz")[0] == 503 and body["status"] == "starting"
        assert _get(port, "/healthz")[0] == 200
    finally:
        code = _stop(proc)
    assert code == 143


@pytest.mark.server
def test_drift_watch_process_is_ready_after_its_first_look(tmp_path):
    import numpy as np

    from test_drift_check import observations
    from test_serving import _profile, _tiny_policy

    ref = _tiny_policy(tmp_path / "ref.onnx", seed=4)
    assert main(["triton", "build", str(ref), "--profile", str(_profile(tmp_path, ref)), "--repository",
                 str(tmp_path / "repo"), "--name", "policy", "--instance-kind", "cpu"]) == 0
    (tmp_path / "logs").mkdir()
    np.save(tmp_path / "logs" / "a.npy", observations(200, seed=1))
    port = free_port()
    proc = subprocess.Popen(CLI + ["drift", "watch", "--reference", str(ref), "--repository", str(tmp_path / "repo"),
                                   "--name", "policy", "--observations", str(tmp_path / "logs"), "--interval", "0.3",
                                   "--state", str(tmp_path / "state.json"), "--metrics-port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        body = _wait(port, "/readyz", 200, proc)
        assert body["rounds"] >= 1 and body["failures_in_a_row"] == 0
        assert "costeff_drift_rows_total 200.0" in _get(port, "/metrics")[1]
    finally:
        code = _stop(proc)
    assert code == 143

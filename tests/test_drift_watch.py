"""``costeff drift watch``: new files only, position across restarts, metrics, hysteresis, audited rollback."""

from __future__ import annotations

import json
import sys
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "mlserver_runtime"))

from launcher import free_port  # noqa: E402

from costeff.cli import main  # noqa: E402
from costeff.drift.watch import DriftMetrics, DriftWatcher, WatchConfig  # noqa: E402
from costeff.serving.versions import describe  # noqa: E402
from test_drift_check import observations, perturbed  # noqa: E402
from test_serving import _profile, _tiny_policy  # noqa: E402
from workspace_support import env_workspace, audit_log  # noqa: E402


@pytest.fixture
def setup(tmp_path):
    ref = _tiny_policy(tmp_path / "ref.onnx", seed=4)
    close, far = perturbed(ref, tmp_path / "close.onnx", 1e-4), perturbed(ref, tmp_path / "far.onnx", 0.5)
    for model in (close, far):  # version 1 close to fp32, version 2 drifts
        assert main(["triton", "build", str(model), "--profile", str(_profile(tmp_path, model)),
                     "--repository", str(tmp_path / "repo"), "--name", "policy", "--instance-kind", "cpu"]) == 0
    (tmp_path / "logs").mkdir()
    return tmp_path, ref


def _config(tmp_path, ref, **kw):
    return WatchConfig(ref, tmp_path / "logs", tmp_path / "state.json", model_dir=tmp_path / "repo" / "policy",
                       interval_s=0.05, **kw)


def _log(tmp_path, name, seed):
    np.save(tmp_path / "logs" / name, observations(300, seed=seed))


def test_k_failing_windows_roll_the_repository_back_once(setup):
    tmp_path, ref = setup
    watcher = DriftWatcher(_config(tmp_path, ref, fail_windows=2, apply=True), workspace=env_workspace())
    _log(tmp_path, "a.npy", 1)
    first = watcher.cycle()
    assert [f.windows_failed for f in first.files] == [1] and first.rollback is None  # one failure: hysteresis
    _log(tmp_path, "b.npy", 2)
    second = watcher.cycle()
    assert {k: second.rollback[k] for k in ("mode", "from_version", "to_version")} == {
        "mode": "apply", "from_version": 2, "to_version": 1}
    # recorded with the rollback; how soon it lands is a goal in make bench (benchmarks/bench_drift.py)
    assert isinstance(second.rollback["seconds_after_window"], float) and second.rollback["seconds_after_window"] >= 0
    assert describe(tmp_path / "repo" / "policy").served == 1
    rollback = [r for r in audit_log().records() if r["event"] == "triton.rollback"]
    assert rollback[-1]["actor"] == "costeff drift watch" and "2 consecutive" in rollback[-1]["payload"]["reason"]
    _log(tmp_path, "c.npy", 3)  # version 1 now serves and passes: the streak stays at zero
    third = watcher.cycle()
    assert third.files[0].windows_failed == 0 and third.consecutive_failures == 0


def test_dry_run_only_audits_and_position_survives_a_restart(setup):
    tmp_path, ref = setup
    _log(tmp_path, "a.npy", 1)
    assert len(DriftWatcher(_config(tmp_path, ref, fail_windows=2), workspace=env_workspace()).cycle().files) == 1
    _log(tmp_path, "b.npy", 2)
    # a new process: same state file
    restarted = DriftWatcher(_config(tmp_path, ref, fail_windows=2), workspace=env_workspace())
    result = restarted.cycle()
    assert [f.file.rsplit("/", 1)[1] for f in result.files] == ["b.npy"]  # a.npy is not read again
    assert result.rollback["mode"] == "dry-run"  # the streak (1 before the restart + 1) reached K
    assert describe(tmp_path / "repo" / "policy").served == 2
    assert "drift.rollback_dry_run" in [r["event"] for r in audit_log().records()]
    assert restarted.cycle().files == []


def test_corrupt_and_mismatched_files_are_skipped_with_a_reason(setup):
    tmp_path, ref = setup
    metrics = DriftMetrics()
    watcher = DriftWatcher(_config(tmp_path, ref), metrics, workspace=env_workspace())
    (tmp_path / "logs" / "a.npy").write_bytes(b"not numpy")
    np.save(tmp_path / "logs" / "b.npy", np.zeros((5, 9), np.float32))
    np.save(tmp_path / "logs" / "c.npy", np.full((5, 4, 3), np.inf, np.float32))
    _log(tmp_path, "d.npy", 1)
    result = watcher.cycle()
    assert [f.status for f in result.files] == ["skipped", "skipped", "skipped", "checked"]
    skips = [r["payload"] for r in audit_log().records() if r["event"] == "drift.skip"]
    assert [s["reason"] for s in skips] == ["unreadable", "shape", "non_finite"]
    assert "a.npy: cannot read observations" in skips[0]["message"]
    value = metrics.registry.get_sample_value
    assert value("costeff_drift_files_skipped_total", {"reason": "shape"}) == 1
    assert value("costeff_drift_rows_total") == 300


def test_metrics_listener_binds_localhost_and_cli_runs_cycles(setup, capsys):
    tmp_path, ref = setup
    _log(tmp_path, "a.npy", 1)
    port = free_port()
    metrics = DriftMetrics(port)
    try:
        assert metrics.server.server_address[0] == "127.0.0.1"
        watcher = DriftWatcher(_config(tmp_path, ref), metrics, workspace=env_workspace())
        watcher.run(threading.Event(), max_cycles=1)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        metrics.close()
    assert "costeff_drift_rows_total 300.0" in body and "costeff_action_drift_ratio" in body
    assert 'costeff_drift_windows_total{verdict="fail"} 1.0' in body
    _log(tmp_path, "b.npy", 2)
    code = main(["drift", "watch", "--reference", str(ref), "--repository", str(tmp_path / "repo"), "--name",
                 "policy", "--observations", str(tmp_path / "logs"), "--interval", "0.05", "--max-cycles", "2",
                 "--state", str(tmp_path / "cli_state.json")])
    out = capsys.readouterr().out
    assert code == 0 and "checked a.npy" in out and "checked b.npy" in out


def test_apply_needs_a_repository(tmp_path, capsys):
    ref = _tiny_policy(tmp_path / "ref.onnx")
    (tmp_path / "logs").mkdir()
    code = main(["drift", "watch", "--reference", str(ref), "--served", str(ref), "--observations",
                 str(tmp_path / "logs"), "--apply", "--max-cycles", "1"])
    assert code == 2 and "--apply rolls the Triton repository back" in capsys.readouterr().err


def test_the_reapers_metrics_listener_also_binds_localhost_by_default():
    from costeff.reaper.live import ReaperMetrics

    metrics = ReaperMetrics(free_port())
    try:
        assert metrics.server.server_address[0] == "127.0.0.1"
    finally:
        metrics.close()


def test_nothing_earlier_to_roll_back_to_is_audited_and_the_watcher_goes_on(tmp_path):
    ref = _tiny_policy(tmp_path / "ref.onnx", seed=4)
    far = perturbed(ref, tmp_path / "far.onnx", 0.5)
    assert main(["triton", "build", str(far), "--profile", str(_profile(tmp_path, far)), "--repository",
                 str(tmp_path / "repo"), "--name", "policy", "--instance-kind", "cpu"]) == 0
    (tmp_path / "logs").mkdir()
    watcher = DriftWatcher(_config(tmp_path, ref, fail_windows=1, apply=True), workspace=env_workspace())
    _log(tmp_path, "a.npy", 1)
    result = watcher.cycle()
    assert "nothing earlier to roll back to" in result.rollback["error"]
    assert "drift.rollback_failed" in [r["event"] for r in audit_log().records()]
    _log(tmp_path, "b.npy", 2)
    assert watcher.cycle().files[0].status == "checked"


def test_a_repository_without_versions_leaves_the_logs_unread(tmp_path):
    ref = _tiny_policy(tmp_path / "ref.onnx", seed=4)
    (tmp_path / "repo" / "policy").mkdir(parents=True)
    (tmp_path / "logs").mkdir()
    _log(tmp_path, "a.npy", 1)
    watcher = DriftWatcher(_config(tmp_path, ref), workspace=env_workspace())
    result = watcher.cycle()
    assert "no numbered version folders" in result.error and result.files == []
    far = perturbed(ref, tmp_path / "far.onnx", 0.5)  # once a version exists, the waiting log is checked
    assert main(["triton", "build", str(far), "--profile", str(_profile(tmp_path, far)), "--repository",
                 str(tmp_path / "repo"), "--name", "policy", "--instance-kind", "cpu"]) == 0
    assert [f.status for f in watcher.cycle().files] == ["checked"]


def test_sigterm_during_a_rollback_lets_it_finish_then_exits_143(setup, monkeypatch, capsys):
    import signal

    from signals_support import signal_main_thread

    import costeff.serving.control as control

    tmp_path, ref = setup
    real = control.rollback

    def rollback(*args, **kwargs):
        signal_main_thread(signal.SIGTERM)  # the CLI's own handler would raise here, before anything changed
        return real(*args, **kwargs)

    monkeypatch.setattr(control, "rollback", rollback)
    _log(tmp_path, "a.npy", 1)
    code = main(["drift", "watch", "--reference", str(ref), "--repository", str(tmp_path / "repo"), "--name",
                 "policy", "--observations", str(tmp_path / "logs"), "--interval", "3600", "--max-cycles", "5",
                 "--fail-windows", "1", "--apply", "--state", str(tmp_path / "state.json")])
    err = capsys.readouterr().err
    assert code == 143 and "stopped after 1 look(s)" in err, err
    assert describe(tmp_path / "repo" / "policy").served == 1  # the rollback completed
    assert "a.npy" in json.loads((tmp_path / "state.json").read_text())["seen"]  # and the round's position saved

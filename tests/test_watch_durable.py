"""Watchers never lose what they read: a failed store fails the round, a truncated ledger is not ready,
and a ramp decision is in the audit trail only when its report was written."""

from __future__ import annotations

import errno
import json
import sqlite3
import threading

import pytest

from costeff import artifacts
from costeff.audit import AuditLog, default_log
from costeff.cli import main
from costeff.drift.watch import DriftMetrics, DriftWatcher
from costeff.health import Heartbeat
from costeff.ramp import DecideConfig, report
from costeff.ramp.watch import RampMetrics, RampWatcher, history
from costeff.serving.versions import describe
from test_drift_watch import _config, _log, setup  # noqa: F401 - the fixture
from test_ramp import _ledger


def _ready_after_one_round(watcher_run) -> dict:
    beat = Heartbeat(interval_s=3600.0, stale_after=1.0)
    watcher_run(beat)
    return beat.state()


def test_a_failed_ledger_write_leaves_the_logs_unread_and_the_watcher_unready(setup, monkeypatch):
    tmp_path, ref = setup
    import costeff.drift.check as check

    real = check.record

    def full(report, ledger):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(check, "record", full)
    _log(tmp_path, "a.npy", 1)
    _log(tmp_path, "b.npy", 2)
    config = _config(tmp_path, ref, fail_windows=2, apply=True)
    state = _ready_after_one_round(lambda beat: DriftWatcher(config, DriftMetrics(heartbeat=beat))
                                   .run(threading.Event(), max_cycles=1))
    assert state["ready"] is False and state["failures_in_a_row"] == 1
    saved = json.loads((tmp_path / "state.json").read_text()) if (tmp_path / "state.json").exists() else {}
    assert saved.get("seen", {}) == {}  # neither log marked read
    assert describe(tmp_path / "repo" / "policy").served == 2  # nothing counted, nothing rolled back yet
    failed = DriftWatcher(config).cycle()
    assert failed.files == [] and "could not be stored" in failed.error and "a.npy" in failed.error

    monkeypatch.setattr(check, "record", real)  # the ledger is back: both logs are read, the rollback fires
    result = DriftWatcher(config).cycle()
    assert [f.windows_failed for f in result.files] == [1, 1] and result.error is None
    assert result.rollback["to_version"] == 1 and describe(tmp_path / "repo" / "policy").served == 1
    assert set(json.loads((tmp_path / "state.json").read_text())["seen"]) == {"a.npy", "b.npy"}


def test_ramp_watch_on_a_ledger_truncated_to_nothing_is_not_ready_and_leaves_it_alone(tmp_path):
    ledger = _ledger(tmp_path)
    config = DecideConfig(ledger=ledger.path, as_of=None)
    out = tmp_path / "watch"
    state = _ready_after_one_round(lambda beat: RampWatcher(config, out, RampMetrics(heartbeat=beat))
                                   .run(threading.Event(), 0.01, max_rounds=1))
    assert state["ready"] is True
    ledger.path.write_bytes(b"")  # truncated
    watcher = RampWatcher(config, out, RampMetrics())
    result = watcher.round()
    assert not result.ok and "0 bytes" in result.error and "truncated" in result.error
    assert ledger.path.stat().st_size == 0  # never recreated as an empty schema
    state = _ready_after_one_round(lambda beat: RampWatcher(config, out, RampMetrics(heartbeat=beat))
                                   .run(threading.Event(), 0.01, max_rounds=1))
    assert state["ready"] is False and ledger.path.stat().st_size == 0
    assert len(history(out)) == 1


def test_ramp_decide_on_a_truncated_ledger_exits_2(tmp_path, capsys):
    ledger = tmp_path / "ledger.sqlite"
    ledger.write_bytes(b"")
    assert main(["ramp", "decide", "--ledger", str(ledger), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {ledger}: 0 bytes") and "\n" not in err
    assert ledger.stat().st_size == 0 and not (tmp_path / "out").exists()


def _full_disk(path, *args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


def _decisions() -> list[dict]:
    return [r for r in default_log().records() if r["event"] == "ramp.decision"]


def test_a_report_that_cannot_be_written_leaves_no_decision_in_the_trail(tmp_path, monkeypatch, capsys):
    ledger = _ledger(tmp_path)
    out = tmp_path / "out"
    real = artifacts.atomic_write_json
    monkeypatch.setattr(artifacts, "atomic_write_json", _full_disk)  # the record's writer; the audit trail still writes
    assert main(["ramp", "decide", "--ledger", str(ledger.path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {out}/") and "No space left on device" in err and "\n" not in err
    assert _decisions() == []  # the decision never reached the trail
    assert not out.exists() or list(out.iterdir()) == []
    monkeypatch.setattr(artifacts, "atomic_write_json", real)
    assert main(["ramp", "decide", "--ledger", str(ledger.path), "--out", str(out), "--json"]) in (0, 1)
    written = json.loads((out / "ramp_decision.json").read_text())
    assert [d["seq"] for d in _decisions()] == [written["audit_seq"]]
    assert sorted(p.name for p in out.iterdir()) == ["ramp_decision.json", "ramp_decision.md"]


def test_a_failed_audit_append_leaves_no_report(tmp_path, monkeypatch, capsys):
    ledger = _ledger(tmp_path)
    out = tmp_path / "out"

    def broken(self, event, payload, actor="costeff"):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    monkeypatch.setattr(AuditLog, "append", broken)
    assert main(["ramp", "decide", "--ledger", str(ledger.path), "--out", str(out)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize("fail_at", ["report", "audit"])
def test_ramp_watch_round_with_a_full_disk_fails_without_half_a_decision(tmp_path, monkeypatch, fail_at):
    ledger = _ledger(tmp_path)
    out = tmp_path / "watch"

    if fail_at == "report":
        monkeypatch.setattr(artifacts, "atomic_write_json", _full_disk)
    else:
        monkeypatch.setattr(AuditLog, "append", lambda self, *a, **k: _full_disk(self.path))
    result = RampWatcher(DecideConfig(ledger=ledger.path), out, RampMetrics()).round()
    assert not result.ok and "No space left on device" in result.error
    assert _decisions() == [] and history(out) == []
    assert not out.exists() or list(out.iterdir()) == []


def test_a_report_that_fails_after_the_append_is_kept_without_its_number(tmp_path, monkeypatch, caplog):
    """The rare case (the disk fills between the staged write and the final one): the trail has the decision
    and the folder has its complete report, without the record's number; never one without the other."""
    ledger = _ledger(tmp_path)
    out = tmp_path / "out"
    real = artifacts.atomic_write_json

    def final_fails(path, *args, **kwargs):
        if path == out / report.JSON_NAME:  # the staged copy writes; the final one finds the disk full
            _full_disk(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(artifacts, "atomic_write_json", final_fails)
    assert main(["ramp", "decide", "--ledger", str(ledger.path), "--out", str(out)]) in (0, 1)
    kept = json.loads((out / report.JSON_NAME).read_text())
    [record] = _decisions()
    assert kept["audit_seq"] is None and kept["decision"] == record["payload"]["decision"]
    assert f"audit record: {record['seq']}" in (out / report.MD_NAME).read_text()
    assert sorted(p.name for p in out.iterdir()) == [report.JSON_NAME, report.MD_NAME]
    assert "kept it without the number" in caplog.text

"""The quantization, ramp, drift and reaper records: written by their real writers, read back typed,
and a corrupt one is an error naming the file, never "no report"."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from costeff.audit import default_log
from costeff.cli import main
from costeff.flags import FlagStore
from costeff.records.kinds import DRIFT, QUANT, RAMP, REAPER
from costeff.records.quant import CostEstimatePart, Fidelity, GateRow, Selected, Traffic
from test_ramp import AS_OF, MODEL, _ledger, _live_window, _report


@pytest.mark.parametrize("content, why", [
    ('{"created_at": "2026-01-01T00:00:00Z", "variants": [', "not valid JSON"),
    ('{"variants": [1, 2]}', "variants[0]"),
    ('{"selected": {"name": "fp16"}, "config": {"tolerances": {"action_drift_pct": "half"}}}',
     "config.tolerances.action_drift_pct"),
])
def test_a_corrupt_quant_report_given_to_ramp_decide_exits_2_naming_the_file(tmp_path, capsys, content, why):
    ledger = _ledger(tmp_path)
    bad = tmp_path / "quantization_report.json"
    bad.write_text(content)
    FlagStore.default().set("deployed_model_sha256", MODEL)
    out = tmp_path / "out"
    code = main(["ramp", "decide", "--ledger", str(ledger.path), "--as-of", AS_OF.isoformat(),
                 "--quant-report", str(bad), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith(f"error: {bad}: corrupt quant record") and why in err and "\n" not in err
    assert "no quantization report" not in err
    assert not out.exists() and [r for r in default_log().records() if r["event"] == "ramp.decision"] == []


def test_the_newest_quant_report_when_corrupt_is_an_error_not_a_missing_report(tmp_path, capsys):
    ledger = _ledger(tmp_path)
    newest = tmp_path / "artifacts" / "cost" / "quant" / "20260101_000000Z" / "quantization_report.json"
    newest.parent.mkdir(parents=True)
    newest.write_bytes(b"\x00\x01 not json")
    assert main(["ramp", "decide", "--ledger", str(ledger.path), "--as-of", AS_OF.isoformat()]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {newest}") and "corrupt quant record" in err


@pytest.fixture(scope="module")
def quant_run(tiny_policy, tiny_observations, tmp_path_factory):
    """One real ``quantize`` of the tiny policy (fp16 only, one short round), as test_quant runs it."""
    import os

    from costeff.quantization import QuantizeConfig, quantize

    out = tmp_path_factory.mktemp("quant")
    os.environ["COSTEFF_ARTIFACTS"] = str(out / "artifacts")
    try:
        config = QuantizeConfig(variants=("fp16",), batch_sizes=(1, 16), window_s=0.05, speed_rounds=1)
        report = quantize(tiny_policy.onnx_path, tiny_observations[:800], config, out_dir=out / "run")
    finally:
        del os.environ["COSTEFF_ARTIFACTS"]
    return report, out / "run"


def test_a_quant_report_from_the_real_writer_reads_back_typed(quant_run):
    report, folder = quant_run
    record = QUANT.read(folder / QUANT.filename)
    assert [v.name for v in record.variants] == [v.name for v in report.variants] == ["fp32", "fp16"]
    sel = record.selected
    assert isinstance(sel, Selected) and sel.name == report.selected["name"]
    assert record.selected_variant is record.variant(sel.name) and sel.speedup == record.variant(sel.name).speedup
    assert isinstance(sel.traffic, Traffic) and sel.traffic.target_rate_per_s is None  # none given
    assert record.config.tolerances.action_drift_pct == report.config["tolerances"]["action_drift_pct"] == 0.5
    fp32, fp16 = record.variant("fp32"), record.variant("fp16")
    assert fp32.baseline and isinstance(fp32.fidelity, Fidelity) and fp32.fidelity.action_drift_pct == 0.0
    assert fp16.fidelity.action_drift_pct == report.variant("fp16").fidelity.action_drift_pct
    assert set(fp16.fidelity_by_batch) == {"1", "16"}
    assert all(isinstance(g, GateRow) for e in fp16.fidelity_by_batch.values() for g in e.gates)
    assert fp16.passed == all(g.passed for g in fp16.gates) == report.variant("fp16").passed
    assert fp16.throughput_per_s == report.variant("fp16").throughput_per_s  # int batch keys, as measured
    assert isinstance(record.cost.before, CostEstimatePart) and record.cost.before.usd_per_million > 0
    assert record.cost.after == record.variant(sel.name).cost
    assert record.speed_rounds and record.speed_rounds[0].measurements["fp32"].load is not None
    assert record.noise_floor is not None and record.noise_floor.rounds_used == 1
    # The Markdown is rendered from the same record, before it: the folder holds both, nothing staged.
    from costeff.quantization.records import to_markdown

    assert (folder / "quantization_report.md").read_text() == to_markdown(record)
    assert sorted(p.name for p in folder.iterdir()) == ["quantization_report.json", "quantization_report.md"]


def test_a_ramp_decision_from_the_real_writer_reads_back_typed(tmp_path, capsys):
    ledger = _ledger(tmp_path)
    _live_window(ledger.path, MODEL)
    FlagStore.default().set("deployed_model_sha256", MODEL)
    report, out = _report(tmp_path), tmp_path / "out"
    assert main(["ramp", "decide", "--ledger", str(ledger.path), "--as-of", AS_OF.isoformat(),
                 "--quant-report", str(report), "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    record = RAMP.read(out / RAMP.filename)
    assert record.decision == printed["decision"] == "PROMOTE"
    assert (record.step.from_pct, record.step.to_pct) == (printed["step"]["from_pct"], printed["step"]["to_pct"])
    assert {g.name: g.verdict for g in record.gates} == {g["name"]: g["verdict"] for g in printed["gates"]}
    assert all(g.passed for g in record.gates if g.enforced)
    assert record.window.covered_days == printed["window"]["covered_days"] and record.cost_ratio_pct == 10.0
    assert record.provenance.quantization_report is not None
    assert record.provenance.quantization_report.path == str(report)
    assert record.audit_seq == [r for r in default_log().records() if r["event"] == "ramp.decision"][-1]["seq"]
    assert record.projection is not None and record.projection.available is False  # no profile to project from
    assert sorted(p.name for p in out.iterdir()) == ["ramp_decision.json", "ramp_decision.md"]  # no staging left


def test_an_infinite_cost_ratio_reads_back_as_infinity(tmp_path):
    ledger = _ledger(tmp_path, pnl=-10.0)
    out = tmp_path / "out"
    assert main(["ramp", "decide", "--ledger", str(ledger.path), "--as-of", AS_OF.isoformat(),
                 "--out", str(out)]) == 1
    assert json.loads((out / RAMP.filename).read_text())["cost_ratio_pct"] == "inf"
    record = RAMP.read(out / RAMP.filename)
    assert record.cost_ratio_pct == math.inf and "cost_ratio" in record.gates_failed


def test_a_drift_report_from_the_real_writer_reads_back_typed(tmp_path, capsys):
    from test_drift_check import observations, perturbed
    from test_serving import _tiny_policy

    ref = _tiny_policy(tmp_path / "ref.onnx", seed=4)
    served = perturbed(ref, tmp_path / "close.onnx", 1e-4)
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    np.save(logs / "a.npy", observations(300, seed=1))
    np.save(logs / "b.npy", observations(200, seed=2))
    code = main(["drift", "check", "--reference", str(ref), "--served", str(served), "--observations", str(logs),
                 "--out", str(out), "--json"])
    printed = json.loads(capsys.readouterr().out)
    record = DRIFT.read(out / DRIFT.filename)
    assert code == (0 if record.passed else 1) and record.passed == printed["passed"]
    assert record.served.sha256 == printed["served"]["sha256"] and record.reference.path == str(ref)
    assert [w.rows for w in record.windows] == [300, 200] and not any(w.timed for w in record.windows)
    assert isinstance(record.overall, Fidelity) and record.action_drift_pct == record.overall.action_drift_pct
    assert record.tolerances.action_drift_pct == printed["tolerances"]["action_drift_pct"]
    assert {g.name: g.passed for g in record.gates} == {g["name"]: g["verdict"] == "PASS" for g in printed["gates"]}
    assert record.batch_invariance is not None and record.batch_invariance.rows > 0
    assert sorted(p.name for p in out.iterdir()) == ["drift_report.json", "drift_report.md"]


def test_a_reaper_replay_reads_back_typed(tmp_path):
    from costeff.reaper import reap_trace
    from costeff.reaper.sample import sample_path

    report, folder = reap_trace(sample_path(), out=tmp_path / "reap")
    record = REAPER.read(folder / REAPER.filename)
    assert record.reduction_pct == report.reduction_pct > 0
    assert record.source.trace_sha256 == report.source["trace_sha256"]
    assert [a.action for a in record.actions] == [a["action"] for a in report.actions]
    assert record.savings.usd_saved == report.savings["usd_saved"] and record.wake_up.wakeups is not None
    assert record.audit.last_seq == report.audit["last_seq"]  # the second write names its audit records


def test_a_record_that_cannot_be_written_takes_its_markdown_with_it(tmp_path, monkeypatch, capsys):
    import errno

    from costeff import artifacts

    def full_disk(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(artifacts, "atomic_write_json", full_disk)  # the records' writer; Markdown still writes
    out = tmp_path / "replay"
    assert main(["reap", "--sample", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {out / REAPER.filename}: No space left on device"
    assert not out.exists() or not any(out.iterdir())


def test_a_quant_record_older_than_selected_speedup_takes_it_from_the_selected_variant(tmp_path):
    path = QUANT.write(tmp_path, {"selected": {"name": "fp16"}, "variants": [
        {"name": "fp32", "baseline": True, "speedup": 1.0}, {"name": "fp16", "speedup": 1.4}]})
    assert QUANT.read(path).selected.speedup == 1.4
    path = QUANT.write(tmp_path, {"selected": {"name": "fp16"}, "variants": [{"name": "fp32", "speedup": 1.0}]})
    assert QUANT.read(path).selected.speedup is None  # no row for it: unknown, not fp32's

"""The completion summary can fail every criterion, flags disagreeing measurements, labels projections."""

import importlib
import json
from datetime import date

import pytest

from costeff.ledger import Ledger, import_sample
from costeff.pack.measured import Reports
from costeff.pack.summary import acceptance, disagreements, render_summary
from costeff.ramp.economics import window_economics

END = date(2026, 3, 1)
GATE = "cost gate blocks above the cap, permits below"


@pytest.fixture
def sample_ledger(tmp_path):
    ledger = Ledger(tmp_path / "sample.sqlite")
    import_sample(ledger, end=END)
    return ledger


def _ramp(ledger, **change):
    ratio = window_economics(ledger, END, 14).cost_ratio_pct
    return {"cost_ratio_pct": ratio, "cost_ratio_cap_pct": 30.0, "cost_gates_enabled": True,
            "window": {"start": "2026-02-16", "end": END.isoformat(), "days": 14}, "cost_per_signal_usd": 0.03,
            "cost_per_trade_usd": 3.7, **change}


def _gate(ramp, ledger_bytes):
    reports = {"ramp": ramp, "reaper": None, "quant": None, "profile": None, "fp32": None, "batching": None}
    return next(c for c in acceptance(Reports.parse(reports), ledger_bytes) if c.name == GATE)


def test_the_cost_gate_criterion_passes_on_a_working_gate(sample_ledger):
    c = _gate(_ramp(sample_ledger), sample_ledger.path.read_bytes())
    assert c.passed, c.observed
    assert "blocks at 45 % (HOLD), permits at 15 % (PROMOTE)" in c.observed


@pytest.mark.parametrize("change, why", [
    ({"cost_gates_enabled": False}, "NOT ENFORCED"),
    ({"cost_ratio_pct": 12.0}, "the decision recorded 12.0"),  # the packed ledger is not what was decided on
    ({"window": {}}, "no packed ledger or decision window"),
])
def test_the_cost_gate_criterion_fails_when_the_evidence_does_not_hold(sample_ledger, change, why):
    c = _gate(_ramp(sample_ledger, **change), sample_ledger.path.read_bytes())
    assert not c.passed and why in c.observed


def test_a_gate_that_never_blocks_fails_the_criterion(sample_ledger, monkeypatch):
    from costeff.gates import Verdict
    decide = importlib.import_module("costeff.ramp.decide")  # the package exports a function of that name

    real = decide._cost_gates

    def always_pass(econ, step, enabled):
        from dataclasses import replace
        return [replace(g, verdict=Verdict.PASS) for g in real(econ, step, enabled)]

    monkeypatch.setattr(decide, "_cost_gates", always_pass)
    c = _gate(_ramp(sample_ledger), sample_ledger.path.read_bytes())
    assert not c.passed and "above the cap) the gate said PASS" in c.observed


def test_the_ledger_given_is_never_modified(sample_ledger):
    before = sample_ledger.path.read_bytes()
    from costeff.ramp.gatecheck import check_cost_gate

    check_cost_gate(sample_ledger.path, END.isoformat(), 14, 30.0, None)
    assert sample_ledger.path.read_bytes() == before


def _profile(sha, per_s, windows, usd_per_day=2.04, instances=1):
    return {"model_sha256": sha, "optimal": {"batch_size": 128, "throughput_per_s": per_s},
            "points": [{"batch_size": 128, "throughput_per_s": per_s, "stable": True,
                        "windows": [{"throughput_per_s": w} for w in windows]}],
            "cost": {"usd_per_day": usd_per_day, "instances_needed": instances, "instance": "aws-c6i.large",
                     "target_rate_per_s": 500.0}}


def _quant(sha, per_s, lo, hi):
    return {"selected": {"name": "int8-mixed"}, "variants": [
        {"name": "int8-mixed", "sha256": sha, "speedup": 2.8, "throughput_per_s": {"128": per_s},
         "optimal_batch": 128, "optimal_throughput_per_s": per_s,
         "throughput_range_per_s": {"128": [lo, hi]}}]}


def _files(**reports):
    names = {"profile": "profile/gpu_profile.json", "fp32": "profile_fp32/gpu_profile.json",
             "quant": "quant/quantization_report.json"}
    return {names[k]: json.dumps(v).encode() for k, v in reports.items()}


def test_measurements_that_disagree_beyond_their_spread_are_named():
    files = _files(profile=_profile("a" * 64, 15_509.0, [15_100, 15_900, 16_000]),
                   quant=_quant("a" * 64, 72_000.0, 70_500, 73_100))
    text = render_summary(files)
    assert "### Measurements that disagree" in text
    assert "72,000/s, rounds 70,500-73,100" in text and "come from one measurement" in text
    assert "15,509" not in text and "15,100" not in text  # one figure per quantity: the rounds', never both


def test_measurements_within_each_others_spread_are_not_flagged():
    reports = {"profile": _profile("a" * 64, 70_000.0, [66_000, 71_000]), "fp32": None,
               "quant": _quant("a" * 64, 72_000.0, 70_500, 73_100)}
    assert disagreements(Reports.parse(reports)) == []
    other_model = {**reports, "profile": _profile("b" * 64, 15_000.0, [15_000])}
    assert disagreements(Reports.parse(other_model)) == []  # a profile of another model is not the same variant


def test_projected_serving_cost_is_labelled_and_a_zero_saving_said_plainly():
    files = _files(fp32=_profile("f" * 64, 25_000.0, [25_000]), profile=_profile("a" * 64, 72_000.0, [72_000]))
    text = render_summary(files)
    assert "| serving cost per day $ at 500/s | projected | 2.04 (1 x aws-c6i.large) | 2.04 (1 x aws-c6i.large)" \
        in text
    assert "**$0.00 per day**" in text and "not from a bill" in text
    cheaper = _files(fp32=_profile("f" * 64, 250.0, [250], 4.08, 2), profile=_profile("a" * 64, 720.0, [720]))
    assert "Projected serving saving at the target rate: $2.04 per day" in render_summary(cheaper)


def test_an_unreadable_packed_ledger_fails_the_criterion_without_breaking_the_summary(sample_ledger):
    c = _gate(_ramp(sample_ledger), b"not a database" * 100)
    assert not c.passed and "could not be re-run" in c.observed

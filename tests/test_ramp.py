import json
import math
import os
from datetime import date, datetime, timedelta, timezone

import pytest

from costeff.audit import default_log
from costeff.cli import main
from costeff.errors import InputError
from costeff.flags import FlagStore
from costeff.ledger import CostRow, EconomicsRow, Ledger, import_sample
from costeff.ramp import DecideConfig, decide, load_plan

AS_OF = date(2026, 3, 1)
MODEL = "ab" * 32
FP32 = "cd" * 32


def _ledger(tmp_path, days=20, pnl=1000.0, cost=100.0, trades=200, influence=5.0, skip=(), no_cost=False,
            pnl_by_day=None):
    """A ledger whose last day is the day before AS_OF; day index 0 is the most recent."""
    ledger = Ledger(tmp_path / "ledger.sqlite")
    end = AS_OF - timedelta(days=1)
    econ, costs = [], []
    for i in range(days):
        if i in skip:
            continue
        d = (end - timedelta(days=i)).isoformat()
        infl = influence(i) if callable(influence) else influence
        econ.append(EconomicsRow(d, (pnl_by_day or {}).get(i, pnl), 5000, trades, infl, "test"))
        costs.append(CostRow(d, "serving", cost, "test"))
    ledger.import_rows("economics", econ)
    if not no_cost:
        ledger.import_rows("cost", costs)
    return ledger


def _report(tmp_path, sha=MODEL, action=0.1, entropy=0.2, created=None):
    created = created or datetime.now(timezone.utc) + timedelta(hours=1)
    data = {"created_at": created.isoformat().replace("+00:00", "Z"), "model_sha256": FP32,
            "selected": {"name": "int8-dynamic", "sha256": sha, "path": None},
            "variants": [{"name": "fp16", "sha256": "ef" * 32, "fidelity": {"action_drift_pct": 0.0,
                                                                             "entropy_drift_pct": 0.0}},
                         {"name": "int8-dynamic", "sha256": sha, "path": None,
                          "fidelity": {"action_drift_pct": action, "entropy_drift_pct": entropy}}]}
    path = tmp_path / "quantization_report.json"
    path.write_text(json.dumps(data))
    return path


def _live_window(ledger_path, sha, action=0.1, entropy=0.1, end=None):
    """A drift window of ``sha`` in the ledger, ending an hour before AS_OF unless told."""
    from costeff.artifacts import iso_utc
    from costeff.ledger.drift import DriftLedger, DriftRow

    end = end or datetime.combine(AS_OF, datetime.min.time(), timezone.utc) - timedelta(hours=1)
    passed = action <= 0.5 and entropy <= 0.5
    DriftLedger(ledger_path).record([DriftRow(sha, FP32, "live.parquet", iso_utc(end - timedelta(hours=1)),
                                              iso_utc(end), True, 1000, action, 99.9, 0.999, entropy, 1e-4, 1e-3,
                                              0.01, passed, [] if passed else ["action_drift_pct"])])


def _decide(ledger, report=None, deployed=MODEL, live=0.1, live_sha=None, **kw):
    if deployed:
        FlagStore.default().set("deployed_model_sha256", deployed)
    sha = live_sha or (deployed if deployed not in (None, "unset") else None)
    if live is not None and sha:
        _live_window(ledger.path, sha, live)
    return decide(DecideConfig(ledger=ledger.path, quant_report=report, as_of=kw.pop("as_of", AS_OF), **kw))


def _gate(decision, name):
    return next(g for g in decision.gates if g.name == name)


def _verdicts(decision):
    return {g.name: g.verdict.value for g in decision.gates}


@pytest.fixture
def good(tmp_path):
    return _ledger(tmp_path), _report(tmp_path)


def test_everything_passing_promotes_to_the_next_step(good):
    d = _decide(*good)
    assert d.decision == "PROMOTE" and (d.step["from_pct"], d.step["to_pct"]) == (5.0, 10.0)
    assert set(_verdicts(d).values()) == {"PASS"}
    assert d.cost_ratio_pct == pytest.approx(10.0)
    assert d.cost_per_trade_usd == pytest.approx(0.5) and d.cost_per_signal_usd == pytest.approx(0.02)
    assert d.cost_per_day_usd == pytest.approx(100.0) and d.monthly_cost_usd == pytest.approx(3000.0)


def test_every_decision_is_audited(good):
    d = _decide(*good)
    record = default_log().records()[-1]
    assert record["event"] == "ramp.decision" and record["seq"] == d.audit_seq
    assert record["payload"]["decision"] == "PROMOTE" and record["payload"]["gates"]["cost_ratio"] == "PASS"


# -- data freshness ---------------------------------------------------------------------------------

def test_freshness_fails_when_yesterday_is_missing(tmp_path):
    d = _decide(_ledger(tmp_path, skip=(0,)), _report(tmp_path))
    g = _gate(d, "data_freshness")
    assert g.verdict.value == "FAIL" and g.observed == 13 and d.decision == "HOLD"
    assert d.window.missing_dates == [(AS_OF - timedelta(days=1)).isoformat()]


def test_freshness_no_data_when_window_is_empty(good):
    d = _decide(*good, as_of=AS_OF + timedelta(days=60))
    assert _gate(d, "data_freshness").verdict.value == "NO-DATA" and d.decision == "HOLD"


# -- cost gates -------------------------------------------------------------------------------------

def test_cost_ratio_above_cap_holds(tmp_path):
    d = _decide(_ledger(tmp_path, cost=400.0), _report(tmp_path))
    g = _gate(d, "cost_ratio")
    assert (g.verdict.value, g.observed, g.threshold) == ("FAIL", pytest.approx(40.0), 30.0)
    assert d.decision == "HOLD" and d.gates_failed == ["cost_ratio"]


def test_non_positive_pnl_gives_infinite_ratio_and_fails(tmp_path):
    d = _decide(_ledger(tmp_path, pnl=0.0, cost=10.0), _report(tmp_path))
    assert math.isinf(d.cost_ratio_pct) and _gate(d, "cost_ratio").verdict.value == "FAIL"
    assert _gate(d, "net_pnl").verdict.value == "FAIL" and d.decision == "HOLD"


def test_cost_gates_no_data_without_cost_ledger(tmp_path):
    d = _decide(_ledger(tmp_path, no_cost=True), _report(tmp_path))
    v = _verdicts(d)
    assert v["cost_ratio"] == v["net_pnl"] == v["net_loss_limit"] == "NO-DATA"
    assert d.decision == "HOLD" and d.cost_per_trade_usd is None


def test_negative_net_pnl_within_limit_holds(tmp_path):
    d = _decide(_ledger(tmp_path, pnl=100.0, cost=120.0), _report(tmp_path))
    assert _gate(d, "net_pnl").verdict.value == "FAIL" and _gate(d, "net_loss_limit").verdict.value == "PASS"
    assert d.decision == "HOLD"


def test_disabled_cost_gates_are_shown_not_enforced_and_audited(tmp_path):
    FlagStore.default().set("cost_gates_enabled", False, actor="alice", reason="quarter-end review")
    d = _decide(_ledger(tmp_path, cost=400.0), _report(tmp_path))
    g = _gate(d, "cost_ratio")
    assert g.verdict.value == "FAIL" and not g.enforced and d.decision == "PROMOTE"
    assert d.cost_gates_enabled is False
    assert "COST GATES DISABLED" in d.notices[0] and "alice" in d.notices[0]
    assert "quarter-end review" in d.notices[0]
    events = [(r["event"], r["payload"].get("flag")) for r in default_log().records()]
    assert ("flag.set", "cost_gates_enabled") in events
    assert default_log().records()[-1]["payload"]["cost_gates_enabled"] is False


# -- risk gates and ROLLBACK ------------------------------------------------------------------------

def test_net_loss_beyond_limit_rolls_back(tmp_path):
    d = _decide(_ledger(tmp_path, pnl=100.0, cost=600.0, influence=10.0), _report(tmp_path))
    assert _gate(d, "net_loss_limit").verdict.value == "FAIL"
    assert d.decision == "ROLLBACK" and (d.step["from_pct"], d.step["to_pct"]) == (10.0, 5.0)


def test_drawdown_beyond_plan_rolls_back(tmp_path):
    d = _decide(_ledger(tmp_path, influence=25.0, pnl_by_day={3: -15000.0}), _report(tmp_path))
    g = _gate(d, "drawdown")
    assert g.verdict.value == "FAIL" and g.observed == pytest.approx(15000.0)
    assert d.decision == "ROLLBACK" and d.step["to_pct"] == 10.0


def test_drawdown_within_plan_passes(tmp_path):
    d = _decide(_ledger(tmp_path, pnl_by_day={3: -2000.0}), _report(tmp_path))
    assert _gate(d, "drawdown").verdict.value == "PASS" and _gate(d, "drawdown").observed == pytest.approx(2000.0)


# -- promotion gates --------------------------------------------------------------------------------

def test_too_few_days_and_trades_at_step_hold(tmp_path):
    d = _decide(_ledger(tmp_path, trades=50, influence=lambda i: 10.0 if i < 3 else 5.0), _report(tmp_path))
    days, trades = _gate(d, "days_at_step"), _gate(d, "trades_at_step")
    assert (days.verdict.value, days.observed) == ("FAIL", 3)
    assert (trades.verdict.value, trades.observed) == ("FAIL", 150)
    assert d.decision == "HOLD" and d.step["from_pct"] == 10.0


def test_promotion_and_risk_gates_no_data_without_economics(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.import_rows("cost", [CostRow("2026-02-28", "serving", 1.0, "t")])
    d = _decide(ledger, _report(tmp_path))
    v = _verdicts(d)
    assert v["days_at_step"] == v["trades_at_step"] == v["drawdown"] == "NO-DATA"
    assert d.decision == "HOLD" and d.step["from_pct"] is None


def test_final_step_holds_even_when_everything_passes(tmp_path):
    d = _decide(_ledger(tmp_path, influence=100.0), _report(tmp_path))
    assert set(_verdicts(d).values()) == {"PASS"} and d.decision == "HOLD"
    assert "final step" in d.reasons[0]


# -- quantization evidence --------------------------------------------------------------------------

@pytest.mark.parametrize("action, entropy, failing", [(0.9, 0.1, "quant_action_drift_pct"),
                                                      (0.1, 0.8, "quant_entropy_drift_pct")])
def test_drift_beyond_tolerance_holds(tmp_path, action, entropy, failing):
    d = _decide(_ledger(tmp_path), _report(tmp_path, action=action, entropy=entropy))
    assert d.gates_failed == [failing] and d.decision == "HOLD"


def test_drift_is_judged_at_the_batch_size_where_it_is_worst(tmp_path):
    path = _report(tmp_path, action=0.1, entropy=0.1)
    data = json.loads(path.read_text())
    data["variants"][1]["fidelity_by_batch"] = {
        "1": {"fidelity": {"action_drift_pct": 0.9, "entropy_drift_pct": 0.1}},
        "256": {"fidelity": {"action_drift_pct": 0.1, "entropy_drift_pct": 0.1}}}
    path.write_text(json.dumps(data))
    d = _decide(_ledger(tmp_path), path)
    assert _gate(d, "quant_action_drift_pct").observed == 0.9 and d.decision == "HOLD"


def test_report_for_another_model_fails_and_drift_is_no_data(tmp_path):
    d = _decide(_ledger(tmp_path), _report(tmp_path), deployed="12" * 32)
    v = _verdicts(d)
    assert v["quant_report_matches_deployed"] == "FAIL"
    assert v["quant_action_drift_pct"] == v["quant_entropy_drift_pct"] == "NO-DATA"


def test_deployed_fp32_source_counts_as_zero_drift(tmp_path):
    d = _decide(_ledger(tmp_path), _report(tmp_path), deployed=FP32)
    assert _gate(d, "quant_action_drift_pct").observed == 0.0 and d.decision == "PROMOTE"


def test_quant_gates_no_data_without_report_or_deployed_hash(tmp_path):
    for report, deployed in ((None, MODEL), (_report(tmp_path), "unset")):
        d = _decide(_ledger(tmp_path / str(bool(report))), report, deployed=deployed)
        quant = {k: v for k, v in _verdicts(d).items() if k.startswith("quant_")}
        assert set(quant.values()) == {"NO-DATA"} and d.decision == "HOLD"


# -- live drift from the ledger ----------------------------------------------------------------------

def test_live_drift_window_beyond_tolerance_holds(tmp_path):
    d = _decide(_ledger(tmp_path), _report(tmp_path), live=0.9)
    g = _gate(d, "live_action_drift_pct")
    assert (g.verdict.value, g.observed) == ("FAIL", 0.9) and d.decision == "HOLD"
    assert "worst of 1 drift windows" in g.detail and "1 failed" in g.detail


def test_live_drift_no_data_fails_closed(tmp_path):
    d = _decide(_ledger(tmp_path), _report(tmp_path), live=None)
    assert _verdicts(d)["live_action_drift_pct"] == "NO-DATA" and d.decision == "HOLD"
    assert "costeff drift check" in _gate(d, "live_action_drift_pct").detail
    # windows of other bytes, or older than --drift-hours, are no evidence for the deployed model
    ledger = _ledger(tmp_path / "other")
    _live_window(ledger.path, "99" * 32)
    _live_window(ledger.path, MODEL, end=datetime.combine(AS_OF, datetime.min.time(), timezone.utc)
                 - timedelta(hours=30))
    d = _decide(ledger, _report(tmp_path), live=None)
    assert _verdicts(d)["live_action_drift_pct"] == "NO-DATA"
    d = _decide(ledger, _report(tmp_path), live=None, drift_hours=48)
    assert _verdicts(d)["live_action_drift_pct"] == "PASS" and d.decision == "PROMOTE"


def test_latest_report_under_artifacts_is_found(tmp_path):
    target = tmp_path / "artifacts" / "cost" / "quant" / "20260101_000000Z"
    target.mkdir(parents=True)
    _report(tmp_path).rename(target / "quantization_report.json")
    d = _decide(_ledger(tmp_path), None)
    assert d.decision == "PROMOTE" and "20260101_000000Z" in d.provenance["quantization_report"]["path"]


def _triton_model(tmp_path, mtime):
    path = tmp_path / "repo" / "policy" / "1" / "model.onnx"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"onnx bytes")
    os.utime(path, (mtime.timestamp(), mtime.timestamp()))
    from costeff.artifacts import sha256_file
    return path, sha256_file(path)


def test_triton_repository_hash_and_report_newer_than_model(tmp_path):
    now = datetime.now(timezone.utc)
    model, sha = _triton_model(tmp_path, now - timedelta(days=2))
    ledger = _ledger(tmp_path)
    fresh = _decide(ledger, _report(tmp_path, sha=sha, created=now - timedelta(days=1)), deployed=None, live_sha=sha,
                    triton_repository=tmp_path / "repo", model_name="policy")
    assert fresh.decision == "PROMOTE" and fresh.provenance["model_sha256"] == sha
    assert _gate(fresh, "quant_report_newer_than_model").observed == pytest.approx(86400, abs=2)
    stale = _decide(ledger, _report(tmp_path, sha=sha, created=now - timedelta(days=3)), deployed=None, live_sha=sha,
                    triton_repository=tmp_path / "repo", model_name="policy")
    assert stale.gates_failed == ["quant_report_newer_than_model"] and stale.decision == "HOLD"


def test_missing_triton_model_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no numbered version folders"):
        _decide(_ledger(tmp_path), None, triton_repository=tmp_path / "repo", model_name="policy")
    with pytest.raises(InputError, match="go together"):
        DecideConfig(ledger=tmp_path / "x", model_name="policy")


def test_malformed_report_is_an_input_error(tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text(json.dumps({"created_at": "2026-01-01T00:00:00Z"}))
    with pytest.raises(InputError, match="not a quantization report"):
        _decide(_ledger(tmp_path), bad)


# -- plan -------------------------------------------------------------------------------------------

def test_shipped_plan_defaults():
    plan = load_plan()
    assert [s.influence_pct for s in plan.steps] == [0, 5, 10, 25, 50, 100]
    assert {s.cost_ratio_cap_pct for s in plan.steps} == {30.0}


@pytest.mark.parametrize("text, message", [
    ("window_days = 14\n[defaults]\ncost_ratio_cap = 30\n", "did you mean 'defaults.cost_ratio_cap_pct'"),
    ("windows_days = 14\n", "did you mean 'window_days'"),
    ("[[steps]]\ninfluence_pct = 5\n[[steps]]\ninfluence_pct = 5\n", "increase strictly"),
    ("[[steps]]\ninfluence_pct = 0\nmin_days = 'x'\n[[steps]]\ninfluence_pct = 5\n", "min_days"),
])
def test_bad_plans_are_rejected(tmp_path, text, message):
    path = tmp_path / "plan.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        load_plan(path)


def test_custom_plan_cap_changes_the_verdict(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text((load_plan.__globals__["resources"].files("costeff.ramp") / "plan.toml").read_text()
                    .replace("cost_ratio_cap_pct = 30.0", "cost_ratio_cap_pct = 50.0"))
    d = _decide(_ledger(tmp_path, cost=400.0), _report(tmp_path), plan=plan)
    assert _gate(d, "cost_ratio").threshold == 50.0 and d.decision == "PROMOTE"


def test_influence_not_in_plan_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not a step"):
        _decide(_ledger(tmp_path, influence=7.0), _report(tmp_path))


# -- the synthetic sample ---------------------------------------------------------------------------

def _ratio(ledger, start, end):
    econ = [r for r in ledger.economics() if start <= r.date <= end]
    cost = sum(r.usd for r in ledger.costs() if start <= r.date <= end)
    return 100.0 * cost / sum(r.gross_pnl_usd for r in econ)


def test_sample_holds_on_the_cost_gate_with_ratio_measured_from_the_ledger(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    import_sample(ledger, end=AS_OF - timedelta(days=1))
    days = [r.date for r in ledger.economics()]
    before, after = _ratio(ledger, days[0], days[13]), _ratio(ledger, days[-14], days[-1])
    assert 84 <= before <= 94 and 53 <= after <= 63  # "about 89 % falling to about 58 %"
    d = _decide(ledger, None, deployed=None)
    assert d.decision == "HOLD" and d.cost_ratio_pct == pytest.approx(after)
    assert _gate(d, "cost_ratio").verdict.value == "FAIL" and d.cost_ratio_pct > _gate(d, "cost_ratio").threshold
    assert _gate(d, "data_freshness").verdict.value == "PASS"
    assert _gate(d, "net_pnl").verdict.value == "PASS" and _gate(d, "days_at_step").verdict.value == "PASS"
    assert any("SYNTHETIC" in n for n in d.notices)


def test_cli_sample_import_then_decide_writes_decision(tmp_path, capsys):
    ledger, out = str(tmp_path / "l.sqlite"), tmp_path / "out"
    assert main(["ledger", "import", "--sample", "--ledger", ledger]) == 0
    capsys.readouterr()
    assert main(["ramp", "decide", "--ledger", ledger, "--out", str(out), "--json"]) == 1
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((out / "ramp_decision.json").read_text())
    assert written["decision"] == printed["decision"] == "HOLD"
    gates = {g["name"]: g for g in written["gates"]}
    assert gates["cost_ratio"]["verdict"] == "FAIL" and gates["data_freshness"]["verdict"] == "PASS"
    assert {"name", "observed", "threshold", "verdict"} <= set(gates["cost_ratio"])
    shape = {"name", "kind", "observed", "threshold", "comparator", "verdict", "unit", "detail", "enforced",
             "hard_breach"}
    assert all(set(g) == shape for g in written["gates"])  # one gate type, the ramp's fields kept
    assert (gates["cost_ratio"]["kind"], gates["cost_ratio"]["unit"], gates["cost_ratio"]["enforced"]) == \
        ("cost", "%", True)
    assert gates["drawdown"]["hard_breach"] is True and gates["data_freshness"]["hard_breach"] is False
    for key in ("cost_ratio_pct", "cost_per_signal_usd", "cost_per_trade_usd", "cost_per_day_usd",
                "monthly_cost_usd", "window", "step", "cost_gates_enabled", "provenance", "schema_version"):
        assert written[key] is not None, key
    assert "HOLD" in (out / "ramp_decision.md").read_text()


def test_cli_promote_exits_0_and_default_paths(tmp_path, capsys):
    ledger = _ledger(tmp_path / "artifacts")
    _live_window(ledger.path, MODEL)
    report = _report(tmp_path)
    FlagStore.default().set("deployed_model_sha256", MODEL)
    assert main(["ramp", "decide", "--as-of", AS_OF.isoformat(), "--quant-report", str(report)]) == 0
    written = list((tmp_path / "artifacts" / "cost" / "ramp").glob("*/ramp_decision.json"))
    assert len(written) == 1 and json.loads(written[0].read_text())["decision"] == "PROMOTE"


def test_cli_bad_input_exits_2_without_artifacts(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["ramp", "decide", "--ledger", str(tmp_path / "none.sqlite"), "--out", str(out)]) == 2
    assert "no ledger here" in capsys.readouterr().err
    _ledger(tmp_path)
    assert main(["ramp", "decide", "--ledger", str(tmp_path / "ledger.sqlite"), "--as-of", "2026-13-01",
                 "--out", str(out)]) == 2
    assert not out.exists() and default_log().records() == []


# -- paused pipelines are held, never promoted -----------------------------------------------------

def test_pipeline_paused_by_the_reaper_holds_and_restore_releases(good):
    from costeff.reaper.actions import PipelinePauser
    from costeff.reaper.config import Target

    target = Target(resource="book-a", kind="pipeline", name="book-a")
    pauser = PipelinePauser(FlagStore.default())
    assert pauser.reap(target).changed
    d = _decide(*good, pipeline="book-a")
    gate = _gate(d, "pipeline_not_paused")
    assert d.decision == "HOLD" and gate.verdict.value == "FAIL" and d.gates_failed == ["pipeline_not_paused"]
    assert "pipeline_paused.book-a is true" in gate.detail and "costeff-reaper" in gate.detail
    assert _decide(*good, pipeline="book-b").decision == "PROMOTE"  # another pipeline's pause is not ours
    pauser.restore(target, False)
    assert _decide(*good, pipeline="book-a").decision == "PROMOTE"


def test_pipeline_defaults_to_the_model_name(tmp_path):
    now = datetime.now(timezone.utc)
    _, sha = _triton_model(tmp_path, now - timedelta(days=2))
    report = _report(tmp_path, sha=sha, created=now - timedelta(days=1))
    FlagStore.default().set("pipeline_paused.policy", True, reason="maintenance")
    d = _decide(_ledger(tmp_path), report, deployed=None, live_sha=sha, triton_repository=tmp_path / "repo",
                model_name="policy")
    assert d.decision == "HOLD" and d.gates_failed == ["pipeline_not_paused"]
    assert "maintenance" in _why_held(d)


def test_every_pipeline_paused_holds_without_a_name_and_a_hard_breach_still_rolls_back(tmp_path):
    FlagStore.default().set("pipeline_paused", True)
    d = _decide(_ledger(tmp_path), _report(tmp_path))
    assert d.decision == "HOLD" and _gate(d, "pipeline_not_paused").verdict.value == "FAIL"
    breach = _decide(_ledger(tmp_path / "loss", pnl=100.0, cost=600.0, influence=10.0), _report(tmp_path))
    assert breach.decision == "ROLLBACK"  # a pause stops promotion, never a rollback


def test_cli_bad_pipeline_name_exits_2(tmp_path, capsys):
    _ledger(tmp_path)
    assert main(["ramp", "decide", "--ledger", str(tmp_path / "ledger.sqlite"), "--pipeline", "a b"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: flag pipeline_paused.a b: pipeline name") and default_log().records() == []


def _why_held(decision):
    return " ".join(decision.reasons)

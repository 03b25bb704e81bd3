"""The projection: each measured lever priced from the catalog, checked against a hand computation to the cent."""

import json
from datetime import date, timedelta

import pytest

from costeff.cli import main
from costeff.ledger import CostRow, EconomicsRow, Ledger
from costeff.ramp.projection import ProjectionInputs, observed_window, project

AS_OF = date(2026, 3, 1)
# Throughputs the default policy measured on this machine (README walkthrough: fp32 24,636/s, int8-mixed 72,050/s
# at batch 128), served at 200,000 inferences/s on a test catalog whose prices the test fixes.
CATALOG = """
[instances."cpu-small"]
kind = "cpu"
vcpus = 2
usd_per_hour = 0.085
cpu_match = true
source = "test"
as_of = "2026-03"

[instances."cpu-large"]
kind = "cpu"
vcpus = 8
usd_per_hour = 0.24
source = "test"
as_of = "2026-03"

[instances."gpu-one"]
kind = "gpu"
gpus = 1
usd_per_hour = 0.01
source = "test: a GPU is never chosen by vCPU scaling"
as_of = "2026-03"
"""


def _profile(sha, per_s):
    return {"model_sha256": sha, "optimal": {"batch_size": 128, "throughput_per_s": per_s},
            "cost": {"instance": "cpu-small", "target_rate_per_s": 200_000.0, "max_utilisation": 0.8}}


@pytest.fixture
def inputs(tmp_path):
    files = {"baseline_profile": _profile("f" * 64, 24_636.0), "profile": _profile("a" * 64, 72_050.0),
             "batching_report": {"chosen": {"instances": 3, "max_batch_size": 128, "max_queue_delay_us": 100.0}},
             "reaper_report": {"reduction_pct": 57.946}}
    paths = {}
    for name, body in files.items():
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(body))
    (tmp_path / "catalog.toml").write_text(CATALOG)
    return ProjectionInputs(catalog=tmp_path / "catalog.toml", **paths)


def _ledger(tmp_path, pnl=100.0, serving=30.0, other=5.0, days=14):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    end = AS_OF - timedelta(days=1)
    dates = [(end - timedelta(days=i)).isoformat() for i in range(days)]
    ledger.import_rows("economics", [EconomicsRow(d, pnl, 5000, 200, 5.0, "test") for d in dates])
    ledger.import_rows("cost", [CostRow(d, "serving", serving, "test", "aws-p4d.24xlarge", 24.0) for d in dates]
                       + [CostRow(d, "training", other, "test") for d in dates])
    return ledger


def test_projection_matches_a_hand_computation_to_the_cent(tmp_path, inputs):
    observed = observed_window(_ledger(tmp_path), AS_OF - timedelta(days=1), 14)
    p = project(inputs, observed, 30.0)
    # fp32:      ceil(200000 / (24636 * 0.8)) = ceil(10.15) = 11 x $0.085 x 24 h = $22.44
    # precision: ceil(200000 / (72050 * 0.8)) = ceil(3.47)  =  4 x $0.085 x 24 h = $8.16
    # batching:  the optimizer's 3 servers                       3 x $0.085 x 24 h = $6.12
    # right-size: cpu-large = 4 x cpu-small's vCPUs -> 288,200/s; ceil(200000 / (288200 * 0.8)) = 1 x $0.24 x 24 = $5.76
    # reaping:   $5.76 x (1 - 0.57946) = $2.4223104 -> $2.42
    assert [(lv.name, round(lv.usd_per_day_after, 2)) for lv in p.levers] == [
        ("precision", 8.16), ("batching", 6.12), ("right-sizing", 5.76), ("reaping", 2.42)]
    assert round(p.baseline_serving_usd_per_day, 2) == 22.44 and round(p.serving_usd_per_day, 2) == 2.42
    # shares of the $20.02 saved: 14.28, 2.04, 0.36 and 3.34 dollars
    assert [round(lv.share_pct, 1) for lv in p.levers] == [71.3, 10.2, 1.8, 16.7]
    assert "cpu-large" in p.levers[2].detail and "scaled by vCPUs" in p.levers[2].assumption
    # against the ledger: $5.00/day training stays, serving becomes $2.42: $7.42 / $100.00 = 7.42 %
    assert round(p.projected_infra_usd_per_day, 2) == 7.42 and round(p.projected_cost_ratio_pct, 2) == 7.42
    assert p.to_reach_cap["met"] is True and round(p.to_reach_cap["headroom_usd_per_day"], 2) == 22.58
    assert p.observed.cost_ratio_pct == pytest.approx(35.0) and "aws-p4d.24xlarge" in p.notes[0]


def test_what_remains_to_reach_the_cap(tmp_path, inputs):
    observed = observed_window(_ledger(tmp_path, pnl=20.0), AS_OF - timedelta(days=1), 14)
    p = project(inputs, observed, 30.0)
    # allowed 30 % of $20.00 = $6.00 < $7.42: cut $1.42, or earn 7.4223104 / 0.3 - 20 = $4.74 more per day
    assert p.to_reach_cap["met"] is False
    assert round(p.to_reach_cap["cost_to_cut_usd_per_day"], 2) == 1.42
    assert round(p.to_reach_cap["pnl_needed_usd_per_day"], 2) == 4.74
    assert p.to_reach_cap["serving_alone_exceeds_cap"] is False


def test_missing_inputs_make_the_projection_unavailable_not_an_error(tmp_path, inputs):
    from dataclasses import replace

    p = project(replace(inputs, batching_report=None, reaper_report=None), None, 30.0)
    assert not p.available and "batching_report, reaper_report" in p.reason and p.levers == []


def _decide(tmp_path, inputs, capsys, *extra):
    ledger = _ledger(tmp_path)
    capsys.readouterr()
    code = main(["ramp", "decide", "--ledger", str(ledger.path), "--out", str(tmp_path / "ramp"), "--json",
                 "--as-of", AS_OF.isoformat(), *extra])
    return code, json.loads(capsys.readouterr().out)


def test_every_decision_carries_a_labelled_projection(tmp_path, inputs, capsys):
    code, record = _decide(tmp_path, inputs, capsys, "--profile", str(inputs.profile), "--baseline-profile",
                           str(inputs.baseline_profile), "--batching-report", str(inputs.batching_report),
                           "--reaper-report", str(inputs.reaper_report), "--catalog", str(inputs.catalog))
    assert code == 1  # HOLD: no quantization evidence, but the projection is there all the same
    p = record["projection"]
    assert p["available"] and p["label"].startswith("PROJECTED") and round(p["serving_usd_per_day"], 2) == 2.42
    assert record["cost_ratio_pct"] == pytest.approx(35.0)  # the decision's own number stays the ledger's
    md = (tmp_path / "ramp" / "ramp_decision.md").read_text()
    assert "## Projection (PROJECTED, not from a bill)" in md and "| reaping |" in md


def test_a_decision_without_reports_says_why_there_is_no_projection(tmp_path, inputs, capsys):
    code, record = _decide(tmp_path, inputs, capsys)
    assert record["projection"]["available"] is False and "no profile" in record["projection"]["reason"]


def test_ramp_project_writes_the_projection(tmp_path, inputs, capsys):
    ledger = _ledger(tmp_path)
    assert main(["ramp", "project", "--ledger", str(ledger.path), "--as-of", AS_OF.isoformat(), "--out",
                 str(tmp_path / "proj"), "--profile", str(inputs.profile), "--baseline-profile",
                 str(inputs.baseline_profile), "--batching-report", str(inputs.batching_report), "--reaper-report",
                 str(inputs.reaper_report), "--catalog", str(inputs.catalog), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert round(out["projected_cost_ratio_pct"], 2) == 7.42
    written = json.loads((tmp_path / "proj" / "projection.json").read_text())
    assert written["levers"][0]["name"] == "precision" and (tmp_path / "proj" / "projection.md").is_file()


def test_the_shipped_catalog_prices_the_measured_instance(tmp_path, inputs):
    """Same chain through the shipped catalog, checked against its own price for the instance."""
    from dataclasses import replace

    from costeff.cost import load_catalog

    for name in ("profile", "baseline_profile"):
        body = json.loads(getattr(inputs, name).read_text())
        body["cost"]["instance"] = "aws-c6i.large"
        getattr(inputs, name).write_text(json.dumps(body))
    p = project(replace(inputs, catalog=None), None, 30.0)
    price = load_catalog().get("aws-c6i.large").usd_per_hour
    assert p.levers[0].usd_per_day_before == pytest.approx(11 * price * 24)
    assert p.levers[0].usd_per_day_after == pytest.approx(4 * price * 24)


def test_a_malformed_input_never_stops_the_decision(tmp_path, inputs, capsys):
    inputs.batching_report.write_text(json.dumps({"chosen": {"instances": 2}}))  # no "max_batch_size"
    code, record = _decide(tmp_path, inputs, capsys, "--profile", str(inputs.profile), "--baseline-profile",
                           str(inputs.baseline_profile), "--batching-report", str(inputs.batching_report),
                           "--reaper-report", str(inputs.reaper_report), "--catalog", str(inputs.catalog))
    assert code == 1 and record["decision"] == "HOLD"
    reason = record["projection"]["reason"]
    assert record["projection"]["available"] is False
    assert str(inputs.batching_report) in reason and "corrupt batching record: chosen.max_batch_size" in reason


def test_a_vcpu_slice_is_priced_from_its_instance_and_other_isa_families_are_not_candidates(tmp_path, inputs):
    from dataclasses import replace

    catalog = CATALOG.replace('kind = "cpu"\nvcpus = 2', 'kind = "cpu"\ncpu_family = "amx"\nvcpus = 2') \
        .replace('kind = "cpu"\nvcpus = 8', 'kind = "cpu"\ncpu_family = "avx2"\nvcpus = 8')
    (tmp_path / "families.toml").write_text(catalog)
    for name in ("profile", "baseline_profile"):
        body = json.loads(getattr(inputs, name).read_text())
        body["cost"]["instance"] = "cpu-small/1vcpu"  # half a cpu-small: $0.0425/h
        getattr(inputs, name).write_text(json.dumps(body))
    p = project(replace(inputs, catalog=tmp_path / "families.toml"), None, 30.0)
    # fp32: ceil(200000 / (24636 * 0.8)) = 11 x $0.0425 x 24 = $11.22; int8-mixed: 4 x $0.0425 x 24 = $4.08
    assert round(p.levers[0].usd_per_day_before, 2) == 11.22 and round(p.levers[0].usd_per_day_after, 2) == 4.08
    # cpu-large is AVX2, not AMX: never a right-sizing candidate for an AMX measurement
    assert p.levers[2].saving_usd_per_day == 0 and "cpu-large" not in p.levers[2].detail

"""`costeff run` end to end on the tiny policy, and the generated completion summary."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from costeff.cli import main
from costeff.pack import verify_pack
from costeff.pack.bundle import read_pack
from costeff.pack.measured import Reports
from costeff.pack.summary import acceptance, render_summary

QUICK = ["--preset", "tiny", "--batch-sizes", "1,8", "--window-s", "0.05", "--json"]


def _triton_env() -> list[str]:
    from triton_support import triton_env

    return ["--triton-env", str(triton_env().root)]


@pytest.fixture(scope="module")
def run_output(tmp_path_factory, tiny_policy):
    root = tmp_path_factory.mktemp("run")
    mp = pytest.MonkeyPatch()
    mp.setenv("COSTEFF_ARTIFACTS", str(root / "elsewhere"))  # --out must win over both variables
    mp.setenv("COSTEFF_MODEL_REPOSITORY", str(root / "elsewhere_repo"))
    mp.setenv("COSTEFF_HOME", str(root / "home"))  # the signing key and anchor, outside the artifacts
    mp.chdir(root)
    try:
        import contextlib
        import io
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["run", *QUICK, *_triton_env(), "--sample-as-of", "2026-03-10", "--out", str(root / "out")])
        yield code, json.loads(out.getvalue()), root
    finally:
        mp.undo()


@pytest.mark.slow
def test_run_completes_every_stage_and_packs(run_output):
    code, report, root = run_output
    assert code == 0, [s for s in report["stages"] if s["status"] != "ok"]
    assert [s["name"] for s in report["stages"]] == ["policy", "quantize", "profile", "profile-selected",
                                                    "batching", "triton", "verify", "reaper", "ramp", "pack",
                                                    "report"]
    assert all(s["status"] == "ok" and s["seconds"] >= 0 for s in report["stages"])
    page = next(s for s in report["stages"] if s["name"] == "report")["artifacts"][0]
    assert 'id="k-decision">HOLD<' in open(page).read()
    assert verify_pack(report["pack"], root / "home" / "keys" / "audit_ed25519.pub").ok


@pytest.mark.slow
def test_the_profiles_are_the_rounds_the_selection_was_made_on(run_output):
    """fp32's and the served variant's profiles are assembled from the quantize stage's full rounds: the same
    throughput per batch size as the selection compared, not a second measurement that could disagree."""
    _, report, _ = run_output
    files = read_pack(report["pack"])
    quant = json.loads(files["quant/quantization_report.json"])
    by_name = {v["name"]: v for v in quant["variants"]}
    served = quant["selected"]["name"]
    for record, name in (("profile_fp32", "fp32"), ("profile", served)):
        profile = json.loads(files[f"{record}/gpu_profile.json"])
        measured = {str(p["batch_size"]): p["throughput_per_s"] for p in profile["points"]}
        assert measured == pytest.approx(by_name[name]["throughput_per_s"], rel=1e-9), record
        labels = (name, "fp32 (A/A)") if name == "fp32" else (name,)  # fp32 is timed twice per round
        full = [r for r in quant["speed_rounds"] if r["kind"] == "full"]
        taken = [label in r["disturbed"] for r in full for label in labels if label in r["measurements"]]
        clean = taken.count(False)  # a disturbed measurement is left out when there are undisturbed ones
        assert profile["inputs"]["measurements"] == (clean or len(taken))
        assert "not measured again" in profile["inputs"]["source"]


@pytest.mark.slow
def test_run_out_puts_everything_it_writes_under_root(run_output):
    _, report, root = run_output
    # Only the run's root and, by design outside it, the signing key and the checkpoint anchor.
    assert sorted(p.name for p in root.iterdir()) == ["home", "out"]
    out = root / "out"
    assert (out / "model_repository").is_dir() and (out / "audit" / "audit.jsonl").is_file()
    assert any((out / "cost" / "models").glob("*.onnx")) and report["pack"].startswith(str(out))


@pytest.mark.slow
def test_written_reports_and_configs_are_world_readable(run_output):
    import stat
    _, _, root = run_output
    files = [*(root / "out").rglob("*.json"), *(root / "out").rglob("config.pbtxt"), *(root / "out").rglob("*.md")]
    assert files and all(stat.S_IMODE(f.stat().st_mode) & 0o044 == 0o044 for f in files), \
        [f for f in files if stat.S_IMODE(f.stat().st_mode) & 0o044 != 0o044]


@pytest.mark.slow
def test_pack_holds_every_stage_and_the_summary_traces_to_it(run_output):
    _, report, _ = run_output
    files = read_pack(report["pack"])
    for path in ("profile/gpu_profile.json", "profile_fp32/gpu_profile.json", "quant/quantization_report.json",
                 "batching/batching_report.json", "reaper/reaper_report.json", "ramp/ramp_decision.json",
                 "verify/verify_report.json", "model_repository/policy/config.pbtxt", "audit/audit.jsonl",
                 "COMPLETION_SUMMARY.md"):
        assert path in files, path
    summary = files["COMPLETION_SUMMARY.md"].decode()
    ramp = json.loads(files["ramp/ramp_decision.json"])
    assert ramp["as_of"] == "2026-03-10"  # --sample-as-of reached the ramp stage
    reaper = json.loads(files["reaper/reaper_report.json"])
    assert f"{ramp['cost_ratio_pct']:.1f} %" in summary
    assert f"{reaper['reduction_pct']:.1f} % less" in summary
    verified = json.loads(files["verify/verify_report.json"])
    assert verified["skipped"] is None and verified["measured"]["errors"] == 0
    assert verified["measured"]["requests"] > 0 and verified["measured"]["mean_batch_size"] >= 1
    assert "Measured on the real Triton 2.51.0" in summary and "p99 predicted" in summary
    # the synthetic sample is above its cap: the summary must show that criterion failing
    assert "| cost ratio <= cap |" in summary and ramp["decision"] == "HOLD"
    row = next(line for line in summary.splitlines() if line.startswith("| cost ratio <= cap"))
    assert "| FAIL |" in row

@pytest.mark.slow
def test_the_run_records_its_chain_and_a_later_pack_takes_that_run(run_output, monkeypatch, capsys):
    _, report, root = run_output
    out = root / "out"
    (manifest,) = (out / "cost" / "runs").glob("*.json")
    records = json.loads(manifest.read_text())["records"]
    packed = read_pack(report["pack"])
    for name in ("profile", "quant", "batching", "reaper", "ramp", "verify"):  # the run's pack is its manifest's
        assert hashlib.sha256(packed[f"{name}/{Path(records[name]['path']).name}"]).hexdigest() == \
            records[name]["sha256"]
    batching = json.loads(packed["batching/batching_report.json"])
    assert batching["inputs"]["profile"] == records["profile"]["sha256"]
    assert json.loads(packed["ramp/ramp_decision.json"])["inputs"]["quantization_report"] == records["quant"]["sha256"]
    assert json.loads(packed["verify/verify_report.json"])["inputs"]["batching_report"] == records["batching"]["sha256"]
    monkeypatch.setenv("COSTEFF_ARTIFACTS", str(out))
    monkeypatch.setenv("COSTEFF_MODEL_REPOSITORY", str(out / "model_repository"))
    monkeypatch.setenv("COSTEFF_HOME", str(root / "home"))
    kept = Path(report["summary"]).read_bytes()
    capsys.readouterr()
    assert main(["pack", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["records_from"].startswith(f"run {manifest.stem}") and again["summary"] != report["summary"]
    assert Path(report["summary"]).read_bytes() == kept  # the run's summary is never overwritten
    assert verify_pack(again["pack"], root / "home" / "keys" / "audit_ed25519.pub").ok



def test_a_failing_stage_does_not_hide_the_others(tmp_path, capsys):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not onnx")
    obs = tmp_path / "obs.npy"
    np.save(obs, np.zeros((600, 4), np.float32))
    code = main(["run", "--model", str(bad), "--observations", str(obs), "--json", "--out", str(tmp_path / "art")])
    report = json.loads(capsys.readouterr().out)
    assert report["pack"].startswith(str(tmp_path / "art" / "cost" / "pack_"))  # --out is the artifacts root
    status = {s["name"]: s["status"] for s in report["stages"]}
    assert code == 2
    assert status["policy"] == "failed" and status["quantize"] == "skipped"
    assert status["reaper"] == "ok" and status["ramp"] == "ok" and status["pack"] == "ok"
    failed = next(s for s in report["stages"] if s["name"] == "policy")
    assert "broken.onnx" in failed["error"]


def _reports(ratio=57.9, cap=30.0, speedup=2.0, drift=0.1, reduction=60.0):
    return {
        "ramp": {"cost_ratio_pct": ratio, "cost_ratio_cap_pct": cap, "cost_per_signal_usd": 0.03,
                 "cost_per_trade_usd": 3.7, "cost_gates_enabled": True,
                 "gates": [{"name": "cost_ratio", "verdict": "PASS" if ratio <= cap else "FAIL"}]},
        "reaper": {"reduction_pct": reduction},
        "quant": {"selected": {"name": "int8-mixed"}, "config": {"tolerances": {"action_drift_pct": 0.5}},
                  "variants": [{"name": "int8-mixed", "speedup": speedup, "fidelity": {"action_drift_pct": drift}}]},
        "profile": None, "fp32": None, "batching": None,
    }


@pytest.mark.parametrize("change, criterion", [
    ({"ratio": 25.0}, "cost ratio <= cap"),
    ({"speedup": 1.6}, "quantized path >= 1.5x throughput"),
    ({"drift": 0.4}, "action drift <= tolerance"),
    ({"reduction": 51.0}, "reaper GPU-hour reduction >= 50 %"),
])
def test_acceptance_is_decided_from_the_data(change, criterion):
    worse = {"ratio": 31.0, "speedup": 1.4, "drift": 0.6, "reduction": 49.0}
    key = next(iter(change))
    failing = {c.name: c.passed for c in acceptance(Reports.parse(_reports(**{key: worse[key]})))}
    passing = {c.name: c.passed for c in acceptance(Reports.parse(_reports(**change)))}
    assert failing[criterion] is False and passing[criterion] is True


def test_missing_reports_fail_their_criteria():
    results = {c.name: c.passed for c in acceptance(Reports.parse({k: None for k in _reports()}))}
    assert not any(results.values())


def test_summary_renders_without_any_report():
    text = render_summary({})
    assert "No quantization report in this pack" in text and "0 of 6 criteria PASS" in text


def test_summary_labels_profiles_by_what_they_measured():
    profile = {"provider": "CPUExecutionProvider", "optimal": {"batch_size": 8}, "points": [], "cost": {}}
    only_latest = render_summary({"profile/gpu_profile.json": json.dumps(profile).encode()})
    assert "latest profile (`profile/gpu_profile.json`" in only_latest and "fp32 baseline" not in only_latest
    both = render_summary({"profile/gpu_profile.json": json.dumps(profile).encode(),
                           "profile_fp32/gpu_profile.json": json.dumps(profile).encode()})
    assert "fp32 baseline (`profile_fp32/gpu_profile.json`" in both and "served variant (`profile/" in both

"""Precision lowering: fidelity metrics, gates, selection, fallback, report, CLI exit codes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from costeff.gates import Verdict
from costeff.quantization import PolicyOutputs, QuantizeConfig, Tolerances, compare, gates, quantize
from costeff.quantization.records import VariantResult
from costeff.quantization.select import choose

FAST = dict(batch_sizes=(1, 16), window_s=0.05, speed_rounds=1)


@pytest.fixture(scope="module")
def policy(tiny_policy) -> Path:
    return Path(tiny_policy.onnx_path)


@pytest.fixture(scope="module")
def obs(tiny_observations) -> np.ndarray:
    return tiny_observations[:800]


# --- metrics on hand-made logits, answers computed by hand in the test --------------------------

def test_fidelity_metrics_match_hand_computed_values():
    ref = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [0.5, 0.45, 0.0]])
    var = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [0.45, 0.5, 0.0]])  # last row flips
    fid = compare(PolicyOutputs(ref, np.zeros((4, 1))), PolicyOutputs(var, np.full((4, 1), 0.25)))

    def probs(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    p, q = probs(ref), probs(var)
    h = lambda x: float(np.mean(-(x * np.log(x)).sum(1)))  # noqa: E731
    kl = (p * np.log(p / q)).sum(1)
    margins = np.sort(p, 1)[:, -1] - np.sort(p, 1)[:, -2]
    assert fid.action_agreement_pct == pytest.approx(75.0)
    assert fid.action_drift_pct == pytest.approx(25.0)
    assert fid.confident_rows == int((margins >= 0.1).sum()) == 3  # the flipped row is a near-tie
    assert fid.confident_agreement_pct == pytest.approx(100.0)
    assert fid.entropy_drift_pct == pytest.approx(100 * abs(h(q) - h(p)) / h(p))
    assert fid.kl_mean == pytest.approx(kl.mean())
    assert fid.kl_p99 == pytest.approx(np.percentile(kl, 99))
    assert fid.action_correlation == pytest.approx(np.corrcoef(p.ravel(), q.ravel())[0, 1])
    assert fid.value_max_abs_err == pytest.approx(0.25)


def test_gates_compare_against_tolerances_and_fail_closed():
    ref = np.array([[3.0, 0.0, 0.0]] * 99 + [[0.0, 3.0, 0.0]])
    var = ref.copy()
    var[-1] = [3.0, 0.0, 0.0]  # 1 % of rows flip
    fid = compare(PolicyOutputs(ref, None), PolicyOutputs(var, None))
    by = {g.name: g for g in gates(fid, Tolerances(value_max_abs_err=0.1))}
    assert by["action_drift_pct"].verdict is Verdict.FAIL and by["action_drift_pct"].observed == pytest.approx(1.0)
    assert by["action_drift_pct"].threshold == 0.5 and by["action_drift_pct"].comparator == "<="
    assert by["value_max_abs_err"].verdict is Verdict.NO_DATA  # no value head: fails closed
    loose = {g.name: g for g in gates(fid, Tolerances(action_drift_pct=2.0, entropy_drift_pct=100.0,
                                                       action_correlation=0.5))}
    assert all(g.verdict is Verdict.PASS for g in loose.values())


def test_selection_takes_fastest_passing_variant_else_fp32():
    def v(name, passed, speedup, baseline=False):
        return VariantResult(name, built=True, passed=passed, speedup=speedup, baseline=baseline)
    base = v("fp32", True, 1.0, baseline=True)
    assert choose([base, v("fp16", True, 0.8), v("int8-dynamic", True, 2.0), v("int8-static", False, 3.0)])["name"] \
        == "int8-dynamic"
    none = choose([base, v("fp16", False, 1.2), v("int8-dynamic", False, 2.0)])
    assert none["name"] == "fp32" and none["passed_any"] is False
    slow = choose([base, v("fp16", True, 0.7)])
    assert slow["name"] == "fp32" and slow["passed_any"] is True and "at least 1.05x" in slow["reason"]
    within_noise = choose([base, v("fp16", True, 1.03)])  # a 3 % gain is not worth a lowered variant
    assert within_noise["name"] == "fp32"
    assert choose([base, v("fp16", True, 1.03)], min_speedup=1.0)["name"] == "fp16"


def test_bad_tolerance_and_config_name_the_field():
    from costeff.errors import InputError
    with pytest.raises(InputError, match="action_drift_pct"):
        Tolerances(action_drift_pct=-1)
    with pytest.raises(InputError, match="variants"):
        QuantizeConfig(variants=("int4",))
    with pytest.raises(InputError, match="calibration_method"):
        QuantizeConfig(calibration_method="Mystery")


# --- end to end on a tiny confident policy --------------------------------------------------------

@pytest.fixture(scope="module")
def report(policy, obs, tmp_path_factory):
    import os
    out = tmp_path_factory.mktemp("quant")
    os.environ["COSTEFF_ARTIFACTS"] = str(out / "artifacts")
    try:
        # kl_p99 1e-6 makes every int8 lowering fail, so the fallback has to run.
        cfg = QuantizeConfig(variants=("fp16", "int8-dynamic"), tolerances=Tolerances(kl_p99=1e-6), trials=6,
                             **FAST)
        return quantize(policy, obs, cfg, out_dir=out / "run")
    finally:
        del os.environ["COSTEFF_ARTIFACTS"]


@pytest.mark.slow
def test_fp16_passes_on_a_confident_policy(policy, obs, tmp_path):
    rep = quantize(policy, obs, QuantizeConfig(variants=("fp16",), **FAST), out_dir=tmp_path / "run")
    fp16 = rep.variant("fp16")
    assert fp16.built and fp16.passed, fp16.gates
    assert fp16.fidelity.action_drift_pct <= 0.5 and fp16.fidelity.entropy_drift_pct <= 0.5
    assert fp16.speedup is not None and fp16.size_reduction_pct > 0


@pytest.mark.slow
def test_fallback_keeps_heads_first_and_lists_excluded_nodes(report):
    mixed = report.variant("int8-mixed")
    assert not report.variant("int8-dynamic").passed
    import onnx

    from costeff.quantization.build import head_nodes
    heads = set(head_nodes(onnx.load(report.variant("fp32").path), ["logits", "value"]))
    assert len(heads) == 2  # the action head and the value head
    assert set(mixed.trials[0].excluded_nodes) == heads
    assert set(mixed.excluded_nodes[:2]) == heads
    assert mixed.derived_from == "int8-dynamic"
    # kl_p99 1e-6 fails every lowering; the search stops before the trial that would keep every lowerable
    # node in float (that is fp32 itself), so int8-mixed is the last real trial and fails.
    from costeff.quantization.build import lowerable_nodes
    assert set(mixed.excluded_nodes) < set(lowerable_nodes(onnx.load(report.variant("fp32").path)))
    assert not mixed.passed and any("identical to fp32" in n for n in mixed.notes)
    saved = json.loads((Path(report.report_dir) / "quantization_report.json").read_text())
    entry = next(v for v in saved["variants"] if v["name"] == "int8-mixed")
    assert entry["excluded_nodes"] == mixed.excluded_nodes


@pytest.mark.slow
def test_report_fields_and_models_on_disk(report):
    saved = json.loads((Path(report.report_dir) / "quantization_report.json").read_text())
    for v in saved["variants"]:
        assert {"name", "path", "sha256", "speedup", "passed", "fidelity"} <= set(v)
        if v["path"]:
            p = Path(v["path"])
            assert p.name == f"{saved['model_name']}_{v['name']}.onnx" and p.is_file()
            assert Path(f"{p}.sha256").read_text().split()[0] == v["sha256"]
    sel = saved["selected"]
    assert Path(sel["path"]).is_file() and sel["sha256"] and sel["name"]
    assert saved["model_sha256"] and saved["created_at"] and saved["hardware"] and saved["recipe"]["reason"]
    assert (Path(report.report_dir) / "quantization_report.md").is_file()


@pytest.mark.slow
def test_verdicts_recompute_from_saved_models_and_held_out_rows(report, obs, policy):
    from costeff.observations import split
    from costeff.quantization.batches import in_random_batches, probe_index, take
    from costeff.quantization.fidelity import run_policy

    s = report.split
    sp = split(obs, s["calibration_fraction"], s["seed"], s["min_calibration"], s["min_evaluation"])
    assert sp.evaluation_rows == s["evaluation_rows"]
    cal = {r.tobytes() for r in sp.calibration}
    assert not any(r.tobytes() in cal for r in sp.evaluation)  # held-out rows never calibrate
    ref = run_policy(policy, sp.evaluation, "logits", "value")
    seed, probe_rows = report.config["seed"], report.config["probe_rows"]
    probe = probe_index(len(sp.evaluation), probe_rows, seed)
    for v in report.variants:
        if v.built:
            assert set(v.fidelity_by_batch) == {"1", "16"}  # batch 1 and the largest profiled batch
            for key, entry in v.fidelity_by_batch.items():
                b = int(key)
                rows = probe if b == 1 else np.arange(len(sp.evaluation))
                run = lambda x, chunk, path=v.path: run_policy(path, x, "logits", "value", chunk=chunk)  # noqa: E731
                fid = compare(take(ref, rows), in_random_batches(run, sp.evaluation[rows], b, seed + b))
                assert fid.action_drift_pct == pytest.approx(entry.fidelity.action_drift_pct, abs=1e-9)
                assert fid.entropy_drift_pct == pytest.approx(entry.fidelity.entropy_drift_pct, rel=1e-6, abs=1e-9)
                verdicts = [g.verdict for g in gates(fid, Tolerances(kl_p99=1e-6))]
                assert all(x is Verdict.PASS for x in verdicts) == entry.passed
            assert v.passed == (all(e.passed for e in v.fidelity_by_batch.values())
                                and (v.baseline or v.batch_invariance.action_change_pct <= 0.05))


# --- CLI: exit codes and bad input ----------------------------------------------------------------

def _cli(*args: str) -> int:
    from costeff.cli import main
    return main(["quantize", *args, "--batch-sizes", "1,16", "--window-s", "0.05", "--rounds", "1"])


@pytest.fixture(scope="module")
def obs_file(obs, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("obs") / "obs.npy"
    np.save(path, obs)
    return path


@pytest.mark.slow
def test_cli_exit_0_when_a_variant_passes_and_1_when_none_does(policy, obs_file, tmp_path, capsys):
    assert _cli(str(policy), "--observations", str(obs_file), "--variants", "fp16", "--out",
                str(tmp_path / "a"), "--json") == 0
    record = json.loads(capsys.readouterr().out)
    assert record["passed_any"] is True
    assert _cli(str(policy), "--observations", str(obs_file), "--variants", "fp16", "--trials", "0",
                "--max-kl-p99", "0", "--max-entropy-drift-pct", "0", "--out", str(tmp_path / "b")) == 1
    saved = json.loads((tmp_path / "b" / "quantization_report.json").read_text())
    assert saved["selected"]["name"] == "fp32" and "no lowered variant" in saved["selected"]["reason"]


def _quantized(policy: Path, tmp_path: Path) -> Path:
    from onnxruntime.quantization import quantize_dynamic
    out = tmp_path / "q.onnx"
    quantize_dynamic(str(policy), str(out))
    return out


def _no_weights(tmp_path: Path, shape: tuple[int, ...]) -> Path:
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", *shape])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", *shape])
    path = tmp_path / "noweights.onnx"
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Relu", ["obs"], ["logits"])], "g", [x], [y])),
              str(path))
    return path


@pytest.mark.parametrize("case, message", [
    ("quantized", "already quantized"), ("no_weights", "no float weights"), ("few_rows", "need at least"),
    ("shape", "expected [rows"), ("nan", "NaN"), ("no_obs", "--observations")])
def test_cli_bad_input_exits_2_with_one_line(case, message, policy, obs, tmp_path, capsys):
    model, rows = policy, obs
    if case == "quantized":
        model = _quantized(policy, tmp_path)
    elif case == "no_weights":
        model = _no_weights(tmp_path, obs.shape[1:])
    elif case == "few_rows":
        rows = obs[:100]
    elif case == "shape":
        rows = obs[:, :, :2]
    elif case == "nan":
        rows = obs.copy()
        rows[5, 0, 0] = math.nan
    np.save(tmp_path / "o.npy", rows)
    extra = [] if case == "no_obs" else ["--observations", str(tmp_path / "o.npy")]
    assert _cli(str(model), *extra, "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not (tmp_path / "out").exists()  # nothing written on bad input


@pytest.mark.slow
def test_a_failed_report_write_takes_back_the_models_it_saved(policy, obs_file, tmp_path, monkeypatch, capsys):
    import errno

    from costeff import artifacts
    from costeff.artifacts import Layout

    def full_disk(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(artifacts, "atomic_write_json", full_disk)  # the record, written last
    assert _cli(str(policy), "--observations", str(obs_file), "--variants", "fp16", "--out", str(tmp_path / "q")) == 2
    err = capsys.readouterr().err
    assert err.strip().endswith("quantization_report.json: No space left on device")
    assert not list(Layout.default().models.glob("*"))  # the fp16 variant saved before the report is gone
    assert not list((tmp_path / "q").glob("quantization_report.*"))  # nor its Markdown

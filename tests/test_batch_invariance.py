"""Decisions independent of their batch: fidelity at batch 1 and at the largest served batch, batch invariance,
and no fallback that is fp32 under another name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from costeff.quantization import QuantizeConfig, Tolerances, quantize
from workspace_support import env_workspace

FAST = dict(batch_sizes=(1, 16), window_s=0.05, speed_rounds=1, finalists=None)
LOOSE_FIDELITY = dict(action_drift_pct=100.0, entropy_drift_pct=1e9, action_correlation=-1.0)


@pytest.fixture(scope="module")
def policy(tiny_policy) -> Path:
    return Path(tiny_policy.onnx_path)


@pytest.fixture(scope="module")
def obs(tiny_observations) -> np.ndarray:
    return tiny_observations[:800]


def _saved(report) -> dict:
    return json.loads((Path(report.report_dir) / "quantization_report.json").read_text())


def batch_mean_model(src: Path, dst: Path, alpha: float) -> Path:
    """``src`` with logits + alpha * (logits - their mean over the batch): exact at batch 1, not in a batch."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    for node in model.graph.node:
        node.output[:] = ["logits_raw" if o == "logits" else o for o in node.output]
    model.graph.initializer.append(numpy_helper.from_array(np.array(alpha, dtype=np.float32), "alpha"))
    model.graph.node.extend([
        helper.make_node("ReduceMean", ["logits_raw"], ["batch_mean"], axes=[0], keepdims=1),
        helper.make_node("Sub", ["logits_raw", "batch_mean"], ["centred"]),
        helper.make_node("Mul", ["centred", "alpha"], ["scaled"]),
        helper.make_node("Add", ["logits_raw", "scaled"], ["logits"])])
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst


def _as_fp16(monkeypatch, policy: Path, tmp: Path, alpha: float) -> None:
    """Every fp16 build writes the batch-mean model: a variant whose answers depend on its neighbours."""
    from costeff.quantization import build

    contrived = batch_mean_model(policy, tmp / "batch_mean.onnx", alpha)

    def fake(base, dst, op_block_list=(), node_block_list=()):
        Path(dst).write_bytes(contrived.read_bytes())
        return []

    monkeypatch.setattr(build, "build_fp16", fake)


# --- dynamic int8 vs fp32 on the tiny preset policy -----------------------------------------------

@pytest.fixture(scope="module")
def int8_report(policy, obs, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8")
    mp = pytest.MonkeyPatch()
    mp.setenv("COSTEFF_ARTIFACTS", str(out / "artifacts"))
    try:
        return quantize(policy, obs, QuantizeConfig(variants=("int8-dynamic",), trials=0, probe_rows=200, **FAST),
                        out_dir=out / "run", workspace=env_workspace())
    finally:
        mp.undo()


def test_dynamic_int8_answers_change_with_the_batch_while_fp32_does_not(int8_report):
    saved = {v["name"]: v for v in _saved(int8_report)["variants"]}
    fp32, int8 = saved["fp32"]["batch_invariance"], saved["int8-dynamic"]["batch_invariance"]
    assert fp32["max_logit_diff"] <= 1e-5 and fp32["action_change_pct"] == 0.0
    assert int8["max_logit_diff"] > 1e-3  # the activation scale is computed over the whole batch
    assert int8["batch_sizes"] == fp32["batch_sizes"] == [1, 16]
    assert int8["rows"] == fp32["rows"] == 200  # probe rows: bounded, not every held-out row
    gate = next(g for g in saved["int8-dynamic"]["gates"] if g["name"] == "batch_action_change_pct")
    assert gate["threshold"] == 0.05
    assert gate["verdict"] == ("PASS" if int8["action_change_pct"] <= 0.05 else "FAIL")
    assert not any(g["name"] == "batch_action_change_pct" for g in saved["fp32"]["gates"])  # fp32 is the floor


def test_every_variant_is_judged_at_batch_1_and_the_largest_served_batch(int8_report):
    report = _saved(int8_report)
    held_out = report["split"]["evaluation_rows"]
    for v in report["variants"]:
        by = v["fidelity_by_batch"]
        assert set(by) == {"1", "16"}
        assert by["1"]["rows"] == 200 and by["16"]["rows"] == held_out > 200
        for key, entry in by.items():
            assert {"action_drift_pct", "entropy_drift_pct", "action_correlation"} <= set(entry["fidelity"])
            assert entry["passed"] == all(g["verdict"] == "PASS" for g in entry["gates"])
            assert {f'{g["name"]}@b{key}' for g in entry["gates"]} <= {g["name"] for g in v["gates"]}
    md = (Path(int8_report.report_dir) / "quantization_report.md").read_text()
    assert "## Fidelity by batch size" in md and "| int8-dynamic | 1 | 200 |" in md
    assert f"| int8-dynamic | 16 | {held_out} |" in md and "## Batch invariance" in md


# --- a contrived variant whose logits depend on the batch mean ------------------------------------

def test_a_variant_whose_actions_change_with_the_batch_fails_whatever_its_drift(policy, obs, tmp_path,
                                                                                 monkeypatch):
    _as_fp16(monkeypatch, policy, tmp_path, alpha=1.0)
    rep = quantize(policy, obs, QuantizeConfig(variants=("fp16",), trials=0,
                                               tolerances=Tolerances(**LOOSE_FIDELITY), **FAST),
                   out_dir=tmp_path / "run", workspace=env_workspace())
    v = rep.variant("fp16")
    assert v.built and v.batch_invariance.action_change_pct > 0.05
    assert [g.name for g in v.gates if not g.passed] == ["batch_action_change_pct"]  # every fidelity gate passed
    assert not v.passed and v.speedup is None  # never timed
    assert rep.selected["name"] == "fp32" and not rep.passed_any


def test_a_variant_failing_only_at_the_largest_batch_fails(policy, obs, tmp_path, monkeypatch):
    _as_fp16(monkeypatch, policy, tmp_path, alpha=1.0)
    rep = quantize(policy, obs, QuantizeConfig(variants=("fp16",), trials=0,
                                               tolerances=Tolerances(batch_action_change_pct=100.0), **FAST),
                   out_dir=tmp_path / "run", workspace=env_workspace())
    v = rep.variant("fp16")
    by = v.fidelity_by_batch
    assert by["1"].passed and by["1"].fidelity.action_drift_pct == 0.0  # alone it is the policy itself
    assert not by["16"].passed and by["16"].fidelity.action_drift_pct > 0.5
    assert not v.passed and rep.selected["name"] == "fp32"
    saved = next(x for x in _saved(rep)["variants"] if x["name"] == "fp16")
    assert saved["fidelity_by_batch"]["16"]["passed"] is False and saved["passed"] is False


# --- no fallback equal to its source --------------------------------------------------------------

def heads_only_policy(path: Path, seed: int = 0) -> Path:
    """obs [B, 8, 8] -> Flatten -> Gemm logits [B, 4] and Gemm value [B, 1]: every lowerable node is a head."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
             for name, shape in (("wp", (4, 64)), ("bp", (4,)), ("wv", (1, 64)), ("bv", (1,)))]
    nodes = [helper.make_node("Flatten", ["obs"], ["flat"]),
             helper.make_node("Gemm", ["flat", "wp", "bp"], ["logits"], transB=1),
             helper.make_node("Gemm", ["flat", "wv", "bv"], ["value"], transB=1)]
    graph = helper.make_graph(
        nodes, "heads", [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("value", TensorProto.FLOAT, ["batch", 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_fallback_identical_to_fp32_is_not_built_timed_or_selected(obs, tmp_path):
    policy = heads_only_policy(tmp_path / "heads.onnx")
    # kl_p99 1e-9 fails any int8 lowering, so the fallback must try; its first trial keeps both heads in
    # float, and both heads are every lowerable node: that is fp32 itself.
    rep = quantize(policy, obs, QuantizeConfig(variants=("int8-dynamic",), tolerances=Tolerances(kl_p99=1e-9),
                                               **FAST), out_dir=tmp_path / "run", workspace=env_workspace())
    assert not rep.variant("int8-dynamic").passed
    mixed = rep.variant("int8-mixed")
    assert not mixed.built and not mixed.passed and mixed.path is None and mixed.speedup is None
    assert mixed.error.startswith("identical to fp32") and mixed.trials == []
    assert rep.selected["name"] == "fp32"
    md = (Path(rep.report_dir) / "quantization_report.md").read_text()
    assert "| int8-mixed | no: identical to fp32" in md
    assert not list(Path(rep.variant("fp32").path).parent.glob("*int8-mixed*"))  # no model file saved


# --- the CLI and drift check ----------------------------------------------------------------------

@pytest.mark.parametrize("flag, value, field", [("--max-batch-action-change-pct", "-1", "batch_action_change_pct"),
                                                ("--probe-rows", "0", "probe_rows")])
def test_cli_bad_batch_options_exit_2_with_one_line(flag, value, field, tmp_path, capsys):
    from costeff.cli import main

    assert main(["quantize", "--preset", "tiny", flag, value, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and field in err[0]
    assert not (tmp_path / "out").exists()


def test_cli_help_shows_the_batch_invariance_default(capsys):
    from costeff.cli import main

    with pytest.raises(SystemExit):
        main(["quantize", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--max-batch-action-change-pct PCT" in text and "(default 0.05)" in text


def test_drift_check_reports_the_served_models_batch_invariance(policy, obs, tmp_path, capsys):
    import onnx
    from onnxruntime.quantization import quantize_dynamic

    from costeff.cli import main

    int8 = tmp_path / "int8.onnx"
    quantize_dynamic(str(policy), str(int8))
    same = onnx.load(str(policy))
    same.producer_name = "copy"  # the same arithmetic, another file: fp32's own floor
    onnx.save(same, str(tmp_path / "copy.onnx"))
    np.save(tmp_path / "obs.npy", obs[:600])
    figures = {}
    for name in ("int8", "copy"):
        assert main(["drift", "check", "--reference", str(policy), "--served", str(tmp_path / f"{name}.onnx"),
                     "--observations", str(tmp_path / "obs.npy"), "--batch-size", "64", "--ledger",
                     str(tmp_path / "ledger.sqlite"), "--out", str(tmp_path / name), "--json"]) in (0, 1)
        printed = json.loads(capsys.readouterr().out)
        saved = json.loads((tmp_path / name / "drift_report.json").read_text())
        assert printed["batch_invariance"] == saved["batch_invariance"]
        figures[name] = saved["batch_invariance"]
        assert "Batch invariance (served model)" in (tmp_path / name / "drift_report.md").read_text()
    assert figures["int8"]["max_logit_diff"] > 1e-3 and figures["copy"]["max_logit_diff"] <= 1e-5
    assert figures["int8"]["batch_sizes"] == [1, 64] and figures["int8"]["rows"] == 256

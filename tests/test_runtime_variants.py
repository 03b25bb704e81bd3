"""Runtime settings as variants (fp32@threads=1, fp32@nospin, ov-*@hint=...), and calibration that
feeds batches of one shape."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from costeff.artifacts import sha256_file
from costeff.errors import InputError
from costeff.gates import check
from costeff.quantization import settings
from costeff.quantization.config import QuantizeConfig
from costeff.quantization.records import VariantResult
from costeff.serving import BuildConfig, build_repository

from test_serving import _profile
from workspace_support import env_workspace

FAST = dict(batch_sizes=(1, 16), window_s=0.05, speed_rounds=1, gaps_s=(0.0,), open_loop_s=0.3)


@pytest.fixture(scope="module")
def policy(tiny_policy) -> Path:
    return Path(tiny_policy.onnx_path)


@pytest.fixture(scope="module")
def obs(tiny_observations) -> np.ndarray:
    return tiny_observations


# --- names and planning ----------------------------------------------------------------------------

def test_settings_parse_per_backend_and_bad_ones_name_the_setting():
    assert settings.parse("threads=1@nospin", "onnxruntime") == {"threads": 1, "spinning": False}
    assert settings.parse("hint=throughput@streams=2", "openvino") == {"performance_hint": "THROUGHPUT",
                                                                        "streams": 2}
    QuantizeConfig(variants=("fp32@threads=1", "int8-dynamic@nospin", "ov-fp32@hint=throughput"))
    for bad, word in (("fp32@hint=throughput", "hint=throughput"), ("ov-fp32@nospin", "nospin"),
                      ("fp32@threads=0", "threads=0"), ("fp32@streams=2", "streams=2")):
        with pytest.raises(InputError, match=word):
            QuantizeConfig(variants=(bad,))
    for bad in ("int4@threads=1", "fp32@threads=1@@"):
        with pytest.raises(InputError):
            QuantizeConfig(variants=(bad,))


def test_the_cli_refuses_a_bad_setting_with_one_line_and_exit_2(policy, tmp_path, capsys):
    from costeff.cli import main

    assert main(["quantize", str(policy), "--out", str(tmp_path / "q"), "--variants", "fp32@spin"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: variants: fp32@spin") and "nospin" in err[0]
    assert not (tmp_path / "q").exists()


def test_the_default_run_plans_fp32s_runtime_settings_on_the_cpu_only():
    assert settings.requested(QuantizeConfig()) == ["fp32@threads=1", "fp32@nospin"]
    assert settings.requested(QuantizeConfig(provider="cuda")) == []
    assert settings.requested(QuantizeConfig(tune_knobs=False)) == []
    assert settings.requested(QuantizeConfig(variants=("fp16", "fp16@threads=1"))) == ["fp16@threads=1"]


def test_a_runtime_variant_of_a_variant_not_asked_for_builds_its_base():
    from costeff.hardware import detect
    from costeff.quantization.variants import plan

    tried, _ = plan(QuantizeConfig(variants=("int8-dynamic@threads=1", "fp32@nospin")), detect(), "cpu")
    assert tried == ["int8-dynamic"]  # fp32 is always built; the @ variants are made from their bases


# --- gated like the base ---------------------------------------------------------------------------

class _Ctx:
    def __init__(self, config, fp32_path="model.onnx"):
        self.config, self.base_fp32 = config, Path(fp32_path)


def _base(name, passed, baseline=False):
    gate = check("action_drift_pct@b1", 0.1 if passed else 0.9, "<=", 0.5)
    return VariantResult(name, built=True, baseline=baseline, passed=passed, gates=[gate],
                         path=None if baseline else f"{name}.onnx", notes=[f"{name} note"])


def test_runtime_variants_carry_their_bases_gates_and_verdict(monkeypatch):
    monkeypatch.setattr("costeff.runtimes.cpus.usable_cpus", lambda: 4)
    variants = [_base("fp32", True, baseline=True), _base("int8-dynamic", False)]
    cfg = QuantizeConfig(variants=("fp32@threads=1", "fp32@nospin", "int8-dynamic@threads=2", "fp16@threads=1"))
    out = {v.name: v for v in settings.runtime_variants(_Ctx(cfg), variants)}
    one, nospin, int8, fp16 = (out[n] for n in cfg.variants)
    assert one.passed and one.gates == variants[0].gates and not one.baseline
    assert one.path == "model.onnx"  # fp32's file, timed as its own variant
    assert (one.settings_of, one.settings, one.runtime) == ("fp32", {"threads": 1}, {"threads": 1})
    assert nospin.runtime == {"spinning": False} and any("no parameter for thread spinning" in n
                                                         for n in nospin.notes)
    assert not int8.passed and int8.gates == variants[1].gates and int8.path == "int8-dynamic.onnx"
    assert fp16.not_tried and "fp16 was not built" in fp16.not_tried and not fp16.built


def test_a_thread_count_equal_to_the_default_is_not_a_variant(monkeypatch):
    monkeypatch.setattr("costeff.runtimes.cpus.usable_cpus", lambda: 1)
    out = settings.runtime_variants(_Ctx(QuantizeConfig(variants=("fp32@threads=1",))),
                                    [_base("fp32", True, baseline=True)])
    assert not out[0].built and "identical to fp32" in out[0].not_tried


def test_other_runtime_settings_give_the_same_answers(policy, obs):
    # Why a runtime variant needs no gate run of its own: same file, same answers.
    from costeff.runtimes import RuntimeOptions, open_runner

    rows = obs[:256].astype(np.float32)
    default = open_runner(policy).run(rows)
    for opts in (RuntimeOptions(threads=1), RuntimeOptions(spinning=False)):
        for got, want in zip(open_runner(policy, options=opts).run(rows), default, strict=True):
            np.testing.assert_array_equal(got, want)


# --- end to end: timed, reported, served -----------------------------------------------------------

@pytest.fixture(scope="module")
def report(policy, obs, tmp_path_factory):
    from costeff.quantization.engine import quantize

    out = tmp_path_factory.mktemp("rv") / "q"
    cfg = QuantizeConfig(variants=("fp32@threads=1", "fp32@nospin"), target_rate=200.0, **FAST)
    return quantize(policy, obs, cfg, out_dir=out, workspace=env_workspace()), out


def test_runtime_variants_are_timed_beside_fp32_and_reported_with_their_settings(report, policy):
    rep, out = report
    by = {v.name: v for v in rep.variants}
    fp32, one, nospin = by["fp32"], by["fp32@threads=1"], by["fp32@nospin"]
    for v in (one, nospin):
        assert v.passed and [g.name for g in v.gates] == [g.name for g in fp32.gates]
        assert v.fidelity == fp32.fidelity and v.speedup is not None and v.at_target is not None
        assert (v.path, v.sha256) == (fp32.path, fp32.sha256) == (fp32.path, sha256_file(policy))
    assert one.runtime["threads"] == 1 and nospin.runtime["spinning"] is False
    assert fp32.runtime["spinning"] is True
    data = json.loads((out / "quantization_report.json").read_text())
    saved = {v["name"]: v for v in data["variants"]}
    assert saved["fp32@threads=1"]["settings"] == {"threads": 1} and saved["fp32@nospin"]["settings_of"] == "fp32"
    md = (out / "quantization_report.md").read_text()
    assert "## Runtime settings" in md
    assert "| fp32@threads=1 | fp32 | threads=1 |" in md and "| fp32@nospin | fp32 | spinning off |" in md
    assert not any("@" in p.name for p in Path(fp32.path).parent.iterdir())  # no second copy of the file
    # the selected one of the family is named in the runtime-settings rows, without timing them again
    rows = rep.selected["knobs"]
    assert len(rows) == 3 and [r["adopted"] for r in rows].count(True) == 1
    adopted = next(r for r in rows if r["adopted"])
    assert rep.selected["name"] in adopted["setting"] or (rep.selected["name"] == "fp32"
                                                          and adopted["setting"].startswith("default"))
    assert all(r["beats_default"] is None for r in rows if r["setting"].startswith("default"))


def _selecting(report, name: str, tmp_path: Path) -> Path:
    """The run's own report with ``name`` as the selected variant (as when it won the rounds)."""
    rep, out = report
    data = json.loads((out / "quantization_report.json").read_text())
    entry = next(v for v in data["variants"] if v["name"] == name)
    data["selected"] = {**data["selected"], **{k: entry[k] for k in ("name", "path", "sha256", "runtime")}}
    path = tmp_path / "quantization_report.json"
    path.write_text(json.dumps(data))
    return path


def test_a_selected_thread_count_flows_into_the_triton_config(report, policy, tmp_path):
    profile = _profile(tmp_path, policy)
    result = build_repository(BuildConfig(policy, profile, tmp_path / "repo", instance_kind="cpu", serving_cpus=4,
                                          quantization_report=_selecting(report, "fp32@threads=1", tmp_path)),
                              workspace=env_workspace())
    assert result.variant == "fp32@threads=1"
    assert result.parameters["intra_op_thread_count"] == "1" and result.threads.threads_per_instance == 1
    # plain fp32 was measured with this host's default thread count: not a choice, so the container's share
    result = build_repository(BuildConfig(policy, profile, tmp_path / "repo", instance_kind="cpu", serving_cpus=4,
                                          quantization_report=_selecting(report, "fp32", tmp_path)),
                              workspace=env_workspace())
    assert result.parameters["intra_op_thread_count"] == "4"


def test_a_selected_nospin_variant_is_served_with_a_note_that_triton_cannot_turn_spinning_off(report, policy,
                                                                                                 tmp_path):
    result = build_repository(BuildConfig(policy, _profile(tmp_path, policy), tmp_path / "repo",
                                          instance_kind="cpu", serving_cpus=2,
                                          quantization_report=_selecting(report, "fp32@nospin", tmp_path)),
                              workspace=env_workspace())
    assert result.variant == "fp32@nospin"
    assert any("no parameter for thread spinning" in n for n in result.notes)
    assert not any("spin" in k for k in result.parameters)


@pytest.mark.slow
def test_openvino_hint_and_streams_settings_flow_into_the_openvino_backend(policy, tmp_path):
    pytest.importorskip("openvino")
    from costeff.quantization.openvino import convert

    xml = tmp_path / "policy_ov.xml"
    convert(policy, xml)
    runtime = {"performance_hint": "THROUGHPUT", "streams": 2, "threads": 2, "precision": "f32"}
    v = {"name": "ov-fp32@hint=throughput@streams=2", "path": str(xml), "sha256": sha256_file(xml),
         "backend": "openvino", "precision": "fp32", "runtime": runtime, "settings_of": "ov-fp32",
         "settings": {"performance_hint": "THROUGHPUT", "streams": 2}}
    report = tmp_path / "q.json"
    report.write_text(json.dumps({"model_sha256": sha256_file(policy), "hardware": {"isa": []}, "selected": v,
                                  "variants": [v]}))
    result = build_repository(BuildConfig(policy, _profile(tmp_path, policy), tmp_path / "repo",
                                          serving_cpus=8, quantization_report=report), workspace=env_workspace())
    assert result.parameters["PERFORMANCE_HINT"] == "THROUGHPUT" and result.parameters["NUM_STREAMS"] == "2"
    assert result.parameters["INFERENCE_NUM_THREADS"] == "2"


# --- calibration -----------------------------------------------------------------------------------

@pytest.mark.parametrize("rows, expected", [(1800, (60, 1800)), (1801, (64, 1792)), (50, (50, 50)),
                                            (128, (64, 128))])
def test_calibration_batches_all_have_one_shape(rows, expected):
    from costeff.quantization.build import _reader, calibration_batch

    assert calibration_batch(rows, 64) == expected
    reader = _reader("x", np.zeros((rows, 3), np.float32))
    shapes = set()
    while (batch := reader.get_next()) is not None:
        shapes.add(batch["x"].shape)
    assert shapes == {(expected[0], 3)}


@pytest.mark.parametrize("method", ["Entropy", "Percentile"])
def test_entropy_and_percentile_calibrate_1800_rows(policy, method, tmp_path):
    import onnx

    from costeff.modelio import read_signature
    from costeff.policy import generate_observations
    from costeff.quantization import build

    rows = generate_observations(1800, seed=3, preset="tiny").astype(np.float32)
    base, dst = tmp_path / "base.onnx", tmp_path / f"{method}.onnx"
    build.prepare_base(policy, base)
    build.build_static(base, dst, build.Int8Recipe("t"), rows, read_signature(policy, {}).input().name, method)
    ops = {n.op_type for n in onnx.load(str(dst)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops

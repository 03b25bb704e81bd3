"""`costeff profile` end to end on tiny ONNX policies built here: artifacts, cost, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from costeff.cli import main
from costeff.cost import load_catalog

FAST = ["--window-ms", "50", "--warmup-ms", "20", "--max-trials", "4", "--provider", "cpu"]
WINDOW, FEATURES = 4, 5


def _policy(path, dtype="float32", batch_dim="batch"):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    elem = TensorProto.FLOAT16 if dtype == "float16" else TensorProto.FLOAT
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((WINDOW * FEATURES, 32)).astype(dtype), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((32, 3)).astype(dtype), "w2")
    shape = numpy_helper.from_array(np.array([-1, WINDOW * FEATURES], dtype=np.int64), "flat")
    nodes = [helper.make_node("Reshape", ["obs", "flat"], ["x"]), helper.make_node("MatMul", ["x", "w1"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["logits"])]
    graph = helper.make_graph(nodes, "policy",
                              [helper.make_tensor_value_info("obs", elem, [batch_dim, WINDOW, FEATURES])],
                              [helper.make_tensor_value_info("logits", elem, [batch_dim, 3])], [w1, w2, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {"fp32": _policy(d / "p.onnx"), "fp16": _policy(d / "p16.onnx", "float16"),
            "fixed": _policy(d / "fixed.onnx", batch_dim=1)}


def _obs(tmp_path, array, name="obs.npy"):
    path = tmp_path / name
    np.save(path, array)
    return str(path)


def _run(capsys, *argv):
    code = main(["profile", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_profile_writes_report_markdown_and_plots(models, tmp_path, capsys):
    out = tmp_path / "run"
    obs = _obs(tmp_path, np.random.default_rng(1).standard_normal((40, WINDOW, FEATURES)).astype(np.float32))
    code, stdout, _ = _run(capsys, str(models["fp32"]), "--batch-sizes", "1,8,64", "--latency-budget-ms", "1000",
                           "--target-rate", "500", "--observations", obs, "--out", str(out), "--json", *FAST)
    assert code == 0
    report = json.loads((out / "gpu_profile.json").read_text())
    assert json.loads(stdout) == report
    for key in ("schema_version", "created_at", "costeff_version", "model_sha256", "hardware", "provider",
                "config", "points", "optimal", "cost", "recommendations"):
        assert key in report
    assert [p["batch_size"] for p in report["points"]] == [1, 8, 64]
    for p in report["points"]:
        assert p["throughput_per_s"] > 0 and isinstance(p["stable"], bool) and p["trials"] >= 3
        assert p["latency_ms"]["p50"] <= p["latency_ms"]["p99"]
        assert p["gpu"] is None and p["gpu_null_reason"]
        assert p["rss_peak_mb"] > 0 and 0 <= p["cpu_util_pct"] <= 100
    assert report["optimal"]["batch_size"] in (1, 8, 64) and report["optimal"]["within_budget"] is True
    assert "obs.npy" in report["inputs"]["source"]
    assert all(r["metric"] and "observed" in r for r in report["recommendations"])
    assert (out / "gpu_profile.md").read_text().count("| 64 |") == 1
    for png in ("throughput_vs_batch.png", "p99_vs_batch.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_default_output_folder_is_a_timestamped_cost_run(models, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COSTEFF_ARTIFACTS", str(tmp_path / "a"))
    assert _run(capsys, str(models["fp32"]), "--batch-sizes", "2", *FAST)[0] == 0
    assert len(list((tmp_path / "a" / "cost").glob("*Z/gpu_profile.json"))) == 1


def test_cost_matches_the_catalog(models, tmp_path, capsys):
    out = tmp_path / "run"
    code, *_ = _run(capsys, str(models["fp32"]), "--batch-sizes", "1,4", "--target-rate", "250000",
                    "--instance", "aws-c6i.2xlarge", "--out", str(out), *FAST)
    assert code == 0
    report = json.loads((out / "gpu_profile.json").read_text())
    cost, thr = report["cost"], report["optimal"]["throughput_per_s"]
    price = load_catalog().get("aws-c6i.2xlarge").usd_per_hour
    assert cost["instance"] == "aws-c6i.2xlarge" and cost["usd_per_hour"] == price
    assert cost["usd_per_million"] == pytest.approx(price / (thr * 3600) * 1e6)
    assert cost["instances_needed"] == math.ceil(250000 / (thr * 0.8))
    assert cost["usd_per_day"] == pytest.approx(cost["instances_needed"] * price * 24)


def test_compare_profiles_rank_hardware_by_cost(models, tmp_path, capsys):
    other = tmp_path / "other"
    assert _run(capsys, str(models["fp32"]), "--batch-sizes", "4", "--instance", "aws-c6i.2xlarge",
                "--out", str(other), *FAST)[0] == 0
    out = tmp_path / "run"
    assert _run(capsys, str(models["fp32"]), "--batch-sizes", "4", "--target-rate", "1000",
                "--compare", str(other / "gpu_profile.json"), "--out", str(out), *FAST)[0] == 0
    report = json.loads((out / "gpu_profile.json").read_text())
    ranking = report["right_sizing"]
    from costeff.hardware import detect

    here = load_catalog().for_hardware(None, hw=detect()).name  # this CPU, priced by its ISA family
    assert {r["instance"] for r in ranking} == {here, "aws-c6i.2xlarge"}
    assert ranking[0]["usd_per_million"] <= ranking[1]["usd_per_million"]
    assert any(r["kind"] == "cost" and r["metric"] == "usd_per_million" for r in report["recommendations"])


def test_fp16_input_model_profiles_with_observations_cast(models, tmp_path, capsys):
    obs = _obs(tmp_path, np.random.default_rng(2).standard_normal((16, WINDOW, FEATURES)))  # float64 on disk
    out = tmp_path / "run"
    assert _run(capsys, str(models["fp16"]), "--batch-sizes", "1,16", "--observations", obs,
                "--out", str(out), *FAST)[0] == 0
    report = json.loads((out / "gpu_profile.json").read_text())
    assert report["inputs"]["tensors"][0]["dtype"] == "float16"
    assert all(p["throughput_per_s"] > 0 for p in report["points"])


def test_concurrency_sweep_measures_every_combination(models, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(capsys, str(models["fp32"]), "--batch-sizes", "1,8", "--concurrency", "1,2",
                "--out", str(out), *FAST)[0] == 0
    points = json.loads((out / "gpu_profile.json").read_text())["points"]
    assert sorted((p["batch_size"], p["concurrency"]) for p in points) == [(1, 1), (1, 2), (8, 1), (8, 2)]
    assert all(p["throughput_per_s"] > 0 for p in points)


BAD = {
    "missing model": (lambda m, t: ["nope.onnx"], "no such model file"),
    "corrupt model": (lambda m, t: [_write(t / "bad.onnx", b"not a model")], "not a readable ONNX model"),
    "no batch dim": (lambda m, t: [str(m["fixed"])], "no dynamic batch"),
    "wrong obs shape": (lambda m, t: [str(m["fp32"]), "--observations", _obs(t, np.zeros((8, 3), np.float32))],
                        "expected [rows, 4, 5]"),
    "wrong obs dtype": (lambda m, t: [str(m["fp32"]), "--observations",
                                      _obs(t, np.full((8, WINDOW, FEATURES), "x"))], "expected a numeric array"),
    "nan obs": (lambda m, t: [str(m["fp32"]), "--observations",
                              _obs(t, np.full((8, WINDOW, FEATURES), np.nan, np.float32))], "NaN or inf"),
    "inf obs": (lambda m, t: [str(m["fp32"]), "--observations",
                              _obs(t, np.full((8, WINDOW, FEATURES), np.inf, np.float32))], "NaN or inf"),
    "fp16 overflow": (lambda m, t: [str(m["fp16"]), "--observations",
                                    _obs(t, np.full((8, WINDOW, FEATURES), 1e6, np.float32))], "overflow float16"),
    "unknown provider": (lambda m, t: [str(m["fp32"]), "--provider", "rocm"], "unknown provider"),
    "unavailable provider": (lambda m, t: [str(m["fp32"]), "--provider", "tensorrt"], "not available"),
    "zero budget": (lambda m, t: [str(m["fp32"]), "--latency-budget-ms", "0"], "--latency-budget-ms"),
    "negative budget": (lambda m, t: [str(m["fp32"]), "--latency-budget-ms", "-5"], "--latency-budget-ms"),
    "zero batch": (lambda m, t: [str(m["fp32"]), "--batch-sizes", "0,8"], "--batch-sizes"),
    "negative batch": (lambda m, t: [str(m["fp32"]), "--batch-sizes", "4,-2"], "--batch-sizes"),
    "unknown instance": (lambda m, t: [str(m["fp32"]), "--instance", "my-box"], "no instance 'my-box'"),
    "url without model name": (lambda m, t: ["--url", "127.0.0.1:1"], "--model-name"),
}


def _write(path, data):
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_exits_2_with_one_line_and_no_artifact(case, models, tmp_path, capsys):
    args, expected = BAD[case]
    argv = args(models, tmp_path)
    if "--provider" not in argv:
        argv += ["--provider", "cpu"]
    out = tmp_path / "out"
    code, stdout, stderr = _run(capsys, *argv, "--batch-sizes" if "--batch-sizes" not in argv else "--json",
                                *(["1"] if "--batch-sizes" not in argv else []), "--window-ms", "20",
                                "--out", str(out))
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], stderr
    assert "Traceback" not in stderr
    assert not out.exists()


def test_embedded_policy_profiles_with_generated_market_observations(tiny_policy, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(capsys, "--preset", "tiny", "--batch-sizes", "1,16", "--out", str(out), *FAST)[0] == 0
    report = json.loads((out / "gpu_profile.json").read_text())
    assert report["model_sha256"] == tiny_policy.sha256
    assert "synthetic market observations" in report["inputs"]["source"]


def test_profile_api_returns_the_record_other_stages_read(tiny_policy, tiny_observations):
    from costeff.profiling import ProfileConfig, profile

    config = ProfileConfig(batch_sizes=(1, 32), provider="cpu", window_s=0.05, warmup_s=0.02, max_trials=4,
                           latency_budget_ms=1e6)
    report = profile(tiny_policy.onnx_path, config, tiny_observations)
    assert report.point(32).batch_size == 32 and report.point(32).latency_ms.p99 > 0
    assert report.optimal.within_budget is True and report.optimal.batch_size in (1, 32)
    assert report.config["batch_sizes"] == [1, 32] and report.provider == "CPUExecutionProvider"


def test_unknown_preset_exits_2(capsys):
    code, _, stderr = _run(capsys, "--preset", "huge", "--provider", "cpu")
    assert code == 2 and "--preset" in stderr


def test_url_dispatches_to_remote_profiling_and_writes_its_report(tmp_path, capsys, monkeypatch):
    remote = pytest.importorskip("costeff.remote")
    from costeff.profiling import Latency, Point, assemble_report

    calls = {}

    def fake_profile_remote(**kwargs):
        calls.update(kwargs)
        pts = [Point(b, 1, 100.0 * b, 100.0, Latency(1, 1, 2, 2, 3), True, 3, 30, []) for b in (1, 8)]
        return assemble_report(pts, kwargs["config"], model_path=None, provider="remote:grpc", inputs={},
                               duration_s=1.0, target={"kind": "remote", "model_name": kwargs["model_name"]})

    monkeypatch.setattr(remote, "profile_remote", fake_profile_remote)
    out = tmp_path / "run"
    code, *_ = _run(capsys, "--url", "127.0.0.1:8001", "--model-name", "policy", "--request-rate", "50,200.5",
                    "--batch-sizes", "1,8", "--latency-budget-ms", "5", "--out", str(out))
    assert code == 0
    assert calls["url"] == "127.0.0.1:8001" and calls["protocol"] == "grpc" and calls["request_rates"] == (50.0, 200.5)
    assert calls["config"].batch_sizes == (1, 8) and calls["config"].latency_budget_ms == 5
    report = json.loads((out / "gpu_profile.json").read_text())
    assert report["provider"] == "remote:grpc" and report["optimal"]["batch_size"] == 8

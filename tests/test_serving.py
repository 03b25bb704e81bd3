"""Triton model repository: generated through Triton's protobuf, validated, hash-checked, atomic."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from costeff.artifacts import sha256_file
from costeff.cli import main
from costeff.serving import BuildConfig, build_repository, validate_config

WINDOW, FEATURES, HIDDEN = 4, 3, 8


def _tiny_policy(path, seed=0):
    """obs [B, 4, 3] -> logits [B, 3], value [B, 1]: a two-layer MLP built with onnx.helper."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.standard_normal((WINDOW * FEATURES, HIDDEN)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((HIDDEN, 4)).astype(np.float32), "w2")
    shape = numpy_helper.from_array(np.array([0, -1], dtype=np.int64), "shape")
    split = numpy_helper.from_array(np.array([3, 1], dtype=np.int64), "split")
    nodes = [helper.make_node("Reshape", ["obs", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["hr"]),
             helper.make_node("MatMul", ["hr", "w2"], ["out"]),
             helper.make_node("Split", ["out", "split"], ["logits", "value"], axis=1)]
    graph = helper.make_graph(
        nodes, "policy", [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", WINDOW, FEATURES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3]),
         helper.make_tensor_value_info("value", TensorProto.FLOAT, ["batch", 1])], [w1, w2, shape, split])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def model(tmp_path):
    return _tiny_policy(tmp_path / "policy.onnx")


def _profile(tmp_path, model, gpus=(), batch=16, p99=2.0, budget=10.0):
    path = tmp_path / "gpu_profile.json"
    path.write_text(json.dumps({
        "schema_version": 1, "model_sha256": sha256_file(model), "provider": "cuda" if gpus else "cpu",
        "hardware": {"gpus": list(gpus)}, "config": {"latency_budget_ms": budget},
        "optimal": {"batch_size": batch, "throughput_per_s": 1000.0, "latency_p99_ms": p99}}))
    return path


def _batching(tmp_path, **chosen):
    path = tmp_path / "batching_report.json"
    block = {"max_batch_size": 32, "preferred_batch_size": [8, 16], "max_queue_delay_us": 1500, "instances": 2,
             "predicted": {"p99_ms": 3.0}}
    path.write_text(json.dumps({"schema_version": 1, "chosen": {**block, **chosen}}))
    return path


def _config_text(tmp_path, name="policy"):
    return (tmp_path / "repo" / name / "config.pbtxt").read_text()


def test_build_writes_triton_config_from_graph_and_batching_report(tmp_path, model):
    code = main(["triton", "build", str(model), "--profile", str(_profile(tmp_path, model, gpus=[{"name": "H100"}])),
                 "--batching", str(_batching(tmp_path)), "--repository", str(tmp_path / "repo")])
    assert code == 0
    entry = tmp_path / "repo" / "policy"
    assert sha256_file(entry / "1" / "model.onnx") == sha256_file(model)
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    cfg = text_format.Parse(_config_text(tmp_path), pb.ModelConfig())
    assert (cfg.platform, cfg.backend, cfg.max_batch_size) == ("onnxruntime_onnx", "onnxruntime", 32)
    assert [(t.name, pb.DataType.Name(t.data_type), list(t.dims)) for t in cfg.input] == [("obs", "TYPE_FP32", [4, 3])]
    assert [(t.name, list(t.dims)) for t in cfg.output] == [("logits", [3]), ("value", [1])]
    assert list(cfg.dynamic_batching.preferred_batch_size) == [8, 16]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 1500
    # the optimizer's 2 instances are 2 priced servers: 2 replicas of one model instance each
    assert [(g.kind, g.count) for g in cfg.instance_group] == [(pb.ModelInstanceGroup.KIND_GPU, 1)]
    # fp32 without fidelity evidence for fp16: no TensorRT FP16 that would change the policy's numbers
    assert not cfg.optimization.execution_accelerators.gpu_execution_accelerator
    build = json.loads((entry / "costeff_build.json").read_text())
    assert build["model_sha256"] == sha256_file(model) and "fidelity" in build["accelerator_reason"]
    assert build["batching"]["replicas"] == 2 and any("2 replicas" in n for n in build["notes"])
    assert validate_config(entry / "config.pbtxt").valid


def test_fp32_gets_tensorrt_fp16_only_when_fp16_passed_fidelity(tmp_path, model):
    quant = tmp_path / "quantization_report.json"
    profile = _profile(tmp_path, model, gpus=[{"name": "H100"}])
    for passed, expected in ((True, "FP16"), (False, None)):
        quant.write_text(json.dumps({"variants": [{"name": "fp16", "passed": passed}]}))
        result = build_repository(BuildConfig(model, profile, tmp_path / "repo", quantization_report=quant))
        assert result.tensorrt_precision_mode == expected
    text = _config_text(tmp_path)  # the last build (fp16 failed) replaced the first
    assert "tensorrt" not in text
    quant.write_text(json.dumps({"variants": [{"name": "fp16", "passed": True}]}))
    build_repository(BuildConfig(model, profile, tmp_path / "repo", quantization_report=quant))
    text = _config_text(tmp_path)
    assert 'name: "tensorrt"' in text and re.search(r'key: "precision_mode"\s+value: "FP16"', text)
    assert 'key: "max_workspace_size_bytes"' in text
    assert validate_config(tmp_path / "repo" / "policy" / "config.pbtxt").valid


def test_int8_models_never_get_tensorrt_fp16(tmp_path, model):
    from onnxruntime.quantization import quantize_dynamic

    int8 = tmp_path / "policy_int8.onnx"
    quantize_dynamic(str(model), str(int8))
    quant = tmp_path / "q.json"
    quant.write_text(json.dumps({"variants": [{"name": "fp16", "passed": True}]}))
    result = build_repository(BuildConfig(int8, _profile(tmp_path, int8, gpus=[{"name": "H100"}]),
                                          tmp_path / "repo", quantization_report=quant))
    assert result.model_precision == "int8-dynamic" and result.tensorrt_precision_mode is None
    assert validate_config(result.config_path).valid


def test_without_batching_report_settings_come_from_profile_and_say_so(tmp_path, model, capsys):
    code = main(["triton", "build", str(model), "--profile", str(_profile(tmp_path, model, batch=16, p99=2.0)),
                 "--repository", str(tmp_path / "repo"), "--name", "pol", "--json"])
    record = json.loads(capsys.readouterr().out)
    assert code == 0 and record["instance_kind"] == "cpu"
    assert record["batching"]["max_batch_size"] == 16 and record["batching"]["preferred_batch_size"] == [16]
    assert record["batching"]["max_queue_delay_us"] == 4000  # half the 8 ms slack under the 10 ms budget
    assert any("not simulated" in n for n in record["notes"])
    assert "KIND_CPU" in _config_text(tmp_path, "pol")
    assert main(["triton", "validate", str(tmp_path / "repo" / "pol" / "config.pbtxt")]) == 0


def test_profile_of_another_model_is_refused_naming_both_hashes(tmp_path, model, capsys):
    other = _tiny_policy(tmp_path / "other.onnx", seed=1)
    code = main(["triton", "build", str(model), "--profile", str(_profile(tmp_path, other)),
                 "--repository", str(tmp_path / "repo")])
    err = capsys.readouterr().err
    assert code == 2 and sha256_file(model) in err and sha256_file(other) in err
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


def test_failed_rebuild_keeps_the_previous_entry(tmp_path, model):
    profile = _profile(tmp_path, model)
    build_repository(BuildConfig(model, profile, tmp_path / "repo"))
    before = _config_text(tmp_path)
    bad = _batching(tmp_path, preferred_batch_size=[64])  # above max_batch_size 32
    with pytest.raises(Exception, match="preferred_batch_size"):
        build_repository(BuildConfig(model, profile, tmp_path / "repo", batching_report=bad))
    assert _config_text(tmp_path) == before
    # no staging folder left behind (the entry's lock file stays: flock needs one inode for every writer)
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == [".policy.lock", "policy"]


HAND_WRITTEN = """name: "policy"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "observation" data_type: TYPE_FP16 dims: [ 4, 3 ] } ]
output [ { name: "logits" data_type: TYPE_FP32 dims: [ 1, 3 ] } ]
dynamic_batching {
  preferred_batch_size: [ 4, 16 ]
  max_queue_delay_microseconds: 5000
}
instance_group [ { kind: KIND_CPU count: 0 } ]
optimization { execution_accelerators { gpu_execution_accelerator : [ {
  name: "tensorrt"
  parameters { key: "precision_mode" value: "FP8" }
  parameters { key: "max_workspace_size_bytes" value: "lots" }
} ] } }
"""


def test_validate_lists_every_semantic_problem(tmp_path, model, capsys):
    entry = tmp_path / "repo" / "policy"
    (entry / "1").mkdir(parents=True)
    (entry / "1" / "model.onnx").write_bytes(model.read_bytes())
    (entry / "config.pbtxt").write_text(HAND_WRITTEN)
    report = validate_config(entry / "config.pbtxt")
    fields = {p.field for p in report.problems}
    assert {"preferred_batch_size", "instance_group.count", "tensorrt.precision_mode",
            "tensorrt.max_workspace_size_bytes", "gpu_execution_accelerator", "input", "input observation",
            "output", "output logits.dims"} <= fields
    assert any("16 exceeds max_batch_size 8" in p.message and p.line == 7 for p in report.problems)
    assert main(["triton", "validate", str(entry / "config.pbtxt")]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == len(report.problems) >= 8


@pytest.mark.parametrize("text, needle", [
    ('name: "policy"\nmax_batch_size: 8\nmax_queue_delay: 5\n', "line 3"),
    ('name: "policy"\ninstance_group [ { kind: KIND_TPU } ]\n', "line 2"),
    ('name: "policy"\nmax_batch_size: "eight"\n', "line 2"),
])
def test_validate_reports_schema_errors_with_their_line(tmp_path, text, needle, capsys):
    config = tmp_path / "policy" / "config.pbtxt"
    config.parent.mkdir()
    config.write_text(text)
    assert main(["triton", "validate", str(config)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "ModelConfig" in err


def test_fp16_accelerator_on_int8_model_is_flagged(tmp_path, model):
    from onnxruntime.quantization import quantize_dynamic

    int8 = tmp_path / "int8.onnx"
    quantize_dynamic(str(model), str(int8))
    build_repository(BuildConfig(int8, _profile(tmp_path, int8, gpus=[{"name": "H100"}]), tmp_path / "repo",
                                 name="policy"))
    config = tmp_path / "repo" / "policy" / "config.pbtxt"
    config.write_text(config.read_text() + 'optimization { execution_accelerators { gpu_execution_accelerator '
                      '{ name: "tensorrt" parameters { key: "precision_mode" value: "FP16" } } } }\n')
    report = validate_config(config)
    assert not report.valid and any("undoes its int8" in p.message for p in report.problems)


def test_missing_tritonclient_is_a_dependency_error(monkeypatch):
    import builtins

    from costeff.errors import DependencyError
    from costeff.serving.config import triton_schema

    real_import = builtins.__import__

    def no_tritonclient(name, *args, **kwargs):
        if name.startswith("tritonclient"):
            raise ImportError("No module named 'tritonclient'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tritonclient)
    with pytest.raises(DependencyError, match=r"pip install 'tritonclient\[grpc\]'"):
        triton_schema()

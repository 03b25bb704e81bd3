"""Structural variants: prune and lowrank find a policy's redundancy, and only where there is some."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from costeff.quantization import QuantizeConfig, quantize
from costeff.quantization import onnx_mlp as om
from costeff.quantization import structural
from workspace_support import env_workspace

FAST = dict(batch_sizes=(1, 16), window_s=0.05, speed_rounds=1, backends=("onnxruntime",))


@pytest.fixture(scope="module")
def widened(tmp_path_factory) -> Path:
    """The tiny policy trained at 64/64 and widened function-preservingly to 256/256 (costeff.policy.widen)."""
    from costeff.policy.export import export_module
    from costeff.policy.nets import PRESETS
    from costeff.policy.train import TRAIN_CONFIGS, fit

    spec = replace(PRESETS["tiny"], hidden=(256, 256))
    result = fit(spec, replace(TRAIN_CONFIGS["tiny"], widen_factor=4))
    out = tmp_path_factory.mktemp("widened") / "wide.onnx"
    export_module(result.model, out, spec.observation_shape)
    return out


@pytest.fixture(scope="module")
def random_mlp(tmp_path_factory) -> Path:
    """A randomly initialised MLP: no unit or direction is redundant."""
    import torch

    from costeff.policy.export import export_module

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.trunk = torch.nn.Sequential(torch.nn.Linear(64, 192), torch.nn.Tanh(),
                                             torch.nn.Linear(192, 192), torch.nn.Tanh())
            self.pi, self.v = torch.nn.Linear(192, 3), torch.nn.Linear(192, 1)

        def forward(self, obs):
            h = self.trunk(obs.flatten(1))
            return self.pi(h) * 4.0, self.v(h)

    out = tmp_path_factory.mktemp("random") / "random.onnx"
    export_module(Net(), out, (8, 8))
    return out


def heavy_tailed(rows: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_t(2.0, size=(rows, 8, 8)).astype(np.float32)


def test_prune_recovers_the_narrow_width_and_passes_held_out_gates(widened, tiny_observations, tmp_path):
    rep = quantize(widened, tiny_observations[:1200], QuantizeConfig(variants=("prune", "prune+int8-dynamic"),
                                                                     **FAST), out_dir=tmp_path / "q",
                   workspace=env_workspace())
    v = rep.variant("prune")
    assert v.built and v.passed, (v.error, v.gates)
    s = v.structure
    assert s["original_sizes"] == [256, 256]
    assert all(w <= 64 for w in s["chosen"]["sizes"])  # at least the 4x widening is undone
    assert s["chosen"]["params"] < s["original_params"] / 8
    assert [t["fraction"] for t in s["steps"]][:2] == [0.5, 0.25]  # largest step first
    assert all(t["seconds"] >= 0 for t in s["steps"]) and s["seconds"] > 0
    assert v.fidelity.rows == rep.split["evaluation_rows"]  # the held-out rows judged it
    stacked = rep.variant("prune+int8-dynamic")
    assert stacked.built and stacked.derived_from == "prune" and stacked.precision == "int8"
    assert stacked.fidelity.rows == rep.split["evaluation_rows"]
    assert Path(stacked.path).is_file() and stacked.path != v.path


def test_prune_stacks_with_an_openvino_variant(widened, tiny_observations, tmp_path):
    pytest.importorskip("openvino")
    rep = quantize(widened, tiny_observations[:1200],
                   QuantizeConfig(variants=("prune+ov-fp32",), **dict(FAST, backends=("onnxruntime", "openvino"))),
                   out_dir=tmp_path / "q", workspace=env_workspace())
    v = rep.variant("prune+ov-fp32")
    assert v.built and v.backend == "openvino" and v.derived_from == "prune", v.error
    assert v.structure["chosen"]["sizes"] and Path(v.path).suffix == ".xml"
    assert v.passed and v.fidelity.rows == rep.split["evaluation_rows"]


def test_written_model_runs_with_the_same_outputs_and_a_dynamic_batch(widened, tiny_observations, tmp_path):
    import onnxruntime as ort

    mlp = om.read(widened)
    x = om.trunk_input(mlp, widened, tiny_observations[:300])
    hidden, heads, sizes = structural.prune(mlp, x, 0.25)
    out = tmp_path / "pruned.onnx"
    om.write(mlp, hidden, heads, out)
    ref, new = ort.InferenceSession(str(widened)), ort.InferenceSession(str(out))
    assert [o.name for o in new.get_outputs()] == [o.name for o in ref.get_outputs()] == ["logits", "value"]
    assert [i.name for i in new.get_inputs()] == ["obs"] and sizes == [64, 64]
    for batch in (1, 7):
        rows = tiny_observations[1000:1000 + batch]
        a, b = ref.run(None, {"obs": rows}), new.run(None, {"obs": rows})
        assert [r.shape for r in b] == [r.shape for r in a] == [(batch, 3), (batch, 1)]
        assert np.abs(a[0] - b[0]).max() < 0.05 * np.abs(a[0]).max()


def test_exact_duplicates_are_removed_without_error(tmp_path):
    """Units copied with split outgoing weights (no noise) behind an input normalisation (Sub, Div):
    half the width computes the same function, and the written model keeps the normalisation."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1, b1, w2, b2 = rng.standard_normal((6, 10)), rng.standard_normal(10), rng.standard_normal((10, 3)), np.zeros(3)
    mean, std, share = rng.standard_normal(6), rng.uniform(0.5, 2, 6), rng.uniform(0.2, 0.8, 10)
    wide_w1, wide_b1 = np.hstack([w1, w1]), np.concatenate([b1, b1])
    wide_w2 = np.vstack([w2 * share[:, None], w2 * (1 - share)[:, None]])
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for a, n in
             ((wide_w1, "w1"), (wide_b1, "b1"), (wide_w2, "w2"), (b2, "b2"), (mean, "mean"), (std, "std"))]
    nodes = [helper.make_node("Sub", ["x", "mean"], ["c"]), helper.make_node("Div", ["c", "std"], ["n"]),
             helper.make_node("MatMul", ["n", "w1"], ["z"]), helper.make_node("Add", ["z", "b1"], ["zb"]),
             helper.make_node("Tanh", ["zb"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"]),
             helper.make_node("Add", ["y", "b2"], ["logits"])]
    graph = helper.make_graph(nodes, "dup", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])], inits)
    path = _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "d.onnx")
    mlp = om.read(path)
    assert [n.op_type for n in mlp.prefix] == ["Sub", "Div"] and mlp.widths == [20]
    x = om.trunk_input(mlp, path, rng.standard_normal((200, 6)).astype(np.float32))
    hidden, heads, sizes = structural.prune(mlp, x, 0.5)
    om.write(mlp, hidden, heads, tmp_path / "half.onnx")
    new = rng.standard_normal((50, 6)).astype(np.float32)
    want = np.tanh((new - mean) / std @ w1 + b1) @ w2 + b2
    got = ort.InferenceSession(str(tmp_path / "half.onnx")).run(None, {"x": new})[0]
    assert sizes == [10] and np.abs(got - want).max() < 1e-4  # float32 weights in the file


def _save(model, path: Path) -> Path:
    import onnx

    onnx.save(model, str(path))
    return path


def test_a_policy_without_redundancy_fails_at_the_first_step_and_says_so(random_mlp, tmp_path):
    rep = quantize(random_mlp, heavy_tailed(1200), QuantizeConfig(variants=("prune", "lowrank"), **FAST),
                   out_dir=tmp_path / "q", workspace=env_workspace())
    for name in ("prune", "lowrank"):
        v = rep.variant(name)
        assert not v.built and v.error.startswith("not built: identical to fp32"), v.error
        steps = v.structure["steps"]
        assert len(steps) == 1 and steps[0]["fraction"] == 0.5 and not steps[0]["passed"]
        assert steps[0]["failed_gates"] and v.structure["chosen"] is None
    assert rep.selected["name"] == "fp32"
    md = (Path(rep.report_dir) / "quantization_report.md").read_text()
    assert "## Structural probes" in md and "search ended" in md


def test_a_convolution_is_not_eligible_and_the_other_variants_go_on(tmp_path):
    import torch

    from costeff.policy.export import export_module

    class ConvNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv1d(8, 4, 3)
            self.head = torch.nn.Linear(24, 3)

        def forward(self, obs):
            return self.head(torch.relu(self.conv(obs)).flatten(1))

    path = tmp_path / "conv.onnx"
    export_module(ConvNet(), path, (8, 8))
    rep = quantize(path, heavy_tailed(600), QuantizeConfig(variants=("int8-dynamic", "prune", "prune+int8-dynamic"),
                                                           **FAST), out_dir=tmp_path / "q", workspace=env_workspace())
    prune = rep.variant("prune")
    assert prune.not_tried.startswith("not eligible: not an MLP: Conv (a convolution")
    assert "prune has no passing model" in rep.variant("prune+int8-dynamic").error
    assert rep.variant("int8-dynamic").built


def test_shared_weights_and_branches_are_not_eligible(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"]), helper.make_node("Relu", ["a"], ["h"]),
             helper.make_node("MatMul", ["h", "w"], ["logits"])]
    graph = helper.make_graph(nodes, "shared", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 4])], [w])
    path = _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "s.onnx")
    with pytest.raises(om.NotEligible, match="weight w is shared"):
        om.read(path)


def test_stacked_names_are_validated_and_routed_to_their_backend():
    from costeff.errors import InputError
    from costeff.quantization.variants import backend_of, precision_of

    QuantizeConfig(variants=("lowrank+ov-w8", "prune+fp16"))
    with pytest.raises(InputError, match="prune\\+int4"):
        QuantizeConfig(variants=("prune+int4",))
    assert backend_of("prune+ov-int8") == "openvino" and backend_of("prune") == "onnxruntime"
    assert precision_of("prune+int8-dynamic") == "int8" and precision_of("lowrank") == "fp32"


def test_output_side_nodes_are_kept_and_a_full_width_refit_reproduces_the_model(random_mlp, tmp_path):
    """The random MLP scales its logits after the head (Constant + Mul): the written model keeps that."""
    import onnxruntime as ort

    mlp = om.read(random_mlp)
    assert [n.op_type for n in mlp.postfix] == ["Mul"] and mlp.head_outputs[1] == "value"
    rows = heavy_tailed(400)
    hidden, heads, sizes = structural.prune(mlp, om.trunk_input(mlp, random_mlp, rows[:300]), 1.0)
    om.write(mlp, hidden, heads, tmp_path / "same.onnx")
    a = ort.InferenceSession(str(random_mlp)).run(None, {"obs": rows[300:]})
    b = ort.InferenceSession(str(tmp_path / "same.onnx")).run(None, {"obs": rows[300:]})
    assert sizes == [192, 192]
    for x, y in zip(a, b, strict=True):
        assert np.abs(x - y).max() < 1e-3 * max(1.0, np.abs(x).max())


def test_a_probe_that_would_keep_every_unit_builds_nothing(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.ones((4, 1), np.float32), "w1"),
             numpy_helper.from_array(np.ones((1, 3), np.float32), "w2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["a"]), helper.make_node("Relu", ["a"], ["h"]),
             helper.make_node("MatMul", ["h", "w2"], ["logits"])]
    graph = helper.make_graph(nodes, "one", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 3])], inits)
    mlp = om.read(_save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "o.onnx"))

    def judge(path):
        raise AssertionError("a model identical to fp32 must not be judged")

    probe, best = structural.search("prune", mlp, np.random.default_rng(0).standard_normal((50, 4)), judge, tmp_path)
    assert best is None and probe.chosen is None and not probe.steps and "keep every unit" in probe.stopped

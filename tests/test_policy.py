"""The embedded default policy: generator, strategy, behaviour cloning, ONNX export, cache."""

from __future__ import annotations

import numpy as np

from costeff.modelio import create_session, read_signature
from costeff.policy import PRESETS, default_policy, generate_observations
from costeff.policy import strategy


def test_tiny_policy_onnx_has_dynamic_batch_and_named_outputs(tiny_policy):
    sig = read_signature(tiny_policy.onnx_path)
    assert [s.name for s in sig.inputs] == ["obs"]
    assert sig.inputs[0].shape == (None, *PRESETS["tiny"].observation_shape)
    assert [o.name for o in sig.outputs] == ["logits", "value"]
    assert sig.outputs[0].shape == (None, 3) and sig.outputs[1].shape == (None, 1)
    assert tiny_policy.n_params == PRESETS["tiny"].n_params


def test_tiny_policy_decides_like_its_teacher(tiny_policy, tiny_observations):
    session = create_session(tiny_policy.onnx_path)
    for batch in (1, 5, 300):
        logits, value = session.run(None, {"obs": tiny_observations[:batch]})
        assert logits.shape == (batch, 3) and value.shape == (batch, 1)
    logits, _ = session.run(None, {"obs": tiny_observations})
    agreement = np.mean(logits.argmax(axis=1) == strategy.decide(tiny_observations).actions)
    assert agreement >= 0.85
    assert tiny_policy.confident_share >= 0.8
    assert tiny_policy.onnx_vs_torch_max_abs_err < 1e-4

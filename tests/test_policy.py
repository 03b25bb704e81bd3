"""The embedded default policy: generator, strategy, behaviour cloning, ONNX export, cache."""

from __future__ import annotations

from pathlib import Path

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


def test_generator_is_seeded_shaped_and_deterministic():
    a = generate_observations(300, seed=5, preset="tiny")
    assert a.shape == (300, *PRESETS["tiny"].observation_shape) and a.dtype == np.float32
    assert np.array_equal(a, generate_observations(300, seed=5, preset="tiny"))
    assert not np.allclose(a, generate_observations(300, seed=6, preset="tiny"))
    assert generate_observations(10, preset="default").shape == (10, *PRESETS["default"].observation_shape)
    assert np.isfinite(a).all()


def test_generator_has_heavy_tails_and_regime_changes():
    from costeff.policy.market import simulate

    obs, regimes = simulate(4000, 32, seed=0)
    ret = obs[:, :, 0].astype(np.float64).ravel()
    kurtosis = np.mean((ret - ret.mean()) ** 4) / ret.var() ** 2
    assert kurtosis > 6  # a Gaussian has 3
    assert set(np.unique(regimes)) == {0, 1, 2}
    switched = np.mean([len(np.unique(r)) > 1 for r in regimes])
    assert 0.1 < switched < 0.99  # regimes persist, yet many windows span a change
    vol = obs[:, -1, 3]
    assert vol[regimes[:, -1] == 2].mean() > 1.5 * vol[regimes[:, -1] == 0].mean()


def test_strategy_decides_clear_cut_and_uses_every_action():
    decision = strategy.decide(generate_observations(5000, seed=2, preset="default"))
    share = np.bincount(decision.actions, minlength=3) / len(decision.actions)
    assert share.min() > 0.1
    assert np.mean(decision.margin >= 0.1) > 0.8


def test_strategy_rejects_observations_without_its_features():
    import pytest

    from costeff.errors import InputError

    with pytest.raises(InputError, match="features"):
        strategy.decide(np.zeros((4, 8, 3), dtype=np.float32))


def test_unknown_preset_is_an_input_error():
    import pytest

    from costeff.errors import InputError

    with pytest.raises(InputError, match="tiny, default, large"):
        default_policy("huge", cache=Path("unused"))
    with pytest.raises(InputError):
        generate_observations(0, preset="tiny")


def test_presets_are_sized_as_documented():
    assert PRESETS["tiny"].n_params < 50_000
    assert 5_000_000 <= PRESETS["default"].n_params <= 10_000_000
    assert 110_000_000 <= PRESETS["large"].n_params <= 140_000_000


def test_cache_hit_returns_same_file_and_tampering_rebuilds(tmp_path):
    from costeff.artifacts import sha256_file

    first = default_policy("tiny", cache=tmp_path / "cache")
    assert not first.cache_hit and sha256_file(first.onnx_path) == first.sha256
    again = default_policy("tiny", cache=tmp_path / "cache")
    assert again.cache_hit and again.sha256 == first.sha256 and again.onnx_path == first.onnx_path
    first.onnx_path.write_bytes(first.onnx_path.read_bytes()[:-10] + b"tampered!!")
    rebuilt = default_policy("tiny", cache=tmp_path / "cache")
    assert not rebuilt.cache_hit and sha256_file(rebuilt.onnx_path) == rebuilt.sha256
    assert rebuilt.metadata_path.is_file()


def test_concurrent_first_use_builds_once_and_never_corrupts(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from costeff.artifacts import sha256_file

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: default_policy("tiny", seed=3, cache=tmp_path / "cache"), range(2)))
    assert results[0].sha256 == results[1].sha256 == sha256_file(results[0].onnx_path)
    assert sorted(r.cache_hit for r in results) == [False, True]
    assert not list((tmp_path / "cache").rglob("*.tmp*"))


def test_recipe_hash_follows_the_recipe():
    from costeff.policy.default import recipe_sha256

    assert recipe_sha256("tiny", 0) == recipe_sha256("tiny", 0)
    assert recipe_sha256("tiny", 0) != recipe_sha256("tiny", 1) != recipe_sha256("default", 1)


def test_widening_preserves_the_narrow_policy():
    import dataclasses

    import torch

    from costeff.policy.nets import build_policy
    from costeff.policy.train import predict
    from costeff.policy.widen import widen

    spec = dataclasses.replace(PRESETS["tiny"], hidden=(16, 8))
    narrow = build_policy(spec, seed=1)
    wide = widen(narrow, build_policy(dataclasses.replace(spec, hidden=(64, 32))), seed=1)
    obs = generate_observations(500, seed=4, preset="tiny")
    (ln, vn), (lw, vw) = predict(narrow, obs), predict(wide, obs)
    assert np.mean(ln.argmax(1) == lw.argmax(1)) > 0.97
    assert np.abs(vn - vw).max() < 0.1 * (np.abs(vn).max() + 1e-6) + 1e-3
    assert sum(p.numel() for p in wide.parameters()) > 3 * sum(p.numel() for p in narrow.parameters())
    assert not torch.equal(wide.trunk[0].weight[:16], wide.trunk[0].weight[16:32])

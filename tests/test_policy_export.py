"""``costeff export``: PyTorch policies (module:factory, TorchScript, preset) to checked ONNX."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from costeff.cli import main
from costeff.modelio import create_session, read_signature

MODULE = textwrap.dedent('''
    import torch
    from torch import nn

    class Policy(nn.Module):
        observation_shape = (4, 3)

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(12, 32), nn.Tanh())
            self.pi = nn.Linear(32, 3)
            self.v = nn.Linear(32, 1)

        def forward(self, obs):
            h = self.body(obs)
            return self.pi(h), self.v(h)

    def make():
        return Policy()

    def make_plain():
        m = Policy()
        del Policy.observation_shape
        return m

    NOT_CALLABLE = 42

    def not_a_module():
        return "policy"

    def broken():
        raise RuntimeError("no weights here")
''')


@pytest.fixture
def policy_module(tmp_path, monkeypatch):
    """A user module importable from the working directory, under a name unique to the test."""
    name = f"user_policy_{abs(hash(str(tmp_path))) % 10**8}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def _torch_outputs(model, obs):
    import torch

    with torch.inference_mode():
        return [t.numpy() for t in model(torch.from_numpy(obs))]


def test_export_from_module_factory_matches_torch_at_any_batch(policy_module, tmp_path, capsys):
    import importlib

    out = tmp_path / "out" / "policy.onnx"
    assert main(["export", f"{policy_module}:make", "--out", str(out), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["output_names"] == ["logits", "value"] and record["n_params"] == 12 * 32 + 32 + 99 + 33
    assert record["max_abs_err"] < 1e-4
    sig = read_signature(out)
    assert sig.inputs[0].name == "obs" and sig.inputs[0].shape == (None, 4, 3)
    model = importlib.import_module(policy_module).make().eval()
    session = create_session(out)
    for batch in (1, 33):
        obs = np.random.default_rng(batch).standard_normal((batch, 4, 3)).astype(np.float32)
        for got, want in zip(session.run(None, {"obs": obs}), _torch_outputs(model, obs), strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5)


def test_export_from_torchscript_with_explicit_shape_and_input_name(policy_module, tmp_path, capsys):
    import importlib

    import torch

    scripted = torch.jit.script(importlib.import_module(policy_module).make().eval())
    scripted.save(str(tmp_path / "policy.pt"))
    out = tmp_path / "ts.onnx"
    code = main(["export", str(tmp_path / "policy.pt"), "--out", str(out), "--observation-shape", "4,3",
                 "--input-name", "state"])
    assert code == 0
    assert "logits, value" in capsys.readouterr().out
    assert read_signature(out).inputs[0].name == "state"
    obs = np.ones((5, 4, 3), dtype=np.float32)
    logits, value = create_session(out).run(None, {"state": obs})
    np.testing.assert_allclose(logits, _torch_outputs(scripted, obs)[0], atol=1e-5)


def test_export_writes_the_embedded_preset(tiny_policy, tmp_path, capsys):
    out = tmp_path / "tiny.onnx"
    assert main(["export", "--preset", "tiny", "--out", str(out), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["sha256"] == tiny_policy.sha256 and out.read_bytes() == tiny_policy.onnx_path.read_bytes()


@pytest.mark.parametrize("source, extra, message", [
    ("{mod}_missing:make", [], "cannot import module"),
    ("{mod}:nope", [], "has no attribute 'nope'"),
    ("{mod}:NOT_CALLABLE", [], "not a callable"),
    ("{mod}:not_a_module", [], "expected a torch.nn.Module"),
    ("{mod}:make_plain", [], "--observation-shape"),
    ("{mod}:broken", [], "broken() raised RuntimeError: no weights here"),
    ("{mod}:make", ["--observation-shape", "5,5"], "forward failed"),
    ("missing_policy.pt", [], "no such TorchScript file"),
    ("{garbage}", [], "not a TorchScript file"),
])
def test_bad_export_inputs_exit_2_with_one_line(policy_module, tmp_path, capsys, source, extra, message):
    (tmp_path / "garbage.pt").write_bytes(b"not a model")
    source = source.format(mod=policy_module, garbage=tmp_path / "garbage.pt")
    out = tmp_path / "bad.onnx"
    assert main(["export", source, "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not out.exists() and not list(tmp_path.glob(".bad.onnx*"))


def test_export_needs_exactly_one_source_and_an_onnx_path(tmp_path, capsys):
    assert main(["export", "--out", str(tmp_path / "x.onnx")]) == 2
    assert main(["export", "--preset", "nope", "--out", str(tmp_path / "x.onnx")]) == 2
    assert main(["export", "--preset", "tiny", "--out", str(tmp_path / "x.txt")]) == 2
    assert "unknown policy preset 'nope'" in capsys.readouterr().err

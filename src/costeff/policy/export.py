"""Turn a PyTorch policy into a checked ONNX file.

``export_policy`` accepts a ``module:factory`` reference (a callable returning an
``nn.Module``) or a TorchScript file, exports with a dynamic batch axis, checks the
file with ``onnx.checker`` and compares onnxruntime with torch on random inputs.
The ONNX is written to a temp file and renamed only after every check passed, so
a failed export leaves nothing behind.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from costeff.errors import CosteffError, InputError

log = logging.getLogger("costeff.policy")
OPSET = 17
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3
DEFAULT_OUTPUT_NAMES = ("logits", "value")


class VerificationError(CosteffError):
    """onnxruntime and torch disagree on the exported graph beyond tolerance (exit 3)."""


@dataclass(frozen=True)
class ExportReport:
    source: str
    onnx_path: Path
    sha256: str
    n_params: int
    input_name: str
    observation_shape: tuple[int, ...]
    output_names: tuple[str, ...]
    output_shapes: dict[str, list[Any]]
    opset: int
    max_abs_err: float
    checked_batch_sizes: tuple[int, ...]
    provenance: dict[str, Any] = field(default_factory=dict)


def load_source(source: str) -> Any:
    """The torch module named by ``module:factory`` or a TorchScript file path."""
    if ":" in source and not Path(source).exists():
        return _from_factory(source)
    path = Path(source)
    if not path.is_file():
        raise InputError(f"{source}: no such TorchScript file and not a module:factory reference; "
                         "expected e.g. mypkg.policies:make_policy or policy.pt")
    return _from_torchscript(path)


def _from_factory(source: str) -> Any:
    from torch import nn

    module_name, _, attr = source.partition(":")
    if not module_name or not attr:
        raise InputError(f"{source}: expected module:factory, e.g. mypkg.policies:make_policy")
    sys.path.insert(0, os.getcwd())  # like `python -m`: the working directory's modules are importable
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"{source}: cannot import module {module_name!r} ({exc})") from None
    finally:
        sys.path.remove(os.getcwd())
    factory = getattr(module, attr, None)
    if factory is None:
        raise InputError(f"{source}: module {module_name!r} has no attribute {attr!r}")
    if not callable(factory):
        raise InputError(f"{source}: {attr!r} is a {type(factory).__name__}, not a callable returning an nn.Module")
    try:
        model = factory()
    except Exception as exc:  # the user's code: any failure is theirs to fix, say which
        raise InputError(f"{source}: {attr}() raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise InputError(f"{source}: {attr}() returned a {type(model).__name__}; expected a torch.nn.Module")
    return model


def _from_torchscript(path: Path) -> Any:
    import torch

    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError / ValueError for non-TorchScript files
        raise InputError(f"{path}: not a TorchScript file ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None


def export_policy(source: str, out: Path | str, *, observation_shape: tuple[int, ...] | None = None,
                  input_name: str = "obs", seed: int = 0) -> ExportReport:
    """Export ``source`` to ``out`` as a checked ONNX policy with a dynamic batch axis."""
    model = load_source(source)
    shape = _observation_shape(model, observation_shape, source)
    return export_module(model, out, shape, input_name=input_name, source=source, seed=seed)


def export_module(model: Any, out: Path | str, observation_shape: tuple[int, ...], *, input_name: str = "obs",
                  source: str = "module", seed: int = 0, atol: float = DEFAULT_ATOL) -> ExportReport:
    from costeff.artifacts import provenance, sha256_file
    from costeff.runtimes.cpus import cap_torch_threads

    cap_torch_threads()  # the forward passes and the export run on torch's pool, sized to the host by default
    model = model.eval()
    sample = np.random.default_rng(seed).standard_normal((2, *observation_shape)).astype(np.float32)
    names = output_names(model, sample)
    out = Path(out)
    errors: list[float] = []
    to_onnx(model, sample, out, input_name=input_name, names=names, verify=lambda path: errors.append(
        verify_onnx(path, model, input_name, observation_shape, seed=seed, atol=atol)))
    err = errors[0]
    return ExportReport(source, out, sha256_file(out), n_params(model), input_name, tuple(observation_shape),
                        names, _output_shapes(out), OPSET, err, (1, 7), provenance(out, hardware=False))


def _observation_shape(model: Any, given: tuple[int, ...] | None, source: str) -> tuple[int, ...]:
    if given:
        return tuple(given)
    declared = getattr(model, "observation_shape", None)
    if declared:
        return tuple(int(d) for d in declared)
    raise InputError(f"{source}: the model declares no observation_shape; pass --observation-shape, e.g. 32,16")


def output_names(model: Any, sample: np.ndarray) -> tuple[str, ...]:
    """``logits`` (and ``value`` when the model returns two tensors), found by one forward pass."""
    outputs = _forward(model, sample)
    if len(outputs) <= len(DEFAULT_OUTPUT_NAMES):
        return DEFAULT_OUTPUT_NAMES[:len(outputs)]
    return DEFAULT_OUTPUT_NAMES + tuple(f"output_{i}" for i in range(2, len(outputs)))


def _forward(model: Any, sample: np.ndarray) -> list[np.ndarray]:
    import torch

    try:
        with torch.inference_mode():
            result = model(torch.from_numpy(sample))
    except Exception as exc:
        raise InputError(f"model forward failed on a float32 batch of shape {list(sample.shape)} "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                         "check --observation-shape") from None
    results = list(result) if isinstance(result, (tuple, list)) else [result]
    if not results or not all(isinstance(r, torch.Tensor) for r in results):
        raise InputError("model must return a tensor or a tuple of tensors (logits[, value])")
    return [r.float().numpy() for r in results]


def to_onnx(model: Any, sample: np.ndarray, out: Path, *, input_name: str, names: tuple[str, ...],
            verify: Any = None) -> Path:
    """Export with the legacy (TorchScript-based) exporter: one file, dynamic batch, opset 17.

    The legacy exporter runs in well under a second where the dynamo exporter takes
    seconds, and it writes the weights inside the file (up to the 2 GB protobuf limit).
    ``verify(tmp_path)`` runs before the rename, so a bad file never reaches ``out``.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp.onnx", dir=out.parent)
    os.close(fd)
    try:
        _export(model, sample, Path(tmp), input_name, names)
        if verify is not None:
            verify(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a model file is read by servers running as other users
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


def _export(model: Any, sample: np.ndarray, path: Path, input_name: str, names: tuple[str, ...]) -> None:
    import torch

    axes = {name: {0: "batch"} for name in (input_name, *names)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(sample),), str(path), dynamo=False, opset_version=OPSET,
                          input_names=[input_name], output_names=list(names), dynamic_axes=axes,
                          do_constant_folding=True)


def verify_onnx(path: Path, model: Any, input_name: str, observation_shape: tuple[int, ...], *, seed: int = 0,
                atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL, obs: np.ndarray | None = None) -> float:
    """Check the graph and compare onnxruntime with torch at two batch sizes; the max abs error.

    Raises VerificationError when any output differs by more than ``atol + rtol·|torch|``.
    """
    import onnx

    onnx.checker.check_model(str(path), full_check=True)
    _check_dynamic_batch(path, input_name)
    session = _session(path)
    rng = np.random.default_rng(seed + 7)
    batches = [obs] if obs is not None else [rng.standard_normal((b, *observation_shape)).astype(np.float32)
                                             for b in (1, 7)]
    worst = 0.0
    for batch in batches:
        got = session.run(None, {input_name: batch})
        want = _forward(model, batch)
        worst = max(worst, _compare(got, want, atol, rtol, path))
    return worst


def _compare(got: list[np.ndarray], want: list[np.ndarray], atol: float, rtol: float, path: Path) -> float:
    worst = 0.0
    for g, w in zip(got, want, strict=False):
        if g.shape != w.shape:
            raise VerificationError(f"{path}: onnxruntime output shape {list(g.shape)} != torch {list(w.shape)}")
        err = np.abs(g.astype(np.float64) - w)
        if np.any(err > atol + rtol * np.abs(w)):
            raise VerificationError(f"{path}: onnxruntime and torch differ by up to {float(err.max()):.3g} "
                                    f"(tolerance {atol:g} + {rtol:g}*|torch|)")
        worst = max(worst, float(err.max()))
    return worst


def _check_dynamic_batch(path: Path, input_name: str) -> None:
    from costeff.modelio import read_signature

    sig = read_signature(path)
    spec = sig.input(input_name)
    if not spec.has_batch_axis or not all(o.has_batch_axis for o in sig.outputs):
        raise VerificationError(f"{path}: exported graph lacks a dynamic batch axis ({spec.shape})")


def _session(path: Path) -> Any:
    from costeff.modelio import create_session

    return create_session(path, "cpu")


def _output_shapes(path: Path) -> dict[str, list[Any]]:
    from costeff.modelio import read_signature

    return {o.name: [d if d is not None else "batch" for d in o.shape] for o in read_signature(path).outputs}


def n_params(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))

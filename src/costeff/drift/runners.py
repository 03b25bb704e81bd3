"""Run a policy file on observation rows: ONNX through onnxruntime, OpenVINO IR through OpenVINO.

A drift check compares whatever actually serves with the fp32 reference, and what
serves may be an ONNX variant or an OpenVINO IR (``model.xml`` + ``model.bin``).
Both give the same ``PolicyOutputs`` so the fidelity metrics never know the difference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from costeff.artifacts import sha256_file
from costeff.errors import InputError
from costeff.quantization.fidelity import PolicyOutputs, policy_outputs

KINDS = {".onnx": "onnx", ".xml": "openvino"}
# Rows per inference call. onnxruntime's arena keeps the largest activations it has seen, so
# the chunk sets drift watch's resident memory: 4096 rows held about 210 MiB more than 512 for
# the default policy's fp32 + int8 pair, for 901 against 838 ms of CPU per 5,000 rows
# (one run each of `python -m benchmarks daemons`, docs/benchmarks/daemons.md).
CHUNK_ROWS = 512


@dataclass
class Runner:
    """A policy file opened for a drift check: a ``costeff.runtimes`` session plus what the records name."""

    path: str
    kind: str
    sha256: str
    input_name: str
    sample_shape: tuple[int | None, ...]
    input_dtype: str
    logits: str
    value: str | None
    precision: str  # "graph": onnxruntime computes in the graph's own types; else OpenVINO's precision hint
    session: Any = field(repr=False, default=None)  # the costeff.runtimes runner that infers

    def run(self, obs: np.ndarray, chunk: int = CHUNK_ROWS) -> PolicyOutputs:
        obs = np.ascontiguousarray(obs, dtype=self.input_dtype)
        return policy_outputs(self.session, obs, self.logits, self.value, chunk)


def model_kind(path: Path | str) -> str:
    kind = KINDS.get(Path(path).suffix.lower())
    if kind is None:
        raise InputError(f"{path}: unsupported model file {Path(path).suffix!r}; expected .onnx or an "
                         "OpenVINO IR .xml (with its .bin beside it)")
    return kind


def model_sha256(path: Path | str) -> str:
    """The model's identity as the quantization report and the repository record it: the SHA-256 of the
    ``.onnx`` file, or of an IR's ``.xml`` (its ``.bin`` must sit beside it)."""
    path = Path(path)
    if model_kind(path) == "openvino":
        _bin(path)
    return sha256_file(path)


def open_runner(path: Path | str, outputs: dict[str, str] | None = None, *, reference: bool = False) -> Runner:
    """A runner for ``path`` on the runtime that serves it (``costeff.runtimes``). A reference IR is forced
    to fp32; a served IR runs as OpenVINO would serve it on this CPU (bf16 by default where the CPU has
    AMX / avx512_bf16). onnxruntime does not spin: the reference and the served model alternate here."""
    from costeff.modelio import read_signature
    from costeff.runtimes import RuntimeOptions
    from costeff.runtimes import open_runner as open_session

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file; expected .onnx or an OpenVINO IR .xml")
    kind = model_kind(path)
    sha256 = model_sha256(path)  # an IR without its .bin is refused here, before OpenVINO reads it
    sig = read_signature(path, outputs)
    if len(sig.inputs) != 1:
        raise InputError(f"{path}: {len(sig.inputs)} inputs; a drift check feeds one observation tensor")
    assert sig.logits is not None  # read_signature refuses a graph without outputs
    options = RuntimeOptions(spinning=False, precision="f32" if reference else None)
    session = open_session(path, "openvino" if kind == "openvino" else "onnxruntime", options)
    hint = getattr(session, "properties", {}).get("INFERENCE_PRECISION_HINT")
    spec = sig.inputs[0]
    return Runner(str(path), kind, sha256, spec.name, spec.sample_shape, spec.dtype, sig.logits, sig.value,
                  "graph" if kind == "onnx" else f"openvino {hint}", session)


def _bin(xml: Path) -> Path:
    weights = xml.with_suffix(".bin")
    if not weights.is_file():
        raise InputError(f"{xml}: OpenVINO IR without its weights {weights.name}; expected both beside each other")
    return weights

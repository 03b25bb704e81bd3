"""Run a policy file on observation rows: ONNX through onnxruntime, OpenVINO IR through OpenVINO.

A drift check compares whatever actually serves with the fp32 reference, and what
serves may be an ONNX variant or an OpenVINO IR (``model.xml`` + ``model.bin``).
Both give the same ``PolicyOutputs`` so the fidelity metrics never know the difference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from costeff.artifacts import sha256_file
from costeff.errors import InputError
from costeff.quantization.fidelity import PolicyOutputs

KINDS = {".onnx": "onnx", ".xml": "openvino"}
# Rows per inference call. onnxruntime's arena keeps the largest activations it has seen, so
# the chunk sets drift watch's resident memory: 4096 rows held about 210 MiB more than 512 for
# the default policy's fp32 + int8 pair, for 901 against 838 ms of CPU per 5,000 rows
# (one run each of `python -m benchmarks daemons`, docs/benchmarks/daemons.md).
CHUNK_ROWS = 512


@dataclass
class Runner:
    path: str
    kind: str
    sha256: str
    input_name: str
    sample_shape: tuple[int | None, ...]
    input_dtype: str
    logits: str
    value: str | None
    precision: str  # "graph": onnxruntime computes in the graph's own types; else OpenVINO's precision hint
    _infer: Callable[[np.ndarray], dict[str, np.ndarray]] = field(repr=False, default=None)  # type: ignore

    def run(self, obs: np.ndarray, chunk: int = CHUNK_ROWS) -> PolicyOutputs:
        obs = np.ascontiguousarray(obs, dtype=self.input_dtype)
        parts: dict[str, list[np.ndarray]] = {self.logits: [], **({self.value: []} if self.value else {})}
        for start in range(0, len(obs), chunk):
            out = self._infer(obs[start:start + chunk])
            for name in parts:
                parts[name].append(np.asarray(out[name], dtype=np.float32))
        logits = np.concatenate(parts[self.logits]).reshape(len(obs), -1)
        return PolicyOutputs(logits, np.concatenate(parts[self.value]) if self.value else None)


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
    """A runner for ``path``. A reference IR is forced to fp32; a served IR runs as OpenVINO would serve
    it on this CPU (bf16 by default where the CPU has AMX / avx512_bf16)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file; expected .onnx or an OpenVINO IR .xml")
    kind = model_kind(path)
    return _onnx(path, outputs) if kind == "onnx" else _openvino(path, outputs, reference)


def _onnx(path: Path, outputs: dict[str, str] | None) -> Runner:
    from costeff.modelio import read_signature
    from costeff.quantization.fidelity import open_session

    sig = read_signature(path, outputs)
    if len(sig.inputs) != 1:
        raise InputError(f"{path}: {len(sig.inputs)} inputs; a drift check feeds one observation tensor")
    session = open_session(path)
    spec = sig.inputs[0]
    if sig.logits is None:
        raise InputError(f"{path}: the graph has no outputs; expected the policy's action logits")
    wanted = [sig.logits] + ([sig.value] if sig.value else [])

    def infer(batch: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(wanted, session.run(wanted, {spec.name: batch}), strict=True))

    return Runner(str(path), "onnx", sha256_file(path), spec.name, spec.sample_shape, spec.dtype, str(sig.logits),
                  sig.value, "graph", infer)


def _openvino(path: Path, outputs: dict[str, str] | None, reference: bool) -> Runner:
    from costeff.runtimes import RuntimeOptions
    from costeff.runtimes.ov import compile_model

    _bin(path)
    # The reference is fp32 by definition; a served IR keeps OpenVINO's own precision for this CPU,
    # as the openvino backend serves it without HINT_BF16. Threads: the CPUs this process may use.
    compiled = compile_model(path, RuntimeOptions(precision="f32" if reference else None))
    if len(compiled.inputs) != 1:
        raise InputError(f"{path}: {len(compiled.inputs)} inputs; a drift check feeds one observation tensor")
    port = compiled.inputs[0]
    shape = tuple(None if d.is_dynamic else d.get_length() for d in port.get_partial_shape())
    names = {n: i for i, o in enumerate(compiled.outputs) for n in [_name(o), *sorted(o.get_names())]}
    roles = _ir_roles(list(names), outputs or {}, path)
    request = compiled.create_infer_request()

    def infer(batch: np.ndarray) -> dict[str, np.ndarray]:
        result = request.infer({0: batch})
        return {name: np.array(result[compiled.outputs[names[name]]]) for name in roles.values()}

    dtype = port.get_element_type().to_dtype().name
    hint = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # "f32", "bf16", "f16"
    return Runner(str(path), "openvino", model_sha256(path), _name(port), shape[1:], dtype, roles["logits"],
                  roles.get("value"), f"openvino {hint}", infer)


def _ir_roles(names: list[str], explicit: dict[str, str], path: Path) -> dict[str, str]:
    from costeff.modelio import _roles

    return _roles(names, explicit, path)


def _name(port: Any) -> str:
    return port.get_any_name()


def _bin(xml: Path) -> Path:
    weights = xml.with_suffix(".bin")
    if not weights.is_file():
        raise InputError(f"{xml}: OpenVINO IR without its weights {weights.name}; expected both beside each other")
    return weights

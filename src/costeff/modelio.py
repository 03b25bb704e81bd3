"""Read an ONNX policy's interface and open onnxruntime sessions on it.

Input names, element types and dynamic dimensions come from the graph, never from
assumptions: a policy may take fp16 observations or several inputs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from costeff.errors import DependencyError, InputError

log = logging.getLogger(__name__)

# ONNX TensorProto element type -> (numpy dtype name, Triton TYPE_*).
ONNX_TYPES: dict[int, tuple[str, str]] = {
    1: ("float32", "TYPE_FP32"), 10: ("float16", "TYPE_FP16"), 11: ("float64", "TYPE_FP64"),
    16: ("bfloat16", "TYPE_BF16"), 2: ("uint8", "TYPE_UINT8"), 3: ("int8", "TYPE_INT8"),
    4: ("uint16", "TYPE_UINT16"), 5: ("int16", "TYPE_INT16"), 6: ("int32", "TYPE_INT32"),
    7: ("int64", "TYPE_INT64"), 9: ("bool", "TYPE_BOOL"), 12: ("uint32", "TYPE_UINT32"),
    13: ("uint64", "TYPE_UINT64"), 8: ("string", "TYPE_STRING"),
}
LOGIT_NAMES = ("logits", "action_logits", "policy_logits", "pi", "mean", "action_mean")
VALUE_NAMES = ("value", "values", "v", "state_value")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name
    triton_dtype: str
    shape: tuple[int | None, ...]  # None for a dynamic dimension (incl. the batch axis)

    @property
    def has_batch_axis(self) -> bool:
        return len(self.shape) > 0 and self.shape[0] is None

    @property
    def sample_shape(self) -> tuple[int | None, ...]:
        """The shape without the batch dimension."""
        return self.shape[1:]


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    logits: str | None
    value: str | None

    def input(self, name: str | None = None) -> TensorSpec:
        if name is None:
            return self.inputs[0]
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise InputError(f"model has no input {name!r}; inputs: {[s.name for s in self.inputs]}")


def load_onnx(path: Path | str, *, load_weights: bool = True) -> Any:
    """``onnx.load`` with a one-line error for a missing or corrupt file."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file; expected an ONNX file")
    try:
        return onnx.load(str(path), load_external_data=load_weights)
    except Exception as exc:  # onnx raises DecodeError, ValueError, OSError, ...
        raise InputError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None


def read_signature(path: Path | str, outputs: dict[str, str] | None = None) -> Signature:
    """The policy's inputs and outputs; output roles from names or ``outputs={'logits': ..., 'value': ...}``.

    ONNX files are read with ``onnx``; OpenVINO IR (``.xml``) with OpenVINO.
    """
    if Path(path).suffix == ".xml":
        inputs, outs = _ir_tensors(Path(path))
    else:
        model = load_onnx(path, load_weights=False)
        check_model(model, path)
        inputs = tuple(_spec(v) for v in _graph_inputs(model))
        outs = tuple(_spec(v) for v in model.graph.output)
    if not inputs:
        raise InputError(f"{path}: the graph has no inputs")
    if not outs:
        raise InputError(f"{path}: the graph has no outputs; expected the policy's action head (and value)")
    for spec in inputs:
        if spec.dtype not in FLOAT_INPUTS:
            raise InputError(f"{path}: input {spec.name!r} is {spec.dtype}; observations are fed as floating "
                             f"point ({', '.join(FLOAT_INPUTS)})")
    for spec in inputs:
        if not spec.has_batch_axis:
            raise InputError(f"{path}: input {spec.name!r} has shape {list(spec.shape)} with no dynamic batch "
                             "dimension; expected [batch, ...] (export with a dynamic first axis)")
    roles = _roles([o.name for o in outs], outputs or {}, path)
    return Signature(inputs, outs, roles.get("logits"), roles.get("value"))


FLOAT_INPUTS = ("float32", "float16", "float64", "bfloat16")
# Op domains the runtimes costeff drives implement (beyond the ONNX standard ones, checked op by op).
RUNTIME_DOMAINS = {"com.microsoft", "com.microsoft.nchwc", "com.ms.internal.nhwc", "ai.onnx.preview.training",
                   "ai.onnx.training", "org.pytorch.aten"}


def check_model(model: Any, path: Path | str) -> None:
    """Bad input, said before any runtime tries the model: an ir_version this onnx cannot read, an op
    domain or standard op no runtime implements (functions defined in the model itself are fine)."""
    import onnx

    if not 3 <= model.ir_version <= onnx.IR_VERSION:
        raise InputError(f"{path}: ir_version {model.ir_version}; expected 3 to {onnx.IR_VERSION} "
                         f"(re-export the model with a current exporter)")
    local = {(f.domain, f.name) for f in model.functions}
    for node in model.graph.node:
        domain = node.domain or ""
        if (domain, node.op_type) in local:
            continue
        label = f"node {node.name or node.op_type!r}"
        if domain in ("", "ai.onnx", "ai.onnx.ml"):
            if not onnx.defs.has(node.op_type, "" if domain == "ai.onnx" else domain):
                raise InputError(f"{path}: {label}: {node.op_type!r} is not an ONNX operator"
                                 f"{f' in domain {domain!r}' if domain else ''}")
        elif domain not in RUNTIME_DOMAINS:
            raise InputError(f"{path}: {label}: op domain {domain!r} is implemented by no runtime costeff uses; "
                             f"expected the ONNX domains or {', '.join(sorted(RUNTIME_DOMAINS))}")


# OpenVINO element type names -> (numpy dtype name, Triton TYPE_*).
OV_TYPES: dict[str, tuple[str, str]] = {
    "f32": ("float32", "TYPE_FP32"), "f16": ("float16", "TYPE_FP16"), "f64": ("float64", "TYPE_FP64"),
    "bf16": ("bfloat16", "TYPE_BF16"), "u8": ("uint8", "TYPE_UINT8"), "i8": ("int8", "TYPE_INT8"),
    "i32": ("int32", "TYPE_INT32"), "i64": ("int64", "TYPE_INT64"), "boolean": ("bool", "TYPE_BOOL"),
}


def _ir_tensors(path: Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Inputs and outputs of an OpenVINO IR; a missing ``.bin`` or unreadable XML is bad input."""
    if not path.is_file():
        raise InputError(f"{path}: no such model file; expected an OpenVINO IR .xml")
    if not path.with_suffix(".bin").is_file():
        raise InputError(f"{path}: OpenVINO IR without its weights file {path.with_suffix('.bin').name}")
    try:
        import openvino as ov
    except ImportError:
        raise DependencyError(f"{path}: reading OpenVINO IR needs openvino (pip install 'costeff[openvino]')") \
            from None
    try:
        model = ov.Core().read_model(str(path))
    except Exception as exc:  # OpenVINO raises RuntimeError with multi-line text
        raise InputError(f"{path}: not a readable OpenVINO IR ({str(exc).strip().splitlines()[0]})") from None
    return tuple(_ov_spec(p) for p in model.inputs), tuple(_ov_spec(p) for p in model.outputs)


def _ov_spec(port: Any) -> TensorSpec:
    kind = port.get_element_type().get_type_name()
    np_name, triton = OV_TYPES.get(kind, (f"openvino:{kind}", "TYPE_INVALID"))
    dims = tuple(None if d.is_dynamic else d.get_length() for d in port.get_partial_shape())
    return TensorSpec(port.get_any_name(), np_name, triton, dims)


def _graph_inputs(model: Any) -> list[Any]:
    initializers = {i.name for i in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in initializers]


def _spec(value_info: Any) -> TensorSpec:
    tt = value_info.type.tensor_type
    np_name, triton = ONNX_TYPES.get(tt.elem_type, (f"onnx:{tt.elem_type}", "TYPE_INVALID"))
    dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim)
    return TensorSpec(value_info.name, np_name, triton, dims)


def _roles(names: list[str], explicit: dict[str, str], path: Path | str) -> dict[str, str]:
    roles = {}
    for role, name in explicit.items():
        if name not in names:
            raise InputError(f"--outputs {role}={name}: {path} has no output {name!r}; outputs: {names}")
        roles[role] = name
    for role, candidates in (("logits", LOGIT_NAMES), ("value", VALUE_NAMES)):
        matches = [n for n in names if n.lower() in candidates]
        if role not in roles and matches:
            roles[role] = matches[-1]
    if "logits" not in roles and names:
        roles["logits"] = names[0]  # a policy's first output is its action head by convention
    return roles


PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
             "tensorrt": "TensorrtExecutionProvider"}


def resolve_provider(provider: str, *, trt_fp16: bool = False) -> list[Any]:
    """Provider list for onnxruntime; ``auto`` prefers CUDA when onnxruntime-gpu can use it.

    TensorRT builds fp16 engines only when ``trt_fp16`` is asked for: the fp32
    baseline and the fidelity reference must stay full precision.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    if provider == "auto":
        provider = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    if provider not in PROVIDERS:
        raise InputError(f"--provider: unknown provider {provider!r}; expected auto, cpu, cuda or tensorrt")
    name = PROVIDERS[provider]
    if provider in ("cuda", "tensorrt"):
        _preload_cuda_libraries(ort)
    if name not in available:
        raise InputError(f"--provider {provider}: {name} is not available in this onnxruntime "
                         f"(available: {', '.join(available)}); install the [gpu] extra on a GPU machine")
    if provider == "tensorrt":
        return [(name, {"trt_fp16_enable": trt_fp16}), "CUDAExecutionProvider", "CPUExecutionProvider"]
    if provider == "cuda":
        return [name, "CPUExecutionProvider"]
    return [name]


def _preload_cuda_libraries(ort: Any) -> None:
    """Load CUDA / cuDNN from the nvidia-* pip packages when onnxruntime-gpu can (1.21+).

    Without it the CUDA provider only finds them through LD_LIBRARY_PATH and falls
    back to the CPU with a log line, which would make a GPU profile measure the CPU.
    """
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except Exception as exc:  # noqa: BLE001 - a failed preload surfaces when the session loads
            log.debug("onnxruntime.preload_dlls failed: %s", exc)


def create_session(path: Path | str, provider: str = "cpu", *, intra_op_threads: int | None = None,
                   spinning: bool = True, session_config: dict[str, str] | None = None,
                   trt_fp16: bool = False) -> Any:
    """An onnxruntime session; DependencyError (exit 3) when the provider fails to load the model.

    ``spinning=False`` stops idle intra-op threads from busy-waiting: needed when
    several sessions share a process, and closer to spaced-out serving traffic.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if intra_op_threads:
        opts.intra_op_num_threads = intra_op_threads
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for key, value in (session_config or {}).items():
        opts.add_session_config_entry(key, value)
    providers = resolve_provider(provider, trt_fp16=trt_fp16)
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:
        if not Path(path).is_file():
            raise InputError(f"{path}: no such model file") from None
        raise DependencyError(f"{path}: onnxruntime could not load the model with {provider}: {exc}") from None
    wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
    if session.get_providers()[0] != wanted:
        # onnxruntime falls back to the next provider with only a log line; a profile
        # labelled CUDA that measured the CPU would be worse than no profile.
        raise DependencyError(f"{path}: {wanted} failed to load (onnxruntime fell back to "
                              f"{session.get_providers()[0]}); check the CUDA / TensorRT libraries")
    return session


def random_batch(sig: Signature, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal inputs of the graph's dtypes, for profiling when no observations are given."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in sig.inputs:
        dims = [d for d in spec.sample_shape if d is not None]
        if len(dims) < len(spec.sample_shape):
            raise InputError(f"input {spec.name!r} has dynamic non-batch dims {list(spec.shape)}; "
                             "pass --observations so their sizes are known")
        shape = (batch, *dims)
        feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return feeds

"""OpenVINO behind the :class:`costeff.runtimes.Runner` interface.

The precision hint is set unless asked for OpenVINO's own default: on CPUs with
AMX or AVX512_BF16 that default is bf16, so a model compiled "as is" would silently
not be fp32. The inference threads are always set: OpenVINO's default is the
host's cores, throttled inside a container limited to fewer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from costeff.errors import DependencyError, InputError
from costeff.runtimes import RuntimeOptions


class OpenVinoRunner:
    backend = "openvino"

    def __init__(self, path: Path, options: RuntimeOptions) -> None:
        self.compiled = compile_model(path, options)
        self.request = self.compiled.create_infer_request()
        self._keep: list[np.ndarray] = []  # arrays bound by shared memory must outlive their requests
        self.input_name = self.compiled.input(0).get_any_name()
        self.output_names = tuple(o.get_any_name() for o in self.compiled.outputs)
        self.properties = {key: _text(self.compiled.get_property(key))
                           for key in ("INFERENCE_PRECISION_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS")}

    def run(self, rows: np.ndarray, outputs: list[str] | None = None) -> list[np.ndarray]:
        result = self.request.infer({0: np.ascontiguousarray(rows)})
        names = outputs or list(self.output_names)
        return [np.array(result[self.compiled.output(n)]) for n in names]

    def bind(self, rows: np.ndarray) -> Callable[[], Any]:
        import openvino as ov

        # A request of its own whose input tensor shares the array's memory and stays
        # set: each call is one C++ infer(), and binds of other shapes do not interfere.
        request = self.compiled.create_infer_request()
        bound = np.ascontiguousarray(rows)
        request.set_input_tensor(ov.Tensor(bound, shared_memory=True))
        self._keep.append(bound)
        return request.infer


def compile_config(options: RuntimeOptions) -> dict[str, Any]:
    config: dict[str, Any] = {"PERFORMANCE_HINT": options.performance_hint,
                              "INFERENCE_NUM_THREADS": options.resolved_threads()}
    if options.precision is not None:
        config["INFERENCE_PRECISION_HINT"] = options.precision
    if options.streams is not None:
        config["NUM_STREAMS"] = options.streams
    if options.pinning is not None:
        config["ENABLE_CPU_PINNING"] = options.pinning
    return config


def compile_model(path: Path, options: RuntimeOptions) -> Any:
    """Compile ``path`` (IR or ONNX) for the CPU: a file OpenVINO cannot read (or an IR without its
    ``.bin``) is bad input, a model it reads but cannot compile a dependency failure."""
    ov = import_openvino()
    if path.suffix == ".xml" and not path.with_suffix(".bin").is_file():
        raise InputError(f"{path}: OpenVINO IR without its weights file {path.with_suffix('.bin').name}")
    if options.precision == "bf16" and not host_has_bf16():
        raise InputError(f"{path}: bf16 needs a CPU with amx_bf16 or avx512_bf16; this host has neither")
    core = ov.Core()
    try:
        model = core.read_model(str(path))
    except Exception as exc:  # OpenVINO raises RuntimeError for a malformed file
        raise InputError(f"{path}: OpenVINO cannot read this model ({' '.join(str(exc).split())[:200]})") from None
    try:
        return core.compile_model(model, "CPU", compile_config(options))
    except Exception as exc:  # OpenVINO raises RuntimeError with multi-line text
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DependencyError(f"{path}: OpenVINO could not compile the model for the CPU: {first}") from None


def import_openvino() -> Any:
    try:
        import openvino as ov
    except ImportError as exc:
        raise DependencyError(f"running an OpenVINO model needs the openvino package "
                              f"(pip install 'costeff[openvino]'): {exc}") from None
    return ov


def host_has_bf16() -> bool:
    from costeff.hardware import detect

    return any(f in detect().isa for f in ("amx_bf16", "avx512_bf16"))


def _text(value: Any) -> str:
    """OpenVINO property values as plain text (``ov.Type`` prints as ``<Type: 'bfloat16'>``)."""
    to_string = getattr(value, "to_string", None)
    return to_string() if callable(to_string) else str(value)

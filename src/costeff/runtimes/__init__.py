"""Backends that run a policy, behind one small interface.

A :class:`Runner` answers two needs: ``run(rows)`` returns the policy's outputs
(fidelity, drift), and ``bind(rows)`` returns a zero-argument call that infers
on a fixed batch with as little Python in between as the backend allows
(profiling). onnxruntime runs ``.onnx`` files; OpenVINO runs IR (``.xml`` with
its ``.bin``) and ONNX. Both are imported only when a runner is opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from costeff.errors import InputError

BACKENDS = ("onnxruntime", "openvino")
OV_PRECISIONS = ("f32", "bf16")
OV_HINTS = ("LATENCY", "THROUGHPUT")


@dataclass(frozen=True)
class RuntimeOptions:
    """The knobs that change speed, recorded with every measurement.

    ``threads=None`` sizes the pool to the CPUs this process may use (affinity and
    cgroup quota), not the host's core count: both runtimes default to the latter
    and are throttled inside a container.
    """

    threads: int | None = None
    spinning: bool = True  # onnxruntime: idle intra-op threads busy-wait (fast when hot, burns a core)
    session_config: tuple[tuple[str, str], ...] = ()  # onnxruntime session config entries
    provider: str = "cpu"  # onnxruntime execution provider
    trt_fp16: bool = False  # TensorRT provider only: let it build fp16 engines
    # OpenVINO INFERENCE_PRECISION_HINT (its CPU default is bf16 on AMX hosts); None leaves that default,
    # which is what Triton's openvino backend serves without HINT_BF16.
    precision: str | None = "f32"
    performance_hint: str = "LATENCY"  # OpenVINO PERFORMANCE_HINT
    streams: int | None = None  # OpenVINO NUM_STREAMS (None: what the hint picks)
    pinning: bool | None = None  # OpenVINO ENABLE_CPU_PINNING (None: the runtime's default)

    def __post_init__(self) -> None:
        if self.precision is not None and self.precision not in OV_PRECISIONS:
            raise InputError(f"precision: {self.precision!r}; expected one of {', '.join(OV_PRECISIONS)}")
        if self.performance_hint not in OV_HINTS:
            raise InputError(f"performance_hint: {self.performance_hint!r}; expected one of {', '.join(OV_HINTS)}")
        for name in ("threads", "streams"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise InputError(f"{name}: {value!r}; expected a positive integer")

    def resolved_threads(self) -> int:
        from costeff.runtimes.cpus import usable_cpus

        return self.threads or usable_cpus()

    def to_dict(self, backend: str) -> dict[str, Any]:
        """Only the knobs that apply to ``backend``, with threads resolved."""
        if backend == "openvino":
            return {"threads": self.resolved_threads(), "precision": self.precision,
                    "performance_hint": self.performance_hint, "streams": self.streams, "pinning": self.pinning}
        return {"threads": self.resolved_threads(), "spinning": self.spinning, "provider": self.provider,
                "session_config": dict(self.session_config), "trt_fp16": self.trt_fp16}


class Runner(Protocol):
    backend: str
    input_name: str
    output_names: tuple[str, ...]

    def run(self, rows: np.ndarray, outputs: list[str] | None = None) -> list[np.ndarray]: ...

    def bind(self, rows: np.ndarray) -> Callable[[], Any]: ...


def backend_for(path: Path | str) -> str:
    """The backend that serves a model file: IR is OpenVINO's, ONNX onnxruntime's."""
    return "openvino" if Path(path).suffix == ".xml" else "onnxruntime"


def open_runner(path: Path | str, backend: str | None = None, options: RuntimeOptions = RuntimeOptions()) -> Runner:
    """A runner for ``path``; InputError for a missing file, DependencyError when the runtime fails."""
    backend = backend or backend_for(path)
    if backend not in BACKENDS:
        raise InputError(f"backend: {backend!r}; expected one of {', '.join(BACKENDS)}")
    if not Path(path).is_file():
        raise InputError(f"{path}: no such model file")
    if backend == "openvino":
        from costeff.runtimes.ov import OpenVinoRunner

        return OpenVinoRunner(Path(path), options)
    from costeff.runtimes.ort import OnnxRuntimeRunner

    return OnnxRuntimeRunner(Path(path), options)


def available(backend: str) -> str | None:
    """None when ``backend`` can be imported here, else the one-line reason it cannot."""
    import importlib.util

    module = {"onnxruntime": "onnxruntime", "openvino": "openvino"}[backend]
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install 'costeff[{'openvino' if backend == 'openvino' else 'cpu'}]')"
    return None

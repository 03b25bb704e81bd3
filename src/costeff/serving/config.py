"""Triton ``config.pbtxt`` generated through Triton's own ``ModelConfig`` protobuf.

Building the message (rather than formatting a string) means every field name, enum
and type is checked by the schema Triton itself parses, as Model Analyzer does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from costeff.errors import DependencyError, InputError
from costeff.modelio import Signature

PLATFORM = "onnxruntime_onnx"
BACKEND = "onnxruntime"
OV_BACKEND = "openvino"  # Triton's openvino backend serves IR (model.xml + model.bin)
# TensorRT builds engines in this much scratch memory; 1 GiB is Triton's documented example
# and far above what a policy MLP needs, while leaving most of the GPU to the engine.
DEFAULT_WORKSPACE_BYTES = 1 << 30


@dataclass(frozen=True)
class BatchingSettings:
    """Triton dynamic-batcher settings and where they came from."""

    max_batch_size: int
    preferred_batch_size: tuple[int, ...]
    max_queue_delay_us: int
    instances: int  # model instances in one Triton server (instance_group count)
    source: str
    replicas: int = 1  # Triton servers to deploy, each with its own device (what the optimizer priced)

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise InputError(f"max_batch_size: {self.max_batch_size} must be >= 1")
        bad = [p for p in self.preferred_batch_size if not 0 < p <= self.max_batch_size]
        if bad:
            raise InputError(f"preferred_batch_size: {bad} must lie in 1..max_batch_size ({self.max_batch_size})")
        if self.max_queue_delay_us < 0:
            raise InputError(f"max_queue_delay_us: {self.max_queue_delay_us} must be >= 0")
        if self.instances < 1:
            raise InputError(f"instances: {self.instances} must be >= 1")
        if self.replicas < 1:
            raise InputError(f"replicas: {self.replicas} must be >= 1")


def triton_schema() -> Any:
    """Triton's compiled ``ModelConfig`` protobuf module, shipped in ``tritonclient``."""
    try:
        from tritonclient.grpc import model_config_pb2
    except (ImportError, RuntimeError) as exc:  # tritonclient raises RuntimeError when its grpc extra is missing
        raise DependencyError(f"Triton's ModelConfig schema needs tritonclient with gRPC support "
                              f"(pip install 'tritonclient[grpc]'): {exc}") from None
    return model_config_pb2


def model_config(name: str, signature: Signature, batching: BatchingSettings, instance_kind: str,
                 precision_mode: str | None, workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
                 backend: str = BACKEND, parameters: dict[str, str] | None = None) -> Any:
    """The ``ModelConfig`` message: an ONNX model on the onnxruntime backend, or an IR on the openvino one.

    ``parameters`` are the backend's string parameters (the openvino backend reads
    its runtime settings there: PERFORMANCE_HINT, NUM_STREAMS, INFERENCE_NUM_THREADS, HINT_BF16).
    """
    pb = triton_schema()
    cfg = pb.ModelConfig(name=name, backend=backend, max_batch_size=batching.max_batch_size)
    if backend == BACKEND:
        cfg.platform = PLATFORM
    for key, value in (parameters or {}).items():
        cfg.parameters[key].string_value = value
    for spec in signature.inputs:
        cfg.input.add(name=spec.name, data_type=_dtype(pb, spec), dims=_dims(spec))
    for spec in signature.outputs:
        cfg.output.add(name=spec.name, data_type=_dtype(pb, spec), dims=_dims(spec))
    cfg.dynamic_batching.preferred_batch_size.extend(batching.preferred_batch_size)
    cfg.dynamic_batching.max_queue_delay_microseconds = batching.max_queue_delay_us
    kind = pb.ModelInstanceGroup.KIND_GPU if instance_kind == "gpu" else pb.ModelInstanceGroup.KIND_CPU
    cfg.instance_group.add(kind=kind, count=batching.instances)
    if precision_mode is not None:
        trt = cfg.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        trt.parameters["precision_mode"] = precision_mode
        trt.parameters["max_workspace_size_bytes"] = str(workspace_bytes)
    return cfg


def to_text(cfg: Any) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(cfg)


def _dtype(pb: Any, spec: Any) -> int:
    try:
        return pb.DataType.Value(spec.triton_dtype)
    except ValueError:
        raise InputError(f"tensor {spec.name!r}: element type {spec.dtype} has no Triton data type") from None


def _dims(spec: Any) -> list[int]:
    # Triton leaves the batch dimension out of dims when max_batch_size > 0; -1 marks a dynamic axis.
    return [-1 if d is None else int(d) for d in spec.sample_shape]

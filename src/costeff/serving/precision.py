"""Which numeric precision an ONNX model computes in, and which TensorRT mode it allows.

Triton's onnxruntime backend hands the graph to TensorRT with a ``precision_mode``.
FP16 on an fp32 model changes the policy's numbers, so it is only allowed with
evidence (the model already is an fp16/mixed variant, or a quantization report shows
the fp16 variant passed its fidelity gates). FP16 on an int8 QDQ model would undo
the calibrated quantization; INT8 is the matching mode for explicit QDQ graphs, and
dynamic int8 (``DynamicQuantizeLinear`` / ``MatMulInteger``) has no TensorRT mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


PRECISION_MODES = ("FP32", "FP16", "INT8")
_DYNAMIC_INT8_OPS = {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger"}
_QDQ_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearMatMul", "QLinearConv"}
_FLOAT, _FLOAT16 = 1, 10


@dataclass(frozen=True)
class Accelerator:
    """The TensorRT decision for one model: ``precision_mode`` None means no accelerator."""

    precision_mode: str | None
    reason: str


def model_precision(model_path: Path | str) -> str:
    """``fp32``, ``fp16``, ``mixed``, ``int8-static`` (QDQ) or ``int8-dynamic``, read from the graph.

    An OpenVINO IR (``.xml``) is read by ``costeff.serving.ir_precision`` (``int8``, ``int8 weights``, ...)."""
    if Path(model_path).suffix == ".xml":
        from costeff.serving.ir_precision import ir_precision

        return ir_precision(model_path)
    from costeff.modelio import load_onnx

    graph = load_onnx(model_path, load_weights=False).graph
    ops = {n.op_type for n in graph.node}
    if ops & _DYNAMIC_INT8_OPS:
        return "int8-dynamic"
    if ops & _QDQ_OPS:
        return "int8-static"
    tensors = list(graph.initializer) + [a.t for n in graph.node if n.op_type == "Constant"
                                         for a in n.attribute if a.name == "value"]
    kinds = {t.data_type for t in tensors if t.data_type in (_FLOAT, _FLOAT16)}
    if _FLOAT16 in kinds:
        return "mixed" if _FLOAT in kinds else "fp16"
    return "fp32"


def fp16_passed(report_path: Path | str | None) -> bool | None:
    """Whether a quantization report says the fp16 variant passed its gates (None: no fp16 variant)."""
    from costeff.records.kinds import QUANT

    if report_path is None:
        return None
    fp16 = next((v for v in QUANT.read(report_path).variants if v.name == "fp16"), None)
    return None if fp16 is None else fp16.passed


def choose_accelerator(precision: str, instance_kind: str, fp16_evidence: bool | None) -> Accelerator:
    """The TensorRT precision a GPU instance may use for a model of ``precision``."""
    if instance_kind != "gpu":
        return Accelerator(None, "CPU instances: TensorRT is a GPU accelerator")
    if precision in ("fp16", "mixed"):
        return Accelerator("FP16", f"the model is the {precision} variant")
    if precision == "int8-static":
        return Accelerator("INT8", "explicit QDQ int8 graph: TensorRT uses its calibrated scales")
    if precision == "int8-dynamic":
        return Accelerator(None, "dynamic int8 has no TensorRT precision mode; FP16 would undo the quantization")
    if fp16_evidence:
        return Accelerator("FP16", "fp32 model; the quantization report shows fp16 passing its fidelity gates")
    why = "failed its fidelity gates" if fp16_evidence is False else "has no fidelity evidence"
    return Accelerator(None, f"fp32 model and fp16 {why}: TensorRT FP16 would change the policy's numbers")

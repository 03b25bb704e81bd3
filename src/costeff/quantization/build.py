"""Build precision variants of a policy with onnxruntime.quantization and onnxconverter-common.

Every builder writes one ONNX file and returns nothing else: what it was built
with is recorded by the caller. Input checks (already quantized, no float
weights) happen before anything is written.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from costeff.errors import InputError

log = logging.getLogger(__name__)

QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger",
             "QLinearMatMul", "QLinearConv", "QGemm", "DynamicQuantizeMatMul", "MatMulNBits"}
# Ops whose weights int8 quantization lowers; the fallback ranks and excludes these.
LOWERABLE_OPS = {"MatMul", "Gemm", "Conv", "ConvTranspose", "LSTM", "GRU", "Attention"}
FLOAT_TYPES = {1, 10, 11, 16}  # float, float16, double, bfloat16
CALIBRATION_METHODS = ("MinMax", "Entropy", "Percentile")


@dataclass(frozen=True)
class Int8Recipe:
    """How int8 is lowered on this machine, and the session settings it needs when served."""

    name: str
    activation_type: str = "QUInt8"
    weight_type: str = "QInt8"
    reduce_range: bool = False
    per_channel: bool = False
    session_config: dict[str, str] = field(default_factory=dict)


def check_model(path: Path) -> Any:
    """The loaded model; InputError when it is already quantized or has no float weights."""
    from costeff.modelio import load_onnx

    model = load_onnx(path)
    quant = sorted({n.op_type for n in model.graph.node if n.op_type in QUANT_OPS})
    if quant:
        raise InputError(f"{path}: the model is already quantized (ops {', '.join(quant)}); "
                         "pass the fp32 model to lower it")
    floats = [i for i in model.graph.initializer if i.data_type in FLOAT_TYPES and _numel(i) > 1]
    if not floats:
        raise InputError(f"{path}: the model has no float weights to lower; expected an fp32 policy")
    if all(i.data_type == 10 for i in floats):
        raise InputError(f"{path}: the weights are already fp16; pass the fp32 model")
    return model


def _numel(init: Any) -> int:
    return int(np.prod(init.dims)) if len(init.dims) else 1


def prepare_base(src: Path, dst: Path) -> str:
    """``quant_pre_process`` (optimisation + shape inference) then name every node; returns a note."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    note = "quant_pre_process: optimised and shape-inferred"
    try:
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
    except Exception as exc:  # symbolic shape inference fails on some graphs; plain ONNX still quantizes
        note = f"quant_pre_process failed ({type(exc).__name__}: {exc}); lowering the model as given"
        log.warning(note)
        onnx.save(onnx.load(str(src)), str(dst))
    model = onnx.load(str(dst))
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        # Exclusion lists refer to node names, so every node needs a unique one.
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)
    onnx.save(model, str(dst))
    return note


def lowerable_nodes(model: Any) -> list[str]:
    return [n.name for n in model.graph.node if n.op_type in LOWERABLE_OPS]


def lowers_anything(path: Path) -> bool:
    """Whether the model at ``path`` computes anything in lower precision than fp32: a quantize op,
    a 16-bit float weight or a cast to one. A model that does not is fp32 under another name."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    low = {10, 16}  # float16, bfloat16
    for node in model.graph.node:
        if node.op_type in QUANT_OPS:
            return True
        if node.op_type == "Cast" and any(a.name == "to" and a.i in low for a in node.attribute):
            return True
    return any(i.data_type in low for i in model.graph.initializer)


def head_nodes(model: Any, outputs: Iterable[str]) -> list[str]:
    """The last lowerable node on the way to each output (the action and value heads)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    heads: list[str] = []
    for out in outputs:
        frontier, seen = [out], set()
        while frontier:
            node = producer.get(frontier.pop())
            if node is None or node.name in seen:
                continue
            seen.add(node.name)
            if node.op_type in LOWERABLE_OPS:
                heads.append(node.name) if node.name not in heads else None
                continue
            frontier.extend(node.input)
    return heads


def build_fp16(base: Path, dst: Path, op_block_list: Iterable[str] = (),
               node_block_list: Iterable[str] = ()) -> list[str]:
    """fp16 weights and compute, fp32 inputs and outputs; returns the op types kept in fp32."""
    import onnx
    from onnxconverter_common import float16

    blocked = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(op_block_list))
    with warnings.catch_warnings():
        # Weights below fp16's smallest normal are clamped; the converter warns once per
        # weight. The fidelity gates, not the warning count, decide whether that matters.
        warnings.simplefilter("ignore", UserWarning)
        model = float16.convert_float_to_float16(onnx.load(str(base)), keep_io_types=True,
                                                 op_block_list=blocked, node_block_list=list(node_block_list))
    onnx.save(model, str(dst))
    return blocked


def build_dynamic(base: Path, dst: Path, recipe: Int8Recipe, exclude: Iterable[str] = (),
                  only: Iterable[str] | None = None) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic rewrites Gemm as <name>_MatMul + <name>_Add before it matches node names.
    exclude = [x for n in exclude for x in (n, f"{n}_MatMul")]
    only = [x for n in only for x in (n, f"{n}_MatMul")] if only else None
    quantize_dynamic(str(base), str(dst), weight_type=getattr(QuantType, recipe.weight_type),
                     per_channel=recipe.per_channel, reduce_range=recipe.reduce_range,
                     nodes_to_exclude=list(exclude), nodes_to_quantize=list(only) if only else None,
                     op_types_to_quantize=sorted(LOWERABLE_OPS & {"MatMul", "Gemm", "Conv", "Attention", "LSTM"}))


def build_static(base: Path, dst: Path, recipe: Int8Recipe, calibration: np.ndarray, input_name: str,
                 method: str = "MinMax", exclude: Iterable[str] = (), only: Iterable[str] | None = None) -> None:
    """QDQ int8 with activation ranges from the calibration rows only."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(str(base), str(dst), _reader(input_name, calibration), quant_format=QuantFormat.QDQ,
                    activation_type=getattr(QuantType, recipe.activation_type),
                    weight_type=getattr(QuantType, recipe.weight_type), per_channel=recipe.per_channel,
                    reduce_range=recipe.reduce_range, calibrate_method=getattr(CalibrationMethod, method),
                    nodes_to_exclude=list(exclude), nodes_to_quantize=list(only) if only else None,
                    extra_options={"ActivationSymmetric": recipe.activation_type == "QInt8"})


def calibration_batch(rows: int, batch: int = 64) -> tuple[int, int]:
    """(batch size, rows fed): every calibration batch has the same shape.

    onnxruntime's Entropy and Percentile calibrators stack the per-batch outputs into one array and
    fail ("inhomogeneous shape") on a shorter last batch. The batch is the largest divisor of
    ``rows`` between ``batch // 4`` and ``batch``; failing that, the remainder (under ``batch`` rows)
    is dropped.
    """
    if rows <= batch:
        return rows, rows
    for b in range(batch, batch // 4 - 1, -1):
        if rows % b == 0:
            return b, rows
    return batch, rows - rows % batch


def _reader(input_name: str, rows: np.ndarray, batch: int = 64) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    size, used = calibration_batch(len(rows), batch)
    if used < len(rows):
        log.info("calibration: %d rows in batches of %d; the last %d rows are not fed", len(rows), size,
                 len(rows) - used)

    class Reader(CalibrationDataReader):
        """Feeds the calibration split in batches of one shape; never the held-out rows."""

        def __init__(self) -> None:
            self.rewind()

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

        def rewind(self) -> None:
            self._it = iter({input_name: rows[i:i + size]} for i in range(0, used, size))

    return Reader()


def missing_kernel_op(error: str) -> str | None:
    """The op type onnxruntime found no kernel for, from its error text."""
    m = re.search(r"implementation for (\w+)\(", error) or re.search(r"NOT_IMPLEMENTED.*?node .*?\((\w+)\)", error)
    return m.group(1) if m else None

"""Which precision an OpenVINO IR computes in and stores its weights in, read from its graph.

The names follow the OpenVINO variants of the quantization report (``OV_VARIANTS``):

- ``int8``: FakeQuantize ops (NNCF ``quantize``): activations and weights in int8;
- ``int8 weights`` / ``int4 weights``: the weights of MatMul / Convolution are i8/u8 (i4/u4)
  Constants decompressed through Convert / Subtract / Multiply (NNCF ``compress_weights``),
  activations in float;
- ``fp16`` / ``bf16``: the MatMul / Convolution ops themselves compute in half precision;
- ``fp16 weights`` / ``bf16 weights``: half-precision weight Constants converted to f32 before
  the compute (``save_model(compress_to_fp16=True)``): stored in half, computed in f32 unless a
  precision hint says otherwise;
- ``fp32``: none of the above.

A text search for "FakeQuantize" in the XML calls a weight-compressed IR float; the graph does not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from costeff.errors import DependencyError, InputError

COMPUTE_OPS = {"MatMul", "Convolution", "GroupConvolution", "ConvolutionBackpropData",
               "GroupConvolutionBackpropData"}
_DECOMPRESS_OPS = {"Convert", "Subtract", "Multiply"}  # every input may carry the weight or its scale
_SHAPE_OPS = {"Reshape", "Transpose", "Unsqueeze", "Squeeze"}  # input 0 is the data, the rest are shapes
_WEIGHT_NAMES = {"i8": "int8 weights", "u8": "int8 weights", "i4": "int4 weights", "u4": "int4 weights",
                 "f16": "fp16 weights", "bf16": "bf16 weights"}
_ORDER = ("int8 weights", "int4 weights", "bf16 weights", "fp16 weights")  # what a mixed graph is called


def ir_precision(xml_path: Path | str) -> str:
    """``int8``, ``int8 weights``, ``int4 weights``, ``fp16``, ``bf16``, ``fp16 weights``, ``bf16 weights``
    or ``fp32``, from the IR's op types and Constant element types."""
    try:
        import openvino as ov
    except ImportError:
        raise DependencyError(f"{xml_path}: reading an OpenVINO IR needs openvino "
                              "(pip install 'costeff[openvino]')") from None
    try:
        model = ov.Core().read_model(str(xml_path))
    except RuntimeError as exc:
        raise InputError(f"{xml_path}: not a readable OpenVINO IR ({str(exc).splitlines()[0]})") from None
    return precision_of(model)


def precision_of(model: Any) -> str:
    """The precision of an ``openvino.Model`` (see the module's docstring)."""
    ops = model.get_ops()
    if any(op.get_type_name() == "FakeQuantize" for op in ops):
        return "int8"
    compute, weights = set(), set()
    for op in ops:
        if op.get_type_name() not in COMPUTE_OPS:
            continue
        compute.add(op.get_output_element_type(0).get_type_name())
        for port in op.inputs():
            stored = weight_type(port.get_source_output().get_node())
            if stored is not None:
                weights.add(stored)
    for half in ("bf16", "f16"):
        if half in compute:
            return "fp16" if half == "f16" else half
    named = {_WEIGHT_NAMES[t] for t in weights if t in _WEIGHT_NAMES}
    return next((name for name in _ORDER if name in named), "fp32")


def weight_type(node: Any) -> str | None:
    """The element type of the Constant a compute op's input is decompressed from; None for an activation.

    Walks up through Convert / Subtract / Multiply (every input) and reshapes (their data input);
    reaching anything else (a Parameter, an activation) means the input is not a weight. Of the
    Constants reached, the largest is the weight (the others are scales and zero points)."""
    found: list[tuple[int, str]] = []
    todo = [node]
    while todo:
        current = todo.pop()
        kind = current.get_type_name()
        if kind == "Constant":
            shape = current.get_output_shape(0)
            size = 1
            for dim in shape:
                size *= int(dim)
            found.append((size, current.get_output_element_type(0).get_type_name()))
        elif kind in _DECOMPRESS_OPS:
            todo.extend(port.get_source_output().get_node() for port in current.inputs())
        elif kind in _SHAPE_OPS:
            todo.append(current.input(0).get_source_output().get_node())
        else:
            return None
    return max(found)[1] if found else None

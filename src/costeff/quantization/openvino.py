"""OpenVINO variants: IR conversion, bf16, and NNCF int8 with and without accuracy control.

``ov-w8`` keeps activations in float and stores weights in int8 (NNCF weight
compression): the variant for cold, sparse batch-1 traffic.

Each variant is an IR (``.xml`` + ``.bin``) plus the runtime options it is
compiled with; two variants may share one IR and differ only in the precision
hint (int8 under accuracy control keeps some layers in float, and the hint
decides whether those run in fp32 or bf16).

Accuracy control uses costeff's own decision metric: NNCF reverts the layers
that cost the most action agreement with fp32 until the drop is within
``max_drop``. It validates on the *calibration* rows, never on the held-out rows
the gates judge, so a variant's gate result is not fitted to its own test.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OvVariant:
    name: str
    precision: str  # what the report calls it
    ir: str  # which IR it is built from: "float", "int8", "int8-ac", "w8" (int8 weights only)
    hint: str  # INFERENCE_PRECISION_HINT at compile time
    needs_bf16: bool = False


OV_VARIANTS = {v.name: v for v in (
    OvVariant("ov-fp32", "fp32", "float", "f32"),
    OvVariant("ov-bf16", "bf16", "float", "bf16", needs_bf16=True),
    OvVariant("ov-int8", "int8", "int8", "f32"),
    OvVariant("ov-int8-ac", "int8", "int8-ac", "f32"),
    OvVariant("ov-int8-ac-bf16", "int8+bf16", "int8-ac", "bf16", needs_bf16=True),
    OvVariant("ov-w8", "int8 weights", "w8", "f32"),
    OvVariant("ov-w8-bf16", "int8 weights+bf16", "w8", "bf16", needs_bf16=True),
)}
AC_SAFETY = 0.6  # accuracy control aims at this share of the drift tolerance: held-out rows differ
AC_MAX_ROWS = 2000
AC_CHUNK = 8  # rows per validation item: NNCF calls the model once per item
CALIBRATION_MAX_ROWS = 1000


def convert(onnx_path: Path, xml_path: Path) -> Any:
    """The ONNX policy as an fp32 IR (weights kept fp32: ``compress_to_fp16=False``)."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    ov.save_model(model, str(xml_path), compress_to_fp16=False)
    return model


def quantize_int8(model: Any, calibration: np.ndarray, xml_path: Path) -> None:
    """NNCF post-training int8 with the calibration rows."""
    import nncf
    import openvino as ov

    rows = calibration[:CALIBRATION_MAX_ROWS]
    with _progress_to_stderr():
        quantized = nncf.quantize(model, _dataset(rows), subset_size=len(rows))
    ov.save_model(quantized, str(xml_path), compress_to_fp16=False)


def compress_weights(model: Any, xml_path: Path) -> None:
    """int8 weights (per-channel, asymmetric), activations untouched: 4x less weight memory to stream.

    At batch 1 a policy is memory-bound; weights a quarter the size answer a cold
    call sooner, and with activations left in float the decisions barely move.
    """
    import nncf
    import openvino as ov

    with _progress_to_stderr():
        compressed = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    ov.save_model(compressed, str(xml_path), compress_to_fp16=False)


def quantize_int8_ac(model: Any, calibration: np.ndarray, ref_logits: np.ndarray, logits: str,
                     tolerances: Any, xml_path: Path) -> dict[str, Any]:
    """NNCF int8 under accuracy control, with the fidelity gates as its metric.

    The metric is ``1 - max(action drift, entropy drift scaled to the action
    tolerance)``: NNCF's single number then falls when either gate's quantity
    grows, and ``max_drop`` is a share of the action-drift tolerance.
    """
    import nncf
    import openvino as ov

    n = min(len(calibration), AC_MAX_ROWS)
    items = [(calibration[i:i + AC_CHUNK], ref_logits[i:i + AC_CHUNK]) for i in range(0, n, AC_CHUNK)]
    max_drop = ac_max_drop(tolerances.action_drift_pct)
    with _progress_to_stderr():
        quantized = nncf.quantize_with_accuracy_control(
            model, _dataset(calibration[:CALIBRATION_MAX_ROWS]), nncf.Dataset(items),
            _fidelity_fn(logits, _entropy_weight(tolerances)), max_drop=max_drop,
            drop_type=nncf.DropType.ABSOLUTE, subset_size=min(n, CALIBRATION_MAX_ROWS))
    kept_float, total = float_matmuls(quantized), _count(quantized, "MatMul")
    if total and len(kept_float) >= total:
        raise NoInt8Left(f"accuracy control restored all {total} MatMuls to float: no layer stays int8 within "
                         "the gates (the float IR is ov-fp32 / ov-bf16)")
    ov.save_model(quantized, str(xml_path), compress_to_fp16=False)
    return {"validation_rows": n, "max_drop": max_drop, "float_matmuls": kept_float,
            "metric": "1 - max(action drift, scaled entropy drift) vs fp32 on calibration rows"}


class NoInt8Left(Exception):
    """Accuracy control kept every layer in float: the variant would duplicate the float one."""


def _count(model: Any, op_type: str) -> int:
    return sum(1 for op in model.get_ordered_ops() if op.get_type_name() == op_type)


def _entropy_weight(tolerances: Any) -> float:
    """Entropy drift counts as much of the action tolerance as it uses of its own."""
    if not tolerances.entropy_drift_pct:
        return 0.0
    return tolerances.action_drift_pct / tolerances.entropy_drift_pct


@contextlib.contextmanager
def _progress_to_stderr() -> Iterator[None]:
    """NNCF's progress bars, bit-width tables and INFO lines, kept off the terminal.

    NNCF writes them on stdout (where ``--json`` puts the record) through its own handler.
    They go to costeff's debug log instead (shown with ``-v``); NNCF's warnings and errors
    still reach stderr.
    """
    import io
    import logging

    debug = log.isEnabledFor(logging.DEBUG)
    handlers = [h for h in logging.getLogger("nncf").handlers if isinstance(h, logging.StreamHandler)]
    saved = [(h, h.stream, h.level) for h in handlers]
    for handler in handlers:
        handler.setStream(sys.stderr)
        handler.setLevel(logging.DEBUG if debug else logging.WARNING)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(sys.stderr if debug else captured):
            yield
    finally:
        for handler, stream, level in saved:
            handler.setStream(stream)
            handler.setLevel(level)
        if captured.getvalue().strip():
            log.debug("NNCF output:\n%s", captured.getvalue().rstrip())


def _dataset(rows: np.ndarray) -> Any:
    import nncf

    return nncf.Dataset([rows[i:i + 1] for i in range(len(rows))])


def _fidelity_fn(logits: str, entropy_weight: float) -> Any:
    """NNCF's validation function over (rows, fp32 logits) items; per-item agreement for its ranking."""
    from costeff.quantization.fidelity import log_softmax

    def entropy(z: np.ndarray) -> np.ndarray:
        lp = log_softmax(z)
        return -(np.exp(lp) * lp).sum(axis=1)

    def validate(compiled: Any, data: Any) -> tuple[float, list[float]]:
        out, request = compiled.output(logits), compiled.create_infer_request()
        hits, h_var, h_ref = [], [], []
        for rows, ref in data:
            got = np.asarray(request.infer({0: rows})[out])
            hits.append(float(np.mean(got.argmax(axis=1) == ref.argmax(axis=1))))
            h_var.append(entropy(got).sum())
            h_ref.append(entropy(ref).sum())
        if not hits:
            return 0.0, hits
        drift = 1.0 - float(np.mean(hits))
        entropy_drift = abs(sum(h_var) - sum(h_ref)) / max(sum(h_ref), 1e-12)
        return 1.0 - max(drift, entropy_weight * entropy_drift), hits
    return validate


def float_matmuls(model: Any) -> list[str]:
    """Names of MatMul nodes that have no FakeQuantize on their weights: what stayed in float."""
    out = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        producers = {op.input_value(i).get_node().get_type_name() for i in range(op.get_input_size())}
        if "FakeQuantize" not in producers and not _weights_quantized(op):
            out.append(op.get_friendly_name())
    return out


def _weights_quantized(op: Any) -> bool:
    """Compressed int8 weights arrive through Convert/Multiply chains, not FakeQuantize."""
    node = op.input_value(1).get_node()
    for _ in range(4):
        if node.get_type_name() == "Constant":
            return str(node.get_element_type()) in ("<Type: 'int8_t'>", "<Type: 'uint8_t'>") or \
                node.get_element_type().get_type_name() in ("i8", "u8")
        if node.get_input_size() == 0:
            return False
        node = node.input_value(0).get_node()
    return False


def ac_max_drop(action_drift_tolerance_pct: float) -> float:
    """The agreement drop accuracy control may spend, from the drift gate (fraction, not %)."""
    return AC_SAFETY * action_drift_tolerance_pct / 100.0


def build_variants(ctx: Any, names: list[str], tick: Any = lambda text: None) -> list[Any]:
    """Build and evaluate each OpenVINO variant in ``names``; a failure is recorded, the rest go on."""
    from costeff.quantization.records import VariantResult

    irs: dict[str, Path | Exception] = {}
    out = []
    for name in names:
        spec = OV_VARIANTS[name]
        v = VariantResult(name, backend="openvino", precision=spec.precision,
                          runtime={"precision": spec.hint, "performance_hint": "LATENCY"})
        try:
            path = _ir(ctx, spec.ir, irs, v)
            ctx.evaluate(v, path)
            v.built, v.path = True, str(path)
        except Exception as exc:  # noqa: BLE001 - reported on the variant, the search goes on
            plain = hasattr(exc, "exit_code") or isinstance(exc, NoInt8Left)
            v.error = (str(exc) if plain else f"{type(exc).__name__}: {exc}").splitlines()[0][:400]
            log.warning("variant %s failed: %s", name, v.error)
        out.append(v)
        tick(f"built {name}")
    return out


def _ir(ctx: Any, kind: str, irs: dict[str, Any], v: Any) -> Path:
    """The IR of ``kind``, built once per run and shared by the variants that compile it."""
    if kind not in irs:
        try:
            irs[kind] = _build_ir(ctx, kind, irs, v)
        except Exception as exc:  # noqa: BLE001 - remembered so a sibling variant reports the same cause
            irs[kind] = exc
    found = irs[kind]
    if isinstance(found, Exception):
        raise found
    if kind == "int8-ac" and ctx.ov_ac_info:
        v.notes.append(f"accuracy control kept in float: {ctx.ov_ac_info.get('float_matmuls')}")
        v.excluded_nodes = list(ctx.ov_ac_info.get("float_matmuls", []))
    return found


def _build_ir(ctx: Any, kind: str, irs: dict[str, Any], v: Any) -> Path:
    import openvino as ov

    path = ctx.work / f"ov_{kind}.xml"
    if kind == "float":
        ctx.ov_model = convert(ctx.base_fp32, path)
        return path
    if "float" not in irs:
        _ir(ctx, "float", irs, v)
    model = ov.Core().read_model(str(irs["float"]))
    if kind == "int8":
        quantize_int8(model, ctx.calibration, path)
    elif kind == "w8":
        compress_weights(model, path)
    else:
        ctx.ov_ac_info = quantize_int8_ac(model, ctx.calibration, ctx.ref_cal.logits, ctx.logits,
                                          ctx.config.tolerances, path)
    return path

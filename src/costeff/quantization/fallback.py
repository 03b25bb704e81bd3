"""Accuracy-aware fallback, after Intel Neural Compressor's basic strategy.

When a lowered variant fails a gate, keep the action and value heads in fp32
first (they turn features into decisions, so their error lands on the decision
directly), then the remaining nodes in order of measured sensitivity, one more
per trial, until the gates pass or the trial budget is spent. Sensitivity is
measured on the calibration rows (lowering one node alone); the gates are
judged on the held-out rows, which the ranking never sees.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from costeff.quantization import build
from costeff.quantization.fidelity import compare
from costeff.quantization.records import Trial, VariantResult

log = logging.getLogger(__name__)
MAX_RANKED_NODES = 32  # ranking costs one build per node; beyond this, nearest-to-output order is used


def fallbacks(ctx: Any, variants: list[VariantResult]) -> list[VariantResult]:
    """``mixed`` from a failing fp16 and ``int8-mixed`` from the best failing int8 variant."""
    if ctx.config.trials <= 0:
        return []
    out = []
    by_name = {v.name: v for v in variants}
    fp16 = by_name.get("fp16")
    if fp16 and fp16.built and not fp16.passed:
        out.append(_fallback(ctx, "mixed", fp16))
    int8 = [v for v in variants if v.name.startswith("int8") and v.built and not v.passed]
    if int8 and not any(v.passed for v in variants if v.name.startswith("int8")):
        base = min(int8, key=_drift)
        out.append(_fallback(ctx, "int8-mixed", base))
    return out


def _builder(ctx: Any, source: VariantResult) -> Callable[[Path, list[str], list[str] | None], None]:
    """build(dst, exclude, only): lower the model like ``source`` except ``exclude`` (or only ``only``)."""
    if source.name == "fp16":
        import onnx

        all_nodes = [n.name for n in onnx.load(str(ctx.base)).graph.node]

        def fp16(dst: Path, exclude: list[str], only: list[str] | None) -> None:
            block = [n for n in all_nodes if n not in only] if only else exclude
            build.build_fp16(ctx.base, dst, list(ctx.config.op_block_list) + _extra_ops(source), block)
        return fp16
    if source.name == "int8-dynamic":
        return lambda dst, exclude, only: build.build_dynamic(ctx.base, dst, ctx.recipe, exclude, only)
    return lambda dst, exclude, only: build.build_static(ctx.base, dst, ctx.recipe, ctx.calibration,
                                                         ctx.input_name, ctx.config.calibration_method,
                                                         exclude, only)


def _extra_ops(source: VariantResult) -> list[str]:
    import onnxconverter_common.float16 as f16

    return [op for op in source.fp32_op_types if op not in f16.DEFAULT_OP_BLOCK_LIST]


def _fallback(ctx: Any, name: str, source: VariantResult) -> VariantResult:
    import onnx

    model = onnx.load(str(ctx.base))
    make = _builder(ctx, source)
    heads = build.head_nodes(model, [o for o in (ctx.logits, ctx.value) if o])
    rest = [n for n in build.lowerable_nodes(model) if n not in heads]
    ranked = _rank(ctx, make, rest)
    from costeff.quantization.variants import precision_of

    v = VariantResult(name, precision=precision_of(name), derived_from=source.name, recipe=source.recipe,
                      session_config=source.session_config, fp32_op_types=source.fp32_op_types)
    v.notes.append(f"sensitivity order (calibration rows, most sensitive first): {ranked}")
    order = [heads] + [[n] for n in ranked]
    excluded: list[str] = []
    for trial in range(min(ctx.config.trials, len(order))):
        excluded += order[trial]
        path = ctx.work / f"{name}_t{trial}.onnx"
        try:
            make(path, excluded, None)
            if not build.lowers_anything(path):
                _identical(v, trial + 1, excluded)
                break
            ctx.evaluate(v, path)
        except Exception as exc:  # noqa: BLE001 - a trial that cannot build ends the search, reported
            v.error = f"trial {trial + 1}: {type(exc).__name__}: {exc}".splitlines()[0][:400]
            break
        v.trials.append(_trial(trial + 1, excluded, v))
        v.built, v.path, v.excluded_nodes, v.error = True, str(path), list(excluded), None
        if v.passed:
            break
    return v


def _identical(v: VariantResult, trial: int, excluded: list[str]) -> None:
    """A trial that keeps every lowered node in float is fp32 itself: never evaluated, timed or selected.
    The variant stays what its last real trial made it, or is not built when there was none."""
    why = f"identical to fp32: trial {trial} keeps every lowerable node in float ({len(excluded)} nodes)"
    v.notes.append(f"search stopped: {why}")
    if not v.built:
        v.error = why


def _drift(v: VariantResult) -> tuple[float, float]:
    assert v.fidelity is not None  # every built variant was evaluated
    return v.fidelity.action_drift_pct, v.fidelity.kl_mean


def _trial(n: int, excluded: list[str], v: VariantResult) -> Trial:
    f = v.fidelity
    assert f is not None  # a trial is recorded after its evaluation
    return Trial(n, list(excluded), f.action_drift_pct, f.entropy_drift_pct, f.action_correlation, v.passed,
                 [g.name for g in v.gates if not g.passed])


def _rank(ctx: Any, make: Callable, nodes: list[str]) -> list[str]:
    """Nodes by the KL they cause when lowered alone (calibration rows), most harmful first."""
    if len(nodes) > MAX_RANKED_NODES:
        log.info("%d lowerable nodes: ranking by distance to the output instead of measuring", len(nodes))
        return list(reversed(nodes))
    scores = {}
    for i, node in enumerate(nodes):
        path = ctx.work / f"rank_{i}.onnx"
        try:
            make(path, [], [node])
            scores[node] = compare(ctx.ref_cal, ctx.outputs(path, "calibration")).kl_mean
        except Exception as exc:  # noqa: BLE001 - an unrankable node is treated as most sensitive
            log.info("ranking %s failed: %s", node, exc)
            scores[node] = float("inf")
    return sorted(nodes, key=lambda n: -scores[n])

"""Structural variants: remove a policy's redundant width (``prune``) or rank (``lowrank``).

``prune`` keeps, in every hidden layer, the units a pivoted QR of their
activations picks first (the most linearly independent ones), then refits the
next layer by least squares so it rebuilds the original next layer's input from
the kept units alone. ``lowrank`` factors each hidden layer's weight into two
thinner ones along the top singular directions of its output on real inputs.

Both search a size by geometric steps, largest first (half the width or half
the break-even rank, then a quarter, ...), and keep the smallest that passes
every fidelity gate. The refit is fitted on three quarters of the calibration
rows and each step judged on the remaining quarter: judged on the rows it was
fitted to, an underdetermined refit would pass anything. The largest step
failing ends the probe at once (a policy without slack is found out in one
step). The held-out rows, never seen here, judge the chosen model like any
other variant.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from costeff.quantization import onnx_mlp as om
from costeff.quantization.onnx_mlp import Dense, Mlp

log = logging.getLogger(__name__)
KINDS = ("prune", "lowrank")
STEPS = (1 / 2, 1 / 4, 1 / 8, 1 / 16)
PROBE_BUDGET_S = 60.0  # a probe stops trying smaller sizes once it has spent this long
CHECK_EVERY = 4  # every 4th calibration row judges a step; the others fit it
# A step must pass with this share of each tolerance (as OpenVINO accuracy control aims): the check
# rows are a quarter of the calibration rows, and a size that only just passes them fails held-out ones.
SAFETY = 0.6


@dataclass
class Step:
    """One size tried on the calibration rows."""

    fraction: float
    sizes: list[int]  # hidden widths (prune) or ranks per hidden layer (lowrank)
    params: int
    passed: bool
    action_drift_pct: float
    entropy_drift_pct: float | None
    action_correlation: float | None
    failed_gates: list[str]
    seconds: float


@dataclass
class Probe:
    kind: str
    original_sizes: list[int]
    original_params: int
    steps: list[Step] = field(default_factory=list)
    seconds: float = 0.0
    chosen: Step | None = None
    stopped: str = ""  # why the search ended

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pivots(acts: np.ndarray, keep: int) -> np.ndarray:
    """Indices of the ``keep`` columns a pivoted QR of the centred activations takes first, sorted."""
    from scipy.linalg import qr

    _, _, order = qr(acts - acts.mean(axis=0), mode="economic", pivoting=True)
    return np.sort(order[:keep])


def refit(inputs: np.ndarray, target: np.ndarray) -> Dense:
    """Least-squares weight and bias mapping ``inputs`` to ``target``."""
    from scipy.linalg import lstsq

    a = np.hstack([inputs, np.ones((len(inputs), 1))])
    coef = lstsq(a, target, lapack_driver="gelsy")[0]  # QR-based: an order faster than gelsd here, as exact
    return Dense(coef[:-1], coef[-1])


def prune(mlp: Mlp, x: np.ndarray, fraction: float) -> tuple[list[Dense], list[Dense], list[int]]:
    """(hidden layers, heads, widths) keeping ``fraction`` of every hidden layer's units."""
    pre, post = om.forward(mlp, x)
    targets = pre[1:] + [om.heads_out(mlp.heads, post[-1])]
    hidden: list[Dense] = []
    incoming, inputs = mlp.hidden[0], x
    for act, target in zip(mlp.activations, targets):
        acts = om.activate(act, om.dense(incoming, inputs))
        keep = pivots(acts, max(1, round(acts.shape[1] * fraction)))
        hidden.append(Dense(incoming.weight[:, keep], incoming.bias[keep]))
        inputs = acts[:, keep]
        incoming = refit(inputs, target)
    return hidden, _split_heads(incoming, mlp.heads), [d.bias.size for d in hidden]


def _split_heads(joint: Dense, heads: list[Dense]) -> list[Dense]:
    bounds = np.cumsum([0] + [h.bias.size for h in heads])
    return [Dense(joint.weight[:, a:b], joint.bias[a:b]) for a, b in zip(bounds, bounds[1:])]


def lowrank(mlp: Mlp, x: np.ndarray, fraction: float) -> tuple[list[Dense], list[Dense], list[int]]:
    """(hidden layers, heads, ranks): each hidden weight W as (W Q)(Qᵀ), Q the top right singular
    vectors of the layer's output X W on the low-rank network's own inputs X; rank = ``fraction``
    of break-even (where two factors cost as much as W)."""
    hidden, ranks = [], []
    for d, act in zip(mlp.hidden, mlp.activations):
        n_in, n_out = d.weight.shape
        rank = max(1, int(fraction * n_in * n_out / (n_in + n_out)))
        _, _, vt = np.linalg.svd(x @ d.weight, full_matrices=False)
        q = vt[:rank].T
        low = Dense(d.weight, d.bias, (d.weight @ q, q.T))
        hidden.append(low)
        ranks.append(q.shape[1])
        x = om.activate(act, om.dense(low, x))
    return hidden, mlp.heads, ranks


BUILDERS: dict[str, Callable[[Mlp, np.ndarray, float], tuple[list[Dense], list[Dense], list[int]]]] = {
    "prune": prune, "lowrank": lowrank}


def search(kind: str, mlp: Mlp, x_fit: np.ndarray, judge: Callable[[Any], Any], work: Any,
           budget_s: float = PROBE_BUDGET_S) -> tuple[Probe, Any]:
    """(the probe's record, the path of the smallest passing model or None).

    ``judge(path)`` returns the gate list of a written model on the check rows."""
    from costeff.gates import all_passed

    probe = Probe(kind, mlp.widths, mlp.params)
    started, best = time.perf_counter(), None
    for fraction in STEPS:
        t0 = time.perf_counter()
        if probe.steps and t0 - started + probe.steps[-1].seconds > budget_s:
            probe.stopped = f"the next step would pass the {budget_s:g} s budget"
            break
        hidden, heads, sizes = BUILDERS[kind](mlp, x_fit, fraction)
        path = work / f"{kind}_{len(probe.steps)}.onnx"
        om.write(mlp, hidden, heads, path)
        gates, fid = judge(path)
        step = Step(fraction, sizes, sum(d.params for d in hidden + heads), all_passed(gates),
                    fid.action_drift_pct, fid.entropy_drift_pct, fid.action_correlation,
                    [g.name for g in gates if not g.passed], time.perf_counter() - t0)
        probe.steps.append(step)
        log.info("%s %s: %s on calibration rows", kind, sizes, "pass" if step.passed else "fail")
        if not step.passed:
            probe.stopped = f"{_size_words(kind, step)} failed {', '.join(step.failed_gates)}"
            break
        probe.chosen, best = step, path
    else:
        probe.stopped = "smallest step passed"
    probe.seconds = time.perf_counter() - started
    return probe, best


def _size_words(kind: str, step: Step) -> str:
    what = "widths" if kind == "prune" else "ranks"
    return f"{what} {step.sizes} ({step.fraction:g} of {'the width' if kind == 'prune' else 'break-even'})"


# --- as variants of a quantize run -------------------------------------------------------------------

def build_variants(ctx: Any, names: list[str], tick: Callable[[str], None] = lambda text: None) -> list[Any]:
    """``prune`` / ``lowrank`` and the stacked ``<kind>+<precision variant>`` variants in ``names``."""
    kinds = [k for k in KINDS if k in names or any(n.startswith(k + "+") for n in names)]
    probed = {}
    for kind in kinds:
        probed[kind] = probe_variant(ctx, kind)
        tick(f"built {kind}")
    out = [probed[k] for k in kinds if k in names]
    for name in (n for n in names if "+" in n):
        out.append(stack(ctx, name, probed[name.split("+", 1)[0]]))
        tick(f"built {name}")
    return out


def probe_variant(ctx: Any, kind: str) -> Any:
    """Search the smallest passing size on the calibration rows; judge it on the held-out rows."""
    from costeff.quantization.records import VariantResult

    v = VariantResult(kind, precision="fp32")
    try:
        mlp = om.read(ctx.base_fp32)
    except om.NotEligible as exc:
        v.not_tried = f"not eligible: {exc}"
        return v
    fit = np.arange(len(ctx.calibration)) % CHECK_EVERY != CHECK_EVERY - 1
    work = ctx.work / kind
    work.mkdir(parents=True, exist_ok=True)
    try:
        x = om.trunk_input(mlp, ctx.base_fp32, ctx.calibration[fit])
        probe, best = search(kind, mlp, x, _judge(ctx, ~fit), work)
    except Exception as exc:  # noqa: BLE001 - reported on the variant, the run goes on
        v.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:400]
        log.warning("%s probe failed: %s", kind, v.error)
        return v
    v.structure = probe.to_dict()
    if best is None:
        v.error = f"not built: identical to fp32 ({probe.stopped} on calibration rows, {probe.seconds:.1f} s)"
        return v
    c = probe.chosen
    v.notes.append(f"{kind}: sizes {c.sizes} (from {probe.original_sizes}), {c.params:,} parameters (from "
                   f"{probe.original_params:,}); search {probe.seconds:.1f} s, ended: {probe.stopped}")
    ctx.evaluate(v, best)
    v.built, v.path = True, str(best)
    return v


def tighter(tol: Any, share: float = SAFETY) -> Any:
    """``tol`` with every threshold moved ``share`` of the way from perfect (0 drift, correlation 1)."""
    def scale(x: float | None) -> float | None:
        return None if x is None else x * share
    return dataclasses.replace(tol, action_drift_pct=tol.action_drift_pct * share,
                               entropy_drift_pct=tol.entropy_drift_pct * share,
                               action_correlation=1 - (1 - tol.action_correlation) * share,
                               kl_p99=scale(tol.kl_p99), value_max_abs_err=scale(tol.value_max_abs_err))


def _judge(ctx: Any, check: np.ndarray) -> Callable[[Any], Any]:
    from costeff.quantization.fidelity import PolicyOutputs, compare, gates

    tol = tighter(ctx.config.tolerances)

    def rows(o: Any) -> Any:
        return PolicyOutputs(o.logits[check], None if o.value is None else o.value[check])

    def judge(path: Any) -> tuple[list[Any], Any]:
        fid = compare(rows(ctx.ref_cal), rows(ctx.outputs(path, "calibration")))
        return gates(fid, tol), fid
    return judge


def stack(ctx: Any, name: str, source: Any) -> Any:
    """A precision variant built from the structural variant ``source``, judged against the original fp32."""
    from pathlib import Path

    from costeff.quantization import build
    from costeff.quantization.records import VariantResult
    from costeff.quantization.variants import backend_of, precision_of

    kind, lower = name.split("+", 1)
    if not (source.built and source.passed):
        why = source.not_tried or source.error or "it failed a fidelity gate on the held-out rows"
        return VariantResult(name, backend=backend_of(name), precision=precision_of(name),
                             error=f"not built: {kind} has no passing model ({why})")
    work = ctx.work / name.replace("+", "_")
    work.mkdir(parents=True, exist_ok=True)
    base = work / "base.onnx"
    build.prepare_base(Path(source.path), base)
    sub = dataclasses.replace(ctx, base=base, base_fp32=Path(source.path), work=work, ov_ac_info=None)
    if lower.startswith("ov-"):
        from costeff.quantization.openvino import build_variants as ov_variants

        v = ov_variants(sub, [lower])[0]
    else:
        from costeff.quantization.engine import _variant

        v = _variant(sub, lower)
    v.name, v.derived_from, v.structure = name, kind, source.structure
    v.notes.append(f"{lower} applied to the {kind} model ({source.notes[0] if source.notes else ''})")
    return v

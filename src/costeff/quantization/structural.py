"""Structural variants: remove a policy's redundant width (``prune``) or rank (``lowrank``).

``prune`` keeps, in every hidden layer, the units a pivoted QR of their
activations picks first (the most linearly independent ones), then refits the
next layer by least squares (solved with that same QR) so that it rebuilds the
original next layer's input from the kept units alone. ``lowrank`` factors each
hidden layer's weight into two thinner ones along the top singular directions
of its output on real inputs.

Both search a size by geometric steps, largest first (half the width or half
the break-even rank, then a quarter, ...), and keep the smallest that passes
every fidelity gate. The refit is fitted on three quarters of the calibration
rows and each step judged on the other quarter (judged on the rows it was
fitted to, an underdetermined refit would pass anything), with a margin
(``SAFETY`` of each tolerance) since that quarter is a small sample. The
largest step failing ends the probe at once: a policy without slack is found
out in one step. The held-out rows, never seen here, then judge the chosen
model like any other variant.
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
RCOND = 1e-8  # a kept unit whose QR diagonal is below this share of the first one adds nothing new


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


def select(acts: np.ndarray, target: np.ndarray, keep: int, qr_of: Any = None) -> tuple[np.ndarray, Dense]:
    """(the ``keep`` units a pivoted QR of the centred activations takes first, the least-squares
    layer rebuilding ``target`` from them).

    The least squares reuses the selection's own QR (A P = Q R, so the kept columns are Q₁ R₁₁):
    no second factorisation. Columns past the numerical rank get zero weights, as a rank-revealing
    solver (LAPACK gelsy) would give them; ``qr_of`` is a QR already computed for ``acts``."""
    from scipy.linalg import solve_triangular

    q, r, order = qr_of if qr_of is not None else pivoted_qr(acts)
    units = order[:keep]
    diag = np.abs(np.diag(r))[:keep]
    rank = int((diag > RCOND * diag[0]).sum()) if len(diag) and diag[0] > 0 else 0
    y_mean = target.mean(axis=0)
    weight = np.zeros((keep, target.shape[1]))
    weight[:rank] = solve_triangular(r[:rank, :rank], q[:, :rank].T @ (target - y_mean))
    bias = y_mean - acts[:, units].mean(axis=0) @ weight
    return units, Dense(weight, bias)


def pivoted_qr(acts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy.linalg import qr

    return qr(acts - acts.mean(axis=0), mode="economic", pivoting=True)


def prune(mlp: Mlp, x: np.ndarray, fraction: float,
          cache: dict[str, Any] | None = None) -> tuple[list[Dense], list[Dense], list[int]]:
    """(hidden layers, heads, widths) keeping ``fraction`` of every hidden layer's units.

    ``cache`` keeps what does not depend on ``fraction`` (the first layer's activations and their QR)
    between the steps of one search."""
    cache = {} if cache is None else cache
    if "pre" not in cache:
        t0 = time.perf_counter()
        pre, post = om.forward(mlp, x)
        cache.update(pre=pre, heads=om.heads_out(mlp.heads, post[-1]), first=post[0], qr=pivoted_qr(post[0]),
                     setup_s=time.perf_counter() - t0)
    targets = cache["pre"][1:] + [cache["heads"]]
    hidden: list[Dense] = []
    incoming, inputs = mlp.hidden[0], x
    for i, (act, target) in enumerate(zip(mlp.activations, targets, strict=True)):
        acts = cache["first"] if i == 0 else om.activate(act, om.dense(incoming, inputs))
        keep = max(1, round(acts.shape[1] * fraction))
        units, next_layer = select(acts, target, keep, cache["qr"] if i == 0 else None)
        hidden.append(Dense(incoming.weight[:, units], incoming.bias[units]))
        inputs, incoming = acts[:, units], next_layer
    return hidden, _split_heads(incoming, mlp.heads), [d.bias.size for d in hidden]


def _split_heads(joint: Dense, heads: list[Dense]) -> list[Dense]:
    bounds = np.cumsum([0] + [h.bias.size for h in heads])
    return [Dense(joint.weight[:, a:b], joint.bias[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]


def lowrank(mlp: Mlp, x: np.ndarray, fraction: float,
            cache: dict[str, Any] | None = None) -> tuple[list[Dense], list[Dense], list[int]]:
    """(hidden layers, heads, ranks): each hidden weight W as (W Q)(Qᵀ), Q the top right singular
    vectors of the layer's output X W on the low-rank network's own inputs X; rank = ``fraction``
    of break-even (where two factors cost as much as W)."""
    cache = {} if cache is None else cache
    hidden, ranks = [], []
    for i, (d, act) in enumerate(zip(mlp.hidden, mlp.activations, strict=True)):
        n_in, n_out = d.weight.shape
        rank = max(1, int(fraction * n_in * n_out / (n_in + n_out)))
        if i == 0 and "vt" in cache:  # the first layer's inputs are the same at every step
            vt = cache["vt"]
        else:
            t0 = time.perf_counter()
            vt = np.linalg.svd(x @ d.weight, full_matrices=False)[2]
            if i == 0:
                cache.update(vt=vt, setup_s=time.perf_counter() - t0)
        q = vt[:rank].T
        low = Dense(d.weight, d.bias, (d.weight @ q, q.T))
        hidden.append(low)
        ranks.append(q.shape[1])
        x = om.activate(act, om.dense(low, x))
    return hidden, mlp.heads, ranks


BUILDERS: dict[str, Callable[..., tuple[list[Dense], list[Dense], list[int]]]] = {
    "prune": prune, "lowrank": lowrank}


def search(kind: str, mlp: Mlp, x_fit: np.ndarray, judge: Callable[[Any], Any], work: Any,
           budget_s: float = PROBE_BUDGET_S) -> tuple[Probe, Any]:
    """(the probe's record, the path of the smallest passing model or None).

    ``judge(path)`` returns the gate list of a written model on the check rows."""
    from costeff.gates import all_passed

    probe = Probe(kind, mlp.widths, mlp.params)
    started, best = time.perf_counter(), None
    cache: dict[str, Any] = {}
    for fraction in STEPS:
        t0 = time.perf_counter()
        if probe.steps and t0 - started + _next_step_s(probe, cache) > budget_s:
            probe.stopped = f"the next step would pass the {budget_s:g} s budget"
            break
        hidden, heads, sizes = BUILDERS[kind](mlp, x_fit, fraction, cache)
        if kind == "prune" and sizes == mlp.widths:
            probe.stopped = f"widths {sizes} keep every unit"
            break
        path = work / f"{kind}_{len(probe.steps)}.onnx"
        om.write(mlp, hidden, heads, path)
        gates, fid = judge(path)
        step = Step(fraction, sizes, sum(d.params for d in hidden + heads), all_passed(gates),
                    fid.action_drift_pct, fid.entropy_drift_pct, fid.action_correlation,
                    [g.name for g in gates if not g.passed], time.perf_counter() - t0)
        probe.steps.append(step)
        log.info("%s %s: %s on calibration rows", kind, sizes, "pass" if step.passed else "fail")
        if not step.passed:
            probe.stopped = f"{_size_words(kind, step)} failed {', '.join(step.failed_gates)} on calibration rows"
            break
        probe.chosen, best = step, path
    else:
        probe.stopped = "smallest step passed"
    probe.seconds = time.perf_counter() - started
    return probe, best


def _next_step_s(probe: Probe, cache: dict[str, Any]) -> float:
    """About what the last step took, less the one-off work the first step did and cached."""
    last = probe.steps[-1].seconds
    return last - cache.get("setup_s", 0.0) if len(probe.steps) == 1 else last


def _size_words(kind: str, step: Step) -> str:
    what = "widths" if kind == "prune" else "ranks"
    return f"{what} {step.sizes} ({step.fraction:g} of {'the width' if kind == 'prune' else 'break-even'})"


# --- as variants of a quantize run -------------------------------------------------------------------

def build_variants(ctx: Any, names: list[str], tick: Callable[[str], None] = lambda text: None,
                   build_one: Callable[[Any, str], Any] | None = None) -> list[Any]:
    """``prune`` / ``lowrank`` and the stacked ``<kind>+<precision variant>`` variants in ``names``;
    ``build_one(ctx, name)`` builds an onnxruntime precision variant (the engine's own builder)."""
    kinds = [k for k in KINDS if k in names or any(n.startswith(k + "+") for n in names)]
    probed = {}
    for kind in kinds:
        probed[kind] = probe_variant(ctx, kind)
        tick(f"built {kind}")
    out = [probed[k] for k in kinds if k in names]
    for name in (n for n in names if "+" in n):
        out.append(stack(ctx, name, probed[name.split("+", 1)[0]], build_one))
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
        v.error = f"not built: identical to fp32 ({probe.stopped}; {probe.seconds:.1f} s)"
        return v
    c = probe.chosen
    assert c is not None  # a model was written: some step passed
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


def stack(ctx: Any, name: str, source: Any, build_one: Callable[[Any, str], Any] | None = None) -> Any:
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
        if build_one is None:
            raise ValueError(f"{name}: no builder for the precision variant {lower}")
        v = build_one(sub, lower)
    v.name, v.derived_from, v.structure = name, kind, source.structure
    v.notes.append(f"{lower} applied to the {kind} model ({source.notes[0] if source.notes else ''})")
    return v

"""Speed of every variant, each in a process of its own, interleaved to cancel machine drift.

Two runtimes in one process slow each other down (their thread pools compete
and spin), so every (variant, round) is timed in a fresh worker process
(:mod:`costeff.runtimes.worker`). A shared machine drifts by tens of percent
between passes, so variants are profiled in alternating order over several
rounds and each number is the median over rounds, with its min-max spread.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from costeff.errors import DependencyError
from costeff.profiling.rounds import median_gaps
from costeff.quantization.noise import CONTROL, floor_of, noise_floor
from costeff.quantization.noise import decisive as _decisive
from costeff.quantization import plan
from costeff.quantization.plan import MAX_REPEATS_PER_ROUND

WORKER_TIMEOUT_S = 600


@dataclass(frozen=True)
class Speed:
    throughput_per_s: dict[int, float]  # median over rounds, per batch size
    throughput_range_per_s: dict[int, tuple[float, float]]  # min-max over rounds
    optimal_batch: int
    optimal_throughput_per_s: float
    latency_p99_ms: dict[int, float]
    latency_by_gap: list[dict[str, float]]  # medians over rounds per gap
    open_loop: dict[str, Any] | None  # the median round's open-loop result
    open_loop_p50_range_ms: tuple[float, float] | None
    runtime: dict[str, Any]
    open_loop_runs: int = 0  # replays at the target rate
    open_loop_over_budget_runs: int = 0  # of those, saturated or past the p99 budget
    measurements: int = 0  # measurements the medians are over
    disturbed: int = 0  # of those, taken while the machine was disturbed (all were: none was clean)




@dataclass
class Timing:
    """Every finalist's speed, the rounds they came from and the A/A noise floor.

    ``dropped``: variants that did not go on to the full rounds, with the reason in words;
    ``finalists``: those that did (fp32 aside); ``results``: per variant, the full rounds' measurements its
    speed is the median of (each a worker's result, with its whole points): a profile of a variant is
    assembled from them (:mod:`costeff.profiling.rounds`), so both tell one story."""

    speeds: dict[str, Speed]
    rounds: list[dict[str, Any]]
    noise_floor: dict[str, Any] | None
    dropped: dict[str, str] = field(default_factory=dict)
    finalists: list[str] = field(default_factory=list)
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def measure_all(variants: list[Any], config: Any, observations: np.ndarray,
                tick: Callable[[], None] = lambda: None, reference: Any = None, margin: float | None = None) -> Timing:
    """Profile each variant at the same batch sizes, ``config.speed_rounds`` interleaved passes (no A/A control).

    With a ``reference`` (already timed elsewhere), a screening round times it beside the variants
    first, and a variant slower than it in capacity and in answer time is not timed further; with a
    ``margin`` too, only a variant faster than the reference by more than it (in capacity or in an
    answer time) is timed further."""
    return measure_rounds(variants, config, observations, tick, control=False, reference=reference,
                          margin=margin)


def measure_rounds(variants: list[Any], config: Any, observations: np.ndarray,
                   tick: Callable[[], None] = lambda: None, control: bool = True,
                   runner: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                   known: list[str] | None = None, reference: Any = None, margin: float | None = None) -> Timing:
    """Interleaved rounds; with ``control`` the baseline runs twice per round (first and last, two processes).

    A screening round comes first when there are more candidates than finalists (see
    :mod:`costeff.quantization.plan`); ``known``: finalists an earlier screening found, timed
    without screening again. A measurement taken while the machine was disturbed (see
    :mod:`costeff.quantization.load`) is taken once more (at most ``MAX_REPEATS_PER_ROUND``
    per round); one still disturbed is kept and marked. Speeds are medians over the
    undisturbed full rounds when there are any. A second full round is skipped when the
    first one decides alone (:func:`decisive`).
    """
    run = runner or run_isolated
    if known is not None and not any(v.name in known for v in variants if not v.baseline):
        known = None  # none of them is here (or none was kept): screen again
    rounds: list[dict[str, Any]] = []
    base = next((v for v in variants if v.baseline), None) if control else None
    with tempfile.TemporaryDirectory(prefix="costeff-speed-") as tmp:
        obs_path = Path(tmp) / "observations.npy"
        np.save(obs_path, np.ascontiguousarray(observations[:4096], dtype=np.float32))
        timed, dropped = _known(variants, known) if known is not None else (variants, {})
        candidates = sum(1 for v in timed if not v.baseline)
        settled = known is not None or plan.screens(config, candidates, known) or reference is not None
        if settled and known is None:
            timed, dropped = _screen(timed, config, obs_path, run, tick, base, reference, rounds, margin)
        runs: dict[str, list[dict[str, Any]]] = {v.name: [] for v in timed}
        full = plan.full(config)
        for r in range(config.speed_rounds if timed else 0):
            subset = timed if r == 0 or settled else _finalists(timed, runs, config, floor_of(rounds))
            order = _order(subset, r, base)
            got, discarded = _round(order, config, obs_path, run, tick, full)
            rounds.append(_round_record(len(rounds), got, discarded, [n for n, _ in order], config.latency_budget_ms,
                                        "full"))
            for label, res in got.items():
                runs["fp32" if label == CONTROL else label].append(res)  # the control is fp32
            if r == 0 and base is not None and decisive(got, config.latency_budget_ms):
                rounds[-1]["decisive"] = True
                break
    used = {name: _clean(results) for name, results in runs.items() if results}
    speeds = {name: summarise(results, config.latency_budget_ms) for name, results in used.items()}
    return Timing(speeds, rounds, noise_floor(rounds) if base is not None else None, dropped,
                  [v.name for v in timed if not v.baseline], used)


def _known(variants: list[Any], known: list[str]) -> tuple[list[Any], dict[str, str]]:
    keep = [v for v in variants if v.baseline or v.name in known]
    why = ("not a finalist when this model, recipe and these libraries were last screened on this host (the "
           "variant cache remembers the finalists; timing is measured anew)")
    return keep, {v.name: why for v in variants if v not in keep}


def _screen(variants: list[Any], config: Any, obs_path: Path, run: Callable, tick: Callable[[], None], base: Any,
            reference: Any, rounds: list[dict[str, Any]],
            margin: float | None = None) -> tuple[list[Any], dict[str, str]]:
    """One short round over every variant (and the reference); who goes on to the full rounds, who not and why."""
    subset = variants + ([reference] if reference is not None else [])
    order = _order(subset, 0, base)
    got, discarded = _round(order, config, obs_path, run, tick, plan.screen(config, reference is not None))
    rounds.append(_round_record(0, got, discarded, [n for n, _ in order], config.latency_budget_ms, "screen"))
    runs: dict[str, list[dict[str, Any]]] = {v.name: [] for v in subset}
    for label, res in got.items():
        runs["fp32" if label == CONTROL else label].append(res)
    ref = reference or base
    if reference is not None:
        ref = dataclasses.replace(reference, baseline=True)
        subset = [ref] + variants
        runs[ref.name] = runs[reference.name]
    floor = floor_of(rounds, kind="screen") if base is not None else 0.0
    kept = _finalists(subset, runs, config, floor) if ref is not None else subset
    kept = [v for v in kept if v is not ref or reference is None]
    if reference is not None and margin is not None:  # only what may beat the reference by more than the margin
        kept = [v for v in kept if _promising(_first(runs, v.name, config), _first(runs, ref.name, config), margin)]
    names = {v.name for v in kept}
    return kept, {v.name: _drop_reason(v, runs, ref, floor, config, margin) for v in variants if v.name not in names}


def _first(runs: dict[str, list[dict[str, Any]]], name: str, config: Any) -> Speed:
    """``name``'s speed from its first (undisturbed, where there is one) measurement: what a screen compares."""
    return summarise(_clean(runs[name])[:1], config.latency_budget_ms)


def _promising(s: Speed, ref: Speed, margin: float) -> bool:
    """Faster than ``ref`` by more than ``margin`` in capacity or in one answer time."""
    return s.optimal_throughput_per_s > ref.optimal_throughput_per_s * (1 + margin) or \
        any(a * (1 + margin) < b for a, b in zip(_answers(s), _answers(ref), strict=False))


def decisive(got: dict[str, dict[str, Any]], budget_ms: float | None) -> bool:
    """Whether a second full round could change nothing this first one says (see :func:`noise.decisive`)."""
    if any(m["disturbed"] or over_budget(m.get("open_loop"), budget_ms) for m in got.values()):
        return False  # a disturbed measurement, or a bad verdict that holds only when seen twice
    return _decisive({k: _capacity_of(m) for k, m in got.items()}, {k: _answer_of(m) for k, m in got.items()})


def _drop_reason(v: Any, runs: dict[str, list[dict[str, Any]]], ref: Any, floor: float, config: Any,
                 margin: float | None = None) -> str:
    s, b = _first(runs, v.name, config), _first(runs, ref.name, config)
    numbers = (f"{s.optimal_throughput_per_s:,.0f}/s at its best batch vs {b.optimal_throughput_per_s:,.0f}/s, "
               f"answer {_answer_ms(s):.3f} ms vs {_answer_ms(b):.3f} ms")
    replay = "a short replay at the target rate" if b.open_loop else "no open-loop replay"
    what = f"screening round (short windows, the smallest and largest batch, short idle gaps, {replay})"
    if _dominated(s, b, floor):
        return f"dropped after the {what}: slower than {ref.name} in capacity and every answer time ({numbers})"
    if margin is not None:
        return (f"dropped after the {what}: not faster than {ref.name} by more than the A/A noise floor "
                f"({100 * margin:.1f} %) in capacity or any answer time ({numbers})")
    return f"dropped after the {what}: not among the best {config.finalists} by capacity or answer time ({numbers})"


def _order(subset: list[Any], r: int, base: Any) -> list[tuple[str, Any]]:
    """Alternating order; the A/A control at the opposite end from fp32 (first and last in every round)."""
    order = [(v.name, v) for v in (subset if r % 2 == 0 else subset[::-1])]
    if base is None:
        return order
    return order + [(CONTROL, base)] if order[0][0] == base.name else [(CONTROL, base)] + order


def _round(order: list[tuple[str, Any]], config: Any, obs_path: Path, run: Callable, tick: Callable[[], None],
           how: plan.RoundPlan) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """One round, each entry in its own process; each disturbed measurement is taken once more.

    Only the disturbed entries are repeated (a busy machine must not double the run); the
    quieter of the two is kept, the other is returned as discarded, with its load block."""
    got = {label: _one(run, v, config, obs_path, tick, how) for label, v in order}
    discarded = {}
    for label, v in [(lb, v) for lb, v in order if got[lb]["disturbed"]][:MAX_REPEATS_PER_ROUND]:
        again = _one(run, v, config, obs_path, tick, how)
        keep, drop = (again, got[label]) if _quieter(again, got[label]) else (got[label], again)
        got[label], discarded[label] = keep, {"optimal_throughput_per_s": _capacity_of(drop), "load": drop["load"]}
    return got, discarded


def _one(run: Callable, v: Any, config: Any, obs_path: Path, tick: Callable[[], None],
         how: plan.RoundPlan) -> dict[str, Any]:
    res = run(_task(v, config, obs_path, how))
    res.setdefault("load", None)
    res["disturbed"] = bool(res["load"] and res["load"].get("disturbed"))
    tick()
    return res


def _quieter(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a["disturbed"] != b["disturbed"]:
        return not a["disturbed"]
    return ((a["load"] or {}).get("other_share") or 0.0) <= ((b["load"] or {}).get("other_share") or 0.0)


def _round_record(r: int, got: dict[str, dict[str, Any]], discarded: dict[str, dict[str, Any]], order: list[str],
                  budget_ms: float | None, kind: str = "full") -> dict[str, Any]:
    """What the report keeps of one round: per measurement its capacity, answer time and load block."""
    return {"round": r + 1, "kind": kind, "order": order, "repeats": len(discarded), "discarded": discarded,
            "disturbed": sorted(k for k, v in got.items() if v["disturbed"]),
            "measurements": {k: {"optimal_throughput_per_s": _capacity_of(v), "answer_ms": _answer_of(v),
                                 "open_loop_over_budget": over_budget(v.get("open_loop"), budget_ms),
                                 "load": v["load"]} for k, v in got.items()}}


def over_budget(ol: dict[str, Any] | None, budget_ms: float | None) -> bool | None:
    """One open-loop replay's verdict: saturated, or its p99 past the budget; None without a replay."""
    if not ol:
        return None
    return bool(ol["saturated"] or (budget_ms is not None and ol["p99_ms"] > budget_ms))


def _capacity_of(res: dict[str, Any]) -> float:
    return summarise([res], None).optimal_throughput_per_s


def _answer_of(res: dict[str, Any]) -> float:
    return _answer_ms(summarise([res], None))


def _clean(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The undisturbed measurements, or all of them when every one was disturbed."""
    return [r for r in results if not r.get("disturbed")] or results


def _finalists(variants: list[Any], runs: dict[str, list[dict[str, Any]]], config: Any,
               floor: float = 0.0) -> list[Any]:
    """Who gets the later rounds: the baseline plus every variant not dominated after round one.

    A variant slower than fp32 beyond the noise floor both in capacity and in answer time
    cannot win; of the rest, at most ``config.finalists`` by capacity and by answer time
    stay (everyone undominated when ``config.finalists`` is None)."""
    first = {v.name: _first(runs, v.name, config) for v in variants}
    base = next((v for v in variants if v.baseline), None)
    alive = [v for v in variants if base is None or v.baseline or not _dominated(first[v.name], first[base.name],
                                                                                 floor)]
    keep = getattr(config, "finalists", None)
    if keep is None or len(alive) <= keep + 1:
        return alive
    by_capacity = sorted(alive, key=lambda v: -first[v.name].optimal_throughput_per_s)[:keep]
    by_latency = sorted(alive, key=lambda v: _answer_ms(first[v.name]))[:keep]
    by_idle = sorted(alive, key=lambda v: _answers(first[v.name])[-1])[:keep]  # after the longest gap
    chosen = {v.name for v in by_capacity + by_latency + by_idle} | {v.name for v in alive if v.baseline}
    return [v for v in alive if v.name in chosen]


def _dominated(s: Speed, base: Speed, floor: float) -> bool:
    """Slower beyond the floor in capacity and in every answer time measured (each idle gap, or the replay)."""
    slower = s.optimal_throughput_per_s * (1 + floor) < base.optimal_throughput_per_s
    later = all(a > b * (1 + floor) for a, b in zip(_answers(s), _answers(base), strict=False))
    return slower and later


def _answers(speed: Speed) -> list[float]:
    """Answer times: the open-loop p50, else batch-1 p50 after each idle gap (shortest gap first)."""
    if speed.open_loop:
        return [speed.open_loop["p50_ms"]]
    by_gap = sorted(speed.latency_by_gap, key=lambda g: g["gap_ms"])
    return [g["p50_ms"] for g in by_gap] or [float("inf")]


def _answer_ms(speed: Speed) -> float:
    if speed.open_loop:
        return speed.open_loop["p50_ms"]
    return min((g["p50_ms"] for g in speed.latency_by_gap), default=float("inf"))


KNOBS = {"onnxruntime": ("threads", "spinning"), "openvino": ("precision", "performance_hint", "streams",
                                                                 "threads", "pinning")}


def _task(v: Any, config: Any, obs_path: Path, how: plan.RoundPlan | None = None) -> dict[str, Any]:
    from costeff.quantization.variants import trt_fp16

    how = how or plan.full(config)
    knobs = {k: v.runtime[k] for k in KNOBS[v.backend] if v.runtime.get(k) is not None}
    options = knobs if v.backend == "openvino" else {
        "provider": config.provider, "session_config": dict(v.session_config),
        "trt_fp16": trt_fp16(v.name, config.provider), **knobs}
    return {"path": v.path, "backend": v.backend, "options": options, "observations": str(obs_path),
            "batch_sizes": list(how.batch_sizes), "window_s": how.window_s, "warmup_s": how.warmup_s,
            "gaps_s": list(how.gaps_s), "gap_budget_s": how.gap_budget_s,
            "target_rate": config.target_rate if how.open_loop_s else None,
            "latency_budget_ms": config.latency_budget_ms, "max_utilisation": config.max_utilisation,
            "open_loop_s": how.open_loop_s or config.open_loop_s}


def run_isolated(task: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement task in a fresh Python process, with the machine's ``load`` around it."""
    from costeff.quantization import load

    before = load.snapshot()
    result = _run_process(task)
    return {**result, "load": load.block(before, load.snapshot())}


def _run_process(task: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement task in a fresh Python process; DependencyError when it fails."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    try:
        proc = subprocess.run([sys.executable, "-m", "costeff.runtimes.worker"], input=json.dumps(task),
                              capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        raise DependencyError(f"{task['path']}: speed measurement ran past {WORKER_TIMEOUT_S} s") from None
    lines = proc.stdout.strip().splitlines()
    try:
        out = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DependencyError(f"{task['path']}: the measuring process died (exit {proc.returncode}): {tail}") \
            from None
    if not out["ok"]:
        raise DependencyError(f"{task['path']}: {out['error']}")
    return out["result"]


def summarise(results: list[dict[str, Any]], budget_ms: float | None) -> Speed:
    per_batch: dict[int, list[float]] = {}
    p99: dict[int, list[float]] = {}
    for res in results:
        for b, p in res["closed_loop"].items():
            per_batch.setdefault(int(b), []).append(p["throughput_per_s"])
            p99.setdefault(int(b), []).append(p["p99_ms"])
    med = {b: statistics.median(v) for b, v in sorted(per_batch.items())}
    lat = {b: statistics.median(v) for b, v in sorted(p99.items())}
    eligible = [b for b in med if budget_ms is None or lat[b] <= budget_ms] or [min(med)]
    best = max(eligible, key=lambda b: med[b])
    ol, ol_range = _open_loop(results)
    verdicts = [over_budget(r.get("open_loop"), budget_ms) for r in results if r.get("open_loop")]
    return Speed(med, {b: (min(v), max(v)) for b, v in sorted(per_batch.items())}, best, med[best], lat,
                 median_gaps(results), ol, ol_range, results[0]["runtime"], len(verdicts), sum(map(bool, verdicts)),
                 len(results), sum(1 for r in results if r.get("disturbed")))


def _open_loop(results: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, tuple[float, float] | None]:
    rounds = [r["open_loop"] for r in results if r.get("open_loop")]
    if not rounds:
        return None, None
    by_p99 = sorted(rounds, key=lambda r: r["p99_ms"])
    median = by_p99[(len(by_p99) - 1) // 2]  # the lower median: a real round, not an average of two
    p50s = [r["p50_ms"] for r in rounds]
    saturated = reproduced([r["saturated"] for r in rounds])
    return {**median, "saturated": saturated, "saturated_runs": sum(1 for r in rounds if r["saturated"]),
            "runs": len(rounds)}, (min(p50s), max(p50s))


def reproduced(flags: list[bool | None]) -> bool:
    """A bad verdict (saturated, over budget) holds when it was seen twice, or in the only measurement there is."""
    seen = sum(1 for f in flags if f)
    return seen >= 2 or (seen > 0 and seen == len(flags))


def as_dict(speed: Speed) -> dict[str, Any]:
    return asdict(speed)

"""Speedups, cost at the target traffic, and the choice of the variant to serve.

With a target rate the choice is by cost at that traffic: a variant must pass
every fidelity gate and meet the p99 budget in the open-loop replay at the
rate; among those, the fewest instances (dollars per day) wins. Among equally
cheap ones: under light traffic (below a tenth of one fp32 instance's capacity,
where every variant idles) the lowest open-loop p50, i.e. the best served; under
batched traffic the most throughput per dollar, i.e. the most headroom before
the next instance is needed. Without a target rate, the fastest passing variant
in the closed loop wins, as before.
Either way fp32 stays unless a variant beats it by more than the noise.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from costeff._jsonable import to_jsonable
from costeff.quantization.records import VariantResult

LIGHT_LOAD = 0.1  # traffic under this share of one fp32 instance's capacity is light


def apply_speed(ctx: Any, model_path: Path, obs: np.ndarray, variants: list[VariantResult],
                progress: Any) -> tuple[str, Any]:
    """Profile the variants worth serving in isolated processes, fp32 twice per round (the A/A control).

    Returns the method in words and the :class:`~costeff.quantization.speed.Timing` (rounds, noise floor)."""
    from costeff.quantization.speed import measure_rounds

    timed = [v for v in variants if v.built and v.path and (v.baseline or v.passed or ctx.config.speed_of_failing)]
    for v in variants:
        if v.built and v not in timed:
            v.notes.append("not timed: it failed a fidelity gate, so it cannot be served")
    tick = (lambda: progress.advance(1, description="profiling")) if progress is not None else (lambda: None)
    timing = measure_rounds(timed, ctx.config, obs, tick, known=getattr(ctx, "finalists_hint", None))
    fill_all(timed, timing)
    for v in timed:
        if v.name in timing.dropped:
            v.notes.append(timing.dropped[v.name])
    return _method(ctx.config, timing), timing


def _method(cfg: Any, timing: Any) -> str:
    from costeff.quantization.noise import DECISIVE, QUIET_AA
    from costeff.quantization.plan import SCREEN_WINDOW_S

    screened = any(r.get("kind") == "screen" for r in timing.rounds)
    first = (f"a screening round first (every variant, batch sizes 1 and the largest, {SCREEN_WINDOW_S:g} s windows, "
             "short idle gaps, no open-loop replay; fp32 and the best "
             f"{cfg.finalists} undominated by capacity, by answer time and by answer after an idle gap go on), "
             "then " if screened else
             "only the finalists of the last screening of this model (from the variant cache), " if timing.dropped
             else "")
    later = f" (rounds after the first: fp32 and the best {cfg.finalists} undominated by capacity and by answer " \
        "time)" if cfg.finalists is not None and cfg.speed_rounds > 1 and not first else ""
    alone = f"; one round when the first decides alone (undisturbed, A/A within {100 * QUIET_AA:g} %, every " \
        f"comparison at least {DECISIVE:g}x apart)" if any(r.get("decisive") for r in timing.rounds) else ""
    return (f"each variant in its own process, {first}batch sizes {list(cfg.batch_sizes)}, {cfg.speed_rounds} "
            f"interleaved round(s){later}{alone}, fp32 twice per round as the A/A control, window {cfg.window_s} s "
            "per point, "
            f"provider {cfg.provider}; latency after idle gaps {[g * 1e3 for g in cfg.gaps_s]} ms"
            + (f"; open loop at {cfg.target_rate:g}/s (Poisson arrivals, greedy batching up to the optimal batch)"
               if cfg.target_rate else ""))


def fill_all(timed: list[VariantResult], timing: Any) -> None:
    """Every timed variant's speed, and its speed against fp32 round by round (the paired ratios)."""
    base = timing.speeds["fp32"]
    for v in (v for v in timed if v.name in timing.speeds):  # the rest were dropped after screening
        _fill(v, timing.speeds[v.name], base)
        v.paired_rounds = _paired(v.name, timing.rounds)


def _paired(name: str, rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per round: capacity and answer time against fp32 of the same round; clean when neither was disturbed."""
    from costeff.quantization.speed import CONTROL

    out = []
    for r in rounds:
        m = r["measurements"]
        if name not in m or name == "fp32" or r.get("kind") == "screen":
            continue
        refs = [m[k] for k in ("fp32", CONTROL) if k in m]
        clean_refs = [x for x in refs if not _disturbed(x)]
        use = clean_refs or refs
        cap = sum(x["optimal_throughput_per_s"] for x in use) / len(use)
        ans = sum(x["answer_ms"] for x in use) / len(use)
        out.append({"round": r["round"], "speedup": round(m[name]["optimal_throughput_per_s"] / cap, 4),
                    "answer_time_ratio": round(m[name]["answer_ms"] / ans, 4) if ans else None,
                    "clean": bool(clean_refs) and not _disturbed(m[name])})
    return out


def _disturbed(m: dict[str, Any]) -> bool:
    return bool(m.get("load") and m["load"].get("disturbed"))


def beats_noise(v: VariantResult, floor: dict[str, Any] | None, min_speedup: float = 1.0) -> dict[str, Any]:
    """Whether ``v`` beats fp32 on every round where both ran undisturbed, by more than the A/A floor."""
    clean = [p for p in v.paired_rounds if p["clean"]]
    cap_floor = max(1.0 + (floor or {}).get("capacity", 0.0), min_speedup)
    ans_floor = 1.0 + (floor or {}).get("answer_time", 0.0)
    cap = bool(clean) and all(p["speedup"] > cap_floor for p in clean)
    ans = bool(clean) and all(p["answer_time_ratio"] is not None and p["answer_time_ratio"] * ans_floor < 1.0
                              for p in clean)
    return {"clean_rounds": len(clean), "capacity": cap, "answer_time": ans,
            "capacity_needed": round(cap_floor, 4), "answer_time_ratio_needed": round(1.0 / ans_floor, 4)}


def _fill(v: VariantResult, s: Any, base: Any) -> None:
    v.throughput_per_s, v.throughput_range_per_s, v.latency_p99_ms = s.throughput_per_s, \
        s.throughput_range_per_s, s.latency_p99_ms
    v.optimal_batch, v.optimal_throughput_per_s = s.optimal_batch, s.optimal_throughput_per_s
    v.throughput_at_baseline_batch_per_s = s.throughput_per_s.get(base.optimal_batch)
    v.speedup = s.optimal_throughput_per_s / base.optimal_throughput_per_s
    if v.throughput_at_baseline_batch_per_s is not None:
        v.speedup_at_baseline_batch = v.throughput_at_baseline_batch_per_s / base.optimal_throughput_per_s
    v.latency_by_gap, v.open_loop, v.open_loop_p50_range_ms = s.latency_by_gap, s.open_loop, s.open_loop_p50_range_ms
    v.runtime = {**v.runtime, **s.runtime}
    v.over_budget_runs = (s.open_loop_over_budget_runs, s.open_loop_runs)
    v.speed_measurements = {"measurements": s.measurements, "disturbed": s.disturbed}


def choose(variants: list[VariantResult], min_speedup: float = 1.05, target_rate: float | None = None,
           budget_ms: float | None = None, noise_floor: dict[str, Any] | None = None) -> dict[str, Any]:
    """The variant to serve, with the reason in words.

    With an A/A ``noise_floor`` a variant is a candidate only if it beats fp32 beyond that floor on
    every round where both ran undisturbed (by capacity or by answer time); the rest stay listed."""
    base = next(v for v in variants if v.baseline)
    passing = [v for v in variants if not v.baseline and v.built and v.passed and v.speedup is not None]
    screened_out = [v.name for v in variants if not v.baseline and v.built and v.passed and v.speedup is None]
    if screened_out and not passing:  # not timed fully: the screen found none faster than fp32
        return {"name": base.name, "passed_any": True,
                "reason": f"the screening round found no variant passing the fidelity gates faster than fp32 "
                          f"({', '.join(screened_out)}: each variant's note says why); fp32 stays"}
    if noise_floor is not None:
        within = []
        for v in passing:
            v.noise_verdict = beats_noise(v, noise_floor)
            if not (v.noise_verdict["capacity"] or v.noise_verdict["answer_time"]):
                within.append(v)
        passing = [v for v in passing if v not in within]
        if within and not passing:
            return {"name": base.name, "passed_any": True, "reason": _within_noise(within, noise_floor)}
    if target_rate and base.at_target:
        return _choose_at_target(base, passing, min_speedup, target_rate, budget_ms)
    if not passing:
        return {"name": base.name, "reason": "no lowered variant passed every fidelity gate; fp32 stays",
                "passed_any": any(v.passed for v in variants if not v.baseline)}
    faster = [v for v in passing if (v.speedup or 0) >= min_speedup
              and (noise_floor is None or (v.noise_verdict or {}).get("capacity"))]
    if not faster:
        names = ", ".join(f"{v.name} ({v.speedup:.2f}x)" for v in passing if v.speedup is not None)
        return {"name": base.name, "passed_any": True,
                "reason": f"variants passed but none is at least {min_speedup:.2f}x fp32: {names}"}
    best = max(faster, key=lambda v: v.speedup or 0.0)
    return {"name": best.name, "passed_any": True,
            "reason": f"fastest variant passing every gate: {best.speedup:.2f}x fp32 at batch {best.optimal_batch}"}


def _within_noise(within: list[VariantResult], floor: dict[str, Any]) -> str:
    names = ", ".join(f"{v.name} ({v.speedup:.2f}x)" for v in within)
    if all((v.noise_verdict or {}).get("clean_rounds", 0) == 0 for v in within):
        return (f"no round ran undisturbed for both fp32 and the passing variants ({names}): other processes or the "
                "hypervisor took the CPU while they were timed, so a win cannot be told from the load; fp32 stays")
    return (f"passing variants are within the A/A noise floor (fp32 against itself: {floor['capacity'] * 100:.1f} % "
            f"capacity, {floor['answer_time'] * 100:.1f} % answer time) on the undisturbed rounds: {names}; fp32 stays")


def _choose_at_target(base: VariantResult, passing: list[VariantResult], min_speedup: float, rate: float,
                      budget_ms: float | None) -> dict[str, Any]:
    assert base.at_target is not None and base.open_loop is not None  # choose() checked; set together
    traffic = f"{rate:g}/s" + (f", p99 budget {budget_ms:g} ms" if budget_ms else "")
    light = _light(rate, base)
    ok = [v for v in passing if v.at_target and v.at_target["meets_budget"]]
    short = not ok and not base.at_target["meets_budget"]
    if short:  # nothing meets the budget, fp32 included: the variants clearly nearer to it than fp32
        ok = [v for v in passing if v.at_target and v.open_loop and not v.open_loop.get("saturated")
              and v.at_target["p99_ms"] * min_speedup <= base.at_target["p99_ms"]]
    wins = [v for v in ok if _beats(v, base, min_speedup, light)]
    if not wins:
        why = "no passing variant meets the budget at the target" if not ok else \
            "no passing variant is cheaper than fp32 at the target, or better by more than the noise"
        return {"name": base.name, "passed_any": bool(passing), "reason": f"{why} ({traffic}); fp32 stays"}
    tie = (lambda v: v.open_loop["p50_ms"]) if light else (lambda v: -_capacity(v)[0])
    best = min(wins, key=lambda v: (_timed(v)[0]["usd_per_day"], tie(v)))
    t, best_open_loop = _timed(best)
    among = "lowest open-loop p50 (light traffic)" if light else "most throughput per dollar (headroom)"
    head = (f"no variant meets the p99 budget at {traffic} (fp32: {base.at_target['p99_ms']:.2f} ms); of those "
            f"nearer to it, the cheapest passing every gate (p99 {t['p99_ms']:.2f} ms), then {among}" if short
            else f"cheapest variant passing every gate at {traffic}, then {among}")
    return {"name": best.name, "passed_any": True, "load": "light" if light else "batched", "budget_met": not short,
            "reason": (f"{head}: {t['instances']} "
                       f"instance(s), ${t['usd_per_day']:.2f}/day vs fp32's {base.at_target['instances']} "
                       f"(${base.at_target['usd_per_day']:.2f}/day); open-loop p50 {best_open_loop['p50_ms']:.3f} ms "
                       f"vs {base.open_loop['p50_ms']:.3f} ms; {best.speedup:.2f}x fp32 throughput at batch "
                       f"{best.optimal_batch}")}


def _timed(v: VariantResult) -> tuple[dict[str, Any], dict[str, Any]]:
    """(at_target, open_loop) of a variant timed at the target rate (``_at_target`` sets both)."""
    assert v.at_target is not None and v.open_loop is not None
    return v.at_target, v.open_loop


def _light(rate: float, base: VariantResult) -> bool:
    """Traffic under a tenth of one fp32 instance: every variant idles, only answer time differs."""
    assert base.optimal_throughput_per_s is not None  # fp32 is always timed
    return rate < LIGHT_LOAD * base.optimal_throughput_per_s


def _capacity(v: VariantResult) -> tuple[float, float]:
    """(slowest, fastest) round's throughput at the variant's optimal batch."""
    assert v.optimal_batch is not None and v.optimal_throughput_per_s is not None  # a timed variant
    lo, hi = v.throughput_range_per_s.get(v.optimal_batch, (v.optimal_throughput_per_s,) * 2)
    return lo, hi


def _beats(v: VariantResult, base: VariantResult, min_speedup: float, light: bool = True) -> bool:
    """Cheaper even at its slowest round; or as cheap and, beyond the noise, answering faster
    (light traffic) or carrying more per dollar (batched traffic: headroom for growth)."""
    assert v.at_target is not None and v.open_loop is not None  # both timed at the target rate
    assert base.at_target is not None and base.open_loop is not None
    if not base.at_target["meets_budget"]:
        return True
    if v.at_target["instances_worst"] < base.at_target["instances"]:
        return True
    if v.at_target["instances"] > base.at_target["instances"]:
        return False
    if not light:
        return _capacity(v)[0] >= min_speedup * _capacity(base)[1]
    best_base = min(base.open_loop_p50_range_ms or (base.open_loop["p50_ms"],))
    worst_v = max(v.open_loop_p50_range_ms or (v.open_loop["p50_ms"],))
    return v.open_loop["p50_ms"] * min_speedup <= base.open_loop["p50_ms"] and worst_v < best_base


def select_and_cost(variants: list[VariantResult], config: Any, obs: np.ndarray | None = None,
                    noise_floor: dict[str, Any] | None = None,
                    measured: dict[str, list[dict[str, Any]]] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    instance = _instance(config)
    _at_target(variants, config, instance)
    selected = choose(variants, config.min_speedup, config.target_rate, config.latency_budget_ms, noise_floor)
    sel = next(v for v in variants if v.name == selected["name"])
    if config.tune_knobs and obs is not None and sel.at_target:
        from costeff.quantization.knobs import tune

        selected["knobs"] = tune(sel, variants, config, obs, instance, noise_floor, measured)
    cost = _costs(variants, config, selected["name"], instance)
    selected.update(backend=sel.backend, precision=sel.precision, runtime=sel.runtime,
                    traffic={"target_rate_per_s": config.target_rate, "latency_budget_ms": config.latency_budget_ms})
    return selected, cost


def _instance(config: Any) -> Any:
    from costeff.cost import load_catalog
    from costeff.hardware import detect

    hw = detect()
    gpu = hw.gpus[0].name if hw.gpus and config.provider != "cpu" else None
    return load_catalog().for_hardware(gpu, hw=hw)


def _at_target(variants: list[VariantResult], config: Any, instance: Any) -> None:
    """Instances, dollars per day and the budget verdict at the target rate, per timed variant."""
    if not config.target_rate:
        return
    price_day = instance.usd_per_hour * 24.0
    for v in variants:
        if not v.open_loop or not v.optimal_throughput_per_s or v.optimal_batch is None:
            continue
        worst = min(v.throughput_range_per_s.get(v.optimal_batch, (v.optimal_throughput_per_s,) * 2))
        instances = v.open_loop["instances"]
        over, runs = v.over_budget_runs or (0, 0)
        # over budget only when it reproduces: seen twice, or in the only replay there is
        meets = not (over >= 2 or (runs and over == runs)) if runs else not v.open_loop["saturated"] and (
            config.latency_budget_ms is None or v.open_loop["p99_ms"] <= config.latency_budget_ms)
        v.at_target = {"instances": instances, "usd_per_day": instances * price_day,
                       "instances_worst": max(1, math.ceil(config.target_rate / (worst * config.max_utilisation))),
                       "meets_budget": meets, "p50_ms": v.open_loop["p50_ms"], "p99_ms": v.open_loop["p99_ms"],
                       "over_budget_runs": over, "open_loop_runs": runs}


def _costs(variants: list[VariantResult], config: Any, selected: str, instance: Any) -> dict[str, Any]:
    """$ per million and instances needed for every variant at its optimal batch."""
    from costeff.cost import estimate

    for v in variants:
        if v.optimal_throughput_per_s:
            v.cost = to_jsonable(estimate(instance, v.optimal_throughput_per_s, config.target_rate,
                                          config.max_utilisation))
    before = next(v for v in variants if v.baseline).cost
    after = next(v for v in variants if v.name == selected).cost
    return {"instance": instance.name, "instance_price": {"usd_per_hour": instance.usd_per_hour,
                                                          "source": instance.source, "as_of": instance.as_of},
            "target_rate_per_s": config.target_rate, "selected": selected, "before": before, "after": after}

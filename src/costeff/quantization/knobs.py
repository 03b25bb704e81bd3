"""Measure the runtime knobs of the variant to serve instead of guessing them.

Defaults are tuned for a tight loop on a whole machine. At the target traffic
another setting can serve better: one thread answers a lone cold request with
less wake-up than two; onnxruntime's spinning threads are fast back to back but
burn a core between sparse requests; OpenVINO's THROUGHPUT hint runs several
streams for concurrent batches. Each alternative is timed like the variant itself
(own process, interleaved rounds, open loop at the target rate) and adopted only
when it beats the default by more than the noise, with the same rule that keeps
fp32 over a lowered variant.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

ALTERNATIVES: dict[str, tuple[dict[str, Any], ...]] = {
    "onnxruntime": ({"spinning": False}, {"threads": 1}),
    "openvino": ({"performance_hint": "THROUGHPUT"}, {"threads": 1}),
}


def tune(variant: Any, variants: list[Any], config: Any, obs: np.ndarray, instance: Any,
         noise_floor: dict[str, Any] | None = None,
         measured: dict[str, list[dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    """Try the alternatives for ``variant``; adopt a winner in place. Returns every setting's numbers.

    A setting is adopted only as a variant is selected: it beats the default by more than the A/A noise
    floor, and neither it nor the default was measured only while the machine was disturbed. An adopted
    setting's own measurements replace the variant's in ``measured`` (what its profile is assembled from)."""
    from costeff.quantization.select import _at_target, _beats, _light
    from costeff.quantization.speed import measure_all

    family = [v for v in variants if v.name == (variant.settings_of or variant.name)
              or v.settings_of == (variant.settings_of or variant.name)]
    if len(family) > 1:  # its runtime settings were variants in the same rounds: already measured
        return _timed_rows(variant, [v for v in family if v.at_target], config)
    base = next(v for v in variants if v.baseline)
    tries = [_candidate(variant, i, knobs) for i, knobs in enumerate(ALTERNATIVES[variant.backend])]
    if not tries or variant.at_target is None:
        return []
    if (noise_floor or {}).get("only_disturbed"):  # nothing could be adopted: timing the settings would only cost
        return _not_tried(variant, tries)
    # screened beside the default first (with a short replay of the target traffic): a setting goes on to full
    # rounds only when it beats the default there by more than the A/A floor, as it must to be adopted
    margin = max((noise_floor or {}).get("capacity", 0.0), (noise_floor or {}).get("answer_time", 0.0))
    timing = measure_all(tries, config, obs, reference=variant, margin=margin)
    speeds = timing.speeds
    _fill_tries(tries, speeds, base)
    _at_target(tries, config, instance)
    light = _light(config.target_rate, base)
    rows = [_row(variant, "default (as timed above)", adopted=False)]
    winner = None
    needed = max(config.min_speedup, 1.0 + (noise_floor or {}).get("capacity", 0.0))
    for t, knobs in zip(tries, ALTERNATIVES[variant.backend], strict=True):
        wins = bool(t.at_target and t.at_target["meets_budget"] and _beats(t, variant, needed, light))
        dropped = "" if t.name in speeds else " (dropped after screening beside the default: not faster beyond the " \
            "A/A noise floor)"
        if wins and (_only_disturbed(t) or _only_disturbed(variant) or (noise_floor or {}).get("only_disturbed")):
            wins, dropped = False, " (not adopted: measured only while the machine was disturbed)"
        rows.append(_row(t, ", ".join(f"{k}={v}" for k, v in knobs.items()) + dropped, adopted=False,
                         beats_default=wins))
        if wins and (winner is None or _key(t, light) < _key(winner[0], light)):
            winner = (t, rows[-1])
    if winner:
        _adopt(variant, winner[0])
        winner[1]["adopted"] = True
        if measured is not None:
            measured[variant.name] = timing.results[winner[0].name]
    else:
        rows[0]["adopted"] = True
    return rows


def _not_tried(variant: Any, tries: list[Any]) -> list[dict[str, Any]]:
    why = " (not tried: every round the selection used was disturbed, so no setting could be adopted)"
    return [_row(variant, "default (as timed above)", adopted=True)] + [
        _row(t, ", ".join(f"{k}={v}" for k, v in knobs.items()) + why, adopted=False, beats_default=False,
             timed=False) for t, knobs in zip(tries, ALTERNATIVES[variant.backend], strict=True)]


def _fill_tries(tries: list[Any], speeds: dict[str, Any], base: Any) -> None:
    from costeff.quantization.select import _fill

    for t in tries:
        if t.name in speeds:
            _fill(t, speeds[t.name], _BaseSpeed(base))
        else:  # its speed fields are the default's, copied by _candidate: not this setting's numbers
            t.at_target = t.optimal_batch = t.optimal_throughput_per_s = None


def _timed_rows(selected: Any, family: list[Any], config: Any) -> list[dict[str, Any]]:
    """One row per runtime setting of the selected variant's base, timed as variants beside fp32."""
    from costeff.quantization.settings import label

    default = next((v for v in family if not v.settings_of), None)
    rows = []
    for v in family:
        beats = None if v is default or default is None else _beats_default(v, default, config)
        rows.append(_row(v, f"{label(v.settings)} ({v.name})" if v.settings_of else "default (as timed above)",
                         adopted=v is selected, beats_default=beats))
    return rows


def _beats_default(v: Any, default: Any, config: Any) -> bool:
    """As selection compares: within the budget and better beyond the noise; or, when the default misses
    the budget, clearly nearer to it (p99 lower by ``min_speedup``) without saturating."""
    from costeff.quantization.select import _beats, _light

    if not default.at_target["meets_budget"]:
        return bool(not v.open_loop.get("saturated")
                    and v.at_target["p99_ms"] * config.min_speedup <= default.at_target["p99_ms"])
    return bool(v.at_target["meets_budget"] and _beats(v, default, config.min_speedup,
                                                       _light(config.target_rate, default)))


def _only_disturbed(v: Any) -> bool:
    """Every measurement of ``v`` was taken while other processes or the hypervisor took the CPU."""
    return bool((v.speed_measurements or {}).get("disturbed"))


class _BaseSpeed:
    """The fields of fp32's speed that ``_fill`` reads, from its already filled result."""

    def __init__(self, base: Any) -> None:
        self.optimal_batch, self.optimal_throughput_per_s = base.optimal_batch, base.optimal_throughput_per_s


def _candidate(v: Any, i: int, knobs: dict[str, Any]) -> Any:
    return dataclasses.replace(v, name=f"{v.name}#knob{i}", runtime={**v.runtime, **knobs}, baseline=False)


def _key(v: Any, light: bool) -> tuple[float, float]:
    return v.at_target["usd_per_day"], v.open_loop["p50_ms"] if light else -v.optimal_throughput_per_s


def _adopt(v: Any, t: Any) -> None:
    for f in ("runtime", "throughput_per_s", "throughput_range_per_s", "latency_p99_ms", "optimal_batch",
              "optimal_throughput_per_s", "throughput_at_baseline_batch_per_s", "speedup",
              "speedup_at_baseline_batch", "latency_by_gap", "open_loop", "open_loop_p50_range_ms", "at_target"):
        setattr(v, f, getattr(t, f))
    v.notes.append("runtime knobs measured at the target traffic; adopted: "
                   + ", ".join(f"{k}={v.runtime[k]}" for k in ("threads", "spinning", "performance_hint")
                               if k in v.runtime))


def _row(v: Any, setting: str, adopted: bool, beats_default: bool | None = None,
         timed: bool = True) -> dict[str, Any]:
    """One setting's numbers (none for a setting not timed: ``timed`` False)."""
    t = (v.at_target or {}) if timed else {}
    return {"setting": setting, "optimal_batch": v.optimal_batch if timed else None,
            "throughput_per_s": v.optimal_throughput_per_s if timed else None,
            "p50_ms_at_target": t.get("p50_ms"), "p99_ms_at_target": t.get("p99_ms"),
            "instances": t.get("instances"), "meets_budget": t.get("meets_budget"),
            "beats_default": beats_default, "adopted": adopted}

"""From measured points to decisions: optimal batch, cost, right-sizing, recommendations.

Everything here is derived from the numbers; each recommendation carries the
observed value and the threshold that triggered it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from costeff.errors import InputError
from costeff.profiling.measure import Point

if TYPE_CHECKING:
    from costeff.records.profile import ProfileRecord


@dataclass(frozen=True)
class Optimal:
    batch_size: int | None
    concurrency: int | None
    throughput_per_s: float | None
    latency_p99_ms: float | None
    stable: bool | None
    within_budget: bool | None  # None when no budget was given
    latency_budget_ms: float | None
    reason: str


@dataclass(frozen=True)
class Recommendation:
    kind: str  # memory | throughput | latency | cost | stability
    message: str
    metric: str
    observed: float | int | str | None
    threshold: float | int | str | None


def select_optimal(points: list[Point], budget_ms: float | None) -> Optimal:
    """Highest throughput whose p99 <= budget; without a fit, the point closest to the budget."""
    if not points:
        return Optimal(None, None, None, None, None, None, budget_ms, "no points were measured")
    if budget_ms is None:
        best = max(points, key=lambda p: p.throughput_per_s)
        return _optimal(best, None, budget_ms, "highest throughput (no latency budget given)")
    fits = [p for p in points if p.latency_ms.p99 <= budget_ms]
    if fits:
        best = max(fits, key=lambda p: p.throughput_per_s)
        return _optimal(best, True, budget_ms, f"highest throughput with p99 <= {budget_ms:g} ms")
    closest = min(points, key=lambda p: p.latency_ms.p99)
    return _optimal(closest, False, budget_ms,
                    f"no batch size meets the p99 budget of {budget_ms:g} ms; closest is batch "
                    f"{closest.batch_size} at p99 {closest.latency_ms.p99:.3g} ms")


def _optimal(p: Point, within: bool | None, budget: float | None, reason: str) -> Optimal:
    if not p.stable:
        reason += " (this point did not stabilise; treat its numbers as indicative)"
    return Optimal(p.batch_size, p.concurrency, p.throughput_per_s, p.latency_ms.p99, p.stable, within, budget, reason)


def cost_for(throughput_per_s: float | None, gpu_name: str | None, *, catalog_path: Path | None,
             instance: str | None, target_rate: float | None, max_utilisation: float,
             hw: Any = None) -> dict[str, Any] | None:
    """$/hour, $ per million inferences and the fleet at ``target_rate`` on the matched instance."""
    from costeff.cost import estimate, load_catalog

    catalog = load_catalog(catalog_path)
    inst = catalog.get(instance) if instance else catalog.for_hardware(gpu_name, hw=hw)
    if not throughput_per_s:
        return None
    est = estimate(inst, throughput_per_s, target_rate, max_utilisation)
    data = {k: v for k, v in est.__dict__.items()}
    data.update(instance_kind=inst.kind, matched_by="--instance" if instance else "hardware",
                catalog=catalog.path, gpu=inst.gpu)
    return data


def load_compare(path: Path) -> ProfileRecord:
    """A ``gpu_profile.json`` measured elsewhere, checked for the fields right-sizing reads."""
    from costeff.records.kinds import PROFILE

    try:
        data = PROFILE.read(path)
    except InputError as exc:
        raise InputError(f"--compare {exc}") from None
    if data.optimal is None or "throughput_per_s" not in data.optimal.model_fields_set or data.hardware is None:
        raise InputError(f"--compare {path}: not a gpu_profile.json (expected optimal.throughput_per_s and hardware)")
    return data


def right_size(own: dict[str, Any] | None, own_label: str, others: list[tuple[str, ProfileRecord]],
               catalog_path: Path | None, target_rate: float | None, max_utilisation: float) -> list[dict[str, Any]]:
    """Rank this profile and the compared ones by $ per million inferences (cheapest first)."""
    rows = []
    if own:
        rows.append(_row(own_label, own, compared=False))
    for label, data in others:
        gpus = data.host.gpus
        gpu_name = gpus[0].name if gpus and data.on_gpu else None
        inst = data.cost.instance if data.cost else None
        hw = None
        if inst is not None and "/" in inst:  # a CPU host priced per vCPU: price it again from its own ISA
            inst, hw = None, _cpu_view(data)
        assert data.optimal is not None  # load_compare checked it
        cost = cost_for(data.optimal.throughput_per_s, gpu_name, catalog_path=catalog_path,
                        instance=inst, target_rate=target_rate, max_utilisation=max_utilisation, hw=hw)
        if cost:
            rows.append(_row(label, cost, data.optimal.batch_size))
    rows.sort(key=lambda r: r["usd_per_million"])
    return rows


def _cpu_view(profile: ProfileRecord) -> Any:
    """The compared profile's CPU as ``Catalog.for_cpu`` reads it: ISA, model and the threads it used."""
    from types import SimpleNamespace

    host = profile.host
    return SimpleNamespace(isa=tuple(host.isa), cpu_model=host.cpu_model or "",
                           cores=profile.runtime.threads or host.cpu_count)


def _row(label: str, cost: dict[str, Any], batch_size: int | None = None, compared: bool = True) -> dict[str, Any]:
    row = {"profile": label, "instance": cost["instance"], "throughput_per_s": cost["throughput_per_s"],
           "usd_per_hour": cost["usd_per_hour"], "usd_per_million": cost["usd_per_million"],
           "instances_needed": cost["instances_needed"], "usd_per_day": cost["usd_per_day"]}
    if compared:
        row["batch_size"] = batch_size
    return row


def recommendations(points: list[Point], optimal: Optimal, cost: dict[str, Any] | None,
                    ranking: list[dict[str, Any]], memory_total_gb: float | None) -> list[Recommendation]:
    recs: list[Recommendation] = []
    for rule in (_batching, _saturation, _latency, _stability, _memory, _gpu_use, _fleet):
        recs += rule(points, optimal, cost, memory_total_gb)
    recs += _cheapest(ranking)
    return recs


def _by_batch(points: list[Point]) -> list[Point]:
    conc = min(p.concurrency for p in points)
    return sorted((p for p in points if p.concurrency == conc), key=lambda p: p.batch_size)


def _batching(points, optimal, cost, mem) -> list[Recommendation]:
    single = next((p for p in _by_batch(points) if p.batch_size == 1), None) if points else None
    if single is None or optimal.batch_size in (None, 1) or not single.throughput_per_s:
        return []
    gain = optimal.throughput_per_s / single.throughput_per_s
    if gain < 1.5:
        return []
    return [Recommendation("throughput", f"batch requests up to {optimal.batch_size} (Triton dynamic batching): "
                           f"{gain:.1f}x the throughput of batch 1", "throughput_gain_vs_batch1", round(gain, 2), 1.5)]


def _saturation(points, optimal, cost, mem) -> list[Recommendation]:
    series = _by_batch(points)
    for a, b in zip(series, series[1:], strict=False):
        gain = b.throughput_per_s / a.throughput_per_s if a.throughput_per_s else math.inf
        if gain < 1.10:
            return [Recommendation("throughput", f"throughput saturates at batch {a.batch_size}: batch "
                                   f"{b.batch_size} changes throughput by {100 * (gain - 1):+.0f}% for "
                                   f"{b.latency_ms.p99 / a.latency_ms.p99:.1f}x the p99 latency",
                                   f"throughput_gain_b{a.batch_size}_to_b{b.batch_size}", round(gain, 3), 1.10)]
    return []


def _latency(points, optimal, cost, mem) -> list[Recommendation]:
    if optimal.within_budget is not False:
        return []
    return [Recommendation("latency", f"no batch size meets the p99 budget; the fastest is batch "
                           f"{optimal.batch_size} at {optimal.latency_p99_ms:.3g} ms: lower precision "
                           "(costeff quantize) or faster hardware", "latency_p99_ms",
                           round(optimal.latency_p99_ms, 3), optimal.latency_budget_ms)]


def _stability(points, optimal, cost, mem) -> list[Recommendation]:
    unstable = [p for p in points if not p.stable]
    if not unstable:
        return []
    return [Recommendation("stability", f"{len(unstable)} of {len(points)} points did not stabilise (batches "
                           f"{', '.join(str(p.batch_size) for p in unstable)}): lengthen the window or "
                           "profile on a quiet machine", "unstable_points", len(unstable), 0)]


def _memory(points, optimal, cost, mem) -> list[Recommendation]:
    peaks = [p.rss_peak_mb for p in points if p.rss_peak_mb]
    if not peaks or not mem:
        return []
    peak, share = max(peaks), max(peaks) / (mem * 1024) * 100
    if share > 50:
        return [Recommendation("memory", f"process RSS peaks at {peak:.0f} MB, {share:.0f}% of host memory: "
                               "cap the batch size or use a larger instance", "rss_peak_pct_of_host",
                               round(share, 1), 50)]
    return [Recommendation("memory", f"process RSS peaks at {peak:.0f} MB ({share:.1f}% of host memory): "
                           f"an instance with {math.ceil(peak * 2 / 1024)} GB leaves 2x headroom",
                           "rss_peak_mb", round(peak, 1), None)]


def _gpu_use(points, optimal, cost, mem) -> list[Recommendation]:
    at = next((p for p in points if p.batch_size == optimal.batch_size and p.concurrency == optimal.concurrency
               and p.gpu is not None), None)
    if at is None:
        return []
    recs = []
    if at.gpu.sm_util_pct is not None and at.gpu.sm_util_pct < 30:
        recs.append(Recommendation("cost", f"GPU busy only {at.gpu.sm_util_pct:.0f}% at the optimal batch: "
                                   "co-host replicas on it or move to a smaller GPU", "sm_util_pct",
                                   round(at.gpu.sm_util_pct, 1), 30))
    share = at.gpu.memory_used_mb / at.gpu.memory_total_mb * 100 if at.gpu.memory_total_mb else None
    if share is not None and share < 25:
        recs.append(Recommendation("memory", f"GPU memory {share:.0f}% used ({at.gpu.memory_used_mb:.0f} of "
                                   f"{at.gpu.memory_total_mb:.0f} MB): room for {int(75 // max(share, 1))} more "
                                   "model instances", "gpu_memory_used_pct", round(share, 1), 25))
    return recs


def _fleet(points, optimal, cost, mem) -> list[Recommendation]:
    if not cost or not cost["instances_needed"] or not cost["target_rate_per_s"]:
        return []
    load = cost["target_rate_per_s"] / (cost["instances_needed"] * cost["throughput_per_s"]) * 100
    msg = (f"{cost['target_rate_per_s']:g} requests/s needs {cost['instances_needed']} x {cost['instance']} "
           f"at {load:.0f}% load: ${cost['usd_per_day']:.2f}/day")
    if load < 30:
        msg += "; most capacity idles: scale to zero when idle (costeff reap) or share the instance"
    return [Recommendation("cost", msg, "fleet_load_pct", round(load, 1), 30)]


def _cheapest(ranking: list[dict[str, Any]]) -> list[Recommendation]:
    if len(ranking) < 2:
        return []
    best, own = ranking[0], next((r for r in ranking if r["profile"] == "this profile"), None)
    if own is None or best is own:
        return [Recommendation("cost", f"this hardware is the cheapest of {len(ranking)} profiled: "
                               f"${own['usd_per_million']:.4g} per million inferences" if own else
                               "no profile of this hardware to compare", "usd_per_million",
                               own["usd_per_million"] if own else None, None)]
    saving = 1 - best["usd_per_million"] / own["usd_per_million"]
    return [Recommendation("cost", f"{best['instance']} ({best['profile']}) serves at ${best['usd_per_million']:.4g} "
                           f"per million inferences, {100 * saving:.0f}% cheaper than this hardware",
                           "usd_per_million", round(best["usd_per_million"], 6), round(own["usd_per_million"], 6))]

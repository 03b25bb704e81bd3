"""Search batcher settings for the cheapest fleet that meets a p99 latency SLO.

Cost is ``instances x price`` (one price unit per instance: a GPU's share of its
node, or one CPU instance). For every (max batch, preferred sizes, queue delay) the
search finds the fewest instances whose simulated p99 meets the SLO; candidates
are ranked by cost, then p99; the best ones are re-simulated on a longer, fresh
arrival stream before one is chosen, so a lucky short run cannot win. A setting that
provably sends the same batches as one already run on the same stream
(``triton_unit.same_schedule``) takes that run's result: same numbers, one run fewer.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from costeff.batching.arrivals import load_trace, poisson_arrivals
from costeff.batching.config import BatcherConfig, OptimizeConfig
from costeff.batching.service import ServiceTimes
from costeff.batching.simulator import SimResult, Stream, simulate_stream
from costeff.batching.triton_unit import same_schedule
from costeff.errors import InputError
from costeff.records.profile import ProfileRecord

DEFAULT_DELAYS_US = (0, 100, 250, 500, 1000, 2000, 5000, 10000)
# More instances stop paying once p99 improves by less than this (the service floor).
_FLAT = 0.98


@dataclass
class BatchingReport:
    """The optimizer's record; ``chosen`` is None when no configuration meets the SLO."""

    schema_version: int
    created_at: str
    costeff_version: str
    model_sha256: str | None
    hardware: dict | None
    profile: dict
    target: dict
    instance: dict
    service_times: dict
    feasible: bool
    chosen: dict | None
    best_achievable: dict | None
    binding: dict | None
    top: list[dict]
    evaluated: list[dict]
    search: dict
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)  # {kind: sha256} of the records it was made from


@dataclass(frozen=True)
class _Context:
    service: ServiceTimes
    arrivals: np.ndarray
    rate: float
    rows: int
    cfg: OptimizeConfig
    price: float
    # Runs so far by (seed, requests, instances): a setting that provably sends the same
    # batches as one of them (triton_unit.same_schedule) takes its result instead of a new run.
    runs: dict[tuple, list[SimResult]] = field(default_factory=dict)
    streams: dict[tuple[int, int], Stream] = field(default_factory=dict)  # by (seed, requests)


def optimize(profile: "Path | str | ProfileRecord | None", config: OptimizeConfig) -> BatchingReport:
    """Choose ``max_batch_size``, preferred sizes, queue delay and instance count.

    Service times come from ``profile``, or from ``config.server_costs`` (a server's own
    statistics, with its per-request cost) when given; ``profile`` may then be None.
    """
    from costeff.batching.service import load_service

    service = load_service(profile, config.server_costs)
    instance = _instance(service, config)
    arrivals, rate = _arrivals(config, config.requests, config.seed)
    price = instance.usd_per_gpu_hour if instance.kind == "gpu" else instance.usd_per_hour
    ctx = _Context(service, arrivals, rate, config.rows_per_request, config, price)
    grid = _grid(service, config)
    if _floor_ms(service, config) > config.p99_ms:
        # Nothing can meet the SLO: only the lowest-latency settings are worth simulating.
        grid = [g for g in grid if g.max_queue_delay_us == 0 and not g.preferred_batch_sizes]
    evaluated = _search(ctx, grid)
    verified = _verify(ctx, evaluated)
    return _report(profile, ctx, instance, grid, evaluated, verified)


def _instance(service: ServiceTimes, cfg: OptimizeConfig):
    from costeff.cost import load_catalog

    catalog = load_catalog(cfg.catalog)
    if cfg.instance:
        return catalog.get(cfg.instance)
    if service.profile_instance and service.profile_instance in catalog.instances:
        return catalog.get(service.profile_instance)
    from costeff.hardware import detect

    return catalog.for_hardware(service.gpu_name, hw=None if service.gpu_name else detect())


def _arrivals(cfg: OptimizeConfig, n: int, seed: int) -> tuple[np.ndarray, float]:
    if cfg.trace is not None:
        arr = load_trace(cfg.trace)
        if arr.size < 2 or arr[-1] <= 0:
            raise InputError(f"{cfg.trace}: need at least two distinct timestamps to replay")
        return arr, (arr.size - 1) / float(arr[-1])
    assert cfg.rate_per_s is not None  # OptimizeConfig requires it unless a trace is replayed
    return poisson_arrivals(cfg.rate_per_s, n, seed), float(cfg.rate_per_s)


def _grid(service: ServiceTimes, cfg: OptimizeConfig) -> list[BatcherConfig]:
    sizes = cfg.max_batch_sizes or tuple(b for b in service.batch_sizes if b <= 1024)
    slo_us = cfg.p99_ms * 1e3
    delays = [d for d in (cfg.queue_delays_us or DEFAULT_DELAYS_US) if d < slo_us] or [0]
    grid = []
    for b in sorted(set(sizes)):
        if b < cfg.rows_per_request:
            continue
        for prefs in _preferred_options(b, cfg.policy):
            grid += [BatcherConfig(b, prefs, float(d), 1, cfg.policy) for d in delays]
    if not grid:
        raise InputError(f"max_batch_sizes: none holds a request of {cfg.rows_per_request} rows")
    return grid


def _preferred_options(max_bs: int, policy: str) -> list[tuple[int, ...]]:
    """No preferred size (Triton uses max_batch_size) and ladders of halves below it."""
    if policy == "mlserver":
        return [()]
    options: list[tuple[int, ...]] = [()]
    for depth in (1, 2, 3):
        ladder = tuple(sorted({max_bs >> s for s in range(1, depth + 1) if max_bs >> s >= 1}))
        if ladder and ladder not in options:
            options.append(ladder)
    return options


def _simulate(ctx: _Context, bc: BatcherConfig, arrivals: np.ndarray, seed: int) -> dict:
    runs = ctx.runs.setdefault((seed, arrivals.size, bc.instances), [])
    for ran in runs:
        if ran.seen is not None and same_schedule(ran.config, bc, ran.seen):
            return _candidate(ctx, dataclasses.replace(ran, config=bc, seen=None))
    stream = ctx.streams.get((seed, arrivals.size))
    if stream is None:
        sigma = ctx.service.sigma if ctx.cfg.jitter else 0.0
        stream = ctx.streams[seed, arrivals.size] = Stream.of(arrivals, sigma, seed)
    res = simulate_stream(stream, ctx.service, bc, rows=ctx.rows)
    runs.append(res)
    return _candidate(ctx, res)


def _candidate(ctx: _Context, res: SimResult) -> dict:
    bc = res.config
    usd_per_hour = bc.instances * ctx.price
    meets = res.rejected == 0 and res.latency_p99_ms <= ctx.cfg.p99_ms
    return {
        "max_batch_size": bc.max_batch_size, "preferred_batch_size": list(bc.preferred_batch_sizes),
        "max_queue_delay_us": bc.max_queue_delay_us, "instances": bc.instances, "policy": bc.policy,
        "meets_slo": meets,
        "predicted": {
            "p50_ms": res.latency_p50_ms, "p90_ms": res.latency_p90_ms, "p99_ms": res.latency_p99_ms,
            "mean_ms": res.latency_mean_ms, "queue_mean_ms": res.queue_mean_ms,
            "mean_batch_size": res.mean_batch_size, "utilisation": list(res.utilisation),
            "utilisation_mean": res.utilisation_mean, "throughput_per_s": res.throughput_per_s,
            "rejected": res.rejected, "requests": res.requests, "batch_histogram": res.batch_histogram,
            "extrapolated_service_time": res.extrapolated,
            "usd_per_hour": usd_per_hour,
            "usd_per_million": usd_per_hour / (ctx.rate * 3600.0) * 1e6,
        },
    }


def _search(ctx: _Context, grid: list[BatcherConfig]) -> list[dict]:
    """Fewest instances meeting the SLO per batcher setting; beyond the best count + 1 nothing can rank."""
    cap = ctx.cfg.max_instances
    evaluated: list[dict] = []
    for bc in grid:
        # Above max_instances, one run at the limit still gives the best achievable p99.
        lo = min(_min_instances(ctx, bc.max_batch_size), ctx.cfg.max_instances)
        prev = math.inf
        for n in range(lo, cap + 1):
            cand = _simulate(ctx, _with(bc, n), ctx.arrivals, ctx.cfg.seed)
            evaluated.append(cand)
            p99 = cand["predicted"]["p99_ms"]
            if cand["meets_slo"]:
                cap = min(cap, n + 1)
                break
            if cand["predicted"]["rejected"] == 0 and p99 > _FLAT * prev:
                break  # at the service floor: more instances will not meet the SLO
            prev = p99
    return evaluated


def _with(bc: BatcherConfig, instances: int) -> BatcherConfig:
    return BatcherConfig(bc.max_batch_size, bc.preferred_batch_sizes, bc.max_queue_delay_us,
                         instances, bc.policy, bc.default_timeout_us, bc.max_queue_size)


def _min_instances(ctx: _Context, max_bs: int) -> int:
    """Fewer instances than offered rows / peak throughput can only build an endless queue."""
    max_rows = max_bs * (ctx.rows if ctx.cfg.policy == "mlserver" else 1)
    peak = ctx.service.peak_throughput_per_s(max_rows, ctx.rows)
    return max(1, math.ceil(ctx.rate * ctx.rows / peak))


def _rank_key(c: dict) -> tuple:
    return (not c["meets_slo"], c["predicted"]["usd_per_hour"], c["predicted"]["p99_ms"])


def _verify(ctx: _Context, evaluated: list[dict]) -> list[dict]:
    """Re-simulate the best candidates on a longer, independent stream."""
    feasible = sorted((c for c in evaluated if c["meets_slo"]), key=_rank_key)[: ctx.cfg.top]
    if not feasible:
        return []
    n = ctx.cfg.requests * ctx.cfg.verify_factor
    arrivals = ctx.arrivals if ctx.cfg.trace is not None else _arrivals(ctx.cfg, n, ctx.cfg.seed + 1)[0]
    out = []
    for c in feasible:
        bc = BatcherConfig(c["max_batch_size"], tuple(c["preferred_batch_size"]), c["max_queue_delay_us"],
                           c["instances"], c["policy"])
        out.append(_simulate(ctx, bc, arrivals, ctx.cfg.seed + 1))
    return sorted(out, key=_rank_key)


def _floor_ms(svc: ServiceTimes, cfg: OptimizeConfig) -> float:
    """p99 of one request served alone, with no queue."""
    return svc.time_ms(cfg.rows_per_request) * (svc.p99_factor() if cfg.jitter else 1.0)


def _binding(ctx: _Context, evaluated: list[dict]) -> dict:
    """Which constraint keeps every configuration above the SLO, and the best p99 reached."""
    svc, cfg = ctx.service, ctx.cfg
    best = min(evaluated, key=lambda c: (c["predicted"]["rejected"], c["predicted"]["p99_ms"]))
    floor_ms = _floor_ms(svc, cfg)
    largest = max(svc.batch_sizes)
    capacity = cfg.max_instances * svc.peak_throughput_per_s(largest, cfg.rows_per_request)
    if floor_ms > cfg.p99_ms:
        name, detail = "service_time", (f"one request alone takes {floor_ms:.3g} ms at p99 "
                                        f"(batch {cfg.rows_per_request}), above the {cfg.p99_ms:g} ms SLO")
    elif ctx.rate * cfg.rows_per_request >= capacity:
        name, detail = "max_instances", (f"{ctx.rate:.6g} requests/s exceed what {cfg.max_instances} instances "
                                         f"serve at best ({capacity:.6g} rows/s at batch {largest})")
    else:
        name, detail = "queueing", (f"queueing and batching delay keep p99 above {cfg.p99_ms:g} ms with up to "
                                    f"{cfg.max_instances} instances; raise --max-instances or the SLO")
    return {"constraint": name, "detail": detail, "best_p99_ms": best["predicted"]["p99_ms"],
            "service_floor_p99_ms": floor_ms, "capacity_rows_per_s": capacity}


def _report(profile, ctx: _Context, instance, grid, evaluated, verified) -> BatchingReport:
    from costeff.artifacts import inputs_of, provenance

    header = provenance(None, hardware=False)
    svc, cfg = ctx.service, ctx.cfg
    chosen = verified[0] if verified and verified[0]["meets_slo"] else None
    ranked = verified + sorted((c for c in evaluated if not c["meets_slo"]), key=_rank_key)
    best = None if chosen else min(evaluated, key=lambda c: (c["predicted"]["rejected"], c["predicted"]["p99_ms"]))
    path = str(profile) if isinstance(profile, (str, Path)) else None
    return BatchingReport(
        schema_version=header["schema_version"], created_at=header["created_at"],
        costeff_version=header["costeff_version"], model_sha256=svc.model_sha256,
        hardware=dict(svc.hardware) if svc.hardware else None,
        profile={"path": path, "model_sha256": svc.model_sha256, "provider": svc.provider},
        target={"rate_per_s": ctx.rate, "p99_ms": cfg.p99_ms, "policy": cfg.policy,
                "arrivals": str(cfg.trace) if cfg.trace else "poisson", "requests": int(ctx.arrivals.size),
                "verify_requests": cfg.requests * cfg.verify_factor if cfg.trace is None else int(ctx.arrivals.size),
                "rows_per_request": cfg.rows_per_request, "seed": cfg.seed, "jitter": cfg.jitter},
        instance={"name": instance.name, "kind": instance.kind, "usd_per_instance_hour": ctx.price,
                  "price_source": f"{instance.source}, {instance.as_of}"},
        service_times={"batch_sizes": list(svc.batch_sizes), "mean_ms": list(svc.mean_ms),
                       "lognormal_sigma": svc.sigma, "extrapolated_above": svc.extrapolated_above,
                       "per_request_ms": svc.per_request_ms, "source": svc.source},
        feasible=chosen is not None, chosen=chosen, best_achievable=best,
        binding=None if chosen else _binding(ctx, evaluated),
        top=ranked[: cfg.top], evaluated=evaluated,
        search={"batcher_settings": len(grid), "simulations": len(evaluated) + len(verified),
                "max_instances": cfg.max_instances,
                "max_batch_sizes": sorted({g.max_batch_size for g in grid}),
                "queue_delays_us": sorted({g.max_queue_delay_us for g in grid})},
        inputs=inputs_of(profile=path),
    )

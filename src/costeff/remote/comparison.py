"""Measured MLServer adaptive batching vs ``costeff.batching.simulate(policy="mlserver")``.

The check is falsifiable: the server runs a model with adaptive batching on, driven
at a fixed Poisson rate; the simulator gets the same settings, the same rate and the
service time per batch size measured on the *same server* (an unbatched copy of the
model, closed loop, one client). If the simulator modelled the batching rule wrongly
(e.g. dispatching a lone request at once, as Triton does when an instance is idle and
no delay is set) its mean batch size would be about 1 while MLServer's, which holds
the batch open for ``max_batch_time``, is about ``1 + rate x max_batch_time``.

Mean executed batch size is counted per batch: a request that ran in a batch of B
contributes 1/B of a batch, so ``batches = sum(1/B)`` and ``mean = requests / batches``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from costeff.gates import Gate, check
from costeff.remote.client import Endpoint, connect, read_signature

# Tolerances, from repeated runs on a loaded 2-core machine where client and server
# share the cores (see the module docstring of tests/test_remote_mlserver.py):
# the mean batch size is set by the batching rule and the rate, so it must agree
# closely; latency adds scheduling noise of the shared CPU and the client's own
# overhead, which the service-time profile counts once per batch, so p50 and p99 are
# held to within a factor (p99 looser: one descheduled process moves the tail).
# Both still reject a wrong rule: dispatching lone requests at once would predict a
# mean batch near 1 (~75 % off at 300/s) and a p50 of one service time (~1-2 ms,
# a factor ~7 below what MLServer's held-open batches give).
BATCH_TOLERANCE_PCT = 25.0
P50_FACTOR = 2.5
P99_FACTOR = 5.0


@dataclass
class SimulatorComparison:
    server: dict[str, Any]
    policy: str
    max_batch_size: int
    max_batch_time_ms: float
    rate_per_s: float
    requests_measured: int
    service_times: dict[str, Any]
    measured: dict[str, Any]
    predicted: dict[str, Any]
    ratios: dict[str, float | None]
    gates: list[Gate]
    tolerance: str
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)


def compare_with_simulator(url: str, model_name: str, service_model_name: str, *, protocol: str = "grpc",
                           max_batch_size: int, max_batch_time_ms: float, rate_per_s: float, config: Any = None,
                           batch_output: str = "executed_batch", seed: int = 0) -> SimulatorComparison:
    """Drive ``model_name`` (adaptive batching on) at ``rate_per_s`` and compare with the simulator.

    ``service_model_name`` serves the same model without batching; its closed-loop
    latency at each batch size is the simulator's service time.
    """
    from costeff.profiling import ProfileConfig

    config = config or ProfileConfig(window_s=1.0, max_trials=6)
    service = _service_times(url, service_model_name, protocol, max_batch_size, config)
    measured = _measure(url, model_name, protocol, rate_per_s, config, batch_output, seed)
    predicted = _predict(service, max_batch_size, max_batch_time_ms, rate_per_s, seed)
    return _compare(Endpoint(url, protocol, model_name), service, measured, predicted, max_batch_size,
                    max_batch_time_ms, rate_per_s)


def _service_times(url: str, name: str, protocol: str, max_batch_size: int, config: Any) -> Any:
    from dataclasses import replace

    from costeff._jsonable import to_jsonable
    from costeff.batching import ServiceTimes
    from costeff.remote.profile import profile_remote

    sizes = sorted({1, max_batch_size} | {b for b in (2, 4, 8, 16, 32, 64) if b < max_batch_size})
    report = profile_remote(url, name, protocol, replace(config, batch_sizes=tuple(sizes), concurrency=(1,)))
    from costeff.records.kinds import PROFILE

    return ServiceTimes.from_profile(PROFILE.parse(to_jsonable(report), f"the profile of {url} {name}"))


def _measure(url: str, name: str, protocol: str, rate: float, config: Any, batch_output: str,
             seed: int) -> dict[str, Any]:
    from costeff.remote.profile import open_loop

    endpoint = Endpoint(url, protocol, name)
    sig = read_signature(connect(endpoint), endpoint)
    point, result = open_loop(endpoint, sig, None, config, rate, 1, outputs=(batch_output,),
                              extract=lambda r: int(r.as_numpy(batch_output).reshape(-1)[0]), seed=seed)
    sizes = np.asarray(result.extracted, dtype=np.float64)
    batches = float((1.0 / sizes).sum()) if sizes.size else 0.0
    return {"p50_ms": point.latency_ms.p50, "p99_ms": point.latency_ms.p99, "mean_ms": point.latency_ms.mean,
            "mean_batch_size": sizes.size / batches if batches else None, "batches": round(batches),
            "requests": int(sizes.size), "throughput_per_s": point.requests_per_s, "stable": point.stable,
            "start_delay_p99_ms": point.extra.get("start_delay_p99_ms")}


def _predict(service: Any, max_batch_size: int, max_batch_time_ms: float, rate: float, seed: int) -> Any:
    from costeff.batching import BatcherConfig, poisson_arrivals, simulate

    cfg = BatcherConfig(max_batch_size=max_batch_size, preferred_batch_sizes=(),
                        max_queue_delay_us=max_batch_time_ms * 1000.0, instances=1, policy="mlserver")
    return simulate(poisson_arrivals(rate, 50_000, seed=seed), service, cfg, rows=1, seed=seed)


def _compare(endpoint: Endpoint, service: Any, measured: dict[str, Any], sim: Any, max_batch_size: int,
             max_batch_time_ms: float, rate: float) -> SimulatorComparison:
    predicted = {"p50_ms": sim.latency_p50_ms, "p99_ms": sim.latency_p99_ms, "mean_ms": sim.latency_mean_ms,
                 "mean_batch_size": sim.mean_batch_size, "utilisation": sim.utilisation_mean}
    ratios = {k: _ratio(measured[k], predicted[k]) for k in ("p50_ms", "p99_ms", "mean_batch_size")}
    batch_err = abs(ratios["mean_batch_size"] - 1) * 100 if ratios["mean_batch_size"] is not None else None
    gates = [check("mean batch size within tolerance (% off)", batch_err, "<=", BATCH_TOLERANCE_PCT),
             check("p50 within factor", _factor(ratios["p50_ms"]), "<=", P50_FACTOR),
             check("p99 within factor", _factor(ratios["p99_ms"]), "<=", P99_FACTOR)]
    return SimulatorComparison(
        server={"url": endpoint.url, "protocol": endpoint.protocol, "model_name": endpoint.model_name},
        policy="mlserver", max_batch_size=max_batch_size, max_batch_time_ms=max_batch_time_ms, rate_per_s=rate,
        requests_measured=measured["requests"],
        service_times={"batch_sizes": list(service.batch_sizes), "mean_ms": list(service.mean_ms),
                       "sigma": service.sigma, "source": "closed-loop latency, one client, same server"},
        measured=measured, predicted=predicted, ratios=ratios, gates=gates,
        tolerance=(f"mean batch size within {BATCH_TOLERANCE_PCT:g} %, p50 within x{P50_FACTOR:g}, "
                   f"p99 within x{P99_FACTOR:g} (client and server share the CPU; see costeff.remote.comparison)"))


def _ratio(measured: float | None, predicted: float | None) -> float | None:
    if measured is None or predicted is None or not predicted > 0:
        return None
    return float(measured) / float(predicted)


def _factor(ratio: float | None) -> float | None:
    return None if ratio is None or not ratio > 0 else max(ratio, 1.0 / ratio)


def to_markdown(c: SimulatorComparison) -> str:
    rows = [("p50 latency (ms)", "p50_ms"), ("p99 latency (ms)", "p99_ms"), ("mean executed batch", "mean_batch_size")]
    lines = [f"## Simulator vs {c.server['protocol']} server ({c.policy} adaptive batching)", "",
             f"max_batch_size {c.max_batch_size}, max_batch_time {c.max_batch_time_ms:g} ms, Poisson "
             f"{c.rate_per_s:g} requests/s, {c.requests_measured} requests measured.", "",
             "| metric | measured | predicted | measured/predicted |", "| --- | --- | --- | --- |"]
    for label, key in rows:
        lines.append(f"| {label} | {_fmt(c.measured.get(key))} | {_fmt(c.predicted.get(key))} | "
                     f"{_fmt(c.ratios.get(key))} |")
    lines += ["", f"Tolerance: {c.tolerance}.", ""]
    lines += [f"- {g.verdict.value} {g.name}: {_fmt(g.observed)} {g.comparator} {g.threshold}" for g in c.gates]
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)

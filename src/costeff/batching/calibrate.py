"""``costeff batching calibrate``: measure a Triton server's per-batch and per-request cost.

The load is short and closed-loop, in phases, each between two snapshots of the
model's statistics (``/v2/models/NAME/stats``):

* one-row requests at a few concurrencies: the dynamic batcher forms batches of
  ``B`` requests carrying ``R = B`` rows;
* one client sending requests of several rows (8, 32, ... up to the model's
  ``max_batch_size``): executions of one request carrying ``R`` rows.

The phases run in ``rounds`` interleaved rounds (each with its own snapshots), so a
burst of other work on the host falls on every kind of phase alike rather than on one.
The second kind tells rows and requests apart, so the fit
``t = a + b * rows + c * requests`` (``costeff.batching.server_stats``) can say what
a request costs on its own. ``server_costs.json`` keeps the raw snapshots of every
phase (the fit can be redone from them), the client-side latency of each phase and
the fit. Other traffic to the model during calibration would be counted too: run it
against a server nobody else is using.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from costeff.batching.server_stats import SCHEMA, fit_phases, ladder, phase_delta
from costeff.errors import CosteffError, DependencyError, InputError

Z99 = 2.3263478740408408


@dataclass(frozen=True)
class CalibrateConfig:
    concurrencies: tuple[int, ...] = (1, 4, 16)  # one-row requests
    rows: tuple[int, ...] = (8, 32)  # one client, requests of this many rows
    requests: int = 400  # per phase, over all rounds
    warmup: int = 20  # per phase and round, before the first snapshot
    protocol: str = "http"
    rounds: int = 3

    def __post_init__(self) -> None:
        for name in ("concurrencies", "rows"):
            values = getattr(self, name)
            if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
                raise InputError(f"--{name}: expected integers >= 1, got {list(values)}")
        if not self.concurrencies:
            raise InputError("--concurrencies: at least one concurrency is needed")
        if isinstance(self.requests, bool) or not isinstance(self.requests, int) or self.requests < 20:
            raise InputError(f"--requests: expected an integer >= 20 per phase, got {self.requests!r}")
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or not 1 <= self.rounds <= self.requests:
            raise InputError(f"--rounds: expected an integer from 1 to --requests, got {self.rounds!r}")


def calibrate(url: str, model: str, config: CalibrateConfig | None = None) -> dict[str, Any]:
    """Drive the phases against ``model`` at ``url`` and fit its costs; the ``server_costs.json`` record."""
    from costeff.artifacts import provenance
    from costeff.remote.client import Endpoint, connect, read_signature, remote_failure

    config = config or CalibrateConfig()
    endpoint = Endpoint(url, config.protocol, model)
    client = connect(endpoint)
    try:
        sig = read_signature(client, endpoint)
        max_bs = _max_batch_size(client, endpoint)
        kinds = [(f"one-row x{c}", 1, c) for c in config.concurrencies]
        kinds += [(f"{r} rows x1", r, 1) for r in sorted(set(config.rows)) if r <= max_bs]
        phases = [dict(_phase(client, endpoint, sig, name, rows, conc, config), round=k)
                  for k in range(config.rounds) for name, rows, conc in kinds]
    except CosteffError:
        raise
    except Exception as exc:  # tritonclient raises InferenceServerException, socket and HTTP errors
        raise remote_failure(endpoint, exc) from None
    fit = fit_phases(phases, model)
    header = provenance(None, hardware=False)
    single = [p for p in phases if p["rows_per_request"] == 1 and p["concurrency"] == 1]
    return {
        "schema": SCHEMA, "schema_version": header["schema_version"], "created_at": header["created_at"],
        "costeff_version": header["costeff_version"],
        "server": {"url": endpoint.url, "protocol": endpoint.protocol, "model_name": model},
        "max_batch_size": max_bs, "batch_sizes": ladder(max_bs),
        "fit": fit.to_dict(),
        "sigma": _sigma(single), "client_overhead_ms": _overhead(single),
        "phases": phases,
        "notes": ["execution time = compute_input + compute_infer + compute_output of Triton's batch_stats; "
                  "client_overhead_ms = one-row client latency at concurrency 1 minus the server's own "
                  "per-request time (success): protocol and client, not the model instance"],
    }


def _max_batch_size(client: Any, endpoint: Any) -> int:
    if endpoint.protocol == "grpc":
        cfg = client.get_model_config(endpoint.model_name, as_json=True).get("config", {})
    else:
        cfg = client.get_model_config(endpoint.model_name)
    max_bs = int(cfg.get("max_batch_size") or 0)
    if max_bs < 1:
        raise InputError(f"{endpoint.address}: model {endpoint.model_name!r} has max_batch_size 0 (no batching); "
                         "there is no batcher to calibrate")
    return max_bs


def snapshot(client: Any, endpoint: Any) -> dict[str, Any]:
    """The model's statistics now (HTTP: JSON numbers; gRPC: protobuf JSON with string counters)."""
    if endpoint.protocol == "grpc":
        return client.get_inference_statistics(endpoint.model_name, as_json=True)
    return client.get_inference_statistics(endpoint.model_name)


def _phase(client: Any, endpoint: Any, sig: Any, name: str, rows: int, concurrency: int,
           config: CalibrateConfig) -> dict[str, Any]:
    from costeff.profiling import build_feed
    from costeff.remote.client import make_call

    call = make_call(endpoint, sig, build_feed(sig, rows, None))
    per_thread = max(1, math.ceil(config.requests / config.rounds / concurrency))
    warm = max(1, math.ceil(config.warmup / concurrency))

    def loop(count: int) -> list[float]:
        out = []
        for _ in range(count):
            t = time.perf_counter_ns()
            call()
            out.append((time.perf_counter_ns() - t) / 1e6)
        return out

    with ThreadPoolExecutor(concurrency, thread_name_prefix="costeff-calibrate") as pool:
        list(pool.map(loop, [warm] * concurrency))
        before = snapshot(client, endpoint)
        started = time.perf_counter()
        latencies = np.concatenate([np.asarray(x) for x in pool.map(loop, [per_thread] * concurrency)])
        seconds = time.perf_counter() - started
        after = snapshot(client, endpoint)
    delta = phase_delta(before, after, endpoint.model_name, name)
    if delta["requests"] < latencies.size:
        raise DependencyError(f"{endpoint.address}: the statistics of {endpoint.model_name!r} counted "
                              f"{delta['requests']} requests during a phase that sent {latencies.size}; "
                              "is this the server the load went to?")
    p50, p99 = np.percentile(latencies, [50, 99])
    return {"name": name, "rows_per_request": rows, "concurrency": concurrency,
            "client": {"requests": int(latencies.size), "seconds": seconds, "requests_per_s": latencies.size / seconds,
                       "p50_ms": float(p50), "p99_ms": float(p99), "mean_ms": float(latencies.mean())},
            "server": {"executions": delta["executions"], "requests": delta["requests"], "rows": delta["rows"],
                       "mean_batch_rows": delta["rows"] / delta["executions"] if delta["executions"] else None,
                       "request_ms": delta["success_ns"] / delta["requests"] / 1e6 if delta["requests"] else None,
                       "queue_ms": delta["queue_ns"] / delta["requests"] / 1e6 if delta["requests"] else None},
            "before": before, "after": after}


def _sigma(phases: list[dict[str, Any]]) -> float:
    """Lognormal spread of one request alone: client p99/p50 at concurrency 1 less the server's mean queue
    time (a lone request waits out the queue delay: a constant, not spread); median over rounds."""
    sigmas = []
    for p in phases:
        queue = p["server"]["queue_ms"] or 0.0
        p50, p99 = p["client"]["p50_ms"] - queue, p["client"]["p99_ms"] - queue
        if 0 < p50 < p99:
            sigmas.append(math.log(p99 / p50) / Z99)
    return float(np.median(sigmas)) if sigmas else 0.0


def _overhead(phases: list[dict[str, Any]]) -> float | None:
    """Client latency beyond the server's own time per request, one-row at concurrency 1 (median over rounds)."""
    gaps = [p["client"]["mean_ms"] - p["server"]["request_ms"] for p in phases if p["server"]["request_ms"]]
    return max(0.0, float(np.median(gaps))) if gaps else None


def observe(url: str, model: str, rate_per_s: float, seconds: int, *, protocol: str = "grpc",
            seed: int = 0) -> dict[str, Any]:
    """Open-loop Poisson one-row requests at ``rate_per_s`` for ``seconds``: what the server's counters and
    the client saw. ``send_times_s`` are when requests actually left (a loaded client sends late, and late
    requests arrive together): the arrival stream to give the simulator for a like-for-like comparison."""
    from costeff.batching.server_stats import phase_delta
    from costeff.profiling import build_feed
    from costeff.remote.client import Endpoint, connect, make_call, read_signature
    from costeff.remote.openloop import run_open_loop

    endpoint = Endpoint(url, protocol, model)
    client = connect(endpoint)
    sig = read_signature(client, endpoint)
    feed = build_feed(sig, 1, None)
    sent: list[float] = []  # list.append is atomic: the client threads share it
    before = snapshot(client, endpoint)
    result = run_open_loop(lambda: make_call(endpoint, sig, feed, on_send=lambda: sent.append(time.perf_counter())),
                           rate_per_s, warmup_s=0.0, window_s=1.0, stable_windows=seconds, max_trials=seconds,
                           stability_pct=1e9, seed=seed)
    after = snapshot(client, endpoint)
    delta = phase_delta(before, after, model, "observation")
    sends = np.sort(np.asarray(sent))
    return {"rate_per_s": rate_per_s, "requests": len(sent), "server_requests": delta["requests"],
            "mean_batch_rows": delta["rows"] / delta["executions"] if delta["executions"] else None,
            "send_times_s": sends - sends[0] if sends.size else sends,
            "latencies_ms": result.latencies_ms, "start_delay_ms": result.start_delay_ms}


def write(record: dict[str, Any], out_dir: Path) -> Path:
    from costeff.artifacts import atomic_write_json

    return atomic_write_json(Path(out_dir) / "server_costs.json", record)

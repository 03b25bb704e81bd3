"""``profile_remote``: profile a model behind an Open Inference Protocol server.

The closed-loop sweep (batch size x client concurrency) runs through
``costeff.profiling.measure`` so warm-up, windows and the stability rule are the ones
local profiling uses; ``request_rates`` add open-loop points (Poisson arrivals,
latency from the scheduled send time, see ``costeff.remote.openloop``).
"""

from __future__ import annotations

import functools
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from costeff.errors import CosteffError, InputError
from costeff.remote.client import Endpoint, connect, make_call, read_signature, remote_failure
from costeff.remote.openloop import DEFAULT_MAX_IN_FLIGHT, OpenLoopResult, run_open_loop


@functools.cache
def _report_class() -> type:
    from costeff.profiling import ProfileReport

    @dataclass
    class RemoteProfileReport(ProfileReport):
        """A ProfileReport of a remote server: which load generator measured it, optionally the
        batching-simulator comparison."""

        simulator_comparison: Any = None
        load_generator: dict[str, Any] = field(default_factory=dict)

        def markdown(self) -> str:
            from costeff.remote import loadgen

            text = super().markdown()
            if self.load_generator:
                text += "\n" + loadgen.markdown(self.load_generator, self.points)
            if self.simulator_comparison is not None:
                from costeff.remote.comparison import to_markdown

                text += "\n" + to_markdown(self.simulator_comparison)
            return text

        def write(self, out_dir: Path | str) -> list[Path]:
            from costeff.remote import loadgen

            runs = getattr(self, "_runs", [])
            if runs:  # before the JSON: a folder holding gpu_profile.json is complete
                loadgen.write_runs(Path(out_dir), runs, getattr(self, "_input_data", None))
            return super().write(out_dir)

    return RemoteProfileReport


def profile_remote(url: str, model_name: str, protocol: str = "http", config: Any = None,
                   request_rates: list[float] | tuple[float, ...] | None = None,
                   observations: np.ndarray | None = None, *, model_version: str = "",
                   max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, progress: Any = None,
                   load_generator: str = "costeff", perf_analyzer: Path | None = None,
                   cache: Path | None = None) -> Any:
    """Measure ``model_name`` at ``url``; returns a ProfileReport (``provider`` ``remote:<protocol>``).

    Inputs come from the server's model metadata; ``observations`` fill the first input
    (cycled to each batch size), other inputs are seeded standard-normal.
    ``load_generator`` is ``costeff`` (this package's client), ``perf_analyzer`` or
    ``auto`` (perf_analyzer when installed and the server is Triton, see
    ``costeff.remote.loadgen``); ``auto`` and ``perf_analyzer`` look for an installed one in the Triton
    environment under ``cache`` (the home's, ``costeff.home``).
    """
    from costeff.profiling import ProfileConfig, assemble_report, check_observations
    from costeff.remote import loadgen

    config = config or ProfileConfig()
    rates = _rates(request_rates)
    endpoint = Endpoint(url, protocol, model_name, model_version)
    started = time.perf_counter()
    client = connect(endpoint)
    sig = read_signature(client, endpoint)
    obs = check_observations(sig, observations, "observations")
    server = _server_metadata(client, endpoint)
    pa, reason = loadgen.choose(load_generator, perf_analyzer, server, cache)
    with tempfile.TemporaryDirectory(prefix="costeff-perf-analyzer-") as tmp:
        runs: list[Any]
        if pa is None:
            points, runs = _run(endpoint, sig, obs, config, rates, max_in_flight, progress), []
        else:
            from costeff.remote.perf_analyzer import sweep

            points, runs = sweep(pa, endpoint, sig, obs, config, rates, Path(tmp), progress)
        inputs = {"source": "observations" if obs is not None else "seeded standard-normal inputs",
                  "tensors": [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in sig.inputs]}
        target = {"kind": "remote", "url": endpoint.url, "protocol": protocol, "model_name": model_name,
                  "model_version": model_version, "server": server}
        report = assemble_report(points, config, model_path=None, provider=f"remote:{protocol}", inputs=inputs,
                                 duration_s=time.perf_counter() - started, target=target)
        remote = _report_class()(**{f: getattr(report, f) for f in report.__dataclass_fields__},
                                 load_generator=loadgen.record(pa, reason, runs, max_in_flight))
        remote._runs = runs
        remote._input_data = (Path(tmp) / "input_data.json").read_bytes() if runs else None
    return remote


def _rates(request_rates: Any) -> tuple[float, ...]:
    rates = tuple(float(r) for r in (request_rates or ()))
    bad = [r for r in rates if not 0 < r < float("inf")]
    if bad:
        raise InputError(f"--request-rate: {bad} must be finite numbers > 0 requests/s")
    return rates


def _run(endpoint: Endpoint, sig: Any, obs: Any, config: Any, rates: tuple[float, ...], max_in_flight: int,
         progress: Any) -> list[Any]:
    try:
        points = _closed_loop(endpoint, sig, obs, config, progress)
        for rate in rates:
            points += [open_loop(endpoint, sig, obs, config, rate, b, max_in_flight)[0] for b in config.batch_sizes]
        return points
    except CosteffError:
        raise
    except Exception as exc:  # tritonclient raises InferenceServerException, socket and HTTP errors
        raise remote_failure(endpoint, exc) from None


def _closed_loop(endpoint: Endpoint, sig: Any, obs: Any, config: Any, progress: Any) -> list[Any]:
    from functools import partial

    from costeff.profiling import build_feed, measure

    points = []
    for conc in config.concurrency:
        for batch in config.batch_sizes:
            if progress is not None:
                progress.advance(0, description=f"remote batch {batch}, concurrency {conc}")
            feed = build_feed(sig, batch, obs)
            point = measure(None, batch, config.measure_config(conc),
                            infer_factory=partial(make_call, endpoint, sig, feed))
            point.gpu_null_reason = "remote server: GPU telemetry is the server's (not sampled by the client)"
            point.extra["load_generator"] = "costeff"
            points.append(point)
            if progress is not None:
                progress.advance(1)
    return points


def open_loop(endpoint: Endpoint, sig: Any, obs: Any, config: Any, rate: float, batch: int,
              max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, outputs: tuple[str, ...] | None = None, extract: Any = None,
              seed: int = 0) -> tuple[Any, OpenLoopResult]:
    """One open-loop Point at ``rate`` requests/s of ``batch`` rows, and the per-request result."""
    from costeff.profiling import build_feed

    feed = build_feed(sig, batch, obs)
    result = run_open_loop(lambda: make_call(endpoint, sig, feed, outputs), rate, batch_size=batch,
                           warmup_s=max(config.warmup_s, 0.2), window_s=config.window_s,
                           stable_windows=config.stable_windows, max_trials=config.max_trials,
                           stability_pct=config.stability_pct, max_in_flight=max_in_flight, seed=seed,
                           extract=extract)
    return _point(result, batch, rate, max_in_flight), result


def _point(result: OpenLoopResult, batch: int, rate: float, max_in_flight: int) -> Any:
    """The open-loop Point: throughput is the achieved reply rate, latency from the scheduled send time."""
    from costeff.profiling import Point, latency_stats

    pooled = result.latencies_ms
    point = Point(batch_size=batch, concurrency=max_in_flight,
                  throughput_per_s=result.achieved_rate_per_s * batch, requests_per_s=result.achieved_rate_per_s,
                  latency_ms=latency_stats(pooled * 1e6), stable=result.stable, trials=len(result.windows),
                  requests=int(pooled.size), windows=result.windows, request_rate=rate,
                  late_requests=result.late_sends,
                  gpu_null_reason="remote server: GPU telemetry is the server's (not sampled by the client)")
    point.extra = {"load_generator": "costeff", "mode": "open-loop Poisson", "latency_from": "scheduled send time",
                   "asked_rate_per_s": rate, "scheduled_rate_per_s": result.scheduled_rate_per_s,
                   "offered_rate_per_s": result.offered_rate_per_s, "achieved_rate_per_s": result.achieved_rate_per_s,
                   "late_sends": result.late_sends, "late_send_pct": result.late_send_pct,
                   "late_send_threshold_ms": result.late_threshold_ms, "max_in_flight": max_in_flight,
                   "in_flight_peak": result.in_flight_peak, "cap_waits": result.cap_waits,
                   "start_delay_p99_ms": float(np.percentile(result.start_delay_ms, 99)) if pooled.size else None,
                   "unstable_reasons": result.unstable_reasons}
    return point


def _server_metadata(client: Any, endpoint: Endpoint) -> dict[str, Any]:
    try:
        meta = client.get_server_metadata(as_json=True) if endpoint.protocol == "grpc" else client.get_server_metadata()
    except Exception:  # noqa: BLE001 - the name/version is informative only
        return {}
    return {"name": meta.get("name"), "version": meta.get("version")}

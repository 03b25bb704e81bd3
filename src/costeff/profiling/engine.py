"""``profile(model, config) -> ProfileReport``: sweep an ONNX policy on onnxruntime."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from costeff.errors import InputError
from costeff.profiling.analysis import cost_for, load_compare, recommendations, right_size, select_optimal
from costeff.profiling.config import ProfileConfig
from costeff.profiling.measure import Point, measure
from costeff.profiling.report import ProfileReport
from costeff.profiling.resources import GPU_PROVIDERS, ResourceSampler, gpu_unused_reason, sampler_for

if TYPE_CHECKING:
    from costeff.records.profile import ProfileRecord

OWN_LABEL = "this profile"


def profile(model_path: Path | str, config: ProfileConfig = ProfileConfig(), observations: np.ndarray | None = None,
            progress: Any = None, *, observations_source: str = "observations") -> ProfileReport:
    """Measure ``model_path`` at every batch size x concurrency in ``config``.

    ``observations`` ([rows, *sample_shape]) fill the first input, cycled to each
    batch size; without them inputs are seeded standard-normal of the graph's dtypes.
    ``progress`` is anything with ``advance(n, description=None)``.
    """
    from costeff.modelio import read_signature
    from costeff.runtimes import open_runner

    started = time.perf_counter()
    sig = read_signature(model_path)
    obs = check_observations(sig, observations, observations_source)
    compared = [(str(p), load_compare(p)) for p in config.compare]  # bad --compare fails before measuring
    _same_model(model_path, compared)
    check_catalog(config)
    runner = open_runner(model_path, options=config.runtime_options())
    used = getattr(runner, "provider", "OpenVINO CPU")
    points = sweep(runner, sig, obs, config, used, progress)
    inputs = {"source": _source_text(observations_source if obs is not None else None, sig),
              "tensors": [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in sig.inputs],
              "runtime": {"backend": runner.backend, **config.runtime_options().to_dict(runner.backend),
                          **getattr(runner, "properties", {})}}
    report = assemble_report(points, config, model_path=model_path, provider=used, inputs=inputs,
                             duration_s=time.perf_counter() - started, compared=compared)
    if config.gaps_s:
        report.latency_by_gap = latency_by_gap(runner, sig, obs, config.gaps_s, progress)
    return report


def latency_by_gap(runner: Any, sig: Any, obs: np.ndarray | None, gaps_s: tuple[float, ...],
                   progress: Any = None) -> list[dict[str, float]]:
    """Batch-1 latency after each idle gap: what sparse traffic sees, unlike a tight loop."""
    from dataclasses import asdict

    from costeff.profiling.traffic import calls_for_gap, gap_latency

    infer = _bound(runner, build_feed(sig, 1, obs))
    out = []
    for gap in gaps_s:
        if progress is not None:
            progress.advance(0, description=f"latency after {gap * 1e3:g} ms gaps")
        out.append(asdict(gap_latency(infer, gap, calls_for_gap(gap))))
    return out


def _bound(runner: Any, feed: dict[str, np.ndarray]) -> Any:
    """A zero-argument infer on ``feed``: a C-level call, no Python frame per request."""
    if runner.backend == "onnxruntime":
        return functools.partial(runner.session.run, None, feed)
    return runner.bind(next(iter(feed.values())))


def _same_model(model_path: Path | str, compared: list[tuple[str, ProfileRecord]]) -> None:
    """Right-sizing compares hardware for one model; another model's profile would compare models."""
    from costeff.artifacts import sha256_file

    if not compared:
        return
    own = sha256_file(model_path)
    for path, data in compared:
        if data.model_sha256 != own:
            raise InputError(f"--compare {path}: measured model sha256 {data.model_sha256}, not this "
                             f"model ({own}); compare profiles of the same model")


def check_catalog(config: ProfileConfig) -> None:
    """Fail on a bad --catalog / --instance before minutes of measuring, not after."""
    from costeff.cost import load_catalog

    catalog = load_catalog(config.catalog)
    if config.instance:
        catalog.get(config.instance)


def check_observations(sig: Any, obs: np.ndarray | None, source: str) -> np.ndarray | None:
    """Validated observation rows in the first input's dtype (fp16 overflow is caught here)."""
    if obs is None:
        return None
    from costeff.observations import validate_observations

    spec = sig.inputs[0]
    if not isinstance(obs, np.ndarray):
        raise InputError(f"{source}: observations must be a numpy array, got {type(obs).__name__}")
    rows = validate_observations(obs, spec.sample_shape, source)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below, by name
        cast = rows.astype(spec.dtype) if spec.dtype != str(rows.dtype) else rows
    if cast.dtype.kind == "f" and not np.isfinite(cast).all():
        raise InputError(f"{source}: observations overflow {spec.dtype} (input {spec.name!r}); "
                         "expected values within its range")
    return cast


def build_feed(sig: Any, batch_size: int, obs: np.ndarray | None, seed: int = 0) -> dict[str, np.ndarray]:
    """One feed dict per batch size, built once: observation rows cycled to ``batch_size``."""
    from costeff.modelio import random_batch

    others = [s for s in sig.inputs[1:]] if obs is not None else list(sig.inputs)
    feed = random_batch(type(sig)(tuple(others), sig.outputs, sig.logits, sig.value), batch_size, seed) \
        if others else {}
    if obs is not None:
        rows = np.arange(batch_size) % obs.shape[0]
        feed = {sig.inputs[0].name: np.ascontiguousarray(obs[rows]), **feed}
    return feed


def sweep(runner: Any, sig: Any, obs: np.ndarray | None, config: ProfileConfig, provider: str,
          progress: Any = None) -> list[Point]:
    points = []
    with _sampler(provider, config) as sampler:
        for conc in config.concurrency:
            mcfg = config.measure_config(conc)
            for batch in config.batch_sizes:
                if progress is not None:
                    progress.advance(0, description=f"profiling batch {batch}, concurrency {conc}")
                points.append(measure(_bound(runner, build_feed(sig, batch, obs)), batch, mcfg, sampler=sampler))
                if progress is not None:
                    progress.advance(1)
    return points


def _sampler(provider: str, config: ProfileConfig) -> ResourceSampler:
    reason = None if provider in GPU_PROVIDERS else gpu_unused_reason(provider)
    return sampler_for(provider, config.sample_interval_s, reason)


def _source_text(source: str | None, sig: Any) -> str:
    if source is None:
        return "seeded standard-normal inputs (no observations given)"
    rest = "; other inputs seeded standard-normal" if len(sig.inputs) > 1 else ""
    return f"{source}, cycled to each batch size into input {sig.inputs[0].name!r}{rest}"


def assemble_report(points: list[Point], config: ProfileConfig, *, model_path: Path | str | None, provider: str,
                    inputs: dict[str, Any], duration_s: float, compared: Sequence[tuple[str, ProfileRecord]] = (),
                    target: dict[str, Any] | None = None, gpu_name: str | None = None,
                    model_sha256: str | None = None) -> ProfileReport:
    """Optimal batch, cost, right-sizing and recommendations around measured ``points``.

    Shared by local and remote profiling; ``gpu_name`` (NVML name) picks the catalog
    instance when ``config.instance`` is not set (local: taken from the hardware).
    """
    from costeff.artifacts import provenance
    from costeff.hardware import detect

    head = provenance(model_path)
    hw = head["hardware"]
    if gpu_name is None and provider in GPU_PROVIDERS and hw.get("gpus"):
        gpu_name = hw["gpus"][0]["name"]
    optimal = select_optimal(points, config.latency_budget_ms)
    local_cpu = detect() if target is None and gpu_name is None else None  # a remote host is not this CPU
    cost = cost_for(optimal.throughput_per_s, gpu_name, catalog_path=config.catalog, instance=config.instance,
                    target_rate=config.target_rate, max_utilisation=config.max_utilisation, hw=local_cpu)
    ranking = right_size(cost, OWN_LABEL, list(compared), config.catalog, config.target_rate,
                         config.max_utilisation) if compared else []
    recs = recommendations(points, optimal, cost, ranking, detect().memory_total_gb)
    return ProfileReport(
        schema_version=head["schema_version"], created_at=head["created_at"],
        costeff_version=head["costeff_version"], model_sha256=model_sha256 or head["model_sha256"],
        model_path=str(model_path) if model_path else None, hardware=hw, provider=provider,
        config=_config_dict(config), inputs=inputs, points=points, optimal=optimal, cost=cost,
        right_sizing=ranking, recommendations=recs, duration_s=duration_s, target=target or {"kind": "local"})


def _config_dict(config: ProfileConfig) -> dict[str, Any]:
    from costeff._jsonable import to_jsonable

    return to_jsonable(config)

"""Service time per batch size, read from a profile (``gpu_profile.json``)."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from costeff.batching.server_stats import ladder, load_server_costs, table_points
from costeff.errors import InputError
from costeff.records.profile import GapLatency, Point, ProfileRecord

# z-score of the 99th percentile of a standard normal: a lognormal with median p50
# reaches p99 at exp(Z99 * sigma).
Z99 = 2.3263478740408408


@dataclass(frozen=True)
class ServiceTimes:
    """Measured batch execution time, piecewise-linear in batch size.

    ``batch_sizes`` / ``mean_ms`` are the profile's concurrency-1 points. Between
    points the time is interpolated linearly; below the first it is held at the
    first point (never faster than measured); above the last the last segment's
    slope is extended (``extrapolated_above`` says from where).
    ``sigma`` is the lognormal spread of one execution, from the measured p99/p50.
    ``per_request_ms`` is what every request of a batch beyond the first adds to its
    execution (the points were measured with one request per batch): a server that
    handles requests one by one (protocol, per-request tensors and responses) makes
    ``B`` one-row requests cost more than one ``B``-row request. 0 (the default)
    models a backend whose cost depends on rows only.
    """

    batch_sizes: tuple[int, ...]
    mean_ms: tuple[float, ...]
    sigma: float = 0.0
    source: str = "<dict>"
    model_sha256: str | None = None
    hardware: Mapping[str, Any] | None = None
    profile_instance: str | None = None
    provider: str | None = None
    # Extra time a batch takes when the instance sat idle before it, from the profile's
    # batch-1 latency after idle gaps (threads asleep, caches cold): (idle s, extra s).
    cold_idle_s: tuple[float, ...] = ()
    cold_extra_s: tuple[float, ...] = ()
    per_request_ms: float = 0.0
    gpu: str | None = None  # the profiled GPU, when the profile ran on one (CUDA / TensorRT provider)

    def __post_init__(self) -> None:
        if not isinstance(self.per_request_ms, (int, float)) or not 0 <= self.per_request_ms < math.inf:
            raise InputError(f"{self.source}: per_request_ms: expected a number >= 0, got {self.per_request_ms!r}")
        if not self.batch_sizes or len(self.batch_sizes) != len(self.mean_ms):
            raise InputError(f"{self.source}: points: need at least one point with batch_size and latency")
        if list(self.batch_sizes) != sorted(set(self.batch_sizes)):
            raise InputError(f"{self.source}: points[].batch_size must be distinct")

    @classmethod
    def from_profile(cls, profile: "Path | str | ProfileRecord") -> "ServiceTimes":
        """Read a profile file, or take an already-read profile record."""
        data, where = _read_profile(profile)
        points = _concurrency_one(data, where)
        sizes, means, sigmas = [], [], []
        for i, pt in sorted(points, key=lambda ip: ip[1].batch_size):
            mean, p50, p99 = _latency(pt, i, where)
            sizes.append(pt.batch_size)
            means.append(mean)
            if p50 and p99 and p99 > p50:
                sigmas.append(math.log(p99 / p50) / Z99)
        idle, extra = _cold(data.latency_by_gap, where)
        return cls(tuple(sizes), tuple(means), float(np.median(sigmas)) if sigmas else 0.0, where,
                   data.model_sha256, data.hardware, data.cost.instance if data.cost else None, data.provider,
                   idle, extra, gpu=data.host.gpus[0].name if data.host.gpus and data.on_gpu else None)

    @classmethod
    def from_server_costs(cls, costs: Mapping[str, Any], profile: "ServiceTimes | None" = None) -> "ServiceTimes":
        """Service times fitted to a server's own statistics (``server_costs.json``, checked by
        ``costeff.batching.server_stats.load_server_costs``).

        One request of ``R`` rows takes ``fixed + per_request + per_row * R``; every further
        request of a batch adds ``per_request``. ``profile`` (optional) lends the model hash,
        hardware, price-catalog instance and the lognormal spread; the times are the server's.
        """
        fit = costs["fit"]
        sizes, means = table_points(fit, costs.get("batch_sizes") or ladder(64))
        where = f"server statistics {costs.get('_path', '<dict>')}"
        sigma = profile.sigma if profile is not None else float(costs.get("sigma") or 0.0)
        if profile is None:
            return cls(sizes, means, sigma, where, costs.get("model_sha256"),
                       per_request_ms=float(fit["per_request_ms"]))
        return cls(sizes, means, sigma, where, profile.model_sha256, profile.hardware, profile.profile_instance,
                   profile.provider, per_request_ms=float(fit["per_request_ms"]), gpu=profile.gpu)

    def cold_penalty(self) -> Any:
        """``f(idle_s) -> extra seconds`` for a batch started after ``idle_s`` of idleness (0 when unmeasured)."""
        points = self.cold_points()
        if points is None:
            return None
        xs, ys = points

        def extra(idle: float) -> float:
            if idle <= 0:
                return 0.0
            if idle >= xs[-1]:
                return ys[-1]
            i = bisect.bisect_right(xs, idle)
            return ys[i - 1] + (ys[i] - ys[i - 1]) * (idle - xs[i - 1]) / (xs[i] - xs[i - 1])
        return extra

    def cold_points(self) -> tuple[list[float], list[float]] | None:
        """The penalty's knots (idle s, extra s), starting at (0, 0); None when unmeasured.
        ``cold_penalty`` interpolates linearly between them and holds the last one."""
        if not self.cold_idle_s:
            return None
        return [0.0, *self.cold_idle_s], [0.0, *self.cold_extra_s]

    @property
    def extrapolated_above(self) -> int:
        return self.batch_sizes[-1]

    def table_s(self, max_rows: int) -> np.ndarray:
        """Seconds per batch for 0..max_rows rows (index = rows)."""
        rows = np.arange(max_rows + 1, dtype=float)
        xs, ys = np.asarray(self.batch_sizes, float), np.asarray(self.mean_ms, float)
        out = np.interp(rows, xs, ys)
        if len(xs) > 1 and max_rows > xs[-1]:
            slope = max(0.0, (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]))
            above = rows > xs[-1]
            out[above] = ys[-1] + slope * (rows[above] - xs[-1])
        elif len(xs) == 1:
            # One point: time proportional to rows above it (no batching gain assumed).
            out = np.where(rows > xs[0], ys[0] * rows / xs[0], ys[0])
        return out / 1e3

    @property
    def gpu_name(self) -> str | None:
        """The profiled GPU, when the profile ran on one (CUDA / TensorRT provider)."""
        return self.gpu

    def p99_factor(self) -> float:
        """p99 / mean of one execution under the lognormal jitter model."""
        return math.exp(Z99 * self.sigma - 0.5 * self.sigma ** 2)

    def time_ms(self, rows: int) -> float:
        return float(self.table_s(rows)[rows] * 1e3)

    def peak_throughput_per_s(self, max_rows: int, rows_per_request: int = 1) -> float:
        """Best rows/s of one instance with batches of at most ``max_rows`` (requests of ``rows_per_request``)."""
        rows = np.arange(1, max_rows + 1)
        requests = np.maximum(1, np.ceil(rows / rows_per_request))
        seconds = self.table_s(max_rows)[1:] + self.per_request_ms * 1e-3 * (requests - 1)
        return float(np.max(rows / seconds))


def _cold(gaps: list[GapLatency], where: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(idle gaps, extra seconds over back-to-back) from ``latency_by_gap``; empty when not measured."""
    if not gaps:
        return (), ()
    if any(g.gap_ms is None or g.p50_ms is None for g in gaps):
        raise InputError(f"{where}: latency_by_gap: expected entries with gap_ms and p50_ms")
    rows = sorted((float(g.gap_ms or 0.0) / 1e3, float(g.p50_ms or 0.0) / 1e3) for g in gaps)
    if rows[0][0] != 0.0:
        return (), ()  # no back-to-back reference: the penalty cannot be told apart
    warm = rows[0][1]
    cold = [(g, max(0.0, p - warm)) for g, p in rows[1:]]
    return tuple(g for g, _ in cold), tuple(e for _, e in cold)


def _read_profile(profile: "Path | str | ProfileRecord") -> tuple[ProfileRecord, str]:
    from costeff.records.kinds import PROFILE

    if isinstance(profile, ProfileRecord):
        return profile, "<profile>"
    return PROFILE.read(profile), str(profile)


def _concurrency_one(data: ProfileRecord, where: str) -> list[tuple[int, Point]]:
    if not data.points:
        raise InputError(f"{where}: points: expected a non-empty list of measured points")
    # Service time is the time one batch takes alone: concurrency-1 points only
    # (a missing concurrency means a plain sequential measurement).
    ones = [(i, pt) for i, pt in enumerate(data.points) if pt.concurrency == 1]
    if not ones:
        raise InputError(f"{where}: points[].concurrency: no point measured at concurrency 1")
    seen: dict[int, int] = {}
    for i, pt in ones:
        if pt.batch_size in seen:
            raise InputError(f"{where}: points[{i}].batch_size: {pt.batch_size} measured twice "
                             f"at concurrency 1 (also points[{seen[pt.batch_size]}])")
        seen[pt.batch_size] = i
    return ones


def _latency(pt: Point, i: int, where: str) -> tuple[float, float | None, float | None]:
    lat = pt.latency_ms
    if lat is None:
        raise InputError(f"{where}: points[{i}].latency_ms: expected an object with mean/p50/p99")
    for key in ("mean", "p50", "p99"):
        v = getattr(lat, key)
        if v is not None and v <= 0:
            raise InputError(f"{where}: points[{i}].latency_ms.{key}: expected a number > 0, got {v!r}")
    base = lat.mean if lat.mean is not None else lat.p50
    if base is None:
        raise InputError(f"{where}: points[{i}].latency_ms.mean: missing (and no p50 to fall back on)")
    return base, lat.p50, lat.p99


def load_service(profile: "Path | str | ProfileRecord | None", server_costs: Path | str | None) -> Any:
    """The simulator's ServiceTimes: from a profile, from server statistics, or the server's times with the
    profile's metadata and spread when both are given."""
    base = ServiceTimes.from_profile(profile) if profile is not None else None
    if server_costs is None:
        if base is None:
            raise InputError("--profile: required unless --server-stats is given")
        return base
    return ServiceTimes.from_server_costs(load_server_costs(server_costs), base)

"""Signals from Prometheus (PromQL ``query_range``): one ``Sample`` per step over the decision window.

Every value must be a reading: a finite number written in ASCII digits, within the
metric's range; anything else (NaN, ``+Inf``, a JSON ``false``, ``"0_0"``, a
utilisation over 100 %) is left out, and a step without a value counts as missing,
never idle. A series that gives two different values for one timestamp is invalid
as a whole: all its steps count as missing. Each HTTP call has one total deadline
(``prometheus.timeout_s``) and a cap on the decoded body (``costeff.httpget``).
"""

from __future__ import annotations

import logging
import math
import time as _time
from typing import Any
from urllib.parse import urlparse

from costeff.errors import DependencyError, InputError
from costeff.numbers import finite
from costeff.reaper.config import PrometheusConfig, Target
from costeff.reaper.signals import Sample

log = logging.getLogger("costeff.reaper")


class PrometheusSource:
    """Reads each factor of a target over the decision window through PromQL ``query_range``."""

    def __init__(self, config: PrometheusConfig) -> None:
        if not config.url:
            raise InputError("prometheus.url is not set; pass --prometheus URL or set it in the config")
        parsed = urlparse(config.url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InputError(f"prometheus.url: {config.url!r} is not an http(s)://HOST[:PORT] address")
        self.config = config
        self.url = config.url.rstrip("/")

    def samples(self, target: Target, window_s: float, now: float | None = None) -> list[Sample]:
        """One sample per step over ``window_s`` ending now; a step without a value has ``None`` there."""
        end = _time.time() if now is None else now
        step = self.config.step_s
        start = end - window_s
        columns = {key: self._series(key, target, start, end) for key in
                   ("gpu_util_pct", "requests_per_s", "influence_pct", "fb_used_mb", "power_w")}
        steps = [start + i * step for i in range(int(window_s // step) + 1)]
        return [self._sample(target, t, columns, step) for t in steps]

    def _sample(self, target: Target, t: float, columns: dict[str, dict[float, float] | None],
                step: float) -> Sample:
        def at(key: str) -> float | None:
            values = columns.get(key)
            return None if values is None else values.get(round(t, 3))

        rate = at("requests_per_s")
        return Sample(ts=t, resource=target.resource, gpu_util_pct=at("gpu_util_pct"),
                      requests=None if rate is None else rate * step, influence_pct=at("influence_pct"),
                      gpus=target.gpus_per_replica, fb_used_mb=at("fb_used_mb"), power_w=at("power_w"),
                      interval_s=step)

    def _series(self, key: str, target: Target, start: float, end: float) -> dict[float, float] | None:
        """The one series the query returns, by timestamp; ``None`` when it is not configured."""
        query = self.config.query(key, target)
        if query is None:
            return None
        result = self.get("/api/v1/query_range",
                          {"query": query, "start": start, "end": end, "step": self.config.step_s})
        if len(result) > 1:
            # Several series would need a reduction the operator did not choose; refuse to pick one.
            raise DependencyError(f"prometheus query {key} for {target.resource} returned {len(result)} series; "
                                  f"aggregate it to one (e.g. max(...)) in the query")
        if not result:
            return {}
        # A value that cannot be a reading (negative, NaN, a utilisation over 100 %) is unknown, never idle:
        # it is left out, and a step without a value counts as missing data.
        top = 100.0 if key in ("gpu_util_pct", "influence_pct") else math.inf
        points = _points(result[0], self.url)
        clash = _contradiction(points)
        if clash is not None:
            # Two different values for one moment: neither can be trusted, so the whole series is unknown.
            log.warning("prometheus query %s for %s: the series is invalid (%s); its steps count as missing",
                        key, target.resource, clash)
            return {}
        readings = ((ts, finite(v)) for ts, v in points)
        return {round(ts, 3): v for ts, v in readings if v is not None and 0.0 <= v <= top}

    def get(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        from costeff import httpget

        # timeout_s is a deadline for the whole call; a trickling or bloated answer is refused (exit 3)
        resp = httpget.get(self.url + path, params, self.config.timeout_s, "prometheus")
        try:
            body = resp.json()
        except ValueError:
            raise DependencyError(f"prometheus at {self.url}{path} answered HTTP {resp.status_code} "
                                  f"with a body that is not JSON") from None
        if not isinstance(body, dict):
            raise DependencyError(f"prometheus at {self.url}{path} answered HTTP {resp.status_code} with a JSON "
                                  f"{type(body).__name__}, not a Prometheus API response object")
        if resp.status_code != 200 or body.get("status") != "success":
            raise DependencyError(f"prometheus at {self.url}{path} answered HTTP {resp.status_code}: "
                                  f"{body.get('errorType', '?')}: {body.get('error', '?')} "
                                  f"(query {params.get('query')!r})")
        result = (body.get("data") or {}).get("result") if isinstance(body.get("data"), dict) else None
        if not isinstance(result, list) or not all(isinstance(r, dict) for r in result):
            raise DependencyError(f"prometheus at {self.url}{path}: data.result is not a list of series "
                                  f"(query {params.get('query')!r})")
        return result


def _points(series: dict[str, Any], url: str) -> list[tuple[float, Any]]:
    values = series.get("values")
    if not isinstance(values, list) or not all(isinstance(p, list) and len(p) == 2 for p in values):
        raise DependencyError(f"prometheus at {url}: a series has no [timestamp, value] pairs")
    return [(ts, p[1]) for p in values if (ts := finite(p[0])) is not None]


def _contradiction(points: list[tuple[float, Any]]) -> str | None:
    """The first timestamp that carries two different values, described; None when there is none."""
    seen: dict[float, Any] = {}
    for ts, value in points:
        moment = round(ts, 3)
        if moment in seen and seen[moment] != value:
            return f"{seen[moment]!r} and {value!r} at {moment:g}"
        seen.setdefault(moment, value)
    return None


"""Discrete-event simulation of Triton's dynamic batcher and MLServer's adaptive batcher.

Triton (core ``DynamicBatchScheduler::GetDynamicBatch``), evaluated whenever a model
instance is free and the queue is not empty, scanning the queue oldest first:

* a batch never exceeds ``max_batch_size`` rows; the largest pending size equal to
  a preferred size ("best") is remembered, and so is the pending size just before
  the largest preferred size would be exceeded;
* best found and the oldest request has not waited ``max_queue_delay`` -> send best;
* otherwise, when the delay is exceeded, the delay is 0, the next request would not
  fit into ``max_batch_size`` or the pending rows reach the largest preferred size
  -> send everything pending (up to ``max_batch_size``);
* otherwise wait for the next arrival or for the oldest request's delay to expire.

An empty preferred list acts as ``[max_batch_size]`` (Triton normalises the config
that way). Queue policy: requests older than ``default_timeout_us`` when the batcher
looks at them are rejected (timeout action REJECT); arrivals that find
``max_queue_size`` requests waiting are rejected.

MLServer (``mlserver/batching/adaptive.py``): the first queued request opens a batch,
which closes when ``max_batch_size`` requests are in it or ``max_batch_time`` after
it opened, whichever comes first, regardless of whether a worker is free; closed
batches wait FIFO for the next free worker (``instances``).

The loop walks batches, not requests: arrival counts come from ``bisect`` on the
sorted arrival times, instances sit in a small heap, and per-request latencies are
rebuilt afterwards with numpy. One-row requests without a queue policy (what the
optimizer searches) run the same loop written out in ``triton_unit``.

A batch of ``k`` requests carrying ``rows`` rows takes ``table[rows]`` (one request of
that many rows, as profiled) plus ``per_request_ms`` for each of the other ``k - 1``
requests (``ServiceTimes.per_request_ms``; 0 unless calibrated against a server).
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from costeff.batching.config import BatcherConfig
from costeff.batching.service import ServiceTimes
from costeff.batching.triton_unit import QueueSeen, triton_unit_loop
from costeff.errors import InputError

_INF = math.inf


@dataclass(frozen=True)
class SimResult:
    """What one configuration does to one arrival stream. Latency = queue + service."""

    config: BatcherConfig
    requests: int
    served: int
    rejected: int
    batches: int
    span_s: float
    throughput_per_s: float
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p99_ms: float
    latency_mean_ms: float
    latency_max_ms: float
    queue_mean_ms: float
    mean_batch_size: float
    batch_histogram: dict[int, int]
    utilisation: tuple[float, ...]
    extrapolated: bool
    notes: tuple[str, ...] = field(default=())
    # What the batcher saw, for ``triton_unit.same_schedule``: tracked for one-row requests
    # without a queue policy, else None.
    seen: QueueSeen | None = None

    @property
    def utilisation_mean(self) -> float:
        return float(np.mean(self.utilisation)) if self.utilisation else 0.0


@dataclass(frozen=True)
class Stream:
    """Sorted arrival times (seconds), checked, with the jitter drawn for one seed and spread:
    what every simulation of those arrivals shares (the optimizer runs a hundred on one)."""

    times: np.ndarray
    times_list: list[float]
    jitter: list[float] | None  # each batch's mean-one lognormal factor; None: deterministic

    @classmethod
    def of(cls, arrivals_s, sigma: float, seed: int) -> "Stream":
        arr = np.asarray(arrivals_s, dtype=float)
        if arr.ndim != 1 or arr.size == 0:
            raise InputError("arrivals: expected a non-empty 1-D sequence of times in seconds")
        if not np.all(np.isfinite(arr)) or np.any(np.diff(arr) < 0):
            raise InputError("arrivals: times must be finite and sorted")
        return cls(arr, arr.tolist(), _jitter(sigma, arr.size, seed))


def simulate(arrivals_s, service: ServiceTimes, config: BatcherConfig, *, rows=1,
             seed: int = 0, jitter: bool = True) -> SimResult:
    """Simulate ``config`` on sorted arrival times (seconds) with ``service`` times.

    ``rows``: rows carried by each request (an int, or one int per request).
    ``jitter``: draw each batch's time from a lognormal with the profile's p99/p50
    spread (mean kept); off gives deterministic service times.
    """
    return simulate_stream(Stream.of(arrivals_s, service.sigma if jitter else 0.0, seed), service, config, rows=rows)


def simulate_stream(stream: Stream, service: ServiceTimes, config: BatcherConfig, *, rows=1) -> SimResult:
    """``simulate`` on a prepared stream (its jitter drawn for ``service.sigma``, or none)."""
    arr, jit = stream.times, stream.jitter
    row_counts, prefix = _rows(rows, arr.size, config)
    max_rows = config.max_batch_size * (int(row_counts.max()) if config.policy == "mlserver" else 1)
    table = service.table_s(max_rows).tolist()
    per = service.per_request_ms * 1e-3
    if config.policy == "triton" and prefix is None and not config.default_timeout_us and not config.max_queue_size:
        trace = triton_unit_loop(stream.times_list, config, table, jit, service.cold_points(), per)
    else:
        loop = _triton_loop if config.policy == "triton" else _mlserver_loop
        trace = loop(stream.times_list, prefix, config, table, jit, service.cold_penalty(), per)
    return _summarise(arr, row_counts, trace, config, service)


def _rows(rows, n: int, config: BatcherConfig) -> tuple[np.ndarray, list | None]:
    counts = np.full(n, rows, dtype=np.int64) if np.isscalar(rows) else np.asarray(rows, dtype=np.int64)
    if counts.shape != (n,) or np.any(counts < 1):
        raise InputError(f"rows: expected an integer >= 1 per request ({n} requests)")
    if config.max_queue_size and np.any(counts != 1):
        raise InputError("rows: max_queue_size is modelled for one-row requests only")
    if config.policy == "triton" and counts.max() > config.max_batch_size:
        raise InputError(f"rows: a request carries {int(counts.max())} rows, more than "
                         f"max_batch_size {config.max_batch_size} (Triton rejects it)")
    if np.all(counts == 1):
        return counts, None  # unit rows: the fast path needs no prefix sums
    return counts, np.concatenate([[0], np.cumsum(counts)]).tolist()


def _jitter(sigma: float, n: int, seed: int) -> list | None:
    if sigma <= 0:
        return None
    z = np.random.default_rng(seed + 7919).standard_normal(n)
    return np.exp(sigma * z - 0.5 * sigma * sigma).tolist()  # mean-one lognormal factor


def _triton_loop(raw: list, C: list | None, cfg: BatcherConfig, table: list, jit: list | None,
                 cold: Any = None, per: float = 0.0) -> dict:
    free = [(0.0, i) for i in range(cfg.instances)]
    delay = cfg.max_queue_delay_us * 1e-6
    timeout = cfg.default_timeout_us * 1e-6
    decide = _decide_unit if C is None else _decide_rows
    admit = _Admission(raw, cfg.max_queue_size) if cfg.max_queue_size else None
    A = admit.times if admit is not None else raw  # the requests that entered the queue
    out = _Trace()
    add_lo, add_k, add_rows, add_start, add_done, add_inst = out.appenders()
    h, b, now, n = 0, 0, -_INF, len(A)
    while h < n:
        f, inst = free[0]
        t = A[h]
        if f > t:
            t = f
        if now > t:
            t = now
        while True:
            if timeout:
                j = bisect_left(A, t - timeout, h)  # A[i] + timeout < t: expired
                if j > h:
                    out.reject(h, j)
                    if admit is not None:
                        admit.sync(h, j, t)
                        n = len(A)
                    h = j
                    if h >= n:
                        break
                    t = max(t, A[h])
            k, wake = decide(A, C, h, bisect_right(A, t, h) - h, t, delay, cfg)
            if k:
                break
            t = wake
        if h >= n:
            break
        rows = k if C is None else C[h + k] - C[h]
        s = table[rows] + per * (k - 1)  # every request beyond the first adds its own cost
        if jit is not None:
            s *= jit[b]
        if cold is not None:
            s += cold(t - f)  # the instance sat idle since f: a cold call takes longer
        heapq.heapreplace(free, (t + s, inst))
        add_lo(h), add_k(k), add_rows(rows), add_start(t), add_done(t + s), add_inst(inst)
        if admit is not None:
            admit.sync(h, h + k, t)
            n = len(A)
        h, b, now = h + k, b + 1, t
    out.order = admit.idx if admit is not None else None
    return out.arrays()


def _decide_unit(A, C, h, q, t, delay, cfg) -> tuple[int, float]:
    """Triton's choice when every request carries one row: (count to send, or 0 and when to look again)."""
    prefs = cfg.preferred_batch_sizes or (cfg.max_batch_size,)
    exceeded = delay > 0 and t >= A[h] + delay
    if q >= prefs[0] and not exceeded:
        return prefs[bisect_right(prefs, q) - 1], 0.0
    if exceeded or delay == 0:
        return min(q, cfg.max_batch_size), 0.0
    nxt = h + prefs[0] - 1  # the arrival that completes the smallest preferred size
    return 0, min(A[h] + delay, A[nxt] if nxt < len(A) else _INF)


def _decide_rows(A, C, h, q, t, delay, cfg) -> tuple[int, float]:
    """Triton's choice for requests carrying several rows (prefix row sums in ``C``)."""
    prefs, max_bs = cfg.effective_preferred, cfg.max_batch_size
    base, end = C[h], h + q
    k_max = max(1, bisect_right(C, base + max_bs, h, end + 1) - 1 - h)
    best = 0
    for p in reversed(prefs):
        j = bisect_left(C, base + p, h + 1, h + k_max + 1)
        if j <= h + k_max and C[j] == base + p:
            best = j - h
            break
    if not best:
        k_cross = bisect_right(C, base + prefs[-1], h, end + 1) - 1 - h
        if k_cross < q:  # the next queued request would pass the largest preferred size
            best = max(1, k_cross)
    exceeded = delay > 0 and t >= A[h] + delay
    if best and not exceeded:
        return best, 0.0
    if exceeded or delay == 0 or k_max < q or C[h + k_max] - base >= prefs[-1]:
        return k_max, 0.0
    return 0, min(A[h] + delay, A[end] if end < len(A) else _INF)


def _mlserver_loop(A: list, C: list | None, cfg: BatcherConfig, table: list, jit: list | None,
                   cold: Any = None, per: float = 0.0) -> dict:
    n, max_bs = len(A), cfg.max_batch_size
    window = cfg.max_queue_delay_us * 1e-6
    free = [(0.0, i) for i in range(cfg.instances)]
    out = _Trace()
    h, b = 0, 0
    while h < n:
        hi = min(h + max_bs, n)
        k = bisect_right(A, A[h] + window, h, hi) - h
        closed = A[h + k - 1] if k == max_bs else A[h] + window
        f, inst = free[0]
        t = closed if closed > f else f
        rows = k if C is None else C[h + k] - C[h]
        s = table[rows] + per * (k - 1)  # every request beyond the first adds its own cost
        if jit is not None:
            s *= jit[b]
        if cold is not None:
            s += cold(t - f)
        heapq.heapreplace(free, (t + s, inst))
        out.batch(h, k, rows, t, t + s, inst)
        h, b = h + k, b + 1
    return out.arrays()


class _Trace:
    """Per-batch records kept as plain lists (cheap appends inside the loop)."""

    def __init__(self) -> None:
        self.lo: list[int] = []
        self.k: list[int] = []
        self.rows: list[int] = []
        self.start: list[float] = []
        self.done: list[float] = []
        self.inst: list[int] = []
        self.expired = 0
        self.order: list[int] | None = None

    def batch(self, lo, k, rows, start, done, inst) -> None:
        self.lo.append(lo)
        self.k.append(k)
        self.rows.append(rows)
        self.start.append(start)
        self.done.append(done)
        self.inst.append(inst)

    def appenders(self) -> tuple:
        return (self.lo.append, self.k.append, self.rows.append, self.start.append, self.done.append,
                self.inst.append)

    def reject(self, lo: int, hi: int) -> None:
        self.expired += hi - lo

    def arrays(self) -> dict:
        i64 = np.int64
        return {"lo": np.asarray(self.lo, i64), "k": np.asarray(self.k, i64),
                "rows": np.asarray(self.rows, i64), "start": np.asarray(self.start, float),
                "done": np.asarray(self.done, float), "inst": np.asarray(self.inst, i64),
                "expired": self.expired, "order": self.order}


class _Admission:
    """Triton's ``max_queue_size``: an arrival that finds the queue full is rejected.

    The queue only shrinks when a batch leaves (or expired requests are rejected),
    so between those moments the next arrivals are admitted until the queue is
    full and every later one is rejected. ``times`` / ``idx`` list the admitted
    requests (arrival time, index into the raw arrivals) in order; the batcher
    loop walks ``times`` instead of the raw arrivals.
    """

    def __init__(self, raw: list, max_queue: int) -> None:
        self.raw, self.max_queue = raw, max_queue
        self.times: list[float] = []
        self.idx: list[int] = []
        self.p = 0
        self._fill(0)

    def sync(self, old_head: int, new_head: int, t: float) -> None:
        """Requests before ``new_head`` left the queue at ``t``."""
        raw, n = self.raw, len(self.raw)
        while self.p < n and len(self.times) - old_head >= self.max_queue and raw[self.p] < t:
            self.p += 1  # arrived while the queue was full
        self._fill(new_head)

    def _fill(self, head: int) -> None:
        raw, n = self.raw, len(self.raw)
        while self.p < n and len(self.times) - head < self.max_queue:
            self.times.append(raw[self.p])
            self.idx.append(self.p)
            self.p += 1


def _summarise(arr, row_counts, tr: dict, cfg: BatcherConfig, service: ServiceTimes) -> SimResult:
    k, done, start = tr["k"], tr["done"], tr["start"]
    served = int(k.sum())
    idx = np.repeat(tr["lo"] - np.cumsum(k) + k, k) + np.arange(served)
    if tr["order"] is not None:  # positions among admitted requests -> raw indices
        idx = np.asarray(tr["order"], dtype=np.int64)[idx]
    lat_ms = (np.repeat(done, k) - arr[idx]) * 1e3
    queue_ms = (np.repeat(start, k) - arr[idx]) * 1e3
    span = float(done.max() - arr[0]) if served else 0.0
    busy = np.bincount(tr["inst"], weights=done - start, minlength=cfg.instances)
    hist = np.bincount(tr["rows"])
    pct = np.percentile(lat_ms, [50, 90, 99]) if served else [math.nan] * 3
    return SimResult(
        config=cfg, requests=int(arr.size), served=served, rejected=int(arr.size - served),
        batches=int(k.size), span_s=span, throughput_per_s=served / span if span > 0 else 0.0,
        latency_p50_ms=float(pct[0]), latency_p90_ms=float(pct[1]), latency_p99_ms=float(pct[2]),
        latency_mean_ms=float(lat_ms.mean()) if served else math.nan,
        latency_max_ms=float(lat_ms.max()) if served else math.nan,
        queue_mean_ms=float(queue_ms.mean()) if served else math.nan,
        mean_batch_size=float(tr["rows"].mean()) if k.size else 0.0,
        batch_histogram={int(s): int(c) for s, c in enumerate(hist) if c},
        utilisation=tuple(float(x) for x in busy / span) if span > 0 else (0.0,) * cfg.instances,
        extrapolated=bool(k.size and tr["rows"].max() > service.extrapolated_above),
        seen=tr.get("seen"),
    )

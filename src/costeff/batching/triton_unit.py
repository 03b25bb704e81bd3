"""Triton's dynamic batcher for one-row requests and no queue policy: the loop the optimizer runs.

``simulator._triton_loop`` is the general model (several rows per request, timeouts,
``max_queue_size``). Every setting the optimizer searches is this simpler case, and the
optimizer runs it once per batch for millions of batches, where a function call per batch
for the decision (``simulator._decide_unit``) and the cold penalty cost more than the rest
of the loop: ``triton_unit_loop`` is that loop with both written inline, same decisions,
same arithmetic (the tests hold its trace equal to the general loop's).

It also returns what the batcher saw (``QueueSeen``): the longest queue a batch was taken
from, and whether a batch ever left because its oldest request ran out of delay. A run is
a sequence of decisions on queue lengths, so another setting with the same instance count
that decides alike (``decision``) on every queue the run saw sends the same batches at the
same times: ``same_schedule`` says when one run stands for another setting, and the
optimizer then takes that run's result instead of simulating again.
"""

from __future__ import annotations

import functools
import heapq
import math
from bisect import bisect_right
from dataclasses import dataclass

import numpy as np

from costeff.batching.config import BatcherConfig

_INF = math.inf
# Longer decision tables cost more to compare than the run they could save (the optimizer's sizes stop at 1024).
_LONGEST_COMPARED = 1024


@dataclass(frozen=True)
class QueueSeen:
    """What a run's batcher saw: the longest queue a batch was taken from (counted up to
    ``max_batch_size``), and whether some batch left because its oldest request had waited
    the whole queue delay."""

    longest: int
    delay_expired: bool


def decision(cfg: BatcherConfig, queued: int, waited: bool) -> int:
    """Requests Triton sends from ``queued`` one-row requests, 0 to wait for more.

    ``waited``: the oldest has waited ``max_queue_delay_us`` (no delay: Triton never waits).
    """
    prefs = cfg.effective_preferred
    q = min(queued, cfg.max_batch_size)
    if cfg.max_queue_delay_us * 1e-6 == 0:  # the delay as the loop holds it
        return prefs[bisect_right(prefs, q) - 1] if q >= prefs[0] else q
    if waited:
        return q
    return prefs[bisect_right(prefs, q) - 1] if q >= prefs[0] else 0


@functools.lru_cache(maxsize=256)
def _decisions(cfg: BatcherConfig, top: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``decision`` for queues of 1..top requests: (oldest within its delay, oldest waited it)."""
    return (tuple(decision(cfg, q, False) for q in range(1, top + 1)),
            tuple(decision(cfg, q, True) for q in range(1, top + 1)))


def same_schedule(ran: BatcherConfig, other: BatcherConfig, seen: QueueSeen) -> bool:
    """Whether ``other`` sends the batches a run of ``ran`` sent (which saw ``seen``) on the same arrivals.

    A run sends at the first moment (an arrival, or the oldest request's delay running out)
    its decision is not "wait"; nothing changes between those moments. If ``other``, at
    every moment of the run, would decide as ``ran`` did, it sends the same requests at the
    same times, batch after batch (same instance, same jitter draw): same result.
    """
    if ran.policy != "triton" or other.policy != "triton" or ran.instances != other.instances \
            or ran.default_timeout_us or other.default_timeout_us or ran.max_queue_size or other.max_queue_size:
        return False
    # A queue at ran's cap may have been longer: then compare every length either setting tells apart.
    top = seen.longest if seen.longest < ran.max_batch_size else max(ran.max_batch_size, other.max_batch_size)
    if top > _LONGEST_COMPARED:
        return False
    (within_a, waited_a), (within_b, waited_b) = _decisions(ran, top), _decisions(other, top)
    delay_a, delay_b = ran.max_queue_delay_us * 1e-6, other.max_queue_delay_us * 1e-6  # as the loop holds them
    if delay_a == delay_b:
        return within_a == within_b and waited_a == waited_b
    if 0 < delay_a < delay_b and not seen.delay_expired:
        return within_a == within_b  # no oldest request of the run waited delay_a, none waits delay_b
    return within_a == waited_a == within_b == waited_b  # decisions the delay cannot change


def triton_unit_loop(A: list, cfg: BatcherConfig, table: list, jit: list | None,
                     cold: tuple[list, list] | None, per: float) -> dict:
    """``simulator._triton_loop`` for one-row requests and no queue policy (``cold``: the knots
    of ``ServiceTimes.cold_points``); its trace also holds what the batcher saw (``seen``)."""
    n, max_bs, prefs = len(A), cfg.max_batch_size, cfg.effective_preferred
    p0, delay = prefs[0], cfg.max_queue_delay_us * 1e-6
    cx, cy = cold if cold is not None else ([], [])
    free = [(0.0, i) for i in range(cfg.instances)]
    trace: tuple[list[int], list[float], list[float], list[int]] = ([], [], [], [])  # k, start, done, instance
    add_k, add_start, add_done, add_inst = trace[0].append, trace[1].append, trace[2].append, trace[3].append
    h, b, now, longest, expired = 0, 0, -_INF, 0, False
    while h < n:
        f, inst = free[0]
        head = t = A[h]
        if f > t:
            t = f
        if now > t:
            t = now
        hi = h + max_bs if h + max_bs < n else n  # a longer queue changes no decision
        expiry = head + delay
        while True:
            q = k = bisect_right(A, t, h, hi) - h  # queued, up to max_batch_size
            if delay and t >= expiry:
                expired = True
                break  # the oldest waited the delay: send what is queued
            if k >= p0:
                k = prefs[bisect_right(prefs, k) - 1]  # the largest preferred size reached
                break
            if delay == 0:
                break
            nxt = h + p0 - 1  # wait for the smallest preferred size or the delay
            t = expiry if nxt >= n or A[nxt] > expiry else A[nxt]
        if q > longest:
            longest = q
        s = table[k] + per * (k - 1)
        if jit is not None:
            s *= jit[b]
        if t > f and cx:  # ServiceTimes.cold_penalty()(t - f), same arithmetic
            idle = t - f
            i = bisect_right(cx, idle)  # len(cx): idle past the last knot, which holds
            s += cy[i - 1] + (cy[i] - cy[i - 1]) * (idle - cx[i - 1]) / (cx[i] - cx[i - 1]) if i < len(cx) else cy[-1]
        done = t + s
        heapq.heapreplace(free, (done, inst))
        add_k(k)
        add_start(t)
        add_done(done)
        add_inst(inst)
        h, b, now = h + k, b + 1, t
    return _arrays(*trace, QueueSeen(longest, expired))


def _arrays(ks: list, starts: list, dones: list, insts: list, seen: QueueSeen) -> dict:
    """The general loop's trace for a run that served every request in order, one row each."""
    k = np.asarray(ks, np.int64)
    return {"lo": np.cumsum(k) - k, "k": k, "rows": k, "start": np.asarray(starts, float),
            "done": np.asarray(dones, float), "inst": np.asarray(insts, np.int64), "expired": 0, "order": None,
            "seen": seen}

"""The one seeded Poisson arrival process: the batching simulator, the in-process open loop
(``profiling.traffic``) and the remote open-loop client (``remote.openloop``) all draw from it.

Convention: time 0 is when the process starts, and the first request arrives one
exponential gap after it, as in a Poisson process observed from its start (no request
sits exactly at 0). So ``n`` arrivals span about ``n / rate`` seconds and ``n`` over that
span estimates the rate without the ``n / (n - 1)`` bias a first arrival at 0 would add.

Arrival ``k`` is the running sum of the first ``k + 1`` gaps, added one after the other
(``np.cumsum`` accumulates in order), so drawing 10 000 arrivals at once or one by one
gives the same floating-point times for the same seed and rate.
"""

from __future__ import annotations

import numpy as np

from costeff.errors import InputError

BLOCK = 4096  # gaps drawn at a time by a streaming process: cheap to hold, few calls into numpy


class PoissonProcess:
    """Arrival times in seconds from 0 at ``rate_per_s``, seeded; taken in blocks (``take``) or one at a time."""

    def __init__(self, rate_per_s: float, seed: int = 0) -> None:
        if not 0 < rate_per_s < float("inf"):
            raise InputError(f"rate: must be a finite number > 0 requests/s, got {rate_per_s!r}")
        self.rate_per_s = float(rate_per_s)
        self._rng = np.random.default_rng(seed)
        self._last = 0.0
        self._buffer = np.empty(0)
        self._next = 0

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` arrival times."""
        gaps = self._rng.exponential(1.0 / self.rate_per_s, size=n)
        times = np.cumsum(np.concatenate(([self._last], gaps)))[1:]
        if n:
            self._last = float(times[-1])
        return times

    def __iter__(self) -> PoissonProcess:
        return self

    def __next__(self) -> float:
        if self._next == len(self._buffer):
            self._buffer, self._next = self.take(BLOCK), 0
        self._next += 1
        return float(self._buffer[self._next - 1])


def poisson_arrivals(rate_per_s: float, n: int, seed: int = 0) -> np.ndarray:
    """The first ``n`` arrival times (seconds) of ``PoissonProcess(rate_per_s, seed)``."""
    return PoissonProcess(rate_per_s, seed).take(n)

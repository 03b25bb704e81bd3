"""A controlled clock for the measurement harnesses, so their rules are tested without the scheduler.

Patch it over a module's ``time`` (``monkeypatch.setattr(module, "time", clock)``): every clock
read advances it by one tick (1 us unless told; so a spin-wait ends), ``sleep`` advances it by exactly
the time asked, and a fake workload calls ``work(seconds)`` to take exactly that long. Single-threaded
callers only: the measured numbers then follow from the workload alone, whatever the machine's load.
"""

from __future__ import annotations

TICK_NS = 1_000  # what one clock read costs


class FakeClock:
    def __init__(self, tick_ns: int = TICK_NS) -> None:
        self.ns, self.tick_ns = 0, tick_ns
        self.sleeps: list[float] = []

    def perf_counter_ns(self) -> int:
        self.ns += self.tick_ns
        return self.ns

    def perf_counter(self) -> float:
        return self.perf_counter_ns() / 1e9

    monotonic = perf_counter
    monotonic_ns = perf_counter_ns

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, seconds
        self.sleeps.append(seconds)
        self.ns += int(seconds * 1e9)

    def work(self, seconds: float) -> None:
        self.ns += int(seconds * 1e9)

    @property
    def seconds(self) -> float:
        return self.ns / 1e9

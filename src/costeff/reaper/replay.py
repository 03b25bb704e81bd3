"""Replay a signal trace through the reaper: what it would have done and what it would have saved.

Capacity per resource is UP, DOWN (reaped) or WAKING (restored, not serving yet for
``restore_latency_s``). GPU-hours count while UP or WAKING (a starting pod holds
its GPU). While DOWN, only positive evidence of demand (requests or influence)
or the approach of protected hours brings capacity back; requests arriving
before it serves again are the wake-up cost.
"""

from __future__ import annotations

import bisect
import statistics
from dataclasses import dataclass, field

from costeff.reaper.config import ReaperConfig, Target
from costeff.reaper.decision import IdleStreak, Schedule, has_demand
from costeff.reaper.signals import Sample, Trace, iso

UP, DOWN, WAKING = "up", "down", "waking"


@dataclass
class SimAction:
    """One simulated reap or restore."""

    ts: float
    resource: str
    target: str
    action: str  # "reap" or "restore"
    reason: str
    gpus: float
    usd_per_hour_saved: float
    idle_for_s: float = 0.0

    def to_dict(self) -> dict:
        return {"time": iso(self.ts), "resource": self.resource, "target": self.target, "action": self.action,
                "reason": self.reason, "gpus": self.gpus, "usd_per_hour_saved": round(self.usd_per_hour_saved, 4),
                "idle_for_s": self.idle_for_s}


@dataclass
class ResourceResult:
    resource: str
    target: str
    excluded: str | None
    samples: int
    gpu_hours_without: float = 0.0
    gpu_hours_with: float = 0.0
    down_s: float = 0.0
    reaps: int = 0
    reaps_while_active: int = 0
    wakeups: int = 0
    requests_waited: float = 0.0
    waits: list[tuple[float, float]] = field(default_factory=list)  # (seconds until served, requests)

    @property
    def reduction_pct(self) -> float:
        return 100.0 * (1 - self.gpu_hours_with / self.gpu_hours_without) if self.gpu_hours_without else 0.0


@dataclass
class ReplayResult:
    resources: list[ResourceResult]
    actions: list[SimAction]
    usd_per_gpu_hour: float

    @property
    def gpu_hours_without(self) -> float:
        return sum(r.gpu_hours_without for r in self.resources)

    @property
    def gpu_hours_with(self) -> float:
        return sum(r.gpu_hours_with for r in self.resources)

    @property
    def reduction_pct(self) -> float:
        without = self.gpu_hours_without
        return 100.0 * (1 - self.gpu_hours_with / without) if without else 0.0

    @property
    def reaps_while_active(self) -> int:
        return sum(r.reaps_while_active for r in self.resources)


def replay(trace: Trace, config: ReaperConfig, usd_per_gpu_hour: float) -> ReplayResult:
    """Run the decision rules over every resource of ``trace``; nothing outside this process is touched."""
    gpus = {r: s[0].gpus for r, s in trace.samples.items()}
    targets = {t.resource: t for t in config.targets_for(trace.resources, gpus)}
    schedule = Schedule(config.schedule)
    results, actions = [], []
    for resource in trace.resources:
        target = targets.get(resource)
        if target is None:
            # A resource with signals but no target has nothing to act on: it stays up.
            target = Target(resource=resource, kind="pipeline", name=f"unconfigured-{resource}")
            excluded: str | None = "no target configured for this resource"
        else:
            excluded = config.exclude.excludes(target)
        sim = _Simulation(config, target, schedule, usd_per_gpu_hour, excluded)
        results.append(sim.run(trace.samples[resource]))
        actions.extend(sim.actions)
    actions.sort(key=lambda a: (a.ts, a.resource))
    return ReplayResult(results, actions, usd_per_gpu_hour)


class _Simulation:
    def __init__(self, config: ReaperConfig, target: Target, schedule: Schedule, usd_per_gpu_hour: float,
                 excluded: str | None) -> None:
        self.cfg, self.target, self.schedule = config, target, schedule
        self.usd_per_gpu_hour = usd_per_gpu_hour
        self.latency = config.savings.restore_latency_s
        self.actions: list[SimAction] = []
        self.state, self.ready_at = UP, 0.0
        self.streak = IdleStreak(config.decision)
        self.result = ResourceResult(target.resource, target.key, excluded, 0)

    def run(self, samples: list[Sample]) -> ResourceResult:
        r = self.result
        r.samples = len(samples)
        step = _typical_step(samples)
        prev_ts = samples[0].ts - step
        guarded = self.target.protected_by_schedule
        for sample in samples:
            # A sample stands for the interval before it; a gap counts as at most one stale window.
            dt = min(sample.ts - prev_ts, max(step, self.cfg.decision.stale_after_s))
            prev_ts = sample.ts
            # The interval ending at this sample ran in the state decided at the previous one.
            r.gpu_hours_without += sample.gpus * dt / 3600.0
            if self.state == DOWN:
                r.down_s += dt
            else:
                r.gpu_hours_with += sample.gpus * dt / 3600.0
            idle_for = self.streak.update(sample)
            self._advance(sample, idle_for, guarded and self.schedule.blocks(sample.ts))
        r.reaps_while_active = self._reaps_while_active(samples)
        return r

    def _advance(self, sample: Sample, idle_for: float, blocked: bool) -> None:
        if self.state == WAKING and sample.ts >= self.ready_at:
            self.state = UP
        if self.state == WAKING:
            self._wait(sample)
        elif self.state == DOWN:
            if has_demand(sample):
                self._restore(sample, "demand: " + _demand(sample))
                self._wait(sample)
            elif blocked:
                self._restore(sample, "protected hours ahead (pre-warm)")
        elif idle_for >= self.cfg.decision.window_s and not blocked and self.result.excluded is None:
            self._reap(sample, idle_for)

    def _reap(self, sample: Sample, idle_for: float) -> None:
        self.state = DOWN
        self.result.reaps += 1
        saved = sample.gpus * self.usd_per_gpu_hour
        self.actions.append(SimAction(sample.ts, sample.resource, self.target.key, "reap",
                                      f"idle for {idle_for:.0f} s (every factor held)", sample.gpus, saved,
                                      idle_for))

    def _restore(self, sample: Sample, reason: str) -> None:
        self.state, self.ready_at = WAKING, sample.ts + self.latency
        self.result.wakeups += 1
        self.streak.reset()
        self.actions.append(SimAction(sample.ts, sample.resource, self.target.key, "restore", reason,
                                      sample.gpus, 0.0))
        if self.latency == 0:
            self.state = UP

    def _wait(self, sample: Sample) -> None:
        """Requests in this sample arrived before capacity served again: they wait for the restore."""
        if self.state == WAKING and sample.requests:
            self.result.requests_waited += sample.requests
            self.result.waits.append((self.ready_at - sample.ts, sample.requests))

    def _reaps_while_active(self, samples: list[Sample]) -> int:
        """Reaps whose window held any traffic or influence, checked on the raw trace (not via the decision)."""
        times = [s.ts for s in samples]
        window = self.cfg.decision.window_s
        count = 0
        for action in (a for a in self.actions if a.action == "reap"):
            lo, hi = bisect.bisect_right(times, action.ts - window), bisect.bisect_right(times, action.ts)
            count += any(has_demand(s) for s in samples[lo:hi])
        return count


def _typical_step(samples: list[Sample]) -> float:
    if len(samples) < 2:
        return 15.0
    gaps = [b.ts - a.ts for a, b in zip(samples[:1001], samples[1:1001], strict=False)]
    return statistics.median(gaps)


def _demand(sample: Sample) -> str:
    parts = []
    if sample.requests:
        parts.append(f"{sample.requests:g} requests")
    if sample.influence_pct:
        parts.append(f"influence {sample.influence_pct:g}%")
    return ", ".join(parts)


def wait_stats(result: ReplayResult) -> dict:
    """Wake-up cost over every resource: requests that waited for a restore, and for how long."""
    waits = [w for r in result.resources for w in r.waits]
    total = sum(q for _, q in waits)
    return {
        "wakeups": sum(r.wakeups for r in result.resources),
        "requests_waited": total,
        "wait_s_max": max((w for w, _ in waits), default=0.0),
        "wait_s_mean_per_request": sum(w * q for w, q in waits) / total if total else 0.0,
        "request_wait_seconds": sum(w * q for w, q in waits),
    }

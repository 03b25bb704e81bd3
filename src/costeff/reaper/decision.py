"""The idle decision: every configured factor, over the whole window, on fresh data.

A sample is idle only when every configured factor is present and below its
threshold. The idle streak restarts at any sample that is not idle (hysteresis:
one blip resets the whole window) and at any gap longer than ``stale_after_s``
(missing data is not idle data). Protected hours block reaping whatever the
signals say.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from costeff.reaper.config import DAYS, DecisionConfig, ScheduleConfig, Target
from costeff.reaper.signals import Sample


def sample_blockers(sample: Sample, cfg: DecisionConfig) -> list[str]:
    """Why this sample is not idle (empty list: idle)."""
    reasons = []
    if "influence" in cfg.factors:
        if sample.influence_pct is None:
            reasons.append("influence_pct missing")
        elif sample.influence_pct > cfg.max_influence_pct:
            reasons.append(f"influence {sample.influence_pct:g}% > {cfg.max_influence_pct:g}%")
    if "gpu_util" in cfg.factors:
        if sample.gpu_util_pct is None:
            reasons.append("gpu_util_pct missing")
        elif sample.gpu_util_pct >= cfg.max_gpu_util_pct:
            reasons.append(f"GPU util {sample.gpu_util_pct:g}% >= {cfg.max_gpu_util_pct:g}%")
    if "requests" in cfg.factors:
        rate = sample.requests_per_s  # None exactly when requests is
        if rate is None:
            reasons.append("requests missing")
        elif rate > cfg.max_requests:
            reasons.append(f"{rate:g} requests/s > {cfg.max_requests:g}/s")
    return reasons


def is_idle_sample(sample: Sample, cfg: DecisionConfig) -> bool:
    """The fast path of ``sample_blockers`` for replay (same rules, no strings)."""
    f = cfg.factors
    if "influence" in f and (sample.influence_pct is None or sample.influence_pct > cfg.max_influence_pct):
        return False
    if "gpu_util" in f and (sample.gpu_util_pct is None or sample.gpu_util_pct >= cfg.max_gpu_util_pct):
        return False
    if "requests" in f and ((rate := sample.requests_per_s) is None or rate > cfg.max_requests):
        return False
    return True


def has_demand(sample: Sample) -> bool:
    """Positive evidence that someone needs the capacity (wake-up trigger). Missing is not evidence."""
    return bool(sample.requests) or bool(sample.influence_pct)


class IdleStreak:
    """Tracks how long a resource has been idle without a break, sample by sample."""

    def __init__(self, cfg: DecisionConfig) -> None:
        self.cfg = cfg
        self.since: float | None = None
        self.last_ts: float | None = None
        self.last_reasons: list[str] = ["no samples yet"]

    def update(self, sample: Sample) -> float:
        """Feed the next sample; returns seconds idle so far (0 when not idle)."""
        stale = self.last_ts is not None and sample.ts - self.last_ts > self.cfg.stale_after_s
        self.last_ts = sample.ts
        if not is_idle_sample(sample, self.cfg):
            self.since = None
            self.last_reasons = sample_blockers(sample, self.cfg)
            return 0.0
        if stale or self.since is None:
            # The streak starts here: we know nothing about the time before this sample.
            self.since = sample.ts
            if stale:
                self.last_reasons = ["gap in the data"]
        return sample.ts - self.since

    def reset(self) -> None:
        """Capacity just came back: the window starts again from the next idle sample."""
        self.since = None


@dataclass
class Verdict:
    """The decision for one resource at one moment."""

    resource: str
    idle: bool
    idle_for_s: float
    reasons: list[str] = field(default_factory=list)
    protected: bool = False
    excluded: str | None = None
    last_sample_ts: float | None = None

    @property
    def reap(self) -> bool:
        return self.idle and not self.protected and self.excluded is None


def decide(samples: list[Sample], now: float, cfg: DecisionConfig, target: Target | None = None,
           schedule: ScheduleConfig | None = None, excluded: str | None = None) -> Verdict:
    """Whether a resource may be reaped at ``now`` given its samples (oldest first)."""
    resource = samples[0].resource if samples else (target.resource if target else "?")
    streak, idle_for = IdleStreak(cfg), 0.0
    present = [s for s in samples if s.ts <= now]
    for sample in present:
        idle_for = streak.update(sample)
    verdict = Verdict(resource, False, idle_for, excluded=excluded,
                      last_sample_ts=present[-1].ts if present else None)
    if not present:
        verdict.reasons = ["no data (empty result)"]
    elif now - present[-1].ts > cfg.stale_after_s:
        verdict.reasons, verdict.idle_for_s = [f"stale: last sample {now - present[-1].ts:.0f} s old"], 0.0
    elif idle_for < cfg.window_s:
        verdict.reasons = streak.last_reasons if idle_for == 0 else \
            [f"idle for {idle_for:.0f} s, window is {cfg.window_s:.0f} s"] + \
            ([f"earlier: {', '.join(streak.last_reasons)}"] if streak.since != present[0].ts else [])
    else:
        verdict.idle = True
    if schedule is not None and (target is None or target.protected_by_schedule):
        verdict.protected = blocks_reaping(schedule, now)
        if verdict.protected:
            verdict.reasons.append("protected hours")
    return verdict


class Schedule:
    """Protected hours in a time zone; cached per local day for replay speed."""

    def __init__(self, cfg: ScheduleConfig) -> None:
        self.cfg = cfg
        self._days: dict[int, tuple[float, float] | None] = {}

    def window_on(self, ts: float) -> tuple[float, float] | None:
        """The protected interval (epoch s) on the local day containing ``ts``, or None."""
        local = datetime.fromtimestamp(ts, timezone.utc).astimezone(self.cfg.zone)
        key = local.toordinal()
        if key not in self._days:
            self._days[key] = self._window(local)
        return self._days[key]

    def _window(self, local: datetime) -> tuple[float, float] | None:
        day = local.date()
        if not self.cfg.enabled or DAYS[day.weekday()] not in self.cfg.days or day in self.cfg.holidays:
            return None
        start = datetime.combine(day, self.cfg.start, self.cfg.zone)
        end = datetime.combine(day, self.cfg.end, self.cfg.zone)
        return start.timestamp(), end.timestamp()

    def protected(self, ts: float) -> bool:
        window = self.window_on(ts)
        return window is not None and window[0] <= ts < window[1]

    def blocks(self, ts: float) -> bool:
        """Protected now, or soon enough that capacity must already be coming back (pre-warm)."""
        return self.protected(ts) or self.protected(ts + self.cfg.prewarm_s)


def blocks_reaping(cfg: ScheduleConfig, ts: float) -> bool:
    return Schedule(cfg).blocks(ts)

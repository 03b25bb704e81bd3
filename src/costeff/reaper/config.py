"""Reaper configuration: frozen dataclasses validated on construction, loaded from TOML.

Every threshold has the original programme's default (influence = 0, GPU util < 20 %,
zero requests, for 30 minutes). A config file may set any subset; unknown keys are
rejected with a "did you mean" hint, because a misspelt threshold silently falling
back to its default is exactly how capacity gets reaped by surprise.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from datetime import date, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from costeff.errors import InputError

FACTORS = ("influence", "gpu_util", "requests")
TARGET_KINDS = ("deployment", "statefulset", "gpu", "pipeline")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ANNOTATION = "costeff.io/original-replicas"

DEFAULT_QUERIES = {
    # Each query must return one series per resource: aggregate in PromQL, not here.
    "gpu_util_pct": 'avg(DCGM_FI_DEV_GPU_UTIL{namespace="{namespace}", pod=~"{name}-.*"})',
    "requests_per_s": 'sum(rate(nv_inference_request_success{namespace="{namespace}", pod=~"{name}-.*"}[1m]))',
    "influence_pct": 'max(costeff_policy_influence_pct{deployment="{name}"})',
    "fb_used_mb": 'sum(DCGM_FI_DEV_FB_USED{namespace="{namespace}", pod=~"{name}-.*"})',
    "power_w": 'sum(DCGM_FI_DEV_POWER_USAGE{namespace="{namespace}", pod=~"{name}-.*"})',
}


def _hint(text: str, choices: Any) -> str:
    close = difflib.get_close_matches(text, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _bad(field_name: str, value: Any, allowed: str) -> InputError:
    return InputError(f"reaper config: {field_name} = {value!r} is not allowed; expected {allowed}")


@dataclass(frozen=True)
class DecisionConfig:
    """When a resource counts as idle: every factor in ``factors`` holds for ``window_s``."""

    window_s: float = 1800.0
    max_influence_pct: float = 0.0
    max_gpu_util_pct: float = 20.0  # idle means strictly below this
    max_requests: float = 0.0
    stale_after_s: float = 60.0  # a gap (or a last sample older) than this means: unknown, not idle
    factors: tuple[str, ...] = FACTORS

    def __post_init__(self) -> None:
        if not self.window_s > 0:
            raise _bad("decision.window_s", self.window_s, "seconds > 0")
        if not self.stale_after_s > 0:
            raise _bad("decision.stale_after_s", self.stale_after_s, "seconds > 0")
        for name in ("max_influence_pct", "max_gpu_util_pct", "max_requests"):
            if getattr(self, name) < 0:
                raise _bad(f"decision.{name}", getattr(self, name), "a number >= 0")
        if not self.factors or any(f not in FACTORS for f in self.factors):
            raise _bad("decision.factors", list(self.factors), f"a non-empty subset of {list(FACTORS)}")


@dataclass(frozen=True)
class ScheduleConfig:
    """Protected hours (e.g. market hours) when nothing is reaped, in a time zone, minus holidays."""

    timezone: str = "America/New_York"
    days: tuple[str, ...] = DAYS[:5]
    start: time = time(9, 30)
    end: time = time(16, 0)
    prewarm_s: float = 900.0  # capacity comes back this long before protected hours start
    holidays: frozenset[date] = frozenset()  # market closed: protection does not apply
    enabled: bool = True

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise _bad("schedule.timezone", self.timezone, "an IANA time zone such as 'America/New_York'") from None
        if any(d not in DAYS for d in self.days):
            raise _bad("schedule.days", list(self.days), f"days from {list(DAYS)}")
        if not self.start < self.end:
            raise _bad("schedule.end", self.end.isoformat("minutes"), f"a time after start {self.start}")
        if self.prewarm_s < 0:
            raise _bad("schedule.prewarm_s", self.prewarm_s, "seconds >= 0")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Target:
    """One thing the reaper may act on, driven by the signals of ``resource``."""

    resource: str
    kind: str = "deployment"
    name: str = ""
    namespace: str = "default"
    labels: tuple[tuple[str, str], ...] = ()
    gpus_per_replica: float = 1.0
    gpu_index: int = 0
    power_limit_w: float | None = None
    usd_per_hour: float = 0.0  # for pipelines: what a paused pipeline stops spending
    protected_by_schedule: bool = True

    def __post_init__(self) -> None:
        if not self.resource:
            raise _bad("targets.resource", self.resource, "a non-empty resource name")
        if self.kind not in TARGET_KINDS:
            raise _bad("targets.kind", self.kind, f"one of {list(TARGET_KINDS)}" + _hint(self.kind, TARGET_KINDS))
        if not self.name:
            object.__setattr__(self, "name", self.resource)
        if self.kind == "gpu" and (self.power_limit_w is None or self.power_limit_w <= 0):
            raise _bad(f"targets[{self.resource}].power_limit_w", self.power_limit_w,
                       "watts > 0 for a 'gpu' target")
        if self.gpus_per_replica < 0 or self.usd_per_hour < 0:
            raise _bad(f"targets[{self.resource}].gpus_per_replica", self.gpus_per_replica, "a number >= 0")

    @property
    def key(self) -> str:
        """Identity used to match an action with its restore in the audit trail."""
        if self.kind == "gpu":
            return f"gpu/{self.gpu_index}"
        if self.kind == "pipeline":
            return f"pipeline/{self.name}"
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Exclusions:
    names: frozenset[str] = frozenset()
    labels: tuple[tuple[str, str], ...] = ()

    def excludes(self, target: Target) -> str | None:
        if target.resource in self.names or target.name in self.names:
            return f"excluded by name {target.name!r}"
        own = dict(target.labels)
        for key, value in self.labels:
            if own.get(key) == value:
                return f"excluded by label {key}={value}"
        return None


@dataclass(frozen=True)
class PrometheusConfig:
    url: str | None = None
    step_s: float = 15.0
    timeout_s: float = 10.0
    queries: tuple[tuple[str, str], ...] = tuple(DEFAULT_QUERIES.items())

    def __post_init__(self) -> None:
        if not self.step_s > 0 or not self.timeout_s > 0:
            raise _bad("prometheus.step_s", self.step_s, "seconds > 0")
        for key, _ in self.queries:
            if key not in DEFAULT_QUERIES:
                raise _bad("prometheus.queries", key, f"keys from {list(DEFAULT_QUERIES)}" + _hint(key, DEFAULT_QUERIES))

    def query(self, key: str, target: Target) -> str | None:
        template = dict(self.queries).get(key)
        if template is None:
            return None
        # str.format would trip over PromQL's own braces; substitute the two names only.
        return template.replace("{name}", target.name).replace("{namespace}", target.namespace)


@dataclass(frozen=True)
class SavingsConfig:
    instance: str = "aws-p4d.24xlarge"
    catalog: str | None = None
    restore_latency_s: float = 120.0  # time from restore to serving again (pod start + model load)

    def __post_init__(self) -> None:
        if self.restore_latency_s < 0:
            raise _bad("savings.restore_latency_s", self.restore_latency_s, "seconds >= 0")


@dataclass(frozen=True)
class ReaperConfig:
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    exclude: Exclusions = field(default_factory=Exclusions)
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    savings: SavingsConfig = field(default_factory=SavingsConfig)
    targets: tuple[Target, ...] = ()
    source: str | None = None

    def with_prometheus_url(self, url: str) -> "ReaperConfig":
        return replace(self, prometheus=replace(self.prometheus, url=url))

    def targets_for(self, resources: list[str], gpus: dict[str, float] | None = None) -> tuple[Target, ...]:
        """The configured targets, or one Deployment per resource when none are configured."""
        if self.targets:
            return self.targets
        return tuple(Target(resource=r, gpus_per_replica=(gpus or {}).get(r, 1.0)) for r in resources)


_SECTIONS = {"decision", "schedule", "exclude", "prometheus", "savings", "targets"}


def load_config(path: Path | str | None = None) -> ReaperConfig:
    """The defaults, or ``path`` (TOML) on top of them."""
    if path is None:
        return ReaperConfig()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read reaper config: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from None
    try:
        return _from_dict(data, path.parent, str(path))
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def _from_dict(data: dict[str, Any], base: Path, source: str) -> ReaperConfig:
    _check_keys("", data, _SECTIONS)
    targets = data.get("targets", [])
    if not isinstance(targets, list):
        raise _bad("targets", targets, "an array of tables ([[targets]])")
    return ReaperConfig(
        decision=_section(DecisionConfig, "decision", data.get("decision", {}), {"factors": tuple}),
        schedule=_schedule(data.get("schedule", {}), base),
        exclude=_exclusions(data.get("exclude", {})),
        prometheus=_section(PrometheusConfig, "prometheus", data.get("prometheus", {}),
                            {"queries": lambda q: tuple({**DEFAULT_QUERIES, **q}.items())}),
        savings=_section(SavingsConfig, "savings", data.get("savings", {}), {}),
        targets=tuple(_section(Target, "targets", t, {"labels": lambda d: tuple(sorted(d.items()))})
                      for t in targets),
        source=source,
    )


def _check_keys(section: str, table: Any, allowed: set[str]) -> None:
    if not isinstance(table, dict):
        raise _bad(section or "config", table, "a table")
    for key in table:
        if key not in allowed:
            where = f"{section}.{key}" if section else key
            raise InputError(f"reaper config: unknown key {where!r}{_hint(key, allowed)}; "
                             f"allowed: {sorted(allowed)}")


def _section(cls: Any, name: str, table: dict[str, Any], convert: dict[str, Any]) -> Any:
    allowed = {f.name for f in fields(cls)}
    _check_keys(name, table, allowed)
    values = {k: convert[k](v) if k in convert else v for k, v in table.items()}
    try:
        return cls(**values)
    except TypeError as exc:
        raise InputError(f"reaper config: [{name}]: {exc}") from None


def _schedule(table: dict[str, Any], base: Path) -> ScheduleConfig:
    allowed = {f.name for f in fields(ScheduleConfig)}
    _check_keys("schedule", table, allowed)
    values = dict(table)
    for key in ("start", "end"):
        if key in values:
            values[key] = _time(f"schedule.{key}", values[key])
    if "days" in values:
        values["days"] = tuple(str(d).lower()[:3] for d in values["days"])
    if "holidays" in values:
        values["holidays"] = load_holidays(base / values["holidays"])
    return ScheduleConfig(**values)


def _time(field_name: str, value: Any) -> time:
    if isinstance(value, time):
        return value
    if not isinstance(value, str) or not re.fullmatch(r"\d{1,2}:\d{2}", value):
        raise _bad(field_name, value, "a time of day 'HH:MM'")
    hour, minute = map(int, value.split(":"))
    if hour > 23 or minute > 59:
        raise _bad(field_name, value, "a time of day 'HH:MM'")
    return time(hour, minute)


def _exclusions(table: dict[str, Any]) -> Exclusions:
    _check_keys("exclude", table, {"names", "labels"})
    labels = table.get("labels", {})
    if not isinstance(labels, dict):
        raise _bad("exclude.labels", labels, "a table of label = value")
    return Exclusions(frozenset(map(str, table.get("names", []))),
                      tuple(sorted((str(k), str(v)) for k, v in labels.items())))


def load_holidays(path: Path | str) -> frozenset[date]:
    """A holiday calendar: one ``YYYY-MM-DD`` per line (anything after it is a name), ``#`` comments."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read holiday calendar: {exc.strerror}") from None
    days = set()
    for lineno, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            days.add(date.fromisoformat(text.split()[0]))
        except ValueError:
            raise InputError(f"{path}: line {lineno}: {text.split()[0]!r} is not a date; expected YYYY-MM-DD") \
                from None
    return frozenset(days)

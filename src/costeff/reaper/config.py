"""Reaper configuration: frozen pydantic dataclasses (strict scalar types, unknown keys refused), from TOML.

Every threshold has the original programme's default (influence = 0, GPU util < 20 %,
zero requests, for 30 minutes). A config file may set any subset; unknown keys are
rejected with a "did you mean" hint, because a misspelt threshold silently falling
back to its default is exactly how capacity gets reaped by surprise, and a value of
the wrong type (``names = "policy-a"``, ``prewarm_s = "900"``) is refused, never
coerced into something else.
"""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import field, replace
from datetime import date, time
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, StrictBool, StrictFloat, StrictInt, StrictStr
from pydantic.dataclasses import dataclass

from costeff.configfile import STRICT, did_you_mean, read_toml, validate
from costeff.errors import InputError

FACTORS = ("influence", "gpu_util", "requests")
TARGET_KINDS = ("deployment", "statefulset", "gpu", "pipeline", "triton")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ANNOTATION = "costeff.io/original-replicas"

DEFAULT_QUERIES = {
    # Each query must return one series per resource: aggregate in PromQL, not here.
    "gpu_util_pct": 'avg(DCGM_FI_DEV_GPU_UTIL{namespace="{namespace}", pod=~"{name}-.*"})',
    "requests_per_s": 'sum(rate(nv_inference_request_success{namespace="{namespace}", pod=~"{name}-.*"}[1m]))',
    # Exported by `costeff ramp watch` (--policy-model); a firm with its own figure overrides this query.
    "influence_pct": 'max(costeff_policy_influence_pct{model="{model}"})',
    "fb_used_mb": 'sum(DCGM_FI_DEV_FB_USED{namespace="{namespace}", pod=~"{name}-.*"})',
    "power_w": 'sum(DCGM_FI_DEV_POWER_USAGE{namespace="{namespace}", pod=~"{name}-.*"})',
}
# A Triton target's defaults: Triton's own metrics (its metrics port, scraped by Prometheus), per model.
# Where a query is set in the config, that query is used for every kind of target.
TRITON_QUERIES = {
    "gpu_util_pct": "100 * max(nv_gpu_utilization)",  # the GPUs the server sees; a CPU-only server has none
    "requests_per_s": 'sum(rate(nv_inference_request_success{model="{model}"}[5m]))',
    "influence_pct": DEFAULT_QUERIES["influence_pct"],
    "fb_used_mb": "sum(nv_gpu_memory_used_bytes) / 1048576",
    "power_w": "sum(nv_gpu_power_usage)",
}


_hint = did_you_mean


def _time(value: Any) -> Any:
    """``"HH:MM"`` (or a TOML time) to a ``time``; anything else is left for the type check to refuse."""
    if isinstance(value, str) and re.fullmatch(r"\d{1,2}:\d{2}", value):
        hour, minute = map(int, value.split(":"))
        if hour <= 23 and minute <= 59:
            return time(hour, minute)
    return value


def _pairs(value: Any) -> Any:
    """A TOML table of ``label = value`` to sorted pairs (lists of pairs, from the audit trail, pass)."""
    if isinstance(value, dict):
        return tuple(sorted((k, v) for k, v in value.items()))
    return value


def _days(value: Any) -> Any:
    if isinstance(value, (list, tuple)) and all(isinstance(d, str) for d in value):
        return tuple(d.lower()[:3] for d in value)
    return value


Seconds = StrictFloat
HHMM = Annotated[time, BeforeValidator(_time)]
Labels = Annotated[tuple[tuple[StrictStr, StrictStr], ...], BeforeValidator(_pairs)]


def _bad(field_name: str, value: Any, allowed: str) -> InputError:
    return InputError(f"reaper config: {field_name} = {value!r} is not allowed; expected {allowed}")


WEEK_S = 7 * 86400.0
MAX_RATE = 1e9  # requests/s: a threshold above this is a typo, not a policy
MAX_TIMEOUT_S = 600.0


def _within(field_name: str, value: float, low: float, high: float, allowed: str, low_open: bool = False) -> None:
    """``low <= value <= high`` (``low < value`` when ``low_open``); NaN and infinities never pass."""
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        raise _bad(field_name, value, allowed)


@dataclass(frozen=True, config=STRICT)
class DecisionConfig:
    """When a resource counts as idle: every factor in ``factors`` holds for ``window_s``."""

    window_s: Seconds = 1800.0
    max_influence_pct: StrictFloat = 0.0
    max_gpu_util_pct: StrictFloat = 20.0  # idle means strictly below this
    max_requests: StrictFloat = 0.0  # requests per second (a sample's count over its interval)
    stale_after_s: Seconds = 60.0  # a gap (or a last sample older) than this means: unknown, not idle
    factors: tuple[StrictStr, ...] = FACTORS
    # With --watch --apply: signals unavailable this long bring reaped capacity back (demand can no longer
    # be seen, so fail safe to capacity); None never does.
    restore_when_blind_s: Seconds | None = 900.0

    def __post_init__(self) -> None:
        _within("decision.window_s", self.window_s, 0, WEEK_S, "seconds, > 0 and at most a week", low_open=True)
        _within("decision.stale_after_s", self.stale_after_s, 0, WEEK_S, "seconds, > 0 and at most a week",
                low_open=True)
        if self.restore_when_blind_s is not None:
            _within("decision.restore_when_blind_s", self.restore_when_blind_s, 0, WEEK_S, "seconds, 0 to a week")
        _within("decision.max_influence_pct", self.max_influence_pct, 0, 100, "a percentage from 0 to 100")
        _within("decision.max_gpu_util_pct", self.max_gpu_util_pct, 0, 100, "a percentage from 0 to 100")
        _within("decision.max_requests", self.max_requests, 0, MAX_RATE, f"requests/s from 0 to {MAX_RATE:g}")
        if not self.factors or any(f not in FACTORS for f in self.factors):
            raise _bad("decision.factors", list(self.factors), f"a non-empty subset of {list(FACTORS)}")


@dataclass(frozen=True, config=STRICT)
class ScheduleConfig:
    """Protected hours (e.g. market hours) when nothing is reaped, in a time zone, minus holidays."""

    timezone: StrictStr = "America/New_York"
    days: Annotated[tuple[StrictStr, ...], BeforeValidator(_days)] = DAYS[:5]
    start: HHMM = time(9, 30)
    end: HHMM = time(16, 0)
    prewarm_s: Seconds = 900.0  # capacity comes back this long before protected hours start
    holidays: frozenset[date] = frozenset()  # market closed: protection does not apply
    enabled: StrictBool = True

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise _bad("schedule.timezone", self.timezone, "an IANA time zone such as 'America/New_York'") from None
        if any(d not in DAYS for d in self.days):
            raise _bad("schedule.days", list(self.days), f"days from {list(DAYS)}")
        if not self.start < self.end:
            raise _bad("schedule.end", self.end.isoformat("minutes"), f"a time after start {self.start}")
        _within("schedule.prewarm_s", self.prewarm_s, 0, 86400, "seconds from 0 to 86400")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, config=STRICT)
class Target:
    """One thing the reaper may act on, driven by the signals of ``resource``."""

    resource: StrictStr = ""  # default: name
    kind: StrictStr = "deployment"
    name: StrictStr = ""
    model: StrictStr = ""  # the model served ({model} in queries; Triton's model name); default: name
    namespace: StrictStr = "default"
    labels: Labels = ()
    gpus_per_replica: StrictFloat = 1.0
    gpu_index: StrictInt = 0
    power_limit_w: StrictFloat | None = None
    usd_per_hour: StrictFloat = 0.0  # pipelines, Triton models: what a paused pipeline / unloaded model stops spending
    url: StrictStr | None = None  # triton: the server's HTTP address, HOST:PORT
    protected_by_schedule: StrictBool = True

    def __post_init__(self) -> None:
        if not self.resource:
            object.__setattr__(self, "resource", self.name)
        if not self.resource:
            raise _bad("targets.resource", self.resource, "a non-empty resource name (or name)")
        if self.kind not in TARGET_KINDS:
            raise _bad("targets.kind", self.kind, f"one of {list(TARGET_KINDS)}" + _hint(self.kind, TARGET_KINDS))
        if not self.name:
            object.__setattr__(self, "name", self.resource)
        if not self.model:
            object.__setattr__(self, "model", self.name)
        if self.kind == "triton":
            object.__setattr__(self, "url", _host_port(self.url, f"targets[{self.resource}].url"))
        if self.kind == "gpu" and (self.power_limit_w is None or not 0 < self.power_limit_w <= 10_000):
            raise _bad(f"targets[{self.resource}].power_limit_w", self.power_limit_w,
                       "watts, > 0 and at most 10000, for a 'gpu' target")
        _within(f"targets[{self.resource}].gpus_per_replica", self.gpus_per_replica, 0, 4096, "GPUs from 0 to 4096")
        _within(f"targets[{self.resource}].usd_per_hour", self.usd_per_hour, 0, 1e6, "USD/h from 0 to 1e6")

    @property
    def key(self) -> str:
        """Identity used to match an action with its restore in the audit trail."""
        if self.kind == "gpu":
            return f"gpu/{self.gpu_index}"
        if self.kind == "pipeline":
            return f"pipeline/{self.name}"
        if self.kind == "triton":
            return f"triton/{self.url}/{self.model}"
        return f"{self.kind}/{self.namespace}/{self.name}"


def _host_port(url: str | None, field_name: str) -> str:
    """A Triton HTTP address as HOST:PORT (an ``http://`` prefix and a trailing slash are dropped)."""
    host = re.sub(r"^https?://", "", (url or "").strip()).rstrip("/")
    if not re.fullmatch(r"[\w.\-\[\]:]+:\d{1,5}", host):
        raise _bad(field_name, url, "the Triton server's HTTP address HOST:PORT (e.g. '127.0.0.1:8000')")
    return host


@dataclass(frozen=True, config=STRICT)
class Exclusions:
    names: frozenset[StrictStr] = frozenset()
    labels: Labels = ()

    def excludes(self, target: Target) -> str | None:
        if target.resource in self.names or target.name in self.names:
            return f"excluded by name {target.name!r}"
        own = dict(target.labels)
        for key, value in self.labels:
            if own.get(key) == value:
                return f"excluded by label {key}={value}"
        return None


def _queries(value: Any) -> Any:
    """A TOML table of queries replaces the defaults key by key."""
    return tuple({**DEFAULT_QUERIES, **value}.items()) if isinstance(value, dict) else value


@dataclass(frozen=True, config=STRICT)
class PrometheusConfig:
    url: StrictStr | None = None
    step_s: Seconds = 15.0
    timeout_s: Seconds = 10.0
    queries: Annotated[tuple[tuple[StrictStr, StrictStr], ...], BeforeValidator(_queries)] = \
        tuple(DEFAULT_QUERIES.items())

    def __post_init__(self) -> None:
        _within("prometheus.step_s", self.step_s, 0, 3600, "seconds, > 0 and at most 3600", low_open=True)
        _within("prometheus.timeout_s", self.timeout_s, 0, MAX_TIMEOUT_S,
                f"seconds, > 0 and at most {MAX_TIMEOUT_S:g} (a deadline for each whole HTTP call)", low_open=True)
        for key, _ in self.queries:
            if key not in DEFAULT_QUERIES:
                raise _bad("prometheus.queries", key,
                           f"keys from {list(DEFAULT_QUERIES)}" + _hint(key, DEFAULT_QUERIES))

    def query(self, key: str, target: Target) -> str | None:
        template = dict(self.queries).get(key)
        if template is None:
            return None
        if target.kind == "triton" and template == DEFAULT_QUERIES.get(key):
            template = TRITON_QUERIES[key]
        # str.format would trip over PromQL's own braces; substitute the names only.
        return (template.replace("{name}", target.name).replace("{namespace}", target.namespace)
                .replace("{model}", target.model or target.name))


@dataclass(frozen=True, config=STRICT)
class SavingsConfig:
    instance: StrictStr = "aws-p4d.24xlarge"
    catalog: StrictStr | None = None
    restore_latency_s: Seconds = 120.0  # time from restore to serving again (pod start + model load)

    def __post_init__(self) -> None:
        _within("savings.restore_latency_s", self.restore_latency_s, 0, 86400, "seconds from 0 to 86400")


@dataclass(frozen=True, config=STRICT)
class ReaperConfig:
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    exclude: Exclusions = field(default_factory=Exclusions)
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    savings: SavingsConfig = field(default_factory=SavingsConfig)
    targets: tuple[Target, ...] = ()
    source: StrictStr | None = None

    def with_prometheus_url(self, url: str) -> "ReaperConfig":
        return replace(self, prometheus=replace(self.prometheus, url=url))

    def targets_for(self, resources: list[str], gpus: dict[str, float] | None = None) -> tuple[Target, ...]:
        """The configured targets, or one Deployment per resource when none are configured."""
        if self.targets:
            return self.targets
        return tuple(Target(resource=r, gpus_per_replica=(gpus or {}).get(r, 1.0)) for r in resources)


def load_config(path: Path | str | None = None) -> ReaperConfig:
    """The defaults, or ``path`` (TOML) on top of them; any error names the file and the key."""
    if path is None:
        return ReaperConfig()
    path = Path(path)
    data = read_toml(path, "reaper config")
    schedule = data.get("schedule")
    if isinstance(schedule, dict) and isinstance(schedule.get("holidays"), str):
        data["schedule"] = {**schedule, "holidays": load_holidays(path.parent / schedule["holidays"])}
    if "source" in data:
        raise InputError(f"{path}: source: unknown key; allowed: decision, exclude, prometheus, savings, schedule, "
                         f"targets")
    return validate(ReaperConfig, {**data, "source": str(path)}, str(path))


def load_holidays(path: Path | str) -> frozenset[date]:
    """A holiday calendar: one ``YYYY-MM-DD`` per line (anything after it is a name), ``#`` comments."""
    path = Path(path)
    lines = _calendar_lines(path)
    days = set()
    for lineno, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            days.add(date.fromisoformat(text.split()[0]))
        except ValueError:
            # Never the line itself: the path may name a file that is not a calendar (a secret, say).
            raise InputError(f"{path}: line {lineno} does not start with a date; expected a holiday calendar, "
                             f"one YYYY-MM-DD per line") from None
    return frozenset(days)


MAX_CALENDAR_BYTES = 1 << 20


def _calendar_lines(path: Path) -> list[str]:
    """The lines of a regular, UTF-8 file of at most MAX_CALENDAR_BYTES (never a FIFO or a device)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise InputError(f"{path}: not a regular file; expected a holiday calendar")
            raw = fh.read(MAX_CALENDAR_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{path}: cannot read holiday calendar: {exc.strerror}") from None
    if len(raw) > MAX_CALENDAR_BYTES:
        raise InputError(f"{path}: larger than {MAX_CALENDAR_BYTES} bytes; expected a holiday calendar")
    try:
        return raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; expected a holiday calendar, one YYYY-MM-DD per line") from None

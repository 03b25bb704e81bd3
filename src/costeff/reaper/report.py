"""The reaper's record: ``reaper_report.json`` and its Markdown twin."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from costeff.artifacts import atomic_write_text, provenance, sha256_file
from costeff.reaper.config import ReaperConfig
from costeff.reaper.replay import ReplayResult, wait_stats
from costeff.reaper.signals import Trace, iso


@dataclass
class ReaperReport:
    schema_version: int
    created_at: str
    costeff_version: str
    model_sha256: str | None
    hardware: dict[str, Any]
    mode: str  # "replay"
    source: dict[str, Any]
    gpu_hours_without: float
    gpu_hours_with: float
    reduction_pct: float
    reaps_while_active: int
    actions: list[dict[str, Any]]
    savings: dict[str, Any]
    wake_up: dict[str, Any]
    resources: list[dict[str, Any]]
    config: dict[str, Any]
    replay_s: float
    audit: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_report(trace: Trace, result: ReplayResult, config: ReaperConfig, instance: Any,
                 replay_s: float) -> ReaperReport:
    hours = (trace.end_ts - trace.start_ts) / 3600.0
    saved_gpu_hours = result.gpu_hours_without - result.gpu_hours_with
    return ReaperReport(
        **provenance(None),
        mode="replay",
        source={"trace": trace.path, "trace_sha256": sha256_file(trace.path), "rows": trace.rows,
                "resources": trace.resources, "start": iso(trace.start_ts), "end": iso(trace.end_ts),
                "span_hours": round(hours, 3)},
        gpu_hours_without=round(result.gpu_hours_without, 4),
        gpu_hours_with=round(result.gpu_hours_with, 4),
        reduction_pct=round(result.reduction_pct, 3),
        reaps_while_active=result.reaps_while_active,
        actions=[a.to_dict() for a in result.actions],
        savings=_savings(result, instance, saved_gpu_hours, hours),
        wake_up={**wait_stats(result), "restore_latency_s": config.savings.restore_latency_s},
        resources=[_resource(r) for r in result.resources],
        config=_config_dict(config),
        replay_s=round(replay_s, 3),
    )


def _savings(result: ReplayResult, instance: Any, saved_gpu_hours: float, hours: float) -> dict[str, Any]:
    price = result.usd_per_gpu_hour
    reaps = [a for a in result.actions if a.action == "reap"]
    return {
        "instance": instance.name,
        "usd_per_gpu_hour": round(price, 4),
        "price_source": f"{instance.source}, {instance.as_of}",
        "gpu_hours_saved": round(saved_gpu_hours, 4),
        "usd_without": round(result.gpu_hours_without * price, 2),
        "usd_with": round(result.gpu_hours_with * price, 2),
        "usd_saved": round(saved_gpu_hours * price, 2),
        "usd_saved_per_day": round(saved_gpu_hours * price * 24 / hours, 2) if hours else None,
        # What the fleet stops spending while everything reapable is down at once.
        "usd_per_hour_saved_while_idle": round(sum({a.target: a.usd_per_hour_saved for a in reaps}.values()), 4),
    }


def _resource(r: Any) -> dict[str, Any]:
    return {"resource": r.resource, "target": r.target, "excluded": r.excluded, "samples": r.samples,
            "gpu_hours_without": round(r.gpu_hours_without, 4), "gpu_hours_with": round(r.gpu_hours_with, 4),
            "reduction_pct": round(r.reduction_pct, 3), "down_hours": round(r.down_s / 3600, 4),
            "reaps": r.reaps, "reaps_while_active": r.reaps_while_active, "wakeups": r.wakeups,
            "requests_waited": r.requests_waited}


def _config_dict(config: ReaperConfig) -> dict[str, Any]:
    from costeff._jsonable import to_jsonable

    schedule = config.schedule
    # datetime.time is not JSON: the schedule is spelled out by hand.
    data = {name: to_jsonable(getattr(config, name)) for name in
            ("decision", "exclude", "prometheus", "savings", "targets", "source")}
    data["schedule"] = {"timezone": schedule.timezone, "days": list(schedule.days),
                        "start": schedule.start.isoformat("minutes"), "end": schedule.end.isoformat("minutes"),
                        "prewarm_s": schedule.prewarm_s, "enabled": schedule.enabled,
                        "holidays": sorted(d.isoformat() for d in schedule.holidays)}
    return data


def write_report(report: ReaperReport, directory: Path) -> tuple[Path, Path]:
    """The Markdown, then the record last: a folder holding reaper_report.json is complete."""
    from costeff.records.kinds import REAPER

    first = not REAPER.path_in(directory).exists()  # reap_trace writes again once the audit records exist
    md_path = atomic_write_text(directory / "reaper_report.md", to_markdown(report))
    try:
        return REAPER.write(directory, report.to_dict()), md_path
    except BaseException:
        if first:  # no Markdown left without its record
            md_path.unlink(missing_ok=True)
        raise


def to_markdown(r: ReaperReport) -> str:
    s, w = r.savings, r.wake_up
    lines = [
        "# Idle reaper replay", "",
        f"Trace `{r.source['trace']}`: {r.source['rows']} samples, {', '.join(r.source['resources'])}, "
        f"{r.source['start']} to {r.source['end']}. Simulated: nothing outside this process was touched.", "",
        "| | value |", "| --- | --- |",
        f"| GPU-hours without reaper | {r.gpu_hours_without:.2f} |",
        f"| GPU-hours with reaper | {r.gpu_hours_with:.2f} |",
        f"| reduction | {r.reduction_pct:.1f} % |",
        f"| reaps while influence > 0 or traffic | {r.reaps_while_active} |",
        f"| saved | ${s['usd_saved']:.2f} ({s['instance']}, ${s['usd_per_gpu_hour']:.3f}/GPU-hour) |",
        f"| saved per hour while all idle | ${s['usd_per_hour_saved_while_idle']:.2f} |",
        f"| wake-ups | {w['wakeups']} |",
        f"| requests that waited for a restore | {w['requests_waited']:g} "
        f"(mean {w['wait_s_mean_per_request']:.0f} s, max {w['wait_s_max']:.0f} s; "
        f"restore latency {w['restore_latency_s']:g} s) |",
        f"| replay time | {r.replay_s:.2f} s |", "",
        "## Per resource", "",
        "| resource | GPU-h without | GPU-h with | reduction | reaps | wake-ups | excluded |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {x['resource']} | {x['gpu_hours_without']:.2f} | {x['gpu_hours_with']:.2f} | "
              f"{x['reduction_pct']:.1f} % | {x['reaps']} | {x['wakeups']} | {x['excluded'] or ''} |"
              for x in r.resources]
    lines += ["", "## Actions", "", "| time (UTC) | resource | action | reason | $/h saved |",
              "| --- | --- | --- | --- | --- |"]
    lines += [f"| {a['time']} | {a['resource']} | {a['action']} | {a['reason']} | {a['usd_per_hour_saved']:.2f} |"
              for a in r.actions]
    lines += ["", f"Price source: {s['price_source']}. Created {r.created_at}, costeff {r.costeff_version}.", ""]
    return "\n".join(lines)


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - started

"""The replay verb: trace + config -> ReaperReport, written and audited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from costeff.artifacts import Workspace, dumps
from costeff.audit import AuditLog
from costeff.cost import load_catalog
from costeff.reaper.config import ReaperConfig
from costeff.reaper.replay import replay
from costeff.reaper.report import ReaperReport, build_report, timed, write_report
from costeff.reaper.signals import load_trace

REPLAY_ACTOR = "costeff-reaper"


def price_for(config: ReaperConfig) -> Any:
    """The catalog instance whose per-GPU price values a reaped GPU-hour."""
    return load_catalog(config.savings.catalog).get(config.savings.instance)


def reap_trace(trace_path: Path | str, config: ReaperConfig | None = None, out: Path | str | None = None,
               audit: AuditLog | None = None, *, workspace: Workspace) -> tuple[ReaperReport, Path]:
    """Replay ``trace_path``; write reaper_report.json/.md (into ``out``, else a new folder in ``workspace``);
    append every simulated action to the audit trail (``audit``, else the workspace's)."""
    config = config or ReaperConfig()
    instance = price_for(config)  # validate everything before writing anything
    trace, load_s = timed(load_trace, trace_path)
    result, replay_s = timed(replay, trace, config, instance.usd_per_gpu_hour)
    report = build_report(trace, result, config, instance, load_s + replay_s)
    directory = workspace.run_dir("reaper", out)
    dumps(report.to_dict())  # fails here, before the audit trail or any file is touched
    # The report first: an audit record must never point at a report that a failed write never produced.
    write_report(report, directory)
    report.audit = record_replay(audit or AuditLog.of(workspace), report, directory)
    write_report(report, directory)  # again, now naming its audit records
    return report, directory


def record_replay(log: AuditLog, report: ReaperReport, directory: Path) -> dict[str, Any]:
    """Each simulated action is labelled ``mode: replay``: restore never acts on these."""
    first = None
    with log.batch():  # one signed checkpoint for the whole replay, not one per simulated action
        for action in report.actions:
            record = log.append("reaper.action", {"mode": "replay", **action,
                                                  "trace_sha256": report.source["trace_sha256"]}, actor=REPLAY_ACTOR)
            first = record["seq"] if first is None else first
    summary = log.append("reaper.replay", {
        "mode": "replay", "trace": report.source["trace"], "trace_sha256": report.source["trace_sha256"],
        "report": str(directory / "reaper_report.json"), "gpu_hours_without": report.gpu_hours_without,
        "gpu_hours_with": report.gpu_hours_with, "reduction_pct": report.reduction_pct,
        "reaps_while_active": report.reaps_while_active, "actions": len(report.actions)}, actor=REPLAY_ACTOR)
    head = log.checkpoint()
    return {"log": str(log.path), "first_seq": first if first is not None else summary["seq"],
            "last_seq": summary["seq"], "head_sha256": head["sha256"] if head else None}

"""The reaper's day as an inline SVG: per resource, when it ran and when the reaper had it scaled down."""

from __future__ import annotations

import html
from datetime import datetime

from costeff.records.reaper import ReaperRecord

WIDTH, ROW, LEFT = 900, 26, 150


def _t(when: datetime) -> float:
    return when.timestamp()


def down_intervals(report: ReaperRecord) -> dict[str, list[tuple[float, float]]]:
    """Per resource, the (start, end) epoch seconds it was reaped, from the report's reap/restore actions."""
    end = _t(report.source.end) if report.source.end else None
    down: dict[str, list[tuple[float, float]]] = {}
    open_since: dict[str, float] = {}
    for a in sorted(report.actions, key=lambda a: a.time):
        name, when = a.resource, _t(a.time)
        if a.action == "reap":
            open_since.setdefault(name, when)
        elif a.action == "restore" and name in open_since:
            down.setdefault(name, []).append((open_since.pop(name), when))
    for name, since in open_since.items():
        down.setdefault(name, []).append((since, end if end is not None else since))
    return down


def reaper_timeline_svg(report: ReaperRecord) -> str:
    if not report.source.start or not report.source.end:
        return ""
    t0, t1 = _t(report.source.start), _t(report.source.end)
    names = [r.resource for r in report.resources] or sorted(down_intervals(report))
    down = down_intervals(report)
    scale = (WIDTH - LEFT - 10) / max(t1 - t0, 1.0)
    height = ROW * len(names) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH + 30}" height="{height}" role="img" '
             f'aria-label="reaper timeline">']
    for i, name in enumerate(names):
        y = 4 + i * ROW
        parts.append(f'<text x="4" y="{y + 15}" font-size="12">{html.escape(name)}</text>')
        parts.append(f'<rect x="{LEFT}" y="{y}" width="{(t1 - t0) * scale:.1f}" height="18" fill="#4caf50"/>')
        for a, b in down.get(name, []):
            parts.append(f'<rect x="{LEFT + (a - t0) * scale:.1f}" y="{y}" width="{max((b - a) * scale, 1):.1f}" '
                         f'height="18" fill="#b0b7c3"><title>{html.escape(name)} reaped</title></rect>')
    axis_y = 4 + len(names) * ROW + 14
    for h in range(0, 25, 6):
        x = LEFT + min(h * 3600, t1 - t0) * scale
        parts.append(f'<text x="{x:.1f}" y="{axis_y}" font-size="11" text-anchor="middle">{h:02d}:00</text>')
    parts.append("</svg>")
    legend = '<p class="muted">green: serving; grey: scaled down by the reaper (UTC hours of the replayed day)</p>'
    return "".join(parts) + legend

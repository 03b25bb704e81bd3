"""One self-contained HTML page from the stage reports: no script, no network, images inline.

Every number on the page is a link to the JSON it was read from (relative to the
page), so a reader can check any figure. Projections are shown under their own
heading and labelled, never mixed with the ledger's observed numbers.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path
from typing import Any, Callable

from costeff.pack.measured import Disagreement, day_costs, host, selected_entry, timed_entry
from costeff.pack.summary import synthetic_ledger
from costeff.records.profile import Cost, Optimal, ProfileRecord
from costeff.records.quant import Variant
from costeff.records.ramp import RampRecord
from costeff.report.collect import Sources
from costeff.report.timeline import reaper_timeline_svg

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#1d2430;padding:0 16px}
h1{font-size:24px;margin-bottom:4px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #d6dbe3}
table{border-collapse:collapse;margin:8px 0;font-size:13px}td,th{border:1px solid #d6dbe3;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f2f4f7}a.n{color:#0b4f9c;text-decoration:none;
border-bottom:1px dotted #0b4f9c}.PASS{color:#0a7d32;font-weight:600}.FAIL,.NO-DATA{color:#b3261e;font-weight:600}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #d6dbe3;border-radius:6px;padding:10px 14px;
min-width:200px}.card b{display:block;font-size:20px}.tag{display:inline-block;padding:1px 6px;border-radius:4px;
font-size:12px;font-weight:600}.synthetic{background:#fff3cd;color:#7a5200}.projected{background:#e7f0fe;
color:#0b4f9c}.observed{background:#e8f5e9;color:#0a7d32}pre{background:#f6f8fa;padding:8px;overflow:auto;
font-size:12px}img{max-width:48%;border:1px solid #eee;margin:4px}.muted{color:#5b6573}
"""


class Page:
    """Formatting helpers bound to where the page is written (for relative links)."""

    def __init__(self, sources: Sources, out_dir: Path) -> None:
        self.s, self.out = sources, out_dir

    def link(self, key: str) -> str | None:
        path = self.s.files.get(key)
        return os.path.relpath(path, self.out) if path else None

    def num(self, value: Any, key: str, fmt: str = ",.2f", unit: str = "", currency: str = "") -> str:
        text = _fmt(value, fmt) + unit
        if currency and value is not None:
            text = currency + text
        href = self.link(key)
        if href is None:
            return html.escape(text)
        return f'<a class="n" href="{html.escape(href)}" title="{html.escape(href)}">{html.escape(text)}</a>'

    def source(self, key: str) -> str:
        href = self.link(key)
        return f'<p class="muted">source: <a href="{html.escape(href)}">{html.escape(href)}</a></p>' if href else ""


def _fmt(value: Any, fmt: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, bool):
        return str(value)
    try:
        return format(value, fmt)
    except (TypeError, ValueError):
        return str(value)


def esc(text: Any) -> str:
    return html.escape(str(text))


def render(sources: Sources, out_dir: Path, criteria: list, disagreements: list[Disagreement]) -> str:
    page = Page(sources, out_dir)
    sections: list[Callable[[Page], str]] = [_glance, _profiles, _variants, _serving, _reaper, _ramp, _audit]
    body = [_header(page), _criteria(page, criteria), _disagreements(page, disagreements)]
    body += [section(page) for section in sections]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>costeff report</title>"
            f"<style>{CSS}</style></head><body>" + "\n".join(b for b in body if b) + "</body></html>\n")


def _header(p: Page) -> str:
    cpu, cores, gpus = host(p.s.reports)
    synthetic = synthetic_ledger(p.s.reports.ramp)
    tag = ('<span class="tag synthetic">economics: SYNTHETIC sample ledger</span>' if synthetic else "")
    return (f"<h1>costeff report</h1><p class=\"muted\">Artifacts under {esc(p.s.root)}; hardware "
            f"{esc(cpu)}, {esc(cores)} cores, GPUs: {esc(gpus)}. "
            f"Every number links to the file it was read from. {tag}</p>")


def _glance(p: Page) -> str:
    r, cards = p.s.reports, []
    sel = selected_entry(r.quant)
    if sel:
        cards.append(_card("served precision", esc(sel.name),
                           f"{p.num(sel.speedup, 'quant', '.2f', 'x')} fp32 throughput"))
    if r.ramp:
        cards.append(_card("ramp decision", esc(r.ramp.decision),
                           f"cost ratio {p.num(r.ramp.cost_ratio_pct, 'ramp', '.1f', ' %')} "
                           f'<span class="tag observed">observed</span>'))
    before, after, _ = day_costs(r)  # the measurement the speedup comes from, as in the summary
    if before is not None and after is not None:
        cards.append(_card("serving / day at target", p.num(after.usd_per_day, after.source, ",.2f", currency="$"),
                           f"{esc(after.instances_needed)} x {esc(after.instance)} at "
                           f"{p.num(after.target_rate_per_s, after.source, ',g', '/s')}; fp32 "
                           f"{p.num(before.usd_per_day, before.source, ',.2f', currency='$')} "
                           f'<span class="tag projected">projected</span>'))
    if r.reaper:
        cards.append(_card("reaper GPU-hours cut", p.num(r.reaper.reduction_pct, "reaper", ".1f", " %"),
                           "replayed day"))
    return "<h2>At a glance</h2><div class=\"cards\">" + "".join(cards) + "</div>" if cards else ""


def _card(title: str, value: str, sub: str) -> str:
    return f'<div class="card"><span class="muted">{esc(title)}</span><b id="{_id(title)}">{value}</b>{sub}</div>'


def _id(title: str) -> str:
    return "k-" + "".join(c if c.isalnum() else "-" for c in title.lower())


def _criteria(p: Page, criteria: list) -> str:
    rows = "".join(f"<tr><td>{esc(c.name)}</td><td>{esc(c.observed)}</td><td>{esc(c.threshold)}</td>"
                   f"<td class=\"{'PASS' if c.passed else 'FAIL'}\">{'PASS' if c.passed else 'FAIL'}</td>"
                   f"<td>{esc(c.source)}</td></tr>" for c in criteria)
    passed = sum(c.passed for c in criteria)
    return (f"<h2>Acceptance criteria: <span id=\"k-acceptance\">{passed} of {len(criteria)}</span> PASS</h2>"
            "<table><tr><th>criterion</th><th>observed</th><th>required</th><th>verdict</th><th>source</th></tr>"
            f"{rows}</table>")


def _disagreements(p: Page, found: list[Disagreement]) -> str:
    if not found:
        return ""
    items = "".join(
        f"<li><b>{esc(d.variant)}</b> at batch {esc(d.batch)}: profile "
        f"{p.num(d.profile_per_s, 'profile' if d.label == 'served variant' else 'fp32', ',.0f', '/s')} vs "
        f"quantization {p.num(d.quant_per_s, 'quant', ',.0f', '/s')}; the measured ranges do not overlap</li>"
        for d in found)
    return ("<h2>Measurements that disagree</h2><ul>" + items + "</ul><p>Throughput, speedup and cost on this page "
            "come from one measurement, the interleaved rounds of the quantization report (every variant beside "
            "fp32 under the same load); the profile's own figure stays in its file.</p>")


def _profiles(p: Page) -> str:
    parts = []
    for key, label, prof in (("profile", "served variant", p.s.reports.profile),
                             ("fp32", "fp32 baseline", p.s.reports.fp32)):
        if prof:
            parts.append(_profile(p, key, label, prof, timed_entry(p.s.reports.quant, prof, label)))
    return "<h2>Profiles</h2>" + "".join(parts) if parts else ""


def _profile(p: Page, key: str, label: str, prof: ProfileRecord, timed: Variant | None) -> str:
    """A profile's points, latency and stability. Its throughput and $ come from the interleaved rounds when the
    model was timed there (the figure every ratio on this page uses), else from the profile itself."""
    opt, cost = prof.optimal or Optimal(), prof.cost or Cost()
    rows = "".join(f"<tr><td>{esc(x.batch_size)}</td><td>{p.num(x.throughput_per_s, key, ',.0f')}</td>"
                   f"<td>{p.num(x.latency_ms.p99 if x.latency_ms else None, key, '.3f')}</td>"
                   f"<td>{'yes' if x.stable else 'no'}</td></tr>" for x in prof.points)
    images = "".join(_png(p.s.beside(key, name)) for name in ("throughput_vs_batch.png", "p99_vs_batch.png"))
    if timed:
        tcost = timed.cost or Cost()
        speed = (f"{p.num(timed.optimal_throughput_per_s, 'quant', ',.0f')} inferences/s at batch "
                 f"{esc(timed.optimal_batch)}; {p.num(tcost.usd_per_million, 'quant', '.4g')} $ per million on "
                 f"{esc(tcost.instance)} (interleaved rounds)")
    else:
        speed = (f"{p.num(opt.throughput_per_s, key, ',.0f')} inferences/s; "
                 f"{p.num(cost.usd_per_million, key, '.4g')} $ per million on {esc(cost.instance)}")
    return (f"<h3>{esc(label)}</h3><p>optimal batch {esc(opt.batch_size)}: p99 "
            f"{p.num(opt.latency_p99_ms, key, '.3f')} ms; {speed} <span class=\"tag projected\">projected</span></p>"
            f"{images}<table><tr><th>batch</th><th>inferences/s</th><th>p99 ms</th><th>stable</th></tr>{rows}</table>"
            + p.source(key))


def _png(path: Path | None) -> str:
    if path is None or not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{esc(path.stem)}" src="data:image/png;base64,{data}">'


def _variants(p: Page) -> str:
    q = p.s.reports.quant
    if not q:
        return ""
    rows = []
    for v in q.variants:
        gates = (", ".join(f"<span class=\"{esc(g.verdict)}\">{esc(g.name)} "
                           f"{esc(g.verdict)}</span>" for g in v.gates)
                 or esc(v.error or v.not_tried or "-"))
        tried = v.not_tried is None
        verdict = ("yes", "PASS") if v.passed else ("no", "FAIL") if tried else ("not tried", "muted")
        rows.append(f"<tr><td>{esc(v.name)}</td><td class=\"{verdict[1]}\">{verdict[0]}</td>"
                    f"<td>{p.num(v.fidelity.action_drift_pct if v.fidelity else None, 'quant', '.3f')}</td>"
                    f"<td>{p.num(v.speedup, 'quant', '.2f')}</td><td>{gates}</td></tr>")
    return (f"<h2>Variants</h2><p>Selected <b id=\"k-selected\">{esc(q.selected.name)}</b>: {esc(q.selected.reason)}"
            "</p><table><tr><th>variant</th><th>passed</th><th>action drift %</th><th>speedup</th><th>gates</th>"
            f"</tr>{''.join(rows)}</table>" + p.source("quant"))


def _serving(p: Page) -> str:
    b, parts = p.s.reports.batching, []
    if b and b.chosen:
        c = b.chosen
        parts.append(f"<p>Dynamic batcher: max batch {p.num(c.max_batch_size, 'batching', 'd')}, preferred "
                     f"{esc(c.preferred_batch_size)}, queue delay {p.num(c.max_queue_delay_us, 'batching', 'g')}"
                     f" us, {p.num(c.instances, 'batching', 'd')} server(s); predicted p99 "
                     f"{p.num(c.predicted.p99_ms, 'batching', '.3f')} ms</p>")
        parts += [_png(p.s.beside("batching", n)) for n in ("p99_vs_queue_delay.png", "cost_vs_p99.png")]
        parts.append(p.source("batching"))
    parts.append(_verified(p))
    repo = p.s.repository
    for config in sorted(repo.glob("*/config.pbtxt")) if repo and repo.is_dir() else []:
        parts.append(f"<p>Triton configuration <code>{esc(config)}</code>:</p><pre>{esc(config.read_text())}</pre>")
    return "<h2>Batching and Triton</h2>" + "".join(parts) if parts else ""


def _verified(p: Page) -> str:
    """The batcher's prediction beside what the real Triton server measured at the target rate."""
    v = p.s.reports.verify
    if not v:
        return ""
    if v.skipped:
        return f"<p>Not measured on real Triton: {esc(v.skipped)}</p>"
    pred, meas, ratio = v.predicted, v.measured, v.ratios
    rows = "".join(f"<tr><td>{label}</td><td>{p.num(getattr(pred, key) if pred else None, 'verify', '.3g', unit)}"
                   f"</td><td>{p.num(getattr(meas, key) if meas else None, 'verify', '.3g', unit)}</td>"
                   f"<td>{esc(_fmt(getattr(ratio, r), '.2g'))}x</td></tr>"
                   for label, key, r, unit in (("p50", "p50_ms", "p50", " ms"), ("p99", "p99_ms", "p99", " ms"),
                                               ("mean batch size", "mean_batch_size", "mean_batch", "")))
    return (f"<p>Served on the real Triton {esc(v.server.get('triton'))} at "
            f"{p.num(v.rate_per_s, 'verify', 'g')} requests/s (Python-based backends stand in for the C++ "
            f"ones; load average {esc(', '.join(map(str, v.load_average)))}):</p>"
            f"<table><tr><th>figure</th><th>predicted</th><th>measured</th><th>measured / predicted</th></tr>"
            f"{rows}</table>{p.source('verify')}")


def _reaper(p: Page) -> str:
    d = p.s.reports.reaper
    if not d:
        return ""
    return (f"<h2>Idle reaper ({esc(d.mode)})</h2><p>GPU-hours {p.num(d.gpu_hours_without, 'reaper')}"
            f" without, {p.num(d.gpu_hours_with, 'reaper')} with the reaper "
            f"({p.num(d.reduction_pct, 'reaper', '.1f', ' %')} less); reaps while active "
            f"{p.num(d.reaps_while_active, 'reaper', 'd')}.</p>" + reaper_timeline_svg(d) + p.source("reaper"))


def _ramp(p: Page) -> str:
    d = p.s.reports.ramp
    if not d:
        return ""
    rows = "".join(f"<tr><td>{esc(g.name)}</td><td>{_gate_value(p, g.observed)}</td>"
                   f"<td>{esc(g.comparator)} {_gate_value(p, g.threshold)}</td>"
                   f"<td class=\"{esc(g.verdict)}\">{esc(g.verdict)}</td></tr>"
                   for g in d.gates)
    notices = "".join(f"<li>{esc(n)}</li>" for n in d.notices)
    return (f"<h2>Ramp decision: <span id=\"k-decision\">{esc(d.decision)}</span></h2>"
            f"<p><span class=\"tag observed\">observed</span> cost ratio "
            f"{p.num(d.cost_ratio_pct, 'ramp', '.2f', ' %')} vs cap "
            f"{p.num(d.cost_ratio_cap_pct, 'ramp', 'g', ' %')};"
            f" cost per day {p.num(d.cost_per_day_usd, 'ramp')} $, per signal "
            f"{p.num(d.cost_per_signal_usd, 'ramp', '.4f')} $, per trade "
            f"{p.num(d.cost_per_trade_usd, 'ramp')} $"
            f"</p><ul>{notices}</ul><table><tr><th>gate</th><th>observed</th><th>required</th><th>verdict</th></tr>"
            f"{rows}</table>" + _projection(p, d) + p.source("ramp"))


def _gate_value(p: Page, value: Any) -> str:
    """Hashes shortened (the full value in the tooltip), large numbers with thousands separators."""
    if isinstance(value, str) and len(value) == 64:
        return f'<code title="{esc(value)}">{esc(value[:12])}...</code>'
    if isinstance(value, float) and abs(value) >= 1000:
        return p.num(value, "ramp", ",.2f")
    return p.num(value, "ramp", ",.4g") if isinstance(value, (int, float)) else esc(value)


def _projection(p: Page, d: RampRecord) -> str:
    proj = d.projection
    if not proj:
        return ""
    head = (f"<h3>Projection <span class=\"tag projected\">PROJECTED, not from a bill</span></h3>"
            f"<p>{esc(proj.label)}</p>")
    if not proj.available:
        return head + f"<p>Not available: {esc(proj.reason)}</p>"
    rows = "".join(f"<tr><td>{esc(lv.name)}</td><td>{p.num(lv.usd_per_day_before, 'ramp')}</td>"
                   f"<td>{p.num(lv.usd_per_day_after, 'ramp')}</td>"
                   f"<td>{p.num(lv.saving_usd_per_day, 'ramp')}</td>"
                   f"<td>{p.num(lv.share_pct, 'ramp', '.1f', ' %')}</td><td>{esc(lv.detail)}</td>"
                   f"<td>{esc(lv.assumption or '-')}</td></tr>" for lv in proj.levers)
    reach = proj.to_reach_cap
    gap = ("under the cap" if reach.met else
           f"still missing: cut {p.num(reach.cost_to_cut_usd_per_day, 'ramp')} $/day or earn "
           f"{p.num(reach.pnl_needed_usd_per_day, 'ramp')} $/day more gross PnL" if reach.met is False
           else esc(reach.why or ""))
    notes = "".join(f"<li>{esc(n)}</li>" for n in proj.notes)
    return (head + f"<p>Serving {p.num(proj.target_rate_per_s, 'ramp', ',g')}/s on {esc(proj.instance)}: "
            f"{p.num(proj.baseline_serving_usd_per_day, 'ramp')} $/day (fp32, always on) &rarr; "
            f"<b id=\"k-projected-serving\">{p.num(proj.serving_usd_per_day, 'ramp')}</b> $/day; projected cost "
            f"ratio <b>{p.num(proj.projected_cost_ratio_pct, 'ramp', '.2f', ' %')}</b>; {gap}.</p>"
            "<table><tr><th>lever</th><th>before $/day</th><th>after $/day</th><th>saving $/day</th><th>share</th>"
            f"<th>detail</th><th>assumption</th></tr>{rows}</table><ul>{notes}</ul>")


def _audit(p: Page) -> str:
    log = p.s.root / "audit" / "audit.jsonl"
    if not log.is_file():
        return ""
    lines = [ln for ln in log.read_text(encoding="utf-8").splitlines() if ln.strip()][-8:]
    rows = []
    for ln in reversed(lines):
        try:
            rec = json.loads(ln)
        except json.JSONDecodeError:
            continue
        rows.append(f"<tr><td>{esc(rec.get('seq'))}</td><td>{esc(rec.get('ts'))}</td><td>{esc(rec.get('event'))}</td>"
                    f"<td><code>{esc(str(rec.get('sha256', ''))[:16])}</code></td></tr>")
    href = os.path.relpath(log, p.out)
    return (f"<h2>Audit trail head</h2><p>The newest records of <a href=\"{esc(href)}\">{esc(href)}</a> "
            "(verify with <code>costeff audit verify</code>).</p><table><tr><th>seq</th><th>time</th><th>event</th>"
            f"<th>sha256</th></tr>{''.join(rows)}</table>")

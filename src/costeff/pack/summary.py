"""COMPLETION_SUMMARY.md, generated only from the files inside a pack.

Every number cites the packed file it comes from, and every acceptance criterion is
decided from the data: a criterion that fails is shown failing. Nothing here is
typed in by hand.
"""

from __future__ import annotations

import json
import math
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROFILE, PROFILE_FP32 = "profile/gpu_profile.json", "profile_fp32/gpu_profile.json"
QUANT, BATCHING = "quant/quantization_report.json", "batching/batching_report.json"
REAPER, RAMP, LEDGER = "reaper/reaper_report.json", "ramp/ramp_decision.json", "ramp/sample_ledger.sqlite"


@dataclass(frozen=True)
class Criterion:
    name: str
    observed: Any
    threshold: str
    passed: bool
    source: str


def _json(files: dict[str, bytes], path: str) -> dict[str, Any] | None:
    data = files.get(path)
    try:
        return json.loads(data) if data else None
    except json.JSONDecodeError:
        return None


def _num(x: Any, fmt: str = ",.2f") -> str:
    if x is None:
        return "n/a"
    if x == "inf" or (isinstance(x, float) and math.isinf(x)):
        return "inf"
    return format(x, fmt) if isinstance(x, (int, float)) else str(x)


def _selected(quant: dict[str, Any] | None) -> dict[str, Any] | None:
    if not quant:
        return None
    name = (quant.get("selected") or {}).get("name")
    return next((v for v in quant.get("variants", []) if v.get("name") == name), None)


def render_summary(files: dict[str, bytes]) -> str:
    r = {k: _json(files, p) for k, p in (("profile", PROFILE), ("fp32", PROFILE_FP32), ("quant", QUANT),
                                         ("batching", BATCHING), ("reaper", REAPER), ("ramp", RAMP))}
    finance = ledger_windows(files.get(LEDGER), (r["ramp"] or {}).get("window", {}).get("days"))
    criteria = acceptance(r)
    parts = [_header(r, criteria), _executive(r, criteria), _profiler(r), _precision(r), _serving(r, files),
             _reaper(r), _ramp(r), _finance(r, finance), _criteria(criteria)]
    return "\n".join(p for p in parts if p) + "\n"


def _header(r: dict[str, Any], criteria: list[Criterion]) -> str:
    hw = (r["profile"] or r["fp32"] or r["quant"] or {}).get("hardware") or {}
    gpus = ", ".join(g.get("name", "?") for g in hw.get("gpus", [])) or "none"
    return (f"# costeff completion summary\n\nGenerated from the reports in this pack; each number names the "
            f"file it comes from (paths relative to this pack). Hardware: {hw.get('cpu_model', 'unknown')}, "
            f"{hw.get('cpu_count', '?')} cores, GPUs: {gpus}.\n\n"
            f"Acceptance: {sum(c.passed for c in criteria)} of {len(criteria)} criteria PASS.\n")


def _executive(r: dict[str, Any], criteria: list[Criterion]) -> str:
    lines = ["## Executive summary", ""]
    sel, ramp, reap = _selected(r["quant"]), r["ramp"], r["reaper"]
    if sel:
        traffic = ((r["quant"] or {}).get("selected") or {}).get("traffic") or {}
        assumed = f"{_num(traffic.get('target_rate_per_s'), ',.0f')} req/s, p99 budget " \
                  f"{_num(traffic.get('latency_budget_ms'), 'g')} ms" if traffic.get("target_rate_per_s") else \
            "no target rate (closed-loop throughput)"
        lines.append(f"- Serving: **{sel['name']}** ({sel.get('backend', 'onnxruntime')}, "
                     f"{sel.get('precision', '-')}) at {_num(sel.get('speedup'))}x fp32 throughput, action drift "
                     f"{_num((sel.get('fidelity') or {}).get('action_drift_pct'), '.3f')} %, for the traffic "
                     f"assumed: {assumed} (`{QUANT}`).")
    if reap:
        lines.append(f"- Idle reaper on the sample day: GPU-hours cut by {_num(reap.get('reduction_pct'), '.1f')} % "
                     f"with {reap.get('reaps_while_active')} reaps while active (`{REAPER}`).")
    if ramp:
        lines.append(f"- Ramp decision: **{ramp.get('decision')}**; cost ratio {_num(ramp.get('cost_ratio_pct'), '.1f')} "
                     f"% against a cap of {_num(ramp.get('cost_ratio_cap_pct'), '.0f')} % (`{RAMP}`).")
    failing = [c.name for c in criteria if not c.passed]
    lines.append(f"- Failing criteria: {', '.join(failing) if failing else 'none'}.")
    return "\n".join(lines) + "\n"


def _profiler(r: dict[str, Any]) -> str:
    entries = [("fp32 baseline", r["fp32"], PROFILE_FP32),
               ("served variant" if r["fp32"] else "latest profile", r["profile"], PROFILE)]
    lines = [_profile_line(label, p, path) for label, p, path in entries if p]
    return "## 1. Profiler\n\n" + "\n".join(lines) + "\n" if lines else ""


def _profile_line(label: str, p: dict[str, Any], path: str) -> str:
    opt, cost, points = p.get("optimal") or {}, p.get("cost") or {}, p.get("points", [])
    return (f"- {label} (`{path}`, provider {p.get('provider')}): optimal batch {opt.get('batch_size')}, "
            f"{_num(opt.get('throughput_per_s'), ',.0f')} inferences/s, p99 {_num(opt.get('latency_p99_ms'))} ms, "
            f"${_num(cost.get('usd_per_million'), '.4g')} per million inferences on {cost.get('instance')}; "
            f"{sum(1 for x in points if not x.get('stable'))} of {len(points)} points unstable.")


def _precision(r: dict[str, Any]) -> str:
    q = r["quant"]
    if not q:
        return "## 2. Precision\n\nNo quantization report in this pack.\n"
    rows = ["| variant | passed | action drift % | entropy drift % | correlation | speedup | size reduction % |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for v in q.get("variants", []):
        f = v.get("fidelity") or {}
        rows.append(f"| {v['name']} | {'yes' if v.get('passed') else 'no'} | {_num(f.get('action_drift_pct'), '.3f')} | "
                    f"{_num(f.get('entropy_drift_pct'), '.3f')} | {_num(f.get('action_correlation'), '.5f')} | "
                    f"{_num(v.get('speedup'))} | {_num(v.get('size_reduction_pct'), '.0f')} |")
    sel = q.get("selected") or {}
    return (f"## 2. Precision (`{QUANT}`)\n\nSelected **{sel.get('name')}**: {sel.get('reason', '')}. Fidelity on "
            f"{(q.get('split') or {}).get('evaluation_rows')} held-out rows.\n\n" + "\n".join(rows) + "\n")


def _serving(r: dict[str, Any], files: dict[str, bytes]) -> str:
    lines = ["## 3. Batching and Triton", ""]
    b = r["batching"]
    if b and b.get("chosen"):
        c = b["chosen"]
        pred = c.get("predicted") or {}
        lines.append(f"- Chosen batcher (`{BATCHING}`): max batch {c['max_batch_size']}, preferred "
                     f"{c['preferred_batch_size']}, queue delay {c['max_queue_delay_us']:g} us, {c['instances']} "
                     f"server(s); predicted p50 {_num(pred.get('p50_ms'))} ms, p99 {_num(pred.get('p99_ms'))} ms, "
                     f"mean batch {_num(pred.get('mean_batch_size'))}.")
    elif b:
        lines.append(f"- No batcher configuration met the SLO (`{BATCHING}`): {b.get('binding')}.")
    configs = sorted(p for p in files if p.startswith("model_repository/") and p.endswith("config.pbtxt"))
    lines += [f"- Triton configuration: `{p}`" for p in configs]
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def _reaper(r: dict[str, Any]) -> str:
    d = r["reaper"]
    if not d:
        return "## 4. Idle reaper\n\nNo reaper report in this pack.\n"
    wake, sav = d.get("wake_up") or {}, d.get("savings") or {}
    return (f"## 4. Idle reaper (`{REAPER}`)\n\n- GPU-hours without / with the reaper: "
            f"{_num(d.get('gpu_hours_without'))} / {_num(d.get('gpu_hours_with'))} "
            f"({_num(d.get('reduction_pct'), '.1f')} % less); reaps while active: {d.get('reaps_while_active')}.\n"
            f"- Savings: {_savings_text(sav)}\n- Wake-ups: {wake.get('wakeups')}; requests that waited for a restore: "
            f"{_num(wake.get('requests_waited'), ',.0f')}, longest wait {_num(wake.get('wait_s_max'), '.0f')} s.\n")


def _savings_text(sav: dict[str, Any]) -> str:
    keys = [k for k in sav if isinstance(sav[k], (int, float)) and "usd" in k]
    return ", ".join(f"{k} {_num(sav[k])}" for k in keys) or "n/a"


def _ramp(r: dict[str, Any]) -> str:
    d = r["ramp"]
    if not d:
        return "## 5. Ramp decision\n\nNo ramp decision in this pack.\n"
    rows = ["| gate | observed | comparator | threshold | verdict |", "| --- | --- | --- | --- | --- |"]
    for g in d.get("gates", []):
        obs = g.get("observed")
        obs = _num(obs, ",d" if isinstance(obs, int) else ".4g") if isinstance(obs, (int, float)) else obs
        rows.append(f"| {g['name']} | {obs} | {g.get('comparator')} | {g.get('threshold')} | {g.get('verdict')} |")
    notices = "".join(f"- {n}\n" for n in d.get("notices", []))
    return (f"## 5. Ramp decision (`{RAMP}`)\n\n**{d.get('decision')}** at {d.get('step', {}).get('from_pct')} % "
            f"influence. Cost per signal ${_num(d.get('cost_per_signal_usd'), '.4f')}, per trade "
            f"${_num(d.get('cost_per_trade_usd'))}, per day ${_num(d.get('cost_per_day_usd'))}, per month "
            f"${_num(d.get('monthly_cost_usd'))}.\n\n{notices}\n" + "\n".join(rows) + "\n")


def ledger_windows(data: bytes | None, days: int | None) -> dict[str, Any] | None:
    """Cost ratio and cost/day over the ledger's first and last ``days`` days (before / after)."""
    if not data or not days:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.sqlite"
        path.write_bytes(data)
        con = sqlite3.connect(path)
        try:
            daily = con.execute("SELECT e.date, e.gross_pnl_usd, SUM(c.usd) FROM economics e JOIN cost c "
                                "ON c.date = e.date GROUP BY e.date ORDER BY e.date").fetchall()
        finally:
            con.close()
    if len(daily) < 2 * days:
        return None
    return {"before": _window(daily[:days]), "after": _window(daily[-days:]), "days": days}


def _window(rows: list[tuple[str, float, float]]) -> dict[str, Any]:
    pnl, cost = sum(r[1] for r in rows), sum(r[2] for r in rows)
    return {"start": rows[0][0], "end": rows[-1][0], "cost_ratio_pct": 100 * cost / pnl if pnl > 0 else math.inf,
            "cost_per_day_usd": cost / len(rows)}


def _finance(r: dict[str, Any], fin: dict[str, Any] | None) -> str:
    lines = ["## Financial impact", "", "| measure | before | after | source |", "| --- | --- | --- | --- |"]
    if fin:
        b, a = fin["before"], fin["after"]
        src = f"`{LEDGER}` (first vs last {fin['days']} days)"
        lines += [f"| cost ratio % | {_num(b['cost_ratio_pct'], '.1f')} | {_num(a['cost_ratio_pct'], '.1f')} | {src} |",
                  f"| infrastructure cost per day $ | {_num(b['cost_per_day_usd'])} | {_num(a['cost_per_day_usd'])} | {src} |",
                  f"| monthly savings $ | | {_num(30 * (b['cost_per_day_usd'] - a['cost_per_day_usd']))} | {src}, x30 days |"]
    cost = (r["quant"] or {}).get("cost") or {}
    if cost.get("before") and cost.get("after"):
        b, a = cost["before"], cost["after"]
        lines.append(f"| $ per million inferences ({cost.get('instance')}) | {_num(b.get('usd_per_million'), '.4g')} | "
                     f"{_num(a.get('usd_per_million'), '.4g')} | `{QUANT}` |")
    if len(lines) == 4:
        return ""
    note = "\nThe economics are the shipped SYNTHETIC sample (`costeff ledger import --sample`).\n" if fin else ""
    return "\n".join(lines) + "\n" + note


def acceptance(r: dict[str, Any]) -> list[Criterion]:
    ramp, reap, quant, sel = r["ramp"] or {}, r["reaper"] or {}, r["quant"] or {}, _selected(r["quant"]) or {}
    tol = ((quant.get("config") or {}).get("tolerances") or {}).get("action_drift_pct")
    drift = (sel.get("fidelity") or {}).get("action_drift_pct")
    ratio, cap = ramp.get("cost_ratio_pct"), ramp.get("cost_ratio_cap_pct")
    cost_gate = next((g for g in ramp.get("gates", []) if g.get("name") == "cost_ratio"), {})
    return [
        Criterion("cost ratio <= cap", _num(ratio, ".1f"), f"<= {_num(cap, '.0f')} %", _le(ratio, cap), RAMP),
        Criterion("quantized path >= 1.5x throughput", _num(sel.get("speedup")), ">= 1.5x",
                  _ge(sel.get("speedup"), 1.5) and sel.get("name") != "fp32", QUANT),
        Criterion("action drift <= tolerance", _num(drift, ".3f"), f"<= {_num(tol, '.2f')} %", _le(drift, tol), QUANT),
        Criterion("reaper GPU-hour reduction >= 50 %", _num(reap.get("reduction_pct"), ".1f"), ">= 50 %",
                  _ge(reap.get("reduction_pct"), 50.0), REAPER),
        Criterion("cost per signal / per trade present",
                  f"{_num(ramp.get('cost_per_signal_usd'), '.4f')} / {_num(ramp.get('cost_per_trade_usd'))}",
                  "both present", ramp.get("cost_per_signal_usd") is not None
                  and ramp.get("cost_per_trade_usd") is not None, RAMP),
        Criterion("cost gates deciding", f"enabled={ramp.get('cost_gates_enabled')}, cost_ratio "
                  f"{cost_gate.get('verdict', 'absent')}", "enabled, verdict PASS or FAIL",
                  bool(ramp.get("cost_gates_enabled")) and cost_gate.get("verdict") in ("PASS", "FAIL"), RAMP),
    ]


def _le(x: Any, y: Any) -> bool:
    return isinstance(x, (int, float)) and isinstance(y, (int, float)) and x <= y


def _ge(x: Any, y: Any) -> bool:
    return isinstance(x, (int, float)) and isinstance(y, (int, float)) and x >= y


def _criteria(criteria: list[Criterion]) -> str:
    rows = ["## Acceptance criteria", "", "| criterion | observed | required | verdict | source |",
            "| --- | --- | --- | --- | --- |"]
    rows += [f"| {c.name} | {c.observed} | {c.threshold} | {'PASS' if c.passed else 'FAIL'} | `{c.source}` |"
             for c in criteria]
    return "\n".join(rows) + "\n"

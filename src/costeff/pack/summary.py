"""COMPLETION_SUMMARY.md, generated only from the files inside a pack.

Every number cites the packed file it comes from, and every acceptance criterion is
decided from the data: a criterion that fails is shown failing. Nothing here is
typed in by hand.
"""

from __future__ import annotations

import math
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costeff.pack.measured import PACKED, Reports, day_costs, disagreements, host, timed_entry
from costeff.pack.measured import selected_entry as _selected
from costeff.records.profile import Cost, Optimal, ProfileRecord
from costeff.records.quant import Variant
from costeff.records.ramp import RampRecord
from costeff.records.reaper import ReaperRecord
from costeff.records.verify import VerifyRecord

PROFILE, PROFILE_FP32, QUANT = PACKED["profile"][1], PACKED["fp32"][1], PACKED["quant"][1]
BATCHING, REAPER, RAMP, VERIFY = (PACKED[k][1] for k in ("batching", "reaper", "ramp", "verify"))
LEDGER = "ramp/sample_ledger.sqlite"


@dataclass(frozen=True)
class Criterion:
    name: str
    observed: Any
    threshold: str
    passed: bool
    source: str


def _num(x: Any, fmt: str = ",.2f") -> str:
    if x is None:
        return "n/a"
    if x == "inf" or (isinstance(x, float) and math.isinf(x)):
        return "inf"
    return format(x, fmt) if isinstance(x, (int, float)) else str(x)


def render_summary(files: dict[str, bytes], origin: dict[str, str] | None = None) -> str:
    """The summary of a pack's files (``{path in pack: bytes}``). A packed record that is not valid is an
    InputError naming it (``origin``: the file each path in the pack was read from)."""
    r = Reports.from_pack(files, origin)
    finance = ledger_windows(files.get(LEDGER), r.ramp.window.days if r.ramp and r.ramp.window else None)
    criteria = acceptance(r, files.get(LEDGER))
    parts = [_header(r, criteria), _executive(r, criteria), _profiler(r), _measurements(r), _precision(r),
             _serving(r, files), _reaper(r), _ramp(r), _finance(r, finance), _criteria(criteria)]
    return "\n".join(p for p in parts if p) + "\n"


def _header(r: Reports, criteria: list[Criterion]) -> str:
    cpu, cores, gpus = host(r)
    return (f"# costeff completion summary\n\nGenerated from the reports in this pack; each number names the "
            f"file it comes from (paths relative to this pack). Hardware: {cpu}, "
            f"{cores} cores, GPUs: {gpus}.\n\n"
            f"Acceptance: {sum(c.passed for c in criteria)} of {len(criteria)} criteria PASS.\n")


def _executive(r: Reports, criteria: list[Criterion]) -> str:
    lines = ["## Executive summary", ""]
    sel, ramp, reap = _selected(r.quant), r.ramp, r.reaper
    if sel and r.quant:
        traffic = r.quant.selected.traffic
        assumed = f"{_num(traffic.target_rate_per_s, ',.0f')} req/s, p99 budget " \
                  f"{_num(traffic.latency_budget_ms, 'g')} ms" if traffic.target_rate_per_s else \
            "no target rate (closed-loop throughput)"
        lines.append(f"- Serving: **{sel.name}** ({sel.backend}, "
                     f"{sel.precision}) at {_num(sel.speedup)}x fp32 throughput, action drift "
                     f"{_num(_fid(sel, 'action_drift_pct'), '.3f')} %, for the traffic "
                     f"assumed: {assumed} (`{QUANT}`).")
    if reap:
        lines.append(f"- Idle reaper on the sample day: GPU-hours cut by {_num(reap.reduction_pct, '.1f')} % "
                     f"with {reap.reaps_while_active} reaps while active (`{REAPER}`).")
    if ramp:
        lines.append(f"- Ramp decision: **{ramp.decision}**; "
                     f"cost ratio {_num(ramp.cost_ratio_pct, '.1f')} "
                     f"% against a cap of {_num(ramp.cost_ratio_cap_pct, '.0f')} % (`{RAMP}`).")
    split = disagreements(r)
    if split:
        lines.append(f"- {len(split)} throughput measurement(s) of the same variant disagree beyond their measured "
                     f"spread ({', '.join(d.variant for d in split)}); see *Measurements that disagree*.")
    failing = [c.name for c in criteria if not c.passed]
    lines.append(f"- Failing criteria: {', '.join(failing) if failing else 'none'}.")
    return "\n".join(lines) + "\n"


def _fid(v: Variant, measure: str) -> float | None:
    """One of a variant's fidelity figures (``action_drift_pct``, ...), None when it has none."""
    return getattr(v.fidelity, measure) if v.fidelity else None


def _profiler(r: Reports) -> str:
    entries = [("fp32 baseline", r.fp32, PROFILE_FP32),
               ("served variant" if r.fp32 else "latest profile", r.profile, PROFILE)]
    lines = [_profile_line(label, p, path, timed_entry(r.quant, p, label)) for label, p, path in entries if p]
    return "## 1. Profiler\n\n" + "\n".join(lines) + "\n" if lines else ""


def _profile_line(label: str, p: ProfileRecord, path: str, timed: Variant | None = None) -> str:
    """One line per profiled model. Throughput and $ come from the interleaved rounds when the model was timed
    there (one measurement for every ratio in this summary); the profile then adds only its latency and stability."""
    opt, cost = p.optimal or Optimal(), p.cost or Cost()
    unstable = f"{sum(1 for x in p.points if not x.stable)} of {len(p.points)} points unstable"
    if timed:
        tcost = timed.cost or Cost()
        return (f"- {label} (`{path}`, provider {p.provider}): p99 {_num(opt.latency_p99_ms)} ms at "
                f"batch {opt.batch_size}, {unstable}; throughput "
                f"{_num(timed.optimal_throughput_per_s, ',.0f')}"
                f" inferences/s at batch {timed.optimal_batch} and ${_num(tcost.usd_per_million, '.4g')}"
                f" per million from the interleaved rounds (`{QUANT}`).")
    return (f"- {label} (`{path}`, provider {p.provider}): optimal batch {opt.batch_size}, "
            f"{_num(opt.throughput_per_s, ',.0f')} inferences/s, p99 {_num(opt.latency_p99_ms)} ms, "
            f"${_num(cost.usd_per_million, '.4g')} per million inferences on {cost.instance}; "
            f"{unstable}.")


def _measurements(r: Reports) -> str:
    found = disagreements(r)
    if not found:
        return ""
    lines = ["### Measurements that disagree", ""]
    for d in found:
        ql, qh = d.quant_range
        lines.append(
            f"- **{d.variant}** ({d.label}) at batch {d.batch}: the dedicated profile `{d.profile_file}` "
            f"fell outside the interleaved rounds of `{QUANT}` ({_num(d.quant_per_s, ',.0f')}/s, rounds "
            f"{_num(ql, ',.0f')}-{_num(qh, ',.0f')}): the machine was not the same during the two (other load, "
            f"frequency scaling).")
    lines.append(f"\nThroughput, speedup and cost in this summary come from one measurement, the interleaved rounds "
                 f"of `{QUANT}` (every variant beside fp32 under the same load); the profile's own figure stays in "
                 f"its file.")
    return "\n".join(lines) + "\n"


def _precision(r: Reports) -> str:
    q = r.quant
    if not q:
        return "## 2. Precision\n\nNo quantization report in this pack.\n"
    rows = ["| variant | passed | action drift % | entropy drift % | correlation | speedup | size reduction % |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for v in q.variants:
        rows.append(f"| {v.name} | {'yes' if v.passed else 'no'} | "
                    f"{_num(_fid(v, 'action_drift_pct'), '.3f')} | "
                    f"{_num(_fid(v, 'entropy_drift_pct'), '.3f')} | {_num(_fid(v, 'action_correlation'), '.5f')} | "
                    f"{_num(v.speedup)} | {_num(v.size_reduction_pct, '.0f')} |")
    return (f"## 2. Precision (`{QUANT}`)\n\nSelected **{q.selected.name}**: {q.selected.reason}. Fidelity on "
            f"{q.split.evaluation_rows} held-out rows.\n\n" + "\n".join(rows) + "\n")


def _serving(r: Reports, files: dict[str, bytes]) -> str:
    lines = ["## 3. Batching and Triton", ""]
    b = r.batching
    if b and b.chosen:
        c, pred = b.chosen, b.chosen.predicted
        lines.append(f"- Chosen batcher (`{BATCHING}`): max batch {c.max_batch_size}, preferred "
                     f"{c.preferred_batch_size}, queue delay {c.max_queue_delay_us:g} us, {c.instances} "
                     f"server(s); predicted p50 {_num(pred.p50_ms)} ms, p99 {_num(pred.p99_ms)} ms, "
                     f"mean batch {_num(pred.mean_batch_size)}.")
    elif b:
        binding = b.binding.model_dump(mode="json", by_alias=True, exclude_unset=True) if b.binding else None
        lines.append(f"- No batcher configuration met the SLO (`{BATCHING}`): {binding}.")  # as written
    configs = sorted(p for p in files if p.startswith("model_repository/") and p.endswith("config.pbtxt"))
    lines += [f"- Triton configuration: `{p}`" for p in configs]
    lines += _verified(r.verify)
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def _verified(v: VerifyRecord | None) -> list[str]:
    """Predicted beside measured on the real Triton server (``costeff run``'s verify stage)."""
    if not v:
        return []
    if v.skipped:
        return [f"- Not measured on real Triton (`{VERIFY}`): {v.skipped}"]
    p, m = v.predicted, v.measured
    pairs = "; ".join(f"{label} predicted {_num(getattr(p, key) if p else None, fmt)}{unit}, measured "
                      f"{_num(getattr(m, key) if m else None, fmt)}{unit}"
                      for label, key, fmt, unit in (("p50", "p50_ms", ",.3g", " ms"), ("p99", "p99_ms", ",.3g", " ms"),
                                                    ("mean batch", "mean_batch_size", ",.2f", "")))
    return [f"- Measured on the real Triton {v.server.get('triton', '')} "
            f"at {_num(v.rate_per_s, 'g')} "
            f"req/s (`{VERIFY}`; Python-based backends stand in for the C++ ones): {pairs}; "
            f"{_num(m.errors if m else None, 'd')} errors, load average {', '.join(map(str, v.load_average))}."]


def _reaper(r: Reports) -> str:
    d = r.reaper
    if not d:
        return "## 4. Idle reaper\n\nNo reaper report in this pack.\n"
    wake = d.wake_up
    return (f"## 4. Idle reaper (`{REAPER}`)\n\n- GPU-hours without / with the reaper: "
            f"{_num(d.gpu_hours_without)} / {_num(d.gpu_hours_with)} "
            f"({_num(d.reduction_pct, '.1f')} % less); reaps while active: {d.reaps_while_active}.\n"
            f"- Savings: {_savings_text(d)}\n- Wake-ups: {wake.wakeups}; requests that waited for a "
            f"restore: {_num(wake.requests_waited, ',.0f')}, longest wait {_num(wake.wait_s_max, '.0f')} s.\n")


def _savings_text(savings: ReaperRecord) -> str:
    sav = savings.savings.model_dump(mode="json", by_alias=True, exclude_unset=True)  # as written, in its order
    keys = [k for k in sav if isinstance(sav[k], (int, float)) and "usd" in k]
    return ", ".join(f"{k} {_num(sav[k])}" for k in keys) or "n/a"


def _ramp(r: Reports) -> str:
    d = r.ramp
    if not d:
        return "## 5. Ramp decision\n\nNo ramp decision in this pack.\n"
    rows = ["| gate | observed | comparator | threshold | verdict |", "| --- | --- | --- | --- | --- |"]
    for g in d.gates:
        obs = g.observed
        obs = _num(obs, ",d" if isinstance(obs, int) else ".4g") if isinstance(obs, (int, float)) else obs
        rows.append(f"| {g.name} | {obs} | {g.comparator} | {g.threshold} | {g.verdict} |")
    notices = "".join(f"- {n}\n" for n in d.notices) + _projection_text(d)
    return (f"## 5. Ramp decision (`{RAMP}`)\n\n**{d.decision}** at {d.step.from_pct} % "
            f"influence. Cost per signal ${_num(d.cost_per_signal_usd, '.4f')}, per trade "
            f"${_num(d.cost_per_trade_usd)}, per day ${_num(d.cost_per_day_usd)}, per month "
            f"${_num(d.monthly_cost_usd)}.\n\n{notices}\n" + "\n".join(rows) + "\n")


def _projection_text(d: RampRecord) -> str:
    p = d.projection
    if not p:
        return ""
    if not p.available:
        return f"- PROJECTED cost: not available ({p.reason}).\n"
    levers = ", ".join(f"{lv.name} ${_num(lv.saving_usd_per_day)}" for lv in p.levers)
    reach = p.to_reach_cap
    gap = ("under the cap" if reach.met else
           f"still missing ${_num(reach.cost_to_cut_usd_per_day)}/day of cost cuts or "
           f"${_num(reach.pnl_needed_usd_per_day)}/day more PnL" if reach.met is False else "")
    return (f"- PROJECTED (not from a bill): serving ${_num(p.serving_usd_per_day)}/day on "
            f"{p.instance} (fp32 always-on ${_num(p.baseline_serving_usd_per_day)}/day; saved per day: "
            f"{levers}); projected cost ratio {_num(p.projected_cost_ratio_pct, '.1f')} % against the "
            f"ledger's PnL{'; ' + gap if gap else ''}.\n" + "".join(f"- note: {n}\n" for n in p.notes))


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


def _finance(r: Reports, fin: dict[str, Any] | None) -> str:
    lines = ["## Financial impact", "", "| measure | kind | before | after | source |",
             "| --- | --- | --- | --- | --- |"]
    synthetic = synthetic_ledger(r.ramp)
    if fin:
        b, a = fin["before"], fin["after"]
        src, kind = f"`{LEDGER}` (first vs last {fin['days']} days)", \
            "observed in the ledger" + (" (SYNTHETIC)" if synthetic else "")
        lines += [f"| cost ratio % | {kind} | {_num(b['cost_ratio_pct'], '.1f')} | {_num(a['cost_ratio_pct'], '.1f')} "
                  f"| {src} |",
                  f"| infrastructure cost per day $ | {kind} | {_num(b['cost_per_day_usd'])} | "
                  f"{_num(a['cost_per_day_usd'])} | {src} |",
                  f"| monthly savings $ | {kind} | | {_num(30 * (b['cost_per_day_usd'] - a['cost_per_day_usd']))} | "
                  f"{src}, x30 days |"]
    lines += _projected_rows(r)
    if len(lines) == 4:
        return ""
    notes = [_serving_saving_note(r)]
    if fin and synthetic:
        notes.append("The ledger economics are the shipped SYNTHETIC sample (`costeff ledger import --sample`): "
                     "its savings are invented, not measured.")
    notes.append("*Projected* rows are computed from measured throughput and catalog prices, not from a bill; "
                 "*observed* rows come from the ledger.")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes if n) + "\n"


def synthetic_ledger(ramp: RampRecord | None) -> bool:
    """Whether the ramp decision read the shipped SYNTHETIC sample economics."""
    return ramp is not None and any(str(x).startswith("SYNTHETIC") for x in ramp.provenance.ledger.sources)


def _projected_rows(r: Reports) -> list[str]:
    rows = []
    cost = r.quant.cost if r.quant else None
    if cost and cost.before and cost.after:
        b, a = cost.before, cost.after
        rows.append(f"| $ per million inferences ({cost.instance}) | projected | "
                    f"{_num(b.usd_per_million, '.4g')} | {_num(a.usd_per_million, '.4g')} | `{QUANT}` |")
    before, after, source = day_costs(r)
    if before is not None and after is not None:
        rows.append(f"| serving cost per day $ at {_num(after.target_rate_per_s, ',.0f')}/s | projected | "
                    f"{_num(before.usd_per_day)} ({before.instances_needed} x {before.instance}) | "
                    f"{_num(after.usd_per_day)} ({after.instances_needed} x {after.instance}) | "
                    f"{source} |")
    return rows


def _serving_saving_note(r: Reports) -> str:
    before, after, _ = day_costs(r)
    if before is None or after is None:
        return ""
    saved = before.usd_per_day - after.usd_per_day
    if abs(saved) < 0.005:
        return (f"Projected serving saving at the target rate: **$0.00 per day**: the faster variant still needs "
                f"{after.instances_needed} {after.instance} instance(s), the smallest unit that can be "
                f"bought; the speedup only shows as headroom.")
    return f"Projected serving saving at the target rate: ${_num(saved)} per day (${_num(30 * saved)} per month)."


def acceptance(r: Reports, ledger: bytes | None = None) -> list[Criterion]:
    ramp, reap, sel = r.ramp or RampRecord(), r.reaper or ReaperRecord(), _selected(r.quant)
    tol = r.quant.config.tolerances.action_drift_pct if r.quant else None
    drift, speedup = (_fid(sel, "action_drift_pct"), sel.speedup) if sel else (None, None)
    ratio, cap = ramp.cost_ratio_pct, ramp.cost_ratio_cap_pct
    return [
        Criterion("cost ratio <= cap", _num(ratio, ".1f"), f"<= {_num(cap, '.0f')} %", _le(ratio, cap), RAMP),
        Criterion("quantized path >= 1.5x throughput", _num(speedup), ">= 1.5x",
                  _ge(speedup, 1.5) and sel is not None and sel.name != "fp32", QUANT),
        Criterion("action drift <= tolerance", _num(drift, ".3f"), f"<= {_num(tol, '.2f')} %", _le(drift, tol), QUANT),
        Criterion("reaper GPU-hour reduction >= 50 %", _num(reap.reduction_pct, ".1f"), ">= 50 %",
                  _ge(reap.reduction_pct, 50.0), REAPER),
        Criterion("cost per signal / per trade present",
                  f"{_num(ramp.cost_per_signal_usd, '.4f')} / {_num(ramp.cost_per_trade_usd)}",
                  "both present", ramp.cost_per_signal_usd is not None
                  and ramp.cost_per_trade_usd is not None, RAMP),
        _gate_criterion(ramp, ledger),
    ]


def _gate_criterion(ramp: RampRecord, ledger: bytes | None) -> Criterion:
    """The cost gate, re-run on the packed ledger scaled above and below the cap, must block and then permit."""
    name, required = "cost gate blocks above the cap, permits below", \
        "enforced; HOLD at 1.5x cap, PROMOTE at 0.5x cap, on the packed ledger"
    window, cap = ramp.window, ramp.cost_ratio_cap_pct
    if not ledger or window is None or not window.end or window.days is None or cap is None:
        return Criterion(name, "no packed ledger or decision window", required, False, f"{RAMP}, {LEDGER}")
    from costeff.errors import CosteffError
    from costeff.ramp.gatecheck import check_cost_gate

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.sqlite"
        path.write_bytes(ledger)
        try:
            result = check_cost_gate(path, window.end, window.days, cap, ramp.cost_ratio_pct)
        except (CosteffError, sqlite3.DatabaseError, ValueError) as exc:
            return Criterion(name, f"the packed ledger could not be re-run: {exc}", required, False,
                             f"{RAMP}, {LEDGER}")
    enforced = bool(ramp.cost_gates_enabled)
    observed = result.reason if enforced else f"NOT ENFORCED (cost_gates_enabled false); {result.reason}"
    return Criterion(name, observed, required, result.passed and enforced, f"{RAMP}, {LEDGER}")


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

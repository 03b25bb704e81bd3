"""Write ``ramp_decision.json`` and its Markdown twin."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from costeff._jsonable import to_jsonable
from costeff.artifacts import atomic_write_text

if TYPE_CHECKING:  # annotations only: decide imports this module to write its record
    from costeff.ramp.decide import RampDecision

JSON_NAME = "ramp_decision.json"
MD_NAME = "ramp_decision.md"
STAGE = ".staged"  # the report before its audit record exists
log = logging.getLogger(__name__)


def write(decision: RampDecision, out_dir: Path | str) -> Path:
    """The Markdown, then the record last: a folder holding ramp_decision.json is complete."""
    from costeff.records.kinds import RAMP

    out = Path(out_dir)
    atomic_write_text(out / MD_NAME, markdown(decision))
    return RAMP.write(out, to_jsonable(decision))


def write_audited(decision: RampDecision, out_dir: Path | str,
                  append: Callable[[RampDecision], int]) -> RampDecision:
    """Write the report and append the decision to the audit trail (``append`` returns its seq), both or neither.

    The report is first written and synced in a hidden staging folder (a full disk fails here, before the
    trail has the decision), then the record is appended (if that fails, the staged report goes), then the
    report is written with the record's number. Should that last write fail, the staged report, complete
    but without the number, is moved into place: the trail never holds a decision whose report is missing.
    """
    out = Path(out_dir)
    stage = out / STAGE
    staged = {out / MD_NAME: stage / MD_NAME, out / JSON_NAME: stage / JSON_NAME}
    try:
        write(decision, stage)
        final = replace(decision, audit_seq=append(decision))
    except BaseException:
        _remove(stage, staged.values())
        raise
    finals = ((out / MD_NAME, lambda: atomic_write_text(out / MD_NAME, markdown(final))),
              (out / JSON_NAME, lambda: _write_record(out, final)))
    try:
        for path, write_final in finals:
            try:
                write_final()
            except OSError as exc:
                log.warning("%s: could not write it with its audit record %s (%s); kept it without the number",
                            path, final.audit_seq, exc.strerror or exc)
                os.replace(staged[path], path)
    finally:
        _remove(stage, staged.values())
    return final


def _write_record(out: Path, decision: RampDecision) -> Path:
    from costeff.records.kinds import RAMP

    return RAMP.write(out, to_jsonable(decision))


def _remove(stage: Path, paths: Iterable[Path]) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    try:
        stage.rmdir()
    except OSError:  # never made, or holds something costeff did not put there
        pass


def markdown(d: RampDecision) -> str:
    step = d.step
    lines = [f"# Ramp decision: {d.decision}", "",
             f"- influence step: {_pct(step['from_pct'])} -> {_pct(step['to_pct'])} "
             f"(plan: {', '.join(_pct(s) for s in step['steps_pct'])})",
             f"- as of {d.as_of}; trailing window {d.window.start}..{d.window.end} "
             f"({d.window.covered_days}/{d.window.days} days in both ledgers)",
             f"- cost gates enabled: {'yes' if d.cost_gates_enabled else 'NO'}"]
    lines += [f"- **{n}**" for n in d.notices]
    lines += ["", "## Why", ""] + [f"- {r}" for r in d.reasons]
    lines += ["", "## Gates", "", "| gate | kind | observed | comparator | threshold | verdict | enforced | detail |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {g.name} | {g.kind} | {_val(g.observed, g.unit)} | {g.comparator} | {_val(g.threshold, g.unit)} "
              f"| {g.verdict.value} | {'yes' if g.enforced else 'no'} | {g.detail} |" for g in d.gates]
    lines += ["", "## Economics over the window", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in _economics_rows(d)]
    lines += projection_markdown(d.projection)
    prov = d.provenance
    lines += ["", "## Inputs", "", f"- ledger: {prov['ledger']['path']} (sha256 {prov['ledger']['sha256']})",
              f"- ledger sources: {', '.join(prov['ledger']['sources']) or '-'}",
              f"- plan: {prov['plan']['path']}",
              "- quantization report: "
              f"{prov['quantization_report']['path'] if prov['quantization_report'] else 'none'}",
              f"- deployed model: {prov['deployed_model']['sha256'] or 'unknown'} ({prov['deployed_model']['source']})",
              f"- audit record: {d.audit_seq}", f"- created {d.created_at}, costeff {d.costeff_version}", ""]
    return "\n".join(lines)


def projection_markdown(p: Any) -> list[str]:
    """The projection section, headed and labelled so it is never read as a ledger number."""
    if p is None:
        return []
    lines = ["", "## Projection (PROJECTED, not from a bill)", "", f"_{p.label}._", ""]
    if not p.available:
        return lines + [f"Not available: {p.reason}."]
    lines += [f"Serving {p.target_rate_per_s:g} inferences/s on {p.instance}: "
              f"{_val(p.baseline_serving_usd_per_day, 'USD')}/day (fp32, always on) -> "
              f"**{_val(p.serving_usd_per_day, 'USD')}/day** projected.", "",
              "| lever | before $/day | after $/day | saving $/day | share | detail | assumption |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {lv.name} | {lv.usd_per_day_before:,.2f} | {lv.usd_per_day_after:,.2f} | "
              f"{lv.saving_usd_per_day:,.2f} | {_val(lv.share_pct, '%')} | {lv.detail} | {lv.assumption or '-'} |"
              for lv in p.levers]
    return lines + [""] + _against_ledger_lines(p) + [f"- note: {n}" for n in p.notes]


def _against_ledger_lines(p: Any) -> list[str]:
    o, reach = p.observed, p.to_reach_cap
    if o is None or o.gross_pnl_usd_per_day is None:
        return [f"- against the ledger: {reach.get('why', 'no data')}"]
    lines = [f"- observed over {o.days} ledger days: infrastructure {_val(o.infra_usd_per_day, 'USD')}/day "
             f"(serving {_val(o.serving_usd_per_day, 'USD')}, other {_val(o.other_usd_per_day, 'USD')}; "
             f"{o.serving_basis}), gross PnL {_val(o.gross_pnl_usd_per_day, 'USD')}/day, cost ratio "
             f"{_val(o.cost_ratio_pct, '%')}",
             f"- projected: infrastructure {_val(p.projected_infra_usd_per_day, 'USD')}/day (observed other + "
             f"projected serving), cost ratio **{_val(p.projected_cost_ratio_pct, '%')}** vs cap "
             f"{_val(p.cost_ratio_cap_pct, '%')}"]
    if reach.get("met"):
        lines.append(f"- the projection is under the cap with {_val(reach['headroom_usd_per_day'], 'USD')}/day "
                     "to spare")
    elif reach.get("met") is False:
        lines.append(f"- still missing: cut {_val(reach['cost_to_cut_usd_per_day'], 'USD')}/day of cost, or earn "
                     f"{_val(reach['pnl_needed_usd_per_day'], 'USD')}/day more gross PnL")
    return lines


def _economics_rows(d: RampDecision) -> list[tuple[str, str]]:
    return [("cost ratio", _val(d.cost_ratio_pct, "%") + f" (cap {_val(d.cost_ratio_cap_pct, '%')})"),
            ("gross PnL", _val(d.gross_pnl_usd, "USD")), ("infrastructure cost", _val(d.infra_cost_usd, "USD")),
            ("net PnL", _val(d.net_pnl_usd, "USD")), ("cost per signal", _val(d.cost_per_signal_usd, "USD")),
            ("cost per trade", _val(d.cost_per_trade_usd, "USD")), ("cost per day", _val(d.cost_per_day_usd, "USD")),
            ("monthly cost (30 days)", _val(d.monthly_cost_usd, "USD")), ("signals", _val(d.signals, "")),
            ("trades", _val(d.trades, "")), ("days at step", _val(d.days_at_step, "")),
            ("trades at step", _val(d.trades_at_step, "")), ("drawdown at step", _val(d.drawdown_usd, "USD"))]


def _pct(v: Any) -> str:
    return "unknown" if v is None else f"{v:g} %"


def _val(v: Any, unit: str) -> str:
    if v is None:
        return "NO-DATA"
    if isinstance(v, float):
        if v == float("inf"):
            return "inf"
        text = f"{abs(v):,.4f}" if 0 < abs(v) < 1 else f"{abs(v):,.2f}"
        sign = "-" if v < 0 else ""
        return f"{sign}${text}" if unit == "USD" else f"{sign}{text} {unit}".strip()
    elif isinstance(v, str) and len(v) == 64:
        return f"`{v[:16]}...`"
    else:
        text = str(v)
    return f"${text}" if unit == "USD" else f"{text} {unit}".strip()

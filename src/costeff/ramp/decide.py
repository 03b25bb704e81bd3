"""``decide(config) -> RampDecision``: PROMOTE, HOLD or ROLLBACK the policy's influence.

Every gate is listed with what was observed, the threshold, the comparator and a
verdict; NO-DATA fails. A hard breach (drawdown beyond the plan, or a net loss
beyond the plan's limit) rolls back one step. Disabling the cost gates by flag
leaves them computed and shown, marked not enforced, with the flag change that
disabled them. Drift is gated twice: offline (the quantization report's held-out rows)
and live (the ledger's drift windows of the deployed bytes over the last hours, from
``costeff drift check|watch``); no live window is NO-DATA and holds. A paused pipeline
(flag ``pipeline_paused``, or ``pipeline_paused.<pipeline>`` as the reaper's pipeline
action sets it) is never promoted: the ``pipeline_not_paused`` gate holds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from costeff.artifacts import provenance, sha256_file, utc_now
from costeff.errors import InputError
from costeff.gates import Gate, Verdict, check
from costeff.ledger import Ledger
from costeff.ramp.economics import Economics, StepHistory, Window, step_history, window_economics
from costeff.ramp.evidence import DeployedModel, QuantReport, deployed_model, find_report, load_report, model_time
from costeff.ramp.plan import RampPlan, Step, load_plan

PROMOTE, HOLD, ROLLBACK = "PROMOTE", "HOLD", "ROLLBACK"
COST_GATES = ("cost_ratio", "net_pnl")
PAUSE_FLAG = "pipeline_paused"


@dataclass(frozen=True)
class DecideConfig:
    ledger: Path
    plan: Path | None = None
    quant_report: Path | None = None
    as_of: date | None = None  # decisions use ledger days up to the day before; default today (UTC)
    triton_repository: Path | None = None
    model_name: str | None = None
    drift_hours: float = 24.0  # live drift windows from the ledger over this many hours before the decision
    projection: Any = None  # ProjectionInputs; None: the newest reports under the artifacts folder
    pipeline: str | None = None  # whose pipeline_paused.<pipeline> flag holds promotion; default: model_name

    def __post_init__(self) -> None:
        if self.pipeline is not None:
            from costeff.flags import spec_for

            spec_for(PAUSE_FLAG + "." + self.pipeline)  # a name the flag store cannot hold is bad input
        if (self.triton_repository is None) != (self.model_name is None):
            raise InputError("--triton-repository and --model-name go together: give both or neither")
        if self.as_of is not None and not isinstance(self.as_of, date):
            raise InputError(f"as_of: {self.as_of!r} is not a date; expected YYYY-MM-DD")
        if not (isinstance(self.drift_hours, (int, float)) and self.drift_hours > 0):
            raise InputError(f"--drift-hours: {self.drift_hours!r}; expected hours > 0")


@dataclass(frozen=True)
class RampDecision:
    schema_version: int
    created_at: str
    costeff_version: str
    decision: str
    as_of: str
    step: dict[str, Any]
    window: Window
    cost_gates_enabled: bool
    notices: list[str]
    reasons: list[str]
    gates: list[Gate]
    cost_ratio_pct: float | None
    cost_ratio_cap_pct: float | None
    gross_pnl_usd: float | None
    infra_cost_usd: float | None
    net_pnl_usd: float | None
    signals: int | None
    trades: int | None
    cost_per_signal_usd: float | None
    cost_per_trade_usd: float | None
    cost_per_day_usd: float | None
    monthly_cost_usd: float | None
    days_at_step: int
    trades_at_step: int
    drawdown_usd: float | None
    provenance: dict[str, Any]
    audit_seq: int | None = None
    gates_failed: list[str] = field(default_factory=list)
    projection: Any = None  # PROJECTED serving cost and cost ratio (costeff.ramp.projection), never a ledger number
    inputs: dict[str, str] = field(default_factory=dict)  # {kind: sha256} of the records it was made from


def decide(config: DecideConfig, flags=None, audit=None, out_dir: Path | None = None) -> RampDecision:
    """Read ledgers, plan, quantization evidence and flags; decide; append the decision to the audit trail.

    With ``out_dir``, the report is written there too, all or nothing with the audit record
    (``costeff.ramp.report.write_audited``): a report that cannot be written leaves no decision in the trail."""
    from costeff.audit import default_log
    from costeff.flags import FlagStore

    flags = flags or FlagStore.default()
    audit = audit or default_log()
    plan = load_plan(config.plan)
    ledger = Ledger(config.ledger)
    if not ledger.path.is_file():
        raise InputError(f"{ledger.path}: no ledger here; load one with `costeff ledger import FILE` "
                         "(or --sample for the synthetic sample)")
    as_of = config.as_of or utc_now().date()
    decision = _evaluate(config, plan, ledger, as_of, flags)
    if out_dir is not None:
        from costeff.ramp.report import write_audited

        return write_audited(decision, out_dir, lambda d: audit.append("ramp.decision", _audit_payload(d))["seq"])
    record = audit.append("ramp.decision", _audit_payload(decision))
    return _with(decision, audit_seq=record["seq"])


def _evaluate(config: DecideConfig, plan: RampPlan, ledger: Ledger, as_of: date, flags) -> RampDecision:
    end = as_of - timedelta(days=1)
    econ = window_economics(ledger, end, plan.window_days)
    history = step_history(ledger, end)
    index = plan.index_of(history.influence_pct) if history.influence_pct is not None else 0
    step = plan.steps[index]
    enabled = bool(flags.get("cost_gates_enabled"))
    deployed = deployed_model(flags, config.triton_repository, config.model_name)
    report_path = find_report(config.quant_report)
    report = load_report(report_path) if report_path else None
    gates = (_data_gates(econ) + _cost_gates(econ, step.cost_ratio_cap_pct, enabled) + _risk_gates(econ, history, step)
             + _promotion_gates(history, step) + _quality_gates(plan, deployed, report)
             + _live_drift_gates(config, plan, deployed, as_of) + _pause_gates(config, flags))
    verdict, to_index, reasons = _verdict(gates, index, len(plan.steps))
    notices = [] if enabled else [_disabled_notice(flags)]
    if any(r.startswith("SYNTHETIC") for r in _sources(ledger)):
        notices.append("the ledger holds SYNTHETIC sample data (costeff ledger import --sample)")
    header = provenance(None, hardware=False)
    return RampDecision(
        header["schema_version"], header["created_at"], header["costeff_version"], verdict, as_of.isoformat(),
        _step_record(plan, index, to_index, history), econ.window, enabled, notices, reasons, gates,
        econ.cost_ratio_pct, step.cost_ratio_cap_pct, econ.gross_pnl_usd, econ.infra_cost_usd, econ.net_pnl_usd,
        econ.signals, econ.trades, econ.cost_per_signal_usd, econ.cost_per_trade_usd, econ.cost_per_day_usd,
        econ.monthly_cost_usd, history.days_at_step, history.trades_at_step, history.drawdown_usd,
        _provenance(ledger, plan, report, deployed), gates_failed=[g.name for g in gates if g.blocks],
        projection=_projection(config, ledger, end, plan, step, report_path), inputs=_inputs(config, report_path))


def _inputs(config: DecideConfig, report_path: Path | None) -> dict[str, str]:
    """The quantization report and the projection's reports, by SHA-256 (``costeff pack`` follows them)."""
    from costeff.artifacts import Layout, inputs_of
    from costeff.ramp.projection import default_inputs

    p = config.projection or default_inputs(Layout.default(), report_path)  # what _projection reads
    return inputs_of(quantization_report=report_path, profile=getattr(p, "profile", None),
                     profile_fp32=getattr(p, "baseline_profile", None),
                     batching_report=getattr(p, "batching_report", None),
                     reaper_report=getattr(p, "reaper_report", None))


def projection_for(config: DecideConfig):
    """``costeff ramp project``: the projection alone, against the plan's cap at the ledger's current step."""
    plan = load_plan(config.plan)
    ledger = Ledger(config.ledger)
    if not ledger.path.is_file():
        raise InputError(f"{ledger.path}: no ledger here; load one with `costeff ledger import`")
    end = (config.as_of or utc_now().date()) - timedelta(days=1)
    history = step_history(ledger, end)
    step = plan.steps[plan.index_of(history.influence_pct) if history.influence_pct is not None else 0]
    return _projection(config, ledger, end, plan, step, find_report(config.quant_report))


def _projection(config: DecideConfig, ledger: Ledger, end: date, plan: RampPlan, step: Step, report_path):
    """The projection shown beside the decision; it never changes the verdict, and a missing input only says so."""
    from costeff.artifacts import Layout
    from costeff.ramp.projection import default_inputs, observed_window, project, unavailable

    inputs = config.projection or default_inputs(Layout.default(), report_path)
    try:
        return project(inputs, observed_window(ledger, end, plan.window_days), step.cost_ratio_cap_pct)
    except InputError as exc:
        return unavailable(str(exc), inputs)
    except (KeyError, TypeError, ValueError) as exc:  # a report of another shape must not stop the decision
        return unavailable(f"a projection input is not in the expected shape ({type(exc).__name__}: {exc})", inputs)


def _gate(name: str, kind: str, observed: Any, comparator: str, threshold: Any, unit: str, detail: str,
          enforced: bool = True, hard: bool = False) -> Gate:
    return check(name, observed, comparator, threshold, detail, kind=kind, unit=unit, enforced=enforced,
                 hard_breach=hard)


def _data_gates(econ: Economics) -> list[Gate]:
    w = econ.window
    missing = ", ".join(w.missing_dates[:5]) + (" ..." if len(w.missing_dates) > 5 else "")
    detail = (f"both ledgers cover {w.start}..{w.end}" if not w.missing_dates
              else f"days missing from the economics or cost ledger: {missing}")
    observed = w.covered_days if w.covered_days or len(w.missing_dates) < w.days else None
    return [_gate("data_freshness", "data", observed, ">=", w.days, "days", detail)]


def _cost_gates(econ: Economics, cap_pct: float, enabled: bool) -> list[Gate]:
    off = "" if enabled else " [NOT ENFORCED: cost_gates_enabled is false]"
    ratio_detail = ("gross PnL <= 0 over the window: the ratio is infinite"
                    if econ.cost_ratio_pct == float("inf") else
                    f"infrastructure ${_money(econ.infra_cost_usd)} / gross PnL ${_money(econ.gross_pnl_usd)} "
                    f"over {econ.window.covered_days} days")
    return [
        _gate("cost_ratio", "cost", econ.cost_ratio_pct, "<=", cap_pct, "%", ratio_detail + off,
              enforced=enabled),
        _gate("net_pnl", "cost", econ.net_pnl_usd, ">", 0.0, "USD",
              "gross PnL minus infrastructure cost over the window" + off, enforced=enabled),
    ]


def _risk_gates(econ: Economics, history: StepHistory, step: Step) -> list[Gate]:
    return [
        _gate("net_loss_limit", "risk", econ.net_pnl_usd, ">=", -step.max_net_loss_usd, "USD",
              "net PnL over the window; below the limit rolls back one step", hard=True),
        _gate("drawdown", "risk", history.drawdown_usd, "<=", step.max_drawdown_usd, "USD",
              f"peak-to-trough cumulative gross PnL over {history.days_at_step} days at this step; "
              "beyond the limit rolls back one step", hard=True),
    ]


def _promotion_gates(history: StepHistory, step: Step) -> list[Gate]:
    at = f"{history.influence_pct:g} %" if history.influence_pct is not None else "unknown step"
    none = history.influence_pct is None
    return [
        _gate("days_at_step", "promotion", None if none else history.days_at_step, ">=", step.min_days, "days",
              f"consecutive ledger days at {at} up to {history.last_date}"),
        _gate("trades_at_step", "promotion", None if none else history.trades_at_step, ">=", step.min_trades,
              "trades", f"trades executed at {at}"),
    ]


def _quality_gates(plan: RampPlan, deployed: DeployedModel, report: QuantReport | None) -> list[Gate]:
    if deployed.sha256 is None or report is None:
        why = deployed.source if deployed.sha256 is None else "no quantization report found"
        return [_gate(n, "quality", None, c, t, u, why) for n, c, t, u in (
            ("quant_report_matches_deployed", "==", "a variant sha256 in the report", ""),
            ("quant_report_newer_than_model", ">=", 0, "s"),
            ("quant_action_drift_pct", "<=", plan.max_action_drift_pct, "%"),
            ("quant_entropy_drift_pct", "<=", plan.max_entropy_drift_pct, "%"))]
    variant = report.variant_for(deployed.sha256)
    match = _gate("quant_report_matches_deployed", "quality", deployed.sha256, "==",
                  variant.sha256 if variant else report.model_sha256, "",
                  f"deployed ({deployed.source}) is variant {variant.name} of {report.path}" if variant else
                  f"no variant in {report.path} has the deployed bytes ({deployed.source})")
    return [match] + _drift_gates(plan, report, deployed, variant)


def _drift_gates(plan: RampPlan, report: QuantReport, deployed: DeployedModel, variant) -> list[Gate]:
    when, source = model_time(report, deployed) if variant else (None, "")
    age = (report.created_at - when).total_seconds() if when else None
    why = "the report does not describe the deployed model" if variant is None else ""
    return [
        _gate("quant_report_newer_than_model", "quality", age, ">=", 0, "s",
              why or f"report created {report.created_at.isoformat()} vs model time from {source}"),
        _gate("quant_action_drift_pct", "quality", variant.action_drift_pct if variant else None, "<=",
              plan.max_action_drift_pct, "%", why or f"variant {variant.name} vs fp32 on held-out observations"),
        _gate("quant_entropy_drift_pct", "quality", variant.entropy_drift_pct if variant else None, "<=",
              plan.max_entropy_drift_pct, "%", why or f"variant {variant.name} vs fp32 on held-out observations"),
    ]


def _live_drift_gates(config: DecideConfig, plan: RampPlan, deployed: DeployedModel, as_of: date) -> list[Gate]:
    from costeff.ramp.live_drift import live_drift, reference_time

    live = live_drift(config.ledger, deployed.sha256, reference_time(config.as_of), config.drift_hours)
    return [_gate("live_action_drift_pct", "quality", live.action_drift_pct_max, "<=", plan.max_action_drift_pct,
                  "%", live.detail),
            _gate("live_entropy_drift_pct", "quality", live.entropy_drift_pct_max, "<=",
                  plan.max_entropy_drift_pct, "%", live.detail)]


def _pause_gates(config: DecideConfig, flags) -> list[Gate]:
    """``pipeline_paused`` (every pipeline) and ``pipeline_paused.<pipeline>``: a paused one holds, never promotes."""
    pipeline = config.pipeline or config.model_name
    names = [PAUSE_FLAG] + ([f"{PAUSE_FLAG}.{pipeline}"] if pipeline else [])
    paused = [n for n in names if flags.get(n)]
    if paused:
        last = {n: flags.history(n)[-1] for n in paused}
        detail = "; ".join(f"{n} is true (v{c.version}, {c.ts}, by {c.actor}{': ' + c.reason if c.reason else ''})"
                           for n, c in last.items())
    else:
        detail = " and ".join(names) + (" are" if len(names) > 1 else " is") + " false" + \
            ("" if pipeline else " (no --pipeline or --model-name: per-pipeline pauses not consulted)")
    return [_gate("pipeline_not_paused", "control", bool(paused), "==", False, "", detail)]


def _verdict(gates: list[Gate], index: int, n_steps: int) -> tuple[str, int, list[str]]:
    breaches = [g for g in gates if g.hard_breach and g.verdict is Verdict.FAIL]
    if breaches:
        return ROLLBACK, max(index - 1, 0), [f"hard breach: {_why(g)}" for g in breaches]
    blocking = [g for g in gates if g.blocks]
    if blocking:
        return HOLD, index, [_why(g) for g in blocking]
    if index == n_steps - 1:
        return HOLD, index, ["every gate passed; already at the final step"]
    return PROMOTE, index + 1, ["every enforced gate passed"]


def _why(g: Gate) -> str:
    shown = "no data" if g.verdict is Verdict.NO_DATA else f"{_fmt(g.observed)} {g.unit}"
    return (f"{g.name} {g.verdict.value}: observed {shown}, required {g.comparator} {_fmt(g.threshold)} {g.unit} "
            f"({g.detail})")


def _step_record(plan: RampPlan, index: int, to_index: int, history: StepHistory) -> dict[str, Any]:
    return {"from_pct": plan.steps[index].influence_pct if history.influence_pct is not None else None,
            "to_pct": plan.steps[to_index].influence_pct, "from_index": index, "to_index": to_index,
            "steps_pct": [s.influence_pct for s in plan.steps]}


def _disabled_notice(flags) -> str:
    last = flags.history("cost_gates_enabled")[-1]
    why = f": {last.reason}" if last.reason else ""
    return (f"COST GATES DISABLED by flag cost_gates_enabled (v{last.version}, {last.ts}, by {last.actor}{why}); "
            "cost_ratio and net_pnl are shown but not enforced")


def _sources(ledger: Ledger) -> list[str]:
    return sorted({s for c in ledger.coverage() for s in c.sources})


def _provenance(ledger: Ledger, plan: RampPlan, report: QuantReport | None, deployed: DeployedModel) -> dict:
    plan_sha = sha256_file(plan.source) if Path(plan.source).is_file() else None
    return {"ledger": {"path": str(ledger.path), "sha256": sha256_file(ledger.path), "sources": _sources(ledger)},
            "plan": {"path": plan.source, "sha256": plan_sha, "window_days": plan.window_days},
            "quantization_report": {"path": report.path, "sha256": report.sha256} if report else None,
            "deployed_model": {"sha256": deployed.sha256, "source": deployed.source},
            "model_sha256": deployed.sha256}


def _audit_payload(d: RampDecision) -> dict[str, Any]:
    return {"decision": d.decision, "as_of": d.as_of, "step": d.step, "cost_gates_enabled": d.cost_gates_enabled,
            "cost_ratio_pct": d.cost_ratio_pct, "net_pnl_usd": d.net_pnl_usd, "gates_failed": d.gates_failed,
            "gates": {g.name: g.verdict.value for g in d.gates}, "notices": d.notices,
            "ledger_sha256": d.provenance["ledger"]["sha256"], "deployed_model_sha256": d.provenance["model_sha256"]}


def _with(d: RampDecision, **changes: Any) -> RampDecision:
    from dataclasses import replace

    return replace(d, **changes)


def _money(v: float | None) -> str:
    return "-" if v is None else f"{v:,.2f}"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "inf" if v == float("inf") else f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.2f}"
    if isinstance(v, str) and len(v) == 64:
        return v[:12] + "..."
    return str(v)


def parse_date(text: str, option: str = "--as-of") -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InputError(f"{option}: {text!r} is not a date; expected YYYY-MM-DD") from None



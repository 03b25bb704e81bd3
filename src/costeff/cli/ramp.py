"""``costeff ramp decide``: PROMOTE / HOLD / ROLLBACK the policy's influence (exit 0 / 1 / 1)."""

from __future__ import annotations

import argparse
from pathlib import Path

from costeff.cli._common import add_common, emit, existing_file, workspace


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("ramp", help="decide whether the policy's influence may grow")
    verbs = parser.add_subparsers(dest="ramp_command", metavar="VERB", required=True)
    d = verbs.add_parser("decide", help="gate the next ramp step on cost ratio, PnL, drift, risk and data")
    d.add_argument("--ledger", type=Path, metavar="PATH", help="SQLite ledger (default: artifacts/ledger.sqlite)")
    d.add_argument("--plan", type=existing_file("--plan"), metavar="FILE", help="ramp plan TOML (default: shipped)")
    d.add_argument("--quant-report", type=existing_file("--quant-report"), metavar="FILE",
                   help="quantization_report.json (default: newest under artifacts/cost/quant)")
    d.add_argument("--as-of", metavar="DATE", help="decide as of DATE (YYYY-MM-DD, UTC); ledgers must reach "
                   "the day before (default: today)")
    d.add_argument("--triton-repository", type=Path, metavar="DIR",
                   help="hash the served version's DIR/NAME/<N>/model.onnx (default: flag deployed_model_sha256)")
    d.add_argument("--model-name", metavar="NAME", help="model name in the Triton repository")
    d.add_argument("--pipeline", metavar="NAME",
                   help="hold (never promote) while flag pipeline_paused.NAME is true, as the reaper's pipeline "
                   "action sets it; pipeline_paused is always consulted (default NAME: --model-name)")
    d.add_argument("--drift-hours", type=float, default=24.0, metavar="H",
                   help="gate on the ledger's live drift windows of the deployed model over the last H hours "
                   "(default 24)")
    _projection_args(d)
    add_common(d)
    d.set_defaults(func=_decide)
    p = verbs.add_parser("project", help="PROJECTED serving cost and cost ratio from the measured levers "
                         "(precision, batching, right-sizing, reaping) against the ledger's PnL")
    p.add_argument("--ledger", type=Path, metavar="PATH", help="SQLite ledger (default: artifacts/ledger.sqlite)")
    p.add_argument("--plan", type=existing_file("--plan"), metavar="FILE", help="ramp plan TOML (default: shipped)")
    p.add_argument("--quant-report", type=existing_file("--quant-report"), metavar="FILE",
                   help="quantization_report.json: picks the profiles of the selected variant and of fp32")
    p.add_argument("--as-of", metavar="DATE", help="ledger window ends the day before DATE (default: today, UTC)")
    _projection_args(p)
    add_common(p)
    p.set_defaults(func=_project)
    from costeff.cli.ramp_watch import register_watch

    register_watch(verbs)


def _projection_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("projection inputs (default: the newest under artifacts/cost)")
    g.add_argument("--profile", type=existing_file("--profile"), metavar="FILE",
                   help="gpu_profile.json of the served variant")
    g.add_argument("--baseline-profile", type=existing_file("--baseline-profile"), metavar="FILE",
                   help="gpu_profile.json of fp32")
    g.add_argument("--batching-report", type=existing_file("--batching-report"), metavar="FILE",
                   help="batching_report.json of `costeff batching optimize`")
    g.add_argument("--reaper-report", type=existing_file("--reaper-report"), metavar="FILE",
                   help="reaper_report.json of `costeff reap`")
    g.add_argument("--catalog", type=existing_file("--catalog"), metavar="FILE", help="price catalog TOML")


def _inputs(args: argparse.Namespace):
    """Explicit inputs when any is given (the rest from the newest artifacts), else None (all defaults)."""
    from costeff.ramp.evidence import find_report
    from costeff.ramp.projection import ProjectionInputs, default_inputs

    given = {k: getattr(args, k) for k in ("profile", "baseline_profile", "batching_report", "reaper_report",
                                             "catalog")}
    if not any(given.values()):
        return None
    here = workspace(args)
    found = default_inputs(here, find_report(args.quant_report, here), args.catalog)
    return ProjectionInputs(**{k: v if v is not None else getattr(found, k) for k, v in given.items()})


def _decide(args: argparse.Namespace) -> int:
    from costeff.artifacts import writable_dir
    from costeff.ramp import PROMOTE, DecideConfig, decide
    from costeff.ramp.decide import parse_date
    from costeff.ramp.report import JSON_NAME

    layout = workspace(args)
    config = DecideConfig(ledger=args.ledger or layout.ledger, plan=args.plan, quant_report=args.quant_report,
                          as_of=parse_date(args.as_of) if args.as_of is not None else None,
                          triton_repository=args.triton_repository, model_name=args.model_name,
                          drift_hours=args.drift_hours, projection=_inputs(args),
                          pipeline=args.pipeline)
    directory = writable_dir(layout.run_dir("ramp", args.out), keep=False)  # before the decision is audited
    decision = decide(config, out_dir=directory, workspace=layout)  # the report is written before it is audited
    path = directory / JSON_NAME
    emit(args, decision, lambda: _human(decision, path))
    return 0 if decision.decision == PROMOTE else 1


def _project(args: argparse.Namespace) -> int:
    from costeff.artifacts import atomic_write_json, atomic_write_text
    from costeff.ramp import DecideConfig
    from costeff.ramp.decide import parse_date, projection_for
    from costeff.ramp.report import projection_markdown

    layout = workspace(args)
    config = DecideConfig(ledger=args.ledger or layout.ledger, plan=args.plan, quant_report=args.quant_report,
                          as_of=parse_date(args.as_of) if args.as_of else None, projection=_inputs(args))
    projection = projection_for(config, layout)
    out = layout.run_dir("ramp", args.out)
    atomic_write_json(out / "projection.json", projection)
    text = "\n".join(projection_markdown(projection)).lstrip("\n") + "\n"
    atomic_write_text(out / "projection.md", text)
    emit(args, projection, lambda: print(text + f"\nwrote {out / 'projection.json'} (+ .md)"))
    return 0


def _human(d, path: Path) -> None:
    from costeff.ramp.report import _val

    print(f"{d.decision}: influence {d.step['from_pct']} % -> {d.step['to_pct']} % (as of {d.as_of})")
    for notice in d.notices:
        print(f"  ! {notice}")
    for g in d.gates:
        mark = "" if g.enforced else " (not enforced)"
        print(f"  {g.verdict.value:<7} {g.name:<31} {_val(g.observed, g.unit):>18} {g.comparator} "
              f"{_val(g.threshold, g.unit)}{mark}")
    print(f"  cost ratio {_val(d.cost_ratio_pct, '%')}, per signal {_val(d.cost_per_signal_usd, 'USD')}, "
          f"per trade {_val(d.cost_per_trade_usd, 'USD')}, per day {_val(d.cost_per_day_usd, 'USD')}, "
          f"monthly {_val(d.monthly_cost_usd, 'USD')}")
    p = d.projection
    if p is not None and p.available:
        saved = ", ".join(f"{lv.name} -${lv.saving_usd_per_day:,.2f}" for lv in p.levers)
        print(f"  PROJECTED serving ${p.serving_usd_per_day:,.2f}/day on {p.instance}; projected cost ratio "
              f"{_val(p.projected_cost_ratio_pct, '%')} ({saved})")
    elif p is not None:
        print(f"  projection not available: {p.reason}")
    print(f"  wrote {path} (+ .md)")

"""``costeff ramp decide``: PROMOTE / HOLD / ROLLBACK the policy's influence (exit 0 / 1 / 1)."""

from __future__ import annotations

import argparse
from pathlib import Path

from costeff.cli._common import add_common, emit, existing_file


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
                   help="hash the served model at DIR/NAME/1/model.onnx (default: flag deployed_model_sha256)")
    d.add_argument("--model-name", metavar="NAME", help="model name in the Triton repository")
    add_common(d)
    d.set_defaults(func=_decide)


def _decide(args: argparse.Namespace) -> int:
    from costeff.artifacts import Layout, writable_dir
    from costeff.ramp import PROMOTE, DecideConfig, decide, write
    from costeff.ramp.decide import parse_date

    layout = Layout.default()
    config = DecideConfig(ledger=args.ledger or layout.ledger, plan=args.plan, quant_report=args.quant_report,
                          as_of=parse_date(args.as_of) if args.as_of is not None else None,
                          triton_repository=args.triton_repository, model_name=args.model_name)
    directory = writable_dir(layout.run_dir("ramp", args.out), keep=False)  # before the decision is audited
    decision = decide(config)
    path = write(decision, directory)
    emit(args, decision, lambda: _human(decision, path))
    return 0 if decision.decision == PROMOTE else 1


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
    print(f"  wrote {path} (+ .md)")

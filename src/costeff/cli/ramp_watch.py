"""``costeff ramp watch``: re-decide every interval, export the cost gate as Prometheus gauges."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from costeff.cli._common import add_common, add_listener, existing_file, positive_float


def register_watch(verbs: argparse._SubParsersAction) -> None:
    w = verbs.add_parser("watch", help="decide every --interval seconds; gauges for cost ratio, cost per "
                         "signal/trade, the decision; history in <out>/history.jsonl")
    w.add_argument("--interval", type=positive_float("--interval"), default=3600.0, metavar="S",
                   help="seconds between decisions (default 3600)")
    w.add_argument("--max-rounds", type=int, metavar="N", help="stop after N decisions (default: until interrupted)")
    w.add_argument("--ledger", type=Path, metavar="PATH", help="SQLite ledger (default: artifacts/ledger.sqlite)")
    w.add_argument("--plan", type=existing_file("--plan"), metavar="FILE", help="ramp plan TOML (default: shipped)")
    w.add_argument("--quant-report", type=existing_file("--quant-report"), metavar="FILE",
                   help="quantization_report.json (default: newest under artifacts/cost/quant)")
    w.add_argument("--triton-repository", type=Path, metavar="DIR", help="hash the served version in DIR/NAME")
    w.add_argument("--model-name", metavar="NAME", help="model name in the Triton repository")
    w.add_argument("--pipeline", metavar="NAME",
                   help="hold (never promote) while flag pipeline_paused.NAME is true, as the reaper's pipeline "
                   "action sets it; pipeline_paused is always consulted (default NAME: --model-name)")
    w.add_argument("--policy-model", metavar="NAME", help="model label of costeff_policy_influence_pct, the "
                   "influence the reaper reads (default: --model-name, else 'policy')")
    w.add_argument("--drift-hours", type=float, default=24.0, metavar="H", help="live drift window (default 24)")
    add_listener(w)
    add_common(w)
    w.set_defaults(func=_watch)


def _watch(args: argparse.Namespace) -> int:
    from costeff.artifacts import Layout
    from costeff.ramp import DecideConfig
    from costeff.health import Heartbeat
    from costeff.ramp.watch import DEFAULT_MODEL, RampMetrics, RampWatcher

    layout = Layout.default()
    config = DecideConfig(ledger=args.ledger or layout.ledger, plan=args.plan, quant_report=args.quant_report,
                          triton_repository=args.triton_repository, model_name=args.model_name,
                          drift_hours=args.drift_hours, pipeline=args.pipeline)
    out = args.out or layout.ramp / "watch"
    metrics = RampMetrics(args.metrics_port, args.metrics_addr, Heartbeat(args.interval, args.stale_after),
                          args.policy_model or args.model_name or DEFAULT_MODEL)
    try:
        print(f"deciding every {args.interval:g} s; latest decision and history.jsonl in {out}", file=sys.stderr)
        result = RampWatcher(config, out, metrics).run(None, args.interval, args.max_rounds, _print)
    finally:
        metrics.close()
    print(f"stopped after {result.rounds} round(s)", file=sys.stderr)
    return result.exit_code


def _print(result) -> None:
    if not result.ok:
        print(f"error: {result.error}", flush=True)
        return
    ratio = "-" if result.cost_ratio_pct is None else f"{result.cost_ratio_pct:.2f} %"
    cap = "-" if result.cost_ratio_cap_pct is None else f"{result.cost_ratio_cap_pct:.2f} %"
    failed = ", ".join(result.gates_failed or []) or "none"
    print(f"{result.decision}: cost ratio {ratio} (cap {cap}); gates failing: {failed}", flush=True)

"""``costeff drift watch``: check each new observation log, export metrics, roll back on sustained drift."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from costeff.cli._common import add_common, add_listener, positive_float


def register_watch(verbs: argparse._SubParsersAction, add_models, add_gates) -> None:
    w = verbs.add_parser("watch", help="tail a folder of observation logs; with --apply, roll the repository "
                         "back after K consecutive failing windows (dry run by default)")
    add_models(w)
    w.add_argument("--observations", type=Path, required=True, metavar="DIR", help="folder the logs arrive in")
    w.add_argument("--interval", type=positive_float("--interval"), default=60.0, metavar="S",
                   help="seconds between looks at the folder (default 60)")
    w.add_argument("--fail-windows", type=int, default=3, metavar="K",
                   help="consecutive failing windows that trigger a rollback (default 3)")
    w.add_argument("--apply", action="store_true", help="really roll back (default: audit what would be done)")
    w.add_argument("--url", metavar="HOST:PORT", help="with --apply, make the Triton at HOST:PORT (HTTP) serve the "
                   "earlier version through its model-repository API (explicit model control); without it only "
                   "config.pbtxt changes, which a server in poll mode picks up itself")
    w.add_argument("--state", type=Path, metavar="FILE", help="position file (default: "
                   "artifacts/cost/drift/watch_state.json)")
    add_listener(w)
    w.add_argument("--max-cycles", type=int, metavar="N", help="stop after N looks (default: until interrupted)")
    add_gates(w)
    add_common(w, out=False)
    w.set_defaults(func=_watch)


def _watch(args: argparse.Namespace) -> int:
    from costeff.artifacts import Layout
    from costeff.cli.drift import parse_outputs, tolerances
    from costeff.drift.watch import NO_RELOAD, DriftMetrics, DriftWatcher, WatchConfig
    from costeff.remote.client import normalise_url
    from costeff.health import Heartbeat

    model_dir = args.repository / args.name if args.repository and args.name else None
    config = WatchConfig(args.reference, args.observations,
                         args.state or Layout.default().cost / "drift" / "watch_state.json", args.served, model_dir,
                         args.interval, args.fail_windows, args.apply, args.window_s, tolerances(args),
                         parse_outputs(args.outputs), args.ledger, normalise_url(args.url) if args.url else None)
    metrics = DriftMetrics(args.metrics_port, args.metrics_addr, Heartbeat(config.interval_s, args.stale_after))
    try:
        watcher = DriftWatcher(config, metrics)
        mode = "APPLY" if config.apply else "dry run"
        print(f"watching {config.observations} every {config.interval_s:g} s ({mode}; rollback after "
              f"{config.fail_windows} failing windows)", file=sys.stderr)
        if config.apply:
            print(f"a rollback reloads the model on Triton at {config.url}" if config.url else
                  f"without --url, {NO_RELOAD}", file=sys.stderr)
        result = watcher.run(None, args.max_cycles, on_cycle=_print)
    finally:
        metrics.close()
    print(f"stopped after {result.rounds} look(s); position in {config.state_path}", file=sys.stderr)
    return result.exit_code


def _print(result) -> None:
    for f in result.files:
        detail = (f"{f.windows} window(s), {f.windows_failed} failed, action drift {f.action_drift_pct:.3f} %"
                  if f.status == "checked" else f.reason)
        print(f"{result.started_at} {f.status} {Path(f.file).name}: {detail}")
    if result.error:
        print(f"{result.started_at} error: {result.error}", file=sys.stderr)
    if result.rollback:
        print(f"{result.started_at} rollback ({result.rollback['mode']}): {result.rollback}")
    sys.stdout.flush()

"""``costeff drift check|watch``: the served variant vs the fp32 reference on live observations."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from costeff.cli._common import add_common, emit, positive_float, workspace


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("drift", help="compare the served variant with fp32 on live observations")
    verbs = parser.add_subparsers(dest="drift_command", metavar="VERB", required=True)
    c = verbs.add_parser("check", help="fidelity per time window on logged observations; exit 1 if a gate fails")
    _add_models(c)
    c.add_argument("--observations", type=Path, required=True, metavar="PATH",
                   help="an observation log (.npy/.npz/.parquet) or a folder of them")
    _add_gates(c)
    c.add_argument("--batch-size", type=int, metavar="N",
                   help="the largest batch the server forms: 256 logged rows are answered alone and inside "
                        "random batches of N (batch invariance) (default: max_batch_size of --repository's "
                        "config, else 256)")
    add_common(c)
    c.set_defaults(func=_check)
    from costeff.cli.drift_watch import register_watch

    register_watch(verbs, _add_models, _add_gates)


def _add_models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reference", type=Path, required=True, metavar="MODEL",
                        help="the fp32 reference (.onnx or OpenVINO IR .xml)")
    parser.add_argument("--served", type=Path, metavar="MODEL", help="the served variant (.onnx or .xml); or "
                        "--repository/--name for the version the Triton repository serves")
    parser.add_argument("--repository", type=Path, metavar="DIR", help="Triton model repository")
    parser.add_argument("--name", metavar="MODEL", help="model name in --repository")
    parser.add_argument("--outputs", metavar="ROLE=NAME,...", help="output roles, e.g. logits=pi,value=v")


def _add_gates(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--window-s", type=positive_float("--window-s"), default=3600.0, metavar="S",
                        help="time window for rows with timestamps (default: 3600)")
    parser.add_argument("--max-action-drift-pct", type=float, default=0.5, metavar="PCT",
                        help="gate: at most PCT %% of the window's rows may change their top action vs the "
                             "reference (default 0.5)")
    parser.add_argument("--max-entropy-drift-pct", type=float, default=0.5, metavar="PCT",
                        help="gate: the mean policy entropy may move at most PCT %% from the reference's (default 0.5)")
    parser.add_argument("--min-action-correlation", type=float, default=0.997, metavar="R",
                        help="gate: correlation of the action probabilities with the reference's must be at least R "
                             "(default 0.997)")
    parser.add_argument("--ledger", type=Path, metavar="PATH", help="SQLite ledger for the windows "
                        "(default: artifacts/ledger.sqlite)")


def tolerances(args: argparse.Namespace):
    from costeff.quantization.fidelity import Tolerances

    return Tolerances(args.max_action_drift_pct, args.max_entropy_drift_pct, args.min_action_correlation)


def served_path(args: argparse.Namespace) -> Path:
    from costeff.errors import InputError
    from costeff.serving.versions import served_model

    if args.served is not None:
        if args.repository is not None or args.name is not None:
            raise InputError("--served and --repository/--name are alternatives: give one")
        return args.served
    if args.repository is None or args.name is None:
        raise InputError("--served MODEL, or --repository DIR with --name MODEL, says what serves")
    return served_model(args.repository / args.name)


def parse_outputs(text: str | None) -> dict[str, str] | None:
    from costeff.errors import InputError

    if not text:
        return None
    pairs = [p.split("=", 1) for p in text.split(",") if p.strip()]
    if any(len(p) != 2 or p[0].strip() not in ("logits", "value") for p in pairs):
        raise InputError(f"--outputs: {text!r}; expected logits=NAME[,value=NAME]")
    return {k.strip(): v.strip() for k, v in pairs}


def _check(args: argparse.Namespace) -> int:
    from costeff.drift import DriftConfig, check_drift
    from costeff.drift.logs import list_logs
    from costeff.drift.report import write
    from costeff.progress import progress

    here = workspace(args)
    config = DriftConfig(args.reference, served_path(args), args.observations, args.window_s, tolerances(args),
                         parse_outputs(args.outputs), args.ledger or here.ledger, batch_size=_batch_size(args))
    with progress("drift check", 2 * len(list_logs(args.observations))) as task:
        report = check_drift(config, task)
    path = write(report, here.run_dir("drift", args.out))
    emit(args, report, lambda: _human(report, path))
    return 0 if report.passed else 1


def _batch_size(args: argparse.Namespace) -> int:
    """--batch-size, else the repository's max_batch_size (a config without batching serves batch 1)."""
    from costeff.drift.check import DEFAULT_BATCH_SIZE
    from costeff.serving.versions import read_config

    if args.batch_size is not None:
        return args.batch_size
    if args.repository is not None and args.name is not None:
        return max(1, int(read_config(args.repository / args.name).max_batch_size))
    return DEFAULT_BATCH_SIZE


def _human(r, path: Path) -> None:
    verdict = "PASS" if r.passed else "FAIL"
    print(f"{verdict}: {r.rows} rows, {len(r.windows)} window(s), {r.windows_failed} failed; action drift "
          f"{r.action_drift_pct:.3f} %, entropy drift {_f(r.entropy_drift_pct)} %, correlation "
          f"{_f(r.action_correlation)} ({r.rows_per_minute:,.0f} rows/minute)")
    inv = r.batch_invariance
    if inv is not None:
        print(f"  batch invariance (served): {inv.action_change_pct:.3f} % of {inv.rows} rows change action alone "
              f"vs inside a batch of {max(inv.batch_sizes)}; max logit diff {inv.max_logit_diff:.3g}")
    for w in r.windows:
        if not w.passed:
            failed = ", ".join(f"{g.name} {g.verdict.value} ({_f(g.observed)} {g.comparator} {g.threshold})"
                               for g in w.gates if not g.passed)
            print(f"  window {w.start if w.timed else Path(w.source).name}: {failed}", file=sys.stderr)
    print(f"  wrote {path} (+ .md); {r.ledger_rows} window(s) in {r.ledger}")


def _f(value) -> str:
    return "-" if value is None else f"{value:.4g}"

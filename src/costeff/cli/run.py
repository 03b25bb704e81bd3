"""``costeff run``: the whole programme end to end on the embedded default (or ``--model``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from costeff.cli._common import (add_common, emit, home, output_dir, parse_int_list, positive_float, positive_int,
                                 workspace)
from costeff.runctx import MIN_ROWS


def register(sub: argparse._SubParsersAction) -> None:
    summary = ("profile, quantize, optimize batching, build the Triton repository, serve it on a real Triton "
               "(verify), replay the reaper, decide the ramp, pack and write report_<run>.html, in one go")
    parser = sub.add_parser(
        "run", help=summary,
        description=f"The whole programme end to end: {summary}. Runs on the embedded "
                    "default policy, or on yours with --model and --observations. Each stage prints one line on "
                    "stderr as it ends; a failing stage skips only the stages that need its result.")
    parser.add_argument("--model", type=Path, help="your ONNX policy (default: the embedded default policy)")
    parser.add_argument("--observations", type=Path, help="observations for --model (.npy/.npz/.parquet)")
    parser.add_argument("--preset", default="default", choices=("tiny", "default", "large"),
                        help="embedded policy preset (default: default)")
    parser.add_argument("--rows", type=positive_int("--rows"), metavar="N",
                        help=f"observations generated for the embedded policy, at least {MIN_ROWS} "
                             "(default: 4096; with --model the rows are --observations')")
    parser.add_argument("--batch-sizes", default="1,8,32,128", help="batch sizes to profile (default: 1,8,32,128)")
    parser.add_argument("--latency-budget-ms", type=positive_float("--latency-budget-ms"), default=50.0,
                        help="p99 budget per request, for the optimal batch and the batcher (default: 50)")
    parser.add_argument("--target-rate", type=positive_float("--target-rate"), default=500.0,
                        help="requests/s the fleet must serve (default: 500)")
    parser.add_argument("--window-s", type=positive_float("--window-s"), default=0.3,
                        help="profiling measurement window in seconds (default: 0.3)")
    parser.add_argument("--provider", default="auto", choices=("auto", "cpu", "cuda", "tensorrt"),
                        help="onnxruntime execution provider; auto: CUDA when onnxruntime can use it, else cpu "
                             "(default: auto)")
    parser.add_argument("--model-name", default="policy", metavar="NAME",
                        help="the model's name in the Triton repository (ROOT/model_repository/NAME) "
                             "(default: policy)")
    parser.add_argument("--sample-as-of", metavar="DATE",
                        help="date of the ramp decision on the shipped sample economics, YYYY-MM-DD; the sample "
                             "ledger ends the day before (default: today, UTC)")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip the verify stage (serving the result on the real Triton and measuring it)")
    parser.add_argument("--triton-env", type=Path, metavar="DIR", help="the real Triton's environment for the "
                        "verify stage (default: the one `costeff triton env` creates, made on first use)")
    parser.add_argument("--out", type=output_dir("--out"), metavar="DIR",
                        help="root for everything this run writes: artifacts and the Triton repository "
                             "(ROOT/model_repository) (default: the global --artifacts and --repository)")
    add_common(parser, out=False)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from costeff.artifacts import Workspace, writable_dir
    from costeff.pipeline import RunConfig, run_all
    from costeff.progress import progress
    from costeff.stages import STAGES

    config = _config(args, RunConfig)
    # With --out, the models, reports, audit trail, Triton repository and pack all go under ROOT.
    here = workspace(args) if args.out is None else Workspace.at(writable_dir(args.out), home(args))
    with progress("costeff run", total=len(STAGES)) as task:
        report = run_all(config, here, on_stage=_StageLog(task, quiet=args.json))
    emit(args, report, lambda: _print(report))
    return report.exit_code


def _config(args: argparse.Namespace, run_config):
    """Every RunConfig field from its option; checked before anything is written."""
    from costeff.errors import InputError
    from costeff.ramp.decide import parse_date

    if args.rows is not None and args.model is not None:
        raise InputError("--rows: applies to the embedded policy; with --model the rows are --observations'")
    rows = {} if args.rows is None else {"rows": args.rows}
    as_of = None if args.sample_as_of is None else parse_date(args.sample_as_of, "--sample-as-of")
    return run_config(model=args.model, observations=args.observations, preset=args.preset,
                      batch_sizes=tuple(parse_int_list(args.batch_sizes, "--batch-sizes")),
                      latency_budget_ms=args.latency_budget_ms, target_rate=args.target_rate,
                      window_s=args.window_s, provider=args.provider, model_name=args.model_name,
                      sample_as_of=as_of, verify=args.verify, triton_env=args.triton_env, **rows)


class _StageLog:
    """One progress bar for the whole run (on a terminal) and one line per finished stage on stderr."""

    def __init__(self, task, quiet: bool) -> None:
        self.task, self.quiet = task, quiet

    def __call__(self, stage, index: int, total: int) -> None:
        if stage.status == "pending":
            self.task.advance(0, description=f"[{index + 1}/{total}] {stage.name}")
            return
        self.task.advance(1)
        if self.quiet and stage.status != "failed":
            return
        print(f"[{index + 1}/{total}] {stage.name}: {stage.status} in {stage.seconds:.1f} s"
              + (f": {stage.error}" if stage.error else ""), file=sys.stderr, flush=True)


def _print(report) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="costeff run", show_lines=False)
    for col in ("stage", "status", "seconds", "result"):
        table.add_column(col, overflow="fold")
    for s in report.stages:
        style = {"ok": "green", "failed": "red", "skipped": "yellow"}.get(s.status, "")
        table.add_row(s.name, f"[{style}]{s.status}[/{style}]", f"{s.seconds:.1f}", s.error or s.summary)
    console = Console() if sys.stdout.isatty() else Console(width=160)
    console.print(table)
    total = sum(s.seconds for s in report.stages)
    console.print(f"total {total:.1f} s; pack: {report.pack or 'not written'}; summary: {report.summary or '-'}")

"""``costeff report [DIR]``: one self-contained report_<stamp>.html from one run's reports under an artifacts folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from costeff.cli._common import add_common, emit, workspace


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("report", help="write one self-contained report_<run>.html (no network needed to view it)")
    parser.add_argument("dir", type=Path, nargs="?", metavar="DIR",
                        help="artifacts folder to read (default: $COSTEFF_ARTIFACTS or ./artifacts); "
                             "report_<stamp>.html is written there unless --out")
    parser.add_argument("--run", metavar="STAMP",
                        help="the `costeff run` to show (a stamp under cost/runs/), or 'chain' (default: the newest "
                             "run whose records are unchanged, else the newest chain of records; as `costeff pack`)")
    add_common(parser)
    parser.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from costeff.artifacts import Workspace
    from costeff.errors import InputError
    from costeff.report import build_report

    here = workspace(args)
    root = args.dir or here.root
    if not Path(root).is_dir():
        raise InputError(f"{root}: no such artifacts folder; run `costeff run` (or a stage) first")
    if (Path(root) / "cost").is_dir() is False and Path(root).name == "cost":
        root = Path(root).parent  # accept the cost/ folder itself
    result = build_report(Workspace(Path(root), here.repository, here.home), out_dir=args.out or args.dir or root,
                          run=args.run)

    def human() -> None:
        print(f"wrote {result.path} ({result.bytes / 1024:,.0f} KiB, self-contained) from {result.records_from}; "
              f"acceptance {result.criteria_passed} of {result.criteria_total} PASS"
              + (f"; no report for: {', '.join(result.missing)}" if result.missing else ""))
        for line in result.left_out:
            print(f"left out: {line}")

    emit(args, result, human)
    return 0

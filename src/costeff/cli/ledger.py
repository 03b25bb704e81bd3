"""``costeff ledger import|show``: load daily economics / infrastructure cost CSVs into the SQLite ledger."""

from __future__ import annotations

import argparse
from pathlib import Path

from costeff.cli._common import add_common, emit, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("ledger", help="import and show the daily economics and infrastructure-cost ledgers")
    verbs = parser.add_subparsers(dest="ledger_command", metavar="VERB", required=True)
    i = verbs.add_parser("import", help="load a CSV (all rows or none); duplicate days need --replace")
    i.add_argument("file", type=Path, nargs="?", help="CSV to load")
    i.add_argument("--sample", action="store_true",
                   help="load the shipped SYNTHETIC 60-day sample, re-dated to end yesterday (UTC)")
    i.add_argument("--kind", choices=("economics", "cost"), help="ledger kind (default: from the CSV header)")
    i.add_argument("--replace", action="store_true", help="replace days already in the ledger")
    i.add_argument("--catalog", type=Path, metavar="FILE", help="price catalog for instance_hours rows")
    s = verbs.add_parser("show", help="coverage, sources and totals of the ledgers")
    s.add_argument("--days", type=positive_int("--days"), default=14, metavar="N", help="show the last N days (default 14)")
    for p, func in ((i, _import), (s, _show)):
        p.add_argument("--ledger", type=Path, metavar="PATH", help="SQLite ledger (default: artifacts/ledger.sqlite)")
        add_common(p, out=False)
        p.set_defaults(func=func)


def _ledger(args: argparse.Namespace):
    from costeff.ledger import Ledger

    return Ledger(args.ledger) if args.ledger else Ledger.default()


def _import(args: argparse.Namespace) -> int:
    from costeff.errors import InputError
    from costeff.ledger import import_csv, import_sample

    if args.sample == (args.file is not None):
        raise InputError("ledger import: give either a CSV FILE or --sample")
    if args.sample and (args.kind or args.catalog):
        raise InputError("ledger import: --kind and --catalog do not apply to --sample (it loads both ledgers, "
                         "priced with the shipped catalog)")
    ledger = _ledger(args)
    if args.sample:
        results = import_sample(ledger, replace=args.replace)
    else:
        results = [import_csv(ledger, args.file, args.kind, replace=args.replace, catalog_path=args.catalog)]

    def human() -> None:
        for r in results:
            print(f"{r.file}: {r.rows} {r.kind} rows {r.first_date}..{r.last_date} into {r.ledger} "
                  f"({r.inserted} new, {r.replaced} replaced)")
        if args.sample:
            print("note: this is SYNTHETIC sample data, re-dated to end yesterday (UTC)")

    emit(args, results, human)
    return 0


def _show(args: argparse.Namespace) -> int:
    from costeff.ledger.report import summary

    record = summary(_ledger(args), args.days)

    def human() -> None:
        for c in record["coverage"]:
            span = f"{c.first_date}..{c.last_date}" if c.days else "empty"
            print(f"{c.kind}: {c.days} days {span}; sources: {', '.join(c.sources) or '-'}")
        print(f"{'date':<12}{'gross_pnl_usd':>15}{'infra_usd':>12}{'ratio_pct':>11}{'signals':>9}{'trades':>8}"
              f"{'influence':>10}")
        for d in record["days"]:
            ratio = f"{d['cost_ratio_pct']:.1f}" if d["cost_ratio_pct"] is not None else "-"
            pnl = f"{d['gross_pnl_usd']:.2f}" if d["gross_pnl_usd"] is not None else "-"
            cost = f"{d['infra_usd']:.2f}" if d["infra_usd"] is not None else "-"
            print(f"{d['date']:<12}{pnl:>15}{cost:>12}{ratio:>11}{d['signals'] or '-':>9}{d['trades'] or '-':>8}"
                  f"{d['influence_pct'] if d['influence_pct'] is not None else '-':>10}")

    emit(args, record, human)
    return 0

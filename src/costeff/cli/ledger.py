"""``costeff ledger import|show``: load daily economics / infrastructure cost CSVs into the SQLite ledger."""

from __future__ import annotations

import argparse
from pathlib import Path

from costeff.cli._common import add_common, emit, positive_int, workspace


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
    f = i.add_argument_group("FOCUS billing export (CSV or parquet)")
    f.add_argument("--focus", type=Path, metavar="FILE", help="infrastructure cost per day from a FOCUS 1.x export")
    f.add_argument("--cost-column", default="EffectiveCost", metavar="COLUMN",
                   help="FOCUS cost column (default EffectiveCost; BilledCost for the invoice view)")
    f.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                   help="keep rows whose Tags have KEY=VALUE (repeatable: all must match)")
    f.add_argument("--resource-id", action="append", default=[], metavar="PATTERN",
                   help="also keep rows whose ResourceId matches a shell-style PATTERN (repeatable)")
    o = i.add_argument_group("OpenCost allocation API (GET URL/allocation/compute, daily sets)")
    o.add_argument("--opencost", metavar="URL", help="OpenCost API base URL, e.g. http://opencost.opencost:9003")
    o.add_argument("--window", default="7d", help="OpenCost window (default 7d; 24h, lastweek, or START,END)")
    o.add_argument("--aggregate", default="label:app", help="OpenCost aggregate (default label:app)")
    o.add_argument("--match", action="append", default=[], metavar="KEY=VALUE",
                   help="keep allocations with label KEY=VALUE (repeatable: all must match)")
    i.add_argument("--component", default="serving",
                   help="ledger cost component written by --focus / --opencost (default serving)")
    s = verbs.add_parser("show", help="coverage, sources and totals of the ledgers")
    s.add_argument("--days", type=positive_int("--days"), metavar="N",
                   help="show the last N days (default: 14 in the table, every day with --json)")
    for p, func in ((i, _import), (s, _show)):
        p.add_argument("--ledger", type=Path, metavar="PATH", help="SQLite ledger (default: artifacts/ledger.sqlite)")
        add_common(p, out=False)
        p.set_defaults(func=func)


def _ledger(args: argparse.Namespace):
    from costeff.ledger import Ledger

    return Ledger(args.ledger or workspace(args).ledger)


def _import(args: argparse.Namespace) -> int:
    from costeff.errors import InputError
    from costeff.ledger import import_csv, import_sample

    given = [n for n, v in (("FILE", args.file), ("--sample", args.sample), ("--focus", args.focus),
                            ("--opencost", args.opencost)) if v]
    if len(given) != 1:
        raise InputError("ledger import: give exactly one of a CSV FILE, --sample, --focus FILE or --opencost URL"
                         + (f" (got {', '.join(given)})" if given else ""))
    if args.kind and not args.file:
        raise InputError("ledger import: --kind applies to a CSV FILE only")
    if args.sample and args.catalog:
        raise InputError("ledger import: --catalog does not apply to --sample (it loads both ledgers, "
                         "priced with the shipped catalog)")
    if args.focus:
        return _import_focus(args)
    if args.opencost:
        return _import_opencost(args)
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


def _import_focus(args: argparse.Namespace) -> int:
    from costeff.ledger import import_focus
    from costeff.ledger.focus import FocusConfig, parse_tag

    config = FocusConfig(args.focus, args.cost_column, tuple(parse_tag(t) for t in args.tag),
                         tuple(args.resource_id), args.component)
    days, result = import_focus(_ledger(args), config, replace=args.replace)

    def human() -> None:
        print(f"{days.file}: {days.rows_read:,} FOCUS rows, {days.rows_matched:,} for {days.selection} "
              f"({days.rows_other:,} rows for other resources left out); {days.rows_credit:,} credit rows "
              f"(${days.credits_usd:,.2f}); {days.rows_split:,} charges split across days")
        print(f"{result.rows} days {result.first_date}..{result.last_date} of {days.cost_column} ({days.currency}) "
              f"into {result.ledger} as component {args.component!r} ({result.inserted} new, "
              f"{result.replaced} replaced)")
        if days.partial_days:
            print(f"note: the export covers {', '.join(days.partial_days)} only in part; those days' cost is partial")

    emit(args, {"focus": days, "import": result}, human)
    return 0


def _import_opencost(args: argparse.Namespace) -> int:
    from costeff.ledger import import_opencost
    from costeff.ledger.focus import parse_tag
    from costeff.ledger.opencost import OpencostConfig

    config = OpencostConfig(args.opencost, args.window, args.aggregate,
                            tuple(parse_tag(m, "--match") for m in args.match), args.component)
    days, result = import_opencost(_ledger(args), config, replace=args.replace)

    def human() -> None:
        print(f"{days.url}: {days.sets} daily sets, {days.allocations_read} allocations, "
              f"{days.allocations_matched} for {days.selection} (${days.other_usd:,.2f} of other workloads left out)")
        print(f"{result.rows} days {result.first_date}..{result.last_date} into {result.ledger} as component "
              f"{args.component!r} ({result.inserted} new, {result.replaced} replaced)")
        if days.partial_days:
            print(f"note: the window covers {', '.join(days.partial_days)} only in part; those days' cost is partial")

    emit(args, {"opencost": days, "import": result}, human)
    return 0


def _show(args: argparse.Namespace) -> int:
    from costeff.ledger.report import summary

    # a machine reading --json gets every day unless it asks for fewer; a person gets the last fortnight
    days = args.days if args.days is not None else (0 if args.json else 14)
    record = summary(_ledger(args), days)

    def human() -> None:
        for c in record["coverage"]:
            span = f"{c.first_date}..{c.last_date}" if c.days else "empty"
            print(f"{c.kind}: {c.days} days {span}; sources: {', '.join(c.sources) or '-'}")
        print(f"{'date':<12}{'gross_pnl_usd':>15}{'infra_cost_usd':>15}{'ratio_pct':>11}{'signals':>9}{'trades':>8}"
              f"{'influence':>10}")
        for d in record["days"]:
            ratio = f"{d['cost_ratio_pct']:.1f}" if d["cost_ratio_pct"] is not None else "-"
            pnl = f"{d['gross_pnl_usd']:.2f}" if d["gross_pnl_usd"] is not None else "-"
            cost = f"{d['infra_cost_usd']:.2f}" if d["infra_cost_usd"] is not None else "-"
            print(f"{d['date']:<12}{pnl:>15}{cost:>15}{ratio:>11}{d['signals'] or '-':>9}{d['trades'] or '-':>8}"
                  f"{d['influence_pct'] if d['influence_pct'] is not None else '-':>10}")

    emit(args, record, human)
    return 0

"""``costeff flags get|set|rollback|history``: audited, reversible feature flags."""

from __future__ import annotations

import argparse
from pathlib import Path

from costeff.cli._common import add_common, emit, workspace


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("flags", help="read and change feature flags (every change audited, reversible)")
    verbs = parser.add_subparsers(dest="flags_command", metavar="VERB", required=True)
    g = verbs.add_parser("get", help="show one flag, or all of them")
    g.add_argument("name", nargs="?", help="flag name (default: every flag)")
    s = verbs.add_parser("set", help="change a flag")
    s.add_argument("name", help="flag name")
    s.add_argument("value", help="new value, checked against the flag's type")
    r = verbs.add_parser("rollback", help="restore the previous value, or the value at an earlier version")
    r.add_argument("name", help="flag name")
    r.add_argument("--to-version", type=int, metavar="N", help="version to restore (0 = the default)")
    h = verbs.add_parser("history", help="every version of a flag")
    h.add_argument("name", help="flag name")
    for p, func in ((g, _get), (s, _set), (r, _rollback), (h, _history)):
        p.add_argument("--store", type=Path, metavar="FILE", help="flag store (default: artifacts/flags/flags.json)")
        if p in (s, r):
            p.add_argument("--reason", default="", help="why, for the audit trail")
            p.add_argument("--actor", default="costeff", help="who, for the audit trail (default: costeff)")
        add_common(p, out=False)
        p.set_defaults(func=func)


def _store(args: argparse.Namespace):
    from costeff.audit import AuditLog
    from costeff.flags import FlagStore

    here = workspace(args)
    return FlagStore(args.store, AuditLog.of(here)) if args.store else FlagStore.of(here)


def _get(args: argparse.Namespace) -> int:
    store = _store(args)
    one = args.name is not None
    states = [store.state(args.name)] if one else store.all()
    record = states[0] if one else states

    def human() -> None:
        for s in states:
            origin = "default" if s.version == 0 else f"v{s.version} {s.changed_at} by {s.actor}"
            print(f"{s.name} = {_show(s.value)}  ({origin})")

    emit(args, record, human)
    return 0


def _set(args: argparse.Namespace) -> int:
    change = _store(args).set(args.name, args.value, actor=args.actor, reason=args.reason)
    emit(args, change, lambda: _print_change(change))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    change = _store(args).rollback(args.name, args.to_version, actor=args.actor, reason=args.reason)
    emit(args, change, lambda: _print_change(change))
    return 0


def _history(args: argparse.Namespace) -> int:
    changes = _store(args).history(args.name)

    def human() -> None:
        if not changes:
            print(f"{args.name}: never changed (default)")
        for c in changes:
            extra = f" (rollback to v{c.rolled_back_to})" if c.action == "rollback" else ""
            print(f"v{c.version} {c.ts} {c.actor}: {_show(c.old_value)} -> {_show(c.new_value)}{extra}"
                  f"{'  ' + c.reason if c.reason else ''}")

    emit(args, changes, human)
    return 0


def _print_change(c) -> None:
    print(f"{c.name}: {_show(c.old_value)} -> {_show(c.new_value)} (v{c.version}, audit record {c.audit_seq})")


def _show(value) -> str:
    if value is None:
        return "unset"
    return str(value).lower() if isinstance(value, bool) else str(value)

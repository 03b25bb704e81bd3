"""``costeff audit verify DIR``: check the hash chain and checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path

from costeff.cli._common import add_common, emit


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("audit", help="verify the tamper-evident audit trail")
    verbs = parser.add_subparsers(dest="audit_command", metavar="VERB", required=True)
    v = verbs.add_parser("verify", help="detect edited, deleted, reordered, inserted or truncated records")
    v.add_argument("directory", type=Path, nargs="?", help="folder holding audit.jsonl (default: artifacts/audit)")
    add_common(v, out=False)
    v.set_defaults(func=_verify)


def _verify(args: argparse.Namespace) -> int:
    from costeff.artifacts import Layout
    from costeff.audit import verify

    result = verify(args.directory or Layout.default().audit)

    def human() -> None:
        if result.ok:
            print(f"audit OK: {result.records} records, {result.checkpoints} checkpoints, "
                  f"head {result.head_sha256}")
        else:
            print(f"audit FAILED at {result.path} line {result.first_bad_line}: {result.reason}")

    emit(args, result, human)
    return 0 if result.ok else 1

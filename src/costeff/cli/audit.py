"""``costeff audit verify DIR`` and ``costeff audit keygen``."""

from __future__ import annotations

import argparse
from pathlib import Path

from costeff.cli._common import add_common, emit


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("audit", help="verify the signed audit trail; create its signing key")
    verbs = parser.add_subparsers(dest="audit_command", metavar="VERB", required=True)
    v = verbs.add_parser("verify", help="detect edited, forged, deleted, reordered, inserted or truncated records")
    v.add_argument("directory", type=Path, nargs="?", help="folder holding audit.jsonl (default: artifacts/audit)")
    v.add_argument("--pubkey", type=Path, metavar="FILE",
                   help="Ed25519 public key (default: $COSTEFF_AUDIT_PUBKEY or ~/.costeff/keys/audit_ed25519.pub)")
    anchor = v.add_mutually_exclusive_group()
    anchor.add_argument("--anchor", metavar="URI",
                        help="checkpoint anchor: a directory or s3://BUCKET/PREFIX (default: $COSTEFF_AUDIT_ANCHOR "
                             "or ~/.costeff/anchor)")
    anchor.add_argument("--no-anchor", action="store_true",
                        help="check without the anchor (a deleted tail after the last local checkpoint goes unseen)")
    v.add_argument("--all-signatures", action="store_true",
                   help="check every record's signature, also those a signed checkpoint already vouches for")
    add_common(v, out=False)
    v.set_defaults(func=_verify)
    k = verbs.add_parser("keygen", help="create the Ed25519 key that signs the trail, checkpoints and packs")
    k.add_argument("--key", type=Path, metavar="FILE",
                   help="private key path, outside the artifacts folder (default: ~/.costeff/keys/audit_ed25519)")
    k.add_argument("--force", action="store_true", help="replace an existing key (old records then fail to verify)")
    add_common(k, out=False)
    k.set_defaults(func=_keygen)


def _verify(args: argparse.Namespace) -> int:
    from costeff.artifacts import Layout
    from costeff.audit import verify

    anchor = {"anchor": "none"} if args.no_anchor else ({"anchor": args.anchor} if args.anchor else {})
    result = verify(args.directory or Layout.default().audit, args.pubkey, all_signatures=args.all_signatures,
                    **anchor)

    def human() -> None:
        if result.ok:
            print(f"audit OK: {result.records} records signed by key {result.key_id}, {result.checkpoints} "
                  f"checkpoints, {result.anchored_checkpoints} anchored in {result.anchor} (through record "
                  f"{result.anchored_through_seq}), head {result.head_sha256}")
        else:
            print(f"audit FAILED at {result.path} line {result.first_bad_line}: {result.reason}")
        for warning in result.warnings:
            print(f"warning: {warning}")

    emit(args, result, human)
    return 0 if result.ok else 1


def _keygen(args: argparse.Namespace) -> int:
    from costeff.audit import keygen

    key, pub, kid = keygen(args.key, force=args.force)
    record = {"private_key": key, "public_key": pub, "key_id": kid}
    emit(args, record, lambda: print(f"wrote {key} (private, 0600) and {pub}; key id {kid}\n"
                                     f"give {pub} to whoever verifies the trail; keep {key} off the artifacts "
                                     f"folder and its backups"))
    return 0

"""``costeff audit verify DIR``, ``costeff audit keygen`` and ``costeff audit retire``."""

from __future__ import annotations

import argparse
from pathlib import Path

from costeff.artifacts import Workspace
from costeff.cli._common import add_common, emit, workspace


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
    k.add_argument("--force", action="store_true",
                   help="replace an existing key; with a trail signed by it, the old key first signs a rotation "
                        "record naming the new one, so the trail keeps verifying with either public key")
    add_common(k, out=False)
    k.set_defaults(func=_keygen)
    r = verbs.add_parser("retire", help="close a trail that was removed on purpose, so its folder can start anew",
                         description="The anchor remembers the trail each folder holds and refuses a folder whose "
                         "trail was emptied, deleted or replaced. When that was deliberate, the key holder signs a "
                         "retirement into the anchor; the folder's next checkpoint starts a new trail.")
    r.add_argument("directory", type=Path, nargs="?", help="the trail folder (default: artifacts/audit)")
    r.add_argument("--reason", required=True, help="why the trail was removed (signed into the anchor)")
    r.add_argument("--anchor", metavar="URI", help="checkpoint anchor (default: $COSTEFF_AUDIT_ANCHOR or "
                   "~/.costeff/anchor)")
    add_common(r, out=False)
    r.set_defaults(func=_retire)


def _retire(args: argparse.Namespace) -> int:
    from costeff.audit.retire import retire

    here = workspace(args)  # its home's anchor is --anchor, else $COSTEFF_AUDIT_ANCHOR, else ~/.costeff/anchor
    record = retire(args.directory or here.audit, args.reason, here.home)
    emit(args, record, lambda: print(f"retired trail {record['retired']} of key {record['key_id']} in "
                                     f"{record['anchor']}; {record['folder']} starts {record['next']} at its "
                                     f"next record"))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from costeff.audit import verify

    here = workspace(args)  # its home holds --pubkey and --anchor / --no-anchor, else the environment's
    result = verify(args.directory or here.audit, home=here.home, all_signatures=args.all_signatures)

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

    here = workspace(args)
    target = Path(args.key or here.home.key)
    rotated = _rotate(target, here) if args.force and target.exists() and args.key is None else None
    key, pub, kid = rotated or keygen(target, force=args.force, protect=(here.root,))
    record = {"private_key": key, "public_key": pub, "key_id": kid, "rotated_trail": rotated is not None}
    emit(args, record, lambda: print(f"wrote {key} (private, 0600) and {pub}; key id {kid}\n"
                                     f"give {pub} to whoever verifies the trail; keep {key} off the artifacts "
                                     f"folder and its backups"
                                     + ("\nthe old key signed a rotation record naming this one in the audit "
                                        "trail: it verifies with either public key" if rotated else "")))
    return 0


def _rotate(key: Path, here: Workspace) -> tuple[Path, Path, str] | None:
    """Replace the default key under a trail it signs: the old key announces the new one in the trail first.

    The new key is staged beside the old (``<key>.new``), the rotation records are appended,
    then the staged files replace the old ones. Should costeff stop between the last two
    steps, the trail already names the staged key: move ``<key>.new`` (and ``.new.pub``) into place."""
    import os

    from costeff.audit import AuditLog, keygen, load_signer

    log = AuditLog(here.audit, signer=load_signer(key, create=False, protect=(here.root,)), protect=(here.root,),
                   home=here.home)
    if not log.path.exists() or log.path.stat().st_size == 0:
        return None
    staged = key.with_name(key.name + ".new")
    _, staged_pub, kid = keygen(staged, force=True, protect=(here.root,))
    try:
        log.rotate(load_signer(staged, create=False))
    except BaseException:
        staged.unlink(missing_ok=True)  # the old key stays in force
        staged_pub.unlink(missing_ok=True)
        raise
    pub = key.with_name(key.name + ".pub")
    os.replace(staged_pub, pub)
    os.replace(staged, key)
    return key, pub, kid

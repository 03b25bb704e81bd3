"""``costeff pack``: bundle one run's (or one chain's) records; ``costeff pack --verify PACK`` checks one."""

from __future__ import annotations

import argparse
from pathlib import Path

from costeff.cli._common import add_common, emit, home, workspace


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("pack", help="bundle one run's reports, Triton repository and audit head into a "
                                         "verifiable tarball")
    parser.add_argument("--verify", type=Path, metavar="PACK",
                        help="check PACK against its manifest instead of packing")
    parser.add_argument("--pubkey", type=Path, metavar="FILE",
                        help="with --verify: the Ed25519 public key the manifest must be signed with "
                             "(default: $COSTEFF_AUDIT_PUBKEY or ~/.costeff/keys/audit_ed25519.pub)")
    parser.add_argument("--run", metavar="STAMP",
                        help="the `costeff run` to pack (a stamp under artifacts/cost/runs/), or 'chain': the newest "
                             "record and the records it was made from (default: the newest run whose records are "
                             "unchanged, else the newest chain)")
    parser.add_argument("--repository", type=Path, metavar="DIR",
                        help="Triton model repository to include (default: the global --repository, "
                             "$COSTEFF_MODEL_REPOSITORY or docker/triton/model_repository)")
    add_common(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from costeff.pack import pack, verify_pack

    if args.verify:
        report = verify_pack(args.verify, home(args).pubkey)  # --pubkey, else $COSTEFF_AUDIT_PUBKEY, else the default
        emit(args, report, lambda: _print_verify(report))
        return 0 if report.ok else 1
    result = pack(workspace(args), out_dir=args.out, run=args.run)  # its --repository is the workspace's
    record = {"pack": result.path, "summary": result.summary_path, "records_from": result.taken,
              "left_out": result.left_out, "included": result.included,
              "files": len(result.manifest["files"]), "skipped": result.skipped, "key_id": result.key_id}
    emit(args, record, lambda: _print_pack(result))
    return 0


def _print_verify(report) -> None:
    if report.ok:
        print(f"pack OK: {report.path}: {report.files_checked} files match the manifest signed by key "
              f"{report.key_id}; the summary matches the packed reports")
        return
    print(f"pack FAILED: {report.path}")
    for problem in report.problems:
        print(f"  {problem}")


def _print_pack(result) -> None:
    print(f"pack: {result.path} ({len(result.manifest['files'])} files) from {result.taken}")
    for stage, source in result.included.items():
        print(f"  {stage:<9} {source or 'no report yet'}")
    print(f"summary: {result.summary_path}; manifest signed by key {result.key_id}")
    for skipped in result.skipped + result.left_out:
        print(f"left out: {skipped}")

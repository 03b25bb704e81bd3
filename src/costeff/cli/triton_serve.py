"""``costeff triton rollback|promote|sync|versions``: which repository version serves.

Registered under ``costeff triton`` by ``cli/triton.py``. The ``served_version.<model>``
flag is the source of truth; every change is audited and can be undone with
``costeff flags rollback served_version.<model>`` followed by ``costeff triton sync``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from costeff.cli._common import add_common, emit, workspace


def register_serving(verbs: argparse._SubParsersAction) -> None:
    r = verbs.add_parser("rollback", help="serve an earlier version (default: the one before the served one)")
    p = verbs.add_parser("promote", help="serve a newer version (default: the one after the served one)")
    s = verbs.add_parser("sync", help="rewrite config.pbtxt to serve what flag served_version.<name> says")
    v = verbs.add_parser("versions", help="list a model's versions and the one its config serves")
    for parser, func in ((r, _rollback), (p, _promote), (s, _sync), (v, _versions)):
        parser.add_argument("--repository", type=Path, help="model repository folder (default: "
                            "$COSTEFF_MODEL_REPOSITORY or docker/triton/model_repository)")
        parser.add_argument("--name", required=True, help="model name in the repository")
        if parser is not v:
            _add_server(parser)
        if parser in (r, p):
            parser.add_argument("--to", type=int, metavar="N", help="the version to serve")
            parser.add_argument("--reason", default="", help="why, for the audit trail")
            parser.add_argument("--actor", default="costeff", help="who, for the audit trail (default: costeff)")
        add_common(parser, out=False)
        parser.set_defaults(func=func)


def _add_server(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", metavar="HOST:PORT", help="also ask this running server to reload the model "
                        "(model-repository API)")
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http",
                        help="protocol of --url (default: http)")


def _model_dir(args: argparse.Namespace) -> Path:
    return workspace(args).repository / args.name


def _stores(args: argparse.Namespace) -> dict:
    """The workspace's flag store and the audit trail that records its changes, as keyword arguments."""
    from costeff.flags import FlagStore

    flags = FlagStore.of(workspace(args))
    return {"flags": flags, "audit": flags.audit_log}


def _rollback(args: argparse.Namespace) -> int:
    from costeff.serving.control import rollback

    change = rollback(_model_dir(args), args.to, url=args.url, protocol=args.protocol, actor=args.actor,
                      reason=args.reason, **_stores(args))
    emit(args, change, lambda: _print(change))
    return 0


def _promote(args: argparse.Namespace) -> int:
    from costeff.serving.control import promote

    change = promote(_model_dir(args), args.to, url=args.url, protocol=args.protocol, actor=args.actor,
                     reason=args.reason, **_stores(args))
    emit(args, change, lambda: _print(change))
    return 0


def _sync(args: argparse.Namespace) -> int:
    from costeff.serving.control import sync

    change = sync(_model_dir(args), url=args.url, protocol=args.protocol, **_stores(args))
    emit(args, change, lambda: _print(change))
    return 0


def _versions(args: argparse.Namespace) -> int:
    from costeff.serving.versions import describe

    state = describe(_model_dir(args))

    def human() -> None:
        for v in state.versions:
            mark = "*" if v.version == state.served else " "
            sha = (v.sha256 or "")[:12] or "-"
            print(f"{mark} {v.version:>3}  sha256 {sha}  {', '.join(v.files)}  {v.built_at or ''}")
            if v.bytes_match is False:
                print(f"      MISMATCH: the model file on disk is not the one built (built as "
                      f"{(v.model_sha256 or '')[:12]}); it was replaced after the build")
        how = "pinned by version_policy" if state.pinned else "no version_policy: Triton serves the highest"
        print(f"serving version {state.served} ({how})")

    emit(args, state, human)
    return 0


def _print(c) -> None:
    if c.changed:
        print(f"{c.name}: serving version {c.from_version} -> {c.to_version} ({c.action}; flag {c.flag} "
              f"v{c.flag_version}, audit record {c.audit_seq})")
    else:
        print(f"{c.name}: config already serves version {c.to_version} (flag {c.flag} v{c.flag_version})")
    if c.warning:
        print(f"WARNING: {c.warning}")
    if c.reload is not None:
        state = "ready" if c.reload.ready else "NOT ready"
        print(f"  {c.reload.address}: reloaded {c.reload.model_name} in {c.reload.seconds} s, {state}")

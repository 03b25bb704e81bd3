"""Options and output helpers shared by every command."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable

from costeff.artifacts import Workspace, dumps
from costeff.errors import InputError
from costeff.home import Home, default_home

ARTIFACTS_ENV = "COSTEFF_ARTIFACTS"
REPOSITORY_ENV = "COSTEFF_MODEL_REPOSITORY"
HOME_ENV = "COSTEFF_HOME"
KEY_ENV = "COSTEFF_AUDIT_KEY"
PUBKEY_ENV = "COSTEFF_AUDIT_PUBKEY"
ANCHOR_ENV = "COSTEFF_AUDIT_ANCHOR"
CACHE_ENV = "COSTEFF_CACHE"
DEFAULT_ARTIFACTS = Path("artifacts")
DEFAULT_REPOSITORY = Path("docker/triton/model_repository")


def add_workspace(parser: argparse.ArgumentParser) -> None:
    """The global ``--artifacts`` and ``--repository``: where every command reads and writes."""
    parser.add_argument("--artifacts", dest="workspace_root", type=output_dir("--artifacts"), metavar="DIR",
                        help=f"artifacts root: reports, models, audit trail, flags, ledger "
                             f"(default: ${ARTIFACTS_ENV} or ./{DEFAULT_ARTIFACTS})")
    parser.add_argument("--repository", dest="workspace_repository", type=output_dir("--repository"),
                        metavar="DIR", help=f"Triton model repository, for commands without their own "
                                            f"--repository (default: ${REPOSITORY_ENV} or ./{DEFAULT_REPOSITORY})")


def workspace(args: argparse.Namespace | None = None) -> Workspace:
    """The run's Workspace, from the command line, else the environment, else the defaults.

    Only the command line's edge reads these variables; the library is handed the result. A command's own
    ``--repository`` wins over the global one."""
    root = _chosen(args, "workspace_root") or os.environ.get(ARTIFACTS_ENV) or DEFAULT_ARTIFACTS
    repository = _chosen(args, "repository") or _chosen(args, "workspace_repository") \
        or os.environ.get(REPOSITORY_ENV) or DEFAULT_REPOSITORY
    return Workspace(Path(root), Path(repository), home(args))


def home(args: argparse.Namespace | None = None) -> Home:
    """The signing key, its public key, the checkpoint anchor and the cache: a command's own ``--pubkey`` /
    ``--anchor`` / ``--no-anchor``, else ``$COSTEFF_HOME``, ``$COSTEFF_AUDIT_KEY``, ``$COSTEFF_AUDIT_PUBKEY``,
    ``$COSTEFF_AUDIT_ANCHOR``, ``$COSTEFF_CACHE``, else the defaults (``costeff.home``). A key named by
    the environment is provisioned: the library refuses to invent one in its place."""
    env = os.environ
    key = env.get(KEY_ENV)
    anchor = "none" if getattr(args, "no_anchor", False) else getattr(args, "anchor", None) or env.get(ANCHOR_ENV)
    return Home.under(env.get(HOME_ENV) or default_home(), key=key, key_named_by=KEY_ENV if key else None,
                      pubkey=_chosen(args, "pubkey") or env.get(PUBKEY_ENV), anchor=anchor,
                      cache=env.get(CACHE_ENV))


def _chosen(args: argparse.Namespace | None, name: str) -> Path | None:
    value = getattr(args, name, None) if args is not None else None
    return Path(value) if value else None


def add_common(parser: argparse.ArgumentParser, *, out: bool = True) -> None:
    if out:
        parser.set_defaults(out_is_folder=True)  # main() proves it writable before the command does any work
        parser.add_argument("--out", type=output_dir("--out"), metavar="DIR",
                            help="write artifacts into DIR (default: a new timestamped folder under artifacts/)")
    parser.add_argument("--json", action="store_true",
                        help="print the record as JSON on stdout (logs stay on stderr)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")


def emit(args: argparse.Namespace, record: Any, human: Callable[[], None]) -> None:
    """Print the record: JSON on stdout with ``--json``, else the human view."""
    if getattr(args, "json", False):
        sys.stdout.write(dumps(record))
        sys.stdout.flush()
    else:
        human()


def parse_int_list(text: str, field: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{field}: {text!r} is not a comma-separated list of integers") from None
    if not values or any(v <= 0 for v in values):
        raise InputError(f"{field}: {text!r} must list positive integers, e.g. 1,8,64")
    return values


def positive_float(field: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{field} must be a number, got {text!r}") from None
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"{field} must be a finite number > 0, got {text}")
        return value
    return parse


def existing_file(field: str) -> Callable[[str], Path]:
    def parse(text: str) -> Path:
        path = Path(text)
        if not path.is_file():
            raise argparse.ArgumentTypeError(f"{field}: no such file: {text}")
        return path
    return parse


def output_dir(field: str) -> Callable[[str], Path]:
    """A folder to write into: refused up front when it is an existing file or lies under one."""
    def parse(text: str) -> Path:
        path = Path(text)
        if not text.strip():
            raise argparse.ArgumentTypeError(f"{field}: an empty path; expected a folder")
        for candidate in (path, *path.parents):
            if candidate.exists():
                if not candidate.is_dir():
                    raise argparse.ArgumentTypeError(f"{field}: {candidate} is an existing file; expected a folder")
                break
        return path
    return parse


def port_number(field: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{field} must be a TCP port number, got {text!r}") from None
        if not 0 < value < 65536:
            raise argparse.ArgumentTypeError(f"{field} must be a TCP port 1..65535, got {value}")
        return value
    return parse


def positive_int(field: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{field} must be a whole number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{field} must be > 0, got {value}")
        return value
    return parse


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def artifact_name(field: str) -> Callable[[str], str]:
    """A name that becomes part of a file name: never a path (``../x``) or a hidden file."""
    def parse(text: str) -> str:
        if not _NAME.match(text) or ".." in text:
            raise argparse.ArgumentTypeError(f"{field}: {text!r} must be letters, digits, '_', '-' or '.', "
                                             f"starting with a letter or digit (it becomes a file name)")
        return text
    return parse


def finite_float(field: str) -> Callable[[str], float]:
    """A number that is not NaN or infinite (ranges are the config's to check)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{field} must be a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{field} must be a finite number, got {text}")
        return value
    return parse


def add_listener(parser: argparse.ArgumentParser, port_help: str = "serve Prometheus metrics on PORT") -> None:
    """``--metrics-port``, ``--metrics-addr`` and ``--stale-after``: what a long-lived command serves to
    Prometheus and to the probes (``/metrics``, ``/healthz``, ``/readyz``)."""
    parser.add_argument("--metrics-port", type=port_number("--metrics-port"), metavar="PORT",
                        help=port_help + "; /healthz and /readyz answer there too")
    parser.add_argument("--metrics-addr", default="127.0.0.1", metavar="ADDR",
                        help="address the metrics listener binds (default 127.0.0.1: this host only; "
                             "0.0.0.0 in a pod, for the kubelet's probes and Prometheus)")
    parser.add_argument("--stale-after", type=positive_float("--stale-after"), default=3.0, metavar="N",
                        help="intervals without a successful round before /readyz turns 503, and a round may "
                             "run before /healthz does (default 3)")

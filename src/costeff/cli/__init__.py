"""The ``costeff`` command line: argument parsing and printing, no logic.

Each command lives in its own module with ``register(subparsers)``; the module sets
``func(args) -> int`` on its parser. Errors become exit codes here and only here
(docs/architecture.md#exit-codes): 0 done, 1 a gate said no, 2 bad input, 3 a dependency
failed, 130 interrupted.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import select
import signal
import sys
import threading
from typing import NoReturn, Sequence

from costeff import __version__
from costeff.errors import CosteffError
from costeff.hints import closest

# Command modules, in the order `costeff --help` lists them. Modules import only
# the standard library and costeff's light modules at import time.
COMMAND_MODULES = (
    "run",
    "profile",
    "quantize",
    "export",
    "batching",
    "triton",
    "reap",
    "ramp",
    "drift",
    "ledger",
    "flags",
    "audit",
    "pack",
    "report",
)

log = logging.getLogger("costeff")


class _Parser(argparse.ArgumentParser):
    """argparse with the project's error format: one ``error:`` line and exit 2, no usage dump.

    Abbreviated options are refused: a manifest or script saying ``--fail-window`` must fail,
    not run as ``--fail-windows`` today and break when another option starts the same way.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        # argparse (before 3.14) names a mistyped option without a guess: add one, from the command's own options.
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            chain = self._chosen(parsed)
            known = [o for parser in chain for a in parser._actions for o in a.option_strings]
            chain[-1].error(f"unrecognized arguments: {' '.join(extras)}{_did_you_mean(extras, known)}")
        return parsed

    def _chosen(self, parsed: argparse.Namespace) -> list[argparse.ArgumentParser]:
        """This parser, then each subcommand's parser the parsed line chose."""
        chain: list[argparse.ArgumentParser] = [self]
        while True:
            subs = [a for a in chain[-1]._actions if isinstance(a, argparse._SubParsersAction)]
            nxt = subs[0].choices.get(getattr(parsed, subs[0].dest, None) or "") if subs else None
            if nxt is None:
                return chain
            chain.append(nxt)


def _did_you_mean(extras: Sequence[str], known: Sequence[str]) -> str:
    hints = []
    for token in (t.split("=", 1)[0] for t in extras if t.startswith("--")):
        match = closest(token, known)
        if match is not None:
            hints.append((token, match))
    if len(hints) == 1:
        return f"; did you mean {hints[0][1]}?"
    return f"; did you mean {', '.join(f'{c} for {t}' for t, c in hints)}?" if hints else ""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="costeff",
        description="Serve an RL trading policy cheaply without changing what it decides.",
    )
    parser.add_argument("--version", action="version", version=f"costeff {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"costeff.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # the reader closed stdout (`| head`): it has what it wanted; end quietly
        if not _stdout_gone():
            raise
        _quiet_stdout()
        return 0


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except OSError as exc:  # an option's check touched the file system (a name too long, a loop of links)
        return _report(exc, False)
    verbose = getattr(args, "verbose", False)
    _configure_logging(verbose)
    previous = _raise_on_sigterm()
    try:
        if getattr(args, "out_is_folder", False) and args.out is not None:
            from costeff.artifacts import writable_dir

            writable_dir(args.out, keep=False)  # an unwritable --out fails now, not after minutes of measuring
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError as exc:
        if _stdout_gone():
            raise
        return _report(exc, verbose)  # a socket or a child's pipe: a real failure
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("error: terminated (SIGTERM); stopped after cleaning up", file=sys.stderr)
        return 143
    except Exception as exc:  # noqa: BLE001 - every error becomes one line and an exit code, here only
        return _report(exc, verbose)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stdout_gone() -> bool:
    """True when whoever read stdout has closed it (``costeff ledger show | head -2``)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows) or no real stdout (captured)
        return False


def _quiet_stdout() -> None:
    # The Python docs' recipe (library/signal, "Note on SIGPIPE"): point stdout at devnull so the
    # interpreter's final flush of what is still buffered does not fail a second time.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so that every ``finally`` (temp files, locks) runs first."""


def _raise_on_sigterm():
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise Terminated()

    return signal.signal(signal.SIGTERM, handler)


def _report(exc: Exception, verbose: bool) -> int:
    if verbose:
        log.exception("failed")
    if isinstance(exc, CosteffError):
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if isinstance(exc, OSError) and _is_file_problem(exc):
        # A file the user named or a folder costeff writes into (missing, read-only, full): name it; exit 2.
        why = exc.strerror or str(exc)
        if exc.errno == errno.EEXIST and os.path.isfile(exc.filename):
            why = "a file is in the way where a folder is needed"
        print(f"error: {exc.filename}: {why}", file=sys.stderr)
        return 2
    hint = "" if verbose else " (run with -v for the traceback)"
    print(f"error: {type(exc).__name__}: {exc}{hint}", file=sys.stderr)
    return 3


_FILE_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENOSPC,
                errno.EROFS, errno.EDQUOT, errno.ENAMETOOLONG, errno.ELOOP, errno.EFBIG}


def _is_file_problem(exc: OSError) -> bool:
    return exc.errno in _FILE_ERRNOS and exc.filename is not None


def _configure_logging(verbose: bool) -> None:
    # Third-party libraries (onnxruntime.quantization, NNCF, OpenVINO, torch) log chatter on the
    # root logger: keep the root at WARNING, show costeff's own INFO lines, and let a library's
    # record reach the terminal only when it is an error (everything with -v).
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s",
        stream=sys.stderr,
    )
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_own_or_error)


def _own_or_error(record: logging.LogRecord) -> bool:
    return record.name == "costeff" or record.name.startswith("costeff.") or record.levelno >= logging.ERROR


def entrypoint() -> None:
    size_native_pools()
    sys.exit(main())


NATIVE_POOL_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def size_native_pools() -> None:
    """Size OpenMP/OpenBLAS/MKL pools (numpy, torch) to the CPUs this process may use, before they start.

    They read these variables once, when first loaded, and otherwise take the host's cores:
    in a container limited to 1 CPU on a 64-core node that is 64 threads throttled by a
    quota they spend in a millisecond. A value the user set is kept. costeff's own
    onnxruntime and OpenVINO sessions are sized separately (``costeff.runtimes``).
    """
    from costeff.runtimes.cpus import usable_cpus

    cpus = str(usable_cpus())
    for name in NATIVE_POOL_VARIABLES:
        os.environ.setdefault(name, cpus)

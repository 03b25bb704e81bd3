"""``costeff triton serve`` and ``costeff triton env``: the real Triton server on this host.

Registered under ``costeff triton`` by ``cli/triton.py``. ``serve`` starts Triton 2.51 on a
model repository (127.0.0.1, explicit model control, every model loaded), prints one line once
every model is ready, and stops the server on SIGTERM or Ctrl-C. ``env`` creates (or shows) the
server's own environment, which ``serve`` otherwise creates on first use.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from costeff.cli._common import add_common, emit, home, positive_float, workspace


def register_server(verbs: argparse._SubParsersAction) -> None:
    s = verbs.add_parser("serve", help="serve a model repository on the real Triton server (127.0.0.1)",
                         description="Start Triton 2.51 on REPOSITORY in explicit model-control mode, load its "
                         "models, print one line once they are ready, and serve until SIGTERM or Ctrl-C.")
    s.add_argument("repository", type=Path, nargs="?", metavar="REPOSITORY",
                   help="model repository folder "
                        "(default: $COSTEFF_MODEL_REPOSITORY or docker/triton/model_repository)")
    s.add_argument("--http-port", type=int, default=8000, metavar="P", help="HTTP port (default: 8000)")
    s.add_argument("--grpc-port", type=int, metavar="P", help="gRPC port (default: HTTP port + 1)")
    s.add_argument("--metrics-port", type=int, metavar="P", help="Prometheus metrics port (default: HTTP port + 2)")
    s.add_argument("--load-model", action="append", metavar="NAME", dest="models",
                   help="load only this model (repeatable; default: every model in the repository)")
    s.add_argument("--ready-timeout", type=positive_float("--ready-timeout"), default=120.0, metavar="S",
                   help="give up when the models are not ready after S seconds (default: 120)")
    s.add_argument("--log-file", type=Path, metavar="FILE", help="Triton's log (default: a file in a temporary "
                   "folder, named in the ready line)")
    _add_env_options(s)
    add_common(s, out=False)
    s.set_defaults(func=_serve)
    e = verbs.add_parser("env", help="create (or show) the environment the Triton server runs in",
                         description="The Triton server, its python backend and perf_analyzer come from PyPI "
                         "wheels that need numpy<2; they live in a virtual environment of their own, created "
                         "here or by the first `costeff triton serve`.")
    _add_env_options(e)
    add_common(e, out=False)
    e.set_defaults(func=_env)


def _add_env_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env-dir", type=Path, metavar="DIR", help="the server environment (default: "
                        "$COSTEFF_CACHE/triton/<version>-py<X.Y>-<cpu|gpu>, $COSTEFF_CACHE defaulting to "
                        "~/.cache/costeff)")
    parser.add_argument("--gpu", action="store_true", help="an environment with onnxruntime-gpu, for KIND_GPU "
                        "instances (CUDA execution provider)")
    parser.add_argument("--find-links", type=Path, metavar="DIR", help="install the environment from the wheels "
                        "in DIR only (hosts without a package index)")


def resolve_env(args: argparse.Namespace):
    """The server environment the options name, created when missing (progress on stderr)."""
    from costeff.serving.tritonserver import default_location, ensure, find

    location = args.env_dir or default_location(home(args).cache, gpu=args.gpu)
    env = find(location)
    if env is None:
        env = ensure(location, gpu=args.gpu, find_links=args.find_links,
                     log=lambda line: print(line, file=sys.stderr, flush=True))
        print(f"Triton environment ready: {env.root}", file=sys.stderr, flush=True)
    return env


def _env(args: argparse.Namespace) -> int:
    env = resolve_env(args)
    record = {"root": str(env.root), "tritonserver": str(env.tritonserver), "perf_analyzer": str(env.perf_analyzer)}
    emit(args, record, lambda: print(f"{env.root}\n  tritonserver {env.tritonserver}\n"
                                     f"  perf_analyzer {env.perf_analyzer}"))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from costeff.errors import DependencyError
    from costeff.serving.tritonserver import Ports, TritonServer, describe

    ports = Ports.from_http(args.http_port, args.grpc_port, args.metrics_port)
    server = TritonServer(resolve_env(args), workspace(args).repository, ports,
                          models=args.models, log_path=args.log_file, ready_timeout_s=args.ready_timeout)
    with server:
        record = {"http": server.http_url, "grpc": server.grpc_url, "metrics": server.metrics_url,
                  "models": server.models, "repository": str(server.repository), "log": str(server.log_path)}
        emit(args, record, lambda: print(f"{describe(server)}; log {server.log_path}", flush=True))
        sys.stdout.flush()
        process = server.process
        assert process is not None  # started on entering the with block
        process.wait()
        raise DependencyError(f"Triton exited with status {process.returncode} while serving: "
                              f"{server.failure()}")

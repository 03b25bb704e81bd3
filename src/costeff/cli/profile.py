"""``costeff profile [MODEL]``: sweep batch sizes, pick the optimal batch, price it.

Locally on onnxruntime (MODEL, or the embedded default policy when omitted), or
against a running Open Inference Protocol server with ``--url``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from costeff.cli._common import add_common, emit, home, parse_int_list, workspace
from costeff.errors import DependencyError, InputError

PRESETS = ("tiny", "default", "large")
DEFAULT_OBSERVATION_ROWS = 1024


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="measure throughput, latency, resources and cost per batch size",
                       description="Measure an ONNX policy like perf_analyzer: warm-up, windows, stability; "
                                   "pick the optimal batch under a p99 budget and price it.")
    p.add_argument("model", nargs="?", type=Path, metavar="MODEL",
                   help="ONNX policy (default: the embedded default policy, see --preset)")
    p.add_argument("--preset", default="default",
                   help=f"embedded policy preset when MODEL is omitted: {', '.join(PRESETS)}")
    p.add_argument("--observations", type=Path, metavar="FILE",
                   help=".npy/.npz/.parquet rows to feed (cycled per batch)")
    p.add_argument("--observations-key", metavar="KEY", help="array name inside an .npz")
    p.add_argument("--batch-sizes", default="1,2,4,8,16,32,64,128,256", metavar="LIST",
                   help="batch sizes to sweep, e.g. 1,8,64 (default 1,2,4,...,256)")
    p.add_argument("--concurrency", default="1", metavar="LIST", help="client threads, e.g. 1,2,4 (default 1)")
    p.add_argument("--latency-budget-ms", type=float, metavar="MS", help="p99 budget per request for the optimal batch")
    p.add_argument("--target-rate", type=float, metavar="R", help="requests/s to serve: instances needed and $/day")
    p.add_argument("--provider", default="auto",
                   help="auto | cpu | cuda | tensorrt (default auto: CUDA when onnxruntime can use it, else cpu)")
    p.add_argument("--window-ms", type=float, default=500.0, help="measurement window (default 500)")
    p.add_argument("--warmup-ms", type=float, default=200.0, help="discarded warm-up per point (default 200)")
    p.add_argument("--stability-pct", type=float, default=10.0, help="windows agree within this %% (default 10)")
    p.add_argument("--max-trials", type=int, default=8, help="windows before a point is reported unstable (default 8)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="inference threads (default: the CPUs this process may use, affinity and cgroup quota)")
    p.add_argument("--no-spinning", action="store_true",
                   help="onnxruntime: idle threads sleep instead of busy-waiting (slower when hot, no burnt core)")
    p.add_argument("--ov-precision", default="f32", help="OpenVINO IR MODEL: f32 | bf16 (default f32)")
    p.add_argument("--ov-hint", default="LATENCY", help="OpenVINO IR MODEL: LATENCY | THROUGHPUT (default LATENCY)")
    p.add_argument("--ov-streams", type=int, metavar="N", help="OpenVINO IR MODEL: NUM_STREAMS (default: the hint's)")
    p.add_argument("--gaps", metavar="LIST",
                   help="also time single batch-1 calls after idle gaps, e.g. 0,10ms,100ms,1s: p50/p99 cold vs warm")
    p.add_argument("--catalog", type=Path, metavar="FILE", help="price catalog TOML (default: the shipped one)")
    p.add_argument("--instance", metavar="NAME", help="catalog instance to price (default: matched from hardware)")
    p.add_argument("--compare", type=Path, nargs="+", default=[], metavar="JSON",
                   help="gpu_profile.json files measured on other hardware, for right-sizing advice")
    p.add_argument("--csv", type=Path, metavar="FILE",
                   help="also write the points as perf_analyzer's -f CSV (its column names, microseconds)")
    _add_remote(p.add_argument_group("remote server (Open Inference Protocol)"))
    add_common(p)
    p.set_defaults(func=_run)


def _add_remote(remote: argparse._ArgumentGroup) -> None:
    """Profiling a running server instead of MODEL."""
    remote.add_argument("--url", help="server address, e.g. 127.0.0.1:8001 (profiles the server, not MODEL)")
    remote.add_argument("--model-name", help="model name on the server")
    remote.add_argument("--protocol", default="grpc", help="http | grpc (default grpc)")
    remote.add_argument("--request-rate", metavar="LIST", help="fixed request rates to sweep, e.g. 100,500")
    remote.add_argument("--load-generator", default="auto", metavar="NAME",
                        help="auto | perf_analyzer | costeff (default auto: perf_analyzer when installed and "
                             "the server is Triton, else costeff's own client)")
    remote.add_argument("--perf-analyzer", type=Path, metavar="PATH",
                        help="the perf_analyzer binary (default: the Triton environment's, `costeff triton env`)")
    remote.add_argument("--max-in-flight", type=int, default=None, metavar="N",
                        help="costeff's client, open loop: most requests outstanding at once "
                             "(default 512; when it binds the point says so and is unstable)")


def _config(args: argparse.Namespace) -> Any:
    from costeff.profiling import ProfileConfig
    from costeff.profiling.traffic import parse_gaps

    for name, value in (("--window-ms", args.window_ms), ("--warmup-ms", args.warmup_ms)):
        if not value >= 0:
            raise InputError(f"{name}: {value:g} must be >= 0")
    return ProfileConfig(
        batch_sizes=tuple(parse_int_list(args.batch_sizes, "--batch-sizes")),
        concurrency=tuple(parse_int_list(args.concurrency, "--concurrency")),
        latency_budget_ms=_positive_or_none("--latency-budget-ms", args.latency_budget_ms),
        target_rate=_positive_or_none("--target-rate", args.target_rate),
        provider=_provider(args.provider), warmup_s=args.warmup_ms / 1000.0, window_s=args.window_ms / 1000.0,
        stability_pct=args.stability_pct, max_trials=args.max_trials, intra_op_threads=args.threads,
        catalog=args.catalog, instance=args.instance, compare=tuple(args.compare), spinning=not args.no_spinning,
        ov_precision=args.ov_precision, ov_hint=args.ov_hint, ov_streams=args.ov_streams,
        gaps_s=parse_gaps(args.gaps) if args.gaps else ())


def _positive_or_none(flag: str, value: float | None) -> float | None:
    if value is not None and not (0 < value < float("inf")):
        raise InputError(f"{flag}: {value:g} must be a number > 0")
    return value


def _provider(name: str) -> str:
    from costeff.profiling.config import PROVIDERS

    if name not in PROVIDERS:
        raise InputError(f"--provider: unknown provider {name!r}; expected one of {', '.join(PROVIDERS)}")
    return name


def _run(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.csv is not None and not args.csv.parent.is_dir():
        raise InputError(f"--csv: folder {args.csv.parent} does not exist; expected a path to a new CSV file")
    out = workspace(args).run_dir(None, args.out)
    report = _remote(args, config) if args.url else _local(args, config)
    report.write(out)
    if args.csv is not None:
        from costeff.profiling.perf_csv import write_perf_csv

        write_perf_csv(report.points, args.csv)
    emit(args, report, lambda: _print(report, out, args.csv))
    return 0


def _local(args: argparse.Namespace, config: Any) -> Any:
    from costeff.profiling import profile
    from costeff.progress import progress

    model, obs, source = _model_and_observations(args)
    total = len(config.batch_sizes) * len(config.concurrency)
    with progress("profiling", total) as task:
        return profile(model, config, obs, progress=task, observations_source=source)


def _model_and_observations(args: argparse.Namespace) -> tuple[Path, Any, str]:
    obs, source = None, "observations"
    if args.observations is not None:
        from costeff.observations import load_observations

        obs, source = load_observations(args.observations, args.observations_key), str(args.observations)
    if args.model is not None:
        if not args.model.is_file():
            raise InputError(f"{args.model}: no such model file; expected an ONNX file")
        _check_memory(args.model, args.batch_sizes)
        return args.model, obs, source
    if args.preset not in PRESETS:
        raise InputError(f"--preset: unknown preset {args.preset!r}; expected one of {', '.join(PRESETS)}")
    policy = _policy_module()
    artifact = policy.default_policy(args.preset, cache=home(args).cache)
    _check_memory(artifact.onnx_path, args.batch_sizes)  # before observations for the largest batch exist
    if obs is None:
        rows = max(DEFAULT_OBSERVATION_ROWS, max(parse_int_list(args.batch_sizes, "--batch-sizes")))
        obs = policy.generate_observations(rows, seed=0, preset=args.preset)
        source = f"{rows} synthetic market observations (preset {args.preset}, seed 0)"
    return Path(artifact.onnx_path), obs, source


def _check_memory(model: Path, batch_sizes: str) -> None:
    from costeff.membound import check_batch_sizes

    check_batch_sizes(model, parse_int_list(batch_sizes, "--batch-sizes"))


def _policy_module() -> Any:
    try:
        from costeff import policy
    except ImportError as exc:
        raise DependencyError(f"the embedded default policy is unavailable ({exc}); pass MODEL") from None
    if not hasattr(policy, "default_policy"):
        raise DependencyError("the embedded default policy is unavailable in this build; pass MODEL")
    return policy


def _remote(args: argparse.Namespace, config: Any) -> Any:
    if not args.model_name:
        raise InputError("--model-name: required with --url (the model's name on the server)")
    if args.protocol not in ("http", "grpc"):
        raise InputError(f"--protocol: {args.protocol!r} is not supported; expected http or grpc")
    rates = _rates(args.request_rate) if args.request_rate else None
    from costeff.remote.loadgen import GENERATORS
    from costeff.remote.openloop import DEFAULT_MAX_IN_FLIGHT

    if args.load_generator not in GENERATORS:
        raise InputError(f"--load-generator: {args.load_generator!r}; expected one of {', '.join(GENERATORS)}")
    if args.max_in_flight is not None and args.max_in_flight < 1:
        raise InputError(f"--max-in-flight: {args.max_in_flight} must be >= 1")
    if args.perf_analyzer is not None and not (args.perf_analyzer.is_file() and os.access(args.perf_analyzer, os.X_OK)):
        raise InputError(f"--perf-analyzer: {args.perf_analyzer} is not an executable file; expected the "
                         "perf_analyzer binary")
    try:
        from costeff.remote import profile_remote
    except ImportError:
        raise DependencyError("remote profiling (--url) is not available in this build of costeff") from None
    obs = None
    if args.observations is not None:
        from costeff.observations import load_observations

        obs = load_observations(args.observations, args.observations_key)
    from costeff.progress import progress

    total = len(config.batch_sizes) * (len(rates or ()) + len(config.concurrency))
    with progress("profiling server", total) as task:
        return profile_remote(url=args.url, model_name=args.model_name, protocol=args.protocol, config=config,
                              request_rates=rates, observations=obs, progress=task,
                              max_in_flight=args.max_in_flight or DEFAULT_MAX_IN_FLIGHT,
                              load_generator=args.load_generator, perf_analyzer=args.perf_analyzer,
                              cache=home(args).cache)


def _rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"--request-rate: {text!r} is not a comma-separated list of numbers") from None
    if not rates or any(not 0 < r < float("inf") for r in rates):
        raise InputError(f"--request-rate: {text!r} must list rates > 0 requests/s, e.g. 100,500")
    return rates


def _print(report: Any, out: Path, csv: Path | None = None) -> None:
    opt, cost = report.optimal, report.cost
    print(f"{'batch':>6} {'conc':>4} {'inferences/s':>13} {'p50 ms':>9} {'p99 ms':>9} {'stable':>6}")
    for p in report.points:
        print(f"{p.batch_size:>6} {p.concurrency:>4} {p.throughput_per_s:>13,.0f} {p.latency_ms.p50:>9.3f} "
              f"{p.latency_ms.p99:>9.3f} {'yes' if p.stable else 'NO':>6}")
    _print_gaps(getattr(report, "latency_by_gap", None))
    print(f"optimal: batch {opt.batch_size} ({opt.reason})")
    if cost:
        line = f"cost: {cost['instance']} ${cost['usd_per_hour']:.4g}/h, ${cost['usd_per_million']:.4g} per million"
        if cost["instances_needed"]:
            line += (f", {cost['instances_needed']} instance(s) ${cost['usd_per_day']:.2f}/day"
                     f" at {cost['target_rate_per_s']:g}/s")
        print(line)
    for rec in report.recommendations:
        print(f"- {rec.kind}: {rec.message}")
    load = getattr(report, "load_generator", None)
    if load:
        print(f"load generator: {load['name']} ({load['reason']})")
    print(f"wrote {out}/gpu_profile.json, gpu_profile.md and plots"
          + (", perf_analyzer.csv" if load and load["name"] == "perf_analyzer" else "")
          + (f"; perf_analyzer CSV {csv}" if csv else ""))


def _print_gaps(gaps: list[dict[str, Any]] | None) -> None:
    """Batch-1 latency after each idle gap, beside back to back (gap 0) when it was measured."""
    if not gaps:
        return
    warm = next((g["p50_ms"] for g in gaps if g["gap_ms"] == 0), None)
    print("batch-1 latency after idle gaps:")
    print(f"{'gap ms':>9} {'calls':>6} {'p50 ms':>9} {'p99 ms':>9} {'p50 vs back to back':>20}")
    for g in gaps:
        ratio = f"{g['p50_ms'] / warm:.2f}x" if warm and g["gap_ms"] else "-"
        print(f"{g['gap_ms']:>9g} {g['calls']:>6} {g['p50_ms']:>9.3f} {g['p99_ms']:>9.3f} {ratio:>20}")

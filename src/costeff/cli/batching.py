"""``costeff batching optimize|simulate|calibrate``: choose dynamic-batching settings from a profile or from a
server's own statistics."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from costeff.cli._common import add_common, emit, parse_int_list, workspace


def _number(field: str, positive: bool = True):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{field} must be a number, got {text!r}") from None
        if not math.isfinite(value) or (value <= 0 if positive else value < 0):
            raise argparse.ArgumentTypeError(f"{field} must be {'> 0' if positive else '>= 0'}, got {text}")
        return value
    return parse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("batching", help="simulate the dynamic batcher and choose its settings")
    verbs = parser.add_subparsers(dest="batching_command", metavar="VERB", required=True)
    opt = verbs.add_parser("optimize", help="cheapest batcher settings and instance count meeting a p99 SLO")
    _shared(opt)
    opt.add_argument("--p99-ms", type=_number("--p99-ms"), required=True, help="p99 latency SLO (queue + service)")
    opt.add_argument("--instance", help="price-catalog instance (default: from the profile's hardware)")
    opt.add_argument("--catalog", type=Path, help="price catalog TOML (default: the shipped one)")
    opt.add_argument("--max-instances", type=int, default=8, help="largest instance count to consider (default 8)")
    opt.add_argument("--max-batch-sizes", help="comma list to search (default: the profile's batch sizes)")
    opt.add_argument("--queue-delays-us", help="comma list to search (default: 0..10000 below the SLO)")
    opt.add_argument("--top", type=int, default=10, help="configurations to list (default 10)")
    add_common(opt)
    opt.set_defaults(func=_optimize)
    sim = verbs.add_parser("simulate", help="predict latency, batch size and utilisation for one setting")
    _shared(sim)
    sim.add_argument("--max-batch-size", type=int, required=True, metavar="N",
                     help="largest batch the batcher forms (requests for --policy mlserver)")
    sim.add_argument("--preferred", default="", help="preferred batch sizes, e.g. 8,16,32")
    sim.add_argument("--max-queue-delay-us", type=_number("--max-queue-delay-us", positive=False), default=0.0,
                     metavar="US", help="longest a request waits for a batch to fill, in microseconds (default 0)")
    sim.add_argument("--instances", type=int, default=1, metavar="N",
                     help="model instances serving in parallel (default 1)")
    sim.add_argument("--default-timeout-us", type=_number("--default-timeout-us", positive=False), default=0.0,
                     metavar="US", help="a request queued longer than this is rejected; 0 = never (default 0)")
    sim.add_argument("--max-queue-size", type=int, default=0, metavar="N",
                     help="requests beyond this many queued are rejected; 0 = unbounded (default 0)")
    add_common(sim, out=False)
    sim.set_defaults(func=_simulate)
    cal = verbs.add_parser("calibrate", help="measure a Triton server's per-batch and per-request cost from its "
                                             "statistics (server_costs.json for --server-stats)")
    cal.add_argument("--url", required=True, help="HOST:PORT of the server (HTTP port, or gRPC with --protocol)")
    cal.add_argument("--model", required=True, help="model name on the server (dynamic batching on)")
    cal.add_argument("--protocol", choices=("http", "grpc"), default="http",
                     help="protocol of --url (default http)")
    cal.add_argument("--concurrencies", default="1,4,16",
                     help="one-row load phases (concurrent clients; default 1,4,16)")
    cal.add_argument("--rows", default="8,32", help="one-client phases with requests of this many rows (default 8,32)")
    cal.add_argument("--requests", type=int, default=400, help="requests per phase (over all rounds; default 400)")
    cal.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the phases (default 3)")
    add_common(cal)
    cal.set_defaults(func=_calibrate)


def _shared(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", type=Path, help="gpu_profile.json from costeff profile (required unless "
                                                "--server-stats is given)")
    p.add_argument("--server-stats", type=Path, metavar="FILE",
                   help="server_costs.json from `costeff batching calibrate`: service times and per-request cost "
                        "measured by the server itself (the profile, if given, lends hardware and spread)")
    p.add_argument("--rate", type=_number("--rate"), help="Poisson arrival rate, requests/s")
    p.add_argument("--trace", type=Path, help="replay request timestamps (seconds; CSV) instead of Poisson")
    p.add_argument("--requests", type=int, default=20_000, help="requests per simulation (Poisson; default 20000)")
    p.add_argument("--rows", type=int, default=1, help="rows (batch dimension) each request carries (default 1)")
    p.add_argument("--policy", choices=("triton", "mlserver"), default="triton",
                   help="Triton's dynamic batcher or MLServer's adaptive batching (default triton)")
    p.add_argument("--seed", type=int, default=0, help="seed of the arrivals and service times (default 0)")
    p.add_argument("--no-jitter", action="store_true", help="deterministic service times")


def _optimize(args: argparse.Namespace) -> int:
    from costeff.batching import OptimizeConfig
    from costeff.batching.optimizer import optimize
    from costeff.batching.report import write_report

    cfg = OptimizeConfig(
        rate_per_s=args.rate, p99_ms=args.p99_ms, requests=args.requests, policy=args.policy,
        instance=args.instance, max_instances=args.max_instances, seed=args.seed, trace=args.trace,
        rows_per_request=args.rows, jitter=not args.no_jitter, top=args.top, catalog=args.catalog,
        max_batch_sizes=tuple(parse_int_list(args.max_batch_sizes, "--max-batch-sizes"))
        if args.max_batch_sizes else (),
        queue_delays_us=_delays(args.queue_delays_us) if args.queue_delays_us else (),
        server_costs=args.server_stats)
    report = optimize(args.profile, cfg)
    out = workspace(args).run_dir("batching", args.out)
    write_report(report, out)
    emit(args, report, lambda: _print_optimize(report, out))
    return 0 if report.feasible else 1


def _delays(text: str) -> tuple[float, ...]:
    from costeff.errors import InputError

    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"--queue-delays-us: {text!r} is not a comma-separated list of numbers") from None
    if not values or any(not 0 <= v < math.inf for v in values):
        raise InputError(f"--queue-delays-us: {text!r} must list numbers >= 0, e.g. 0,500,2000")
    return values


def _print_optimize(report, out: Path) -> None:
    if report.chosen:
        c, p = report.chosen, report.chosen["predicted"]
        print(f"chosen: max_batch_size {c['max_batch_size']}, preferred {c['preferred_batch_size'] or '-'}, "
              f"max_queue_delay_us {c['max_queue_delay_us']:g}, {c['instances']} instance(s)")
        print(f"predicted: p50 {p['p50_ms']:.3g} ms, p99 {p['p99_ms']:.3g} ms, mean batch "
              f"{p['mean_batch_size']:.3g}, ${p['usd_per_hour']:.4g}/hour, ${p['usd_per_million']:.4g}/million")
    else:
        b = report.binding
        print(f"no configuration meets p99 <= {report.target['p99_ms']:g} ms: {b['constraint']}: {b['detail']}; "
              f"best achievable p99 {b['best_p99_ms']:.4g} ms")
    print(f"report: {out / 'batching_report.md'}")


def _simulate(args: argparse.Namespace) -> int:
    from costeff.batching import BatcherConfig, load_trace, poisson_arrivals, simulate
    from costeff.batching.service import load_service
    from costeff.errors import InputError

    prefs = tuple(parse_int_list(args.preferred, "--preferred")) if args.preferred else ()
    cfg = BatcherConfig(args.max_batch_size, prefs, args.max_queue_delay_us, args.instances, args.policy,
                        args.default_timeout_us, args.max_queue_size)
    service = load_service(args.profile, args.server_stats)
    if args.trace is not None:
        arrivals = load_trace(args.trace)
    elif args.rate is None:
        raise InputError("--rate: required unless --trace is given")
    else:
        arrivals = poisson_arrivals(args.rate, args.requests, args.seed)
    result = simulate(arrivals, service, cfg, rows=args.rows, seed=args.seed, jitter=not args.no_jitter)

    def human() -> None:
        util = ", ".join(f"{u:.0%}" for u in result.utilisation)
        print(f"{cfg.label()}: p50 {result.latency_p50_ms:.3g} ms, p90 {result.latency_p90_ms:.3g} ms, "
              f"p99 {result.latency_p99_ms:.3g} ms, mean batch {result.mean_batch_size:.3g}, "
              f"throughput {result.throughput_per_s:.4g}/s, utilisation {util}, rejected {result.rejected}")

    emit(args, result, human)
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from costeff.batching.calibrate import CalibrateConfig, calibrate, write

    cfg = CalibrateConfig(tuple(parse_int_list(args.concurrencies, "--concurrencies")),
                          tuple(parse_int_list(args.rows, "--rows")) if args.rows else (), args.requests,
                          protocol=args.protocol, rounds=args.rounds)
    record = calibrate(args.url, args.model, cfg)
    out = workspace(args).run_dir("batching", args.out)
    path = write(record, out)

    def human() -> None:
        f = record["fit"]
        print(f"{args.model} at {record['server']['url']}: one execution takes {f['fixed_ms']:.3g} ms + "
              f"{f['per_row_ms']:.3g} ms/row + {f['per_request_ms']:.3g} ms/request "
              f"(rms {f['rms_ms']:.3g} ms over {f['executions']} executions)")
        for p in record["phases"]:
            if p["round"]:
                continue
            print(f"  {p['name']} (round 1): {p['client']['requests_per_s']:.4g} requests/s, mean batch "
                  f"{p['server']['mean_batch_rows'] or 0:.3g} rows, client p50 {p['client']['p50_ms']:.3g} ms")
        print(f"server costs: {path}")

    emit(args, record, human)
    return 0

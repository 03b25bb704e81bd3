"""``costeff reap``: replay a trace, or reap idle capacity from Prometheus signals; ``costeff reap restore``."""

from __future__ import annotations

import argparse
from pathlib import Path

from costeff.cli._common import add_common, add_listener, emit, existing_file, positive_float


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("reap", help="scale idle serving capacity down (dry run unless --apply)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--trace", type=existing_file("--trace"), metavar="FILE",
                        help="replay a signal trace (CSV, CSV.gz, JSON or JSON lines); actions are simulated")
    source.add_argument("--sample", action="store_true", help="replay the shipped sample day")
    source.add_argument("--prometheus", metavar="URL", help="read live signals through PromQL at URL")
    _add_live_options(parser)
    add_common(parser)
    parser.set_defaults(func=_reap)
    verbs = parser.add_subparsers(dest="reap_command", metavar="VERB")
    restore = verbs.add_parser("restore", help="put back what applied reaps changed, from the audit trail")
    restore.add_argument("--apply", action="store_true", help="really restore (default: say what would be restored)")
    restore.add_argument("--kube-context", metavar="NAME",
                         help="kubeconfig context (default: in-cluster or current)")
    add_common(restore, out=False)
    restore.set_defaults(func=_restore)
    rbac = verbs.add_parser("rbac", help="print the least-privilege Role and RoleBinding the config's targets need")
    rbac.add_argument("--config", type=existing_file("--config"), required=True, metavar="TOML",
                      help="reaper config whose deployment/statefulset targets the Role names")
    rbac.add_argument("--service-account", default="costeff-reaper", metavar="NAME",
                      help="the reaper's ServiceAccount (default costeff-reaper)")
    rbac.add_argument("--service-account-namespace", metavar="NS",
                      help="its namespace (default: each target's namespace, where costeff runs beside them)")
    add_common(rbac, out=False)
    rbac.set_defaults(func=_rbac)


def _add_live_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=existing_file("--config"), metavar="TOML",
                        help="reaper config: thresholds, schedule, exclusions, queries, targets")
    parser.add_argument("--apply", action="store_true", help="act on live targets (default: dry run)")
    parser.add_argument("--watch", action="store_true", help="keep running; stop with SIGTERM or SIGINT")
    parser.add_argument("--interval", type=positive_float("--interval"), default=60.0, metavar="S",
                        help="seconds between rounds with --watch (default 60)")
    add_listener(parser, "with --watch, expose the reaper's metrics on PORT")
    parser.add_argument("--kube-context", metavar="NAME", help="kubeconfig context (default: in-cluster or current)")


def _reap(args: argparse.Namespace) -> int:
    from costeff.errors import InputError
    from costeff.reaper.config import load_config

    config = load_config(args.config)
    if args.prometheus:
        return _live(args, config.with_prometheus_url(args.prometheus))
    if args.apply or args.watch:
        raise InputError("--apply and --watch act on live signals; pass --prometheus URL (a trace is only replayed)")
    if args.sample:
        from costeff.reaper.sample import sample_path

        args.trace = sample_path()
    if args.trace is None:
        if config.prometheus.url:
            return _live(args, config)
        raise InputError("nothing to read: pass --trace FILE, --sample or --prometheus URL")
    return _replay(args, config, Path(args.trace))


def _replay(args: argparse.Namespace, config, trace: Path) -> int:
    from costeff.reaper import reap_trace

    report, directory = reap_trace(trace, config, args.out)

    def human() -> None:
        print(f"replayed {report.source['rows']} samples ({report.source['start']} .. {report.source['end']})")
        print(f"GPU-hours {report.gpu_hours_without:.2f} -> {report.gpu_hours_with:.2f} "
              f"({report.reduction_pct:.1f} % less), reaps while active: {report.reaps_while_active}")
        print(f"saved ${report.savings['usd_saved']:.2f}; wake-ups {report.wake_up['wakeups']}, "
              f"{report.wake_up['requests_waited']:g} requests waited (max {report.wake_up['wait_s_max']:.0f} s)")
        print(f"wrote {directory / 'reaper_report.json'} and .md; {len(report.actions)} simulated actions "
              f"audited in {report.audit['log']}")

    emit(args, report.to_dict(), human)
    return 0


def _live(args: argparse.Namespace, config) -> int:
    from costeff.audit import default_log
    from costeff.health import Heartbeat
    from costeff.reaper.live import Actuators, ReaperMetrics, reaper_lock, tick, watch
    from costeff.reaper.run import price_for
    from costeff.reaper.prometheus import PrometheusSource
    from costeff.reaper.triton_target import TritonModels

    source = PrometheusSource(config.prometheus)
    price = price_for(config).usd_per_gpu_hour
    # A Triton unload that failed is tried again after one more decision window, not every round.
    audit, actuators = default_log(), Actuators(kube_context=args.kube_context, exclude_labels=config.exclude.labels,
                                                triton=TritonModels(retry_after_s=config.decision.window_s))
    with reaper_lock():
        if args.watch:
            metrics = ReaperMetrics(args.metrics_port, args.metrics_addr,
                                    Heartbeat(args.interval, args.stale_after))
            try:
                result = watch(config, source, args.apply, actuators, audit, price, args.interval, metrics)
            finally:
                metrics.close()
            print(f"reaper stopped after {result.rounds} rounds")
            return result.exit_code
        result = _one_round(config, source, args.apply, actuators, audit, price, tick)
    emit(args, result, lambda: _print_round(result))
    return 3 if any(a.get("failed") for a in result.actions) else 0  # an action that failed closed


def _one_round(config, source, apply, actuators, audit, price, tick):
    from costeff.errors import DependencyError

    try:
        return tick(config, source, apply, actuators, audit, price)
    except DependencyError as exc:
        audit.append("reaper.signals_unavailable", {"error": str(exc)}, actor="costeff-reaper")
        raise DependencyError(f"{exc}; no action taken") from None


def _print_round(result) -> None:
    for v in result.verdicts:
        state = "REAP" if v["idle"] and not v["protected"] and not v["excluded"] and not v.get("held_off") else "keep"
        why = v["excluded"] or v.get("held_off") or "; ".join(v["reasons"]) or f"idle for {v['idle_for_s']:.0f} s"
        print(f"{state:4}  {v['target']}: {why}")
    for a in result.actions:
        print(f"{a['mode']}: {a['action']} {a['target']}: {a['detail']}")
    if not result.actions:
        print(f"{result.mode}: no action")


def _restore(args: argparse.Namespace) -> int:
    from costeff.audit import default_log
    from costeff.reaper.live import Actuators, reaper_lock, restore_all

    audit = default_log()
    with reaper_lock():
        done = restore_all(audit, args.apply, Actuators(kube_context=args.kube_context))

    def human() -> None:
        if not done:
            print(f"nothing to restore: no applied reaper action is open in {audit.path}")
        for a in done:
            print(f"{a['mode']}: restore {a['target']}: {a['detail']}")

    emit(args, {"mode": "apply" if args.apply else "dry-run", "restored": done}, human)
    return 0


def _rbac(args: argparse.Namespace) -> int:
    from costeff.reaper.config import load_config
    from costeff.reaper.rbac import manifests, to_yaml

    docs = manifests(load_config(args.config), args.service_account, args.service_account_namespace)
    emit(args, {"schema_version": 1, "manifests": docs}, lambda: print(to_yaml(docs), end=""))
    return 0

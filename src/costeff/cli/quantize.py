"""``costeff quantize [MODEL]``: lower precision only as far as the policy's decisions allow.

Exit 0 when a lowered variant passed every fidelity gate, 1 when none did (fp32
stays selected), 2 on bad input.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from costeff.cli._common import (add_common, artifact_name, emit, finite_float, home, parse_int_list,
                                 workspace)
from costeff.errors import InputError

PRESETS = ("tiny", "default", "large")
DEFAULT_OBSERVATION_ROWS = 4096
GENERATED_SEED = 20_000  # generated observations use a seed the policy was not trained on


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quantize", help="build fp16 / int8 variants, gate their fidelity, select the cheapest to serve",
                       description="Lower a policy to fp16 and int8 (onnxruntime) and bf16 / int8 (OpenVINO), measure "
                                   "fidelity on held-out observations and speed in isolated processes, and select "
                                   "the variant to serve. With --target-rate: the cheapest at that traffic (fewest "
                                   "instances) among the variants passing every gate and meeting "
                                   "--latency-budget-ms in an open-loop replay at the rate; ties go to the lowest "
                                   "open-loop p50 under light traffic, else the most throughput per dollar. "
                                   "Without it: the fastest passing variant at its optimal batch. fp32 stays unless "
                                   "a variant beats it by --min-speedup.")
    p.add_argument("model", nargs="?", type=Path, metavar="MODEL",
                   help="fp32 ONNX policy (default: the embedded policy, see --preset)")
    p.add_argument("--preset", default="default",
                   help=f"embedded policy when MODEL is omitted: {', '.join(PRESETS)} (default: default)")
    p.add_argument("--observations", type=Path, metavar="FILE",
                   help=".npy/.npz/.parquet observations, split into calibration and held-out rows "
                        "(required with MODEL)")
    p.add_argument("--observations-key", metavar="KEY", help="array name inside an .npz")
    p.add_argument("--rows", type=int, default=DEFAULT_OBSERVATION_ROWS,
                   help=f"generated observations for the embedded policy (default {DEFAULT_OBSERVATION_ROWS})")
    p.add_argument("--variants", metavar="LIST",
                   help="restrict to these variants (default: every one this host can try): onnxruntime fp16, "
                        "int8-dynamic, int8-static (fallbacks mixed / int8-mixed added when needed); OpenVINO "
                        "ov-fp32, ov-bf16, ov-int8, ov-int8-ac, ov-int8-ac-bf16, ov-w8, ov-w8-bf16; structural "
                        "prune, lowrank, stacked as <prune|lowrank>+<variant>, e.g. prune+int8-dynamic; runtime "
                        "settings as <fp32|variant>@<setting>[@...]: threads=N, nospin (onnxruntime), hint=latency|"
                        "throughput, streams=N (OpenVINO), e.g. fp32@threads=1 (default adds fp32@threads=1, "
                        "fp32@nospin on the CPU)")
    p.add_argument("--backends", default="onnxruntime,openvino", metavar="LIST",
                   help="runtimes to search: onnxruntime, openvino (default both)")
    p.add_argument("--gaps", default="0,10ms", metavar="LIST",
                   help="single-call latency after these idle gaps, e.g. 0,10ms,100ms,1s (default 0,10ms)")
    p.add_argument("--calibration-method", default="MinMax",
                   help="MinMax | Entropy | Percentile, for int8-static (default MinMax)")
    _add_gates(p.add_argument_group("fidelity gates"))
    _add_measurement(p.add_argument_group("speed measurement"))
    p.add_argument("--outputs", metavar="MAP", help="output roles, e.g. logits=pi,value=v")
    p.add_argument("--no-cache", dest="cache", action="store_false",
                   help="build and judge every variant anew instead of reusing the variant cache (built variants "
                        "and their fidelity, keyed by model, observations, recipe, host and library versions; "
                        "speed is measured every run either way)")
    p.add_argument("--name", type=artifact_name("--name"),
                   help="model name in <name>_<variant>.onnx (default: the model file's stem)")
    add_common(p)
    p.set_defaults(func=_run)


def _add_measurement(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--batch-sizes", default="1,16,64,256", metavar="LIST",
                   help="profiled batch sizes, e.g. 1,64 (default 1,16,64,256); fidelity is gated at batch 1 and "
                        "at the largest, the biggest batch a served configuration can form")
    g.add_argument("--target-rate", type=finite_float("--target-rate"), metavar="R",
                   help="requests/s the policy will get: each variant is replayed open-loop at this rate and the "
                        "cheapest one meeting --latency-budget-ms there is selected")
    g.add_argument("--provider", default="cpu", help="cpu | cuda | tensorrt | auto (default cpu)")
    g.add_argument("--trials", type=int, default=4,
                   help="fallback trials per failing variant (0 = no fallback; default 4)")
    g.add_argument("--window-s", type=finite_float("--window-s"), default=1.0,
                   help="profiling window per point (default 1.0)")
    g.add_argument("--rounds", type=int, default=2,
                   help="full interleaved passes over fp32, its A/A twin and the finalists of a short screening "
                        "round of every variant (default 2)")
    g.add_argument("--latency-budget-ms", type=finite_float("--latency-budget-ms"), metavar="MS",
                   help="p99 budget for each variant's optimal batch")
    g.add_argument("--min-speedup", type=finite_float("--min-speedup"), default=1.05, metavar="X",
                   help="a variant replaces fp32 only when at least X times faster (default 1.05)")


def _add_gates(g: argparse._ArgumentGroup) -> None:
    """The gates every variant must pass, against fp32 on the held-out rows."""
    g.add_argument("--max-action-drift-pct", type=finite_float("--max-action-drift-pct"), default=0.5, metavar="PCT",
                   help="gate: at most PCT %% of held-out rows may change their top action vs fp32 (default 0.5)")
    g.add_argument("--max-entropy-drift-pct", type=finite_float("--max-entropy-drift-pct"), default=0.5, metavar="PCT",
                   help="gate: the mean policy entropy may move at most PCT %% from fp32's (default 0.5)")
    g.add_argument("--min-action-correlation", type=finite_float("--min-action-correlation"), default=0.997,
                   metavar="R",
                   help="gate: correlation of the action probabilities with fp32's must be at least R (default 0.997)")
    g.add_argument("--max-kl-p99", type=finite_float("--max-kl-p99"), metavar="NATS",
                   help="optional gate on per-row KL(fp32 || variant)")
    g.add_argument("--max-value-abs-err", type=finite_float("--max-value-abs-err"), metavar="X",
                   help="optional gate on the value head")
    g.add_argument("--max-batch-action-change-pct", type=finite_float("--max-batch-action-change-pct"),
                   default=0.05, metavar="PCT",
                   help="batch invariance: a variant fails when more than PCT %% of the probe rows change action "
                        "alone vs inside a batch of the largest --batch-sizes (default 0.05)")
    g.add_argument("--probe-rows", type=int, default=1024, metavar="N",
                   help="held-out rows also run one per call: fidelity at batch 1 and batch invariance "
                        "(default 1024; every held-out row is judged at the largest batch)")


def _config(args: argparse.Namespace) -> Any:
    from costeff.quantization import QuantizeConfig, Tolerances

    tol = Tolerances(args.max_action_drift_pct, args.max_entropy_drift_pct, args.min_action_correlation,
                     args.max_kl_p99, args.max_value_abs_err, args.max_batch_action_change_pct)
    from costeff.profiling.traffic import parse_gaps

    return QuantizeConfig(
        variants=tuple(v.strip() for v in args.variants.split(",") if v.strip()) if args.variants is not None else None,
        backends=tuple(b.strip() for b in args.backends.split(",") if b.strip()), gaps_s=parse_gaps(args.gaps),
        calibration_method=args.calibration_method, tolerances=tol,
        batch_sizes=tuple(parse_int_list(args.batch_sizes, "--batch-sizes")), target_rate=args.target_rate,
        provider=args.provider, trials=args.trials, fallback=args.trials > 0, window_s=args.window_s,
        speed_rounds=args.rounds, latency_budget_ms=args.latency_budget_ms, name=args.name,
        min_speedup=args.min_speedup, probe_rows=args.probe_rows,
        outputs=_outputs(args.outputs))


def _outputs(text: str | None) -> tuple[tuple[str, str], ...]:
    if not text:
        return ()
    pairs = [p.split("=", 1) for p in text.split(",") if p.strip()]
    if any(len(p) != 2 or p[0] not in ("logits", "value") for p in pairs):
        raise InputError(f"--outputs: {text!r}; expected logits=NAME[,value=NAME]")
    return tuple((k, v) for k, v in pairs)


def _inputs(args: argparse.Namespace) -> tuple[Path, Any, str | None]:
    """The model, its observations and a model name: given, or the embedded policy with generated rows."""
    from costeff.observations import load_observations

    if args.model is not None:
        if args.observations is None:
            raise InputError(f"{args.model}: --observations FILE is required to measure fidelity on real "
                             "observations (calibration + held-out rows)")
        return args.model, load_observations(args.observations, args.observations_key), args.name
    from costeff.policy import default_policy, generate_observations

    if args.preset not in PRESETS:
        raise InputError(f"--preset: {args.preset!r}; expected one of {', '.join(PRESETS)}")
    art = default_policy(args.preset, cache=home(args).cache)
    obs = load_observations(args.observations, args.observations_key) if args.observations else \
        generate_observations(args.rows, seed=GENERATED_SEED, preset=args.preset)
    return Path(art.onnx_path), obs, args.name or f"policy_{args.preset}"


def _model_files(folder: Path) -> set[Path]:
    return set(folder.iterdir()) if folder.is_dir() else set()


def _run(args: argparse.Namespace) -> int:
    from costeff.progress import progress
    from costeff.quantization import VARIANTS, quantize

    from costeff.membound import check_batch_sizes

    config = _config(args)
    model, obs, name = _inputs(args)
    check_batch_sizes(model, config.batch_sizes)  # before any variant is built or profiled
    if name and name != config.name:
        import dataclasses
        config = dataclasses.replace(config, name=name)
    n = len(config.variants or VARIANTS)
    steps = n + 2 + config.speed_rounds * (n + 2)
    here = workspace(args)
    models = here.models
    before = _model_files(models)
    try:
        with progress("quantize", steps) as task:
            report = quantize(model, obs, config, out_dir=args.out, progress=task, workspace=here, cache=args.cache)
    except BaseException:
        # No report, no new models: variants saved before a failed report write are taken back.
        for path in _model_files(models) - before:
            path.unlink(missing_ok=True)
        raise
    emit(args, report, lambda: _human(report))
    return 0 if report.passed_any else 1


def _human(report: Any) -> None:
    """The record as written (``report_dir``), variant by variant."""
    from costeff.records.kinds import QUANT

    path = QUANT.path_in(report.report_dir)
    record = QUANT.read(path)
    for v in record.variants:
        f = v.fidelity
        status = "PASS" if v.passed else ("FAIL" if v.built else
                                          f"not tried: {v.not_tried}" if v.not_tried else f"not built: {v.error}")
        drift = f"drift {f.action_drift_pct or 0:.3f}% entropy {f.entropy_drift_pct or 0:.3f}%" if f else ""
        inv = v.batch_invariance
        drift += f" batch-changed {inv.action_change_pct or 0:.3f}% (max logit diff {inv.max_logit_diff or 0:.2g})" \
            if inv else ""
        speed = f" speedup {v.speedup:.2f}x" if v.speedup else ""
        t = v.at_target
        target = f" p99 at target {t.p99_ms or 0:.2f} ms, {t.instances} instance(s)" if t else ""
        print(f"{v.name:16s} {v.backend:11s} {status:5s} {drift}{speed}{target}"
              + (f" kept fp32: {', '.join(v.excluded_nodes)}" if v.excluded_nodes else ""))
    cache = record.cache
    if cache is not None and cache.reused:
        print(f"reused {cache.variants_reused} built variant(s) and their fidelity from the cache "
              f"({cache.root}); speed measured anew")
    sel = record.selected
    print(f"selected {sel.name} ({sel.backend}, {sel.precision}): {sel.reason}")
    print(f"report {path}")

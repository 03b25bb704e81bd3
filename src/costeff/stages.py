"""The stages of ``costeff run``, each a thin call of a capability's verb.

Every stage reads what it needs from the run context, writes its artifacts through
the capability's own writer, and returns ``(one-line summary, artifact paths)``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from costeff.records.kinds import BATCHING, BUILD, PROFILE
from costeff.records.profile import Optimal, ProfileRecord
from costeff.runctx import RunContext, Stage

QUANT_ROWS_SEED = 20000  # same seed as `costeff quantize` on the embedded policy
PROFILE_GAPS_S = (0.0, 0.001, 0.01, 0.1)
RUN_FINALISTS = 1  # per criterion (capacity, answer time): one or two variants timed fully beside fp32


def stage_policy(ctx: RunContext) -> tuple[str, list[str]]:
    cfg = ctx.config
    if cfg.model is not None:
        from costeff.modelio import read_signature
        from costeff.observations import load_observations, validate_observations

        assert cfg.observations is not None  # RunConfig requires them together with a model
        sig = read_signature(cfg.model)
        obs = validate_observations(load_observations(cfg.observations), sig.input().sample_shape,
                                    str(cfg.observations))
        ctx.products.model, ctx.products.observations = Path(cfg.model), obs
        return f"user policy {cfg.model}: {len(obs)} observation rows", [str(cfg.model)]
    from costeff.policy import default_policy, generate_observations

    art = default_policy(cfg.preset, cache=ctx.layout.home.cache)
    obs = generate_observations(cfg.rows, seed=QUANT_ROWS_SEED, preset=cfg.preset)
    ctx.products.model, ctx.products.observations, ctx.products.policy = art.onnx_path, obs, art
    return (f"embedded '{cfg.preset}' policy: {art.n_params / 1e6:.2f} M parameters, "
            f"confident (top-1 margin >= 0.1) on {100 * art.confident_share:.1f} % of rows"), [str(art.onnx_path)]


def _profile(ctx: RunContext, model: Path, runtime: dict[str, Any] | None = None) -> tuple[ProfileRecord, Path]:
    """Profile ``model``; an OpenVINO IR with the precision and hint it was selected with."""
    from costeff.membound import check_batch_sizes
    from costeff.profiling import ProfileConfig, profile

    cfg = ctx.config
    check_batch_sizes(model, cfg.batch_sizes)  # before batches that cannot fit are allocated
    ov: dict[str, Any] = {}
    if runtime and model.suffix == ".xml":
        from costeff.serving.served import OvRuntime

        measured = OvRuntime.model_validate(runtime)
        ov = {"ov_precision": measured.precision or "f32", "ov_hint": measured.performance_hint or "LATENCY"}
    # Latency after idle gaps feeds the batching simulator's cold-call penalty.
    pcfg = ProfileConfig(batch_sizes=cfg.batch_sizes, latency_budget_ms=cfg.latency_budget_ms,
                         target_rate=cfg.target_rate, provider="cpu" if ov else cfg.provider,
                         window_s=cfg.window_s, gaps_s=PROFILE_GAPS_S, **ov)
    return _written(ctx, profile(model, pcfg, observations=ctx.products.observations))


def _from_rounds(ctx: RunContext, model: Path, rounds: list[dict[str, Any]]) -> tuple[ProfileRecord, Path]:
    """The profile of ``model`` assembled from the quantize stage's full rounds (not measured again)."""
    from costeff.profiling.rounds import from_rounds
    from costeff.quantization.plan import profile_config

    return _written(ctx, from_rounds(model, rounds, profile_config(_quantize_config(ctx)),
                                     source="the run's observation rows, cycled to each batch size"))


def _written(ctx: RunContext, report: Any) -> tuple[ProfileRecord, Path]:
    out = ctx.layout.run_dir(None)
    while out.exists():  # two profiles within one second must not share a folder
        out = out.with_name(out.name + "_")
    report.write(out)
    path = PROFILE.path_in(out)
    return PROFILE.read(path), path


def _profile_line(report: ProfileRecord) -> str:
    opt = report.optimal or Optimal()
    unstable = sum(1 for p in report.points if p.stable is False)
    per_million = report.cost.usd_per_million if report.cost else None
    return (f"optimal batch {opt.batch_size}: {opt.throughput_per_s or 0:,.0f} inferences/s, p99 "
            f"{opt.latency_p99_ms or float('nan'):.2f} ms; ${per_million or float('nan'):.3g} per million"
            + (f"; {unstable} unstable point(s)" if unstable else ""))


def stage_profile(ctx: RunContext) -> tuple[str, list[str]]:
    (model,) = ctx.need("model")
    p = ctx.products
    rounds = p.baseline_rounds
    report, path = _from_rounds(ctx, model, rounds) if rounds else _profile(ctx, model)
    p.baseline_profile = path
    if p.selected_model is None:  # fp32 as timed is served (selected, or there was no selection)
        p.selected_model, p.selected_profile = model, path
    return "fp32: " + _profile_line(report) + _from_where(rounds), [str(path.parent)]


def _from_where(rounds: list[dict[str, Any]] | None) -> str:
    return f" (the median of the quantize stage's {len(rounds)} measurement(s), not measured again)" if rounds else ""


def _quantize_config(ctx: RunContext) -> Any:
    from costeff.quantization import QuantizeConfig

    cfg = ctx.config
    # Two interleaved speed rounds: with one, a variant within noise of fp32 can win the selection. They time
    # fp32, its A/A twin and the finalists of a short screening round: the best by capacity and by answer time.
    # Latency after idle gaps up to 100 ms: the profiles assembled from these rounds feed the batching
    # simulator's cold-call penalty.
    return QuantizeConfig(batch_sizes=cfg.batch_sizes, target_rate=cfg.target_rate, provider=cfg.provider,
                          window_s=cfg.window_s, speed_rounds=2, finalists=RUN_FINALISTS, name=cfg.model_name,
                          latency_budget_ms=cfg.latency_budget_ms, gaps_s=PROFILE_GAPS_S)


def stage_quantize(ctx: RunContext) -> tuple[str, list[str]]:
    from costeff.quantization import quantize

    model, obs = ctx.need("model", "observations")
    cfg = ctx.config
    # Built variants and their fidelity are reused from the cache when model, recipe and libraries match.
    report = quantize(model, obs, _quantize_config(ctx), out_dir=ctx.layout.run_dir("quant"), cache=True,
                      workspace=ctx.layout)
    assert report.report_dir is not None  # set since out_dir is given
    out = Path(report.report_dir)
    p = ctx.products
    p.quant_report = out / "quantization_report.json"
    selected = next(v for v in report.variants if v.name == report.selected["name"])
    p.baseline_rounds = report.measured.get("fp32")
    if not selected.baseline or _adopted(report.selected):  # served as measured: another file or other settings
        p.selected_model = Path(report.selected["path"])
        p.selected_runtime = dict(selected.runtime)
        p.selected_rounds = report.measured.get(selected.name)
    return _quantize_line(report, selected, cfg), [str(out)]


def _adopted(selected: dict[str, Any]) -> bool:
    """A runtime setting other than the default was adopted for the selected variant."""
    return any(row["adopted"] and not row["setting"].startswith("default") for row in selected.get("knobs") or [])


def _quantize_line(report: Any, selected: Any, cfg: Any) -> str:
    fid = selected.fidelity
    drift = f", action drift {fid.action_drift_pct:.3f} %" if fid is not None else ""
    inv = selected.batch_invariance
    if inv is not None:
        drift += f", actions changed by batch {inv.action_change_pct:.3f} % of {inv.rows} rows"
    speed = f"{selected.speedup:.2f}x fp32" if selected.speedup else "fp32 speed"
    if selected.baseline:  # fp32 itself: a ratio here is its adopted runtime setting against its default one
        speed = "fp32 speed" if not selected.speedup or abs(selected.speedup - 1) < 1e-9 else \
            f"{selected.speedup:.2f}x fp32 with its default settings"
    c = report.cache
    reused = f"reused {c['variants_reused']} built variant(s) and their fidelity from the cache; " \
        if c and c["reused"] else ""
    return (f"{reused}selected {selected.name} ({selected.backend}, {selected.precision}; {speed}{drift}) for "
            f"{cfg.target_rate:g} req/s, p99 <= {cfg.latency_budget_ms:g} ms; {report.selected['reason']}")


def stage_profile_selected(ctx: RunContext) -> tuple[str, list[str]]:
    (model,) = ctx.need("selected_model")
    p = ctx.products
    if p.selected_profile is not None:
        return "the selected variant is the fp32 model profiled above", []
    rounds = p.selected_rounds
    report, path = _from_rounds(ctx, model, rounds) if rounds else _profile(ctx, model, p.selected_runtime)
    p.selected_profile = path
    return f"{model.stem}: " + _profile_line(report) + _from_where(rounds), [str(path.parent)]


def stage_batching(ctx: RunContext) -> tuple[str, list[str]]:
    from costeff.batching import OptimizeConfig, optimize, write_report

    (profile,) = ctx.need("selected_profile")
    cfg = ctx.config
    report = optimize(profile, OptimizeConfig(rate_per_s=cfg.target_rate, p99_ms=cfg.latency_budget_ms))
    out = ctx.layout.run_dir("batching")
    write_report(report, out)
    record = BATCHING.read(BATCHING.path_in(out))
    c = record.chosen
    if c is None:
        binding = record.binding.constraint if record.binding else None
        return f"no configuration meets p99 <= {cfg.latency_budget_ms} ms ({binding or 'unknown'} binds)", [str(out)]
    ctx.products.batching_report = BATCHING.path_in(out)
    return (f"max batch {c.max_batch_size}, preferred {c.preferred_batch_size}, queue delay "
            f"{c.max_queue_delay_us:g} us, {c.instances} server(s): predicted p99 "
            f"{c.predicted.p99_ms or float('nan'):.2f} ms at {cfg.target_rate:g} req/s"), [str(out)]


def stage_triton(ctx: RunContext) -> tuple[str, list[str]]:
    from costeff.serving import BuildConfig, build_repository

    model, profile = ctx.need("selected_model", "selected_profile")
    repo = ctx.layout.repository
    result = build_repository(BuildConfig(
        model_path=model, profile_path=profile, repository=repo, name=ctx.config.model_name,
        batching_report=ctx.products.batching_report, quantization_report=ctx.products.quant_report),
        workspace=ctx.layout)
    ctx.products.repository, ctx.products.model_name = repo, result.name
    trt = f", TensorRT {result.tensorrt_precision_mode}" if result.tensorrt_precision_mode else ""
    return (f"{result.config_path}: {result.model_precision} model on the {result.backend} backend, "
            f"{result.instance_kind} instances{trt}; validated"), [str(Path(result.config_path).parent)]


def stage_verify(ctx: RunContext) -> tuple[str, list[str]]:
    """Serve what the triton stage wrote on the real Triton and measure it at the target rate."""
    from costeff.artifacts import inputs_of
    from costeff.errors import DependencyError
    from costeff.records.verify import Measured
    from costeff.serving import verify as v

    if not ctx.config.verify:
        return "skipped (--no-verify)", []
    repository, name, obs = ctx.need("repository", "model_name", "observations")
    predicted = v.predicted_from(ctx.products.batching_report)
    rate, out = ctx.config.target_rate, ctx.layout.run_dir("verify")
    try:
        report = v.verify(_triton_env(ctx.config.triton_env, ctx.layout.home.cache), repository, name, rate, obs,
                          predicted, log_path=out / "tritonserver.log")
    except DependencyError as exc:  # Triton cannot run on this host: the run goes on without the check
        report = v.skipped(name, repository, rate, predicted, str(exc))
    report.inputs = inputs_of(triton_build=BUILD.path_in(Path(repository) / name),
                              batching_report=ctx.products.batching_report)
    ctx.products.verify_report = report.write(out)
    if report.skipped:
        return f"skipped: {report.skipped}", [str(out)]
    m, r = report.measured or Measured(), report.ratios()
    ratio = (f" (predicted x{r.p99:.1f})" if r.p99 else "")
    return (f"real Triton at {rate:g} req/s: p50 {m.p50_ms or 0:.2f} ms, p99 {m.p99_ms or 0:.2f} ms{ratio}, mean "
            f"batch {m.mean_batch_size or 0:.2f}, {m.errors} errors"), [str(out)]


def _triton_env(location: Path | None, cache: Path):
    """The real Triton's environment, created on first use (its own numpy<2 virtual environment)."""
    import sys

    from costeff.serving.tritonserver import default_location, ensure

    return ensure(location or default_location(cache), log=lambda line: print(line, file=sys.stderr,
                                                                                      flush=True))


def stage_reaper(ctx: RunContext) -> tuple[str, list[str]]:
    from costeff.reaper.run import reap_trace
    from costeff.reaper.sample import sample_path

    report, out = reap_trace(sample_path(), out=ctx.layout.run_dir("reaper"), workspace=ctx.layout)
    ctx.products.reaper_report = out / "reaper_report.json"
    d = report.to_dict()
    return (f"sample day: GPU-hours {d['gpu_hours_without']:.1f} -> {d['gpu_hours_with']:.1f} "
            f"({d['reduction_pct']:.1f} % less), {d['reaps_while_active']} reaps while active"), [str(out)]


def stage_ramp(ctx: RunContext) -> tuple[str, list[str]]:
    from costeff.artifacts import utc_now
    from costeff.ledger import Ledger, import_sample
    from costeff.ramp import DecideConfig, decide

    out = ctx.layout.run_dir("ramp")
    as_of = ctx.config.sample_as_of or utc_now().date()
    ledger = Ledger(out / "sample_ledger.sqlite")
    import_sample(ledger, end=as_of - timedelta(days=1))
    p = ctx.products
    deployed: dict[str, Any] = {"triton_repository": p.repository, "model_name": p.model_name} \
        if p.repository else {}
    decision = decide(DecideConfig(ledger=ledger.path, quant_report=p.quant_report,
                                   as_of=as_of, projection=_projection_inputs(ctx), **deployed), out_dir=out,
                      workspace=ctx.layout)
    p.ramp_decision = out / "ramp_decision.json"
    ratio = decision.cost_ratio_pct
    failed = ", ".join(decision.gates_failed) or "none"
    p = decision.projection
    projected = (f"; PROJECTED serving ${p.serving_usd_per_day:,.2f}/day on {p.instance}" if p and p.available
                 else "")
    return (f"{decision.decision} on the synthetic sample economics: cost ratio "
            f"{ratio:.1f} % vs cap {decision.cost_ratio_cap_pct:.0f} %; failed gates: {failed}{projected}"), [str(out)]


def _projection_inputs(ctx: RunContext):
    """This run's own reports, so the projection never mixes in an older run's."""
    from costeff.ramp.projection import ProjectionInputs

    p = ctx.products
    return ProjectionInputs(p.selected_profile, p.baseline_profile, p.batching_report, p.reaper_report)


def stage_pack(ctx: RunContext) -> tuple[str, list[str]]:
    from costeff.audit import AuditLog
    from costeff.pack import pack

    AuditLog.of(ctx.layout).checkpoint()  # the pack carries a head hash that a checkpoint vouches for
    sources = _folders(ctx, profile_fp32="baseline_profile", profile="selected_profile", quant="quant_report",
                       batching="batching_report", reaper="reaper_report", ramp="ramp_decision", verify="verify_report")
    p = ctx.products
    if sources:  # the run's own records, by hash: `costeff pack` and `costeff report` take them by default
        from costeff.pack.chain import write_run

        write_run(ctx.layout, ctx.stamp, sources, p.repository, p.model_name)
    result = pack(ctx.layout, repository=p.repository, sources=sources or None,
                  run=ctx.stamp if sources else None)
    p.pack_path, p.summary_path = result.path, result.summary_path
    return f"{result.path.name}: {len(result.manifest['files'])} files; summary {result.summary_path}", \
        [str(result.path)]


def stage_report(ctx: RunContext) -> tuple[str, list[str]]:
    from costeff.report import build_report

    folders = _folders(ctx, fp32="baseline_profile", profile="selected_profile", quant="quant_report",
                       batching="batching_report", reaper="reaper_report", ramp="ramp_decision")
    result = build_report(ctx.layout, folders, ctx.products.repository, run=ctx.stamp)
    return (f"{result.path}: one self-contained page, acceptance {result.criteria_passed} of "
            f"{result.criteria_total} PASS"), [result.path]


def _folders(ctx: RunContext, **records: str) -> dict[str, Path]:
    """``{record name: folder}`` of the products named, for those this run produced."""
    found = {name: getattr(ctx.products, product) for name, product in records.items()}
    return {name: Path(path).parent for name, path in found.items() if path is not None}


_RECORDS = ("baseline_profile", "selected_profile", "quant_report", "batching_report", "reaper_report",
            "ramp_decision")
STAGES = (
    Stage("policy", stage_policy, produces=("model", "observations", "policy")),
    Stage("quantize", stage_quantize, requires=("model", "observations"),
          produces=("quant_report", "selected_model", "selected_runtime", "baseline_rounds", "selected_rounds")),
    Stage("profile", stage_profile, requires=("model",), uses=("observations", "baseline_rounds", "selected_model"),
          produces=("baseline_profile", "selected_model", "selected_profile")),
    Stage("profile-selected", stage_profile_selected, requires=("selected_model",),
          uses=("observations", "selected_profile", "selected_runtime", "selected_rounds"),
          produces=("selected_profile",)),
    Stage("batching", stage_batching, requires=("selected_profile",), produces=("batching_report",)),
    Stage("triton", stage_triton, requires=("selected_model", "selected_profile"),
          uses=("batching_report", "quant_report"), produces=("repository", "model_name")),
    Stage("verify", stage_verify, requires=("repository", "model_name", "observations"), uses=("batching_report",),
          produces=("verify_report",)),
    Stage("reaper", stage_reaper, produces=("reaper_report",)),
    Stage("ramp", stage_ramp, uses=("repository", "model_name", "quant_report", "selected_profile",
                                     "baseline_profile", "batching_report", "reaper_report"),
          produces=("ramp_decision",)),
    Stage("pack", stage_pack, uses=(*_RECORDS, "verify_report", "repository", "model_name"),
          produces=("pack_path", "summary_path")),
    Stage("report", stage_report, uses=(*_RECORDS, "repository")),
)

"""``quantize``: build each precision variant, gate its fidelity, profile, select, write."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from costeff.artifacts import Workspace, atomic_write_text, provenance, sha256_file
from costeff.errors import CosteffError, InputError
from costeff.gates import all_passed
from costeff.quantization import build, recipe as recipes
from costeff.quantization.config import QuantizeConfig
from costeff.quantization.fidelity import PolicyOutputs, compare, run_policy
from costeff.quantization.records import QuantizationReport, VariantResult, write

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What every build and evaluation in one run shares."""

    config: QuantizeConfig
    base: Path  # pre-processed fp32 model every variant is built from
    work: Path
    input_name: str
    logits: str
    value: str | None
    calibration: np.ndarray
    evaluation: np.ndarray
    ref_eval: PolicyOutputs
    ref_cal: PolicyOutputs
    base_fp32: Path | None = None  # the model as given (OpenVINO converts it itself)
    recipe: build.Int8Recipe | None = None
    ov_ac_info: dict[str, Any] | None = None
    note: str = ""  # how the base model was pre-processed (made only when variants are built)
    finalists_hint: list[str] | None = None  # who the last screening of these cached variants kept
    ac_known: dict[str, Any] | None = None  # what accuracy control did in an earlier build (cache)
    ac_outcome: dict[str, Any] | None = None  # what it did in this one

    def outputs(self, path: Path, rows: str = "evaluation", session_config: dict | None = None,
                variant: VariantResult | None = None, obs: np.ndarray | None = None,
                chunk: int = 1024) -> PolicyOutputs:
        """The model's answers on ``obs`` (default: the named rows), ``chunk`` rows per call."""
        if obs is None:
            obs = self.evaluation if rows == "evaluation" else self.calibration
        if variant is not None and variant.backend == "openvino":
            from costeff.runtimes import RuntimeOptions

            return run_policy(path, obs, self.logits, self.value, backend="openvino", chunk=chunk,
                              options=RuntimeOptions(precision=variant.runtime["precision"]))
        from costeff.quantization.variants import trt_fp16
        from costeff.runtimes import RuntimeOptions

        name = variant.name if variant is not None else "fp32"
        return run_policy(path, obs, self.logits, self.value, chunk=chunk, options=RuntimeOptions(
            provider=self.config.provider, spinning=False, session_config=tuple((session_config or {}).items()),
            trt_fp16=trt_fp16(name, self.config.provider)))

    def evaluate(self, variant: VariantResult, path: Path) -> VariantResult:
        """Fidelity gates at batch 1 and at the largest served batch, and batch invariance (held-out rows only).

        The variant passes only if every gate passes at each batch size and its actions do not
        change with the rows batched beside it. The baseline's invariance is reported, not gated:
        it is the floor every variant is measured against.
        """
        from costeff.quantization.batches import invariance_gate, judge, served_batch_sizes, suffixed

        cfg = self.config
        run = lambda obs, batch: self.outputs(  # noqa: E731
            path, session_config=variant.session_config, variant=variant,
            obs=obs, chunk=batch)
        sizes = served_batch_sizes(cfg.batch_sizes)
        variant.fidelity_by_batch, variant.batch_invariance = judge(
            run, self.ref_eval, self.evaluation, cfg.tolerances, sizes, cfg.probe_rows, cfg.seed)
        variant.fidelity = variant.fidelity_by_batch[str(max(sizes))].fidelity
        variant.gates = suffixed(variant.fidelity_by_batch)
        inv_gate = invariance_gate(variant.batch_invariance, cfg.tolerances)
        if variant.baseline:
            if variant.batch_invariance.changed_rows:
                variant.notes.append(f"fp32 itself changes {variant.batch_invariance.changed_rows} action(s) "
                                     "with batch composition: the floor for every variant is above zero")
        else:
            variant.gates.append(inv_gate)
        variant.passed = all_passed(variant.gates)
        return variant


def quantize(model_path: Path | str, observations: np.ndarray, config: QuantizeConfig = QuantizeConfig(),
             out_dir: Path | str | None = None, progress: Any = None,
             cache: bool | Path | None = None, *, workspace: Workspace) -> QuantizationReport:
    """Lower ``model_path`` to each configured precision and keep only what decides like fp32. The report goes
    to ``out_dir`` (else a new folder in ``workspace``), the kept models to the workspace's models folder.

    ``cache``: reuse built and judged variants across runs (True: under the workspace home's cache, or a
    folder); speed is measured every run regardless."""
    from costeff.observations import split as split_rows, validate_observations
    from costeff.modelio import read_signature

    model_path = Path(model_path)
    sig = read_signature(model_path, dict(config.outputs))
    build.check_model(model_path)
    obs = validate_observations(np.asarray(observations), sig.input().sample_shape, "observations")
    obs = obs.astype(np.float32, copy=False)
    sp = split_rows(obs, config.calibration_fraction, config.seed, config.min_calibration, config.min_evaluation)
    with tempfile.TemporaryDirectory(prefix="costeff-quant-") as tmp:
        ctx = _context(model_path, sig, sp, config, Path(tmp))
        variants, recipe_info, cache_info = _built(ctx, model_path, obs, _cache_folder(cache, workspace), progress)
        return _finish(model_path, obs, sp, ctx, variants, recipe_info, ctx.note, out_dir, progress, workspace,
                       cache_info)


def _cache_folder(cache: bool | Path | None, workspace: Workspace) -> Path | None:
    from costeff.quantization import cache as vcache

    return vcache.default_root(workspace.home.cache) if cache is True else (Path(cache) if cache else None)


def _built(ctx: Context, model_path: Path, obs: np.ndarray, root: Path | None,
           progress: Any) -> tuple[list[VariantResult], dict[str, Any], dict[str, Any] | None]:
    """The built and judged variants: from the cache when a verified entry matches, else built (and stored)."""
    if root is None:
        return (*_build_all(ctx, progress), None)
    from costeff.hardware import detect
    from costeff.quantization import cache as vcache

    hw = detect()  # the key reads the ISA and the CPU model only
    k = vcache.key(sha256_file(model_path), _obs_sha256(obs), dataclasses.asdict(ctx.config),
                   {"isa": list(hw.isa), "cpu_model": hw.cpu_model})
    stored, why = vcache.load(root, k)
    info = {"root": str(root), "key": k["digest"], "libraries": k["libraries"]}
    if stored is not None:
        _tick(progress, "reused built variants")
        ctx.note, ctx.finalists_hint = stored.get("preprocessing", ""), vcache.finalists(root, k["digest"])
        n = sum(1 for v in stored["variants"] if v.built and not v.baseline)
        return stored["variants"], stored["recipe_info"], {**info, "reused": True, "variants_reused": n,
                                                             "reason": why}
    ctx.ac_known = vcache.ac_outcome(root, k)
    variants, recipe_info = _build_all(ctx, progress)
    if ctx.ac_outcome is not None:
        vcache.remember_ac(root, k, ctx.ac_outcome)
    try:
        entry = vcache.store(root, k, variants, {"recipe_info": recipe_info, "preprocessing": ctx.note})
        info.update(entry=str(entry), stored=True)
    except OSError as exc:  # a read-only or full cache costs the next run time, never this run
        info.update(stored=False, store_error=f"{type(exc).__name__}: {exc}")
    return variants, recipe_info, {**info, "reused": False, "reason": f"built: {why}"}


def _obs_sha256(obs: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(obs).tobytes()).hexdigest()


def _context(model_path: Path, sig: Any, sp: Any, config: QuantizeConfig, work: Path) -> Context:
    ref = lambda rows: run_policy(model_path, rows, sig.logits, sig.value, provider=config.provider)  # noqa: E731
    return Context(config, work / "base.onnx", work, sig.input().name, sig.logits, sig.value, sp.calibration,
                   sp.evaluation, ref(sp.evaluation), ref(sp.calibration), base_fp32=model_path)


def _build_all(ctx: Context, progress: Any) -> tuple[list[VariantResult], dict[str, Any]]:
    from costeff.hardware import detect
    from costeff.quantization import settings, structural
    from costeff.quantization.fallback import fallbacks
    from costeff.quantization.variants import plan

    assert ctx.base_fp32 is not None  # quantize() gives it
    # pre-processing costs seconds (it imports torch through onnxruntime.tools): only when building
    ctx.note = build.prepare_base(ctx.base_fp32, ctx.base)
    names, skipped = plan(ctx.config, detect(), _resolved_provider(ctx.config.provider))
    shaped = [n for n in names if n.split("+")[0] in structural.KINDS]
    ort_names = [n for n in names if not n.startswith("ov-") and n not in shaped]
    recipe_info: dict[str, Any] = {"name": None, "reason": "no onnxruntime int8 variant requested", "evidence": []}
    if any(v.split("+")[-1].startswith("int8") for v in ort_names + shaped):
        recipe_info = _choose_recipe(ctx)
    variants = [_baseline(ctx)]
    for name in ort_names:
        variants.append(_variant(ctx, name))
        _tick(progress, f"built {name}")
    if ctx.config.fallback:
        variants += fallbacks(ctx, variants)
    variants += _openvino(ctx, [n for n in names if n.startswith("ov-")], variants, progress)
    variants += structural.build_variants(ctx, shaped, lambda text: _tick(progress, text), _variant)
    variants += settings.runtime_variants(ctx, variants)  # x@threads=1: x's file and gates
    return variants + skipped, recipe_info


def _openvino(ctx: Context, names: list[str], built: list[VariantResult], progress: Any) -> list[VariantResult]:
    """The OpenVINO variants; accuracy control only after plain int8 failed, and only where it can pay."""
    from costeff.quantization import openvino as ov_build

    tick = lambda text: _tick(progress, text)  # noqa: E731
    ac = [n for n in names if ov_build.OV_VARIANTS[n].ir == "int8-ac"]
    out = ov_build.build_variants(ctx, [n for n in names if n not in ac], tick)
    why = None if ctx.config.variants is not None else _ac_not_needed(built + out, getattr(ctx, "ac_known", None))
    if why is None:
        tried = ov_build.build_variants(ctx, ac, tick)
        if tried:
            ctx.ac_outcome = {"restored_all": not any(v.built for v in tried),
                              "detail": next((v.error for v in tried if v.error), None)}
        return out + tried
    from costeff.quantization.variants import backend_of, precision_of

    return out + [VariantResult(n, backend=backend_of(n), precision=precision_of(n), not_tried=why) for n in ac]


def _ac_not_needed(variants: list[VariantResult], known: dict[str, Any] | None = None) -> str | None:
    """Why accuracy control would be wasted here, or None when it is worth its search (asked by name: always)."""
    from costeff.hardware import detect

    plain = [v for v in variants if v.name in ("ov-int8", "int8-dynamic", "int8-static") and v.built]
    passed = [v.name for v in plain if v.passed]
    if passed:
        return f"plain int8 ({', '.join(passed)}) already passed every gate; accuracy control only keeps more in float"
    ov8 = next((v for v in plain if v.name == "ov-int8"), None)
    if ov8 is not None and all(g.passed for g in ov8.gates if g.name != "batch_action_change_pct"):
        return "ov-int8 failed only batch invariance, which accuracy control does not measure: it cannot pass"
    hw = detect()
    if not hw.has_vnni:
        return (f"this CPU ({hw.cpu_model}) has no int8 dot-product instructions (VNNI/AMX): int8 with layers "
                "restored to float is unlikely to beat fp32 here; ask for it with --variants to build it")
    if known and known.get("restored_all") and "restored all" in str(known.get("detail")):
        return (f"when this model was last built on this host with these libraries, {known['detail'].split(':')[0]}:"
                " the result is the float IR (ov-fp32 / ov-bf16); ask for it with --variants to build it")
    return None


def _resolved_provider(provider: str) -> str:
    """``auto`` as onnxruntime resolves it: CUDA when onnxruntime-gpu can use it, else the CPU."""
    if provider != "auto":
        return provider
    from costeff.modelio import resolve_provider

    first = resolve_provider("auto")[0]
    return "cuda" if (first[0] if isinstance(first, tuple) else first) == "CUDAExecutionProvider" else "cpu"


def _baseline(ctx: Context) -> VariantResult:
    """fp32 judged like every variant: its batch-1 and batched answers against its own reference run."""
    assert ctx.base_fp32 is not None  # quantize() gives it
    return ctx.evaluate(VariantResult("fp32", built=True, baseline=True), ctx.base_fp32)


def _choose_recipe(ctx: Context) -> dict[str, Any]:
    """Try each candidate recipe (dynamic int8) on the calibration rows; keep the measured evidence."""
    from costeff.hardware import detect

    plan = recipes.plan(detect())
    evidence = []
    for cand in plan.candidates:
        path = ctx.work / f"recipe_{cand.name}.onnx"
        entry: dict[str, Any] = {"recipe": cand.name, "session_config": cand.session_config,
                                 "reduce_range": cand.reduce_range, "activation_type": cand.activation_type,
                                 "weight_type": cand.weight_type}
        try:
            build.build_dynamic(ctx.base, path, cand)
            fid = compare(ctx.ref_cal, ctx.outputs(path, "calibration", cand.session_config))
            entry.update(action_drift_pct=fid.action_drift_pct, kl_mean=fid.kl_mean,
                         entropy_drift_pct=fid.entropy_drift_pct)
        except Exception as exc:  # one candidate failing must not stop the others
            entry["error"] = f"{type(exc).__name__}: {exc}"
        if cand.session_config:
            entry["note"] = "evidence only: the setting lives in the serving session, not in the model file"
        evidence.append(entry)
    choosable = [e if not e["session_config"] else dict(e, error=e.get("error") or "session option") for e in evidence]
    ctx.recipe = plan.candidates[recipes.choose(choosable)]
    return {"name": ctx.recipe.name, "reason": plan.reason, "evidence": evidence,
            "settings": dataclasses.asdict(ctx.recipe)}


def _variant(ctx: Context, name: str) -> VariantResult:
    """Build and evaluate one variant; a failure is recorded on the variant, the others go on."""
    from costeff.quantization.variants import precision_of

    v = VariantResult(name, precision=precision_of(name))
    path = ctx.work / f"{name}.onnx"
    try:
        if name == "fp16":
            v.fp32_op_types = _build_fp16(ctx, path, v)
        else:
            recipe = ctx.recipe
            assert recipe is not None  # chosen before any int8 variant is built
            v.recipe, v.session_config = recipe.name, dict(recipe.session_config)
            if name == "int8-dynamic":
                build.build_dynamic(ctx.base, path, recipe)
            else:
                build.build_static(ctx.base, path, recipe, ctx.calibration, ctx.input_name,
                                   ctx.config.calibration_method)
        ctx.evaluate(v, path)
        v.built, v.path = True, str(path)
    except (CosteffError, Exception) as exc:  # noqa: BLE001 - reported on the variant, run goes on
        v.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:400]
        log.warning("variant %s failed: %s", name, v.error)
    return v


def _build_fp16(ctx: Context, path: Path, v: VariantResult, node_block: list[str] | None = None) -> list[str]:
    """fp16; an op the provider has no fp16 kernel for is added to the block list and retried."""
    from costeff.errors import DependencyError
    from costeff.quantization.fidelity import open_session

    extra = list(ctx.config.op_block_list)
    for _ in range(8):
        blocked = build.build_fp16(ctx.base, path, extra, node_block or [])
        try:
            open_session(path, ctx.config.provider)
            return blocked
        except DependencyError as exc:
            op = build.missing_kernel_op(str(exc))
            if not op or op in extra:
                raise
            extra.append(op)
            v.notes.append(f"{op} has no fp16 kernel on {ctx.config.provider}; kept in fp32")
    raise InputError("fp16: too many ops without fp16 kernels")


def _tick(progress: Any, text: str) -> None:
    if progress is not None:
        progress.advance(1, description=text)


def _finish(model_path: Path, obs: np.ndarray, sp: Any, ctx: Context, variants: list[VariantResult],
            recipe_info: dict[str, Any], note: str, out_dir: Path | str | None, progress: Any,
            layout: Workspace, cache_info: dict[str, Any] | None = None) -> QuantizationReport:
    from costeff.quantization.select import apply_speed, select_and_cost

    variants[0].path = str(model_path)
    speed_method, timing = apply_speed(ctx, model_path, obs, variants, progress)
    remember_finalists(cache_info, timing)
    measured = dict(timing.results)
    selected, cost = select_and_cost(variants, ctx.config, obs, timing.noise_floor, measured)
    out = layout.run_dir("quant", out_dir)
    name = ctx.config.name or model_path.stem
    _save_models(variants, layout.models, name, model_path)
    sel = next(v for v in variants if v.name == selected["name"])
    assert sel.path is not None  # only a built variant is selected
    selected.update(path=str(Path(sel.path).resolve()), sha256=sel.sha256, speedup=sel.speedup)
    head = provenance(model_path)
    rep = QuantizationReport(
        head["schema_version"], head["created_at"], head["costeff_version"], head["model_sha256"],
        str(model_path.resolve()), name, head["hardware"], dataclasses.asdict(ctx.config),
        _split_info(sp, ctx.config, obs), recipe_info, note, variants, selected,
        any(v.passed for v in variants if not v.baseline), cost, speed_method, str(out.resolve()),
        timing.noise_floor, timing.rounds, cache_info, measured)
    write(rep, out)
    return rep


def remember_finalists(cache_info: dict[str, Any] | None, timing: Any) -> bool:
    """Keep this run's finalists beside its cache entry when it screened, undisturbed (a busy screening
    may have dropped the winner: the next run screens again)."""
    screen = next((r for r in timing.rounds if r.get("kind") == "screen"), None)
    if not cache_info or screen is None or screen["disturbed"]:
        return False
    from costeff.quantization import cache as vcache

    vcache.remember_finalists(Path(cache_info["root"]), cache_info["key"], timing.finalists)
    return True


def _split_info(sp: Any, config: QuantizeConfig, obs: np.ndarray) -> dict[str, Any]:
    return {"calibration_rows": sp.calibration_rows, "evaluation_rows": sp.evaluation_rows, "seed": sp.seed,
            "calibration_fraction": config.calibration_fraction, "min_calibration": config.min_calibration,
            "min_evaluation": config.min_evaluation, "observations_rows": int(len(obs)),
            "observations_sha256": _obs_sha256(obs),
            "disjoint": True, "fidelity_rows": "evaluation"}


def _save_models(variants: list[VariantResult], models: Path, name: str, model_path: Path) -> None:
    """Copy each built variant to ``<models>/<name>_<variant>.onnx`` (IR: ``.xml`` + ``.bin``), hashed."""
    models.mkdir(parents=True, exist_ok=True)
    base_size = model_path.stat().st_size
    for v in variants:
        if not v.built or v.path is None or v.settings_of:
            continue
        src = Path(v.path)
        dst = models / f"{name}_{v.name}{src.suffix}"
        files = [(src, dst)] + ([(src.with_suffix(".bin"), dst.with_suffix(".bin"))] if src.suffix == ".xml" else [])
        for a, b in reversed(files):  # the weights first: an .xml never points at a missing .bin
            tmp = b.with_name(b.name + ".tmp")
            shutil.copyfile(a, tmp)
            tmp.replace(b)
        v.path, v.sha256 = str(dst.resolve()), sha256_file(dst)
        v.size_bytes = sum(b.stat().st_size for _, b in files)
        v.size_reduction_pct = 100.0 * (1 - v.size_bytes / base_size)
        lines = "".join(f"{sha256_file(b)}  {b.name}\n" for _, b in files)
        atomic_write_text(models / f"{dst.name}.sha256", lines)
    from costeff.quantization.settings import share_files

    share_files(variants)

"""``build_repository``: package a model as a Triton model-repository entry.

Writes ``<repository>/<name>/config.pbtxt``, the model's files as a new version ``<name>/<N>/``
(earlier versions stay, see ``versions``) and the build's provenance ``<name>/costeff_build.json``
(+ ``.md``). Everything is checked first and written into a temporary folder beside the target,
validated, then renamed into place: a failed build leaves the previous entry untouched and no
partial one.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from costeff._jsonable import to_jsonable
from costeff.artifacts import atomic_write_text, inputs_of, provenance, sha256_file
from costeff.errors import InputError
from costeff.records.batching import BatchingRecord
from costeff.records.kinds import BATCHING, BUILD, PROFILE
from costeff.records.profile import ProfileRecord
from costeff.serving.config import DEFAULT_WORKSPACE_BYTES, BatchingSettings, model_config, to_text
from costeff.serving.precision import choose_accelerator, fp16_passed, model_precision
from costeff.serving.threads import ThreadPlan, plan_threads
from costeff.serving.versions import DEFAULT_KEEP, entry_lock, next_version, pin, stage

INSTANCE_KINDS = ("gpu", "cpu")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class BuildConfig:
    model_path: Path
    profile_path: Path
    repository: Path
    name: str | None = None
    batching_report: Path | None = None
    instance_kind: str | None = None  # None: GPU when the profile was measured on one
    quantization_report: Path | None = None
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES
    keep_versions: int = DEFAULT_KEEP  # versions left on disk, the new one included
    serving_cpus: float | None = None  # the Triton container's CPU limit; None: this host's usable CPUs
    instances: int = 1  # model instances in one Triton server (instance_group count)

    def __post_init__(self) -> None:
        if self.serving_cpus is not None and not (isinstance(self.serving_cpus, (int, float))
                                                  and 0 < self.serving_cpus < math.inf):
            raise InputError(f"--serving-cpus: {self.serving_cpus!r}; expected a number of CPUs > 0, e.g. 1.5")
        if not isinstance(self.instances, int) or self.instances < 1:
            raise InputError(f"--instances: {self.instances!r}; expected an integer >= 1")
        if self.instance_kind is not None and self.instance_kind not in INSTANCE_KINDS:
            raise InputError(f"--instance-kind: {self.instance_kind!r}; expected one of {', '.join(INSTANCE_KINDS)}")
        if self.name is not None and not _NAME.match(self.name):
            raise InputError(f"--name: {self.name!r} is not a usable model directory name "
                             "(letters, digits, '_', '-', '.')")
        if self.workspace_bytes <= 0:
            raise InputError(f"workspace_bytes: {self.workspace_bytes} must be > 0")
        if self.keep_versions < 1:
            raise InputError(f"--keep-versions: {self.keep_versions}; expected >= 1")


@dataclass
class BuildResult:
    schema_version: int
    created_at: str
    costeff_version: str
    model_sha256: str
    hardware: dict[str, Any]
    name: str
    model_dir: str
    config_path: str
    model_path: str
    source_model: str
    profile_path: str
    batching_report: str | None
    quantization_report: str | None
    model_precision: str
    instance_kind: str
    batching: BatchingSettings
    tensorrt_precision_mode: str | None
    accelerator_reason: str
    notes: list[str] = field(default_factory=list)
    backend: str = "onnxruntime"
    variant: str | None = None  # the quantization report's name for what is served
    parameters: dict[str, str] = field(default_factory=dict)  # the backend's config parameters
    version: int = 1
    versions_kept: list[int] = field(default_factory=list)
    threads: ThreadPlan | None = None  # the serving container's CPUs and the threads per instance
    inputs: dict[str, str] = field(default_factory=dict)  # {kind: sha256} of the records it was made from


def build_repository(config: BuildConfig) -> BuildResult:
    """Add a version of ``config.model_path`` to its entry; InputError before anything is written."""
    from costeff.modelio import read_signature

    from costeff.serving.served import resolve

    model_sha = sha256_file(_existing(config.model_path, "MODEL"))
    served = resolve(config.model_path, model_sha, config.quantization_report)
    profile = PROFILE.read(_existing(config.profile_path, "--profile"))
    _check_hash(profile, served.sha256, served.path, config.profile_path, also=(model_sha, config.model_path))
    notes: list[str] = list(served.notes)
    batching = replace(_batching(config, profile, served.sha256, notes), instances=config.instances)
    signature = read_signature(served.path)
    kind = config.instance_kind or _default_kind(profile, notes)
    if served.backend == "openvino" and kind == "gpu":
        raise InputError(f"{served.path}: an OpenVINO IR is served on CPU instances; drop --instance-kind gpu")
    threads = plan_threads(served.backend, kind, config.instances, config.serving_cpus, served.measured_threads)
    parameters = {**served.parameters, **threads.parameters}
    if threads.pools > 1 and (threads.threads_per_instance or 0) * threads.pools > threads.serving_cpus:
        notes.append(f"{threads.pools} instances of at least one thread each outnumber {threads.serving_cpus:g} "
                     "serving CPUs: they will be throttled; fewer --instances fit")
    precision = served.precision or model_precision(served.path)
    accel = choose_accelerator(precision, kind, fp16_passed(config.quantization_report))
    name = config.name or _default_name(config.model_path)
    message = model_config(name, signature, batching, kind, accel.precision_mode, config.workspace_bytes,
                           backend=served.backend, parameters=parameters)
    target = config.repository / name
    result = BuildResult(**provenance(served.path), name=name, model_dir=str(target),
                         config_path=str(target / "config.pbtxt"),
                         model_path=served.files[-1][1],  # inside the version folder, once it is numbered
                         source_model=str(served.path), profile_path=str(config.profile_path),
                         batching_report=_opt(config.batching_report),
                         quantization_report=_opt(config.quantization_report), model_precision=precision,
                         instance_kind=kind, batching=batching, tensorrt_precision_mode=accel.precision_mode,
                         accelerator_reason=accel.reason, notes=notes, backend=served.backend,
                         variant=served.variant, parameters=parameters, threads=threads,
                         inputs={"model": model_sha, **inputs_of(profile=config.profile_path,
                                                                 batching_report=config.batching_report,
                                                                 quantization_report=config.quantization_report)})
    _write(target, message, served.files, result, profile.hardware, config.keep_versions)
    return result


def _record_served(target: Path, result: BuildResult) -> None:
    from costeff.serving.control import after_build

    after_build(target, result.version, result.model_sha256)


def _existing(path: Path, what: str) -> Path:
    if not Path(path).is_file():
        raise InputError(f"{what} {path}: no such file")
    return Path(path)


def _check_hash(report: ProfileRecord | BatchingRecord, model_sha: str, model: Path, report_path: Path,
                also: tuple[str, Path] | None = None) -> None:
    """``report`` must have measured ``model`` (or ``also``: the fp32 source of a served variant)."""
    recorded = report.model_sha256
    if not recorded:
        raise InputError(f"{report_path}: no model_sha256; cannot tell which model it measured")
    if recorded != model_sha and (also is None or recorded != also[0]):
        raise InputError(f"{report_path} measured model sha256 {recorded}, but {model} has sha256 {model_sha}: "
                         "profile the model being packaged")


def _batching(config: BuildConfig, profile: ProfileRecord, model_sha: str, notes: list[str]) -> BatchingSettings:
    if config.batching_report is None:
        return _from_profile(profile, config.profile_path, notes)
    report = BATCHING.read(_existing(config.batching_report, "--batching"))
    if report.model_sha256:
        _check_hash(report, model_sha, config.model_path, config.batching_report)
    chosen = report.chosen
    if chosen is None:
        raise InputError(f"--batching {config.batching_report}: no 'chosen' block; expected the output of "
                         "`costeff batching optimize`")
    settings = BatchingSettings(chosen.max_batch_size, tuple(chosen.preferred_batch_size),
                                int(chosen.max_queue_delay_us), 1, source=f"batching report {config.batching_report}",
                                replicas=chosen.instances)
    if settings.replicas > 1:
        # The simulator priced and modelled independent servers; several instance_group
        # instances on one device would share it, which it did not model.
        notes.append(f"the optimizer chose {settings.replicas} independent servers: deploy {settings.replicas} "
                     "replicas of this repository, one model instance each")
    return settings


def _from_profile(profile: ProfileRecord, path: Path, notes: list[str]) -> BatchingSettings:
    """Settings from the profile's optimal batch when no simulation chose them.

    The queue may hold a request for half the slack between the latency budget and the
    optimal batch's p99 (so waiting plus serving stays inside the budget), or for one
    service time when no budget was set.
    """
    batch = profile.optimal.batch_size if profile.optimal else None
    if batch is None or batch < 1:
        raise InputError(f"--profile {path}: optimal.batch_size missing; expected a gpu_profile.json from "
                         "`costeff profile`")
    p99 = (profile.optimal.latency_p99_ms if profile.optimal else None) or 0.0
    budget = profile.config.latency_budget_ms
    delay_ms = max(0.0, (float(budget) - p99) / 2) if budget else p99
    notes.append(f"no batching report: settings derived from the profile's optimal batch {batch} and not "
                 "simulated; run `costeff batching optimize` for measured-traffic settings")
    return BatchingSettings(batch, (batch,), int(round(delay_ms * 1000)), 1, source=f"profile {path} optimal batch")


def _default_kind(profile: ProfileRecord, notes: list[str]) -> str:
    kind = "gpu" if profile.host.gpus else "cpu"
    notes.append(f"instance kind {kind}: the profile was measured {'on a GPU' if kind == 'gpu' else 'without a GPU'}")
    return kind


def _default_name(model_path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(model_path).stem)
    return name if _NAME.match(name) else f"model_{name}"


def _opt(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _write(target: Path, message: Any, files: list[tuple[Path, str]], result: BuildResult,
           hardware: dict[str, Any] | None, keep: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with entry_lock(target, create=True):  # two builds of one model must not both take version N+1
        result.version = next_version(target)
        result.model_path = str(target / str(result.version) / result.model_path)
        _stage_and_swap(target, to_text(pin(message, result.version)), files, result, hardware, keep)
        _record_served(target, result)


def _stage_and_swap(target: Path, config_text: str, files: list[tuple[Path, str]], result: BuildResult,
                    hardware: dict[str, Any] | None, keep: int) -> None:
    from costeff.serving.validate import validate_config

    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        entry = staging / target.name
        result.versions_kept = stage(entry, target, result.version, {name: src for src, name in files}, keep,
                                     result.model_sha256, result.source_model)
        atomic_write_text(entry / "config.pbtxt", config_text)
        atomic_write_text(entry / "costeff_build.md", render_markdown(result))
        BUILD.write(entry, to_jsonable(result))
        check = validate_config(entry / "config.pbtxt", hardware=hardware)
        if not check.valid:  # a generated config that Triton would reject is a bug, never an artifact
            raise InputError("generated config failed validation: " + "; ".join(map(str, check.problems)))
        _swap_into_place(entry, target, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_into_place(entry: Path, target: Path, staging: Path) -> None:
    if target.exists():
        target.rename(staging / "previous")  # same filesystem: rename, then the new entry takes its place
    entry.rename(target)


def _cpus_row(plan: ThreadPlan | None) -> str:
    return "not recorded" if plan is None else f"{plan.serving_cpus:g} ({plan.serving_cpus_source})"


def _threads_row(plan: ThreadPlan | None) -> str:
    if plan is None:
        return "not recorded"
    if plan.threads_per_instance is None:
        return f"not set ({plan.reason})"
    return f"{plan.threads_per_instance} ({plan.reason})"


def render_markdown(result: BuildResult) -> str:
    b = result.batching
    rows = [("model", f"{result.source_model} (sha256 {result.model_sha256[:12]}…, {result.model_precision})"),
            ("version", f"{result.version} (served; on disk: {', '.join(map(str, result.versions_kept))})"),
            ("backend", result.backend + (f" (variant {result.variant})" if result.variant else "")),
            ("backend parameters", ", ".join(f"{k}={v}" for k, v in result.parameters.items()) or "none"),
            ("serving CPUs", _cpus_row(result.threads)),
            ("threads per instance", _threads_row(result.threads)),
            ("max_batch_size", b.max_batch_size), ("preferred_batch_size", list(b.preferred_batch_size)),
            ("max_queue_delay_microseconds", b.max_queue_delay_us),
            ("instance_group", f"{b.instances} × KIND_{result.instance_kind.upper()}"),
            ("replicas to deploy", b.replicas),
            ("TensorRT precision", result.tensorrt_precision_mode or "none"),
            ("settings from", b.source)]
    lines = [f"# Triton model `{result.name}`", "", "| setting | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += ["", f"TensorRT: {result.accelerator_reason}.", ""] + [f"- {n}" for n in result.notes]
    return "\n".join(lines) + "\n"

"""Check a Triton ``config.pbtxt``: Triton's own schema first, then what the schema cannot say.

``text_format.Parse`` against ``ModelConfig`` rejects unknown fields, bad enums and
wrong types, but accepts a preferred batch size above ``max_batch_size``, any
``precision_mode`` string, or tensors that do not exist in the model: those are the
semantic checks here. Every problem is listed, not just the first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from costeff.errors import InputError
from costeff.serving.config import BACKEND, OV_BACKEND, PLATFORM, triton_schema
from costeff.serving.precision import PRECISION_MODES, model_precision
from costeff.serving.problem import Problem
from costeff.serving.threads import check_threads

if TYPE_CHECKING:
    from costeff.records.build import BuildRecord

# Parameters Triton's onnxruntime backend reads for its TensorRT accelerator.
TRT_PARAMETERS = {"precision_mode", "max_workspace_size_bytes", "max_cached_engines", "minimum_segment_size",
                  "trt_engine_cache_enable", "trt_engine_cache_path", "int8_calibration_table_name",
                  "int8_use_native_calibration_table", "trt_dla_enable", "trt_dla_core",
                  "trt_build_heuristics_enable", "trt_sparsity_enable", "trt_builder_optimization_level",
                  "trt_auxiliary_streams", "trt_timing_cache_enable", "trt_timing_cache_path"}
GPU_ACCELERATORS = {"tensorrt", "cuda"}
CPU_ACCELERATORS = {"openvino"}


@dataclass
class ValidationReport:
    config_path: str
    model_path: str | None
    model_precision: str | None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    serving_cpus: float | None = None  # the CPU limit thread pools were checked against, when stated

    @property
    def valid(self) -> bool:
        return not self.problems


def validate_config(config_path: Path | str, model_path: Path | str | None = None,
                    hardware: dict[str, Any] | None = None, serving_cpus: float | None = None) -> ValidationReport:
    """Parse ``config_path`` with Triton's schema and run the semantic checks.

    The model defaults to ``<config dir>/<newest version>/model.onnx`` (``model.xml``
    for the openvino backend, or ``default_model_filename``); without one the tensor
    and precision checks are skipped with a warning. ``hardware`` (a report's
    hardware block; default: the ``costeff_build.json`` beside the config, else this
    host) is what backend settings such as a bf16 hint are checked against.
    ``serving_cpus`` (default: the one recorded in ``costeff_build.json``) is the
    Triton container's CPU limit that the thread pools must fit in.
    """
    path = Path(config_path)
    text = _read(path)
    cfg, parse_problem = _parse(text)
    model = _model_file(path, cfg, model_path)
    report = ValidationReport(str(path), str(model) if model else None, None)
    if parse_problem:
        report.problems.append(parse_problem)
        return report
    lines = _LineFinder(text)
    _check_identity(cfg, path, report, lines)
    _check_versions(cfg, path, report, lines)
    _check_batching(cfg, report, lines)
    _check_instances(cfg, report, lines)
    report.serving_cpus = serving_cpus or _recorded_cpus(path)
    check_threads(cfg, report.serving_cpus, report, lines)
    if cfg.backend == OV_BACKEND:
        from costeff.serving.ov_validate import check_openvino

        if check_openvino(cfg, path, model, _hardware(path, hardware), report, lines) and model is not None:
            _check_tensors(cfg, model, report, lines)
        return report
    if model is None:
        report.warnings.append("no model file found: tensor and precision checks skipped (pass --model)")
        _check_accelerators(cfg, None, report, lines)
        return report
    _check_tensors(cfg, model, report, lines)
    report.model_precision = model_precision(model)
    _check_accelerators(cfg, report.model_precision, report, lines)
    return report


def _check_versions(cfg: Any, path: Path, report: ValidationReport, lines: _LineFinder) -> None:
    from costeff.serving.versions import pinned_versions, version_numbers

    on_disk = version_numbers(path.parent)
    for missing in sorted(set(pinned_versions(cfg)) - set(on_disk)):
        report.problems.append(Problem("version_policy.specific.versions", f"pins version {missing}, but "
                                       f"{path.parent} has no folder {missing} (versions: {on_disk or 'none'})",
                                       lines("versions")))


def _build_record(config: Path) -> BuildRecord | None:
    """The ``costeff_build.json`` beside ``config``; None when there is none (a hand-written entry).
    A corrupt one is an error naming it, never read as absent."""
    from costeff.records.kinds import BUILD

    path = BUILD.path_in(config.parent)
    return BUILD.read(path) if path.is_file() else None


def _recorded_cpus(config: Path) -> float | None:
    record = _build_record(config)
    return record.threads.serving_cpus if record is not None and record.threads is not None else None


def _hardware(config: Path, given: dict[str, Any] | None) -> dict[str, Any]:
    if given:
        return given
    record = _build_record(config)
    if record is not None and record.hardware is not None:
        return record.hardware
    from costeff.hardware import detect

    return detect().to_dict()


def _read(path: Path) -> str:
    if not path.is_file():
        raise InputError(f"{path}: no such config file; expected a Triton config.pbtxt")
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read as text ({exc})") from None


def _parse(text: str) -> tuple[Any, Problem | None]:
    from google.protobuf import text_format
    pb = triton_schema()

    cfg = pb.ModelConfig()
    try:
        text_format.Parse(text, cfg)
    except text_format.ParseError as exc:
        line = exc.GetLine() if hasattr(exc, "GetLine") else None
        message = re.sub(r"^\d+:\d+ : ", "", str(exc))
        return cfg, Problem("schema", f"Triton's ModelConfig rejects it: {message}", line)
    return cfg, None


def _model_file(config: Path, cfg: Any, explicit: Path | str | None) -> Path | None:
    if explicit is not None:
        if not Path(explicit).is_file():
            raise InputError(f"--model {explicit}: no such model file")
        return Path(explicit)
    from costeff.serving.versions import pinned_versions

    filename = cfg.default_model_filename or ("model.xml" if cfg.backend == OV_BACKEND else "model.onnx")
    versions = sorted((p for p in config.parent.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    pinned = pinned_versions(cfg)
    if pinned:  # the version the config serves, not merely the highest number on disk
        versions = [v for v in versions if int(v.name) in pinned]
    found = [v / filename for v in versions if (v / filename).is_file()]
    return found[-1] if found else None


def _pattern(token: str) -> re.Pattern[str]:
    # word boundaries only where the token starts/ends with a word character ("name" vs name)
    left = r"\b" if token[:1].isalnum() or token[:1] == "_" else ""
    right = r"\b" if token[-1:].isalnum() or token[-1:] == "_" else ""
    return re.compile(left + re.escape(token) + right)


class _LineFinder:
    """Line numbers for semantic problems: the first line mentioning the field."""

    def __init__(self, text: str) -> None:
        self._lines = text.splitlines()

    def __call__(self, token: str, after: int = 0) -> int | None:
        for number, line in enumerate(self._lines[after:], start=after + 1):
            if _pattern(token).search(line):
                return number
        return None

    def all(self, token: str) -> list[int]:
        return [n for n, line in enumerate(self._lines, start=1) if _pattern(token).search(line)]


def _check_identity(cfg: Any, path: Path, report: ValidationReport, lines: _LineFinder) -> None:
    if cfg.name and cfg.name != path.parent.name:
        report.problems.append(Problem("name", f"{cfg.name!r} differs from the model directory "
                                       f"{path.parent.name!r}; Triton refuses to load it", lines("name")))
    if cfg.backend == OV_BACKEND:
        if cfg.platform:
            report.problems.append(Problem("platform", f"{cfg.platform!r} set with backend 'openvino'; the "
                                           "openvino backend takes no platform", lines("platform")))
        return
    if cfg.platform and cfg.platform != PLATFORM:
        report.problems.append(Problem("platform", f"{cfg.platform!r} cannot serve an ONNX model; expected "
                                       f"{PLATFORM!r}", lines("platform")))
    if cfg.backend and cfg.backend != BACKEND:
        report.problems.append(Problem("backend", f"{cfg.backend!r} cannot serve an ONNX model; expected "
                                       f"{BACKEND!r}", lines("backend")))
    if not cfg.platform and not cfg.backend:
        report.warnings.append(f"neither platform nor backend set: Triton will guess; say {BACKEND!r}")


def _check_batching(cfg: Any, report: ValidationReport, lines: _LineFinder) -> None:
    mbs = cfg.max_batch_size
    if mbs < 0:
        report.problems.append(Problem("max_batch_size", f"{mbs} must be >= 0", lines("max_batch_size")))
    if not cfg.HasField("dynamic_batching"):
        return
    if mbs <= 0:
        report.problems.append(Problem("dynamic_batching", "needs max_batch_size > 0 (the model must batch)",
                                       lines("dynamic_batching")))
    sizes = list(cfg.dynamic_batching.preferred_batch_size)
    found = lines.all("preferred_batch_size")
    seen: set[int] = set()
    for index, size in enumerate(sizes):
        # one line per size when written as repeated fields, else the list's line
        line = found[index] if len(found) == len(sizes) else (found[0] if found else None)
        if size <= 0:
            report.problems.append(Problem("preferred_batch_size", f"{size} must be > 0", line))
        elif mbs > 0 and size > mbs:
            report.problems.append(Problem("preferred_batch_size", f"{size} exceeds max_batch_size {mbs}: "
                                           "the batcher can never form it", line))
        if size in seen:
            report.problems.append(Problem("preferred_batch_size", f"{size} listed twice", line))
        seen.add(size)


def _check_instances(cfg: Any, report: ValidationReport, lines: _LineFinder) -> None:
    pb = triton_schema()

    kinds = pb.ModelInstanceGroup
    for group in cfg.instance_group:
        line = lines("instance_group")
        if group.count < 1:
            report.problems.append(Problem("instance_group.count", f"{group.count} must be >= 1 "
                                           "(0 serves nothing)", lines("count") or line))
        if group.kind == kinds.KIND_MODEL:
            report.problems.append(Problem("instance_group.kind", "KIND_MODEL is for backends that place "
                                           "themselves; use KIND_GPU or KIND_CPU for onnxruntime", line))
        if group.gpus and group.kind != kinds.KIND_GPU:
            report.problems.append(Problem("instance_group.gpus", f"GPU ids {list(group.gpus)} given for "
                                           f"{kinds.Kind.Name(group.kind)}; only KIND_GPU places on GPUs", line))


def _check_tensors(cfg: Any, model: Path, report: ValidationReport, lines: _LineFinder) -> None:
    from costeff.modelio import read_signature

    sig = read_signature(model)
    for kind, declared, actual in (("input", cfg.input, sig.inputs), ("output", cfg.output, sig.outputs)):
        _compare_tensors(kind, declared, {s.name: s for s in actual}, cfg.max_batch_size, report, lines)


def _compare_tensors(kind: str, declared: Any, actual: dict[str, Any], mbs: int, report: ValidationReport,
                     lines: _LineFinder) -> None:
    pb = triton_schema()

    names = [t.name for t in declared]
    for missing in sorted(set(actual) - set(names)):
        report.problems.append(Problem(kind, f"the model's {kind} {missing!r} is not declared", lines(kind)))
    for tensor in declared:
        line = lines(f'"{tensor.name}"') or lines(kind)
        spec = actual.get(tensor.name)
        if spec is None:
            report.problems.append(Problem(f"{kind} {tensor.name}", f"not in the model; its {kind}s are "
                                           f"{sorted(actual)}", line))
            continue
        dtype = pb.DataType.Name(tensor.data_type)
        if dtype != spec.triton_dtype:
            report.problems.append(Problem(f"{kind} {tensor.name}.data_type", f"{dtype} but the model has "
                                           f"{spec.triton_dtype}", line))
        expected = [-1 if d is None else d for d in (spec.sample_shape if mbs > 0 else spec.shape)]
        if list(tensor.dims) != expected:
            note = " (dims leave out the batch dimension when max_batch_size > 0)" if mbs > 0 else ""
            report.problems.append(Problem(f"{kind} {tensor.name}.dims", f"{list(tensor.dims)} but the model "
                                           f"has {expected}{note}", line))


def _check_accelerators(cfg: Any, precision: str | None, report: ValidationReport, lines: _LineFinder) -> None:
    pb = triton_schema()

    accel = cfg.optimization.execution_accelerators
    gpu_instances = any(g.kind in (pb.ModelInstanceGroup.KIND_GPU, pb.ModelInstanceGroup.KIND_AUTO)
                        for g in cfg.instance_group) or not cfg.instance_group
    for acc in accel.gpu_execution_accelerator:
        line = lines(f'"{acc.name}"') or lines("gpu_execution_accelerator")
        if acc.name not in GPU_ACCELERATORS:
            report.problems.append(Problem("gpu_execution_accelerator.name", f"{acc.name!r} is not a GPU "
                                           "accelerator of the onnxruntime backend "
                                           f"({sorted(GPU_ACCELERATORS)})", line))
        if not gpu_instances:
            report.problems.append(Problem("gpu_execution_accelerator", "set but every instance_group is "
                                           "KIND_CPU: it would never run", line))
        if acc.name == "tensorrt":
            _check_trt(acc.parameters, precision, report, lines)
    for acc in accel.cpu_execution_accelerator:
        if acc.name not in CPU_ACCELERATORS:
            report.problems.append(Problem("cpu_execution_accelerator.name", f"{acc.name!r} is not a CPU "
                                           f"accelerator of the onnxruntime backend ({sorted(CPU_ACCELERATORS)})",
                                           lines(f'"{acc.name}"')))


def _check_trt(params: Any, precision: str | None, report: ValidationReport, lines: _LineFinder) -> None:
    for key in sorted(set(params) - TRT_PARAMETERS):
        report.problems.append(Problem(f"tensorrt.parameters {key}", "not a TensorRT parameter of the "
                                       "onnxruntime backend", lines(f'"{key}"')))
    mode = params.get("precision_mode", "FP32")
    line = lines('"precision_mode"')
    if mode not in PRECISION_MODES:
        report.problems.append(Problem("tensorrt.precision_mode", f"{mode!r}; expected one of "
                                       f"{', '.join(PRECISION_MODES)}", line))
    elif precision is not None:
        _check_mode_fits(mode, precision, "int8_calibration_table_name" in params, report, line)
    size = params.get("max_workspace_size_bytes")
    if size is not None and not (size.isdigit() and int(size) > 0):
        report.problems.append(Problem("tensorrt.max_workspace_size_bytes", f"{size!r} must be a positive "
                                       "integer number of bytes", lines('"max_workspace_size_bytes"')))


def _check_mode_fits(mode: str, precision: str, calibrated: bool, report: ValidationReport, line: int | None) -> None:
    if mode == "FP16" and precision.startswith("int8"):
        report.problems.append(Problem("tensorrt.precision_mode", f"FP16 on an {precision} model undoes its "
                                       "int8 quantization; use INT8 for a QDQ graph or no TensorRT", line))
    if mode == "INT8" and precision == "int8-dynamic":
        report.problems.append(Problem("tensorrt.precision_mode", "INT8 needs an explicit QDQ graph; this "
                                       "model is dynamically quantized", line))
    if mode == "INT8" and not precision.startswith("int8") and not calibrated:
        report.problems.append(Problem("tensorrt.precision_mode", f"INT8 on a {precision} model without "
                                       "int8_calibration_table_name: TensorRT has no scales", line))

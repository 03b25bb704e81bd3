"""What a repository entry serves: MODEL, or the variant a quantization report selected.

Given the fp32 MODEL and the quantization report made from it, the entry serves
the report's selected variant (checked by its SHA-256), on the backend that runs
it: an ONNX file on Triton's onnxruntime backend, an OpenVINO IR on Triton's
openvino backend with the precision, hint and streams it was measured with as
the backend's parameters (its threads are capped to the serving container's CPUs
by ``serving.threads``).

Why the openvino backend and not the onnxruntime backend's OpenVINO accelerator:
the accelerator takes ONNX only, so NNCF int8 IR cannot go through it, and its
settings are the OpenVINO execution provider's rather than the ones measured
here. The openvino backend loads the measured IR as is (README of
triton-inference-server/openvino_backend, "Parameters").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, ValidationError

from costeff.artifacts import sha256_file
from costeff.errors import InputError
from costeff.records import Part
from costeff.records.profile import Hardware
from costeff.records.quant import QuantRecord, Selected, Variant

P = TypeVar("P", bound=Part)

OV_PARAMETERS = {"PERFORMANCE_HINT", "INFERENCE_NUM_THREADS", "COMPILATION_NUM_THREADS", "HINT_BF16",
                 "NUM_STREAMS", "SKIP_OV_DYNAMIC_BATCHSIZE", "ENABLE_BATCH_PADDING", "RESHAPE_IO_LAYERS",
                 "TARGET_DEVICE", "CPU_EXTENSION_PATH"}


@dataclass(frozen=True)
class Served:
    path: Path
    sha256: str
    backend: str  # "onnxruntime" or "openvino"
    variant: str | None  # the quantization report's name for it, when known
    precision: str | None  # the report's precision, e.g. "bf16", "int8+bf16"
    parameters: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    measured_threads: int | None = None  # the threads the variant was measured with, when the report says

    @property
    def files(self) -> list[tuple[Path, str]]:
        """(source, name inside the version folder)."""
        if self.backend == "openvino":
            return [(self.path.with_suffix(".bin"), "model.bin"), (self.path, "model.xml")]
        return [(self.path, "model.onnx")]


class OvRuntime(Part):
    """The OpenVINO runtime settings a variant was measured with (its ``runtime`` block)."""

    performance_hint: str | None = None
    streams: int | None = None
    precision: str | None = None
    threads: int | None = None


class Threads(Part):
    """A thread count chosen as a runtime setting (a variant's ``runtime`` or ``settings`` block)."""

    threads: int | None = Field(default=None, strict=True, gt=0)


def resolve(model: Path, model_sha: str, report_path: Path | None) -> Served:
    """MODEL itself, or the selected variant when ``report_path`` was made from MODEL."""
    report = _load(report_path) if report_path else None
    notes: list[str] = []
    path, sha = model, model_sha
    selected = report.selected if report else None
    if report and selected and report.model_sha256 == model_sha and selected.path \
            and selected.sha256 not in (None, model_sha):
        path, sha = _selected_file(selected, report_path)
        notes.append(f"serving the quantization report's selected variant {selected.name} "
                     f"({selected.backend}, {selected.precision or '?'}) from {path}")
    variant = _variant(report, sha, selected.name if selected else None)
    backend = "openvino" if path.suffix == ".xml" else "onnxruntime"
    if backend == "openvino" and not path.with_suffix(".bin").is_file():
        raise InputError(f"{path}: OpenVINO IR without its weights file {path.with_suffix('.bin').name}")
    params = ov_parameters(variant, report, notes, report_path) if backend == "openvino" else {}
    from costeff.quantization.settings import not_served

    notes += not_served(variant.model_dump() if variant else None)
    return Served(path, sha, backend, variant.name if variant else None, variant.precision if variant else None,
                  params, tuple(notes), _measured_threads(variant, backend, report_path))


def _selected_file(selected: Selected, report_path: Path | None) -> tuple[Path, str]:
    path = Path(selected.path or "")
    if not path.is_file():
        raise InputError(f"{report_path}: selected.path {path} does not exist; expected the selected variant's file")
    sha = sha256_file(path)
    if sha != selected.sha256:
        raise InputError(f"{path}: sha256 {sha} differs from the report's selected.sha256 {selected.sha256}: "
                         "the file changed after it was measured")
    return path, sha


def _variant(report: QuantRecord | None, sha: str, preferred: str | None = None) -> Variant | None:
    """The report's entry for the file ``sha``. Variants can share one file (ov-fp32 and ov-bf16 are the
    same IR compiled with different precision hints), so the selected one is preferred."""
    matches = [v for v in (report.variants if report else []) if v.sha256 == sha]
    return next((v for v in matches if v.name == preferred), matches[0] if matches else None)


def _block(model: type[P], data: dict[str, Any], where: str) -> P:
    """A variant's settings block checked as ``model``; a mismatch is an error naming the report and field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(f"{where}.{'.'.join(map(str, err['loc']))}: {err['msg']} "
                         f"(found {err['input']!r:.80})") from None


def _measured_threads(variant: Variant | None, backend: str = "openvino",
                      report_path: Path | None = None) -> int | None:
    """OpenVINO: the threads the variant was measured with. onnxruntime: only a thread count chosen as a
    runtime setting (``fp32@threads=1``); a default session's count is the build host's CPUs, not a choice."""
    if variant is None:
        return None
    key = "runtime" if backend == "openvino" else "settings"
    source = variant.runtime if backend == "openvino" else variant.settings
    return _block(Threads, source, f"{report_path}: variants[{variant.name}].{key}").threads


def ov_parameters(variant: Variant | None, report: QuantRecord | None, notes: list[str],
                  report_path: Path | None = None) -> dict[str, str]:
    """The openvino backend's parameters for the measured runtime settings (threads: ``serving.threads``)."""
    runtime = _block(OvRuntime, variant.runtime, f"{report_path}: variants[{variant.name}].runtime") \
        if variant else OvRuntime()
    hint = runtime.performance_hint or "LATENCY"
    params = {"PERFORMANCE_HINT": hint}
    if runtime.streams:  # chosen as a runtime setting (ov-fp32@streams=2)
        params["NUM_STREAMS"] = str(runtime.streams)
    elif hint == "LATENCY":
        params["NUM_STREAMS"] = "1"  # one stream: every request gets all threads (the backend's latency example)
    if runtime.precision == "bf16":
        params["HINT_BF16"] = "YES"
    elif report is not None and _has_bf16(_block(Hardware, report.hardware or {}, f"{report_path}: hardware")):
        notes.append("the openvino backend has no parameter for f32 inference precision (only HINT_BF16=YES) and "
                     "OpenVINO's CPU default on bf16-capable CPUs is bf16: on such a host the float layers may "
                     "run in bf16; the bf16 variants' fidelity in the report shows what that does")
    return params


def _has_bf16(hardware: Hardware) -> bool:
    return any(f in hardware.isa for f in ("amx_bf16", "avx512_bf16"))


def _load(path: Path) -> QuantRecord:
    from costeff.records.kinds import QUANT

    try:
        return QUANT.read(path)
    except InputError as exc:
        raise InputError(f"--quantization-report {exc}") from None

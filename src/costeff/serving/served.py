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
from typing import Any

from costeff.artifacts import sha256_file
from costeff.errors import InputError

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


def resolve(model: Path, model_sha: str, report_path: Path | None) -> Served:
    """MODEL itself, or the selected variant when ``report_path`` was made from MODEL."""
    report = _load(report_path) if report_path else None
    notes: list[str] = []
    path, sha = model, model_sha
    selected = (report or {}).get("selected") or {}
    if report and report.get("model_sha256") == model_sha and selected.get("path") \
            and selected.get("sha256") not in (None, model_sha):
        path, sha = _selected_file(selected, report_path)
        notes.append(f"serving the quantization report's selected variant {selected.get('name')} "
                     f"({selected.get('backend', 'onnxruntime')}, {selected.get('precision', '?')}) from {path}")
    variant = _variant(report, sha, selected.get("name"))
    backend = "openvino" if path.suffix == ".xml" else "onnxruntime"
    if backend == "openvino" and not path.with_suffix(".bin").is_file():
        raise InputError(f"{path}: OpenVINO IR without its weights file {path.with_suffix('.bin').name}")
    params = ov_parameters(variant, report, notes) if backend == "openvino" else {}
    from costeff.quantization.settings import not_served

    notes += not_served(variant)
    return Served(path, sha, backend, (variant or {}).get("name"), (variant or {}).get("precision"), params,
                  tuple(notes), _measured_threads(variant, backend))


def _selected_file(selected: dict[str, Any], report_path: Path | None) -> tuple[Path, str]:
    path = Path(selected["path"])
    if not path.is_file():
        raise InputError(f"{report_path}: selected.path {path} does not exist; expected the selected variant's file")
    sha = sha256_file(path)
    if sha != selected["sha256"]:
        raise InputError(f"{path}: sha256 {sha} differs from the report's selected.sha256 {selected['sha256']}: "
                         "the file changed after it was measured")
    return path, sha


def _variant(report: dict[str, Any] | None, sha: str, preferred: str | None = None) -> dict[str, Any] | None:
    """The report's entry for the file ``sha``. Variants can share one file (ov-fp32 and ov-bf16 are the
    same IR compiled with different precision hints), so the selected one is preferred."""
    matches = [v for v in (report or {}).get("variants") or [] if isinstance(v, dict) and v.get("sha256") == sha]
    return next((v for v in matches if v.get("name") == preferred), matches[0] if matches else None)


def _measured_threads(variant: dict[str, Any] | None, backend: str = "openvino") -> int | None:
    """OpenVINO: the threads the variant was measured with. onnxruntime: only a thread count chosen as a
    runtime setting (``fp32@threads=1``); a default session's count is the build host's CPUs, not a choice."""
    source = (variant or {}).get("runtime") if backend == "openvino" else (variant or {}).get("settings")
    threads = (source or {}).get("threads")
    return threads if isinstance(threads, int) and not isinstance(threads, bool) and threads > 0 else None


def ov_parameters(variant: dict[str, Any] | None, report: dict[str, Any] | None, notes: list[str]) -> dict[str, str]:
    """The openvino backend's parameters for the measured runtime settings (threads: ``serving.threads``)."""
    runtime = (variant or {}).get("runtime") or {}
    hint = str(runtime.get("performance_hint") or "LATENCY")
    params = {"PERFORMANCE_HINT": hint}
    if runtime.get("streams"):  # chosen as a runtime setting (ov-fp32@streams=2)
        params["NUM_STREAMS"] = str(runtime["streams"])
    elif hint == "LATENCY":
        params["NUM_STREAMS"] = "1"  # one stream: every request gets all threads (the backend's latency example)
    if runtime.get("precision") == "bf16":
        params["HINT_BF16"] = "YES"
    elif _has_bf16((report or {}).get("hardware") or {}):
        notes.append("the openvino backend has no parameter for f32 inference precision (only HINT_BF16=YES) and "
                     "OpenVINO's CPU default on bf16-capable CPUs is bf16: on such a host the float layers may "
                     "run in bf16; the bf16 variants' fidelity in the report shows what that does")
    return params


def _has_bf16(hardware: dict[str, Any]) -> bool:
    return any(f in (hardware.get("isa") or []) for f in ("amx_bf16", "avx512_bf16"))


def _load(path: Path) -> dict[str, Any]:
    from costeff.serving.precision import _read_json

    try:
        return _read_json(path)
    except InputError as exc:
        raise InputError(f"--quantization-report {exc}") from None

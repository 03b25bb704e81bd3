"""Semantic checks for a config served by Triton's openvino backend.

The schema accepts any parameter key and value; the backend refuses unknown
keys and malformed values at load time (src/openvino.cc, ParseParameterHelper),
and a bf16 hint on a CPU without bf16 would either fail or emulate. Those are
checked here, with the IR's files and tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from costeff.errors import DependencyError
from costeff.serving.ir_precision import ir_precision
from costeff.serving.problem import Problem
from costeff.serving.served import OV_PARAMETERS

HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def check_openvino(cfg: Any, config: Path, model: Path | None, hardware: dict[str, Any], report: Any,
                   lines: Any) -> bool:
    """The openvino backend's checks; True when the IR is there for the tensor checks to read."""
    _check_parameters(cfg, hardware, report, lines)
    if any(g.kind == 1 for g in cfg.instance_group):  # KIND_GPU: the backend's CPU device never sees a GPU
        report.problems.append(Problem("instance_group.kind", "KIND_GPU with the openvino backend; serve IR "
                                       "on KIND_CPU", lines("instance_group")))
    for acc in cfg.optimization.execution_accelerators.gpu_execution_accelerator:
        report.problems.append(Problem("gpu_execution_accelerator", f"{acc.name!r} is an onnxruntime-backend "
                                       "setting; the openvino backend ignores it", lines(f'"{acc.name}"')))
    if model is None:
        report.problems.append(Problem("model", f"no model.xml in a version folder of {config.parent}",
                                       lines("backend")))
        return False
    if not model.with_suffix(".bin").is_file():
        report.problems.append(Problem("model", f"{model} has no weights file {model.with_suffix('.bin').name}",
                                       lines("backend")))
        return False
    try:
        report.model_precision = ir_precision(model)  # from the graph: op types and Constant element types
    except DependencyError as exc:
        report.warnings.append(f"precision not read: {exc}")
    return True


def _check_parameters(cfg: Any, hardware: dict[str, Any], report: Any, lines: Any) -> None:
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    for key in sorted(set(params) - OV_PARAMETERS):
        report.problems.append(Problem(f"parameters {key}", "not a parameter of the openvino backend "
                                       f"({', '.join(sorted(OV_PARAMETERS))})", lines(f'"{key}"')))
    checks = {
        "PERFORMANCE_HINT": (lambda v: v.upper() in HINTS, f"one of {', '.join(HINTS)}"),
        "HINT_BF16": (lambda v: v.upper() == "YES", "YES (the backend accepts no other value)"),
        "NUM_STREAMS": (lambda v: v.upper() in ("AUTO", "NUMA") or v.isdigit(), "AUTO, NUMA or a number"),
        "INFERENCE_NUM_THREADS": (str.isdigit, "a non-negative number"),
    }
    for key, (ok, expected) in checks.items():
        if key in params and not ok(params[key]):
            report.problems.append(Problem(f"parameters {key}", f"{params[key]!r}; expected {expected}",
                                           lines(f'"{key}"')))
    if "HINT_BF16" in params and not any(f in (hardware.get("isa") or []) for f in BF16_FLAGS):
        report.problems.append(Problem("parameters HINT_BF16", f"bf16 on {hardware.get('cpu_model', 'a CPU')} "
                                       f"without {' or '.join(BF16_FLAGS)}: it has no bf16 units",
                                       lines('"HINT_BF16"')))

"""Which variants a run tries on this host, and why each other one is not tried.

A variant is a (backend, precision) pair. The host decides: OpenVINO runs on
the CPU only, bf16 needs ``amx_bf16`` or ``avx512_bf16``, a backend must be
installed. Asked for by name, a variant the host cannot try is an error (exit 2
for the request, 3 for a missing runtime); left to the default, it is listed
with its reason and the search goes on.
"""

from __future__ import annotations

from typing import Any

from costeff.errors import DependencyError, InputError
from costeff.quantization.config import ON_REQUEST, VARIANTS
from costeff.quantization.records import VariantResult
from costeff.quantization.settings import backend_of  # noqa: F401 - part of this module's interface

BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def trt_fp16(name: str, provider: str) -> bool:
    """TensorRT builds fp16 engines only for the fp16 variants: fidelity and timing must agree on it."""
    return provider == "tensorrt" and name.split("+")[-1] in ("fp16", "mixed")


def precision_of(name: str) -> str:
    from costeff.quantization.openvino import OV_VARIANTS

    name = name.split("+")[-1]  # prune+int8-dynamic: the precision of int8-dynamic
    if name in OV_VARIANTS:
        return OV_VARIANTS[name].precision
    return {"int8-dynamic": "int8", "int8-static": "int8", "int8-mixed": "int8+fp32", "mixed": "fp16+fp32",
            "prune": "fp32", "lowrank": "fp32"}.get(
        name, name)


def plan(config: Any, hw: Any, provider: str) -> tuple[list[str], list[VariantResult]]:
    """(variants to try, in order; variants not tried, each with its reason)."""
    explicit = config.variants is not None
    tried, skipped = [], []
    for name in (_built(config.variants) if explicit else VARIANTS):
        reason = why_not(name, config, hw, provider)
        if reason is None and not explicit and name in ON_REQUEST:
            reason = InputError(ON_REQUEST[name])
        if reason is None:
            tried.append(name)
        elif explicit:
            raise reason
        else:
            skipped.append(VariantResult(name, backend=backend_of(name), precision=precision_of(name),
                                         not_tried=str(reason)))
    return tried, skipped


def _built(names: tuple[str, ...]) -> list[str]:
    """The variants to build for ``names``: a runtime-settings variant (``x@threads=1``) needs ``x`` built."""
    out: list[str] = []
    for name in names:
        base = name.partition("@")[0]
        if base != "fp32" and base not in out:  # fp32 is always built: it is the baseline
            out.append(base)
    return out


def why_not(name: str, config: Any, hw: Any, provider: str) -> InputError | DependencyError | None:
    """The error that stops ``name`` here, or None when it can be tried."""
    from costeff.runtimes import available

    backend = backend_of(name)
    if backend not in config.backends:
        return InputError(f"variant {name}: backend {backend} is not among --backends {','.join(config.backends)}")
    if backend == "openvino":
        if provider not in ("cpu", "CPUExecutionProvider"):
            return InputError(f"variant {name}: OpenVINO runs on the CPU, but the provider is {provider}; "
                              "compare CPU serving with --provider cpu")
        missing = available("openvino")
        if missing:
            return DependencyError(f"variant {name}: {missing}")
        if _needs_bf16(name) and not any(f in hw.isa for f in BF16_FLAGS):
            return InputError(f"variant {name}: bf16 needs a CPU with {' or '.join(BF16_FLAGS)}; "
                              f"this CPU ({hw.cpu_model}) has neither")
    return None


def _needs_bf16(name: str) -> bool:
    from costeff.quantization.openvino import OV_VARIANTS

    name = name.split("+")[-1]
    return name in OV_VARIANTS and OV_VARIANTS[name].needs_bf16

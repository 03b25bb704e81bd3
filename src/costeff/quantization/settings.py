"""Runtime settings as variants: ``<variant>@<setting>[@<setting>...]``: ``fp32@threads=1``, ``fp32@nospin``,
``ov-fp32@hint=throughput@streams=2``.

The same model file run with other runtime settings (onnxruntime: intra-op
threads, thread spinning; OpenVINO: performance hint, streams, threads) decides
exactly like it (same file, same kernels, the work split differently over
threads), so it carries its base's fidelity and gates at no extra cost. Its
speed is its own: it is timed beside fp32 in the same interleaved rounds and
replaces fp32 (or its base) only by beating it beyond the noise, like any variant.

Triton's onnxruntime backend has a parameter for the intra-op thread count but
none for spinning: a ``nospin`` variant is measured and may be selected, but
served by Triton it spins like its base (the repository build says so).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from costeff.errors import InputError

# Tried by default (no --variants) on the CPU: on a shared 2-core host these gave fp32 1.5-2.3x at batch 1.
DEFAULT = ("fp32@threads=1", "fp32@nospin")
WORDS = {"onnxruntime": "threads=N, nospin", "openvino": "threads=N, hint=latency|throughput, streams=N"}
NOT_SERVED = {"spinning": "Triton's onnxruntime backend has no parameter for thread spinning (only thread counts): "
                          "served there, this variant spins like its base"}


def backend_of(name: str) -> str:
    """The backend that runs variant ``name`` (OpenVINO's are ``ov-*``)."""
    return "openvino" if name.partition("@")[0].split("+")[-1].startswith("ov-") else "onnxruntime"


def split(name: str) -> tuple[str, str | None]:
    """(base variant, settings text or None)."""
    base, at, text = name.partition("@")
    return base, (text if at else None)


def parse(text: str, backend: str, name: str = "") -> dict[str, Any]:
    """The runtime options ``text`` sets (``threads=1@nospin`` -> {"threads": 1, "spinning": False}).

    Settings are chained with ``@`` (``--variants`` is a comma-separated list)."""
    out: dict[str, Any] = {}
    for item in text.split("@"):
        key, eq, value = item.strip().partition("=")
        key = key.lower()
        if backend == "onnxruntime" and key == "nospin" and not eq:
            out["spinning"] = False
        elif key in ("threads", "streams") and eq and value.isdigit() and int(value) > 0 \
                and (key == "threads" or backend == "openvino"):
            out[key] = int(value)
        elif backend == "openvino" and key == "hint" and value.upper() in ("LATENCY", "THROUGHPUT"):
            out["performance_hint"] = value.upper()
        else:
            raise InputError(f"variants: {name or text}: runtime setting {item.strip()!r} is not one of "
                             f"{WORDS[backend]} ({backend})")
    return out


def requested(config: Any) -> list[str]:
    """The ``@`` variants this run times: those asked for, else the defaults on the CPU."""
    if config.variants is not None:
        return [n for n in config.variants if "@" in n]
    return list(DEFAULT) if config.tune_knobs and config.provider == "cpu" else []


def label(settings: dict[str, Any]) -> str:
    from costeff.quantization.records import settings_label

    return settings_label(settings)


def runtime_variants(ctx: Any, variants: list[Any]) -> list[Any]:
    """A variant per requested ``@`` name: its base's file, fidelity and gates, its own settings."""
    from costeff.quantization.records import VariantResult
    from costeff.runtimes.cpus import usable_cpus

    by_name = {v.name: v for v in variants}
    out = []
    for name in requested(ctx.config):
        base_name, text = split(name)
        base = by_name.get(base_name)
        settings = parse(text or "", backend_of(base_name), name)
        if base is None or not base.built:
            why = (base.not_tried or base.error) if base is not None else "it was not tried"
            out.append(VariantResult(name, backend=backend_of(base_name), settings_of=base_name, settings=settings,
                                     not_tried=f"its base {base_name} was not built ({why})"))
        elif settings == {"threads": usable_cpus()}:
            out.append(VariantResult(name, backend=base.backend, precision=base.precision, settings_of=base_name,
                                     settings=settings, not_tried=f"identical to {base_name}: this process may "
                                     f"use {usable_cpus()} CPU(s), the default thread count"))
        else:
            out.append(of(base, name, settings, base.path or (str(ctx.base_fp32) if base.baseline else None)))
    return out


def of(base: Any, name: str, settings: dict[str, Any], path: str | None = None) -> Any:
    """``base`` under another name with ``settings``: the same file, so the same answers and gates."""
    v = dataclasses.replace(base, name=name, path=path or base.path, baseline=False, settings_of=base.name,
                            settings=dict(settings), runtime={**base.runtime, **settings}, notes=list(base.notes),
                            gates=list(base.gates))
    v.notes.append(f"{base.name} with runtime settings {label(settings)}: the same model file, so its fidelity "
                   f"and gates are {base.name}'s")
    v.notes += [why for key, why in NOT_SERVED.items() if key in settings and v.backend == "onnxruntime"]
    return v


def share_files(variants: list[Any]) -> None:
    """Runtime variants point at their base's saved file (one copy on disk, one hash)."""
    by_name = {v.name: v for v in variants}
    for v in variants:
        base = by_name.get(v.settings_of or "")
        if base is not None and v.built:
            v.path, v.sha256, v.size_bytes, v.size_reduction_pct = \
                base.path, base.sha256, base.size_bytes, base.size_reduction_pct


def not_served(variant: dict[str, Any] | None) -> list[str]:
    """Why a report's variant (a dict) cannot be served by Triton as measured; empty when it can."""
    variant = variant or {}
    settings = variant.get("settings") or {}
    if variant.get("backend", "onnxruntime") != "onnxruntime":
        return []
    return [f"{variant.get('name')}: measured with {label({k: settings[k]})}; {why}"
            for k, why in NOT_SERVED.items() if k in settings]

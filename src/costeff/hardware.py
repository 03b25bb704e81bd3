"""Hardware facts, detected once per process and recorded in every report.

CPU ISA (avx2 / avx512 / vnni / amx) decides the int8 recipe; NVML tells which
GPUs exist; onnxruntime tells which execution providers can run.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Any

_ISA_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
              "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory_total_mb: float
    driver_version: str
    power_limit_w: float | None


@dataclass(frozen=True)
class Hardware:
    cpu_model: str
    cpu_count: int
    machine: str
    isa: tuple[str, ...]
    memory_total_gb: float | None
    gpus: tuple[GpuInfo, ...] = ()
    gpu_unavailable_reason: str | None = None
    onnxruntime_version: str | None = None
    onnxruntime_providers: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    # CPUs this process may use (affinity and cgroup quota, fractional): what a container measured on
    cpu_limit: float | None = None

    @property
    def has_vnni(self) -> bool:
        return any(f in self.isa for f in ("avx512_vnni", "avx_vnni", "amx_int8"))

    @property
    def has_avx512(self) -> bool:
        return "avx512f" in self.isa

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["has_vnni"] = self.has_vnni
        d["has_avx512"] = self.has_avx512
        return d


def _cpuinfo() -> tuple[str, tuple[str, ...]]:
    model, flags = platform.processor() or platform.machine(), set[str]()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, tuple(f for f in _ISA_FLAGS if f in flags)


def _memory_gb() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        return round(pages * size / 2**30, 1)
    except (ValueError, OSError):
        return None


def detect_gpus() -> tuple[tuple[GpuInfo, ...], str | None]:
    """GPUs through NVML; ``((), reason)`` when there are none or NVML cannot load."""
    try:
        import pynvml
    except ImportError:
        return (), "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return (), f"NVML unavailable: {exc}"
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            try:
                limit = pynvml.nvmlDeviceGetPowerManagementLimit(h) / 1000.0
            except pynvml.NVMLError:
                limit = None
            gpus.append(GpuInfo(i, _text(pynvml.nvmlDeviceGetName(h)),
                                round(mem.total / 2**20, 1), driver, limit))
        return tuple(gpus), None if gpus else "NVML reports no GPU"
    finally:
        pynvml.nvmlShutdown()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _onnxruntime() -> tuple[str | None, tuple[str, ...]]:
    try:
        import onnxruntime as ort
    except ImportError:
        return None, ()
    return ort.__version__, tuple(ort.get_available_providers())


@functools.lru_cache(maxsize=1)
def detect() -> Hardware:
    model, isa = _cpuinfo()
    gpus, reason = detect_gpus()
    ort_version, providers = _onnxruntime()
    return Hardware(
        cpu_model=model,
        cpu_count=os.cpu_count() or 1,
        machine=platform.machine(),
        isa=isa,
        memory_total_gb=_memory_gb(),
        gpus=gpus,
        gpu_unavailable_reason=reason,
        onnxruntime_version=ort_version,
        onnxruntime_providers=providers,
        cpu_limit=_cpu_limit(),
    )


def _cpu_limit() -> float:
    from costeff.runtimes.cpus import cpu_limit

    return cpu_limit().cpus

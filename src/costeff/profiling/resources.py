"""Resources used while a point is measured: process CPU and RSS, and NVIDIA GPUs via NVML.

CPU utilisation is the process's CPU-time delta over the wall time (exact, not
sampled). Peak RSS comes from the kernel's own high-water mark (``VmHWM``), reset
per point through ``/proc/self/clear_refs``: no sampling thread runs on a CPU-only
point, because on a small machine a thread waking every few ms preempts an
onnxruntime worker and slows the very calls being timed. Where that reset is not
permitted, or a GPU is read, a background thread samples every ``interval_s``.
The GPU is read through NVML (``nvidia-ml-py``); where there is none, ``gpu`` is
None and ``gpu_null_reason`` says why (an empty GPU field is not a zero).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20 if hasattr(os, "sysconf") else 4096 / 2**20


@dataclass(frozen=True)
class GpuStats:
    index: int
    name: str
    sm_util_pct: float | None  # mean of NVML utilisation samples during the point
    sm_util_max_pct: float | None
    memory_used_mb: float  # peak device memory in use (all processes)
    memory_total_mb: float
    process_memory_mb: float | None  # this process's device memory, where NVML reports it
    power_w: float | None  # mean board power
    power_max_w: float | None
    energy_j: float | None  # board energy over the point (NVML energy counter, Volta+)
    samples: int


@dataclass(frozen=True)
class ResourceStats:
    cpu_util_pct: float | None  # share of all cores, 0-100
    cpu_cores_busy: float | None
    rss_peak_mb: float | None
    gpu: GpuStats | None
    gpu_null_reason: str | None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark for this process (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def read_peak_rss_mb() -> float | None:
    """``VmHWM``: the highest RSS since start or since the last ``reset_peak_rss()``."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


def read_rss_mb() -> float | None:
    """Resident set size of this process from /proc (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE_MB
    except (OSError, ValueError, IndexError):
        return None


class NvmlDevice:
    """One GPU through NVML; opening raises ``pynvml.NVMLError`` when there is no such device."""

    def __init__(self, index: int) -> None:
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()
        try:
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(self.handle)
        except pynvml.NVMLError:
            pynvml.nvmlShutdown()
            raise
        self.index, self.name = index, name.decode() if isinstance(name, bytes) else str(name)

    def close(self) -> None:
        self._nvml.nvmlShutdown()

    def sample(self) -> tuple[float | None, float, float, float | None, float | None]:
        """(SM util %, memory used MB, memory total MB, power W, this process's memory MB)."""
        nv, h = self._nvml, self.handle
        mem = nv.nvmlDeviceGetMemoryInfo(h)
        return (self._optional(lambda: float(nv.nvmlDeviceGetUtilizationRates(h).gpu)),
                mem.used / 2**20, mem.total / 2**20,
                self._optional(lambda: nv.nvmlDeviceGetPowerUsage(h) / 1000.0),
                self._optional(self._process_memory_mb))

    def energy_mj(self) -> float | None:
        return self._optional(lambda: float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)))

    def _process_memory_mb(self) -> float | None:
        pid = os.getpid()
        for proc in self._nvml.nvmlDeviceGetComputeRunningProcesses(self.handle):
            if proc.pid == pid and proc.usedGpuMemory is not None:
                return proc.usedGpuMemory / 2**20
        return None

    def _optional(self, read: Any) -> Any:
        # Some boards (and MIG slices) do not support every counter; that counter is None.
        try:
            return read()
        except self._nvml.NVMLError:
            return None


def nvml_index_for_cuda_device(cuda_device: int = 0) -> int:
    """The NVML index of CUDA device ``cuda_device``: NVML ignores CUDA_VISIBLE_DEVICES."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
    if cuda_device < len(visible) and visible[cuda_device].strip().isdigit():
        return int(visible[cuda_device].strip())
    return cuda_device


GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def sampler_for(provider: str, interval_s: float, cpu_reason: str | None = None) -> "ResourceSampler":
    """The sampler for a point run on ``provider``: NVML on the GPU it runs on; on the CPU, process CPU and
    RSS only (no thread), the GPU field empty for ``cpu_reason``."""
    if provider in GPU_PROVIDERS:
        return ResourceSampler(nvml_index_for_cuda_device(0), interval_s=interval_s)
    return ResourceSampler(None, gpu_null_reason=cpu_reason, interval_s=interval_s)


def gpu_unused_reason(provider: str) -> str:
    """Why a point run on the CPU has no GPU numbers, in the profile's words."""
    from costeff.hardware import detect

    hw = detect()
    return f"{provider} runs on the CPU; the GPU is not used" if hw.gpus else hw.gpu_unavailable_reason or \
        "no NVIDIA GPU"


class ResourceSampler:
    """Samples process CPU/RSS and (when ``gpu_index`` is given) one GPU during ``track()``."""

    def __init__(self, gpu_index: int | None = None, gpu_null_reason: str | None = None,
                 interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.device: NvmlDevice | None = None
        self.gpu_null_reason = gpu_null_reason
        if gpu_index is not None:
            self._open_gpu(gpu_index)

    def _open_gpu(self, index: int) -> None:
        try:
            self.device = NvmlDevice(index)
        except ImportError:
            self.gpu_null_reason = "nvidia-ml-py (pynvml) is not installed"
        except Exception as exc:  # pynvml.NVMLError_* (no driver, no such device)
            self.gpu_null_reason = f"NVML unavailable: {exc}"

    def close(self) -> None:
        if self.device is not None:
            self.device.close()
            self.device = None

    def __enter__(self) -> "ResourceSampler":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def track(self) -> Iterator["_Tracking"]:
        tracking = _Tracking(self)
        tracking.start()
        try:
            yield tracking
        finally:
            tracking.stop()


class _Tracking:
    def __init__(self, sampler: ResourceSampler) -> None:
        self.sampler, self.device = sampler, sampler.device
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="costeff-sampler", daemon=True)
        self.rss: list[float] = []
        self.gpu: list[tuple] = []
        self._stats: ResourceStats | None = None

    def start(self) -> None:
        self._hwm = reset_peak_rss()
        self._wall0, self._cpu0 = time.perf_counter(), _cpu_seconds()
        self._energy0 = self.device.energy_mj() if self.device else None
        self._sample()
        if self.device is not None or not self._hwm:
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.sampler.interval_s):
            self._sample()

    def _sample(self) -> None:
        rss = read_peak_rss_mb() if self._hwm else read_rss_mb()
        if rss is not None:
            self.rss.append(rss)
        if self.device is not None:
            self.gpu.append(self.device.sample())

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._sample()
        wall, cpu = time.perf_counter() - self._wall0, _cpu_seconds() - self._cpu0
        cores = cpu / wall if wall > 0 else None
        ncpu = os.cpu_count() or 1
        self._stats = ResourceStats(
            cpu_util_pct=None if cores is None else min(100.0, 100.0 * cores / ncpu),
            cpu_cores_busy=cores, rss_peak_mb=max(self.rss) if self.rss else None,
            gpu=self._gpu_stats(), gpu_null_reason=None if self.device else self.sampler.gpu_null_reason)

    def _gpu_stats(self) -> GpuStats | None:
        if self.device is None or not self.gpu:
            return None
        util = [s[0] for s in self.gpu if s[0] is not None]
        power = [s[3] for s in self.gpu if s[3] is not None]
        procmem = [s[4] for s in self.gpu if s[4] is not None]
        energy1 = self.device.energy_mj()
        energy = (energy1 - self._energy0) / 1000.0 if energy1 is not None and self._energy0 is not None else None
        return GpuStats(
            index=self.device.index, name=self.device.name,
            sm_util_pct=sum(util) / len(util) if util else None, sm_util_max_pct=max(util) if util else None,
            memory_used_mb=max(s[1] for s in self.gpu), memory_total_mb=self.gpu[0][2],
            process_memory_mb=max(procmem) if procmem else None,
            power_w=sum(power) / len(power) if power else None, power_max_w=max(power) if power else None,
            energy_j=energy, samples=len(self.gpu))

    def result(self) -> ResourceStats:
        if self._stats is None:
            raise RuntimeError("resource tracking has not finished")
        return self._stats


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system

"""The machine's state around one measurement: who else used the CPU, steal, load, frequency.

A speed number is only as good as the machine it was taken on. Each timed
process is bracketed by two readings of ``/proc/stat`` (every core's busy and
steal time) and of the measuring process's own CPU time; what the machine
spent beyond that was taken by other processes. A measurement during which
others took more than ``DISTURBED_OTHER_SHARE`` of the machine, or the
hypervisor stole more than ``DISTURBED_STEAL_SHARE``, is *disturbed*: it is
repeated once or marked, and never decides a selection on its own.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Any

DISTURBED_OTHER_SHARE = 0.25  # other processes' CPU time over (wall time x cores)
DISTURBED_STEAL_SHARE = 0.05  # hypervisor steal over (wall time x cores)
_CPUFREQ = Path("/sys/devices/system/cpu")


def snapshot() -> dict[str, Any]:
    """One reading: wall clock, machine CPU times (s), this process's and its children's CPU (s)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": time.monotonic(), **_proc_stat(),
            "own_cpu_s": own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime,
            "freq_mhz": frequency_mhz()}


def _proc_stat(path: Path = Path("/proc/stat")) -> dict[str, float | None]:
    """Busy (user+nice+system+irq+softirq) and steal seconds summed over every core; None when unreadable."""
    try:
        first = path.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return {"busy_s": None, "steal_s": None}
    ticks = [int(x) for x in first[1:]] + [0] * 8
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
    return {"busy_s": (user + nice + system + irq + softirq) / hz, "steal_s": steal / hz}


def frequency_mhz(root: Path = _CPUFREQ) -> float | None:
    """Mean current frequency over the cores that expose it (``scaling_cur_freq``), None when none does."""
    vals = []
    for f in root.glob("cpu[0-9]*/cpufreq/scaling_cur_freq"):
        try:
            vals.append(int(f.read_text().strip()) / 1000.0)
        except (OSError, ValueError):
            continue
    return round(sum(vals) / len(vals), 1) if vals else None


def block(before: dict[str, Any], after: dict[str, Any], cores: int | None = None) -> dict[str, Any]:
    """The ``load`` block of one measurement, from the readings taken just before and just after it."""
    cores = cores or os.cpu_count() or 1
    wall = max(after["wall"] - before["wall"], 1e-9)
    own = max(after["own_cpu_s"] - before["own_cpu_s"], 0.0)
    other = steal = None
    if before.get("busy_s") is not None and after.get("busy_s") is not None:
        other = max(after["busy_s"] - before["busy_s"] - own, 0.0)
        steal = max(after["steal_s"] - before["steal_s"], 0.0)
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        load1 = None
    out = {"wall_s": round(wall, 3), "cores": cores, "own_cpu_s": round(own, 3),
           "other_cpu_s": None if other is None else round(other, 3),
           "steal_s": None if steal is None else round(steal, 3),
           "other_share": None if other is None else round(other / (wall * cores), 4),
           "steal_share": None if steal is None else round(steal / (wall * cores), 4),
           "loadavg_1m": load1, "freq_mhz_before": before.get("freq_mhz"), "freq_mhz_after": after.get("freq_mhz")}
    out["disturbed"] = is_disturbed(out)
    return out


def is_disturbed(load: dict[str, Any]) -> bool:
    """Others took more than their share of the machine, or the hypervisor stole CPU, during the measurement."""
    other, steal = load.get("other_share"), load.get("steal_share")
    return bool((other is not None and other > DISTURBED_OTHER_SHARE)
                or (steal is not None and steal > DISTURBED_STEAL_SHARE))


THRESHOLDS = {"other_share": DISTURBED_OTHER_SHARE, "steal_share": DISTURBED_STEAL_SHARE}

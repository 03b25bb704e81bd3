"""How many CPUs this process may really use: affinity, then the cgroup CPU quota.

``os.cpu_count()`` reports the host. A container limited to 2 CPUs on a 64-core
host that sizes its thread pools to 64 spends its quota in a few milliseconds
and is throttled for the rest of each period.

The quota that binds is not necessarily at the root of the mounted hierarchy:
without a cgroup namespace ``/sys/fs/cgroup`` shows the host's tree and the
container's limit sits in its own cgroup (``/proc/self/cgroup``), and a pod's
limit can sit one level above the container's. Every level from the process's
cgroup up to the mount root is read and the tightest wins.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class CpuLimit:
    """What bounds this process's CPUs, with where each bound was read."""

    affinity: int  # CPUs the scheduler may run this process on
    quota_cpus: float | None  # tightest cgroup quota / period on the path; None when unlimited
    cgroup: str | None  # the cgroup folder that set it

    @property
    def cpus(self) -> float:
        """The fractional limit (1.5 for a 150000/100000 quota), for reports."""
        return float(self.affinity) if self.quota_cpus is None else min(float(self.affinity), self.quota_cpus)

    @property
    def usable(self) -> int:
        """Threads worth running: a fraction of a CPU still needs one, never zero."""
        return max(1, math.ceil(self.cpus))

    def describe(self) -> str:
        if self.quota_cpus is None or self.quota_cpus >= self.affinity:
            return f"{self.affinity} CPUs in this process's affinity mask (no tighter cgroup quota)"
        return f"{self.quota_cpus:g} CPUs of cgroup quota ({self.cgroup})"


def cpu_limit(cgroup_root: Path | None = None, proc_cgroup: Path | None = None) -> CpuLimit:
    """Affinity and the tightest quota; the paths default to the module's (read at call time)."""
    quota, where = _tightest_quota(cgroup_root or CGROUP_ROOT, proc_cgroup or PROC_CGROUP)
    return CpuLimit(_affinity(), quota, where)


def usable_cpus(cgroup_root: Path | None = None, proc_cgroup: Path | None = None) -> int:
    """min(affinity, ceil(tightest cgroup quota / period)), at least 1."""
    return cpu_limit(cgroup_root, proc_cgroup).usable


def cgroup_cpu_limit(root: Path | None = None, proc_cgroup: Path | None = None) -> float | None:
    """CPUs allowed by the cgroup (v2 ``cpu.max`` or v1 ``cfs_quota_us``); None when unlimited."""
    return cpu_limit(root, proc_cgroup).quota_cpus


def _affinity() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _tightest_quota(root: Path, proc_cgroup: Path) -> tuple[float | None, str | None]:
    lines = (_read(proc_cgroup) or "").splitlines()
    if (root / "cgroup.controllers").is_file() or (root / "cpu.max").is_file():
        return _walk(root, _own_path(lines, v2=True), _v2_quota)
    for mount in _v1_mounts(root, lines):
        found = _walk(mount, _own_path(lines, v2=False), _v1_quota)
        if found[0] is not None:
            return found
    return None, None


def _own_path(lines: list[str], v2: bool) -> str:
    """This process's cgroup path: the ``0::/path`` line (v2) or the line naming the cpu controller (v1)."""
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if (v2 and line.startswith("0::")) or (not v2 and "cpu" in controllers.split(",")):
            return path.strip()
    return "/"


def _v1_mounts(root: Path, lines: list[str]) -> list[Path]:
    # The cpu controller is mounted as cpu, cpu,cpuacct or cpuacct,cpu (often symlinked); some
    # containers mount that one hierarchy at the root itself.
    names = [parts[1] for parts in (line.split(":", 2) for line in lines)
             if len(parts) == 3 and "cpu" in parts[1].split(",")]
    candidates = [root / n for n in names] + [root / "cpu", root / "cpu,cpuacct", root / "cpuacct,cpu", root]
    seen: list[Path] = []
    for c in candidates:
        if c not in seen and c.is_dir():
            seen.append(c)
    return seen


def _walk(mount: Path, path: str, read_quota) -> tuple[float | None, str | None]:
    """The tightest quota from ``path``'s folder under ``mount`` up to ``mount`` itself."""
    folder = _locate(mount, path)
    best: tuple[float | None, str | None] = (None, None)
    while True:
        quota = read_quota(folder)
        if quota is not None and (best[0] is None or quota < best[0]):
            best = (quota, str(folder))
        if folder == mount:
            return best
        folder = folder.parent


def _locate(mount: Path, path: str) -> Path:
    """``path`` under ``mount``. When the mount shows only part of the tree (a container sees its own
    cgroup as the root while /proc/self/cgroup names the host's path), the longest tail of ``path``
    that exists under the mount is taken, down to the mount itself."""
    parts = [p for p in path.split("/") if p and p not in (".", "..")]
    for start in range(len(parts) + 1):
        folder = mount.joinpath(*parts[start:])
        if folder.is_dir():
            return folder
    return mount


def _v2_quota(folder: Path) -> float | None:
    quota, _, period = (_read(folder / "cpu.max") or "").partition(" ")
    return None if quota in ("", "max") else _ratio(quota, period)


def _v1_quota(folder: Path) -> float | None:
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    if not quota or not period or quota == "-1":
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = float(quota), float(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def cap_torch_threads() -> int:
    """Lower torch's intra-op pool to the usable CPUs when it is larger; the count now in use.

    torch sizes the pool to the host's cores, ignoring the cgroup quota. A smaller
    count someone chose (``torch.set_num_threads``, ``OMP_NUM_THREADS``) is kept.
    """
    import torch

    limit = usable_cpus()
    if torch.get_num_threads() > limit:
        torch.set_num_threads(limit)
    return torch.get_num_threads()

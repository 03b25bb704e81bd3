"""Read the reports one HTML page is made of, from the folders of one run (or one chain of records)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# stage key -> (folder under cost/, report file)
STAGES = {
    "profile": (None, "gpu_profile.json"),
    "fp32": (None, "gpu_profile.json"),
    "quant": ("quant", "quantization_report.json"),
    "batching": ("batching", "batching_report.json"),
    "reaper": ("reaper", "reaper_report.json"),
    "ramp": ("ramp", "ramp_decision.json"),
    "verify": ("verify", "verify_report.json"),
}


@dataclass
class Sources:
    """Each stage's report (parsed) and the file it came from; ``folders`` hold the plots beside them."""

    root: Path
    reports: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    repository: Path | None = None

    def folder(self, key: str) -> Path | None:
        return self.files[key].parent if key in self.files else None

    def beside(self, key: str, name: str) -> Path | None:
        """The file ``name`` next to stage ``key``'s report (a plot); None without that report."""
        folder = self.folder(key)
        return None if folder is None else folder / name


def collect(root: Path, folders: dict[str, Path], repository: Path, with_repository: bool = True) -> Sources:
    """``folders`` (stage key -> folder): the run's own, or one chain's (``costeff.pack.chain.select``);
    ``with_repository`` False when the Triton repository was built from another chain."""
    found = {k: Path(v) / STAGES[k][1] for k, v in folders.items() if k in STAGES}
    sources = Sources(root, repository=repository if with_repository else None)
    for key in STAGES:
        path = found.get(key)
        sources.reports[key] = _read(path) if path and path.is_file() else None
        if path is not None and sources.reports[key] is not None:
            sources.files[key] = path
    return sources


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None

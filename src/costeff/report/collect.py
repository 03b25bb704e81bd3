"""Find the reports one HTML page is made of: the latest of each stage, or the folders a run names."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from costeff.artifacts import Layout

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


def collect(root: Path, folders: dict[str, Path] | None = None, repository: Path | None = None) -> Sources:
    """``folders`` (stage key -> folder) as ``costeff run`` passes them; else the latest report of each stage.

    Without ``folders`` the served profile is the newest one and the fp32 profile
    is the newest one measured on the quantization report's original model.
    """
    layout = Layout(root)
    found = {k: Path(v) / STAGES[k][1] for k, v in (folders or {}).items() if k in STAGES}
    if folders is None:
        for key, (stage, name) in STAGES.items():
            latest = layout.latest(stage, name)
            if latest and key != "fp32":
                found[key] = latest
        found.update(_fp32_profile(layout, found.get("quant"), found.get("profile")))
    sources = Sources(root, repository=repository or Layout.model_repository())
    for key in STAGES:
        path = found.get(key)
        sources.reports[key] = _read(path) if path and path.is_file() else None
        if path is not None and sources.reports[key] is not None:
            sources.files[key] = path
    return sources


def _fp32_profile(layout: Layout, quant: Path | None, served: Path | None) -> dict[str, Path]:
    if not quant or not quant.is_file():
        return {}
    sha = (_read(quant) or {}).get("model_sha256")
    for path in sorted(layout.cost.glob("*/gpu_profile.json"), reverse=True):
        if path != served and (_read(path) or {}).get("model_sha256") == sha:
            return {"fp32": path}
    return {}


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None

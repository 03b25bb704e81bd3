"""COMPLETION_SUMMARY.md, generated from the reports inside a pack (placeholder until stages land)."""

from __future__ import annotations

import json
from typing import Any


def _load(files: dict[str, bytes], path: str) -> dict[str, Any] | None:
    data = files.get(path)
    return json.loads(data) if data else None


def render_summary(files: dict[str, bytes]) -> str:
    lines = ["# Completion summary", ""]
    for path in sorted(p for p in files if p.endswith(".json")):
        lines.append(f"- `{path}`")
    return "\n".join(lines) + "\n"

"""What the decider knows about the served model: its hash and its quantization report.

The deployed model's SHA-256 comes from the Triton model repository (the bytes
actually served) when given, else from the ``deployed_model_sha256`` flag. The
quantization report is the one given, else the newest under artifacts/cost/quant.
Missing evidence is not an error here: the gates report NO-DATA and fail closed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from costeff.artifacts import Layout, sha256_file
from costeff.errors import InputError


@dataclass(frozen=True)
class DeployedModel:
    sha256: str | None
    source: str
    changed_at: datetime | None  # when these bytes appeared where they are served


@dataclass(frozen=True)
class Variant:
    name: str
    sha256: str
    path: str | None
    action_drift_pct: float | None
    entropy_drift_pct: float | None


@dataclass(frozen=True)
class QuantReport:
    path: str
    sha256: str
    created_at: datetime
    model_sha256: str
    selected: str
    variants: tuple[Variant, ...]

    def variant_for(self, sha256: str) -> Variant | None:
        """The variant with these bytes; the fp32 source itself counts as a zero-drift variant."""
        for v in self.variants:
            if v.sha256 == sha256:
                return v
        if sha256 == self.model_sha256:
            return Variant("fp32", sha256, None, 0.0, 0.0)
        return None


def deployed_model(flags, triton_repository: Path | None, model_name: str | None) -> DeployedModel:
    if (triton_repository is None) != (model_name is None):
        raise InputError("--triton-repository and --model-name go together: give both or neither")
    if triton_repository is not None:
        from costeff.serving.versions import describe

        served = describe(Path(triton_repository) / str(model_name)).served
        version = Path(triton_repository) / str(model_name) / str(served)
        path = next((version / f for f in ("model.onnx", "model.xml") if (version / f).is_file()),
                    version / "model.onnx")
        if not path.is_file():
            raise InputError(f"{path}: no such model in the Triton repository; expected the served version's "
                             "<repo>/<name>/<N>/model.onnx (or model.xml)")
        mtime = datetime.fromtimestamp(int(path.stat().st_mtime), timezone.utc)
        return DeployedModel(sha256_file(path), f"triton repository {path} (served version {served})", mtime)
    state = flags.state("deployed_model_sha256")
    if state.value is None:
        return DeployedModel(None, "flag deployed_model_sha256 is unset", None)
    return DeployedModel(state.value, f"flag deployed_model_sha256 v{state.version}", _parse_time(state.changed_at))


def find_report(path: Path | None) -> Path | None:
    if path is not None:
        if not Path(path).is_file():
            raise InputError(f"{path}: no such quantization report")
        return Path(path)
    from costeff.records.kinds import QUANT

    return QUANT.latest(Layout.default())


def load_report(path: Path) -> QuantReport:
    """The decider's view of a quantization report; a corrupt one is an error naming it, never "no report"."""
    from costeff.records.kinds import QUANT

    record = QUANT.read(path)
    when, model, sel = _parse_time(record.created_at), record.model_sha256, record.selected.name
    missing = [name for name, value in (("created_at", when), ("model_sha256", model), ("selected.name", sel))
               if value is None] + [f"variants[{v.name}].sha256" for v in record.variants if v.built and not v.sha256]
    if missing or when is None or model is None or sel is None:
        raise InputError(f"{path}: not a quantization report the ramp can use: no {', '.join(missing)}; expected "
                         "created_at, model_sha256, selected.name, variants[].name/sha256/fidelity")
    variants = tuple(Variant(v.name, v.sha256, v.path, v.worst("action_drift_pct"), v.worst("entropy_drift_pct"))
                     for v in record.variants if v.built and v.sha256)
    return QuantReport(str(path), sha256_file(path), when, model, sel, variants)


def model_time(report: QuantReport, deployed: DeployedModel) -> tuple[datetime | None, str]:
    """When the deployed bytes were made: the report's own variant file when it is still there
    (copying into a serving repository gives a later mtime than the bytes' real age), else the
    deployment time."""
    variant = report.variant_for(deployed.sha256) if deployed.sha256 else None
    if variant and variant.path and os.path.isfile(variant.path) and sha256_file(variant.path) == variant.sha256:
        return datetime.fromtimestamp(int(os.stat(variant.path).st_mtime), timezone.utc), f"mtime of {variant.path}"
    return deployed.changed_at, deployed.source


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)

"""The embedded default policy: trained at first use, exported to ONNX, cached by recipe.

The cache key is the SHA-256 of the recipe (preset spec, seed, training config,
strategy and generator constants, costeff version), so changing any of them
builds a new policy and an unchanged recipe is never retrained. Each entry holds
``policy.onnx`` and ``policy.json`` (the metadata, with the ONNX's SHA-256). A hit
re-hashes the ONNX and rebuilds when it does not match. Builds hold an exclusive
file lock and write through temp files + rename, so two processes starting at
once build once and never see half a file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from costeff import __version__

log = logging.getLogger("costeff.policy")
RECIPE_VERSION = 1  # bump when training or export code changes what a recipe produces
INPUT_NAME = "obs"
OUTPUT_NAMES = ("logits", "value")
VERIFY_ATOL = 1e-4


@dataclass(frozen=True)
class PolicyArtifact:
    onnx_path: Path
    sha256: str
    preset: str
    observation_shape: tuple[int, ...]
    n_params: int
    train_accuracy: float  # agreement with the strategy on training rows
    heldout_accuracy: float  # agreement with the strategy on held-out generated rows
    confident_share: float  # held-out rows whose top-1 probability margin is >= 0.1
    onnx_vs_torch_max_abs_err: float
    train_seconds: float
    train_device: str
    epochs_run: int
    class_share: tuple[float, ...]  # the strategy's short/flat/long shares on the training rows
    seed: int
    recipe_sha256: str
    input_name: str = INPUT_NAME
    output_names: tuple[str, ...] = OUTPUT_NAMES
    actions: tuple[str, ...] = ("short", "flat", "long")
    opset: int = 17
    costeff_version: str = __version__
    created_at: str = ""
    metadata_path: Path | None = None
    cache_hit: bool = False


def recipe(preset: str, seed: int = 0) -> dict[str, Any]:
    """Everything that determines the trained weights, as JSON-able data."""
    from costeff.policy import market, strategy, widen
    from costeff.policy.nets import preset_spec
    from costeff.policy.train import TRAIN_CONFIGS

    return {
        "recipe_version": RECIPE_VERSION, "costeff_version": __version__, "seed": seed,
        "preset": preset_spec(preset).to_dict(), "train": TRAIN_CONFIGS[preset].to_dict(),
        "strategy": {k: getattr(strategy, k) for k in ("VOL_MAX", "ENTRY", "REVERSION_WEIGHT")},
        "widen_noise": widen.NOISE,
        "market": {"vol": market.REGIME_VOL.tolist(), "drift": market.TREND_DRIFT, "df": market.STUDENT_DF,
                   "transitions": market.TRANSITIONS.round(6).tolist(), "warmup": market.WARMUP,
                   "chunk_rows": market.CHUNK_ROWS},
    }


def recipe_sha256(preset: str, seed: int = 0) -> str:
    blob = json.dumps(recipe(preset, seed), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def default_policy(preset: str = "default", seed: int = 0, *, cache: Path) -> PolicyArtifact:
    """The trained, exported and verified policy for ``preset``; built at first use, then kept under ``cache``
    (the home's, ``costeff.home``)."""
    key = recipe_sha256(preset, seed)
    entry = Path(cache) / "policy" / f"{preset}-{key[:16]}"
    cached = _load_cached(entry, key)
    if cached is not None:
        return cached
    with _locked(entry):
        cached = _load_cached(entry, key)  # another process may have built it while we waited
        if cached is not None:
            return cached
        return _build(preset, seed, key, entry)


def _load_cached(entry: Path, key: str) -> PolicyArtifact | None:
    from costeff.artifacts import sha256_file

    meta, onnx_path = entry / "policy.json", entry / "policy.onnx"
    if not (meta.is_file() and onnx_path.is_file()):
        return None
    try:
        record = json.loads(meta.read_text())
        artifact = _artifact_from(record, entry)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("policy cache %s: unreadable metadata (%s); rebuilding", entry, exc)
        return None
    if artifact.recipe_sha256 != key or sha256_file(onnx_path) != artifact.sha256:
        log.warning("policy cache %s: policy.onnx does not match its recorded sha256; rebuilding", entry)
        return None
    return artifact


def _artifact_from(record: dict[str, Any], entry: Path) -> PolicyArtifact:
    names = {f.name for f in fields(PolicyArtifact)}
    values = {k: v for k, v in record.items() if k in names}
    for key in ("observation_shape", "output_names", "actions", "class_share"):
        values[key] = tuple(values[key])
    values.update(onnx_path=entry / "policy.onnx", metadata_path=entry / "policy.json", cache_hit=True)
    return PolicyArtifact(**values)


def _locked(entry: Path) -> Any:
    from costeff.artifacts import exclusive_lock

    return exclusive_lock(entry.parent / f".{entry.name}.lock")


def _build(preset: str, seed: int, key: str, entry: Path) -> PolicyArtifact:
    from costeff.artifacts import atomic_write_json, iso_utc, sha256_file
    from costeff.policy.export import n_params, to_onnx, verify_onnx
    from costeff.policy.market import generate_observations
    from costeff.policy.nets import preset_spec
    from costeff.policy.train import TRAIN_CONFIGS, fit

    spec = preset_spec(preset)
    log.info("building the %s policy (%s parameters) by behaviour cloning; cached in %s",
             preset, f"{spec.n_params:,}", entry)
    result = fit(spec, TRAIN_CONFIGS[preset], seed=seed)
    model = result.model.cpu().eval()  # trained on CUDA where there is one; exported and verified on the CPU
    rows = generate_observations(256, seed=seed + 2, preset=preset)
    errors: list[float] = []
    to_onnx(model, rows[:2], entry / "policy.onnx", input_name=INPUT_NAME, names=OUTPUT_NAMES,
            verify=lambda p: errors.append(verify_onnx(p, model, INPUT_NAME, spec.observation_shape,
                                                       obs=rows, atol=VERIFY_ATOL)))
    artifact = PolicyArtifact(
        onnx_path=entry / "policy.onnx", sha256=sha256_file(entry / "policy.onnx"), preset=preset,
        observation_shape=spec.observation_shape, n_params=n_params(model),
        train_accuracy=result.train_accuracy, heldout_accuracy=result.heldout_accuracy,
        confident_share=result.confident_share, onnx_vs_torch_max_abs_err=errors[0],
        train_seconds=result.train_seconds, train_device=result.device, epochs_run=result.epochs_run,
        class_share=result.class_share, seed=seed, recipe_sha256=key, created_at=iso_utc(),
        metadata_path=entry / "policy.json")
    atomic_write_json(entry / "policy.json", {**asdict(artifact), "recipe": recipe(preset, seed)})
    log.info("%s policy: held-out agreement with the strategy %.1f %%, confident share %.1f %% "
             "(top-1 margin >= 0.1), ORT vs torch max abs err %.2g, trained in %.1f s",
             preset, 100 * artifact.heldout_accuracy, 100 * artifact.confident_share,
             artifact.onnx_vs_torch_max_abs_err, artifact.train_seconds)
    return artifact

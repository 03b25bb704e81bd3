"""Built variants and their fidelity, reused across runs: ``<cache root>/variants/<key>/``.

Building and judging every variant is most of a ``quantize`` run, and its result
depends only on the model, the observations, the build settings, this host's
ISA and the library versions. Those are hashed into the key. An entry is
written into a temporary folder and renamed into place, with a manifest of
every file's sha256 and a checksum of the manifest itself; it is verified before
use, so an interrupted or corrupted entry is never trusted (it is rebuilt).
Speed is never cached: it is measured on every run. Beside each entry, the names of
the finalists its last screening kept tell the next run which variants to time.
The cache keeps the ``KEEP_ENTRIES`` most recently used entries (one is about
100 MB for the default policy); older ones are removed when a new one is stored,
never one used within the last hour (another run may be reading it).

The entry's ``variants.pickle`` holds the judged :class:`VariantResult` objects.
It is only read after its checksum matches the manifest written with it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from costeff.artifacts import sha256_file
from costeff.quantization.records import VariantResult

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
PAYLOAD = "variants.pickle"
FINALISTS_SUFFIX = ".finalists.json"  # beside the entry: who the last screening kept (a timing hint)
KEEP_ENTRIES = 4
KEEP_RECENT_S = 3600.0
LIBRARIES = ("costeff", "numpy", "onnx", "onnxruntime", "onnxconverter-common", "openvino", "nncf")
# Settings that change only how variants are timed or chosen, never what is built or its fidelity.
SPEED_ONLY = ("window_s", "speed_rounds", "finalists", "latency_budget_ms", "target_rate", "gaps_s", "open_loop_s",
              "max_utilisation", "speed_of_failing", "tune_knobs", "min_speedup", "name")


def default_root(cache: Path) -> Path:
    """Where built variants are kept under the home's ``cache`` (``costeff.home``)."""
    return Path(cache) / "variants"


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = None
    return out


def key(model_sha256: str, observations_sha256: str, config: dict[str, Any], hardware: dict[str, Any]) -> dict:
    """Everything a built variant and its fidelity depend on, and its hash (``digest``)."""
    recipe = {k: v for k, v in config.items() if k not in SPEED_ONLY}
    parts = {"format": FORMAT, "model_sha256": model_sha256, "observations_sha256": observations_sha256,
             "recipe": recipe, "libraries": versions(), "code": code_fingerprint(),
             "host": {"isa": sorted(hardware.get("isa", [])), "cpu_model": hardware.get("cpu_model")}}
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return {**parts, "digest": hashlib.sha256(blob).hexdigest()}


def code_fingerprint() -> str:
    """The SHA-256 of the code that builds, judges and records variants (the whole quantization package):
    an entry made by other code, or pickled from another shape of VariantResult, is never trusted."""
    package = Path(__file__).parent
    digest = hashlib.sha256()
    for source in sorted(package.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def load(root: Path, k: dict[str, Any]) -> tuple[Any, str]:
    """(the stored build, why) or (None, why not): missing, partial and corrupted entries are not trusted."""
    entry = root / k["digest"]
    if not entry.is_dir():
        return None, "no entry for this model, recipe and library versions"
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        body = {x: manifest[x] for x in ("key", "files")}
        if manifest["checksum"] != _checksum(body) or manifest["key"]["digest"] != k["digest"]:
            return None, "manifest checksum mismatch"
        for rel, digest in manifest["files"].items():
            if sha256_file(entry / rel) != digest:
                return None, f"{rel} does not match its checksum"
        stored = pickle.loads((entry / PAYLOAD).read_bytes())
    except (OSError, ValueError, KeyError, pickle.UnpicklingError, EOFError, AttributeError) as exc:
        return None, f"unreadable entry ({type(exc).__name__})"
    fields = set(VariantResult.__dataclass_fields__)
    if any(not fields <= set(vars(v)) for v in stored["variants"]):
        return None, "an entry from another version of costeff"
    for v in stored["variants"]:
        if v.path is not None and not v.baseline:
            v.path = str(entry / v.path)
    try:
        os.utime(entry)  # used now: pruning removes it last
    except OSError as exc:  # a read-only cache is still read; only its pruning order is older than the truth
        log.debug("variant cache %s: not marked as used (%s)", entry, exc.strerror or exc)
    return stored, f"reused from {entry}"


def store(root: Path, k: dict[str, Any], variants: list[Any], extra: dict[str, Any]) -> Path:
    """Write one entry atomically: files and manifest into a temporary folder, renamed into place."""
    import copy

    root.mkdir(parents=True, exist_ok=True)
    entry = root / k["digest"]
    tmp = Path(tempfile.mkdtemp(prefix=f".{k['digest'][:12]}-", dir=root))
    try:
        kept = copy.deepcopy(variants)
        for i, v in enumerate(kept):
            if v.baseline or not v.built or v.path is None:
                continue
            v.path = _copy_model(Path(v.path), tmp / f"v{i}")
        (tmp / PAYLOAD).write_bytes(pickle.dumps({"variants": kept, **extra}))
        files = {str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        body = {"key": k, "files": files}
        (tmp / MANIFEST).write_text(json.dumps({**body, "checksum": _checksum(body)}, indent=1, sort_keys=True))
        if entry.exists():  # a corrupted entry: replaced, never merged
            shutil.rmtree(entry)
        os.replace(tmp, entry)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    prune(root)
    return entry


def prune(root: Path, keep: int = KEEP_ENTRIES, now: float | None = None) -> list[str]:
    """Remove the least recently used entries beyond ``keep`` (and their finalists hints); an entry used
    within ``KEEP_RECENT_S`` stays. Returns the digests removed."""
    import time

    now = time.time() if now is None else now
    entries = sorted((p for p in root.iterdir() if p.is_dir() and len(p.name) == 64 and not p.name.startswith(".")),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    removed = []
    for old in entries[keep:]:
        if now - old.stat().st_mtime < KEEP_RECENT_S:
            continue
        shutil.rmtree(old, ignore_errors=True)
        (root / f"{old.name}{FINALISTS_SUFFIX}").unlink(missing_ok=True)
        removed.append(old.name)
    return removed


def finalists(root: Path, digest: str) -> list[str] | None:
    """The finalists the last screening of this entry's variants kept, or None when unknown or unreadable.

    Only a hint for how much to time (timing is measured anew every run): a missing or damaged
    file means a screening round, never an error."""
    try:
        data = json.loads((root / f"{digest}{FINALISTS_SUFFIX}").read_text())
    except (OSError, ValueError):
        return None
    names = data.get("finalists") if isinstance(data, dict) and data.get("key") == digest else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return None
    return names


def remember_finalists(root: Path, digest: str, names: list[str]) -> None:
    """Write the finalists of this run's screening beside the entry (atomically; a failure costs a screening)."""
    path = root / f"{digest}{FINALISTS_SUFFIX}"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({"key": digest, "finalists": sorted(names)}))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def ac_outcome(root: Path, k: dict[str, Any]) -> dict[str, Any] | None:
    """What accuracy control did the last time this model was built on this host with these libraries
    (any costeff code: the outcome depends on NNCF, the model and the gates), or None when unknown."""
    try:
        data = json.loads((root / "ac" / f"{_outcome_digest(k)}.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("restored_all"), bool) else None


def remember_ac(root: Path, k: dict[str, Any], outcome: dict[str, Any]) -> None:
    path = root / "ac" / f"{_outcome_digest(k)}.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(outcome))
        os.replace(tmp, path)
    except OSError:  # a lost outcome costs the next build one accuracy-control search
        tmp.unlink(missing_ok=True)


def _outcome_digest(k: dict[str, Any]) -> str:
    parts = {x: v for x, v in k.items() if x not in ("code", "digest")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _copy_model(src: Path, folder: Path) -> str:
    """Copy a model (an IR's ``.bin`` beside its ``.xml``); the path relative to the entry."""
    folder.mkdir()
    shutil.copyfile(src, folder / src.name)
    if src.suffix == ".xml":
        shutil.copyfile(src.with_suffix(".bin"), folder / src.with_suffix(".bin").name)
    return f"{folder.name}/{src.name}"


def _checksum(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()

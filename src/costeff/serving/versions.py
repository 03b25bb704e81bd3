"""Numbered versions of one Triton model: ``<repository>/<name>/<N>/`` beside each other.

Every build adds version N+1 and never rewrites an earlier one; ``config.pbtxt`` pins
the served version with ``version_policy { specific { versions: [N] } }`` (Triton's
default policy would serve whatever number is highest, so a rollback must pin). The
last ``keep`` versions stay on disk. Version numbers are never reused: the highest
number ever built is kept in ``costeff_versions.json`` so a pruned number does not
come back with other bytes.

Nothing here knows which files make a model (``model.onnx``, or ``model.xml`` and
``model.bin``): a version is the folder and whatever the build put in it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from costeff.artifacts import SCHEMA_VERSION, atomic_write_json, atomic_write_text, iso_utc
from costeff.errors import InputError
from costeff.records.build import VersionBuild, VersionsLedger

VERSIONS_FILE = "costeff_versions.json"
DEFAULT_KEEP = 5


@dataclass(frozen=True)
class VersionInfo:
    version: int
    files: list[str]
    model_sha256: str | None  # as recorded by the build
    source_model: str | None
    built_at: str | None
    disk_sha256: str | None = None  # of the model file on disk now (model.onnx, else model.xml)
    bytes_match: bool | None = None  # False: the model file was replaced after the build; None: nothing to compare

    @property
    def sha256(self) -> str | None:
        """What this version serves: the bytes on disk, when there are any."""
        return self.disk_sha256 or self.model_sha256


@dataclass(frozen=True)
class ModelVersions:
    """What one model entry holds: its versions and which one its config serves."""

    schema_version: int
    model_dir: str
    name: str
    versions: list[VersionInfo]
    served: int
    pinned: bool  # False: no version_policy, Triton serves the highest number


def entry_lock(model_dir: Path, create: bool = False) -> Any:
    """An exclusive lock on one model entry (``<repository>/.<name>.lock``), held while its versions or
    its served version change, so two builds never both take N+1 and a rollback never races a build."""
    from costeff.artifacts import exclusive_lock

    model_dir = Path(model_dir)
    if not create and not model_dir.parent.is_dir():
        raise InputError(f"{model_dir.parent}: no such model repository")
    return exclusive_lock(model_dir.parent / f".{model_dir.name}.lock")


def version_numbers(model_dir: Path) -> list[int]:
    if not Path(model_dir).is_dir():
        return []
    return sorted(int(p.name) for p in Path(model_dir).iterdir() if p.is_dir() and p.name.isdigit()
                  and int(p.name) > 0)


def next_version(model_dir: Path) -> int:
    """One above every number this entry ever had (on disk or pruned)."""
    built = _ledger(model_dir).last_version
    return max([built, *version_numbers(model_dir)]) + 1


def pin(message: Any, version: int) -> Any:
    """Set ``version_policy { specific { versions: [version] } }`` on a ModelConfig message."""
    message.version_policy.specific.ClearField("versions")
    message.version_policy.specific.versions.append(version)
    return message


def stage(entry: Path, current: Path, version: int, files: dict[str, Path], keep: int,
          sha256: str | None, source: str | None) -> list[int]:
    """Fill the staging ``entry`` with the kept earlier versions of ``current`` plus ``version``.

    Earlier versions are hard-linked (same filesystem, no copy, the bytes stay byte-identical);
    ``files`` maps each file name in the new version folder to its source. Returns the numbers kept.
    """
    if keep < 1:
        raise InputError(f"keep_versions: {keep}; expected >= 1")
    kept = [v for v in version_numbers(current) if v < version][-(keep - 1):] if keep > 1 else []
    for old in kept:
        shutil.copytree(current / str(old), entry / str(old), copy_function=_link_or_copy)
    folder = entry / str(version)
    folder.mkdir(parents=True)
    for name, src in files.items():
        shutil.copyfile(src, folder / name)
    _write_ledger(entry, current, version, sorted(files), sha256, source, kept)
    return kept + [version]


def describe(model_dir: Path) -> ModelVersions:
    """The versions of ``model_dir`` and the one its config serves; InputError when there is none."""
    model_dir = Path(model_dir)
    numbers = version_numbers(model_dir)
    if not numbers:
        raise InputError(f"{model_dir}: no numbered version folders; expected <repository>/<name>/<N>/ "
                         "(build one with `costeff triton build`)")
    has_config = (model_dir / "config.pbtxt").is_file()
    pinned = pinned_versions(read_config(model_dir)) if has_config else []
    builds = _ledger(model_dir).builds
    infos = [_info(model_dir, n, builds.get(str(n)) or VersionBuild()) for n in numbers]
    served = max(pinned) if pinned else numbers[-1]
    return ModelVersions(SCHEMA_VERSION, str(model_dir), model_dir.name, infos, served, bool(pinned))


def read_config(model_dir: Path) -> Any:
    from google.protobuf import text_format

    from costeff.serving.config import triton_schema

    path = Path(model_dir) / "config.pbtxt"
    if not path.is_file():
        raise InputError(f"{path}: no such config; expected a model entry built by `costeff triton build`")
    cfg = triton_schema().ModelConfig()
    try:
        text_format.Parse(path.read_text(), cfg)
    except text_format.ParseError as exc:
        raise InputError(f"{path}: Triton's ModelConfig rejects it ({exc})") from None
    return cfg


def pinned_versions(cfg: Any) -> list[int]:
    if cfg.HasField("version_policy") and cfg.version_policy.WhichOneof("policy_choice") == "specific":
        return sorted(int(v) for v in cfg.version_policy.specific.versions)
    return []


def serve(model_dir: Path, version: int) -> None:
    """Rewrite ``config.pbtxt`` (atomically) so it serves ``version``; InputError for an unknown one."""
    from costeff.serving.config import to_text

    model_dir = Path(model_dir)
    numbers = version_numbers(model_dir)
    if version not in numbers:
        raise InputError(f"{model_dir}: no version {version}; versions on disk: "
                         f"{', '.join(map(str, numbers)) or 'none'}")
    atomic_write_text(model_dir / "config.pbtxt", to_text(pin(read_config(model_dir), version)))


def model_files(model_dir: Path, version: int) -> list[Path]:
    folder = Path(model_dir) / str(version)
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _info(model_dir: Path, number: int, build: VersionBuild) -> VersionInfo:
    files = build.files or [p.name for p in model_files(model_dir, number)]
    recorded, disk = build.model_sha256, disk_sha256(model_dir, number)
    match = None if recorded is None or disk is None else recorded == disk
    return VersionInfo(number, list(files), recorded, build.source_model, build.built_at, disk, match)


def disk_sha256(model_dir: Path, number: int) -> str | None:
    """The SHA-256 of a version's model file as it is on disk now (``model.onnx``, else ``model.xml``)."""
    from costeff.artifacts import sha256_file

    for name in ("model.onnx", "model.xml"):
        path = Path(model_dir) / str(number) / name
        if path.is_file() and not path.is_symlink():
            return sha256_file(path)
    return None


def _ledger(model_dir: Path) -> VersionsLedger:
    from pydantic import ValidationError

    path = Path(model_dir) / VERSIONS_FILE
    if not path.is_file():
        return VersionsLedger()
    try:
        return VersionsLedger.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise InputError(f"{path}: unreadable ({exc.strerror or exc}); it records the highest version ever "
                         "built") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(map(str, err["loc"])) or "(file)"
        raise InputError(f"{path}: corrupt ({field}: {err['msg']}); it records the highest version ever "
                         "built") from None


def _write_ledger(entry: Path, current: Path, version: int, files: list[str], sha256: str | None,
                  source: str | None, kept: list[int]) -> None:
    builds = {k: v for k, v in _ledger(current).builds.items() if k.isdigit() and int(k) in kept}
    builds[str(version)] = VersionBuild(files=files, model_sha256=sha256, source_model=source, built_at=iso_utc())
    ledger = VersionsLedger(schema_version=SCHEMA_VERSION, last_version=version, builds=builds)
    atomic_write_json(entry / VERSIONS_FILE, ledger.model_dump(mode="json"))


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not allowed: copy
        shutil.copy2(src, dst)


def served_model(model_dir: Path) -> Path:
    """The model file of the version the config serves: ``model.onnx``, else an OpenVINO ``model.xml``."""
    state = describe(model_dir)
    folder = Path(model_dir) / str(state.served)
    for name in ("model.onnx", "model.xml"):
        if (folder / name).is_file():
            return folder / name
    raise InputError(f"{folder}: no model.onnx or model.xml in the served version's folder")

"""Build and verify ``artifacts/cost/pack_<UTC ts>.tar.gz``.

The tarball holds ``manifest.json`` (every file's SHA-256 and size, paths relative
to the manifest, plus versions and hardware), ``COMPLETION_SUMMARY.md`` generated
from the packed reports, the latest report folder of each stage, the Triton model
repository and the audit trail. Verification reads the tarball in memory and never
extracts it, so a hostile archive cannot write outside its folder.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from costeff.artifacts import Layout, atomic_write_bytes, atomic_write_text, dumps, provenance, sha256_bytes, utc_stamp
from costeff.errors import InputError

MANIFEST = "manifest.json"
SUMMARY = "COMPLETION_SUMMARY.md"
DEPENDENCIES = ("numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxconverter-common", "torch",
                "tritonclient", "protobuf", "prometheus-client", "kubernetes", "nvidia-ml-py", "mlserver")

# (stage folder under cost/, report file name, folder name inside the pack)
STAGES = (
    (None, "gpu_profile.json", "profile"),
    ("quant", "quantization_report.json", "quant"),
    ("batching", "batching_report.json", "batching"),
    ("reaper", "reaper_report.json", "reaper"),
    ("ramp", "ramp_decision.json", "ramp"),
)


@dataclass(frozen=True)
class PackResult:
    path: Path
    manifest: dict[str, Any]
    summary_path: Path
    included: dict[str, str | None]  # stage -> source folder (None when no run has written it)


@dataclass
class VerifyReport:
    ok: bool
    path: str
    files_checked: int = 0
    problems: list[str] = field(default_factory=list)


def collect(layout: Layout, repository: Path | None = None,
            sources: dict[str, Path] | None = None) -> tuple[dict[str, bytes], dict[str, str | None]]:
    """The files to pack, as ``{path in pack: bytes}``, and where each stage came from.

    ``sources`` names the exact folder of each stage (``costeff run`` passes the
    folders it wrote); without it, the latest report of each stage is packed.
    """
    files: dict[str, bytes] = {}
    if sources is None:
        sources = {}
        for stage, report, name in STAGES:
            found = layout.latest(stage, report)
            if found:
                sources[name] = found.parent
    included: dict[str, str | None] = {name: None for _, _, name in STAGES}
    for name, folder in sources.items():
        included[name] = str(folder)
        files.update(_folder(Path(folder), name))
    repo = repository or Layout.model_repository()
    if repo.is_dir():
        files.update(_folder(repo, "model_repository"))
    for audit_file in sorted(layout.audit.glob("audit*.jsonl")) if layout.audit.is_dir() else []:
        files[f"audit/{audit_file.name}"] = audit_file.read_bytes()
    return files, included


def _folder(folder: Path, prefix: str) -> dict[str, bytes]:
    return {f"{prefix}/{p.relative_to(folder).as_posix()}": p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def build_manifest(files: dict[str, bytes]) -> dict[str, Any]:
    header = provenance(None)
    header.pop("model_sha256")
    return {
        **header,
        "dependencies": _versions(),
        "files": [{"path": p, "sha256": sha256_bytes(b), "size": len(b)} for p, b in sorted(files.items())],
    }


def _versions() -> dict[str, str]:
    found = {}
    for dist in DEPENDENCIES:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


def pack(layout: Layout | None = None, out_dir: Path | None = None, repository: Path | None = None,
         sources: dict[str, Path] | None = None) -> PackResult:
    """Pack the latest artifacts (or ``sources``); the summary is generated from the packed reports only."""
    from costeff.pack.summary import render_summary

    layout = layout or Layout.default()
    files, included = collect(layout, repository, sources)
    if not any(included.values()):
        raise InputError(f"{layout.cost}: no stage reports to pack; run `costeff run` (or a stage) first")
    files[SUMMARY] = render_summary(files).encode("utf-8")
    manifest = build_manifest(files)
    out_dir = Path(out_dir) if out_dir else layout.cost
    stamp = utc_stamp()
    tar_path = out_dir / f"pack_{stamp}.tar.gz"
    atomic_write_bytes(tar_path, _tarball(files, manifest))
    atomic_write_text(out_dir / MANIFEST, dumps(manifest))
    summary_path = atomic_write_bytes(out_dir / SUMMARY, files[SUMMARY])
    return PackResult(tar_path, manifest, summary_path, included)


def _tarball(files: dict[str, bytes], manifest: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in [(MANIFEST, dumps(manifest).encode("utf-8")), *sorted(files.items())]:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def read_pack(path: Path | str) -> dict[str, bytes]:
    """Every regular file of a pack, in memory; a non-pack or unsafe path is an InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such pack; expected artifacts/cost/pack_<ts>.tar.gz")
    try:
        with tarfile.open(path, "r:gz") as tar:
            return {m.name: _read_member(tar, m, path) for m in tar.getmembers() if m.isfile()}
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .tar.gz pack ({exc})") from None


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> bytes:
    p = PurePosixPath(member.name)
    if p.is_absolute() or ".." in p.parts:
        raise InputError(f"{path}: unsafe member path {member.name!r} in pack")
    return tar.extractfile(member).read()


def verify_pack(path: Path | str) -> VerifyReport:
    """Check every file against the manifest: present, same size, same SHA-256, nothing extra."""
    files = read_pack(path)
    report = VerifyReport(ok=False, path=str(path))
    try:
        manifest = json.loads(files.pop(MANIFEST))
        listed = {f["path"]: f for f in manifest["files"]}
    except KeyError:
        report.problems.append(f"{MANIFEST} is missing or has no 'files' list")
        return report
    except (json.JSONDecodeError, TypeError):
        report.problems.append(f"{MANIFEST} is not valid JSON with a 'files' list")
        return report
    for name, entry in sorted(listed.items()):
        report.problems += _check_file(name, entry, files.get(name))
    report.problems += [f"{name}: in the pack but not in the manifest" for name in sorted(set(files) - set(listed))]
    report.files_checked, report.ok = len(listed), not report.problems
    return report


def _check_file(name: str, entry: dict[str, Any], data: bytes | None) -> list[str]:
    if data is None:
        return [f"{name}: listed in the manifest but missing from the pack"]
    if len(data) != entry.get("size"):
        return [f"{name}: size {len(data)} != manifest {entry.get('size')}"]
    if sha256_bytes(data) != entry.get("sha256"):
        return [f"{name}: sha256 differs from the manifest (modified)"]
    return []

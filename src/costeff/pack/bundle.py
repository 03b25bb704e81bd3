"""Build ``artifacts/cost/pack_<UTC ts>.tar.gz`` (verification: ``costeff.pack.check``).

The tarball holds ``manifest.json`` (every file's SHA-256, size and mode, paths relative
to the manifest, plus versions and hardware), ``manifest.sig`` (Ed25519 over the
manifest's exact bytes, with the audit key), ``COMPLETION_SUMMARY.md`` generated
from the packed reports, the report folders of one run or one chain of records
(``costeff.pack.chain``), the Triton model repository and the audit trail. Beside
the tarball: ``COMPLETION_SUMMARY_<ts>.md`` and ``manifest_<ts>.json``/``.sig``. Links are never followed into the pack.
"""

from __future__ import annotations

import base64
import errno
import io
import os
import stat
import tarfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from costeff.artifacts import Workspace, atomic_write_bytes, dumps, provenance, sha256_bytes, utc_stamp
from costeff.errors import InputError

MANIFEST = "manifest.json"
MANIFEST_SIG = "manifest.sig"
SUMMARY = "COMPLETION_SUMMARY.md"
DEPENDENCIES = ("numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxconverter-common", "torch",
                "tritonclient", "protobuf", "prometheus-client", "kubernetes", "nvidia-ml-py", "mlserver")

@dataclass(frozen=True)
class PackResult:
    path: Path
    manifest: dict[str, Any]
    summary_path: Path
    included: dict[str, str | None]  # stage -> source folder (None when no run has written it)
    skipped: list[str] = field(default_factory=list)  # links and other files left out, with why
    key_id: str | None = None
    taken: str = ""  # which run (or which chain of records) was packed, in words
    left_out: list[str] = field(default_factory=list)  # newer records not of that run or chain, with why


def collect(layout: Workspace, repository: Path | None = None, sources: dict[str, Path] | None = None,
            skipped: list[str] | None = None, with_repository: bool = True) -> tuple[dict[str, bytes],
                                                                                  dict[str, str | None]]:
    """The files to pack, as ``{path in pack: bytes}``, and where each stage came from.

    ``sources`` names the exact folder of each stage (``costeff run`` passes the
    folders it wrote; ``costeff.pack.chain.select`` finds one run's or one chain's).
    Links are never followed: a symlink or a hard link (a second name for a file that
    may live anywhere) is left out and named in ``skipped``.
    """
    from costeff.pack.chain import STAGES

    skipped = skipped if skipped is not None else []
    files: dict[str, bytes] = {}
    included: dict[str, str | None] = {kind.name: None for kind in STAGES}
    for name, folder in (sources or {}).items():
        included[name] = str(folder)
        files.update(_folder(Path(folder), name, skipped))
    repo = repository or layout.repository
    if with_repository and repo.is_dir():
        files.update(_folder(repo, "model_repository", skipped))
    for audit_file in sorted(layout.audit.glob("audit*.jsonl")) if layout.audit.is_dir() else []:
        data = _read_plain(audit_file, skipped)
        if data is not None:
            files[f"audit/{audit_file.name}"] = data
    return files, included


def _folder(folder: Path, prefix: str, skipped: list[str]) -> dict[str, bytes]:
    if folder.is_symlink():
        skipped.append(f"{folder}: a symbolic link; links are never followed")
        return {}
    found: dict[str, bytes] = {}
    for root, dirs, names in os.walk(folder, followlinks=False):
        for d in sorted(dirs):
            if (Path(root) / d).is_symlink():
                skipped.append(f"{Path(root) / d}: a symbolic link; links are never followed")
        for name in sorted(names):
            path = Path(root) / name
            if name.startswith("."):
                continue
            data = _read_plain(path, skipped)
            if data is not None:
                found[f"{prefix}/{path.relative_to(folder).as_posix()}"] = data
    return found


def _read_plain(path: Path, skipped: list[str]) -> bytes | None:
    """The bytes of a regular file with one name; None (and why, in ``skipped``) for a link or an unreadable
    file. A FIFO, socket or device is an InputError: opened without blocking, it is never read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        reason = "a symbolic link" if exc.errno == errno.ELOOP else f"unreadable ({exc.strerror})"
        skipped.append(f"{path}: {reason}; left out")
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            kind = "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket or device"
            raise InputError(f"{path}: {kind}, not a regular file; a pack holds regular files only "
                             f"(remove it or move it out of the packed folder)")
        if st.st_nlink > 1:
            skipped.append(f"{path}: a hard link ({st.st_nlink} names for one file, which may live outside the "
                           f"artifacts); left out")
            return None
        return fh.read()


def build_manifest(files: dict[str, bytes], taken: str = "") -> dict[str, Any]:
    header = provenance(None)
    header.pop("model_sha256")
    return {
        **header,
        "records_from": taken,
        "dependencies": _versions(),
        "files": [{"path": p, "sha256": sha256_bytes(b), "size": len(b), "mode": "0644"}
                  for p, b in sorted(files.items())],
    }


def _versions() -> dict[str, str]:
    found = {}
    for dist in DEPENDENCIES:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


def pack(layout: Workspace, out_dir: Path | None = None, repository: Path | None = None,
         sources: dict[str, Path] | None = None, run: str | None = None) -> PackResult:
    """Pack one run's records (``sources``, or the run ``run`` names, by default the newest intact run) or one
    chain's (``costeff.pack.chain``); never a mix. The summary is generated from the packed reports only, and
    the manifest is signed with the audit key. Every output name carries the pack's stamp: nothing an earlier
    pack wrote is overwritten."""
    from costeff.audit.keys import home_signer
    from costeff.pack.chain import Selection, kind_of, select
    from costeff.pack.summary import render_summary
    from costeff.records.kinds import KINDS

    chosen = Selection(sources, f"run {run}" if run else "the folders given", run=run) if sources else \
        select(layout, repository, run)
    skipped: list[str] = []
    files, included = collect(layout, repository, chosen.sources, skipped, with_repository=chosen.repository)
    if not any(included.values()):
        raise InputError(f"{layout.cost}: no stage reports to pack; run `costeff run` (or a stage) first")
    origin = {f"{name}/{kind_of(name).filename}": str(Path(folder) / kind_of(name).filename)
              for name, folder in chosen.sources.items() if name == "profile_fp32" or name in KINDS}
    files[SUMMARY] = render_summary(files, origin).encode("utf-8")  # a corrupt record: InputError naming its file
    manifest = build_manifest(files, chosen.taken)
    manifest_bytes = dumps(manifest).encode("utf-8")
    signer = home_signer(layout.home, protect=(layout.root,))
    signature = sign_manifest(manifest_bytes, signer)
    out_dir = Path(out_dir) if out_dir else layout.cost
    stamp = utc_stamp()
    while any((out_dir / n).exists() for n in (f"pack_{stamp}.tar.gz", f"COMPLETION_SUMMARY_{stamp}.md")):
        stamp += "_"  # two packs within one second must not share a name
    tar_path = out_dir / f"pack_{stamp}.tar.gz"
    atomic_write_bytes(tar_path, _tarball(files, manifest_bytes, signature))
    atomic_write_bytes(out_dir / f"manifest_{stamp}.json", manifest_bytes)
    atomic_write_bytes(out_dir / f"manifest_{stamp}.sig", signature)
    summary_path = atomic_write_bytes(out_dir / f"COMPLETION_SUMMARY_{stamp}.md", files[SUMMARY])
    return PackResult(tar_path, manifest, summary_path, included, skipped, signer.key_id, chosen.taken,
                      chosen.left_out)


def sign_manifest(manifest_bytes: bytes, signer: Any) -> bytes:
    """``manifest.sig``: an Ed25519 signature over the exact bytes of ``manifest.json``."""
    doc = {"alg": "ed25519", "key_id": signer.key_id, "signed_file": MANIFEST,
           "sig": base64.b64encode(signer.sign(manifest_bytes)).decode("ascii")}
    return dumps(doc).encode("utf-8")


def _tarball(files: dict[str, bytes], manifest_bytes: bytes, signature: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in [(MANIFEST, manifest_bytes), (MANIFEST_SIG, signature), *sorted(files.items())]:
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
    fh = tar.extractfile(member)
    if fh is None:
        raise InputError(f"{path}: member {member.name!r} is not a regular file")
    return fh.read()

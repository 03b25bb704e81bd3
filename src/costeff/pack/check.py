"""``costeff pack --verify``: check a pack without extracting it, in bounded memory.

The tarball is read once as a stream. Each member is hashed in 1 MiB blocks;
only the manifest, its signature and the few reports the completion summary is
made from are kept (each under a size cap). A pack passes only when:

- every member is a regular file with a relative, clean, unique name (no
  symlink, hard link, device, absolute path or ``..``);
- ``manifest.sig`` is an Ed25519 signature over the exact bytes of
  ``manifest.json``, made by the audit key;
- every file matches the manifest (size, SHA-256), with nothing missing or extra;
- ``COMPLETION_SUMMARY.md`` equals the summary regenerated from the packed reports;
- the packed audit trail verifies (signatures, chain, its packed checkpoints).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from costeff.errors import InputError
from costeff.pack.bundle import MANIFEST, MANIFEST_SIG, SUMMARY

BLOCK = 1 << 20
MAX_KEPT_BYTES = 64 << 20  # a report larger than this is not a report
MAX_MEMBERS = 200_000
AUDIT_FILES = ("audit/audit.jsonl", "audit/audit.checkpoints.jsonl")


@dataclass
class VerifyReport:
    ok: bool
    path: str
    files_checked: int = 0
    key_id: str | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class _Seen:
    digests: dict[str, tuple[str, int]] = field(default_factory=dict)
    kept: dict[str, bytes] = field(default_factory=dict)
    spill: Path | None = None  # the packed audit trail goes to disk, to be verified without holding it


def _keep(name: str) -> bool:
    from costeff.pack import summary

    reports = {summary.PROFILE, summary.PROFILE_FP32, summary.QUANT, summary.BATCHING, summary.REAPER,
               summary.RAMP, summary.LEDGER, summary.VERIFY, MANIFEST, MANIFEST_SIG, SUMMARY}
    return name in reports or (name.startswith("model_repository/") and name.endswith("config.pbtxt"))


def verify_pack(path: Path | str, pubkey: Path | str | None = None) -> VerifyReport:
    """Every problem found, not only the first; ``ok`` when there is none."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such pack; expected artifacts/cost/pack_<ts>.tar.gz")
    report = VerifyReport(ok=False, path=str(path))
    with tempfile.TemporaryDirectory(prefix="costeff-pack-") as spill:
        seen = _scan(path, report, Path(spill))
        manifest = _manifest(seen, report)
        verifier = _check_signature(seen, report, pubkey)
        if manifest is not None:
            _check_files(manifest, seen, report)
            _check_summary(seen, report)
        _check_audit(Path(spill), verifier, report)
    report.ok = not report.problems
    return report


def _scan(path: Path, report: VerifyReport, spill: Path) -> _Seen:
    seen = _Seen(spill=spill)
    try:
        with tarfile.open(path, "r|gz") as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    report.problems.append(f"more than {MAX_MEMBERS} members: not a costeff pack")
                    break
                _member(tar, member, seen, report)
    except (tarfile.TarError, zlib.error, EOFError, OSError) as exc:
        if not seen.digests and not report.problems:
            raise InputError(f"{path}: not a readable .tar.gz pack ({exc})") from None
        report.problems.append(f"the archive is cut short or corrupt after {len(seen.digests)} files ({exc})")
    return seen


def _member(tar: tarfile.TarFile, member: tarfile.TarInfo, seen: _Seen, report: VerifyReport) -> None:
    name = member.name
    problem = _unsafe(name, member)
    if problem:
        report.problems.append(f"{name!r}: {problem}")
        return
    if name in seen.digests:
        report.problems.append(f"{name}: appears twice in the pack (a later copy could shadow the checked one)")
        return
    sink = open(seen.spill / PurePosixPath(name).name, "wb") if seen.spill and name in AUDIT_FILES else None
    try:
        digest, size, data = _read(tar, member, _keep(name), sink)
    finally:
        if sink is not None:
            sink.close()
    seen.digests[name] = (digest, size)
    if data is not None:
        seen.kept[name] = data
    elif _keep(name):
        report.problems.append(f"{name}: {size} bytes, larger than any report ({MAX_KEPT_BYTES} bytes)")


def _unsafe(name: str, member: tarfile.TarInfo) -> str | None:
    if member.issym():
        return f"a symbolic link (to {member.linkname!r}); a pack holds regular files only"
    if member.islnk():
        return f"a hard link (to {member.linkname!r}); a pack holds regular files only"
    if not member.isreg():
        return "not a regular file (directory, device or FIFO); a pack holds regular files only"
    p = PurePosixPath(name)
    if not name or p.is_absolute() or name.startswith("/"):
        return "an absolute path"
    if ".." in p.parts or "\\" in name:
        return "a path that climbs out of the pack ('..')"
    if p.as_posix() != name or "." in p.parts:
        return "a path that is not in canonical form"
    return None


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo, keep: bool, sink: Any = None) -> tuple[str, int, bytes | None]:
    digest, size, chunks = hashlib.sha256(), 0, []
    fh = tar.extractfile(member)
    while block := fh.read(BLOCK):
        digest.update(block)
        size += len(block)
        if sink is not None:
            sink.write(block)
        if keep and size <= MAX_KEPT_BYTES:
            chunks.append(block)
    return digest.hexdigest(), size, b"".join(chunks) if keep and size <= MAX_KEPT_BYTES else None


def _manifest(seen: _Seen, report: VerifyReport) -> dict[str, dict[str, Any]] | None:
    raw = seen.kept.get(MANIFEST)
    if raw is None:
        report.problems.append(f"{MANIFEST} is missing")
        return None
    try:
        listed = {f["path"]: f for f in json.loads(raw)["files"]}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        report.problems.append(f"{MANIFEST} is not valid JSON with a 'files' list of {{path, sha256, size}}")
        return None
    return listed


def _check_signature(seen: _Seen, report: VerifyReport, pubkey: Path | str | None) -> Any:
    """The verifier when the manifest's signature could be checked (whatever the verdict), else None."""
    from costeff.audit import load_verifier

    raw, sig_doc = seen.kept.get(MANIFEST), seen.kept.get(MANIFEST_SIG)
    if raw is None:
        return None
    if sig_doc is None:
        report.problems.append(f"{MANIFEST_SIG} is missing: the manifest is unsigned and anyone could have "
                               f"rewritten it (a pack from before signed packs?)")
        return None
    try:
        verifier = load_verifier(pubkey)
    except InputError as exc:
        report.problems.append(f"cannot check {MANIFEST_SIG}: {exc}")
        return None
    report.key_id = verifier.key_id
    try:
        doc = json.loads(sig_doc)
        sig = base64.b64decode(doc["sig"], validate=True)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, binascii.Error):
        report.problems.append(f"{MANIFEST_SIG} is not a signature document")
        return
    if doc.get("key_id") != verifier.key_id or not verifier.verify(sig, raw):
        report.problems.append(f"{MANIFEST}: signature does not verify with key {verifier.key_id} "
                               f"({verifier.source}); the manifest was edited or signed by another key")
    return verifier


def _check_audit(spill: Path, verifier: Any, report: VerifyReport) -> None:
    """The packed trail's own signatures and chain (its anchor is not in the pack: truncation after its last
    packed checkpoint is for `costeff audit verify` against the anchor)."""
    from costeff.audit import verify

    if verifier is None or not (spill / "audit.jsonl").exists():
        return
    result = verify(spill, verifier, anchor=None)
    if not result.ok:
        report.problems.append(f"audit/audit.jsonl line {result.first_bad_line}: {result.reason}")


def _check_files(listed: dict[str, dict[str, Any]], seen: _Seen, report: VerifyReport) -> None:
    files = {n: d for n, d in seen.digests.items() if n not in (MANIFEST, MANIFEST_SIG)}
    for name, entry in sorted(listed.items()):
        got = files.get(name)
        if got is None:
            report.problems.append(f"{name}: listed in the manifest but missing from the pack")
        elif got[1] != entry.get("size"):
            report.problems.append(f"{name}: size {got[1]} != manifest {entry.get('size')}")
        elif got[0] != entry.get("sha256"):
            report.problems.append(f"{name}: sha256 differs from the manifest (modified)")
    report.problems += [f"{name}: in the pack but not in the manifest" for name in sorted(set(files) - set(listed))]
    report.files_checked = len(listed)


def _check_summary(seen: _Seen, report: VerifyReport) -> None:
    from costeff.pack.summary import render_summary

    packed = seen.kept.get(SUMMARY)
    if packed is None:
        report.problems.append(f"{SUMMARY} is missing")
        return
    names = {n: seen.kept.get(n, b"") for n in seen.digests if n not in (MANIFEST, MANIFEST_SIG, SUMMARY)}
    regenerated = render_summary(names).encode("utf-8")
    if regenerated != packed:
        report.problems.append(f"{SUMMARY} differs from the summary regenerated from the packed reports "
                               f"(edited by hand)")

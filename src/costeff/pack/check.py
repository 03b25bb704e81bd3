"""``costeff pack --verify``: check a pack without extracting it, in bounded memory.

The tarball is read once as a stream, byte for byte (``costeff.pack.stream``).
Each member is hashed in 1 MiB blocks; only the manifest, its signature and the
few reports the completion summary is made from are kept (each under a size cap,
and all of them under another). A pack passes only when:

- it is exactly one gzip member holding a POSIX ustar/pax archive, with nothing
  after its end-of-archive blocks but zero padding, and no header (pax or other)
  larger than a name needs;
- every member is a regular file with a relative, clean, unique name (no
  symlink, hard link, device, absolute path or ``..``), mode 0644 or 0755 as the
  manifest says (never setuid, setgid or sticky), owned by 0/0;
- ``manifest.sig`` is an Ed25519 signature over the exact bytes of
  ``manifest.json``, made by the audit key;
- every file matches the manifest (size, SHA-256, mode), with nothing missing or extra;
- ``COMPLETION_SUMMARY.md`` equals the summary regenerated from the packed reports;
- the packed records form one chain: every record hash a packed record's ``inputs``
  names is the SHA-256 of a packed record (``costeff.pack.chain``);
- the packed audit trail verifies (signatures, chain, its packed checkpoints).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from costeff.errors import InputError
from costeff.pack.bundle import MANIFEST, MANIFEST_SIG, SUMMARY
from costeff.pack.stream import KINDS, REGULAR, Member, PackFormatError, TarReader

MAX_KEPT_BYTES = 8 << 20  # a report (or a manifest) larger than this is not one
MAX_KEPT_TOTAL = 32 << 20  # all the reports kept to regenerate the summary, together
MAX_MEMBERS = 20_000
MODES = (0o644, 0o755)
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
    kept_total: int = 0
    modes: dict[str, int] = field(default_factory=dict)
    spill: Path | None = None  # the packed audit trail goes to disk, to be verified without holding it


def _keep(name: str) -> bool:
    from costeff.pack import summary

    reports = {summary.PROFILE, summary.PROFILE_FP32, summary.QUANT, summary.BATCHING, summary.REAPER,
               summary.RAMP, summary.LEDGER, summary.VERIFY, MANIFEST, MANIFEST_SIG, SUMMARY}
    return name in reports or (name.startswith("model_repository/") and name.endswith(("config.pbtxt",
                                                                                     "costeff_build.json")))


def verify_pack(path: Path | str, pubkey: Path | str) -> VerifyReport:
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
            _check_chain(seen, report)
        _check_audit(Path(spill), verifier, report)
    report.ok = not report.problems
    return report


def _scan(path: Path, report: VerifyReport, spill: Path) -> _Seen:
    seen = _Seen(spill=spill)
    with open(path, "rb") as fh:
        reader = TarReader(fh)
        try:
            count = 0
            while (member := reader.next()) is not None:
                count += 1
                if count > MAX_MEMBERS:
                    report.problems.append(f"more than {MAX_MEMBERS} members: not a costeff pack")
                    break
                _member(reader, member, seen, report)
        except PackFormatError as exc:
            if exc.before_any:
                raise InputError(f"{path}: not a readable .tar.gz pack ({exc})") from None
            report.problems.append(f"{exc} (after {len(seen.digests)} files)")
        except OSError as exc:
            raise InputError(f"{path}: {exc.strerror or exc}") from None
    return seen


def _member(reader: TarReader, member: Member, seen: _Seen, report: VerifyReport) -> None:
    name = member.name
    problem = _unsafe(member)
    if problem:
        report.problems.append(f"{name!r}: {problem}")
        return
    if name in seen.digests:
        report.problems.append(f"{name}: appears twice in the pack (a later copy could shadow the checked one)")
        return
    report.problems += [f"{name}: {p}" for p in _header_problems(member)]
    keep = _keep(name) and seen.kept_total < MAX_KEPT_TOTAL
    sink = open(seen.spill / PurePosixPath(name).name, "wb") if seen.spill and name in AUDIT_FILES else None
    try:
        digest, size, data = _read(reader.data(member), keep, sink)
    finally:
        if sink is not None:
            sink.close()
    seen.digests[name] = (digest, size)
    seen.modes[name] = member.mode
    if data is not None:
        seen.kept[name] = data
        seen.kept_total += len(data)
    elif _keep(name):
        report.problems.append(f"{name}: {size} bytes, larger than any report ({MAX_KEPT_BYTES} bytes, "
                               f"{MAX_KEPT_TOTAL} for all reports)")


def _unsafe(member: Member) -> str | None:
    name = member.name
    if member.kind == b"2":
        return f"a symbolic link (to {member.linkname!r}); a pack holds regular files only"
    if member.kind == b"1":
        return f"a hard link (to {member.linkname!r}); a pack holds regular files only"
    if member.kind not in REGULAR:
        return f"not a regular file ({KINDS[member.kind]}); a pack holds regular files only"
    p = PurePosixPath(name)
    if not name or p.is_absolute() or name.startswith("/"):
        return "an absolute path"
    if ".." in p.parts or "\\" in name:
        return "a path that climbs out of the pack ('..')"
    if p.as_posix() != name or "." in p.parts or any(ord(c) < 32 for c in name):
        return "a path that is not in canonical form"
    return None


def _header_problems(member: Member) -> list[str]:
    """What ``tar -x`` would do beyond writing the bytes: the mode it sets and the owner it gives (as root)."""
    problems = []
    if member.mode & 0o7000:
        problems.append(f"mode {member.mode:04o} sets setuid/setgid/sticky bits; a pack's files are 0644 or 0755")
    elif member.mode not in MODES:
        problems.append(f"mode {member.mode:04o}; a pack's files are 0644 or 0755")
    if member.owner != (0, 0, "", ""):
        problems.append(f"owner {member.owner[:2]} {member.owner[2:]!r}; a pack's files are owned by 0/0 with no "
                        f"names (`tar -x` as root would give them to that user)")
    return problems


def _read(blocks: Iterator[bytes], keep: bool, sink: Any = None) -> tuple[str, int, bytes | None]:
    digest, size, chunks = hashlib.sha256(), 0, []
    for block in blocks:
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
    except (ValueError, RecursionError, KeyError, TypeError):  # ValueError: bad JSON or UTF-8
        report.problems.append(f"{MANIFEST} is not valid JSON with a 'files' list of {{path, sha256, size}}")
        return None
    return listed


def _check_signature(seen: _Seen, report: VerifyReport, pubkey: Path | str) -> Any:
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
    except (ValueError, RecursionError, KeyError, TypeError, binascii.Error):
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
        elif f"{seen.modes[name]:04o}" != entry.get("mode", "0644"):
            report.problems.append(f"{name}: mode {seen.modes[name]:04o} != manifest {entry.get('mode', '0644')}")
    report.problems += [f"{name}: in the pack but not in the manifest" for name in sorted(set(files) - set(listed))]
    report.files_checked = len(listed)


def _check_chain(seen: _Seen, report: VerifyReport) -> None:
    """Every record a packed record names in its ``inputs`` is in the pack: one chain, not a mix of runs."""
    from costeff.pack.chain import chain_problems

    report.problems += chain_problems(seen.kept, {n: d for n, (d, _) in seen.digests.items()})


def _check_summary(seen: _Seen, report: VerifyReport) -> None:
    from costeff.pack.summary import render_summary

    packed = seen.kept.get(SUMMARY)
    if packed is None:
        report.problems.append(f"{SUMMARY} is missing")
        return
    names = {n: seen.kept.get(n, b"") for n in seen.digests if n not in (MANIFEST, MANIFEST_SIG, SUMMARY)}
    try:
        regenerated = render_summary(names).encode("utf-8")
    except Exception as exc:  # noqa: BLE001 - hostile reports (nested 100,000 deep, say) fail the pack, not verify
        report.problems.append(f"{SUMMARY} cannot be regenerated from the packed reports "
                               f"({type(exc).__name__}: {str(exc)[:200]})")
        return
    if regenerated != packed:
        report.problems.append(f"{SUMMARY} differs from the summary regenerated from the packed reports "
                               f"(edited by hand)")

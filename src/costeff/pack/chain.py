"""Which records one pack, report or summary is made of: one run's, or one chain's, never a mix.

Every record names by SHA-256 the records it was made from (its ``inputs`` block:
the batching report its profile, the Triton build its profile, batching and
quantization reports, verify the build and the batching report, the ramp decision
its quantization report and the reports its projection read). ``costeff run``
writes ``cost/runs/<stamp>.json`` listing the records it produced. Selection:

- a run (``--run STAMP``; by default the newest run whose records are all still
  there unchanged): exactly that run's records;
- no run manifest (the records of separate commands), or ``--run chain``: the newest
  record, the records its ``inputs`` name (followed down), the newest record of each
  other kind whose own chain agrees with it, and the profiles of the models the
  quantization report names. A link to a record that is not under ``cost/`` is an
  InputError naming it: the pack is refused, not filled from another run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from costeff.artifacts import Workspace, iso_utc, sha256_file
from costeff.errors import InputError
from costeff.pack.measured import selected_entry
from costeff.records import Kind, Record
from costeff.records.kinds import BUILD, KINDS, PROFILE
from costeff.records.quant import QuantRecord
from costeff.records.run import FOLDER as RUNS
from costeff.records.run import RunRecord, read_run, run_kind

# the kinds a pack holds as stage folders (pack name = kind name), in the pack's order
STAGES: tuple[Kind[Any], ...] = tuple(KINDS[n] for n in ("profile", "quant", "batching", "reaper", "ramp",
                                                            "verify"))
# an ``inputs`` key -> the pack name (slot) of the record it names
LINKS = {"profile": "profile", "profile_fp32": "profile_fp32", "quantization_report": "quant",
         "batching_report": "batching", "reaper_report": "reaper", "triton_build": "build"}
TOPS = ("ramp", "verify", "batching", "quant", "profile")  # tried in this order after the newest record
_STAMP = re.compile(r"[0-9A-Za-z_]{1,64}")
_SHA = re.compile(r"[0-9a-f]{64}")


def kind_of(slot: str) -> Kind[Any]:
    """The kind of the record in pack slot ``slot`` ("profile_fp32" holds a profile)."""
    return PROFILE if slot == "profile_fp32" else KINDS[slot]


@dataclass(frozen=True)
class Found:
    """A record on disk: its kind, file, SHA-256 and typed content."""

    kind: str  # a kind's name ("profile", "quant", ..., "build")
    path: Path
    sha256: str
    record: Record

    @property
    def inputs(self) -> dict[str, str]:
        """The records (and models) it was made from, by SHA-256 (a profile's ``inputs`` also say where its
        batches came from: those are not hashes)."""
        return {k: v for k, v in self.record.inputs.items() if isinstance(v, str)}

    @property
    def when(self) -> str:
        """When it was made: ``created_at``, else the folder's UTC stamp, else the file's mtime."""
        if self.record.created_at:
            return self.record.created_at
        try:
            stamp = datetime.strptime(self.path.parent.name.rstrip("_"), "%Y%m%d_%H%M%SZ")
            return iso_utc(stamp.replace(tzinfo=timezone.utc))
        except ValueError:
            return iso_utc(datetime.fromtimestamp(self.path.stat().st_mtime, timezone.utc))


@dataclass
class Selection:
    sources: dict[str, Path]  # pack name -> folder
    taken: str  # which run, or which chain, in words
    run: str | None = None  # the run's stamp
    left_out: list[str] = field(default_factory=list)  # records not taken, with why
    repository: bool = True  # False: a build record in the Triton repository is of another chain


def index(layout: Workspace, repository: Path | None = None) -> list[Found]:
    """Every stage record under ``cost/`` and every build record in the Triton repository (``repository``, by
    default the workspace's). A corrupt record is an InputError naming it: whether it belongs to the chain
    cannot be told."""
    found = []
    for kind in STAGES:
        base = kind.base(layout)
        found += [_found(kind, p) for p in sorted(base.glob(f"*/{kind.filename}"))] if base.is_dir() else []
    repo = repository or layout.repository
    found += [_found(BUILD, p) for p in sorted(repo.glob(f"*/{BUILD.filename}"))] if repo.is_dir() else []
    return [r for r in found if r is not None]


def _found(kind: Kind[Any], path: Path) -> Found | None:
    if path.is_symlink() or not path.is_file():
        return None
    return Found(kind.name, path, sha256_file(path), kind.read(path))


def select(layout: Workspace, repository: Path | None = None, run: str | None = None) -> Selection:
    """``run``: a run's stamp, ``chain``, or None (the newest intact run, else the newest chain)."""
    if run not in (None, "chain"):
        return from_run(layout, run)
    passed_over: list[str] = []
    if run is None:
        for manifest in sorted(runs_dir(layout).glob("*.json"), reverse=True) if runs_dir(layout).is_dir() else []:
            why = _changed(manifest, read_run(manifest))
            if not why:
                chosen = from_run(layout, manifest.stem)
                chosen.left_out += passed_over
                return chosen
            passed_over.append(f"run {manifest.stem}: {why}")
    chosen = from_chain(layout, repository)
    chosen.left_out = passed_over + chosen.left_out
    return chosen


# -- runs ----------------------------------------------------------------------------------------------------

def runs_dir(layout: Workspace) -> Path:
    return layout.cost / RUNS


def write_run(layout: Workspace, stamp: str, sources: dict[str, Path], repository: Path | None,
              model_name: str | None) -> Path:
    """``cost/runs/<stamp>.json``: the records one ``costeff run`` produced, by path and SHA-256."""
    records = {name: Path(folder) / kind_of(name).filename for name, folder in sources.items()
               if name == "profile_fp32" or name in KINDS}
    if repository is not None and model_name:
        records["build"] = Path(repository) / model_name / BUILD.filename
    doc = {"run": stamp, "created_at": iso_utc(), "records": {
        name: {"path": str(path), "sha256": sha256_file(path)} for name, path in records.items() if path.is_file()}}
    return run_kind(stamp).write(runs_dir(layout), doc)


def _changed(manifest: Path, run: RunRecord) -> str | None:
    """Why the run's records are no longer what it wrote (None when all are there, unchanged)."""
    for name, entry in run.records.items():
        path = Path(entry.path)
        if not path.is_file():
            return f"its {name} record {path} is gone"
        if sha256_file(path) != entry.sha256:
            return f"its {name} record {path} changed after the run (sha256 differs from {manifest})"
    return None


def from_run(layout: Workspace, stamp: str) -> Selection:
    if not _STAMP.fullmatch(stamp):
        raise InputError(f"--run {stamp!r}: not a run stamp; expected e.g. 20261202_001304Z (a name under "
                         f"{runs_dir(layout)}/) or 'chain'")
    manifest = runs_dir(layout) / f"{stamp}.json"
    if not manifest.is_file():
        raise InputError(f"--run {stamp}: no run manifest {manifest}; expected the stamp of a `costeff run` "
                         f"(one of {runs_dir(layout)}/*.json) or 'chain'")
    run = read_run(manifest)
    why = _changed(manifest, run)
    if why:
        raise InputError(f"run {stamp}: {why}; pack another run or --run chain")
    sources = {name: Path(e.path).parent for name, e in run.records.items() if name != "build"}
    return Selection(sources, f"run {stamp} ({manifest})", run=stamp)


# -- chains --------------------------------------------------------------------------------------------------

def from_chain(layout: Workspace, repository: Path | None = None) -> Selection:
    records = index(layout, repository)
    stages = [r for r in records if r.kind in TOPS]
    if not stages:
        raise InputError(f"{layout.cost}: no stage reports to pack (no costeff report under it); run `costeff run` "
                         f"(or a stage) first")
    top = max(stages, key=_newest)
    chain = _follow(top, _slot(top), records, {}, layout)
    left_out: list[str] = []
    for kind in TOPS:
        newest = max((r for r in records if r.kind == kind), key=_newest, default=None)
        if newest is None or any(r.path == newest.path for r in chain.values()) or \
                (kind == "profile" and "quant" in chain):  # the quantization report's models pick its profiles
            continue
        joined, why = _join(chain, newest, _slot(newest), records, layout)
        if why:
            left_out.append(f"{newest.path}: not of this chain ({why})")
        else:
            chain = joined
    _profiles(chain, records)
    chain, foreign = _builds(chain, records, layout)
    sources = {slot: r.path.parent for slot, r in chain.items() if slot in KINDS or slot == "profile_fp32"}
    return Selection(sources, f"the chain of {top.path} (the records its inputs name; no run manifest)",
                     left_out=left_out + foreign, repository=not foreign)


def _join(chain: dict[str, Found], record: Found, slot: str, records: list[Found],
          layout: Workspace) -> tuple[dict[str, Found], str | None]:
    """``chain`` with ``record`` and what its inputs name, and why they do not agree (None when they do)."""
    try:
        joined = _baseline(_follow(record, slot, records, dict(chain), layout))
        return joined, _disagrees(joined)
    except InputError as exc:
        return chain, str(exc)


def _builds(chain: dict[str, Found], records: list[Found], layout: Workspace) -> tuple[dict[str, Found], list[str]]:
    """The chain with each Triton build record of the repository that agrees with it; why the others do not
    (the repository, packed whole, is then left out)."""
    foreign = []
    for build in (r for r in records if r.kind == "build"):
        joined, why = _join(chain, build, f"build {build.path.parent.name}", records, layout)
        if why:
            foreign.append(f"{build.path}: not of this chain ({why}); the Triton repository is left out")
        else:
            chain = joined
    return chain, foreign


def _slot(record: Found) -> str:
    return record.kind


def _newest(record: Found) -> tuple[str, int, str]:
    """Newest first; of records made in the same second, the one made from the others (a ramp decision before
    the quantization report it read)."""
    rank = len(TOPS) - TOPS.index(record.kind) if record.kind in TOPS else 0
    return record.when, rank, record.path.parent.name


def _follow(record: Found, slot: str, records: list[Found], chain: dict[str, Found],
            layout: Workspace) -> dict[str, Found]:
    """``chain`` with ``record`` in ``slot`` and every record its ``inputs`` name, followed down."""
    held = chain.get(slot)
    if held is not None and held.sha256 != record.sha256:
        raise InputError(f"{record.path} and {held.path} would both be the {slot} record of one chain")
    chain[slot] = record
    for key, sha in sorted(record.inputs.items()):
        if key not in LINKS:
            continue  # a model: its bytes are named, the records made of them are found by _profiles
        kind = "profile" if LINKS[key] == "profile_fp32" else LINKS[key]
        found = next((r for r in records if r.kind == kind and r.sha256 == sha), None)
        if found is None:
            where = "the Triton repository" if kind == "build" else f"{layout.cost}/"
            raise InputError(f"{record.path} was made from {key.replace('_', ' ')} sha256 {_short(sha)}, which is "
                             f"in no {_noun(kind)} under {where}")
        _follow(found, LINKS[key], records, chain, layout)
    return chain


def _short(sha: object) -> str:
    """A hash as a message shows it: its first 12 digits, or what stands there instead, quoted (one line)."""
    return f"{sha[:12]}…" if isinstance(sha, str) and _SHA.fullmatch(sha) else ascii(sha)[:40]


def _noun(kind: str) -> str:
    return {"build": "Triton build record", "quant": "quantization report", "batching": "batching report",
            "reaper": "reaper report", "ramp": "ramp decision", "verify": "verify report"}.get(kind, kind)


def _quant(chain: dict[str, Found]) -> tuple[Found, QuantRecord] | None:
    held = chain.get("quant")
    return (held, held.record) if held is not None and isinstance(held.record, QuantRecord) else None


def _baseline(chain: dict[str, Found]) -> dict[str, Found]:
    """A profile of the quantization report's original model, when another variant is served, is its fp32
    baseline: moved to that slot."""
    quant, held = _quant(chain), chain.get("profile")
    if quant is None or held is None or "profile_fp32" in chain:
        return chain
    model = quant[1].model_sha256
    if held.record.model_sha256 == model and _selected_sha(quant[1]) != model:
        chain["profile_fp32"] = chain.pop("profile")
    return chain


def _disagrees(chain: dict[str, Found]) -> str | None:
    """Why the profiles in ``chain`` are not of the models its quantization report names (None when they are)."""
    quant = _quant(chain)
    if quant is None:
        return None
    model, selected = quant[1].model_sha256, _selected_sha(quant[1])
    for slot, wanted in (("profile_fp32", {model}), ("profile", {selected})):
        held = chain.get(slot)
        got = held.record.model_sha256 if held else None
        if held is not None and got not in wanted:
            return (f"its {slot.replace('_', ' ')} {held.path} measured model sha256 {_short(got)}, not the "
                    f"model {quant[0].path} names")
    return None


def _selected_sha(quant: QuantRecord) -> str | None:
    """The served model's bytes: the selected variant's sha256 (fp32's is the report's model_sha256)."""
    variant = selected_entry(quant)
    return (variant.sha256 if variant else None) or quant.selected.sha256 or quant.model_sha256


def _profiles(chain: dict[str, Found], records: list[Found]) -> None:
    """The newest profile of each model the chain's quantization report names, where the chain has none."""
    quant = _quant(chain)
    if quant is None:
        return
    model, selected = quant[1].model_sha256, _selected_sha(quant[1])
    if model == selected and ("profile" in chain) != ("profile_fp32" in chain):  # fp32 served: one profile, as a run
        chain["profile"] = chain["profile_fp32"] = chain.get("profile") or chain["profile_fp32"]
    for slot, sha in (("profile_fp32", model), ("profile", selected)):
        if slot in chain or sha is None:
            continue
        found = [r for r in records if r.kind == "profile" and r.record.model_sha256 == sha]
        if found:
            chain[slot] = max(found, key=_newest)


# -- verification --------------------------------------------------------------------------------------------

def packed_records(names: list[str]) -> list[str]:
    """The packed files that are records (whose ``inputs`` are checked)."""
    reports = {f"{kind.name}/{kind.filename}" for kind in STAGES} | {f"profile_fp32/{PROFILE.filename}"}
    return sorted(n for n in names if n in reports or (n.startswith("model_repository/")
                                                       and n.endswith(BUILD.filename) and n.count("/") == 2))


def chain_problems(kept: dict[str, bytes], digests: dict[str, str]) -> list[str]:
    """Each packed record's ``inputs`` that name a record, checked against the packed records' SHA-256."""
    names = packed_records(list(digests))
    present = {digests[n] for n in names}
    problems = []
    for name in names:
        kind = BUILD if name.startswith("model_repository/") else kind_of(name.split("/")[0])
        try:
            record = kind.parse(kept.get(name) or b"{}", name)
        except InputError as exc:
            problems.append(str(exc))
            continue
        except RecursionError:  # JSON nested deeper than Python parses: not a record any writer makes
            problems.append(f"{name}: corrupt {kind.name} record: nested too deep to be one")
            continue
        for key, sha in sorted(record.inputs.items()):
            if key in LINKS and sha not in present:
                problems.append(f"{name}: made from {key.replace('_', ' ')} sha256 {_short(sha)}, which is not "
                                f"in this pack (records of different runs mixed)")
    return problems

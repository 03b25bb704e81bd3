"""Which figure the completion summary shows for a measured quantity: one measurement, used everywhere.

Throughput, speedup and $/day of the served variant and of fp32 come from the
interleaved rounds of the quantization report when it timed them; a dedicated
profile that disagrees with those rounds is named, not shown as a second figure.

:class:`Reports` holds the typed records a summary or a report page is made of,
each read through its kind (``costeff.records.kinds``): a corrupt record is an
``InputError`` naming it, never a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Protocol

from costeff.records import Kind, R
from costeff.records.batching import BatchingRecord
from costeff.records.kinds import BATCHING, PROFILE, QUANT, RAMP, REAPER, VERIFY
from costeff.records.profile import ProfileRecord
from costeff.records.quant import QuantRecord, Variant
from costeff.records.ramp import RampRecord
from costeff.records.reaper import ReaperRecord
from costeff.records.verify import VerifyRecord

PROFILE_PATH, PROFILE_FP32_PATH = "profile/gpu_profile.json", "profile_fp32/gpu_profile.json"
QUANT_PATH = "quant/quantization_report.json"
# a Reports field -> its kind and its path inside a pack
PACKED: dict[str, tuple[Kind[Any], str]] = {
    "profile": (PROFILE, PROFILE_PATH), "fp32": (PROFILE, PROFILE_FP32_PATH), "quant": (QUANT, QUANT_PATH),
    "batching": (BATCHING, f"{BATCHING.folder}/{BATCHING.filename}"),
    "reaper": (REAPER, f"{REAPER.folder}/{REAPER.filename}"), "ramp": (RAMP, f"{RAMP.folder}/{RAMP.filename}"),
    "verify": (VERIFY, f"{VERIFY.folder}/{VERIFY.filename}"),
}


class _Load(Protocol):
    def __call__(self, kind: Kind[R], name: str) -> R | None: ...


@dataclass(frozen=True)
class Reports:
    """The records of one run (or one chain): None where that stage wrote none."""

    profile: ProfileRecord | None = None  # the served variant's profile (fp32's when fp32 is served)
    fp32: ProfileRecord | None = None
    quant: QuantRecord | None = None
    batching: BatchingRecord | None = None
    reaper: ReaperRecord | None = None
    ramp: RampRecord | None = None
    verify: VerifyRecord | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, bytes | str | Mapping[str, Any] | None],
              where: Mapping[str, str] | None = None) -> "Reports":
        """Each present record of ``raw`` (field name -> bytes or JSON) through its kind; ``where`` names each
        field's file in errors (default: its path in a pack)."""
        named = where or {}

        def one(kind: Kind[R], name: str) -> R | None:
            data = raw.get(name)
            return None if data is None else kind.parse(data, named.get(name, PACKED[name][1]))

        return cls._of(one)

    @classmethod
    def read(cls, paths: Mapping[str, Path]) -> "Reports":
        """The record in each file of ``paths`` (field name -> file) through its kind."""

        def one(kind: Kind[R], name: str) -> R | None:
            return kind.read(paths[name]) if name in paths else None

        return cls._of(one)

    @classmethod
    def _of(cls, one: "_Load") -> "Reports":
        return cls(one(PROFILE, "profile"), one(PROFILE, "fp32"), one(QUANT, "quant"), one(BATCHING, "batching"),
                   one(REAPER, "reaper"), one(RAMP, "ramp"), one(VERIFY, "verify"))

    @classmethod
    def from_pack(cls, files: Mapping[str, bytes], origin: Mapping[str, str] | None = None) -> "Reports":
        """The records among a pack's files (``{path in pack: bytes}``); ``origin`` maps a path in the pack to
        the file it was read from, to name that file in errors."""
        raw = {name: files.get(path) for name, (_, path) in PACKED.items()}
        where = {name: (origin or {}).get(path, path) for name, (_, path) in PACKED.items()}
        return cls.parse(raw, where)

    def missing(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is None]


def host(reports: Reports) -> tuple[str, str, str]:
    """CPU model, core count and GPUs of the machine the records were made on, in words."""
    record = reports.profile or reports.fp32 or reports.quant
    hw: dict[str, Any] = (record.hardware if record else None) or {}
    gpus = ", ".join(str(g.get("name", "?")) for g in hw.get("gpus") or [] if isinstance(g, dict)) or "none"
    return str(hw.get("cpu_model", "unknown")), str(hw.get("cpu_count", "?")), gpus


def selected_entry(quant: QuantRecord | None) -> Variant | None:
    """The quantization report's entry for the variant it selected."""
    if quant is None:
        return None
    return next((v for v in quant.variants if v.name == quant.selected.name), None)


def timed_entry(quant: QuantRecord | None, profile: ProfileRecord | None, label: str) -> Variant | None:
    """The quantization report's entry for the profiled model (by hash; fp32 by baseline) when it was timed."""
    if quant is None or profile is None:
        return None
    for v in quant.variants:
        same = v.sha256 == profile.model_sha256 or (label == "fp32 baseline" and v.baseline)
        if same and v.optimal_throughput_per_s:
            return v
    return None


@dataclass(frozen=True)
class Disagreement:
    """Two throughput measurements of one variant at one batch whose measured ranges do not overlap."""

    variant: str
    batch: int
    profile_per_s: float | None
    profile_range: tuple[float, float]
    quant_per_s: float | None
    quant_range: tuple[float, float]
    label: str = ""  # "served variant" or "fp32 baseline"
    profile_file: str = ""


def disagreements(r: Reports) -> list[Disagreement]:
    """Pairs of throughput measurements of the same variant and batch whose measured ranges do not overlap.

    The profile's range is its measurement windows (min-max); the quantization
    report's is its interleaved speed rounds. Ranges that do not overlap mean the
    machine changed between the two (other load, frequency scaling), not noise.
    """
    out = []
    for label, path, p in (("served variant", PROFILE_PATH, r.profile), ("fp32 baseline", PROFILE_FP32_PATH, r.fp32)):
        found = _pair(p, r.quant)
        if found and (found.profile_range[1] < found.quant_range[0] or found.quant_range[1] < found.profile_range[0]):
            out.append(Disagreement(**{**found.__dict__, "label": label, "profile_file": path}))
    return out


def _pair(profile: ProfileRecord | None, quant: QuantRecord | None) -> Disagreement | None:
    if profile is None or quant is None or profile.optimal is None:
        return None
    variant = next((v for v in quant.variants if v.sha256 == profile.model_sha256), None)
    batch = profile.optimal.batch_size
    point = next((x for x in profile.points if x.batch_size == batch), None)
    if not variant or not point or batch is None or batch not in variant.throughput_range_per_s:
        return None
    windows = [w.throughput_per_s for w in point.windows if w.throughput_per_s]
    if not windows:
        return None
    return Disagreement(variant.name, batch, point.throughput_per_s, (min(windows), max(windows)),
                        variant.throughput_per_s.get(batch), variant.throughput_range_per_s[batch])


@dataclass(frozen=True)
class DayCost:
    """What serving the target rate costs per day with one model, and on what."""

    usd_per_day: float
    target_rate_per_s: float | None
    instances_needed: int | None
    instance: str | None
    source: str  # the Reports field of the record it was read from


def day_costs(r: Reports) -> tuple[DayCost | None, DayCost | None, str]:
    """fp32's and the served variant's $/day at the target: from the interleaved rounds (the same measurement
    as the speedup) when the quantization report has them, else from the two dedicated profiles."""
    q = r.quant
    base = next((v for v in q.variants if v.baseline), None) if q else None
    sel = selected_entry(q)
    b, s = base.at_target if base else None, sel.at_target if sel else None
    if q and b and s and b.usd_per_day is not None and s.usd_per_day is not None:
        rate, inst = q.cost.target_rate_per_s, q.cost.instance
        return (DayCost(b.usd_per_day, rate, b.instances, inst, "quant"),
                DayCost(s.usd_per_day, rate, s.instances, inst, "quant"), f"`{QUANT_PATH}`")
    before, after = r.fp32.cost if r.fp32 else None, r.profile.cost if r.profile else None
    if before and after and before.usd_per_day is not None and after.usd_per_day is not None:
        return (DayCost(before.usd_per_day, before.target_rate_per_s, before.instances_needed, before.instance,
                        "fp32"),
                DayCost(after.usd_per_day, after.target_rate_per_s, after.instances_needed, after.instance, "profile"),
                f"`{PROFILE_FP32_PATH}`, `{PROFILE_PATH}`")
    return None, None, ""

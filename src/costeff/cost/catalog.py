"""The price catalog: on-demand $/hour per instance, each price with its source and date."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from costeff.errors import InputError

_FIELDS = {"kind", "gpu", "gpus", "vcpus", "usd_per_hour", "gpu_match", "cpu_match", "source", "as_of"}


@dataclass(frozen=True)
class Instance:
    name: str
    kind: str  # "gpu" or "cpu"
    usd_per_hour: float
    source: str
    as_of: str
    gpu: str | None = None
    gpus: int = 0
    vcpus: int | None = None
    gpu_match: tuple[str, ...] = ()
    cpu_match: bool = False

    @property
    def usd_per_gpu_hour(self) -> float:
        """Price of one GPU's share (a slice of an 8-GPU node serves one replica)."""
        return self.usd_per_hour / self.gpus if self.gpus else self.usd_per_hour


@dataclass(frozen=True)
class Catalog:
    instances: dict[str, Instance]
    path: str

    def get(self, name: str) -> Instance:
        try:
            return self.instances[name]
        except KeyError:
            raise InputError(f"{self.path}: no instance {name!r}; known: {', '.join(sorted(self.instances))}") from None

    def for_hardware(self, gpu_name: str | None) -> Instance:
        """The instance that matches a local GPU by NVML name, or the CPU default."""
        if gpu_name:
            for inst in self.instances.values():
                if any(m.lower() in gpu_name.lower() for m in inst.gpu_match):
                    return inst
        for inst in self.instances.values():
            if inst.cpu_match:
                return inst
        raise InputError(f"{self.path}: no instance matches {gpu_name or 'a CPU-only machine'}; pass --instance")


def load_catalog(path: Path | str | None = None) -> Catalog:
    """Load the shipped catalog, or ``path`` when given (same TOML format)."""
    if path is None:
        ref = resources.files("costeff.cost") / "catalog.toml"
        text, where = ref.read_text(encoding="utf-8"), "costeff/cost/catalog.toml"
    else:
        try:
            text, where = Path(path).read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise InputError(f"{path}: cannot read price catalog: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{where}: not valid TOML: {exc}") from None
    table = data.get("instances")
    if not isinstance(table, dict) or not table:
        raise InputError(f"{where}: expected an [instances.<name>] table with at least one instance")
    return Catalog({name: _instance(name, spec, where) for name, spec in table.items()}, where)


def _instance(name: str, spec: dict[str, Any], where: str) -> Instance:
    unknown = set(spec) - _FIELDS
    if unknown:
        raise InputError(f"{where}: instances.{name}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_FIELDS)}")
    for req in ("kind", "usd_per_hour", "source", "as_of"):
        if req not in spec:
            raise InputError(f"{where}: instances.{name}.{req} is missing")
    price = spec["usd_per_hour"]
    if not isinstance(price, (int, float)) or price <= 0:
        raise InputError(f"{where}: instances.{name}.usd_per_hour must be a positive number, got {price!r}")
    if spec["kind"] not in ("gpu", "cpu"):
        raise InputError(f"{where}: instances.{name}.kind must be 'gpu' or 'cpu', got {spec['kind']!r}")
    return Instance(name=name, kind=spec["kind"], usd_per_hour=float(price), source=str(spec["source"]),
                    as_of=str(spec["as_of"]), gpu=spec.get("gpu"), gpus=int(spec.get("gpus", 0)),
                    vcpus=spec.get("vcpus"), gpu_match=tuple(spec.get("gpu_match", ())),
                    cpu_match=bool(spec.get("cpu_match", False)))

"""The price catalog: on-demand $/hour per instance, each price with its source and date."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from costeff.errors import InputError

_FIELDS = {"kind", "gpu", "gpus", "vcpus", "usd_per_hour", "gpu_match", "cpu_match", "cpu_family", "source",
           "as_of"}
CPU_FAMILIES = ("amx", "avx512-vnni", "avx512", "avx2", "amd-avx2")


def cpu_family(isa: tuple[str, ...] | list[str], vendor: str = "") -> str:
    """The ISA family a CPU host is priced by: what decides which precisions run fast on it."""
    if "amx_bf16" in isa or "amx_int8" in isa:
        return "amx"
    if "avx512_vnni" in isa:
        return "avx512-vnni"
    if "avx512f" in isa:
        return "avx512"
    return "amd-avx2" if "amd" in vendor.lower() else "avx2"


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
    cpu_family: str | None = None  # amx | avx512-vnni | avx512 | avx2 | amd-avx2 (CPU instances)

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

    def for_hardware(self, gpu_name: str | None, hw: Any = None) -> Instance:
        """The instance that matches a local GPU by NVML name, else the CPU host (see ``for_cpu``)."""
        if gpu_name:
            for inst in self.instances.values():
                if any(m.lower() in gpu_name.lower() for m in inst.gpu_match):
                    return inst
        if hw is not None:
            matched = self.for_cpu(hw)
            if matched is not None:
                return matched
        for inst in self.instances.values():
            if inst.cpu_match:
                return inst
        raise InputError(f"{self.path}: no instance matches {gpu_name or 'a CPU-only machine'}; pass --instance")

    def for_cpu(self, hw: Any) -> Instance | None:
        """The cheapest per vCPU of the instances of this host's ISA family, scaled to the cores used.

        A profile measures what this process's CPUs can do; the price is that many
        vCPUs of an instance family with the same ISA (an AMX host is not priced as
        an AVX-512-only c6i, whose CPUs have no bf16 at all).
        """
        from costeff.runtimes.cpus import usable_cpus

        family = cpu_family(tuple(hw.isa), hw.cpu_model)
        same = [i for i in self.instances.values() if i.kind == "cpu" and i.cpu_family == family and i.vcpus]
        if not same:
            return None
        best = min(same, key=lambda i: i.usd_per_hour / i.vcpus)
        cores = getattr(hw, "cores", None) or usable_cpus()  # a compared profile's own threads, else ours
        price = best.usd_per_hour / best.vcpus * cores
        return Instance(name=f"{best.name}/{cores}vcpu", kind="cpu", usd_per_hour=price,
                        source=f"{best.source}; {best.usd_per_hour}/h for {best.vcpus} vCPU scaled to {cores} vCPU",
                        as_of=best.as_of, vcpus=cores, cpu_family=family)


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
                    cpu_match=bool(spec.get("cpu_match", False)), cpu_family=_family(name, spec, where))


def _family(name: str, spec: dict[str, Any], where: str) -> str | None:
    family = spec.get("cpu_family")
    if family is not None and family not in CPU_FAMILIES:
        raise InputError(f"{where}: instances.{name}.cpu_family must be one of {', '.join(CPU_FAMILIES)}, "
                         f"got {family!r}")
    if family is not None and not (isinstance(spec.get("vcpus"), int) and spec["vcpus"] > 0):
        raise InputError(f"{where}: instances.{name}.vcpus must be a positive integer with cpu_family")
    return family

"""The price catalog: on-demand $/hour per instance, each price with its source and date."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictBool, StrictInt, StrictStr, ValidationInfo, field_validator

from costeff.configfile import STRICT_MODEL
from costeff.errors import InputError

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
        same = [(i.usd_per_hour / i.vcpus, i) for i in self.instances.values()
                if i.kind == "cpu" and i.cpu_family == family and i.vcpus]
        if not same:
            return None
        per_vcpu, best = min(same, key=lambda pair: pair[0])
        cores = getattr(hw, "cores", None) or usable_cpus()  # a compared profile's own threads, else ours
        price = per_vcpu * cores
        return Instance(name=f"{best.name}/{cores}vcpu", kind="cpu", usd_per_hour=price,
                        source=f"{best.source}; {best.usd_per_hour}/h for {best.vcpus} vCPU scaled to {cores} vCPU",
                        as_of=best.as_of, vcpus=cores, cpu_family=family)


class InstanceSpec(BaseModel):
    """One ``[instances.<name>]`` table as written in the TOML file: strict types, no unknown keys."""

    model_config = STRICT_MODEL
    kind: Literal["gpu", "cpu"]
    usd_per_hour: Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]
    source: StrictStr
    as_of: StrictStr
    gpu: StrictStr | None = None
    gpus: Annotated[StrictInt, Field(ge=0)] = 0
    vcpus: Annotated[StrictInt, Field(gt=0)] | None = None
    gpu_match: tuple[StrictStr, ...] = ()  # a string here would match by its characters: refused
    cpu_match: StrictBool = False
    cpu_family: Literal[CPU_FAMILIES] | None = None  # type: ignore[valid-type]

    @field_validator("cpu_family")
    @classmethod
    def _family_needs_vcpus(cls, family: str | None, info: ValidationInfo) -> str | None:
        if family is not None and info.data.get("vcpus") is None:
            raise ValueError("a family only together with vcpus (it is priced per vCPU)")
        return family


class CatalogFile(BaseModel):
    model_config = STRICT_MODEL
    instances: Annotated[dict[str, InstanceSpec], Field(min_length=1)]


def load_catalog(path: Path | str | None = None) -> Catalog:
    """Load the shipped catalog, or ``path`` when given (same TOML format); errors name file and key."""
    from costeff.configfile import read_toml, validate

    if path is None:
        ref = resources.files("costeff.cost") / "catalog.toml"
        data, where = tomllib.loads(ref.read_text(encoding="utf-8")), "costeff/cost/catalog.toml"
    else:
        data, where = read_toml(path, "price catalog"), str(path)
    parsed = validate(CatalogFile, data, where)
    return Catalog({name: Instance(name=name, **spec.model_dump()) for name, spec in parsed.instances.items()}, where)

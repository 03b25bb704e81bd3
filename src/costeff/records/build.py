"""A Triton build record (`costeff_build.json` in a repository entry): what was built from what."""

from __future__ import annotations


from pydantic import Field

from costeff.records import Part, Record


class Batching(Part):
    """The dynamic-batcher settings written into config.pbtxt, and where they came from."""

    max_batch_size: int | None = None
    preferred_batch_size: list[int] = []
    max_queue_delay_us: int | None = None
    instances: int | None = None
    source: str | None = None
    replicas: int = 1


class Threads(Part):
    """The serving container's CPUs and the threads each model instance gets (``ThreadPlan``)."""

    serving_cpus: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    serving_cpus_source: str | None = None
    instances: int | None = None
    threads_per_instance: int | None = None
    pools: int | None = None
    reason: str | None = None
    parameters: dict[str, str] = {}


class BuildRecord(Record):
    """The fields readers use; every other field is kept as written."""

    name: str | None = None
    model_dir: str | None = None
    config_path: str | None = None
    model_path: str | None = None
    source_model: str | None = None
    profile_path: str | None = None
    batching_report: str | None = None
    quantization_report: str | None = None
    model_precision: str | None = None
    instance_kind: str | None = None
    batching: Batching | None = None
    tensorrt_precision_mode: str | None = None
    accelerator_reason: str | None = None
    notes: list[str] = []
    backend: str | None = None
    variant: str | None = None  # the quantization report's name for what is served
    parameters: dict[str, str] = {}
    version: int | None = None
    versions_kept: list[int] = []
    threads: Threads | None = None


class VersionBuild(Part):
    """One version's entry in ``costeff_versions.json``: what was built into its folder."""

    files: list[str] = []
    model_sha256: str | None = None
    source_model: str | None = None
    built_at: str | None = None


class VersionsLedger(Part):
    """``costeff_versions.json`` beside ``costeff_build.json``: the highest version number ever built (so a
    pruned number never comes back with other bytes) and what each kept version holds."""

    schema_version: int | None = None
    last_version: int = Field(default=0, ge=0)
    builds: dict[str, VersionBuild] = {}

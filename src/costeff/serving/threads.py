"""Thread parameters for the runtimes inside Triton, sized to the Triton container's CPU limit.

Left alone, onnxruntime sizes each session's intra-op pool to the host's cores and
OpenVINO its inference threads likewise: in a container limited to a few CPUs on a
large host the pools spend the quota in a fraction of each CFS period and are
throttled for the rest. The limit that matters is the serving container's, which
is not the build host's, so it is stated (``--serving-cpus``) or, by default, taken
from this host and the build says so.

How the instances of a KIND_CPU group share those CPUs differs per backend (read
from the backends' sources):

- onnxruntime backend: every instance creates its own session, each with its own
  intra-op pool (src/onnxruntime.cc, ``intra_op_thread_count`` /
  ``inter_op_thread_count`` parameters), so ``count`` instances split the CPUs:
  ``max(1, floor(cpus / count))`` threads each.
- openvino backend: the model is compiled once per device and every instance only
  creates an infer request on that one compiled model (src/openvino.cc,
  ``ModelState::LoadModel`` refuses a second load), so ``INFERENCE_NUM_THREADS`` is
  one pool shared by all instances: ``min(measured threads, max(1, floor(cpus)))``.
  Dividing it by ``count`` would leave CPUs idle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

ORT_INTRA = "intra_op_thread_count"
ORT_INTER = "inter_op_thread_count"
ORT_THREAD_PARAMETERS = (ORT_INTRA, ORT_INTER)
OV_THREADS = "INFERENCE_NUM_THREADS"


@dataclass(frozen=True)
class ThreadPlan:
    """The CPUs the serving container has and the threads each model instance gets from them."""

    serving_cpus: float
    serving_cpus_source: str
    instances: int
    threads_per_instance: int | None  # None: not set (GPU instances)
    pools: int  # separate thread pools those instances run: threads_per_instance × pools threads in all
    reason: str
    parameters: dict[str, str] = field(default_factory=dict)  # the backend parameters that carry it


def default_serving_cpus() -> tuple[float, str]:
    """This host's CPU limit, for a build that was not told the serving container's."""
    from costeff.runtimes.cpus import cpu_limit

    limit = cpu_limit()
    return limit.cpus, (f"not stated: this host's {limit.describe()}; "
                        "pass --serving-cpus for the Triton container's limit")


def plan_threads(backend: str, instance_kind: str, instances: int, serving_cpus: float | None,
                 measured_threads: int | None = None) -> ThreadPlan:
    """The thread parameters for ``instances`` model instances in a container with ``serving_cpus`` CPUs."""
    cpus, source = (serving_cpus, "--serving-cpus") if serving_cpus is not None else default_serving_cpus()
    if instance_kind == "gpu":
        # The model runs on the GPU: the CPU pool only runs the few ops a GPU provider leaves
        # behind, nothing here measured how many threads those want, and a CPU-derived cap could
        # only slow them. The GPU, not the container's CPU limit, bounds these instances.
        return ThreadPlan(cpus, source, instances, None, 0, "GPU instances: thread parameters left to the backend")
    if backend == "openvino":
        return _openvino(cpus, source, instances, measured_threads)
    share = max(1, math.floor(cpus / instances))
    if measured_threads and measured_threads < share:  # a thread count chosen by measurement (fp32@threads=1)
        return ThreadPlan(cpus, source, instances, measured_threads, instances,
                          f"onnxruntime: one session per instance, {measured_threads} thread(s) each as measured "
                          f"(floor({cpus:g} CPUs / {instances}) would allow {share})",
                          {ORT_INTRA: str(measured_threads), ORT_INTER: "1"})
    # Sequential execution (the backend's default, which costeff keeps) never starts the inter-op
    # pool; 1 keeps it from adding threads beyond the share if execution_mode is switched to parallel.
    return ThreadPlan(cpus, source, instances, share, instances,
                      f"onnxruntime: one session per instance, floor({cpus:g} CPUs / {instances}) threads each",
                      {ORT_INTRA: str(share), ORT_INTER: "1"})


def _openvino(cpus: float, source: str, instances: int, measured: int | None) -> ThreadPlan:
    share = max(1, math.floor(cpus))
    threads = min(measured, share) if measured else share
    why = f"min(measured {measured}, {share})" if measured else f"floor({cpus:g} CPUs)"
    return ThreadPlan(cpus, source, instances, threads, 1,
                      f"openvino: one compiled model shared by all {instances} instance(s), {why} threads",
                      {OV_THREADS: str(threads)})


def describe(plan: ThreadPlan) -> str:
    """One line for people: the threads and where the CPUs figure came from."""
    if plan.threads_per_instance is None:
        return f"{plan.reason} (serving CPUs {plan.serving_cpus:g}, {plan.serving_cpus_source})"
    who = (f"each of {plan.instances} instance(s)" if plan.pools == plan.instances
           else f"shared by {plan.instances} instance(s)")
    return (f"{plan.threads_per_instance} thread(s) for {who} on {plan.serving_cpus:g} serving CPUs "
            f"({plan.serving_cpus_source}); {plan.reason}")


def check_threads(cfg: Any, serving_cpus: float | None, report: Any, lines: Any) -> None:
    """What the backends would refuse (problems) and pools that outnumber the stated CPUs (warnings).

    ``cfg`` is a parsed ``ModelConfig``; ``serving_cpus`` the container's limit when known (without
    it only the values are checked). A pool larger than the limit loads and serves, only throttled,
    hence a warning; a value the backend cannot parse fails the load, hence a problem.
    """
    from costeff.serving.config import OV_BACKEND

    params = {k: v.string_value for k, v in cfg.parameters.items()}
    cpu_instances = _cpu_instances(cfg)
    if cfg.backend == OV_BACKEND:
        threads = _ov_threads(params, cpu_instances, report, lines)
        pools, detail = 1, f"{OV_THREADS}={threads} (one pool shared by all {cpu_instances} instance(s))"
    else:
        threads = _ort_threads(params, cpu_instances, report, lines)
        pools, detail = cpu_instances, f"{cpu_instances} instance(s) × {threads} intra-op thread(s)"
        if threads and params.get("execution_mode", "").strip() == "1":
            inter = _int(params.get(ORT_INTER))
            threads += inter if inter and inter > 0 else 0  # parallel mode runs an inter-op pool beside it
    if serving_cpus is None or not threads or not cpu_instances or threads * pools <= serving_cpus:
        return
    fit = max(1, math.floor(serving_cpus / pools))
    report.warnings.append(f"{detail} = {threads * pools} threads on {serving_cpus:g} serving CPUs: the pools "
                           f"outnumber the CPU limit and are throttled; at most {fit} per pool fits")


def _cpu_instances(cfg: Any) -> int:
    from costeff.serving.config import OV_BACKEND, triton_schema

    kinds = triton_schema().ModelInstanceGroup
    # the openvino backend runs KIND_AUTO on the CPU as well (it supports only CPU and AUTO)
    cpu_kinds = (kinds.KIND_CPU, kinds.KIND_AUTO) if cfg.backend == OV_BACKEND else (kinds.KIND_CPU,)
    return sum(max(g.count, 1) for g in cfg.instance_group if g.kind in cpu_kinds)


def _ort_threads(params: dict[str, str], cpu_instances: int, report: Any, lines: Any) -> int | None:
    from costeff.serving.problem import Problem

    for key in (*ORT_THREAD_PARAMETERS, "execution_mode"):
        if key in params and _int(params[key]) is None:
            report.problems.append(Problem(f"parameters {key}", f"{params[key]!r}; expected an integer (the "
                                           "onnxruntime backend refuses to load the model)", lines(f'"{key}"')))
    mode = _int(params.get("execution_mode", "0"))
    if mode not in (None, 0, 1):
        report.problems.append(Problem("parameters execution_mode", f"{mode}; expected 0 (sequential) or 1 "
                                       "(parallel)", lines('"execution_mode"')))
    intra = _int(params.get(ORT_INTRA, "0"))
    if cpu_instances and intra is not None and intra <= 0:
        report.warnings.append(f"{ORT_INTRA} {'not set' if ORT_INTRA not in params else params[ORT_INTRA]!s}: "
                               f"onnxruntime sizes each of the {cpu_instances} CPU instance(s)' pools to the "
                               "host's cores, not the container's CPU limit")
    return intra if intra and intra > 0 else None


def _ov_threads(params: dict[str, str], cpu_instances: int, report: Any, lines: Any) -> int | None:
    # A malformed value is already a problem in ov_validate; here only what parses.
    threads = _int(params[OV_THREADS]) if OV_THREADS in params else 0
    if cpu_instances and threads == 0:
        report.warnings.append(f"{OV_THREADS} {'not set' if OV_THREADS not in params else '0'}: OpenVINO "
                               "uses the host's cores, not the container's CPU limit")
    return threads if threads and threads > 0 else None


def _int(text: str | None) -> int | None:
    try:
        return int(str(text).strip())
    except ValueError:
        return None

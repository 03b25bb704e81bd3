"""Hold costeff's serving predictions against the real Triton server.

The batching optimizer predicts p50, p99 and the mean batch size at the target rate from the
profile's service times. ``verify`` serves the repository entry it configured on the real Triton
2.51 (``costeff.serving.tritonserver``), drives it with open-loop Poisson one-row requests at that
rate, and puts the measured figures beside the predicted ones: latency from the client (scheduled
send to reply), the mean batch size from Triton's own statistics (inferences / executions), and
the server-side queue and compute time per request. When Triton cannot start on this host, the
record says why instead of measuring.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from costeff.artifacts import SCHEMA_VERSION, atomic_write_json, atomic_write_text, iso_utc, provenance

REPORT = "verify_report.json"


@dataclass
class VerifyReport:
    model_name: str
    repository: str
    rate_per_s: float
    predicted: dict[str, Any] | None
    measured: dict[str, Any] | None = None
    server: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    load_average: list[float] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION
    created_at: str = field(default_factory=iso_utc)
    provenance: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)  # {kind: sha256}: the repository entry, the batching report

    def ratios(self) -> dict[str, float | None]:
        """measured ÷ predicted for p50, p99 and the mean batch size."""
        pairs = (("p50", "p50_ms"), ("p99", "p99_ms"), ("mean_batch", "mean_batch_size"))
        p, m = self.predicted or {}, self.measured or {}
        return {name: (m[key] / p[key] if m.get(key) is not None and p.get(key) else None) for name, key in pairs}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratios": self.ratios()}

    def write(self, out_dir: Path) -> Path:
        out_dir = Path(out_dir)
        atomic_write_text(out_dir / "verify_report.md", to_markdown(self))
        return atomic_write_json(out_dir / REPORT, self.to_dict())


def predicted_from(batching_report: Path | None) -> dict[str, Any] | None:
    """The chosen configuration's prediction in a batching report (None without one)."""
    if batching_report is None:
        return None
    chosen = json.loads(Path(batching_report).read_text()).get("chosen") or {}
    pred = chosen.get("predicted") or {}
    keep = ("p50_ms", "p99_ms", "mean_batch_size", "utilisation_mean")
    return {k: pred.get(k) for k in keep} | {"settings": {k: chosen.get(k) for k in (
        "max_batch_size", "preferred_batch_size", "max_queue_delay_us", "instances")}}


def verify(env: Any, repository: Path, model_name: str, rate_per_s: float, observations: np.ndarray,
           predicted: dict[str, Any] | None, *, seconds: float = 3.0, log_path: Path | None = None) -> VerifyReport:
    """Serve ``model_name`` from ``repository`` on real Triton and measure it at ``rate_per_s``."""
    from costeff.serving.tritonserver import TRITON_VERSION, Ports, TritonServer
    from costeff.serving.tritonserver.server import free_port_block

    report = VerifyReport(model_name, str(repository), rate_per_s, predicted, load_average=list(os.getloadavg()),
                          provenance=provenance(hardware=True))
    with TritonServer(env, repository, Ports.from_http(free_port_block()), models=[model_name],
                      log_path=log_path) as server:
        report.server = {"triton": TRITON_VERSION, "url": server.grpc_url, "protocol": "grpc",
                         "backends": "costeff's Python-based onnxruntime/openvino backends (stand-ins for the C++ "
                                     "ones) in the real Triton server"}
        report.measured = _measure(server, model_name, rate_per_s, observations, seconds)
    report.load_average = [round(a, 2) for a in (*report.load_average, *os.getloadavg())]
    return report


def _measure(server: Any, model_name: str, rate: float, observations: np.ndarray, seconds: float) -> dict[str, Any]:
    from costeff.profiling import ProfileConfig
    from costeff.remote.client import Endpoint, connect, read_signature
    from costeff.remote.profile import open_loop

    endpoint = Endpoint(server.grpc_url, "grpc", model_name)
    sig = read_signature(connect(endpoint), endpoint)
    config = ProfileConfig(batch_sizes=(1,), warmup_s=0.5, window_s=max(0.5, seconds / 3), max_trials=3)
    before = _stats(server, model_name)
    point, result = open_loop(endpoint, sig, observations, config, rate, 1)
    after = _stats(server, model_name)
    executions = after["execution_count"] - before["execution_count"]
    inferences = after["inference_count"] - before["inference_count"]
    per_request = {name: _delta_ms(before, after, name) for name in ("queue", "compute_input", "compute_infer",
                                                                      "compute_output")}
    return {"p50_ms": point.latency_ms.p50, "p99_ms": point.latency_ms.p99,
            "mean_batch_size": inferences / executions if executions else None,
            "requests": int(point.requests or 0), "achieved_rate_per_s": point.requests_per_s,
            "late_sends": int(point.late_requests or 0), "errors": len(result.errors), "stable": point.stable,
            "server_ms_per_request": per_request, "executions": executions, "inferences": inferences}


def _stats(server: Any, model_name: str) -> dict[str, Any]:
    import requests

    answer = requests.get(f"http://{server.http_url}/v2/models/{model_name}/stats", timeout=10).json()
    return answer["model_stats"][0]


def _delta_ms(before: dict[str, Any], after: dict[str, Any], name: str) -> float | None:
    b, a = before["inference_stats"][name], after["inference_stats"][name]
    count = int(a["count"]) - int(b["count"])
    return (int(a["ns"]) - int(b["ns"])) / count / 1e6 if count > 0 else None


def skipped(model_name: str, repository: Path, rate_per_s: float, predicted: dict[str, Any] | None,
            reason: str) -> VerifyReport:
    return VerifyReport(model_name, str(repository), rate_per_s, predicted, skipped=reason,
                        load_average=[round(a, 2) for a in os.getloadavg()], provenance=provenance(hardware=True))


def _fmt(x: Any, unit: str = "") -> str:
    return "n/a" if x is None else f"{x:,.3g}{unit}"


def to_markdown(report: VerifyReport) -> str:
    lines = [f"# Predicted vs measured on real Triton: {report.model_name}", ""]
    if report.skipped:
        return "\n".join(lines + [f"Not measured: {report.skipped}", ""])
    p, m, r = report.predicted or {}, report.measured or {}, report.ratios()
    load = report.load_average
    lines += [f"Open-loop Poisson one-row requests at {report.rate_per_s:g}/s over gRPC to Triton "
              f"{report.server.get('triton')} ({report.server.get('backends')}); load average (1, 5, 15 min) "
              f"before {load[:3]}, after {load[3:]}.", "",
              "| figure | predicted | measured | measured / predicted |", "| --- | --- | --- | --- |"]
    for label, key, ratio in (("p50", "p50_ms", "p50"), ("p99", "p99_ms", "p99"),
                              ("mean batch size", "mean_batch_size", "mean_batch")):
        unit = " ms" if key.endswith("_ms") else ""
        lines.append(f"| {label} | {_fmt(p.get(key), unit)} | {_fmt(m.get(key), unit)} | {_fmt(r[ratio], 'x')} |")
    server = m.get("server_ms_per_request") or {}
    lines += ["", f"{m.get('requests')} requests, achieved {_fmt(m.get('achieved_rate_per_s'))}/s, "
              f"{m.get('late_sends')} sent late, {m.get('errors')} errors; inside Triton per request: "
              + ", ".join(f"{k} {_fmt(v, ' ms')}" for k, v in server.items()) + ".", ""]
    return "\n".join(lines)

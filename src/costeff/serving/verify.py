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

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from costeff.artifacts import SCHEMA_VERSION, atomic_write_text, iso_utc, provenance
from costeff.records.kinds import VERIFY
from costeff.records.verify import Measured, Predicted, Ratios, ServerTimes, Settings, VerifyRecord

REPORT = "verify_report.json"


@dataclass
class VerifyReport:
    model_name: str
    repository: str
    rate_per_s: float
    predicted: Predicted | None
    measured: Measured | None = None
    server: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    load_average: list[float] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION
    created_at: str = field(default_factory=iso_utc)
    provenance: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)  # {kind: sha256}: the repository entry, the batching report

    def ratios(self) -> Ratios:
        """measured ÷ predicted for p50, p99 and the mean batch size."""
        p, m = self.predicted or Predicted(), self.measured or Measured()

        def ratio(measured: float | None, predicted: float | None) -> float | None:
            return measured / predicted if measured is not None and predicted else None
        return Ratios(p50=ratio(m.p50_ms, p.p50_ms), p99=ratio(m.p99_ms, p.p99_ms),
                      mean_batch=ratio(m.mean_batch_size, p.mean_batch_size))

    def record(self) -> VerifyRecord:
        return VerifyRecord.model_validate({**{f.name: getattr(self, f.name) for f in fields(self)},
                                            "ratios": self.ratios()})

    def write(self, out_dir: Path) -> Path:
        out_dir = Path(out_dir)
        atomic_write_text(out_dir / "verify_report.md", to_markdown(self))
        return VERIFY.write(out_dir, self.record())  # last: a folder holding the record is complete


def predicted_from(batching_report: Path | None) -> Predicted | None:
    """The chosen configuration's prediction in a batching report (None without one)."""
    from costeff.records.kinds import BATCHING

    if batching_report is None:
        return None
    chosen = BATCHING.read(batching_report).chosen
    if chosen is None:
        return Predicted()
    pred = chosen.predicted
    return Predicted(p50_ms=pred.p50_ms, p99_ms=pred.p99_ms, mean_batch_size=pred.mean_batch_size,
                     utilisation_mean=pred.utilisation_mean,
                     settings=Settings(max_batch_size=chosen.max_batch_size,
                                       preferred_batch_size=chosen.preferred_batch_size,
                                       max_queue_delay_us=chosen.max_queue_delay_us, instances=chosen.instances))


def verify(env: Any, repository: Path, model_name: str, rate_per_s: float, observations: np.ndarray,
           predicted: Predicted | None, *, seconds: float = 3.0, log_path: Path | None = None) -> VerifyReport:
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


def _measure(server: Any, model_name: str, rate: float, observations: np.ndarray, seconds: float) -> Measured:
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
    per_request = ServerTimes(**{name: _delta_ms(before, after, name) for name in (
        "queue", "compute_input", "compute_infer", "compute_output")})
    return Measured(p50_ms=point.latency_ms.p50, p99_ms=point.latency_ms.p99,
                    mean_batch_size=inferences / executions if executions else None,
                    requests=int(point.requests or 0), achieved_rate_per_s=point.requests_per_s,
                    late_sends=int(point.late_requests or 0), errors=len(result.errors), stable=point.stable,
                    server_ms_per_request=per_request, executions=executions, inferences=inferences)


def _stats(server: Any, model_name: str) -> dict[str, Any]:
    import requests

    answer = requests.get(f"http://{server.http_url}/v2/models/{model_name}/stats", timeout=10).json()
    return answer["model_stats"][0]


def _delta_ms(before: dict[str, Any], after: dict[str, Any], name: str) -> float | None:
    b, a = before["inference_stats"][name], after["inference_stats"][name]
    count = int(a["count"]) - int(b["count"])
    return (int(a["ns"]) - int(b["ns"])) / count / 1e6 if count > 0 else None


def skipped(model_name: str, repository: Path, rate_per_s: float, predicted: Predicted | None,
            reason: str) -> VerifyReport:
    return VerifyReport(model_name, str(repository), rate_per_s, predicted, skipped=reason,
                        load_average=[round(a, 2) for a in os.getloadavg()], provenance=provenance(hardware=True))


def _fmt(x: Any, unit: str = "") -> str:
    return "n/a" if x is None else f"{x:,.3g}{unit}"


def to_markdown(report: VerifyReport) -> str:
    lines = [f"# Predicted vs measured on real Triton: {report.model_name}", ""]
    if report.skipped:
        return "\n".join(lines + [f"Not measured: {report.skipped}", ""])
    p, m, r = report.predicted or Predicted(), report.measured or Measured(), report.ratios()
    load = report.load_average
    lines += [f"Open-loop Poisson one-row requests at {report.rate_per_s:g}/s over gRPC to Triton "
              f"{report.server['triton']} ({report.server['backends']}); load average (1, 5, 15 min) "
              f"before {load[:3]}, after {load[3:]}.", "",
              "| figure | predicted | measured | measured / predicted |", "| --- | --- | --- | --- |"]
    for label, key, ratio in (("p50", "p50_ms", "p50"), ("p99", "p99_ms", "p99"),
                              ("mean batch size", "mean_batch_size", "mean_batch")):
        unit = " ms" if key.endswith("_ms") else ""
        lines.append(f"| {label} | {_fmt(getattr(p, key), unit)} | {_fmt(getattr(m, key), unit)} | "
                     f"{_fmt(getattr(r, ratio), 'x')} |")
    server = m.server_ms_per_request.model_dump()
    lines += ["", f"{m.requests} requests, achieved {_fmt(m.achieved_rate_per_s)}/s, "
              f"{m.late_sends} sent late, {m.errors} errors; inside Triton per request: "
              + ", ".join(f"{k} {_fmt(v, ' ms')}" for k, v in server.items()) + ".", ""]
    return "\n".join(lines)

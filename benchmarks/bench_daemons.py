"""What the three long-lived parts cost to run: peak memory and CPU per round, as real processes.

Each daemon runs as the Deployment runs it (``--watch``/``watch`` with a metrics listener)
on a workload shaped like production, at a short interval so many rounds fit in the run:

- reaper: dry run over 3 Deployments, signals through real PromQL (Debian's prometheus
  scraping an exporter with DCGM/Triton-shaped series), 30 min window, 15 s step;
- drift watch: the embedded default policy, fp32 reference vs an int8 variant, a new
  5,000-row parquet log every round;
- ramp watch: the sample ledger (60 days of PnL and cost), a decision every round.

The process's resident memory is sampled from /proc every 50 ms (and VmHWM read at the
end); CPU is utime + stime. The record (``docs/benchmarks/daemons.json``) is what the
manifests' requests and limits are checked against (tests/test_deploy_manifests.py):
memory request >= the measured peak, memory limit >= 1.5x it; CPU request >= the
busiest part's average use at its shipped interval.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROUNDS = 20
INTERVAL_S = 1.0
DRIFT_ROWS = 5000  # rows per observation log; drift watch's memory grows with it (the file is read whole)
REAPER_TARGETS = ("policy-a", "policy-b", "policy-c")
SHIPPED_INTERVAL_S = {"reaper": 60.0, "drift-watch": 60.0, "ramp-watch": 3600.0}  # the manifests' --interval
RECORD = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "daemons.json"
CLI = [sys.executable, "-c", "from costeff.cli import entrypoint; entrypoint()"]  # as the installed command starts
TICKS = os.sysconf("SC_CLK_TCK")


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "COSTEFF_ARTIFACTS": str(tmp / "artifacts"), "COSTEFF_HOME": str(tmp / "home")}
        results = {"ramp-watch": _ramp(tmp, env), "drift-watch": _drift(tmp, env)}
        reaper = _reaper(tmp, env)
        if reaper:
            results["reaper"] = reaper
    record = {"schema_version": 1, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "rounds": ROUNDS, "interval_s": INTERVAL_S, "cpus": os.cpu_count(),
              "workload": {"drift_rows_per_file": DRIFT_ROWS, "reaper_targets": len(REAPER_TARGETS),
                           "reaper_window_s": 1800, "ramp_ledger_days": 60},
              "shipped_interval_s": SHIPPED_INTERVAL_S, "parts": results}
    for name, r in results.items():
        r["cpu_cores_at_shipped_interval"] = round(r["cpu_s_per_round"] / SHIPPED_INTERVAL_S[name], 5)
        print(f"{name:12} peak RSS {r['peak_rss_mib']:7.1f} MiB (after start {r['rss_after_start_mib']:.1f}); "
              f"start {r['start_cpu_s']:.2f} CPU-s; {r['cpu_s_per_round'] * 1000:.1f} CPU-ms per round; "
              f"{r['cpu_cores_at_shipped_interval'] * 1000:.2f} mCPU at its shipped interval")
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    RECORD.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {RECORD}")
    return {"goals": [_goal(f"{name}: rounds completed", r["rounds"], ">=", ROUNDS) for name, r in results.items()]}


# ---------------------------------------------------------------- measuring a process

def _rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def _ready_rounds(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return json.loads(r.read())["rounds"]
    except Exception:  # not listening yet, or not ready: the caller keeps waiting
        return None


def _measure(name: str, argv: list[str], env: dict[str, str], port: int, between: Any = None,
             timeout_s: float = 600) -> dict[str, Any]:
    """Start the daemon, wait until ready, then run ROUNDS more rounds; memory and CPU per phase."""
    proc = subprocess.Popen(CLI + argv + ["--metrics-port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    peak, deadline = 0.0, time.monotonic() + timeout_s
    try:
        while (first := _ready_rounds(port)) is None:
            _alive(proc, name, deadline)
            peak = max(peak, _rss_mib(proc.pid))
            time.sleep(0.05)
        start_cpu, rss_start, t0 = _cpu_s(proc.pid), _rss_mib(proc.pid), time.monotonic()
        done = first
        while done < first + ROUNDS:
            _alive(proc, name, deadline)
            peak = max(peak, _rss_mib(proc.pid))
            if between is not None:
                between(done)
            time.sleep(0.05)
            done = _ready_rounds(port) or done
        cpu = _cpu_s(proc.pid) - start_cpu
        hwm = _rss_mib(proc.pid, "VmHWM")
        wall = time.monotonic() - t0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {"rounds": done - first, "peak_rss_mib": round(max(peak, hwm), 1), "rss_after_start_mib": round(rss_start, 1),
            "start_cpu_s": round(start_cpu, 3), "cpu_s_per_round": round(cpu / (done - first), 4),
            "cpu_cores_while_running": round(cpu / wall, 4)}


def _alive(proc: subprocess.Popen, name: str, deadline: float) -> None:
    if proc.poll() is not None:
        raise RuntimeError(f"{name} exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
    if time.monotonic() > deadline:
        raise RuntimeError(f"{name} did not finish its rounds in time")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- the three workloads

def _ramp(tmp: Path, env: dict[str, str]) -> dict[str, Any]:
    from datetime import timedelta

    from costeff.artifacts import utc_now
    from costeff.ledger import Ledger, import_sample

    ledger = Ledger(tmp / "ramp" / "ledger.sqlite")
    import_sample(ledger, end=utc_now().date() - timedelta(days=1))
    return _measure("ramp watch", ["ramp", "watch", "--ledger", str(ledger.path), "--interval", str(INTERVAL_S),
                                   "--out", str(tmp / "ramp" / "watch")], env, _port())


def _drift(tmp: Path, env: dict[str, str]) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from onnxruntime.quantization import quantize_dynamic

    from costeff.policy import default_policy

    from costeff.cli._common import home

    policy = default_policy("default", cache=home().cache)
    ref = Path(policy.onnx_path)
    served = tmp / "drift" / "int8.onnx"
    served.parent.mkdir(parents=True)
    quantize_dynamic(str(ref), str(served))
    logs = tmp / "drift" / "logs"
    logs.mkdir()
    rng = np.random.default_rng(0)
    dim = _input_dim(ref)
    written: set[int] = set()

    def arrive(done: int) -> None:
        if done in written:
            return
        written.add(done)
        obs = rng.standard_normal((DRIFT_ROWS, dim)).astype(np.float32)
        table = pa.table({"obs": pa.FixedSizeListArray.from_arrays(pa.array(obs.ravel()), dim)})
        part = logs.parent / f"log-{done:04d}.parquet.part"
        pq.write_table(table, part)
        part.rename(logs / f"log-{done:04d}.parquet")  # a rename: each file is read once, whole

    arrive(-1)
    return _measure("drift watch", ["drift", "watch", "--reference", str(ref), "--served", str(served),
                                    "--observations", str(logs), "--interval", str(INTERVAL_S), "--state",
                                    str(tmp / "drift" / "state.json")], env, _port(), between=arrive)


def _input_dim(model: Path) -> int:
    import onnx

    dims = onnx.load(str(model), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return int(np.prod([d.dim_value for d in dims[1:]]))  # flattened: the reader reshapes a window back


def _reaper(tmp: Path, env: dict[str, str]) -> dict[str, Any] | None:
    binary = shutil.which("prometheus")
    if binary is None:
        print("reaper: skipped, Debian's prometheus is not installed (scripts/install-prometheus.sh)")
        return None
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    registry = CollectorRegistry()
    labels = ["namespace", "pod"]
    util = Gauge("DCGM_FI_DEV_GPU_UTIL", "GPU utilisation", labels, registry=registry)
    served = Gauge("nv_inference_request_success", "successful requests", labels, registry=registry)
    influence = Gauge("costeff_policy_influence_pct", "policy influence", ["deployment"], registry=registry)
    names = REAPER_TARGETS
    for name in names:
        util.labels("trading", f"{name}-7d9f").set(3)
        served.labels("trading", f"{name}-7d9f").set(100)
        influence.labels(name).set(0)
    exporter_port = _port()
    exporter, _ = start_http_server(exporter_port, "127.0.0.1", registry=registry)
    work = tmp / "prometheus"
    work.mkdir()
    (work / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: dcgm\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{exporter_port}']\n")
    prom_port = _port()
    prom = subprocess.Popen([binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    config = tmp / "reaper.toml"
    config.write_text('[prometheus]\nstep_s = 15.0\ntimeout_s = 5.0\n[decision]\nwindow_s = 1800.0\n'
                      '[schedule]\nenabled = false\n'
                      + "".join(f'[[targets]]\nresource = "{n}"\nnamespace = "trading"\n' for n in names))
    try:
        _until_scraped(prom_port)
        return _measure("reaper", ["reap", "--prometheus", f"http://127.0.0.1:{prom_port}", "--config", str(config),
                                   "--watch", "--interval", str(INTERVAL_S)], env, _port())
    finally:
        prom.terminate()
        prom.wait(timeout=10)
        exporter.shutdown()


def _until_scraped(port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            url = f"http://127.0.0.1:{port}/api/v1/query?query=DCGM_FI_DEV_GPU_UTIL"
            if json.loads(urllib.request.urlopen(url, timeout=2).read())["data"]["result"]:
                return
        except Exception:  # Prometheus still starting
            pass
        time.sleep(0.5)
    raise RuntimeError("prometheus never scraped the exporter")


def _goal(name: str, observed: float, comparator: str, threshold: float) -> dict:
    passed = {">=": observed >= threshold, "<=": observed <= threshold}[comparator]
    return {"name": name, "observed": observed, "threshold": threshold, "comparator": comparator, "passed": passed}


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()

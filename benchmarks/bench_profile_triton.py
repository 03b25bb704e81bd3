"""``costeff profile --url`` at a fixed Poisson rate against the real Triton: does the load generator hold it?

Starts Triton 2.51 on a tiny-policy repository, then runs ``profile --url`` at RATE
requests/s (batch 1, gRPC) twice: with costeff's own client and with perf_analyzer.
For each it prints the asked, scheduled (costeff: the Poisson schedule actually drawn),
offered (sends that left) and achieved (replies) rates and the late sends, with the
load average around the run: the machine is shared, so the numbers are noisy.

Goals: offered within 2 % of asked, and fewer than 1 % late sends. Over a few seconds
a Poisson schedule itself differs from its rate by ~1/sqrt(n) (n ~ 1000-2000 here:
2-3 %), so "offered vs asked" carries that sampling noise; "offered vs scheduled"
(costeff's client only) does not. perf_analyzer prints its send rate only when it fell
behind; otherwise its achieved rate stands in for it, and its "delayed" count is its
own criterion, not costeff's late-send threshold.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RATE, WINDOW_MS, TRIALS = 200.0, 2000, 5


def main() -> dict:
    sys.path[:0] = [str(ROOT / "tests")]
    from triton_support import free_ports, triton_env

    from costeff.serving.tritonserver import Ports, TritonServer

    env = triton_env()
    goals = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        repository = _repository(work)
        with TritonServer(env, repository, Ports.from_http(free_ports())) as server:
            for generator in ("costeff", "perf_analyzer"):
                row = _run(server.grpc_url, generator, env.perf_analyzer, work / generator)
                print(json.dumps(row))
                goals += _goals(row)
    return {"goals": goals}


def _repository(work: Path) -> Path:
    os.environ["COSTEFF_CACHE"] = str(work / "cache")
    os.environ["COSTEFF_ARTIFACTS"] = str(work / "artifacts")
    from costeff.cli import main as cli
    from costeff.policy import default_policy
    from costeff.cli._common import home
    from costeff.profiling import ProfileConfig, profile

    model = Path(default_policy("tiny", cache=home().cache).onnx_path)
    profile(model, ProfileConfig(batch_sizes=(1, 16), window_s=0.05, warmup_s=0.02, max_trials=3)).write(work / "p")
    if cli(["triton", "build", str(model), "--profile", str(work / "p" / "gpu_profile.json"),
            "--repository", str(work / "repository"), "--name", "pol"]) != 0:
        raise SystemExit("costeff triton build failed")
    return work / "repository"


def _run(url: str, generator: str, perf_analyzer: Path, out: Path) -> dict:
    from costeff.cli import main as cli

    load_before = os.getloadavg()[0]
    code = cli(["profile", "--url", url, "--model-name", "pol", "--protocol", "grpc", "--batch-sizes", "1",
                "--request-rate", f"{RATE:g}", "--window-ms", str(WINDOW_MS), "--stability-pct", "50",
                "--max-trials", str(TRIALS), "--load-generator", generator, "--perf-analyzer", str(perf_analyzer),
                "--out", str(out)])
    if code != 0:
        raise SystemExit(f"profile --url with {generator} exited {code}")
    report = json.loads((out / "gpu_profile.json").read_text())
    (point,) = [p for p in report["points"] if p["request_rate"] == RATE]
    x = point["extra"]
    offered = x.get("offered_rate_per_s")
    return {"generator": generator, "asked_per_s": RATE, "scheduled_per_s": _r(x.get("scheduled_rate_per_s")),
            "offered_per_s": _r(offered), "achieved_per_s": _r(x.get("achieved_rate_per_s")),
            "offered_source": "sends" if offered is not None else "achieved (no send rate printed)",
            "late_sends": x.get("late_sends"), "late_send_pct": _r(x.get("late_send_pct")),
            "p99_ms": _r(point["latency_ms"]["p99"]), "requests": point["requests"], "stable": point["stable"],
            "unstable_reasons": x.get("unstable_reasons"), "load_avg_1m": [_r(load_before), _r(os.getloadavg()[0])],
            "cpus": os.cpu_count()}


def _goals(row: dict) -> list[dict]:
    offered = row["offered_per_s"] if row["offered_per_s"] is not None else row["achieved_per_s"]
    off_pct = abs(offered / RATE - 1) * 100
    goals = [{"name": f"{row['generator']}: offered within 2 % of asked ({row['offered_source']}, %)",
              "observed": _r(off_pct), "comparator": "<=", "threshold": 2.0, "passed": off_pct <= 2.0},
             {"name": f"{row['generator']}: late sends (%)", "observed": row["late_send_pct"], "comparator": "<",
              "threshold": 1.0, "passed": (row["late_send_pct"] or 0.0) < 1.0}]
    if row["scheduled_per_s"]:
        slip = abs(row["offered_per_s"] / row["scheduled_per_s"] - 1) * 100
        goals.append({"name": f"{row['generator']}: offered within 2 % of the drawn schedule (%)",
                      "observed": _r(slip), "comparator": "<=", "threshold": 2.0, "passed": slip <= 2.0})
    return goals


def _r(value):
    return None if value is None else round(float(value), 3)


if __name__ == "__main__":
    result = main()
    sys.exit(0 if all(g["passed"] for g in result["goals"]) else 1)

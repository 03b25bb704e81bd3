"""The batching simulator against the real Triton 2.51 dynamic batcher, on the default policy.

Two batcher settings are served by one Triton (costeff's onnxruntime stand-in backend,
one CPU instance): max batch 64 / preferred 8,16,32 / 5 ms delay, and the settings
``costeff batching optimize`` chose from the server's calibrated costs. Each is
calibrated (``costeff batching calibrate``), then driven open-loop with Poisson
one-row requests at 10 %, 25 % and 50 % of saturation (the lowest, over both
settings, of the highest one-row throughput calibration reached and the fitted
instance's peak), and compared with ``simulate`` on the requests' actual
send times (the client's pacing slips on a loaded machine; the prediction for ideal
Poisson arrivals at the same rate is printed alongside):

* mean executed batch (rows / executions, Triton's counters): goal within 10 %;
* client p50 and p99 (from each request's send) against the simulated latency plus
  the client's own overhead measured by calibrate: goal within 25 %.

The load average is recorded with every point: client, server and other work share
this machine's cores, so latency goals can fail for reasons that are not the model's.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

FIXED = {"max_batch_size": 64, "preferred_batch_size": [8, 16, 32], "max_queue_delay_us": 5000, "instances": 1}
FRACTIONS = (0.1, 0.25, 0.5)
BATCH_GOAL_PCT, LATENCY_GOAL_PCT = 10.0, 25.0
SLO_P99_MS = 25.0
WINDOWS_S = 6


def _env() -> Any:
    from costeff.cli._common import home
    from costeff.serving.tritonserver import default_location, ensure

    return ensure(default_location(home().cache))


def _build(model: Path, profile: Path, root: Path, name: str, chosen: dict) -> None:
    from costeff.cli import main

    (root / f"{name}.json").write_text(json.dumps({"chosen": chosen}))
    assert main(["triton", "build", str(model), "--profile", str(profile), "--batching", str(root / f"{name}.json"),
                 "--repository", str(root / "repo"), "--name", name, "--instance-kind", "cpu"]) == 0


def _calibrate(server: Any, name: str) -> dict:
    from costeff.batching.calibrate import calibrate

    costs = calibrate(server.http_url, name)
    costs["_path"] = f"calibration of {name}"
    f = costs["fit"]
    print(f"{name}: {f['fixed_ms']:.3g} ms + {f['per_row_ms']:.3g} ms/row + {f['per_request_ms']:.3g} ms/request "
          f"(rms {f['rms_ms']:.3g} ms); client overhead {costs['client_overhead_ms']:.3g} ms, "
          f"sigma {costs['sigma']:.2f}")
    return costs


def _chosen(profile: Path, costs: dict, root: Path, rate: float) -> dict:
    from costeff.batching import OptimizeConfig
    from costeff.batching.optimizer import optimize

    path = root / "server_costs_fixed.json"
    path.write_text(json.dumps({k: v for k, v in costs.items() if k not in ("phases", "_path")}))
    report = optimize(profile, OptimizeConfig(rate_per_s=rate, p99_ms=SLO_P99_MS, max_instances=1,
                                              server_costs=path, requests=5000, verify_factor=2))
    pick = report.chosen or report.best_achievable
    print(f"costeff chose (rate {rate:.0f}/s, p99 <= {SLO_P99_MS:g} ms): max batch {pick['max_batch_size']}, "
          f"preferred {pick['preferred_batch_size'] or '-'}, delay {pick['max_queue_delay_us']:g} us")
    return {k: pick[k] for k in ("max_batch_size", "preferred_batch_size", "max_queue_delay_us")} | {"instances": 1}


def _measure(server: Any, name: str, rate: float, seed: int) -> dict:
    from costeff.batching.calibrate import observe

    load_before = os.getloadavg()[0]
    seen = observe(server.grpc_url, name, rate, WINDOWS_S, seed=seed)
    from_send = seen["latencies_ms"] - seen["start_delay_ms"]  # the simulator's clock starts at the send
    p50, p99 = np.percentile(from_send, [50, 99])
    return {"mean_batch": seen["mean_batch_rows"], "p50_ms": float(p50), "p99_ms": float(p99),
            "requests": seen["requests"], "late_p99_ms": float(np.percentile(seen["start_delay_ms"], 99)),
            "load_avg": (load_before, os.getloadavg()[0]), "send_times_s": seen["send_times_s"]}


def _predict(costs: dict, settings: dict, arrivals_s: np.ndarray, seed: int) -> dict:
    from costeff.batching import BatcherConfig, ServiceTimes, simulate

    cfg = BatcherConfig(settings["max_batch_size"], tuple(settings["preferred_batch_size"]),
                        settings["max_queue_delay_us"], 1)
    r = simulate(arrivals_s, ServiceTimes.from_server_costs(costs), cfg, seed=seed)
    extra = costs["client_overhead_ms"] or 0.0
    return {"mean_batch": r.mean_batch_size, "p50_ms": r.latency_p50_ms + extra, "p99_ms": r.latency_p99_ms + extra,
            "utilisation": r.utilisation[0]}


def _points(server: Any, name: str, settings: dict, costs: dict, rates: list[float]) -> list[dict]:
    from costeff.batching import poisson_arrivals

    points = []
    for i, rate in enumerate(rates):
        m = _measure(server, name, rate, seed=i)
        p = _predict(costs, settings, m.pop("send_times_s"), seed=i)
        ideal = _predict(costs, settings, poisson_arrivals(rate, 60_000, seed=i), seed=i)
        err = {k: abs(m[k] / p[k] - 1) * 100 for k in ("mean_batch", "p50_ms", "p99_ms")}
        points.append({"model": name, "rate": rate, "measured": m, "predicted": p, "ideal_poisson": ideal,
                       "error_pct": err})
        print(f"{name:10s} {rate:7.0f}/s  batch {m['mean_batch']:5.2f} vs {p['mean_batch']:5.2f} "
              f"({err['mean_batch']:4.1f} %)"
              f"  p50 {m['p50_ms']:6.2f} vs {p['p50_ms']:6.2f} ms ({err['p50_ms']:5.1f} %)  p99 {m['p99_ms']:6.2f} vs "
              f"{p['p99_ms']:6.2f} ms ({err['p99_ms']:5.1f} %)  util {p['utilisation']:.0%}  "
              f"load {m['load_avg'][0]:.1f}->{m['load_avg'][1]:.1f}  late p99 {m['late_p99_ms']:.1f} ms  "
              f"(ideal Poisson: batch {ideal['mean_batch']:.2f}, p50 {ideal['p50_ms']:.2f}, p99 {ideal['p99_ms']:.2f})",
              flush=True)
    return points


def _goals(points: list[dict]) -> list[dict]:
    goals = []
    for key, limit in (("mean_batch", BATCH_GOAL_PCT), ("p50_ms", LATENCY_GOAL_PCT), ("p99_ms", LATENCY_GOAL_PCT)):
        worst = max(p["error_pct"][key] for p in points)
        goals.append({"name": f"simulator vs Triton: worst {key} error over {len(points)} points (%)",
                      "observed": round(worst, 1), "threshold": limit, "comparator": "<=", "passed": worst <= limit})
    return goals


def main() -> dict[str, Any]:
    from costeff.cli._common import home
    from costeff.policy import default_policy
    from costeff.profiling import ProfileConfig, profile
    from costeff.serving.tritonserver import Ports, TritonServer

    env, model = _env(), Path(default_policy("default", cache=home().cache).onnx_path)
    with tempfile.TemporaryDirectory(prefix="costeff-bench-triton-") as tmp:
        root = Path(tmp)
        os.environ["COSTEFF_ARTIFACTS"] = str(root / "artifacts")
        prof = profile(model, ProfileConfig(batch_sizes=(1, 8, 16, 32, 64), window_s=0.2, max_trials=4))
        prof.write(root / "p")
        profile_path = root / "p" / "gpu_profile.json"
        _build(model, profile_path, root, "pol_fixed", FIXED)
        with TritonServer(env, root / "repo", Ports.from_http(_free_ports()), models=["pol_fixed"]) as server:
            fixed = _calibrate(server, "pol_fixed")
            chosen = _chosen(profile_path, fixed, root, FRACTIONS[1] * _saturation(fixed, FIXED["max_batch_size"]))
            _build(model, profile_path, root, "pol_chosen", chosen)
            _load(server, "pol_chosen")
            costs = _calibrate(server, "pol_chosen")
            # below saturation for both settings
            top = min(_saturation(fixed, FIXED["max_batch_size"]), _saturation(costs, chosen["max_batch_size"]))
            rates = [round(f * top) for f in FRACTIONS]
            print(f"rates: {rates} requests/s ({', '.join(f'{f:.0%}' for f in FRACTIONS)} of {top:.0f}/s: "
                  "saturation, the lower of the highest one-row throughput calibration reached and the "
                  "fitted instance's peak)")
            points = _points(server, "pol_fixed", FIXED, fixed, rates)
            points += _points(server, "pol_chosen", chosen, costs, rates)
    return {"goals": _goals(points), "points": points}


def _saturation(costs: dict, max_batch: int) -> float:
    from costeff.batching import ServiceTimes

    reached = max(p["client"]["requests_per_s"] for p in costs["phases"] if p["rows_per_request"] == 1)
    return min(reached, ServiceTimes.from_server_costs(costs).peak_throughput_per_s(max_batch))


def _free_ports() -> int:
    """The first of three consecutive free ports on 127.0.0.1."""
    import socket

    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        try:
            for port in (first + 1, first + 2):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError("no three consecutive free ports")


def _load(server: Any, name: str) -> None:
    import requests

    got = requests.post(f"http://{server.http_url}/v2/repository/models/{name}/load", timeout=120)
    if got.status_code != 200:
        raise RuntimeError(f"Triton could not load {name}: {got.text}")


if __name__ == "__main__":
    main()

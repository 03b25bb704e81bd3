"""MLServer adaptive batching vs the batching simulator (MLServer rule), over gRPC.

Starts a real MLServer on 127.0.0.1 serving a tiny policy twice (unbatched, for
service times, and with adaptive batching), drives the batched one at a Poisson rate
and prints measured vs predicted p50/p99 and mean executed batch size.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_BATCH, BATCH_TIME_MS, RATES = 8, 10.0, (100.0, 300.0)


def main() -> dict:
    sys.path[:0] = [str(ROOT / "tests" / "mlserver_runtime"), str(ROOT / "tests")]
    from launcher import mlserver, model_settings
    from test_serving import FEATURES, WINDOW, _tiny_policy

    from costeff.profiling import ProfileConfig
    from costeff.remote.comparison import compare_with_simulator, to_markdown

    goals = []
    config = ProfileConfig(batch_sizes=(1,), warmup_s=0.3, window_s=1.0, max_trials=5, stable_windows=2,
                           stability_pct=20.0, provider="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = _tiny_policy(work / "policy.onnx")
        models = [model_settings("policy", model, (WINDOW, FEATURES)),
                  model_settings("policy_batched", model, (WINDOW, FEATURES), MAX_BATCH, BATCH_TIME_MS / 1000)]
        with mlserver(work / "repo", models) as server:
            for rate in RATES:
                c = compare_with_simulator(server.grpc_url, "policy_batched", "policy", protocol="grpc",
                                           max_batch_size=MAX_BATCH, max_batch_time_ms=BATCH_TIME_MS,
                                           rate_per_s=rate, config=config)
                print(to_markdown(c))
                goals += [{"name": f"{g.name} @ {rate:g}/s", "observed": _round(g.observed),
                           "threshold": g.threshold, "comparator": g.comparator, "passed": g.passed}
                          for g in c.gates]
    return {"goals": goals}


def _round(value):
    return None if value is None else round(float(value), 3)


if __name__ == "__main__":
    result = main()
    sys.exit(0 if all(g["passed"] for g in result["goals"]) else 1)

"""The real Triton server as a user meets it: `costeff triton serve` until ready, and a rollback until
Triton serves the earlier version.

Two versions of the embedded default policy are built into a repository (a synthetic profile: this
bench is about the server, not the batcher), `costeff triton serve` is started as a user would start
it, and the time to its ready line is taken from the moment the command was launched. Then
`costeff triton rollback --url` runs and the version Triton reports is polled until it changes.
Three rounds; the load average is printed beside the result.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
ROUNDS, READY_GOAL_S, ROLLBACK_GOAL_S = 3, 30.0, 10.0


def main() -> dict:
    sys.path[:0] = [str(ROOT / "tests")]
    from test_serving import _profile

    from costeff.cli import main as costeff
    from costeff.policy import default_policy
    from costeff.cli._common import home
    from costeff.serving.tritonserver import default_location, ensure
    from costeff.serving.tritonserver.server import free_port_block

    env = ensure(default_location(home().cache))
    ready, switched = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["COSTEFF_ARTIFACTS"] = str(work / "artifacts")
        model = Path(default_policy("default", cache=home().cache).onnx_path)
        for _ in range(2):
            assert costeff(["triton", "build", str(model), "--profile", str(_profile(work, model, batch=8)),
                            "--repository", str(work / "repo"), "--name", "policy", "--instance-kind", "cpu"]) == 0
        for _ in range(ROUNDS):
            seconds = _serve_and_roll_back(env, work / "repo", free_port_block())
            ready.append(seconds[0])
            switched.append(seconds[1])
    load = os.getloadavg()
    print(f"ready after launch: {_spread(ready)} s; rollback effective after: {_spread(switched)} s "
          f"(load average {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f})")
    return {"goals": [
        {"name": "triton serve ready after launch (median s)", "observed": round(statistics.median(ready), 2),
         "threshold": READY_GOAL_S, "comparator": "<=", "passed": statistics.median(ready) <= READY_GOAL_S},
        {"name": "rollback effective in Triton (median s)", "observed": round(statistics.median(switched), 2),
         "threshold": ROLLBACK_GOAL_S, "comparator": "<=", "passed": statistics.median(switched) <= ROLLBACK_GOAL_S}]}


def _serve_and_roll_back(env, repo: Path, port: int) -> tuple[float, float]:
    command = [sys.executable, "-m", "costeff"]
    started = time.perf_counter()
    server = subprocess.Popen([*command, "triton", "serve", str(repo), "--http-port", str(port),
                               "--env-dir", str(env.root)], stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        ready = time.perf_counter() - started
        assert "serving" in line, line
        before = _versions(port)
        started = time.perf_counter()
        subprocess.run([*command, "triton", "rollback", "--repository", str(repo), "--name", "policy",
                        "--url", f"127.0.0.1:{port}"], check=True, capture_output=True)
        while _versions(port) == before:
            time.sleep(0.05)
        switched = time.perf_counter() - started
        subprocess.run([*command, "triton", "promote", "--repository", str(repo), "--name", "policy"], check=True,
                       capture_output=True)
        return ready, switched
    finally:
        server.terminate()
        server.wait(60)


def _versions(port: int) -> list[str]:
    return requests.get(f"http://127.0.0.1:{port}/v2/models/policy", timeout=10).json().get("versions", [])


def _spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"


if __name__ == "__main__":
    result = main()
    sys.exit(0 if all(g["passed"] for g in result["goals"]) else 1)

"""Drift on live observations with the embedded ``default`` policy (fp32 reference vs an int8 variant).

Goals: ``drift check`` reads, runs both models and scores >= 200,000 observation rows per
minute end to end; ``drift watch`` notices a new log within 2 intervals; with ``--apply`` the
repository serves the earlier version within one interval of the K-th failing window.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROWS, SEED, HOURS = 30_000, 7, 6
INTERVAL_S, K = 1.0, 2


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["COSTEFF_ARTIFACTS"] = str(tmp / "artifacts")
        ref, served, far = _models(tmp)
        check = _check(ref, served, tmp)
        notice = _notice(ref, served, tmp)
        rollback = _rollback(ref, served, far, tmp)
    return {"goals": [
        _goal("drift check rows per minute, end to end (default policy, both models)", check, ">=", 200_000),
        _goal("drift watch: intervals until a new file is checked", notice, "<=", 2.0),
        _goal("drift watch --apply: intervals from the K-th failing window to the rollback", rollback, "<=", 1.0),
    ]}


def _models(tmp: Path) -> tuple[Path, Path, Path]:
    from onnxruntime.quantization import quantize_dynamic

    from costeff.policy import default_policy

    from costeff.cli._common import home

    ref = Path(default_policy("default", cache=home().cache).onnx_path)
    served = tmp / "int8_dynamic.onnx"
    quantize_dynamic(str(ref), str(served))
    far = tmp / "far.onnx"
    _perturb(ref, far)
    return ref, served, far


def _perturb(src: Path, dst: Path) -> None:
    """A variant far from fp32 (weights moved by half their scale): what a bad build would serve."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    rng = np.random.default_rng(0)
    for i, init in enumerate(model.graph.initializer):
        w = numpy_helper.to_array(init)
        if w.dtype == np.float32 and w.size > 1:
            moved = (w + 0.5 * np.abs(w).mean() * rng.standard_normal(w.shape)).astype(np.float32)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(moved, init.name))
    onnx.save(model, str(dst))


def _check(ref: Path, served: Path, tmp: Path) -> float:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from costeff.drift import DriftConfig, check_drift
    from costeff.policy import generate_observations

    obs = generate_observations(ROWS, seed=SEED)
    stamps = 1_790_000_000 + np.linspace(0, HOURS * 3600 - 1, ROWS)
    pq.write_table(pa.table({"timestamp": pa.array((stamps * 1e6).astype("int64"), pa.timestamp("us", tz="UTC")),
                             "obs": pa.array(list(obs.reshape(ROWS, -1)), pa.list_(pa.float32()))}),
                   tmp / "live.parquet")
    started = time.perf_counter()
    report = check_drift(DriftConfig(ref, served, tmp / "live.parquet"))
    seconds = time.perf_counter() - started
    rate = round(ROWS / seconds * 60)
    print(f"drift check: {ROWS} rows in {len(report.windows)} hourly windows, {seconds:.2f} s end to end "
          f"({rate:,} rows/minute; models and metrics alone {report.rows_per_minute:,.0f} rows/minute); "
          f"int8-dynamic vs fp32 action drift {report.action_drift_pct:.3f} %, {report.windows_failed} window(s) "
          f"failed the 0.5 % gate")
    return rate


def _watcher(ref: Path, tmp: Path, name: str, **kw: Any) -> Any:
    from costeff.drift.watch import DriftWatcher, WatchConfig

    (tmp / name).mkdir()
    return DriftWatcher(WatchConfig(ref, tmp / name, tmp / f"{name}.json", interval_s=INTERVAL_S, **kw))


def _notice(ref: Path, served: Path, tmp: Path) -> float:
    from costeff.policy import generate_observations

    watcher = _watcher(ref, tmp, "notice", served=served)
    seen = threading.Event()
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop, None, lambda r: r.files and seen.set()))
    thread.start()
    time.sleep(INTERVAL_S * 1.5)  # land the file between two looks, the unlucky case
    _atomic_save(tmp / "notice" / "a.npy", generate_observations(500, seed=1))
    landed = time.perf_counter()
    seen.wait(10 * INTERVAL_S)
    latency = time.perf_counter() - landed
    stop.set()
    thread.join()
    print(f"drift watch: a new 500-row log was checked {latency:.2f} s after it landed (interval {INTERVAL_S} s)")
    return round(latency / INTERVAL_S, 2)


def _rollback(ref: Path, served: Path, far: Path, tmp: Path) -> float:
    from costeff.policy import generate_observations
    from costeff.serving.versions import describe

    model_dir = _repository(tmp, [served, far])  # version 2, the far variant, serves
    watcher = _watcher(ref, tmp, "rollback", model_dir=model_dir, fail_windows=K, apply=True)
    rollbacks: list[dict] = []
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop, None, lambda r: r.rollback and rollbacks.append(
        r.rollback)))
    thread.start()
    for i in range(K):
        if i:
            time.sleep(INTERVAL_S * 1.2)
        _atomic_save(tmp / "rollback" / f"{i}.npy", generate_observations(500, seed=10 + i))
        landed = time.perf_counter()
    while describe(model_dir).served != 1 and time.perf_counter() < landed + 5 * INTERVAL_S:
        time.sleep(0.005)
    from_landing = time.perf_counter() - landed
    stop.set()
    thread.join()
    after = rollbacks[0]["seconds_after_window"] if rollbacks and describe(model_dir).served == 1 else float("inf")
    print(f"drift watch --apply (K={K}, interval {INTERVAL_S} s): version {describe(model_dir).served} serves; "
          f"rollback written {after:.4f} s after the K-th failing window was scored, {from_landing:.2f} s after "
          f"the K-th failing file landed")
    return round(after / INTERVAL_S, 4)


def _repository(tmp: Path, models: list[Path]) -> Path:
    import json

    from costeff.artifacts import sha256_file
    from costeff.serving import BuildConfig, build_repository

    for i, model in enumerate(models):
        profile = tmp / f"profile_{i}.json"
        profile.write_text(json.dumps({"model_sha256": sha256_file(model), "provider": "cpu", "hardware": {},
                                       "optimal": {"batch_size": 64, "latency_p99_ms": 2.0}}))
        build_repository(BuildConfig(model, profile, tmp / "repo", "policy", instance_kind="cpu"))
    return tmp / "repo" / "policy"


def _atomic_save(path: Path, array: np.ndarray) -> None:
    part = path.with_suffix(".part")
    with open(part, "wb") as fh:
        np.save(fh, array)
    part.rename(path)


def _goal(name: str, observed: float, comparator: str, threshold: float) -> dict:
    passed = observed >= threshold if comparator == ">=" else observed <= threshold
    return {"name": name, "observed": observed, "threshold": threshold, "comparator": comparator, "passed": passed}

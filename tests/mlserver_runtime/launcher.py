"""Start a real MLServer on free 127.0.0.1 ports serving ONNX models through ``OnnxPolicy``.

Used by the remote-profiling tests and ``benchmarks/bench_remote.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

HERE = Path(__file__).resolve().parent
MLSERVER = Path(sys.executable).with_name("mlserver")


@dataclass(frozen=True)
class Server:
    http_url: str
    grpc_url: str
    log_path: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def model_settings(name: str, onnx_path: Path, obs_shape: tuple[int, ...], max_batch_size: int = 0,
                   max_batch_time_s: float = 0.0) -> dict:
    """``model-settings.json``; a max_batch_size > 1 switches MLServer's adaptive batching on."""
    settings = {
        "name": name, "implementation": "onnx_policy_runtime.OnnxPolicy",
        "parameters": {"uri": str(onnx_path)},
        "inputs": [{"name": "obs", "datatype": "FP32", "shape": [-1, *obs_shape]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 3]},
                    {"name": "value", "datatype": "FP32", "shape": [-1, 1]},
                    {"name": "executed_batch", "datatype": "INT32", "shape": [-1, 1]}],
    }
    if max_batch_size > 1:
        settings.update(max_batch_size=max_batch_size, max_batch_time=max_batch_time_s)
    return settings


@contextlib.contextmanager
def mlserver(workdir: Path, models: list[dict], timeout_s: float = 45.0) -> Iterator[Server]:
    """Run ``mlserver start`` on ``models`` (model-settings dicts) until the block exits."""
    http_port, grpc_port = free_port(), free_port()
    for settings in models:
        folder = workdir / settings["name"]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model-settings.json").write_text(json.dumps(settings))
    (workdir / "settings.json").write_text(json.dumps({
        "http_port": http_port, "grpc_port": grpc_port, "metrics_endpoint": None, "parallel_workers": 0,
        "debug": False, "host": "127.0.0.1"}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    log_path = workdir / "mlserver.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(MLSERVER), "start", str(workdir)], cwd=workdir, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    server = Server(f"127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", log_path)
    try:
        _wait_ready(proc, server, [m["name"] for m in models], timeout_s)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(proc: subprocess.Popen, server: Server, names: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    urls = [f"http://{server.http_url}/v2/models/{n}/ready" for n in names]
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlserver exited with {proc.returncode}:\n{server.log_path.read_text()[-3000:]}")
        if all(_ok(u) for u in urls):
            return
        time.sleep(0.2)
    raise RuntimeError(f"mlserver not ready after {timeout_s} s:\n{server.log_path.read_text()[-3000:]}")


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False

"""Start, watch and stop the real Triton Inference Server on a costeff model repository.

The server process is Triton 2.51 itself (scheduler, dynamic batcher, model-repository API,
statistics and metrics). What stands in are the backends: the C++ onnxruntime and openvino
backends are not distributed outside NVIDIA's container, so Triton's documented Python-based
backends (``backends/<name>/model.py``, shipped with costeff) serve the same configs unchanged.

A server is started on 127.0.0.1 in explicit model-control mode, loads every model of the
repository (or the ones named), and is ready only when Triton says every one of them is. When
it cannot start, the error quotes Triton's own reason from its log; nothing is left running.

Stopping unloads the models through the repository API before SIGTERM. Triton 2.51 would unload
them itself on SIGTERM, but it checks whether they are gone only once a second, after waiting
(also once a second) for every open HTTP connection to close; the python backend takes just over
a second to stop each instance stub. Unloaded first, with the last connection closed by Triton,
SIGTERM finds nothing to wait for. An unload still lets in-flight requests finish.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from costeff.errors import DependencyError, InputError
from costeff.serving.tritonserver.env import TRITON_VERSION, TritonEnv

BACKENDS = ("onnxruntime", "openvino")
SHARED = "costeff_batched.py"  # beside each backend's model.py: Triton's python backend puts that folder on sys.path
HOST = "127.0.0.1"
# Triton's own budget after SIGTERM (open HTTP connections, then in-flight requests and unloading; 30 s by
# default): below stop()'s timeout, so a client holding a connection open delays the stop by this much and
# Triton still exits on its own, with its own status, instead of being killed.
EXIT_TIMEOUT_S = 5
# Triton's metrics thread polls at half this interval and is joined at exit (2000 ms by default: up to 1 s
# more per stop); CPU and pinned-memory gauges are all it polls.
METRICS_INTERVAL_MS = 200
POLL_S = 0.05  # readiness while starting, unloading while stopping
LIVE_STATES = ("READY", "UNLOADING")  # an unloaded model's version that Triton has not finalized yet


@dataclass(frozen=True)
class Ports:
    http: int
    grpc: int
    metrics: int

    @classmethod
    def from_http(cls, http: int, grpc: int | None = None, metrics: int | None = None) -> "Ports":
        return cls(http, http + 1 if grpc is None else grpc, http + 2 if metrics is None else metrics)

    def named(self) -> dict[str, int]:
        return {"--http-port": self.http, "--grpc-port": self.grpc, "--metrics-port": self.metrics}


@dataclass
class TritonServer:
    """One Triton process serving ``repository``; use as a context manager or start()/stop()."""

    env: TritonEnv
    repository: Path
    ports: Ports
    models: list[str] | None = None
    log_path: Path | None = None
    ready_timeout_s: float = 120.0
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = field(default=None, init=False)
    _workdir: Path | None = field(default=None, init=False)

    @property
    def http_url(self) -> str:
        return f"{HOST}:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"{HOST}:{self.ports.grpc}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.ports.metrics}/metrics"

    def __enter__(self) -> "TritonServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "TritonServer":
        self.repository = Path(self.repository).resolve()
        self.models = self.models or repository_models(self.repository)
        check_ports_free(self.ports)
        self._workdir = Path(tempfile.mkdtemp(prefix="costeff-triton-"))
        if self.log_path is None:
            self.log_path = self._workdir / "tritonserver.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = self.command(assemble_backends(self.env, self._workdir / "backends"))
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=self.env.process_env(), start_new_session=True,
                                            preexec_fn=_die_with_parent)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def command(self, backends: Path) -> list[str]:
        args = [str(self.env.tritonserver), f"--model-repository={self.repository}",
                f"--backend-directory={backends}", "--model-control-mode=explicit",
                f"--http-address={HOST}", f"--http-port={self.ports.http}",
                f"--grpc-address={HOST}", f"--grpc-port={self.ports.grpc}",
                f"--metrics-address={HOST}", f"--metrics-port={self.ports.metrics}",
                "--allow-gpu-metrics=false", "--strict-readiness=true", "--exit-on-error=true",
                f"--exit-timeout-secs={EXIT_TIMEOUT_S}", f"--metrics-interval-ms={METRICS_INTERVAL_MS}",
                # costeff's configs are complete: auto-completing one only starts a python backend stub that
                # returns it unchanged, and stopping that stub costs the backend a one-second health check
                "--disable-auto-complete-config", "--log-verbose=0"]
        return args + [f"--load-model={name}" for name in self.models or []] + self.extra_args

    def _wait_ready(self) -> None:
        import requests

        deadline = time.monotonic() + self.ready_timeout_s
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                reason = self.failure()
                if "failed to load" in reason:
                    raise InputError(f"{self.repository}: Triton refused the repository: {reason}")
                raise DependencyError(f"Triton exited while starting on {self.repository}: {reason}")
            try:
                if requests.get(url, timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(POLL_S)
        raise DependencyError(f"Triton was not ready within {self.ready_timeout_s:g} s on {self.repository}: "
                              f"{self.failure()}")

    def failure(self) -> str:
        """Triton's own reason, from its log: the first error line, else the last line."""
        return log_reason(self.log_path)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """Unload the models (for at most half of ``timeout_s``), SIGTERM, then SIGKILL when Triton has not
        exited ``timeout_s`` after it; the exit status (None when never started)."""
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                self.unload_models(time.monotonic() + timeout_s / 2)
                _signal_group(self.process, signal.SIGTERM)
                try:
                    self.process.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    _signal_group(self.process, signal.SIGKILL)
                    self.process.wait()
            code = self.process.returncode
            _signal_group(self.process, signal.SIGKILL)  # stubs left behind by a killed server
        if self._workdir is not None:  # the backends and, unless a log file was named, Triton's log
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        return code

    def unload_models(self, deadline: float) -> None:
        """Unload every ready model and wait (until ``deadline``) for Triton to have unloaded them.

        Best effort: what a server that does not answer still holds is unloaded on SIGTERM."""
        try:
            ready = sorted({entry["name"] for entry in self.repository_index() if entry.get("state") == "READY"})
            for name in ready:
                _http_post(self.ports.http, f"/v2/repository/models/{quote(name, safe='')}/unload")
            while time.monotonic() < deadline and any(entry["name"] in ready and entry.get("state") in LIVE_STATES
                                                      for entry in self.repository_index()):
                time.sleep(POLL_S)
        except (OSError, ValueError, KeyError):
            pass

    def repository_index(self) -> list[dict]:
        """Triton's repository index: one entry per model version, with its state once loaded."""
        return json.loads(_http_post(self.ports.http, "/v2/repository/index") or b"[]")


def _http_post(port: int, path: str, timeout_s: float = 10.0) -> bytes:
    """POST ``{}`` to Triton's HTTP endpoint; the reply's body. ValueError when it is not 200.

    One connection per request, read until Triton closes it: Triton 2.51 counts open HTTP connections
    when it stops and waits a whole second for any it still counts, so none is left for it to count."""
    request = (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n"
               "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}").encode()
    with socket.create_connection((HOST, port), timeout=timeout_s) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1:2]
    if status != [b"200"]:
        raise ValueError(f"{path}: HTTP {head[:80]!r}")
    return body


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when costeff dies, even by SIGKILL, so no server is orphaned."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def repository_models(repository: Path) -> list[str]:
    """The models of a repository: its folders holding a ``config.pbtxt``."""
    if not repository.is_dir():
        raise InputError(f"{repository}: no such model repository folder")
    models = sorted(p.name for p in repository.iterdir() if (p / "config.pbtxt").is_file())
    if not models:
        raise InputError(f"{repository}: no model folder with a config.pbtxt (expected <repository>/<model>/"
                         "config.pbtxt)")
    return models


def free_port_block(count: int = 3) -> int:
    """The first of ``count`` consecutive ports free on 127.0.0.1 now (for a server of costeff's own)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            first = probe.getsockname()[1]
        if first + count < 65536 and all(_free(port) for port in range(first, first + count)):
            return first
    raise DependencyError(f"no {count} consecutive free ports on {HOST}")


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def check_ports_free(ports: Ports) -> None:
    for option, port in ports.named().items():
        if not 0 < port < 65536:
            raise InputError(f"{option} {port}: expected a port number in 1..65535")
        if not _free(port):
            raise InputError(f"{option} {port}: {HOST}:{port} is already in use")
    if len(set(ports.named().values())) < 3:
        raise InputError(f"ports {ports.named()}: the HTTP, gRPC and metrics ports must differ")


def assemble_backends(env: TritonEnv, folder: Path) -> Path:
    """A backend directory: Triton's python backend plus costeff's Python-based backends."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "python").symlink_to(env.python_backend, target_is_directory=True)
    shipped = resources.files("costeff.serving.tritonserver") / "backends"
    for name in BACKENDS:
        (folder / name).mkdir()
        for source in (shipped / name / "model.py", shipped / SHARED):
            (folder / name / source.name).write_bytes(source.read_bytes())
    return folder


def log_reason(log_path: Path | None, limit: int = 400) -> str:
    try:
        lines = [line.strip() for line in Path(log_path).read_text(errors="replace").splitlines()
                 if line.strip()] if log_path else []
    except OSError:
        lines = []
    errors = [line for line in lines if line[:1] == "E" and line[1:5].isdigit()]
    picked = next((line for line in errors if "failed to load" in line or "Invalid argument" in line),
                  errors[0] if errors else (lines[-1] if lines else "no log"))
    text = picked.split("] ", 1)[-1] if "] " in picked else picked
    return " ".join(text.split())[:limit]


def describe(server: TritonServer) -> str:
    """One line for a person: what serves where."""
    return (f"Triton {TRITON_VERSION} serving {server.repository} ({', '.join(server.models or [])}): "
            f"http {server.http_url}, grpc {server.grpc_url}, metrics {HOST}:{server.ports.metrics}")

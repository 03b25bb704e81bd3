"""The environment the real Triton server runs in: created on first use, cached, reused.

Triton 2.51 reaches this host through PyPI's ``nvidia-pytriton==0.7.0`` wheel, which holds the
``tritonserver`` binary, ``libtritonserver``, the python backend with one stub per Python
version, and the shared libraries they need (``nvidia_pytriton.libs``). perf_analyzer 2.51
comes inside ``tritonclient==2.51.0``. Both wheels pin ``numpy<2`` and the python-backend stub
of 0.7.0 returns empty tensors under numpy 2, so they cannot share costeff's own environment:
they get a virtual environment of their own, beside the Python-based backends' runtimes
(onnxruntime, OpenVINO) that run inside the server.

Creation is all or nothing: the environment is built in a temporary folder and renamed into
place only once every package installed and the stub is in place, so an interrupted install
never leaves an environment a later call would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from costeff.errors import DependencyError, InputError

TRITON_VERSION = "2.51.0"
PYTRITON = "nvidia-pytriton==0.7.0"
CLIENT = "tritonclient[grpc,http]==2.51.0"
# What the Python-based backends import inside the server. numpy<2: the 0.7.0 stub needs it.
RUNTIMES_CPU = ("numpy<2", "onnxruntime>=1.18", "openvino>=2025.1,<2027")
RUNTIMES_GPU = ("numpy<2", "onnxruntime-gpu>=1.18", "openvino>=2025.1,<2027")
PY = f"{sys.version_info.major}.{sys.version_info.minor}"
_STAMP = "costeff-triton-env.json"


@dataclass(frozen=True)
class TritonEnv:
    """A ready server environment: where each part of the real server lies."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python3"

    @property
    def site_packages(self) -> Path:
        return self.root / "lib" / f"python{PY}" / "site-packages"

    @property
    def server_dir(self) -> Path:
        return self.site_packages / "pytriton" / "tritonserver"

    @property
    def tritonserver(self) -> Path:
        return self.server_dir / "bin" / "tritonserver"

    @property
    def python_backend(self) -> Path:
        return self.server_dir / "backends" / "python"

    @property
    def perf_analyzer(self) -> Path:
        return self.root / "bin" / "perf_analyzer"

    @property
    def libs(self) -> list[Path]:
        """LD_LIBRARY_PATH for the server, its stub and perf_analyzer, in search order."""
        return [Path(sysconfig.get_config_var("LIBDIR") or sys.base_prefix + "/lib"),
                self.site_packages / "nvidia_pytriton.libs", self.server_dir / "lib",
                self.server_dir / "external_libs"]

    def process_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment a server (or perf_analyzer) process is started with."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = os.pathsep.join([str(self.root / "bin"), env.get("PATH", "/usr/bin:/bin")])
        libs = [str(p) for p in self.libs if p.is_dir()]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libs + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
        env.pop("PYTHONPATH", None)  # the stub would not honour it; nothing of costeff's env belongs in there
        env.pop("PYTHONHOME", None)
        return env


def requirements(gpu: bool = False) -> list[str]:
    return [PYTRITON, CLIENT, *(RUNTIMES_GPU if gpu else RUNTIMES_CPU)]


def default_location(cache_root: Path, gpu: bool = False) -> Path:
    """``<cache>/triton/<version>-py<X.Y>-<cpu|gpu>``: one environment per server version, Python and flavour."""
    return Path(cache_root) / "triton" / f"{TRITON_VERSION}-py{PY}-{'gpu' if gpu else 'cpu'}"


def find(location: Path) -> TritonEnv | None:
    """The environment at ``location`` when it is complete, else None."""
    env = TritonEnv(Path(location))
    try:
        stamp = json.loads((env.root / _STAMP).read_text())
    except (OSError, ValueError):
        return None
    if stamp.get("python") != PY or not env.tritonserver.is_file() or not _stub(env).is_file():
        return None
    return env


def ensure(location: Path, *, gpu: bool = False, find_links: Path | None = None,
           log: Callable[[str], None] = lambda line: None) -> TritonEnv:
    """The environment at ``location``, created first when it is missing or incomplete."""
    env = find(location)
    if env is not None:
        return env
    _check_platform()
    location = Path(location)
    location.parent.mkdir(parents=True, exist_ok=True)
    staging = location.with_name(f".{location.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    log(f"creating the Triton {TRITON_VERSION} environment in {location} (first use; about a minute)")
    try:
        _create(staging, requirements(gpu), find_links)
        _install_stub(TritonEnv(staging))
        stamp = {"python": PY, "triton": TRITON_VERSION, "gpu": gpu, "requirements": requirements(gpu),
                 "digest": hashlib.sha256(json.dumps(requirements(gpu)).encode()).hexdigest()}
        (staging / _STAMP).write_text(json.dumps(stamp, indent=1) + "\n")
        if location.exists():
            shutil.rmtree(location)
        staging.rename(location)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    env = find(location)
    if env is None:
        raise DependencyError(f"{location}: the Triton environment is incomplete after installation")
    return env


def _check_platform() -> None:
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        raise DependencyError(f"Triton {TRITON_VERSION} from {PYTRITON} runs only on x86_64 Linux, not "
                              f"{sys.platform}/{os.uname().machine}")
    libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    version = tuple(int(x) for x in libc.split()[-1].split(".")[:2]) if libc.startswith("glibc") else (0, 0)
    if version < (2, 35):
        raise DependencyError(f"Triton {TRITON_VERSION} from {PYTRITON} needs glibc 2.35 or newer; this host "
                              f"has {libc or 'no glibc'}")


def _create(staging: Path, packages: list[str], find_links: Path | None) -> None:
    _run([sys.executable, "-m", "venv", str(staging)], "create the virtual environment")
    pip = [str(staging / "bin" / "python3"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if find_links is not None:
        if not Path(find_links).is_dir():
            raise InputError(f"--find-links {find_links}: not a folder of wheels")
        pip += ["--no-index", "--find-links", str(find_links)]
    _run(pip + packages, f"install {', '.join(packages)}")


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()
                 and "is ignored: it is neither a file nor a directory" not in line]
        reason = lines[-1].strip() if lines else f"exit {done.returncode}"
        raise DependencyError(f"could not {what} for Triton: {reason[:300]}")


def _stub(env: TritonEnv) -> Path:
    return env.python_backend / "triton_python_backend_stub"


def _install_stub(env: TritonEnv) -> None:
    """The wheel ships one stub per Python; the python backend loads the one beside it."""
    source = env.server_dir / "python_backend_stubs" / PY / "triton_python_backend_stub"
    if not source.is_file():
        raise DependencyError(f"{PYTRITON} has no python-backend stub for Python {PY} ({source})")
    shutil.copy2(source, _stub(env))
    _stub(env).chmod(0o755)

"""perf_analyzer as the load generator of ``costeff profile --url`` against a Triton server.

perf_analyzer (C++, from ``tritonclient==2.51.0`` in the Triton environment, see
``costeff.serving.tritonserver.env``) holds a request schedule that a Python client
sharing a busy CPU cannot: its async mode sends from a few native threads with no
interpreter lock in the way. costeff runs it once per batch size and per load
kind (closed loop over ``--concurrency-range``, open loop over
``--request-rate-range`` with Poisson arrivals), reads its ``-f`` CSV (verbose) and
its per-rate warnings, and maps each row into the report's points
(``costeff.remote.perf_analyzer_parse``).

perf_analyzer gives up on a concurrency whose windows never agree within
``--stability-percentage`` (exit 2, no CSV), which on a busy machine is the common
case at costeff's defaults. Rather than fail the sweep, each value of that run is
measured again alone and, if it still does not stabilise, once more over three windows
with the gate opened (``NO_GATE_PCT``): that point is reported *unstable* with
perf_analyzer's message, as costeff's own client reports an unstable point. Any other
non-zero exit is a failure quoting perf_analyzer's own error line.

The inputs are the rows costeff's own client would send (the observations, cycled;
other inputs seeded standard-normal), written as perf_analyzer's ``--input-data`` JSON:
one data step per row, so a request of batch B carries B consecutive rows.

The wheel renames the libraries perf_analyzer links against (auditwheel:
``libb64-<hash>.so.0d``) without patching perf_analyzer's own NEEDED entries, so it
finds neither ``libb64.so.0d`` nor ``libcudart.so.12`` on the environment's library
path: a private folder of links under the run's work folder supplies the plain names.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from costeff.errors import DependencyError, InputError

# NEEDED name -> glob of the renamed copy in nvidia_pytriton.libs
RENAMED_LIBS = {"libb64.so.0d": "libb64-*.so.0d*", "libcudart.so.12": "libcudart-*.so.12*"}
MAX_DATA_ROWS = 256  # distinct rows in --input-data (at least the largest batch)
NO_GATE_PCT = 1000.0  # a stability percentage no three windows miss: perf_analyzer stops after three


class Unstable(DependencyError):
    """perf_analyzer exited because a closed-loop point did not stabilise (it writes no CSV then)."""


@dataclass(frozen=True)
class PerfAnalyzer:
    binary: Path
    libs_from: Path | None  # a Triton environment's root whose libraries it needs, if any

    def process_env(self, workdir: Path) -> dict[str, str]:
        """The environment to run it in: the Triton env's, plus links to its renamed libraries."""
        from costeff.serving.tritonserver import TritonEnv

        if self.libs_from is None:
            return dict(os.environ)
        tenv = TritonEnv(self.libs_from)
        env = tenv.process_env()
        links = workdir / "lib"
        links.mkdir(parents=True, exist_ok=True)
        renamed = tenv.site_packages / "nvidia_pytriton.libs"
        for name, pattern in RENAMED_LIBS.items():
            found = sorted(renamed.glob(pattern))
            if found and not (links / name).exists():
                (links / name).symlink_to(found[0])
        env["LD_LIBRARY_PATH"] = os.pathsep.join([str(links), env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
        return env


def locate(explicit: Path | None = None, cache: Path | None = None) -> PerfAnalyzer | None:
    """``explicit`` (checked), else the perf_analyzer of the Triton environment under ``cache`` when installed,
    else None."""
    from costeff.serving.tritonserver import default_location, find

    tenv = find(default_location(cache)) if cache is not None else None
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file() or not os.access(path, os.X_OK):
            raise InputError(f"--perf-analyzer: {path} is not an executable file; expected the perf_analyzer binary")
        root = path.resolve().parent.parent
        own = root if any((root / "lib").glob("python*/site-packages/nvidia_pytriton.libs")) else None
        return PerfAnalyzer(path, own or (tenv.root if tenv else None))
    if tenv is None or not tenv.perf_analyzer.is_file():
        return None
    return PerfAnalyzer(tenv.perf_analyzer, tenv.root)


@dataclass
class Run:
    """One perf_analyzer invocation: its command line, its CSV and what it printed."""

    batch_size: int
    mode: str  # "concurrency" | "request_rate"
    command: list[str]
    csv_text: str = ""
    stdout: str = ""
    csv_name: str = ""
    values: list[float] = field(default_factory=list)
    unstable_note: str | None = None  # set when this run repeats a point without the stability gate


def write_input_data(sig: Any, obs: np.ndarray | None, rows: int, path: Path) -> Path:
    """perf_analyzer's ``--input-data`` JSON: one step per row, the rows costeff's client sends."""
    from costeff.profiling import build_feed

    feed = build_feed(sig, rows, obs)
    steps = [{name: {"content": array[i].ravel().tolist(), "shape": list(array.shape[1:])}
              for name, array in feed.items()} for i in range(rows)]
    path.write_text(json.dumps({"data": steps}))
    return path


def data_rows(obs: np.ndarray | None, batch_sizes: tuple[int, ...]) -> int:
    rows = obs.shape[0] if obs is not None else MAX_DATA_ROWS
    return max(min(rows, MAX_DATA_ROWS), max(batch_sizes))


def ranges(values: tuple[float, ...]) -> list[tuple[str, list[float]]]:
    """``start:end:step`` arguments covering ``values`` in order: one when they step evenly, else one each."""
    vals = list(values)
    steps = {round(b - a, 9) for a, b in zip(vals, vals[1:], strict=False)}
    if len(vals) > 1 and len(steps) == 1 and next(iter(steps)) > 0:
        return [(f"{_num(vals[0])}:{_num(vals[-1])}:{_num(vals[1] - vals[0])}", vals)]
    return [(_num(v), [v]) for v in vals]


def _value(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def command(pa: PerfAnalyzer, endpoint: Any, config: Any, batch: int, mode: str, load: str, data: Path,
            csv: Path, stability_pct: float | None = None) -> list[str]:
    cmd = [str(pa.binary), "-m", endpoint.model_name, "-u", endpoint.url, "-i", endpoint.protocol, "--async",
           "-b", str(batch), "--measurement-interval", str(max(1, int(round(config.window_s * 1000)))),
           "--stability-percentage", f"{stability_pct or config.stability_pct:g}",
           "--max-trials", str(config.max_trials),
           "--input-data", str(data), "-f", str(csv), "--verbose-csv", "-v"]
    if endpoint.model_version:
        cmd[3:3] = ["-x", endpoint.model_version]
    if mode == "concurrency":
        return cmd + ["--concurrency-range", load]
    return cmd + ["--request-rate-range", load, "--request-distribution", "poisson"]


def run_one(pa: PerfAnalyzer, cmd: list[str], workdir: Path, csv: Path, timeout_s: float) -> tuple[str, str]:
    """(stdout, CSV text); DependencyError quoting perf_analyzer's own error when it fails.

    ``cmd`` names its input data and CSV relative to ``workdir``, where it runs."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=pa.process_env(workdir), cwd=workdir,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise DependencyError(f"perf_analyzer did not finish within {timeout_s:.0f} s: {' '.join(cmd)}") from None
    except OSError as exc:
        raise DependencyError(f"perf_analyzer could not start ({pa.binary}: {exc.strerror or exc})") from None
    if done.returncode != 0 or not csv.is_file():
        line = error_line(done.stderr, done.stdout)
        error = Unstable if "Failed to obtain stable measurement" in line else DependencyError
        raise error(f"perf_analyzer failed (exit {done.returncode}): {line}")
    return done.stdout, csv.read_text()


def error_line(stderr: str, stdout: str = "") -> str:
    """perf_analyzer's own error: the most specific line naming one, its error stream first."""
    lines = [line.strip() for text in (stderr, stdout) for line in text.splitlines() if line.strip()]
    for marks in (("had error:", "error:"), ("error", "failed", "unable", "not found")):
        for line in lines:
            if any(mark in line.lower() for mark in marks):
                return line[:300]
    return lines[-1][:300] if lines else "no output"


def sweep(pa: PerfAnalyzer, endpoint: Any, sig: Any, obs: np.ndarray | None, config: Any,
          rates: tuple[float, ...], workdir: Path, progress: Any = None) -> tuple[list[Any], list[Run]]:
    """Every point of the sweep from perf_analyzer, and the runs that measured them."""
    from costeff.remote.perf_analyzer_parse import points_from_run

    data = write_input_data(sig, obs, data_rows(obs, config.batch_sizes), workdir / "input_data.json")
    plan = [("concurrency", tuple(float(c) for c in config.concurrency))]
    if rates:
        plan.append(("request_rate", rates))
    runs: list[Run] = []
    for batch in config.batch_sizes:
        for mode, values in plan:
            for load, covered in ranges(values):
                if progress is not None:
                    progress.advance(0, description=f"perf_analyzer batch {batch}, {mode} {load}")
                try:
                    runs.append(_run(pa, endpoint, config, batch, mode, load, covered, data, workdir, len(runs)))
                except Unstable as exc:  # each value again; one that still fails is measured ungated
                    for value in covered:
                        runs.append(_ungated(pa, endpoint, config, batch, mode, value, data, workdir, len(runs),
                                             str(exc), retry=len(covered) > 1))
                if progress is not None:
                    progress.advance(len(covered))
    return [p for run in runs for p in points_from_run(run, config)], runs


def _run(pa: PerfAnalyzer, endpoint: Any, config: Any, batch: int, mode: str, load: str, covered: list[float],
         data: Path, workdir: Path, index: int, stability_pct: float | None = None) -> Run:
    csv = workdir / f"perf_analyzer-b{batch}-{mode}-{index}.csv"
    cmd = command(pa, endpoint, config, batch, mode, load, Path(data.name), Path(csv.name), stability_pct)
    budget = (60.0 + 4 * config.max_trials * config.window_s) * len(covered)
    stdout, text = run_one(pa, cmd, workdir, csv, budget)
    return Run(batch, mode, cmd, text, stdout, csv.name, [_value(v) for v in covered])


def _ungated(pa: PerfAnalyzer, endpoint: Any, config: Any, batch: int, mode: str, value: float, data: Path,
             workdir: Path, index: int, first: str, retry: bool) -> Run:
    """``value`` alone under the stability gate (``retry``), else over three windows without it, unstable."""
    if retry:
        try:
            return _run(pa, endpoint, config, batch, mode, _num(value), [value], data, workdir, index)
        except Unstable as exc:
            first = str(exc)
    run = _run(pa, endpoint, config, batch, mode, _num(value), [value], data, workdir, index, NO_GATE_PCT)
    run.unstable_note = (f"{first.removeprefix('perf_analyzer failed (exit 2): ')} Measured again over three "
                         f"windows without perf_analyzer's stability gate (--stability-percentage {NO_GATE_PCT:g}); "
                         f"to stabilise: longer --window-ms, higher --stability-pct or --max-trials")
    return run

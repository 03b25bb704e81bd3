"""The image definition (Dockerfile, .dockerignore), read with dockerfile-parse.

No container engine runs here, so the image is never built in these tests: they check what the
build relies on (two stages, torch from the CPU index before the project, the version check, a
numeric non-root user, costeff as the entrypoint) and run the pieces that can run outside Docker:
the build's version check itself, and the smoke command through the installed entrypoint.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@pytest.fixture(scope="module")
def dockerfile():
    from dockerfile_parse import DockerfileParser

    return DockerfileParser(str(ROOT / "Dockerfile"), build_args={"COSTEFF_VERSION": PYPROJECT["project"]["version"]})


def _stages(dockerfile) -> list[list[dict]]:
    """Instructions per stage (comments dropped); ARGs before the first FROM are not a stage."""
    stages: list[list[dict]] = []
    for item in dockerfile.structure:
        if item["instruction"] == "FROM":
            stages.append([])
        if stages and item["instruction"] != "COMMENT":
            stages[-1].append(item)
    return stages


def _values(stage: list[dict], instruction: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == instruction]


def _args(stage: list[dict]) -> dict[str, str | None]:
    out = {}
    for value in _values(stage, "ARG"):
        name, _, default = value.partition("=")
        out[name] = default if "=" in value else None
    return out


def test_two_stages_on_the_same_slim_python(dockerfile):
    builder, final = _stages(dockerfile)
    assert builder[0]["value"].split() == ["${PYTHON_IMAGE}", "AS", "builder"]
    assert final[0]["value"] == "${PYTHON_IMAGE}"  # the venv's interpreter path is the same in both
    assert dockerfile.parent_images == ["python:3.11-slim", "python:3.11-slim"]


def test_build_arguments_have_the_documented_defaults(dockerfile):
    builder, final = _stages(dockerfile)
    args = _args(builder)
    assert args["COSTEFF_VERSION"] is None  # no default: the builder refuses a missing or wrong one
    assert args["TORCH_INDEX_URL"] == CPU_INDEX
    extras = args["EXTRAS"].split(",")
    assert extras == ["cpu", "openvino"]
    assert set(extras) <= set(PYPROJECT["project"]["optional-dependencies"])
    assert "gpu" not in extras  # onnxruntime-gpu would pull CUDA libraries
    assert "COSTEFF_VERSION" in _args(final)  # re-declared: the label needs it in the final stage


def test_torch_comes_from_the_cpu_index_before_the_project(dockerfile):
    builder, _ = _stages(dockerfile)
    runs = _values(builder, "RUN")
    torch_pin = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch"))
    torch_pin = torch_pin.split("#")[0].strip()
    torch_at = next(i for i, r in enumerate(runs) if torch_pin in r)
    project_at = next(i for i, r in enumerate(runs) if 'pip install ".[${EXTRAS}]"' in r)
    assert torch_at < project_at
    torch_install = next(part for part in runs[torch_at].split("&&") if torch_pin in part)
    assert shlex.split(torch_install) == ["pip", "install", "--index-url", "${TORCH_INDEX_URL}", torch_pin]
    # The project install names no other index, so pip keeps the CPU torch already there.
    assert "--index-url" not in runs[project_at] and "--extra-index-url" not in runs[project_at]
    assert "torch.version.cuda is None" in runs[project_at]


def _version_check(dockerfile) -> str:
    builder, _ = _stages(dockerfile)
    return next(r for r in _values(builder, "RUN") if "COSTEFF_VERSION" in r and "tomllib" in r)


@pytest.mark.parametrize("given, ok", [(PYPROJECT["project"]["version"], True), ("9.9.9", False), ("", False)])
def test_the_builder_refuses_a_version_other_than_pyprojects(dockerfile, tmp_path, given, ok):
    # The RUN line itself, in a shell, where the builder runs it: beside a copy of pyproject.toml.
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    env = {**os.environ, "COSTEFF_VERSION": given, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(["sh", "-c", _version_check(dockerfile)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode == 0) is ok, done.stderr
    if not ok:
        assert f"pass --build-arg COSTEFF_VERSION={PYPROJECT['project']['version']}" in done.stderr


def test_the_version_check_runs_before_the_slow_installs(dockerfile):
    builder, _ = _stages(dockerfile)
    runs = _values(builder, "RUN")
    assert runs.index(_version_check(dockerfile)) == 0


def test_the_final_stage_runs_costeff_as_a_numeric_non_root_user(dockerfile):
    _, final = _stages(dockerfile)
    users = _values(final, "USER")
    assert users, "the final stage sets no USER: it would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) == 10001 and (not gid or int(gid) == 10001)  # the manifests' runAsUser
    assert [json.loads(v) for v in _values(final, "ENTRYPOINT")] == [["costeff"]]
    assert [json.loads(v) for v in _values(final, "CMD")] == [["--help"]]
    assert "costeff" in PYPROJECT["project"]["scripts"]


def test_the_final_stage_has_the_venv_only_and_no_compilers(dockerfile):
    _, final = _stages(dockerfile)
    copies = _values(final, "COPY") + _values(final, "ADD")
    assert copies == ["--from=builder /opt/venv /opt/venv"]
    for run in _values(final, "RUN"):
        assert not re.search(r"\b(apt-get|apk|pip|gcc|g\+\+|build-essential|make)\b", run), run


def test_the_image_is_labelled_with_its_version(dockerfile):
    labels = dockerfile.labels
    assert labels["org.opencontainers.image.version"] == PYPROJECT["project"]["version"]
    assert labels["org.opencontainers.image.title"] == "costeff"
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]


def test_the_build_context_is_what_the_builder_copies_and_nothing_else(dockerfile):
    builder, _ = _stages(dockerfile)
    sources = {s for v in _values(builder, "COPY") for s in v.split()[:-1]}
    assert sources == {"pyproject.toml", "README.md", "src"}
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"  # deny by default: artifacts, keys and virtualenvs never reach a build
    assert {r[1:].rstrip("/") for r in rules if r.startswith("!")} == sources
    for source in sources:
        assert (ROOT / source).exists(), source


def test_the_smoke_command_exits_0_from_the_installed_entrypoint(dockerfile, tmp_path):
    _, final = _stages(dockerfile)
    entrypoint = json.loads(_values(final, "ENTRYPOINT")[-1])
    cmd = json.loads(_values(final, "CMD")[-1])
    script = Path(sys.executable).parent / entrypoint[0]  # the console script pip installed
    assert script.is_file(), f"{script}: costeff is not installed in this environment"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HOME": str(tmp_path)}
    done = subprocess.run([str(script), *entrypoint[1:], *cmd], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    for command in ("reap", "drift", "ramp"):  # the long-lived parts the manifests run
        assert command in done.stdout
    assert list(tmp_path.iterdir()) == []  # --help writes nothing (the image's root is read-only)

"""The README and the shipped examples match the code."""

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from costeff.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
# argparse errors that mean the documented command line itself is wrong
SYNTAX_ERRORS = ("unrecognized arguments", "invalid choice", "the following arguments are required",
                 "expected one argument", "not allowed with argument")


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    joined = "\n".join(blocks).replace("\\\n", " ")
    lines = [line.split("#")[0].strip() for line in joined.splitlines()]
    return [line for line in lines if line.startswith("costeff ")]


def test_readme_documents_every_command():
    documented = {shlex.split(c)[1] for c in _readme_commands()}
    from costeff.cli import COMMAND_MODULES

    assert set(COMMAND_MODULES) - {"run"} <= documented


@pytest.mark.parametrize("command", _readme_commands())
def test_readme_command_lines_parse(command):
    argv = shlex.split(command.replace("<ts>", "20260101_000000Z"))[1:]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            build_parser().parse_args(argv)
    except SystemExit:
        message = err.getvalue()
        assert not any(e in message for e in SYNTAX_ERRORS), f"{command}: {message}"


def test_example_reaper_config_loads():
    from costeff.reaper.config import load_config

    config = load_config(ROOT / "docs" / "examples" / "reaper.toml")
    assert config.decision.window_s == 1800 and config.schedule.holidays
    assert {t.kind for t in config.targets} == {"deployment", "gpu", "triton"}

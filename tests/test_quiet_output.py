"""Library chatter stays off the terminal: NNCF's progress bars and INFO lines, and library log records."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest


def _nncf_chatter() -> None:
    from nncf.common.logging import nncf_logger
    from nncf.common.logging.track_progress import track

    nncf_logger.info("Statistics of the bitwidth distribution")
    for _ in track(range(3), description="Statistics collection"):
        print("a table NNCF prints")
    nncf_logger.warning("a warning NNCF means")


def test_nncf_output_stays_off_the_terminal_unless_verbose(capfd, caplog):
    pytest.importorskip("nncf")
    from costeff.quantization.openvino import _progress_to_stderr

    with caplog.at_level(logging.INFO, logger="costeff"), _progress_to_stderr():
        _nncf_chatter()
    out, err = capfd.readouterr()
    assert out == ""
    assert "bitwidth" not in err and "a table NNCF prints" not in err and "━" not in err
    assert "a warning NNCF means" in err
    with caplog.at_level(logging.DEBUG, logger="costeff"), _progress_to_stderr():
        _nncf_chatter()
    out, err = capfd.readouterr()
    assert out == "" and "bitwidth" in err and "a table NNCF prints" in err  # -v: on stderr, never stdout


def test_library_records_below_error_are_dropped_without_verbose():
    code = ("import logging, sys\n"
            "from costeff.cli import _configure_logging\n"
            "_configure_logging(False)\n"
            "logging.getLogger('onnxruntime.quantization').warning('library chatter')\n"
            "logging.getLogger('openvino').error('library error')\n"
            "logging.getLogger('costeff.x').info('costeff line')\n")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert err.splitlines() == ["library error", "costeff line"]

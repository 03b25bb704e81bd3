"""Every RunConfig field is reachable from `costeff run`, and a bad value stops the run before it writes."""

import dataclasses
from datetime import date

import pytest

from costeff.artifacts import Workspace
from costeff.cli import main
from costeff.runctx import RunConfig
from workspace_support import env_home


@pytest.mark.parametrize("argv, message", [
    (["--rows", "100"], "--rows: 100; need at least 512"),
    (["--rows", "many"], "--rows must be a whole number"),
    (["--model-name", "../escape"], "--model-name: '../escape' is not a usable Triton model name"),
    (["--model-name", "a b"], "--model-name: 'a b'"),
    (["--sample-as-of", "2026-13-01"], "--sample-as-of: '2026-13-01' is not a date; expected YYYY-MM-DD"),
    (["--model", "m.onnx", "--observations", "o.npy", "--rows", "600"], "--rows: applies to the embedded policy"),
])
def test_bad_run_options_exit_2_before_anything_is_written(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    try:
        code = main(["run", *argv, "--out", str(out)])
    except SystemExit as exc:  # argparse's own type errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert len(err.splitlines()) == 1
    assert not out.exists()


def test_every_run_config_field_has_an_option():
    from costeff.cli import build_parser

    args = vars(build_parser().parse_args(["run"]))
    assert {f.name for f in dataclasses.fields(RunConfig)} - set(args) == set()


def test_options_reach_the_run_config(monkeypatch, tmp_path):
    seen = {}

    def fake_run_all(config, workspace, on_stage=None):
        seen["config"], seen["workspace"] = config, workspace
        raise SystemExit(0)

    monkeypatch.setattr("costeff.pipeline.run_all", fake_run_all)
    with pytest.raises(SystemExit):
        main(["run", "--rows", "1024", "--model-name", "book_a", "--sample-as-of", "2026-03-10",
              "--out", str(tmp_path / "out")])
    config = seen["config"]
    assert (config.rows, config.model_name, config.sample_as_of) == (1024, "book_a", date(2026, 3, 10))
    assert seen["workspace"] == Workspace(tmp_path / "out", tmp_path / "out" / "model_repository", env_home())

"""What a newcomer meets first: help texts, typo hints, pipes into `head`, example inputs."""

import argparse
import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from costeff import cli
from costeff.cli import build_parser, main

SRC = Path(__file__).resolve().parents[1] / "src"
# Flags whose default is simply "off": nothing to show.
SWITCHES = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction,
            argparse._CountAction, argparse._AppendConstAction)


def _walk(parser, path=("costeff",)):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _walk(child, (*path, name))
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield " ".join(path), action


def _name(action) -> str:
    return action.option_strings[-1] if action.option_strings else action.dest


def test_every_option_and_argument_has_a_help_text():
    missing = [f"{cmd} {_name(a)}" for cmd, a in _walk(build_parser()) if not (a.help or "").strip()]
    assert not missing, f"no help text: {missing}"


def test_every_option_with_a_default_says_what_it_is():
    hidden = [f"{cmd} {_name(a)} (default {a.default!r})" for cmd, a in _walk(build_parser())
              if a.option_strings and not isinstance(a, SWITCHES)
              and a.default is not None and a.default not in ("", [], ())
              and "default" not in (a.help or "").lower()]
    assert not hidden, f"help does not show the default: {hidden}"


def _help(*argv) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return " ".join(out.getvalue().split())


def test_run_has_a_description_and_quantize_says_how_it_selects():
    assert "end to end" in _help("run")
    text = _help("quantize")
    assert "fastest variant that passes" not in text
    assert "cheapest at that traffic" in text and "--min-speedup" in text
    assert "(default 0.5)" in text and "(default 0.997)" in text  # the gates show their defaults


def _parse_error(argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    return exc.value.code, err.getvalue()


@pytest.mark.parametrize("argv, wrong, right, prog", [
    (["quantize", "--max-action-drift", "1"], "--max-action-drift", "--max-action-drift-pct", "costeff quantize"),
    (["ledger", "show", "--dys", "3"], "--dys", "--days", "costeff ledger show"),
    (["profile", "--gap=10ms"], "--gap", "--gaps", "costeff profile"),
])
def test_a_mistyped_option_gets_a_suggestion_in_the_one_line_error(argv, wrong, right, prog):
    code, message = _parse_error(argv)
    assert code == 2
    lines = message.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {prog}: unrecognized arguments: {wrong}")
    assert f"did you mean {right}?" in lines[0]


def test_no_suggestion_when_nothing_is_close_and_abbreviations_stay_refused():
    code, message = _parse_error(["profile", "--zzzzzz"])
    assert code == 2 and "did you mean" not in message and "--zzzzzz" in message
    # --fail-window is a prefix of drift watch's --fail-windows: refused (with the hint), never taken as it
    code, message = _parse_error(["drift", "watch", "--reference", "r.onnx", "--observations", "d",
                                  "--fail-window", "3"])
    assert code == 2 and "unrecognized arguments: --fail-window 3" in message
    assert "did you mean --fail-windows?" in message


def _into_closed_pipe(*argv, env_extra=None) -> subprocess.CompletedProcess:
    """Run costeff with stdout a pipe whose reader is already gone (`| head -1` that has read its line)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {**os.environ, "PYTHONPATH": str(SRC), **(env_extra or {})}
    try:
        return subprocess.run([sys.executable, "-c", "from costeff.cli import entrypoint; entrypoint()", *argv],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("argv", [("--help",), ("ledger", "show", "--days", "60"), ("ledger", "show", "--json")])
def test_a_closed_stdout_pipe_ends_quietly_with_exit_0(tmp_path, argv):
    ledger = tmp_path / "ledger.sqlite"
    env = {"COSTEFF_ARTIFACTS": str(tmp_path / "artifacts")}
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["ledger", "import", "--sample", "--ledger", str(ledger)]) == 0
    done = _into_closed_pipe(*argv, *(["--ledger", str(ledger)] if "ledger" in argv else []), env_extra=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_a_broken_pipe_that_is_not_stdout_is_still_a_failure(monkeypatch, capsys):
    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    def parser():
        p = cli._Parser(prog="costeff")
        p.set_defaults(func=broken)
        return p

    monkeypatch.setattr(cli, "build_parser", parser)
    assert main([]) == 3
    assert capsys.readouterr().err.startswith("error: BrokenPipeError")


# --- `costeff export --observations`: the obs.npy the README's examples use ---------------------------------------

@pytest.mark.slow
def test_export_writes_seeded_observations_that_quantize_accepts(tiny_policy, tmp_path, capsys):
    import json

    import numpy as np

    from costeff.policy import generate_observations

    obs_path = tmp_path / "obs.npy"
    assert main(["export", "--preset", "tiny", "--observations", "2000", "--out", str(obs_path)]) == 0
    assert "2,000 synthetic market observations" in capsys.readouterr().out
    obs = np.load(obs_path)
    assert obs.dtype == np.float32 and obs.shape == (2000, *tiny_policy.observation_shape)
    # the same rows `costeff quantize` generates for the embedded policy: a seed it was not trained on
    np.testing.assert_array_equal(obs, generate_observations(2000, seed=20_000, preset="tiny"))
    again = tmp_path / "again.npy"
    assert main(["export", "--preset", "tiny", "--observations", "2000", "--seed", "5", "--out", str(again)]) == 0
    assert not np.array_equal(np.load(again), obs)
    capsys.readouterr()

    code = main(["quantize", str(tiny_policy.onnx_path), "--observations", str(obs_path), "--backends",
                 "onnxruntime", "--variants", "fp16", "--batch-sizes", "1,16", "--window-s", "0.05", "--rounds", "1",
                 "--out", str(tmp_path / "q"), "--json"])
    assert code in (0, 1)  # a gate's verdict, not bad input
    record = json.loads(capsys.readouterr().out)
    assert record["split"]["calibration_rows"] + record["split"]["evaluation_rows"] == 2000


@pytest.mark.parametrize("argv, message", [
    (["--preset", "tiny", "--observations", "10", "--out", "obs.onnx"], "must name a .npy or .npz"),
    (["--observations", "10", "--out", "obs.npy"], "exactly one of SOURCE"),
    (["--preset", "tiny", "--seed", "3", "--out", "obs.npy"], "need --preset NAME"),
    (["--preset", "nope", "--observations", "10", "--out", "obs.npy"], "nope"),
])
def test_export_observations_bad_input_is_one_line_and_writes_nothing(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["export", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not list(tmp_path.glob("obs.*"))


# --- `costeff profile`: gap latencies and the CSV's path on the terminal -----------------------------------------

@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory) -> Path:
    """A two-layer ONNX policy over [batch, 4, 5] observations: profiles in well under a second."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((20, 16)).astype(np.float32), "w1"),
               numpy_helper.from_array(rng.standard_normal((16, 3)).astype(np.float32), "w2"),
               numpy_helper.from_array(np.array([-1, 20], dtype=np.int64), "flat")]
    nodes = [helper.make_node("Reshape", ["obs", "flat"], ["x"]), helper.make_node("MatMul", ["x", "w1"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["logits"])]
    graph = helper.make_graph(nodes, "policy", [helper.make_tensor_value_info("obs", TensorProto.FLOAT,
                                                                              ["batch", 4, 5])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("small") / "policy.onnx"
    onnx.save(model, str(path))
    return path


def test_profile_prints_gap_latencies_and_where_the_csv_went(small_onnx, tmp_path, capsys):
    import json

    out, csv = tmp_path / "prof", tmp_path / "perf.csv"
    assert main(["profile", str(small_onnx), "--batch-sizes", "1,4", "--gaps", "0,5ms", "--csv", str(csv),
                 "--window-ms", "30", "--warmup-ms", "10", "--max-trials", "3", "--provider", "cpu",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    gaps = json.loads((out / "gpu_profile.json").read_text())["latency_by_gap"]
    assert [g["gap_ms"] for g in gaps] == [0, 5]
    lines = text.splitlines()
    start = lines.index("batch-1 latency after idle gaps:")
    assert lines[start + 1].split()[:4] == ["gap", "ms", "calls", "p50"]
    for g, line in zip(gaps, lines[start + 2:start + 4], strict=True):
        cells = line.split()
        assert float(cells[0]) == g["gap_ms"] and int(cells[1]) == g["calls"]
        assert float(cells[2]) == pytest.approx(g["p50_ms"], abs=5e-4)
        assert float(cells[3]) == pytest.approx(g["p99_ms"], abs=5e-4)
    assert lines[start + 3].split()[-1] == f"{gaps[1]['p50_ms'] / gaps[0]['p50_ms']:.2f}x"
    assert csv.is_file() and f"perf_analyzer CSV {csv}" in text


def test_profile_without_gaps_prints_no_gap_table(small_onnx, tmp_path, capsys):
    assert main(["profile", str(small_onnx), "--batch-sizes", "1", "--window-ms", "30", "--warmup-ms",
                 "10", "--max-trials", "3", "--provider", "cpu", "--out", str(tmp_path / "p")]) == 0
    text = capsys.readouterr().out
    assert "after idle gaps" not in text and "CSV" not in text


# --- report plots: "p99 vs queue delay" readable -----------------------------------------------------------------

def _candidate(mbs, delay_us, p99):
    return {"max_batch_size": mbs, "instances": 1, "max_queue_delay_us": delay_us, "predicted": {"p99_ms": p99}}


def test_p99_vs_queue_delay_has_readable_ticks_and_no_line_hidden_under_another():
    from types import SimpleNamespace

    from costeff.batching.report import _delay_axes

    delays = (0.0, 100.0, 1000.0, 10_000.0)
    evaluated = [_candidate(1, d, 0.0910) for d in delays] + [_candidate(8, d, 0.0912) for d in delays]
    evaluated += [_candidate(32, d, 0.09 + d / 1000) for d in delays]
    evaluated += [_candidate(128, d, 0.2 + d / 500) for d in delays]
    report = SimpleNamespace(chosen={"instances": 1}, best_achievable=None, evaluated=evaluated,
                             target={"p99_ms": 50.0, "rate_per_s": 500.0})
    plt, fig, ax = _delay_axes(report)
    try:
        fig.canvas.draw()
        lines = [ln for ln in ax.get_lines() if not ln.get_label().startswith("p99 SLO")]
        labels = [ln.get_label() for ln in lines]
        # max batch 1 and 8 draw on top of each other: one line that names both
        assert labels == ["max batch 1, 8 (p99 within 2%)", "max batch 32", "max batch 128"]
        styles = {(ln.get_marker(), str(ln.get_linestyle())) for ln in lines}
        assert len(styles) == len(lines)
        low, high = ax.get_ylim()
        shown = [t for t in ax.get_yticklabels() if t.get_text() and low <= t.get_position()[1] <= high]
        assert len(shown) >= 4, [t.get_text() for t in shown]
        assert all("$" not in t.get_text() for t in shown)  # plain numbers, not 10^x
    finally:
        plt.close(fig)


# --- README: the walkthrough's command is the one that printed its paths ------------------------------------------

def test_readme_walkthrough_paths_come_from_the_command_it_shows():
    import re
    import shlex

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("## A walkthrough: `costeff run`"):text.index("\n## Commands")]
    block = re.search(r"```text\n(.*?)```", section, flags=re.S).group(1)
    command = block.splitlines()[0]
    assert command.startswith("$ costeff run")
    args = build_parser().parse_args(shlex.split(command)[2:])
    root = str(args.out) if args.out is not None else "artifacts"
    repository = f"{root}/model_repository" if args.out is not None else "docker/triton/model_repository"
    config = re.search(r"(\S+)/policy/config\.pbtxt", block)
    assert config and config.group(1) == repository
    for pack in re.findall(r"pack: (\S+\.tar\.gz)", block):
        assert pack.startswith(f"{root}/cost/"), pack
    assert re.search(rf"{re.escape(root)}/report_\d{{8}}_\d{{6}}Z\.html", block)
    assert "INFO:nncf" not in block and "100%" not in block  # the library chatter (log lines, progress bars)

"""costeff run's stages declare what they need and produce; the graph is checked before anything runs."""

from pathlib import Path

import pytest

from costeff import pipeline, stages
from costeff.artifacts import Workspace
from costeff.pipeline import StageResult, _run_stage
from costeff.runctx import RunConfig, RunContext, Skip, Stage, check_graph
from workspace_support import env_home


def _ok(ctx):
    return "ok", []


def test_the_shipped_stages_form_a_valid_graph():
    check_graph(stages.STAGES)
    names = [s.name for s in stages.STAGES]
    assert names[0] == "policy" and len(set(names)) == len(names)


def test_a_stage_needing_what_no_earlier_stage_produces_is_refused_by_name():
    graph = (Stage("a", _ok, produces=("model",)), Stage("b", _ok, requires=("quant_report",)))
    with pytest.raises(RuntimeError, match="stage b needs quant_report, which no earlier stage produces"):
        check_graph(graph)
    later = (Stage("b", _ok, uses=("model",)), Stage("a", _ok, produces=("model",)))  # produced too late
    with pytest.raises(RuntimeError, match="stage b needs model"):
        check_graph(later)
    with pytest.raises(RuntimeError, match="stage a: 'modle' is not a run product"):
        check_graph((Stage("a", _ok, produces=("modle",)),))


def test_run_all_checks_the_graph_before_any_stage_runs(tmp_path, monkeypatch):
    ran = []
    graph = (Stage("first", lambda ctx: ran.append("first") or ("", [])),
             Stage("second", _ok, requires=("verify_report",)))
    monkeypatch.setattr(stages, "STAGES", graph)
    with pytest.raises(RuntimeError, match="stage second needs verify_report"):
        pipeline.run_all(RunConfig(), Workspace.at(tmp_path, env_home()))
    assert ran == [] and not any(tmp_path.iterdir())


def _ctx(tmp_path):
    return RunContext(RunConfig(), Workspace.at(tmp_path, env_home()), "20261202_000000Z")


def test_a_stage_writing_a_product_it_does_not_declare_fails(tmp_path):
    def sneaky(ctx):
        ctx.products.quant_report = Path("elsewhere.json")
        return "done", []

    result = StageResult("sneaky")
    _run_stage(Stage("sneaky", sneaky, produces=("model",)), _ctx(tmp_path), result)
    assert result.status == "failed" and result.exit_code == 3
    assert "stage sneaky wrote quant_report, which it does not declare" in (result.error or "")


def test_a_stage_without_what_it_requires_is_skipped_naming_it(tmp_path):
    ctx = _ctx(tmp_path)
    with pytest.raises(Skip, match="needs selected_model, repository from an earlier stage"):
        ctx.need("selected_model", "repository")
    ctx.products.selected_model = tmp_path / "m.onnx"
    assert ctx.need("selected_model") == [tmp_path / "m.onnx"]

"""A corrupt record is an error that names it: pack, report and summary refuse it instead of reading it as missing.

Before the record registry, a quantization report that was not valid JSON was silently left out of the
report page (as if the stage had never run) and its criteria shown failing for want of data.
"""

import json

import pytest

from costeff.artifacts import Workspace, atomic_write_json, sha256_file
from costeff.cli import main
from costeff.errors import InputError
from costeff.pack.chain import write_run
from costeff.pack.summary import render_summary
from costeff.records.run import read_run
from workspace_support import env_workspace

MODEL = "a" * 64


def _run(layout: Workspace, quant_body: bytes | None = None) -> tuple[str, dict]:
    """One run's profile and quantization report (the report's bytes replaced by ``quant_body``), with its
    manifest written after, as `costeff run` writes it."""
    stamp = "20260101_000010Z"
    prof = atomic_write_json(layout.cost / stamp / "gpu_profile.json", {
        "created_at": "2026-01-01T00:00:10Z", "model_sha256": MODEL, "provider": "cpu", "points": [],
        "optimal": {"batch_size": 8, "throughput_per_s": 1000.0}})
    quant = atomic_write_json(layout.quant / stamp / "quantization_report.json", {
        "created_at": "2026-01-01T00:00:10Z", "model_sha256": MODEL, "selected": {"name": "fp32"},
        "variants": [{"name": "fp32", "sha256": MODEL, "passed": True, "speedup": 1.0}]})
    if quant_body is not None:
        quant.write_bytes(quant_body)
    sources = {"profile_fp32": prof.parent, "profile": prof.parent, "quant": quant.parent}
    write_run(layout, stamp, sources, None, None)
    return stamp, {"quant": quant, "profile": prof}


CORRUPT = [
    (b'{"variants": [', "not valid JSON"),
    (b'{"variants": "fp32"}', "variants"),  # valid JSON, not a quantization report: the field is named
    (b"[]", "expected a JSON object"),
]


@pytest.mark.parametrize("body, why", CORRUPT)
def test_pack_over_a_run_with_a_corrupt_quantization_report_exits_2_naming_it(body, why, capsys):
    layout = env_workspace()
    stamp, files = _run(layout, body)
    assert main(["pack", "--run", stamp]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(files["quant"]) in err and why in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not list(layout.cost.glob("pack_*.tar.gz")) and not list(layout.cost.glob("COMPLETION_SUMMARY_*"))


@pytest.mark.parametrize("body, why", CORRUPT)
def test_report_over_a_run_with_a_corrupt_quantization_report_exits_2_naming_it(body, why, capsys):
    layout = env_workspace()
    stamp, files = _run(layout, body)
    assert main(["report", str(layout.root), "--run", stamp]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(files["quant"]) in err and why in err
    assert not list(layout.root.glob("report_*.html"))


def test_the_same_run_intact_packs_and_reports(capsys):
    layout = env_workspace()
    stamp, _ = _run(layout)
    assert main(["pack", "--run", stamp]) == 0
    assert main(["report", str(layout.root), "--run", stamp]) == 0
    assert len(list(layout.root.glob("report_*.html"))) == 1


def test_a_corrupt_record_outside_any_run_stops_the_chain_too(capsys):
    """Without a run manifest every record is looked at to find the chain; a corrupt one cannot be placed."""
    layout = env_workspace()
    _, files = _run(layout)
    for manifest in (layout.cost / "runs").glob("*.json"):
        manifest.unlink()
    files["quant"].write_bytes(b"\x00\xff not json")
    assert main(["pack"]) == 2
    assert str(files["quant"]) in capsys.readouterr().err


def test_a_corrupt_run_manifest_is_an_error_naming_it(capsys):
    layout = env_workspace()
    stamp, _ = _run(layout)
    manifest = layout.cost / "runs" / f"{stamp}.json"
    manifest.write_text(json.dumps({"run": stamp, "records": {"quant": {"path": "x"}}}))  # no sha256
    assert main(["pack"]) == 2
    err = capsys.readouterr().err
    assert str(manifest) in err and "records.quant.sha256" in err


def test_the_run_manifest_round_trips_through_its_one_reader():
    layout = env_workspace()
    stamp, files = _run(layout)
    run = read_run(layout.cost / "runs" / f"{stamp}.json")
    assert run.run == stamp and run.created_at
    assert run.records["quant"].path == str(files["quant"])
    assert run.records["quant"].sha256 == sha256_file(files["quant"])
    assert set(run.records) == {"profile", "profile_fp32", "quant"}


def test_the_summary_names_a_corrupt_packed_record_by_its_path_in_the_pack():
    files = {"quant/quantization_report.json": b'{"variants": 3}'}
    with pytest.raises(InputError, match=r"^quant/quantization_report.json: corrupt quant record: variants"):
        render_summary(files)
    origin = {"quant/quantization_report.json": "/runs/q/quantization_report.json"}
    with pytest.raises(InputError, match=r"^/runs/q/quantization_report.json: corrupt quant record"):
        render_summary(files, origin)

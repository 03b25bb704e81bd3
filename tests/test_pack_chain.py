"""Pack, report and summary take one coherent chain of records: one run's, or the records one record was made
from; never a mix of runs (the batching report of one run beside the profile of another)."""

import hashlib
import json
import shutil

import pytest

from costeff.artifacts import atomic_write_json, sha256_file
from costeff.cli import main
from costeff.pack import pack, verify_pack
from costeff.pack.bundle import SUMMARY, _tarball, build_manifest, read_pack, sign_manifest
from costeff.pack.chain import write_run
from costeff.pack.summary import render_summary
from costeff.audit.keys import home_signer
from workspace_support import env_workspace, env_home

MODEL, INT8 = "a" * 64, "b" * 64


def _profile(folder, model=MODEL, rate=1000.0):
    return atomic_write_json(folder / "gpu_profile.json", {
        "created_at": f"2026-01-01T00:00:{folder.name[-3:-1]}Z", "model_sha256": model, "provider": "cpu",
        "points": [], "optimal": {"batch_size": 8, "throughput_per_s": rate}})


def _quant(folder, model=MODEL, selected="fp32"):
    variants = [{"name": "fp32", "sha256": model, "passed": True}, {"name": "int8", "sha256": INT8, "passed": True}]
    return atomic_write_json(folder / "quantization_report.json", {
        "created_at": f"2026-01-01T00:00:{folder.name[-3:-1]}Z", "model_sha256": model, "variants": variants,
        "selected": {"name": selected}})


def _batching(folder, profile):
    return atomic_write_json(folder / "batching_report.json", {
        "created_at": f"2026-01-01T00:00:{folder.name[-3:-1]}Z", "chosen": None, "binding": {"constraint": "test"},
        "inputs": {"profile": sha256_file(profile)}})


def _run_records(layout, second):
    """One run's profile, quantization and batching reports, in folders stamped at ``second``."""
    stamp = f"20260101_0000{second:02d}Z"
    prof = _profile(layout.cost / stamp, rate=1000.0 + second)
    quant = _quant(layout.quant / stamp)
    batch = _batching(layout.batching / stamp, prof)
    return stamp, {"profile_fp32": prof.parent, "profile": prof.parent, "quant": quant.parent,
                   "batching": batch.parent}


def test_pack_takes_the_newest_run_and_names_it_even_after_later_separate_commands(capsys):
    layout = env_workspace()
    stamp, sources = _run_records(layout, 10)
    write_run(layout, stamp, sources, None, None)
    _profile(layout.cost / "20260101_000020Z", rate=5.0)  # a later `costeff profile`, not of the run
    _quant(layout.quant / "20260101_000021Z")
    assert main(["pack", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["records_from"].startswith(f"run {stamp}")
    assert {k: v for k, v in record["included"].items() if v} == {k: str(v) for k, v in sources.items()}
    assert main(["pack", "--verify", record["pack"]]) == 0


def test_without_a_run_pack_follows_the_newest_records_inputs_down(capsys):
    layout = env_workspace()
    _run_records(layout, 10)
    stamp, sources = _run_records(layout, 20)  # a second chain, no run manifest for either
    assert main(["pack", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert "no run manifest" in record["records_from"]
    assert record["included"]["batching"] == str(sources["batching"])
    packed_profile = read_pack(record["pack"])["profile/gpu_profile.json"]
    assert hashlib.sha256(packed_profile).hexdigest() == \
        json.loads(read_pack(record["pack"])["batching/batching_report.json"])["inputs"]["profile"]
    assert main(["pack", "--verify", record["pack"]]) == 0


def test_a_link_to_a_record_that_is_gone_is_refused_with_one_line(capsys):
    layout = env_workspace()
    _, sources = _run_records(layout, 10)
    _quant(layout.quant / "20260101_000005Z")
    shutil.rmtree(sources["profile"])  # the batching report's profile is gone; another run's must not stand in
    _profile(layout.cost / "20260101_000001Z")
    before = sorted(p.name for p in layout.cost.iterdir())
    assert main(["pack"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert "batching/20260101_000010Z/batching_report.json was made from profile sha256" in err
    assert "which is in no profile under" in err
    assert sorted(p.name for p in layout.cost.iterdir()) == before  # nothing written


def test_a_hand_made_mixed_pack_fails_verify(capsys):
    layout = env_workspace()
    _, first = _run_records(layout, 10)
    _, second = _run_records(layout, 20)
    result = pack(layout, sources=first)
    files = read_pack(result.path)
    # the first run's pack, with the second run's batching report put in: re-signed, summary regenerated
    files["batching/batching_report.json"] = (second["batching"] / "batching_report.json").read_bytes()
    files.pop("manifest.json"), files.pop("manifest.sig")
    files[SUMMARY] = render_summary(files).encode()
    manifest = json.dumps(build_manifest(files), indent=2).encode()
    result.path.write_bytes(_tarball(files, manifest, sign_manifest(manifest, home_signer(env_home()))))
    report = verify_pack(result.path, env_home().pubkey)
    assert not report.ok
    assert report.problems == ["batching/batching_report.json: made from profile sha256 "
                               f"{sha256_file(second['profile'] / 'gpu_profile.json')[:12]}…, which is not in this "
                               "pack (records of different runs mixed)"]
    assert main(["pack", "--verify", str(result.path)]) == 1


def test_packing_twice_never_overwrites_an_earlier_summary_or_manifest():
    layout = env_workspace()
    stamp, sources = _run_records(layout, 10)
    write_run(layout, stamp, sources, None, None)
    first = pack(layout)
    kept = first.summary_path.read_bytes()
    _, later = _run_records(layout, 30)
    second = pack(layout, sources=later)
    assert second.summary_path != first.summary_path and second.path != first.path
    assert first.summary_path.read_bytes() == kept
    assert first.summary_path.name.startswith("COMPLETION_SUMMARY_") and \
        first.summary_path.read_bytes() == read_pack(first.path)[SUMMARY]
    assert len(list(layout.cost.glob("manifest_*.json"))) == 2


def test_a_changed_run_record_is_not_packed_as_that_run(capsys):
    layout = env_workspace()
    stamp, sources = _run_records(layout, 10)
    write_run(layout, stamp, sources, None, None)
    _batching(sources["batching"], layout.cost / "20260101_000010Z" / "gpu_profile.json")  # same bytes: intact
    assert main(["pack", "--run", stamp]) == 0
    data = json.loads((sources["batching"] / "batching_report.json").read_text())
    atomic_write_json(sources["batching"] / "batching_report.json", {**data, "binding": {"constraint": "edited"}})
    capsys.readouterr()
    assert main(["pack", "--run", stamp]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: run {stamp}: its batching record ") and "changed after the run" in err
    assert main(["pack", "--run", "20990101_000000Z"]) == 2
    assert "no run manifest" in capsys.readouterr().err
    assert main(["pack", "--run", "../../etc/x"]) == 2
    assert "not a run stamp" in capsys.readouterr().err
    assert main(["pack", "--json"]) == 0  # the default passes over the changed run to the newest chain, and says so
    record = json.loads(capsys.readouterr().out)
    assert "no run manifest" in record["records_from"]
    assert any(line.startswith(f"run {stamp}: its batching record ") for line in record["left_out"])


def test_report_takes_one_run_and_never_overwrites_another_runs_page(capsys):
    layout = env_workspace()
    stamp, sources = _run_records(layout, 10)
    write_run(layout, stamp, sources, None, None)
    assert main(["report", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["records_from"].startswith(f"run {stamp}") and first["path"].endswith(f"report_{stamp}.html")
    later, later_sources = _run_records(layout, 40)
    write_run(layout, later, later_sources, None, None)
    assert main(["report", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["path"].endswith(f"report_{later}.html") and second["path"] != first["path"]
    assert second["sources"]["batching"] == str(later_sources["batching"] / "batching_report.json")
    assert (layout.root / f"report_{stamp}.html").is_file()


@pytest.mark.slow
def test_after_separate_profile_and_quantize_pack_packs_their_chain_or_names_the_missing_link(tiny_policy, capsys):
    """The interface check: `costeff profile --out A`, `costeff quantize --out B`, then `costeff pack`."""
    layout = env_workspace()
    a, b = layout.cost / "A", layout.quant / "B"
    assert main(["profile", "--preset", "tiny", "--batch-sizes", "1,8", "--window-ms", "30", "--warmup-ms", "5",
                 "--max-trials", "3", "--out", str(a)]) == 0
    assert main(["quantize", "--preset", "tiny", "--variants", "int8-dynamic", "--batch-sizes", "1,8",
                 "--window-s", "0.05", "--rounds", "1", "--out", str(b)]) == 0
    capsys.readouterr()
    code = main(["pack", "--json"])
    out, err = capsys.readouterr()
    assert code in (0, 2)
    if code == 2:  # refused: one line naming the missing link, nothing written
        assert len(err.strip().splitlines()) == 1 and "was made from" in err and not list(layout.cost.glob("pack_*"))
        return
    record = json.loads(out)
    quant = json.loads((b / "quantization_report.json").read_text())
    assert record["included"]["quant"] == str(b)
    files = read_pack(record["pack"])
    for name in ("profile/gpu_profile.json", "profile_fp32/gpu_profile.json"):
        if name in files:  # a profile is packed only as the profile of a model the quantization report names
            sha = json.loads(files[name])["model_sha256"]
            assert sha in {v["sha256"] for v in quant["variants"]}
    assert json.loads(files["profile_fp32/gpu_profile.json"])["model_sha256"] == quant["model_sha256"]
    assert main(["pack", "--verify", record["pack"]]) == 0
    # a batching report made from A, then A removed: its newest chain has a missing link, which is named
    assert main(["batching", "optimize", "--profile", str(a / "gpu_profile.json"), "--rate", "200",
                 "--requests", "2000", "--p99-ms", "50", "--out", str(layout.batching / "C")]) == 0
    shutil.rmtree(a)
    capsys.readouterr()
    assert main(["pack"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {layout.batching / 'C' / 'batching_report.json'} was made from profile sha256 ")
    assert len(err.splitlines()) == 1 and err.endswith(f"which is in no profile under {layout.cost}/")


def test_a_newer_fp32_profile_is_the_baseline_of_an_older_quantization_report(capsys):
    layout = env_workspace()
    _quant(layout.quant / "20260101_000010Z", selected="int8")
    served = _profile(layout.cost / "20260101_000005Z", model=INT8)
    baseline = _profile(layout.cost / "20260101_000020Z")  # the top record: fp32, measured after the report
    assert main(["pack", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["included"]["profile_fp32"] == str(baseline.parent)
    assert record["included"]["profile"] == str(served.parent)
    assert record["included"]["quant"] == str(layout.quant / "20260101_000010Z") and record["left_out"] == []


def test_a_triton_repository_built_from_another_chain_is_left_out_and_named(capsys):
    layout = env_workspace()
    _, first = _run_records(layout, 10)
    entry = env_workspace().repository / "policy"
    (entry / "1").mkdir(parents=True)
    (entry / "config.pbtxt").write_text('name: "policy"\n')
    atomic_write_json(entry / "costeff_build.json", {"inputs": {
        "quantization_report": sha256_file(first["quant"] / "quantization_report.json"),
        "batching_report": sha256_file(first["batching"] / "batching_report.json")}})
    assert main(["pack", "--json"]) == 0  # the build agrees with the newest chain: the repository is packed
    record = json.loads(capsys.readouterr().out)
    assert "model_repository/policy/costeff_build.json" in read_pack(record["pack"]) and record["left_out"] == []
    _quant(layout.quant / "20260101_000020Z")  # a later `costeff quantize`: the build is not of its chain
    assert main(["pack", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert not [n for n in read_pack(record["pack"]) if n.startswith("model_repository/")]
    assert any(line.startswith(f"{entry / 'costeff_build.json'}: not of this chain") and
               line.endswith("the Triton repository is left out") for line in record["left_out"])
    assert verify_pack(record["pack"], env_home().pubkey).ok

"""The profile, batching, verify and build records: what their writers write reads back typed, and a corrupt
record is an error naming its file, never read as missing."""

from __future__ import annotations

import json

import pytest

from costeff.cli import main
from costeff.errors import InputError
from costeff.records.kinds import BATCHING, BUILD, PROFILE

from test_serving import _profile, _tiny_policy


def _one_error_line(err: str, path) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    assert str(path) in lines[0]
    return lines[0]


@pytest.mark.parametrize("content, says", [
    ('{"points": [{"batch_size": 1, "latency_ms": {"mean": 1.0}}', "not valid JSON"),  # cut short
    ("[1, 2]", "expected a JSON object"),
    ('{"points": [{"batch_size": 1, "latency_ms": {"mean": "slow"}}]}', "points[0].latency_ms.mean"),
    ('{"points": [{"batch_size": 1, "latency_ms": {"mean": 1.0}}], "hardware": {"gpus": "H100"}}',
     "hardware.gpus"),
])
@pytest.mark.parametrize("verb", [["optimize", "--p99-ms", "5", "--out"], ["simulate", "--max-batch-size", "1"]])
def test_a_corrupt_profile_given_to_batching_exits_2_naming_the_file(tmp_path, capsys, content, says, verb):
    path = tmp_path / "gpu_profile.json"
    path.write_bytes(content.encode())
    out = tmp_path / "run"
    out_args = [str(out)] if verb[-1] == "--out" else []
    rc = main(["batching", verb[0], "--profile", str(path), "--rate", "10", *verb[1:], *out_args])
    line = _one_error_line(capsys.readouterr().err, path)
    assert rc == 2 and "corrupt profile record" in line and says in line
    assert not out.exists()  # nothing half written


def test_the_typed_profile_reads_back_what_the_profiler_writes(tmp_path):
    from costeff.profiling import Point, ProfileReport
    from costeff.profiling.analysis import select_optimal
    from costeff.profiling.measure import Latency

    points = [Point(batch_size=b, concurrency=1, throughput_per_s=1000.0 * b / (1 + b / 8), requests_per_s=100.0,
                    latency_ms=Latency(0.9 + b / 8, 0.8 + b / 8, 1.0 + b / 8, 1.1 + b / 8, 1.5 + b / 8),
                    stable=b != 8, trials=3, requests=300, windows=[], rss_peak_mb=55.5) for b in (1, 8)]
    cost = {"instance": "aws-c6i.large", "usd_per_hour": 0.085, "throughput_per_s": points[1].throughput_per_s,
            "usd_per_million": 0.05, "target_rate_per_s": None, "max_utilisation": 0.8, "instances_needed": None,
            "usd_per_day": None, "usd_per_month": None, "price_source": "list price"}
    report = ProfileReport(
        schema_version=1, created_at="2026-01-01T00:00:00Z", costeff_version="0", model_sha256="ab" * 32,
        model_path="policy.onnx", hardware={"cpu_model": "test cpu", "cpu_count": 4, "isa": ["avx2"], "gpus": []},
        provider="CPUExecutionProvider", config={"batch_sizes": [1, 8], "latency_budget_ms": 5.0},
        inputs={"source": "synthetic", "runtime": {"backend": "onnxruntime", "threads": 2}}, points=points,
        optimal=select_optimal(points, 5.0), cost=cost, right_sizing=[], recommendations=[], duration_s=1.5,
        latency_by_gap=[{"gap_ms": 0.0, "calls": 20, "p50_ms": 1.0, "p99_ms": 1.4},
                        {"gap_ms": 10.0, "calls": 20, "p50_ms": 1.6, "p99_ms": 2.0}])
    written = report.write(tmp_path)
    assert written[-1] == PROFILE.path_in(tmp_path)  # the record is written last
    back = PROFILE.read(PROFILE.path_in(tmp_path))
    assert [p.batch_size for p in back.points] == [1, 8] and back.points[1].stable is False
    assert back.points[1].latency_ms is not None and back.points[1].latency_ms.p99 == pytest.approx(2.5)
    assert back.optimal is not None and back.optimal.batch_size == report.optimal.batch_size
    assert back.optimal.throughput_per_s == pytest.approx(report.optimal.throughput_per_s)
    assert back.cost is not None and back.cost.instance == "aws-c6i.large" and back.cost.usd_per_hour == 0.085
    assert back.config.latency_budget_ms == 5.0 and back.runtime.threads == 2 and back.host.isa == ["avx2"]
    assert [(g.gap_ms, g.p50_ms) for g in back.latency_by_gap] == [(0.0, 1.0), (10.0, 1.6)]
    assert back.to_dict() == json.loads(PROFILE.path_in(tmp_path).read_text())  # nothing lost or added

    from costeff.batching import ServiceTimes

    service = ServiceTimes.from_profile(PROFILE.path_in(tmp_path))  # the simulator reads the same file
    assert service.batch_sizes == (1, 8) and service.mean_ms[1] == pytest.approx(1.9)
    assert service.cold_penalty()(0.01) == pytest.approx(0.0006)  # 1.6 ms after 10 ms idle vs 1.0 back to back


@pytest.mark.parametrize("throughput", ["NaN", "Infinity", '"fast"', "-1", "true"])
def test_a_profile_with_a_non_finite_or_negative_throughput_is_refused(tmp_path, throughput):
    path = tmp_path / "gpu_profile.json"
    path.write_text('{"optimal": {"throughput_per_s": %s}, "hardware": {}}' % throughput)
    with pytest.raises(InputError, match=r"gpu_profile\.json: corrupt profile record: optimal\.throughput_per_s: "
                                         r".*expected a finite number"):
        PROFILE.read(path)


@pytest.fixture
def entry(tmp_path):
    """A repository entry built from a tiny model: config.pbtxt, version 1, costeff_build.json."""
    from costeff.serving import BuildConfig, build_repository

    model = _tiny_policy(tmp_path / "policy.onnx")
    result = build_repository(BuildConfig(model, _profile(tmp_path, model), tmp_path / "repo"))
    return tmp_path / "repo" / result.name


def test_the_build_record_reads_back_typed(entry):
    record = BUILD.read(BUILD.path_in(entry))
    assert record.batching is not None and record.batching.max_batch_size == 16
    assert record.threads is not None and record.threads.serving_cpus and record.version == 1
    assert record.instance_kind == "cpu" and record.backend == "onnxruntime"


@pytest.mark.parametrize("content, says", [
    ('{"threads": {"serving_cpus": 2', "not valid JSON"),
    ('{"threads": {"serving_cpus": -1}}', "threads.serving_cpus"),
    ('{"batching": []}', "batching"),
])
def test_a_corrupt_build_record_is_an_error_naming_it_not_absent(entry, capsys, content, says):
    path = BUILD.path_in(entry)
    path.write_text(content)
    rc = main(["triton", "validate", str(entry / "config.pbtxt")])
    line = _one_error_line(capsys.readouterr().err, path)
    assert rc == 2 and "corrupt build record" in line and says in line


def test_an_entry_without_a_build_record_still_validates(entry, capsys):
    BUILD.path_in(entry).unlink()  # a hand-written entry: no record, nothing recorded to check against
    assert main(["triton", "validate", str(entry / "config.pbtxt")]) == 0


def test_a_corrupt_versions_ledger_stops_the_next_build_naming_it(tmp_path, entry):
    from costeff.serving import BuildConfig, build_repository

    ledger = entry / "costeff_versions.json"
    ledger.write_text('{"last_version": "many"}')
    model = tmp_path / "policy.onnx"
    with pytest.raises(InputError, match=r"costeff_versions\.json: corrupt \(last_version: "):
        build_repository(BuildConfig(model, tmp_path / "gpu_profile.json", tmp_path / "repo"))
    assert BUILD.read(BUILD.path_in(entry)).version == 1  # the entry is untouched


def test_a_corrupt_batching_report_given_to_triton_build_is_named(tmp_path, capsys):
    model = _tiny_policy(tmp_path / "policy.onnx")
    batching = tmp_path / "batching_report.json"
    batching.write_text('{"chosen": {"max_batch_size": "big"}}')
    rc = main(["triton", "build", str(model), "--profile", str(_profile(tmp_path, model)), "--batching",
               str(batching), "--repository", str(tmp_path / "repo")])
    line = _one_error_line(capsys.readouterr().err, batching)
    assert rc == 2 and "chosen.max_batch_size" in line and not (tmp_path / "repo" / "policy").exists()
    assert BATCHING.parse({"chosen": None}, "x").chosen is None  # no setting met the SLO: not an error


def test_a_verify_report_carries_the_batching_reports_prediction_and_reads_back(tmp_path):
    from costeff.records.kinds import VERIFY
    from costeff.serving import verify as v

    out = tmp_path / "batching"
    assert main(["batching", "optimize", "--profile", str(_simple_profile(tmp_path)), "--rate", "500",
                 "--p99-ms", "20", "--out", str(out), "--requests", "2000", "--max-batch-sizes", "1,8",
                 "--queue-delays-us", "0,500", "--instance", "aws-c6i.large"]) == 0
    chosen = BATCHING.read(BATCHING.path_in(out)).chosen
    predicted = v.predicted_from(BATCHING.path_in(out))
    assert chosen is not None and predicted is not None and predicted.settings is not None
    assert predicted.p99_ms == chosen.predicted.p99_ms and predicted.settings.max_batch_size == chosen.max_batch_size
    report = v.skipped("policy", tmp_path / "repo", 500.0, predicted, "Triton cannot start here")
    path = report.write(tmp_path / "verify")
    back = VERIFY.read(path)
    assert back.skipped == "Triton cannot start here" and back.measured is None and back.rate_per_s == 500.0
    assert back.predicted is not None and back.predicted.p50_ms == predicted.p50_ms
    assert back.ratios.p99 is None  # nothing measured: no ratio, not a zero


def _simple_profile(tmp_path):
    path = tmp_path / "gpu_profile.json"
    path.write_text(json.dumps({"model_sha256": "ab" * 32, "points": [
        {"batch_size": b, "concurrency": 1, "latency_ms": {"mean": m, "p50": m, "p99": m * 1.2}}
        for b, m in ((1, 1.0), (8, 2.0))]}))
    return path


def test_a_measured_verify_report_writes_its_ratios(tmp_path):
    from costeff.records.kinds import VERIFY
    from costeff.records.verify import Measured, Predicted, ServerTimes
    from costeff.serving.verify import VerifyReport

    report = VerifyReport("policy", "repo", 100.0, Predicted(p50_ms=1.0, p99_ms=4.0, mean_batch_size=2.0),
                          Measured(p50_ms=1.5, p99_ms=6.0, mean_batch_size=None, requests=300, errors=0,
                                   server_ms_per_request=ServerTimes(queue=0.25)),
                          server={"triton": "2.51", "backends": "python"}, load_average=[1.0] * 6)
    back = VERIFY.read(report.write(tmp_path))
    assert back.ratios.p50 == pytest.approx(1.5) and back.ratios.p99 == pytest.approx(1.5)
    assert back.ratios.mean_batch is None and back.measured is not None
    assert back.measured.server_ms_per_request.queue == 0.25
    assert "| p99 | 4 ms | 6 ms | 1.5x |" in (tmp_path / "verify_report.md").read_text()

"""The batching optimizer's choice, its report and the costeff batching CLI."""

from __future__ import annotations

import json

import pytest

from costeff.batching import OptimizeConfig, load_trace
from costeff.batching.optimizer import optimize
from costeff.cli import main
from costeff.errors import InputError
from costeff.records.kinds import PROFILE

SMALL = dict(requests=3000, verify_factor=2, max_batch_sizes=(1, 8), queue_delays_us=(0, 500), jitter=False,
             instance="aws-c6i.large")


def profile(path=None):
    """Batch 1 takes 1 ms, batch 8 takes 2 ms: one instance serves 1000/s unbatched, 4000/s batched."""
    data = {"model_sha256": "c0ffee" * 10 + "abcd", "provider": "CPUExecutionProvider",
            "points": [{"batch_size": b, "concurrency": 1, "latency_ms": {"mean": m, "p50": m, "p99": m * 1.2}}
                       for b, m in ((1, 1.0), (8, 2.0))]}
    if path is not None:
        path.write_text(json.dumps(data))
        return path
    return PROFILE.parse(data, "<test profile>")


def test_optimizer_picks_the_cheapest_setting_meeting_the_slo():
    report = optimize(profile(), OptimizeConfig(rate_per_s=3000, p99_ms=20, **SMALL))
    c = report.chosen
    assert report.feasible and c["instances"] == 1 and c["max_batch_size"] == 8
    assert c["predicted"]["p99_ms"] <= 20
    assert all(t["predicted"]["usd_per_hour"] >= c["predicted"]["usd_per_hour"] for t in report.top)


def test_optimizer_adds_instances_when_one_cannot_keep_up():
    report = optimize(profile(), OptimizeConfig(rate_per_s=6000, p99_ms=20, **SMALL))
    assert report.chosen["instances"] == 2
    assert report.chosen["predicted"]["usd_per_hour"] == pytest.approx(2 * 0.085)


def test_impossible_slo_names_the_service_time():
    report = optimize(profile(), OptimizeConfig(rate_per_s=100, p99_ms=0.5, **SMALL))
    assert report.chosen is None and report.binding["constraint"] == "service_time"
    assert report.binding["best_p99_ms"] >= 1.0


def test_impossible_rate_names_the_instance_limit():
    report = optimize(profile(), OptimizeConfig(rate_per_s=50_000, p99_ms=50, max_instances=2,
                                                **{k: v for k, v in SMALL.items()}))
    assert report.chosen is None and report.binding["constraint"] == "max_instances"


@pytest.mark.slow
def test_cli_writes_the_report_the_repository_builder_reads(tmp_path, capsys):
    prof = profile(tmp_path / "gpu_profile.json")
    out = tmp_path / "run"
    rc = main(["batching", "optimize", "--profile", str(prof), "--rate", "3000", "--p99-ms", "20",
               "--out", str(out), "--json", "--requests", "3000", "--max-batch-sizes", "1,8",
               "--queue-delays-us", "0,500", "--instance", "aws-c6i.large"])
    assert rc == 0
    data = json.loads((out / "batching_report.json").read_text())
    chosen = data["chosen"]
    for key in ("max_batch_size", "preferred_batch_size", "max_queue_delay_us", "instances"):
        assert key in chosen
    assert isinstance(chosen["preferred_batch_size"], list)
    for key in ("p50_ms", "p99_ms", "mean_batch_size", "utilisation", "usd_per_hour", "usd_per_million"):
        assert key in chosen["predicted"]
    assert data["profile"]["path"] == str(prof) and data["model_sha256"] == profile().model_sha256
    assert data["schema_version"] and data["created_at"] and data["top"]
    assert json.loads(capsys.readouterr().out)["chosen"] == chosen
    for name in ("batching_report.md", "p99_vs_queue_delay.png", "cost_vs_p99.png"):
        assert (out / name).stat().st_size > 0


def test_cli_infeasible_exits_1_and_still_writes_the_report(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["batching", "optimize", "--profile", str(profile(tmp_path / "p.json")), "--rate", "100",
               "--p99-ms", "0.5", "--out", str(out), "--requests", "2000", "--max-batch-sizes", "1,8"])
    assert rc == 1
    assert "service_time" in capsys.readouterr().out
    assert json.loads((out / "batching_report.json").read_text())["chosen"] is None


def test_cli_default_out_dir_is_under_artifacts(tmp_path):
    rc = main(["batching", "optimize", "--profile", str(profile(tmp_path / "p.json")), "--rate", "3000",
               "--p99-ms", "20", "--requests", "2000", "--max-batch-sizes", "8", "--queue-delays-us", "500"])
    from costeff.artifacts import Layout
    assert rc == 0 and Layout.default().latest("batching", "batching_report.json") is not None


def test_cli_simulate_prints_the_prediction(tmp_path, capsys):
    rc = main(["batching", "simulate", "--profile", str(profile(tmp_path / "p.json")), "--rate", "2000",
               "--max-batch-size", "8", "--preferred", "4,8", "--max-queue-delay-us", "500", "--instances", "1",
               "--requests", "2000"])
    assert rc == 0 and "p99" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--rate", "0", "--p99-ms", "5"], "--rate"),
    (["--rate", "-3", "--p99-ms", "5"], "--rate"),
    (["--rate", "100", "--p99-ms", "0"], "--p99-ms"),
])
def test_cli_rejects_bad_numbers(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main(["batching", "optimize", "--profile", str(profile(tmp_path / "p.json")), *args])
    assert exc.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("content, field", [
    (None, "missing file"),
    ("{not json", "not valid JSON"),
    (json.dumps({"points": []}), "points"),
    (json.dumps({"points": [{"batch_size": 2}]}), "points[0].latency_ms"),
    (json.dumps({"points": [{"batch_size": "x", "latency_ms": {"mean": 1}}]}), "points[0].batch_size"),
    (json.dumps({"points": [{"batch_size": 1, "latency_ms": {"p99": 1}}]}), "latency_ms.mean"),
])
def test_cli_names_what_is_wrong_with_the_profile(tmp_path, capsys, content, field):
    path = tmp_path / "gpu_profile.json"
    if content is not None:
        path.write_text(content)
    out = tmp_path / "run"
    rc = main(["batching", "optimize", "--profile", str(path), "--rate", "10", "--p99-ms", "5", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and field in err and err.startswith("error:") and "Traceback" not in err
    assert not out.exists()


def test_trace_with_a_timestamp_column_is_replayed(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("request_id,timestamp\na,10.0\nb,10.5\nc,10.5\nd,12\n")
    assert load_trace(path).tolist() == [0.0, 0.5, 0.5, 2.0]


@pytest.mark.parametrize("text, line", [("0.1\n0.2\n0.15\n", "line 3"), ("0.1\nabc\n", "line 2"),
                                        ("timestamp\n1\nnan\n", "line 3")])
def test_bad_trace_names_the_line(tmp_path, capsys, text, line):
    path = tmp_path / "trace.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=line):
        load_trace(path)
    rc = main(["batching", "optimize", "--profile", str(profile(tmp_path / "p.json")), "--trace", str(path),
               "--p99-ms", "5", "--out", str(tmp_path / "run")])
    assert rc == 2 and line in capsys.readouterr().err


def test_optimize_replays_a_trace(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("\n".join(f"{i / 2000:.6f}" for i in range(3000)))
    report = optimize(profile(), OptimizeConfig(rate_per_s=None, p99_ms=20, trace=path,
                                                **{k: v for k, v in SMALL.items() if k != "requests"}))
    assert report.target["rate_per_s"] == pytest.approx(2000, rel=0.01) and report.feasible

"""Per-request cost: fitted from Triton-shaped statistics, charged by the simulator, taken by the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from costeff.batching import BatcherConfig, ServiceTimes, simulate
from costeff.batching.server_stats import fit_phases, load_server_costs, mean_batch_rows, phase_delta
from costeff.cli import main
from costeff.errors import InputError

A, B, C = 0.4, 0.002, 0.05  # ms: per execution, per row, per request


def _ms(rows: int, requests: float) -> float:
    return A + B * rows + C * requests


def stats(batches: dict[int, int], rows_per_request: int, grpc: bool = False) -> dict:
    """A Triton stats reply after ``batches`` ({rows: executions}) of ``rows_per_request``-row requests."""
    num = str if grpc else int
    batch_stats, execs, rows, requests, infer_ns = [], 0, 0, 0, 0
    for r, n in sorted(batches.items()):
        ns = int(round(n * _ms(r, r / rows_per_request) * 1e6))
        # split the execution time over Triton's three compute phases, as the server reports it
        parts = (ns // 10, ns - ns // 10 - ns // 5, ns // 5)
        batch_stats.append({"batch_size": num(r), **{k: {"count": num(n), "ns": num(p)} for k, p in
                                                       zip(("compute_input", "compute_infer", "compute_output"),
                                                           parts, strict=True)}})
        execs, rows, requests, infer_ns = execs + n, rows + n * r, requests + n * r // rows_per_request, infer_ns + ns
    inference = {"success": {"count": num(requests), "ns": num(2 * infer_ns)},
                 "queue": {"count": num(requests), "ns": num(infer_ns)}}
    return {"model_stats": [{"name": "pol", "version": "1", "execution_count": num(execs),
                             "inference_count": num(rows), "inference_stats": inference,
                             "batch_stats": batch_stats}, {"name": "other", "version": "1"}]}


def phases(grpc: bool = False) -> list[dict]:
    one_row = {1: 120, 4: 40, 8: 200, 13: 7}
    return [{"name": "one-row x16", "rows_per_request": 1, "before": stats({}, 1, grpc),
             "after": stats(one_row, 1, grpc)},
            {"name": "8 rows x1", "rows_per_request": 8, "before": stats({}, 8, grpc),
             "after": stats({8: 300}, 8, grpc)},
            {"name": "32 rows x1", "rows_per_request": 32, "before": stats({}, 32, grpc),
             "after": stats({32: 150}, 32, grpc)}]


@pytest.mark.parametrize("grpc", [False, True], ids=["http-json", "grpc-json-strings"])
def test_fit_recovers_fixed_per_row_and_per_request_cost(grpc):
    fit = fit_phases(phases(grpc), "pol")
    assert fit.fixed_ms == pytest.approx(A, abs=1e-6)
    assert fit.per_row_ms == pytest.approx(B, abs=1e-6)
    assert fit.per_request_ms == pytest.approx(C, abs=1e-6)
    assert fit.executions == 120 + 40 + 200 + 7 + 300 + 150 and fit.rms_ms < 1e-6


def test_one_row_load_alone_cannot_split_rows_from_requests_but_stays_non_negative():
    """Without multi-row phases rows == requests: the fit keeps the total slope and never goes negative."""
    fit = fit_phases(phases()[:1], "pol")
    assert min(fit.fixed_ms, fit.per_row_ms, fit.per_request_ms) >= 0
    assert fit.per_row_ms + fit.per_request_ms == pytest.approx(B + C, abs=1e-6)
    assert fit.batch_ms(8, 8) == pytest.approx(_ms(8, 8), abs=1e-6)


def test_snapshots_give_the_mean_executed_batch():
    before, after = stats({1: 10}, 1), stats({1: 10, 8: 10, 16: 5}, 1)
    assert mean_batch_rows(before, after, "pol") == pytest.approx((10 * 8 + 5 * 16) / 15)
    assert phase_delta(before, after, "pol")["batches"] == {8: (10, pytest.approx(10 * _ms(8, 8) * 1e6, abs=10)),
                                                            16: (5, pytest.approx(5 * _ms(16, 16) * 1e6, abs=10))}


def test_counters_going_backwards_are_refused():
    with pytest.raises(InputError, match="restarted"):
        phase_delta(stats({1: 50}, 1), stats({1: 10}, 1), "pol")


def test_a_missing_model_names_what_the_reply_holds():
    with pytest.raises(InputError, match=r"no statistics for model 'policy' \(found: other, pol\)"):
        phase_delta(stats({}, 1), stats({1: 1}, 1), "policy")


def costs_file(tmp_path, **fit) -> str:
    path = tmp_path / "server_costs.json"
    path.write_text(json.dumps({"fit": {"fixed_ms": A, "per_row_ms": B, "per_request_ms": C, **fit},
                                "batch_sizes": [1, 8, 64]}))
    return str(path)


def test_service_times_from_server_costs_charge_one_request_per_point(tmp_path):
    svc = ServiceTimes.from_server_costs(load_server_costs(costs_file(tmp_path)))
    assert svc.batch_sizes == (1, 8, 64) and svc.per_request_ms == C
    assert svc.time_ms(8) == pytest.approx(A + C + 8 * B)  # one request of 8 rows


def test_per_request_cost_makes_one_row_requests_cost_more_than_one_multi_row_request():
    """8 one-row requests in one batch cost 7 per-request costs more than one 8-row request; the
    instance is busier by as much."""
    svc = ServiceTimes((1, 64), (1.0, 1.0 + 63 * 0.01), per_request_ms=0.2)
    cfg = BatcherConfig(64, (8,), max_queue_delay_us=1000)
    # every 10 ms, 8 requests arrive together: one batch of 8 each time
    arrivals = np.repeat(np.arange(200) * 0.010, 8)
    one_row = simulate(arrivals, svc, cfg, jitter=False)
    multi = simulate(np.arange(200) * 0.010, svc, cfg, rows=8, jitter=False)
    assert one_row.batch_histogram == multi.batch_histogram == {8: 200}
    assert one_row.latency_max_ms == pytest.approx(svc.time_ms(8) + 7 * 0.2)
    assert multi.latency_max_ms == pytest.approx(svc.time_ms(8))
    span = one_row.span_s * 1e3
    assert one_row.utilisation[0] == pytest.approx(200 * (svc.time_ms(8) + 1.4) / span)
    free = simulate(arrivals, ServiceTimes(svc.batch_sizes, svc.mean_ms), cfg, jitter=False)
    assert one_row.utilisation[0] > free.utilisation[0] * 1.8
    assert svc.peak_throughput_per_s(64) < ServiceTimes(svc.batch_sizes, svc.mean_ms).peak_throughput_per_s(64) / 3


def test_negative_per_request_cost_is_refused():
    with pytest.raises(InputError, match="per_request_ms"):
        ServiceTimes((1,), (1.0,), per_request_ms=-0.1)


def test_cli_simulate_takes_server_stats_without_a_profile(tmp_path, capsys):
    rc = main(["batching", "simulate", "--server-stats", costs_file(tmp_path), "--rate", "2000",
               "--max-batch-size", "64", "--preferred", "8,16,32", "--max-queue-delay-us", "5000",
               "--requests", "5000", "--no-jitter", "--json"])
    assert rc == 0
    with_cost = json.loads(capsys.readouterr().out)
    rc = main(["batching", "simulate", "--server-stats", costs_file(tmp_path, per_request_ms=0.0), "--rate", "2000",
               "--max-batch-size", "64", "--preferred", "8,16,32", "--max-queue-delay-us", "5000",
               "--requests", "5000", "--no-jitter", "--json"])
    without = json.loads(capsys.readouterr().out)
    assert rc == 0 and with_cost["utilisation"][0] > without["utilisation"][0] * 1.3


def test_cli_optimize_records_where_the_service_times_came_from(tmp_path):
    out = tmp_path / "run"
    rc = main(["batching", "optimize", "--server-stats", costs_file(tmp_path), "--rate", "1000", "--p99-ms", "20",
               "--requests", "2000", "--max-batch-sizes", "8,64", "--queue-delays-us", "0,1000",
               "--instance", "aws-c6i.large", "--out", str(out)])
    assert rc == 0
    report = json.loads((out / "batching_report.json").read_text())
    assert report["service_times"]["per_request_ms"] == C
    assert "server statistics" in report["service_times"]["source"]
    assert "ms per extra request" in (out / "batching_report.md").read_text()


@pytest.mark.parametrize("content, message", [
    (None, "no such server costs file"),
    ("[1]", "'fit' block"),
    (json.dumps({"fit": {"fixed_ms": 0.4, "per_row_ms": 0.0, "per_request_ms": -1}}), "fit.per_request_ms"),
    (json.dumps({"fit": {"fixed_ms": 0.4, "per_row_ms": 0.0}}), "fit.per_request_ms"),
    (json.dumps({"fit": {"fixed_ms": 0, "per_row_ms": 0, "per_request_ms": 0}}), "every cost is 0"),
])
def test_cli_names_what_is_wrong_with_the_server_stats(tmp_path, capsys, content, message):
    path = tmp_path / "server_costs.json"
    if content is not None:
        path.write_text(content)
    out = tmp_path / "run"
    rc = main(["batching", "optimize", "--server-stats", str(path), "--rate", "10", "--p99-ms", "5",
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.startswith("error:") and "Traceback" not in err
    assert not out.exists()


def test_cli_needs_a_profile_or_server_stats(capsys):
    rc = main(["batching", "simulate", "--rate", "10", "--max-batch-size", "8"])
    err = capsys.readouterr().err
    assert rc == 2 and "--profile" in err and "--server-stats" in err


def test_cli_calibrate_names_an_unreachable_server_and_writes_nothing(tmp_path, capsys):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    out = tmp_path / "calib"
    rc = main(["batching", "calibrate", "--url", dead, "--model", "pol", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 3 and err.startswith("error:") and dead in err and "Traceback" not in err
    assert not (out / "server_costs.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--concurrencies", "0,4"], "--concurrencies"),
    (["--requests", "5"], "--requests"),
    (["--rounds", "0"], "--rounds"),
    (["--url", "not a url"], "--url"),
])
def test_cli_calibrate_rejects_bad_settings_before_any_load(tmp_path, capsys, args, message):
    options = {"--url": "127.0.0.1:1", "--model": "pol", "--out": str(tmp_path / "calib"),
               **dict(zip(args[::2], args[1::2], strict=True))}
    rc = main(["batching", "calibrate", *[x for pair in options.items() for x in pair]])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.startswith("error:")

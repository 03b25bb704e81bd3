"""costeff profile --csv: the measured points as perf_analyzer's -f CSV (its columns, its units, its order)."""

import csv
import json

import numpy as np

from costeff.cli import main
from costeff.profiling.measure import Latency, Point
from costeff.profiling.perf_csv import BREAKDOWN, rows

PERF_ANALYZER = ["Concurrency", "Inferences/Second", "Client Send", "Network+Server Send/Recv", "Server Queue",
                 "Server Compute Input", "Server Compute Infer", "Server Compute Output", "Client Recv",
                 "p50 latency", "p90 latency", "p95 latency", "p99 latency"]
FAST = ["--window-ms", "40", "--warmup-ms", "10", "--max-trials", "3"]


def _model(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["obs", "w"], ["logits"])], "policy",
                              [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", 6])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "p.onnx"))
    np.save(tmp_path / "obs.npy", np.random.default_rng(1).standard_normal((64, 6)).astype(np.float32))
    return tmp_path / "p.onnx", tmp_path / "obs.npy"


def test_profile_writes_perf_analyzer_columns_in_microseconds(tmp_path, capsys):
    model, obs = _model(tmp_path)
    out, table = tmp_path / "run", tmp_path / "perf.csv"
    assert main(["profile", str(model), "--observations", str(obs), "--batch-sizes", "1,8,32", "--concurrency",
                 "1,2", "--out", str(out), "--csv", str(table), *FAST]) == 0
    report = json.loads((out / "gpu_profile.json").read_text())
    with table.open() as f:
        reader = csv.reader(f)
        head = next(reader)
        body = list(reader)
    assert head[:13] == PERF_ANALYZER and head[13:] == ["Avg latency", "Batch Size", "Stable"]
    assert len(body) == len(report["points"]) == 6
    speeds = [float(r[1]) for r in body]
    assert speeds == sorted(speeds)  # perf_analyzer sorts by increasing Inferences/Second
    for r in body:
        point = next(p for p in report["points"] if p["batch_size"] == int(r[14]) and p["concurrency"] == int(r[0]))
        assert float(r[1]) == round(point["throughput_per_s"], 1)
        assert int(r[12]) == round(point["latency_ms"]["p99"] * 1000)  # microseconds, as perf_analyzer
        assert int(r[9]) <= int(r[10]) <= int(r[11]) <= int(r[12])
        assert r[2:9] == [""] * 7  # no server statistics here: left empty, not invented


def test_open_loop_points_use_request_rate():
    lat = Latency(1.0, 0.9, 1.1, 1.2, 1.5)
    points = [Point(1, 1, 300.0, 300.0, lat, True, 3, 900, [], request_rate=300.0),
              Point(1, 1, 99.5, 99.5, lat, False, 3, 300, [], request_rate=100.0)]
    table = rows(points)
    assert table[0][0] == "Request Rate" and [r[0] for r in table[1:]] == [100, 300]
    assert table[1][9:13] == [900, 1100, 1200, 1500] and table[1][-1] == "no"
    assert len(BREAKDOWN) == 7


def test_a_csv_path_in_a_missing_folder_is_refused_before_measuring(tmp_path, capsys):
    model, obs = _model(tmp_path)
    code = main(["profile", str(model), "--observations", str(obs), "--out", str(tmp_path / "run"),
                 "--csv", str(tmp_path / "nowhere" / "perf.csv"), *FAST])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --csv: folder") and not (tmp_path / "run").exists()

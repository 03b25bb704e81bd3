"""Non-finite, absurd and oddly written numbers, unbounded time spans and hostile HTTP servers.

Every bad input is refused at the door: exit 2, one ``error:`` line naming the file (and row,
column or field), no traceback, nothing written, the ledger unchanged. A server that trickles
bytes or sends a gzip bomb is given up on by the call's total deadline or body cap (exit 3).
CLI cases run in-process through ``costeff.cli.main``; servers are local ``http.server`` threads.
"""

from __future__ import annotations

import gzip
import json
import shutil
import threading
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from costeff.cli import main
from costeff.errors import DependencyError

FOCUS_HEADER = "ChargePeriodStart,ChargePeriodEnd,ChargeCategory,BillingCurrency,EffectiveCost"
GOOD_CHARGE = "2025-06-01T00:00:00Z,2025-06-02T00:00:00Z,Usage,USD,12.5"


def _run(argv: list[str], capsys) -> tuple[int, list[str], str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, [line for line in err.splitlines() if line.strip()], out + err


def _files_under(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*") if p.is_file() and not p.name.endswith(".lock")} if root.exists() else set()


def _refused(argv: list[str], capsys, tmp_path: Path, *names: str, code: int = 2) -> str:
    before = _files_under(tmp_path / "artifacts")
    got, lines, text = _run(argv, capsys)
    assert got == code, f"exit {got}, expected {code}; stderr {lines}"
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert all(n in lines[0] for n in names), f"{lines[0]!r} does not name {names}"
    assert "Traceback" not in text
    assert _files_under(tmp_path / "artifacts") == before
    return lines[0]


@pytest.fixture(scope="module")
def sample_ledger(tmp_path_factory) -> Path:
    from costeff.ledger import Ledger, import_sample

    path = tmp_path_factory.mktemp("ledger") / "ledger.sqlite"
    import_sample(Ledger(path))
    return path


@pytest.fixture
def ledger(sample_ledger, tmp_path) -> Path:
    """A copy of a ledger with data in it; each test checks it is byte for byte unchanged."""
    path = tmp_path / "ledger.sqlite"
    shutil.copy(sample_ledger, path)
    return path


# ---------------------------------------------------------------- FOCUS exports

FOCUS_COSTS = ["inf", "-inf", "1e309", "-1e309", "1e300", "-1e300", "nan", "NaN", "Infinity", "2e9"]
FOCUS_PERIODS = {
    "year-1-to-9999": "0001-01-01T00:00:00Z,9999-12-31T00:00:00Z",
    "year-1": "0001-01-01T00:00:00Z,0001-01-02T00:00:00Z",
    "year-2200": "2200-01-01T00:00:00Z,2200-01-02T00:00:00Z",
    "400-days": "2024-01-01T00:00:00Z,2025-02-04T00:00:00Z",
    "before-1970": "1969-12-31T00:00:00Z,1969-12-31T12:00:00Z",
}


@pytest.mark.parametrize("cost", FOCUS_COSTS)
def test_a_focus_cost_that_is_not_finite_or_is_absurd_is_refused(tmp_path, capsys, ledger, cost):
    export = tmp_path / "focus.csv"
    export.write_text(f"{FOCUS_HEADER}\n{GOOD_CHARGE}\n2025-06-02T00:00:00Z,2025-06-03T00:00:00Z,Usage,USD,{cost}\n")
    before = ledger.read_bytes()
    line = _refused(["ledger", "import", "--focus", str(export), "--ledger", str(ledger)], capsys, tmp_path,
                    str(export), "EffectiveCost")
    assert "row 2" in line
    assert ledger.read_bytes() == before


@pytest.mark.parametrize("period", FOCUS_PERIODS.values(), ids=FOCUS_PERIODS.keys())
def test_a_focus_charge_period_beyond_the_bounds_is_refused(tmp_path, capsys, ledger, period):
    export = tmp_path / "focus.csv"
    export.write_text(f"{FOCUS_HEADER}\n{GOOD_CHARGE}\n{period},Usage,USD,3.0\n")
    before = ledger.read_bytes()
    line = _refused(["ledger", "import", "--focus", str(export), "--ledger", str(ledger)], capsys, tmp_path,
                    str(export))
    assert "row 2" in line
    assert ledger.read_bytes() == before


def test_a_focus_export_spanning_more_than_ten_years_is_refused(tmp_path, capsys, ledger):
    export = tmp_path / "focus.csv"
    export.write_text(f"{FOCUS_HEADER}\n2001-01-01T00:00:00Z,2001-01-02T00:00:00Z,Usage,USD,1\n{GOOD_CHARGE}\n")
    line = _refused(["ledger", "import", "--focus", str(export), "--ledger", str(ledger)], capsys, tmp_path,
                    str(export))
    assert "3,660 days" in line


def test_control_a_focus_credit_within_bounds_is_imported(tmp_path, capsys):
    export = tmp_path / "focus.csv"
    export.write_text(f"{FOCUS_HEADER}\n{GOOD_CHARGE}\n2025-06-01T00:00:00Z,2025-06-02T00:00:00Z,Credit,USD,-2.5\n")
    assert main(["ledger", "import", "--focus", str(export), "--ledger", str(tmp_path / "l.sqlite")]) == 0
    from costeff.ledger import Ledger

    assert [c.usd for c in Ledger(tmp_path / "l.sqlite").costs()] == [10.0]


# ---------------------------------------------------------------- OpenCost answers

class _Server:
    """A local HTTP server whose handler is ``self.handle(request_handler)``."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.stop = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                outer.handle(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    made = []

    def make(handle) -> _Server:
        made.append(_Server(handle))
        return made[-1]

    yield make
    for s in made:
        s.close()


def _send(handler, body: bytes, status: int = 200, headers: dict | None = None) -> None:
    handler.send_response(status)
    for key, value in {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}.items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(body)


def _allocation(cost: str, start: str = "2025-06-01T00:00:00Z", end: str = "2025-06-02T00:00:00Z") -> bytes:
    # written by hand: Python's json would not write Infinity or 1e309 the way a broken server does
    return ('{"code": 200, "data": [{"policy": {"name": "policy", "window": {"start": "%s", "end": "%s"}, '
            '"properties": {"labels": {"app": "policy"}}, "totalCost": %s}}]}' % (start, end, cost)).encode()


OPENCOST_COSTS = ["Infinity", "-Infinity", "NaN", "1e309", "-1", "-0.5", "1e300", "true", '"5"', "null"]
OPENCOST_WINDOWS = {
    "year-1-to-9999": ("0001-01-01T00:00:00Z", "9999-12-31T00:00:00Z"),
    "year-1": ("0001-01-01T00:00:00Z", "0001-01-02T00:00:00Z"),
    "year-2200": ("2200-01-01T00:00:00Z", "2200-01-02T00:00:00Z"),
    "400-days": ("2024-01-01T00:00:00Z", "2025-02-04T00:00:00Z"),
    "arabic-digits": ("\u0662\u0660\u0662\u0665-06-01T00:00:00Z", "2025-06-02T00:00:00Z"),
}


def _opencost_import(url: str, ledger: Path) -> list[str]:
    return ["ledger", "import", "--opencost", url, "--match", "app=policy", "--ledger", str(ledger)]


@pytest.mark.parametrize("cost", OPENCOST_COSTS)
def test_an_opencost_cost_that_is_not_finite_or_is_negative_is_refused(tmp_path, capsys, ledger, server, cost):
    srv = server(lambda h: _send(h, _allocation(cost)))
    before = ledger.read_bytes()
    line = _refused(_opencost_import(srv.url, ledger), capsys, tmp_path, "OpenCost", srv.url)
    assert "totalCost" in line or "not valid JSON" in line
    assert ledger.read_bytes() == before


@pytest.mark.parametrize("window", OPENCOST_WINDOWS.values(), ids=OPENCOST_WINDOWS.keys())
def test_an_opencost_window_beyond_the_bounds_is_refused(tmp_path, capsys, ledger, server, window):
    srv = server(lambda h: _send(h, _allocation("4.0", *window)))
    before = ledger.read_bytes()
    _refused(_opencost_import(srv.url, ledger), capsys, tmp_path, "OpenCost", "data[0]['policy']")
    assert ledger.read_bytes() == before


def test_control_a_finite_opencost_cost_is_imported(tmp_path, capsys, server):
    srv = server(lambda h: _send(h, _allocation("4.0")))
    assert main(_opencost_import(srv.url, tmp_path / "l.sqlite")) == 0


# ---------------------------------------------------------------- ledger CSVs

LEDGER_CASES = [
    ("cost", "usd", v) for v in ("0_0", "\u0660", "\uff11", "1e300", "inf", "nan", "-1", "1e309", "1_000.5")
] + [
    ("economics", "gross_pnl_usd", v) for v in ("0_0", "\u0663", "1e300", "-1e300", "1e309", "-inf", "Infinity")
] + [
    ("economics", "signals", v) for v in ("1_000", "\u0663", "\uff15", "1e3")
]


def _ledger_csv(kind: str, column: str, value: str) -> str:
    if kind == "cost":
        return f"date,usd\n2025-06-01,{value}\n"
    row = {"gross_pnl_usd": "10.0", "signals": "10", "trades": "5", "influence_pct": "5", column: value}
    return ("date,gross_pnl_usd,signals,trades,influence_pct\n"
            f"2025-06-01,{row['gross_pnl_usd']},{row['signals']},{row['trades']},{row['influence_pct']}\n")


@pytest.mark.parametrize("kind, column, value", LEDGER_CASES, ids=[f"{k}.{c}={v!r}" for k, c, v in LEDGER_CASES])
def test_a_ledger_number_written_oddly_or_absurdly_is_refused(tmp_path, capsys, ledger, kind, column, value):
    csv_file = tmp_path / f"{kind}.csv"
    csv_file.write_text(_ledger_csv(kind, column, value), encoding="utf-8")
    before = ledger.read_bytes()
    _refused(["ledger", "import", str(csv_file), "--ledger", str(ledger)], capsys, tmp_path, str(csv_file), column)
    assert ledger.read_bytes() == before


def test_the_ledger_itself_refuses_a_non_finite_amount(tmp_path):
    from costeff.errors import InputError
    from costeff.ledger import CostRow, Ledger
    with pytest.raises(InputError, match="usd"):
        Ledger(tmp_path / "l.sqlite").import_rows("cost", [CostRow("2025-06-01", "serving", float("-inf"), "x")])
    assert not (tmp_path / "l.sqlite").exists()


# ---------------------------------------------------------------- trace timestamps

TRACE_STAMPS = ["nan", "inf", "-inf", "1e20", "-1", "1e309", "4102444801", "0_0",
                "\u0662\u0660\u0662\u0665-03-05T00:00:00Z", "9999-12-31T00:00:00Z"]
JSON_STAMPS = [float("nan"), float("inf"), 1e20, -5, True, False, None]


@pytest.mark.parametrize("stamp", TRACE_STAMPS)
def test_a_csv_trace_timestamp_out_of_range_is_refused_at_load(tmp_path, capsys, stamp):
    trace = tmp_path / "trace.csv"
    rows = [f"{1741132800 + 15 * i},policy,1,0,0" for i in range(10)] + [f"{stamp},policy,1,0,0"]
    trace.write_text("timestamp,resource,gpu_util_pct,requests,influence_pct\n" + "\n".join(rows) + "\n",
                     encoding="utf-8")
    _refused(["reap", "--trace", str(trace)], capsys, tmp_path, str(trace), "timestamp")


@pytest.mark.parametrize("stamp", JSON_STAMPS, ids=[repr(s) for s in JSON_STAMPS])
def test_a_json_trace_timestamp_out_of_range_is_refused_at_load(tmp_path, capsys, stamp):
    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps([{"timestamp": stamp, "resource": "policy", "gpu_util_pct": 1, "requests": 0,
                                  "influence_pct": 0}]))
    _refused(["reap", "--trace", str(trace)], capsys, tmp_path, str(trace), "timestamp")


# ---------------------------------------------------------------- batching bounds and profiles

@pytest.fixture(scope="module")
def profile_json(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("profile") / "gpu_profile.json"
    points = [{"batch_size": b, "concurrency": 1, "throughput_per_s": 100.0 * b,
               "latency_ms": {"mean": 1.2 + b / 8, "p50": 1.0 + b / 8, "p99": 2.0 + b / 8}} for b in (1, 8)]
    path.write_text(json.dumps({"points": points, "optimal": points[-1], "hardware": {}}))
    return path


def test_control_batching_simulate_within_the_bound_runs(capsys, profile_json):
    assert main(["batching", "simulate", "--profile", str(profile_json), "--rate", "100", "--max-batch-size", "8",
                 "--requests", "2000"]) == 0


@pytest.mark.parametrize("requests", ["2000000000", "5000001", "0", "-1"])
def test_batching_simulate_requests_beyond_the_bound_are_refused(tmp_path, capsys, profile_json, requests):
    _refused(["batching", "simulate", "--profile", str(profile_json), "--rate", "100", "--max-batch-size", "8",
              "--requests", requests], capsys, tmp_path, "--requests")


def test_batching_optimize_requests_beyond_the_bound_are_refused(tmp_path, capsys, profile_json):
    _refused(["batching", "optimize", "--profile", str(profile_json), "--rate", "100", "--p99-ms", "10",
              "--requests", "2000000000"], capsys, tmp_path, "--requests")


NON_FINITE_JSON = ["NaN", "Infinity", "-Infinity", "1e309", "-1e400"]


@pytest.mark.parametrize("token", NON_FINITE_JSON)
def test_a_batching_profile_with_a_non_finite_number_is_refused(tmp_path, capsys, token):
    profile = tmp_path / "gpu_profile.json"
    profile.write_text('{"points": [{"batch_size": 1, "concurrency": 1, "throughput_per_s": %s, '
                       '"latency_ms": {"mean": 1, "p50": 1, "p99": 2}}], "hardware": {}}' % token)
    _refused(["batching", "simulate", "--profile", str(profile), "--rate", "100", "--max-batch-size", "1"],
             capsys, tmp_path, str(profile), "finite")


@pytest.mark.parametrize("throughput", NON_FINITE_JSON + ['"fast"', "-1", "true"])
def test_a_compare_profile_with_a_non_finite_throughput_is_refused(tmp_path, capsys, tiny_policy, throughput):
    other = tmp_path / "other.json"
    other.write_text('{"model_sha256": "%s", "optimal": {"throughput_per_s": %s}, "hardware": {"gpus": []}}'
                     % (tiny_policy.sha256, throughput))
    line = _refused(["profile", str(tiny_policy.onnx_path), "--compare", str(other), "--window-ms", "5"], capsys,
                    tmp_path, str(other))
    assert "finite" in line


# ---------------------------------------------------------------- hostile servers: deadline and body cap

def _trickle(handler, stop: threading.Event, headers_first: bool) -> None:
    """One byte every 0.3 s, for up to 30 s: each read is quick, the whole answer never comes."""
    try:
        if headers_first:
            handler.send_response(200)
            handler.send_header("Content-Length", "1000")
            handler.end_headers()
        for byte in (b" " if headers_first else b"HTTP/1.1 200 OK\r\n") * 100:
            if stop.wait(0.3):
                return
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
    except OSError:
        pass


@pytest.mark.parametrize("headers_first", [True, False], ids=["slow-body", "slow-headers"])
def test_a_trickling_prometheus_is_given_up_on_by_the_deadline(server, headers_first):
    from costeff.reaper.config import PrometheusConfig, Target
    from costeff.reaper.prometheus import PrometheusSource

    srv = server(lambda h: _trickle(h, srv.stop, headers_first))
    source = PrometheusSource(PrometheusConfig(url=srv.url, step_s=15.0, timeout_s=1.0))
    started = time.monotonic()
    with pytest.raises(DependencyError, match="deadline"):
        source.samples(Target(resource="policy"), 60.0, time.time())
    assert time.monotonic() - started < 10  # 1 s deadline; generous slack for a busy machine


@pytest.mark.parametrize("headers_first", [True, False], ids=["slow-body", "slow-headers"])
def test_a_trickling_opencost_is_given_up_on_by_the_deadline(server, headers_first):
    from costeff.ledger.opencost import OpencostConfig, fetch

    srv = server(lambda h: _trickle(h, srv.stop, headers_first))
    started = time.monotonic()
    with pytest.raises(DependencyError, match="deadline"):
        fetch(OpencostConfig(url=srv.url, match=(("app", "policy"),), timeout_s=1.0))
    assert time.monotonic() - started < 10


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip.compress(b"[" + b"0," * (100 * 2**20) + b"0]", 9)  # ~200 MB decoded from ~200 KB


def test_a_gzip_bomb_from_prometheus_is_refused_without_decoding_it_all(server, bomb):
    from costeff.reaper.config import PrometheusConfig, Target
    from costeff.reaper.prometheus import PrometheusSource

    srv = server(lambda h: _send(h, bomb, headers={"Content-Encoding": "gzip"}))
    source = PrometheusSource(PrometheusConfig(url=srv.url, step_s=15.0, timeout_s=30.0))
    tracemalloc.start()
    try:
        with pytest.raises(DependencyError, match="bytes"):
            source.samples(Target(resource="policy"), 60.0, time.time())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 128 * 2**20, f"peak {peak / 2**20:.0f} MiB: the body was decoded past the cap"


def test_a_gzip_bomb_from_opencost_is_a_dependency_failure(tmp_path, capsys, server, bomb, ledger):
    srv = server(lambda h: _send(h, bomb, headers={"Content-Encoding": "gzip"}))
    before = ledger.read_bytes()
    _refused(_opencost_import(srv.url, ledger), capsys, tmp_path, srv.url, "bytes", code=3)
    assert ledger.read_bytes() == before


def test_an_answer_over_the_cap_without_compression_is_refused(server):
    from costeff import httpget

    srv = server(lambda h: _send(h, b"0" * 4096))
    with pytest.raises(DependencyError, match="more than 1,000 bytes"):
        httpget.get(srv.url, None, 5.0, "test", max_bytes=1000)
    assert httpget.get(srv.url, None, 5.0, "test", max_bytes=5000).content == b"0" * 4096

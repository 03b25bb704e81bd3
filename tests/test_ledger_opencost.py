"""OpenCost's allocation API into the cost ledger, at the request level.

OpenCost needs a Kubernetes cluster and Prometheus, so it cannot run here. A real
HTTP server on 127.0.0.1 answers with response bodies written to the shape
OpenCost documents for ``/allocation/compute`` (``{"code", "data": [set, ...]}``,
each set a map of allocation name to allocation with ``window`` and
``totalCost``); the tests check what costeff asks for and what it makes of it.
"""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from costeff.cli import main

DATA = Path(__file__).parent / "data" / "opencost"


class _OpenCost:
    def __init__(self):
        self.status, self.body, self.content_type, self.requests = 200, b"", "application/json", []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                url = urlparse(self.path)
                outer.requests.append((url.path, {k: v[0] for k, v in parse_qs(url.query).items()}))
                self.send_response(outer.status)
                self.send_header("Content-Type", outer.content_type)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def answer(self, name=None, status=200, text=None, content_type="application/json"):
        self.status, self.content_type = status, content_type
        self.body = (text if text is not None else (DATA / name).read_text()).encode()


@pytest.fixture
def opencost():
    server = _OpenCost()
    yield server
    server.server.shutdown()
    server.server.server_close()


def _import(opencost, ledger, *extra):
    return main(["ledger", "import", "--opencost", opencost.url, "--window", "7d", "--aggregate", "label:app",
                 "--match", "app=policy-serving", "--ledger", str(ledger), *extra])


def test_daily_allocations_become_daily_cost(tmp_path, opencost, capsys):
    opencost.answer("allocation_compute_7d_label_app.json")
    ledger = tmp_path / "l.sqlite"
    assert _import(opencost, ledger) == 0
    # what was asked: the compute endpoint, daily sets, not accumulated, aggregated by the app label
    assert opencost.requests == [("/allocation/compute", {"window": "7d", "aggregate": "label:app", "step": "1d",
                                                          "accumulate": "false"})]
    capsys.readouterr()
    assert main(["ledger", "show", "--ledger", str(ledger), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    days = {d["date"]: round(d["infra_cost_usd"], 5) for d in record["days"]}
    assert days == {f"2026-03-0{i + 1}": round(71.45 + 0.01 * i, 5) for i in range(7)}
    imp = record["imports"][-1]
    assert (imp["source"], imp["sets"], imp["allocations_read"], imp["allocations_matched"]) == ("opencost", 7, 21, 7)
    assert imp["other_usd"] == pytest.approx(7 * (143.86 + 1.33))  # research and __unallocated__ left out


def test_a_label_match_works_without_label_aggregation(tmp_path, opencost, capsys):
    opencost.answer("allocation_compute_7d_label_app.json")
    assert main(["ledger", "import", "--opencost", opencost.url, "--aggregate", "namespace", "--match",
                 "app=research", "--ledger", str(tmp_path / "l.sqlite"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["opencost"]["allocations_matched"] == 7 and out["import"]["rows"] == 7
    assert opencost.requests[0][1]["aggregate"] == "namespace"


def _refused(capsys, code, ledger, match):
    err = capsys.readouterr().err
    assert code in (2, 3)
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert match in err, err
    assert not ledger.exists() or _costs(ledger) == [], "a refused import wrote cost days"


def _costs(ledger):
    from costeff.ledger import Ledger

    return [r.date for r in Ledger(ledger).costs()]


def test_error_bodies_are_bad_input_and_leave_the_ledger_unchanged(tmp_path, opencost, capsys):
    ledger = tmp_path / "l.sqlite"
    opencost.answer(status=400, text="Invalid 'window' parameter: illegal window: 7x\n", content_type="text/plain")
    code = _import(opencost, ledger)
    assert code == 2
    _refused(capsys, code, ledger, "HTTP 400: Invalid 'window' parameter")
    opencost.answer("allocation_compute_error_500.json", status=500)
    code = _import(opencost, ledger)
    assert code == 2
    _refused(capsys, code, ledger, "HTTP 500: error computing allocation")
    assert _costs(ledger) == []


def test_a_window_without_data_or_without_a_match_is_refused(tmp_path, opencost, capsys):
    ledger = tmp_path / "l.sqlite"
    opencost.answer("allocation_compute_empty.json")
    assert _import(opencost, ledger) == 2
    _refused(capsys, 2, ledger, "no allocation data in window 7d")
    opencost.answer("allocation_compute_7d_label_app.json")
    assert main(["ledger", "import", "--opencost", opencost.url, "--match", "app=nothing",
                 "--ledger", str(ledger)]) == 2
    _refused(capsys, 2, ledger, "no allocation matches app=nothing")


def test_overlapping_import_is_refused(tmp_path, opencost, capsys):
    ledger = tmp_path / "l.sqlite"
    opencost.answer("allocation_compute_7d_label_app.json")
    assert _import(opencost, ledger) == 0
    before = ledger.read_bytes()
    capsys.readouterr()
    assert _import(opencost, ledger) == 2
    assert "already in" in capsys.readouterr().err
    assert ledger.read_bytes() == before


def test_malformed_answer_names_the_field(tmp_path, opencost, capsys):
    body = json.loads((DATA / "allocation_compute_7d_label_app.json").read_text())
    body["data"][2]["policy-serving"]["totalCost"] = None
    opencost.answer(text=json.dumps(body))
    ledger = tmp_path / "l.sqlite"
    assert _import(opencost, ledger) == 2
    _refused(capsys, 2, ledger, "data[2]['policy-serving'].totalCost is None")


def test_unreachable_server_is_a_dependency_failure(tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ledger = tmp_path / "l.sqlite"
    code = main(["ledger", "import", "--opencost", f"http://127.0.0.1:{port}", "--match", "app=policy-serving",
                 "--ledger", str(ledger)])
    assert code == 3
    _refused(capsys, code, ledger, "is unreachable")


@pytest.mark.parametrize("args, match", [
    (["--opencost", "opencost:9003", "--match", "app=x"], "is not an http(s) URL"),
    (["--opencost", "http://h:9003", "--window", "seven days", "--match", "app=x"], "is not an OpenCost window"),
    (["--opencost", "http://h:9003"], "--match: give at least one"),
    (["--opencost", "http://h:9003", "--match", "app"], "--match: 'app' is not KEY=VALUE"),
])
def test_bad_options_are_refused_before_any_request(tmp_path, capsys, args, match):
    assert main(["ledger", "import", *args, "--ledger", str(tmp_path / "l.sqlite")]) == 2
    _refused(capsys, 2, tmp_path / "l.sqlite", match)

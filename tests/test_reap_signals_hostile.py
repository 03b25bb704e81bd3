"""Prometheus answers that cannot be readings are unknown, never idle, and never stop the watcher.

A small HTTP server on 127.0.0.1 plays a Prometheus that answers 200 with bodies of
the wrong shape or with impossible values.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from costeff.errors import DependencyError
from costeff.reaper.config import DecisionConfig, PrometheusConfig, ReaperConfig, ScheduleConfig, Target
from costeff.reaper.live import Actuators, ReaperMetrics, _watch_tick
from costeff.reaper.prometheus import PrometheusSource
from workspace_support import audit_log, flag_store


@pytest.fixture
def prometheus():
    state = {"body": None}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            data = json.dumps(state["body"]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()
    server.server_close()


def _source(url):
    return PrometheusSource(PrometheusConfig(url=url, step_s=15.0, timeout_s=2.0))


def _matrix(values):
    return {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}, "values": values}]}}


@pytest.mark.parametrize("body", [[1, 2], "text", 3, None, {"status": "success"},
                                  {"status": "success", "data": {"result": "x"}},
                                  {"status": "success", "data": {"result": [1]}},
                                  {"status": "success", "data": {"result": [{"values": "x"}]}},
                                  {"status": "success", "data": {"result": [{"values": [[1]]}]}}])
def test_wrong_shapes_are_dependency_errors(prometheus, body):
    url, state = prometheus
    state["body"] = body
    with pytest.raises(DependencyError):
        _source(url).samples(Target(resource="policy"), 60.0, time.time())


@pytest.mark.parametrize("value", ["-5", "-0.1", "NaN", "+Inf", "101", "abc"])
def test_impossible_values_are_unknown_not_idle(prometheus, value):
    url, state = prometheus
    now = 1_700_000_000.0
    start = now - 60.0
    state["body"] = _matrix([[start + i * 15.0, value] for i in range(5)])
    samples = _source(url).samples(Target(resource="policy"), 60.0, now)
    assert samples and all(s.influence_pct is None and s.gpu_util_pct is None for s in samples)


def test_the_watcher_survives_a_json_list_answer(prometheus):
    url, state = prometheus
    state["body"] = [1, 2, 3]
    config = ReaperConfig(decision=DecisionConfig(window_s=60.0), schedule=ScheduleConfig(enabled=False),
                          prometheus=PrometheusConfig(url=url, timeout_s=2.0), targets=(Target(resource="policy"),))
    metrics = ReaperMetrics(None)
    for _ in range(2):  # a round without data is skipped and recorded; the next one runs
        _watch_tick(config, PrometheusSource(config.prometheus), True, Actuators(flags=flag_store()), audit_log(), 2.0,
                    metrics, set())
    events = [r["event"] for r in audit_log().records()]
    assert events == ["reaper.signals_unavailable"] * 2

"""Idle decisions read through real PromQL: Debian's prometheus scrapes an exporter this test controls."""

import socket
import time

import pytest
from prometheus_support import prometheus as prometheus_at
from prometheus_support import wait_until as _wait

from costeff.errors import DependencyError
from costeff.reaper.config import DecisionConfig, PrometheusConfig, Target
from costeff.reaper.decision import decide
from costeff.reaper.prometheus import PrometheusSource

pytestmark = [pytest.mark.server, pytest.mark.slow]

QUERIES = (
    ("gpu_util_pct", 'avg(DCGM_FI_DEV_GPU_UTIL{namespace="{namespace}", pod=~"{name}-.*"})'),
    ("requests_per_s", 'sum(rate(nv_inference_request_success{namespace="{namespace}", pod=~"{name}-.*"}[5s]))'),
    ("influence_pct", 'max(costeff_policy_influence_pct{deployment="{name}"})'),
)
WINDOW = DecisionConfig(window_s=4, stale_after_s=3)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def exporter():
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    registry = CollectorRegistry()
    labels = {"namespace": "trading", "pod": "policy-7d9f"}
    util = Gauge("DCGM_FI_DEV_GPU_UTIL", "GPU utilisation", list(labels), registry=registry)
    # Triton exposes nv_inference_request_success without a _total suffix; a prometheus-client Counter
    # would add one, so a monotonically increased Gauge stands in for the counter's exposition.
    served = Gauge("nv_inference_request_success", "successful requests", list(labels), registry=registry)
    influence = Gauge("costeff_policy_influence_pct", "policy influence", ["deployment"], registry=registry)
    util.labels(**labels).set(3)
    served.labels(**labels).set(100)
    influence.labels("policy").set(0)
    port = _free_port()
    server, _ = start_http_server(port, "127.0.0.1", registry=registry)
    yield {"port": port, "util": util.labels(**labels), "served": served.labels(**labels)}
    server.shutdown()


@pytest.fixture(scope="module")
def prometheus(exporter, tmp_path_factory):
    with prometheus_at(tmp_path_factory.mktemp("prometheus"), {"dcgm": exporter["port"]}) as url:
        yield url


def _verdict(url, target):
    source = PrometheusSource(PrometheusConfig(url=url, step_s=1, timeout_s=5, queries=QUERIES))
    now = float(int(time.time()))
    return decide(source.samples(target, WINDOW.window_s, now), now, WINDOW, target)


def test_idle_then_busy_through_real_promql(prometheus, exporter):
    target = Target("policy", namespace="trading")
    verdict = _wait(lambda: (v := _verdict(prometheus, target)).idle and v, 120,
                    "never idle although util 3 %, no requests, influence 0")
    assert verdict.idle_for_s >= WINDOW.window_s
    exporter["util"].set(55)  # one busy scrape resets the window
    busy = _wait(lambda: (v := _verdict(prometheus, target)) and not v.idle and v, 60, "busy GPU still idle")
    assert any("GPU util" in r for r in busy.reasons)
    exporter["util"].set(3)
    exporter["served"].inc(40)  # requests served: rate > 0
    busy = _wait(lambda: (v := _verdict(prometheus, target)) and any("requests" in r for r in v.reasons) and v, 60,
                 "requests not seen")
    assert not busy.idle


def test_empty_result_is_not_idle(prometheus):
    verdict = _verdict(prometheus, Target("ghost", namespace="trading"))  # no such pods: empty result
    assert not verdict.idle and any("missing" in r for r in verdict.reasons)


def test_prometheus_errors_are_dependency_errors(prometheus):
    bad = PrometheusSource(PrometheusConfig(url=prometheus, step_s=1, queries=(("gpu_util_pct", "avg(("),)))
    with pytest.raises(DependencyError, match="HTTP 400"):
        bad.samples(Target("policy"), 4)
    down = PrometheusSource(PrometheusConfig(url=f"http://127.0.0.1:{_free_port()}", step_s=1, timeout_s=1))
    with pytest.raises(DependencyError, match="unreachable"):
        down.samples(Target("policy"), 4)

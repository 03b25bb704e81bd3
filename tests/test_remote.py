"""Remote profiling input checks that need no server."""

from __future__ import annotations

import pytest

from costeff.errors import InputError
from costeff.remote import Endpoint, run_open_loop
from costeff.remote.client import normalise_url


@pytest.mark.parametrize("rate", [0, -5, float("inf")])
def test_open_loop_rejects_non_positive_rates(rate):
    with pytest.raises(InputError, match="request-rate"):
        run_open_loop(lambda: (lambda: None), rate)


def test_endpoint_validates_protocol_and_address():
    assert normalise_url("http://127.0.0.1:8000/") == "127.0.0.1:8000"
    assert Endpoint("grpc://localhost:8001", "grpc", "m").address == "grpc://localhost:8001"
    with pytest.raises(InputError, match="--protocol"):
        Endpoint("127.0.0.1:8000", "rest", "m")
    with pytest.raises(InputError, match="HOST:PORT"):
        Endpoint("127.0.0.1", "http", "m")


@pytest.mark.slow
def test_open_loop_latency_counts_from_the_scheduled_time():
    import time

    # a call slower than the arrival gap: later requests queue behind it, and their
    # waiting shows in the latency instead of slowing the arrivals down
    result = run_open_loop(lambda: (lambda: time.sleep(0.02)), 100.0, warmup_s=0.1, window_s=0.3,
                           max_trials=3, stable_windows=2, max_in_flight=1)
    assert result.latencies_ms.size > 40
    assert float(result.latencies_ms.max()) > 100  # 2x overload for ~1 s: the queue grows to hundreds of ms
    assert float(result.start_delay_ms.max()) > 50

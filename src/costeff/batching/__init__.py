"""Choose dynamic-batching settings by simulating the batcher on measured service times.

Public API::

    from costeff.batching import (BatcherConfig, ServiceTimes, poisson_arrivals, load_trace,
                                  simulate, SimResult, OptimizeConfig, optimize, BatchingReport)

    service = ServiceTimes.from_profile("gpu_profile.json")      # or a ProfileRecord (PROFILE.read)
    arrivals = poisson_arrivals(rate_per_s=2000, n=100_000, seed=0)  # or load_trace("trace.csv")
    cfg = BatcherConfig(max_batch_size=64, preferred_batch_sizes=(8, 16, 32),
                        max_queue_delay_us=5000, instances=1, policy="triton")
    result = simulate(arrivals, service, cfg, rows=1, seed=0, jitter=True)
    result.latency_p99_ms, result.mean_batch_size, result.utilisation

    report = optimize("gpu_profile.json", OptimizeConfig(rate_per_s=2000, p99_ms=20))
    report.chosen  # the cheapest configuration meeting p99 <= SLO, or None
    write_report(report, out_dir)  # batching_report.json / .md / .png

A server's own costs (``costeff batching calibrate`` -> ``server_costs.json``, fitted from
Triton's statistics) replace the profile's, with a per-request cost per batch::

    from costeff.batching.server_stats import load_server_costs
    service = ServiceTimes.from_server_costs(load_server_costs("server_costs.json"))

``policy="mlserver"`` simulates MLServer's adaptive batching (``max_batch_size``
requests or ``max_batch_time`` = ``max_queue_delay_us`` since the batch opened),
so a measured MLServer can be compared with a prediction for the same settings.
Units: times in seconds for arrivals, milliseconds in results, microseconds for the
queue delay (as in ``config.pbtxt``).
"""

from costeff.batching.arrivals import load_trace, poisson_arrivals
from costeff.batching.config import BatcherConfig, OptimizeConfig
from costeff.batching.optimizer import BatchingReport, optimize
from costeff.batching.report import write_report
from costeff.batching.service import ServiceTimes
from costeff.batching.simulator import SimResult, simulate

__all__ = ["BatcherConfig", "BatchingReport", "OptimizeConfig", "ServiceTimes", "SimResult", "load_trace",
           "optimize", "poisson_arrivals", "simulate", "write_report"]

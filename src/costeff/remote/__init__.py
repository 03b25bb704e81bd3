"""Remote profiling over the Open Inference Protocol (KServe v2) with ``tritonclient``.

Public API::

    from costeff.remote import profile_remote
    report = profile_remote("127.0.0.1:8000", "policy", "http", ProfileConfig(batch_sizes=(1, 8)),
                            request_rates=[200.0])
    report.write(out_dir)

``compare_with_simulator`` drives a server with adaptive batching at a Poisson rate and
sets ``report.simulator_comparison``: measured p50/p99 and mean batch size next to
what ``costeff.batching.simulate`` predicts for the same settings.
"""

from costeff.remote.client import Endpoint
from costeff.remote.openloop import OpenLoopResult, run_open_loop
from costeff.remote.profile import open_loop, profile_remote

__all__ = ["Endpoint", "OpenLoopResult", "open_loop", "profile_remote", "run_open_loop"]

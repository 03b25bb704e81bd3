"""`make bench`: speed and fidelity goals measured side by side in one run.

Each ``bench_<area>.py`` module has ``main() -> dict`` that prints its own lines and
returns ``{"goals": [{"name", "observed", "threshold", "comparator", "passed"}...]}``.
"""

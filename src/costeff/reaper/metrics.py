"""The reaper daemon's own metrics and probes (prometheus-client), served by ``costeff.health``."""

from __future__ import annotations

from typing import Any


class ReaperMetrics:
    """The reaper's own metrics, on ``port`` when given (prometheus-client)."""

    def __init__(self, port: int | None = None, addr: str = "127.0.0.1", heartbeat: Any = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        from costeff import health

        self.registry = CollectorRegistry()
        self.actions = Counter("costeff_reaper_actions_total", "Reaper actions taken or proposed",
                               ["action", "mode"], registry=self.registry)
        self.idle = Gauge("costeff_reaper_idle_seconds", "Seconds each resource has been idle without a break",
                          ["resource"], registry=self.registry)
        self.savings = Gauge("costeff_reaper_savings_usd_per_hour", "Spend avoided per hour by reaped capacity",
                             registry=self.registry)
        self.rounds_failed = Counter("costeff_reaper_rounds_failed_total",
                                     "Rounds that took no action because signals or an action failed",
                                     registry=self.registry)
        self.last_success = Gauge("costeff_reaper_last_success_timestamp_seconds",
                                  "Unix time of the last round that completed", registry=self.registry)
        self.heartbeat = heartbeat
        self.server = health.serve(self.registry, port, addr, heartbeat)

    def observe(self, result: Any) -> None:  # a live.TickResult
        for verdict in result.verdicts:
            self.idle.labels(verdict["resource"]).set(verdict["idle_for_s"])
        for action in result.actions:
            self.actions.labels(action["action"], action["mode"]).inc()
        self.savings.set(result.savings_usd_per_hour)

    def failed(self) -> None:
        self.rounds_failed.inc()

    def succeeded(self, now: float) -> None:
        self.last_success.set(now)

    def close(self) -> None:
        from costeff import health

        health.close(self.server)

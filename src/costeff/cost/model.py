"""Throughput to money: $ per million inferences, instances needed, cost per day."""

from __future__ import annotations

import math
from dataclasses import dataclass

from costeff.cost.catalog import Instance


@dataclass(frozen=True)
class CostEstimate:
    instance: str
    usd_per_hour: float
    throughput_per_s: float
    usd_per_million: float
    target_rate_per_s: float | None
    max_utilisation: float
    instances_needed: int | None
    usd_per_day: float | None
    usd_per_month: float | None
    price_source: str


def estimate(instance: Instance, throughput_per_s: float, target_rate_per_s: float | None = None,
             max_utilisation: float = 0.8, per_gpu: bool = True) -> CostEstimate:
    """Cost of serving at ``throughput_per_s`` per replica on ``instance``.

    Replicas run at most at ``max_utilisation`` of measured throughput: queues
    grow without bound as utilisation nears 1, so capacity is planned with headroom.
    """
    price = instance.usd_per_gpu_hour if per_gpu else instance.usd_per_hour
    per_million = price / (throughput_per_s * 3600.0) * 1e6 if throughput_per_s > 0 else math.inf
    needed = day = month = None
    if target_rate_per_s is not None:
        needed = max(1, math.ceil(target_rate_per_s / (throughput_per_s * max_utilisation))) \
            if throughput_per_s > 0 else None
        if needed is not None:
            day = needed * price * 24.0
            month = day * 30.0
    return CostEstimate(instance.name, price, throughput_per_s, per_million, target_rate_per_s,
                        max_utilisation, needed, day, month, f"{instance.source}, {instance.as_of}")

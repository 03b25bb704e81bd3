"""Write FOCUS 1.0 billing exports: explicit charges (tests) or a SYNTHETIC bulk export (benchmark, samples).

Every FOCUS 1.0 column is written, so the files pass the FinOps Foundation's
validator; the values outside the few costeff reads are plausible constants.
Nothing here is a real bill.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

# FOCUS 1.0 columns, in the specification's order of dimensions then metrics.
COLUMNS = (
    "AvailabilityZone", "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency",
    "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription",
    "ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart", "CommitmentDiscountCategory",
    "CommitmentDiscountId", "CommitmentDiscountName", "CommitmentDiscountStatus", "CommitmentDiscountType",
    "ConsumedQuantity", "ConsumedUnit", "ContractedCost", "ContractedUnitPrice", "EffectiveCost",
    "InvoiceIssuerName", "ListCost", "ListUnitPrice", "PricingCategory", "PricingQuantity", "PricingUnit",
    "ProviderName", "PublisherName", "RegionId", "RegionName", "ResourceId", "ResourceName", "ResourceType",
    "ServiceCategory", "ServiceName", "SkuId", "SkuPriceId", "SubAccountId", "SubAccountName", "Tags",
)
SYNTHETIC = "SYNTHETIC FOCUS export (costeff.ledger.focus_sample)"


@dataclass(frozen=True)
class Charge:
    """One FOCUS row; ``billed_cost`` defaults to ``effective_cost``."""

    start: datetime
    end: datetime
    effective_cost: float
    resource_id: str
    tags: dict[str, str] = field(default_factory=dict)
    category: str = "Usage"
    currency: str = "USD"
    billed_cost: float | None = None


def fmt_time(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _constants() -> dict[str, Any]:
    return {"AvailabilityZone": "us-east-1a", "BillingAccountId": "acct-synthetic",
            "BillingAccountName": "synthetic", "ChargeClass": None, "CommitmentDiscountCategory": None,
            "CommitmentDiscountId": None, "CommitmentDiscountName": None, "CommitmentDiscountStatus": None,
            "CommitmentDiscountType": None, "ConsumedUnit": "Hours", "InvoiceIssuerName": "Synthetic Cloud",
            "PricingCategory": "Standard", "PricingUnit": "Hours", "ProviderName": "Synthetic Cloud",
            "PublisherName": "Synthetic Cloud", "RegionId": "us-east-1", "RegionName": "US East (N. Virginia)",
            "ResourceType": "Virtual Machine", "ServiceCategory": "Compute", "ServiceName": "Compute",
            "SkuId": "SKU-1", "SkuPriceId": "SKU-1-PRICE", "SubAccountId": "sub-trading",
            "SubAccountName": "trading"}


def _row(c: Charge) -> dict[str, Any]:
    hours = max((c.end - c.start).total_seconds() / 3600.0, 0.0)
    usage = c.category == "Usage"
    billed = c.effective_cost if c.billed_cost is None else c.billed_cost
    month_start = c.start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    month_end = (month_start.replace(month=month_start.month % 12 + 1,
                                     year=month_start.year + (month_start.month == 12)))
    return {**_constants(), "BilledCost": billed, "BillingCurrency": c.currency,
            "BillingPeriodStart": fmt_time(month_start), "BillingPeriodEnd": fmt_time(month_end),
            "ChargeCategory": c.category, "ChargeDescription": f"{c.category} {c.resource_id}",
            "ChargeFrequency": "Usage-Based" if usage else "One-Time",
            "ChargePeriodStart": fmt_time(c.start), "ChargePeriodEnd": fmt_time(c.end),
            "ConsumedQuantity": hours if usage else None, "ContractedCost": billed,
            "ContractedUnitPrice": billed / hours if usage and hours else None, "EffectiveCost": c.effective_cost,
            "ListCost": billed, "ListUnitPrice": billed / hours if usage and hours else None,
            "PricingQuantity": hours if usage else None, "ResourceId": c.resource_id,
            "ResourceName": c.resource_id.rsplit("/", 1)[-1], "Tags": json.dumps(c.tags, sort_keys=True),
            "ConsumedUnit": "Hours" if usage else None, "PricingUnit": "Hours" if usage else None}


def charges_table(charges: Sequence[Charge]):
    """A pyarrow table with every FOCUS 1.0 column, one row per charge."""
    import pyarrow as pa

    rows = [_row(c) for c in charges]
    return pa.table({name: [r[name] for r in rows] for name in COLUMNS})


def write_table(table, path: Path | str) -> Path:
    """CSV or parquet by the file's suffix (``.parquet``); the tests' and the benchmark's writer."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    path = Path(path)
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        pa_csv.write_csv(table, path, pa_csv.WriteOptions(quoting_style="needed"))
    return path


def write_charges(charges: Sequence[Charge], path: Path | str) -> Path:
    return write_table(charges_table(charges), path)


def synthetic_table(rows: int, start: datetime, resources: int = 40, serving: int = 4, seed: int = 7):
    """A SYNTHETIC hourly export: ``resources`` machines, the first ``serving`` tagged app=policy-serving.

    Each row is one machine-hour; the first hour of every day of each serving
    machine is a credit (negative) instead, so credits are exercised at scale.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    idx = np.arange(rows)
    res, hour = idx % resources, idx // resources
    t0 = int(start.timestamp())
    starts = t0 + hour * 3600
    price = np.where(res < serving, 2.745, 0.34)  # per machine-hour: a GPU share vs a CPU node
    cost = np.round(price * rng.uniform(0.95, 1.05, rows), 6)
    credit = (res < serving) & (hour % 24 == 0)
    cost = np.where(credit, -np.round(price * 0.1, 6), cost)
    names = np.array([f"arn:synthetic:ec2:us-east-1:000000000001:instance/i-{r:05d}" for r in range(resources)])
    tags = np.array([json.dumps({"app": "policy-serving" if r < serving else f"batch-{r % 7}", "team": "quant"},
                                sort_keys=True) for r in range(resources)])
    return _bulk_table(rows, starts, cost, credit, names[res], tags[res])


def _bulk_table(rows: int, starts, cost, credit, resource_ids, tags):
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    const = _constants()
    stamp = pa.array(starts.astype("datetime64[s]"), pa.timestamp("s", tz="UTC"))
    end = pa.array((starts + 3600).astype("datetime64[s]"), pa.timestamp("s", tz="UTC"))
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    month = starts.astype("datetime64[s]").astype("datetime64[M]")
    period = [pc.strftime(pa.array(m.astype("datetime64[s]"), pa.timestamp("s", tz="UTC")), format=fmt)
              for m in (month, month + 1)]
    cols = {name: pa.array(np.full(rows, const[name], dtype=object), pa.string())
            if const.get(name) is not None else None for name in COLUMNS}
    cols.update({
        "BilledCost": pa.array(cost), "EffectiveCost": pa.array(cost), "ListCost": pa.array(cost),
        "ContractedCost": pa.array(cost), "BillingCurrency": pa.array(np.full(rows, "USD", dtype=object)),
        "BillingPeriodStart": period[0], "BillingPeriodEnd": period[1],
        "ChargeCategory": pa.array(np.where(credit, "Credit", "Usage").astype(object)),
        "ChargeDescription": pa.array(np.where(credit, "Credit", "Usage").astype(object)),
        "ChargeFrequency": pa.array(np.where(credit, "One-Time", "Usage-Based").astype(object)),
        "ChargePeriodStart": pc.strftime(stamp, format=fmt), "ChargePeriodEnd": pc.strftime(end, format=fmt),
        "ConsumedQuantity": pa.array(np.where(credit, np.nan, 1.0), from_pandas=True),
        "PricingQuantity": pa.array(np.where(credit, np.nan, 1.0), from_pandas=True),
        "ContractedUnitPrice": pa.array(np.where(credit, np.nan, cost), from_pandas=True),
        "ListUnitPrice": pa.array(np.where(credit, np.nan, cost), from_pandas=True),
        "ResourceId": pa.array(resource_ids.astype(object)),
        "ResourceName": pa.array(np.char.rpartition(resource_ids.astype(str), "/")[:, 2].astype(object)),
        "Tags": pa.array(tags.astype(object)),
    })
    cols = {k: (v if v is not None else pa.nulls(rows, pa.string())) for k, v in cols.items()}
    return pa.table(cols)

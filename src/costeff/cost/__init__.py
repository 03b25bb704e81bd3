"""Prices and the cost model shared by every capability."""

from costeff.cost.catalog import Catalog, Instance, load_catalog
from costeff.cost.model import CostEstimate, estimate

__all__ = ["Catalog", "Instance", "load_catalog", "CostEstimate", "estimate"]

"""Daily economics and infrastructure-cost ledgers (SQLite), CSV import, the synthetic sample."""

from costeff.ledger.csvio import COST, ECONOMICS, KINDS, CostRow, EconomicsRow, read_csv
from costeff.ledger.store import Coverage, ImportResult, Ledger


def import_csv(ledger: Ledger, path, kind: str | None = None, *, replace: bool = False,
               catalog_path=None) -> ImportResult:
    """Validate the whole CSV, then load it in one transaction (all rows or none)."""
    kind, rows = read_csv(path, kind, catalog_path=catalog_path)
    return ledger.import_rows(kind, rows, replace=replace, file=str(path))


def import_focus(ledger: Ledger, config, *, replace: bool = False):
    """Read a FOCUS export (``FocusConfig``), then load its per-day cost in one transaction with its counts."""
    from dataclasses import asdict

    from costeff.artifacts import sha256_file
    from costeff.ledger.focus import as_rows, read_focus

    days = read_focus(config)
    details = {"source": "focus", "sha256": sha256_file(config.path), "component": config.component,
               **{k: v for k, v in asdict(days).items() if k != "days"}}
    result = ledger.import_batches([(COST, as_rows(days, config.component), str(config.path))], replace=replace,
                                   details=details)[0]
    return days, result


def import_opencost(ledger: Ledger, config, *, replace: bool = False):
    """Ask OpenCost for daily allocations (``OpencostConfig``), then load the matching cost in one transaction."""
    from dataclasses import asdict

    from costeff.ledger.opencost import as_rows, read_opencost

    days = read_opencost(config)
    details = {"source": "opencost", "component": config.component,
               **{k: v for k, v in asdict(days).items() if k != "days"}}
    result = ledger.import_batches([(COST, as_rows(days, config.component), config.url)], replace=replace,
                                   details=details)[0]
    return days, result


def import_sample(ledger: Ledger, end=None, replace: bool = False) -> list[ImportResult]:
    """Load the SYNTHETIC sample, re-dated so its last day is ``end`` (default: yesterday UTC)."""
    from costeff.ledger.sample import import_sample as _import  # keeps `python -m costeff.ledger.sample` clean

    return _import(ledger, end, replace)


__all__ = ["Ledger", "ImportResult", "Coverage", "EconomicsRow", "CostRow", "read_csv", "import_csv",
           "import_sample", "import_focus", "import_opencost", "ECONOMICS", "COST", "KINDS"]

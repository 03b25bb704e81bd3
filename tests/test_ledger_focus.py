"""FOCUS billing exports into the cost ledger: selection, splitting by hours, credits, refusals."""

import json
import os
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from costeff.cli import main
from costeff.ledger.focus_sample import Charge, charges_table, write_charges, write_table

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
APP = {"app": "policy-serving", "team": "quant"}
REPO = Path(__file__).resolve().parents[1]
# focus-validator 1.0.0 checks pre-release column names (Provider, Publisher, InvoiceIssuer, ResourceID) and a
# SkuPriceId rule that reads the pre-release ChargeType column; FOCUS 1.0 renamed all of them.
VALIDATOR_OVERRIDES = ("InvoiceIssuer_Required", "Provider_Required", "Publisher_Required", "ResourceID_Required",
                       "SkuPriceId_Nullable")


def _h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def _charges() -> list[Charge]:
    """Two days of a serving node, a charge across midnight, a credit, and another team's machine."""
    return [
        Charge(_h(0), _h(22), 22.0, "i-serving-1", APP),
        Charge(_h(22), _h(26), 8.0, "i-serving-1", APP),          # 22:00 -> 02:00: $4 on each day
        Charge(_h(26), _h(48), 22.0, "i-serving-1", APP),
        Charge(_h(0), _h(48), -6.0, "i-serving-1", APP, category="Credit"),  # spread $3 / $3
        Charge(_h(0), _h(24), 1.5, "vol-serving", {"app": "policy-serving"}, billed_cost=2.25),
        Charge(_h(0), _h(48), 500.0, "i-research-9", {"app": "research", "team": "quant"}),
    ]


@pytest.fixture
def focus_csv(tmp_path):
    return write_charges(_charges(), tmp_path / "focus.csv")


def _show(ledger_path, capsys) -> dict:
    capsys.readouterr()
    assert main(["ledger", "show", "--ledger", str(ledger_path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _days(record: dict) -> dict[str, float]:
    return {d["date"]: round(d["infra_cost_usd"], 6) for d in record["days"]}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_focus_import_splits_by_hours_keeps_credits_and_leaves_others_out(tmp_path, capsys, suffix):
    path = write_charges(_charges(), tmp_path / f"focus{suffix}")
    ledger = tmp_path / "l.sqlite"
    assert main(["ledger", "import", "--focus", str(path), "--tag", "app=policy-serving",
                 "--ledger", str(ledger)]) == 0
    record = _show(ledger, capsys)
    # day 1: 22 + 4 (22:00-24:00 of the 8 $ charge) - 3 (half the credit) + 1.5 = 24.5; day 2: 4 + 22 - 3 = 23
    assert _days(record) == {"2026-03-01": 24.5, "2026-03-02": 23.0}
    imp = record["imports"][-1]
    assert (imp["rows_read"], imp["rows_matched"], imp["rows_other"], imp["rows_credit"]) == (6, 5, 1, 1)
    assert imp["credits_usd"] == -6.0 and imp["rows_split"] == 2 and imp["currency"] == "USD"
    assert imp["sha256"] and imp["file"] == str(path) and imp["cost_column"] == "EffectiveCost"


def test_cost_column_and_resource_patterns_select_what_is_counted(tmp_path, focus_csv, capsys):
    ledger = tmp_path / "l.sqlite"
    assert main(["ledger", "import", "--focus", str(focus_csv), "--cost-column", "BilledCost",
                 "--resource-id", "vol-*", "--ledger", str(ledger)]) == 0
    assert _days(_show(ledger, capsys)) == {"2026-03-01": 2.25}


def test_tags_must_all_match(tmp_path, focus_csv, capsys):
    ledger = tmp_path / "l.sqlite"
    assert main(["ledger", "import", "--focus", str(focus_csv), "--tag", "app=policy-serving", "--tag", "team=quant",
                 "--ledger", str(ledger)]) == 0
    assert _days(_show(ledger, capsys)) == {"2026-03-01": 23.0, "2026-03-02": 23.0}  # vol-serving has no team tag


def _refused(tmp_path, capsys, args, ledger, match):
    before = ledger.read_bytes() if ledger.exists() else None
    capsys.readouterr()
    assert main(["ledger", "import", *args, "--ledger", str(ledger)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    assert match in err, err
    assert (ledger.read_bytes() if ledger.exists() else None) == before, "the ledger changed on a refused import"


def test_overlapping_import_is_refused_then_replaced_on_request(tmp_path, focus_csv, capsys):
    ledger = tmp_path / "l.sqlite"
    args = ["--focus", str(focus_csv), "--tag", "app=policy-serving"]
    assert main(["ledger", "import", *args, "--ledger", str(ledger)]) == 0
    _refused(tmp_path, capsys, args, ledger, "already in")
    assert main(["ledger", "import", *args, "--replace", "--ledger", str(ledger)]) == 0
    record = _show(ledger, capsys)
    assert _days(record) == {"2026-03-01": 24.5, "2026-03-02": 23.0}  # replaced, never added twice
    assert [i["replaced"] for i in record["imports"]] == [0, 2]


def test_mixed_currencies_are_refused(tmp_path, capsys):
    charges = _charges() + [Charge(_h(0), _h(1), 1.0, "i-serving-2", APP, currency="EUR")]
    path = write_charges(charges, tmp_path / "mixed.csv")
    _refused(tmp_path, capsys, ["--focus", str(path), "--tag", "app=policy-serving"], tmp_path / "l.sqlite",
             "mix currencies EUR, USD")


def test_missing_column_is_named(tmp_path, capsys):
    table = charges_table(_charges()).drop_columns(["ChargePeriodEnd"])
    path = write_table(table, tmp_path / "nocol.csv")
    _refused(tmp_path, capsys, ["--focus", str(path)], tmp_path / "l.sqlite", "missing FOCUS column(s) ChargePeriodEnd")


def test_a_misspelt_column_gets_the_closest_as_a_suggestion(tmp_path, capsys):
    table = charges_table(_charges())
    path = write_table(table.rename_columns([("ChargePeriodEnds" if n == "ChargePeriodEnd" else n)
                                             for n in table.column_names]), tmp_path / "typo.csv")
    _refused(tmp_path, capsys, ["--focus", str(path)], tmp_path / "l.sqlite",
             "missing FOCUS column(s) ChargePeriodEnd (did you mean 'ChargePeriodEnds'?); a FOCUS 1.x export has")


def test_bad_datetime_and_bad_cost_name_the_row(tmp_path, capsys):
    text = write_charges(_charges(), tmp_path / "ok.csv").read_text()
    bad_time = tmp_path / "bad_time.csv"
    bad_time.write_text(text.replace("2026-03-01T22:00:00Z", "yesterday evening", 1))
    _refused(tmp_path, capsys, ["--focus", str(bad_time)], tmp_path / "l.sqlite", "is not an ISO 8601 UTC datetime")
    bad_cost = tmp_path / "bad_cost.csv"
    lines = text.splitlines()
    lines[2] = lines[2].replace(",8,", ",eight,")
    bad_cost.write_text("\n".join(lines) + "\n")
    _refused(tmp_path, capsys, ["--focus", str(bad_cost)], tmp_path / "l.sqlite", "is not a number")


def test_no_matching_rows_and_period_ending_before_start_are_refused(tmp_path, focus_csv, capsys):
    _refused(tmp_path, capsys, ["--focus", str(focus_csv), "--tag", "app=nothing"], tmp_path / "l.sqlite",
             "no row matches tag app=nothing")
    backwards = write_charges([Charge(_h(5), _h(4), 1.0, "i-1", APP)], tmp_path / "backwards.csv")
    _refused(tmp_path, capsys, ["--focus", str(backwards)], tmp_path / "l.sqlite", "row 1: ChargePeriodEnd")


def test_partial_edge_day_is_reported(tmp_path, capsys):
    path = write_charges([Charge(_h(0), _h(24), 24.0, "i-1", APP), Charge(_h(24), _h(30), 6.0, "i-1", APP)],
                         tmp_path / "mtd.csv")
    assert main(["ledger", "import", "--focus", str(path), "--ledger", str(tmp_path / "l.sqlite")]) == 0
    assert "covers 2026-03-02 only in part" in capsys.readouterr().out


def test_one_source_at_a_time(tmp_path, focus_csv, capsys):
    _refused(tmp_path, capsys, ["--focus", str(focus_csv), "--sample"], tmp_path / "l.sqlite", "exactly one of")


def _validator() -> Path | None:
    found = os.environ.get("COSTEFF_FOCUS_VALIDATOR") or REPO / ".venv-focus-validator" / "bin" / "focus-validator"
    found = Path(found)
    return found if found.is_file() else (Path(shutil.which("focus-validator")) if shutil.which("focus-validator")
                                          else None)


def _validate(path: Path, tmp_path: Path) -> str:
    exe = _validator()
    if exe is None:
        pytest.skip("focus-validator is not installed (scripts/install-focus-validator.sh, run by `make test`)")
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("overrides:\n" + "".join(f"  - {o}\n" for o in VALIDATOR_OVERRIDES))
    # The validator reads its currency list from a path relative to the working directory: run it from its site dir.
    site = subprocess.run([str(exe.parent / "python"), "-c", "import focus_validator, os; "
                           "print(os.path.dirname(os.path.dirname(focus_validator.__file__)))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    done = subprocess.run([str(exe), "--data-file", str(path), "--validate-version", "1.0", "--override-file",
                           str(overrides)], cwd=site, capture_output=True, text=True, timeout=300)
    return done.stdout + done.stderr


@pytest.mark.slow
def test_generated_focus_files_pass_the_focus_validator(tmp_path):
    from costeff.ledger.focus_sample import synthetic_table

    write_table(synthetic_table(2000, T0, resources=20), tmp_path / "bulk.csv")
    for path in (write_charges(_charges(), tmp_path / "charges.csv"), tmp_path / "bulk.csv"):
        out = _validate(path, tmp_path)
        assert "Validation succeeded" in out, out[-2000:]


@pytest.mark.slow
def test_the_validator_check_can_fail(tmp_path):
    text = write_charges(_charges(), tmp_path / "ok.csv").read_text()
    bad = tmp_path / "bad.csv"
    bad.write_text(text.replace('"Usage-Based"', '"Sometimes"', 1))
    out = _validate(bad, tmp_path)
    assert "ChargeFrequency_Enum failed" in out and "Validation failed" in out, out[-2000:]


def test_parquet_timestamps_with_sub_second_units_are_read(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.compute as pc

    table = charges_table(_charges())
    for name in ("ChargePeriodStart", "ChargePeriodEnd"):
        parsed = pc.strptime(table.column(name), format="%Y-%m-%dT%H:%M:%SZ", unit="ms")
        table = table.set_column(table.schema.get_field_index(name), name, pc.cast(parsed, pa.timestamp("ms", "UTC")))
    path = write_table(table, tmp_path / "typed.parquet")
    ledger = tmp_path / "l.sqlite"
    assert main(["ledger", "import", "--focus", str(path), "--tag", "app=policy-serving", "--ledger", str(ledger)]) == 0
    assert _days(_show(ledger, capsys)) == {"2026-03-01": 24.5, "2026-03-02": 23.0}


def test_show_json_lists_every_imported_day_unless_asked_for_fewer(tmp_path, capsys):
    from costeff.ledger.focus_sample import synthetic_table

    path = write_table(synthetic_table(40 * 24 * 30, T0, resources=40), tmp_path / "month.csv")
    ledger = tmp_path / "l.sqlite"
    assert main(["ledger", "import", "--focus", str(path), "--tag", "app=policy-serving", "--ledger", str(ledger)]) == 0
    assert len(_show(ledger, capsys)["days"]) == 30
    capsys.readouterr()
    assert main(["ledger", "show", "--ledger", str(ledger), "--json", "--days", "7"]) == 0
    assert len(json.loads(capsys.readouterr().out)["days"]) == 7


@pytest.mark.parametrize("start, end", [
    ("2026-03-01T22:00:00.000Z", "2026-03-02T02:00:00.000Z"),   # fractional seconds
    ("2026-03-01T23:00:00+01:00", "2026-03-02T03:00:00+01:00"),  # an offset
    ("2026-03-01 22:00:00", "2026-03-02 02:00:00"),              # no zone: FOCUS times are UTC
])
def test_iso_8601_variants_are_read_as_utc(tmp_path, capsys, start, end):
    text = write_charges([Charge(_h(22), _h(26), 8.0, "i-1", APP)], tmp_path / "one.csv").read_text()
    path = tmp_path / "variant.csv"
    path.write_text(text.replace("2026-03-01T22:00:00Z", start).replace("2026-03-02T02:00:00Z", end))
    ledger = tmp_path / "l.sqlite"
    assert main(["ledger", "import", "--focus", str(path), "--ledger", str(ledger)]) == 0
    assert _days(_show(ledger, capsys)) == {"2026-03-01": 4.0, "2026-03-02": 4.0}

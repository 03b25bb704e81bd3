import json
from datetime import date

import pytest

from costeff.cli import main
from costeff.cost import load_catalog
from costeff.errors import InputError
from costeff.ledger import Ledger, import_csv, import_sample
from costeff.ledger.report import daily_costs
from costeff.ledger.sample import generate, sample_texts

ECON_HEADER = "date,gross_pnl_usd,signals,trades,influence_pct\n"


def _csv(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def ledger(tmp_path):
    return Ledger(tmp_path / "ledger.sqlite")


def _econ(tmp_path, *days, name="econ.csv", pnl=100.0):
    return _csv(tmp_path, name, ECON_HEADER + "".join(f"{d},{pnl},50,5,5\n" for d in days))


def test_import_economics_and_read_back(tmp_path, ledger):
    result = import_csv(ledger, _econ(tmp_path, "2026-01-01", "2026-01-02"))
    assert (result.kind, result.rows, result.inserted, result.replaced) == ("economics", 2, 2, 0)
    rows = ledger.economics()
    assert [r.date for r in rows] == ["2026-01-01", "2026-01-02"]
    assert rows[0].gross_pnl_usd == 100.0 and rows[0].signals == 50 and rows[0].influence_pct == 5.0


def test_duplicate_days_rejected_whole_file_untouched(tmp_path, ledger):
    import_csv(ledger, _econ(tmp_path, "2026-01-01"))
    again = _econ(tmp_path, "2026-01-01", "2026-01-02", name="again.csv", pnl=999.0)
    with pytest.raises(InputError, match="already in .*--replace"):
        import_csv(ledger, again)
    assert [(r.date, r.gross_pnl_usd) for r in ledger.economics()] == [("2026-01-01", 100.0)]


def test_replace_is_explicit_counted_and_never_doubles(tmp_path, ledger):
    import_csv(ledger, _econ(tmp_path, "2026-01-01"))
    result = import_csv(ledger, _econ(tmp_path, "2026-01-01", "2026-01-02", name="b.csv", pnl=7.0), replace=True)
    assert (result.inserted, result.replaced) == (1, 1)
    assert [(r.date, r.gross_pnl_usd) for r in ledger.economics()] == [("2026-01-01", 7.0), ("2026-01-02", 7.0)]


@pytest.mark.parametrize("row, where", [
    ("2026-01-02,abc,50,5,5", ":3: field 'gross_pnl_usd'"),
    ("2026-02-30,1,50,5,5", ":3: field 'date'"),
    ("2026-01-02,1,-4,5,5", ":3: field 'signals'"),
    ("2026-01-02,1,50,2.5,5", ":3: field 'trades'"),
    ("2026-01-02,1,50,5,140", ":3: field 'influence_pct'"),
    ("2026-01-02,nan,50,5,5", ":3: field 'gross_pnl_usd'"),
    ("2026-01-02,1,50,5,5,extra", ":3: more cells"),
    ("2026-01-01,1,50,5,5", "appears twice"),
])
def test_bad_rows_name_line_and_field_and_load_nothing(tmp_path, ledger, row, where):
    path = _csv(tmp_path, "bad.csv", ECON_HEADER + "2026-01-01,1,50,5,5\n" + row + "\n")
    with pytest.raises(InputError, match=where.replace("(", r"\(")):
        import_csv(ledger, path)
    assert ledger.economics() == []


def test_unknown_and_missing_columns(tmp_path, ledger):
    with pytest.raises(InputError, match="did you mean 'signals'"):
        import_csv(ledger, _csv(tmp_path, "a.csv", "date,gross_pnl_usd,signal,trades,influence_pct\n"))
    with pytest.raises(InputError, match="missing economics column.*trades"):
        import_csv(ledger, _csv(tmp_path, "b.csv", "date,gross_pnl_usd,signals,influence_pct\n"))
    with pytest.raises(InputError, match="no data rows"):
        import_csv(ledger, _csv(tmp_path, "c.csv", ECON_HEADER))


def test_cost_components_and_catalog_priced_instance_hours(tmp_path, ledger):
    text = ("date,component,instance,instance_hours,usd,source\n"
            "2026-01-01,serving,aws-g5.xlarge,10,,\n"
            "2026-01-01,training,,,12.5,billing export\n")
    result = import_csv(ledger, _csv(tmp_path, "cost.csv", text))
    assert result.kind == "cost" and result.rows == 2
    price = load_catalog().get("aws-g5.xlarge").usd_per_hour
    assert daily_costs(ledger) == {"2026-01-01": pytest.approx(10 * price + 12.5)}
    serving = [r for r in ledger.costs() if r.component == "serving"][0]
    assert serving.instance_hours == 10 and "cost-model" in serving.source


def test_cost_duplicates_are_per_component(tmp_path, ledger):
    import_csv(ledger, _csv(tmp_path, "a.csv", "date,component,usd\n2026-01-01,serving,10\n"))
    import_csv(ledger, _csv(tmp_path, "b.csv", "date,component,usd\n2026-01-01,training,5\n"))
    with pytest.raises(InputError, match="already in"):
        import_csv(ledger, _csv(tmp_path, "c.csv", "date,usd\n2026-01-01,10\n"))  # component defaults to serving
    assert daily_costs(ledger) == {"2026-01-01": 15.0}


def test_unknown_instance_is_a_row_error(tmp_path, ledger):
    text = "date,instance,instance_hours\n2026-01-01,aws-nope,3\n"
    with pytest.raises(InputError, match=r"cost.csv:2: field 'instance'"):
        import_csv(ledger, _csv(tmp_path, "cost.csv", text))


def test_sample_generator_reproduces_shipped_files():
    assert generate() == sample_texts()


def test_sample_is_labelled_synthetic_and_redated(ledger):
    results = import_sample(ledger, end=date(2026, 3, 31))
    assert [(r.kind, r.rows, r.last_date) for r in results] == [("economics", 60, "2026-03-31"),
                                                               ("cost", 120, "2026-03-31")]
    assert all("SYNTHETIC" in s for c in ledger.coverage() for s in c.sources)


def test_sample_import_is_all_or_nothing(tmp_path, ledger):
    import_csv(ledger, _csv(tmp_path, "c.csv", "date,component,usd\n2026-03-31,serving,1\n"))
    with pytest.raises(InputError, match="already in"):
        import_sample(ledger, end=date(2026, 3, 31))
    assert ledger.economics() == []  # the economics half was rolled back with the cost half


def test_cli_import_show_and_exit_codes(tmp_path, capsys):
    path = str(tmp_path / "l.sqlite")
    assert main(["ledger", "import", "--sample", "--ledger", path]) == 0
    assert main(["ledger", "import", "--sample", "--ledger", path]) == 2
    assert "--replace" in capsys.readouterr().err
    assert main(["ledger", "import", "--sample", "--ledger", path, "--replace", "--json"]) == 0
    assert [r["replaced"] for r in json.loads(capsys.readouterr().out)] == [60, 120]
    assert main(["ledger", "show", "--ledger", path, "--days", "3", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert len(shown["days"]) == 3 and shown["coverage"][0]["days"] == 60
    bad = _csv(tmp_path, "bad.csv", ECON_HEADER + "2026-01-01,x,1,1,1\n")
    assert main(["ledger", "import", str(bad), "--ledger", path]) == 2
    assert capsys.readouterr().err.startswith(f"error: {bad}:2: field 'gross_pnl_usd'")
    assert main(["ledger", "import", "--ledger", path]) == 2  # neither FILE nor --sample


def test_default_ledger_lives_under_artifacts(tmp_path):
    assert main(["ledger", "import", "--sample"]) == 0
    assert (tmp_path / "artifacts" / "ledger.sqlite").is_file()

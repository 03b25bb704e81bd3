"""One "did you mean" for every message: same closeness rule, same wording, wherever the typo is."""

from __future__ import annotations

import pytest

from costeff.errors import InputError
from costeff.hints import CUTOFF, closest, did_you_mean


def test_the_closest_choice_is_suggested_in_one_wording():
    assert closest("windw_s", ["stale_after_s", "window_s"]) == "window_s"
    assert did_you_mean("windw_s", ["stale_after_s", "window_s"]) == " (did you mean 'window_s'?)"
    assert did_you_mean(3, [1, 3.5, "3"]) == " (did you mean '3'?)"  # keys read from TOML need not be strings


def test_nothing_below_the_cutoff_is_suggested():
    # "abcd" / "abxy" share half their letters: ratio 0.5, under the one cutoff
    assert CUTOFF > 0.5 and closest("abcd", ["abxy"]) is None and did_you_mean("abcd", ["abxy"]) == ""
    assert closest("abcd", ["abxy"], cutoff=0.5) == "abxy"


def test_a_config_file_a_ledger_csv_and_the_command_line_suggest_alike(tmp_path):
    from costeff.cli import _did_you_mean
    from costeff.configfile import did_you_mean as config_hint
    from costeff.ledger.csvio import ECONOMICS, _check_header

    assert config_hint is did_you_mean  # the config files' helper is this one
    with pytest.raises(InputError) as exc:
        _check_header("economics.csv", ECONOMICS, ["date", "sigals"])
    assert "unknown economics column 'sigals' (did you mean 'signals'?)" in str(exc.value)
    assert _did_you_mean(["--dys=3"], ["--days", "--json"]) == "; did you mean --days?"
    both = _did_you_mean(["--dys", "--jsn"], ["--days", "--json"])
    assert both == "; did you mean --days for --dys, --json for --jsn?"

"""Typed config files: strict types, unknown keys refused with a did-you-mean, errors naming file and key (exit 2)."""

import json

import pytest

from costeff.cli import main
from costeff.configfile import did_you_mean
from costeff.errors import InputError
from costeff.ramp.plan import load_plan
from costeff.reaper.config import load_config
from workspace_support import env_workspace

REAPER_CASES = [
    ('[exclude]\nnames = "policy-a"\n', "exclude.names: 'policy-a' is not allowed; expected an array"),
    ('[schedule]\nprewarm_s = "900"\n', "schedule.prewarm_s: '900' is not allowed; expected a number"),
    ("[schedule]\nenabled = 1\n", "schedule.enabled: 1 is not allowed; expected true or false"),
    ('[schedule]\nstart = "9h30"\n', "schedule.start: '9h30' is not allowed; expected a time of day"),
    ("[decision]\nwindw_s = 60\n", "decision.windw_s: unknown key (did you mean 'decision.window_s'?)"),
    ("[decison]\nwindow_s = 60\n", "decison: unknown key (did you mean 'decision'?)"),
    ("[decision]\nwindow_s = true\n", "decision.window_s: True is not allowed; expected a number"),
    ("[decision]\nfactors = \"gpu_util\"\n", "decision.factors: 'gpu_util' is not allowed; expected an array"),
    ('[[targets]]\nkind = "gpu"\n',
     "targets.resource = '' is not allowed; expected a non-empty resource name (or name)"),
    ('[[targets]]\nresource = "p"\ngpus_per_replica = "2"\n', "targets[0].gpus_per_replica: '2' is not allowed"),
    ('[[targets]]\nresource = "p"\nlabels = "team=rl"\n', "targets[0].labels: 'team=rl' is not allowed"),
    ('[[targets]]\nresource = "p"\nreplcas = 2\n', "targets[0].replcas: unknown key"),
    ('[prometheus]\nqueries = {gpu_util = "x"}\n', "did you mean 'gpu_util_pct'"),
    ('[prometheus]\nstep_s = "15"\n', "prometheus.step_s: '15' is not allowed; expected a number"),
    ('[savings]\ninstance = 4\n', "savings.instance: 4 is not allowed; expected a string"),
    ("targets = 3\n", "targets: 3 is not allowed; expected an array"),
    ("decision = 3\n", "decision: 3 is not allowed; expected a table"),
    ('source = "x"\n', "source: unknown key"),
    ("[decision\n", "not valid TOML"),
]


@pytest.mark.parametrize("text, message", REAPER_CASES)
def test_reaper_config_errors_name_file_key_and_type(tmp_path, text, message):
    path = tmp_path / "reaper.toml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value), str(info.value)


def test_a_string_of_names_no_longer_becomes_a_set_of_characters(tmp_path, capsys):
    path = tmp_path / "reaper.toml"
    path.write_text('[exclude]\nnames = "policy-a"\n')
    assert main(["reap", "--sample", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: exclude.names")
    path.write_text('[exclude]\nnames = ["policy-a"]\n')
    assert load_config(path).exclude.names == frozenset({"policy-a"})


PLAN_CASES = [
    ("[[steps]]\ninfluence_pct = 0\nmin_days = 7.5\n[[steps]]\ninfluence_pct = 5\n",
     "steps[0].min_days: 7.5 is not allowed; expected a whole number"),
    ("[[steps]]\ninfluence_pct = 0\n[[steps]]\ninfluence_pct = 150\n", "steps[1].influence_pct: 150"),
    ("[[steps]]\ninfluence_pct = '5'\n[[steps]]\ninfluence_pct = 10\n", "steps[0].influence_pct: '5'"),
    ("[[steps]]\ninfluence_pct = 0\n", "steps: "),
    ("window_days = 0\n[[steps]]\ninfluence_pct = 0\n[[steps]]\ninfluence_pct = 5\n", "window_days: 0"),
    ("[defaults]\ncost_ratio_cap_pct = -1\n[[steps]]\ninfluence_pct = 0\n[[steps]]\ninfluence_pct = 5\n",
     "defaults.cost_ratio_cap_pct: -1"),
    ("[quantization]\nmax_action_drift = 1\n[[steps]]\ninfluence_pct = 0\n[[steps]]\ninfluence_pct = 5\n",
     "did you mean 'quantization.max_action_drift_pct'"),
    ("[[steps]]\ninfluence_pct = 0\nmin_trade = 5\n[[steps]]\ninfluence_pct = 5\n",
     "steps[0].min_trade: unknown key (did you mean 'steps[0].min_trades'?)"),
    ("[[steps]]\ninfluence_pct = nan\n[[steps]]\ninfluence_pct = 5\n", "steps[0].influence_pct: nan"),
]


@pytest.mark.parametrize("text, message", PLAN_CASES)
def test_ramp_plan_errors_name_file_key_and_type(tmp_path, text, message):
    path = tmp_path / "plan.toml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_plan(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value), str(info.value)


def test_hand_edited_flag_store_of_the_wrong_shape_is_named(capsys):
    assert main(["flags", "set", "reaper_enabled", "false"]) == 0
    path = env_workspace().flags
    data = json.loads(path.read_text())
    data["history"]["reaper_enabled"][0]["version"] = "one"
    path.write_text(json.dumps(data))
    assert main(["flags", "get", "reaper_enabled"]) == 2
    assert f"{path}: history.reaper_enabled[0].version: 'one' is not allowed" in capsys.readouterr().err


@pytest.mark.parametrize("value, ok", [("true", True), ("OFF", False), (" yes ", True), ("maybe", None),
                                       ("2", None)])
def test_flag_values_are_typed(value, ok, capsys):
    code = main(["flags", "set", "reaper_enabled", value])
    assert code == (0 if ok is not None else 2)


def test_did_you_mean():
    assert did_you_mean("windw_s", ["window_s", "stale_after_s"]) == " (did you mean 'window_s'?)"
    assert did_you_mean("zzz", ["window_s"]) == ""

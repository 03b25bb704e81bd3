import json
import math
import subprocess
import sys

import numpy as np
import re

import pytest

from costeff.artifacts import atomic_write_json
from costeff.cost import estimate, load_catalog
from costeff.errors import InputError
from costeff.gates import Verdict, check
from costeff.observations import split, validate_observations

HEAVY = ("torch", "onnxruntime", "tritonclient", "kubernetes", "pynvml")


def test_import_and_help_do_not_load_heavy_modules():
    code = ("import sys, costeff, costeff.cli; costeff.cli.build_parser(); "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_gate_verdicts_fail_closed():
    assert check("x", 0.2, "<=", 0.5).verdict is Verdict.PASS
    assert check("x", 0.7, "<=", 0.5).verdict is Verdict.FAIL
    assert check("x", None, "<=", 0.5).verdict is Verdict.NO_DATA
    assert check("x", float("nan"), "<=", 0.5).verdict is Verdict.NO_DATA
    assert not check("x", None, "<=", 0.5).passed


def test_json_is_strict_and_keeps_infinity_meaningful(tmp_path):
    path = atomic_write_json(tmp_path / "r.json", {"ratio": math.inf, "x": float("nan"), "a": np.float32(1.5)})
    assert json.loads(path.read_text()) == {"ratio": "inf", "x": None, "a": 1.5}
    assert not list(tmp_path.glob(".*tmp"))


def test_shipped_catalog_prices_have_sources():
    cat = load_catalog()
    assert all(i.usd_per_hour > 0 and i.source and i.as_of for i in cat.instances.values())
    assert cat.for_hardware("NVIDIA H100 80GB HBM3").name == "aws-p5.48xlarge"
    assert cat.for_hardware(None).kind == "cpu"


def test_catalog_rejects_unknown_fields(tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text('[instances.x]\nkind="cpu"\nusd_per_hour=1\nsource="s"\nas_of="d"\nprice=2\n')
    with pytest.raises(InputError, match=r"c.toml: instances.x.price: unknown key"):
        load_catalog(bad)


@pytest.mark.parametrize("line, message", [
    ('gpu_match = "H100"', "instances.x.gpu_match: 'H100' is not allowed; expected an array"),
    ('usd_per_hour = "0.5"', "instances.x.usd_per_hour: '0.5' is not allowed; expected a number"),
    ('usd_per_hour = -1', "instances.x.usd_per_hour: -1 is not allowed"),
    ('cpu_family = "amx"', "instances.x.cpu_family: 'amx' is not allowed; expected a family only together with vcpus"),
    ('gpus = 1.5', "instances.x.gpus: 1.5 is not allowed; expected a whole number"),
])
def test_catalog_values_are_strictly_typed(tmp_path, line, message):
    """A string where a list belongs would match GPUs by its characters; a quoted price is not a number."""
    fields = {"kind": '"cpu"', "usd_per_hour": "1", "source": '"s"', "as_of": '"d"'}
    key = line.split("=")[0].strip()
    body = "".join(f"{k} = {v}\n" for k, v in fields.items() if k != key) + line + "\n"
    bad = tmp_path / "c.toml"
    bad.write_text("[instances.x]\n" + body)
    with pytest.raises(InputError, match=re.escape(message)):
        load_catalog(bad)


def test_cost_estimate_plans_with_headroom():
    inst = load_catalog().get("aws-c6i.large")
    est = estimate(inst, throughput_per_s=1000.0, target_rate_per_s=1700.0, max_utilisation=0.8)
    assert est.instances_needed == 3  # 1700 / (1000 * 0.8) = 2.1 -> 3
    assert est.usd_per_million == pytest.approx(0.085 / 3.6e6 * 1e6)
    assert est.usd_per_day == pytest.approx(3 * 0.085 * 24)


def test_observation_validation_names_the_problem():
    obs = np.zeros((10, 4, 3), np.float32)
    assert validate_observations(obs, (4, 3), "o.npy").shape == (10, 4, 3)
    assert validate_observations(obs.reshape(10, 12), (4, 3), "o.npy").shape == (10, 4, 3)
    with pytest.raises(InputError, match=r"o.npy: observations have shape \[10, 4, 3\]; expected \[rows, 5, 3\]"):
        validate_observations(obs, (5, 3), "o.npy")
    obs[7, 0, 0] = np.nan
    with pytest.raises(InputError, match="first: row 7"):
        validate_observations(obs, (4, 3), "o.npy")


def test_split_is_disjoint_and_says_how_many_rows_are_needed():
    obs = np.arange(1000, dtype=np.float32).reshape(-1, 1)
    s = split(obs, 0.3, seed=1)
    assert s.calibration_rows + s.evaluation_rows == 1000
    assert not set(s.calibration.ravel()) & set(s.evaluation.ravel())
    with pytest.raises(InputError, match="need at least 320"):
        split(obs[:100])


def test_argument_errors_are_one_line_with_exit_2(capsys):
    from costeff.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["batching", "optimize", "--profile", "p.json", "--rate", "-1", "--p99-ms", "5"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.count("\n") == 1 and err.startswith("error: costeff batching optimize: argument --rate")

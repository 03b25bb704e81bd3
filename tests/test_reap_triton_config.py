"""A Triton target in the reaper config: its address, its identity, and Triton's own metrics as its defaults."""

from __future__ import annotations

import pytest

from costeff.cli import main
from costeff.errors import InputError
from costeff.reaper.config import PrometheusConfig, Target, load_config


def test_a_triton_target_needs_only_a_name_an_address_and_a_model(tmp_path):
    path = tmp_path / "reaper.toml"
    path.write_text('[[targets]]\nname = "policy"\nkind = "triton"\nurl = "http://127.0.0.1:8000/"\nmodel = "pol"\n')
    target = load_config(path).targets[0]
    assert (target.resource, target.url, target.model) == ("policy", "127.0.0.1:8000", "pol")
    assert target.key == "triton/127.0.0.1:8000/pol"


@pytest.mark.parametrize("url", [None, "", "localhost", "127.0.0.1:http", "grpc://127.0.0.1:8001/x"])
def test_a_triton_target_without_a_host_port_is_refused(url):
    with pytest.raises(InputError, match=r"targets\[policy\]\.url .*HOST:PORT"):
        Target(name="policy", kind="triton", url=url)


def test_the_cli_names_the_file_and_field_of_a_bad_address(tmp_path, capsys):
    path = tmp_path / "reaper.toml"
    path.write_text('[[targets]]\nname = "policy"\nkind = "triton"\nurl = "nowhere"\n')
    assert main(["reap", "--prometheus", "http://127.0.0.1:9", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "url" in err and "HOST:PORT" in err and "Traceback" not in err


def test_triton_targets_default_to_tritons_own_counters_and_a_users_query_wins():
    triton = Target(name="policy", kind="triton", url="127.0.0.1:8000")
    shipped = PrometheusConfig()
    assert shipped.query("requests_per_s", triton) == 'sum(rate(nv_inference_request_success{model="policy"}[5m]))'
    assert shipped.query("influence_pct", triton) == 'max(costeff_policy_influence_pct{model="policy"})'
    assert "DCGM" in shipped.query("gpu_util_pct", Target("policy-triton"))  # other kinds keep theirs
    own = PrometheusConfig(queries={"requests_per_s": 'sum(rate(nv_inference_count{model="{model}"}[1m]))'})
    assert own.query("requests_per_s", triton) == 'sum(rate(nv_inference_count{model="policy"}[1m]))'

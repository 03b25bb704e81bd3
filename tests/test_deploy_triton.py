"""deploy/kubernetes's optional components, rendered with the example overlay by a real kubectl: the policy's
Triton (explicit model control on the repository claim drift watch rolls back), the shipped alerting rules as
a PrometheusRule, and the CronJob that feeds the ledger. Skips like test_deploy_manifests without kubectl."""

from __future__ import annotations

import os
import shutil

import pytest
import yaml

from test_deploy_manifests import KUSTOMIZE, OVERLAY, ROOT, _container, _one, _parse, _render, _validate

COMPONENTS = ("triton", "prometheusrule", "ledger-import")


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> list[dict]:
    """The example overlay with the components added to its own kustomization.yaml, as a user adds them."""
    folder = tmp_path_factory.mktemp("components") / "overlay"
    shutil.copytree(OVERLAY, folder)
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    kustomization["resources"] = [os.path.relpath((OVERLAY / r).resolve(), folder) if r.startswith("..") else r
                                  for r in kustomization["resources"]]
    kustomization["components"] = [os.path.relpath(KUSTOMIZE / "components" / c, folder)
                                   for c in ("servicemonitor", *COMPONENTS)]
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return _render(folder)


def _validate_any(doc: dict) -> None:
    if doc["kind"] == "PrometheusRule":
        from cloudcoil.models.prometheus_operator.v1 import PrometheusRule

        model = PrometheusRule.model_validate(doc)
        assert model.model_dump(by_alias=True, exclude_none=True) == doc  # a misspelt field would vanish
        return
    _validate(doc)


def test_the_components_render_beside_the_overlay_and_validate_strictly(docs):
    added = sorted((d["kind"], d["metadata"]["name"]) for d in docs
                   if d["metadata"]["name"] in ("policy-triton", "costeff-alerts", "costeff-ledger-import"))
    assert added == [("CronJob", "costeff-ledger-import"), ("Deployment", "policy-triton"),
                     ("PrometheusRule", "costeff-alerts"), ("Service", "policy-triton")]
    for doc in docs:
        _validate_any(doc)
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"trading"}


def test_the_prometheus_rule_is_the_shipped_rules_file(docs):
    shipped = yaml.safe_load((ROOT / "deploy" / "prometheus" / "costeff-alerts.yml").read_text())
    assert _one(docs, "PrometheusRule", "costeff-alerts")["spec"]["groups"] == shipped["groups"]


def _flag(args: list[str], name: str) -> str:
    return next(a.split("=", 1)[1] for a in args if a.startswith(f"{name}="))


def test_triton_serves_drift_watchs_repository_in_explicit_mode_on_the_reapers_target(docs, tmp_path):
    triton = _one(docs, "Deployment", "policy-triton")
    container = _container(triton)
    args = container["args"]
    assert _flag(args, "--model-control-mode") == "explicit"  # what unload/load and drift watch --url need
    assert _flag(args, "--strict-readiness") == "false"  # an unloaded model keeps the pod in its Service
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": int(_flag(args, "--http-port")), "grpc": int(_flag(args, "--grpc-port")),
                     "metrics": int(_flag(args, "--metrics-port"))}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
        assert container[probe]["httpGet"]["path"].startswith("/v2/health/")
    service = _one(docs, "Service", "policy-triton")
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]} == {n: n for n in ports}
    assert triton["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(ports["metrics"])
    # The repository Triton reads is the claim and path drift watch rolls back.
    drift = _container(_one(docs, "Deployment", "costeff-drift-watch"))
    repository = drift["args"][drift["args"].index("--repository") + 1]
    assert _flag(args, "--model-repository") == repository
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in triton["spec"]["template"]["spec"]["volumes"]
              if "persistentVolumeClaim" in v}
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == repository)
    drift_claims = {v["persistentVolumeClaim"]["claimName"] for v in
                    _one(docs, "Deployment", "costeff-drift-watch")["spec"]["template"]["spec"]["volumes"]
                    if "persistentVolumeClaim" in v}
    assert mount["readOnly"] and claims[mount["name"]] in drift_claims
    # The model Triton loads is the one whose influence ramp watch publishes and the reaper's target reads.
    ramp = _container(_one(docs, "Deployment", "costeff-ramp-watch"))["args"]
    assert _flag(args, "--load-model") == ramp[ramp.index("--policy-model") + 1]
    assert _parse(ramp).policy_model == "policy"


def test_the_ledger_cronjob_writes_the_ledger_ramp_watch_reads(docs):
    job = _one(docs, "CronJob", "costeff-ledger-import")
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    parsed = _parse(container["args"])
    assert parsed.opencost and parsed.replace
    ramp = _container(_one(docs, "Deployment", "costeff-ramp-watch"))["args"]
    assert container["args"][container["args"].index("--ledger") + 1] == ramp[ramp.index("--ledger") + 1]
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    assert pod["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
    assert pod["automountServiceAccountToken"] is False
    assert any(v.get("persistentVolumeClaim", {}).get("claimName") == "costeff-state" for v in pod["volumes"])
    assert container["image"] == _container(_one(docs, "Deployment", "costeff-ramp-watch"))["image"]


def test_the_overlay_alone_still_has_none_of_them():
    names = {d["metadata"]["name"] for d in _render(OVERLAY)}
    assert not names & {"policy-triton", "costeff-alerts", "costeff-ledger-import"}

"""Kubernetes actions at the request level: the official client talks to a local HTTP server.

No cluster exists here. The server on 127.0.0.1 records every request and answers
like the API server for the four calls the reaper makes (read object, read scale,
merge-patch object, merge-patch scale), so these tests pin the exact method, path,
content type and body the reaper sends, including the original-replicas annotation.

It also authorizes like the API server: every request is checked against the Role
that ``costeff reap rbac`` generates for the targets, and answered 403 when that Role
does not allow it. A new API call in the reaper without a rule therefore fails these
tests, as it would fail in a cluster deployed from the generated RBAC.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from costeff.audit import AuditLog
from costeff.cli import main
from costeff.reaper.actions import KubeScaler
from costeff.reaper.config import ANNOTATION, DecisionConfig, ReaperConfig, ScheduleConfig, Target
from costeff.reaper.rbac import allows, manifests
from costeff.reaper.live import Actuators, open_actions, restore_all, tick
from costeff.reaper.signals import Sample
from workspace_support import flag_store, env_home

KINDS = {"deployments": ("Deployment", "apps/v1"), "statefulsets": ("StatefulSet", "apps/v1")}
VERBS = {"GET": "get", "PATCH": "patch", "PUT": "update", "POST": "create", "DELETE": "delete"}
# The reaper's targets in these tests; the API server authorizes with the RBAC generated for them.
RBAC_TARGETS = (Target("policy", namespace="trading"), Target("ghost", namespace="trading"),
                Target("feature-store", kind="statefulset", namespace="trading"))


class FakeApiServer(ThreadingHTTPServer):
    def __init__(self, targets=RBAC_TARGETS):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.objects = {}  # (plural, namespace, name) -> {"replicas": int, "annotations": dict}
        self.requests = []
        self.rbac = manifests(ReaperConfig(targets=targets))
        self.authorized = set()  # (verb, resource[/subresource]) of every request that passed RBAC

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _route(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        # apis/apps/v1/namespaces/<ns>/<plural>/<name>[/scale]
        key = (parts[5], parts[4], parts[6])
        return key, len(parts) == 8 and parts[7] == "scale"

    def _forbidden(self):
        """RBAC as the API server applies it; True (and a 403 sent) when the Role does not allow the request."""
        (plural, namespace, name), scale = self._route()
        verb, resource = VERBS[self.command], plural + ("/scale" if scale else "")
        if allows(self.server.rbac, verb, "apps", resource, namespace, name):
            self.server.authorized.add((verb, resource))
            return False
        self._send(403, {"kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403,
                         "message": f'{resource} "{name}" is forbidden: cannot {verb} in namespace "{namespace}"'})
        return True

    def _answer(self, key, scale):
        obj = self.server.objects.get(key)
        if obj is None:
            return self._send(404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404})
        plural, namespace, name = key
        meta = {"name": name, "namespace": namespace, "annotations": dict(obj["annotations"]),
                "labels": dict(obj.get("labels", {}))}
        if scale:
            return self._send(200, {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": meta,
                                    "spec": {"replicas": obj["replicas"]}, "status": {"replicas": obj["replicas"]}})
        kind, version = KINDS[plural]
        spec = {"replicas": obj["replicas"], "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": []}}}
        if kind == "StatefulSet":
            spec["serviceName"] = name
        return self._send(200, {"apiVersion": version, "kind": kind, "metadata": meta, "spec": spec})

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.server.requests.append(("GET", self.path, None, None))
        if not self._forbidden():
            self._answer(*self._route())

    def do_PATCH(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(("PATCH", self.path, self.headers["Content-Type"], body))
        if self._forbidden():
            return
        key, scale = self._route()
        obj = self.server.objects.get(key)
        if obj is not None and scale:
            obj["replicas"] = body["spec"]["replicas"]
        elif obj is not None:
            for k, v in body["metadata"]["annotations"].items():  # JSON merge patch: null deletes
                obj["annotations"].pop(k, None) if v is None else obj["annotations"].__setitem__(k, v)
        self._answer(key, scale)


@pytest.fixture
def api():
    server = FakeApiServer()
    server.objects[("deployments", "trading", "policy")] = {"replicas": 3, "annotations": {"owner": "rl"}}
    server.objects[("statefulsets", "trading", "feature-store")] = {"replicas": 2, "annotations": {}}
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def scaler(api):
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = api.url
    return KubeScaler(client.ApiClient(configuration))


DEPLOY = "/apis/apps/v1/namespaces/trading/deployments/policy"
MERGE = "application/merge-patch+json"


def test_reap_annotates_then_scales_through_the_scale_subresource(api, scaler):
    outcome = scaler.reap(Target("policy", namespace="trading"))
    assert outcome.changed and outcome.before["replicas"] == 3
    assert api.requests == [
        ("GET", DEPLOY, None, None),
        ("GET", DEPLOY + "/scale", None, None),
        ("PATCH", DEPLOY, MERGE, {"metadata": {"annotations": {ANNOTATION: "3"}}}),
        ("PATCH", DEPLOY + "/scale", MERGE, {"spec": {"replicas": 0}}),
    ]
    assert api.objects[("deployments", "trading", "policy")] == \
        {"replicas": 0, "annotations": {"owner": "rl", ANNOTATION: "3"}}


def test_reap_and_restore_are_idempotent_and_exact(api, scaler):
    target = Target("policy", namespace="trading")
    scaler.reap(target)
    api.requests.clear()
    assert not scaler.reap(target).changed
    assert [r[0] for r in api.requests] == ["GET", "GET"]  # nothing written the second time
    api.requests.clear()
    assert scaler.restore(target).after == {"replicas": 3}
    assert api.requests[2:] == [
        ("PATCH", DEPLOY + "/scale", MERGE, {"spec": {"replicas": 3}}),
        ("PATCH", DEPLOY, MERGE, {"metadata": {"annotations": {ANNOTATION: None}}}),
    ]
    assert api.objects[("deployments", "trading", "policy")] == {"replicas": 3, "annotations": {"owner": "rl"}}
    api.requests.clear()
    assert not scaler.restore(target).changed
    assert [r[0] for r in api.requests] == ["GET", "GET"]


def test_statefulset_uses_its_own_scale_path(api, scaler):
    scaler.reap(Target("feature-store", kind="statefulset", namespace="trading"))
    paths = [(r[0], r[1]) for r in api.requests]
    assert ("PATCH", "/apis/apps/v1/namespaces/trading/statefulsets/feature-store/scale") in paths


def test_missing_object_is_a_dependency_error(scaler):
    from costeff.errors import DependencyError

    with pytest.raises(DependencyError, match="404"):
        scaler.reap(Target("ghost", namespace="trading"))


def test_generated_role_grants_exactly_the_calls_the_reaper_makes(api, scaler):
    for target in (Target("policy", namespace="trading"),
                   Target("feature-store", kind="statefulset", namespace="trading")):
        scaler.reap(target)
        scaler.restore(target)
    granted = {(verb, resource) for doc in api.rbac if doc["kind"] == "Role"
               for rule in doc["rules"] for resource in rule["resources"] for verb in rule["verbs"]}
    assert api.authorized == granted  # every rule is used, and nothing was refused
    assert not [r for r in api.requests if r[0] not in ("GET", "PATCH")]


def test_an_object_outside_the_generated_role_is_forbidden(api, scaler):
    from costeff.errors import DependencyError

    api.objects[("deployments", "trading", "risk-engine")] = {"replicas": 2, "annotations": {}}
    with pytest.raises(DependencyError, match="403"):
        scaler.reap(Target("risk-engine", namespace="trading"))
    assert api.objects[("deployments", "trading", "risk-engine")]["replicas"] == 2


class ListSource:
    def __init__(self, samples):
        self.samples_by_resource = samples

    def samples(self, target, window_s, now):
        return self.samples_by_resource[target.resource]


def _idle(resource, now, n=11):
    return [Sample(now - 600 + i * 60, resource, 1.0, 0.0, 0.0) for i in range(n)]


def _config():
    return ReaperConfig(decision=DecisionConfig(window_s=300, stale_after_s=120),
                        schedule=ScheduleConfig(enabled=False),
                        targets=(Target("policy", namespace="trading", gpus_per_replica=1.0),))


def test_applied_reap_is_restored_from_the_audit_trail_via_cli(api, scaler, tmp_path, monkeypatch, capsys):
    audit = AuditLog(tmp_path / "artifacts" / "audit", home=env_home())
    now = 1_741_996_800.0
    actuators = Actuators(kube=scaler, flags=flag_store())
    result = tick(_config(), ListSource({"policy": _idle("policy", now)}), True, actuators, audit, 2.0, now=now)
    assert [a["action"] for a in result.actions] == ["reap"] and result.savings_usd_per_hour == 6.0
    assert api.objects[("deployments", "trading", "policy")]["replicas"] == 0
    # A second round changes nothing: the open action is found in the audit trail.
    again = tick(_config(), ListSource({"policy": _idle("policy", now)}), True, actuators, audit, 2.0, now=now)
    assert again.actions == [] and len(open_actions(audit)) == 1
    assert restore_all(audit, apply=False, actuators=actuators)[0]["mode"] == "dry-run"
    assert api.objects[("deployments", "trading", "policy")]["replicas"] == 0
    # The CLI reaches the same API server through a kubeconfig.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "c", "cluster": {"server": api.url}}],
        "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(["reap", "restore", "--apply"]) == 0
    assert api.objects[("deployments", "trading", "policy")] == {"replicas": 3, "annotations": {"owner": "rl"}}
    assert open_actions(audit) == []
    assert main(["reap", "restore", "--apply"]) == 0
    assert "nothing to restore" in capsys.readouterr().out


def test_demand_wakes_a_reaped_target(api, scaler, tmp_path):
    audit = AuditLog(tmp_path / "audit", home=env_home())
    now = 1_741_996_800.0
    actuators = Actuators(kube=scaler, flags=flag_store())
    tick(_config(), ListSource({"policy": _idle("policy", now)}), True, actuators, audit, 2.0, now=now)
    busy = _idle("policy", now + 60)
    busy[-1] = Sample(now + 60, "policy", None, 4.0, 0.0)  # pods are gone: util missing, requests seen at ingress
    result = tick(_config(), ListSource({"policy": busy}), True, actuators, audit, 2.0, now=now + 60)
    assert [a["action"] for a in result.actions] == ["restore"]
    assert api.objects[("deployments", "trading", "policy")]["replicas"] == 3


def test_uncertain_data_means_no_action(api, scaler, tmp_path):
    audit = AuditLog(tmp_path / "audit", home=env_home())
    now = 1_741_996_800.0
    samples = _idle("policy", now)
    samples[5] = Sample(samples[5].ts, "policy", 1.0, None, 0.0)  # requests missing once
    result = tick(_config(), ListSource({"policy": samples}), True, Actuators(kube=scaler, flags=flag_store()), audit,
                  2.0, now=now)
    assert result.actions == [] and api.requests == []


def test_tampered_audit_trail_blocks_restore(api, scaler, tmp_path):
    from costeff.errors import InputError

    audit = AuditLog(tmp_path / "audit", home=env_home())
    now = 1_741_996_800.0
    tick(_config(), ListSource({"policy": _idle("policy", now)}), True, Actuators(kube=scaler, flags=flag_store()),
         audit, 2.0, now=now)
    audit.path.write_text(audit.path.read_text().replace('"3"', '"30"'))
    with pytest.raises(InputError, match="tampered"):
        restore_all(audit, apply=True, actuators=Actuators(kube=scaler, flags=flag_store()))


def test_reap_rbac_prints_one_role_per_namespace_and_refuses_a_config_without_kubernetes_targets(tmp_path, capsys):
    import yaml

    config = tmp_path / "reaper.toml"
    config.write_text('[[targets]]\nresource = "policy"\nnamespace = "trading"\n'
                      '[[targets]]\nresource = "batch"\nnamespace = "research"\n'
                      '[[targets]]\nresource = "gpu0"\nkind = "gpu"\npower_limit_w = 200.0\n')
    assert main(["reap", "rbac", "--config", str(config), "--service-account-namespace", "costeff"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [(d["kind"], d["metadata"]["namespace"]) for d in docs] == [
        ("Role", "research"), ("RoleBinding", "research"), ("Role", "trading"), ("RoleBinding", "trading")]
    assert {n for r in docs[2]["rules"] for n in r["resourceNames"]} == {"policy"}
    assert docs[3]["subjects"] == [{"kind": "ServiceAccount", "name": "costeff-reaper", "namespace": "costeff"}]
    config.write_text('[[targets]]\nresource = "gpu0"\nkind = "gpu"\npower_limit_w = 200.0\n')
    assert main(["reap", "rbac", "--config", str(config)]) == 2
    assert "no deployment or statefulset target" in capsys.readouterr().err

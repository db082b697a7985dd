"""The Helm chart on the real control plane: lint, install, the operator under the chart's RBAC, every example,
access reviews, upgrade and uninstall.

One release serves one namespace (`watchNamespaces`), as a team would install it. The operator then runs on this
host as a process with the chart's ServiceAccount token and the chart's own arguments and environment (read back
from the installed Deployment), so the real API server enforces the chart's roles on every request. The
Deployment's pod is placed by the scheduler and "run" by the node simulator, which cannot run the operator's
image as a long-running process: the host process stands in for it. Examples are applied with their storage URIs
pointing at local files (docs/install.md says what each is expected to reach and why).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import uuid
import warnings
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from kubernetes import client, config

from conftest import OperatorProcess, cluster_dir
from helpers import AuditLog, apply, rbac_table, request, wait_for
from mlops_localcluster.devrun import iris_model

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "mlops-operator"
GROUP_PATH = "/apis/mlops.dev/v1alpha1"
# Gang admission's ClusterRole (rbac.gangAdmission, on by default): read-only, in every install mode.
GANG_ADMISSION = {("", "nodes", "list"), ("", "pods", "list")}
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
# Resources next to the granted ones that the operator must not touch at all.
NEVER = [("", "secrets"), ("", "configmaps"), ("", "pods/exec"), ("", "pods/log"), ("", "serviceaccounts/token"),
         ("batch", "jobs"), ("apps", "replicasets"), ("apps", "statefulsets"), ("", "persistentvolumeclaims"),
         ("coordination.k8s.io", "leases")]  # one replica: no leader election


# ---------------------------------------------------------------- helm, accounts, access reviews

class Helm:
    def __init__(self, binary: str, kubeconfig: str, home: pathlib.Path):
        self.binary = binary
        self.env = dict(os.environ, KUBECONFIG=kubeconfig, HELM_CACHE_HOME=str(home / "cache"),
                        HELM_CONFIG_HOME=str(home / "config"), HELM_DATA_HOME=str(home / "data"))

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([self.binary, *args], capture_output=True, text=True, env=self.env, timeout=120)
        if check and proc.returncode != 0:
            pytest.fail(f"helm {' '.join(args)}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc


def account_kubeconfig(kube, cluster: str, namespace: str, account: str, path: pathlib.Path) -> pathlib.Path:
    """A kubeconfig with the token Kubernetes 1.20 keeps in the ServiceAccount's token Secret (read as admin)."""
    core = client.CoreV1Api(kube)
    sa = wait_for(lambda: (lambda s: s if s.secrets else None)(
                      core.read_namespaced_service_account(account, namespace)),
                  message=f"a token Secret for {namespace}/{account}")
    secret = core.read_namespaced_secret(sa.secrets[0].name, namespace)
    token = base64.b64decode(secret.data["token"]).decode()
    server = yaml.safe_load(pathlib.Path(cluster).read_text())["clusters"][0]["cluster"]["server"]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority-data": secret.data["ca.crt"]}}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": account, "namespace": namespace}}]}))
    return path


def can(api, verb: str, group: str, resource: str, namespace: str = "", name: str = "") -> bool:
    """SelfSubjectAccessReview as the client's account."""
    resource, _, sub = resource.partition("/")
    attrs = {"verb": verb, "group": group, "resource": resource, "subresource": sub, "namespace": namespace,
             "name": name}
    code, body = request(api, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                         body={"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                               "spec": {"resourceAttributes": attrs}})
    assert code == 201, body
    return bool(body["status"].get("allowed"))


def audit_entries(path: pathlib.Path, since: int) -> list[dict]:
    """Write requests from the local API server's audit log, from byte `since` on, by anyone."""
    return [{**w, "agent": w["agent"] or "",
             "resource": (w["resource"] or "") + (f"/{w['subresource']}" if w["subresource"] else "")}
            for w in AuditLog(path).writes(since, agent="")]


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def helm(cluster, tmp_path_factory):
    from mlops_localcluster import helm as helm_install

    path = helm_install.find()
    if path is None:
        pytest.skip("no helm (make deps installs it into ~/.cache/mlops-operator)")
    return Helm(str(path), cluster, tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="module")
def spaces(kube):
    """The release's namespace, the namespace it serves, and one for the upgrade to add."""
    core = client.CoreV1Api(kube)
    suffix = uuid.uuid4().hex[:5]
    names = {"ops": f"chart-ops-{suffix}", "app": f"chart-app-{suffix}", "app2": f"chart-app2-{suffix}"}
    for name in names.values():
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
            name=name, labels={"mlops.dev/test": "true"})))
    yield names
    for name in names.values():
        core.delete_namespace(name)


@pytest.fixture(scope="module")
def release(helm, spaces, crds):
    name = f"mlops-{uuid.uuid4().hex[:4]}"
    out = helm("install", name, str(CHART), "--namespace", spaces["ops"], "--set", "image.tag=test",
               "--set", f"watchNamespaces={{{spaces['app']}}}")
    yield {"name": name, "namespace": spaces["ops"], "account": f"{name}-mlops-operator", "install": out}
    helm("uninstall", name, "--namespace", spaces["ops"], check=False)


@pytest.fixture(scope="module")
def chart_operator(kube, cluster, release, local_cluster, tmp_path_factory):
    """`mlops-operator run` on this host with the chart's arguments, environment and ServiceAccount token.
    Other operators of this session are paused meanwhile, so this one alone acts in the served namespace."""
    deployment = client.AppsV1Api(kube).read_namespaced_deployment(release["account"], release["namespace"])
    c = deployment.spec.template.spec.containers[0]
    assert c.args[0] == "run"
    # the chart's flags, with the metrics and liveness servers on loopback (OperatorProcess adds the metrics one)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        health = sock.getsockname()[1]
    args = [a for a in c.args[1:] if not a.startswith("--metrics-bind-address")]
    args = [f"--liveness=http://127.0.0.1:{health}/healthz" if a.startswith("--liveness") else a for a in args]
    env = {e.name: e.value for e in c.env if e.value is not None}
    env["POD_NAME"], env["POD_NAMESPACE"] = f"{release['account']}-on-host", release["namespace"]
    root = tmp_path_factory.mktemp("chart-operator")
    kubeconfig = account_kubeconfig(kube, cluster, release["namespace"], release["account"], root / "kubeconfig")
    paused = list(OperatorProcess.running)
    for proc in paused:
        proc.stop()
    audit_since = local_cluster.audit_log.stat().st_size if local_cluster is not None else None
    proc = OperatorProcess(str(kubeconfig), cluster_dir() / "logs" / f"operator-chart-{release['name']}.log",
                           run_args=args, env=env)
    proc.start()
    proc.health_url = f"http://127.0.0.1:{health}/healthz"
    proc.audit_since = audit_since
    proc.username = f"system:serviceaccount:{release['namespace']}:{release['account']}"
    yield proc
    proc.stop()
    for other in paused:
        other.start()


@pytest.fixture(scope="module")
def as_operator(chart_operator):
    return config.new_client_from_config(config_file=chart_operator.kubeconfig)


# ---------------------------------------------------------------- the examples, rewritten for this machine

def load_examples() -> dict[str, list[dict]]:
    return {p.stem: [d for d in yaml.safe_load_all(p.read_text()) if d]
            for p in sorted((ROOT / "examples").glob("*.yaml"))}


def write_drift_data(root: pathlib.Path) -> dict[str, str]:
    rng = np.random.default_rng(11)
    now = datetime.now(timezone.utc)
    reference = pa.table({"amount": rng.normal(50, 10, 2000),
                          "country": rng.choice(["us", "de", "fr"], 2000, p=[0.6, 0.3, 0.1]),
                          "merchant_category": rng.choice(["food", "travel", "games"], 2000)})
    live = pa.table({"amount": rng.normal(80, 10, 1000),
                     "country": rng.choice(["us", "de", "fr"], 1000, p=[0.2, 0.3, 0.5]),
                     "merchant_category": rng.choice(["food", "travel", "games"], 1000),
                     "timestamp": [(now - timedelta(minutes=int(m))).strftime("%Y-%m-%dT%H:%M:%SZ")
                                   for m in rng.integers(0, 120, 1000)]})
    pq.write_table(reference, root / "train.parquet")
    pq.write_table(live, root / "predictions.parquet")
    return {"reference": f"file://{root / 'train.parquet'}", "log": f"file://{root / 'predictions.parquet'}"}


def localize(doc: dict, files: dict[str, str]) -> dict:
    """The example with storage URIs on this machine (the fetcher and the runner run as local processes here)."""
    doc = copy.deepcopy(doc)
    spec = doc["spec"]
    if doc["kind"] == "ModelDeployment":
        spec["model"]["uri"] = files["v1"]
        canary = (spec.get("rollout") or {}).get("canary")
        if canary and canary.get("model"):
            canary["model"]["uri"] = files["v2"]
        if (spec.get("monitoring") or {}).get("predictionLog"):
            spec["monitoring"]["predictionLog"]["uri"] = files["log"]
    elif doc["kind"] == "DriftMonitor":
        spec["reference"]["uri"] = files["reference"]
        spec["actions"]["alert"]["alertmanager"]["url"] = "http://127.0.0.1:9"  # nothing listens: AlertFailed
        spec["actions"]["retrain"]["template"]["output"]["modelUri"] = files["v3"]
    return doc


def get(kube, kind_plural: str, namespace: str, name: str) -> dict:
    code, body = request(kube, "GET", f"{GROUP_PATH}/namespaces/{namespace}/{kind_plural}/{name}")
    assert code == 200, body
    return body


def condition(obj: dict, type_: str) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), {})


def wait_obj(kube, plural: str, namespace: str, name: str, check, message: str, timeout: float = 60) -> dict:
    seen = {}

    def probe():
        seen["obj"] = get(kube, plural, namespace, name)
        return seen["obj"] if check(seen["obj"]) else None

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return seen["obj"]
        time.sleep(0.2)
    pytest.fail(f"{plural}/{name}: timed out after {timeout}s waiting for {message}; last status: "
                f"{json.dumps(seen['obj'].get('status'), indent=1)}")


def ready(obj: dict) -> bool:
    st = obj.get("status") or {}
    return st.get("observedGeneration") == obj["metadata"]["generation"] and condition(obj, "Ready").get(
        "status") == "True"


# ---------------------------------------------------------------- tests

def test_lint_and_template(helm):
    for sets in ([], ["replicas=2"], ["watchNamespaces={a,b}", "replicas=3"],
                 ["serviceMonitor.enabled=true", "prometheusRule.enabled=true"]):
        flags = [x for s in sets for x in ("--set", s)]
        out = helm("lint", "--strict", str(CHART), *flags)
        assert "0 chart(s) failed" in out.stdout
        rendered = helm("template", "rel", str(CHART), "--namespace", "ops", *flags).stdout
        assert [d for d in yaml.safe_load_all(rendered) if d]


def test_install_creates_the_operator_objects_and_keeps_shared_crds(kube, release, needs_simulator):
    ns, account = release["namespace"], release["account"]
    assert "STATUS: deployed" in release["install"].stdout
    assert "It serves the namespaces" in release["install"].stdout  # NOTES.txt
    core, apps, rbac = client.CoreV1Api(kube), client.AppsV1Api(kube), client.RbacAuthorizationV1Api(kube)
    assert core.read_namespaced_service_account(account, ns)
    assert core.read_namespaced_service(f"{account}-metrics", ns).spec.ports[0].port == 8080
    deployment = apps.read_namespaced_deployment(account, ns)
    assert deployment.spec.strategy.type == "Recreate"
    # the scheduler places the operator's pod and the node simulator reports it Ready (it cannot run it)
    wait_for(lambda: apps.read_namespaced_deployment(account, ns).status.available_replicas == 1,
             message="the operator Deployment available")
    assert not [r for r in rbac.list_cluster_role().items if r.metadata.name == account]
    ext = client.ApiextensionsV1Api(kube)
    for crd in ("modeldeployments.mlops.dev", "trainingjobs.mlops.dev", "driftmonitors.mlops.dev"):
        assert ext.read_custom_resource_definition(crd)


def test_liveness_endpoint_answers(chart_operator):
    import urllib.request

    def answers():
        try:
            return urllib.request.urlopen(chart_operator.health_url, timeout=5).status == 200
        except OSError:
            return False

    wait_for(answers, timeout=15, message="kopf's /healthz")


def test_every_example_reaches_its_expected_state_under_the_charts_rbac(kube, cluster, spaces, release,
                                                                         chart_operator, local_cluster,
                                                                         needs_simulator, tmp_path):
    ns = spaces["app"]
    core = client.CoreV1Api(kube)
    # The Secrets the examples name, made by their owner (as admin here); the operator never reads them.
    for secret in ("s3-credentials", "hf-token"):
        core.create_namespaced_secret(ns, client.V1Secret(metadata=client.V1ObjectMeta(name=secret),
                                                          string_data={"TOKEN": "not-a-real-one"}))
    files = write_drift_data(tmp_path)
    for version in ("v1", "v2", "v3"):
        path = tmp_path / "models" / version / "model.joblib"
        if version == "v3":  # the retraining's output: written by the job
            path.parent.mkdir(parents=True)
            path.write_bytes(f"model {version}".encode())
        else:  # served for real by MLServer (the quickstart's iris): a real scikit-learn model
            iris_model(path)
        files[version] = f"file://{path}"
    examples = load_examples()
    assert set(examples) == {"quickstart", "canary", "drift", "training"}, "a new example needs its expected state here"

    for stem in ("quickstart", "canary", "drift"):
        for doc in examples[stem]:
            apply(kube, {**localize(doc, files), "metadata": {**doc["metadata"], "namespace": ns}})

    # quickstart: both Ready (the CPU sklearn one and the one-GPU vLLM one), children made by the chart's account
    for name in ("iris", "chat"):
        wait_obj(kube, "modeldeployments", ns, name, ready, "Ready")
    # canary: the stable serves, the canary holds at its first step (10% asked, a five-minute pause); the status
    # reports the share really served: one canary replica next to four stable ones is 25%
    wait_obj(kube, "modeldeployments", ns, "fraud",
             lambda o: ready(o) and (o["status"].get("canary") or {}).get("step") == 0
             and o["status"]["canary"].get("weight", 0) > 0, "canary serving at step 0")
    assert client.AppsV1Api(kube).read_namespaced_deployment("fraud-canary", ns).spec.replicas == 1
    assert any(request(kube, "GET", f"/apis/policy/{v}/namespaces/{ns}/poddisruptionbudgets/fraud")[0] == 200
               for v in ("v1", "v1beta1"))
    # drift: the runner's ServiceAccount, Role, RoleBinding and CronJob exist; no check ran yet
    dm = wait_obj(kube, "driftmonitors", ns, "fraud",
                  lambda o: condition(o, "Ready").get("reason") == "AwaitingFirstCheck", "AwaitingFirstCheck")
    role = client.RbacAuthorizationV1Api(kube).read_namespaced_role("fraud-drift", ns)
    assert {tuple(r.resource_names) for r in role.rules} == {("fraud",)}

    # training: 2 workers x 8 GPUs cannot fit next to chat's GPU on two 8-GPU nodes: gang admission (nodes and
    # pods read cluster-wide with the chart's account) holds the gang without creating pods, saying why
    for doc in examples["training"]:
        apply(kube, {**doc, "metadata": {**doc["metadata"], "namespace": ns}})
    tj = wait_obj(kube, "trainingjobs", ns, "finetune-chat",
                  lambda o: condition(o, "Running").get("reason") == "InsufficientGPUs", "InsufficientGPUs")
    assert tj["status"]["phase"] == "Pending"
    assert "needs 2 workers x 8 nvidia.com/gpu" in condition(tj, "Running")["message"]
    request(kube, "DELETE", f"{GROUP_PATH}/namespaces/{ns}/trainingjobs/finetune-chat")  # give the GPUs back

    # One drift check, run the way the CronJob runs it but here, with the runner's own token: the real API server
    # enforces its Role. The prediction log drifted: the operator reacts, retrains, and promotes the result.
    runner = account_kubeconfig(kube, cluster, ns, "fraud-drift", tmp_path / "runner-kubeconfig")
    exe = pathlib.Path(sys.executable).with_name("mlops-operator")
    check = subprocess.run([str(exe), "drift-check", "--namespace", ns, "--name", "fraud"], capture_output=True,
                           text=True, timeout=120, env=dict(os.environ, KUBECONFIG=str(runner)))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "datasetDrift=True" in check.stdout
    dm = wait_obj(kube, "driftmonitors", ns, "fraud",
                  lambda o: condition(o, "DriftDetected").get("status") == "True" and o["status"].get("retrains"),
                  "drift detected and a retraining started")
    retrain = dm["status"]["retrains"][0]["trainingJob"]
    wait_obj(kube, "trainingjobs", ns, retrain, lambda o: (o.get("status") or {}).get("promotion"), "promoted")
    fraud = get(kube, "modeldeployments", ns, "fraud")
    # each retraining writes a folder of its own under the template's output
    own = files["v3"].replace("/v3/model.joblib", f"/v3/{retrain}/model.joblib")
    assert fraud["spec"]["rollout"]["canary"]["model"]["uri"] == own
    reasons = {e.reason for e in core.list_namespaced_event(ns).items if e.involved_object.name == "fraud"}
    assert {"DriftDetected", "AlertFailed", "RetrainStarted"} <= reasons

    # GitOps (docs/gitops.md): no one but the applier owns anything of an example outside status, except the
    # promotion's one field; no finalizers, no annotations were added.
    for plural, name in [("modeldeployments", "iris"), ("modeldeployments", "chat"), ("modeldeployments", "fraud"),
                         ("driftmonitors", "fraud")]:
        obj = get(kube, plural, ns, name)
        assert not obj["metadata"].get("finalizers") and not obj["metadata"].get("annotations"), obj["metadata"]
        for entry in obj["metadata"]["managedFields"]:
            if entry["manager"] == "mlops-tests":
                continue
            owned = set(entry.get("fieldsV1", {})) - {"f:status"}
            if (plural, name) == ("modeldeployments", "fraud") and owned:
                assert entry["fieldsV1"]["f:spec"] == {"f:rollout": {"f:canary": {"f:model": {"f:uri": {}}}}}
                assert owned == {"f:spec"}
            else:
                assert not owned, (name, entry)

    if local_cluster is None:
        return  # the audit log is the local API server's
    # No write of the chart's account was refused, and it made each kind of write the examples call for.
    entries = audit_entries(local_cluster.audit_log, chart_operator.audit_since)
    mine = [e for e in entries if e["user"] == chart_operator.username]
    refused = [e for e in mine if (e["code"] or 0) in (401, 403)]
    assert not refused, refused
    assert {e["namespace"] for e in mine} == {ns}
    # Another operator process with admin rights (a parallel test session on this shared cluster) may have made
    # some of them first; then only the refusals above are conclusive.
    others = {e["user"] for e in entries if e["namespace"] == ns and e["agent"].startswith("mlops-operator/")
              and e["user"] != chart_operator.username}
    if others:
        warnings.warn(f"other operators ({', '.join(sorted(others))}) also wrote in {ns}: write coverage not checked",
                      stacklevel=2)
        return
    done = {(e["verb"], e["resource"]) for e in mine}
    for write in [("patch", "deployments"), ("patch", "services"), ("patch", "poddisruptionbudgets"),
                  ("patch", "pods"), ("patch", "serviceaccounts"), ("patch", "roles"), ("patch", "rolebindings"),
                  ("patch", "cronjobs"), ("create", "trainingjobs"), ("patch", "modeldeployments"),
                  ("patch", "modeldeployments/status"), ("patch", "trainingjobs/status"),
                  ("patch", "driftmonitors/status"), ("create", "events")]:
        assert write in done, f"{write} not seen; the chart account wrote {sorted(done)}"


def test_the_operator_may_do_what_docs_rbac_lists_and_nothing_else(as_operator, spaces):
    table = rbac_table()
    resources = sorted({(g, r) for g, r, _ in table} | set(NEVER))
    wrong = []
    for group, resource in resources:
        for verb in VERBS:
            want = (group, resource, verb) in table
            if can(as_operator, verb, group, resource, spaces["app"]) != want:
                wrong.append((spaces["app"], group, resource, verb, want))
            # outside the served namespace: nothing at all, but gang admission's read-only list of pods
            if want and can(as_operator, verb, group, resource, spaces["app2"]) \
                    and (group, resource, verb) not in GANG_ADMISSION:
                wrong.append((spaces["app2"], group, resource, verb, False))
    for verb in ("escalate", "bind"):
        if can(as_operator, verb, "rbac.authorization.k8s.io", "roles", spaces["app"]):
            wrong.append((spaces["app"], "rbac", "roles", verb, False))
    for group, resource in [("apiextensions.k8s.io", "customresourcedefinitions"), ("", "namespaces"),
                            ("", "nodes"), ("rbac.authorization.k8s.io", "clusterroles")]:
        for verb in ("list", "create"):
            if can(as_operator, verb, group, resource) != ((group, resource, verb) in GANG_ADMISSION):
                wrong.append(("<cluster>", group, resource, verb, (group, resource, verb) in GANG_ADMISSION))
    assert not wrong, wrong


def test_the_drift_runner_may_read_its_monitor_and_write_its_status_only(kube, cluster, spaces, chart_operator,
                                                                         tmp_path):
    ns = spaces["app"]
    runner = config.new_client_from_config(
        config_file=str(account_kubeconfig(kube, cluster, ns, "fraud-drift", tmp_path / "kubeconfig")))
    allowed = [("get", "driftmonitors", "fraud"), ("get", "driftmonitors/status", "fraud"),
               ("patch", "driftmonitors/status", "fraud"), ("get", "modeldeployments", "fraud")]
    for verb, resource, name in allowed:
        assert can(runner, verb, "mlops.dev", resource, ns, name), (verb, resource, name)
    denied = [("get", "mlops.dev", "driftmonitors", "other"), ("list", "mlops.dev", "driftmonitors", ""),
              ("patch", "mlops.dev", "driftmonitors", "fraud"), ("get", "mlops.dev", "modeldeployments", "iris"),
              ("patch", "mlops.dev", "modeldeployments", "fraud"), ("create", "mlops.dev", "trainingjobs", ""),
              ("get", "", "secrets", "s3-credentials"), ("list", "", "pods", "")]
    for verb, group, resource, name in denied:
        assert not can(runner, verb, group, resource, ns, name), (verb, resource, name)


def test_cluster_wide_install_grants_the_rules_everywhere_and_may_make_the_runners_role(helm, kube, cluster, spaces,
                                                                                       tmp_path):
    name = f"wide-{uuid.uuid4().hex[:4]}"
    # two replicas: leader election on a Lease in the release's namespace, nothing of kopf's
    helm("install", name, str(CHART), "--namespace", spaces["ops"], "--set", "image.tag=test", "--set", "replicas=2")
    account = f"{name}-mlops-operator"
    try:
        api = config.new_client_from_config(config_file=str(
            account_kubeconfig(kube, cluster, spaces["ops"], account, tmp_path / "kubeconfig")))
        for namespace in (spaces["app2"], "default"):
            assert can(api, "watch", "apps", "deployments", namespace)
            assert can(api, "patch", "mlops.dev", "modeldeployments/status", namespace)
            assert not can(api, "get", "", "secrets", namespace)
        # kopf watches nothing: neither CRDs nor its peerings are needed
        assert not can(api, "watch", "apiextensions.k8s.io", "customresourcedefinitions")
        assert not can(api, "list", "kopf.dev", "clusterkopfpeerings")
        # the Lease: created, read and renewed by name in the release's namespace only
        assert can(api, "create", "coordination.k8s.io", "leases", spaces["ops"])
        for verb in ("get", "update"):
            assert can(api, verb, "coordination.k8s.io", "leases", spaces["ops"], account)
            assert not can(api, verb, "coordination.k8s.io", "leases", spaces["ops"], "another-lease")
            assert not can(api, verb, "coordination.k8s.io", "leases", spaces["app2"], account)
        # Kubernetes' escalation check, for real (a server-side dry run): the drift runner's Role is grantable...
        role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": "probe-drift", "namespace": spaces["app2"]},
                "rules": [{"apiGroups": ["mlops.dev"], "resources": ["driftmonitors"], "resourceNames": ["x"],
                           "verbs": ["get"]},
                          {"apiGroups": ["mlops.dev"], "resources": ["driftmonitors/status"], "resourceNames": ["x"],
                           "verbs": ["get", "patch"]},
                          {"apiGroups": ["mlops.dev"], "resources": ["modeldeployments"], "resourceNames": ["y"],
                           "verbs": ["get"]}]}
        path = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{spaces['app2']}/roles"
        code, body = request(api, "POST", path, body=role, query={"dryRun": "All"})
        assert code == 201, body
        # ... but a Role that would hand out Secrets is refused: the operator cannot grant what it does not hold
        role["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})
        code, body = request(api, "POST", path, body=role, query={"dryRun": "All"})
        assert code == 403 and "attempting to grant RBAC permissions not currently held" in body["message"], body
    finally:
        helm("uninstall", name, "--namespace", spaces["ops"])
    assert not [r for r in client.RbacAuthorizationV1Api(kube).list_cluster_role().items if r.metadata.name == account]


def test_upgrade_adds_a_namespace_and_uninstall_keeps_crds_and_resources(helm, kube, spaces, release,
                                                                        chart_operator):
    chart_operator.stop()  # its account goes with the release
    ns, account = release["namespace"], release["account"]
    ext = client.ApiextensionsV1Api(kube)
    crd_versions = {n: ext.read_custom_resource_definition(n).metadata.resource_version
                    for n in ("modeldeployments.mlops.dev", "trainingjobs.mlops.dev", "driftmonitors.mlops.dev")}
    helm("upgrade", release["name"], str(CHART), "--namespace", ns, "--reuse-values",
         "--set", f"watchNamespaces={{{spaces['app']},{spaces['app2']}}}")
    rbac, apps = client.RbacAuthorizationV1Api(kube), client.AppsV1Api(kube)
    assert rbac.read_namespaced_role(account, spaces["app2"])
    args = apps.read_namespaced_deployment(account, ns).spec.template.spec.containers[0].args
    assert f"--namespace={spaces['app2']}" in args and f"--namespace={spaces['app']}" in args
    assert "2" in helm("history", release["name"], "--namespace", ns).stdout

    helm("uninstall", release["name"], "--namespace", ns)
    wait_for(lambda: not apps.list_namespaced_deployment(ns).items, message="the operator Deployment gone")
    assert not client.CoreV1Api(kube).list_namespaced_service_account(
        ns, field_selector=f"metadata.name={account}").items
    for namespace in (spaces["app"], spaces["app2"]):
        assert not rbac.list_namespaced_role(namespace, field_selector=f"metadata.name={account}").items
    # Helm keeps CRDs (and so every custom resource): uninstalling the operator deletes no user data
    assert {n: ext.read_custom_resource_definition(n).metadata.resource_version for n in crd_versions} == crd_versions
    assert get(kube, "modeldeployments", spaces["app"], "iris")

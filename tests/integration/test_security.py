"""Least privilege and pod security on the real control plane: references never cross namespaces, secrets are only
referenced (never echoed into status, events or the operator's log), every pod the operator makes meets the Pod
Security "restricted" profile field by field, and no spec makes the operator write outside its own namespace
(every write in the API server's audit log, told apart from other operators by the pid in the user agent).

The module runs an operator of its own that serves only `sec-*` namespaces; the session's operators are stopped
meanwhile (and started again afterwards), so every write in those namespaces is this operator's.
"""

from __future__ import annotations

import base64
import json
import pathlib
import uuid

import pytest
from kubernetes import client

from conftest import OperatorProcess, cluster_dir
from helpers import apply, request, run_cronjob_now, wait_for

GROUP_PATH = "/apis/mlops.dev/v1alpha1"
PLURALS = {"ModelDeployment": "modeldeployments", "TrainingJob": "trainingjobs", "DriftMonitor": "driftmonitors"}
MARKER = f"sec-marker-{uuid.uuid4().hex}"  # a Secret's value that must never show up anywhere else


@pytest.fixture(scope="module")
def sec_operator(cluster, crds, needs_scheduler, needs_controller_manager, needs_simulator):
    paused = list(OperatorProcess.running)
    for proc in paused:
        proc.stop()
    proc = OperatorProcess(cluster, cluster_dir() / "logs" / "operator-security.log",
                           run_args=("--standalone", "--namespace", "sec-*"))
    proc.start()
    yield proc
    proc.stop()
    for other in paused:
        other.start()


@pytest.fixture
def ns(kube, sec_operator):
    core = client.CoreV1Api(kube)
    name = f"sec-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(
        metadata=client.V1ObjectMeta(name=name, labels={"mlops.dev/test": "true"})))
    wait_for(lambda: any(sa.metadata.name == "default" and sa.secrets
                         for sa in core.list_namespaced_service_account(name).items),
             timeout=30, message="default ServiceAccount token")
    yield name
    core.delete_namespace(name)


def manifest(kind: str, ns: str, name: str, spec: dict) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": kind, "metadata": {"name": name, "namespace": ns},
            "spec": spec}


def get(kube, kind: str, ns: str, name: str) -> dict:
    code, body = request(kube, "GET", f"{GROUP_PATH}/namespaces/{ns}/{PLURALS[kind]}/{name}")
    assert code == 200, body
    return body


def ready(obj: dict) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), {})


def wait_ready(kube, kind: str, ns: str, name: str, status: str, reason: str | None = None) -> dict:
    def check():
        obj = get(kube, kind, ns, name)
        cond = ready(obj)
        if (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"] and \
                cond.get("status") == status and (reason is None or cond.get("reason") == reason):
            return obj
        return None

    return wait_for(check, timeout=60, message=f"{kind}/{name} Ready={status} {reason or ''}")


def md_spec(tmp: pathlib.Path, **extra) -> dict:
    model = tmp / "model.joblib"
    model.write_bytes(b"model")
    return {"model": {"uri": f"file://{model}"}, "runtime": {"preset": "sklearn"}, "replicas": 1,
            "resources": {"cpu": "50m", "memory": "64Mi"}, **extra}


TJ_SPEC = {"image": "trainer:1", "command": ["python", "train.py"], "workers": 1,
           "resources": {"cpu": "50m", "memory": "64Mi"}, "podAnnotations": {"sim.mlops.dev/run-seconds": "30"}}


def dm_spec(tmp: pathlib.Path, **extra) -> dict:
    return {"modelDeployment": {"name": "md"}, "reference": {"uri": f"file://{tmp}/reference.parquet"},
            "schedule": "0 0 1 1 *", **extra}


# ------------------------------------------------------------------------------------------------ namespaces

@pytest.mark.parametrize("kind, field, spec", [
    ("ModelDeployment", "spec.model.secretRef.namespace",
     lambda t: md_spec(t, model={"uri": "s3://bucket/m", "secretRef": {"name": "creds", "namespace": "other"}})),
    ("ModelDeployment", "spec.runtime.env[0].valueFrom.secretKeyRef.namespace",
     lambda t: md_spec(t, runtime={"preset": "sklearn", "env": [{"name": "TOKEN", "valueFrom": {
         "secretKeyRef": {"name": "creds", "key": "token", "namespace": "kube-system"}}}]})),
    ("ModelDeployment", "spec.monitoring.predictionLog.secretRef.namespace",
     lambda t: md_spec(t, monitoring={"predictionLog": {"uri": "s3://b/log", "secretRef": {
         "name": "creds", "namespace": "other"}}})),
    ("TrainingJob", "spec.dataset.secretRef.namespace",
     lambda t: {**TJ_SPEC, "dataset": {"uri": "s3://b/d", "secretRef": {"name": "creds", "namespace": "other"}}}),
    ("TrainingJob", "spec.promote.modelDeployment.namespace",
     lambda t: {**TJ_SPEC, "output": {"modelUri": "s3://b/out"},
                "promote": {"modelDeployment": {"name": "md", "namespace": "default"}}}),
    ("DriftMonitor", "spec.modelDeployment.namespace",
     lambda t: dm_spec(t, modelDeployment={"name": "md", "namespace": "default"})),
    ("DriftMonitor", "spec.reference.secretRef.namespace",
     lambda t: dm_spec(t, reference={"uri": "s3://b/r.parquet", "secretRef": {"name": "c", "namespace": "x"}})),
    ("DriftMonitor", "spec.actions.retrain.template.promote.modelDeployment.namespace",
     lambda t: dm_spec(t, actions={"retrain": {"template": {
         **TJ_SPEC, "output": {"modelUri": "s3://b/out"},
         "promote": {"modelDeployment": {"name": "md", "namespace": "prod"}}}}})),
])
def test_references_to_other_namespaces_are_invalid_and_create_nothing(kube, ns, tmp_path, kind, field, spec):
    apply(kube, manifest(kind, ns, "cross", spec(tmp_path)))
    obj = wait_ready(kube, kind, ns, "cross", "False", "InvalidSpec")
    assert field in ready(obj)["message"] and "namespace" in ready(obj)["message"]
    # nothing was made for it: no pods, Services, Deployments, CronJobs or runner RBAC
    for path in ("/api/v1/namespaces/{ns}/pods", "/api/v1/namespaces/{ns}/services",
                 "/apis/apps/v1/namespaces/{ns}/deployments", "/apis/batch/v1beta1/namespaces/{ns}/cronjobs",
                 "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"):
        code, body = request(kube, "GET", path.format(ns=ns), query={"labelSelector": "mlops.dev/" + kind.lower()})
        assert code == 200 and body["items"] == [], (path, [i["metadata"]["name"] for i in body["items"]])


# ------------------------------------------------------------------------------------------------ secrets

def test_secrets_are_referenced_never_echoed(kube, ns, tmp_path, sec_operator):
    core = client.CoreV1Api(kube)
    core.create_namespaced_secret(ns, client.V1Secret(metadata=client.V1ObjectMeta(name="creds"), data={
        "AWS_SECRET_ACCESS_KEY": base64.b64encode(MARKER.encode()).decode(),
        "token": base64.b64encode(MARKER.encode()).decode()}))
    log_start = sec_operator.log_path.stat().st_size
    # A model that cannot be fetched: the fetcher runs with the Secret in its environment and fails, and its
    # error is what the status reports (ModelFetchFailed) -- it must not carry the Secret's value.
    apply(kube, manifest("ModelDeployment", ns, "md", {
        **md_spec(tmp_path), "model": {"uri": f"file://{tmp_path}/missing", "secretRef": {"name": "creds"}},
        "runtime": {"preset": "sklearn", "env": [{"name": "TOKEN", "valueFrom": {
            "secretKeyRef": {"name": "creds", "key": "token"}}}]}}))
    apply(kube, manifest("TrainingJob", ns, "tj", {
        **TJ_SPEC, "dataset": {"uri": "s3://bucket/data", "secretRef": {"name": "creds"}},
        "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}]}))
    apply(kube, manifest("DriftMonitor", ns, "dm", dm_spec(tmp_path, reference={
        "uri": f"file://{tmp_path}/missing.parquet", "secretRef": {"name": "creds"}})))
    md = wait_ready(kube, "ModelDeployment", ns, "md", "False", "ModelFetchFailed")
    assert "missing" in ready(md)["message"]  # the fetcher's own error did reach the status
    wait_for(lambda: (get(kube, "TrainingJob", ns, "tj").get("status") or {}).get("phase") == "Running",
             message="tj Running")
    # The drift runner, run now from its CronJob, fails on the missing reference with the Secret in its env.
    run_cronjob_now(kube, ns, "dm-drift", "dm-now")
    dm = wait_for(lambda: (lambda d: d if (d.get("status") or {}).get("lastAttempt") else None)(
        get(kube, "DriftMonitor", ns, "dm")), timeout=90, message="a failed drift check")
    assert dm["status"]["lastAttempt"]["succeeded"] is False

    # Referenced by name only: the pods carry the Secret's name, never its value.
    pods = core.list_namespaced_pod(ns).items
    assert pods
    for pod in pods:
        text = json.dumps(client.ApiClient().sanitize_for_serialization(pod.spec))
        assert MARKER not in text, pod.metadata.name
        assert "creds" in text, pod.metadata.name  # ... and the reference is there (the test is not vacuous)
    for kind, name in (("ModelDeployment", "md"), ("TrainingJob", "tj"), ("DriftMonitor", "dm")):
        assert MARKER not in json.dumps(get(kube, kind, ns, name).get("status")), kind
    events = core.list_namespaced_event(ns).items
    assert events and not [e.message for e in events if MARKER in (e.message or "")]
    with open(sec_operator.log_path, "rb") as log:
        log.seek(log_start)
        assert MARKER.encode() not in log.read()


# ------------------------------------------------------------------------------------------------ pod security

RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


def restricted_violations(spec: dict, annotations: dict | None = None) -> list[str]:
    """Where a pod spec (API JSON) breaks the Pod Security "restricted" profile (which includes "baseline"),
    one check per field of https://kubernetes.io/docs/concepts/security/pod-security-standards/."""
    out = []
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            out.append(f"{field}: true")
    pod_sc = spec.get("securityContext") or {}
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if "hostPath" in kinds:
            out.append(f"volume {volume['name']}: hostPath")
        if kinds - RESTRICTED_VOLUMES:
            out.append(f"volume {volume['name']}: type {sorted(kinds - RESTRICTED_VOLUMES)} not allowed")
    for key, value in (annotations or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and \
                not (value == "runtime/default" or value.startswith("localhost/")):
            out.append(f"annotation {key}: {value}")
        if key.startswith(("seccomp.security.alpha.kubernetes.io/", "container.seccomp.security.alpha")) and \
                value not in ("runtime/default", "docker/default") and not value.startswith("localhost/"):
            out.append(f"annotation {key}: {value}")
    if (pod_sc.get("seLinuxOptions") or {}).get("type") not in (None, "", "container_t", "container_init_t",
                                                                 "container_kvm_t"):
        out.append("pod seLinuxOptions.type")
    for sysctl in pod_sc.get("sysctls") or []:
        out.append(f"sysctl {sysctl.get('name')}")
    if pod_sc.get("runAsUser") == 0:
        out.append("pod runAsUser 0")
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or []),
                  *(spec.get("ephemeralContainers") or [])]
    for c in containers:
        sc = c.get("securityContext") or {}
        where = f"container {c['name']}"
        if sc.get("privileged"):
            out.append(f"{where}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{where}: allowPrivilegeEscalation is not false")
        if not (sc.get("runAsNonRoot") is True or (pod_sc.get("runAsNonRoot") is True
                                                    and sc.get("runAsNonRoot") is not False)):
            out.append(f"{where}: runAsNonRoot is not true")
        if sc.get("runAsUser") == 0:
            out.append(f"{where}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{where}: seccompProfile {seccomp}")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{where}: capabilities do not drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{where}: capabilities add {caps.get('add')}")
        if (sc.get("procMount") or "Default") != "Default":
            out.append(f"{where}: procMount {sc.get('procMount')}")
        if (sc.get("seLinuxOptions") or {}).get("type") not in (None, "", "container_t", "container_init_t",
                                                                 "container_kvm_t"):
            out.append(f"{where}: seLinuxOptions.type")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            out.append(f"{where}: hostProcess")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                out.append(f"{where}: hostPort {port['hostPort']}")
    return out


def test_the_checker_catches_each_violation():
    """restricted_violations must fail on each field it claims to check (a checker that cannot fail is void)."""
    good = {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "m", "emptyDir": {}}],
            "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": False,
                                                             "capabilities": {"drop": ["ALL"]}}}]}
    assert restricted_violations(good) == []
    c = good["containers"][0]
    bad = [{**good, "hostNetwork": True}, {**good, "hostPID": True}, {**good, "hostIPC": True},
           {**good, "volumes": [{"name": "h", "hostPath": {"path": "/"}}]},
           {**good, "volumes": [{"name": "n", "nfs": {"server": "x", "path": "/"}}]},
           {**good, "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}},
           {**good, "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "Unconfined"}}},
           {**good, "containers": [{**c, "securityContext": {**c["securityContext"], "privileged": True}}]},
           {**good, "containers": [{**c, "securityContext": {"capabilities": {"drop": ["ALL"]}}}]},
           {**good, "containers": [{**c, "securityContext": {"allowPrivilegeEscalation": False}}]},
           {**good, "containers": [{**c, "securityContext": {
               **c["securityContext"], "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}}]},
           {**good, "containers": [{**c, "ports": [{"containerPort": 80, "hostPort": 80}]}]},
           {**good, "initContainers": [{"name": "i"}]}]
    for spec in bad:
        assert restricted_violations(spec), spec
    assert restricted_violations(good, {"container.apparmor.security.beta.kubernetes.io/c": "unconfined"})
    ok = {**good, "containers": [{**c, "securityContext": {
        **c["securityContext"], "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}]}
    assert restricted_violations(ok) == []


def _pod_specs(kube, ns: str) -> dict[str, tuple[dict, dict]]:
    api = client.ApiClient()
    return {p.metadata.name: (api.sanitize_for_serialization(p.spec), p.metadata.annotations or {})
            for p in client.CoreV1Api(kube).list_namespaced_pod(ns).items}


def test_every_generated_pod_meets_the_restricted_profile(kube, ns, tmp_path):
    """Serving pods (with the fetch-model init container, GPUs, a pvc:// model, a ServiceAccount), training
    workers (CPU and GPU) and the drift runner's pods, as the API server stored them."""
    client.CoreV1Api(kube).create_namespaced_service_account(ns, client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name="server")))
    apply(kube, manifest("ModelDeployment", ns, "plain", md_spec(tmp_path)))
    apply(kube, manifest("ModelDeployment", ns, "gpu", md_spec(tmp_path, resources={
        "cpu": "50m", "memory": "64Mi", "gpu": {"count": 1}}, serviceAccountName="server")))
    apply(kube, manifest("ModelDeployment", ns, "pvc", md_spec(tmp_path, model={"uri": "pvc://models/llm"})))
    apply(kube, manifest("TrainingJob", ns, "cpu", {**TJ_SPEC, "workers": 2}))
    apply(kube, manifest("TrainingJob", ns, "train-gpu", {**TJ_SPEC, "resources": {"gpu": {"count": 2}}}))
    apply(kube, manifest("DriftMonitor", ns, "dm", dm_spec(tmp_path)))
    wait_ready(kube, "ModelDeployment", ns, "plain", "True")
    wait_ready(kube, "ModelDeployment", ns, "gpu", "True")
    run_cronjob_now(kube, ns, "dm-drift", "dm-now")

    def all_pods():
        specs = _pod_specs(kube, ns)
        names = " ".join(specs)
        wanted = ("plain-", "gpu-", "pvc-", "cpu-w0-a1", "cpu-w1-a1", "train-gpu-w0-a1", "dm-now-")
        return specs if all(w in names for w in wanted) else None

    specs = wait_for(all_pods, timeout=60, message="a pod of every kind")
    problems = {name: restricted_violations(spec, ann) for name, (spec, ann) in specs.items()}
    assert not {n: p for n, p in problems.items() if p}, problems
    # the pod kinds the claim is about are all among them
    server = next(spec for name, (spec, _) in specs.items() if name.startswith("plain-"))
    assert [c["name"] for c in server["initContainers"]] == ["fetch-model"]
    pvc = next(n for n in specs if n.startswith("pvc-"))
    assert any("persistentVolumeClaim" in v for v in specs[pvc][0]["volumes"])


def test_pod_annotations_cannot_weaken_pod_security(kube, ns, tmp_path):
    """podAnnotations pass through to pods, and some annotations are security settings (AppArmor, the
    pre-1.19 seccomp ones): those that weaken the profile make the spec invalid, and nothing is created."""
    weak = {"container.apparmor.security.beta.kubernetes.io/server": "unconfined"}
    apply(kube, manifest("ModelDeployment", ns, "weak", md_spec(tmp_path, podAnnotations=weak)))
    apply(kube, manifest("TrainingJob", ns, "weak", {**TJ_SPEC, "podAnnotations": {
        "seccomp.security.alpha.kubernetes.io/pod": "unconfined"}}))
    for kind in ("ModelDeployment", "TrainingJob"):
        obj = wait_ready(kube, kind, ns, "weak", "False", "InvalidSpec")
        assert "podAnnotations" in ready(obj)["message"]
    assert client.CoreV1Api(kube).list_namespaced_pod(ns).items == []
    # The profile's own values stay allowed.
    apply(kube, manifest("ModelDeployment", ns, "ok", md_spec(tmp_path, podAnnotations={
        "container.apparmor.security.beta.kubernetes.io/server": "runtime/default"})))
    wait_ready(kube, "ModelDeployment", ns, "ok", "True")


# ------------------------------------------------------------------------------------------------ writes

def test_no_spec_makes_the_operator_write_outside_its_namespace(kube, ns, tmp_path, sec_operator, audit):
    """Hostile specs of all three kinds -- references into other namespaces, names of objects elsewhere, a
    retraining and a promotion -- and valid ones; afterwards every write this operator made is in `ns`."""
    # Earlier tests' namespaces (sec-*, served too) may still be terminating: the operator finishing with the
    # objects there (its applies refused, its clean-up of deleted owners' children) is not this test's doing.
    earlier = {n.metadata.name for n in client.CoreV1Api(kube).list_namespace().items
               if n.metadata.name.startswith("sec-") and n.metadata.name != ns}
    mark = audit.mark()
    apply(kube, manifest("ModelDeployment", ns, "md", md_spec(tmp_path, replicas=2)))
    apply(kube, manifest("ModelDeployment", ns, "evil", md_spec(
        tmp_path, model={"uri": "s3://b/m", "secretRef": {"name": "creds", "namespace": "kube-system"}})))
    apply(kube, manifest("TrainingJob", ns, "promoter", {
        **TJ_SPEC, "podAnnotations": {"sim.mlops.dev/run-seconds": "1"}, "output": {"modelUri": "s3://b/new"},
        "promote": {"modelDeployment": {"name": "md"}, "as": "canary"}}))
    apply(kube, manifest("TrainingJob", ns, "evil", {
        **TJ_SPEC, "output": {"modelUri": "s3://b/new"},
        "promote": {"modelDeployment": {"name": "md", "namespace": "default"}}}))
    apply(kube, manifest("DriftMonitor", ns, "dm", dm_spec(tmp_path)))
    apply(kube, manifest("DriftMonitor", ns, "evil", dm_spec(tmp_path, modelDeployment={
        "name": "kube-dns", "namespace": "kube-system"})))
    wait_ready(kube, "ModelDeployment", ns, "evil", "False", "InvalidSpec")
    wait_ready(kube, "TrainingJob", ns, "evil", "False", "InvalidSpec")
    wait_ready(kube, "DriftMonitor", ns, "evil", "False", "InvalidSpec")
    wait_for(lambda: ((get(kube, "TrainingJob", ns, "promoter").get("status") or {}).get("promotion")),
             timeout=60, message="the promotion")
    wait_for(lambda: request(kube, "GET", f"/apis/batch/v1beta1/namespaces/{ns}/cronjobs/dm-drift")[0] == 200,
             message="runner CronJob")
    writes = [w for w in audit.writes(mark) if w["agent"] == sec_operator.agent]
    assert writes, "the operator wrote nothing (the audit filter would make this test vacuous)"
    outside = [w for w in writes if w["namespace"] != ns and w["namespace"] not in earlier]
    assert not outside, outside[:10]
    kinds = {w["resource"] for w in writes}
    assert {"deployments", "services", "events", "modeldeployments"} <= kinds, kinds


"""The children of a DriftMonitor, pure: the runner's ServiceAccount, its Role and RoleBinding (read this
DriftMonitor and its ModelDeployment, write this DriftMonitor's status; nothing else), and the CronJob that runs
`mlops-operator drift-check` on the schedule; and the Job from that CronJob's template that the run-now annotation
asks for."""

from __future__ import annotations

import hashlib
from typing import Any

from ..api.common import duration_seconds
from ..api.driftmonitor import DRIFT_MONITOR, RUN_NOW_ANNOTATION, DriftMonitorSpec, interval_cron
from ..k8s.client import resource_path
from ..k8s.labels import labels
from ..k8s.ownership import owner_reference
from ..podspec import security
from ..settings import Settings

KIND = DRIFT_MONITOR.kind
RUNNER = "drift-runner"


def runner_name(name: str) -> str:
    return f"{name}-drift"


def schedule(spec: DriftMonitorSpec) -> str | None:
    if spec.schedule:
        return spec.schedule
    assert spec.interval is not None, "validation requires schedule or interval"
    return interval_cron(duration_seconds(spec.interval))


def _meta(body: dict, name: str, component: str) -> dict[str, Any]:
    md = body["metadata"]
    return {"name": name, "namespace": md["namespace"], "labels": labels(KIND, md["name"], component),
            "ownerReferences": [owner_reference(body)]}


def service_account(body: dict) -> dict:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": _meta(body, runner_name(body["metadata"]["name"]), RUNNER)}


def role(body: dict, spec: DriftMonitorSpec) -> dict:
    name = body["metadata"]["name"]
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": _meta(body, runner_name(name), RUNNER),
            "rules": [
                {"apiGroups": ["mlops.dev"], "resources": ["driftmonitors"], "resourceNames": [name], "verbs": ["get"]},
                {"apiGroups": ["mlops.dev"], "resources": ["driftmonitors/status"], "resourceNames": [name],
                 "verbs": ["get", "patch"]},
                {"apiGroups": ["mlops.dev"], "resources": ["modeldeployments"],
                 "resourceNames": [spec.model_deployment.name], "verbs": ["get"]},
            ]}


def role_binding(body: dict) -> dict:
    name = runner_name(body["metadata"]["name"])
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta(body, name, RUNNER),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": body["metadata"]["namespace"]}]}


def cron_job(body: dict, spec: DriftMonitorSpec, api_version: str, settings: Settings) -> dict:
    md = body["metadata"]
    name = runner_name(md["name"])
    container: dict[str, Any] = {
        "name": "drift-check", "image": settings.operator_image,
        "command": ["mlops-operator", "drift-check", "--namespace", md["namespace"], "--name", md["name"]],
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
        "securityContext": security.container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    secrets = [ref.name for ref in (spec.reference.secret_ref, spec.current.secret_ref if spec.current else None)
               if ref is not None]
    if secrets:
        container["envFrom"] = [{"secretRef": {"name": s}} for s in dict.fromkeys(secrets)]
    pod_labels = labels(KIND, md["name"], RUNNER)
    return {"apiVersion": api_version, "kind": "CronJob", "metadata": _meta(body, name, RUNNER), "spec": {
        "schedule": schedule(spec),
        "concurrencyPolicy": "Forbid",
        "successfulJobsHistoryLimit": 1,
        "failedJobsHistoryLimit": 1,
        "jobTemplate": {"metadata": {"labels": pod_labels}, "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"labels": pod_labels}, "spec": {
                "serviceAccountName": name,
                "automountServiceAccountToken": True,  # the runner reads its DriftMonitor and writes its status
                "restartPolicy": "Never",
                "securityContext": security.pod_security_context(),
                "containers": [container],
            }}}}}}


def runner_paths(namespace: str, name: str, cron_api_version: str) -> list[str]:
    """Where the runner's objects of monitor `name` are."""
    runner = runner_name(name)
    return [resource_path("v1", "ServiceAccount", namespace, runner),
            resource_path("rbac.authorization.k8s.io/v1", "Role", namespace, runner),
            resource_path("rbac.authorization.k8s.io/v1", "RoleBinding", namespace, runner),
            resource_path(cron_api_version, "CronJob", namespace, runner)]


def desired(body: dict, spec: DriftMonitorSpec, cron_api_version: str, settings: Settings) -> dict[str, dict]:
    return {"serviceaccount": service_account(body), "role": role(body, spec), "rolebinding": role_binding(body),
            "cronjob": cron_job(body, spec, cron_api_version, settings)}


def run_now_job(body: dict, cron: dict, token: str) -> dict:
    """A Job from the CronJob's template, for the run-now annotation's value `token`: what `kubectl create job
    --from=cronjob/...` does, named after the token so that it is created once per value."""
    digest = hashlib.sha256(token.encode()).hexdigest()[:10]
    template = cron["spec"]["jobTemplate"]
    md = body["metadata"]
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": f"{runner_name(md['name'])[:48]}-now-{digest}", "namespace": md["namespace"],
                         "labels": template["metadata"]["labels"],
                         "annotations": {RUN_NOW_ANNOTATION: token[:253]},
                         "ownerReferences": [owner_reference(body)]},
            "spec": template["spec"]}

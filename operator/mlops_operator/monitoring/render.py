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


def secret_names(spec: DriftMonitorSpec, model_deployment: dict | None) -> list[str]:
    """The Secrets the runner's environment comes from: the reference's and the current data's, and the
    ModelDeployment's own where the check reads what it wrote or serves (its prediction log when current.uri is
    omitted, its model's folder for reference.fromModel) and the DriftMonitor names no Secret for it."""
    md_spec = (model_deployment or {}).get("spec") or {}
    log_secret = (((md_spec.get("monitoring") or {}).get("predictionLog") or {}).get("secretRef") or {}).get("name")
    model_secret = ((md_spec.get("model") or {}).get("secretRef") or {}).get("name")
    current = spec.current
    names = [
        spec.reference.secret_ref.name if spec.reference.secret_ref else
        (model_secret if spec.reference.from_model else None),
        current.secret_ref.name if current and current.secret_ref else
        (log_secret if not (current and current.uri) else None),
    ]
    return list(dict.fromkeys(n for n in names if n))


def cron_job(body: dict, spec: DriftMonitorSpec, api_version: str, settings: Settings,
             model_deployment: dict | None = None) -> dict:
    md = body["metadata"]
    name = runner_name(md["name"])
    container: dict[str, Any] = {
        "name": "drift-check", "image": settings.operator_image,
        "command": ["mlops-operator", "drift-check", "--namespace", md["namespace"], "--name", md["name"]],
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
        "securityContext": security.container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    secrets = secret_names(spec, model_deployment)
    if secrets:
        container["envFrom"] = [{"secretRef": {"name": s}} for s in secrets]
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


def desired(body: dict, spec: DriftMonitorSpec, cron_api_version: str, settings: Settings,
            model_deployment: dict | None = None) -> dict[str, dict]:
    return {"serviceaccount": service_account(body), "role": role(body, spec), "rolebinding": role_binding(body),
            "cronjob": cron_job(body, spec, cron_api_version, settings, model_deployment)}


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

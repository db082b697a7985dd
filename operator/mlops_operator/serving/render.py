"""The children of a ModelDeployment as plain dicts, from the parsed spec and the canary plan. Pure: no I/O.

- Deployment `<name>` (the stable track) and, during a canary, Deployment `<name>-canary`;
- Service `<name>` selecting both tracks, so traffic follows the replica ratio;
- HorizontalPodAutoscaler `<name>` when autoscaling is set (it then owns the stable's replica count);
- PodDisruptionBudget `<name>` when more than one stable replica runs.

Every serving pod runs the inference agent beside the model server unless spec.agent.enabled is false
(serving/sidecar.py): the Service reaches the agent, which forwards to the server on 127.0.0.1.

Rollout strategy from the GPU request: GPU pods replace one pod at a time (maxSurge 0, maxUnavailable 1), since a
surge pod on a full GPU pool would wait forever for a GPU and stall the rollout; CPU pods surge one extra pod and
never go below the ready count (maxSurge 1, maxUnavailable 0).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..api.modeldeployment import MODEL_DEPLOYMENT, Model, ModelDeploymentSpec, RuntimeOverrides
from ..k8s.labels import labels, selector_labels
from ..k8s.ownership import owner_reference
from ..podspec import gpu, security
from ..podspec.storage import ephemeral_storage, model_storage
from ..settings import Settings
from . import sidecar
from .canary import CanaryPlan
from .runtimes import resolve

KIND = MODEL_DEPLOYMENT.kind
TRACK = "mlops.dev/track"
MODEL_URI_ANNOTATION = "mlops.dev/model-uri"
SERVER = "server"
HTTP_PORT = 80


@dataclasses.dataclass(frozen=True)
class ApiVersions:
    hpa: str = "autoscaling/v2"
    pdb: str = "policy/v1"


def canary_name(name: str) -> str:
    return f"{name}-canary"


def url(name: str, namespace: str, settings: Settings) -> str:
    return f"http://{name}.{namespace}.svc.{settings.cluster_domain}"


def _meta(body: dict, name: str, component: str, extra_labels: dict | None = None) -> dict[str, Any]:
    md = body["metadata"]
    return {"name": name, "namespace": md["namespace"],
            "labels": {**labels(KIND, md["name"], component), **(extra_labels or {})},
            "ownerReferences": [owner_reference(body)]}


def pod_template(body: dict, spec: ModelDeploymentSpec, model: Model, overrides: RuntimeOverrides | None,
                 track: str, settings: Settings, annotations: dict[str, str]) -> dict[str, Any]:
    name = body["metadata"]["name"]
    runtime = resolve(spec.runtime, name, settings, overrides, model)
    volumes, init_containers, model_mount = model_storage(model, settings.operator_image)
    mounts = [model_mount]
    shm = gpu.shm(spec.resources)
    if shm:
        volumes.append(shm[0])
        mounts.append(shm[1])
    with_agent = spec.agent.enabled
    container: dict[str, Any] = {
        "name": SERVER,
        "image": runtime.image,
        "ports": [{"name": sidecar.SERVER_PORT_NAME if with_agent else sidecar.PORT_NAME,
                   "containerPort": runtime.port, "protocol": "TCP"}],
        "readinessProbe": runtime.probe,
        "livenessProbe": runtime.liveness,
        "volumeMounts": mounts,
        "securityContext": security.container_security_context(),
    }
    if runtime.command:
        container["command"] = runtime.command
    if runtime.args:  # the API server drops an empty list: sending one would differ from what it keeps, forever
        container["args"] = runtime.args
    if runtime.env:
        container["env"] = runtime.env
    resources = gpu.container_resources(spec.resources)
    disk = ephemeral_storage(model)
    if disk:
        resources["requests"] = {**resources.get("requests", {}), **disk}
    if resources:
        container["resources"] = resources
    containers = [container]
    pod_annotations = {**annotations, MODEL_URI_ANNOTATION: model.uri}
    if with_agent:
        containers.append(sidecar.container(body, spec, model, track, runtime.port, settings))
        volumes += sidecar.volumes(spec)
        pod_annotations = {**sidecar.SCRAPE_ANNOTATIONS, **pod_annotations}  # the spec's own annotations win
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": bool(spec.service_account_name),  # "" names no account
        "securityContext": security.pod_security_context(),
        "containers": containers,
        "volumes": volumes,
        **gpu.pod_scheduling(spec.resources, spec.scheduling),
    }
    if with_agent:
        pod_spec["terminationGracePeriodSeconds"] = sidecar.TERMINATION_GRACE_SECONDS
    if init_containers:
        pod_spec["initContainers"] = init_containers
    if spec.service_account_name:
        pod_spec["serviceAccountName"] = spec.service_account_name
    return {
        "metadata": {"labels": {**labels(KIND, name, SERVER), TRACK: track}, "annotations": pod_annotations},
        "spec": pod_spec,
    }


def deployment(body: dict, spec: ModelDeploymentSpec, track: str, replicas: int | None, model: Model,
               overrides: RuntimeOverrides | None, settings: Settings,
               annotations: dict[str, str]) -> dict[str, Any]:
    md_name = body["metadata"]["name"]
    name = md_name if track == "stable" else canary_name(md_name)
    dep_spec: dict[str, Any] = {
        "selector": {"matchLabels": {**selector_labels(KIND, md_name, SERVER), TRACK: track}},
        "strategy": strategy(spec),
        "template": pod_template(body, spec, model, overrides, track, settings, annotations),
    }
    if replicas is not None:
        dep_spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": _meta(body, name, SERVER, {TRACK: track}), "spec": dep_spec}


def strategy(spec: ModelDeploymentSpec) -> dict[str, Any]:
    """GPU pods: one down, then one up (no surge pod waiting for a GPU the pool does not have); CPU pods: one
    up, then one down (never below the ready count)."""
    if gpu.gpu_count(spec.resources):
        return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def service(body: dict, spec: ModelDeploymentSpec | None = None) -> dict[str, Any]:
    """Targets each pod's port named http: the agent's, or the server's where no agent runs (serving/sidecar.py)."""
    name = body["metadata"]["name"]
    settings = spec.service if spec is not None else None  # None: ClusterIP
    port: dict[str, Any] = {"name": "http", "port": HTTP_PORT, "targetPort": sidecar.PORT_NAME, "protocol": "TCP"}
    if settings is not None and settings.type == "NodePort" and settings.node_port:
        port["nodePort"] = settings.node_port
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(body, name, "service"),
            "spec": {"type": settings.type if settings else "ClusterIP",
                     "selector": selector_labels(KIND, name, SERVER), "ports": [port]}}


def hpa(body: dict, spec: ModelDeploymentSpec, api_version: str) -> dict[str, Any]:
    scaling = spec.autoscaling
    assert scaling is not None, "an HPA is rendered only with spec.autoscaling"
    if scaling.metric is not None:
        metric = {"type": "Pods", "pods": {"metric": {"name": scaling.metric.name},
                                           "target": {"type": "AverageValue",
                                                      "averageValue": str(scaling.metric.target)}}}
    else:
        metric = {"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": scaling.target_cpu_utilization or 80}}}
    name = body["metadata"]["name"]
    return {"apiVersion": api_version, "kind": "HorizontalPodAutoscaler", "metadata": _meta(body, name, "autoscaler"),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "minReplicas": scaling.min_replicas, "maxReplicas": scaling.max_replicas,
                     "metrics": [metric]}}


def pdb(body: dict, api_version: str) -> dict[str, Any]:
    name = body["metadata"]["name"]
    return {"apiVersion": api_version, "kind": "PodDisruptionBudget",
            "metadata": _meta(body, name, "disruption-budget"),
            "spec": {"maxUnavailable": 1,
                     "selector": {"matchLabels": {**selector_labels(KIND, name, SERVER), TRACK: "stable"}}}}


def _canary_annotations(spec: ModelDeploymentSpec) -> dict[str, str]:
    canary = spec.rollout.canary if spec.rollout else None
    if canary is not None and canary.pod_annotations is not None:
        return canary.pod_annotations
    return spec.pod_annotations


def promoted_template(body: dict, spec: ModelDeploymentSpec, settings: Settings) -> dict[str, Any] | None:
    """The stable pod template once the canary is promoted (its model, runtime and annotations), or None without
    a canary: a stable Deployment running it has taken the promotion, whatever the canary changed."""
    canary = spec.rollout.canary if spec.rollout else None
    if canary is None or canary.model is None:
        return None
    return pod_template(body, spec, canary.model, canary.runtime, "stable", settings, _canary_annotations(spec))


def desired(body: dict, spec: ModelDeploymentSpec, plan: CanaryPlan, versions: ApiVersions,
            settings: Settings, *, stable_exists: bool = True) -> dict[str, dict | None]:
    """Every child by role; None means the child must not exist. With autoscaling the stable's replica count
    belongs to the HPA (see reconcile.hand_over_replicas); only a new stable Deployment starts at minReplicas."""
    canary = spec.rollout.canary if spec.rollout else None
    canary_annotations = _canary_annotations(spec)
    if plan.stable_from_canary and canary is not None and canary.model is not None:
        stable_model, stable_overrides, stable_annotations = canary.model, canary.runtime, canary_annotations
    else:
        stable_model, stable_overrides, stable_annotations = spec.model, None, spec.pod_annotations
    autoscaling = spec.autoscaling
    if autoscaling is not None:
        stable_replicas = None if stable_exists else autoscaling.min_replicas
    else:
        stable_replicas = spec.replicas
    min_stable = autoscaling.min_replicas if autoscaling is not None else spec.replicas
    canary_child = None
    if plan.deploy:
        assert canary is not None and canary.model is not None, "a canary plan deploys only a canary with a model"
        canary_child = deployment(body, spec, "canary", plan.canary_replicas, canary.model, canary.runtime, settings,
                                  canary_annotations)
    return {
        "stable": deployment(body, spec, "stable", stable_replicas, stable_model, stable_overrides, settings,
                             stable_annotations),
        "canary": canary_child,
        "service": service(body, spec),
        "hpa": hpa(body, spec, versions.hpa) if autoscaling is not None else None,
        "pdb": pdb(body, versions.pdb) if min_stable > 1 else None,
    }

"""The children of a TrainingJob as plain dicts. Pure: no I/O.

- Service `<job>-workers`: headless (clusterIP None), selecting every worker, publishing not-ready addresses so ranks
  resolve each other while they start; it gives each worker the stable name `<job>-w<rank>.<job>-workers`.
- Pod `<job>-w<rank>-a<attempt>` per rank: restartPolicy Never (a failed worker fails the attempt; the gang
  restarts as a whole), hostname `<job>-w<rank>`, subdomain `<job>-workers`, the shared GPU, scheduling and security
  blocks. With queueName: Kueue's queue label and pod group (label and total-count annotation), plus the
  `kueue.x-k8s.io/admission` scheduling gate where the cluster has scheduling gates (Kubernetes 1.27+).
"""

from __future__ import annotations

from typing import Any

from ..api.trainingjob import TRAINING_JOB, TrainingJobSpec
from ..k8s.labels import label_value, labels, selector_labels
from ..k8s.ownership import owner_reference
from ..podspec import gpu, security
from . import rendezvous

KIND = TRAINING_JOB.kind
WORKER = "worker"
TRAINER = "trainer"
RANK_LABEL = "mlops.dev/rank"
ATTEMPT_LABEL = "mlops.dev/attempt"
WORLD_SIZE_ANNOTATION = "mlops.dev/world-size"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_GROUP_LABEL = "kueue.x-k8s.io/pod-group-name"
KUEUE_COUNT_ANNOTATION = "kueue.x-k8s.io/pod-group-total-count"
KUEUE_GATE = "kueue.x-k8s.io/admission"


def _meta(body: dict, name: str, component: str) -> dict[str, Any]:
    md = body["metadata"]
    return {"name": name, "namespace": md["namespace"], "labels": labels(KIND, md["name"], component),
            "ownerReferences": [owner_reference(body)]}


def service(body: dict, spec: TrainingJobSpec) -> dict[str, Any]:
    job = body["metadata"]["name"]
    svc_spec: dict[str, Any] = {"clusterIP": "None", "selector": selector_labels(KIND, job, WORKER),
                                "publishNotReadyAddresses": True}
    if spec.framework == "pytorch":
        port = rendezvous.MASTER_PORT
        svc_spec["ports"] = [{"name": "rendezvous", "port": port, "targetPort": port, "protocol": "TCP"}]
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _meta(body, rendezvous.service_name(job), "rendezvous"), "spec": svc_spec}


def _env_from(spec: TrainingJobSpec) -> list[dict[str, Any]]:
    names: list[str] = []
    for block in (spec.dataset, spec.output, spec.checkpoint):
        if block is not None and block.secret_ref is not None and block.secret_ref.name not in names:
            names.append(block.secret_ref.name)
    return [{"secretRef": {"name": name}} for name in names]


def worker_pod(body: dict, spec: TrainingJobSpec, rank: int, attempt: int, cluster_domain: str,
               scheduling_gates: bool = False) -> dict[str, Any]:
    md = body["metadata"]
    job, namespace = md["name"], md["namespace"]
    container: dict[str, Any] = {
        "name": TRAINER,
        "image": spec.image,
        "env": rendezvous.env(spec, job, namespace, rank, attempt, cluster_domain),
        "securityContext": security.container_security_context(),
    }
    if spec.command:
        container["command"] = list(spec.command)
    if spec.args:
        container["args"] = list(spec.args)
    env_from = _env_from(spec)
    if env_from:
        container["envFrom"] = env_from
    if spec.framework == "pytorch":
        container["ports"] = [{"name": "rendezvous", "containerPort": rendezvous.MASTER_PORT, "protocol": "TCP"}]
    resources = gpu.container_resources(spec.resources)
    if resources:
        container["resources"] = resources
    pod_spec: dict[str, Any] = {
        "hostname": rendezvous.hostname(job, rank),
        "subdomain": rendezvous.service_name(job),
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "automountServiceAccountToken": bool(spec.service_account_name),
        "securityContext": security.pod_security_context(),
        "containers": [container],
        **gpu.pod_scheduling(spec.resources, spec.scheduling),
    }
    shm = gpu.shm(spec.resources)
    if shm:
        pod_spec["volumes"] = [shm[0]]
        container["volumeMounts"] = [shm[1]]
    if spec.service_account_name:
        pod_spec["serviceAccountName"] = spec.service_account_name
    metadata = _meta(body, rendezvous.pod_name(job, rank, attempt), WORKER)
    metadata["labels"].update({RANK_LABEL: str(rank), ATTEMPT_LABEL: str(attempt)})
    annotations = {**spec.pod_annotations, WORLD_SIZE_ANNOTATION: str(spec.workers)}
    if spec.queue_name:
        metadata["labels"].update({KUEUE_QUEUE_LABEL: spec.queue_name,
                                   KUEUE_GROUP_LABEL: label_value(f"{job}-a{attempt}")})
        annotations[KUEUE_COUNT_ANNOTATION] = str(spec.workers)
        if scheduling_gates:
            pod_spec["schedulingGates"] = [{"name": KUEUE_GATE}]
    metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def rank_of(pod: dict) -> int | None:
    try:
        return int(((pod.get("metadata") or {}).get("labels") or {})[RANK_LABEL])
    except (KeyError, ValueError):
        return None


def attempt_of(pod: dict) -> int | None:
    try:
        return int(((pod.get("metadata") or {}).get("labels") or {})[ATTEMPT_LABEL])
    except (KeyError, ValueError):
        return None


def world_size_of(pods: list[dict]) -> int | None:
    """The world size the given pods (of one attempt) were started with."""
    for pod in pods:
        raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(WORLD_SIZE_ANNOTATION)
        if raw and raw.isdigit():
            return int(raw)
    return None

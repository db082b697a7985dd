"""Gang admission: does a whole gang fit the nodes' free GPUs right now? Pure: nodes and pods are API dicts.

Without Kueue, worker pods start as they are placed; a half-placed gang holds GPUs that another gang needs and
neither runs. So before an attempt creates its pods the reconciler asks whether every worker could be placed
on the GPUs that are free now: a node's allocatable GPUs minus those of the non-terminated pods bound to it, on
nodes the workers may use (nodeSelector, NoSchedule/NoExecute taints against the tolerations, schedulable and
Ready). Workers of other TrainingJobs that are created but not placed yet (an admitted gang the scheduler has
not bound) claim their GPUs from the free total too, else two gangs admitted a moment apart would both start
and hold half each. It is a rough check like Kueue's quota: the scheduler stays the judge of the placement.
"""

from __future__ import annotations

import dataclasses

from ..k8s.conditions import dig

TERMINATED = ("Succeeded", "Failed")
JOB_LABEL = "mlops.dev/trainingjob"


@dataclasses.dataclass(frozen=True)
class Admission:
    fits: bool
    workers: int
    per_worker: int  # GPUs each worker needs
    resource: str
    free: int  # free GPUs on the nodes the workers may use (less those claimed by admitted, unplaced gangs)
    places: int  # workers that fit on those nodes (free GPUs per node, in whole workers)
    total: int  # allocatable GPUs of those nodes, free or not

    @property
    def message(self) -> str:
        return (f"the gang needs {self.workers} workers x {self.per_worker} {self.resource}; {self.free} of "
                f"{self.total} are free on the nodes it may use, room for {self.places} workers")

def _gpus(pod: dict, resource: str) -> int:
    total = 0
    for container in dig(pod, "spec", "containers") or []:
        res = container.get("resources") or {}
        value = (res.get("limits") or {}).get(resource) or (res.get("requests") or {}).get(resource)
        if value is not None and str(value).isdigit():
            total += int(str(value))
    return total


def _tolerated(taint: dict, tolerations: list[dict]) -> bool:
    for tol in tolerations:
        if tol.get("effect") and tol["effect"] != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists":
            if not tol.get("key") or tol["key"] == taint.get("key"):
                return True
        elif tol.get("key") == taint.get("key") and (tol.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def usable(node: dict, pod: dict) -> bool:
    """Whether the worker pod may run on the node, roughly as the scheduler's filters see it."""
    if dig(node, "spec", "unschedulable"):
        return False
    ready = next((c for c in dig(node, "status", "conditions") or [] if c.get("type") == "Ready"), None)
    if ready is not None and ready.get("status") != "True":
        return False
    labels = dig(node, "metadata", "labels") or {}
    if any(labels.get(k) != v for k, v in (dig(pod, "spec", "nodeSelector") or {}).items()):
        return False
    tolerations = dig(pod, "spec", "tolerations") or []
    return all(_tolerated(t, tolerations) for t in dig(node, "spec", "taints") or []
               if t.get("effect") in ("NoSchedule", "NoExecute"))


def _own(pod: dict, job: dict) -> bool:
    meta = pod.get("metadata") or {}
    return (meta.get("namespace"), (meta.get("labels") or {}).get(JOB_LABEL)) == (
        dig(job, "metadata", "namespace"), dig(job, "metadata", "name"))


def _claims(pod: dict) -> bool:
    """An unplaced worker of a TrainingJob that the scheduler has not (yet) called unschedulable."""
    meta = pod.get("metadata") or {}
    if JOB_LABEL not in (meta.get("labels") or {}) or meta.get("deletionTimestamp"):
        return False
    return not any(c.get("type") == "PodScheduled" and c.get("status") == "False"
                   for c in dig(pod, "status", "conditions") or [])


def admit(job: dict, pod: dict, workers: int, resource: str, nodes: list[dict], pods: list[dict]) -> Admission:
    """Whether `workers` copies of the worker `pod` of `job` fit the free `resource` GPUs of `nodes`, given the
    `pods` of the cluster (any namespace; terminated ones hold nothing). The job's own pods (an earlier attempt
    on its way out) do not count: they make room for this one."""
    per_worker = _gpus(pod, resource)
    held: dict[str, int] = {}
    claimed = 0
    for other in pods:
        if dig(other, "status", "phase") in TERMINATED or _own(other, job):
            continue
        node = dig(other, "spec", "nodeName")
        if node:
            held[node] = held.get(node, 0) + _gpus(other, resource)
        elif _claims(other):
            claimed += _gpus(other, resource)
    free = places = total = 0
    for node in nodes:
        if not usable(node, pod):
            continue
        raw = str((dig(node, "status", "allocatable") or {}).get(resource) or "0")
        allocatable = int(raw) if raw.isdigit() else 0
        left = max(0, allocatable - held.get(dig(node, "metadata", "name"), 0))
        total += allocatable
        free += left
        places += left // per_worker if per_worker else workers
    if claimed:
        free = max(0, free - claimed)
        places = max(0, places - (claimed + per_worker - 1) // per_worker if per_worker else places)
    return Admission(fits=places >= workers, workers=workers, per_worker=per_worker, resource=resource, free=free,
                     places=places, total=total)

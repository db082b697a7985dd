"""The failure taxonomy: why a worker failed, whether another attempt may help, and whether that attempt counts
against backoffLimit. Pure: pods are API dicts, nothing is fetched.

| reason                                   | retryable | counts against backoffLimit |
|------------------------------------------|-----------|-----------------------------|
| OOMKilled                                | no        | -                           |
| ImagePullBackOff, ErrImagePull,          | no        | -                           |
| InvalidImageName                         |           |                             |
| CreateContainerConfigError, InvalidConfig| no        | -                           |
| Evicted, Preempted                       | yes       | no                          |
| NodeLost, NodeShutdown, PodDeleted       | yes       | no                          |
| GangIncomplete (a worker finished while  | yes       | yes                         |
| its peers had not started)               |           |                             |
| Error (any other non-zero exit), Failed  | yes       | yes                         |

Whatever the reason, a failure while a peer of the attempt was never placed on a node (a gang that could not be
placed whole) does not count against backoffLimit: the workers that ran alone failed for want of their peers.

When several workers fail in one attempt, one failure speaks for the attempt (`primary`): a failure that is not
retryable wins (retrying cannot help), else the earliest (the others usually die because a peer did: an evicted
rank 0 makes the other ranks exit 1 on a broken collective; that must not be charged to backoffLimit).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..k8s.conditions import dig

NOT_RETRYABLE = ("OOMKilled", "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError",
                 "InvalidConfig")
GANG_INCOMPLETE = "GangIncomplete"
NOT_COUNTED = ("Evicted", "Preempted", "NodeLost", "NodeShutdown", "PodDeleted")
# Kubernetes 1.26+ marks disrupted pods with a DisruptionTarget condition; its reason says who disrupted them.
DISRUPTION_REASONS = {
    "PreemptionByScheduler": "Preempted", "PreemptionByKubeScheduler": "Preempted",
    "EvictionByEvictionAPI": "Evicted", "TerminationByKubelet": "Evicted",
    "DeletionByTaintManager": "NodeLost", "DeletionByPodGC": "NodeLost",
}
# status.reason of a Failed pod, set by the kubelet or the node lifecycle controller.
POD_REASONS = {"Evicted": "Evicted", "NodeLost": "NodeLost", "Preempting": "Preempted", "Shutdown": "NodeShutdown",
               "Terminated": "NodeShutdown", "NodeShutdown": "NodeShutdown"}
MAX_MESSAGE = 512


@dataclasses.dataclass(frozen=True)
class WorkerFailure:
    reason: str
    message: str
    worker: int
    at: str = ""  # RFC 3339 time of the failure when known; "" sorts first (a vanished pod is the likeliest cause)
    gang_incomplete: bool = False  # a peer was never placed: a worker alone fails at rendezvous; not counted

    @property
    def retryable(self) -> bool:
        return self.reason not in NOT_RETRYABLE

    @property
    def counted(self) -> bool:
        return self.retryable and self.reason not in NOT_COUNTED and not self.gang_incomplete

    def to_status(self, attempt: int) -> dict[str, Any]:
        return {"reason": self.reason, "message": self.message, "retryable": self.retryable,
                "counted": self.counted, "worker": self.worker, "attempt": attempt}




def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _disruption(pod: dict) -> str | None:
    for cond in dig(pod, "status", "conditions") or []:
        if cond.get("type") == "DisruptionTarget" and cond.get("status") == "True":
            return DISRUPTION_REASONS.get(cond.get("reason", ""), "Evicted")
    return None


def classify(pod: dict | None, rank: int, name: str = "") -> WorkerFailure | None:
    """The failure of worker `rank` from its pod (None: the pod is gone), or None while it is healthy."""
    if pod is None:
        return WorkerFailure("PodDeleted", f"worker {rank}: pod {name} is gone (deleted, or its node was lost)", rank)
    name = dig(pod, "metadata", "name") or name
    status = pod.get("status") or {}
    phase = status.get("phase")
    who = f"worker {rank} (pod {name})"
    if phase == "Succeeded":
        return None
    if phase == "Failed" or phase == "Unknown" or status.get("reason") == "NodeLost":
        return _failed(pod, rank, who, status)
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = dig(cs, "state", "waiting") or {}
        if waiting.get("reason") in NOT_RETRYABLE:
            detail = waiting.get("message") or ""
            return WorkerFailure(waiting["reason"], _cut(f"{who}: container {cs.get('name')}: {waiting['reason']}"
                                                         + (f": {detail}" if detail else "")), rank)
    if dig(pod, "metadata", "deletionTimestamp"):
        reason = _disruption(pod) or "PodDeleted"
        return WorkerFailure(reason, f"{who} is being deleted ({reason})", rank,
                             dig(pod, "metadata", "deletionTimestamp") or "")
    return None


def _failed(pod: dict, rank: int, who: str, status: dict) -> WorkerFailure:
    pod_reason = status.get("reason") or ""
    message = status.get("message") or ""
    disruption = POD_REASONS.get(pod_reason) or _disruption(pod)
    if status.get("phase") == "Unknown" and not disruption:
        disruption = "NodeLost"
    terminated: list[tuple[str | None, dict[str, Any]]] = [
        (cs.get("name"), dig(cs, "state", "terminated") or {})
        for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])]
    ended: list[str] = [t["finishedAt"] for _, t in terminated if t.get("finishedAt")]
    at = min(ended) if ended else ""
    if disruption:
        text = f"{who}: {disruption}" + (f": {message}" if message else "")
        return WorkerFailure(disruption, _cut(text), rank, at)
    for cname, term in terminated:
        if term.get("reason") == "OOMKilled":
            return WorkerFailure("OOMKilled", f"{who}: container {cname} was killed for using more memory than its "
                                              "limit (OOMKilled); raise spec.resources.memory", rank,
                                 term.get("finishedAt") or at)
    for cname, term in terminated:
        if term.get("exitCode", 0) != 0:
            detail = term.get("message") or ""
            return WorkerFailure("Error", _cut(f"{who}: container {cname} exited with code {term['exitCode']}"
                                               + (f": {detail}" if detail else "")), rank,
                                 term.get("finishedAt") or at)
    text = f"{who} failed" + (f": {pod_reason}" if pod_reason else "") + (f": {message}" if message else "")
    return WorkerFailure("Failed", _cut(text), rank, at)


def primary(failures: list[WorkerFailure]) -> WorkerFailure | None:
    """The one failure that speaks for the attempt (see the module docstring)."""
    if not failures:
        return None
    return min(failures, key=lambda f: (f.retryable, f.at, f.counted, f.worker))

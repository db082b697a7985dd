"""GPU scheduling from the shared GPU block and the scheduling block: extended-resource limits, the product
nodeSelector, the GPU taint toleration, a memory-backed /dev/shm, and the user's scheduling passed through."""

from __future__ import annotations

from typing import Any

from ..api.common import Resources, Scheduling

PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_TAINT = "nvidia.com/gpu"
SHM_VOLUME = "dshm"


def gpu_count(resources: Resources | None) -> int:
    return resources.gpu.count if resources and resources.gpu else 0


def container_resources(resources: Resources | None) -> dict[str, Any]:
    """requests and limits: cpu and memory as both (Guaranteed when both are set), GPUs as limits (extended
    resources cannot be overcommitted, so the request equals the limit)."""
    if resources is None:
        return {}
    fixed = {k: str(v) for k, v in (("cpu", resources.cpu), ("memory", resources.memory)) if v is not None}
    limits = dict(fixed)
    gpu = resources.gpu
    if gpu is not None and gpu.count:
        limits[gpu.resource] = str(gpu.count)
    out: dict[str, Any] = {}
    if fixed:
        out["requests"] = fixed
    if limits:
        out["limits"] = limits
    return out


def pod_scheduling(resources: Resources | None, scheduling: Scheduling | None) -> dict[str, Any]:
    """Pod spec fields for placement: nodeSelector, tolerations, affinity, priorityClassName."""
    scheduling = scheduling or Scheduling()
    selector = dict(scheduling.node_selector)
    tolerations = [t.model_dump(by_alias=True, exclude_none=True) for t in scheduling.tolerations]
    gpu = resources.gpu if resources else None
    if gpu is not None and gpu.count:
        if gpu.product:
            selector[PRODUCT_LABEL] = gpu.product
        gpu_toleration = {"key": GPU_TAINT, "operator": "Exists", "effect": "NoSchedule"}
        if gpu_toleration not in tolerations:
            tolerations.append(gpu_toleration)
    out: dict[str, Any] = {}
    if selector:
        out["nodeSelector"] = dict(sorted(selector.items()))
    if tolerations:
        out["tolerations"] = tolerations
    if scheduling.affinity:
        out["affinity"] = scheduling.affinity
    if scheduling.priority_class_name:
        out["priorityClassName"] = scheduling.priority_class_name
    return out


def shm(resources: Resources | None) -> tuple[dict, dict] | None:
    """A memory-backed /dev/shm for GPU pods (NCCL and dataloaders need more than the default 64 MiB)."""
    if resources is None or not gpu_count(resources):
        return None
    empty_dir: dict[str, Any] = {"medium": "Memory"}
    if resources.memory is not None:
        empty_dir["sizeLimit"] = str(resources.memory)
    return {"name": SHM_VOLUME, "emptyDir": empty_dir}, {"name": SHM_VOLUME, "mountPath": "/dev/shm"}

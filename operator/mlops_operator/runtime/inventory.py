"""What the operator manages, counted from its cache for the gauges mlops_managed_objects{kind,phase} and
mlops_gpus_requested{kind,phase}. Pure counting over plain dicts; `export` reads the cache, never the API server."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable

from .. import metrics
from .cache import Cache

log = logging.getLogger("mlops_operator.inventory")
KINDS = {"modeldeployment": "modeldeployments_idx", "trainingjob": "trainingjobs_idx",
         "driftmonitor": "driftmonitors_idx"}
OWNER_LABELS = {"mlops.dev/modeldeployment": "modeldeployment", "mlops.dev/trainingjob": "trainingjob",
                "mlops.dev/driftmonitor": "driftmonitor"}


def phase_of(body: dict) -> str:
    """status.phase where the kind has one (TrainingJob); else Ready, or the Ready condition's reason; Pending
    before the first status."""
    status = body.get("status") or {}
    if status.get("phase"):
        return str(status["phase"])
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is None:
        return "Pending"
    return "Ready" if ready.get("status") == "True" else str(ready.get("reason") or "NotReady")


def count_objects(bodies: dict[str, Iterable[dict]]) -> dict[tuple[str, str], int]:
    counts: Counter = Counter()
    for kind, items in bodies.items():
        for body in items:
            counts[(kind, phase_of(body))] += 1
    return dict(counts)


def pod_gpus(pod: dict) -> int:
    """GPUs a pod holds: extended resources named */gpu, from limits (where GPUs are set) or requests."""
    total = 0
    for container in (pod.get("spec") or {}).get("containers") or []:
        res = container.get("resources") or {}
        amounts = {**(res.get("requests") or {}), **(res.get("limits") or {})}
        for name, value in amounts.items():
            if name.endswith("/gpu"):
                try:
                    total += int(str(value))
                except ValueError:
                    continue
    return total


def count_gpus(pods: Iterable[dict]) -> dict[tuple[str, str], int]:
    """GPUs held, by owner kind and pod phase: a Succeeded or Failed pod (a finished training job's workers,
    kept for their logs) holds none."""
    counts: Counter = Counter()
    for pod in pods:
        phase = (pod.get("status") or {}).get("phase") or "Pending"
        gpus = pod_gpus(pod)
        if not gpus or phase in ("Succeeded", "Failed"):
            continue
        labels = (pod.get("metadata") or {}).get("labels") or {}
        kind = next((k for label, k in OWNER_LABELS.items() if label in labels), "other")
        counts[(kind, phase)] += gpus
    return dict(counts)


def export(cache: Cache) -> None:
    metrics.set_series(metrics.MANAGED_OBJECTS,
                       count_objects({kind: cache.values(index) for kind, index in KINDS.items()}))
    metrics.set_series(metrics.GPUS_REQUESTED, count_gpus(_unique(cache.values("pods_idx"))))


def _unique(pods: Iterable[dict]) -> Iterable[dict]:
    # A pod with two owner labels sits under two keys of the index: count it once.
    seen: set[str | int] = set()
    for pod in pods:
        uid = (pod.get("metadata") or {}).get("uid") or id(pod)
        if uid not in seen:
            seen.add(uid)
            yield pod


async def run(cache: Cache, interval: float = 10.0) -> None:
    """Refreshes the gauges every `interval` seconds (a few milliseconds of counting at thousands of objects)."""
    while True:
        try:
            export(cache)
        except Exception:  # noqa: BLE001  (a metric is never worth the operator)
            log.exception("inventory metrics not updated")
        await asyncio.sleep(interval)

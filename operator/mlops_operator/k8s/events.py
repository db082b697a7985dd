"""Kubernetes Events for what a person should notice (core/v1, readable by `kubectl describe` everywhere); each
posted event is also one INFO line of the operator's log."""

from __future__ import annotations

import logging
import socket
from datetime import datetime, timezone

from .client import ApiError, KubeClient, resource_path
from .conditions import format_time

log = logging.getLogger("mlops_operator.events")
COMPONENT = "mlops-operator"
INSTANCE = socket.gethostname()


def event_body(obj: dict, type_: str, reason: str, message: str, now: datetime) -> dict:
    meta = obj["metadata"]
    stamp = format_time(now)
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"],
                           "namespace": meta["namespace"], "uid": meta.get("uid")},
        "type": type_, "reason": reason, "message": message[:1024],
        "source": {"component": COMPONENT}, "reportingComponent": COMPONENT, "reportingInstance": INSTANCE,
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    }


async def emit(client: KubeClient, obj: dict, type_: str, reason: str, message: str,
               now: datetime | None = None) -> None:
    """Posts an event; a failure is logged, never raised (an event is worth less than the reconcile)."""
    body = event_body(obj, type_, reason, message, now or datetime.now(timezone.utc))
    meta = obj["metadata"]
    try:
        await client.create(resource_path("v1", "Event", meta["namespace"]), body)
    except (ApiError, OSError) as err:
        log.warning("%s %s/%s: event %s not posted: %s", obj.get("kind", ""), meta["namespace"], meta["name"],
                    reason, err)
        return
    log.info("%s %s/%s: event %s %s: %s", obj.get("kind", ""), meta["namespace"], meta["name"], type_, reason,
             body["message"])

"""Writing a custom resource's status: only when it changed, as one merge patch to the status subresource; each
transition (the Ready condition's status or reason, the phase) is logged at INFO, one line per object."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .client import ApiError, KubeClient, object_path
from .conditions import find_condition, invalid_spec, set_condition
from .events import emit

log = logging.getLogger("mlops_operator.status")


def clean(value: Any) -> Any:
    """value without None entries (absent and null mean the same in a status)."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def status_patch(old: dict | None, new: dict) -> dict | None:
    """The merge patch from old to new status (nulls remove keys), or None when nothing changed."""
    old, new = clean(old or {}), clean(new)
    return None if old == new else _merge_patch(old, new)


def _merge_patch(old: dict, new: dict) -> dict:
    patch: dict[str, Any] = {}
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(old.get(key), dict):
            if value != old[key]:
                patch[key] = _merge_patch(old[key], value)
        elif old.get(key) != value:
            patch[key] = value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


class ObjectGone(Exception):
    """The object is no longer on the API server (by uid): nothing to retry. Its DELETED event, or the informer's
    next relist, removes it from the cache; a new object by that name is a new uid with events of its own."""

    def __init__(self, uid: str | None, message: str):
        super().__init__(message)
        self.uid = uid


class StaleStatus(Exception):
    """A conditional status write found the object changed since it was read (409): what the reconcile decided
    came from an older version (the cache lags behind), so nothing was written and nothing may be acted on."""


async def write_status(client: KubeClient, body: dict, status: dict, *, if_current: bool = False) -> dict | None:
    """Writes what changed in the status (one merge patch to the status subresource); returns the object as the
    API server stored it, or None when nothing changed. `if_current`: only while the object is still the version
    read (its resourceVersion as a precondition), else StaleStatus, so a once-only action (an event, an attempt, a
    retraining) decided from a stale cache is never taken. A 404 raises ObjectGone only when the object is really
    gone; a 404 for a live object (an API server that restarts serves no custom resources for a while) is an error
    to retry."""
    patch = status_patch(body.get("status"), status)
    if patch is None:
        return None
    payload: dict[str, Any] = {"status": patch}
    if if_current:
        payload["metadata"] = {"resourceVersion": body["metadata"].get("resourceVersion")}
    try:
        written = await client.merge_patch(object_path(body) + "/status", payload)
    except ApiError as err:
        if err.status == 409 and if_current:
            raise StaleStatus(str(err)) from None
        if err.status == 404 and await gone(client, body):
            raise ObjectGone(body["metadata"].get("uid"), str(err)) from None
        raise
    log_transition(body, status)
    return written if isinstance(written, dict) else {**body, "status": clean(status)}


async def gone(client: KubeClient, body: dict) -> bool:
    """Whether the object with this uid is really gone: the API server says NotFound for its very name, or has
    another object (another uid) by that name. Anything else, an unserved resource included, is not proof."""
    meta = body["metadata"]
    try:
        live = await client.request("GET", object_path(body))
    except ApiError as err:
        answer = err.body if isinstance(err.body, dict) else {}
        return (err.status == 404 and answer.get("reason") == "NotFound"
                and (answer.get("details") or {}).get("name") == meta["name"])
    return bool((live.get("metadata") or {}).get("uid") != meta.get("uid"))


def log_transition(body: dict, status: dict) -> None:
    """One INFO line when the phase or the Ready condition's status or reason changed."""
    old = body.get("status") or {}
    before, after = find_condition(old.get("conditions"), "Ready"), find_condition(status.get("conditions"), "Ready")
    changes = []
    if old.get("phase") != status.get("phase") and status.get("phase") is not None:
        changes.append(f"phase {old.get('phase') or '-'} -> {status['phase']}")
    if after is not None and _state(before) != _state(after):
        message = f": {after['message']}" if after.get("message") else ""
        changes.append(f"Ready {'/'.join(_state(before))} -> {'/'.join(_state(after))}{message}")
    if changes:
        meta = body["metadata"]
        log.info("%s %s/%s: %s", body.get("kind", ""), meta.get("namespace"), meta.get("name"), "; ".join(changes))


def _state(condition: Mapping[str, Any] | None) -> tuple[str, str]:
    if condition is None:
        return "-", "-"
    return str(condition.get("status")), str(condition.get("reason") or "-")


async def report_invalid(client: KubeClient, body: dict, errors: list[str], now: datetime) -> None:
    """Ready=False, reason InvalidSpec, naming the fields; a Warning event when that news is new. Nothing else
    in the status, and no child, is touched."""
    old = body.get("status") or {}
    ready = invalid_spec(errors, observed_generation=body["metadata"].get("generation"), now=now)
    before = find_condition(old.get("conditions"), "Ready")
    new = {**old, "observedGeneration": body["metadata"].get("generation"),
           "conditions": set_condition(old.get("conditions"), ready)}
    try:
        await write_status(client, body, new, if_current=True)
    except StaleStatus:
        return  # decided from an older version: the newer one's watch event brings the next reconcile
    if before is None or (before.get("reason"), before.get("message")) != ("InvalidSpec", ready["message"]):
        await emit(client, body, "Warning", "InvalidSpec", ready["message"], now)

"""Writing a custom resource's status: only when it changed, as one merge patch to the status subresource."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .client import ApiError, KubeClient, object_path
from .conditions import find_condition, invalid_spec, set_condition
from .events import emit


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
    """The API server has no object by the name of a cached one (404 on its status): the cache missed its
    deletion. The controller tells the cache to forget it instead of retrying (see Cache.forget)."""

    def __init__(self, uid: str | None, message: str):
        super().__init__(message)
        self.uid = uid


async def write_status(client: KubeClient, body: dict, status: dict) -> bool:
    patch = status_patch(body.get("status"), status)
    if patch is None:
        return False
    try:
        await client.patch_status(object_path(body), patch)
    except ApiError as err:
        if err.status == 404:
            raise ObjectGone(body["metadata"].get("uid"), str(err)) from None
        raise
    return True


async def report_invalid(client: KubeClient, body: dict, errors: list[str], now: datetime) -> None:
    """Ready=False, reason InvalidSpec, naming the fields; a Warning event when that news is new. Nothing else
    in the status, and no child, is touched."""
    old = body.get("status") or {}
    ready = invalid_spec(errors, observed_generation=body["metadata"].get("generation"), now=now)
    before = find_condition(old.get("conditions"), "Ready")
    new = {**old, "observedGeneration": body["metadata"].get("generation"),
           "conditions": set_condition(old.get("conditions"), ready)}
    await write_status(client, body, new)
    if before is None or (before.get("reason"), before.get("message")) != ("InvalidSpec", ready["message"]):
        await emit(client, body, "Warning", "InvalidSpec", ready["message"], now)

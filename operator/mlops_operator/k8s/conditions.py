"""metav1.Condition lists as plain dicts: build one, set it by type, read them back.

lastTransitionTime moves only when a condition's status changes; reason, message and observedGeneration are
always updated. Time comes in as `now` (tests pass a fixed datetime; callers may leave it to the clock).
Pure: no I/O, inputs are never mutated.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Literal

ConditionStatus = bool | Literal["True", "False", "Unknown"]

MAX_MESSAGE = 32768
_REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC to the second, as Kubernetes writes times: 2024-05-01T12:00:00Z (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    """The inverse of format_time (None stays None)."""
    if not value:
        return None
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def dig(obj: Any, *path: str, default: Any = None) -> Any:
    """obj[path[0]][path[1]]..., or default where a step is missing or not a mapping."""
    for key in path:
        if not isinstance(obj, Mapping) or key not in obj:
            return default
        obj = obj[key]
    return obj


def _status(status: ConditionStatus) -> str:
    if isinstance(status, bool):
        return "True" if status else "False"
    if status not in ("True", "False", "Unknown"):
        raise ValueError(f"condition status must be True, False or Unknown, not {status!r}")
    return status


def condition(
    type: str,
    status: ConditionStatus,
    reason: str,
    message: str = "",
    *,
    observed_generation: int | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A new condition dict; reason must be CamelCase (a programming error otherwise), long messages are cut."""
    if not _REASON.match(reason):
        raise ValueError(f"condition reason must be CamelCase like InvalidSpec, not {reason!r}")
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    result: dict[str, Any] = {
        "type": type,
        "status": _status(status),
        "reason": reason,
        "message": message,
        "lastTransitionTime": format_time(now or datetime.now(timezone.utc)),
    }
    if observed_generation is not None:
        result["observedGeneration"] = observed_generation
    return result


def set_condition(conditions: Iterable[Mapping[str, Any]] | None, new: Mapping[str, Any]) -> list[dict[str, Any]]:
    """conditions with `new` in place of the condition of its type (appended if absent). When the status is
    unchanged the old lastTransitionTime is kept."""
    result = [dict(existing) for existing in conditions or ()]
    new = dict(new)
    for index, existing in enumerate(result):
        if existing.get("type") == new["type"]:
            if existing.get("status") == new["status"] and existing.get("lastTransitionTime"):
                new["lastTransitionTime"] = existing["lastTransitionTime"]
            result[index] = new
            return result
    result.append(new)
    return result


def merge_conditions(
    conditions: Iterable[Mapping[str, Any]] | None, updates: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """set_condition for each of updates, in order."""
    result = [dict(existing) for existing in conditions or ()]
    for update in updates:
        result = set_condition(result, update)
    return result


def find_condition(conditions: Sequence[Mapping[str, Any]] | None, type: str) -> Mapping[str, Any] | None:
    """The condition of that type, or None."""
    return next((c for c in conditions or () if c.get("type") == type), None)


def is_true(conditions: Sequence[Mapping[str, Any]] | None, type: str) -> bool:
    """Whether the condition of that type exists and is True."""
    found = find_condition(conditions, type)
    return found is not None and found.get("status") == "True"


def invalid_spec(
    errors: Sequence[str] | str, *, observed_generation: int | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Ready=False, reason InvalidSpec, the message naming the fields (from api.validation.InvalidSpec.errors)."""
    message = errors if isinstance(errors, str) else "; ".join(errors)
    return condition("Ready", False, "InvalidSpec", message, observed_generation=observed_generation, now=now)

"""The child sync loop, written once for every kind: stamp what a reconcile wants, apply what differs from what
lives (server-side apply under one field manager), delete what must no longer exist; say what was done per role.

    live:    role -> the child as cached (or read), or None
    desired: role -> the child the spec wants, or None (it must not exist)
    returns: role -> "created" | "updated" | "deleted" | "unchanged" | "absent"

Each action is logged at INFO, one line naming the owner and the child, so the operator's log tells what it did.

Before it creates a child, the loop reads its owner from the API server (one GET per reconcile that creates).
The cache may still hold an owner that was deleted while its watch was down (an API server restart): a child
made for it would be deleted by the garbage collector and made again at the next reconcile, several times a
second, and a Deployment made again under its old name can leave its old ReplicaSet behind for good (the
garbage collector's graph is keyed by uid, its watch cache by name). The owner gone (`status.gone`: by uid, and a
404 of a resource not served yet is no proof), the reconcile ends as ObjectGone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from .client import ApiError, KubeClient, object_path
from .diff import stamp, up_to_date
from .status import ObjectGone, gone

log = logging.getLogger("mlops_operator.sync")

CREATED, UPDATED, DELETED, UNCHANGED, ABSENT = "created", "updated", "deleted", "unchanged", "absent"


class ChildRejected(Exception):
    """The API server refused a child made from the owner's spec (400/422): the spec, not the operator, is wrong."""

    def __init__(self, role: str, child: dict, error: ApiError):
        super().__init__(f"the API server rejected the {child['kind']} made from this spec: {error.message}")
        self.role, self.child, self.error = role, child, error


def _owner(owner: dict | None) -> str:
    if not owner:
        return ""
    meta = owner.get("metadata") or {}
    return f"{owner.get('kind', '')} {meta.get('namespace')}/{meta.get('name')}: "


async def sync_children(client: KubeClient, live: Mapping[str, dict | None], desired: Mapping[str, dict | None],
                        *, owner: dict | None = None) -> dict[str, str]:
    done: dict[str, str] = {}
    confirmed = owner is None
    for role, want in desired.items():
        have = live.get(role)
        if want is None:
            if have is None or (have.get("metadata") or {}).get("deletionTimestamp"):
                done[role] = ABSENT
                continue
            await client.delete(object_path(have))
            log.info("%s%s %s deleted", _owner(owner), have.get("kind", role), have["metadata"]["name"])
            done[role] = DELETED
            continue
        stamped = stamp(want)
        if up_to_date(have, stamped):
            done[role] = UNCHANGED
            continue
        if have is None and owner is not None and not confirmed:
            if await gone(client, owner):
                raise ObjectGone((owner.get("metadata") or {}).get("uid"),
                                 f"{_owner(owner)}gone from the API server: no child is made for it")
            confirmed = True
        try:
            await client.apply(stamped)
        except ApiError as err:
            if err.rejected_content:
                raise ChildRejected(role, want, err) from None
            raise
        done[role] = CREATED if have is None else UPDATED
        log.info("%s%s %s %s", _owner(owner), want["kind"], want["metadata"]["name"], done[role])
    return done


async def delete_orphans(client: KubeClient, children: Iterable[dict | None], owner_kind: str,
                         owner: tuple[str, str]) -> int:
    """Deletes the children a deleted owner left (ownerReferences to an `owner_kind` that no longer exists, the
    caller having found no live owner by that name). Kubernetes' garbage collector would too, but after an API
    server restart it can back off for many minutes (docs/reliability.md); the operator, which saw the owner go,
    need not wait. Returns how many it deleted."""
    deleted = 0
    for child in children:
        meta = (child or {}).get("metadata") or {}
        if not child or meta.get("deletionTimestamp"):
            continue
        if not any(ref.get("kind") == owner_kind for ref in meta.get("ownerReferences") or []):
            continue  # not ours to judge
        if await client.delete(object_path(child)):
            deleted += 1
            log.info("%s %s/%s: %s %s deleted (its owner is gone)", owner_kind, owner[0], owner[1],
                     child.get("kind", ""), meta.get("name"))
    return deleted

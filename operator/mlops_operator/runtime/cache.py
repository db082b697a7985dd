"""Read access to kopf's indices: the operator's informer cache. Reconcilers read the cluster from here, so a
reconcile that changes nothing makes no request at all. kopf fills every index before any other handler runs,
which is what keeps a restart from mistaking a not-yet-listed child for a missing one."""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from typing import Any


class Cache:
    def __init__(self) -> None:
        self._indices: Mapping[str, Any] = {}
        self._gone: set[str] = set()

    def bind(self, indices: Mapping[str, Any]) -> None:
        self._indices = indices

    def forget(self, uid: str | None) -> None:
        """Hides an object the API server no longer has. kopf's indices miss a deletion that happens while a
        watch is down (an API server restart): its re-list adds and updates but never prunes. Reconciling such a
        ghost would re-create children for a dead owner, which the garbage collector deletes, in a loop."""
        if uid:
            self._gone.add(uid)

    def all(self, index: str, key: Hashable) -> list[dict]:
        store = self._indices[index].get(key)
        if not store:
            return []
        return [obj for obj in store if ((obj.get("metadata") or {}).get("uid")) not in self._gone]

    def one(self, index: str, key: Hashable) -> dict | None:
        """The object under key. Two objects under one name can only be a deleted one whose deletion the index
        missed and its successor, created later: the newest is the live one."""
        found = self.all(index, key)
        if len(found) > 1:
            return max(found, key=_age)
        return found[0] if found else None

    def values(self, index: str) -> Iterator[dict]:
        """Every object in an index (an object under several keys comes once per key)."""
        for store in list(self._indices[index].values()):
            yield from list(store)


def _age(obj: dict) -> tuple[str, int]:
    meta = obj.get("metadata") or {}
    version = str(meta.get("resourceVersion") or "0")
    return meta.get("creationTimestamp") or "", int(version) if version.isdigit() else 0

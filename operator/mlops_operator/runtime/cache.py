"""The operator's view of the cluster: one informer (runtime/informer.py) per index, custom resources and children
alike. Reconcilers read from here, so a reconcile that changes nothing makes no request at all. `synced` is one
notion for every index: each informer's initial list is in, so a restart never mistakes a not-yet-listed object
for a missing one. Pruning is the informers' (a relist drops what the API server no longer has)."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterator, Mapping
from typing import Protocol


class Index(Protocol):
    """What the cache reads of an informer."""

    synced: asyncio.Event

    def get(self, key: Hashable) -> list[dict]: ...

    def values(self) -> Iterator[list[dict]]: ...


class Cache:
    def __init__(self, indices: Mapping[str, Index]) -> None:
        self._indices = indices  # read live: an index added later is seen

    async def synced(self) -> None:
        """Returns once every index holds its initial list."""
        await asyncio.gather(*(index.synced.wait() for index in self._indices.values()))

    def all(self, index: str, key: Hashable) -> list[dict]:
        return self._indices[index].get(key)

    def one(self, index: str, key: Hashable) -> dict | None:
        """The object under key. Two objects under one name can only be a deleted one whose DELETED event has not
        come yet and its successor, created later: the newest is the live one."""
        found = self.all(index, key)
        if len(found) > 1:
            return max(found, key=_age)
        return found[0] if found else None

    def values(self, index: str) -> Iterator[dict]:
        """Every object in an index (an object under several keys comes once per key)."""
        for store in self._indices[index].values():
            yield from store


def _age(obj: dict) -> tuple[str, int]:
    meta = obj.get("metadata") or {}
    version = str(meta.get("resourceVersion") or "0")
    return meta.get("creationTimestamp") or "", int(version) if version.isdigit() else 0

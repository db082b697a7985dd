"""Read access to kopf's indices: the operator's informer cache. Reconcilers read the cluster from here, so a
reconcile that changes nothing makes no request at all. kopf fills every index before any other handler runs,
which is what keeps a restart from mistaking a not-yet-listed child for a missing one."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any


class Cache:
    def __init__(self) -> None:
        self._indices: Mapping[str, Any] = {}

    def bind(self, indices: Mapping[str, Any]) -> None:
        self._indices = indices

    def all(self, index: str, key: Hashable) -> list[dict]:
        store = self._indices[index].get(key)
        return list(store) if store else []

    def one(self, index: str, key: Hashable) -> dict | None:
        found = self.all(index, key)
        return found[0] if found else None

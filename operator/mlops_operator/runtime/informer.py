"""Informers for everything the reconcilers read: the custom resources and the children the operator labels
(Deployments, Services, pods, HPAs, PDBs). List, then watch, keeping an index of the objects in memory, and call
back with each changed object.

This is controller-runtime's shared informer reduced to what the controllers use: one list and one watch per
resource (per namespace when the operator serves a few), pages of 500, objects stored once without managedFields
and with their strings shared (`compact`), `synced` set once every initial list is in (so a reconcile never
mistakes a not-yet-listed object for a missing one), and a relist that prunes what is gone, so a deletion missed
while a watch was down never leaves a ghost.
Why not kopf's indices: kopf runs a worker task per object, holds each raw event until every index is filled at
startup, and deep-copies each body to detect changes the controllers do not need; at thousands of objects that was
most of the operator's memory and CPU (see docs/benchmarks.md, "Operator at scale").
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any

from ..k8s.client import ApiError, KubeClient, resource_path

log = logging.getLogger("mlops_operator.informer")
PAGE = 500
Keys = Callable[[dict], Iterable[Hashable]]


SHARED_LENGTH = 64  # strings up to this length are shared between cached objects (names, labels, states, times)


def _shared(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return {sys.intern(k): _shared(v) for k, v in value.items()}
    if kind is list:
        return [_shared(v) for v in value]
    if kind is str and len(value) <= SHARED_LENGTH:
        return sys.intern(value)
    return value


def compact(obj: dict) -> dict:
    """The object as cached: without metadata.managedFields, which no reconciler reads (~40% of a pod), and with
    its keys and short strings shared with every other cached object. Each decoded object brings its own copy of
    every key and of values like "True" or a label; shared, a pod costs about half the memory (20 against 44 MB
    for 2,200 synthetic pods under tracemalloc, 58 us per pod to build). Interned strings are freed with their
    last reference."""
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        obj["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    shared: dict = _shared(obj)
    return shared


class Informer:
    """One resource kind: `get(key)` and `values()` read the index (the Cache's interface); `run()` fills it."""

    def __init__(self, client: KubeClient, api_version: str, kind: str, *, keys: Keys,
                 on_change: Callable[[dict], None], namespaces: Sequence[str] | None = None,
                 label_selector: str | None = None, watch_timeout: int = 60, grace: float = 15):
        self._client, self.api_version, self.kind = client, api_version, kind
        # The server ends each watch after watch_timeout; silence for watch_timeout + grace is a hung watch.
        self._watch_timeout, self._grace = watch_timeout, grace
        self._keys, self._on_change = keys, on_change
        self._namespaces: Sequence[str | None] = namespaces or [None]  # None: all namespaces
        self._selector = label_selector
        self._objects: dict[str, dict] = {}  # uid -> object
        self._index: dict[Hashable, dict[str, dict]] = {}  # key -> uid -> object
        self._pending = len(self._namespaces)
        self.synced = asyncio.Event()

    # ---------------------------------------------------------------- read (the cache)

    def get(self, key: Hashable) -> list[dict]:
        found = self._index.get(key)
        return list(found.values()) if found else []

    def values(self) -> Iterator[list[dict]]:
        return iter([list(objs.values()) for objs in self._index.values()])

    def __len__(self) -> int:
        return len(self._objects)

    # ---------------------------------------------------------------- write (from the API server)

    def _put(self, obj: dict) -> None:
        uid = obj["metadata"]["uid"]
        old = self._objects.get(uid)
        if old is not None and old["metadata"].get("resourceVersion") == obj["metadata"].get("resourceVersion"):
            return  # a relist or a resumed watch repeating what the cache holds: no news
        obj.setdefault("apiVersion", self.api_version)  # list items come without them
        obj.setdefault("kind", self.kind)
        obj = compact(obj)
        if old is not None:
            self._unindex(uid, old)
        self._objects[uid] = obj
        for key in self._keys(obj):
            self._index.setdefault(key, {})[uid] = obj
        if old is not None and old is not obj:
            self._on_change(old)  # a label change may move it to another owner
        self._on_change(obj)

    def _delete(self, obj: dict) -> None:
        uid = obj["metadata"]["uid"]
        old = self._objects.pop(uid, None)
        if old is not None:
            self._unindex(uid, old)
            self._on_change(old)

    def _unindex(self, uid: str, obj: dict) -> None:
        for key in self._keys(obj):
            bucket = self._index.get(key)
            if bucket is not None:
                bucket.pop(uid, None)
                if not bucket:
                    del self._index[key]

    # ---------------------------------------------------------------- list and watch

    def _path(self, namespace: str | None) -> str:
        return resource_path(self.api_version, self.kind, namespace)

    async def _list(self, namespace: str | None) -> str:
        """Lists in pages into the index; forgets what is gone (after a relist); returns the resourceVersion."""
        params: dict[str, str] = {"limit": str(PAGE)}
        if self._selector:
            params["labelSelector"] = self._selector
        seen: set[str] = set()
        while True:
            # Bounded like a watch: a frozen API server must not hold a page request (and its connection) longer.
            page = await self._client.request("GET", self._path(namespace), params=params,
                                              timeout=self._watch_timeout + self._grace)
            for item in page.get("items") or []:
                seen.add(item["metadata"]["uid"])
                self._put(item)
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                break
            params["continue"] = token
        for uid, obj in list(self._objects.items()):
            if uid not in seen and (namespace is None or obj["metadata"].get("namespace") == namespace):
                self._delete(obj)
        resource_version: str = page["metadata"]["resourceVersion"]
        return resource_version

    async def _watch(self, namespace: str | None, version: str) -> None:
        path = self._path(namespace)
        while True:
            async for event in self._client.watch(path, version, self._watch_timeout, grace=self._grace,
                                                  label_selector=self._selector):
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise ApiError(obj.get("code") or 410, obj, "WATCH", path)
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if kind == "DELETED":
                    self._delete(obj)
                elif kind in ("ADDED", "MODIFIED"):
                    self._put(obj)

    async def _run_one(self, namespace: str | None) -> None:
        first, delay = True, 0.5
        while True:
            try:
                version = await self._list(namespace)
                if first:
                    first = False
                    self._pending -= 1
                    if self._pending == 0:
                        self.synced.set()
                delay = 0.5
                await self._watch(namespace, version)
            except asyncio.CancelledError:
                raise
            except ApiError as err:
                if err.status != 410:  # 410: the watch expired; relist at once
                    log.warning("%s informer (%s): %s; retrying in %.1fs", self.kind, namespace or "all", err, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30)
            except Exception as err:  # noqa: BLE001  (a dropped connection: relist, never die)
                log.warning("%s informer (%s): %s; retrying in %.1fs", self.kind, namespace or "all", err, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)

    async def run(self) -> None:
        await asyncio.gather(*(self._run_one(ns) for ns in self._namespaces))

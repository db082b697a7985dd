"""A recording fake of the few KubeClient calls a DriftMonitor reconcile makes, over a dict of stored objects, and
a dict cache: enough to drive DriftMonitorReconciler.reconcile() in fast unit tests. The API server's semantics
that matter here are kept: a create of an existing name is a 409, a status patch carrying a resourceVersion that
is not the stored one is a 409, every write bumps the resourceVersion."""

from __future__ import annotations

import copy
import itertools

from mlops_operator.k8s.client import ApiError, object_path


def merge(target: dict, patch: dict) -> dict:
    """RFC 7386 merge patch."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


class FakeClient:
    def __init__(self, *objects: dict):
        self.store: dict[str, dict] = {}
        self.calls: list[tuple[str, str]] = []
        self.events: list[tuple[str, str, str]] = []  # (type, reason, message)
        self._versions = itertools.count(100)
        for obj in objects:
            self.put(obj)

    def put(self, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(next(self._versions))
        self.store[object_path(obj)] = obj
        return copy.deepcopy(obj)

    def stored(self, obj: dict) -> dict:
        return copy.deepcopy(self.store[object_path(obj)])

    def created(self, kind: str) -> list[dict]:
        return [o for o in self.store.values() if o["kind"] == kind]

    async def pick_resource_version(self, group: str, resource: str, versions: list[str]) -> str:
        return f"{group}/{versions[-1]}"

    async def get(self, path: str) -> dict | None:
        self.calls.append(("get", path))
        return copy.deepcopy(self.store.get(path))

    async def apply(self, obj: dict, force: bool = True) -> dict:
        self.calls.append(("apply", object_path(obj)))
        return self.put(obj)

    async def delete(self, path: str, propagation: str = "Background") -> bool:
        self.calls.append(("delete", path))
        return self.store.pop(path, None) is not None

    async def create(self, collection: str, body: dict) -> dict:
        if collection.endswith("/events"):
            self.events.append((body["type"], body["reason"], body["message"]))
            return body
        path = f"{collection}/{body['metadata']['name']}"
        self.calls.append(("create", path))
        if path in self.store:
            raise ApiError(409, {"message": "already exists"}, "POST", collection)
        return self.put(body)

    async def request(self, method: str, path: str, body=None, content_type=None, params=None):
        if method == "GET":  # as the API server answers a read: the object, or a 404 that names it
            found = await self.get(path)
            if found is None:
                raise ApiError(404, {"reason": "NotFound", "details": {"name": path.rpartition("/")[2]}}, method,
                               path)
            return found
        assert method == "PATCH" and path.endswith("/status"), (method, path)
        self.calls.append(("patch_status", path))
        obj = self.store.get(path.removesuffix("/status"))
        if obj is None:
            raise ApiError(404, {"message": "not found"}, method, path)
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != obj["metadata"]["resourceVersion"]:
            raise ApiError(409, {"message": "the object has been modified"}, method, path)
        return self.put(merge(obj, {"status": body["status"]}))

    async def merge_patch(self, path: str, patch: dict) -> dict:
        return await self.request("PATCH", path, body=patch)

    async def patch_status(self, path: str, status: dict) -> dict:
        return await self.request("PATCH", path + "/status", body={"status": status})


class DictCache:
    """The cache interface the reconcilers read, over {index: {key: object}}."""

    def __init__(self, **indices: dict):
        self.indices = {name: dict(objects) for name, objects in indices.items()}

    def set(self, index: str, key, obj: dict | None) -> None:
        if obj is None:
            self.indices.setdefault(index, {}).pop(key, None)
        else:
            self.indices.setdefault(index, {})[key] = copy.deepcopy(obj)

    def one(self, index: str, key):
        obj = self.indices.get(index, {}).get(key)
        return copy.deepcopy(obj) if obj is not None else None

    def all(self, index: str, key) -> list[dict]:
        obj = self.one(index, key)
        return [obj] if obj is not None else []

    def values(self, index: str):
        yield from (copy.deepcopy(o) for o in self.indices.get(index, {}).values())

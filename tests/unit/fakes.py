"""Fakes for fast unit tests of a reconciler's reconcile(): a client that keeps objects in a dict and records every
write, and a dict-backed cache with the operator's index names. Generic over kinds: objects are addressed by the
paths k8s/client.py builds. Integration tests use the real API server instead; these only make the reconciler's
decisions quick to check, including against a cache that lags behind the client."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Hashable
from typing import Any

from mlops_operator.k8s.client import ApiError, object_path
from mlops_operator.runtime.cache import Cache

CHILD_INDICES = {"Deployment": "deployments_idx", "Service": "services_idx", "Pod": "pods_idx",
                 "HorizontalPodAutoscaler": "hpas_idx", "PodDisruptionBudget": "pdbs_idx"}
OWNER_INDICES = {"ModelDeployment": "modeldeployments_idx", "TrainingJob": "trainingjobs_idx",
                 "DriftMonitor": "driftmonitors_idx"}


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


class FakeClient:
    """The KubeClient verbs the reconcilers use, over a dict of objects by path. `calls` records (verb, path,
    body) of every write; `events` the Events created. Status writes honour a metadata.resourceVersion
    precondition with 409, as the API server does."""

    def __init__(self, *objects: dict, version: tuple[str, str] = ("1", "20")):
        self.objects: dict[str, dict] = {}
        self.calls: list[tuple[str, str, Any]] = []
        self.events: list[dict] = []
        self.version = version
        self._rv = itertools.count(100)
        for obj in objects:
            self.put(obj)

    def put(self, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = str(next(self._rv))
        self.objects[object_path(obj)] = obj
        return copy.deepcopy(obj)

    def writes(self, verb: str | None = None) -> list[tuple[str, str, Any]]:
        return [c for c in self.calls if verb is None or c[0] == verb]

    def reasons(self, name: str | None = None) -> list[str]:
        return [e["reason"] for e in self.events if name is None or e["involvedObject"]["name"] == name]

    def _missing(self, method: str, path: str) -> ApiError:
        return ApiError(404, {"message": f"{path} not found"}, method, path)

    async def request(self, method: str, path: str, *, params: dict | None = None, body: Any = None,
                      **_: Any) -> Any:
        if path == "/version":
            return {"major": self.version[0], "minor": self.version[1]}
        if method == "GET":
            found = await self.get(path)
            if found is not None:
                return found
            items = await self.list(path)
            selector = (params or {}).get("fieldSelector", "")
            if "spec.nodeName!=" in selector:
                items = [o for o in items if (o.get("spec") or {}).get("nodeName")]
            if "status.phase!=Succeeded" in selector:
                items = [o for o in items if (o.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
            return {"items": items}
        raise NotImplementedError(f"{method} {path}")

    async def get(self, path: str) -> dict | None:
        found = self.objects.get(path)
        return copy.deepcopy(found) if found is not None else None

    async def list(self, path: str, label_selector: str | None = None) -> list[dict]:
        """Objects directly under a collection path; for a cluster-wide core path (/api/v1/pods) every
        namespace's."""
        parts = path.rstrip("/").split("/")
        out = []
        for key, obj in self.objects.items():
            kparts = key.split("/")
            same = kparts[:-1] == parts or (len(parts) == 4 and kparts[-2] == parts[-1] and kparts[:3] == parts[:3])
            if same:
                out.append(copy.deepcopy(obj))
        return out

    async def apply(self, obj: dict, force: bool = True) -> dict:
        self.calls.append(("apply", object_path(obj), copy.deepcopy(obj)))
        old = self.objects.get(object_path(obj))
        if old is not None:
            obj = {**merge(old, obj), "metadata": {**old["metadata"], **obj["metadata"]}}
        return self.put(obj)

    async def patch_status(self, obj_path: str, status: dict) -> dict:
        return await self.merge_patch(obj_path + "/status", {"status": status})

    async def merge_patch(self, obj_path: str, patch: dict) -> dict:
        self.calls.append(("merge_patch", obj_path, copy.deepcopy(patch)))
        subresource = obj_path.endswith("/status")
        path = obj_path.removesuffix("/status")
        old = self.objects.get(path)
        if old is None:
            raise self._missing("PATCH", obj_path)
        wanted = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != old["metadata"]["resourceVersion"]:
            raise ApiError(409, {"message": "the object has been modified"}, "PATCH", obj_path)
        if subresource:
            new = {**old, "status": merge(old.get("status") or {}, patch.get("status") or {})}
        else:
            new = merge(old, {k: v for k, v in patch.items() if k != "metadata"})
            if new.get("spec") != old.get("spec"):
                new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        return self.put(new)

    async def delete(self, obj_path: str, propagation: str = "Background") -> bool:
        self.calls.append(("delete", obj_path, None))
        return self.objects.pop(obj_path, None) is not None

    async def create(self, collection_path: str, body: dict) -> dict:
        self.calls.append(("create", collection_path, copy.deepcopy(body)))
        if body.get("kind") == "Event":
            self.events.append(copy.deepcopy(body))
            return body
        return self.put(body)


class _ListIndex(dict):
    """An index as the cache reads an informer: key -> objects, [] for an unknown key."""

    def get(self, key, default=None):  # noqa: ARG002  (dict's signature)
        return super().get(key) or []


class DictCache(Cache):
    """The operator's cache over plain dicts, with the index names and keys the reconcilers read. `sync`
    copies the client's objects in (what the informers do, at a moment the test chooses)."""

    def __init__(self) -> None:
        self.data: dict[str, _ListIndex] = {
            name: _ListIndex() for name in (*OWNER_INDICES.values(), *CHILD_INDICES.values())}
        super().__init__(self.data)

    def put(self, obj: dict) -> None:
        obj = copy.deepcopy(obj)
        meta = obj["metadata"]
        for key, index in self._keys(obj):
            store = self.data[index].setdefault(key, [])
            store[:] = [o for o in store if o["metadata"]["name"] != meta["name"]] + [obj]

    def clear(self) -> None:
        for index in self.data.values():
            index.clear()

    def sync(self, client: FakeClient) -> None:
        self.clear()
        for obj in client.objects.values():
            self.put(obj)

    @staticmethod
    def _keys(obj: dict) -> list[tuple[Hashable, str]]:
        meta = obj["metadata"]
        if obj["kind"] in OWNER_INDICES:
            return [((meta["namespace"], meta["name"]), OWNER_INDICES[obj["kind"]])]
        index = CHILD_INDICES.get(obj["kind"])
        if index is None:
            return []
        return [((meta["namespace"], label.split("/", 1)[1], owner), index)
                for label, owner in (meta.get("labels") or {}).items() if label.startswith("mlops.dev/")
                and label.split("/", 1)[1] in ("modeldeployment", "trainingjob", "driftmonitor")]

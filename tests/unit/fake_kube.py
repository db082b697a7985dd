"""A recording fake of KubeClient and a dict cache, for fast unit tests of a reconciler's reconcile(): every write
is recorded as (verb, field manager, path, body); nothing is validated (the integration tests use the real API)."""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Hashable, Iterator

from mlops_operator import FIELD_MANAGER
from mlops_operator.k8s.client import ApiError, object_path


class FakeClient:
    def __init__(self, *, conflict_on_status: bool = False, owner_uid: str = "uid-1"):
        self.writes: list[tuple[str, str, str, dict]] = []
        self.reads: list[str] = []
        self.conflict_on_status = conflict_on_status
        self.owner_uid = owner_uid  # what a read of any object answers: the owners the tests build have this uid

    async def pick_version(self, group: str, wanted: list[str]) -> str:
        return f"{group}/{wanted[0]}"

    async def apply(self, obj: dict, force: bool = True) -> dict:
        self.writes.append(("apply", FIELD_MANAGER, object_path(obj), copy.deepcopy(obj)))
        return obj

    async def request(self, method: str, path: str, *, params: dict | None = None, body=None,
                      content_type: str = "application/json", timeout: float | None = None):
        if method == "GET":  # a read (the child sync checks the owner before it creates): alive, with owner_uid
            self.reads.append(path)
            return {"metadata": {"uid": self.owner_uid}}
        if path.endswith("/status") and self.conflict_on_status:
            raise ApiError(409, {"message": "the object has been modified"}, method, path)
        verb = "apply" if content_type.startswith("application/apply-patch") else method.lower()
        self.writes.append((verb, (params or {}).get("fieldManager", ""), path, copy.deepcopy(body)))
        return body

    async def merge_patch(self, obj_path: str, patch: dict) -> dict:
        return await self.request("PATCH", obj_path, body=patch, content_type="application/merge-patch+json",
                                  params={"fieldManager": FIELD_MANAGER})

    async def patch_status(self, obj_path: str, status: dict) -> dict:
        self.writes.append(("patch", FIELD_MANAGER, obj_path + "/status", {"status": copy.deepcopy(status)}))
        return status

    async def create(self, collection_path: str, body: dict) -> dict:
        self.writes.append(("create", FIELD_MANAGER, collection_path, copy.deepcopy(body)))
        return body

    async def delete(self, obj_path: str, propagation: str = "Background") -> bool:
        self.writes.append(("delete", FIELD_MANAGER, obj_path, {}))
        return True

    def events(self) -> list[tuple[str, str]]:
        return [(body["type"], body["reason"]) for verb, _, _, body in self.writes
                if verb == "create" and body.get("kind") == "Event"]

    def applied(self, kind: str | None = None) -> list[tuple[str, dict]]:
        """(field manager, body) of each apply, of one kind or all."""
        return [(manager, body) for verb, manager, _, body in self.writes
                if verb == "apply" and (kind is None or body.get("kind") == kind)]


class DictCache:
    """The cache interface reconcilers read (one, all, values), over plain dicts."""

    def __init__(self):
        self.indices: dict[str, dict[Hashable, list[dict]]] = defaultdict(lambda: defaultdict(list))

    def put(self, index: str, key: Hashable, obj: dict) -> None:
        store = self.indices[index][key]
        store[:] = [o for o in store if o["metadata"]["name"] != obj["metadata"]["name"]] + [obj]

    def all(self, index: str, key: Hashable) -> list[dict]:
        return list(self.indices[index].get(key, []))

    def one(self, index: str, key: Hashable) -> dict | None:
        found = self.all(index, key)
        return found[-1] if found else None

    def values(self, index: str) -> Iterator[dict]:
        for store in self.indices[index].values():
            yield from store

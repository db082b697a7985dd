"""A deleted owner's children go at once (k8s/sync.py delete_orphans), and nothing else does."""

import asyncio

from mlops_operator.k8s.sync import delete_orphans


class Client:
    def __init__(self) -> None:
        self.deleted: list[str] = []

    async def delete(self, path: str, propagation: str = "Background") -> bool:
        self.deleted.append(path)
        return True


def child(kind: str, name: str, owner_kind: str | None, deleting: bool = False) -> dict:
    api = {"Deployment": "apps/v1", "Service": "v1", "CronJob": "batch/v1"}[kind]
    meta: dict = {"name": name, "namespace": "ml"}
    if owner_kind:
        meta["ownerReferences"] = [{"kind": owner_kind, "name": "iris", "uid": "old"}]
    if deleting:
        meta["deletionTimestamp"] = "2026-11-30T00:00:00Z"
    return {"apiVersion": api, "kind": kind, "metadata": meta}


def test_only_children_of_the_deleted_kind_are_deleted_once():
    client = Client()
    children = [child("Deployment", "iris", "ModelDeployment"), child("Service", "iris", "ModelDeployment"),
                None, child("Service", "other", None), child("CronJob", "x", "DriftMonitor"),
                child("Deployment", "iris-canary", "ModelDeployment", deleting=True)]
    assert asyncio.run(delete_orphans(client, children, "ModelDeployment", ("ml", "iris"))) == 2
    assert client.deleted == ["/apis/apps/v1/namespaces/ml/deployments/iris", "/api/v1/namespaces/ml/services/iris"]

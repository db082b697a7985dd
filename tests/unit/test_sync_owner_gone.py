"""A child is made only for an owner the API server still has: the cache may hold an owner deleted while its watch
was down, and a child made for it would be collected and made again, over and over (k8s/sync.py)."""

import asyncio

import pytest

from mlops_operator.k8s.client import ApiError
from mlops_operator.k8s.status import ObjectGone
from mlops_operator.k8s.sync import CREATED, UNCHANGED, UPDATED, sync_children

OWNER = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
         "metadata": {"name": "md", "namespace": "ns", "uid": "u-1"}}


def deployment(replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "md", "namespace": "ns"},
            "spec": {"replicas": replicas}}


NOT_FOUND = {"reason": "NotFound", "details": {"name": "md"}}
UNSERVED = {"reason": "NotFound", "message": "the server could not find the requested resource"}


class Client:
    def __init__(self, owner: dict | None, missing: dict = NOT_FOUND):
        self.owner, self.missing, self.gets, self.applied = owner, missing, [], []

    async def request(self, method: str, path: str, **_):
        assert method == "GET"
        self.gets.append(path)
        if self.owner is None:
            raise ApiError(404, self.missing, method, path)
        return self.owner

    async def apply(self, body: dict):
        self.applied.append(body)
        return body


def sync(client: Client, live: dict, desired: dict) -> dict:
    return asyncio.run(sync_children(client, live, desired, owner=OWNER))  # type: ignore[arg-type]


@pytest.mark.parametrize("found", [None, {"metadata": {"name": "md", "uid": "u-2"}}], ids=["deleted", "recreated"])
def test_no_child_is_made_for_an_owner_the_api_server_no_longer_has(found):
    client = Client(found)
    with pytest.raises(ObjectGone):
        sync(client, {"stable": None}, {"stable": deployment(2)})
    assert client.applied == [] and client.gets == ["/apis/mlops.dev/v1alpha1/namespaces/ns/modeldeployments/md"]


def test_a_404_that_names_no_object_is_no_proof_and_the_child_is_made():
    # An API server that restarts serves no custom resources for a while: its 404 does not name the object.
    client = Client(None, missing=UNSERVED)
    assert sync(client, {"stable": None}, {"stable": deployment(2)}) == {"stable": CREATED}
    assert len(client.applied) == 1


def test_a_live_owner_is_read_once_per_reconcile_and_only_when_a_child_is_made():
    client = Client(OWNER)
    assert sync(client, {"a": None, "b": None}, {"a": deployment(1), "b": deployment(2)}) == {"a": CREATED,
                                                                                              "b": CREATED}
    assert len(client.gets) == 1 and len(client.applied) == 2
    client = Client(None)  # updating or keeping a child reads nothing
    have = {**deployment(1), "metadata": {**deployment(1)["metadata"], "managedFields": []}}
    done = sync(client, {"a": have, "b": deployment(2)}, {"a": deployment(3), "b": deployment(2)})
    assert done["a"] == UPDATED and done["b"] in (UNCHANGED, UPDATED) and client.gets == []

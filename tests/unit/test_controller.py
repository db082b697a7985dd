"""The controller under a reconciler that writes status through k8s/status.py, with a fake API client: a 404 on a
status write hides nothing live (issue: "a 404 hides a live object forever"), and workers act only while this
replica leads."""

import asyncio

from mlops_operator.k8s.client import ApiError
from mlops_operator.k8s.status import write_status
from mlops_operator.runtime.cache import Cache
from mlops_operator.runtime.controller import Controller
from mlops_operator.runtime.informer import Informer

KEY = ("ml", "iris")
NOT_FOUND = {"kind": "Status", "reason": "NotFound", "code": 404,
             "details": {"name": "iris", "group": "mlops.dev", "kind": "modeldeployments"}}


def md(uid: str = "uid-1", rv: str = "1") -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "iris", "namespace": "ml", "uid": uid, "resourceVersion": rv, "generation": 1},
            "spec": {}}


class FakeClient:
    """Status patches fail with the given 404 bodies first; GET answers with `live` (None: NotFound)."""

    def __init__(self, failures: list, live: dict | None):
        self.failures, self.live = list(failures), live
        self.patches: list[str] = []
        self.gets = 0

    async def merge_patch(self, path: str, patch: dict) -> dict:
        self.patches.append(path)
        if self.failures:
            raise ApiError(404, self.failures.pop(0), "PATCH", path)
        return {}

    async def request(self, method: str, path: str, **_):
        assert method == "GET"
        self.gets += 1
        if self.live is None:
            raise ApiError(404, NOT_FOUND, method, path)
        return self.live


def setup(client):
    informer = Informer(client=None, api_version="mlops.dev/v1alpha1", kind="ModelDeployment",
                        keys=lambda obj: [(obj["metadata"]["namespace"], obj["metadata"]["name"])],
                        on_change=lambda obj: None)
    informer._put(md())
    cache = Cache({"modeldeployments_idx": informer})
    reconciled = []

    async def reconcile(key):
        body = cache.one("modeldeployments_idx", key)
        if body is None:
            return None
        reconciled.append(body["metadata"]["uid"])
        await write_status(client, body, {"observedGeneration": 1})
        return None

    return informer, Controller("modeldeployment", reconcile, workers=1, base_backoff=0.01), reconciled


async def settle(controller, until, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not until() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)


def test_a_404_for_a_live_object_is_retried_until_the_status_is_written():
    async def scenario():
        # the API server answers 404 for a live object (its custom resources not served yet after a restart)
        client = FakeClient([{"kind": "Status", "reason": "NotFound", "code": 404, "details": {}}], live=md())
        _, controller, reconciled = setup(client)
        controller.start()
        controller.queue.add(KEY)
        await settle(controller, lambda: len(client.patches) >= 2)
        await controller.stop()
        assert len(client.patches) == 2 and client.gets == 1  # checked, found alive, retried: written
        assert reconciled == ["uid-1", "uid-1"]

    asyncio.run(scenario())


def test_a_404_for_an_object_really_gone_is_dropped_and_a_new_one_by_that_name_is_served():
    async def scenario():
        client = FakeClient([NOT_FOUND], live=None)
        informer, controller, reconciled = setup(client)
        controller.start()
        controller.queue.add(KEY)
        await settle(controller, lambda: client.gets == 1)
        await asyncio.sleep(0.2)  # a retry would come within 10 ms
        assert len(client.patches) == 1  # no retry loop for a deleted object
        informer._delete(md())  # its DELETED event
        informer._put(md(uid="uid-2"))  # created again by the same name: a new watch event
        client.live = md(uid="uid-2")
        controller.queue.add(KEY)
        await settle(controller, lambda: len(client.patches) >= 2)
        await controller.stop()
        assert reconciled == ["uid-1", "uid-2"]

    asyncio.run(scenario())


def test_a_uid_that_changed_under_the_name_is_gone():
    async def scenario():
        client = FakeClient([NOT_FOUND], live=md(uid="uid-new"))
        _, controller, _ = setup(client)
        controller.start()
        controller.queue.add(KEY)
        await settle(controller, lambda: client.gets == 1)
        await asyncio.sleep(0.2)
        await controller.stop()
        assert len(client.patches) == 1

    asyncio.run(scenario())


class Leadership:
    def __init__(self):
        self.leading = asyncio.Event()
        self.lost = []

    def is_leader(self):
        return self.leading.is_set()

    async def wait_leading(self):
        await self.leading.wait()

    def on_lost(self, callback):
        self.lost.append(callback)

    def lose(self):
        self.leading.clear()
        for callback in self.lost:
            callback()


def test_workers_hold_keys_while_not_leading_and_a_lost_lease_interrupts_what_runs():
    async def scenario():
        leadership = Leadership()
        started, finished = [], []
        gate = asyncio.Event()

        async def reconcile(key):
            started.append(key)
            await gate.wait()
            finished.append(key)
            return 0.01  # a delayed requeue: must not act while not leading either

        controller = Controller("trainingjob", reconcile, workers=2, leadership=leadership)
        controller.start()
        controller.queue.add(("ns", "a"))
        controller.queue.add(("ns", "b"))
        await asyncio.sleep(0.1)
        assert started == []  # held: this replica does not lead
        leadership.leading.set()
        await settle(controller, lambda: len(started) == 2)
        leadership.lose()  # both reconciles are in flight
        await asyncio.sleep(0.1)
        gate.set()
        await asyncio.sleep(0.1)
        assert finished == [] and len(started) == 2  # cancelled at once, nothing more started
        leadership.leading.set()  # leading again: the interrupted keys were held, not dropped
        await settle(controller, lambda: {("ns", "a"), ("ns", "b")} <= set(finished))
        await controller.stop()
        assert {("ns", "a"), ("ns", "b")} <= set(finished)

    asyncio.run(scenario())

"""TrainingJobReconciler.reconcile() against a recording fake client and a dict cache that the test syncs when it
chooses: once-only actions while the cache lags, promotion, gang admission, an invalid spec. Every status the
reconciler writes is checked against the pydantic status model."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from fakes import DictCache, FakeClient

from mlops_operator.api.trainingjob import TrainingJobStatus
from mlops_operator.k8s.conditions import find_condition
from mlops_operator.settings import load as load_settings
from mlops_operator.training.reconcile import TrainingJobReconciler

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
NS = "ml"
JOB_PATH = f"/apis/mlops.dev/v1alpha1/namespaces/{NS}/trainingjobs/ft"
MD_PATH = f"/apis/mlops.dev/v1alpha1/namespaces/{NS}/modeldeployments/chat"


def job(name: str = "ft", **spec) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": name, "namespace": NS},
            "spec": {"image": "t:1", "workers": 2, **spec}}


def model_deployment() -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "chat", "namespace": NS},
            "spec": {"model": {"uri": "s3://m/v1"}, "runtime": {"preset": "sklearn"}}}


def gpu_node(name: str, gpus: int = 8) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {}},
            "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"nvidia.com/gpu": str(gpus)},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def holder(name: str, node: str, gpus: int, phase: str = "Running") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "other"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu":
                                                                                                str(gpus)}}}]},
            "status": {"phase": phase}}


class World:
    """A fake API server, a cache the test syncs, a clock, and a reconciler (a new one: an operator restart)."""

    def __init__(self, *objects: dict):
        self.client = FakeClient(*objects)
        self.cache = DictCache()
        self.cache.sync(self.client)
        self.now = T0
        self.reconciler = self.restart()

    def restart(self) -> TrainingJobReconciler:
        self.reconciler = TrainingJobReconciler(client=self.client, cache=self.cache, settings=load_settings(),
                                                clock=lambda: self.now)
        return self.reconciler

    def reconcile(self, name: str = "ft") -> float | None:
        result = asyncio.run(self.reconciler.reconcile((NS, name)))
        TrainingJobStatus.model_validate(self.job(name).get("status") or {})
        return result

    def job(self, name: str = "ft") -> dict:
        return self.client.objects[JOB_PATH.replace("/ft", f"/{name}")]

    def pods(self, phase: str | None = None) -> list[dict]:
        return [o for o in self.client.objects.values() if o["kind"] == "Pod"
                and (o["metadata"].get("labels") or {}).get("mlops.dev/trainingjob")]

    def set_pods(self, phase: str, started: str = "2024-05-01T12:00:01Z", finished: str = "2024-05-01T12:00:09Z"):
        for pod in self.pods():
            pod["spec"]["nodeName"] = "gpu-node-0"
            state = {"running": {"startedAt": started}} if phase == "Running" else {
                "terminated": {"exitCode": 0, "startedAt": started, "finishedAt": finished}}
            pod["status"] = {"phase": phase, "containerStatuses": [{"name": "trainer", "state": state}]}

    def condition(self, type_: str, name: str = "ft") -> dict:
        return find_condition(self.job(name)["status"].get("conditions"), type_) or {}


def test_a_cache_behind_the_operators_own_writes_starts_no_second_attempt_and_repeats_no_event():
    world = World(job())
    world.reconcile()
    assert world.client.reasons("ft") == ["AttemptStarted"] and len(world.pods()) == 2
    # The cache still holds the job as created (no status): the reconciler remembers what it wrote.
    world.reconcile()
    world.reconcile()
    assert world.client.reasons("ft") == ["AttemptStarted"] and len(world.pods()) == 2
    assert world.job()["status"]["attempt"] == 1


def test_a_restarted_operator_with_a_stale_cache_gets_a_conflict_and_decides_again_from_fresh_state():
    world = World(job())
    world.reconcile()
    stale = world.client.objects[JOB_PATH]["metadata"]["resourceVersion"]
    world.restart()  # no memory of its writes; the cache still has the job without status
    world.reconcile()
    assert world.client.reasons("ft") == ["AttemptStarted"] and world.job()["status"]["attempt"] == 1
    conflicts = [c for c in world.client.writes("merge_patch") if c[1].endswith("/status")]
    assert conflicts and all("resourceVersion" in c[2]["metadata"] for c in conflicts)
    assert world.job()["metadata"]["resourceVersion"] == stale  # nothing was left to write


def test_promotion_is_done_once_although_the_cache_lags_behind_it():
    world = World(job(output={"modelUri": "s3://m/v2"}, promote={"modelDeployment": {"name": "chat"}}),
                  model_deployment())
    world.reconcile()
    world.cache.sync(world.client)
    world.set_pods("Succeeded")
    world.cache.sync(world.client)
    before_success = world.cache.one("trainingjobs_idx", (NS, "ft"))
    world.reconcile()
    assert world.job()["status"]["promotion"]["modelUri"] == "s3://m/v2"
    assert world.client.objects[MD_PATH]["spec"]["rollout"]["canary"]["model"]["uri"] == "s3://m/v2"
    world.cache.put(before_success)  # the cache has not seen the success nor the promotion
    world.reconcile()
    world.restart()
    world.reconcile()
    assert world.client.reasons("ft").count("Promoted") == 1 and world.client.reasons("chat") == ["Promoted"]
    assert world.condition("Promoted")["status"] == "True"


def test_a_model_deployment_missing_from_the_cache_is_looked_up_before_it_is_called_missing():
    world = World(job(output={"modelUri": "s3://m/v2"}, promote={"modelDeployment": {"name": "chat"}}))
    world.client.put(model_deployment())  # created just now: not in the cache yet
    world.reconcile()
    world.set_pods("Succeeded")
    world.cache.sync(world.client)
    world.cache.data["modeldeployments_idx"].clear()
    world.reconcile()
    assert "ModelDeploymentNotFound" not in world.client.reasons()
    assert world.client.reasons("chat") == ["Promoted"] and world.condition("Promoted")["reason"] == "Promoted"


def test_a_missing_promotion_target_is_reported_at_the_first_reconcile_and_the_job_still_runs():
    world = World(job(output={"modelUri": "s3://m/v2"}, promote={"modelDeployment": {"name": "chat"}}))
    world.reconcile()
    promoted = world.condition("Promoted")
    assert (promoted["status"], promoted["reason"]) == ("False", "ModelDeploymentNotFound")
    assert sorted(world.client.reasons("ft")) == ["AttemptStarted", "ModelDeploymentNotFound"]
    assert len(world.pods()) == 2
    world.reconcile()
    assert world.client.reasons("ft").count("ModelDeploymentNotFound") == 1
    world.client.put(model_deployment())
    world.reconcile()
    assert world.condition("Promoted")["reason"] == "AwaitingSuccess"


GANG = {"workers": 2, "resources": {"gpu": {"count": 8}}}


def test_a_gang_that_does_not_fit_the_free_gpus_waits_without_pods_or_retries_then_starts():
    world = World(job(**GANG), gpu_node("gpu-node-0"), gpu_node("gpu-node-1"), holder("other-0", "gpu-node-0", 8))
    world.reconcile()
    st = world.job()["status"]
    assert world.pods() == [] and st["phase"] == "Pending" and st.get("retries", 0) == 0
    running = world.condition("Running")
    assert running["reason"] == "InsufficientGPUs"
    assert "2 workers x 8 nvidia.com/gpu; 8 of 16 are free" in running["message"]
    assert world.condition("Ready")["reason"] == "InsufficientGPUs" and st["gpus"] == 16
    world.reconcile()
    assert world.client.reasons("ft") == ["InsufficientGPUs"]
    world.client.objects["/api/v1/namespaces/other/pods/other-0"]["status"]["phase"] = "Succeeded"
    world.reconcile()
    assert len(world.pods()) == 2 and world.client.reasons("ft") == ["InsufficientGPUs", "AttemptStarted"]


def test_gang_admission_skips_nodes_the_workers_may_not_use():
    h100, other, untainted = gpu_node("gpu-node-0"), gpu_node("gpu-node-1"), gpu_node("gpu-node-2")
    for node in (h100, untainted):
        node["metadata"]["labels"] = {"nvidia.com/gpu.product": "H100"}
    other["metadata"]["labels"] = {"nvidia.com/gpu.product": "A100"}
    untainted["spec"]["taints"] = [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]
    world = World(job(resources={"gpu": {"count": 8, "product": "H100"}}), h100, other, untainted)
    world.reconcile()
    assert world.pods() == []
    assert "8 of 8 are free on the nodes it may use, room for 1 workers" in world.condition("Running")["message"]


def test_an_invalid_job_shows_invalid_spec_as_its_phase_and_creates_nothing():
    world = World(job(name="a" * 56))
    world.reconcile("a" * 56)
    st = world.job("a" * 56)["status"]
    assert st["phase"] == "InvalidSpec" and world.pods() == []
    ready = world.condition("Ready", "a" * 56)
    assert ready["reason"] == "InvalidSpec" and ready["message"].startswith("metadata.name:")
    assert world.client.writes("apply") == []


@pytest.mark.parametrize("spec", [{}, GANG, {"suspend": True}])
def test_the_written_status_fits_the_status_model_through_a_whole_run(spec):
    world = World(job(**spec), gpu_node("gpu-node-0"), gpu_node("gpu-node-1"))
    world.reconcile()
    world.set_pods("Running")
    world.now += timedelta(seconds=5)
    world.reconcile()
    world.set_pods("Succeeded", finished="2024-05-01T12:00:09Z")
    world.now += timedelta(seconds=5)
    world.reconcile()
    TrainingJobStatus.model_validate(world.job()["status"])
    assert world.job()["status"]["phase"] == ("Suspended" if spec.get("suspend") else "Succeeded")


def test_a_second_gang_waits_for_the_gpus_the_first_was_admitted_to_before_the_scheduler_places_it():
    world = World(job(**GANG), job("second", **GANG), gpu_node("gpu-node-0"), gpu_node("gpu-node-1"))
    world.reconcile()
    assert len(world.pods()) == 2 and all(not p["spec"].get("nodeName") for p in world.pods())
    world.reconcile("second")
    assert len(world.pods()) == 2 and world.condition("Running", "second")["reason"] == "InsufficientGPUs"
    assert "0 of 16 are free" in world.condition("Running", "second")["message"]


def test_a_gang_whose_pods_exist_is_not_admitted_again():
    world = World(job(**GANG), gpu_node("gpu-node-0"), gpu_node("gpu-node-1"))
    world.reconcile()
    created = world.job()
    for pod in world.pods():  # placed, holding all 16 GPUs; the write of attemptStartTime was lost
        pod["spec"]["nodeName"] = "gpu-node-0"
    world.client.objects[JOB_PATH]["status"].pop("attemptStartTime")
    world.cache.sync(world.client)
    world.restart()
    world.reconcile()
    assert world.job()["status"]["attemptStartTime"] and len(world.pods()) == 2
    assert world.condition("Running")["reason"] != "InsufficientGPUs" and created["status"]["attempt"] == 1

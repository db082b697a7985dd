"""ModelDeploymentReconciler.reconcile() against a recording fake client and a dict cache: what it writes, in which
order and under which field manager, and that events follow only the status writes that happened."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime

from fake_kube import DictCache, FakeClient

from mlops_operator.k8s.status import clean
from mlops_operator.serving.reconcile import (
    HANDOVER_ANNOTATION,
    HANDOVER_MANAGER,
    STALE_RETRY,
    ModelDeploymentReconciler,
)
from mlops_operator.settings import Settings

SETTINGS = Settings(operator_image="mlops-operator:test", vllm_image="reg/vllm:1", triton_image="reg/triton:2",
                    sklearn_image="reg/sklearn:3", cluster_domain="cluster.local", workers=1)
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
KEY = ("ml", "iris")
OWNER = ("ml", "modeldeployment", "iris")


def md(status: dict | None = None, **spec) -> dict:
    body = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "iris", "namespace": "ml", "uid": "uid-1", "generation": 3, "resourceVersion": "41"},
            "spec": {"model": {"uri": "s3://models/iris/v1"}, "runtime": {"preset": "sklearn"}, **spec}}
    if status is not None:
        body["status"] = status
    return body


def cache_with(body: dict, *children: dict, pods: list[dict] = ()) -> DictCache:
    cache = DictCache()
    cache.put("modeldeployments_idx", KEY, body)
    for child in children:
        index = {"Deployment": "deployments_idx", "Service": "services_idx",
                 "HorizontalPodAutoscaler": "hpas_idx", "PodDisruptionBudget": "pdbs_idx"}[child["kind"]]
        cache.put(index, OWNER, child)
    for pod in pods:
        cache.put("pods_idx", OWNER, pod)
    return cache


def live(applied: dict, replicas: int | None = None, annotations: dict | None = None) -> dict:
    """An applied child as the API server leaves it; a Deployment also rolled out by its controller."""
    dep = copy.deepcopy(applied)
    dep["metadata"].update(generation=1, resourceVersion="7")
    dep["metadata"].setdefault("annotations", {}).update(annotations or {})
    if dep["kind"] != "Deployment":
        return dep
    want = replicas if replicas is not None else dep["spec"].get("replicas", 1)
    dep["spec"]["replicas"] = want
    dep["status"] = {"observedGeneration": 1, "replicas": want, "updatedReplicas": want, "readyReplicas": want}
    return dep


def ready_pod(name: str, uri: str = "s3://models/iris/v1") -> dict:
    return {"metadata": {"name": name, "namespace": "ml", "labels": {"mlops.dev/track": "stable"},
                         "annotations": {"mlops.dev/model-uri": uri}},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}


def reconcile(cache: DictCache, client: FakeClient, settings: Settings = SETTINGS) -> float | None:
    reconciler = ModelDeploymentReconciler(client=client, cache=cache, settings=settings, clock=lambda: NOW)
    return asyncio.run(reconciler.reconcile(KEY))


def written_status(client: FakeClient) -> dict:
    [(_, _, _, body)] = [w for w in client.writes if w[2].endswith("/status")]
    return body


def converge(body: dict, replicas: int = 2) -> tuple[DictCache, dict]:
    """Reconcile a new object, then again with its children live and its status written: the converged state."""
    client = FakeClient()
    reconcile(cache_with(body), client)
    children = [live(obj) for _, obj in client.applied()]
    pods = [ready_pod(f"iris-{i}") for i in range(replicas)]
    client = FakeClient()
    reconcile(cache_with(body, *children, pods=pods), client)
    status = clean(written_status(client)["status"])
    return cache_with({**body, "status": status}, *children, pods=pods), status


# --- writes ---------------------------------------------------------------------------------------------------


def test_a_new_object_gets_its_children_and_a_guarded_status_write():
    client = FakeClient()
    assert reconcile(cache_with(md(replicas=2)), client) is None
    kinds = [body["kind"] for _, body in client.applied()]
    assert kinds == ["Deployment", "Service", "PodDisruptionBudget"]
    guarded = written_status(client)
    assert guarded["metadata"] == {"resourceVersion": "41"}  # a stale read fails instead of writing over
    assert guarded["status"]["conditions"][0]["reason"] == "Creating"


def test_converged_means_no_writes():
    cache, status = converge(md(replicas=2))
    assert status["stable"]["modelUri"] == "s3://models/iris/v1"
    client = FakeClient()
    reconcile(cache, client)
    assert client.writes == []


def test_events_follow_only_a_status_write_that_happened():
    body = md(replicas=2)
    client = FakeClient()
    reconcile(cache_with(body), client)
    children = [live(obj) for _, obj in client.applied()]
    pods = [ready_pod("a"), ready_pod("b")]
    # The cache is stale (the object moved on): the write fails with 409, nothing is posted, a retry is asked.
    stale = FakeClient(conflict_on_status=True)
    assert reconcile(cache_with(body, *children, pods=pods), stale) == STALE_RETRY
    assert stale.events() == []
    fresh = FakeClient()
    reconcile(cache_with(body, *children, pods=pods), fresh)
    assert fresh.events() == [("Normal", "Ready")]


def test_an_invalid_spec_touches_no_child():
    client = FakeClient()
    reconcile(cache_with(md(replicas=2, rollout={"canary": {"model": {"uri": "s3://m/2"}}})), client)
    assert client.applied() == []
    assert "InvalidSpec" in str(client.writes) and ("Warning", "InvalidSpec") in client.events()


def test_triton_without_an_image_is_an_invalid_spec_not_a_guess():
    from dataclasses import replace

    client = FakeClient()
    reconcile(cache_with(md(runtime={"preset": "triton"})), client, replace(SETTINGS, triton_image=""))
    assert client.applied() == []
    [(_, _, _, patch)] = [w for w in client.writes if w[2].endswith("/status")]
    [ready] = patch["status"]["conditions"]
    assert ready["reason"] == "InvalidSpec" and "NGC catalog" in ready["message"]


def test_a_small_memory_value_is_a_warning_once():
    body = md(replicas=1, resources={"memory": "512"})
    client = FakeClient()
    reconcile(cache_with(body), client)
    status = written_status(client)["status"]
    assert status["warnings"][0].startswith("spec.resources.memory: 512 is 512 bytes")
    assert ("Warning", "SuspiciousValue") in client.events()
    again = FakeClient()
    reconcile(cache_with({**body, "status": clean(status)}), again)
    assert ("Warning", "SuspiciousValue") not in again.events()


# --- autoscaling hands spec.replicas over ------------------------------------------------------------------------

SCALING = {"minReplicas": 2, "maxReplicas": 10, "targetCPUUtilization": 70}


def test_enabling_autoscaling_hands_the_live_count_to_a_second_field_manager_first():
    client = FakeClient()
    reconcile(cache_with(md(replicas=8)), client)
    stable = live(client.applied("Deployment")[0][1], replicas=8)
    client = FakeClient()
    reconcile(cache_with(md(replicas=8, autoscaling=SCALING), stable), client)
    (first_manager, first), (second_manager, second) = client.applied("Deployment")
    assert first_manager == HANDOVER_MANAGER
    assert first["spec"] == {"replicas": 8} and first["metadata"]["annotations"] == {HANDOVER_ANNOTATION: "true"}
    assert second_manager == "mlops-operator" and "replicas" not in second["spec"]
    # Once handed over, the HPA owns the count: nothing applies it again.
    handed = live(second, replicas=8, annotations={HANDOVER_ANNOTATION: "true"})
    client = FakeClient()
    reconcile(cache_with(md(replicas=8, autoscaling=SCALING), handed), client)
    assert [m for m, _ in client.applied("Deployment")] == []


def test_the_handed_over_count_respects_the_hpa_bounds():
    client = FakeClient()
    stable = live({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "iris", "namespace": "ml"}, "spec": {}}, replicas=1)
    reconcile(cache_with(md(autoscaling=SCALING), stable), client)
    assert client.applied("Deployment")[0][1]["spec"] == {"replicas": 2}


def test_disabling_autoscaling_sets_replicas_then_releases_the_handover():
    stable = live({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "iris", "namespace": "ml"},
                   "spec": {}}, replicas=8, annotations={HANDOVER_ANNOTATION: "true"})
    client = FakeClient()
    reconcile(cache_with(md(replicas=8), stable), client)
    (main_manager, main), (release_manager, release) = client.applied("Deployment")
    assert main_manager == "mlops-operator" and main["spec"]["replicas"] == 8
    assert release_manager == HANDOVER_MANAGER and set(release) == {"apiVersion", "kind", "metadata"}
    assert release["metadata"] == {"name": "iris", "namespace": "ml"}


def test_a_new_autoscaled_deployment_starts_at_min_replicas():
    client = FakeClient()
    reconcile(cache_with(md(autoscaling=SCALING)), client)
    [(manager, stable)] = client.applied("Deployment")
    assert manager == "mlops-operator" and stable["spec"]["replicas"] == 2


def test_a_deployment_just_changed_is_not_reported_ready_from_its_cached_copy():
    cache, status = converge(md(replicas=2))
    assert status["conditions"][0]["status"] == "True"
    body = {**cache.one("modeldeployments_idx", KEY), "spec": {**md()["spec"], "replicas": 3}}
    body["metadata"] = {**body["metadata"], "generation": 4}
    cache.put("modeldeployments_idx", KEY, body)
    client = FakeClient()
    reconcile(cache, client)
    ready = next(c for c in written_status(client)["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RollingOut")


class RejectingClient(FakeClient):
    """The API server refuses the Deployment made from this spec (a pass-through field it does not know)."""

    async def apply(self, obj: dict, force: bool = True) -> dict:
        from mlops_operator.k8s.client import ApiError

        if obj["kind"] == "Deployment":
            self.writes.append(("apply", "mlops-operator", obj["metadata"]["name"], obj))
            raise ApiError(422, {"message": "Deployment.apps is invalid: unknown field", "reason": "Invalid"},
                           "PATCH", "/apis/apps/v1/namespaces/ml/deployments/iris")
        return await super().apply(obj, force)


def test_children_the_api_server_refused_are_not_sent_again_until_they_change():
    odd = md(replicas=1, scheduling={"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnored": []}}})
    client = RejectingClient()
    reconciler = ModelDeploymentReconciler(client=client, cache=cache_with(odd), settings=SETTINGS, clock=lambda: NOW)
    asyncio.run(reconciler.reconcile(KEY))
    assert len(client.applied("Deployment")) == 1 and ("Warning", "InvalidSpec") in client.events()
    asyncio.run(reconciler.reconcile(KEY))
    assert len(client.applied("Deployment")) == 1  # not sent again
    reconciler.cache = cache_with(md(replicas=2, scheduling=odd["spec"]["scheduling"]))
    asyncio.run(reconciler.reconcile(KEY))
    assert len(client.applied("Deployment")) == 2  # changed children are tried

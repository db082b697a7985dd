"""ModelDeployment status from real object shapes: pods as the kubelet and scheduler write them, Deployments as
the deployment controller does. Reasons are the pods' own; Ready follows the stable Deployment's rollout."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mlops_operator.k8s.conditions import find_condition
from mlops_operator.serving import status
from mlops_operator.serving.canary import CanaryPlan
from mlops_operator.serving.render import MODEL_URI_ANNOTATION, TRACK

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
T1 = T0 + timedelta(minutes=3)
T2 = T0 + timedelta(minutes=9)
URL = "http://iris.ml.svc.cluster.local"
V1, V2 = "s3://models/iris/v1", "s3://models/iris/v2"

SCHEDULER_MESSAGE = ("0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2 node(s) had untolerated taint "
                     "{node-role.kubernetes.io/control-plane: }. preemption: 0/3 nodes are available: 1 No preemption "
                     "victims found for incoming pod, 2 Preemption is not helpful for scheduling.")


# --- builders: the shapes the kubelet, the scheduler and the deployment controller write --------------------


def pod(name: str = "iris-7d9c6b5f4-x2x7q", *, track: str = "stable", phase: str = "Running",
        init: list[dict] | None = None, containers: list[dict] | None = None, conditions: list[dict] | None = None,
        model_uri: str | None = None, **status_fields) -> dict:
    """A pod of the track; its model annotation (from the template) is V1 on the stable, V2 on the canary."""
    st = {"phase": phase, "qosClass": "Burstable", "startTime": "2024-05-01T11:58:00Z", **status_fields}
    if conditions is not None:
        st["conditions"] = conditions
    if init is not None:
        st["initContainerStatuses"] = init
    if containers is not None:
        st["containerStatuses"] = containers
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "ml",
                         "labels": {"mlops.dev/modeldeployment": "iris", "app.kubernetes.io/component": "server",
                                    TRACK: track},
                         "annotations": {MODEL_URI_ANNOTATION: model_uri or (V2 if track == "canary" else V1)}},
            "status": st}


def fetched() -> dict:
    return {"name": "fetch-model", "image": "mlops-operator:test", "ready": True, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": "2024-05-01T11:58:01Z",
                                     "finishedAt": "2024-05-01T11:58:09Z", "containerID": "containerd://aa"}},
            "lastState": {}}


def running(name: str = "server", restarts: int = 0, ready: bool = True, last: dict | None = None) -> dict:
    return {"name": name, "image": "reg/sklearn:3", "ready": ready, "started": True, "restartCount": restarts,
            "state": {"running": {"startedAt": "2024-05-01T11:58:10Z"}},
            "lastState": {"terminated": last} if last else {}}


def waiting(reason: str, message: str | None = None, name: str = "server", restarts: int = 0,
            last: dict | None = None) -> dict:
    state = {"reason": reason}
    if message is not None:
        state["message"] = message
    return {"name": name, "image": "reg/sklearn:3", "ready": False, "started": False, "restartCount": restarts,
            "state": {"waiting": state}, "lastState": {"terminated": last} if last else {}}


def terminated(exit_code: int, reason: str, message: str | None = None) -> dict:
    out = {"exitCode": exit_code, "reason": reason, "startedAt": "2024-05-01T11:59:00Z",
           "finishedAt": "2024-05-01T11:59:02Z", "containerID": "containerd://bb"}
    if message is not None:
        out["message"] = message
    return out


def healthy_pod(name: str = "iris-7d9c6b5f4-x2x7q", track: str = "stable", model_uri: str | None = None) -> dict:
    return pod(name, track=track, init=[fetched()], containers=[running()], model_uri=model_uri,
               conditions=[{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}])


def unschedulable_pod(name: str = "iris-7d9c6b5f4-x2x7q") -> dict:
    return pod(name, phase="Pending", conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": SCHEDULER_MESSAGE,
         "lastProbeTime": None, "lastTransitionTime": "2024-05-01T11:58:00Z"}])


def crashing_pod(name: str = "iris-7d9c6b5f4-x2x7q", track: str = "stable") -> dict:
    return pod(name, track=track, init=[fetched()], containers=[waiting(
        "CrashLoopBackOff", f"back-off 40s restarting failed container=server pod={name}_ml(0c1d)", restarts=3,
        last=terminated(1, "Error"))])


def deployment(replicas: int = 2, *, name: str = "iris", generation: int = 4, observed: int = 4,
               updated: int | None = None, ready: int | None = None, total: int | None = None,
               model_uri: str = V1, revision: str = "3") -> dict:
    st = {"observedGeneration": observed, "replicas": replicas if total is None else total,
          "updatedReplicas": replicas if updated is None else updated}
    ready = replicas if ready is None else ready
    if ready:  # the deployment controller leaves zero counts out
        st["readyReplicas"] = ready
        st["availableReplicas"] = ready
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "ml", "generation": generation,
                         "annotations": {"deployment.kubernetes.io/revision": revision}},
            "spec": {"replicas": replicas,
                     "template": {"metadata": {"annotations": {MODEL_URI_ANNOTATION: model_uri}}}},
            "status": st}


def body(old_status: dict | None = None, generation: int = 7) -> dict:
    out = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
           "metadata": {"name": "iris", "namespace": "ml", "uid": "uid-1", "generation": generation}}
    if old_status is not None:
        out["status"] = old_status
    return out


def cond(st: dict, type_: str) -> dict:
    found = find_condition(st["conditions"], type_)
    assert found is not None, f"no {type_} condition in {st['conditions']}"
    return found


# --- pod_problem: one pod's own reason ----------------------------------------------------------------------


def test_a_healthy_pod_has_no_problem():
    assert status.pod_problem(healthy_pod()) is None
    assert status.pod_problem(pod(phase="Pending")) is None  # just created, nothing known yet


def test_unschedulable_carries_the_schedulers_message():
    assert status.pod_problem(unschedulable_pod()) == ("Unschedulable", SCHEDULER_MESSAGE)


def test_image_pull_back_off():
    p = pod(phase="Pending", init=[fetched()], containers=[
        waiting("ImagePullBackOff", 'Back-off pulling image "reg/sklearn:3"')])
    assert status.pod_problem(p) == (
        "ImagePullBackOff",
        'container server of pod iris-7d9c6b5f4-x2x7q: ImagePullBackOff: Back-off pulling image "reg/sklearn:3"')


def test_err_image_pull():
    message = ('failed to pull and unpack image "reg/sklearn:3": failed to resolve reference '
               '"reg/sklearn:3": reg/sklearn:3: not found')
    p = pod(phase="Pending", init=[fetched()], containers=[waiting("ErrImagePull", message)])
    reason, text = status.pod_problem(p)
    assert reason == "ErrImagePull" and text.endswith(message) and "container server" in text


def test_crash_loop_back_off():
    reason, message = status.pod_problem(crashing_pod())
    assert reason == "CrashLoopBackOff"
    assert message == ("container server of pod iris-7d9c6b5f4-x2x7q: CrashLoopBackOff: back-off 40s restarting "
                       "failed container=server pod=iris-7d9c6b5f4-x2x7q_ml(0c1d)")


def test_crash_loop_without_a_message_names_the_last_exit_code():
    p = pod(containers=[waiting("CrashLoopBackOff", restarts=2, last=terminated(3, "Error"))])
    assert status.pod_problem(p) == (
        "CrashLoopBackOff", "container server of pod iris-7d9c6b5f4-x2x7q: CrashLoopBackOff: last exit code 3")


def test_oom_killed_in_last_state_wins_over_crash_loop():
    p = pod(containers=[waiting("CrashLoopBackOff", "back-off 20s restarting failed container=server", restarts=2,
                                last=terminated(137, "OOMKilled"))])
    reason, message = status.pod_problem(p)
    assert reason == "OOMKilled"
    assert "container server" in message and "spec.resources.memory" in message


def test_oom_killed_in_state():
    p = pod(containers=[{"name": "server", "ready": False, "restartCount": 0,
                         "state": {"terminated": terminated(137, "OOMKilled")}, "lastState": {}}])
    assert status.pod_problem(p)[0] == "OOMKilled"


def test_oom_killed_after_a_restart_while_running_again():
    # Running again, but the last run was OOMKilled: still the reason a person needs to see.
    p = pod(containers=[running(restarts=1, last=terminated(137, "OOMKilled"))])
    assert status.pod_problem(p)[0] == "OOMKilled"


def test_evicted():
    message = ("The node was low on resource: memory. Threshold quantity: 100Mi, available: 51200Ki. Container "
               "server was using 2Gi, request is 1Gi, has larger consumption of memory. ")
    p = pod(phase="Failed", reason="Evicted", message=message,
            containers=[{"name": "server", "ready": False, "restartCount": 0,
                         "state": {"terminated": terminated(137, "ContainerStatusUnknown")}, "lastState": {}}])
    reason, text = status.pod_problem(p)
    assert reason == "Evicted"
    assert text == "pod iris-7d9c6b5f4-x2x7q was evicted: " + message.rstrip()
    assert status.pod_problem(pod(phase="Failed", reason="Evicted")) == (
        "Evicted", "pod iris-7d9c6b5f4-x2x7q was evicted")


def test_model_fetch_failed_when_the_init_container_exits_non_zero():
    failed = {"name": "fetch-model", "ready": False, "restartCount": 0,
              "state": {"terminated": terminated(1, "Error", "fetch-model: s3://models/iris/v1: Access Denied")},
              "lastState": {}}
    p = pod(phase="Pending", init=[failed], containers=[waiting("PodInitializing")])
    assert status.pod_problem(p) == (
        "ModelFetchFailed", "init container fetch-model of pod iris-7d9c6b5f4-x2x7q exited with code 1: "
                            "fetch-model: s3://models/iris/v1: Access Denied")
    no_message = {**failed, "state": {"terminated": terminated(2, "Error")}}
    assert status.pod_problem(pod(phase="Pending", init=[no_message], containers=[waiting("PodInitializing")])) == (
        "ModelFetchFailed", "init container fetch-model of pod iris-7d9c6b5f4-x2x7q exited with code 2: Error")


def test_model_fetch_failed_while_the_init_container_backs_off():
    # Deployments restart failed init containers (restartPolicy Always): most of the time the kubelet reports the
    # fetcher waiting in CrashLoopBackOff, with the failed run in lastState. It is still the model fetch failing.
    backing_off = waiting("CrashLoopBackOff", "back-off 20s restarting failed container=fetch-model "
                                              "pod=iris-7d9c6b5f4-x2x7q_ml(0c1d)",
                          name="fetch-model", restarts=2,
                          last=terminated(1, "Error", "fetch-model: https://host/m.bin: HTTP Error 404: Not Found"))
    p = pod(phase="Pending", init=[backing_off], containers=[waiting("PodInitializing")])
    reason, message = status.pod_problem(p)
    assert reason == "ModelFetchFailed"
    assert message == ("init container fetch-model of pod iris-7d9c6b5f4-x2x7q exited with code 1: "
                       "fetch-model: https://host/m.bin: HTTP Error 404: Not Found")


def test_the_fetchers_image_failing_to_pull_is_an_image_problem():
    p = pod(phase="Pending", init=[waiting("ImagePullBackOff", 'Back-off pulling image "mlops-operator:test"',
                                           name="fetch-model")], containers=[waiting("PodInitializing")])
    reason, message = status.pod_problem(p)
    assert reason == "ImagePullBackOff" and message.startswith("init container fetch-model of pod")


def test_a_terminating_pod_is_not_a_problem():
    p = crashing_pod()
    p["metadata"]["deletionTimestamp"] = "2024-05-01T12:00:00Z"
    assert status.pod_problem(p) is None


# --- summarize and restarts ---------------------------------------------------------------------------------


def test_summarize_names_the_most_common_reason_and_counts_live_pods():
    pods = [unschedulable_pod("a"), unschedulable_pod("b"), crashing_pod("c"), healthy_pod("d")]
    assert status.summarize(pods) == ("Unschedulable", f"2/4 pods: {SCHEDULER_MESSAGE}")
    assert status.summarize([healthy_pod("a"), healthy_pod("b")]) is None
    assert status.summarize([]) is None


def test_summarize_breaks_ties_by_severity():
    pods = [unschedulable_pod("a"), crashing_pod("b")]
    reason, message = status.summarize(pods)
    assert reason == "CrashLoopBackOff" and message.startswith("1/2 pods: container server of pod b")


def test_summarize_ignores_terminating_pods():
    old = crashing_pod("old")
    old["metadata"]["deletionTimestamp"] = "2024-05-01T12:00:00Z"
    reason, message = status.summarize([old, unschedulable_pod("new"), healthy_pod("ok")])
    assert reason == "Unschedulable" and message.startswith("1/2 pods: ")


def test_restarts():
    assert status.restarts([healthy_pod("a")]) is None
    p = pod("b", containers=[running(restarts=2, last=terminated(1, "Error"))])
    assert status.restarts([healthy_pod("a"), p]) == ("Restarting", "container server of pod b restarted 2 times")


# --- rolled_out ---------------------------------------------------------------------------------------------


def test_rolled_out():
    assert status.rolled_out(deployment(2))
    assert not status.rolled_out(None)
    assert not status.rolled_out(deployment(2, observed=3))  # the controller has not seen the new spec
    assert not status.rolled_out(deployment(2, updated=1))  # one old pod left
    assert not status.rolled_out(deployment(2, ready=1))
    assert not status.rolled_out(deployment(2, total=3))  # a surge pod still runs
    fresh = deployment(2)
    fresh["status"] = {}  # created, the controller has not written status yet
    assert not status.rolled_out(fresh)
    assert status.rolled_out(deployment(0))  # nothing asked, nothing missing


# --- observe_canary -------------------------------------------------------------------------------------------


def test_observe_a_ready_canary():
    canary = deployment(1, name="iris-canary", model_uri=V2)
    seen = status.observe_canary(canary, [healthy_pod("s1"), healthy_pod("c1", track="canary")], deployment(3), V2)
    assert seen.ready and seen.problem is None and seen.replicas == 1 and not seen.stable_promoted


def test_observe_a_canary_that_restarted_or_crashes():
    canary = deployment(1, name="iris-canary", model_uri=V2)
    restarted = pod("c1", track="canary", containers=[running(restarts=1, last=terminated(1, "Error"))])
    seen = status.observe_canary(canary, [restarted], deployment(3), V2)
    assert not seen.ready and seen.problem == ("Restarting", "container server of pod c1 restarted 1 times")
    # the stable's troubles are not the canary's
    seen = status.observe_canary(canary, [crashing_pod("s1"), healthy_pod("c1", track="canary")], deployment(3), V2)
    assert seen.ready and seen.problem is None
    seen = status.observe_canary(canary, [crashing_pod("c1", track="canary")], deployment(3), V2)
    assert seen.problem[0] == "CrashLoopBackOff" and not seen.ready


def test_observe_a_canary_that_is_not_there_yet_or_still_scaling():
    seen = status.observe_canary(None, [], deployment(3), V2)
    assert not seen.ready and seen.replicas == 0 and seen.problem is None
    scaling = deployment(2, name="iris-canary", model_uri=V2, ready=1)
    seen = status.observe_canary(scaling, [healthy_pod("c1", track="canary")], deployment(2), V2)
    assert not seen.ready and seen.replicas == 2


def promoted(model_uri: str = V2, image: str = "reg/sklearn:next", cpu: str = "1") -> dict:
    """The stable template a promotion asks for (render.promoted_template), the parts that matter here."""
    return {"metadata": {"annotations": {MODEL_URI_ANNOTATION: model_uri}},
            "spec": {"containers": [{"name": "server", "image": image, "resources": {"requests": {"cpu": cpu}}}]}}


def with_server(dep: dict, image: str = "reg/sklearn:next", cpu: str = "1000m") -> dict:
    dep["spec"]["template"]["spec"] = {"containers": [
        {"name": "server", "image": image, "resources": {"requests": {"cpu": cpu}}, "imagePullPolicy": "IfNotPresent"}]}
    return dep


def test_observe_promotion_compares_the_whole_template():
    canary = deployment(1, name="iris-canary", model_uri=V2)
    assert status.observe_canary(canary, [], with_server(deployment(4, model_uri=V2)), promoted()).stable_promoted
    assert not status.observe_canary(canary, [], with_server(deployment(4, model_uri=V2, updated=2)),
                                     promoted()).stable_promoted
    assert not status.observe_canary(canary, [], with_server(deployment(4, model_uri=V1)), promoted()).stable_promoted
    assert not status.observe_canary(canary, [], with_server(deployment(4, model_uri=V2)), None).stable_promoted


def test_a_canary_that_changes_only_the_image_is_not_promoted_before_the_stable_runs_it():
    canary = deployment(1, name="iris-canary", model_uri=V1)
    old_image = with_server(deployment(4, model_uri=V1), image="reg/sklearn:3")
    assert not status.observe_canary(canary, [], old_image, promoted(V1)).stable_promoted
    assert not status.observe_canary(canary, [], with_server(deployment(4, model_uri=V1), cpu="2"),
                                     promoted(V1)).stable_promoted
    assert status.observe_canary(canary, [], with_server(deployment(4, model_uri=V1)), promoted(V1)).stable_promoted


def test_observe_counts_ready_pods_of_the_canary_model_only():
    canary = deployment(2, name="iris-canary", model_uri=V2, ready=1)
    pods = [healthy_pod("c1", track="canary"), crashing_pod("c2", track="canary"),
            healthy_pod("c3", track="canary", model_uri=V1), healthy_pod("s1")]
    assert status.observe_canary(canary, pods, deployment(3), promoted()).ready_pods == 1


# --- compute --------------------------------------------------------------------------------------------------


def test_creating():
    st, events = status.compute(body(), None, None, [], CanaryPlan(), URL, T0)
    assert cond(st, "Ready")["status"] == "False" and cond(st, "Ready")["reason"] == "Creating"
    assert cond(st, "Available")["reason"] == "NoReplicasReady"
    # not "RolloutComplete": nothing exists yet
    assert (cond(st, "Progressing")["status"], cond(st, "Progressing")["reason"]) == ("True", "Creating")
    assert st["stable"] is None and st["canary"] is None and st["replicas"] == 0
    assert events == []  # creating is not news


def test_ready_when_the_stable_rolled_out():
    st, events = status.compute(body(), deployment(2), None, [healthy_pod("a"), healthy_pod("b")], CanaryPlan(),
                                URL, T0)
    ready = cond(st, "Ready")
    assert ready == {"type": "Ready", "status": "True", "reason": "AllReplicasReady", "message": "2/2 replicas ready",
                     "lastTransitionTime": "2024-05-01T12:00:00Z", "observedGeneration": 7}
    assert cond(st, "Available")["status"] == "True" and URL in cond(st, "Available")["message"]
    assert (cond(st, "Progressing")["status"], cond(st, "Progressing")["reason"]) == ("False", "RolloutComplete")
    assert st["observedGeneration"] == 7 and st["url"] == URL
    assert (st["replicas"], st["readyReplicas"]) == (2, 2)
    assert st["stable"] == {"modelUri": V1, "revision": "3"}
    assert st["canary"] is None
    assert events == [("Normal", "Ready", f"2/2 replicas ready, serving {V1}")]


def test_rolling_out_is_not_ready_and_not_a_warning():
    dep = deployment(2, generation=5, observed=5, updated=1, ready=2, total=3)
    st, events = status.compute(body(), dep, None, [healthy_pod("a"), healthy_pod("b"), pod("c", phase="Pending")],
                                CanaryPlan(), URL, T0)
    assert (cond(st, "Ready")["status"], cond(st, "Ready")["reason"]) == ("False", "RollingOut")
    assert cond(st, "Ready")["message"] == "2/2 replicas ready"
    assert cond(st, "Available")["status"] == "True"
    assert (cond(st, "Progressing")["status"], cond(st, "Progressing")["reason"]) == ("True", "RollingOut")
    assert cond(st, "Progressing")["message"] == "1/2 replicas updated"
    assert events == []


def test_not_ready_until_the_controller_observed_the_new_generation():
    st, _ = status.compute(body(), deployment(2, generation=6, observed=5), None, [], CanaryPlan(), URL, T0)
    assert cond(st, "Ready")["status"] == "False"


def test_unschedulable_with_the_schedulers_words_and_one_warning():
    dep = deployment(2, ready=0, updated=2)
    pods = [unschedulable_pod("a"), unschedulable_pod("b")]
    st, events = status.compute(body(), dep, None, pods, CanaryPlan(), URL, T0)
    ready = cond(st, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Unschedulable")
    assert ready["message"] == f"2/2 pods: {SCHEDULER_MESSAGE}"
    assert (cond(st, "Available")["status"], cond(st, "Available")["reason"]) == ("False", "Unschedulable")
    assert st["readyReplicas"] == 0
    assert events == [("Warning", "Unschedulable", f"2/2 pods: {SCHEDULER_MESSAGE}")]
    # nothing changed: no second event, the transition time stays
    again, events = status.compute(body(st), dep, None, pods, CanaryPlan(), URL, T1)
    assert events == [] and cond(again, "Ready")["lastTransitionTime"] == "2024-05-01T12:00:00Z"


def test_a_canary_pods_problem_does_not_make_the_stable_unready():
    pods = [healthy_pod("a"), healthy_pod("b"), crashing_pod("c", track="canary")]
    st, _ = status.compute(body(), deployment(2), deployment(1, name="iris-canary", ready=0), pods,
                           CanaryPlan(deploy=True, canary_replicas=1, status={"modelUri": V2, "step": 0,
                                                                              "phase": "Progressing"}), URL, T0)
    assert cond(st, "Ready")["status"] == "True"


def test_crash_then_oom_then_recovery():
    dep_bad = deployment(1, ready=0)
    st, events = status.compute(body(), deployment(1), None, [healthy_pod()], CanaryPlan(), URL, T0)
    assert events[0][1] == "Ready"

    # A pod crashes: Ready goes False with the kubelet's reason, the transition time moves, one warning.
    st, events = status.compute(body(st), dep_bad, None, [crashing_pod()], CanaryPlan(), URL, T1)
    ready = cond(st, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "CrashLoopBackOff")
    assert ready["lastTransitionTime"] == "2024-05-01T12:03:00Z"
    assert events == [("Warning", "CrashLoopBackOff", ready["message"])]
    assert ready["message"].startswith("1/1 pods: container server of pod")

    # The reason changes to OOMKilled: still False (time kept), and a person should hear about it.
    oom = pod(containers=[waiting("CrashLoopBackOff", "back-off 1m20s restarting failed container=server",
                                  restarts=4, last=terminated(137, "OOMKilled"))])
    st, events = status.compute(body(st), dep_bad, None, [oom], CanaryPlan(), URL, T1 + timedelta(minutes=1))
    ready = cond(st, "Ready")
    assert ready["reason"] == "OOMKilled" and ready["lastTransitionTime"] == "2024-05-01T12:03:00Z"
    assert [(t, r) for t, r, _ in events] == [("Warning", "OOMKilled")]

    # Fixed (more memory): a healthy, rolled-out Deployment turns Ready back to True.
    st, events = status.compute(body(st), deployment(1, revision="4"), None, [healthy_pod("iris-new-abc")],
                                CanaryPlan(), URL, T2)
    ready = cond(st, "Ready")
    assert (ready["status"], ready["reason"], ready["lastTransitionTime"]) == (
        "True", "AllReplicasReady", "2024-05-01T12:09:00Z")
    assert cond(st, "Available")["status"] == "True"
    assert events == [("Normal", "Ready", f"1/1 replicas ready, serving {V1}")]
    assert st["stable"]["revision"] == "4"

    # And steady: no events, nothing moves.
    again, events = status.compute(body(st), deployment(1, revision="4"), None, [healthy_pod("iris-new-abc")],
                                   CanaryPlan(), URL, T2 + timedelta(hours=1))
    assert events == [] and again["conditions"] == st["conditions"]


def test_model_fetch_failed_reaches_ready():
    failed = {"name": "fetch-model", "ready": False, "restartCount": 0,
              "state": {"terminated": terminated(1, "Error", "fetch-model: s3://models/iris/v1: Access Denied")},
              "lastState": {}}
    p = pod(phase="Pending", init=[failed], containers=[waiting("PodInitializing")])
    st, events = status.compute(body(), deployment(1, ready=0), None, [p], CanaryPlan(), URL, T0)
    assert cond(st, "Ready")["reason"] == "ModelFetchFailed"
    assert "Access Denied" in cond(st, "Ready")["message"]
    assert events[0][:2] == ("Warning", "ModelFetchFailed")


def test_evicted_pods_do_not_unready_a_rolled_out_deployment():
    # The ReplicaSet already replaced the evicted pod; the failed pod object lingers until garbage collected.
    evicted = pod("old", phase="Failed", reason="Evicted", message="The node was low on resource: memory. ")
    st, events = status.compute(body(), deployment(1), None, [evicted, healthy_pod("new")], CanaryPlan(), URL, T0)
    assert cond(st, "Ready")["status"] == "True" and events[0][1] == "Ready"
    # Not rolled out: the eviction is the reason.
    st, events = status.compute(body(), deployment(1, ready=0), None, [evicted], CanaryPlan(), URL, T0)
    assert cond(st, "Ready")["reason"] == "Evicted"


def test_scaled_to_zero():
    st, _ = status.compute(body(), deployment(0), None, [], CanaryPlan(), URL, T0)
    assert (cond(st, "Ready")["status"], cond(st, "Ready")["reason"]) == ("False", "ScaledToZero")
    assert cond(st, "Available")["status"] == "False"


def test_canary_weight_follows_ready_replicas():
    plan = CanaryPlan(deploy=True, canary_replicas=1,
                      status={"modelUri": V2, "step": 0, "phase": "Progressing",
                              "stepStartTime": "2024-05-01T12:00:00Z"},
                      events=[("Normal", "CanaryStarted", "canary started")])
    pods = [healthy_pod(f"s{i}") for i in range(3)] + [healthy_pod("c0", track="canary")]
    st, events = status.compute(body(), deployment(3), deployment(1, name="iris-canary", model_uri=V2), pods, plan,
                                URL, T0)
    assert st["canary"] == {"modelUri": V2, "step": 0, "phase": "Progressing",
                            "stepStartTime": "2024-05-01T12:00:00Z", "weight": 25}
    assert (st["replicas"], st["readyReplicas"]) == (4, 4)
    assert (cond(st, "Progressing")["status"], cond(st, "Progressing")["reason"]) == ("True", "CanaryProgressing")
    assert events[0] == ("Normal", "CanaryStarted", "canary started")  # the plan's events come through
    # The canary pod is not ready yet: no traffic reaches it, whatever the plan says.
    st, _ = status.compute(body(), deployment(3), deployment(1, name="iris-canary", model_uri=V2, ready=0), pods, plan,
                           URL, T0)
    assert st["canary"]["weight"] == 0


@pytest.mark.parametrize("phase,blocked,expected", [
    ("Progressing", ("CanaryNotReady", "waiting"), "True"), ("Progressing", ("Promoting", "rolling"), "True"),
    ("Paused", ("CanaryPaused", "holds"), "False"), ("Failed", ("CanaryCrashLoopBackOff", "cannot advance"), "False"),
    ("Paused", ("CanaryNeverReady", "promotion waits"), "False")])
def test_progressing_follows_the_canary_phase(phase, blocked, expected):
    plan = CanaryPlan(deploy=True, canary_replicas=1, status={"modelUri": V2, "step": 0, "phase": phase},
                      blocked=blocked)
    st, _ = status.compute(body(), deployment(3), deployment(1, name="iris-canary", model_uri=V2), [], plan, URL, T0)
    progressing = cond(st, "Progressing")
    assert (progressing["status"], progressing["reason"], progressing["message"]) == (expected, *blocked)


def test_old_unknown_conditions_are_kept_and_generation_is_recorded():
    old = {"conditions": [{"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": "spec.x: bad",
                           "lastTransitionTime": "2024-04-01T00:00:00Z", "observedGeneration": 6}]}
    st, events = status.compute(body(old), deployment(1, ready=0), None, [crashing_pod()], CanaryPlan(), URL, T0)
    ready = cond(st, "Ready")
    # Still False: the time stays; the reason and generation move on.
    assert ready["lastTransitionTime"] == "2024-04-01T00:00:00Z"
    assert (ready["reason"], ready["observedGeneration"]) == ("CrashLoopBackOff", 7)
    assert events[0][:2] == ("Warning", "CrashLoopBackOff")


def test_image_pull_flapping_between_two_kubelet_reasons_is_one_event():
    def pulling(reason):
        return pod("a", phase="Pending", init=[fetched()], containers=[waiting(reason, "pull failed")])

    dep = deployment(1, ready=0)
    st1, events1 = status.compute(body(), dep, None, [pulling("ErrImagePull")], CanaryPlan(), URL, T0)
    assert [e[1] for e in events1] == ["ErrImagePull"]
    st2, events2 = status.compute(body(st1), dep, None, [pulling("ImagePullBackOff")], CanaryPlan(), URL, T0)
    assert cond(st2, "Ready")["reason"] == "ImagePullBackOff"  # the status still tells the current reason
    assert events2 == []


def test_a_terminating_restarted_pod_does_not_block_the_canary():
    gone = crashing_pod("old", track="canary")
    gone["metadata"]["deletionTimestamp"] = "2024-05-01T12:00:00Z"
    assert status.restarts([gone]) is None
    assert status.restarts([crashing_pod("new", track="canary")])[0] == "Restarting"


# --- what serves, canary failures, warnings ---------------------------------------------------------------------


def test_the_stable_model_is_what_ready_pods_serve_not_the_template():
    # The stable Deployment's template already names V2 (a promotion began) but every ready pod still serves V1.
    dep = deployment(2, model_uri=V2, updated=0, ready=2)
    pods = [healthy_pod("old-a"), healthy_pod("old-b"), crashing_pod("new-c")]
    st, _ = status.compute(body(), dep, None, pods, CanaryPlan(), URL, T0)
    assert st["stable"]["modelUri"] == V1
    # No ready pod: nothing is served, so no model is claimed.
    st, events = status.compute(body(), deployment(1, ready=0), None, [crashing_pod()], CanaryPlan(), URL, T0)
    assert st["stable"]["modelUri"] is None
    # Canary pods do not count for the stable.
    pods = [healthy_pod("s1"), healthy_pod("c1", track="canary"), healthy_pod("c2", track="canary")]
    st, _ = status.compute(body(), deployment(1), deployment(2, name="iris-canary", model_uri=V2), pods,
                           CanaryPlan(), URL, T0)
    assert st["stable"]["modelUri"] == V1


def failing_canary_plan(reason: str = "CanaryCrashLoopBackOff") -> CanaryPlan:
    return CanaryPlan(deploy=True, canary_replicas=1, status={"modelUri": V2, "step": 0, "phase": "Failed"},
                      blocked=(reason, "the canary cannot advance: 1/1 pods: container server crashed"))


def test_a_failing_canary_posts_one_warning_per_new_failure():
    pods = [healthy_pod("s1"), crashing_pod("c1", track="canary")]
    stable, canary = deployment(1), deployment(1, name="iris-canary", model_uri=V2, ready=0)
    st, events = status.compute(body(), stable, canary, pods, failing_canary_plan(), URL, T0)
    warnings = [e for e in events if e[0] == "Warning"]
    assert warnings == [("Warning", "CanaryCrashLoopBackOff",
                         "the canary cannot advance: 1/1 pods: container server crashed")]
    assert st["canary"]["phase"] == "Failed" and cond(st, "Progressing")["status"] == "False"
    # Same failure on the next reconcile (from the written status): nothing new to say.
    again, events = status.compute(body(st), stable, canary, pods, failing_canary_plan(), URL, T1)
    assert [e for e in events if e[0] == "Warning"] == []
    # A different failure is news; image pull flapping is not.
    st, events = status.compute(body(again), stable, canary, pods, failing_canary_plan("CanaryModelFetchFailed"),
                                URL, T1)
    assert [e[1] for e in events if e[0] == "Warning"] == ["CanaryModelFetchFailed"]
    st, events = status.compute(body(st), stable, canary, pods, failing_canary_plan("CanaryErrImagePull"), URL, T1)
    assert [e[1] for e in events] == ["CanaryErrImagePull"]
    st, events = status.compute(body(st), stable, canary, pods, failing_canary_plan("CanaryImagePullBackOff"), URL, T1)
    assert events == []


def test_warnings_are_in_the_status_and_posted_once():
    warning = 'spec.resources.memory: 512 is 512 bytes, too little to run a model server; write a unit, e.g. "512Mi"'
    st, events = status.compute(body(), deployment(1), None, [healthy_pod()], CanaryPlan(), URL, T0, [warning])
    assert st["warnings"] == [warning]
    assert ("Warning", "SuspiciousValue", warning) in events
    again, events = status.compute(body(st), deployment(1), None, [healthy_pod()], CanaryPlan(), URL, T1, [warning])
    assert events == []
    fixed, _ = status.compute(body(again), deployment(1), None, [healthy_pod()], CanaryPlan(), URL, T1, [])
    assert fixed["warnings"] is None


def test_the_progressing_message_says_when_the_weight_cannot_be_met():
    plan = CanaryPlan(deploy=True, canary_replicas=1, status={"modelUri": V2, "step": 0, "phase": "Progressing"},
                      blocked=("CanaryNotReady", "waiting for the canary pods of step 0 to be Ready"),
                      note="10% requested: 1 canary pod(s) beside 1 stable pod(s) get 50% of traffic")
    st, _ = status.compute(body(), deployment(1), deployment(1, name="iris-canary", model_uri=V2, ready=0), [], plan,
                           URL, T0)
    assert cond(st, "Progressing")["message"].endswith("get 50% of traffic")


@pytest.mark.parametrize("case", ["creating", "ready", "canary", "failing", "warned"])
def test_computed_status_is_a_valid_status_model(case):
    from mlops_operator.api.modeldeployment import ModelDeploymentStatus
    from mlops_operator.k8s.status import clean

    pods = [healthy_pod("s1"), healthy_pod("c1", track="canary")]
    canary_plan = CanaryPlan(deploy=True, canary_replicas=1, status={
        "modelUri": V2, "step": 0, "phase": "Progressing", "requestedWeight": 10, "plannedWeight": 50,
        "replicas": 1, "everReady": True, "stepStartTime": "2024-05-01T12:00:00Z"})
    args = {"creating": (None, None, [], CanaryPlan()),
            "ready": (deployment(1), None, pods[:1], CanaryPlan()),
            "canary": (deployment(1), deployment(1, name="iris-canary", model_uri=V2), pods, canary_plan),
            "failing": (deployment(1), deployment(1, name="iris-canary", ready=0), pods[:1], failing_canary_plan()),
            "warned": (deployment(1), None, pods[:1], CanaryPlan())}[case]
    st, _ = status.compute(body(), *args, URL, T0, ["spec.resources.memory: 512 is 512 bytes"] if case == "warned"
                           else None)
    wire = clean(st)
    parsed = ModelDeploymentStatus.model_validate(wire)
    assert parsed.to_dict() == {"conditions": [], **wire} or parsed.to_dict() == wire
    # the status model knows every field written (StatusModel ignores unknown ones, so check the names)
    assert set(wire) <= {f.alias or n for n, f in ModelDeploymentStatus.model_fields.items()}
    if wire.get("canary"):
        from mlops_operator.api.modeldeployment import CanaryStatus
        assert set(wire["canary"]) <= {f.alias or n for n, f in CanaryStatus.model_fields.items()}

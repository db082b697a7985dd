"""The TrainingJob state machine (phase, attempts, retries, deadlines, status and events) and the promotion patch,
as pure functions over plain dicts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mlops_operator.api.trainingjob import TrainingJobSpec
from mlops_operator.k8s.status import clean, status_patch
from mlops_operator.training import admission, lifecycle, promotion, render
from mlops_operator.training.lifecycle import Observation, decide

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def body(status: dict | None = None, generation: int = 1) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": "ft", "namespace": "ml", "uid": "u1", "generation": generation},
            "status": status or {}}


def spec(**fields) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate({"image": "t:1", "workers": 2, **fields})


def worker(s: TrainingJobSpec, rank: int, attempt: int = 1, phase: str = "Running", node: str | None = "gpu-node-0",
           **status) -> dict:
    pod = render.worker_pod(body(), s, rank, attempt, "cluster.local")
    pod["spec"]["nodeName"] = node
    pod["status"] = {"phase": phase, **status}
    return pod


def run(b: dict, s: TrainingJobSpec, now: datetime, pods=(), **obs) -> tuple[lifecycle.Plan, dict]:
    """decide() as the reconciler drives it: decisions are written, then it plans again."""
    events = []
    for _ in range(4):
        plan = decide(b, s, Observation(pods=list(pods), **obs), now)
        events += plan.events
        b = {**b, "status": clean(plan.status)}
        if not plan.persist_first:
            break
    plan.events = events
    return plan, b


def launched(s: TrainingJobSpec, attempt: int = 1, **extra) -> dict:
    """A body whose attempt's workers were created at T0."""
    _, b = run(body(), s, T0)
    b["status"].update(attempt=attempt, **extra)
    return b


def cond(b: dict, type_: str) -> dict:
    return next(c for c in b["status"]["conditions"] if c["type"] == type_)


def reasons(plan) -> list[str]:
    return [r for _, r, _ in plan.events]


def test_a_new_job_decides_attempt_1_then_creates_every_worker():
    s = spec()
    first = decide(body(), s, Observation(pods=[]), T0)
    assert first.persist_first and first.status["attempt"] == 1 and first.status["phase"] == "Pending"
    assert first.status["startTime"] == "2024-05-01T12:00:00Z" and not first.create
    plan, b = run(body(), s, T0)
    assert plan.create == [0, 1] and b["status"]["attemptStartTime"] == "2024-05-01T12:00:00Z"
    assert "AttemptStarted" in reasons(plan)
    assert cond(b, "Running")["reason"] == "Starting" and cond(b, "Ready")["status"] == "False"
    assert b["status"]["observedGeneration"] == 1


def test_running_only_when_every_worker_runs():
    s = spec()
    b = launched(s)
    plan, b1 = run(b, s, at(2), [worker(s, 0), worker(s, 1, phase="Pending")])
    assert b1["status"]["phase"] == "Pending" and cond(b1, "Running")["status"] == "False"
    plan, b2 = run(b1, s, at(3), [worker(s, 0), worker(s, 1)])
    assert b2["status"]["phase"] == "Running" and cond(b2, "Running")["status"] == "True"
    assert cond(b2, "Ready")["status"] == "True" and "Running" in reasons(plan)
    assert b2["status"]["workers"] == {"active": 2, "succeeded": 0, "failed": 0}


def test_nothing_changed_means_the_same_status_and_no_events():
    s = spec()
    pods = [worker(s, 0), worker(s, 1)]
    _, b = run(launched(s), s, at(3), pods)
    plan, b2 = run(b, s, at(30), pods)
    assert status_patch(b["status"], plan.status) is None
    assert plan.events == [] and not plan.create and not plan.delete


UNSCHEDULABLE = {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                 "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]}


def test_an_unschedulable_worker_shows_the_schedulers_words():
    s = spec(workers=3)
    pods = [worker(s, 0), worker(s, 1), worker(s, 2, phase="Pending", node=None, **UNSCHEDULABLE)]
    plan, b = run(launched(s), s, at(2), pods)
    assert b["status"]["phase"] == "Pending"
    running = cond(b, "Running")
    assert running["reason"] == "Unschedulable" and "Insufficient nvidia.com/gpu" in running["message"]
    assert "Unschedulable" in reasons(plan)


@pytest.mark.parametrize("action", ["fail", "wait"])
def test_gang_timeout_releases_the_workers(action):
    s = spec(workers=3, scheduling={"gangTimeout": 60, "gangTimeoutAction": action})
    pods = [worker(s, 0), worker(s, 1), worker(s, 2, phase="Pending", node=None, **UNSCHEDULABLE)]
    plan, b = run(launched(s), s, at(30), pods)
    assert b["status"]["phase"] == "Pending" and plan.requeue_after == pytest.approx(30)
    plan, b = run(b, s, at(61), pods)
    assert {p["metadata"]["name"] for p in plan.delete} == {"ft-w0-a1", "ft-w1-a1", "ft-w2-a1"}
    assert "Insufficient nvidia.com/gpu" in b["status"]["failure"]["message"]
    if action == "fail":
        assert b["status"]["phase"] == "Failed" and cond(b, "Failed")["reason"] == "GangTimeout"
        assert b["status"]["failure"]["retryable"] is False
    else:
        assert b["status"]["phase"] == "Pending" and b["status"]["attempt"] == 2
        assert b["status"]["nextAttemptTime"] == "2024-05-01T12:02:01Z"
        assert cond(b, "Running")["reason"] == "GangTimeout" and "GangTimeout" in reasons(plan)
        assert not plan.create
        plan, b = run(b, s, at(122), [])
        assert plan.create == [0, 1, 2] and b["status"].get("retries", 0) == 0


def test_an_eviction_restarts_the_gang_without_using_the_backoff():
    s = spec(backoffLimit=1)
    evicted = worker(s, 1, phase="Failed", reason="Evicted", message="low on memory")
    plan, b = run(launched(s), s, at(5), [worker(s, 0), evicted])
    st = b["status"]
    assert st["attempt"] == 2 and st["phase"] == "Restarting" and st.get("retries", 0) == 0
    assert st["failure"] == {"reason": "Evicted", "message": st["failure"]["message"], "retryable": True,
                             "counted": False, "worker": 1, "attempt": 1}
    assert plan.create == [0, 1]  # the new attempt, launched in the same reconcile
    assert {p["metadata"]["name"] for p in plan.delete} == {"ft-w0-a1", "ft-w1-a1"}
    assert reasons(plan) == ["WorkerFailed", "AttemptStarted"]
    assert cond(b, "Failed")["status"] == "False" and cond(b, "Failed")["reason"] == "Retrying"


def test_a_vanished_worker_is_node_loss():
    s = spec()
    plan, b = run(launched(s), s, at(5), [worker(s, 0)], gone=frozenset({1}))
    assert b["status"]["failure"]["reason"] == "PodDeleted" and b["status"]["attempt"] == 2


def exit1(s, rank, attempt):
    return worker(s, rank, attempt, phase="Failed",
                  containerStatuses=[{"name": "trainer", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}])


def test_exit_codes_count_until_the_backoff_limit_is_exhausted():
    s = spec(backoffLimit=1)
    _, b = run(launched(s), s, at(5), [worker(s, 0), exit1(s, 1, 1)])
    assert b["status"]["attempt"] == 2 and b["status"]["retries"] == 1
    plan, b = run(b, s, at(10), [worker(s, 0, 2), exit1(s, 1, 2)])
    st = b["status"]
    assert st["phase"] == "Failed" and st["retries"] == 2 and st["attempt"] == 2
    assert cond(b, "Failed")["reason"] == "BackoffLimitExceeded"
    assert st["failure"]["reason"] == "Error" and st["failure"]["retryable"] is True
    assert [p["metadata"]["name"] for p in plan.delete] == ["ft-w0-a2"]  # the failed pod stays for its logs
    assert cond(b, "Ready")["status"] == "False"


def test_oom_fails_at_once():
    s = spec(backoffLimit=5)
    oom = worker(s, 0, phase="Failed", containerStatuses=[
        {"name": "trainer", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}])
    _, b = run(launched(s), s, at(5), [oom, worker(s, 1)])
    assert b["status"]["phase"] == "Failed" and b["status"]["attempt"] == 1
    assert cond(b, "Failed")["reason"] == "OOMKilled" and b["status"]["failure"]["retryable"] is False


def test_success_records_the_model_the_workers_wrote_and_promotes_once():
    s = spec(output={"modelUri": "s3://m/v2"}, promote={"modelDeployment": {"name": "chat"}, "as": "canary"})
    done = [worker(s, r, phase="Succeeded") for r in range(2)]
    md = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "chat"},
          "spec": {"model": {"uri": "s3://m/v1"}}}
    plan, b = run(launched(s), s, at(9), done)
    assert b["status"]["phase"] == "Succeeded" and b["status"]["modelUri"] == "s3://m/v2"
    assert plan.promote_patch is None and cond(b, "Promoted")["reason"] == "ModelDeploymentNotFound"
    plan, b = run(b, s, at(10), done, model_deployment=md)
    assert plan.promote_patch == {"spec": {"rollout": {"canary": {"model": {"uri": "s3://m/v2"}, "weight": 10}}}}
    assert b["status"]["promotion"]["modelUri"] == "s3://m/v2" and cond(b, "Promoted")["status"] == "True"
    assert "Promoted" in reasons(plan) and plan.promote_events[0][1] == "Promoted"
    plan, _ = run(b, s, at(20), done, model_deployment=md)
    assert plan.promote_patch is None and plan.events == []


def test_the_deadline_fails_the_job_and_stops_the_workers():
    s = spec(activeDeadlineSeconds=60)
    pods = [worker(s, 0), worker(s, 1)]
    plan, b = run(launched(s), s, at(30), pods)
    assert plan.requeue_after == pytest.approx(30)
    plan, b = run(b, s, at(61), pods)
    assert b["status"]["phase"] == "Failed" and cond(b, "Failed")["reason"] == "DeadlineExceeded"
    assert len(plan.delete) == 2


def test_ttl_deletes_workers_and_service_after_finishing():
    s = spec(ttlSecondsAfterFinished=100)
    done = [worker(s, r, phase="Succeeded") for r in range(2)]
    plan, b = run(launched(s), s, at(10), done, service=True)
    assert plan.service and not plan.delete and plan.requeue_after == pytest.approx(100)
    plan, b2 = run(b, s, at(111), done, service=True)
    assert not plan.service and len(plan.delete) == 2 and "CleanedUp" in reasons(plan)
    assert b2["status"]["phase"] == "Succeeded"


def test_suspend_stops_the_workers_and_resume_starts_a_new_attempt():
    s = spec()
    pods = [worker(s, 0), worker(s, 1)]
    _, b = run(launched(s), s, at(3), pods)
    suspended = spec(suspend=True)
    plan, b = run(b, suspended, at(10), pods)
    assert b["status"]["phase"] == "Suspended" and len(plan.delete) == 2 and cond(b, "Suspended")["status"] == "True"
    assert b["status"]["attempt"] == 1
    plan, b = run(b, s, at(100), [])
    assert b["status"]["attempt"] == 2 and b["status"]["startTime"] == "2024-05-01T12:01:40Z"
    assert plan.create == [0, 1] and "Resumed" in reasons(plan)


def test_a_spec_change_waits_for_the_next_attempt_and_says_so_once():
    s = spec()
    pods = [worker(s, 0), worker(s, 1)]
    _, b = run(launched(s), s, at(3), pods)
    b["metadata"]["generation"] = 2
    plan, b = run(b, spec(image="t:2"), at(4), pods, outdated=True)
    assert "applies from the next attempt" in cond(b, "Running")["message"]
    assert reasons(plan) == ["SpecChangeDeferred"] and not plan.delete and not plan.create
    plan, _ = run(b, spec(image="t:2"), at(5), pods, outdated=True)
    assert plan.events == []


def test_invalid_config_fails_without_retry():
    s = spec()
    plan = lifecycle.invalid_config(launched(s), s, Observation(pods=[worker(s, 0)]), "spec.containers: bad", at(1))
    assert plan.status["phase"] == "Failed" and plan.status["failure"]["reason"] == "InvalidConfig"
    assert len(plan.delete) == 1


@pytest.mark.parametrize("md_spec, as_, expected", [
    ({"model": {"uri": "a"}}, "stable", {"spec": {"model": {"uri": "new"}}}),
    ({"model": {"uri": "a"}}, "canary",
     {"spec": {"rollout": {"canary": {"model": {"uri": "new"}, "weight": promotion.DEFAULT_CANARY_WEIGHT}}}}),
    # the previous canary promoted by a person: it becomes the stable model, or the stable would fall back to "a"
    ({"model": {"uri": "a"}, "rollout": {"canary": {"model": {"uri": "b", "format": "sklearn"},
                                                     "steps": [{"weight": 20}], "promote": True}}}, "canary",
     {"spec": {"model": {"uri": "b", "format": "sklearn"},
               "rollout": {"canary": {"model": {"uri": "new"}, "promote": None}}}}),
    # a policy without a model yet: steps and analysis kept, the model filled in
    ({"model": {"uri": "a"}, "rollout": {"canary": {"steps": [{"weight": 50}], "analysis": {"autoPromote": True}}}},
     "canary", {"spec": {"rollout": {"canary": {"model": {"uri": "new"}}}}}),
    # an aborted canary is not the stable's model
    ({"model": {"uri": "a"}, "rollout": {"canary": {"model": {"uri": "b"}, "weight": 10, "abort": True}}}, "canary",
     {"spec": {"rollout": {"canary": {"model": {"uri": "new"}, "abort": None}}}}),
])
def test_promotion_patches_just_the_model_field(md_spec, as_, expected):
    assert promotion.patch({"spec": md_spec}, as_, "new") == expected


@pytest.mark.parametrize("seen, moved", [
    ({"phase": "Promoted", "modelUri": "b"}, True),  # analysis promoted b: status says so, the spec does not
    ({"phase": "Promoted", "modelUri": "older"}, False),  # status about another canary
    ({"phase": "RolledBack", "modelUri": "b"}, False),  # rolled back: the stable never served b
    ({"phase": "Progressing", "modelUri": "b"}, False),
])
def test_a_canary_promoted_by_analysis_becomes_the_stable_model_with_the_next_promotion(seen, moved):
    md = {"spec": {"model": {"uri": "a"}, "rollout": {"canary": {"model": {"uri": "b"}, "steps": [{"weight": 50}]}}},
          "status": {"canary": seen}}
    patch = promotion.patch(md, "canary", "new")
    assert patch["spec"]["rollout"]["canary"] == {"model": {"uri": "new"}}
    assert patch["spec"].get("model") == ({"uri": "b"} if moved else None)
    # a repeated patch (after a conflict: the spec names "new" already) writes the same canary again
    md["spec"]["rollout"]["canary"]["model"]["uri"] = "new"
    assert promotion.patch(md, "canary", "new") == {"spec": {"rollout": {"canary": {"model": {"uri": "new"}}}}}


def ran(s: TrainingJobSpec, rank: int, start: int, end: int | None = None, phase: str | None = None,
        exit_code: int = 0) -> dict:
    """A worker whose container started at `start` (seconds after T0) and, with `end`, terminated then."""
    state = {"running": {"startedAt": f"2024-05-01T12:00:{start:02d}Z"}} if end is None else {
        "terminated": {"exitCode": exit_code, "startedAt": f"2024-05-01T12:00:{start:02d}Z",
                       "finishedAt": f"2024-05-01T12:00:{end:02d}Z"}}
    phase = phase or ("Running" if end is None else "Succeeded" if exit_code == 0 else "Failed")
    return worker(s, rank, phase=phase, containerStatuses=[{"name": "trainer", "state": state}])


def test_a_worker_that_finished_while_its_peer_never_started_is_a_gang_failure_not_a_success():
    s = spec()
    pods = [ran(s, 0, 1, 5), worker(s, 1, phase="Pending", node=None, **UNSCHEDULABLE)]
    plan, b = run(launched(s), s, at(6), pods)
    failure = b["status"]["failure"]
    assert (failure["reason"], failure["retryable"], failure["counted"]) == ("GangIncomplete", True, False)
    assert "worker 0 ended while worker 1 never started" in failure["message"]
    assert b["status"]["attempt"] == 2 and b["status"].get("retries", 0) == 0
    assert b["status"]["phase"] != "Succeeded" and "Succeeded" not in reasons(plan)


def test_workers_that_ran_one_after_the_other_are_not_a_running_gang():
    s = spec()
    pods = [ran(s, 0, 1, 5), ran(s, 1, 7)]
    plan, b = run(launched(s), s, at(8), pods)
    assert b["status"]["phase"] != "Running" and "Running" not in reasons(plan)
    failure = b["status"]["failure"]
    assert failure["reason"] == "GangIncomplete" and "worker 0 ended (at 2024-05-01T12:00:05Z) before worker 1 " \
                                                     "started" in failure["message"]
    assert failure["counted"] is True  # both were placed: finishing alone is the program's doing


def test_a_gang_that_ran_together_may_finish_one_worker_at_a_time():
    s = spec()
    plan, b = run(launched(s), s, at(8), [ran(s, 0, 1, 5), ran(s, 1, 2)])
    assert b["status"]["phase"] == "Running"
    assert cond(b, "Running")["message"] == "1/2 workers running, 1 finished (attempt 1)"
    plan, b = run(b, s, at(9), [ran(s, 0, 1, 5), ran(s, 1, 2, 8)])
    assert b["status"]["phase"] == "Succeeded"


def test_a_failure_of_a_gang_that_never_ran_complete_is_not_counted_against_the_backoff_limit():
    s = spec(backoffLimit=0)
    pods = [ran(s, 0, 1, 5, exit_code=1), worker(s, 1, phase="Pending", node=None, **UNSCHEDULABLE)]
    plan, b = run(launched(s), s, at(6), pods)
    assert b["status"]["phase"] != "Failed" and b["status"]["attempt"] == 2
    assert b["status"]["failure"]["reason"] == "Error" and b["status"]["failure"]["counted"] is False
    assert "as a peer was never placed on a node" in next(m for _, r, m in plan.events if r == "WorkerFailed")
    # The same exit once the gang ran together counts.
    plan, b = run(launched(s), s, at(6), [ran(s, 0, 1, 5, exit_code=1), ran(s, 1, 2)])
    assert b["status"]["phase"] == "Failed" and b["status"]["failure"]["counted"] is True


def test_the_job_reports_its_total_gpus():
    s = spec(workers=3, resources={"gpu": {"count": 8}})
    _, b = run(body(), s, T0, admission=admission.admit(body(), render.worker_pod(body(), s, 0, 1, "cluster.local"), 3,
                                                        "nvidia.com/gpu", [], []))
    assert b["status"]["gpus"] == 24

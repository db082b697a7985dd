"""The failure taxonomy: each failed worker classified as not retryable, retryable and counted, or retryable and
not counted against backoffLimit; one failure speaks for the attempt."""

from __future__ import annotations

import pytest

from mlops_operator.training.failures import classify, primary


def pod(phase="Running", reason=None, containers=(), conditions=(), deleting=False, name="ft-w0-a1") -> dict:
    status = {"phase": phase, "containerStatuses": list(containers), "conditions": list(conditions)}
    if reason:
        status["reason"] = reason
    meta = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2024-05-01T12:00:00Z"
    return {"metadata": meta, "status": status}


def terminated(code, reason="Error", finished="2024-05-01T12:00:00Z", message=""):
    term = {"exitCode": code, "reason": reason, "finishedAt": finished}
    if message:
        term["message"] = message
    return {"name": "trainer", "state": {"terminated": term}}


def waiting(reason):
    return {"name": "trainer", "state": {"waiting": {"reason": reason, "message": "details"}}}


@pytest.mark.parametrize("p, reason, retryable, counted", [
    (pod("Failed", containers=[terminated(137, "OOMKilled")]), "OOMKilled", False, False),
    (pod("Pending", containers=[waiting("ImagePullBackOff")]), "ImagePullBackOff", False, False),
    (pod("Pending", containers=[waiting("ErrImagePull")]), "ErrImagePull", False, False),
    (pod("Pending", containers=[waiting("CreateContainerConfigError")]), "CreateContainerConfigError", False, False),
    (pod("Failed", reason="Evicted", containers=[terminated(137)]), "Evicted", True, False),
    (pod("Failed", reason="NodeLost"), "NodeLost", True, False),
    (pod("Unknown"), "NodeLost", True, False),
    (pod("Failed", reason="Preempting"), "Preempted", True, False),
    (pod("Failed", conditions=[{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}],
         containers=[terminated(143)]), "Preempted", True, False),
    (pod("Running", deleting=True), "PodDeleted", True, False),
    (None, "PodDeleted", True, False),
    (pod("Failed", containers=[terminated(1, message="CUDA error")]), "Error", True, True),
    (pod("Failed"), "Failed", True, True),
])
def test_classification(p, reason, retryable, counted):
    failure = classify(p, 0, "ft-w0-a1")
    assert (failure.reason, failure.retryable, failure.counted) == (reason, retryable, counted)
    assert failure.worker == 0
    assert failure.to_status(2)["attempt"] == 2


def test_healthy_and_finished_workers_are_not_failures():
    assert classify(pod("Running"), 0) is None
    assert classify(pod("Pending"), 0) is None
    assert classify(pod("Succeeded", containers=[terminated(0, "Completed")]), 0) is None


def test_messages_name_the_worker_and_the_cause():
    failure = classify(pod("Failed", containers=[terminated(3, message="loss is NaN")]), 1)
    assert failure.message == "worker 1 (pod ft-w0-a1): container trainer exited with code 3: loss is NaN"
    assert "spec.resources.memory" in classify(pod("Failed", containers=[terminated(137, "OOMKilled")]), 0).message


def test_primary_prefers_what_retrying_cannot_fix_then_the_earliest():
    oom = classify(pod("Failed", containers=[terminated(137, "OOMKilled", "2024-05-01T12:00:09Z")]), 1)
    crash = classify(pod("Failed", containers=[terminated(1, finished="2024-05-01T12:00:05Z")]), 0)
    evicted = classify(pod("Failed", reason="Evicted",
                           containers=[terminated(137, finished="2024-05-01T12:00:01Z")]), 2)
    assert primary([crash, oom, evicted]) is oom
    # The peers of an evicted rank die on a broken collective: the eviction is the cause, not their exit codes.
    assert primary([crash, evicted]) is evicted
    assert primary([]) is None

"""The canary rollout as a pure function: canary pods on top of the stable, steps and pauses, promote, abort,
reset, events."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mlops_operator.api.modeldeployment import ModelDeploymentSpec
from mlops_operator.serving.canary import CanaryObservation, canary_replicas, plan, share, weight_note

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
STABLE_URI = "s3://models/iris/v1"
CANARY_URI = "s3://models/iris/v2"
STEPS = [{"weight": 25, "pause": "1m"}, {"weight": 50, "pause": 120}, {"weight": 75}]


def spec(canary: dict | None = None, **fields) -> ModelDeploymentSpec:
    raw = {"model": {"uri": STABLE_URI}, "runtime": {"preset": "sklearn"}, "replicas": 4, **fields}
    if canary is not None:
        raw["rollout"] = {"canary": {"model": {"uri": CANARY_URI}, **canary}}
    return ModelDeploymentSpec.model_validate(raw)


def ready(replicas: int) -> CanaryObservation:
    return CanaryObservation(ready=True, replicas=replicas, ready_pods=replicas)


def weights(p) -> tuple[int, int, int]:
    """(requested, planned, canary pods) of a plan's status."""
    return p.status["requestedWeight"], p.status["plannedWeight"], p.status["replicas"]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- canary pods on top of the stable -----------------------------------------------------------------------


@pytest.mark.parametrize("stable,weight,canary,got", [
    (4, 0, 0, 0), (4, 25, 1, 20), (4, 30, 2, 33), (4, 50, 4, 50), (4, 75, 4, 50), (4, 100, 4, 50),
    (1, 10, 1, 50), (9, 10, 1, 10), (10, 10, 1, 9), (20, 10, 2, 9), (3, 1, 1, 25), (0, 50, 0, 0), (8, 20, 2, 20),
])
def test_canary_pods_come_on_top_of_the_stable(stable, weight, canary, got):
    assert canary_replicas(stable, weight) == canary
    assert share(stable, canary) == got


def test_the_weight_note_says_what_the_requested_weight_needs():
    assert weight_note(4, 10) == ("10% requested: 1 canary pod(s) beside 4 stable pod(s) get 20% of traffic "
                                  "(10% needs at least 9 stable replicas per canary pod)")
    assert weight_note(9, 10) == "10% requested: 1 canary pod(s) beside 9 stable pod(s) get 10% of traffic"
    assert "at most as many pods as the stable, 50%" in weight_note(4, 75)
    assert "needs at least 3 stable replicas" in weight_note(2, 25)


# --- no canary ------------------------------------------------------------------------------------------------


def test_no_canary_plans_nothing():
    result = plan(spec(), None, 4, CanaryObservation(), T0)
    assert (result.deploy, result.canary_replicas) == (False, 0)
    assert (result.status, result.events, result.requeue_after, result.blocked) == (None, [], None, None)


def test_a_canary_policy_without_a_model_plans_nothing():
    raw = {"model": {"uri": STABLE_URI}, "runtime": {"preset": "sklearn"}, "replicas": 4,
           "rollout": {"canary": {"steps": STEPS}}}
    result = plan(ModelDeploymentSpec.model_validate(raw), None, 4, CanaryObservation(), T0)
    assert (result.deploy, result.canary_replicas, result.status, result.events) == (False, 0, None, [])


def test_removing_a_running_canary_says_so_once():
    prev = {"modelUri": CANARY_URI, "step": 1, "phase": "Progressing"}
    result = plan(spec(), prev, 4, CanaryObservation(), T0)
    assert not result.deploy and result.status is None
    assert [(t, r) for t, r, _ in result.events] == [("Normal", "CanaryRemoved")]
    assert CANARY_URI in result.events[0][2]
    for finished in ("Promoted", "Aborted"):
        assert plan(spec(), {**prev, "phase": finished}, 4, CanaryObservation(), T0).events == []


# --- a whole rollout ------------------------------------------------------------------------------------------


def test_a_whole_rollout_step_by_step():
    rollout = spec({"steps": STEPS})

    # Step 0 starts: 25% of four stable pods is one canary pod on top (20%); its pod is not there yet.
    p = plan(rollout, None, 4, CanaryObservation(), at(0))
    assert p.deploy and p.canary_replicas == 1
    assert p.status == {"modelUri": CANARY_URI, "step": 0, "phase": "Progressing", "requestedWeight": 25,
                        "plannedWeight": 20, "replicas": 1, "everReady": False}
    assert p.events == [("Normal", "CanaryStarted", f"canary {CANARY_URI} started at step 0: 25% requested: 1 "
                         "canary pod(s) beside 4 stable pod(s) get 20% of traffic (25% needs at least 3 stable "
                         "replicas per canary pod)")]
    assert p.blocked[0] == "CanaryNotReady" and p.requeue_after is None and "get 20%" in p.note
    assert not p.stable_from_canary

    # Still not ready: no second CanaryStarted, no pause started.
    p = plan(rollout, p.status, 4, CanaryObservation(ready=False, replicas=1), at(10))
    assert p.events == [] and "stepStartTime" not in p.status and p.blocked[0] == "CanaryNotReady"

    # The canary pod is ready at t=30: the 1m pause starts now, not when the step began.
    p = plan(rollout, p.status, 4, ready(1), at(30))
    assert p.status["stepStartTime"] == "2024-05-01T12:00:30Z" and p.status["everReady"] is True
    assert p.status["phase"] == "Progressing"
    assert p.requeue_after == 60 and p.events == [] and p.blocked is None
    assert p.canary_replicas == 1

    # Half-way through the pause: requeue for the rest; the start time is kept.
    p = plan(rollout, p.status, 4, ready(1), at(60))
    assert p.requeue_after == 30 and p.status["stepStartTime"] == "2024-05-01T12:00:30Z" and p.status["step"] == 0

    # The pause is over: step 1 (50%: four canary pods beside four stable ones); its own pause has not started.
    p = plan(rollout, p.status, 4, ready(1), at(90))
    assert (p.status["step"], p.status["phase"]) == (1, "Progressing") and "stepStartTime" not in p.status
    assert weights(p) == (50, 50, 4) and p.canary_replicas == 4 and p.note is None
    assert p.events == [("Normal", "CanaryStep", f"canary {CANARY_URI} advanced to step 1: 50% requested: "
                         "4 canary pod(s) beside 4 stable pod(s) get 50% of traffic")]
    assert p.requeue_after is None

    # The live canary still has one (ready) replica: step 1 wants four, so the pause must not start.
    p = plan(rollout, p.status, 4, ready(1), at(91))
    assert p.status["step"] == 1 and "stepStartTime" not in p.status
    assert p.blocked[0] == "CanaryNotReady" and p.requeue_after is None and p.events == []

    # Four ready canary replicas at t=100: the 120s pause runs.
    p = plan(rollout, p.status, 4, ready(4), at(100))
    assert p.status["stepStartTime"] == "2024-05-01T12:01:40Z" and p.requeue_after == 120 and p.events == []

    # t=220: step 2 asks 75%; the canary never outnumbers the stable, so it stays at four pods (50%), and says so.
    p = plan(rollout, p.status, 4, ready(4), at(220))
    assert p.status["step"] == 2 and weights(p) == (75, 50, 4)
    assert p.events[0][1] == "CanaryStep" and "at most as many pods as the stable" in p.events[0][2]

    # Ready: a step without a pause holds (Paused) until promote, however long it waits.
    p = plan(rollout, p.status, 4, ready(4), at(230))
    assert p.status["phase"] == "Paused" and p.status["step"] == 2
    assert p.blocked == ("CanaryPaused", "step 2 holds until spec.rollout.canary.promote is true")
    assert p.requeue_after is None and p.events == []
    p = plan(rollout, p.status, 4, ready(4), at(230 + 86400))
    assert p.status["phase"] == "Paused" and p.status["step"] == 2 and p.events == []

    # promote: the stable rolls to the canary's template at its own count; the canary stays meanwhile.
    promoted = spec({"steps": STEPS, "promote": True})
    p = plan(promoted, p.status, 4, ready(4), at(300))
    assert p.deploy and p.stable_from_canary and p.canary_replicas == 4
    assert p.status["phase"] == "Progressing" and p.status["step"] == 2
    assert p.blocked[0] == "Promoting" and p.events == []

    # The stable runs the canary's template on all replicas: Promoted, the canary goes away, said once.
    p = plan(promoted, p.status, 4, CanaryObservation(ready=True, replicas=4, stable_promoted=True), at(400))
    assert not p.deploy and p.stable_from_canary and p.canary_replicas == 0
    assert p.status == {"modelUri": CANARY_URI, "step": 2, "phase": "Promoted"}
    assert p.events == [("Normal", "CanaryPromoted", f"canary {CANARY_URI} promoted: the stable now serves it")]
    p = plan(promoted, p.status, 4, CanaryObservation(stable_promoted=True), at(500))
    assert p.status["phase"] == "Promoted" and p.events == [] and not p.deploy and p.stable_from_canary


def test_promoted_stays_promoted_when_a_stable_pod_restarts():
    """Once promoted, the stable serves the canary model; a stable replica going unready (an eviction, an HPA
    scale-up) must not bring the canary Deployment back."""
    promoted = spec({"steps": STEPS, "promote": True})
    prev = {"modelUri": CANARY_URI, "step": 2, "phase": "Promoted"}
    p = plan(promoted, prev, 4, CanaryObservation(stable_promoted=False), at(0))
    assert not p.deploy and p.stable_from_canary and p.canary_replicas == 0
    assert p.status["phase"] == "Promoted" and p.events == []


def test_a_canary_that_never_had_a_ready_pod_is_not_promoted():
    p = plan(spec({"weight": 50, "promote": True}), None, 4, CanaryObservation(), T0)
    assert p.deploy and not p.stable_from_canary and p.canary_replicas == 4
    assert p.status["phase"] == "Paused" and p.blocked[0] == "CanaryNeverReady"
    assert "no pod of canary" in p.blocked[1]
    # Its pods cannot run: Failed, with their reason; still not promoted.
    crashing = CanaryObservation(replicas=4, problem=("CrashLoopBackOff", "1/4 pods: crashed"))
    p = plan(spec({"weight": 50, "promote": True}), p.status, 4, crashing, T0)
    assert not p.stable_from_canary and p.status["phase"] == "Failed" and p.blocked[0] == "CanaryCrashLoopBackOff"
    # One canary pod is Ready: the promotion goes ahead.
    p = plan(spec({"weight": 50, "promote": True}), p.status, 4, CanaryObservation(replicas=4, ready_pods=1), T0)
    assert p.stable_from_canary and p.status["phase"] == "Progressing" and p.blocked[0] == "Promoting"
    assert p.status["everReady"] is True


def test_a_canary_that_was_ready_once_is_promoted_even_if_a_pod_restarts_now():
    prev = {"modelUri": CANARY_URI, "step": 0, "phase": "Paused", "everReady": True}
    restarting = CanaryObservation(replicas=4, problem=("Restarting", "restarted 1 times"))
    p = plan(spec({"weight": 50, "promote": True}), prev, 4, restarting, T0)
    assert p.stable_from_canary and p.status["phase"] == "Progressing" and p.status["everReady"] is True


def test_ever_ready_belongs_to_one_canary_model():
    prev = {"modelUri": "s3://models/iris/v1.5", "step": 0, "phase": "Paused", "everReady": True}
    p = plan(spec({"weight": 50, "promote": True}), prev, 4, CanaryObservation(), T0)
    assert not p.stable_from_canary and p.status["everReady"] is False


# --- pauses and readiness -------------------------------------------------------------------------------------


def test_a_problem_restarts_the_pause():
    rollout = spec({"steps": STEPS})
    prev = {"modelUri": CANARY_URI, "step": 0, "phase": "Progressing", "stepStartTime": "2024-05-01T12:00:00Z"}
    seen = CanaryObservation(ready=False, replicas=1,
                             problem=("CrashLoopBackOff", "1/1 pods: container server of pod c: CrashLoopBackOff"))
    p = plan(rollout, prev, 4, seen, at(59))
    assert p.blocked == ("CanaryCrashLoopBackOff",
                         "the canary cannot advance: 1/1 pods: container server of pod c: CrashLoopBackOff")
    assert "stepStartTime" not in p.status and p.status["step"] == 0 and p.requeue_after is None
    assert p.status["phase"] == "Failed"  # beside Progressing=False, never "Progressing"
    assert p.canary_replicas == 1  # on top: the stable keeps all four pods whatever the canary does
    # Healthy again at t=70: the pause counts from then, not from the old start.
    p = plan(rollout, p.status, 4, ready(1), at(70))
    assert p.status["stepStartTime"] == "2024-05-01T12:01:10Z" and p.requeue_after == 60
    assert p.status["phase"] == "Progressing"
    p = plan(rollout, p.status, 4, ready(1), at(129))
    assert p.status["step"] == 0 and p.requeue_after == pytest.approx(1)


def test_pause_is_counted_from_the_status_not_restarted_by_a_new_reconcile():
    rollout = spec({"steps": STEPS})
    prev = {"modelUri": CANARY_URI, "step": 0, "phase": "Progressing", "stepStartTime": "2024-05-01T12:00:00Z"}
    p = plan(rollout, prev, 4, ready(1), at(45))
    assert p.requeue_after == 15 and p.status["stepStartTime"] == "2024-05-01T12:00:00Z"


def test_the_last_step_with_a_pause_then_waits_for_promote():
    rollout = spec({"steps": [{"weight": 10, "pause": 30}, {"weight": 20, "pause": 30}]})
    prev = {"modelUri": CANARY_URI, "step": 1, "phase": "Progressing", "stepStartTime": "2024-05-01T12:00:00Z"}
    p = plan(rollout, prev, 8, ready(2), at(30))
    assert p.status["phase"] == "Paused" and p.status["step"] == 1
    assert p.blocked[0] == "CanaryPaused" and "all steps done" in p.blocked[1]
    assert p.events == [] and p.requeue_after is None
    assert p.canary_replicas == 2 and weights(p) == (20, 20, 2)


def test_a_fixed_weight_holds_at_its_step():
    rollout = spec({"weight": 10}, replicas=9)
    p = plan(rollout, None, 9, CanaryObservation(), T0)
    assert p.canary_replicas == 1 and weights(p) == (10, 10, 1)
    assert p.events[0][1] == "CanaryStarted" and "get 10% of traffic" in p.events[0][2]
    p = plan(rollout, p.status, 10, ready(1), at(5))
    assert p.status["phase"] == "Paused" and p.blocked[0] == "CanaryPaused" and p.events == []


def test_more_steps_in_status_than_in_spec_clamps_to_the_last():
    rollout = spec({"steps": [{"weight": 50}]})
    p = plan(rollout, {"modelUri": CANARY_URI, "step": 4, "phase": "Progressing"}, 4, ready(4), T0)
    assert p.status["step"] == 0 and p.status["phase"] == "Paused"


# --- reset and abort ------------------------------------------------------------------------------------------


def test_a_new_canary_model_starts_over():
    rollout = spec({"steps": STEPS})
    prev = {"modelUri": "s3://models/iris/v1.5", "step": 2, "phase": "Paused",
            "stepStartTime": "2024-05-01T11:00:00Z"}
    p = plan(rollout, prev, 4, CanaryObservation(ready=True, replicas=3), T0)
    assert (p.status["step"], p.status["phase"], p.status["everReady"]) == (0, "Progressing", False)
    assert p.canary_replicas == 1
    assert [e[1] for e in p.events] == ["CanaryStarted"]


@pytest.mark.parametrize("phase", ["Promoted", "Aborted"])
def test_a_canary_after_a_finished_one_starts_over(phase):
    p = plan(spec({"steps": STEPS}), {"modelUri": CANARY_URI, "step": 2, "phase": phase}, 4, CanaryObservation(), T0)
    assert p.status["step"] == 0 and p.events[0][1] == "CanaryStarted"


def test_abort_removes_the_canary_at_once_and_says_so_once():
    aborted = spec({"steps": STEPS, "abort": True})
    prev = {"modelUri": CANARY_URI, "step": 1, "phase": "Progressing", "stepStartTime": "2024-05-01T12:00:00Z"}
    p = plan(aborted, prev, 4, ready(2), T0)
    assert not p.deploy and p.canary_replicas == 0 and not p.stable_from_canary
    assert p.status == {"modelUri": CANARY_URI, "step": 1, "phase": "Aborted"}
    assert p.events == [("Normal", "CanaryAborted",
                         f"canary {CANARY_URI} aborted at step 1; the stable serves all traffic")]
    again = plan(aborted, p.status, 4, CanaryObservation(), at(10))
    assert again.events == [] and again.status["phase"] == "Aborted" and not again.deploy

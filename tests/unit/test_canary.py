"""The canary rollout as a pure function: replica split, steps and pauses, promote, abort, reset, events."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mlops_operator.api.modeldeployment import ModelDeploymentSpec
from mlops_operator.serving.canary import CanaryObservation, plan, split

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
    return CanaryObservation(ready=True, replicas=replicas)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- split --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("total,weight,expected", [
    (4, 0, (4, 0)), (4, 25, (3, 1)), (4, 30, (2, 2)), (4, 50, (2, 2)), (4, 75, (1, 3)),
    (4, 100, (1, 4)),  # the stable keeps one replica until promotion
    (1, 10, (1, 1)), (10, 10, (9, 1)), (3, 1, (2, 1)), (0, 50, (0, 0)),
])
def test_split(total, weight, expected):
    assert split(total, weight) == expected


# --- no canary ------------------------------------------------------------------------------------------------


def test_no_canary_plans_nothing():
    result = plan(spec(), None, 4, CanaryObservation(), T0)
    assert (result.deploy, result.canary_replicas, result.stable_replicas) == (False, 0, None)
    assert (result.status, result.events, result.requeue_after, result.blocked) == (None, [], None, None)


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

    # Step 0 starts: one of four replicas (25%); its pods are not there yet.
    p = plan(rollout, None, 4, CanaryObservation(), at(0))
    assert p.deploy and (p.stable_replicas, p.canary_replicas) == (3, 1)
    assert p.status == {"modelUri": CANARY_URI, "step": 0, "phase": "Progressing"}
    assert p.events == [("Normal", "CanaryStarted", f"canary {CANARY_URI} started at step 0 (25% of traffic)")]
    assert p.blocked[0] == "CanaryNotReady" and p.requeue_after is None
    assert not p.stable_from_canary

    # Still not ready: no second CanaryStarted, no pause started.
    p = plan(rollout, p.status, 4, CanaryObservation(ready=False, replicas=1), at(10))
    assert p.events == [] and "stepStartTime" not in p.status and p.blocked[0] == "CanaryNotReady"

    # The canary pod is ready at t=30: the 1m pause starts now, not when the step began.
    p = plan(rollout, p.status, 4, ready(1), at(30))
    assert p.status == {"modelUri": CANARY_URI, "step": 0, "phase": "Progressing",
                        "stepStartTime": "2024-05-01T12:00:30Z"}
    assert p.requeue_after == 60 and p.events == [] and p.blocked is None
    assert (p.stable_replicas, p.canary_replicas) == (3, 1)

    # Half-way through the pause: requeue for the rest; the start time is kept.
    p = plan(rollout, p.status, 4, ready(1), at(60))
    assert p.requeue_after == 30 and p.status["stepStartTime"] == "2024-05-01T12:00:30Z" and p.status["step"] == 0

    # The pause is over: step 1 (50%, two replicas); its own pause has not started.
    p = plan(rollout, p.status, 4, ready(1), at(90))
    assert p.status == {"modelUri": CANARY_URI, "step": 1, "phase": "Progressing"}
    assert (p.stable_replicas, p.canary_replicas) == (2, 2)
    assert p.events == [("Normal", "CanaryStep", f"canary {CANARY_URI} advanced to step 1 (50% of traffic)")]
    assert p.requeue_after is None

    # The live canary still has one (ready) replica: step 1 wants two, so the pause must not start.
    p = plan(rollout, p.status, 4, ready(1), at(91))
    assert p.status["step"] == 1 and "stepStartTime" not in p.status
    assert p.blocked[0] == "CanaryNotReady" and p.requeue_after is None and p.events == []

    # Two ready canary replicas at t=100: the 120s pause runs.
    p = plan(rollout, p.status, 4, ready(2), at(100))
    assert p.status["stepStartTime"] == "2024-05-01T12:01:40Z" and p.requeue_after == 120 and p.events == []

    # t=220: step 2 (75%, three replicas), which has no pause.
    p = plan(rollout, p.status, 4, ready(2), at(220))
    assert p.status == {"modelUri": CANARY_URI, "step": 2, "phase": "Progressing"}
    assert (p.stable_replicas, p.canary_replicas) == (1, 3)
    assert p.events == [("Normal", "CanaryStep", f"canary {CANARY_URI} advanced to step 2 (75% of traffic)")]

    # Three ready replicas: a step without a pause holds (Paused) until promote, however long it waits.
    p = plan(rollout, p.status, 4, ready(3), at(230))
    assert p.status["phase"] == "Paused" and p.status["step"] == 2
    assert p.blocked == ("CanaryPaused", "step 2 holds until spec.rollout.canary.promote is true")
    assert p.requeue_after is None and p.events == []
    p = plan(rollout, p.status, 4, ready(3), at(230 + 86400))
    assert p.status["phase"] == "Paused" and p.status["step"] == 2 and p.events == []
    assert (p.stable_replicas, p.canary_replicas) == (1, 3)

    # promote: the stable rolls to the canary model at the full count; the canary stays meanwhile.
    promoted = spec({"steps": STEPS, "promote": True})
    p = plan(promoted, p.status, 4, ready(3), at(300))
    assert p.deploy and p.stable_from_canary
    assert (p.stable_replicas, p.canary_replicas) == (4, 3)
    assert p.status["phase"] == "Progressing" and p.status["step"] == 2
    assert p.blocked[0] == "Promoting" and p.events == []

    # The stable runs the canary model on all replicas: Promoted, the canary goes away, said once.
    p = plan(promoted, p.status, 4, CanaryObservation(ready=True, replicas=3, stable_promoted=True), at(400))
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


def test_promote_from_the_start_deploys_the_canary_until_the_stable_serves_it():
    p = plan(spec({"weight": 50, "promote": True}), None, 4, CanaryObservation(), T0)
    assert p.deploy and p.stable_from_canary and (p.stable_replicas, p.canary_replicas) == (4, 2)
    assert p.status["phase"] == "Progressing" and p.blocked[0] == "Promoting"


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
    # Healthy again at t=70: the pause counts from then, not from the old start.
    p = plan(rollout, p.status, 4, ready(1), at(70))
    assert p.status["stepStartTime"] == "2024-05-01T12:01:10Z" and p.requeue_after == 60
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
    p = plan(rollout, prev, 10, ready(2), at(30))
    assert p.status["phase"] == "Paused" and p.status["step"] == 1
    assert p.blocked[0] == "CanaryPaused" and "all steps done" in p.blocked[1]
    assert p.events == [] and p.requeue_after is None
    assert (p.stable_replicas, p.canary_replicas) == (8, 2)


def test_a_fixed_weight_holds_at_its_step():
    rollout = spec({"weight": 10}, replicas=10)
    p = plan(rollout, None, 10, CanaryObservation(), T0)
    assert (p.stable_replicas, p.canary_replicas) == (9, 1)
    assert p.events[0][1] == "CanaryStarted" and "(10% of traffic)" in p.events[0][2]
    p = plan(rollout, p.status, 10, ready(1), at(5))
    assert p.status["phase"] == "Paused" and p.blocked[0] == "CanaryPaused" and p.events == []


def test_more_steps_in_status_than_in_spec_clamps_to_the_last():
    rollout = spec({"steps": [{"weight": 50}]})
    p = plan(rollout, {"modelUri": CANARY_URI, "step": 4, "phase": "Progressing"}, 4, ready(2), T0)
    assert p.status["step"] == 0 and p.status["phase"] == "Paused"


# --- reset and abort ------------------------------------------------------------------------------------------


def test_a_new_canary_model_starts_over():
    rollout = spec({"steps": STEPS})
    prev = {"modelUri": "s3://models/iris/v1.5", "step": 2, "phase": "Paused",
            "stepStartTime": "2024-05-01T11:00:00Z"}
    p = plan(rollout, prev, 4, ready(3), T0)
    assert p.status == {"modelUri": CANARY_URI, "step": 0, "phase": "Progressing"}
    assert (p.stable_replicas, p.canary_replicas) == (3, 1)
    assert p.events == [("Normal", "CanaryStarted", f"canary {CANARY_URI} started at step 0 (25% of traffic)")]


@pytest.mark.parametrize("phase", ["Promoted", "Aborted"])
def test_a_canary_after_a_finished_one_starts_over(phase):
    p = plan(spec({"steps": STEPS}), {"modelUri": CANARY_URI, "step": 2, "phase": phase}, 4, CanaryObservation(), T0)
    assert p.status["step"] == 0 and p.events[0][1] == "CanaryStarted"


def test_abort_removes_the_canary_at_once_and_says_so_once():
    aborted = spec({"steps": STEPS, "abort": True})
    prev = {"modelUri": CANARY_URI, "step": 1, "phase": "Progressing", "stepStartTime": "2024-05-01T12:00:00Z"}
    p = plan(aborted, prev, 4, ready(2), T0)
    assert not p.deploy and p.canary_replicas == 0 and p.stable_replicas is None and not p.stable_from_canary
    assert p.status == {"modelUri": CANARY_URI, "step": 1, "phase": "Aborted"}
    assert p.events == [("Normal", "CanaryAborted",
                         f"canary {CANARY_URI} aborted at step 1; the stable serves all traffic")]
    again = plan(aborted, p.status, 4, CanaryObservation(), at(10))
    assert again.events == [] and again.status["phase"] == "Aborted" and not again.deploy

"""The canary rollout as a pure function: from the spec, the previous status.canary and what the canary pods
are doing now, decide the replica split, the step, the phase and the events.

Traffic follows the replica ratio (both Deployments sit behind one Service), so a step's weight becomes
`ceil(total * weight / 100)` canary replicas, and the stable keeps the rest but never fewer than one until the
canary is promoted: the Service never loses the stable's endpoints during a rollout or an abort.

A step advances only while every canary pod of the current step is Ready and none restarts; its pause counts
from the moment that was first true (status.canary.stepStartTime). A step without a pause holds until
`promote: true`. Promotion rolls the stable Deployment to the canary's model; the canary goes away only once
that rollout is complete. Abort removes the canary at once. `analysis` (reserved) will plug in where
`CanaryObservation.problem` is computed: a failed analysis is one more reason not to advance.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime

from ..api.common import duration_seconds
from ..api.modeldeployment import Canary, CanaryStep, ModelDeploymentSpec
from ..k8s.conditions import format_time, parse_time

Event = tuple[str, str, str]  # (type, reason, message)


@dataclasses.dataclass(frozen=True)
class CanaryObservation:
    ready: bool = False  # every planned canary replica of the current template is Ready and none restarted
    problem: tuple[str, str] | None = None  # (reason, message) when canary pods cannot run
    stable_promoted: bool = False  # the stable Deployment runs the canary's model on all its replicas
    replicas: int = 0  # the live canary Deployment's replica count (ready is only true of that count)


@dataclasses.dataclass
class CanaryPlan:
    deploy: bool = False  # the canary Deployment should exist
    canary_replicas: int = 0
    stable_replicas: int | None = None  # None: the stable gets the whole count
    stable_from_canary: bool = False  # promotion: the stable renders the canary's model and runtime
    status: dict | None = None  # status.canary (weight is filled in from live pods by the status module)
    requeue_after: float | None = None
    events: list[Event] = dataclasses.field(default_factory=list)
    blocked: tuple[str, str] | None = None  # why the rollout cannot advance (for the Progressing condition)


def split(total: int, weight: int) -> tuple[int, int]:
    """(stable, canary) replicas for a traffic weight in percent."""
    if total <= 0:
        return 0, 0
    canary = math.ceil(total * weight / 100) if weight > 0 else 0
    return max(1, total - canary), canary




def _steps(canary: Canary) -> list[CanaryStep]:
    return list(canary.steps) or [CanaryStep(weight=canary.weight or 0)]


def plan(spec: ModelDeploymentSpec, prev: dict | None, total: int, seen: CanaryObservation,
         now: datetime) -> CanaryPlan:
    canary = spec.rollout.canary if spec.rollout else None
    prev = prev or {}
    prev_phase = prev.get("phase")
    if canary is None or canary.model is None:
        events = []
        if prev_phase not in (None, "Promoted", "Aborted"):
            events.append(("Normal", "CanaryRemoved",
                           f"canary {prev.get('modelUri')} removed from the spec; the stable serves all traffic"))
        return CanaryPlan(events=events)
    uri = canary.model.uri
    reset = prev.get("modelUri") != uri or prev_phase in (None, "Aborted", "Promoted")
    step = 0 if reset else min(int(prev.get("step") or 0), len(_steps(canary)) - 1)

    if canary.abort:
        events = [] if prev_phase == "Aborted" and prev.get("modelUri") == uri else [
            ("Normal", "CanaryAborted", f"canary {uri} aborted at step {step}; the stable serves all traffic")]
        return CanaryPlan(status={"modelUri": uri, "step": int(prev.get("step") or 0), "phase": "Aborted"},
                          events=events)

    if canary.promote:
        already = prev_phase == "Promoted" and prev.get("modelUri") == uri
        # Once promoted, stays promoted: a stable replica going unready later must not bring the canary back.
        if seen.stable_promoted or already:
            events = [] if already else [
                ("Normal", "CanaryPromoted", f"canary {uri} promoted: the stable now serves it")]
            return CanaryPlan(stable_from_canary=True, events=events,
                              status={"modelUri": uri, "step": int(prev.get("step") or 0), "phase": "Promoted"})
        weight = _steps(canary)[step].weight
        stable_n, canary_n = split(total, weight)
        return CanaryPlan(deploy=True, canary_replicas=canary_n, stable_replicas=total, stable_from_canary=True,
                          status={"modelUri": uri, "step": step, "phase": "Progressing",
                                  "stepStartTime": prev.get("stepStartTime")},
                          blocked=("Promoting", f"the stable Deployment is rolling out the canary model {uri}"))

    steps = _steps(canary)
    events: list[Event] = []
    started = None if reset else parse_time(prev.get("stepStartTime"))
    if reset:
        events.append(("Normal", "CanaryStarted", f"canary {uri} started at step 0 ({steps[0].weight}% of traffic)"))
    result = CanaryPlan(deploy=True)
    phase, blocked, requeue = "Progressing", None, None
    if seen.problem is not None:
        started = None
        blocked = (f"Canary{seen.problem[0]}", f"the canary cannot advance: {seen.problem[1]}")
    elif not seen.ready or seen.replicas != split(total, steps[step].weight)[1]:
        started = None
        blocked = ("CanaryNotReady", f"waiting for the canary pods of step {step} to be Ready")
    else:
        started = started or now
        pause = steps[step].pause
        if pause is None:
            phase = "Paused"
            blocked = ("CanaryPaused", f"step {step} holds until spec.rollout.canary.promote is true")
        else:
            remaining = duration_seconds(pause) - (now - started).total_seconds()
            if remaining > 0:
                requeue = remaining
            elif step + 1 < len(steps):
                step, started = step + 1, None
                events.append(("Normal", "CanaryStep",
                               f"canary {uri} advanced to step {step} ({steps[step].weight}% of traffic)"))
            else:
                phase = "Paused"
                blocked = ("CanaryPaused", "all steps done; set spec.rollout.canary.promote to true to promote")
    result.stable_replicas, result.canary_replicas = split(total, steps[step].weight)
    status = {"modelUri": uri, "step": step, "phase": phase}
    if started is not None:
        status["stepStartTime"] = format_time(started)
    result.status, result.blocked, result.requeue_after, result.events = status, blocked, requeue, events
    return result

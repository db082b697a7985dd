"""The canary rollout as a pure function: from the spec, the previous status.canary and what the canary pods
are doing now, decide the replica counts, the step, the phase and the events.

Traffic follows the replica ratio (both Deployments sit behind one Service). Canary pods are added on top of the
stable's, so the stable never loses capacity to a canary (a crash-looping canary costs no serving pod): for a
requested weight w and s stable pods, the canary gets the count c whose share c / (s + c) comes closest to w, at
least one pod and at most s (so at most 50% until promotion). The share that gives (plannedWeight) and the share
of ready pods (weight) are reported beside the requested weight; when they differ, the Progressing message and the
events say how many stable replicas the requested weight needs.

A step advances only while every canary pod of the current step is Ready and none restarts; its pause counts
from the moment that was first true (status.canary.stepStartTime). A step without a pause holds until
`promote: true`. Promotion rolls the stable Deployment to the canary's template, but only once a canary pod of
that model has been Ready (status.canary.everReady): a model that never ran is not made the stable one. The canary
goes away only once the stable's rollout is complete. Abort removes the canary at once. `analysis` (reserved)
will plug in where `CanaryObservation.problem` is computed: a failed analysis is one more reason not to advance.

The phase agrees with the Progressing condition: Progressing exactly when the condition is True; Paused (waiting
for promote, or for a first Ready canary pod) and Failed (the pods cannot run) when it is False.
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
    stable_promoted: bool = False  # the stable Deployment runs the canary's whole template on all its replicas
    replicas: int = 0  # the live canary Deployment's replica count (ready is only true of that count)
    ready_pods: int = 0  # canary pods of the canary's model that are Ready now


@dataclasses.dataclass
class CanaryPlan:
    deploy: bool = False  # the canary Deployment should exist
    canary_replicas: int = 0
    stable_from_canary: bool = False  # promotion: the stable renders the canary's model and runtime
    status: dict | None = None  # status.canary (weight is filled in from live pods by the status module)
    requeue_after: float | None = None
    events: list[Event] = dataclasses.field(default_factory=list)
    blocked: tuple[str, str] | None = None  # why the rollout cannot advance (for the Progressing condition)
    note: str | None = None  # how the requested weight maps to pods, when the split cannot match it


def canary_replicas(stable: int, weight: int) -> int:
    """Canary pods beside `stable` stable pods whose share comes closest to `weight` percent (ties: fewer pods);
    at least one for a weight above 0, at most as many as the stable has."""
    if stable <= 0 or weight <= 0:
        return 0
    if weight >= 50:
        return stable
    exact = stable * weight / (100 - weight)
    candidates = {max(1, math.floor(exact)), max(1, math.ceil(exact))}
    return min(min(candidates, key=lambda c: (abs(100 * c / (stable + c) - weight), c)), stable)


def share(stable: int, canary: int) -> int:
    """The canary's percent of traffic when `stable` and `canary` pods serve."""
    return round(100 * canary / (stable + canary)) if stable + canary > 0 else 0


def weight_note(stable: int, weight: int) -> str:
    """How the requested weight maps to pods, saying what it would need when it cannot be met."""
    canary = canary_replicas(stable, weight)
    got = share(stable, canary)
    text = f"{weight}% requested: {canary} canary pod(s) beside {stable} stable pod(s) get {got}% of traffic"
    if got == weight or canary == 0:
        return text
    if weight > 50:
        return text + " (the canary gets at most as many pods as the stable, 50%, until promoted)"
    needed = math.ceil(100 / weight - 1 - 1e-9)  # stable pods per canary pod for the requested share
    return text + f" ({weight}% needs at least {needed} stable replicas per canary pod)"


def _steps(canary: Canary) -> list[CanaryStep]:
    return list(canary.steps) or [CanaryStep(weight=canary.weight or 0)]


def plan(spec: ModelDeploymentSpec, prev: dict | None, total: int, seen: CanaryObservation,
         now: datetime) -> CanaryPlan:
    canary = spec.rollout.canary if spec.rollout else None
    prev = prev or {}
    prev_phase = prev.get("phase")
    events: list[Event]
    blocked: tuple[str, str] | None
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

    weight = _steps(canary)[step].weight
    n_canary = canary_replicas(total, weight)
    ever_ready = (not reset and bool(prev.get("everReady"))) or seen.ready_pods > 0
    counts = {"requestedWeight": weight, "plannedWeight": share(total, n_canary), "replicas": n_canary,
              "everReady": ever_ready}
    if canary.promote:
        already = prev_phase == "Promoted" and prev.get("modelUri") == uri
        # Once promoted, stays promoted: a stable replica going unready later must not bring the canary back.
        if seen.stable_promoted or already:
            events = [] if already else [
                ("Normal", "CanaryPromoted", f"canary {uri} promoted: the stable now serves it")]
            return CanaryPlan(stable_from_canary=True, events=events,
                              status={"modelUri": uri, "step": int(prev.get("step") or 0), "phase": "Promoted"})
        held = {"modelUri": uri, "step": step, "stepStartTime": prev.get("stepStartTime"), **counts}
        if not ever_ready:
            # The stable keeps what serves: a model that has never had a Ready pod is not rolled out to it.
            phase, blocked = "Paused", ("CanaryNeverReady", (f"promotion waits: no pod of canary {uri} has been "
                                                             "Ready yet, so the stable keeps serving its model"))
            if seen.problem is not None:
                phase, blocked = "Failed", (f"Canary{seen.problem[0]}",
                                            f"promotion waits, the canary cannot run: {seen.problem[1]}")
            return CanaryPlan(deploy=True, canary_replicas=n_canary, status={**held, "phase": phase},
                              blocked=blocked)
        return CanaryPlan(deploy=True, canary_replicas=n_canary, stable_from_canary=True,
                          status={**held, "phase": "Progressing"},
                          blocked=("Promoting", f"the stable Deployment is rolling out the canary {uri}"))

    steps = _steps(canary)
    events = []
    started = None if reset else parse_time(prev.get("stepStartTime"))
    if reset:
        events.append(("Normal", "CanaryStarted", f"canary {uri} started at step 0: {weight_note(total, weight)}"))
    result = CanaryPlan(deploy=True)
    phase, blocked, requeue = "Progressing", None, None
    if seen.problem is not None:
        started, phase = None, "Failed"
        blocked = (f"Canary{seen.problem[0]}", f"the canary cannot advance: {seen.problem[1]}")
    elif not seen.ready or seen.replicas != n_canary:
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
                weight = steps[step].weight
                n_canary = canary_replicas(total, weight)
                counts.update(requestedWeight=weight, plannedWeight=share(total, n_canary), replicas=n_canary)
                events.append(("Normal", "CanaryStep",
                               f"canary {uri} advanced to step {step}: {weight_note(total, weight)}"))
            else:
                phase = "Paused"
                blocked = ("CanaryPaused", "all steps done; set spec.rollout.canary.promote to true to promote")
    result.canary_replicas = n_canary
    if counts["plannedWeight"] != counts["requestedWeight"]:
        result.note = weight_note(total, counts["requestedWeight"])
    status = {"modelUri": uri, "step": step, "phase": phase, **counts}
    if started is not None:
        status["stepStartTime"] = format_time(started)
    result.status, result.blocked, result.requeue_after, result.events = status, blocked, requeue, events
    return result

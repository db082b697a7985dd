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
goes away only once the stable's rollout is complete. Abort removes the canary at once.

With `analysis` (serving/analysis.py), the reconcile measures the canary every interval (`analysis_due`) and
passes the results in: a step then also needs its last analysis to have succeeded (a step without a pause needs
nothing else), failed intervals beyond failureLimit roll the canary back (scaled to zero as abort does, phase
RolledBack, held until the canary's model or runtime changes or promote or abort is set), and with autoPromote the
last step promotes as `promote: true` does. The decisions are recorded in status.canary.analysis.decision, never
in the spec.

The phase agrees with the Progressing condition: Progressing exactly when the condition is True; Paused (waiting
for promote, or for a first Ready canary pod) and Failed (the pods cannot run) when it is False.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime

from ..api.common import duration_seconds
from ..api.modeldeployment import Canary, CanaryAnalysis, CanaryStep, ModelDeploymentSpec
from ..k8s.conditions import format_time, parse_time
from . import analysis as checks

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
    checked: list[dict] | None = None  # the analysis results this plan counted (for the metric, once written)


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


def _analysis_of(canary: Canary, prev: dict) -> dict | None:
    """The previous status.canary.analysis when it is about this canary's model and runtime."""
    recorded = prev.get("analysis")
    return recorded if recorded and recorded.get("canary") == checks.canary_digest(canary) else None


def analysis_due(spec: ModelDeploymentSpec, prev: dict | None, now: datetime) -> bool:
    """Whether the reconcile should measure the canary now: it has analysis, it is running a step (its pods
    were Ready when the status was written), nothing is decided yet, and the next interval is due."""
    canary = spec.rollout.canary if spec.rollout else None
    prev = prev or {}
    if (canary is None or canary.model is None or canary.analysis is None or canary.abort or canary.promote
            or prev.get("modelUri") != canary.model.uri or prev.get("phase") not in ("Progressing", "Paused")):
        return False
    recorded = _analysis_of(canary, prev)
    if recorded is not None and recorded.get("decision"):
        return False
    due = checks.due_at(canary.analysis, recorded, parse_time(prev.get("stepStartTime")))
    return due is not None and now >= due


def _rolled_back(uri: str, step: int, recorded: dict, ever_ready: bool) -> CanaryPlan:
    why = (f"canary {uri} rolled back after {recorded.get('failed')} failed analyses, last: "
           f"{checks.failed_checks(recorded)}; the stable serves all traffic until the canary's model or runtime "
           "changes, or promote or abort is set")
    return CanaryPlan(status={"modelUri": uri, "step": step, "phase": "RolledBack", "everReady": ever_ready,
                              "analysis": recorded},
                      blocked=("CanaryRolledBack", why))


def _count(analysis: CanaryAnalysis, canary: Canary, uri: str, recorded: dict | None, measured: list[dict],
           now: datetime) -> tuple[dict, list[Event]]:
    """status.canary.analysis with one more interval, and the events it deserves; a rollback is decided here."""
    recorded = checks.fold(recorded, checks.canary_digest(canary), measured, now)
    events: list[Event] = []
    if recorded["verdict"] == checks.FAILED:
        if recorded["failed"] > analysis.failure_limit:
            recorded["decision"] = "Rollback"
        else:
            events.append(("Warning", "AnalysisFailed",
                           f"canary {uri} failed analysis ({recorded['failed']} of failureLimit "
                           f"{analysis.failure_limit} tolerated): {checks.failed_checks(recorded)}"))
    elif recorded["consecutiveInconclusive"] == analysis.inconclusive_limit:  # said once, when the streak reaches it
        events.append(("Warning", "AnalysisInconclusive",
                       f"canary {uri}: {recorded['consecutiveInconclusive']} inconclusive analyses in a row, so it "
                       f"neither advances nor rolls back: {checks.inconclusive_checks(recorded)}"))
    return recorded, events


def _analysis_hold(analysis: CanaryAnalysis, recorded: dict | None, step: int, started: datetime,
                   ) -> tuple[str, str] | None:
    """Why the step waits for analysis (for the Progressing condition), or None when the last interval passed."""
    due = format_time(checks.due_at(analysis, recorded, started) or started)
    if recorded is None or recorded.get("verdict") == checks.SUCCESSFUL:
        if recorded is not None and checks.passed(analysis, recorded, started):
            return None
        return "AnalysisPending", f"step {step} waits for its analysis at {due}"
    if recorded["verdict"] == checks.FAILED:
        return "AnalysisFailed", (f"step {step} holds: the last analysis failed ({recorded['failed']} of failureLimit "
                                  f"{analysis.failure_limit} tolerated): {checks.failed_checks(recorded)}; "
                                  f"next analysis at {due}")
    return "AnalysisInconclusive", (f"step {step} holds: the last analysis was inconclusive "
                                    f"({recorded.get('consecutiveInconclusive')} in a row): "
                                    f"{checks.inconclusive_checks(recorded)}; next analysis at {due}")


def plan(spec: ModelDeploymentSpec, prev: dict | None, total: int, seen: CanaryObservation,
         now: datetime, measured: list[dict] | None = None) -> CanaryPlan:
    """`measured`: the check results of an analysis the reconcile ran now (analysis_due), else None."""
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
    # autoPromote's decision lives in status, not in the spec: a canary it promoted stays promoted (the spec still
    # names the canary) instead of starting over from step 0.
    auto_promoted = (prev_phase == "Promoted" and prev.get("modelUri") == uri
                     and (prev.get("analysis") or {}).get("decision") == "Promote")
    reset = not auto_promoted and (prev.get("modelUri") != uri or prev_phase in (None, "Aborted", "Promoted"))
    step = 0 if reset else min(int(prev.get("step") or 0), len(_steps(canary)) - 1)
    recorded = None if reset else _analysis_of(canary, prev)
    decision = (recorded or {}).get("decision")

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
    kept = {"analysis": recorded} if recorded is not None else {}
    if canary.promote or decision == "Promote":
        already = prev_phase == "Promoted" and prev.get("modelUri") == uri
        # Once promoted, stays promoted: a stable replica going unready later must not bring the canary back.
        if seen.stable_promoted or already:
            events = [] if already else [
                ("Normal", "CanaryPromoted", f"canary {uri} promoted: the stable now serves it")]
            return CanaryPlan(stable_from_canary=True, events=events,
                              status={"modelUri": uri, "step": int(prev.get("step") or 0), "phase": "Promoted",
                                      **kept})
        held = {"modelUri": uri, "step": step, "stepStartTime": prev.get("stepStartTime"), **counts, **kept}
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

    if decision == "Rollback" and recorded is not None:
        return _rolled_back(uri, step, recorded, ever_ready)
    if prev_phase == "RolledBack":  # its model or runtime changed since: a new canary, from step 0
        reset, step, recorded = True, 0, None
        weight = _steps(canary)[0].weight
        n_canary = canary_replicas(total, weight)
        counts = {"requestedWeight": weight, "plannedWeight": share(total, n_canary), "replicas": n_canary,
                  "everReady": seen.ready_pods > 0}

    analysis = canary.analysis
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
        if analysis is not None and measured is not None:
            recorded, found = _count(analysis, canary, uri, recorded, measured, now)
            result.checked = measured
            if recorded.get("decision") == "Rollback":
                rolled = _rolled_back(uri, step, recorded, ever_ready)
                rolled.events = [*events, ("Warning", "CanaryRolledBack", rolled.blocked[1] if rolled.blocked else "")]
                rolled.checked = measured
                return rolled
            events += found
        pause = steps[step].pause
        hold = _analysis_hold(analysis, recorded, step, started) if analysis is not None else None
        if pause is None and analysis is None:
            phase = "Paused"
            blocked = ("CanaryPaused", f"step {step} holds until spec.rollout.canary.promote is true")
        else:
            remaining = (duration_seconds(pause) if pause is not None else 0) - (now - started).total_seconds()
            if hold is not None and (remaining <= 0 or hold[0] != "AnalysisPending"):
                blocked = hold  # the condition says what analysis waits for, or what it found
            if remaining > 0:
                requeue = remaining
            elif hold is not None:
                pass
            elif step + 1 < len(steps):
                step, started = step + 1, None
                weight = steps[step].weight
                n_canary = canary_replicas(total, weight)
                counts.update(requestedWeight=weight, plannedWeight=share(total, n_canary), replicas=n_canary)
                events.append(("Normal", "CanaryStep",
                               f"canary {uri} advanced to step {step}: {weight_note(total, weight)}"))
            elif analysis is not None and analysis.auto_promote:
                # Decided once, in status: from here on the canary promotes exactly as promote: true does.
                decided = {**prev, "modelUri": uri, "step": step, "phase": "Progressing", **counts,
                           "stepStartTime": format_time(started), "analysis": {**(recorded or {}),
                                                                               "decision": "Promote"}}
                promoted = plan(spec, decided, total, seen, now)
                promoted.events = [*events, ("Normal", "CanaryAutoPromoted",
                                             f"canary {uri} passed analysis at its last step: promoting it"),
                                   *promoted.events]
                promoted.checked = result.checked
                return promoted
            else:
                phase = "Paused"
                blocked = ("CanaryPaused", "all steps done; set spec.rollout.canary.promote to true to promote")
        if analysis is not None and started is not None:
            due = checks.due_at(analysis, recorded, started)
            if due is not None:
                wait = max((due - now).total_seconds(), 1.0)
                requeue = min(requeue, wait) if requeue is not None else wait
    result.canary_replicas = n_canary
    if counts["plannedWeight"] != counts["requestedWeight"]:
        result.note = weight_note(total, counts["requestedWeight"])
    status = {"modelUri": uri, "step": step, "phase": phase, **counts}
    if started is not None:
        status["stepStartTime"] = format_time(started)
    if analysis is not None and recorded is not None:
        status["analysis"] = recorded
    result.status, result.blocked, result.requeue_after, result.events = status, blocked, requeue, events
    return result

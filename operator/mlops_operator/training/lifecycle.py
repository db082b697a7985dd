"""The TrainingJob state machine as one pure function: from the spec, the previous status and the pods in the
cache, decide the next status, the pods to create and delete, and the events. No I/O; time is passed in.

    (new) ─▶ Pending ─▶ Running ─▶ Succeeded ─▶ (promotion, once) ─▶ (ttl: workers and Service deleted)
               │  ▲        │
               │  └─ Restarting ◀─ a retryable failure (a new attempt, within backoffLimit)
               ├─▶ Failed ◀─ not retryable | backoffLimit exceeded | activeDeadlineSeconds | gangTimeout (fail)
               └─▶ Suspended ─(resume)─▶ Pending (a new attempt)

An attempt is launched in two steps so a crash between them cannot be mistaken for lost workers: a decision (new
attempt number, failure, counters) is written to the status first, with attemptStartTime unset; then the pods are
created and attemptStartTime records it. Only in a launched attempt is a missing pod a failure (PodDeleted).
`Plan.persist_first` marks decisions: the reconciler writes that status before it acts, then plans again.

The running attempt keeps the spec it started with (pods are immutable); a spec edit that changes the pods
applies from the next attempt, and the Running condition and a SpecChangeDeferred event say so. Fields that
steer the job rather than its pods (suspend, backoffLimit, activeDeadlineSeconds, ttlSecondsAfterFinished,
gangTimeout, promote) act at once.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from ..api.common import duration_seconds
from ..api.trainingjob import TrainingJobSpec
from ..k8s.conditions import ConditionStatus, condition, dig, find_condition, format_time, merge_conditions, parse_time
from ..podspec.gpu import gpu_count
from . import failures, promotion, rendezvous
from .admission import Admission
from .render import attempt_of, rank_of, world_size_of

Event = tuple[str, str, str]  # (type, reason, message)
TERMINAL = ("Succeeded", "Failed")
PROMOTION_RETRY_SECONDS = 30.0
ADMISSION_RETRY_SECONDS = 5.0  # a gang waiting for GPUs looks again this often (no watch on other pods)


@dataclasses.dataclass(frozen=True)
class Observation:
    pods: list[dict]  # the job's pods, every attempt (cache, plus pods a GET found that the cache lacked)
    gone: frozenset[int] = frozenset()  # ranks of the launched attempt whose pods are confirmed gone
    outdated: bool = False  # the running attempt's pods differ from what the current spec renders
    service: bool = False  # the headless Service exists
    model_deployment: dict | None = None  # the ModelDeployment spec.promote names, when it exists (confirmed)
    admission: Admission | None = None  # whether the gang fits the free GPUs; None: not checked (Plan.admit)


@dataclasses.dataclass
class Plan:
    status: dict
    persist_first: bool = False
    create: list[int] = dataclasses.field(default_factory=list)  # ranks of the current attempt to create
    delete: list[dict] = dataclasses.field(default_factory=list)  # pods to delete
    service: bool = True  # whether the headless Service should exist
    events: list[Event] = dataclasses.field(default_factory=list)
    requeue_after: float | None = None
    promote_patch: dict | None = None  # JSON merge patch for the ModelDeployment (then status.promotion is set)
    promote_events: list[Event] = dataclasses.field(default_factory=list)  # for the ModelDeployment
    failed: tuple[str, str] | None = None  # (reason, message) of the Failed condition, when the job fails now
    admit: bool = False  # an attempt would start now: check gang admission (Observation.admission), plan again
    waiting: tuple[str, str] | None = None  # (reason, message) of a gang that waits before its pods are created

    def after(self, seconds: float | None) -> None:
        if seconds is not None:
            seconds = max(0.5, seconds)
            self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)





def _deleting(pod: dict) -> bool:
    return bool(dig(pod, "metadata", "deletionTimestamp"))


def _phase(pod: dict) -> str:
    return dig(pod, "status", "phase") or "Pending"


def _running(pod: dict) -> bool:
    return _phase(pod) == "Running" and not _deleting(pod)


def unschedulable(pods: list[dict]) -> tuple[str, str] | None:
    """(reason, the scheduler's message) for pods of the gang that no node takes, or None."""
    for pod in pods:
        if dig(pod, "spec", "nodeName") or _deleting(pod):
            continue
        for cond in dig(pod, "status", "conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                reason = cond.get("reason") or "Unschedulable"
                return reason, cond.get("message") or "the scheduler found no node for the worker"
    return None


def _span(pod: dict) -> tuple[str, str | None] | None:
    """When a worker ran, from its containers: (start, end); end None while it runs, "" where the time is
    unknown. None: it never started."""
    starts, ends, running = [], [], False
    for cs in dig(pod, "status", "containerStatuses") or []:
        state = cs.get("state") or {}
        if "running" in state:
            running = True
            starts.append(state["running"].get("startedAt") or "")
        elif "terminated" in state:
            starts.append(state["terminated"].get("startedAt") or "")
            ends.append(state["terminated"].get("finishedAt") or "")
    if not starts:
        if _phase(pod) in ("Running", *TERMINAL):  # a status without container states: it ran, times unknown
            return "", None if _phase(pod) == "Running" else ""
        return None
    return min(starts), None if running or not ends else max(ends)


def apart(pods: list[dict], world: int) -> tuple[int, str] | None:
    """(the first worker that ended, why) when the workers of one attempt did not all run at the same time;
    None when they did, or still may."""
    by_rank = {rank_of(p): p for p in pods}
    spans = {rank: _span(by_rank[rank]) if rank in by_rank else None for rank in range(world)}
    ended = {rank: span[1] for rank, span in spans.items() if span is not None and span[1] is not None}
    if not ended:
        return None
    never = [rank for rank, span in spans.items() if span is None]
    first, end = min(ended.items(), key=lambda item: (item[1], item[0]))
    if never:
        return first, f"worker {first} ended while worker{'s' if len(never) > 1 else ''} " \
                      f"{', '.join(map(str, never))} never started"
    late = [rank for rank, span in spans.items() if span is not None and span[0] and end and span[0] > end]
    if late:
        return first, f"worker {first} ended (at {end}) before worker{'s' if len(late) > 1 else ''} " \
                      f"{', '.join(map(str, late))} started"
    return None


def counts(pods: list[dict], gone: int = 0) -> dict[str, int]:
    return {"active": sum(1 for p in pods if _phase(p) not in TERMINAL and not _deleting(p)),
            "succeeded": sum(1 for p in pods if _phase(p) == "Succeeded"),
            "failed": sum(1 for p in pods if _phase(p) == "Failed") + gone}


def gpus_text(spec: TrainingJobSpec) -> str:
    gpu = spec.resources.gpu
    if gpu is None or not gpu.count:
        return f"{spec.workers} workers (no GPUs)"
    return f"{spec.workers} workers x {gpu.count} {gpu.resource}"


def output_uri(pods: list[dict], spec: TrainingJobSpec) -> str | None:
    """Where the finished attempt wrote its model: the OUTPUT_MODEL_URI its workers had (the spec may have
    changed since), else the spec's."""
    for pod in sorted(pods, key=lambda p: rank_of(p) or 0):
        for container in dig(pod, "spec", "containers") or []:
            for var in container.get("env") or []:
                if var.get("name") == "OUTPUT_MODEL_URI" and var.get("value"):
                    uri: str = var["value"]
                    return uri
    return spec.output.model_uri if spec.output else None


# --------------------------------------------------------------------------------------------------- decide

def decide(body: dict, spec: TrainingJobSpec, obs: Observation, now: datetime) -> Plan:
    old = body.get("status") or {}
    st: dict[str, Any] = {k: v for k, v in old.items() if k not in ("conditions", "observedGeneration")}
    attempt = old.get("attempt") or 0
    phase = old.get("phase")
    current = [p for p in obs.pods if attempt_of(p) == attempt]
    others = [p for p in obs.pods if attempt_of(p) != attempt and not _deleting(p)]
    plan = Plan(status=st)

    if phase in TERMINAL:
        _finished(plan, body, spec, obs, current, others, now)
    elif spec.suspend:
        _suspend(plan, spec, obs, phase, attempt, now)
    elif _deadline_passed(spec, old, now):
        _fail(plan, current, others, "DeadlineExceeded",
              f"activeDeadlineSeconds {spec.active_deadline_seconds} passed (counted from {old.get('startTime')})",
              attempt, now)
    elif attempt == 0 or phase == "Suspended":
        _new_attempt(plan, obs, attempt + 1, now, phase="Pending", reset_start=True)
        if phase == "Suspended":
            plan.events.append(("Normal", "Resumed", f"resumed: attempt {attempt + 1} starts"))
    elif not old.get("attemptStartTime"):
        _launch(plan, spec, obs, current, others, attempt, now)
    else:
        _observe(plan, body, spec, obs, current, others, attempt, now)

    if (st.get("phase") not in TERMINAL and not spec.suspend and spec.active_deadline_seconds
            and (started := parse_time(st.get("startTime"))) is not None):
        plan.after((started + timedelta(seconds=spec.active_deadline_seconds) - now)
                   .total_seconds())
    _finish_status(plan, body, spec, obs, old, now)
    return plan


def _deadline_passed(spec: TrainingJobSpec, old: dict, now: datetime) -> bool:
    start = parse_time(old.get("startTime"))
    return bool(spec.active_deadline_seconds and start
                and now >= start + timedelta(seconds=spec.active_deadline_seconds))


def _new_attempt(plan: Plan, obs: Observation, attempt: int, now: datetime, *, phase: str,
                 reset_start: bool = False, not_before: datetime | None = None) -> None:
    st = plan.status
    st.update(phase=phase, attempt=attempt, attemptStartTime=None,
              nextAttemptTime=format_time(not_before) if not_before else None,
              workers={"active": 0, "succeeded": 0, "failed": 0})
    if reset_start:
        st["startTime"] = format_time(now)
    plan.persist_first = True
    plan.delete = [p for p in obs.pods if not _deleting(p)]


def _fail(plan: Plan, current: list[dict], others: list[dict], reason: str, message: str, attempt: int,
          now: datetime, failure: dict | None = None) -> None:
    st = plan.status
    plan.failed = (reason, message)
    st.update(phase="Failed", completionTime=format_time(now),
              failure=failure or {"reason": reason, "message": message, "retryable": False, "counted": False,
                                  "attempt": attempt or None})
    st["workers"] = counts(current)
    st["workers"]["active"] = 0
    plan.persist_first = True
    # Release what the gang holds; failed and finished pods stay (their logs) until ttlSecondsAfterFinished.
    plan.delete = others + [p for p in current if _phase(p) not in TERMINAL and not _deleting(p)]
    plan.events.append(("Warning", reason, message))


def _suspend(plan: Plan, spec: TrainingJobSpec, obs: Observation, phase: str | None, attempt: int,
             now: datetime) -> None:
    live = [p for p in obs.pods if not _deleting(p)]
    plan.delete = live
    plan.status["workers"] = {"active": 0, "succeeded": 0, "failed": 0}
    if phase != "Suspended":
        plan.status.update(phase="Suspended", attemptStartTime=None, nextAttemptTime=None)
        plan.persist_first = True
        stopped = sum(1 for p in live if _phase(p) not in TERMINAL)
        plan.events.append(("Normal", "Suspended", f"suspended: stopped {stopped} workers of attempt {attempt}; "
                                                   "resuming starts a new attempt" if attempt else
                                                   "created suspended: no worker starts until spec.suspend is false"))


def _launch(plan: Plan, spec: TrainingJobSpec, obs: Observation, current: list[dict], others: list[dict],
            attempt: int, now: datetime) -> None:
    st = plan.status
    plan.delete = others
    not_before = parse_time(st.get("nextAttemptTime"))
    if not_before and now < not_before:
        plan.after((not_before - now).total_seconds())
        return
    # With a queueName Kueue admits the gang; with some of its pods created it was admitted already.
    if gpu_count(spec.resources) and not spec.queue_name and not current:
        if obs.admission is None:
            plan.admit = True
            return
        if not obs.admission.fits:
            plan.waiting = ("InsufficientGPUs", f"attempt {attempt} waits for GPUs: {obs.admission.message}")
            plan.after(ADMISSION_RETRY_SECONDS)
            return
    have = {rank_of(p) for p in current}
    plan.create = [rank for rank in range(spec.workers) if rank not in have]
    st.update(attemptStartTime=format_time(now), nextAttemptTime=None,
              workers={"active": spec.workers, "succeeded": 0, "failed": 0})
    plan.events.append(("Normal", "AttemptStarted", f"attempt {attempt} started: {gpus_text(spec)}"))
    _gang_timer(plan, spec, now, now)


def _gang_timer(plan: Plan, spec: TrainingJobSpec, started: datetime, now: datetime) -> None:
    if spec.scheduling.gang_timeout is not None:
        due = started + timedelta(seconds=duration_seconds(spec.scheduling.gang_timeout))
        if now < due:
            plan.after((due - now).total_seconds())


def _observe(plan: Plan, body: dict, spec: TrainingJobSpec, obs: Observation, current: list[dict],
             others: list[dict], attempt: int, now: datetime) -> None:
    st = plan.status
    plan.delete = list(others)
    world = world_size_of(current) or spec.workers
    by_rank = {rank_of(p): p for p in current}
    found = [failures.classify(by_rank.get(rank), rank, rendezvous.pod_name(body["metadata"]["name"], rank, attempt))
             for rank in range(world) if rank in by_rank or rank in obs.gone]
    failure = failures.primary([f for f in found if f is not None])
    st["workers"] = counts(current, gone=len(obs.gone - set(by_rank)))
    # A peer the scheduler never placed makes a failure the cluster's (e.g. a rendezvous timeout), not the code's.
    unplaced = any(rank not in by_rank or not dig(by_rank[rank], "spec", "nodeName") for rank in range(world))
    split = apart(current, world)
    if failure is None and split is not None:  # a worker finished alone: its result is not the gang's
        failure = failures.WorkerFailure(failures.GANG_INCOMPLETE, f"{split[1]}: the gang never ran together",
                                         split[0], gang_incomplete=unplaced)
    elif failure is not None and unplaced and failure.counted:
        failure = dataclasses.replace(failure, gang_incomplete=True)

    if failure is not None:
        _worker_failed(plan, spec, obs, current, others, failure, attempt, now)
        return
    if len(current) >= world and all(_phase(p) == "Succeeded" for p in current):
        uri = output_uri(current, spec)
        st.update(phase="Succeeded", completionTime=format_time(now), modelUri=uri)
        plan.persist_first = True
        plan.events.append(("Normal", "Succeeded", f"all {world} workers succeeded in attempt {attempt}"
                                                   + (f"; model at {uri}" if uri else "")))
        return

    started = parse_time(st.get("attemptStartTime")) or now
    waiting = unschedulable(current)
    gated = waiting is not None and waiting[0] == "SchedulingGated"
    if waiting and not gated and spec.scheduling.gang_timeout is not None:
        limit = duration_seconds(spec.scheduling.gang_timeout)
        if now >= started + timedelta(seconds=limit):
            _gang_timeout(plan, spec, obs, current, others, waiting, attempt, limit, now)
            return
        _gang_timer(plan, spec, started, now)
    if len(current) >= world and all(_running(p) or _phase(p) == "Succeeded" for p in current):
        st["phase"] = "Running"  # every worker ran together (apart() is None): some may have finished
    elif st.get("phase") != "Restarting":
        st["phase"] = "Pending"


def _worker_failed(plan: Plan, spec: TrainingJobSpec, obs: Observation, current: list[dict], others: list[dict],
                   failure: failures.WorkerFailure, attempt: int, now: datetime) -> None:
    st = plan.status
    retries = (st.get("retries") or 0) + (1 if failure.counted else 0)
    record = failure.to_status(attempt)
    used = f"{retries}/{spec.backoff_limit} retries used"
    if not failure.retryable:
        plan.events.append(("Warning", "WorkerFailed", f"{failure.message} (not retryable)"))
        _fail(plan, current, others, failure.reason, f"attempt {attempt} failed, not retryable: {failure.message}",
              attempt, now, record)
    elif failure.counted and retries > spec.backoff_limit:
        plan.events.append(("Warning", "WorkerFailed", f"{failure.message} (retryable; backoffLimit "
                                                       f"{spec.backoff_limit} exhausted)"))
        st["retries"] = retries
        _fail(plan, current, others, "BackoffLimitExceeded",
              f"attempt {attempt} failed and backoffLimit {spec.backoff_limit} is exhausted: {failure.message}",
              attempt, now, record)
    else:
        how = "counted against backoffLimit" if failure.counted else "not counted against backoffLimit" + (
            " as a peer was never placed on a node" if failure.gang_incomplete else "")
        plan.events.append(("Warning", "WorkerFailed", f"{failure.message} (retryable, {how}: {used}); "
                                                       f"restarting the gang as attempt {attempt + 1}"))
        st.update(retries=retries, failure=record)
        _new_attempt(plan, obs, attempt + 1, now, phase="Restarting")


def _gang_timeout(plan: Plan, spec: TrainingJobSpec, obs: Observation, current: list[dict], others: list[dict],
                  waiting: tuple[str, str], attempt: int, limit: int, now: datetime) -> None:
    placed = sum(1 for p in current if dig(p, "spec", "nodeName"))
    message = (f"{len(current) - placed} of {len(current)} workers not scheduled after gangTimeout {limit}s; "
               f"released the {placed} placed: {waiting[1]}")
    if spec.scheduling.gang_timeout_action == "fail":
        _fail(plan, current, others, "GangTimeout", message, attempt, now)
        return
    retry_at = now + timedelta(seconds=limit)
    plan.status["failure"] = {"reason": "GangTimeout", "message": message, "retryable": True, "counted": False,
                              "attempt": attempt}
    plan.events.append(("Warning", "GangTimeout", f"{message}; attempt {attempt + 1} starts at "
                                                  f"{format_time(retry_at)}"))
    _new_attempt(plan, obs, attempt + 1, now, phase="Pending", not_before=retry_at)


def _finished(plan: Plan, body: dict, spec: TrainingJobSpec, obs: Observation, current: list[dict],
              others: list[dict], now: datetime) -> None:
    st = plan.status
    plan.delete = others + [p for p in current if _phase(p) not in TERMINAL and not _deleting(p)]
    done = parse_time(st.get("completionTime")) or now
    if spec.ttl_seconds_after_finished is not None:
        expiry = done + timedelta(seconds=spec.ttl_seconds_after_finished)
        if now >= expiry:
            live = [p for p in obs.pods if not _deleting(p)]
            plan.delete, plan.service = live, False
            if live or obs.service:
                plan.events.append(("Normal", "CleanedUp", f"ttlSecondsAfterFinished {spec.ttl_seconds_after_finished}"
                                                           " passed: deleted the workers and the Service"))
        else:
            plan.after((expiry - now).total_seconds())
    if st.get("phase") == "Succeeded" and spec.promote is not None and not st.get("promotion"):
        _promote(plan, body, spec, obs, now)


def _promote(plan: Plan, body: dict, spec: TrainingJobSpec, obs: Observation, now: datetime) -> None:
    assert spec.promote is not None
    st, target, as_ = plan.status, spec.promote.model_deployment.name, spec.promote.as_
    uri = st.get("modelUri")
    job = body["metadata"]["name"]
    if obs.model_deployment is None or not uri:
        plan.after(PROMOTION_RETRY_SECONDS)
        return
    field = promotion.FIELDS[as_]
    plan.promote_patch = promotion.patch(obs.model_deployment, as_, uri)
    st["promotion"] = {"modelDeployment": target, "as": as_, "modelUri": uri, "time": format_time(now)}
    plan.events.append(("Normal", "Promoted", f"set ModelDeployment {target} {field} to {uri}"))
    plan.promote_events.append(("Normal", "Promoted", f"TrainingJob {job} set {field} to {uri}"))


# --------------------------------------------------------------------------------------------------- status

def _finish_status(plan: Plan, body: dict, spec: TrainingJobSpec, obs: Observation, old: dict,
                   now: datetime) -> None:
    st = plan.status
    gen = dig(body, "metadata", "generation")
    phase = st.get("phase") or "Pending"
    attempt = st.get("attempt") or 0
    failure = st.get("failure") or {}
    pods = [p for p in obs.pods if attempt_of(p) == attempt]

    running: tuple[ConditionStatus, str, str]
    succeeded: tuple[ConditionStatus, str, str]
    failed: tuple[ConditionStatus, str, str]
    suspended: tuple[ConditionStatus, str, str]
    ready: tuple[ConditionStatus, str, str]
    if phase == "Running":
        world, up = spec_world(pods, spec), sum(1 for p in pods if _running(p))
        done = sum(1 for p in pods if _phase(p) == "Succeeded")
        running = ("True", "AllWorkersRunning", f"{up}/{world} workers running (attempt {attempt})") if not done \
            else ("True", "Finishing", f"{up}/{world} workers running, {done} finished (attempt {attempt})")
    elif phase in ("Pending", "Restarting") and plan.waiting is not None:
        running = ("False", *plan.waiting)
    elif phase in ("Pending", "Restarting"):
        running = ("False", *_waiting(st, spec, pods, phase, attempt))
    elif phase == "Suspended":
        running = ("False", "Suspended", "spec.suspend is true: no workers run")
    elif phase == "Succeeded":
        running = ("False", "Completed", f"attempt {attempt} succeeded")
    else:
        running = ("False", "Failed", "the job failed")
    launched = bool(st.get("attemptStartTime")) and phase in ("Pending", "Running", "Restarting")
    if launched and obs.outdated:
        running = (running[0], running[1], f"{running[2]}. The spec changed (generation {gen}); attempt {attempt} "
                                           "keeps the spec it started with; the change applies from the next attempt")
        if old.get("observedGeneration") != gen:
            plan.events.append(("Normal", "SpecChangeDeferred",
                                f"spec generation {gen} applies from the next attempt; attempt {attempt} keeps "
                                "running with the spec it started with"))

    if phase == "Succeeded":
        succeeded = ("True", "AllWorkersSucceeded", f"all workers succeeded in attempt {attempt}")
    elif phase == "Failed":
        succeeded = ("False", "Failed", "the job failed")
    else:
        succeeded = ("False", "InProgress", f"attempt {attempt} in progress" if attempt else "not started")
    if phase == "Failed":
        was = find_condition(old.get("conditions"), "Failed") or {}
        why = plan.failed or ((was["reason"], was.get("message", "")) if was.get("status") == "True" else
                              (failure.get("reason") or "Failed", failure.get("message") or "the job failed"))
        failed = ("True", *why)
    elif failure:
        failed = ("False", "Retrying", f"attempt {failure.get('attempt')} failed ({failure.get('reason')}), "
                                       f"retried: {failure.get('message')}")
    else:
        failed = ("False", "NoFailure", "no worker failed")
    suspended = ("True", "Suspended", "spec.suspend is true") if phase == "Suspended" else (
        "False", "NotSuspended", "spec.suspend is false")
    if phase in ("Running", "Succeeded"):
        ready = ("True", running[1] if phase == "Running" else "Succeeded", running[2] if phase == "Running"
                 else succeeded[2])
    elif phase == "Failed":
        ready = ("False", failed[1], failed[2])
    elif phase == "Restarting":
        ready = ("False", "Restarting", running[2])
    else:
        ready = ("False", running[1], running[2])

    updates: list[tuple[str, tuple[ConditionStatus, str, str]]] = [
        ("Ready", ready), ("Running", running), ("Succeeded", succeeded), ("Failed", failed), ("Suspended", suspended)]
    if spec.promote is not None:
        updates.append(("Promoted", _promoted(st, spec, obs, phase)))
    conditions = merge_conditions(old.get("conditions"), [
        condition(t, s, r, m, observed_generation=gen, now=now) for t, (s, r, m) in updates])
    st["conditions"] = conditions
    st["observedGeneration"] = gen
    st["gpus"] = spec_world(pods, spec) * gpu_count(spec.resources)

    before = find_condition(old.get("conditions"), "Running")
    if running[0] == "True" and (before or {}).get("status") != "True":
        plan.events.append(("Normal", "Running", running[2]))
    if running[1] in ("Unschedulable", "InsufficientGPUs") and (before or {}).get("reason") != running[1]:
        plan.events.append(("Warning", running[1], running[2]))
    promoted_before = find_condition(old.get("conditions"), "Promoted")
    promoted_now = find_condition(conditions, "Promoted")
    if promoted_now and promoted_now["reason"] == "ModelDeploymentNotFound" and \
            (promoted_before or {}).get("reason") != "ModelDeploymentNotFound":
        plan.events.append(("Warning", "ModelDeploymentNotFound", promoted_now["message"]))


def _promoted(st: dict, spec: TrainingJobSpec, obs: Observation, phase: str) -> tuple[ConditionStatus, str, str]:
    """The Promoted condition. A missing target is reported from the first reconcile on: the job still runs
    (the ModelDeployment may be created while it trains) and promotes once the target exists."""
    assert spec.promote is not None
    name = spec.promote.model_deployment.name
    if st.get("promotion"):
        p = st["promotion"]
        return "True", "Promoted", f"ModelDeployment {p['modelDeployment']} {promotion.FIELDS[p['as']]} = " \
                                   f"{p['modelUri']}"
    if phase == "Failed":
        return "False", "JobFailed", f"the job failed: nothing to promote to ModelDeployment {name}"
    if obs.model_deployment is None:
        then = "retrying" if phase == "Succeeded" else "the job runs and promotes its model once it exists"
        return "False", "ModelDeploymentNotFound", f"ModelDeployment {name} does not exist in this namespace; {then}"
    return "False", "AwaitingSuccess", f"the model goes to ModelDeployment {name} " \
                                       f"({promotion.FIELDS[spec.promote.as_]}) when the job succeeds"


def spec_world(pods: list[dict], spec: TrainingJobSpec) -> int:
    return world_size_of(pods) or spec.workers


def _waiting(st: dict, spec: TrainingJobSpec, pods: list[dict], phase: str, attempt: int) -> tuple[str, str]:
    """Why a launched (or launching) attempt is not running yet."""
    if not st.get("attemptStartTime"):
        nxt = st.get("nextAttemptTime")
        if nxt:
            return "GangTimeout", f"{(st.get('failure') or {}).get('message', '')}; attempt {attempt} starts at {nxt}"
        return ("Restarting" if phase == "Restarting" else "Starting"), f"attempt {attempt}: creating the workers"
    waiting = unschedulable(pods)
    world = spec_world(pods, spec)
    running = sum(1 for p in pods if _running(p))
    if waiting is not None:
        reason, message = waiting
        if reason == "SchedulingGated":
            return "SchedulingGated", f"waiting for Kueue to admit the workers (queue {spec.queue_name}): {message}"
        placed = sum(1 for p in pods if dig(p, "spec", "nodeName"))
        return reason, f"{world - placed}/{world} workers cannot be scheduled: {message}"
    reason = "Restarting" if phase == "Restarting" else "Starting"
    return reason, f"{running}/{world} workers running (attempt {attempt})"


def invalid_config(body: dict, spec: TrainingJobSpec, obs: Observation, message: str, now: datetime,
                   refused: str = "a worker pod") -> Plan:
    """The API server refused a child (422/400; `refused` says which): the spec cannot produce a valid worker pod or
    Service, so no attempt can succeed. Fails the job (reason InvalidConfig, not retryable) and releases the
    workers already created."""
    old = body.get("status") or {}
    plan = Plan(status={k: v for k, v in old.items() if k not in ("conditions", "observedGeneration")})
    attempt = old.get("attempt") or 0
    current = [p for p in obs.pods if attempt_of(p) == attempt]
    others = [p for p in obs.pods if attempt_of(p) != attempt and not _deleting(p)]
    text = f"the API server refused {refused} of attempt {attempt}: {message}"
    _fail(plan, current, others, "InvalidConfig", text, attempt, now,
          {"reason": "InvalidConfig", "message": text, "retryable": False, "counted": False, "attempt": attempt})
    _finish_status(plan, body, spec, obs, old, now)
    return plan

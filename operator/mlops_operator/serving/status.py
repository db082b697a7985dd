"""ModelDeployment status from the real objects: Deployments and pods. Pure: no I/O, time passed in.

Ready is True only when every stable replica of the current template is Ready. When pods cannot start, the
reason and message are the pods' own: Unschedulable with the scheduler's words, ImagePullBackOff, ErrImagePull,
CrashLoopBackOff, OOMKilled, Evicted, ModelFetchFailed (the storage init container failed).

What serves is read from the pods: status.stable.modelUri is the model of the Ready stable pods (the MODEL
column), never the spec's wish. Events come from transitions between the status the reconcile read and the one
it computes; the reconcile posts them only once that status is written (see reconcile.py).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from ..k8s.conditions import ConditionStatus, condition, dig, find_condition, merge_conditions
from ..k8s.diff import contains
from .canary import CanaryObservation, CanaryPlan
from .render import MODEL_URI_ANNOTATION, TRACK

WAITING_REASONS = ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName",
                   "CreateContainerConfigError", "CreateContainerError", "RunContainerError")
# When pods disagree, the most common reason wins; ties go to the one a person should see first.
SEVERITY = ("OOMKilled", "CrashLoopBackOff", "ModelFetchFailed", "ImagePullBackOff", "ErrImagePull",
            "InvalidImageName", "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
            "Unschedulable", "Evicted", "Restarting")
Event = tuple[str, str, str]


def pod_ready(pod: dict) -> bool:
    if dig(pod, "metadata", "deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in dig(pod, "status", "conditions", default=[]) or [])


def serving_model(pods: list[dict]) -> str | None:
    """The model most Ready pods serve (from their model annotation), or None when none is Ready."""
    served = Counter(dig(p, "metadata", "annotations", MODEL_URI_ANNOTATION) for p in pods if pod_ready(p))
    served.pop(None, None)
    return max(served, key=lambda uri: (served[uri], uri)) if served else None


def pod_problem(pod: dict) -> tuple[str, str] | None:
    """Why this pod cannot serve, from its own status, or None."""
    if dig(pod, "metadata", "deletionTimestamp"):
        return None
    status = pod.get("status") or {}
    name = dig(pod, "metadata", "name", default="?")
    if status.get("phase") == "Failed" and status.get("reason") == "Evicted":
        return "Evicted", f"pod {name} was evicted: {status.get('message', '')}".rstrip(": ")
    for cond in status.get("conditions") or []:
        if (cond.get("type") == "PodScheduled" and cond.get("status") == "False"
                and cond.get("reason") == "Unschedulable"):
            return "Unschedulable", cond.get("message") or "the scheduler found no node for the pod"
    for kind, statuses in (("init container", status.get("initContainerStatuses")),
                           ("container", status.get("containerStatuses"))):
        for cs in statuses or []:
            cname = cs.get("name")
            term = dig(cs, "state", "terminated") or {}
            last = dig(cs, "lastState", "terminated") or {}
            if "OOMKilled" in (term.get("reason"), last.get("reason")):
                return "OOMKilled", (f"{kind} {cname} of pod {name} was killed for using more memory than its "
                                     "limit (OOMKilled); raise spec.resources.memory")
            waiting = dig(cs, "state", "waiting") or {}
            if (kind == "init container" and cname == "fetch-model" and waiting.get("reason") == "CrashLoopBackOff"
                    and last.get("exitCode", 0) != 0):
                # Pods of a Deployment restart a failed init container: between runs the fetcher waits in
                # CrashLoopBackOff, and its failed run (lastState) is the real reason.
                term, waiting = last, {}
            if waiting.get("reason") in WAITING_REASONS:
                detail = waiting.get("message") or (f"last exit code {last['exitCode']}" if "exitCode" in last else "")
                return waiting["reason"], f"{kind} {cname} of pod {name}: {waiting['reason']}" + (
                    f": {detail}" if detail else "")
            if kind == "init container" and term.get("exitCode", 0) != 0:
                reason = "ModelFetchFailed" if cname == "fetch-model" else "InitContainerFailed"
                return reason, (f"init container {cname} of pod {name} exited with code {term['exitCode']}: "
                                f"{term.get('message') or term.get('reason') or ''}").rstrip(": ")
    return None


def summarize(pods: list[dict]) -> tuple[str, str] | None:
    """The one reason and message that describe why these pods cannot serve."""
    problems = [p for p in (pod_problem(pod) for pod in pods) if p]
    if not problems:
        return None
    counts = Counter(reason for reason, _ in problems)
    rank = {reason: i for i, reason in enumerate(SEVERITY)}
    reason = min(counts, key=lambda r: (-counts[r], rank.get(r, len(SEVERITY))))
    message = next(m for r, m in problems if r == reason)
    live = [p for p in pods if not dig(p, "metadata", "deletionTimestamp")]
    return reason, f"{counts[reason]}/{len(live)} pods: {message}"


def restarts(pods: list[dict]) -> tuple[str, str] | None:
    for pod in pods:
        if dig(pod, "metadata", "deletionTimestamp"):
            continue
        for cs in dig(pod, "status", "containerStatuses", default=[]) or []:
            if cs.get("restartCount", 0) > 0:
                return "Restarting", (f"container {cs.get('name')} of pod {pod['metadata']['name']} restarted "
                                      f"{cs['restartCount']} times")
    return None


def track(pods: list[dict], name: str) -> list[dict]:
    return [p for p in pods if dig(p, "metadata", "labels", TRACK) == name]


def rolled_out(dep: dict | None) -> bool:
    """The Deployment's controller has seen its spec and every replica runs the current template, Ready."""
    if not dep:
        return False
    st, want = dep.get("status") or {}, dig(dep, "spec", "replicas", default=1)
    return bool(st.get("observedGeneration", 0) >= dig(dep, "metadata", "generation", default=0)
            and st.get("updatedReplicas", 0) == want and st.get("readyReplicas", 0) == want
            and st.get("replicas", 0) == want)


def observe_canary(canary_dep: dict | None, pods: list[dict], stable_dep: dict | None,
                   promoted_template: dict | None) -> CanaryObservation:
    """`promoted_template` is the stable pod template the canary's promotion asks for (render.promoted_template):
    the stable has taken the promotion when it runs all of it (image, model, resources, arguments), rolled out."""
    canary_pods = track(pods, "canary")
    problem = summarize(canary_pods) or restarts(canary_pods)
    stable_promoted = (promoted_template is not None and rolled_out(stable_dep)
                       and contains(dig(stable_dep, "spec", "template"), promoted_template))
    canary_uri = dig(promoted_template or {}, "metadata", "annotations", MODEL_URI_ANNOTATION)
    ready_pods = sum(1 for p in canary_pods
                     if pod_ready(p) and dig(p, "metadata", "annotations", MODEL_URI_ANNOTATION) == canary_uri)
    return CanaryObservation(ready=rolled_out(canary_dep) and problem is None, problem=problem,
                             stable_promoted=stable_promoted, ready_pods=ready_pods,
                             replicas=dig(canary_dep, "spec", "replicas", default=0) if canary_dep else 0)


def _family(reason: str | None) -> str | None:
    """The kubelet alternates ErrImagePull and ImagePullBackOff on every retry: one story, one event."""
    if reason and reason.endswith("ErrImagePull"):  # also CanaryErrImagePull
        return reason.removesuffix("ErrImagePull") + "ImagePullBackOff"
    return reason


def compute(body: dict, stable: dict | None, canary: dict | None, pods: list[dict], plan: CanaryPlan,
            url: str, now: datetime, warnings: list[str] | None = None) -> tuple[dict, list[Event]]:
    """The new status and the events its transitions deserve. `warnings`: accepted values probably not meant."""
    gen = dig(body, "metadata", "generation")
    old = body.get("status") or {}
    deps = [d for d in (stable, canary) if d]
    replicas = sum(dig(d, "status", "replicas", default=0) for d in deps)
    ready = sum(dig(d, "status", "readyReplicas", default=0) for d in deps)
    stable_ready = dig(stable, "status", "readyReplicas", default=0) if stable else 0
    want = dig(stable, "spec", "replicas", default=0) if stable else None
    problem = summarize(track(pods, "stable"))

    ready_c: tuple[ConditionStatus, str, str]
    available: tuple[ConditionStatus, str, str]
    progressing: tuple[ConditionStatus, str, str]
    if stable is None:
        ready_c = ("False", "Creating", "the stable Deployment is being created")
    elif want == 0:
        ready_c = ("False", "ScaledToZero", "spec.replicas is 0: nothing serves")
    elif rolled_out(stable):
        ready_c = ("True", "AllReplicasReady", f"{want}/{want} replicas ready")
    elif problem:
        ready_c = ("False", *problem)
    else:
        ready_c = ("False", "RollingOut", f"{stable_ready}/{want} replicas ready")

    if stable_ready > 0:
        available = ("True", "MinimumReplicasAvailable", f"{stable_ready} ready replicas serve {url}")
    elif problem:
        available = ("False", *problem)
    else:
        available = ("False", "NoReplicasReady", "no ready replica serves yet")

    canary_phase = (plan.status or {}).get("phase")
    if plan.status is not None and (plan.deploy or plan.blocked is not None):  # blocked: a rolled-back canary
        # The condition follows the phase, so the two never disagree.
        reason, message = plan.blocked or ("CanaryProgressing", f"canary step {plan.status['step']} in progress")
        if plan.note:
            message = f"{message}; {plan.note}"
        progressing = ("True" if canary_phase == "Progressing" else "False", reason, message)
    elif stable is None:
        progressing = ("True", "Creating", "the stable Deployment is being created")
    elif not rolled_out(stable):
        progressing = ("True", "RollingOut", f"{dig(stable, 'status', 'updatedReplicas', default=0)}/{want} "
                                             "replicas updated")
    else:
        progressing = ("False", "RolloutComplete", "nothing to roll out")

    conditions = merge_conditions(old.get("conditions"), [
        condition(t, s, r, m, observed_generation=gen, now=now)
        for t, (s, r, m) in (("Ready", ready_c), ("Available", available), ("Progressing", progressing))])
    status: dict[str, Any] = {
        "observedGeneration": gen,
        "url": url,
        "replicas": replicas,
        "readyReplicas": ready,
        "stable": {"modelUri": serving_model(track(pods, "stable")),
                   "revision": dig(stable, "metadata", "annotations", "deployment.kubernetes.io/revision")}
        if stable else None,
        "canary": None,
        "conditions": conditions,
        "warnings": list(warnings) if warnings else None,
    }
    if plan.status is not None:
        canary_ready = dig(canary, "status", "readyReplicas", default=0) if canary else 0
        serving = stable_ready + canary_ready
        weight = round(100 * canary_ready / serving) if serving else 0
        status["canary"] = {**plan.status, "weight": weight}
    events = list(plan.events)
    if canary_phase == "Failed" and plan.blocked:
        was = find_condition(old.get("conditions"), "Progressing") or {}
        if (was.get("status"), _family(was.get("reason"))) != ("False", _family(plan.blocked[0])):
            events.append(("Warning", *plan.blocked))
    if warnings and list(warnings) != old.get("warnings"):
        events.append(("Warning", "SuspiciousValue", "; ".join(warnings)))
    before = find_condition(old.get("conditions"), "Ready")
    if before is None or (before.get("status"), _family(before.get("reason"))) != (ready_c[0], _family(ready_c[1])):
        if ready_c[0] == "True":
            served = status["stable"]["modelUri"] or "the stable model"
            events.append(("Normal", "Ready", f"{ready_c[2]}, serving {served}"))
        elif ready_c[1] not in ("Creating", "RollingOut"):
            events.append(("Warning", ready_c[1], ready_c[2]))
    return status, events

"""What the operator does about a DriftMonitor's results, as a pure function of its status, spec and the time.

The runner writes `status.lastRun` (on success) and `status.lastAttempt`; this derives the conditions and, once
per new result (`status.actedOn` remembers which), the actions: a Warning event, an Alertmanager alert (and its
resolution when drift ends), and a retraining TrainingJob unless the cooldown or the daily cap forbids it. The
retraining's name comes from the result's time, so a retried reconcile cannot create two.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from ..api.common import duration_seconds
from ..api.driftmonitor import DRIFT_MONITOR, DriftMonitorSpec
from ..k8s.conditions import condition, find_condition, format_time, merge_conditions, parse_time
from ..k8s.labels import labels
from ..k8s.ownership import owner_reference
from ..training import rendezvous

Event = tuple[str, str, str]
ALERT_NAME = "ModelDriftDetected"
KEEP_RETRAINS = 20


@dataclasses.dataclass
class Reaction:
    status: dict[str, Any]
    events: list[Event] = dataclasses.field(default_factory=list)
    alert: dict | None = None  # one Alertmanager v2 alert (firing, or resolved with endsAt)
    retrain: dict | None = None  # a TrainingJob to create




def drift_summary(last_run: dict) -> str:
    features = last_run.get("features") or []
    drifted = [f["name"] for f in features if f.get("drifted")]
    shown = ", ".join(drifted[:10]) + (f" and {len(drifted) - 10} more" if len(drifted) > 10 else "")
    return (f"{len(drifted)}/{len(features)} features drifted (share {last_run.get('driftShare', 0):.2f})"
            + (f": {shown}" if drifted else ""))


def alert(body: dict, spec: DriftMonitorSpec, last_run: dict, resolved_at: datetime | None) -> dict:
    meta = body["metadata"]
    out = {
        "labels": {"alertname": ALERT_NAME, "severity": "warning", "namespace": meta["namespace"],
                   "driftmonitor": meta["name"], "modeldeployment": spec.model_deployment.name},
        "annotations": {"summary": f"Data drift on ModelDeployment {spec.model_deployment.name}",
                        "description": drift_summary(last_run)},
        "startsAt": last_run["time"],
    }
    if resolved_at is not None:
        out["endsAt"] = format_time(resolved_at)
    return out


def retrain_name(dm_name: str, run_time: str) -> str:
    return f"{dm_name}-retrain-{int(parse_time(run_time).timestamp())}"


def retrain_name_errors(dm_name: str, workers: int) -> list[str]:
    """A monitor that retrains must leave room in its name for the TrainingJobs it names after itself, checked
    when it is applied rather than when drift first comes."""
    problem = rendezvous.name_problem(f"{dm_name}-retrain-{10 ** 9}", workers)  # 10 digits until the year 2286
    if problem is None:
        return []
    return [f"metadata.name: {dm_name!r} is too long for spec.actions.retrain, whose TrainingJobs are named "
            f"<name>-retrain-<unix time>: {problem}"]


def training_job(body: dict, spec: DriftMonitorSpec, name: str, last_run: dict) -> dict:
    meta = body["metadata"]
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": name, "namespace": meta["namespace"],
                         "labels": labels(DRIFT_MONITOR.kind, meta["name"], "retrain"),
                         "annotations": {"mlops.dev/drift": drift_summary(last_run)[:1000]},
                         "ownerReferences": [owner_reference(body)]},
            "spec": spec.actions.retrain.template.to_dict()}


def _retrain_decision(body: dict, spec: DriftMonitorSpec, last_run: dict, retrains: list[dict],
                      now: datetime) -> tuple[dict | None, Event]:
    policy = spec.actions.retrain
    times = sorted(parse_time(r["time"]) for r in retrains)
    cooldown = timedelta(seconds=duration_seconds(policy.cooldown))
    if times and now - times[-1] < cooldown:
        return None, ("Normal", "RetrainSkipped",
                      f"drift again, but the last retraining ({format_time(times[-1])}) is within the cooldown "
                      f"of {policy.cooldown}")
    recent = [t for t in times if now - t < timedelta(days=1)]
    if len(recent) >= policy.max_per_day:
        return None, ("Normal", "RetrainSkipped", f"drift again, but maxPerDay ({policy.max_per_day}) "
                                                  "retrainings ran in the last 24 hours")
    name = retrain_name(body["metadata"]["name"], last_run["time"])
    return training_job(body, spec, name, last_run), ("Normal", "RetrainStarted",
                                                      f"created TrainingJob {name} to retrain on drift")


def react(body: dict, spec: DriftMonitorSpec, schedule: str, now: datetime) -> Reaction:
    old = body.get("status") or {}
    gen = body["metadata"].get("generation")
    last_run, attempt = old.get("lastRun"), old.get("lastAttempt")

    if attempt is None:
        ready = ("False", "AwaitingFirstCheck", f"no check has run yet; they run on the schedule {schedule!r}")
    elif attempt.get("succeeded"):
        ready = ("True", "CheckSucceeded", f"the check at {attempt.get('time')} succeeded")
    else:
        ready = ("False", attempt.get("reason") or "CheckFailed", attempt.get("message") or "the check failed")
    if last_run is None:
        drift = ("Unknown", "NoResult", "no check has succeeded yet")
    elif last_run.get("datasetDrift"):
        drift = ("True", "DatasetDrift", drift_summary(last_run))
    else:
        drift = ("False", "NoDrift", drift_summary(last_run))

    before = find_condition(old.get("conditions"), "DriftDetected")
    status: dict[str, Any] = {
        **old, "observedGeneration": gen,
        "conditions": merge_conditions(old.get("conditions"), [
            condition("Ready", ready[0], ready[1], ready[2], observed_generation=gen, now=now),
            condition("DriftDetected", drift[0], drift[1], drift[2], observed_generation=gen, now=now)]),
    }
    result = Reaction(status=status)
    if ready[0] == "False" and attempt is not None:
        prev_ready = find_condition(old.get("conditions"), "Ready")
        if prev_ready is None or (prev_ready.get("reason"), prev_ready.get("message")) != (ready[1], ready[2]):
            result.events.append(("Warning", ready[1], ready[2]))
    if last_run is None or last_run.get("time") == old.get("actedOn"):
        return result

    status["actedOn"] = last_run["time"]
    actions = spec.actions
    if last_run.get("datasetDrift"):
        result.events.append(("Warning", "DriftDetected", drift_summary(last_run)))
        if actions and actions.alert and actions.alert.alertmanager:
            result.alert = alert(body, spec, last_run, None)
        if actions and actions.retrain:
            job, event = _retrain_decision(body, spec, last_run, old.get("retrains") or [], now)
            result.events.append(event)
            if job is not None:
                result.retrain = job
                status["retrains"] = ((old.get("retrains") or []) + [
                    {"trainingJob": job["metadata"]["name"], "time": format_time(now)}])[-KEEP_RETRAINS:]
    elif before is not None and before.get("status") == "True":
        result.events.append(("Normal", "DriftResolved", drift_summary(last_run)))
        if actions and actions.alert and actions.alert.alertmanager:
            result.alert = alert(body, spec, last_run, now)
    return result

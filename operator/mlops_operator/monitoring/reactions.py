"""What the operator does about a DriftMonitor's results, as a pure function of its status, spec and the time.

The runner writes `status.lastRun` (on success) and `status.lastAttempt`; this derives the conditions and, once
per new result (`status.actedOn` remembers which), the actions: a Warning event and a retraining TrainingJob
unless the cooldown or the daily cap forbids it. The retraining's name comes from the result's time, so a retried
reconcile cannot create two. The Alertmanager alert is level-triggered instead (`firing_alert`: posted again
while drift holds); `resolved` marks the result that ended drift.

Retraining TrainingJobs carry the monitor's label but no ownerReference: the models they trained and their
promotion record outlive the monitor (see docs/driftmonitor.md).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from ..api import driftmonitor
from ..api.common import duration_seconds
from ..api.driftmonitor import DRIFT_MONITOR, RUN_NOW_ANNOTATION, DriftMonitorSpec
from ..k8s.conditions import ConditionStatus, condition, find_condition, format_time, merge_conditions, parse_time
from ..k8s.labels import labels

Event = tuple[str, str, str]
ALERT_NAME = "ModelDriftDetected"
KEEP_RETRAINS = 20


@dataclasses.dataclass
class Reaction:
    status: dict[str, Any]
    events: list[Event] = dataclasses.field(default_factory=list)
    retrain: dict | None = None  # a TrainingJob to create
    run_now: str | None = None  # a new run-now token: start a check now
    resolved: bool = False  # this result ended drift: resolve the alert


def alarming(last_run: dict) -> bool:
    """Input drift, or a model check (quality, performance, ...) out of its bounds: both raise the alarm."""
    return bool(last_run.get("datasetDrift") or last_run.get("failedChecks"))


def drift_summary(last_run: dict) -> str:
    features = last_run.get("features") or []
    drifted = [f["name"] for f in features if f.get("drifted")]
    shown = ", ".join(drifted[:10]) + (f" and {len(drifted) - 10} more" if len(drifted) > 10 else "")
    failed = last_run.get("failedChecks") or []
    return (f"{len(drifted)}/{len(features)} features drifted (share {last_run.get('driftShare', 0):.2f})"
            + (f": {shown}" if drifted else "") + (f"; model checks failed: {', '.join(failed)}" if failed else ""))


def alert(body: dict, spec: DriftMonitorSpec, last_run: dict) -> dict:
    """The Alertmanager v2 alert of this monitor's drift, without endsAt (the poster sets it)."""
    meta = body["metadata"]
    return {
        "labels": {"alertname": ALERT_NAME, "severity": "warning", "namespace": meta["namespace"],
                   "driftmonitor": meta["name"], "modeldeployment": spec.model_deployment.name},
        "annotations": {"summary": f"Data drift on ModelDeployment {spec.model_deployment.name}",
                        "description": drift_summary(last_run)},
        "startsAt": last_run["time"],
    }


def firing_alert(body: dict, spec: DriftMonitorSpec, status: dict) -> tuple[str, dict] | None:
    """(Alertmanager URL, alert) while the last result says drift and the spec asks for alerts, else None."""
    actions, last_run = spec.actions, status.get("lastRun") or {}
    if not (actions and actions.alert and actions.alert.alertmanager and alarming(last_run)):
        return None
    return actions.alert.alertmanager.url, alert(body, spec, last_run)


def alert_url(spec: DriftMonitorSpec) -> str | None:
    actions = spec.actions
    return actions.alert.alertmanager.url if actions and actions.alert and actions.alert.alertmanager else None


def share_percent(last_run: dict | None) -> str | None:
    share = (last_run or {}).get("driftShare")
    return None if share is None else f"{round(share * 100)}%"


def _time(value: str) -> datetime:
    """A time the operator wrote itself (a run's or a retraining's), so never empty."""
    when = parse_time(value)
    assert when is not None, f"not a time: {value!r}"
    return when


def retrain_name(dm_name: str, run_time: str) -> str:
    return driftmonitor.retrain_name(dm_name, int(_time(run_time).timestamp()))


def own_output(uri: str, job: str) -> str:
    """A retraining's own destination under the template's: a folder gets the job's folder (`s3://m/fraud/` ->
    `s3://m/fraud/<job>/`); a URI naming a file (its last part has an extension) gets it before the file
    (`s3://m/fraud/model.joblib` -> `s3://m/fraud/<job>/model.joblib`)."""
    head, _, last = uri.rstrip("/").rpartition("/")
    if not uri.endswith("/") and "." in last and head and not head.endswith(":/"):
        return f"{head}/{job}/{last}"
    return uri.rstrip("/") + f"/{job}/"


def training_job(body: dict, spec: DriftMonitorSpec, name: str, last_run: dict) -> dict:
    meta = body["metadata"]
    retrain = spec.actions.retrain if spec.actions else None
    assert retrain is not None, "a retraining is made only for spec.actions.retrain"
    job_spec = retrain.template.to_dict()
    output = job_spec.get("output")
    if output:  # each retraining writes its own model: a later one never overwrites the model a canary serves
        output["modelUri"] = own_output(output["modelUri"], name)
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": name, "namespace": meta["namespace"],
                         "labels": labels(DRIFT_MONITOR.kind, meta["name"], "retrain"),
                         "annotations": {"mlops.dev/drift": drift_summary(last_run)[:1000],
                                         "mlops.dev/drift-result": last_run.get("time") or ""}},
            "spec": job_spec}


def _retrain_decision(body: dict, spec: DriftMonitorSpec, last_run: dict, retrains: list[dict],
                      now: datetime) -> tuple[dict | None, Event]:
    policy = spec.actions.retrain if spec.actions else None
    assert policy is not None, "a retraining is decided only for spec.actions.retrain"
    times = sorted(_time(r["time"]) for r in retrains)
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


def react(body: dict, spec: DriftMonitorSpec, schedule: str, now: datetime,
          source_problem: tuple[str, str] | None = None) -> Reaction:
    """`source_problem` (reason, message): why the current data cannot be read whatever the check does, e.g. the
    ModelDeployment whose prediction log it is does not exist; it makes Ready False before any check runs."""
    old = body.get("status") or {}
    gen = body["metadata"].get("generation")
    last_run, attempt = old.get("lastRun"), old.get("lastAttempt")

    ready: tuple[ConditionStatus, str, str]
    drift: tuple[ConditionStatus, str, str]
    if source_problem is not None:
        ready = ("False", *source_problem)
    elif attempt is None:
        ready = ("False", "AwaitingFirstCheck", f"no check has run yet; they run on the schedule {schedule!r}")
    elif attempt.get("succeeded"):
        ready = ("True", "CheckSucceeded", f"the check at {attempt.get('time')} succeeded")
    else:
        ready = ("False", attempt.get("reason") or "CheckFailed", attempt.get("message") or "the check failed")
    if last_run is None:
        drift = ("Unknown", "NoResult", "no check has succeeded yet")
    elif last_run.get("datasetDrift"):
        drift = ("True", "DatasetDrift", drift_summary(last_run))
    elif last_run.get("failedChecks"):
        drift = ("True", "ModelCheckFailed", drift_summary(last_run))
    else:
        drift = ("False", "NoDrift", drift_summary(last_run))

    before = find_condition(old.get("conditions"), "DriftDetected")
    status: dict[str, Any] = {
        **old, "observedGeneration": gen, "share": share_percent(last_run),
        "conditions": merge_conditions(old.get("conditions"), [
            condition("Ready", ready[0], ready[1], ready[2], observed_generation=gen, now=now),
            condition("DriftDetected", drift[0], drift[1], drift[2], observed_generation=gen, now=now)]),
    }
    result = Reaction(status=status)
    if ready[0] == "False" and ready[1] != "AwaitingFirstCheck":
        prev_ready = find_condition(old.get("conditions"), "Ready")
        if prev_ready is None or (prev_ready.get("reason"), prev_ready.get("message")) != (ready[1], ready[2]):
            result.events.append(("Warning", ready[1], ready[2]))
    token = (body["metadata"].get("annotations") or {}).get(RUN_NOW_ANNOTATION)
    if token and token != old.get("runNow"):
        status["runNow"] = result.run_now = token
        result.events.append(("Normal", "CheckRequested", f"running a check now for {RUN_NOW_ANNOTATION}={token}"))
    if last_run is None or last_run.get("time") == old.get("actedOn"):
        return result

    status["actedOn"] = last_run["time"]
    actions = spec.actions
    if alarming(last_run):
        reason = "DriftDetected" if last_run.get("datasetDrift") else "ModelCheckFailed"
        result.events.append(("Warning", reason, drift_summary(last_run)))
        if actions and actions.retrain:
            job, event = _retrain_decision(body, spec, last_run, old.get("retrains") or [], now)
            result.events.append(event)
            if job is not None:
                result.retrain = job
                status["retrains"] = ((old.get("retrains") or []) + [
                    {"trainingJob": job["metadata"]["name"], "time": format_time(now)}])[-KEEP_RETRAINS:]
    elif before is not None and before.get("status") == "True":
        result.events.append(("Normal", "DriftResolved", drift_summary(last_run)))
        result.resolved = True
    return result

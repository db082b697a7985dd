"""DriftMonitor end to end: the operator's CronJob, the drift runner run by the node simulator as a local process of
the operator's image, the reactions (condition, event, metrics, a real Alertmanager, retraining with a cooldown).
Checks are started the documented way, with the mlops.dev/run-now annotation."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kubernetes import client

from helpers import alertmanager_server, apply, request, wait_for
from mlops_operator.drift.engine import compute_drift
from mlops_operator.drift.profile import build_profile

GROUP_PATH = "/apis/mlops.dev/v1alpha1"
FEATURES = ("age", "income", "score")


def write_table(path, rng, rows: int, shift: float = 0.0, with_time: bool = False, drop: str | None = None):
    columns = {"age": rng.normal(40 + 10 * shift, 10, rows), "income": rng.lognormal(10 + shift, 0.5, rows),
               "score": rng.uniform(0 + shift, 1 + shift, rows),
               "segment": rng.choice(["a", "b", "c"], rows, p=[0.5, 0.3, 0.2])}
    if with_time:
        now = datetime.now(timezone.utc)
        columns["timestamp"] = [(now - timedelta(minutes=int(m))).strftime("%Y-%m-%dT%H:%M:%SZ")
                                for m in rng.integers(0, 120, rows)]
    if drop:
        columns.pop(drop)
    pq.write_table(pa.table(columns), path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift-data")
    rng = np.random.default_rng(7)
    return {
        "reference": write_table(root / "reference.parquet", rng, 3000),
        "shifted": write_table(root / "shifted.parquet", rng, 2000, shift=1.0, with_time=True),
        "calm": write_table(root / "calm.parquet", rng, 2000, with_time=True),
        "no_score": write_table(root / "no_score.parquet", rng, 2000, with_time=True, drop="score"),
    }


def dm_manifest(namespace: str, name: str, reference, current, alertmanager: str | None = None,
                features=FEATURES, retrain: bool = True) -> dict:
    spec = {"modelDeployment": {"name": "fraud"},
            "reference": {"uri": f"file://{reference}"},
            "current": {"uri": f"file://{current}", "window": "24h"},
            "schedule": "0 0 1 1 *",  # never within a test: its checks are the ones it asks for (run-now)
            "features": [{"name": f} for f in features]}
    actions = {}
    if alertmanager:
        actions["alert"] = {"alertmanager": {"url": alertmanager}}
    if retrain:
        actions["retrain"] = {"cooldown": "1h", "maxPerDay": 2, "template": {
            "image": "trainer:1", "command": ["python", "train.py"], "workers": 1,
            "output": {"modelUri": "s3://models/fraud/next"}}}
    if actions:
        spec["actions"] = actions
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "DriftMonitor",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def get_dm(kube, namespace: str, name: str) -> dict:
    code, body = request(kube, "GET", f"{GROUP_PATH}/namespaces/{namespace}/driftmonitors/{name}")
    assert code == 200, body
    return body


def condition(obj: dict, type_: str) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), {})


def run_check_now(kube, namespace: str, dm: str, n: int) -> None:
    """`kubectl annotate dm <dm> mlops.dev/run-now=<n> --overwrite`: the operator starts one Job per value."""
    code, body = request(kube, "PATCH", f"{GROUP_PATH}/namespaces/{namespace}/driftmonitors/{dm}",
                         body={"metadata": {"annotations": {"mlops.dev/run-now": str(n)}}},
                         content_type="application/merge-patch+json")
    assert code == 200, body


def jobs_of(kube, namespace: str, dm: str) -> list:
    code, body = request(kube, "GET", f"/apis/batch/v1/namespaces/{namespace}/jobs",
                         query={"labelSelector": f"mlops.dev/driftmonitor={dm}"})
    assert code == 200
    return body["items"]


def active_alerts(alertmanager: str, namespace: str, dm: str) -> list:
    """The alerts Alertmanager holds as firing (resolved ones are not listed)."""
    firing = json.loads(urllib.request.urlopen(f"{alertmanager}/api/v2/alerts", timeout=5).read())
    return [a for a in firing if a["labels"].get("driftmonitor") == dm and a["labels"].get("namespace") == namespace]


def wait_attempt(kube, namespace: str, name: str, after: str | None = None, timeout: float = 180) -> dict:
    def check():
        dm = get_dm(kube, namespace, name)
        attempt = (dm.get("status") or {}).get("lastAttempt")
        acted = (dm.get("status") or {}).get("actedOn")
        if attempt and attempt.get("time") != after:
            # the operator has reacted to this attempt (the conditions speak of it); the runner writes the attempt
            # first, so a failed one is seen before Ready tells of it
            if attempt["succeeded"]:
                reacted = acted == attempt["time"]
            else:
                reacted = condition(dm, "Ready").get("reason") == (attempt.get("reason") or "CheckFailed")
            if reacted:
                return dm
        return None

    return wait_for(check, timeout=timeout, message=f"a new drift check of {name}")


def training_jobs(kube, namespace: str, dm: str) -> list:
    code, body = request(kube, "GET", f"{GROUP_PATH}/namespaces/{namespace}/trainingjobs",
                         query={"labelSelector": f"mlops.dev/driftmonitor={dm}"})
    assert code == 200
    return body["items"]


@pytest.fixture
def dm_ns(namespace, operator, needs_scheduler, needs_controller_manager, needs_simulator):
    return namespace


def test_drift_is_detected_alerted_and_retrained_once_within_the_cooldown(kube, dm_ns, data, operator,
                                                                           alertmanager):
    apply(kube, dm_manifest(dm_ns, "fraud", data["reference"], data["shifted"], alertmanager))
    # The runner's least-privilege identity and its schedule.
    rbac = client.RbacAuthorizationV1Api(kube)
    role = wait_for(lambda: next((r for r in rbac.list_namespaced_role(dm_ns).items
                                  if r.metadata.name == "fraud-drift"), None), message="runner Role")
    resources = sorted((tuple(rule.resources), tuple(rule.verbs), tuple(rule.resource_names or []))
                       for rule in role.rules)
    assert resources == [(("driftmonitors",), ("get",), ("fraud",)),
                         (("driftmonitors/status",), ("get", "patch"), ("fraud",)),
                         (("modeldeployments",), ("get",), ("fraud",))]
    run_check_now(kube, dm_ns, "fraud", 1)
    dm = wait_attempt(kube, dm_ns, "fraud")
    last = dm["status"]["lastRun"]
    assert dm["status"]["lastAttempt"]["succeeded"] is True
    assert last["datasetDrift"] is True and last["rows"] == {"reference": 3000, "current": 2000}
    assert condition(dm, "DriftDetected")["status"] == "True"
    assert condition(dm, "Ready")["status"] == "True"

    # The statistics are the engine's, to the digit, on the same data.
    ref, cur = pq.read_table(data["reference"]), pq.read_table(data["shifted"])
    expected = compute_drift(build_profile({f: ref.column(f).to_numpy() for f in FEATURES}),
                             {f: cur.column(f).to_numpy() for f in FEATURES})
    by_name = {f["name"]: f for f in last["features"]}
    for feature in expected.features:
        assert by_name[feature.name]["statistic"] == pytest.approx(feature.statistic, rel=1e-12)
        assert by_name[feature.name]["drifted"] == feature.drifted

    # Metrics from the operator, an alert in a real Alertmanager, exactly one retraining.
    assert operator.metric("mlops_drift_detected", namespace=dm_ns, monitor="fraud") == 1
    assert operator.metric("mlops_drift_statistic", namespace=dm_ns, monitor="fraud", feature="age") > 0
    firing = json.loads(urllib.request.urlopen(f"{alertmanager}/api/v2/alerts", timeout=5).read())
    ours = [a for a in firing if a["labels"].get("driftmonitor") == "fraud" and a["labels"].get("namespace") == dm_ns]
    assert len(ours) == 1 and ours[0]["labels"]["alertname"] == "ModelDriftDetected"
    jobs = training_jobs(kube, dm_ns, "fraud")
    assert len(jobs) == 1  # its model goes to a folder of its own under the template's output
    assert jobs[0]["spec"]["output"]["modelUri"] == f"s3://models/fraud/next/{jobs[0]['metadata']['name']}/"
    assert dm["status"]["retrains"][0]["trainingJob"] == jobs[0]["metadata"]["name"]

    # Drift again, inside the cooldown: no second retraining, and the event says why.
    time.sleep(1.1)  # results are stamped to the second
    run_check_now(kube, dm_ns, "fraud", 2)
    wait_attempt(kube, dm_ns, "fraud", after=dm["status"]["lastAttempt"]["time"])
    assert len(training_jobs(kube, dm_ns, "fraud")) == 1

    def reasons_once_skipped():  # events are posted after the status that wait_attempt reads: wait for the last one
        reasons = [e.reason for e in client.CoreV1Api(kube).list_namespaced_event(dm_ns).items
                   if e.involved_object.name == "fraud" and e.involved_object.kind == "DriftMonitor"]
        return reasons if "RetrainSkipped" in reasons else None

    reasons = wait_for(reasons_once_skipped, timeout=30, message="the RetrainSkipped event")
    assert reasons.count("DriftDetected") == 2 and "RetrainSkipped" in reasons and reasons.count("RetrainStarted") == 1
    assert reasons.count("CheckRequested") == 2 and len(jobs_of(kube, dm_ns, "fraud")) == 2  # one per value
    assert get_dm(kube, dm_ns, "fraud")["status"]["runNow"] == "2"

    # The training history outlives the monitor: its children go with it, the retraining stays.
    code, _ = request(kube, "DELETE", f"{GROUP_PATH}/namespaces/{dm_ns}/driftmonitors/fraud")
    assert code == 200
    wait_for(lambda: request(kube, "GET", f"/apis/batch/v1beta1/namespaces/{dm_ns}/cronjobs/fraud-drift")[0] == 404
             and not jobs_of(kube, dm_ns, "fraud"), timeout=120, message="the monitor's children collected")
    assert [j["metadata"]["name"] for j in training_jobs(kube, dm_ns, "fraud")] == [jobs[0]["metadata"]["name"]]


def test_an_unshifted_window_raises_nothing(kube, dm_ns, data, operator, alertmanager):
    apply(kube, dm_manifest(dm_ns, "calm", data["reference"], data["calm"], alertmanager))
    run_check_now(kube, dm_ns, "calm", 1)
    dm = wait_attempt(kube, dm_ns, "calm")
    assert dm["status"]["lastRun"]["datasetDrift"] is False
    assert condition(dm, "DriftDetected")["status"] == "False"
    assert operator.metric("mlops_drift_detected", namespace=dm_ns, monitor="calm") == 0
    firing = json.loads(urllib.request.urlopen(f"{alertmanager}/api/v2/alerts", timeout=5).read())
    assert not [a for a in firing if a["labels"].get("driftmonitor") == "calm"]
    assert training_jobs(kube, dm_ns, "calm") == []


def test_a_missing_column_is_a_failed_check_not_an_alarm(kube, dm_ns, data, operator):
    apply(kube, dm_manifest(dm_ns, "broken", data["reference"], data["no_score"]))
    run_check_now(kube, dm_ns, "broken", 1)
    dm = wait_attempt(kube, dm_ns, "broken")
    assert condition(dm, "Ready") == {**condition(dm, "Ready"), "status": "False", "reason": "MissingColumn"}
    assert "score" in condition(dm, "Ready")["message"]
    assert "lastRun" not in dm["status"]
    assert condition(dm, "DriftDetected")["status"] == "Unknown"
    assert training_jobs(kube, dm_ns, "broken") == []


def test_an_interval_cron_cannot_express_is_an_invalid_spec(kube, dm_ns, data):
    manifest = dm_manifest(dm_ns, "odd", data["reference"], data["calm"], retrain=False)
    manifest["spec"].pop("schedule")
    manifest["spec"]["interval"] = "7m"
    apply(kube, manifest)
    dm = wait_for(lambda: (lambda d: d if condition(d, "Ready").get("reason") == "InvalidSpec" else None)(
        get_dm(kube, dm_ns, "odd")), message="InvalidSpec for interval 7m")
    assert "spec.interval" in condition(dm, "Ready")["message"]
    assert request(kube, "GET", f"/apis/batch/v1beta1/namespaces/{dm_ns}/cronjobs/odd-drift")[0] == 404


@pytest.mark.parametrize("change, field", [
    (lambda s: s.update(modelDeployment={"name": "fraud", "namespace": "elsewhere"}), "spec.modelDeployment.namespace"),
    # Schema-valid, but not a TrainingJob this operator can run: promotion to another namespace.
    (lambda s: s["actions"]["retrain"]["template"].update(promote={"modelDeployment": {
        "name": "fraud", "namespace": "elsewhere"}}),
     "spec.actions.retrain.template.promote.modelDeployment.namespace"),
])
def test_meaningless_specs_are_invalid_naming_the_field_and_create_nothing(kube, dm_ns, data, change, field):
    manifest = dm_manifest(dm_ns, "bad", data["reference"], data["calm"])
    change(manifest["spec"])
    code, body = request(kube, "POST", f"{GROUP_PATH}/namespaces/{dm_ns}/driftmonitors", body=manifest)
    assert code == 201, body  # the schema accepts it: the meaning is the operator's to check
    dm = wait_for(lambda: (lambda d: d if condition(d, "Ready").get("reason") == "InvalidSpec" else None)(
        get_dm(kube, dm_ns, "bad")), message="InvalidSpec")
    assert field in condition(dm, "Ready")["message"]
    assert request(kube, "GET", f"/api/v1/namespaces/{dm_ns}/serviceaccounts/bad-drift")[0] == 404


@pytest.fixture(scope="module")
def short_alertmanager(tmp_path_factory):
    """A real Alertmanager that resolves an alert posted without endsAt after RESOLVE_TIMEOUT seconds."""
    with alertmanager_server(tmp_path_factory.mktemp("alertmanager-short"),
                             f"global: {{resolve_timeout: {RESOLVE_TIMEOUT}s}}\n") as url:
        yield url


RESOLVE_TIMEOUT = 3


def test_an_alert_stays_firing_while_drift_holds_and_resolves_when_it_ends(kube, dm_ns, data, short_alertmanager):
    apply(kube, dm_manifest(dm_ns, "held", data["reference"], data["shifted"], short_alertmanager, retrain=False))
    run_check_now(kube, dm_ns, "held", 1)
    dm = wait_attempt(kube, dm_ns, "held")
    assert dm["status"]["lastRun"]["datasetDrift"] is True
    wait_for(lambda: active_alerts(short_alertmanager, dm_ns, "held"), message="the drift alert")
    # Well past resolve_timeout (a lower bound only): still firing, since it was posted with a later endsAt.
    time.sleep(RESOLVE_TIMEOUT * 4)
    (alert,) = active_alerts(short_alertmanager, dm_ns, "held")
    assert alert["status"]["state"] == "active"
    assert datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00")) > datetime.now(timezone.utc)

    # The data calms down: the next check ends the drift and the alert with it.
    manifest = dm_manifest(dm_ns, "held", data["reference"], data["calm"], short_alertmanager, retrain=False)
    apply(kube, manifest)
    time.sleep(1.1)  # results are stamped to the second
    run_check_now(kube, dm_ns, "held", 2)
    dm = wait_attempt(kube, dm_ns, "held", after=dm["status"]["lastAttempt"]["time"])
    assert dm["status"]["lastRun"]["datasetDrift"] is False
    wait_for(lambda: not active_alerts(short_alertmanager, dm_ns, "held"), message="the alert resolved")


def test_a_missing_or_deleted_model_deployment_is_not_ready(kube, dm_ns, data, operator):
    manifest = dm_manifest(dm_ns, "orphan", data["reference"], data["calm"], retrain=False)
    manifest["spec"]["modelDeployment"] = {"name": "gone"}
    del manifest["spec"]["current"]["uri"]  # the current data is the ModelDeployment's prediction log
    apply(kube, manifest)

    def reason_is(reason):
        def check():
            dm = get_dm(kube, dm_ns, "orphan")
            return dm if condition(dm, "Ready").get("reason") == reason else None
        return check

    # Told before any check runs, with a Warning event.
    dm = wait_for(reason_is("ModelDeploymentNotFound"), message="Ready=False ModelDeploymentNotFound")
    assert condition(dm, "Ready")["status"] == "False" and "'gone'" in condition(dm, "Ready")["message"]
    assert "lastAttempt" not in dm["status"]
    events = wait_for(lambda: [e for e in client.CoreV1Api(kube).list_namespaced_event(dm_ns).items
                               if e.involved_object.name == "orphan" and e.reason == "ModelDeploymentNotFound"],
                      timeout=30, message="the ModelDeploymentNotFound event")  # posted after the status
    assert events[0].type == "Warning"
    # The runner, run anyway, records why instead of dying with a traceback.
    run_check_now(kube, dm_ns, "orphan", 1)
    dm = wait_for(lambda: (lambda d: d if (d.get("status") or {}).get("lastAttempt") else None)(
        get_dm(kube, dm_ns, "orphan")), message="the runner's lastAttempt")
    assert dm["status"]["lastAttempt"]["reason"] == "ModelDeploymentNotFound"
    assert "'gone'" in dm["status"]["lastAttempt"]["message"]

    # The ModelDeployment appears with a prediction log: checks succeed.
    md = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
          "metadata": {"name": "gone", "namespace": dm_ns},
          "spec": {"model": {"uri": "file:///models/none.joblib"}, "runtime": {"preset": "sklearn"}, "replicas": 1,
                   "resources": {"cpu": "100m", "memory": "256Mi"},
                   "monitoring": {"predictionLog": {"uri": f"file://{data['calm']}"}}}}
    apply(kube, md)
    time.sleep(1.1)  # results are stamped to the second
    run_check_now(kube, dm_ns, "orphan", 2)
    dm = wait_for(reason_is("CheckSucceeded"), timeout=120, message="Ready=True after the ModelDeployment appeared")
    assert dm["status"]["lastRun"]["rows"]["current"] == 2000

    # kubectl delete md gone: Ready does not stay True.
    code, _ = request(kube, "DELETE", f"{GROUP_PATH}/namespaces/{dm_ns}/modeldeployments/gone")
    assert code == 200
    wait_for(reason_is("ModelDeploymentNotFound"), timeout=120, message="Ready=False after the delete")


def test_a_window_below_min_rows_is_insufficient_data_not_a_verdict(kube, dm_ns, data, operator):
    manifest = dm_manifest(dm_ns, "small", data["reference"], data["shifted"])
    manifest["spec"]["minRows"] = 5000  # the window has 2000 rows
    apply(kube, manifest)
    run_check_now(kube, dm_ns, "small", 1)
    dm = wait_attempt(kube, dm_ns, "small")
    assert (condition(dm, "Ready")["status"], condition(dm, "Ready")["reason"]) == ("False", "InsufficientData")
    assert "2000 rows" in condition(dm, "Ready")["message"]
    assert "lastRun" not in dm["status"] and condition(dm, "DriftDetected")["status"] == "Unknown"
    assert training_jobs(kube, dm_ns, "small") == []

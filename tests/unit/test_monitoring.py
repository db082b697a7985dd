"""The pure parts of the DriftMonitor: schedules, the runner's children, data windows, reactions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlops_operator import datasets as data
from mlops_operator.api import DRIFT_MONITOR, InvalidSpec, parse_spec, validate_object
from mlops_operator.monitoring import alerts, reactions, reconcile, render, runner
from mlops_operator.settings import load

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)


def spec(**over):
    base = {"modelDeployment": {"name": "fraud"}, "reference": {"uri": "s3://data/ref.parquet"},
            "schedule": "0 * * * *",
            "actions": {"alert": {"alertmanager": {"url": "http://am:9093"}},
                        "retrain": {"cooldown": "1h", "maxPerDay": 2,
                                    "template": {"image": "trainer:1", "output": {"modelUri": "s3://m/next"}}}}}
    base.update(over)
    return parse_spec(DRIFT_MONITOR, base)


def body(status=None, generation=3):
    out = {"apiVersion": "mlops.dev/v1alpha1", "kind": "DriftMonitor",
           "metadata": {"name": "fraud", "namespace": "ml", "uid": "u1", "generation": generation}}
    if status is not None:
        out["status"] = status
    return out


def run(time: str, drift: bool) -> dict:
    return {"time": time, "datasetDrift": drift, "driftShare": 1.0 if drift else 0.0,
            "rows": {"reference": 10, "current": 10},
            "features": [{"name": "age", "test": "ks", "statistic": 0.4, "pValue": 0.001, "threshold": 0.05,
                          "drifted": drift}]}


def cond(status, type_):
    return next(c for c in status["conditions"] if c["type"] == type_)


@pytest.mark.parametrize("seconds, cron", [(60, "*/1 * * * *"), (300, "*/5 * * * *"), (900, "*/15 * * * *"),
                                           (3600, "0 */1 * * *"), (21600, "0 */6 * * *"), (86400, "0 0 * * *"),
                                           (420, None), (30, None), (90, None), (5 * 3600, None), (2 * 86400, None)])
def test_intervals_become_cron_only_when_cron_can_say_them(seconds, cron):
    assert render.interval_cron(seconds) == cron


def test_the_runner_may_read_its_monitor_and_write_only_its_status():
    role = render.role(body(), spec())
    assert {(tuple(r["resources"]), tuple(r["verbs"]), tuple(r["resourceNames"])) for r in role["rules"]} == {
        (("driftmonitors",), ("get",), ("fraud",)), (("driftmonitors/status",), ("get", "patch"), ("fraud",)),
        (("modeldeployments",), ("get",), ("fraud",))}


def test_the_cron_job_runs_the_operators_image_under_the_runners_account_with_secrets_by_reference():
    s = spec(reference={"uri": "s3://data/ref.parquet", "secretRef": {"name": "s3-creds"}},
             current={"uri": "s3://data/live.parquet", "secretRef": {"name": "s3-creds"}})
    cron = render.cron_job(body(), s, "batch/v1", load())
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert cron["spec"]["schedule"] == "0 * * * *" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert pod["serviceAccountName"] == "fraud-drift" and pod["restartPolicy"] == "Never"
    container = pod["containers"][0]
    assert container["command"] == ["mlops-operator", "drift-check", "--namespace", "ml", "--name", "fraud"]
    assert container["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]  # once, though named twice
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("over, want", [
    ({}, ["log-creds"]),  # the prediction log is the current data: the agent's Secret reads it too
    ({"current": {"secretRef": {"name": "mine"}}}, ["mine"]),  # the monitor's own Secret wins
    ({"current": {"uri": "s3://data/live.parquet"}}, []),  # other current data: nothing of the ModelDeployment's
    ({"reference": {"fromModel": "reference.parquet"}}, ["model-creds", "log-creds"]),
    ({"reference": {"fromModel": "reference.parquet", "secretRef": {"name": "ref"}}}, ["ref", "log-creds"]),
])
def test_the_runner_gets_the_model_deployments_secrets_for_what_the_check_reads_of_it(over, want):
    md = {"spec": {"model": {"uri": "s3://m/v1/", "secretRef": {"name": "model-creds"}},
                   "monitoring": {"predictionLog": {"uri": "s3://logs/fraud/", "secretRef": {"name": "log-creds"}}}}}
    cron = render.cron_job(body(), spec(**over), "batch/v1", load(), md)
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert [e["secretRef"]["name"] for e in container.get("envFrom", [])] == want
    no_md = render.cron_job(body(), spec(**over), "batch/v1", load(), None)["spec"]["jobTemplate"]["spec"]
    assert "envFrom" not in no_md["template"]["spec"]["containers"][0] or over.get("current", {}).get("secretRef") \
        or over.get("reference", {}).get("secretRef")


def test_time_and_row_windows():
    times = [(NOW - timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ") for h in (30, 10, 2, 1)]
    table = pa.table({"timestamp": times, "x": [1.0, 2.0, 3.0, 4.0]})
    assert data.apply_window(table, data.Window(duration_seconds=86400), NOW).column("x").to_pylist() == [2, 3, 4]
    assert data.apply_window(table, data.Window(last_rows=2), NOW).column("x").to_pylist() == [3, 4]
    with pytest.raises(data.DataError) as err:
        data.apply_window(table, data.Window(duration_seconds=600), NOW)
    assert err.value.reason == "EmptyWindow"
    with pytest.raises(data.DataError) as err:
        data.apply_window(table, data.Window(duration_seconds=600, timestamp_column="ts"), NOW)
    assert err.value.reason == "MissingColumn" and "'ts'" in err.value.message


def test_schema_changes_and_missing_columns_are_named():
    ref = pa.table({"a": [1.0, 2.0], "b": ["x", "y"]})
    with pytest.raises(data.DataError) as err:
        data.feature_columns(ref, pa.table({"a": ["1", "2"], "b": ["x", "y"]}), None)
    assert err.value.reason == "SchemaChanged" and "'a'" in err.value.message
    with pytest.raises(data.DataError) as err:
        data.feature_columns(ref, pa.table({"a": [1.0]}), ["a", "b"])
    assert err.value.reason == "MissingColumn" and "'b'" in err.value.message and "current" in err.value.message
    assert data.feature_columns(ref, pa.table({"a": [1.0], "b": ["z"], "ts": [1]}), None, skip=("ts",)) == ["a", "b"]


def test_an_unreadable_file_is_data_unreadable(tmp_path):
    with pytest.raises(data.DataError) as err:
        data.read_table(f"file://{tmp_path}/absent.parquet")
    assert err.value.reason == "DataUnreadable" and "absent.parquet" in err.value.message


def test_before_any_check():
    r = reactions.react(body(), spec(), "0 * * * *", NOW)
    assert cond(r.status, "Ready")["reason"] == "AwaitingFirstCheck"
    assert cond(r.status, "DriftDetected")["status"] == "Unknown"
    assert (r.events, r.retrain, r.run_now) == ([], None, None)
    assert reactions.firing_alert(body(), spec(), r.status) is None


def test_a_new_drifted_result_alerts_and_retrains_once():
    status = {"lastRun": run("2026-11-26T11:59:00Z", True), "lastAttempt": {"time": "2026-11-26T11:59:00Z",
                                                                             "succeeded": True}}
    r = reactions.react(body(status), spec(), "0 * * * *", NOW)
    assert cond(r.status, "DriftDetected")["status"] == "True"
    url, alert = reactions.firing_alert(body(), spec(), r.status)
    assert url == "http://am:9093" and alert["labels"] == {
        "alertname": "ModelDriftDetected", "severity": "warning", "namespace": "ml", "driftmonitor": "fraud",
        "modeldeployment": "fraud"}
    assert "endsAt" not in alert  # the poster sets it
    due = datetime(2026, 11, 26, 11, 59, tzinfo=timezone.utc)
    assert r.retrain["metadata"]["name"] == "fraud-retrain-" + str(int(due.timestamp()))
    # The training history outlives the monitor: a label points at it, no ownerReference.
    assert "ownerReferences" not in r.retrain["metadata"]
    assert r.retrain["metadata"]["labels"]["mlops.dev/driftmonitor"] == "fraud"
    assert r.retrain["spec"]["image"] == "trainer:1"
    # each retraining writes a model of its own, under the template's output, and names the result it answers
    assert r.retrain["spec"]["output"]["modelUri"] == f"s3://m/next/{r.retrain['metadata']['name']}/"
    assert r.retrain["metadata"]["annotations"]["mlops.dev/drift-result"] == "2026-11-26T11:59:00Z"
    assert spec().actions.retrain.template.output.model_uri == "s3://m/next"  # the spec itself is untouched
    assert r.status["actedOn"] == "2026-11-26T11:59:00Z"
    assert [e[1] for e in r.events] == ["DriftDetected", "RetrainStarted"]
    # The same result seen again (a restart, a retry): nothing more.
    again = reactions.react(body(r.status), spec(), "0 * * * *", NOW + timedelta(minutes=1))
    assert (again.events, again.retrain) == ([], None)
    assert reactions.firing_alert(body(), spec(), again.status) is not None  # still firing while drift holds


@pytest.mark.parametrize("uri, own", [
    ("s3://m/fraud/", "s3://m/fraud/fraud-retrain-1/"),
    ("s3://m/fraud", "s3://m/fraud/fraud-retrain-1/"),
    ("s3://m/fraud/model.joblib", "s3://m/fraud/fraud-retrain-1/model.joblib"),
    ("file:///srv/models/v1.2", "file:///srv/models/fraud-retrain-1/v1.2"),  # an extension-like last part: a file
    ("s3://bucket", "s3://bucket/fraud-retrain-1/"),
])
def test_each_retraining_writes_under_the_templates_output_in_a_folder_of_its_own(uri, own):
    assert reactions.own_output(uri, "fraud-retrain-1") == own


def test_a_failed_model_check_without_input_drift_alerts_and_retrains_too():
    last = {**run("2026-11-26T11:59:00Z", False), "failedChecks": ["performance"]}
    status = {"lastRun": last, "lastAttempt": {"time": "2026-11-26T11:59:00Z", "succeeded": True}}
    r = reactions.react(body(status), spec(), "0 * * * *", NOW)
    drift = cond(r.status, "DriftDetected")
    assert (drift["status"], drift["reason"]) == ("True", "ModelCheckFailed")
    assert "model checks failed: performance" in drift["message"]
    assert [e[1] for e in r.events] == ["ModelCheckFailed", "RetrainStarted"] and r.retrain is not None
    assert reactions.firing_alert(body(), spec(), r.status) is not None


def test_cooldown_and_daily_cap_hold_retraining():
    retrains = [{"trainingJob": "fraud-retrain-1", "time": "2026-11-26T11:30:00Z"}]
    status = {"lastRun": run("2026-11-26T11:59:00Z", True), "retrains": retrains,
              "lastAttempt": {"time": "2026-11-26T11:59:00Z", "succeeded": True}}
    r = reactions.react(body(status), spec(), "0 * * * *", NOW)
    assert r.retrain is None and r.events[-1][1] == "RetrainSkipped" and "cooldown" in r.events[-1][2]
    retrains = [{"trainingJob": f"j{i}", "time": f"2026-11-26T0{i}:00:00Z"} for i in (2, 4)]
    r = reactions.react(body({**status, "retrains": retrains}), spec(), "0 * * * *", NOW)
    assert r.retrain is None and "maxPerDay (2)" in r.events[-1][2]
    old = [{"trainingJob": "j", "time": "2026-11-24T09:00:00Z"}] * 2  # older than a day
    assert reactions.react(body({**status, "retrains": old}), spec(), "0 * * * *", NOW).retrain is not None


def test_drift_ending_resolves_the_alert():
    drifted = reactions.react(body({"lastRun": run("2026-11-26T10:00:00Z", True),
                                    "lastAttempt": {"time": "2026-11-26T10:00:00Z", "succeeded": True}}),
                              spec(), "0 * * * *", NOW).status
    calm = {**drifted, "lastRun": run("2026-11-26T11:00:00Z", False),
            "lastAttempt": {"time": "2026-11-26T11:00:00Z", "succeeded": True}}
    r = reactions.react(body(calm), spec(), "0 * * * *", NOW)
    assert cond(r.status, "DriftDetected")["status"] == "False"
    assert r.resolved and r.retrain is None
    assert reactions.firing_alert(body(), spec(), r.status) is None
    assert [e[1] for e in r.events] == ["DriftResolved"]


def test_a_failed_check_keeps_the_last_result_and_raises_no_alarm():
    good = {"lastRun": run("2026-11-26T10:00:00Z", False), "actedOn": "2026-11-26T10:00:00Z",
            "lastAttempt": {"time": "2026-11-26T11:00:00Z", "succeeded": False, "reason": "SchemaChanged",
                            "message": "column 'a' is number in the reference data but text in the current data"}}
    r = reactions.react(body(good), spec(), "0 * * * *", NOW)
    assert cond(r.status, "Ready")["reason"] == "SchemaChanged"
    assert cond(r.status, "DriftDetected")["status"] == "False"
    assert reactions.firing_alert(body(), spec(), r.status) is None and r.retrain is None
    assert [e[1] for e in r.events] == ["SchemaChanged"]


def test_a_small_window_is_insufficient_data_not_a_verdict():
    insufficient = {"lastRun": run("2026-11-26T10:00:00Z", False), "actedOn": "2026-11-26T10:00:00Z",
                    "lastAttempt": {"time": "2026-11-26T11:00:00Z", "succeeded": False, "reason": "InsufficientData",
                                    "message": "the current window has 34 rows, fewer than minRows (100)"}}
    r = reactions.react(body(insufficient), spec(), "0 * * * *", NOW)
    assert (cond(r.status, "Ready")["status"], cond(r.status, "Ready")["reason"]) == ("False", "InsufficientData")
    assert r.status["lastRun"] == insufficient["lastRun"] and r.retrain is None
    assert reactions.firing_alert(body(), spec(), r.status) is None
    assert spec().min_rows == 100


@pytest.mark.parametrize("model, reason", [
    (None, "ModelDeploymentNotFound"),
    ({"spec": {"model": {"uri": "s3://m"}}}, "NoPredictionLog"),
    ({"spec": {"monitoring": {"predictionLog": {"uri": "s3://logs/fraud"}}}}, None),
])
def test_current_data_from_a_model_deployment_needs_it_and_its_prediction_log(model, reason):
    problem = reconcile.source_problem(spec(), model)
    assert (problem[0] if problem else None) == reason
    # A check that succeeded before does not keep Ready=True once the ModelDeployment is gone.
    good = {"lastRun": run("2026-11-26T10:00:00Z", False), "actedOn": "2026-11-26T10:00:00Z",
            "lastAttempt": {"time": "2026-11-26T10:00:00Z", "succeeded": True}}
    r = reactions.react(body(good), spec(), "0 * * * *", NOW, problem)
    assert cond(r.status, "Ready")["status"] == ("True" if reason is None else "False")
    assert [e[1] for e in r.events] == ([reason] if reason else [])
    # Current data named by URI does not need the ModelDeployment.
    assert reconcile.source_problem(spec(current={"uri": "s3://data/live.parquet"}), None) is None


def test_the_share_column_is_a_rounded_percent():
    status = {"lastRun": {**run("2026-11-26T11:00:00Z", True), "driftShare": 2 / 3},
              "lastAttempt": {"time": "2026-11-26T11:00:00Z", "succeeded": True}}
    assert reactions.react(body(status), spec(), "0 * * * *", NOW).status["share"] == "67%"
    assert reactions.react(body(), spec(), "0 * * * *", NOW).status.get("share") is None


def test_run_now_is_acted_on_once_per_value():
    b = body({"runNow": "1"})
    b["metadata"]["annotations"] = {"mlops.dev/run-now": "2"}
    r = reactions.react(b, spec(), "0 * * * *", NOW)
    assert r.run_now == "2" and r.status["runNow"] == "2" and [e[1] for e in r.events] == ["CheckRequested"]
    b["status"] = r.status
    assert reactions.react(b, spec(), "0 * * * *", NOW).run_now is None
    cron = render.cron_job(b, spec(), "batch/v1beta1", load())
    job = render.run_now_job(b, cron, "2")
    assert job["apiVersion"] == "batch/v1" and job["spec"] == cron["spec"]["jobTemplate"]["spec"]
    assert job["metadata"]["name"] == render.run_now_job(b, cron, "2")["metadata"]["name"]  # one per token
    assert job["metadata"]["name"] != render.run_now_job(b, cron, "3")["metadata"]["name"]
    long = body()
    long["metadata"]["name"] = "m" * 63
    assert len(render.run_now_job(long, cron, "x" * 300)["metadata"]["name"]) <= 63


def test_a_firing_alert_ends_a_margin_after_the_next_check_and_is_posted_again_well_before():
    ends = alerts.ends_at("0 * * * *", NOW + timedelta(minutes=10))
    assert ends == datetime(2026, 11, 26, 13, 0, tzinfo=timezone.utc) + alerts.MARGIN
    posted = NOW + timedelta(minutes=10)
    delay = alerts.refresh_delay(posted, ends, posted)
    assert delay == (ends - posted).total_seconds() / 2
    # Every minute: still at least the margin ahead, and reposted before it ends.
    ends = alerts.ends_at("* * * * *", posted)
    assert ends - posted > alerts.MARGIN
    assert 0 < alerts.refresh_delay(posted, ends, posted) < (ends - posted).total_seconds()
    # Late (a busy operator): post now-ish, never in a tight loop.
    assert alerts.refresh_delay(posted, ends, ends) == alerts.LEAST_REFRESH


def test_failed_posts_back_off_up_to_a_cap():
    delays = [alerts.retry_delay(n) for n in range(1, 12)]
    assert delays[0] == alerts.RETRY_FIRST and delays == sorted(delays) and delays[-1] == alerts.RETRY_MAX


def manifest(name="fraud", **over):
    return {**body(), "metadata": {"name": name, "namespace": "ml"},
            "spec": {"modelDeployment": {"name": "fraud"}, "reference": {"uri": "s3://data/ref.parquet"},
                     "schedule": "0 * * * *", **over}}


def test_a_retraining_monitor_must_leave_room_for_its_training_job_names():
    # <name>-retrain-<10 digits>-workers is the retraining job's Service: at most 63 characters
    retrain = {"retrain": {"template": {"image": "trainer:1", "workers": 2}}}
    validate_object(manifest("m" * 36, actions=retrain))
    with pytest.raises(InvalidSpec) as err:
        validate_object(manifest("m" * 37, actions=retrain))
    assert len(err.value.errors) == 1 and err.value.errors[0].startswith("metadata.name:")
    assert "spec.actions.retrain" in err.value.errors[0]
    validate_object(manifest("m" * 60))  # no retraining, no such limit


def test_an_interval_cron_cannot_say_is_invalid_in_validation():
    over = {"schedule": None, "interval": "7m"}
    with pytest.raises(InvalidSpec) as err:
        validate_object(manifest(**over))
    assert err.value.errors[0].startswith("spec.interval: 7m cannot be a CronJob schedule")
    validate_object(manifest(**{**over, "interval": "15m"}))


def test_the_runner_reports_a_small_window_as_insufficient_data(tmp_path):
    rng = np.random.default_rng(5)
    pq.write_table(pa.table({"x": rng.normal(0, 1, 500)}), tmp_path / "ref.parquet")
    pq.write_table(pa.table({"x": rng.normal(0, 1, 34)}), tmp_path / "cur.parquet")
    dm = {"spec": {"modelDeployment": {"name": "fraud"}, "reference": {"uri": f"file://{tmp_path}/ref.parquet"},
                   "current": {"uri": f"file://{tmp_path}/cur.parquet"}, "schedule": "0 * * * *"}}
    status = runner.check(dm, None, NOW)
    assert "lastRun" not in status and status["lastAttempt"]["reason"] == "InsufficientData"
    assert "34 rows" in status["lastAttempt"]["message"]
    dm["spec"]["minRows"] = 30
    assert runner.check(dm, None, NOW)["lastAttempt"]["succeeded"] is True


def test_a_reference_from_the_model_follows_the_model_the_stable_pods_serve(tmp_path):
    """reference.fromModel reads the training data saved next to the served model: before a promotion the old
    model's (drift), after it the new one's (no drift), recorded in lastRun.referenceUri."""
    rng = np.random.default_rng(7)
    for version, mean in (("v1", 0.0), ("v2", 3.0)):
        (tmp_path / version).mkdir()
        pq.write_table(pa.table({"x": rng.normal(mean, 1, 500)}), tmp_path / version / "reference.parquet")
    pq.write_table(pa.table({"x": rng.normal(3.0, 1, 500)}), tmp_path / "cur.parquet")
    dm = {"spec": {"modelDeployment": {"name": "fraud"}, "reference": {"fromModel": "reference.parquet"},
                   "current": {"uri": f"file://{tmp_path}/cur.parquet"}, "schedule": "0 * * * *"}}
    md = {"spec": {"model": {"uri": f"file://{tmp_path}/v1/model.joblib"}}}
    before = runner.check(dm, md, NOW)["lastRun"]
    assert before["datasetDrift"] is True and before["referenceUri"] == f"file://{tmp_path}/v1/reference.parquet"
    md["status"] = {"stable": {"modelUri": f"file://{tmp_path}/v2/"}}  # promoted: the stable pods serve v2
    after = runner.check(dm, md, NOW)["lastRun"]
    assert after["datasetDrift"] is False and after["referenceUri"] == f"file://{tmp_path}/v2/reference.parquet"
    # no model named at all: no verdict, said plainly
    status = runner.check(dm, {"spec": {}}, NOW)
    assert "lastRun" not in status and "names no model" in status["lastAttempt"]["message"]


@pytest.mark.parametrize("model, path", [
    ("s3://b/models/v1/", "s3://b/models/v1/reference.parquet"),
    ("s3://b/models/v1", "s3://b/models/v1/reference.parquet"),
    ("s3://b/models/v1.2", "s3://b/models/v1.2/reference.parquet"),
    ("file:///m/model.joblib", "file:///m/reference.parquet"),
])
def test_a_file_next_to_the_model_is_in_its_folder(model, path):
    assert runner.model_file(model, "reference.parquet") == path


@pytest.mark.parametrize("reference, error", [
    ({}, "spec.reference: set exactly one of uri or fromModel"),
    ({"uri": "s3://b/ref.parquet", "fromModel": "reference.parquet"}, "spec.reference: set exactly one"),
    ({"fromModel": "../other/reference.parquet"}, "spec.reference.fromModel: '../other/reference.parquet' must stay"),
])
def test_the_reference_is_named_once_and_stays_in_the_model_folder(reference, error):
    with pytest.raises(InvalidSpec) as err:
        validate_object(manifest(reference=reference))
    assert error in str(err.value)

"""DriftMonitorReconciler.reconcile() over a recording fake client and a dict cache: once-only actions when the
cache lags behind the operator's own status write, the ModelDeployment it reads, run-now, and the alert's
life (posted with endsAt, posted again, retried with back-off, resolved)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from fake_monitoring import DictCache, FakeClient

from mlops_operator.api.driftmonitor import DriftMonitorStatus
from mlops_operator.k8s.conditions import parse_time
from mlops_operator.monitoring import alerts, reconcile
from mlops_operator.settings import load

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)
KEY = ("ml", "fraud")
AM = "http://am.example:9093"


def monitor(status=None, annotations=None, alert=True, current_uri="s3://data/live.parquet") -> dict:
    actions = {"retrain": {"cooldown": "1h", "maxPerDay": 2,
                           "template": {"image": "trainer:1", "output": {"modelUri": "s3://m/next"}}}}
    if alert:
        actions["alert"] = {"alertmanager": {"url": AM}}
    spec = {"modelDeployment": {"name": "fraud"}, "reference": {"uri": "s3://data/ref.parquet"},
            "schedule": "0 * * * *", "actions": actions}
    if current_uri:
        spec["current"] = {"uri": current_uri}
    out = {"apiVersion": "mlops.dev/v1alpha1", "kind": "DriftMonitor",
           "metadata": {"name": "fraud", "namespace": "ml", "uid": "u1", "generation": 1,
                        "annotations": annotations or {}},
           "spec": spec}
    if status:
        out["status"] = status
    return out


def drifted(time: str = "2026-11-26T11:59:00Z", drift: bool = True) -> dict:
    return {"lastRun": {"time": time, "datasetDrift": drift, "driftShare": 1.0 if drift else 0.0,
                        "rows": {"reference": 500, "current": 500},
                        "features": [{"name": "age", "test": "ks", "statistic": 0.4, "pValue": 0.001,
                                      "threshold": 0.05, "drifted": drift}]},
            "lastAttempt": {"time": time, "succeeded": True}}


class Clock:
    def __init__(self):
        self.now = NOW

    def __call__(self):
        return self.now


class Setup:
    """A stored monitor, a cache holding it, a reconciler, and a recording Alertmanager."""

    def __init__(self, monkeypatch, body: dict, fail_posts: int = 0):
        self.client = FakeClient()
        self.body = self.client.put(body)
        self.cache = DictCache(driftmonitors_idx={KEY: self.body})
        self.clock = Clock()
        self.reconciler = reconcile.DriftMonitorReconciler(client=self.client, cache=self.cache, settings=load(),
                                                           clock=self.clock)
        self.posts: list[tuple[str, dict]] = []
        self.fail_posts = fail_posts

        async def post(url, sent, timeout=10):
            if self.fail_posts:
                self.fail_posts -= 1
                raise alerts.AlertError(f"{url}: connection refused")
            self.posts.extend((url, a) for a in sent)

        monkeypatch.setattr(alerts, "post", post)

    def run(self):
        return asyncio.run(self.reconciler.reconcile(KEY))

    def catch_up(self):
        """The cache receives the stored monitor (the watch event of the last write)."""
        self.cache.set("driftmonitors_idx", KEY, self.client.stored(self.body))

    def stored_status(self) -> dict:
        return self.client.stored(self.body).get("status") or {}

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.client.events]


def assert_published(status: dict) -> None:
    """The computed status is the shape the CRD publishes: it parses, and has no field the model lacks (the status
    model ignores unknown fields, so parsing alone would not tell)."""
    DriftMonitorStatus.model_validate(status)
    fields = {field.alias or name for name, field in DriftMonitorStatus.model_fields.items()}
    assert set(status) <= fields, set(status) - fields


def ready(status: dict) -> dict:
    return next(c for c in status["conditions"] if c["type"] == "Ready")


def test_a_lagging_cache_creates_one_retraining_and_posts_each_event_once(monkeypatch):
    s = Setup(monkeypatch, monitor(drifted()))
    s.run()
    assert len(s.client.created("TrainingJob")) == 1
    assert s.reasons() == ["DriftDetected", "RetrainStarted"]
    assert s.stored_status()["actedOn"] == "2026-11-26T11:59:00Z"
    # The cache still holds the body from before our status write: the same decision is refused, not repeated.
    for _ in range(3):
        assert s.run() == reconcile.CACHE_BEHIND_DELAY
    assert len(s.client.created("TrainingJob")) == 1
    assert s.reasons() == ["DriftDetected", "RetrainStarted"]
    s.catch_up()
    s.run()
    assert s.reasons() == ["DriftDetected", "RetrainStarted"]
    assert len(s.stored_status()["retrains"]) == 1
    assert_published(s.stored_status())


def test_a_missing_model_deployment_is_not_ready_before_any_check(monkeypatch):
    s = Setup(monkeypatch, monitor(current_uri=None))
    s.run()
    condition = ready(s.stored_status())
    assert (condition["status"], condition["reason"]) == ("False", "ModelDeploymentNotFound")
    assert "'fraud'" in condition["message"]
    assert s.reasons() == ["ModelDeploymentNotFound"]
    assert_published(s.stored_status())
    # It appears (with a prediction log): the monitor waits for its first check.
    s.catch_up()
    s.cache.set("modeldeployments_idx", KEY, {"metadata": {"name": "fraud", "namespace": "ml"},
                                              "spec": {"monitoring": {"predictionLog": {"uri": "s3://logs"}}}})
    s.run()
    assert ready(s.stored_status())["reason"] == "AwaitingFirstCheck"
    assert s.reasons() == ["ModelDeploymentNotFound"]


def test_a_deleted_model_deployment_ends_ready_true(monkeypatch):
    s = Setup(monkeypatch, monitor(drifted(drift=False), current_uri=None, alert=False))
    s.cache.set("modeldeployments_idx", KEY, {"metadata": {"name": "fraud", "namespace": "ml"},
                                              "spec": {"monitoring": {"predictionLog": {"uri": "s3://logs"}}}})
    s.run()
    assert ready(s.stored_status())["status"] == "True"
    s.catch_up()
    s.cache.set("modeldeployments_idx", KEY, None)  # kubectl delete md fraud
    assert reconcile.monitors_of(s.cache, "ml", "fraud") == [KEY]
    s.run()
    assert (ready(s.stored_status())["status"], ready(s.stored_status())["reason"]) == (
        "False", "ModelDeploymentNotFound")
    assert s.reasons()[-1] == "ModelDeploymentNotFound"


def test_run_now_starts_one_job_per_annotation_value_even_from_a_lagging_cache(monkeypatch):
    s = Setup(monkeypatch, monitor(annotations={"mlops.dev/run-now": "a"}, alert=False))
    s.run()
    jobs = s.client.created("Job")
    assert len(jobs) == 1 and jobs[0]["apiVersion"] == "batch/v1"
    assert jobs[0]["spec"]["template"]["spec"]["containers"][0]["command"][:2] == ["mlops-operator", "drift-check"]
    assert s.stored_status()["runNow"] == "a"
    s.run()  # stale cache
    assert len(s.client.created("Job")) == 1 and s.reasons() == ["CheckRequested"]
    s.catch_up()
    s.run()
    assert len(s.client.created("Job")) == 1 and s.reasons() == ["CheckRequested"]
    body = s.client.stored(s.body)
    body["metadata"]["annotations"]["mlops.dev/run-now"] = "b"
    s.body = s.client.put(body)
    s.catch_up()
    s.run()
    assert len(s.client.created("Job")) == 2 and s.stored_status()["runNow"] == "b"
    assert_published(s.stored_status())


def test_a_firing_alert_carries_ends_at_beyond_the_next_check_and_is_posted_again_before_it(monkeypatch):
    s = Setup(monkeypatch, monitor(drifted()))
    delay = s.run()
    (url, first), = s.posts
    ends = parse_time(first["endsAt"])
    assert url == AM and ends == datetime(2026, 11, 26, 13, 0, tzinfo=timezone.utc) + alerts.MARGIN
    assert 0 < delay < (ends - NOW).total_seconds()
    s.catch_up()
    s.clock.now = NOW + timedelta(seconds=delay / 2)
    s.run()
    assert len(s.posts) == 1  # not due yet
    s.clock.now = NOW + timedelta(seconds=delay)
    s.run()
    assert len(s.posts) == 2 and parse_time(s.posts[-1][1]["endsAt"]) > s.clock.now


def test_drift_ending_resolves_the_alert(monkeypatch):
    s = Setup(monkeypatch, monitor(drifted()))
    s.run()
    s.catch_up()
    body = s.client.stored(s.body)
    body["status"].update(drifted("2026-11-26T12:30:00Z", drift=False))
    s.body = s.client.put(body)
    s.catch_up()
    s.clock.now = NOW + timedelta(minutes=31)
    assert s.run() is None
    assert parse_time(s.posts[-1][1]["endsAt"]) == s.clock.now
    assert "DriftResolved" in s.reasons()


def test_a_deleted_monitor_resolves_its_alert(monkeypatch):
    s = Setup(monkeypatch, monitor(drifted()))
    s.run()
    s.cache.set("driftmonitors_idx", KEY, None)
    s.clock.now = NOW + timedelta(minutes=1)
    assert s.run() is None
    assert parse_time(s.posts[-1][1]["endsAt"]) == s.clock.now


def test_a_failed_post_is_retried_with_back_off_and_one_warning(monkeypatch):
    s = Setup(monkeypatch, monitor(drifted()), fail_posts=3)
    delays = [s.run()]
    s.catch_up()
    for _ in range(2):
        delays.append(s.run())
    assert delays == [alerts.retry_delay(1), alerts.retry_delay(2), alerts.retry_delay(3)]
    assert s.reasons().count("AlertFailed") == 1
    assert s.posts == []
    delay = s.run()
    assert len(s.posts) == 1 and delay > alerts.retry_delay(3)
    assert s.reasons().count("AlertFailed") == 1


@pytest.mark.parametrize("fail_posts", [0, 1])
def test_removing_the_alert_from_the_spec_resolves_it(monkeypatch, fail_posts):
    s = Setup(monkeypatch, monitor(drifted()))
    s.run()
    s.catch_up()
    body = s.client.stored(s.body)
    del body["spec"]["actions"]["alert"]
    s.body = s.client.put(body)
    s.catch_up()
    s.fail_posts = fail_posts
    s.clock.now = NOW + timedelta(minutes=1)
    if fail_posts:
        assert s.run() == alerts.retry_delay(1)
    assert s.run() is None
    assert parse_time(s.posts[-1][1]["endsAt"]) == s.clock.now and s.posts[-1][0] == AM

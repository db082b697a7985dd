"""One DriftMonitor reconcile, the only I/O of the controller side:

    cache -> validate -> runner RBAC and CronJob (apply what differs) -> reactions to the status the runner
    wrote (pure) -> create the retraining and the run-now Job -> status -> events -> alert -> metrics

Once-only actions hold when the cache lags behind the operator's own status write: the retraining and the run-now
Job have one name per result and per token (a second create is a 409), and the status is written with the cached
resourceVersion as a precondition, so a reconcile that decided from an older body is refused (409) and decides
again from the newer one; events follow only a status write that went through. The alert is level-triggered
(see alerts.py): posted again while drift holds, resolved when it ends or the monitor goes.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from .. import metrics
from ..api import DRIFT_MONITOR, InvalidSpec, validate_object
from ..api.driftmonitor import DriftMonitorSpec
from ..k8s.client import ApiError, KubeClient, object_path, resource_path
from ..k8s.conditions import format_time
from ..k8s.events import emit
from ..k8s.status import StaleStatus, report_invalid, write_status
from ..k8s.sync import delete_orphans, sync_children
from ..runtime.cache import Cache
from ..settings import Settings
from ..util import utcnow
from . import alerts, reactions, render

log = logging.getLogger("mlops_operator.driftmonitor")
CACHE_BEHIND_DELAY = 1.0  # seconds: our own status write is on its way to the cache
RESOLVE_TRIES = 5  # posts of a deleted monitor's resolution before the alert is left to expire at its endsAt


class CacheBehind(Exception):
    """The status write was refused: the cached body is older than the stored one."""


@dataclasses.dataclass
class AlertState:
    """The alert last posted (or being posted) for one monitor."""

    url: str
    alert: dict  # without endsAt
    firing: bool
    refresh_at: datetime | None = None  # firing and posted: post again by then
    failures: int = 0


def _count_check(counted: dict[tuple[str, str], str], key: tuple[str, str], status: dict) -> None:
    attempt = status.get("lastAttempt") or {}
    if attempt.get("time") and counted.get(key) != attempt["time"]:
        counted[key] = attempt["time"]
        if not attempt.get("succeeded"):
            outcome = "failed"
        else:
            outcome = "drift" if reactions.alarming(status.get("lastRun") or {}) else "no_drift"
        metrics.DRIFT_CHECKS.labels(key[0], key[1], outcome).inc()


def source_problem(spec: DriftMonitorSpec, model_deployment: dict | None) -> tuple[str, str] | None:
    """Why the current data cannot be found before any check runs: it is the prediction log of a
    ModelDeployment that does not exist or logs no predictions."""
    if spec.current is not None and spec.current.uri:
        return None
    name = spec.model_deployment.name
    if model_deployment is None:
        return ("ModelDeploymentNotFound", f"ModelDeployment {name!r} does not exist; its prediction log is this "
                                           "monitor's current data (or set spec.current.uri)")
    log_uri = (((model_deployment.get("spec") or {}).get("monitoring") or {}).get("predictionLog") or {}).get("uri")
    if not log_uri:
        return ("NoPredictionLog", f"ModelDeployment {name!r} has no spec.monitoring.predictionLog to read the "
                                   "current data from (or set spec.current.uri)")
    return None


def monitors_of(cache: Cache, namespace: str, model_deployment: str) -> list[tuple[str, str]]:
    """The keys of the DriftMonitors watching a ModelDeployment: its creation or deletion changes their Ready."""
    return [(namespace, dm["metadata"]["name"]) for dm in cache.values("driftmonitors_idx")
            if dm["metadata"].get("namespace") == namespace
            and ((dm.get("spec") or {}).get("modelDeployment") or {}).get("name") == model_deployment]


class DriftMonitorReconciler:
    """Reconciles DriftMonitors: holds what every reconcile needs (client, cache, settings, clock)."""

    kind = "driftmonitor"

    def __init__(self, *, client: KubeClient, cache: Cache, settings: Settings,
                 clock: Callable[[], datetime] = utcnow):
        self.client, self.cache, self.settings, self.clock = client, cache, settings, clock
        self._counted: dict[tuple[str, str], str] = {}  # the last attempt counted in mlops_drift_checks_total
        self._alerts: dict[tuple[str, str], AlertState] = {}

    async def reconcile(self, key: tuple[str, str]) -> float | None:
        cache, client, settings = self.cache, self.client, self.settings
        namespace, name = key
        body = cache.one("driftmonitors_idx", key)
        now = self.clock()
        if body is None or body["metadata"].get("deletionTimestamp"):
            metrics.drift_result(namespace, name, None)
            self._counted.pop(key, None)
            if body is None:  # deleted: the runner's objects go now, not when the garbage collector gets to them
                cron_version = await client.pick_resource_version("batch", "cronjobs", ["v1", "v1beta1"])
                found = [await client.get(path) for path in render.runner_paths(namespace, name, cron_version)]
                await delete_orphans(client, found, "DriftMonitor", key)
            return await self._sync_alert(key, None, None, None, now)
        try:
            spec = validate_object(body, DRIFT_MONITOR)
        except InvalidSpec as err:
            await report_invalid(client, body, err.errors, now)
            return None
        schedule = render.schedule(spec)
        assert schedule is not None, "validation accepts only an interval a cron schedule can express"

        cron_version = await client.pick_resource_version("batch", "cronjobs", ["v1", "v1beta1"])
        model = cache.one("modeldeployments_idx", (namespace, spec.model_deployment.name))
        desired = render.desired(body, spec, cron_version, settings, model)
        # Rare events: reading the four children beats watching four more kinds.
        live = {role: await client.get(object_path(want)) for role, want in desired.items() if want is not None}
        await sync_children(client, live, desired, owner=body)

        reaction = reactions.react(body, spec, schedule, now, source_problem(spec, model))
        if reaction.retrain is not None:
            await self._create(resource_path("mlops.dev/v1alpha1", "TrainingJob", namespace), reaction.retrain)
        if reaction.run_now is not None:
            job = render.run_now_job(body, desired["cronjob"], reaction.run_now)
            await self._create(resource_path("batch/v1", "Job", namespace), job)
        try:
            written = await self._write_status(body, reaction.status)
        except CacheBehind:
            return CACHE_BEHIND_DELAY
        if written:
            for type_, reason, message in reaction.events:
                await emit(client, body, type_, reason, message, now)
        metrics.drift_result(namespace, name, reaction.status.get("lastRun"))
        _count_check(self._counted, key, reaction.status)
        resolve = None
        url = reactions.alert_url(spec) if reaction.resolved else None
        if url:
            resolve = (url, reactions.alert(body, spec, reaction.status["lastRun"]))
        return await self._sync_alert(key, body, reactions.firing_alert(body, spec, reaction.status), resolve, now,
                                      schedule)

    async def _create(self, collection: str, obj: dict) -> None:
        try:
            await self.client.create(collection, obj)
        except ApiError as err:
            if err.status != 409:  # 409: made by an earlier try for the same result or token
                raise

    async def _write_status(self, body: dict, status: dict) -> bool:
        """Writes the status if it changed and the stored object is still the cached one; raises CacheBehind
        when it is not."""
        try:
            return await write_status(self.client, body, status, if_current=True) is not None
        except StaleStatus:
            raise CacheBehind() from None

    async def _sync_alert(self, key: tuple[str, str], body: dict | None, want: tuple[str, dict] | None,
                          resolve: tuple[str, dict] | None, now: datetime, schedule: str | None = None
                          ) -> float | None:
        """Keeps the monitor's alert as `want` says (firing at that URL, or none), resolving one held before or
        `resolve` (the result that ended drift); returns when to post again, or None."""
        held = self._alerts.get(key)
        if (want is not None and held is not None and held.firing and held.failures == 0
                and (held.url, held.alert) == want and held.refresh_at is not None and now < held.refresh_at):
            return (held.refresh_at - now).total_seconds()
        posts: list[tuple[str, dict, datetime]] = []
        if held is not None and held.firing and (want is None or held.url != want[0]):
            posts.append((held.url, held.alert, now))  # endsAt now: resolved
        elif want is None and resolve is not None:
            posts.append((*resolve, now))
        ends = None
        if want is not None:
            assert schedule is not None, "a firing alert comes with the monitor's schedule"
            ends = alerts.ends_at(schedule, now)
            posts.append((*want, ends))
        if not posts:
            self._alerts.pop(key, None)
            return None
        try:
            for url, alert, end in posts:
                await alerts.post(url, [{**alert, "endsAt": format_time(end)}])
        except alerts.AlertError as err:
            url, alert, _ = posts[0] if held is None or not held.firing else (held.url, held.alert, None)
            failures = (held.failures if held is not None else 0) + 1
            if body is None and failures >= RESOLVE_TRIES:
                log.warning("driftmonitor %s/%s: alert not resolved, left to expire: %s", *key, err)
                self._alerts.pop(key, None)
                return None
            self._alerts[key] = AlertState(url, alert, firing=True, failures=failures)
            if failures == 1 and body is not None:  # once per run of failures, not per retry
                await emit(self.client, body, "Warning", "AlertFailed",
                           f"could not post the drift alert (retrying with back-off): {err}", now)
            return alerts.retry_delay(failures)
        if want is None or ends is None:  # ends is set whenever want is
            self._alerts.pop(key, None)
            return None
        delay = alerts.refresh_delay(now, ends, now)
        self._alerts[key] = AlertState(*want, firing=True, refresh_at=now + timedelta(seconds=delay))
        return delay

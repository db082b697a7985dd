"""One DriftMonitor reconcile, the only I/O of the controller side:

    cache -> validate -> runner RBAC and CronJob (apply what differs) -> reactions to the status the runner
    wrote (pure) -> create the retraining, post the alert -> status -> events -> metrics
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from .. import metrics
from ..api import DRIFT_MONITOR, InvalidSpec, validate_object
from ..k8s.client import ApiError, KubeClient, object_path, resource_path
from ..k8s.events import emit
from ..k8s.status import report_invalid, write_status
from ..k8s.sync import sync_children
from ..runtime.cache import Cache
from ..settings import Settings
from ..util import utcnow
from . import alerts, reactions, render

log = logging.getLogger("mlops_operator.driftmonitor")


def _count_check(counted: dict[tuple[str, str], str], key: tuple[str, str], status: dict) -> None:
    attempt = status.get("lastAttempt") or {}
    if attempt.get("time") and counted.get(key) != attempt["time"]:
        counted[key] = attempt["time"]
        if not attempt.get("succeeded"):
            outcome = "failed"
        else:
            outcome = "drift" if (status.get("lastRun") or {}).get("datasetDrift") else "no_drift"
        metrics.DRIFT_CHECKS.labels(key[0], key[1], outcome).inc()


class DriftMonitorReconciler:
    """Reconciles DriftMonitors: holds what every reconcile needs (client, cache, settings, clock)."""

    kind = "driftmonitor"

    def __init__(self, *, client: KubeClient, cache: Cache, settings: Settings,
                 clock: Callable[[], datetime] = utcnow):
        self.client, self.cache, self.settings, self.clock = client, cache, settings, clock
        self._counted: dict[tuple[str, str], str] = {}  # the last attempt counted in mlops_drift_checks_total

    async def reconcile(self, key: tuple[str, str]) -> float | None:
        cache, client, settings = self.cache, self.client, self.settings
        namespace, name = key
        body = cache.one("driftmonitors_idx", key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            metrics.drift_result(namespace, name, None)
            self._counted.pop(key, None)
            return None
        now = self.clock()
        try:
            spec = validate_object(body, DRIFT_MONITOR)
            if render.schedule(spec) is None:
                raise InvalidSpec([f"spec.interval: {spec.interval} cannot be a CronJob schedule; use an interval "
                                   "that divides an hour or a day (1m, 5m, 15m, 1h, 6h, 24h) or spec.schedule"])
            if spec.actions is not None and spec.actions.retrain is not None:
                errors = reactions.retrain_name_errors(name, spec.actions.retrain.template.workers)
                if errors:
                    raise InvalidSpec(errors)
        except InvalidSpec as err:
            await report_invalid(client, body, err.errors, now)
            return None

        cron_version = await client.pick_resource_version("batch", "cronjobs", ["v1", "v1beta1"])
        desired = render.desired(body, spec, cron_version, settings)
        # Rare events: reading the four children beats watching four more kinds.
        live = {role: await client.get(object_path(want)) for role, want in desired.items() if want is not None}
        await sync_children(client, live, desired, owner=body)

        reaction = reactions.react(body, spec, render.schedule(spec), now)
        if reaction.retrain is not None:
            job = reaction.retrain
            try:
                await client.create(resource_path("mlops.dev/v1alpha1", "TrainingJob", namespace), job)
            except ApiError as err:
                if err.status != 409:  # 409: made by an earlier try of this same result
                    raise
        if reaction.alert is not None:
            try:
                await alerts.post(spec.actions.alert.alertmanager.url, [reaction.alert])
            except alerts.AlertError as err:
                reaction.events.append(("Warning", "AlertFailed", f"could not post the drift alert: {err}"))
        await write_status(client, body, reaction.status)
        for type_, reason, message in reaction.events:
            await emit(client, body, type_, reason, message, now)
        metrics.drift_result(namespace, name, reaction.status.get("lastRun"))
        _count_check(self._counted, key, reaction.status)
        return None

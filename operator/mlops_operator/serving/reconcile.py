"""One ModelDeployment reconcile: the only module of the serving pipeline that does I/O.

    cache (the object, its children, its pods) -> validate -> canary plan -> render -> apply what differs,
    delete what must not exist -> status from the real objects -> write it if it changed -> events

An invalid spec stops after validation: the children stay exactly as they were, Ready=False says InvalidSpec.

Events are once-only even when the cache lags behind the operator's own status writes: the status is written on
the condition that the object is still the version the reconcile read (its resourceVersion), and the events its
transitions deserve are posted only when that write succeeds. A stale read fails with 409 and posts nothing; the
next reconcile sees the newer object.

Autoscaling and spec.replicas (the Kubernetes docs' HPA migration under server-side apply): the operator's apply
stops setting the stable Deployment's replicas once the HPA owns them, and a field its last owner stops applying
falls back to the default, 1. So before that apply, a second field manager (HANDOVER_MANAGER) applies the live
count (within minReplicas..maxReplicas) and keeps owning it: the operator's apply releases the field without a
reset, and the HPA takes it over with its first scale. Turning autoscaling off, the operator's apply sets
spec.replicas again (forced, so it takes the field back), then the second manager releases what it held.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from .. import metrics
from ..api import MODEL_DEPLOYMENT, InvalidSpec, validate_object
from ..api.modeldeployment import CanaryAnalysis, ModelDeploymentSpec
from ..api.validation import spec_warnings
from ..k8s.client import APPLY, KubeClient, object_path
from ..k8s.conditions import dig
from ..k8s.diff import digest
from ..k8s.events import emit
from ..k8s.status import StaleStatus, report_invalid, write_status
from ..k8s.sync import UPDATED, ChildRejected, delete_orphans, sync_children
from ..runtime.cache import Cache
from ..settings import Settings
from ..util import utcnow
from . import accuracy, analysis, canary, predictiondrift, prometheus, render, runtimes, status

log = logging.getLogger("mlops_operator.modeldeployment")
OWNER = "modeldeployment"  # the mlops.dev/<kind> label value space the indices are keyed by
HANDOVER_MANAGER = "mlops-operator-replicas-handover"
HANDOVER_ANNOTATION = "mlops.dev/replicas-handover"  # on the stable Deployment while HANDOVER_MANAGER holds replicas
STALE_RETRY = 1.0  # seconds before retrying a reconcile whose status write found a newer object


async def api_versions(client: KubeClient) -> render.ApiVersions:
    return render.ApiVersions(hpa=await client.pick_version("autoscaling", ["v2", "v2beta2"]),
                              pdb=await client.pick_version("policy", ["v1", "v1beta1"]))


def live_children(cache: Cache, key: tuple[str, str], versions: render.ApiVersions) -> dict[str, dict | None]:
    namespace, name = key
    owner = (namespace, OWNER, name)
    deployments = {d["metadata"]["name"]: d for d in cache.all("deployments_idx", owner)}

    def of_version(index: str, api_version: str) -> dict | None:
        return next((o for o in cache.all(index, owner) if o.get("apiVersion") == api_version), None)

    return {
        "stable": deployments.get(name),
        "canary": deployments.get(render.canary_name(name)),
        "service": cache.one("services_idx", owner),
        "hpa": of_version("hpas_idx", versions.hpa),
        "pdb": of_version("pdbs_idx", versions.pdb),
    }


def serving_total(spec: ModelDeploymentSpec, stable: dict | None) -> int:
    """Replicas the stable and canary share: spec.replicas, or with autoscaling what the HPA set."""
    if spec.autoscaling is None:
        return spec.replicas
    live = (stable or {}).get("spec", {}).get("replicas")
    return live if live is not None else spec.autoscaling.min_replicas


def not_yet_observed(dep: dict) -> dict:
    """A Deployment the reconcile just changed, as its controller will see it: a newer generation it has not
    observed yet, so the status says rolling out rather than what the cached copy says of the old spec."""
    meta = dep["metadata"]
    return {**dep, "metadata": {**meta, "generation": int(meta.get("generation") or 0) + 1}}


def _handover_body(stable: dict, replicas: int | None) -> dict:
    meta = stable["metadata"]
    body: dict = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": meta["name"], "namespace": meta["namespace"]}}
    if replicas is not None:
        body["metadata"]["annotations"] = {HANDOVER_ANNOTATION: "true"}
        body["spec"] = {"replicas": replicas}
    return body


def handover_replicas(spec: ModelDeploymentSpec, stable: dict | None) -> int | None:
    """The count the handover manager must apply now, or None: autoscaling is on, the stable exists, and the
    handover has not happened yet (the HPA's bounds apply right away, as the HPA itself would)."""
    if spec.autoscaling is None or stable is None or dig(stable, "metadata", "annotations", HANDOVER_ANNOTATION):
        return None
    live: int = dig(stable, "spec", "replicas", default=1)
    return min(max(live, spec.autoscaling.min_replicas), spec.autoscaling.max_replicas)


async def apply_as_handover(client: KubeClient, body: dict) -> None:
    await client.request("PATCH", object_path(body), params={"fieldManager": HANDOVER_MANAGER, "force": "true"},
                         body=body, content_type=APPLY)


async def write_status_if_current(client: KubeClient, body: dict, new_status: dict) -> bool | None:
    """Writes what changed in the status, provided the object is still the version read: True when written, False
    when nothing changed, None when the read was stale (nothing written)."""
    try:
        return await write_status(client, body, new_status, if_current=True) is not None
    except StaleStatus:
        return None


class ModelDeploymentReconciler:
    """Reconciles ModelDeployments: holds what every reconcile needs (client, cache, settings, clock)."""

    kind = OWNER

    def __init__(self, *, client: KubeClient, cache: Cache, settings: Settings,
                 clock: Callable[[], datetime] = utcnow):
        self.client, self.cache, self.settings, self.clock = client, cache, settings, clock
        self._versions: render.ApiVersions | None = None
        # key -> (digest of the children the API server refused, the error): the same children are not sent again
        # (a refused request stays refused), while any change to them is tried.
        self._rejected: dict[tuple[str, str], tuple[str, str]] = {}

    async def versions(self) -> render.ApiVersions:
        if self._versions is None:
            self._versions = await api_versions(self.client)
        return self._versions

    async def reconcile(self, key: tuple[str, str]) -> float | None:
        cache, client, settings = self.cache, self.client, self.settings
        body = cache.one("modeldeployments_idx", key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            self._rejected.pop(key, None)
            if body is None:  # deleted: its children go now, not when the garbage collector gets to them
                await delete_orphans(client, live_children(cache, key, await self.versions()).values(),
                                     "ModelDeployment", key)
            return None
        now = self.clock()
        try:
            spec = validate_object(body, MODEL_DEPLOYMENT)
            problems = [*runtimes.image_problems(spec, settings),
                        *analysis.settings_problems(spec, settings.prometheus_url)]
            if problems:
                raise InvalidSpec(problems)
        except InvalidSpec as err:
            await report_invalid(client, body, err.errors, now)
            return None

        versions = await self.versions()
        live = live_children(cache, key, versions)
        pods = cache.all("pods_idx", (key[0], OWNER, key[1]))
        seen = status.observe_canary(live["canary"], pods, live["stable"],
                                     render.promoted_template(body, spec, settings))
        prev_canary = (body.get("status") or {}).get("canary")
        measured = await self.analyse(key, spec, prev_canary, now)
        plan = canary.plan(spec, prev_canary, serving_total(spec, live["stable"]), seen, now, measured)

        desired = render.desired(body, spec, plan, versions, settings, stable_exists=live["stable"] is not None)
        sent = digest({role: child for role, child in desired.items() if child is not None})
        rejected = self._rejected.get(key)
        if rejected is not None and rejected[0] == sent:
            await report_invalid(client, body, [rejected[1]], now)
            return None
        stable = live["stable"]
        handover = handover_replicas(spec, stable)
        if handover is not None and stable is not None:  # no handover without a stable
            await apply_as_handover(client, _handover_body(stable, handover))
        try:
            done = await sync_children(client, live, desired, owner=body)
        except ChildRejected as err:
            # Pass-through fields (affinity, tolerations, env) reach the API server unchecked by our schema.
            self._rejected[key] = (sent, f"spec: {err}")
            await report_invalid(client, body, [f"spec: {err}"], now)
            return None
        self._rejected.pop(key, None)
        stable = live["stable"]
        if spec.autoscaling is None and stable and dig(stable, "metadata", "annotations", HANDOVER_ANNOTATION):
            await apply_as_handover(client, _handover_body(stable, None))  # the operator's apply owns it

        for role in ("stable", "canary"):
            child = live[role]
            if done.get(role) == UPDATED and child is not None:  # updated: it existed
                live[role] = not_yet_observed(child)
        new_status, events = status.compute(body, live["stable"], live["canary"], pods, plan,
                                            render.url(key[1], key[0], settings), now, spec_warnings(spec))
        written = await write_status_if_current(client, body, new_status)
        if written is None:
            return STALE_RETRY
        for type_, reason, message in events if written else []:
            await emit(client, body, type_, reason, message, now)
        if written and plan.checked is not None:  # counted once: with the status write that recorded them
            recorded = (plan.status or {}).get("analysis") or {}
            metrics.canary_checks(key[0], key[1], plan.checked, int(recorded.get("consecutiveInconclusive") or 0))
        return plan.requeue_after

    async def analyse(self, key: tuple[str, str], spec: ModelDeploymentSpec, prev_canary: dict | None,
                      now: datetime) -> list[dict] | None:
        """The canary's check results when an analysis is due now (else None): Prometheus asked at `now`."""
        if not canary.analysis_due(spec, prev_canary, now):
            return None
        rollout = spec.rollout.canary if spec.rollout else None
        assert rollout is not None and rollout.analysis is not None
        url = analysis.prometheus_url(rollout.analysis, self.settings.prometheus_url)
        answers = await prometheus.measure(rollout.analysis, url, key[0], key[1], now)
        if rollout.analysis.accuracy is None and rollout.analysis.prediction_drift is None:
            return analysis.judge(rollout.analysis, answers, now)
        # The model checks read files or an object store, and the first one after a start imports numpy, pyarrow
        # and the drift engine (scipy: about 3 s on an idle machine, 20 s seen on a busy one): all of it in a
        # thread, so the event loop keeps serving every other reconcile meanwhile.
        log = spec.monitoring.prediction_log if spec.monitoring else None
        return await asyncio.to_thread(_judge_model_checks, rollout.analysis, log.uri if log else None, answers, now)


def _judge_model_checks(rule: CanaryAnalysis, log_uri: str | None, answers: dict[str, analysis.Answer],
                        now: datetime) -> list[dict]:
    """Blocking: reads the prediction log for the canary's model checks and judges every check."""
    labelled, predicted = None, None
    seconds = analysis.interval_seconds(rule)
    if rule.accuracy is not None and log_uri is not None:
        labelled = accuracy.labelled(log_uri, rule.accuracy, seconds, now)
    if rule.prediction_drift is not None and log_uri is not None:
        predicted = predictiondrift.predictions(log_uri, rule.prediction_drift, seconds, now)
    return analysis.judge(rule, answers, now, labelled, predicted)

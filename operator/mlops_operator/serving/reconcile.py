"""One ModelDeployment reconcile: the only module of the serving pipeline that does I/O.

    cache (the object, its children, its pods) -> validate -> canary plan -> render -> apply what differs,
    delete what must not exist -> status from the real objects -> write it if it changed -> events

An invalid spec stops after validation: the children stay exactly as they were, Ready=False says InvalidSpec.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from ..api import MODEL_DEPLOYMENT, InvalidSpec, validate_object
from ..api.modeldeployment import ModelDeploymentSpec
from ..k8s.client import KubeClient
from ..k8s.events import emit
from ..k8s.status import report_invalid, write_status
from ..k8s.sync import ChildRejected, sync_children
from ..runtime.cache import Cache
from ..settings import Settings
from ..util import utcnow
from . import canary, render, status

log = logging.getLogger("mlops_operator.modeldeployment")
OWNER = "modeldeployment"  # the mlops.dev/<kind> label value space the indices are keyed by


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


class ModelDeploymentReconciler:
    """Reconciles ModelDeployments: holds what every reconcile needs (client, cache, settings, clock)."""

    kind = OWNER

    def __init__(self, *, client: KubeClient, cache: Cache, settings: Settings,
                 clock: Callable[[], datetime] = utcnow):
        self.client, self.cache, self.settings, self.clock = client, cache, settings, clock
        self._versions: render.ApiVersions | None = None

    async def versions(self) -> render.ApiVersions:
        if self._versions is None:
            self._versions = await api_versions(self.client)
        return self._versions

    async def reconcile(self, key: tuple[str, str]) -> float | None:
        cache, client, settings = self.cache, self.client, self.settings
        body = cache.one("modeldeployments_idx", key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None  # deleted: the garbage collector removes the children through their owner references
        now = self.clock()
        try:
            spec = validate_object(body, MODEL_DEPLOYMENT)
        except InvalidSpec as err:
            await report_invalid(client, body, err.errors, now)
            return None

        versions = await self.versions()
        live = live_children(cache, key, versions)
        pods = cache.all("pods_idx", (key[0], OWNER, key[1]))
        canary_spec = spec.rollout.canary if spec.rollout else None
        canary_uri = canary_spec.model.uri if canary_spec and canary_spec.model else None
        seen = status.observe_canary(live["canary"], pods, live["stable"], canary_uri)
        plan = canary.plan(spec, (body.get("status") or {}).get("canary"), serving_total(spec, live["stable"]),
                           seen, now)

        try:
            await sync_children(client, live, render.desired(body, spec, plan, versions, settings), owner=body)
        except ChildRejected as err:
            # Pass-through fields (affinity, tolerations, env) reach the API server unchecked by our schema.
            await report_invalid(client, body, [f"spec: {err}"], now)
            return None

        new_status, events = status.compute(body, live["stable"], live["canary"], pods, plan,
                                            render.url(key[1], key[0], settings), now)
        await write_status(client, body, new_status)
        for type_, reason, message in events:
            await emit(client, body, type_, reason, message, now)
        return plan.requeue_after

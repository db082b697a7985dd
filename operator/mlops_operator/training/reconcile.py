"""One TrainingJob reconcile: the only module of the training pipeline that does I/O.

    cache (the job, its pods, its Service, the ModelDeployment it promotes to) -> validate -> confirm missing
    workers with a GET (the cache may lag behind our own creates) -> lifecycle.decide -> write a decision's
    status first, then act (delete, create with server-side apply, never re-apply a pod that exists) -> promote
    (one JSON merge patch) -> write status if it changed -> events

An invalid spec stops after validation: nothing is created or deleted, Ready=False says InvalidSpec.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime

from .. import metrics
from ..api import TRAINING_JOB, InvalidSpec, validate_object
from ..api.trainingjob import TrainingJobSpec
from ..k8s.client import ApiError, KubeClient, object_path, resource_path
from ..k8s.diff import HASH_ANNOTATION, stamp
from ..k8s.events import emit
from ..k8s.status import clean, report_invalid, write_status
from ..k8s.sync import ChildRejected, sync_children
from ..runtime.cache import Cache
from ..settings import Settings
from ..util import utcnow
from . import lifecycle, render, rendezvous

log = logging.getLogger("mlops_operator.trainingjob")
OWNER = "trainingjob"  # the mlops.dev/<kind> label value space the indices are keyed by
MAX_STEPS = 4  # decisions in one reconcile: e.g. fail an attempt -> start the next -> launch it


async def scheduling_gates(client: KubeClient) -> bool:
    """Whether the API server has pod scheduling gates (beta and on by default from Kubernetes 1.27)."""
    version = await client.request("GET", "/version")
    match = re.match(r"\d+", str(version.get("minor", "0")))
    return str(version.get("major")) == "1" and int(match.group(0) if match else 0) >= 27


def _outdated(body: dict, spec: TrainingJobSpec, pods: list[dict], settings: Settings, gates: bool) -> bool:
    """Whether the current spec would render the running attempt's pods differently."""
    for pod in pods:
        rank, attempt = render.rank_of(pod), render.attempt_of(pod)
        if rank is None or attempt is None:
            continue
        want = stamp(render.worker_pod(body, spec, rank, attempt, settings.cluster_domain, gates))
        have = ((pod.get("metadata") or {}).get("annotations") or {}).get(HASH_ANNOTATION)
        if have != want["metadata"]["annotations"][HASH_ANNOTATION]:
            return True
    return False


async def observe(client: KubeClient, cache: Cache, body: dict, spec: TrainingJobSpec, settings: Settings,
                  gates: bool) -> lifecycle.Observation:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    owner = (namespace, OWNER, name)
    pods = cache.all("pods_idx", owner)
    status = body.get("status") or {}
    attempt = status.get("attempt") or 0
    current = [p for p in pods if render.attempt_of(p) == attempt]
    gone: set[int] = set()
    launched = (status.get("attemptStartTime") and status.get("phase") in ("Pending", "Running", "Restarting")
                and not spec.suspend)
    if launched:
        have = {render.rank_of(p) for p in current}
        for rank in range(render.world_size_of(current) or spec.workers):
            if rank in have:
                continue
            pod_name = rendezvous.pod_name(name, rank, attempt)
            found = await client.get(resource_path("v1", "Pod", namespace, pod_name))
            if found is None:
                gone.add(rank)
            else:  # our own create, not in the cache yet
                pods.append(found)
                current.append(found)
    md = None
    if spec.promote is not None:
        md = cache.one("modeldeployments_idx", (namespace, spec.promote.model_deployment.name))
    return lifecycle.Observation(
        pods=pods, gone=frozenset(gone), service=cache.one("services_idx", owner) is not None,
        outdated=bool(launched) and _outdated(body, spec, current, settings, gates), model_deployment=md)


class TrainingJobReconciler:
    """Reconciles TrainingJobs: holds what every reconcile needs (client, cache, settings, clock)."""

    kind = OWNER

    def __init__(self, *, client: KubeClient, cache: Cache, settings: Settings,
                 clock: Callable[[], datetime] = utcnow):
        self.client, self.cache, self.settings, self.clock = client, cache, settings, clock
        self._gates: bool | None = None

    async def gates(self) -> bool:
        if self._gates is None:
            self._gates = await scheduling_gates(self.client)
        return self._gates

    async def reconcile(self, key: tuple[str, str]) -> float | None:
        cache, client, settings = self.cache, self.client, self.settings
        body = cache.one("trainingjobs_idx", key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None  # deleted: the garbage collector removes the pods and the Service (owner references)
        now = self.clock()
        try:
            spec = validate_object(body, TRAINING_JOB)
            errors = rendezvous.name_errors(key[1], spec.workers)
            if errors:
                raise InvalidSpec(errors)
        except InvalidSpec as err:
            await report_invalid(client, body, err.errors, now)
            return None

        gates = await self.gates()
        deleted: set[str] = set()
        obs = await observe(client, cache, body, spec, settings, gates)
        for _ in range(MAX_STEPS):
            plan = lifecycle.decide(body, spec, obs, now)
            if not plan.persist_first:
                break
            body = await _write(client, body, plan, now)
            await _delete(client, plan.delete, deleted)
        else:
            return 0.5  # still deciding: pick up from the written status

        await _delete(client, plan.delete, deleted)
        service = cache.one("services_idx", (key[0], OWNER, key[1]))
        refused = ""
        try:
            # Refused e.g. when a ModelDeployment named `<job>-workers` controls that Service already.
            refused = f"the Service {rendezvous.service_name(key[1])}"
            await sync_children(client, {"service": service},
                                {"service": render.service(body, spec) if plan.service else None}, owner=body)
            refused = "a worker pod"
            await _create(client, body, spec, plan.create, obs, settings, gates)
        except ChildRejected as err:
            await self._invalid_config(body, spec, obs, err.error.message, refused, deleted)
            return None
        except ApiError as err:
            if err.status not in (400, 422):
                raise
            await self._invalid_config(body, spec, obs, err.message, refused, deleted)
            return None
        if plan.promote_patch is not None:
            target = obs.model_deployment
            await client.merge_patch(object_path(target), plan.promote_patch)
            for type_, reason, message in plan.promote_events:
                await emit(client, target, type_, reason, message, now)
        await _write(client, body, plan, now)
        if plan.status.get("attemptStartTime") and not (body.get("status") or {}).get("attemptStartTime"):
            metrics.TRAINING_ATTEMPTS.labels(key[0]).inc()  # this reconcile launched an attempt: its pods exist now
        return plan.requeue_after

    async def _invalid_config(self, body: dict, spec: TrainingJobSpec, obs: lifecycle.Observation, message: str,
                              refused: str, deleted: set[str]) -> None:
        now = self.clock()
        plan = lifecycle.invalid_config(body, spec, obs, message, now, refused)
        await _write(self.client, body, plan, now)
        await _delete(self.client, plan.delete, deleted)


async def _write(client: KubeClient, body: dict, plan: lifecycle.Plan, now: datetime) -> dict:
    await write_status(client, body, plan.status)
    for type_, reason, message in plan.events:
        await emit(client, body, type_, reason, message, now)
    return {**body, "status": clean(plan.status)}


async def _delete(client: KubeClient, pods: list[dict], deleted: set[str]) -> None:
    for pod in pods:
        name = pod["metadata"]["name"]
        if name not in deleted:
            deleted.add(name)
            await client.delete(object_path({"apiVersion": "v1", "kind": "Pod", "metadata": pod["metadata"]}))


async def _create(client: KubeClient, body: dict, spec: TrainingJobSpec, ranks: list[int],
                  obs: lifecycle.Observation, settings: Settings, gates: bool) -> None:
    attempt = (body.get("status") or {}).get("attempt") or 0
    existing = {p["metadata"]["name"] for p in obs.pods}
    for rank in ranks:
        pod = stamp(render.worker_pod(body, spec, rank, attempt, settings.cluster_domain, gates))
        if pod["metadata"]["name"] in existing:
            continue  # pods are immutable: never re-apply one that exists
        if await client.get(object_path(pod)) is not None:
            continue  # created by an earlier reconcile the cache has not caught up with
        await client.apply(pod)

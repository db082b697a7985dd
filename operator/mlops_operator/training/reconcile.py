"""One TrainingJob reconcile: the only module of the training pipeline that does I/O.

    cache (the job, its pods, its Service, the ModelDeployment it promotes to) -> validate -> confirm missing
    workers and a missing ModelDeployment with a GET (the cache may lag behind creates) -> lifecycle.decide ->
    before an attempt's pods are created, gang admission (list nodes and pods: do the workers fit the free
    GPUs?) -> write a decision's status first, then act (delete, create with server-side apply, never re-apply a
    pod that exists) -> promote (one JSON merge patch) -> write status if it changed -> events

Once-only actions hold when the cache lags behind the operator's own writes:
- the job is read as the newer of the cached body and the body the last status write returned (by
  resourceVersion), so a reconcile never decides from a status older than one it wrote itself;
- every status write is conditional (metadata.resourceVersion of the body decided from): a decision made from
  a stale body gets 409 Conflict, and the reconcile starts again from a fresh GET;
- events are posted only after the status write that records their transition succeeded. A promotion patches
  the ModelDeployment first (setting the same URI again changes nothing), then records status.promotion with
  that conditional write; its events follow the record, so they are posted once.

An invalid spec stops after validation: nothing is created or deleted, Ready=False says InvalidSpec (and
status.phase too while no attempt has started; a running job keeps running and keeps its phase).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
from collections.abc import Callable
from datetime import datetime

from .. import metrics
from ..api import TRAINING_JOB, InvalidSpec, validate_object
from ..api.trainingjob import TrainingJobSpec
from ..k8s.client import ApiError, KubeClient, object_path, resource_path
from ..k8s.conditions import find_condition, invalid_spec, set_condition
from ..k8s.diff import HASH_ANNOTATION, stamp
from ..k8s.events import emit
from ..k8s.status import StaleStatus, write_status
from ..k8s.sync import ChildRejected, delete_orphans, sync_children
from ..podspec.gpu import gpu_count
from ..runtime.cache import Cache
from ..settings import Settings
from ..util import utcnow
from . import admission, lifecycle, render, rendezvous

log = logging.getLogger("mlops_operator.trainingjob")
OWNER = "trainingjob"  # the mlops.dev/<kind> label value space the indices are keyed by
MAX_STEPS = 4  # decisions in one reconcile: e.g. fail an attempt -> start the next -> launch it
MAX_CONFLICTS = 3  # fresh starts after a 409 before the work queue retries later


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
        target = spec.promote.model_deployment.name
        md = cache.one("modeldeployments_idx", (namespace, target))
        if md is None:  # created moments ago, perhaps: only the API server can say it does not exist
            md = await client.get(resource_path("mlops.dev/v1alpha1", "ModelDeployment", namespace, target))
    return lifecycle.Observation(
        pods=pods, gone=frozenset(gone), service=cache.one("services_idx", owner) is not None,
        outdated=bool(launched) and _outdated(body, spec, current, settings, gates), model_deployment=md)


class Conflict(Exception):
    """A conditional status write found the job changed since the body it was decided from was read."""


def _version(body: dict | None) -> int:
    raw = str(((body or {}).get("metadata") or {}).get("resourceVersion") or "")
    return int(raw) if raw.isdigit() else -1


class TrainingJobReconciler:
    """Reconciles TrainingJobs: holds what every reconcile needs (client, cache, settings, clock) and the body
    each job's last status write returned (see the module docstring)."""

    kind = OWNER

    def __init__(self, *, client: KubeClient, cache: Cache, settings: Settings,
                 clock: Callable[[], datetime] = utcnow):
        self.client, self.cache, self.settings, self.clock = client, cache, settings, clock
        self._gates: bool | None = None
        self._written: dict[tuple[str, str], dict] = {}
        self._admitting = asyncio.Lock()

    async def gates(self) -> bool:
        if self._gates is None:
            self._gates = await scheduling_gates(self.client)
        return self._gates

    def current(self, key: tuple[str, str]) -> dict | None:
        """The job as cached, or as our last status write returned it when the cache has not caught up."""
        cached = self.cache.one("trainingjobs_idx", key)
        mine = self._written.get(key)
        if cached is None or mine is None or mine["metadata"].get("uid") != cached["metadata"].get("uid") \
                or _version(cached) >= _version(mine):
            self._written.pop(key, None)
            return cached
        return mine

    async def reconcile(self, key: tuple[str, str]) -> float | None:
        body = self.current(key)
        for _ in range(MAX_CONFLICTS):
            if body is None or body["metadata"].get("deletionTimestamp"):
                if body is None:  # deleted: its pods and Service go now, not when the garbage collector gets to them
                    owner = (key[0], OWNER, key[1])
                    await delete_orphans(self.client, [*self.cache.all("pods_idx", owner),
                                                       *self.cache.all("services_idx", owner)], "TrainingJob", key)
                return None
            try:
                return await self._reconcile(key, body)
            except Conflict:
                try:
                    body = await self.client.get(object_path(body))
                except ApiError as err:
                    if err.status != 403:
                        raise
                    return 0.5  # no RBAC to get a TrainingJob: the cache brings the fresh body
        return 0.5

    async def _reconcile(self, key: tuple[str, str], body: dict) -> float | None:
        cache, client, settings = self.cache, self.client, self.settings
        now = self.clock()
        try:
            spec = validate_object(body, TRAINING_JOB)
        except InvalidSpec as err:
            await self._report_invalid(body, err.errors, now)
            return None

        async with contextlib.AsyncExitStack() as hold:
            gates = await self.gates()
            deleted: set[str] = set()
            obs = await observe(client, cache, body, spec, settings, gates)
            for _ in range(MAX_STEPS):
                plan = lifecycle.decide(body, spec, obs, now)
                if plan.admit:  # one gang at a time from the look at the free GPUs to its pods' creation
                    await hold.enter_async_context(self._admitting)
                    obs = dataclasses.replace(obs, admission=await self._admission(body, spec, gates))
                    plan = lifecycle.decide(body, spec, obs, now)
                if not plan.persist_first:
                    break
                body = await self._write(body, plan.status, plan.events, now)
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
            target = obs.model_deployment
            if plan.promote_patch is not None and target is not None:
                try:
                    await client.merge_patch(object_path(target), plan.promote_patch)
                except ApiError as err:
                    if err.status != 404:
                        raise
                    raise Conflict() from None  # deleted since observed: decide again from fresh state
            await self._write(body, plan.status, plan.events, now)
            if plan.promote_patch is not None and target is not None:
                for type_, reason, message in plan.promote_events:
                    await emit(client, target, type_, reason, message, now)
            if plan.status.get("attemptStartTime") and not (body.get("status") or {}).get("attemptStartTime"):
                metrics.TRAINING_ATTEMPTS.labels(key[0]).inc()  # this reconcile launched an attempt: its pods exist now
            return plan.requeue_after

    async def _admission(self, body: dict, spec: TrainingJobSpec, gates: bool) -> admission.Admission:
        """Whether the gang fits the free GPUs now: one list of nodes and one of bound, running pods, only when
        an attempt is about to create its pods. Without the RBAC to list them, the scheduler alone decides."""
        pod = render.worker_pod(body, spec, 0, 1, self.settings.cluster_domain, gates)
        resource = spec.resources.gpu.resource if spec.resources.gpu else "nvidia.com/gpu"
        try:
            nodes = await self.client.list(resource_path("v1", "Node"))
            pods = (await self.client.request("GET", resource_path("v1", "Pod"), params={
                "fieldSelector": "status.phase!=Succeeded,status.phase!=Failed"}))["items"]
        except ApiError as err:
            if err.status != 403:
                raise
            log.warning("%s/%s: gang admission skipped, nodes or pods may not be listed: %s",
                        body["metadata"]["namespace"], body["metadata"]["name"], err)
            return admission.Admission(True, spec.workers, gpu_count(spec.resources), resource, 0, 0, 0)
        return admission.admit(body, pod, spec.workers, resource, nodes, pods)

    async def _write(self, body: dict, status: dict, events: list[lifecycle.Event], now: datetime) -> dict:
        """Writes the status if it changed, on condition that the job is still the body it was decided from
        (else Conflict), then posts the events of that transition. Returns the job as written."""
        try:
            written = await write_status(self.client, body, status, if_current=True)
        except StaleStatus:
            raise Conflict() from None
        if written is not None:
            meta = body["metadata"]
            body = written
            self._written[(meta["namespace"], meta["name"])] = body
        for type_, reason, message in events:
            await emit(self.client, body, type_, reason, message, now)
        return body

    async def _report_invalid(self, body: dict, errors: list[str], now: datetime) -> None:
        """Ready=False InvalidSpec naming the fields (and phase InvalidSpec while no attempt started); a Warning
        event when that news is new. No child is touched: what runs keeps running."""
        old = body.get("status") or {}
        ready = invalid_spec(errors, observed_generation=body["metadata"].get("generation"), now=now)
        new = {**old, "observedGeneration": body["metadata"].get("generation"),
               "conditions": set_condition(old.get("conditions"), ready)}
        if not old.get("attempt"):
            new["phase"] = "InvalidSpec"
        before = find_condition(old.get("conditions"), "Ready") or {}
        news = (before.get("reason"), before.get("message")) != ("InvalidSpec", ready["message"])
        await self._write(body, new, [("Warning", "InvalidSpec", ready["message"])] if news else [], now)

    async def _invalid_config(self, body: dict, spec: TrainingJobSpec, obs: lifecycle.Observation, message: str,
                              refused: str, deleted: set[str]) -> None:
        now = self.clock()
        plan = lifecycle.invalid_config(body, spec, obs, message, now, refused)
        await self._write(body, plan.status, plan.events, now)
        await _delete(self.client, plan.delete, deleted)


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

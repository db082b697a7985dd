"""Kopf wiring only, no business logic.

- The cache is the operator's view of the cluster, so reconcilers read memory, not the API server: kopf indices
  for the custom resources (kopf fills them before any event handler runs), and informers (runtime/informer.py)
  for the children the operator labels, synced before the controllers start. Children are not kopf's: its
  per-object workers and startup gate cost most of the operator's memory and CPU at thousands of pods.
- Event handlers and informer callbacks only put the owning object's key on its controller's work queue:
  level-triggered, each reconcile derives everything from the cache, and bursts of events for one object
  collapse into one reconcile.
- Kopf writes nothing of its own: no finalizers (children go by owner references), no progress annotations
  (no change-detecting handlers), no events from its log (we post our own).
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging

import kopf

from . import GROUP, VERSION
from .k8s.client import KubeClient
from .k8s.labels import MANAGED_BY
from .monitoring import reconcile as monitoring
from .runtime import inventory, kopf_tuning
from .runtime.cache import Cache
from .runtime.controller import Controller
from .runtime.informer import Informer
from .serving import reconcile as serving
from .settings import CONNECT_TIMEOUT, SETTINGS, WATCH_GRACE
from .training import reconcile as training

log = logging.getLogger("mlops_operator")
MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}
OWNER_LABELS = ("mlops.dev/modeldeployment", "mlops.dev/trainingjob", "mlops.dev/driftmonitor")

kopf_tuning.patch()  # before kopf starts: the index readiness gate without O(N^2) wake-ups
CACHE = Cache()
CONTROLLERS: dict[str, Controller] = {}
INDICES = ("modeldeployments_idx", "trainingjobs_idx", "driftmonitors_idx")  # kopf's; the children's: informers


def _plain(body: kopf.Body) -> dict:
    """What the index keeps of an object: the raw dict of this event (kopf never mutates it) without
    metadata.managedFields, which no reconciler reads and which is ~40% of a pod's or Deployment's size: at
    thousands of cached objects, the operator's memory (see docs/benchmarks.md)."""
    raw = dict(body)
    meta = raw.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        raw["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return raw


def _owner_keys(namespace: str, labels: kopf.Labels) -> list[tuple[str, str, str]]:
    return [(namespace, key.split("/", 1)[1], labels[key]) for key in OWNER_LABELS if key in labels]


# ---------------------------------------------------------------- indices (the cache)

@kopf.index(GROUP, VERSION, "modeldeployments")
async def modeldeployments_idx(namespace: str, name: str, body: kopf.Body, **_):
    return {(namespace, name): _plain(body)}


@kopf.index(GROUP, VERSION, "trainingjobs")
async def trainingjobs_idx(namespace: str, name: str, body: kopf.Body, **_):
    return {(namespace, name): _plain(body)}


@kopf.index(GROUP, VERSION, "driftmonitors")
async def driftmonitors_idx(namespace: str, name: str, body: kopf.Body, **_):
    return {(namespace, name): _plain(body)}


# The children's indices are informers (the same get/values interface), created at startup.
CHILD_INDICES = {"deployments_idx": ("apps/v1", "Deployment"), "services_idx": ("v1", "Service"),
                 "pods_idx": ("v1", "Pod"), "hpas_idx": (None, "HorizontalPodAutoscaler"),
                 "pdbs_idx": (None, "PodDisruptionBudget")}
_SCOPE: list[str] | None = None  # namespaces served; None: all


def scope(namespaces: list[str] | None) -> None:
    """The namespaces the operator serves (the CLI's --namespace; None for --all-namespaces)."""
    global _SCOPE
    _SCOPE = namespaces


def _informer_namespaces() -> list[str] | None:
    # Exact names: one list and watch per namespace (a namespaced install has Roles only). Patterns: all
    # namespaces, filtered by the pattern (kopf's globs need cluster-wide access anyway).
    if _SCOPE is None or any(set(ns) & set("*?[]!") for ns in _SCOPE):
        return None
    return list(_SCOPE)


def _served(namespace: str) -> bool:
    return _SCOPE is None or any(fnmatch.fnmatchcase(namespace, pattern.lstrip("!")) != pattern.startswith("!")
                                 for pattern in _SCOPE)


def _child_keys(obj: dict) -> list[tuple[str, str, str]]:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace") or ""
    return _owner_keys(namespace, meta.get("labels") or {}) if _served(namespace) else []


def _child_changed(obj: dict) -> None:
    for ns, kind, owner in _child_keys(obj):
        _enqueue(kind, ns, owner)


# ---------------------------------------------------------------- triggers

def _enqueue(kind: str, namespace: str, name: str) -> None:
    controller = CONTROLLERS.get(kind)
    if controller is not None:
        controller.queue.add((namespace, name))


@kopf.on.event(GROUP, VERSION, "modeldeployments")
async def modeldeployment_changed(namespace: str, name: str, **_):
    _enqueue("modeldeployment", namespace, name)
    if "driftmonitor" in CONTROLLERS:  # the monitors reading its prediction log (the cache is bound by then)
        for dm_namespace, dm_name in monitoring.monitors_of(CACHE, namespace, name):
            _enqueue("driftmonitor", dm_namespace, dm_name)


@kopf.on.event(GROUP, VERSION, "trainingjobs")
async def trainingjob_changed(namespace: str, name: str, **_):
    _enqueue("trainingjob", namespace, name)


@kopf.on.event(GROUP, VERSION, "driftmonitors")
async def driftmonitor_changed(namespace: str, name: str, **_):
    _enqueue("driftmonitor", namespace, name)


# ---------------------------------------------------------------- lifecycle

@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs):
    settings.posting.enabled = False
    settings.persistence.finalizer = "mlops.dev/finalizer"
    # A frozen API server keeps its sockets open and sends nothing: without client-side limits a watch would
    # wait forever. Each limit below ends a hung watch; kopf then reconnects (and re-lists when its
    # resourceVersion is gone), so the operator recovers by itself within watch_timeout + WATCH_GRACE.
    settings.watching.server_timeout = SETTINGS.watch_timeout
    settings.watching.client_timeout = SETTINGS.watch_timeout + WATCH_GRACE
    settings.watching.inactivity_timeout = SETTINGS.watch_timeout + WATCH_GRACE
    settings.watching.connect_timeout = CONNECT_TIMEOUT
    settings.networking.connect_timeout = CONNECT_TIMEOUT
    settings.networking.request_timeout = 60
    settings.peering.lifetime = SETTINGS.peering_lifetime
    selector = ",".join(f"{k}={v}" for k, v in MANAGED.items())  # the children's informers list only ours
    client = KubeClient.from_environment()
    memo["client"] = client
    # Watches hold their connections: the informers get their own pool, apart from the reconcilers'.
    watch_client = KubeClient.from_environment(limit=0)
    memo["watch_client"] = watch_client
    versions = await serving.api_versions(client)
    informers = {}
    for name, (api_version, kind) in CHILD_INDICES.items():
        api_version = api_version or (versions.hpa if kind == "HorizontalPodAutoscaler" else versions.pdb)
        informers[name] = Informer(watch_client, api_version, kind, keys=_child_keys, on_change=_child_changed,
                                   namespaces=_informer_namespaces(), label_selector=selector)
    memo["informers"] = [asyncio.create_task(i.run(), name=f"informer-{name}") for name, i in informers.items()]
    await asyncio.gather(*(i.synced.wait() for i in informers.values()))
    log.info("caches synced: %s", ", ".join(f"{len(i)} {i.kind}s" for i in informers.values()))
    CACHE.bind({**{name: kwargs[name] for name in INDICES}, **informers})

    paused = kopf_tuning.operator_paused()  # kopf's own pause, so that a standby replica's queues stay still
    for reconciler, workers in ((serving.ModelDeploymentReconciler, SETTINGS.workers),
                                (training.TrainingJobReconciler, SETTINGS.workers),
                                (monitoring.DriftMonitorReconciler, 4)):
        kind = reconciler(client=client, cache=CACHE, settings=SETTINGS)
        CONTROLLERS[kind.kind] = Controller(kind.kind, kind.reconcile, workers=workers, on_gone=CACHE.forget,
                                            paused=paused)
    for controller in CONTROLLERS.values():
        controller.start()
    memo["inventory"] = asyncio.create_task(inventory.run(CACHE), name="inventory-metrics")
    log.info("mlops-operator started: controllers %s", ", ".join(CONTROLLERS))


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_):
    task = memo.get("inventory")
    if task is not None:
        task.cancel()
    for controller in CONTROLLERS.values():
        await controller.stop()
    CONTROLLERS.clear()
    for task in memo.get("informers") or []:
        task.cancel()
    for name in ("client", "watch_client"):
        client = memo.get(name)
        if client is not None:
            await client.close()


"""Kopf wiring only, no business logic: kopf runs the operator's lifecycle (startup and cleanup, the liveness
probe, signal handling); the startup handler builds the project's runtime (runtime/manager.py) and the cleanup
handler stops it.

- One cache: an informer (runtime/informer.py) per index, for the custom resources and for the children the
  operator labels, synced before the controllers start. kopf watches nothing: its per-object workers and index
  gate cost most of the operator's memory and CPU at thousands of objects.
- Informer callbacks only put the owning object's key on its controller's work queue: level-triggered, each
  reconcile derives everything from the cache, and bursts of events for one object collapse into one reconcile.
- With several replicas, a Lease (runtime/leader.py) decides which one reconciles; kopf runs standalone.
- Kopf writes nothing of its own: no finalizers (children go by owner references), no events from its log.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any, TypedDict

import kopf

from . import GROUP, VERSION
from .gcpolicy import GcPolicy
from .k8s.client import KubeClient
from .k8s.labels import MANAGED_BY
from .monitoring import reconcile as monitoring
from .runtime import inventory
from .runtime.informer import Informer
from .runtime.leader import LeaderElector
from .runtime.manager import Manager
from .runtime.scope import Scope
from .serving import reconcile as serving
from .settings import WATCH_GRACE, Settings
from .training import reconcile as training

log = logging.getLogger("mlops_operator")
MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}
# index -> the custom resource it holds, keyed (namespace, name); its controller is the kind in lower case.
CUSTOM_RESOURCES = {"modeldeployments_idx": "ModelDeployment", "trainingjobs_idx": "TrainingJob",
                    "driftmonitors_idx": "DriftMonitor"}
# index -> the children it holds, keyed (namespace, owner kind, owner name) from the owner's label. None: the
# version the API server serves (discovery at start).
CHILD_INDICES = {"deployments_idx": ("apps/v1", "Deployment"), "services_idx": ("v1", "Service"),
                 "pods_idx": ("v1", "Pod"), "hpas_idx": (None, "HorizontalPodAutoscaler"),
                 "pdbs_idx": (None, "PodDisruptionBudget")}
OWNER_LABELS = ("mlops.dev/modeldeployment", "mlops.dev/trainingjob", "mlops.dev/driftmonitor")


ResourceKeys = Callable[[dict], list[tuple[str, str]]]  # a custom resource -> its (namespace, name)
ChildKeys = Callable[[dict], list[tuple[str, str, str]]]  # a child -> (namespace, owner kind, owner name) per owner
OnChange = Callable[[dict], None]


class _WatchOptions(TypedDict):
    watch_timeout: int
    grace: float
    namespaces: list[str] | None


@dataclasses.dataclass(frozen=True)
class Election:
    """Where the lease lives and who this replica is (runtime/leader.py)."""
    namespace: str
    name: str
    identity: str


def _resource_keys(scope: Scope) -> ResourceKeys:
    def keys(obj: dict) -> list[tuple[str, str]]:
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or ""
        return [(namespace, meta["name"])] if scope.served(namespace) else []
    return keys


def _child_keys(scope: Scope) -> ChildKeys:
    def keys(obj: dict) -> list[tuple[str, str, str]]:
        meta = obj.get("metadata") or {}
        namespace, labels = meta.get("namespace") or "", meta.get("labels") or {}
        if not scope.served(namespace):
            return []
        return [(namespace, label.split("/", 1)[1], labels[label]) for label in OWNER_LABELS if label in labels]
    return keys


def _enqueue_own(manager: Manager, controller: str, keys: ResourceKeys) -> OnChange:
    """A custom resource changed: its own key goes on its controller's queue."""
    def changed(obj: dict) -> None:
        for key in keys(obj):
            manager.enqueue(controller, key)
    return changed


def _enqueue_model_deployment(manager: Manager, keys: ResourceKeys) -> OnChange:
    """A ModelDeployment changed: its key, and the DriftMonitors reading its prediction log (its creation or
    deletion changes their Ready)."""
    own = _enqueue_own(manager, "modeldeployment", keys)

    def changed(obj: dict) -> None:
        own(obj)
        for namespace, name in keys(obj):
            for key in monitoring.monitors_of(manager.cache, namespace, name):
                manager.enqueue("driftmonitor", key)
    return changed


def _enqueue_owners(manager: Manager, keys: ChildKeys) -> OnChange:
    """A child changed: each owner named by its labels goes on the owner's controller's queue."""
    def changed(obj: dict) -> None:
        for namespace, controller, owner in keys(obj):
            manager.enqueue(controller, (namespace, owner))
    return changed


async def build(settings: Settings, scope: Scope, election: Election | None) -> tuple[Manager, list[KubeClient]]:
    """The runtime of this process, not started: informers, controllers with their reconcilers, the election."""
    client = KubeClient.from_environment()
    # Watches hold their connections, and the lease must be renewed even when every reconcile waits for a
    # connection: both get a pool of their own, apart from the reconcilers'.
    watch_client = KubeClient.from_environment(limit=0)
    leader = None if election is None else LeaderElector(
        watch_client, namespace=election.namespace, name=election.name, identity=election.identity,
        lease_duration=settings.lease_duration)
    manager = Manager(leader, GcPolicy("mlops_operator_gc_pause_seconds"))
    versions = await serving.api_versions(client)
    timeouts: _WatchOptions = {"watch_timeout": settings.watch_timeout, "grace": WATCH_GRACE,
                               "namespaces": scope.exact()}

    resource_keys, child_keys = _resource_keys(scope), _child_keys(scope)
    for index, kind in CUSTOM_RESOURCES.items():
        on_change = (_enqueue_model_deployment(manager, resource_keys) if kind == "ModelDeployment"
                     else _enqueue_own(manager, kind.lower(), resource_keys))
        manager.add_informer(index, Informer(watch_client, f"{GROUP}/{VERSION}", kind, keys=resource_keys,
                                             on_change=on_change, **timeouts))
    selector = ",".join(f"{k}={v}" for k, v in MANAGED.items())  # the children's informers list only ours
    for index, (api_version, kind) in CHILD_INDICES.items():
        api_version = api_version or (versions.hpa if kind == "HorizontalPodAutoscaler" else versions.pdb)
        manager.add_informer(index, Informer(watch_client, api_version, kind, keys=child_keys,
                                             on_change=_enqueue_owners(manager, child_keys),
                                             label_selector=selector, **timeouts))

    for reconciler_type, workers in ((serving.ModelDeploymentReconciler, settings.workers),
                                     (training.TrainingJobReconciler, settings.workers),
                                     (monitoring.DriftMonitorReconciler, 4)):
        reconciler = reconciler_type(client=client, cache=manager.cache, settings=settings)
        manager.add_controller(reconciler.kind, reconciler.reconcile, workers)
    manager.add_task("inventory-metrics", lambda: inventory.run(manager.cache))
    return manager, [client, watch_client]


def registry(settings: Settings, scope: Scope, election: Election | None) -> kopf.OperatorRegistry:
    """kopf's handlers for one run: startup builds and starts the runtime, cleanup stops it."""
    handlers = kopf.OperatorRegistry()
    # kopf's own discovery still reads the API server: its public login handlers, as its default registry has.
    kopf.on.login(registry=handlers)(kopf.login_with_service_account)
    kopf.on.login(registry=handlers)(kopf.login_with_kubeconfig)

    @kopf.on.startup(registry=handlers, id="startup")
    async def startup(memo: kopf.Memo, **kwargs: Any) -> None:
        kopf_settings: kopf.OperatorSettings = kwargs["settings"]
        kopf_settings.posting.enabled = False
        kopf_settings.scanning.disabled = True  # kopf watches no resource: nothing to discover
        manager, clients = await build(settings, scope, election)
        memo["manager"], memo["clients"] = manager, clients
        await manager.start()
        mode = "standalone" if election is None else f"lease {election.namespace}/{election.name} as " \
                                                      f"{election.identity}"
        log.info("mlops-operator started (%s): controllers %s", mode, ", ".join(manager.controllers))

    @kopf.on.cleanup(registry=handlers, id="cleanup")
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        manager = memo.get("manager")
        if manager is not None:
            await manager.stop()
        for client in memo.get("clients") or []:
            await client.close()

    return handlers

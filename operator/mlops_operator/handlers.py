"""Kopf wiring only, no business logic.

- Indices keep the operator's view of the cluster (its custom resources and the children it labels), so
  reconcilers read memory, not the API server; kopf fills them all before any event handler runs.
- Event handlers only put the owning object's key on its controller's work queue: level-triggered, each
  reconcile derives everything from the cache, and bursts of events for one object collapse into one reconcile.
- Kopf writes nothing of its own: no finalizers (children go by owner references), no progress annotations
  (no change-detecting handlers), no events from its log (we post our own).
"""

from __future__ import annotations

import logging

import kopf

from . import GROUP, VERSION
from .k8s.client import KubeClient
from .k8s.labels import MANAGED_BY
from .runtime.cache import Cache
from .runtime.controller import Controller
from .monitoring import reconcile as monitoring
from .serving import reconcile as serving
from .training import reconcile as training
from .settings import SETTINGS

log = logging.getLogger("mlops_operator")
MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}
OWNER_LABELS = ("mlops.dev/modeldeployment", "mlops.dev/trainingjob", "mlops.dev/driftmonitor")

CACHE = Cache()
CONTROLLERS: dict[str, Controller] = {}
INDICES = ("modeldeployments_idx", "trainingjobs_idx", "driftmonitors_idx", "deployments_idx", "services_idx",
           "hpas_idx", "pdbs_idx", "pods_idx")


def _plain(body: kopf.Body) -> dict:
    # kopf's Body is a live view; the index keeps the raw dict of this event, which kopf never mutates.
    return dict(body)


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


@kopf.index("apps", "v1", "deployments", labels=MANAGED)
async def deployments_idx(namespace: str, labels: kopf.Labels, body: kopf.Body, **_):
    return {key: _plain(body) for key in _owner_keys(namespace, labels)}


@kopf.index("", "v1", "services", labels=MANAGED)
async def services_idx(namespace: str, labels: kopf.Labels, body: kopf.Body, **_):
    return {key: _plain(body) for key in _owner_keys(namespace, labels)}


@kopf.index("", "v1", "pods", labels=MANAGED)
async def pods_idx(namespace: str, labels: kopf.Labels, body: kopf.Body, **_):
    return {key: _plain(body) for key in _owner_keys(namespace, labels)}


# One watch per served version we may write: v2 or v2beta2 (HPA), v1 or v1beta1 (PDB); the reconciler picks the
# entry of the version discovery chose.
@kopf.index(lambda r: r.group == "autoscaling" and r.plural == "horizontalpodautoscalers"
            and r.version in ("v2", "v2beta2"), labels=MANAGED)
async def hpas_idx(namespace: str, labels: kopf.Labels, body: kopf.Body, **_):
    return {key: _plain(body) for key in _owner_keys(namespace, labels)}


@kopf.index(lambda r: r.group == "policy" and r.plural == "poddisruptionbudgets"
            and r.version in ("v1", "v1beta1"), labels=MANAGED)
async def pdbs_idx(namespace: str, labels: kopf.Labels, body: kopf.Body, **_):
    return {key: _plain(body) for key in _owner_keys(namespace, labels)}


# ---------------------------------------------------------------- triggers

def _enqueue(kind: str, namespace: str, name: str) -> None:
    controller = CONTROLLERS.get(kind)
    if controller is not None:
        controller.queue.add((namespace, name))


@kopf.on.event(GROUP, VERSION, "modeldeployments")
async def modeldeployment_changed(namespace: str, name: str, **_):
    _enqueue("modeldeployment", namespace, name)


@kopf.on.event(GROUP, VERSION, "trainingjobs")
async def trainingjob_changed(namespace: str, name: str, **_):
    _enqueue("trainingjob", namespace, name)


@kopf.on.event(GROUP, VERSION, "driftmonitors")
async def driftmonitor_changed(namespace: str, name: str, **_):
    _enqueue("driftmonitor", namespace, name)


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("", "v1", "services", labels=MANAGED)
@kopf.on.event("", "v1", "pods", labels=MANAGED)
async def child_changed(namespace: str, labels: kopf.Labels, **_):
    for ns, kind, owner in _owner_keys(namespace, labels):
        _enqueue(kind, ns, owner)


# ---------------------------------------------------------------- lifecycle

@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs):
    settings.posting.enabled = False
    settings.persistence.finalizer = "mlops.dev/finalizer"
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    selector = ",".join(f"{k}={v}" for k, v in MANAGED.items())
    for resource in (("v1", "pods"), ("v1", "services"), ("apps", "deployments"),
                     ("autoscaling", "horizontalpodautoscalers"), ("policy", "poddisruptionbudgets")):
        settings.watching.label_selectors[resource] = selector
    CACHE.bind({name: kwargs[name] for name in INDICES})
    client = KubeClient.from_environment()
    memo["client"] = client

    async def reconcile_md(key):
        return await serving.reconcile(key, cache=CACHE, client=client, settings=SETTINGS)

    async def reconcile_tj(key):
        return await training.reconcile(key, cache=CACHE, client=client, settings=SETTINGS)

    CONTROLLERS["modeldeployment"] = Controller("modeldeployment", reconcile_md, workers=SETTINGS.workers)
    async def reconcile_dm(key):
        return await monitoring.reconcile(key, cache=CACHE, client=client, settings=SETTINGS)

    CONTROLLERS["trainingjob"] = Controller("trainingjob", reconcile_tj, workers=SETTINGS.workers)
    CONTROLLERS["driftmonitor"] = Controller("driftmonitor", reconcile_dm, workers=4)
    for controller in CONTROLLERS.values():
        controller.start()
    log.info("mlops-operator started: controllers %s", ", ".join(CONTROLLERS))


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_):
    for controller in CONTROLLERS.values():
        await controller.stop()
    CONTROLLERS.clear()
    client = memo.get("client")
    if client is not None:
        await client.close()


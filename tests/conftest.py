"""Session fixtures: one real control plane per test session, a fresh namespace per test.

Unit tests (tests/unit) need none of this. Integration tests (tests/integration, marked `cluster`) get:
- `cluster`: the kubeconfig path: the local cluster (started here, or reused when it already runs), or with
  USE_EXISTING_CLUSTER=true the cluster in $KUBECONFIG, as controller-runtime's envtest does;
- `kube`: a `kubernetes.client.ApiClient` for it;
- `namespace`: a new namespace with its default ServiceAccount, deleted afterwards;
- `needs_controller_manager` / `needs_scheduler`: skip, saying why, when KUBEBUILDER_ASSETS lacks them.
"""

from __future__ import annotations

import os
import pathlib
import re
import time
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)


def _use_existing() -> bool:
    return os.environ.get("USE_EXISTING_CLUSTER", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def local_cluster():
    """The LocalCluster object, or None with USE_EXISTING_CLUSTER=true."""
    if _use_existing():
        yield None
        return
    from mlops_operator.localcluster import LocalCluster

    cluster = LocalCluster(pathlib.Path(os.environ.get("MLOPS_CLUSTER_DIR", ROOT / ".cluster")))
    started_here = cluster.running() is None
    cluster.up()
    yield cluster
    if started_here and not os.environ.get("MLOPS_KEEP_CLUSTER"):
        cluster.down(quiet=True)


@pytest.fixture(scope="session")
def cluster(local_cluster) -> str:
    if local_cluster is None:
        kubeconfig = os.environ.get("KUBECONFIG")
        if not kubeconfig:
            pytest.fail("USE_EXISTING_CLUSTER=true needs KUBECONFIG")
        return kubeconfig
    return str(local_cluster.layout.kubeconfig)


@pytest.fixture(scope="session")
def kube(cluster):
    from kubernetes import config

    return config.new_client_from_config(config_file=cluster)


@pytest.fixture(scope="session")
def needs_controller_manager(local_cluster):
    if local_cluster is not None and "kube-controller-manager" not in local_cluster.running()["components"]:
        pytest.skip("KUBEBUILDER_ASSETS has no kube-controller-manager: no ReplicaSets, Jobs or garbage collection")


@pytest.fixture(scope="session")
def needs_scheduler(local_cluster):
    if local_cluster is not None and "kube-scheduler" not in local_cluster.running()["components"]:
        pytest.skip("KUBEBUILDER_ASSETS has no kube-scheduler: pods are never bound to nodes")


@pytest.fixture
def namespace(kube, request):
    """A fresh namespace named after the test; its default ServiceAccount exists before the test runs."""
    from kubernetes import client

    core = client.CoreV1Api(kube)
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{slug}-{uuid.uuid4().hex[:5]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=name, labels={"mlops.dev/test": "true"})))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"namespace {name}: the default ServiceAccount never appeared (controller manager down?)")
    yield name
    core.delete_namespace(name)


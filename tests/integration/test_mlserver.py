"""The mlserver preset for real: the fetcher (the operator's image, a local process) copies a scikit-learn model
into the pod's model volume, MLServer (its own venv, a real process in the pod's network namespace) loads it, and
requests through the model's NodePort on the host's 127.0.0.1 get the model's own predictions back."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from kubernetes import client

from helpers import apply, wait_for

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [6.7, 3.0, 5.2, 2.3], [4.9, 3.0, 1.4, 0.2]]


@pytest.fixture
def network(local_cluster):
    net = local_cluster.pod_network() if local_cluster is not None else None
    if net is None:
        pytest.skip("no pod network here (an existing cluster, not root, or no iproute2/iptables): no NodePort")
    from mlops_localcluster import mlserver

    mlserver.ensure(local_cluster.layout.log("mlserver"))  # a no-op once `ensure` has made the venv
    return net


def infer(port: int, rows: list[list[float]]) -> dict | None:
    body = json.dumps({"inputs": [{"name": "features", "shape": [len(rows), len(rows[0])], "datatype": "FP64",
                                   "data": rows}]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/iris/infer", data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None  # not listening yet, or the endpoint not yet programmed


def test_mlserver_serves_the_fetched_sklearn_model_on_its_node_port(kube, namespace, operator, needs_scheduler,
                                                                     needs_simulator, network, tmp_path):
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    features, labels = load_iris(return_X_y=True)
    model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(features, labels)
    path = tmp_path / "iris.joblib"
    joblib.dump(model, path)
    expected = [int(v) for v in model.predict(ROWS)]

    apply(kube, {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
                 "metadata": {"name": "iris", "namespace": namespace},
                 "spec": {"model": {"uri": f"file://{path}", "format": "sklearn"}, "runtime": {"preset": "mlserver"},
                          "replicas": 1, "resources": {"cpu": "100m", "memory": "256Mi"},
                          "service": {"type": "NodePort"}}})
    svc = wait_for(lambda: client.CoreV1Api(kube).read_namespaced_service("iris", namespace)
                   if _exists(kube, namespace) else None, timeout=60, message="the iris Service")
    assert svc.spec.type == "NodePort"
    port = svc.spec.ports[0].node_port
    first, last = network.node_ports
    assert first <= port <= last

    # MLServer takes several seconds to import and load on a shared machine: generous limit, no timing asserted.
    answer = wait_for(lambda: infer(port, ROWS), timeout=180, message=f"an answer on 127.0.0.1:{port}")
    assert answer["model_name"] == "iris"
    (output,) = answer["outputs"]
    assert output["shape"] == [len(ROWS), 1]
    assert [int(v) for v in output["data"]] == expected
    assert len(set(expected)) == 3  # the rows span all three classes: a constant answer would not pass

    # The pod's Ready is the simulator's (probes are not run here yet). The ModelDeployment turns Ready once its
    # Deployment has rolled out: a preset with no args must not be re-applied forever (an empty args list the API
    # server drops) and stay RollingOut.
    md = wait_for(lambda: _ready(kube, namespace), timeout=90,
                  message=f"iris Ready; Deployment: {_deployment_status(kube, namespace)}")
    assert md["status"]["readyReplicas"] == 1


def _exists(kube, namespace: str) -> bool:
    return any(s.metadata.name == "iris" for s in client.CoreV1Api(kube).list_namespaced_service(namespace).items)


def _ready(kube, namespace: str) -> dict | None:
    md = client.CustomObjectsApi(kube).get_namespaced_custom_object("mlops.dev", "v1alpha1", namespace,
                                                                    "modeldeployments", "iris")
    ready = next((c for c in (md.get("status") or {}).get("conditions", []) if c["type"] == "Ready"), {})
    return md if ready.get("status") == "True" else None


def _deployment_status(kube, namespace: str) -> dict:
    dep = client.AppsV1Api(kube).read_namespaced_deployment("iris", namespace)
    return {"generation": dep.metadata.generation, **dep.status.to_dict()}

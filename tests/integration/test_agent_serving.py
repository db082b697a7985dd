"""The inference agent in a real serving pod: the fetcher (the operator's image), MLServer (its own venv) and the
agent (`mlops-operator agent`, the operator's image) all run as processes in the pod's network namespace.
Requests through the model's NodePort reach the agent, which forwards them to MLServer on 127.0.0.1, counts them
per revision, logs every one of them (sampleRate 1) as Parquet into a folder of this machine (file://), and takes
their ground truth at /v1/feedback.

One ModelDeployment serves the whole module: real processes start slowly. Every request carries its own
X-Request-Id, and the tests remember which ones the agent answered, so the log can be checked for exactly those.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import urllib.error
import urllib.request
import uuid

import pytest
from kubernetes import client

from helpers import Background, apply, wait_for

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [6.7, 3.0, 5.2, 2.3], [4.9, 3.0, 1.4, 0.2]]
METRICS = "agent-metrics"
COMMON_COLUMNS = {"timestamp", "request_id", "revision", "model_uri", "status_code", "latency_seconds", "protocol"}


@dataclasses.dataclass
class Served:
    namespace: str
    port: int  # the model's NodePort: the agent
    metrics_port: int  # a NodePort on the agents' metrics port
    log_dir: object
    uris: dict[str, str]
    expected: list[int]  # the model's own classes for ROWS
    answered: dict[str, int] = dataclasses.field(default_factory=dict)  # request id -> status the agent gave

    def infer(self, request_id: str | None, rows: list[list[float]]) -> tuple[int, dict | None, str] | None:
        """Status, body and echoed request id of one v2 call; None when no agent answered (not yet listening,
        or a connection cut during a rollout)."""
        body = json.dumps({"inputs": [{"name": "features", "shape": [len(rows), len(rows[0])], "datatype": "FP64",
                                       "data": rows}]}).encode()
        headers = {"Content-Type": "application/json"}
        if request_id is not None:
            headers["X-Request-Id"] = request_id
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/v2/models/iris/infer", data=body,
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                answer = (resp.status, json.loads(resp.read()), resp.headers.get("X-Request-Id", ""))
        except urllib.error.HTTPError as err:
            answer = (err.code, None, err.headers.get("X-Request-Id", ""))
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            return None
        if answer[2]:  # the agent's answer (it always returns the id), not some other listener's
            self.answered[answer[2]] = answer[0]
        return answer

    def metrics(self) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as resp:
                return resp.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return ""


def sample(text: str, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if match:
            have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
            if all(have.get(k) == v for k, v in labels.items()):
                total += float(match.group(2))
    return total


def predictions(log_dir):
    import pyarrow.dataset as ds

    if not any(log_dir.glob("date=*/hour=*/*.parquet")):
        return None
    dataset = ds.dataset(str(log_dir), format="parquet", partitioning="hive",
                         ignore_prefixes=["feedback", ".", "_"])
    return dataset.to_table()


def feedback(log_dir):
    import pyarrow.dataset as ds

    if not any((log_dir / "feedback").glob("date=*/hour=*/*.parquet")):
        return None
    return ds.dataset(str(log_dir / "feedback"), format="parquet", partitioning="hive").to_table()


def logged_ids(log_dir) -> set[str]:
    table = predictions(log_dir)
    return set(table.column("request_id").to_pylist()) if table is not None else set()


@pytest.fixture(scope="module")
def served(kube, local_cluster, operator, needs_scheduler, needs_controller_manager, needs_simulator,
           tmp_path_factory):
    net = local_cluster.pod_network() if local_cluster is not None else None
    if net is None:
        pytest.skip("no pod network here (an existing cluster, not root, or no iproute2/iptables): no NodePort")
    from mlops_localcluster import mlserver

    mlserver.ensure(local_cluster.layout.log("mlserver"))
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    features, labels = load_iris(return_X_y=True)
    model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(features, labels)
    root = tmp_path_factory.mktemp("agent")
    (root / "v1").mkdir()
    joblib.dump(model, root / "v1" / "iris.joblib")
    (root / "v2").mkdir()  # the same model under another URI: a rollout whose answers stay comparable
    shutil.copy(root / "v1" / "iris.joblib", root / "v2" / "iris.joblib")
    uris = {v: f"file://{root / v / 'iris.joblib'}" for v in ("v1", "v2")}
    log_dir = root / "log"

    core = client.CoreV1Api(kube)
    namespace = f"t-agent-{uuid.uuid4().hex[:5]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=namespace, labels={"mlops.dev/test": "true"})))
    wait_for(lambda: any(sa.metadata.name == "default" and sa.secrets
                         for sa in core.list_namespaced_service_account(namespace).items),
             timeout=30, message="the default ServiceAccount's token")
    apply(kube, md_manifest(namespace, uris["v1"], f"file://{log_dir}"))
    # How a platform's Prometheus would reach the agents: their named metrics port, here on a NodePort.
    core.create_namespaced_service(namespace, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "iris-agent-metrics"},
        "spec": {"type": "NodePort",
                 "selector": {"mlops.dev/modeldeployment": "iris", "app.kubernetes.io/component": "server"},
                 "ports": [{"name": "metrics", "port": 9091, "targetPort": METRICS}]}})
    svc = wait_for(lambda: next((s for s in core.list_namespaced_service(namespace).items
                                 if s.metadata.name == "iris"), None), timeout=60, message="the iris Service")
    metrics_svc = core.read_namespaced_service("iris-agent-metrics", namespace)
    state = Served(namespace=namespace, port=svc.spec.ports[0].node_port,
                   metrics_port=metrics_svc.spec.ports[0].node_port, log_dir=log_dir, uris=uris,
                   expected=[int(v) for v in model.predict(ROWS)])
    # MLServer takes a while to import and load on a shared machine: generous limit, no timing asserted.
    wait_for(lambda: (lambda a: a is not None and a[0] == 200)(state.infer(f"warm-{uuid.uuid4().hex}", ROWS)),
             timeout=240, interval=1, message=f"an answer through the agent on 127.0.0.1:{state.port}")
    yield state
    core.delete_namespace(namespace)


def md_manifest(namespace: str, model_uri: str, log_uri: str) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "iris", "namespace": namespace},
            "spec": {"model": {"uri": model_uri, "format": "sklearn"}, "runtime": {"preset": "mlserver"},
                     "replicas": 1, "resources": {"cpu": "100m", "memory": "256Mi"},
                     "service": {"type": "NodePort"},
                     "monitoring": {"predictionLog": {"uri": log_uri, "sampleRate": 1, "columns": FEATURES,
                                                      "flushInterval": "2s"}}}}


def test_the_agent_answers_with_the_models_predictions_logs_counts_and_takes_feedback(served, kube):
    uri = served.uris["v1"]
    pod = client.CoreV1Api(kube).list_namespaced_pod(served.namespace, label_selector="mlops.dev/track=stable").items
    assert [c.name for c in pod[0].spec.containers] == ["server", "agent"]
    before = sample(served.metrics(), "mlops_agent_requests_total", revision="stable", code="2xx")

    # One call of four rows, then one call per row: each answered with the model's own classes.
    status, answer, echoed = served.infer("batch-0", ROWS)
    assert (status, echoed) == (200, "batch-0")
    (output,) = answer["outputs"]
    assert [int(v) for v in output["data"]] == served.expected
    assert len(set(served.expected)) == 3  # the rows span all three classes: a constant answer would not pass
    singles = {}
    for i in range(8):
        status, answer, echoed = served.infer(f"one-{i}", [ROWS[i % 4]])
        assert (status, echoed) == (200, f"one-{i}")
        singles[echoed] = int(answer["outputs"][0]["data"][0])
        assert singles[echoed] == served.expected[i % 4]
    status, _, made = served.infer(None, ROWS[:1])  # no id given: the agent makes one and returns it
    assert status == 200 and re.fullmatch(r"[0-9a-f]{32}", made)

    # Metrics: exactly these ten calls more, under this model and revision.
    model_hash = hashlib.sha256(uri.encode()).hexdigest()[:12]
    wait_for(lambda: sample(served.metrics(), "mlops_agent_requests_total", revision="stable", code="2xx")
             - before == 10, timeout=30, message="ten more 2xx requests counted")
    text = served.metrics()
    assert sample(text, "mlops_agent_requests_total", namespace=served.namespace, model="iris", revision="stable",
                  model_hash=model_hash, code="2xx") == sum(1 for s in served.answered.values() if s == 200)
    assert sample(text, "mlops_agent_request_duration_seconds_count", revision="stable") == len(served.answered)
    assert sample(text, "mlops_agent_requests_total", revision="canary") == 0

    # The log: exactly the answered calls (sampleRate 1), one row per input row, in Hive partitions.
    wait_for(lambda: logged_ids(served.log_dir) >= set(served.answered), timeout=60,
             message="every answered request in the prediction log")
    table = predictions(served.log_dir)
    assert logged_ids(served.log_dir) == set(served.answered)
    assert COMMON_COLUMNS | set(FEATURES) | {"output_predict", "date", "hour"} <= set(table.column_names)
    rows = table.to_pylist()
    assert len(rows) == sum(4 if i.startswith(("batch-", "warm-")) else 1 for i in served.answered)
    by_id: dict[str, list[dict]] = {}
    for row in rows:
        by_id.setdefault(row["request_id"], []).append(row)
    batch = by_id["batch-0"]
    assert [[r[f] for f in FEATURES] for r in batch] == ROWS
    assert [int(r["output_predict"]) for r in batch] == served.expected
    assert {(r["revision"], r["model_uri"], r["status_code"], r["protocol"]) for r in batch} == {
        ("stable", uri, 200, "v2")}
    assert all(r["latency_seconds"] > 0 for r in rows)
    for path in served.log_dir.glob("date=*/hour=*/*.parquet"):
        relative = path.relative_to(served.log_dir).as_posix()
        assert re.fullmatch(r"date=\d{4}-\d{2}-\d{2}/hour=\d{2}/stable-iris-[a-z0-9-]+-\d+\.parquet", relative), \
            relative
    assert sample(served.metrics(), "mlops_agent_dropped_records_total") == 0

    # Feedback: the true classes of the single-row calls, joined to their predictions by request id.
    labels = {f"one-{i}": i % 3 for i in range(8)}  # the caller's truth, not the model's
    req = urllib.request.Request(
        f"http://127.0.0.1:{served.port}/v1/feedback", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"feedback": [{"request_id": rid, "label": label} for rid, label in labels.items()]}).encode())
    with urllib.request.urlopen(req, timeout=15) as resp:
        assert resp.status == 202 and json.loads(resp.read()) == {"accepted": len(labels)}
    got = wait_for(lambda: (lambda t: t if t is not None and t.num_rows == len(labels) else None)(
        feedback(served.log_dir)), timeout=60, message="the feedback rows")
    assert {"timestamp", "request_id", "label"} <= set(got.column_names)
    joined = predictions(served.log_dir).join(got.select(["request_id", "label"]), "request_id",
                                              join_type="inner").to_pylist()
    assert len(joined) == len(labels)
    assert {r["request_id"]: (int(r["output_predict"]), r["label"]) for r in joined} == {
        rid: (prediction, labels[rid]) for rid, prediction in singles.items()}


def test_a_rolling_update_loses_no_logged_row(served, kube):
    sent: list[str] = []

    def call() -> None:
        request_id = f"roll-{len(sent)}"
        sent.append(request_id)
        served.infer(request_id, ROWS[:1])

    apps = client.AppsV1Api(kube)
    core = client.CoreV1Api(kube)
    old_pods = {p.metadata.name for p in core.list_namespaced_pod(served.namespace,
                                                                  label_selector="mlops.dev/track=stable").items}
    with Background(call, interval=0.05):
        wait_for(lambda: len(sent) > 20, timeout=60, message="requests before the rollout")
        apply(kube, md_manifest(served.namespace, served.uris["v2"], f"file://{served.log_dir}"))

        def rolled() -> bool:
            dep = apps.read_namespaced_deployment("iris", served.namespace)
            pods = core.list_namespaced_pod(served.namespace, label_selector="mlops.dev/track=stable").items
            return (dep.status.updated_replicas == 1 and dep.status.ready_replicas == 1
                    and not {p.metadata.name for p in pods} & old_pods)

        wait_for(rolled, timeout=300, interval=1, message="the new pod serving and the old one gone")
        mark = len(sent)
        wait_for(lambda: any(served.answered.get(f"roll-{i}") == 200 for i in range(mark, len(sent))),
                 timeout=60, message="answers from the new pod")
    roll_answered = {rid for rid in served.answered if rid.startswith("roll-")}
    assert roll_answered, "no request was answered during the rollout"
    # Every answered call is in the log: the old agent wrote what it held when it was stopped.
    wait_for(lambda: logged_ids(served.log_dir) >= roll_answered, timeout=60,
             message=f"every answered rollout request logged; missing "
                     f"{sorted(roll_answered - logged_ids(served.log_dir))[:10]}")
    rows = [r for r in predictions(served.log_dir).to_pylist() if r["request_id"].startswith("roll-")]
    assert {r["request_id"] for r in rows} == roll_answered
    assert len(rows) == len(roll_answered)  # one row per call, none written twice
    assert {r["model_uri"] for r in rows} == set(served.uris.values())  # both pods' rows are there

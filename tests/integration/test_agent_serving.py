"""The inference agent in a real serving pod: the fetcher (the operator's image), MLServer (its own venv) and the
agent (`mlops-operator agent`, the operator's image) all run as processes in the pod's network namespace.
Requests through the model's NodePort reach the agent, which forwards them to MLServer on 127.0.0.1, counts them
per revision, logs every one of them (sampleRate 1) as Parquet into a folder of this machine (file://), and takes
their ground truth at /v1/feedback.

One ModelDeployment (`iris`) serves most of the module: real processes start slowly. Two more start beside it in
the same namespace, for their own tests: `iris-s3` logs to s3:// on an S3 server running as a pod, and `stream`
runs a streaming server (stream_server.py) in a custom runtime. Every request carries its own X-Request-Id, and
the tests remember which ones the agent answered, so the log can be checked for exactly those.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import pathlib
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
BUCKET = "mlops-logs"
IRIS_STABLE = "mlops.dev/modeldeployment=iris,mlops.dev/track=stable"  # other stories share the namespace
S3_KEYS = {"AWS_ACCESS_KEY_ID": "mlops", "AWS_SECRET_ACCESS_KEY": "mlops-secret", "AWS_DEFAULT_REGION": "us-east-1"}
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
    model: str = "iris"
    s3_port: int = 0  # the S3 server's NodePort (the s3:// story, started beside the first model)

    def infer(self, request_id: str | None, rows: list[list[float]]) -> tuple[int, dict | None, str] | None:
        """Status, body and echoed request id of one v2 call; None when no agent answered (not yet listening,
        or a connection cut during a rollout)."""
        body = json.dumps({"inputs": [{"name": "features", "shape": [len(rows), len(rows[0])], "datatype": "FP64",
                                       "data": rows}]}).encode()
        headers = {"Content-Type": "application/json"}
        if request_id is not None:
            headers["X-Request-Id"] = request_id
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/v2/models/{self.model}/infer", data=body,
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
    apply(kube, metrics_service(namespace, "iris"))
    # The other stories' pods start while the first model warms up.
    s3_port = start_s3_story(kube, namespace, uris["v1"])
    start_stream_story(kube, namespace, uris["v1"], f"file://{root / 'stream-log'}")
    svc = wait_for(lambda: next((s for s in core.list_namespaced_service(namespace).items
                                 if s.metadata.name == "iris"), None), timeout=60, message="the iris Service")
    metrics_svc = core.read_namespaced_service("iris-agent-metrics", namespace)
    state = Served(namespace=namespace, port=svc.spec.ports[0].node_port,
                   metrics_port=metrics_svc.spec.ports[0].node_port, log_dir=log_dir, uris=uris,
                   expected=[int(v) for v in model.predict(ROWS)], s3_port=s3_port)
    # MLServer takes a while to import and load on a shared machine: generous limit, no timing asserted.
    wait_for(lambda: (lambda a: a is not None and a[0] == 200)(state.infer(f"warm-{uuid.uuid4().hex}", ROWS)),
             timeout=240, interval=1, message=f"an answer through the agent on 127.0.0.1:{state.port}")
    yield state
    core.delete_namespace(namespace)


def metrics_service(namespace: str, model: str) -> dict:
    """How a platform's Prometheus would reach the agents: their named metrics port, here on a NodePort."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"{model}-agent-metrics", "namespace": namespace},
            "spec": {"type": "NodePort",
                     "selector": {"mlops.dev/modeldeployment": model, "app.kubernetes.io/component": "server"},
                     "ports": [{"name": "metrics", "port": 9091, "targetPort": METRICS, "protocol": "TCP"}]}}


def s3_pod(namespace: str) -> dict:
    """An S3 protocol server (moto's server mode, from the project's environment) as a pod: its objects live in its
    process, so a new pod is an empty store."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "s3", "namespace": namespace, "labels": {"app": "s3"}},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "s3", "image": "python:3.11",
                                     "command": ["python", "-m", "moto.server", "-H", "0.0.0.0", "-p", "5000"],
                                     "ports": [{"name": "s3", "containerPort": 5000, "protocol": "TCP"}],
                                     "readinessProbe": {"tcpSocket": {"port": "s3"}, "periodSeconds": 1}}]}}


def start_s3_story(kube, namespace: str, model_uri: str) -> int:
    """The S3 server's pod and Service, and a second ModelDeployment (`iris-s3`) logging to s3:// on it, with the
    credentials and endpoint in one Secret, as a platform hands them out. Returns the Service's NodePort, through
    which the test reaches the same server."""
    apply(kube, s3_pod(namespace))
    svc = apply(kube, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s3", "namespace": namespace},
                       "spec": {"type": "NodePort", "selector": {"app": "s3"},
                                "ports": [{"name": "s3", "port": 5000, "targetPort": "s3", "protocol": "TCP"}]}})
    apply(kube, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials", "namespace": namespace},
                 "stringData": {**S3_KEYS, "AWS_ENDPOINT_URL": f"http://{svc['spec']['clusterIP']}:5000"}})
    md = md_manifest(namespace, model_uri, f"s3://{BUCKET}/iris", name="iris-s3")
    md["spec"]["monitoring"]["predictionLog"]["secretRef"] = {"name": "s3-credentials"}
    apply(kube, md)
    apply(kube, metrics_service(namespace, "iris-s3"))
    return int(svc["spec"]["ports"][0]["nodePort"])


def start_stream_story(kube, namespace: str, model_uri: str, log_uri: str) -> None:
    """A ModelDeployment `stream` of the custom runtime: stream_server.py (a server that streams OpenAI-style
    completions) in a python:3.11 container, its code from a ConfigMap; the agent beside it logs payloads."""
    code = (pathlib.Path(__file__).parent / "stream_server.py").read_text()
    apply(kube, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "stream-server", "namespace": namespace},
                 "data": {"server.py": code}})
    md = md_manifest(namespace, model_uri, log_uri, name="stream")
    md["spec"]["runtime"] = {
        "preset": "custom", "image": "python:3.11", "port": 8080, "args": ["python", "-c", "$(SERVER_PY)"],
        "env": [{"name": "SERVER_PY", "valueFrom": {"configMapKeyRef": {"name": "stream-server", "key": "server.py"}}}]}
    md["spec"]["monitoring"]["predictionLog"].update(logPayloads=True, columns=[])
    apply(kube, md)


def md_manifest(namespace: str, model_uri: str, log_uri: str, name: str = "iris") -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"model": {"uri": model_uri, "format": "sklearn"}, "runtime": {"preset": "mlserver"},
                     "replicas": 1, "resources": {"cpu": "100m", "memory": "256Mi"},
                     "service": {"type": "NodePort"},
                     "monitoring": {"predictionLog": {"uri": log_uri, "sampleRate": 1, "columns": FEATURES,
                                                      "flushInterval": "2s"}}}}


def test_the_agent_answers_with_the_models_predictions_logs_counts_and_takes_feedback(served, kube):
    uri = served.uris["v1"]
    pod = client.CoreV1Api(kube).list_namespaced_pod(served.namespace, label_selector=IRIS_STABLE).items
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
                                                                  label_selector=IRIS_STABLE).items}
    with Background(call, interval=0.05):
        wait_for(lambda: len(sent) > 20, timeout=60, message="requests before the rollout")
        apply(kube, md_manifest(served.namespace, served.uris["v2"], f"file://{served.log_dir}"))

        def rolled() -> bool:
            dep = apps.read_namespaced_deployment("iris", served.namespace)
            pods = core.list_namespaced_pod(served.namespace, label_selector=IRIS_STABLE).items
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


class S3Log:
    """The s3:// prediction log as this test reads it, through the S3 Service's NodePort: request ids per object
    (objects are written once, whole, so each is read once)."""

    def __init__(self, port: int) -> None:
        s3fs = pytest.importorskip("s3fs")
        self.fs = s3fs.S3FileSystem(key=S3_KEYS["AWS_ACCESS_KEY_ID"], secret=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
                                    client_kwargs={"endpoint_url": f"http://127.0.0.1:{port}"},
                                    skip_instance_cache=True)
        self.ids: dict[str, list[str]] = {}

    def make_bucket(self) -> bool:
        try:
            self.fs.invalidate_cache()
            if not self.fs.exists(BUCKET):
                self.fs.mkdir(BUCKET)
            return True
        except Exception:  # noqa: BLE001  (the server not answering yet: asked again)
            return False

    def rows(self) -> list[str]:
        """The request id of every logged row, read from the objects not read before."""
        import pyarrow.parquet as pq

        self.fs.invalidate_cache()
        for key in self.fs.find(f"{BUCKET}/iris"):
            if key.endswith(".parquet") and "/feedback/" not in key and key not in self.ids:
                assert re.search(r"/iris/date=\d{4}-\d{2}-\d{2}/hour=\d{2}/stable-iris-s3-[a-z0-9-]+-\d+\.parquet$",
                                 key), key
                with self.fs.open(key) as file:
                    self.ids[key] = pq.read_table(file, columns=["request_id"]).column("request_id").to_pylist()
        return [rid for ids in self.ids.values() for rid in ids]

    def forget(self) -> None:
        """The store was replaced by an empty one."""
        self.ids.clear()


def test_the_log_on_s3_from_a_serving_pod_survives_its_storage_going_away(served, kube):
    """The agent of a second ModelDeployment logs to s3:// on an S3 server running as a pod, with credentials and
    endpoint from a Secret. The server's pod is then deleted under load: every request is still answered, the
    rows that could not be written are counted as dropped (sink_error), and when a new server pod is up (an empty
    store: moto keeps its objects in its process) the log is written again, without another drop."""
    core = client.CoreV1Api(kube)
    ns = served.namespace
    log = S3Log(served.s3_port)
    wait_for(log.make_bucket, timeout=120, interval=1, message=f"the S3 server's bucket on 127.0.0.1:{served.s3_port}")
    svc = wait_for(lambda: next((s for s in core.list_namespaced_service(ns).items if s.metadata.name == "iris-s3"),
                                None), timeout=60, message="the iris-s3 Service")
    s3 = Served(namespace=ns, port=svc.spec.ports[0].node_port,
                metrics_port=core.read_namespaced_service("iris-s3-agent-metrics", ns).spec.ports[0].node_port,
                log_dir=None, uris=served.uris, expected=served.expected, model="iris-s3")
    wait_for(lambda: (lambda a: a is not None and a[0] == 200)(s3.infer(f"warm-{uuid.uuid4().hex}", ROWS)),
             timeout=240, interval=1, message=f"an answer through iris-s3's agent on 127.0.0.1:{s3.port}")
    pod = core.list_namespaced_pod(ns, label_selector="mlops.dev/modeldeployment=iris-s3").items[0]
    agent = next(c for c in pod.spec.containers if c.name == "agent")
    assert {e.secret_ref.name for e in agent.env_from or [] if e.secret_ref} == {"s3-credentials"}
    assert "mlops-secret" not in json.dumps([agent.args, agent.command])  # credentials never in args

    # Before: each answered call is logged, with the model's predictions, on s3://.
    for i in range(10):
        status, answer, echoed = s3.infer(f"s3-a-{i}", [ROWS[i % 4]])
        assert (status, echoed) == (200, f"s3-a-{i}")
        assert int(answer["outputs"][0]["data"][0]) == served.expected[i % 4]
    wait_for(lambda: {f"s3-a-{i}" for i in range(10)} <= set(log.rows()), timeout=60,
             message="the first calls in the s3:// log")
    assert sample(s3.metrics(), "mlops_agent_dropped_records_total") == 0

    sent: list[str] = []

    def call() -> None:
        request_id = f"s3-b-{len(sent)}"
        sent.append(request_id)
        s3.infer(request_id, ROWS[:1])

    def dropped() -> float:
        return sample(s3.metrics(), "mlops_agent_dropped_records_total", reason="sink_error")

    with Background(call, interval=0.05):
        wait_for(lambda: len(sent) > 20, timeout=60, message="requests before the storage goes away")
        core.delete_namespaced_pod("s3", ns, grace_period_seconds=0)
        log.forget()
        # Storage gone: the agent retries with back-off, then drops and counts; requests go on being answered.
        wait_for(lambda: dropped() > 0, timeout=180, interval=1, message="rows dropped with reason sink_error")
        failures = sample(s3.metrics(), "mlops_agent_sink_write_failures_total")
        assert failures >= 1
        wait_for(lambda: core.list_namespaced_pod(ns, label_selector="app=s3").items == [], timeout=60,
                 message="the old S3 pod gone")
        apply(kube, s3_pod(ns))
        wait_for(log.make_bucket, timeout=120, interval=1, message="the new S3 server's bucket")
        back = len(sent)
        # Writes resume: a call made after the store came back is in the log.

        def resumed() -> int | None:
            logged = set(log.rows())
            return next((i for i in range(back, len(sent)) if f"s3-b-{i}" in logged), None)

        first = wait_for(resumed, timeout=120, interval=1, message="a call made after the storage came back, logged")
        drops_then = dropped()
        wait_for(lambda: len(sent) > first + 40, timeout=60, message="more calls after the writes resumed")
    end = len(sent)
    assert [rid for rid in sent if s3.answered.get(rid) != 200] == [], "a request was not answered with 200"
    after = {f"s3-b-{i}" for i in range(first, end)}
    wait_for(lambda: after <= set(log.rows()), timeout=60,
             message=f"every call since the writes resumed logged; missing {sorted(after - set(log.rows()))[:5]}")
    logged = log.rows()
    assert len(logged) == len(set(logged))  # none written twice
    assert set(logged) <= set(s3.answered)
    assert dropped() == drops_then  # nothing dropped once the storage was back
    assert sample(s3.metrics(), "mlops_agent_requests_total", code="5xx") == 0
    print(f"s3 outage: {len(sent)} calls, all answered 200; {drops_then:.0f} rows dropped (sink_error) after "
          f"{failures:.0f} failed writes; writes resumed from call {first} (the store was back at call {back})")


def test_a_streamed_answer_passes_through_a_serving_pod_chunk_by_chunk_and_is_logged(served, kube):
    """Through the Service, the agent and a real streaming server in the pod: the server sends its first event
    and then waits for /release, which the test posts only once that first event has reached it. An agent that
    buffered the stream would hold that event back, the test would never release the rest, and its read would
    time out. Then the whole answer is compared byte for byte, and the log holds the call's summary."""
    from stream_server import WORDS, events

    core = client.CoreV1Api(kube)
    svc = wait_for(lambda: next((s for s in core.list_namespaced_service(served.namespace).items
                                 if s.metadata.name == "stream"), None), timeout=60, message="the stream Service")
    port = svc.spec.ports[0].node_port

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                return resp.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    wait_for(ready, timeout=240, interval=1, message=f"the streaming server through its agent on 127.0.0.1:{port}")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/v1/completions", headers={"Content-Type": "application/json", "X-Request-Id": "stream-1"},
                 body=json.dumps({"model": "story", "prompt": "What is drift?", "stream": True}))
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("X-Request-Id") == "stream-1"
    assert resp.getheader("Content-Length") is None and resp.getheader("Content-Type") == "text/event-stream"
    want = events("story")
    first = b""
    while not first.endswith(b"\n\n"):  # a socket timeout here: the first event was held back
        chunk = resp.read1(65536)
        assert chunk, "the stream ended before its first event"
        first += chunk
    assert first == want[0]
    with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/release", data=b"{}",
                                                       method="POST"), timeout=15) as release:
        assert release.status == 200
    rest = resp.read()
    conn.close()
    assert first + rest == b"".join(want)

    log_dir = served.log_dir.parent / "stream-log"
    row = wait_for(lambda: next((r for r in (lambda t: t.to_pylist() if t is not None else [])(predictions(log_dir))
                                 if r["request_id"] == "stream-1"), None),
                   timeout=60, message="the streamed call in the log")
    assert (row["protocol"], row["stream"], row["finish_reason"], row["status_code"]) == ("openai", True, "stop", 200)
    assert (row["prompt"], row["completion"]) == ("What is drift?", "".join(WORDS))
    assert (row["prompt_tokens"], row["completion_tokens"]) == (3, len(WORDS))
    assert row["revision"] == "stable" and row["model"] == "story"

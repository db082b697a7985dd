"""Pods of the upstream Prometheus and Alertmanager images run Debian's binaries as processes in their pod
network namespaces (simprocess.DEBIAN_IMAGES): a Prometheus Deployment scrapes a Python pod by its pod IP with
the config of a ConfigMap, and an Alertmanager Deployment takes an alert; both are reached from the host through
their NodePort Services, as a person would reach them."""

from __future__ import annotations

import json
import textwrap
import urllib.error
import urllib.request

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from helpers import wait_for

pytestmark = [pytest.mark.cluster,
              pytest.mark.usefixtures("needs_scheduler", "needs_simulator", "needs_controller_manager")]

# Answers /metrics with a counter of the scrapes it served, on every address of the pod.
METRICS = textwrap.dedent("""
    import http.server, itertools
    scrapes = itertools.count(1)
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/metrics":
                self.send_response(404); self.end_headers(); return
            body = f"# TYPE demo_scrapes_total counter\\ndemo_scrapes_total {next(scrapes)}\\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    http.server.ThreadingHTTPServer(("", 8000), H).serve_forever()
""")
ALERTMANAGER_CONFIG = "route: {receiver: drop, group_wait: 1s}\nreceivers: [{name: drop}]\n"


@pytest.fixture(scope="module")
def net(local_cluster, needs_simulator, needs_scheduler):
    network = local_cluster.pod_network() if local_cluster is not None else None
    if network is None:
        pytest.skip("no pod network here (an existing cluster, not root, or no iproute2/iptables): NodePorts "
                    "do not answer on the host")
    return network


@pytest.fixture
def core(kube):
    return client.CoreV1Api(kube)


def ready_probe(port: int) -> dict:
    return {"httpGet": {"path": "/-/ready", "port": port}, "periodSeconds": 1, "failureThreshold": 1}


def deployment(name: str, container: dict, volumes: list[dict]) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": {
        "replicas": 1, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
            "containers": [{"name": name, **container}], "volumes": volumes,
            "automountServiceAccountToken": False}}}}


def node_port(core, namespace: str, name: str, port: int) -> int:
    core.create_namespaced_service(namespace, {"metadata": {"name": name}, "spec": {
        "type": "NodePort", "selector": {"app": name}, "ports": [{"port": port, "targetPort": port}]}})
    return core.read_namespaced_service(name, namespace).spec.ports[0].node_port


def ready_pod(core, namespace: str, app: str):
    """The app's one pod once it is Ready and its Service has it as a ready endpoint (the probe passed)."""
    def ready():
        pods = core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
        ready_pods = [p for p in pods if any(c.type == "Ready" and c.status == "True"
                                             for c in p.status.conditions or [])]
        try:
            endpoints = core.read_namespaced_endpoints(app, namespace)
        except ApiException as exc:
            if exc.status == 404:  # the endpoints controller has not made them yet
                return None
            raise
        ips = [a.ip for s in endpoints.subsets or [] for a in s.addresses or []]
        return ready_pods[0] if len(ready_pods) == 1 and ips == [ready_pods[0].status.pod_ip] else None
    return wait_for(ready, timeout=120, interval=0.5, message=f"the {app} pod Ready and its endpoint")


def http_json(url: str, body: object = None):
    """JSON from `url` (POSTing `body` as JSON when given), or None while the server cannot answer yet."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    return json.loads(text) if text else {}


def query(port: int, promql: str) -> list[dict]:
    answer = http_json(f"http://127.0.0.1:{port}/api/v1/query?query={urllib.request.quote(promql)}") or {}
    return answer.get("data", {}).get("result", [])


def test_prometheus_pod_scrapes_a_pod_by_its_ip_and_answers_on_its_node_port(kube, core, namespace, net):
    core.create_namespaced_pod(namespace, {"metadata": {"name": "app", "labels": {"role": "metrics"}}, "spec": {
        "containers": [{"name": "app", "image": "python:3.11", "command": ["python", "-c", METRICS]}],
        "automountServiceAccountToken": False}})
    app_ip = wait_for(lambda: core.read_namespaced_pod("app", namespace).status.pod_ip, timeout=60,
                      message="the metrics pod's IP")
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [{"job_name": "app", "static_configs": [{"targets": [f"{app_ip}:8000"]}]}]}
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "prometheus"},
                                                  "data": {"prometheus.yml": json.dumps(config)}})
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, deployment("prometheus", {
        "image": "prom/prometheus:v2.42.0",
        "args": ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"],
        "ports": [{"containerPort": 9090}], "readinessProbe": ready_probe(9090),
        "volumeMounts": [{"name": "config", "mountPath": "/etc/prometheus"},
                         {"name": "data", "mountPath": "/prometheus"}]},
        [{"name": "config", "configMap": {"name": "prometheus"}}, {"name": "data", "emptyDir": {}}]))
    port = node_port(core, namespace, "prometheus", 9090)

    pod = ready_pod(core, namespace, "prometheus")
    assert pod.metadata.labels["sim.mlops.dev/runs"] == "process"
    up = wait_for(lambda: [r for r in query(port, "up") if r["value"][1] == "1"], timeout=60, interval=1,
                  message="the target up=1 in Prometheus' answer on its NodePort")
    assert [(r["metric"]["job"], r["metric"]["instance"]) for r in up] == [("app", f"{app_ip}:8000")]
    scrapes = wait_for(lambda: query(port, "demo_scrapes_total"), timeout=30, interval=1,
                       message="the pod's own counter in Prometheus")
    assert float(scrapes[0]["value"][1]) >= 1


def test_alertmanager_pod_takes_an_alert_through_its_node_port(kube, core, namespace, net):
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "alertmanager"},
                                                  "data": {"alertmanager.yml": ALERTMANAGER_CONFIG}})
    # no command and no args: the image's ENTRYPOINT and CMD, its storage in the image's own /alertmanager
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, deployment("alertmanager", {
        "image": "prom/alertmanager:v0.25.0", "ports": [{"containerPort": 9093}],
        "readinessProbe": ready_probe(9093),
        "volumeMounts": [{"name": "config", "mountPath": "/etc/alertmanager"}]},
        [{"name": "config", "configMap": {"name": "alertmanager"}}]))
    port = node_port(core, namespace, "alertmanager", 9093)

    pod = ready_pod(core, namespace, "alertmanager")
    assert pod.metadata.labels["sim.mlops.dev/runs"] == "process"
    base = f"http://127.0.0.1:{port}/api/v2/alerts"
    alert = {"labels": {"alertname": "ModelDrift", "driftmonitor": "iris"}, "annotations": {"summary": "drift"}}
    wait_for(lambda: http_json(base, [alert]) is not None, timeout=60, interval=1,
             message="Alertmanager to accept the alert on its NodePort")
    listed = wait_for(lambda: [a for a in http_json(base) or [] if a["labels"].get("driftmonitor") == "iris"],
                      timeout=30, interval=1, message="the alert listed by GET /api/v2/alerts")
    assert listed[0]["labels"]["alertname"] == "ModelDrift" and listed[0]["status"]["state"] == "active"

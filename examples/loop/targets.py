"""Prometheus' view of the inference agents for a Prometheus built without Kubernetes service discovery (Debian's
build leaves it out; with the upstream image use `kubernetes_sd_configs` with role pod instead): serves, on
127.0.0.1:8000/targets, the HTTP service discovery list of the Running pods of NAMESPACE that have a container
port named agent-metrics, each with a `pod` label. It runs beside Prometheus in its pod (they share localhost).
"""

from __future__ import annotations

import http.server
import json
import os

from kubernetes import client, config

NAMESPACE = os.environ["NAMESPACE"]
PORT_NAME = "agent-metrics"


def targets() -> list[dict]:
    found = []
    for pod in client.CoreV1Api().list_namespaced_pod(NAMESPACE).items:
        if pod.status.phase != "Running" or not pod.status.pod_ip:
            continue
        for container in pod.spec.containers:
            for port in container.ports or []:
                if port.name == PORT_NAME:
                    found.append({"targets": [f"{pod.status.pod_ip}:{port.container_port}"],
                                  "labels": {"pod": pod.metadata.name}})
    return found


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the standard library's name
        body = json.dumps(targets()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    config.load_kube_config() if os.environ.get("KUBECONFIG") else config.load_incluster_config()
    http.server.ThreadingHTTPServer(("127.0.0.1", 8000), Handler).serve_forever()

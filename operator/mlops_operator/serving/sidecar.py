"""The inference agent in a serving pod (`mlops-operator agent`, operator/mlops_operator/agent/): its container, its
prediction log volume, and the pod annotations that point Prometheus at its metrics. Pure: no I/O.

The agent is configured through its MLOPS_AGENT_* environment only (docs/agent.md): the storage credentials of
`predictionLog.secretRef` arrive as envFrom, so no secret is ever an argument.

Port names: the Service always targets the port named `http`. With the agent that is the agent's port, and the
model server's is named `server`; without it, the server's own. Turning the agent on or off therefore rolls the
pods over without an endpoint gap: each pod, old or new, is reached on its own `http` port.

A `pvc://claim/path` log is the claim mounted read-write into the agent alone, written as a local folder; the
other schemes (file, s3, gs) go to fsspec as they are.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..api.common import duration_seconds
from ..api.modeldeployment import (
    AGENT_CPU,
    AGENT_MEMORY,
    AGENT_METRICS_PORT,
    AGENT_PORT,
    Model,
    ModelDeploymentSpec,
)
from ..podspec.security import container_security_context
from ..settings import Settings

AGENT = "agent"
PORT_NAME = "http"  # the Service's targetPort, in either case
SERVER_PORT_NAME = "server"
METRICS_PORT_NAME = "agent-metrics"
LOG_VOLUME, LOG_DIR = "prediction-log", "/var/lib/mlops/prediction-log"
# The agent writes what it buffered within its grace; the pod's grace leaves it a margin before the SIGKILL.
TERMINATION_GRACE_SECONDS = 30
AGENT_GRACE_SECONDS = 25
SCRAPE_ANNOTATIONS = {"prometheus.io/scrape": "true", "prometheus.io/port": str(AGENT_METRICS_PORT),
                      "prometheus.io/path": "/metrics"}


def _log_uri(uri: str) -> str:
    """Where the agent writes: a pvc:// log is the mounted claim's folder, every other URI fsspec's to open."""
    parts = urlsplit(uri)
    if parts.scheme != "pvc":
        return uri
    sub_path = parts.path.strip("/")
    return f"{LOG_DIR}/{sub_path}" if sub_path else LOG_DIR


def volumes(spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    """The prediction log's claim, for a pvc:// log."""
    log = spec.monitoring.prediction_log if spec.monitoring else None
    if log is None or urlsplit(log.uri).scheme != "pvc":
        return []
    return [{"name": LOG_VOLUME, "persistentVolumeClaim": {"claimName": urlsplit(log.uri).netloc}}]


def _health(path: str = "/healthz") -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": AGENT_METRICS_PORT}, "periodSeconds": 5, "timeoutSeconds": 5,
            "failureThreshold": 3}


def container(body: dict, spec: ModelDeploymentSpec, model: Model, track: str, upstream_port: int,
              settings: Settings) -> dict[str, Any]:
    """The agent container of a `track` (stable or canary) pod serving `model` on 127.0.0.1:`upstream_port`."""
    md = body["metadata"]
    values = {
        "UPSTREAM_PORT": str(upstream_port),
        "LISTEN": f"0.0.0.0:{AGENT_PORT}",
        "METRICS_PORT": str(AGENT_METRICS_PORT),
        "NAMESPACE": md["namespace"],
        "MODEL": md["name"],
        "REVISION": track,
        "MODEL_URI": model.uri,
        "GRACE_SECONDS": str(AGENT_GRACE_SECONDS),
    }
    log = spec.monitoring.prediction_log if spec.monitoring else None
    if log is not None:
        values |= {"LOG_URI": _log_uri(log.uri), "SAMPLE_RATE": f"{log.sample_rate:g}",
                   "LOG_PAYLOADS": "true" if log.log_payloads else "false"}
        if log.columns:
            values["COLUMNS"] = ",".join(log.columns)
        if log.flush_interval is not None:
            values["BATCH_SECONDS"] = str(duration_seconds(log.flush_interval))
    env: list[dict[str, Any]] = [{"name": f"MLOPS_AGENT_{k}", "value": v} for k, v in values.items()]
    env.append({"name": "MLOPS_AGENT_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    own = spec.agent.resources
    fixed = {"cpu": str(own.cpu or AGENT_CPU), "memory": str(own.memory or AGENT_MEMORY)}
    agent: dict[str, Any] = {
        "name": AGENT,
        "image": settings.inference_agent_image,
        "command": ["mlops-operator", "agent"],
        "ports": [{"name": PORT_NAME, "containerPort": AGENT_PORT, "protocol": "TCP"},
                  {"name": METRICS_PORT_NAME, "containerPort": AGENT_METRICS_PORT, "protocol": "TCP"}],
        "env": env,
        "readinessProbe": _health(),
        "livenessProbe": {**_health(), "periodSeconds": 10, "failureThreshold": 6},
        "resources": {"requests": fixed, "limits": dict(fixed)},
        "securityContext": {**container_security_context(), "readOnlyRootFilesystem": True},
    }
    if log is not None and log.secret_ref is not None:
        agent["envFrom"] = [{"secretRef": {"name": log.secret_ref.name}}]
    if volumes(spec):
        agent["volumeMounts"] = [{"name": LOG_VOLUME, "mountPath": LOG_DIR}]
    return agent

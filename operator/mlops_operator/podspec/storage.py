"""Model storage for serving pods: pvc:// mounts the claim read-only; every other scheme is fetched by an init
container of the operator's own image (`mlops-operator fetch-model`) into an emptyDir the server reads."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..api.modeldeployment import Model
from .security import container_security_context

MODEL_DIR = "/mnt/models"
MODEL_VOLUME = "model"


def model_storage(model: Model, operator_image: str) -> tuple[list[dict], list[dict], dict]:
    """(volumes, init containers, the server's volume mount) for serving `model`."""
    parts = urlsplit(model.uri)
    mount: dict[str, Any] = {"name": MODEL_VOLUME, "mountPath": MODEL_DIR, "readOnly": True}
    if parts.scheme == "pvc":
        sub_path = parts.path.lstrip("/")
        volume = {"name": MODEL_VOLUME, "persistentVolumeClaim": {"claimName": parts.netloc, "readOnly": True}}
        if sub_path:
            mount["subPath"] = sub_path
        return [volume], [], mount
    fetcher: dict[str, Any] = {
        "name": "fetch-model",
        "image": operator_image,
        "command": ["mlops-operator", "fetch-model", "--uri", model.uri, "--dest", MODEL_DIR],
        "volumeMounts": [{"name": MODEL_VOLUME, "mountPath": MODEL_DIR}],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
        "securityContext": container_security_context(),
        # The kubelet then puts the tail of the fetcher's stderr (which names the URI and the error) into
        # lastState.terminated.message: the status reports ModelFetchFailed with it.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if model.secret_ref is not None:
        fetcher["envFrom"] = [{"secretRef": {"name": model.secret_ref.name}}]
    return [{"name": MODEL_VOLUME, "emptyDir": {}}], [fetcher], mount

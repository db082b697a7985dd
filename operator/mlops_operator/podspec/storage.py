"""Model storage for serving pods: pvc:// mounts the claim read-only; every other scheme is fetched by an init
container of the operator's own image (`mlops-operator fetch-model`) into an emptyDir the server reads.

With `model.size` the emptyDir gets it as its sizeLimit and the server container (which holds the volume for the
pod's life) an ephemeral-storage request of it, so the scheduler counts the model against the node's disk
instead of finding out through DiskPressure. The fetcher unpacks .tar.gz archives as they stream in and stages a
.zip outside the volume, so the volume never holds an archive beside its contents.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from ..api.modeldeployment import Model
from .security import container_security_context

MODEL_DIR = "/mnt/models"
MODEL_VOLUME = "model"


def model_path(uri: str) -> str:
    """Where the server finds the fetched model: the file a one-file URI lands as (the fetcher keeps its name), else
    the model folder (a folder, an unpacked archive, or a pvc:// mount)."""
    parts = urlsplit(uri)
    name = PurePosixPath(parts.path).name
    if parts.scheme == "pvc" or not PurePosixPath(name).suffix or name.endswith((".tar.gz", ".tgz", ".zip")):
        return MODEL_DIR
    return f"{MODEL_DIR}/{name}"


def ephemeral_storage(model: Model) -> dict[str, str]:
    """The server container's ephemeral-storage request for the fetched model: none for pvc:// or no size."""
    if model.size is None or urlsplit(model.uri).scheme == "pvc":
        return {}
    return {"ephemeral-storage": str(model.size)}


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
    empty_dir = {} if model.size is None else {"sizeLimit": str(model.size)}
    return [{"name": MODEL_VOLUME, "emptyDir": empty_dir}], [fetcher], mount

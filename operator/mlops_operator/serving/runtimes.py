"""Runtime presets: image, port, arguments and readiness probe per model server; the spec overrides any of them.

The probe paths are each server's documented health endpoint: vLLM `/health`, Triton `/v2/health/ready`,
KServe's sklearn server `/v1/models/<name>` (ready once the model is loaded). `custom` probes the TCP port.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..api.modeldeployment import Runtime, RuntimeOverrides
from ..podspec.storage import MODEL_DIR
from ..settings import Settings


@dataclasses.dataclass(frozen=True)
class ResolvedRuntime:
    image: str
    port: int
    command: list[str] | None
    args: list[str]
    env: list[dict[str, Any]]
    probe: dict[str, Any]


def _http_probe(path: str, port: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": 5, "failureThreshold": 3}


def resolve(runtime: Runtime, model_name: str, settings: Settings,
            overrides: RuntimeOverrides | None = None) -> ResolvedRuntime:
    """The container the server runs in, from the preset, the spec, then (for a canary) its overrides."""
    preset = runtime.preset
    if preset == "vllm":
        port = runtime.port or 8000
        image, command = settings.vllm_image, None
        args = ["--model", MODEL_DIR, "--served-model-name", model_name, "--port", str(port)]
        probe = _http_probe("/health", port)
    elif preset == "triton":
        port = runtime.port or 8000
        image, command = settings.triton_image, ["tritonserver"]
        args = [f"--model-repository={MODEL_DIR}", f"--http-port={port}"]
        probe = _http_probe("/v2/health/ready", port)
    elif preset == "sklearn":
        port = runtime.port or 8080
        image, command = settings.sklearn_image, None
        args = [f"--model_name={model_name}", f"--model_dir={MODEL_DIR}", f"--http_port={port}"]
        probe = _http_probe(f"/v1/models/{model_name}", port)
    else:  # custom: image and port are required (validation says so)
        port = runtime.port or 8080
        image, command, args = runtime.image or "", None, []
        probe = {"tcpSocket": {"port": port}, "periodSeconds": 5, "failureThreshold": 3}
    image = runtime.image or image
    args = args + list(runtime.args)
    env = [e.to_dict() for e in runtime.env]
    if overrides is not None:
        image = overrides.image or image
        if overrides.args is not None:
            args = args[: len(args) - len(runtime.args)] + list(overrides.args)
        if overrides.env is not None:
            env = [e.to_dict() for e in overrides.env]
    return ResolvedRuntime(image=image, port=port, command=command, args=args, env=env, probe=probe)

"""Runtime presets: image, port, arguments and probes per model server (the formats each loads are checked in
api/validation.py PRESET_FORMATS); the spec overrides any
of them.

Readiness probes are each server's documented "ready" endpoint: vLLM `/health`, Triton `/v2/health/ready`,
KServe's sklearn server `/v1/models/<name>` (ready once the model is loaded), MLServer `/v2/health/ready`; `custom`
probes the TCP port.

MLServer is configured only through its MLSERVER_* environment variables (no model-settings.json in the model
folder): the model's name, the inference runtime chosen by `model.format`, and MLSERVER_MODEL_URI naming the
fetched file (or the folder, where mlserver looks for model.joblib and the like). Its parallel inference workers
are off (MLSERVER_PARALLEL_WORKERS=0): with them, mlserver 1.7.1 dies at start ("no current event loop" from
uvloop), and one model per pod gains nothing from a worker pool.
Liveness probes use the "alive" endpoints (vLLM `/health`, Triton and KServe `/v2/health/live`) with a generous
start delay and failure threshold: loading a large model can take minutes, and a restart costs a full reload,
so only a server that stays wedged for minutes is restarted.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..api.modeldeployment import Model, ModelDeploymentSpec, Runtime, RuntimeOverrides
from ..podspec.storage import MODEL_DIR, model_path
from ..settings import Settings

# Seconds before the first liveness check, per preset: LLM weights take longest to load.
LIVENESS_DELAY = {"vllm": 300, "triton": 120, "sklearn": 60, "mlserver": 60, "custom": 120}
MLSERVER_IMPLEMENTATIONS = {"sklearn": "mlserver_sklearn.SKLearnModel", "xgboost": "mlserver_xgboost.XGBoostModel",
                            "lightgbm": "mlserver_lightgbm.LightGBMModel"}
MLSERVER_GRPC_PORT, MLSERVER_METRICS_PORT = 8081, 8082
LIVENESS_PERIOD, LIVENESS_FAILURES = 10, 6  # a minute of failed checks before a restart


@dataclasses.dataclass(frozen=True)
class ResolvedRuntime:
    image: str
    port: int
    command: list[str] | None
    args: list[str]
    env: list[dict[str, Any]]
    probe: dict[str, Any]
    liveness: dict[str, Any]


def _http_probe(path: str, port: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": 5, "failureThreshold": 3}


def _liveness(check: dict[str, Any], preset: str) -> dict[str, Any]:
    return {**check, "initialDelaySeconds": LIVENESS_DELAY[preset], "periodSeconds": LIVENESS_PERIOD,
            "timeoutSeconds": 5, "failureThreshold": LIVENESS_FAILURES}


def image_problems(spec: ModelDeploymentSpec, settings: Settings) -> list[str]:
    """Errors of a spec that depend on the operator's settings: a preset without an image to run."""
    if spec.runtime.preset == "triton" and not (spec.runtime.image or settings.triton_image):
        # No default: the project names no registry host, and a bare "tritonserver" resolves to a registry that
        # does not publish it.
        return [("spec.runtime.image: the triton preset has no default image; set spec.runtime.image, or "
                 "MLOPS_IMAGE_TRITON for the operator (the chart's settings.tritonImage), to a Triton Inference "
                 "Server image such as <registry>/nvidia/tritonserver:24.08-py3 (NVIDIA publishes Triton images in "
                 "its NGC catalog)")]
    return []


def mlserver_env(model_name: str, model: Model | None, port: int) -> list[dict[str, Any]]:
    """MLServer's whole configuration: one model from the model volume, REST on `port`, gRPC and metrics beside."""
    fmt = (model.format if model else None) or "sklearn"
    values = {
        "MLSERVER_MODEL_NAME": model_name,
        "MLSERVER_MODEL_IMPLEMENTATION": MLSERVER_IMPLEMENTATIONS[fmt],
        "MLSERVER_MODEL_URI": model_path(model.uri) if model else MODEL_DIR,
        "MLSERVER_MODELS_DIR": MODEL_DIR,
        "MLSERVER_HTTP_PORT": str(port),
        "MLSERVER_GRPC_PORT": str(MLSERVER_GRPC_PORT),
        "MLSERVER_METRICS_PORT": str(MLSERVER_METRICS_PORT),
        "MLSERVER_PARALLEL_WORKERS": "0",
    }
    return [{"name": k, "value": v} for k, v in values.items()]


def resolve(runtime: Runtime, model_name: str, settings: Settings,
            overrides: RuntimeOverrides | None = None, model: Model | None = None) -> ResolvedRuntime:
    """The container the server runs in, from the preset, the spec, then (for a canary) its overrides."""
    preset = runtime.preset
    if preset == "vllm":
        port = runtime.port or 8000
        image, command = settings.vllm_image, None
        args = ["--model", MODEL_DIR, "--served-model-name", model_name, "--port", str(port)]
        probe = _http_probe("/health", port)
        alive = {"httpGet": {"path": "/health", "port": port}}
    elif preset == "triton":
        port = runtime.port or 8000
        image, command = settings.triton_image, ["tritonserver"]
        args = [f"--model-repository={MODEL_DIR}", f"--http-port={port}"]
        probe = _http_probe("/v2/health/ready", port)
        alive = {"httpGet": {"path": "/v2/health/live", "port": port}}
    elif preset == "sklearn":
        port = runtime.port or 8080
        image, command = settings.sklearn_image, None
        args = [f"--model_name={model_name}", f"--model_dir={MODEL_DIR}", f"--http_port={port}"]
        probe = _http_probe(f"/v1/models/{model_name}", port)
        alive = {"httpGet": {"path": "/v2/health/live", "port": port}}
    elif preset == "mlserver":
        port = runtime.port or 8080
        image, command, args = settings.mlserver_image, None, []
        probe = _http_probe("/v2/health/ready", port)
        alive = {"httpGet": {"path": "/v2/health/live", "port": port}}
    else:  # custom: image and port are required (validation says so)
        port = runtime.port or 8080
        image, command, args = runtime.image or "", None, []
        probe = {"tcpSocket": {"port": port}, "periodSeconds": 5, "failureThreshold": 3}
        alive = {"tcpSocket": {"port": port}}
    image = runtime.image or image
    args = args + list(runtime.args)
    preset_env = mlserver_env(model_name, model, port) if preset == "mlserver" else []
    env = [e.to_dict() for e in runtime.env]
    if overrides is not None:
        image = overrides.image or image
        if overrides.args is not None:
            args = args[: len(args) - len(runtime.args)] + list(overrides.args)
        if overrides.env is not None:
            env = [e.to_dict() for e in overrides.env]
    own = {e["name"] for e in env}  # the spec's variables win over the preset's
    env = [e for e in preset_env if e["name"] not in own] + env
    return ResolvedRuntime(image=image, port=port, command=command, args=args, env=env, probe=probe,
                           liveness=_liveness(alive, preset))

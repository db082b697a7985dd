"""Runtime presets give image, port, args and probe; the spec overrides them; a canary overrides the spec."""

from __future__ import annotations

import pytest

from mlops_operator import settings
from mlops_operator.api.modeldeployment import Model, Runtime, RuntimeOverrides
from mlops_operator.podspec.storage import MODEL_DIR
from mlops_operator.serving.runtimes import resolve
from mlops_operator.settings import Settings

SETTINGS = Settings(operator_image="mlops-operator:test", vllm_image="reg/vllm:1", triton_image="reg/triton:2",
                    sklearn_image="reg/sklearn:3", cluster_domain="cluster.local", workers=1)


def runtime(**fields) -> Runtime:
    return Runtime.model_validate(fields)


def test_vllm_preset():
    r = resolve(runtime(preset="vllm"), "llama", SETTINGS)
    assert r.image == "reg/vllm:1"
    assert r.port == 8000
    assert r.command is None  # the image's entrypoint is the OpenAI server
    assert r.args == ["--model", MODEL_DIR, "--served-model-name", "llama", "--port", "8000"]
    assert r.probe == {"httpGet": {"path": "/health", "port": 8000}, "periodSeconds": 5, "failureThreshold": 3}
    assert r.env == []


def test_triton_preset():
    r = resolve(runtime(preset="triton"), "resnet", SETTINGS)
    assert (r.image, r.port, r.command) == ("reg/triton:2", 8000, ["tritonserver"])
    assert r.args == [f"--model-repository={MODEL_DIR}", "--http-port=8000"]
    assert r.probe["httpGet"] == {"path": "/v2/health/ready", "port": 8000}


def test_sklearn_preset_probes_the_model_endpoint():
    r = resolve(runtime(preset="sklearn"), "iris", SETTINGS)
    assert (r.image, r.port, r.command) == ("reg/sklearn:3", 8080, None)
    assert r.args == ["--model_name=iris", f"--model_dir={MODEL_DIR}", "--http_port=8080"]
    assert r.probe["httpGet"] == {"path": "/v1/models/iris", "port": 8080}


def test_custom_runtime_probes_the_tcp_port():
    r = resolve(runtime(preset="custom", image="me/server:7", port=9000), "iris", SETTINGS)
    assert (r.image, r.port, r.command, r.args) == ("me/server:7", 9000, None, [])
    assert r.probe == {"tcpSocket": {"port": 9000}, "periodSeconds": 5, "failureThreshold": 3}


@pytest.mark.parametrize("preset,path", [("vllm", "/health"), ("triton", "/v2/health/ready"),
                                         ("sklearn", "/v1/models/m")])
def test_spec_overrides_image_port_and_appends_args(preset, path):
    base = resolve(runtime(preset=preset), "m", SETTINGS)
    r = resolve(runtime(preset=preset, image="mirror/server:9", port=7777, args=["--extra", "1"],
                        env=[{"name": "LOG_LEVEL", "value": "debug"}]), "m", SETTINGS)
    assert r.image == "mirror/server:9"
    assert r.port == 7777
    assert r.probe["httpGet"] == {"path": path, "port": 7777}  # the probe follows the port
    assert str(7777) in " ".join(r.args) and "8000" not in " ".join(r.args) and "8080" not in " ".join(r.args)
    assert r.args[-2:] == ["--extra", "1"]
    assert len(r.args) == len(base.args) + 2
    assert r.env == [{"name": "LOG_LEVEL", "value": "debug"}]


def test_env_from_secret_is_passed_as_a_reference():
    r = resolve(runtime(preset="vllm", env=[{"name": "HF_TOKEN",
                                             "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}]),
                "m", SETTINGS)
    assert r.env == [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}]


def test_canary_overrides_replace_image_args_and_env():
    stable = runtime(preset="vllm", image="vllm:old", args=["--max-model-len", "4096"],
                     env=[{"name": "A", "value": "1"}])
    overrides = RuntimeOverrides.model_validate(
        {"image": "vllm:new", "args": ["--max-model-len", "8192"], "env": [{"name": "B", "value": "2"}]})
    r = resolve(stable, "llama", SETTINGS, overrides)
    assert r.image == "vllm:new"
    # The preset's own args stay; the stable's extra args are replaced, not appended to.
    assert r.args == ["--model", MODEL_DIR, "--served-model-name", "llama", "--port", "8000",
                      "--max-model-len", "8192"]
    assert r.env == [{"name": "B", "value": "2"}]
    assert r.port == 8000 and r.probe["httpGet"]["path"] == "/health"  # the preset stays the same


def test_canary_overrides_left_out_keep_the_stable_values():
    stable = runtime(preset="sklearn", image="sk:1", args=["--workers", "2"], env=[{"name": "A", "value": "1"}])
    r = resolve(stable, "iris", SETTINGS, RuntimeOverrides())
    assert r == resolve(stable, "iris", SETTINGS)
    only_image = resolve(stable, "iris", SETTINGS, RuntimeOverrides(image="sk:2"))
    assert only_image.image == "sk:2"
    assert only_image.args[-2:] == ["--workers", "2"] and only_image.env == [{"name": "A", "value": "1"}]


def test_canary_args_replace_when_the_stable_has_no_extra_args():
    r = resolve(runtime(preset="triton"), "m", SETTINGS, RuntimeOverrides(args=["--log-verbose=1"]))
    assert r.args == [f"--model-repository={MODEL_DIR}", "--http-port=8000", "--log-verbose=1"]
    cleared = resolve(runtime(preset="triton", args=["--strict-readiness=true"]), "m", SETTINGS,
                      RuntimeOverrides(args=[], env=[]))
    assert cleared.args == [f"--model-repository={MODEL_DIR}", "--http-port=8000"]
    assert cleared.env == []


@pytest.mark.parametrize("preset,check,delay", [
    ("vllm", {"httpGet": {"path": "/health", "port": 8000}}, 300),
    ("triton", {"httpGet": {"path": "/v2/health/live", "port": 8000}}, 120),
    ("sklearn", {"httpGet": {"path": "/v2/health/live", "port": 8080}}, 60),
])
def test_every_preset_has_a_patient_liveness_probe(preset, check, delay):
    r = resolve(runtime(preset=preset), "m", SETTINGS)
    assert r.liveness == {**check, "initialDelaySeconds": delay, "periodSeconds": 10, "timeoutSeconds": 5,
                          "failureThreshold": 6}
    # a wedged server is restarted only after a minute of failed checks, never during a model load
    assert r.liveness["failureThreshold"] * r.liveness["periodSeconds"] >= 60


def test_custom_liveness_probes_the_port():
    r = resolve(runtime(preset="custom", image="server:1", port=9000), "m", SETTINGS)
    assert r.liveness["tcpSocket"] == {"port": 9000} and r.liveness["initialDelaySeconds"] == 120


def test_triton_without_an_image_is_an_invalid_spec_that_says_what_to_set():
    from dataclasses import replace

    from mlops_operator.api.modeldeployment import ModelDeploymentSpec
    from mlops_operator.serving.runtimes import image_problems

    unset = replace(SETTINGS, triton_image="")
    spec = ModelDeploymentSpec.model_validate({"model": {"uri": "s3://b/m"}, "runtime": {"preset": "triton"}})
    [problem] = image_problems(spec, unset)
    assert problem.startswith("spec.runtime.image: the triton preset has no default image")
    assert "MLOPS_IMAGE_TRITON" in problem and "NGC catalog" in problem
    assert image_problems(spec, SETTINGS) == []  # the operator has one configured
    with_image = ModelDeploymentSpec.model_validate({"model": {"uri": "s3://b/m"},
                                                    "runtime": {"preset": "triton", "image": "mirror/triton:1"}})
    assert image_problems(with_image, unset) == []


def test_the_operator_names_no_triton_image_by_default(monkeypatch):
    from mlops_operator.settings import load

    monkeypatch.delenv("MLOPS_IMAGE_TRITON", raising=False)
    assert load().triton_image == ""


def _env(r) -> dict[str, str]:
    return {e["name"]: e["value"] for e in r.env}


@pytest.mark.parametrize("fmt,implementation", [("sklearn", "mlserver_sklearn.SKLearnModel"),
                                                ("xgboost", "mlserver_xgboost.XGBoostModel"),
                                                ("lightgbm", "mlserver_lightgbm.LightGBMModel")])
def test_mlserver_preset_is_configured_by_env_only(fmt, implementation):
    model = Model.model_validate({"uri": "s3://models/iris/model.joblib", "format": fmt})
    r = resolve(runtime(preset="mlserver"), "iris", SETTINGS, model=model)
    assert (r.image, r.port, r.command, r.args) == ("seldonio/mlserver:1.7.1", 8080, None, [])
    assert _env(r) == {
        "MLSERVER_MODEL_NAME": "iris", "MLSERVER_MODEL_IMPLEMENTATION": implementation,
        "MLSERVER_MODEL_URI": f"{MODEL_DIR}/model.joblib", "MLSERVER_MODELS_DIR": MODEL_DIR,
        "MLSERVER_HTTP_PORT": "8080", "MLSERVER_GRPC_PORT": "8081", "MLSERVER_METRICS_PORT": "8082",
        "MLSERVER_PARALLEL_WORKERS": "0",
    }
    assert r.probe["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert r.liveness["httpGet"] == {"path": "/v2/health/live", "port": 8080}


@pytest.mark.parametrize("uri,path", [("file:///data/iris", MODEL_DIR), ("https://h/m/iris.tar.gz", MODEL_DIR),
                                      ("pvc://claim/models/iris.joblib", MODEL_DIR),
                                      ("gs://b/iris.pkl", f"{MODEL_DIR}/iris.pkl")])
def test_mlserver_model_uri_names_the_fetched_file_or_the_folder(uri, path):
    r = resolve(runtime(preset="mlserver"), "iris", SETTINGS, model=Model.model_validate({"uri": uri}))
    assert _env(r)["MLSERVER_MODEL_URI"] == path


def test_mlserver_spec_env_and_port_win_over_the_preset():
    r = resolve(runtime(preset="mlserver", port=9000, env=[{"name": "MLSERVER_PARALLEL_WORKERS", "value": "2"}]),
                "iris", SETTINGS, model=Model.model_validate({"uri": "file:///m/model.joblib"}))
    env = _env(r)
    assert env["MLSERVER_PARALLEL_WORKERS"] == "2" and env["MLSERVER_HTTP_PORT"] == "9000"
    assert [e["name"] for e in r.env].count("MLSERVER_PARALLEL_WORKERS") == 1
    assert r.probe["httpGet"]["port"] == 9000


def test_mlserver_image_from_the_environment(monkeypatch):
    monkeypatch.setenv("MLOPS_IMAGE_MLSERVER", "mirror/mlserver:1.7.1")
    assert settings.load().mlserver_image == "mirror/mlserver:1.7.1"

"""The inference agent in serving pods (serving/sidecar.py through serving/render.py), as plain dicts: its
container and configuration, the Service reaching it, the prediction log, and the opt-out that keeps the pods
the model server alone."""

from __future__ import annotations

import argparse

import pytest

from mlops_operator.agent import config as agent_config
from mlops_operator.api import InvalidSpec, validate_object
from mlops_operator.api.modeldeployment import ModelDeploymentSpec
from mlops_operator.serving import render
from mlops_operator.serving.canary import CanaryPlan
from mlops_operator.settings import Settings, load

SETTINGS = Settings(operator_image="mlops-operator:1.2.3", vllm_image="reg/vllm:1", triton_image="reg/triton:2",
                    sklearn_image="reg/sklearn:3", cluster_domain="cluster.local", workers=1)
BODY = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ml", "uid": "uid-1", "generation": 2}}
CANARY = {"canary": {"model": {"uri": "s3://models/iris/v2"}, "weight": 50}}


def spec(**fields) -> ModelDeploymentSpec:
    raw = {"model": {"uri": "s3://models/iris/v1"}, "runtime": {"preset": "mlserver"}, **fields}
    return ModelDeploymentSpec.model_validate(raw)


def children(s: ModelDeploymentSpec, plan: CanaryPlan | None = None, settings: Settings = SETTINGS) -> dict:
    return render.desired(BODY, s, plan or CanaryPlan(), render.ApiVersions(), settings)


def containers(dep: dict) -> dict[str, dict]:
    return {c["name"]: c for c in dep["spec"]["template"]["spec"]["containers"]}


def agent_of(dep: dict) -> dict:
    return containers(dep)["agent"]


def env_values(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def agent_settings(container: dict, monkeypatch: pytest.MonkeyPatch) -> agent_config.AgentConfig:
    """What `mlops-operator agent` makes of the container: its environment through the agent's own parser."""
    for name, value in env_values(container).items():
        monkeypatch.setenv(name, value)
    parser = argparse.ArgumentParser()
    agent_config.add_arguments(parser)
    return agent_config.from_args(parser.parse_args(container["command"][2:]))


def test_every_serving_pod_runs_the_agent_in_front_of_the_server(monkeypatch):
    stable = children(spec())["stable"]
    pod = stable["spec"]["template"]
    server, agent = containers(stable)["server"], agent_of(stable)
    assert list(containers(stable)) == ["server", "agent"]
    assert agent["image"] == "mlops-operator:1.2.3"  # the operator's own image
    assert agent["command"] == ["mlops-operator", "agent"] and "args" not in agent
    # The Service targets the port named http: the agent's. The server's port has another name.
    svc = children(spec())["service"]
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    assert {p["name"]: p["containerPort"] for p in agent["ports"]} == {"http": 9081, "agent-metrics": 9091}
    assert server["ports"] == [{"name": "server", "containerPort": 8080, "protocol": "TCP"}]
    config = agent_settings(agent, monkeypatch)
    assert (config.upstream_port, config.listen_host, config.listen_port, config.metrics_port) == (8080, "0.0.0.0",
                                                                                                   9081, 9091)
    assert (config.namespace, config.model, config.revision, config.model_uri) == ("ml", "iris", "stable",
                                                                                   "s3://models/iris/v1")
    assert not config.log_uri and not config.logging
    assert {"name": "MLOPS_AGENT_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in agent["env"]
    # Probes on the metrics port; the pod's grace outlasts the agent's own, so buffered rows are written.
    for probe in (agent["readinessProbe"], agent["livenessProbe"]):
        assert probe["httpGet"] == {"path": "/healthz", "port": 9091}
    assert pod["spec"]["terminationGracePeriodSeconds"] > config.grace_seconds
    # Prometheus finds the agent's metrics port.
    annotations = pod["metadata"]["annotations"]
    assert (annotations["prometheus.io/scrape"], annotations["prometheus.io/port"],
            annotations["prometheus.io/path"]) == ("true", "9091", "/metrics")


@pytest.mark.parametrize("runtime, upstream", [({"preset": "vllm"}, 8000), ({"preset": "sklearn"}, 8080),
                                               ({"preset": "mlserver", "port": 7000}, 7000),
                                               ({"preset": "custom", "image": "me/server:1", "port": 5000}, 5000)])
def test_the_agent_forwards_to_the_runtimes_own_port(runtime, upstream, monkeypatch):
    stable = children(spec(runtime=runtime))["stable"]
    assert agent_settings(agent_of(stable), monkeypatch).upstream_port == upstream
    assert containers(stable)["server"]["ports"][0]["containerPort"] == upstream


def test_the_agent_runs_restricted_without_a_token_and_keeps_guaranteed_pods_guaranteed():
    stable = children(spec(resources={"cpu": "2", "memory": "4Gi"}))["stable"]
    pod_spec = stable["spec"]["template"]["spec"]
    agent = agent_of(stable)
    assert agent["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                        "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"},
                                        "readOnlyRootFilesystem": True}
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert pod_spec["automountServiceAccountToken"] is False
    # Every container with requests equal to limits: the pod stays in the Guaranteed QoS class.
    for container in pod_spec["containers"]:
        assert container["resources"]["requests"] == container["resources"]["limits"]
    assert agent["resources"]["limits"] == {"cpu": "250m", "memory": "256Mi"}
    custom = agent_of(children(spec(agent={"resources": {"cpu": 1, "memory": "1Gi"}}))["stable"])
    assert custom["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}


def test_the_canary_agent_labels_its_requests_canary_with_the_canary_model(monkeypatch):
    out = children(spec(replicas=2, rollout=CANARY), CanaryPlan(deploy=True, canary_replicas=2))
    canary = agent_settings(agent_of(out["canary"]), monkeypatch)
    assert (canary.revision, canary.model_uri) == ("canary", "s3://models/iris/v2")
    stable = agent_settings(agent_of(out["stable"]), monkeypatch)
    assert (stable.revision, stable.model_uri) == ("stable", "s3://models/iris/v1")
    # Promoted, the stable pods run the canary's model under the stable revision.
    promoted = render.promoted_template(BODY, spec(replicas=2, rollout=CANARY), SETTINGS)
    assert promoted is not None
    (agent,) = [c for c in promoted["spec"]["containers"] if c["name"] == "agent"]
    assert env_values(agent)["MLOPS_AGENT_REVISION"] == "stable"
    assert env_values(agent)["MLOPS_AGENT_MODEL_URI"] == "s3://models/iris/v2"


def test_the_prediction_log_settings_reach_the_agent_and_credentials_only_its_environment(monkeypatch):
    log = {"uri": "s3://logs/iris", "sampleRate": 0.25, "secretRef": {"name": "log-creds"},
           "columns": ["sepal_length", "sepal_width", "petal_length", "petal_width"], "logPayloads": True,
           "flushInterval": "2m"}
    agent = agent_of(children(spec(monitoring={"predictionLog": log}))["stable"])
    config = agent_settings(agent, monkeypatch)
    assert (config.log_uri, config.sample_rate, config.log_payloads) == ("s3://logs/iris", 0.25, True)
    assert config.columns == ("sepal_length", "sepal_width", "petal_length", "petal_width")
    assert config.batch_seconds == 120
    assert agent["envFrom"] == [{"secretRef": {"name": "log-creds"}}]
    assert "volumeMounts" not in agent  # an object store needs no volume
    # The model server gets neither the log's settings nor its credentials.
    server = containers(children(spec(monitoring={"predictionLog": log}))["stable"])["server"]
    assert "envFrom" not in server
    assert not any(e["name"].startswith("MLOPS_AGENT_") for e in server.get("env", []))


def test_a_pvc_log_is_the_claim_mounted_into_the_agent_alone(monkeypatch):
    stable = children(spec(monitoring={"predictionLog": {"uri": "pvc://logs/iris/predictions"}}))["stable"]
    pod_spec = stable["spec"]["template"]["spec"]
    agent = agent_of(stable)
    assert {"name": "prediction-log", "persistentVolumeClaim": {"claimName": "logs"}} in pod_spec["volumes"]
    assert agent["volumeMounts"] == [{"name": "prediction-log", "mountPath": "/var/lib/mlops/prediction-log"}]
    assert agent_settings(agent, monkeypatch).log_uri == "/var/lib/mlops/prediction-log/iris/predictions"
    server_mounts = [m["name"] for m in containers(stable)["server"]["volumeMounts"]]
    assert "prediction-log" not in server_mounts


def test_opting_out_keeps_the_pod_the_model_server_alone():
    s = spec(agent={"enabled": False}, runtime={"preset": "sklearn"}, podAnnotations={"team": "a"},
             monitoring={"predictionLog": {"uri": "pvc://logs/iris", "secretRef": {"name": "creds"}}})
    out = children(s)
    # The whole pod template as it was before the agent existed.
    assert out["stable"]["spec"]["template"] == {
        "metadata": {"labels": {"app.kubernetes.io/name": "modeldeployment", "app.kubernetes.io/instance": "iris",
                                "app.kubernetes.io/component": "server", "app.kubernetes.io/part-of": "mlops",
                                "app.kubernetes.io/managed-by": "mlops-operator", "mlops.dev/modeldeployment": "iris",
                                "mlops.dev/track": "stable"},
                     "annotations": {"team": "a", "mlops.dev/model-uri": "s3://models/iris/v1"}},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "server", "image": "reg/sklearn:3",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "readinessProbe": {"httpGet": {"path": "/v1/models/iris", "port": 8080}, "periodSeconds": 5,
                                   "failureThreshold": 3},
                "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": 8080}, "initialDelaySeconds": 60,
                                  "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 6},
                "volumeMounts": [{"name": "model", "mountPath": "/mnt/models", "readOnly": True}],
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                    "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                "args": ["--model_name=iris", "--model_dir=/mnt/models", "--http_port=8080"],
            }],
            "volumes": [{"name": "model", "emptyDir": {}}],
            "initContainers": [{
                "name": "fetch-model", "image": "mlops-operator:1.2.3",
                "command": ["mlops-operator", "fetch-model", "--uri", "s3://models/iris/v1", "--dest", "/mnt/models"],
                "volumeMounts": [{"name": "model", "mountPath": "/mnt/models"}],
                "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                    "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }],
        },
    }
    # The Service reaches the server's own port, named http as ever.
    assert out["service"]["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]


def test_the_agent_image_is_the_operators_unless_set(monkeypatch):
    monkeypatch.setenv("MLOPS_OPERATOR_IMAGE", "reg/mlops-operator:9")
    monkeypatch.delenv("MLOPS_IMAGE_AGENT", raising=False)
    assert load().inference_agent_image == "reg/mlops-operator:9"
    monkeypatch.setenv("MLOPS_IMAGE_AGENT", "reg/mlops-agent:9")
    settings = load()
    assert settings.inference_agent_image == "reg/mlops-agent:9"
    assert agent_of(children(spec(), settings=settings)["stable"])["image"] == "reg/mlops-agent:9"


def md(**fields) -> dict:
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "iris", "namespace": "ml"},
            "spec": {"model": {"uri": "s3://models/iris/v1"}, "runtime": {"preset": "mlserver"}, **fields}}


def test_a_server_port_the_agent_uses_is_refused_while_the_agent_runs():
    with pytest.raises(InvalidSpec, match=r"spec\.runtime\.port: 9081 is the inference agent's port"):
        validate_object(md(runtime={"preset": "mlserver", "port": 9081}))
    with pytest.raises(InvalidSpec, match=r"spec\.runtime\.port: 9091"):
        validate_object(md(runtime={"preset": "custom", "image": "me/server:1", "port": 9091}))
    validate_object(md(runtime={"preset": "mlserver", "port": 9081}, agent={"enabled": False}))


def test_log_columns_must_be_names_the_agent_can_take():
    with pytest.raises(InvalidSpec, match=r"predictionLog\.columns\[1\]: 'a,b' must be a non-empty name"):
        validate_object(md(monitoring={"predictionLog": {"uri": "s3://logs/iris", "columns": ["x", "a,b"]}}))
    with pytest.raises(InvalidSpec, match=r"predictionLog\.columns: names must be unique"):
        validate_object(md(monitoring={"predictionLog": {"uri": "s3://logs/iris", "columns": ["x", "x"]}}))

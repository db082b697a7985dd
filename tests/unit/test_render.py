"""The children of a ModelDeployment as plain dicts: Deployments, Service, HPA, PDB, and the pod spec blocks
they are built from (GPU scheduling, secure defaults, model storage)."""

from __future__ import annotations

import pytest

from mlops_operator.api.modeldeployment import Model, ModelDeploymentSpec
from mlops_operator.podspec import gpu, security, storage
from mlops_operator.serving import render, sidecar
from mlops_operator.serving.canary import CanaryPlan
from mlops_operator.settings import Settings

SETTINGS = Settings(operator_image="mlops-operator:test", vllm_image="reg/vllm:1", triton_image="reg/triton:2",
                    sklearn_image="reg/sklearn:3", cluster_domain="cluster.local", workers=1)
VERSIONS = render.ApiVersions()
BODY = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ml", "uid": "uid-1", "generation": 2}}
OWNER_REF = {"apiVersion": "mlops.dev/v1alpha1", "kind": "ModelDeployment", "name": "iris", "uid": "uid-1",
             "controller": True, "blockOwnerDeletion": True}
RECOMMENDED = {"app.kubernetes.io/name": "modeldeployment", "app.kubernetes.io/instance": "iris",
               "app.kubernetes.io/part-of": "mlops", "app.kubernetes.io/managed-by": "mlops-operator",
               "mlops.dev/modeldeployment": "iris"}


def spec(**fields) -> ModelDeploymentSpec:
    raw = {"model": {"uri": "s3://models/iris/v1"}, "runtime": {"preset": "sklearn"}, **fields}
    return ModelDeploymentSpec.model_validate(raw)


def children(s: ModelDeploymentSpec, p: CanaryPlan | None = None) -> dict[str, dict | None]:
    return render.desired(BODY, s, p or CanaryPlan(), VERSIONS, SETTINGS)


def pod(dep: dict) -> dict:
    return dep["spec"]["template"]["spec"]


def server(dep: dict) -> dict:
    (container,) = [c for c in pod(dep)["containers"] if c["name"] == "server"]
    return container


# --- the set of children ------------------------------------------------------------------------------------


def test_a_plain_deployment_has_a_deployment_and_a_service_only():
    out = children(spec(replicas=1))
    assert set(out) == {"stable", "canary", "service", "hpa", "pdb"}
    assert out["canary"] is None and out["hpa"] is None and out["pdb"] is None
    stable = out["stable"]
    assert (stable["apiVersion"], stable["kind"]) == ("apps/v1", "Deployment")
    assert stable["metadata"]["name"] == "iris" and stable["metadata"]["namespace"] == "ml"
    assert stable["spec"]["replicas"] == 1
    assert stable["spec"]["strategy"] == {"type": "RollingUpdate",
                                          "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def test_every_child_is_owned_and_labelled():
    s = spec(replicas=3, autoscaling={"minReplicas": 2, "maxReplicas": 5, "targetCPUUtilization": 70},
             rollout={"canary": {"model": {"uri": "s3://models/iris/v2"}, "weight": 20}})
    out = children(s, CanaryPlan(deploy=True, canary_replicas=1))
    assert all(out.values()), out  # all five exist here
    for role, child in out.items():
        meta = child["metadata"]
        assert meta["ownerReferences"] == [OWNER_REF], role
        assert meta["namespace"] == "ml", role
        assert meta["labels"].items() >= RECOMMENDED.items(), role
        assert meta["labels"]["app.kubernetes.io/component"], role
    assert out["service"]["metadata"]["labels"]["app.kubernetes.io/component"] == "service"
    assert out["hpa"]["metadata"]["labels"]["app.kubernetes.io/component"] == "autoscaler"
    assert out["stable"]["metadata"]["labels"][render.TRACK] == "stable"
    assert out["canary"]["metadata"]["labels"][render.TRACK] == "canary"
    # the pods carry them too
    for role in ("stable", "canary"):
        assert out[role]["spec"]["template"]["metadata"]["labels"].items() >= RECOMMENDED.items()


def test_selectors_match_their_pods_and_the_service_spans_both_tracks():
    s = spec(replicas=4, rollout={"canary": {"model": {"uri": "s3://models/iris/v2"}, "weight": 25}})
    out = children(s, CanaryPlan(deploy=True, canary_replicas=1))
    stable, canary, svc = out["stable"], out["canary"], out["service"]
    for dep in (stable, canary):
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        assert svc["spec"]["selector"].items() <= pod_labels.items()
    # The two Deployments never select each other's pods.
    assert stable["spec"]["selector"]["matchLabels"][render.TRACK] == "stable"
    assert canary["spec"]["selector"]["matchLabels"][render.TRACK] == "canary"
    assert render.TRACK not in svc["spec"]["selector"]
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    # The Service's "http" is the agent's port; the server's is "server" (tests/unit/test_serving_sidecar.py).
    assert server(stable)["ports"] == [{"name": "server", "containerPort": 8080, "protocol": "TCP"}]


def test_url():
    assert render.url("iris", "ml", SETTINGS) == "http://iris.ml.svc.cluster.local"


# --- canary ---------------------------------------------------------------------------------------------------


def test_canary_deployment_serves_the_canary_model_with_its_overrides():
    s = spec(replicas=4, runtime={"preset": "vllm", "args": ["--dtype", "half"]},
             podAnnotations={"prometheus.io/scrape": "true"},
             rollout={"canary": {"model": {"uri": "hf://org/llama-v2"}, "weight": 50,
                                 "runtime": {"image": "vllm:next", "args": ["--dtype", "bfloat16"]},
                                 "podAnnotations": {"sidecar": "off"}}})
    out = children(s, CanaryPlan(deploy=True, canary_replicas=4))
    stable, canary = out["stable"], out["canary"]
    assert canary["metadata"]["name"] == "iris-canary" and canary["spec"]["replicas"] == 4
    assert stable["spec"]["replicas"] == 4  # canary pods come on top: the stable keeps its count
    assert server(canary)["image"] == "vllm:next" and server(stable)["image"] == "reg/vllm:1"
    assert server(canary)["args"][-2:] == ["--dtype", "bfloat16"] and "half" not in server(canary)["args"]
    assert server(stable)["args"][-2:] == ["--dtype", "half"]
    assert canary["spec"]["template"]["metadata"]["annotations"] == {
        **sidecar.SCRAPE_ANNOTATIONS, "sidecar": "off", render.MODEL_URI_ANNOTATION: "hf://org/llama-v2"}
    assert stable["spec"]["template"]["metadata"]["annotations"] == {
        **sidecar.SCRAPE_ANNOTATIONS, "prometheus.io/scrape": "true", render.MODEL_URI_ANNOTATION: "s3://models/iris/v1"}
    fetcher = pod(canary)["initContainers"][0]
    assert "hf://org/llama-v2" in fetcher["command"]


def test_promotion_renders_the_stable_from_the_canary():
    s = spec(replicas=4, rollout={"canary": {"model": {"uri": "s3://models/iris/v2"}, "weight": 25, "promote": True,
                                             "runtime": {"image": "sk:next"}}})
    out = children(s, CanaryPlan(deploy=True, canary_replicas=1, stable_from_canary=True))
    stable = out["stable"]
    assert stable["spec"]["replicas"] == 4
    assert stable["spec"]["template"]["metadata"]["annotations"][render.MODEL_URI_ANNOTATION] == "s3://models/iris/v2"
    assert server(stable)["image"] == "sk:next"
    assert out["canary"]["spec"]["replicas"] == 1
    done = children(s, CanaryPlan(stable_from_canary=True))
    assert done["canary"] is None
    assert done["stable"]["spec"]["template"]["metadata"]["annotations"][render.MODEL_URI_ANNOTATION] == \
        "s3://models/iris/v2"


# --- HPA and PDB ----------------------------------------------------------------------------------------------


def test_hpa_on_cpu_and_no_replicas_on_the_stable():
    s = spec(replicas=3, autoscaling={"minReplicas": 2, "maxReplicas": 6, "targetCPUUtilization": 65})
    out = children(s)
    assert "replicas" not in out["stable"]["spec"]  # the HPA owns the count; apply must not fight it
    hpa = out["hpa"]
    assert (hpa["apiVersion"], hpa["kind"], hpa["metadata"]["name"]) == (
        "autoscaling/v2", "HorizontalPodAutoscaler", "iris")
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "iris"},
        "minReplicas": 2, "maxReplicas": 6,
        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": 65}}}]}
    assert out["pdb"] is not None  # minReplicas 2: more than one stable replica


def test_hpa_on_a_pods_metric():
    s = spec(autoscaling={"maxReplicas": 4, "metric": {"name": "requests_per_second", "target": "500m"}})
    out = children(s)
    assert out["hpa"]["spec"]["minReplicas"] == 1
    assert out["hpa"]["spec"]["metrics"] == [{"type": "Pods", "pods": {
        "metric": {"name": "requests_per_second"}, "target": {"type": "AverageValue", "averageValue": "500m"}}}]
    assert out["pdb"] is None  # minReplicas 1
    assert "replicas" not in out["stable"]["spec"]


def test_autoscaled_stable_has_no_replicas_even_during_a_canary():
    s = spec(autoscaling={"minReplicas": 2, "maxReplicas": 8, "targetCPUUtilization": 80},
             rollout={"canary": {"model": {"uri": "s3://models/iris/v2"}, "weight": 50}})
    out = children(s, CanaryPlan(deploy=True, canary_replicas=1))
    assert "replicas" not in out["stable"]["spec"] and out["canary"]["spec"]["replicas"] == 1


def test_a_new_autoscaled_stable_starts_at_min_replicas():
    s = spec(autoscaling={"minReplicas": 3, "maxReplicas": 8, "targetCPUUtilization": 80})
    out = render.desired(BODY, s, CanaryPlan(), VERSIONS, SETTINGS, stable_exists=False)
    assert out["stable"]["spec"]["replicas"] == 3


def test_hpa_and_pdb_api_versions_follow_the_cluster():
    s = spec(autoscaling={"minReplicas": 2, "maxReplicas": 3, "targetCPUUtilization": 80})
    out = render.desired(BODY, s, CanaryPlan(), render.ApiVersions(hpa="autoscaling/v2beta2", pdb="policy/v1beta1"),
                         SETTINGS)
    assert out["hpa"]["apiVersion"] == "autoscaling/v2beta2" and out["pdb"]["apiVersion"] == "policy/v1beta1"


@pytest.mark.parametrize("replicas,canary,has_pdb", [(1, 0, False), (2, 0, True), (0, 0, False), (1, 1, False),
                                                     (4, 3, True)])
def test_pdb_only_with_more_than_one_stable_replica(replicas, canary, has_pdb):
    p = CanaryPlan(deploy=canary > 0, canary_replicas=canary)
    s = spec(replicas=replicas, rollout={"canary": {"model": {"uri": "s3://models/iris/v2"}, "weight": 20}})
    out = children(s, p)
    assert (out["pdb"] is not None) == has_pdb
    if has_pdb:
        pdb = out["pdb"]
        assert (pdb["apiVersion"], pdb["kind"], pdb["metadata"]["name"]) == ("policy/v1", "PodDisruptionBudget", "iris")
        assert pdb["spec"]["maxUnavailable"] == 1
        # only the stable pods: a canary of one must stay evictable
        assert pdb["spec"]["selector"]["matchLabels"] == out["stable"]["spec"]["selector"]["matchLabels"]


# --- GPUs and scheduling --------------------------------------------------------------------------------------


def test_gpu_pod():
    s = spec(runtime={"preset": "vllm"},
             resources={"cpu": 8, "memory": "64Gi",
                        "gpu": {"count": 2, "product": "NVIDIA-H100-80GB-HBM3"}},
             scheduling={"nodeSelector": {"pool": "inference"},
                         "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml",
                                          "effect": "NoSchedule"}],
                         "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
                         "priorityClassName": "serving-high"})
    dep = children(s)["stable"]
    assert server(dep)["resources"] == {"requests": {"cpu": "8", "memory": "64Gi"},
                                        "limits": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "2"}}
    spec_ = pod(dep)
    assert spec_["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "pool": "inference"}
    assert spec_["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec_["affinity"] == {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    assert spec_["priorityClassName"] == "serving-high"
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Gi"}} in spec_["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in server(dep)["volumeMounts"]


def test_mig_profile_is_the_limit_without_a_product_selector():
    s = spec(resources={"gpu": {"count": 1, "resource": "nvidia.com/mig-1g.10gb"}})
    dep = children(s)["stable"]
    assert server(dep)["resources"] == {"limits": {"nvidia.com/mig-1g.10gb": "1"}}
    assert "nodeSelector" not in pod(dep)
    assert pod(dep)["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in pod(dep)["volumes"]  # no memory: no size limit


def test_cpu_pod_has_no_gpu_bits():
    dep = children(spec(resources={"cpu": "500m", "memory": "1Gi"}))["stable"]
    assert server(dep)["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"},
                                        "limits": {"cpu": "500m", "memory": "1Gi"}}
    spec_ = pod(dep)
    assert not {"nodeSelector", "tolerations", "affinity", "priorityClassName"} & spec_.keys()
    assert [v["name"] for v in spec_["volumes"]] == ["model"]
    assert "dshm" not in [m["name"] for m in server(dep)["volumeMounts"]]
    assert "resources" not in server(children(spec())["stable"])


def test_a_user_gpu_toleration_is_not_duplicated():
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    s = spec(resources={"gpu": {"count": 1}}, scheduling={"tolerations": [toleration]})
    assert pod(children(s)["stable"])["tolerations"] == [toleration]


def test_zero_gpus_is_a_cpu_pod():
    from mlops_operator.api.common import Resources
    r = Resources.model_validate({"cpu": 1, "gpu": {"count": 0}})
    assert gpu.container_resources(r) == {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}
    assert gpu.pod_scheduling(r, None) == {} and gpu.shm(r) is None


# --- security -------------------------------------------------------------------------------------------------


def test_secure_defaults_on_every_container():
    s = spec(rollout={"canary": {"model": {"uri": "gs://b/iris-v2"}, "weight": 50}})
    out = children(s, CanaryPlan(deploy=True, canary_replicas=1))
    for dep in (out["stable"], out["canary"]):
        spec_ = pod(dep)
        assert spec_["securityContext"]["runAsNonRoot"] is True
        assert spec_["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec_["automountServiceAccountToken"] is False and "serviceAccountName" not in spec_
        for container in spec_["containers"] + spec_.get("initContainers", []):
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False, container["name"]
            assert ctx["capabilities"] == {"drop": ["ALL"]}, container["name"]
            assert ctx["runAsNonRoot"] is True and ctx["seccompProfile"] == {"type": "RuntimeDefault"}
            assert not ctx.get("privileged"), container["name"]
        assert len(spec_["initContainers"]) == 1


def test_restricted_profile_values():
    assert security.pod_security_context()["runAsUser"] != 0
    assert security.container_security_context()["capabilities"]["drop"] == ["ALL"]


def test_service_account_token_only_with_a_service_account():
    spec_ = pod(children(spec(serviceAccountName="model-reader"))["stable"])
    assert spec_["serviceAccountName"] == "model-reader" and spec_["automountServiceAccountToken"] is True
    empty = pod(children(spec(serviceAccountName=""))["stable"])
    assert empty["automountServiceAccountToken"] is False and "serviceAccountName" not in empty


# --- model storage --------------------------------------------------------------------------------------------


def test_pvc_model_is_mounted_read_only_with_a_sub_path():
    dep = children(spec(model={"uri": "pvc://models-claim/iris/v1"}))["stable"]
    spec_ = pod(dep)
    assert "initContainers" not in spec_
    assert spec_["volumes"] == [{"name": "model",
                                 "persistentVolumeClaim": {"claimName": "models-claim", "readOnly": True}}]
    assert server(dep)["volumeMounts"] == [{"name": "model", "mountPath": "/mnt/models", "readOnly": True,
                                            "subPath": "iris/v1"}]


def test_pvc_without_a_path_mounts_the_whole_claim():
    volumes, inits, mount = storage.model_storage(Model(uri="pvc://models-claim"), "img")
    assert inits == [] and "subPath" not in mount and mount["readOnly"] is True
    assert volumes[0]["persistentVolumeClaim"]["claimName"] == "models-claim"


@pytest.mark.parametrize("uri", ["s3://models/iris/v1", "gs://b/m", "hf://org/name", "https://host/m.tar.gz",
                                 "file:///models/iris"])
def test_other_schemes_are_fetched_by_the_init_container(uri):
    dep = children(spec(model={"uri": uri, "secretRef": {"name": "model-creds"}}))["stable"]
    spec_ = pod(dep)
    (fetcher,) = spec_["initContainers"]
    assert fetcher["name"] == "fetch-model"
    assert fetcher["image"] == "mlops-operator:test"  # the operator's own image
    assert fetcher["command"] == ["mlops-operator", "fetch-model", "--uri", uri, "--dest", "/mnt/models"]
    assert fetcher["envFrom"] == [{"secretRef": {"name": "model-creds"}}]
    # without it a real kubelet reports only "Error", not the fetcher's own words
    assert fetcher["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert fetcher["volumeMounts"] == [{"name": "model", "mountPath": "/mnt/models"}]
    assert {"name": "model", "emptyDir": {}} in spec_["volumes"]
    assert {"name": "model", "mountPath": "/mnt/models", "readOnly": True} in server(dep)["volumeMounts"]


def test_no_secret_no_env_from():
    (fetcher,) = pod(children(spec())["stable"])["initContainers"]
    assert "envFrom" not in fetcher and "env" not in fetcher


# --- model size, probes, rollout strategy, promotion ----------------------------------------------------------------


def test_model_size_limits_the_volume_and_requests_ephemeral_storage():
    out = children(spec(model={"uri": "s3://models/llm", "size": "40Gi"}, resources={"cpu": 2, "memory": "8Gi"}))
    volume = next(v for v in pod(out["stable"])["volumes"] if v["name"] == storage.MODEL_VOLUME)
    assert volume["emptyDir"] == {"sizeLimit": "40Gi"}
    assert server(out["stable"])["resources"]["requests"] == {"cpu": "2", "memory": "8Gi", "ephemeral-storage": "40Gi"}
    assert "ephemeral-storage" not in server(out["stable"])["resources"]["limits"]  # no eviction for logs on top
    # Without a size, nothing is made up; a pvc:// model uses no node disk.
    plain = children(spec())
    assert "resources" not in server(plain["stable"])
    assert next(v for v in pod(plain["stable"])["volumes"] if v["name"] == storage.MODEL_VOLUME)["emptyDir"] == {}
    claimed = children(spec(model={"uri": "pvc://models/llm", "size": "40Gi"}))
    assert "resources" not in server(claimed["stable"])


def test_serving_containers_have_liveness_and_readiness_probes():
    container = server(children(spec())["stable"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/models/iris"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["livenessProbe"]["initialDelaySeconds"] >= 60


@pytest.mark.parametrize("resources,rolling", [
    ({"cpu": 1}, {"maxSurge": 1, "maxUnavailable": 0}),
    ({"gpu": {"count": 1}}, {"maxSurge": 0, "maxUnavailable": 1}),
    ({"gpu": {"count": 0}}, {"maxSurge": 1, "maxUnavailable": 0}),
])
def test_the_rollout_strategy_follows_the_gpu_request(resources, rolling):
    s = spec(resources=resources, rollout={"canary": {"model": {"uri": "s3://models/iris/v2"}, "weight": 10}})
    out = children(s, CanaryPlan(deploy=True, canary_replicas=1))
    for role in ("stable", "canary"):
        assert out[role]["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": rolling}


def test_the_promoted_template_is_the_stable_running_the_canary():
    s = spec(replicas=4, rollout={"canary": {"model": {"uri": "s3://models/iris/v2"}, "weight": 25,
                                             "runtime": {"image": "sk:next"}}})
    promoted = render.promoted_template(BODY, s, SETTINGS)
    after = children(s, CanaryPlan(stable_from_canary=True))["stable"]["spec"]["template"]
    assert promoted == after
    assert promoted != children(s)["stable"]["spec"]["template"]
    assert render.promoted_template(BODY, spec(), SETTINGS) is None


def test_service_is_cluster_ip_unless_a_node_port_is_asked_for():
    assert children(spec())["service"]["spec"]["type"] == "ClusterIP"
    assert "nodePort" not in children(spec(service={"type": "NodePort"}))["service"]["spec"]["ports"][0]
    svc = children(spec(service={"type": "NodePort", "nodePort": 30080}))["service"]["spec"]
    assert svc["type"] == "NodePort" and svc["ports"][0]["nodePort"] == 30080


def test_mlserver_pod_gets_the_fetched_model_file_in_its_env():
    dep = children(spec(model={"uri": "https://models.example/iris/model.joblib", "format": "sklearn"},
                        runtime={"preset": "mlserver"}))["stable"]
    env = {e["name"]: e["value"] for e in server(dep)["env"]}
    assert env["MLSERVER_MODEL_URI"] == f"{storage.MODEL_DIR}/model.joblib"
    assert env["MLSERVER_MODEL_IMPLEMENTATION"] == "mlserver_sklearn.SKLearnModel"
    assert server(dep)["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"


def test_a_server_without_args_sends_no_empty_args_list():
    # The API server drops an empty list; a desired "args": [] would differ from the live object on every reconcile.
    dep = children(spec(model={"uri": "s3://m/iris.joblib"}, runtime={"preset": "mlserver"}))["stable"]
    assert "args" not in server(dep)

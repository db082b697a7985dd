"""Parse errors and semantic checks name the field: "spec.x.y: what is wrong"."""

from __future__ import annotations

import copy

import pytest

from mlops_operator.api import InvalidSpec, parse_spec, validate_object, validate_spec
from mlops_operator.api.driftmonitor import DriftMonitorSpec
from mlops_operator.api.modeldeployment import ModelDeploymentSpec
from mlops_operator.api.trainingjob import TrainingJobSpec
from mlops_operator.api.validation import spec_warnings

MD = {"model": {"uri": "s3://bucket/iris"}, "runtime": {"preset": "sklearn"}}
TJ = {"image": "trainer:1", "output": {"modelUri": "s3://bucket/out"}}
DM = {"modelDeployment": {"name": "iris"}, "reference": {"uri": "s3://bucket/ref.parquet"}, "schedule": "0 * * * *"}


def body(kind, spec, namespace="team-a", name="example"):
    return {"apiVersion": "mlops.dev/v1alpha1", "kind": kind,
            "metadata": {"name": name, "namespace": namespace, "generation": 1}, "spec": spec}


def errors_of(kind, spec, **kwargs):
    """Every error validate_object reports (empty when the spec is fine)."""
    try:
        validate_object(body(kind, spec, **kwargs))
    except InvalidSpec as exc:
        assert exc.message == "; ".join(exc.errors)
        return exc.errors
    return []


def md(**changes):
    spec = copy.deepcopy(MD)
    spec.update(changes)
    return spec


def dm(**changes):
    spec = copy.deepcopy(DM)
    spec.update(changes)
    return {key: value for key, value in spec.items() if value is not None}


def test_valid_minimal_specs_pass():
    assert errors_of("ModelDeployment", MD) == []
    assert errors_of("TrainingJob", TJ) == []
    assert errors_of("DriftMonitor", DM) == []


# --- parse errors -------------------------------------------------------------------------------------------


def test_parse_errors_name_wire_paths():
    spec = md(runtime={"preset": "torchserve", "env": [{"value": "x"}]}, replicas=-1)
    with pytest.raises(InvalidSpec) as caught:
        parse_spec("ModelDeployment", spec)
    assert caught.value.errors == [
        "spec.runtime.preset: input should be 'vllm', 'triton', 'sklearn', 'mlserver' or 'custom'",
        "spec.runtime.env[0].name: field required",
        "spec.replicas: input should be greater than or equal to 0",
    ]


def test_parse_errors_for_custom_types_and_typos():
    errors = errors_of("ModelDeployment", md(resources={"memory": "4 GB"}, replica=3))
    assert errors == ['spec.resources.memory: must be a Kubernetes quantity such as 2, 0.5, "500m" or "4Gi"',
                      "spec.replica: extra inputs are not permitted"]


def test_a_duration_in_plain_seconds_is_fine_and_a_bad_one_says_how_to_write_it():
    assert errors_of("TrainingJob", {**TJ, "scheduling": {"gangTimeout": "90"}}) == []
    assert errors_of("TrainingJob", {**TJ, "scheduling": {"gangTimeout": "90 seconds"}}) == [
        'spec.scheduling.gangTimeout: must be seconds or a duration such as 90, "90s", "5m", "1h30m"']


@pytest.mark.parametrize("preset, fmt, expected", [
    ("sklearn", "sklearn", []),
    ("sklearn", "onnx", ["spec.model.format: the sklearn preset loads sklearn, not onnx; use preset triton"]),
    ("vllm", "huggingface", []),
    ("vllm", "xgboost", ["spec.model.format: the vllm preset loads huggingface, not xgboost; "
                         "use preset triton or mlserver"]),
    ("sklearn", "huggingface", ["spec.model.format: the sklearn preset loads sklearn, not huggingface; "
                                "use preset vllm"]),
    ("triton", "lightgbm", []),
    ("custom", "pytorch", []),
])
def test_model_format_must_be_one_the_preset_loads(preset, fmt, expected):
    runtime = {"preset": preset, "image": "server:1", "port": 8080} if preset == "custom" else {"preset": preset}
    assert errors_of("ModelDeployment", {**MD, "model": {**MD["model"], "format": fmt}, "runtime": runtime}) == expected


def test_canary_model_format_is_checked_against_the_preset():
    canary = {"model": {"uri": "s3://b/v2", "format": "onnx"}, "weight": 10}
    assert errors_of("ModelDeployment", {**MD, "rollout": {"canary": canary}}) == [
        "spec.rollout.canary.model.format: the sklearn preset loads sklearn, not onnx; use preset triton"]


def test_a_typo_in_the_format_lists_the_formats():
    [error] = errors_of("ModelDeployment", {**MD, "model": {**MD["model"], "format": "sklaern"}})
    assert error.startswith("spec.model.format: input should be 'sklearn', 'xgboost'")


@pytest.mark.parametrize("memory, warned", [("512", True), (512, True), ("900Ki", True), ("1Mi", False),
                                            ("512Mi", False), ("4Gi", False), (None, False)])
def test_a_memory_value_without_a_unit_is_a_warning_not_an_error(memory, warned):
    spec = {**MD, "resources": {"memory": memory} if memory is not None else {}}
    assert errors_of("ModelDeployment", spec) == []
    warnings = spec_warnings(parse_spec("ModelDeployment", spec))
    assert bool(warnings) is warned
    if warned:
        assert warnings[0].startswith(f"spec.resources.memory: {memory} is ") and "Mi" in warnings[0]


def test_missing_spec():
    with pytest.raises(InvalidSpec) as caught:
        validate_object({"kind": "TrainingJob", "metadata": {"name": "x"}})
    assert caught.value.errors == ["spec: required"]


# --- upper bounds (the CRD schema has the same maximum: test_crdgen) -----------------------------------------

INT32_MAX = 2**31 - 1
_RETRAIN = {"template": {"image": "t:1"}}


@pytest.mark.parametrize("kind, spec, path, limit", [
    ("ModelDeployment", md(replicas=INT32_MAX + 1), "spec.replicas", INT32_MAX),
    ("ModelDeployment", md(autoscaling={"minReplicas": INT32_MAX + 1, "maxReplicas": 2, "targetCPUUtilization": 80}),
     "spec.autoscaling.minReplicas", INT32_MAX),
    ("ModelDeployment", md(autoscaling={"maxReplicas": 10_000_000_000, "targetCPUUtilization": 80}),
     "spec.autoscaling.maxReplicas", INT32_MAX),
    ("ModelDeployment", md(autoscaling={"maxReplicas": 2, "targetCPUUtilization": INT32_MAX + 1}),
     "spec.autoscaling.targetCPUUtilization", INT32_MAX),
    ("ModelDeployment", md(resources={"gpu": {"count": 257}}), "spec.resources.gpu.count", 256),
    ("TrainingJob", {**TJ, "workers": 10_001}, "spec.workers", 10_000),
    ("TrainingJob", {**TJ, "resources": {"gpu": {"count": 1000}}}, "spec.resources.gpu.count", 256),
    ("TrainingJob", {**TJ, "backoffLimit": INT32_MAX + 1}, "spec.backoffLimit", INT32_MAX),
    ("TrainingJob", {**TJ, "activeDeadlineSeconds": INT32_MAX + 1}, "spec.activeDeadlineSeconds", INT32_MAX),
    ("TrainingJob", {**TJ, "ttlSecondsAfterFinished": INT32_MAX + 1}, "spec.ttlSecondsAfterFinished", INT32_MAX),
    ("DriftMonitor", dm(actions={"retrain": {**_RETRAIN, "maxPerDay": 1441}}), "spec.actions.retrain.maxPerDay", 1440),
    ("DriftMonitor", dm(actions={"retrain": {"template": {"image": "t:1", "workers": 10_001}}}),
     "spec.actions.retrain.template.workers", 10_000),
])
def test_numbers_over_their_limit_are_invalid_naming_the_field(kind, spec, path, limit):
    assert errors_of(kind, spec) == [f"{path}: input should be less than or equal to {limit}"]


@pytest.mark.parametrize("kind, spec", [
    ("ModelDeployment", md(replicas=INT32_MAX, resources={"gpu": {"count": 256}},
                           autoscaling={"minReplicas": INT32_MAX, "maxReplicas": INT32_MAX,
                                        "targetCPUUtilization": INT32_MAX})),
    ("TrainingJob", {**TJ, "workers": 10_000, "backoffLimit": INT32_MAX, "activeDeadlineSeconds": INT32_MAX,
                     "ttlSecondsAfterFinished": INT32_MAX, "scheduling": {"gangTimeout": INT32_MAX}}),
    ("DriftMonitor", dm(actions={"retrain": {**_RETRAIN, "maxPerDay": 1440, "cooldown": "24855d3h14m7s"}})),
])
def test_numbers_at_their_limit_are_fine(kind, spec):
    assert errors_of(kind, spec) == []


@pytest.mark.parametrize("value", [INT32_MAX + 1, "24855d3h14m8s", "99999999999d"])
def test_durations_are_bounded_in_both_forms(value):
    # the schema's maximum covers the integer form; the string form only the operator can check
    errors = errors_of("ModelDeployment", md(rollout={"canary": {"model": {"uri": "s3://b/v2"},
                                                                 "steps": [{"weight": 10, "pause": value}]}}))
    assert errors == [f"spec.rollout.canary.steps[0].pause: must be at most {INT32_MAX} seconds (68 years)"]


def test_metadata_name_must_fit_service_names():
    assert errors_of("ModelDeployment", MD, name="1-model")[0].startswith("metadata.name: must be a DNS label")
    assert errors_of("ModelDeployment", MD, name="a" * 64)[0].startswith("metadata.name:")
    assert errors_of("ModelDeployment", MD, name="a" * 63) == []
    # reported together with parse errors, not instead of them
    assert [e.split(":")[0] for e in errors_of("ModelDeployment", md(replicas=-1), name="Iris")] == [
        "metadata.name", "spec.replicas"]


# --- ModelDeployment ----------------------------------------------------------------------------------------


def test_a_canary_without_a_model_is_a_policy_for_the_next_one():
    """Steps and analysis written ahead, the model filled in later (by a person or a TrainingJob's promotion)."""
    assert errors_of("ModelDeployment", md(rollout={"canary": {"weight": 10}})) == []
    errors = errors_of("ModelDeployment", md(rollout={"canary": {"steps": [{"weight": 20}, {"weight": 10}]}}))
    assert errors == ["spec.rollout.canary.steps[1].weight: weights must not decrease from step to step"]


@pytest.mark.parametrize("canary, expected", [
    ({"weight": 10, "steps": [{"weight": 20}]}, "spec.rollout.canary: set weight (a fixed share) or steps"),
    ({}, "spec.rollout.canary: set weight (a fixed share) or steps (a progression)"),
    ({"steps": [{"weight": 50}, {"weight": 20}]}, "spec.rollout.canary.steps[1].weight: weights must not decrease"),
    ({"weight": 10, "promote": True, "abort": True}, "spec.rollout.canary: promote and abort are both set"),
    ({"weight": 10, "model": {"uri": "ftp://host/m"}}, "spec.rollout.canary.model.uri: unsupported scheme 'ftp://'"),
])
def test_canary_rules(canary, expected):
    canary = {"model": {"uri": "s3://bucket/v2"}, **canary}
    errors = errors_of("ModelDeployment", md(rollout={"canary": canary}))
    assert len(errors) == 1 and errors[0].startswith(expected), errors


def test_custom_runtime_needs_image_and_port():
    assert errors_of("ModelDeployment", md(runtime={"preset": "custom"})) == [
        "spec.runtime.image: runtime preset custom needs an image",
        "spec.runtime.port: runtime preset custom needs a port",
    ]
    assert errors_of("ModelDeployment", md(runtime={"preset": "custom", "image": "srv:1", "port": 8080})) == []


@pytest.mark.parametrize("uri, expected", [
    ("ftp://host/model", "spec.model.uri: unsupported scheme 'ftp://'; use one of s3://, gs://, hf://, pvc://"),
    ("models/iris", "spec.model.uri: 'models/iris' has no scheme"),
    ("s3://", "spec.model.uri: 's3://' names no location after s3://"),
    ("pvc://Bad_Claim/model", "spec.model.uri: 'pvc://Bad_Claim/model' must be pvc://<claim name>/<path>"),
])
def test_model_uri_schemes(uri, expected):
    errors = errors_of("ModelDeployment", md(model={"uri": uri}))
    assert len(errors) == 1 and errors[0].startswith(expected), errors


@pytest.mark.parametrize("uri", ["s3://b/m", "gs://b/m", "hf://org/name", "pvc://models/iris", "https://h/m.onnx",
                                 "http://h/m", "file:///models/iris"])
def test_supported_model_uris(uri):
    assert errors_of("ModelDeployment", md(model={"uri": uri})) == []


def test_prediction_log_must_be_writable():
    errors = errors_of("ModelDeployment", md(monitoring={"predictionLog": {"uri": "hf://org/logs"}}))
    assert errors == ["spec.monitoring.predictionLog.uri: unsupported scheme 'hf://'; use one of s3://, gs://, "
                      "pvc://, file://"]


def test_autoscaling_rules():
    both = {"maxReplicas": 3, "targetCPUUtilization": 70, "metric": {"name": "qps", "target": 10}}
    assert errors_of("ModelDeployment", md(autoscaling=both)) == [
        "spec.autoscaling: set exactly one of targetCPUUtilization or metric"]
    inverted = {"minReplicas": 5, "maxReplicas": 2, "targetCPUUtilization": 70}
    assert errors_of("ModelDeployment", md(autoscaling=inverted)) == [
        "spec.autoscaling.minReplicas: 5 is more than maxReplicas 2"]


# --- GPUs ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gpu, expected", [
    ({"count": 0, "resource": "nvidia.com/mig-1g.10gb"}, "spec.resources.gpu.count: 0 GPUs of MIG profile"),
    ({"count": 8, "resource": "nvidia.com/mig-1g.10gb"}, "spec.resources.gpu.count: 8 MIG instances cannot"),
    ({"count": 8, "product": "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"}, "spec.resources.gpu.count: 8 MIG instances"),
    ({"count": 1, "resource": "nvidia.com/mig-5g.40gb"}, "spec.resources.gpu.resource: a MIG profile has 1, 2, 3"),
    ({"count": 1, "resource": "nvidia.com/mig-big"}, "spec.resources.gpu.resource: 'nvidia.com/mig-big' is not"),
    ({"count": 0, "product": "NVIDIA-H100-80GB-HBM3"}, "spec.resources.gpu.product: a GPU product with count 0"),
])
def test_gpu_rules(gpu, expected):
    errors = errors_of("ModelDeployment", md(resources={"gpu": gpu}))
    assert len(errors) == 1 and errors[0].startswith(expected), errors


@pytest.mark.parametrize("gpu", [
    {"count": 7, "resource": "nvidia.com/mig-1g.10gb"},
    {"count": 1, "resource": "nvidia.com/mig-3g.40gb+me"},
    {"count": 8, "product": "NVIDIA-H100-80GB-HBM3"},
    {"count": 0},
    {"count": 2, "resource": "amd.com/gpu"},
])
def test_gpu_blocks_that_make_sense(gpu):
    assert errors_of("TrainingJob", {**TJ, "resources": {"gpu": gpu}}) == []


# --- references ---------------------------------------------------------------------------------------------


def test_reference_to_another_namespace():
    errors = errors_of("DriftMonitor", dm(modelDeployment={"name": "iris", "namespace": "team-b"}))
    assert errors == ["spec.modelDeployment.namespace: references stay in the object's namespace 'team-a', "
                      "not 'team-b'"]
    assert errors_of("DriftMonitor", dm(modelDeployment={"name": "iris", "namespace": "team-a"})) == []


def test_nested_references_are_checked_everywhere():
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "namespace": "other"}}}]
    model = {"uri": "hf://o/m", "secretRef": {"name": "hf", "namespace": "x"}}
    spec = md(runtime={"preset": "vllm", "env": env}, model=model)
    assert [e.split(":")[0] for e in errors_of("ModelDeployment", spec)] == [
        "spec.model.secretRef.namespace", "spec.runtime.env[0].valueFrom.secretKeyRef.namespace"]


def test_env_sources():
    env = [{"name": "A", "value": "1", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
           {"name": "B", "valueFrom": {}}]
    assert errors_of("TrainingJob", {**TJ, "env": env}) == [
        "spec.env[0]: set value or valueFrom, not both",
        "spec.env[1].valueFrom: set exactly one of secretKeyRef or configMapKeyRef",
    ]


# --- TrainingJob --------------------------------------------------------------------------------------------


def test_training_job_rules():
    spec = {"image": "t:1", "promote": {"modelDeployment": {"name": "iris"}},
            "scheduling": {"gangTimeoutAction": "fail", "gangTimeout": None}, "queueName": "-bad-",
            "checkpoint": {"uri": "http://h/c"}}
    assert [e.split(":")[0] for e in errors_of("TrainingJob", spec)] == [
        "spec.checkpoint.uri", "spec.output.modelUri", "spec.scheduling.gangTimeout", "spec.queueName"]


# --- DriftMonitor -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule, interval, expected", [
    (None, None, "spec.schedule: set exactly one of schedule (cron) or interval"),
    ("0 * * * *", "1h", "spec.schedule: set exactly one of schedule (cron) or interval"),
    ("61 * * * *", None, "spec.schedule: '61 * * * *' is not a cron schedule"),
    ("every hour", None, "spec.schedule: 'every hour' is not a cron schedule"),
    ("0 0 * * * *", None, "spec.schedule: '0 0 * * * *' is not a cron schedule"),  # seconds field: not k8s cron
    (None, "0s", "spec.interval: must be longer than 0s"),
])
def test_schedule_rules(schedule, interval, expected):
    errors = errors_of("DriftMonitor", dm(schedule=schedule, interval=interval))
    assert len(errors) == 1 and errors[0].startswith(expected), errors


@pytest.mark.parametrize("schedule, interval", [("@hourly", None), ("*/15 * * * *", None), (None, 3600),
                                                (None, "30m")])
def test_schedules_that_parse(schedule, interval):
    assert errors_of("DriftMonitor", dm(schedule=schedule, interval=interval)) == []


def test_feature_rules():
    features = [
        {"name": "amount", "type": "categorical", "test": "ks"},
        {"name": "country", "type": "numerical", "test": "chisquare"},
        {"name": "amount", "test": "ztest", "threshold": 1.5},
        {"name": "age", "test": "jensenshannon", "threshold": 2},
        {"name": "ok", "type": "numerical", "test": "psi", "threshold": 0.2},
    ]
    assert errors_of("DriftMonitor", dm(features=features)) == [
        "spec.features[0].test: ks is for numerical features; 'amount' is categorical",
        "spec.features[1].test: chisquare is for categorical features; 'country' is numerical",
        "spec.features[2].name: feature 'amount' is listed twice",
        "spec.features[2].threshold: a p-value threshold for ztest must be in (0, 1]",
        "spec.features[3].threshold: the Jensen-Shannon distance is at most 1",
    ]


def test_alertmanager_url():
    actions = {"alert": {"alertmanager": {"url": "alertmanager:9093"}}}
    assert errors_of("DriftMonitor", dm(actions=actions)) == [
        "spec.actions.alert.alertmanager.url: 'alertmanager:9093' must be an http:// or https:// URL"]


def test_retrain_template_parse_errors_are_prefixed():
    template = {"workers": 0, "framework": "jax"}
    errors = errors_of("DriftMonitor", dm(actions={"retrain": {"template": template}}))
    assert errors == [
        "spec.actions.retrain.template.image: field required",
        "spec.actions.retrain.template.framework: input should be 'pytorch' or 'generic'",
        "spec.actions.retrain.template.workers: input should be greater than or equal to 1",
    ]


def test_retrain_template_semantic_errors_are_prefixed():
    template = {"image": "t:1", "resources": {"gpu": {"count": 0, "resource": "nvidia.com/mig-2g.20gb"}},
                "promote": {"modelDeployment": {"name": "iris", "namespace": "elsewhere"}}}
    errors = errors_of("DriftMonitor", dm(actions={"retrain": {"template": template}}))
    assert [e.split(":")[0] for e in errors] == [
        "spec.actions.retrain.template.resources.gpu.count",
        "spec.actions.retrain.template.promote.modelDeployment.namespace",
        "spec.actions.retrain.template.output.modelUri",
    ]


def test_validate_spec_on_models_directly():
    spec = ModelDeploymentSpec.model_validate(md(rollout={"canary": {"weight": 5, "steps": [{"weight": 5}]}}))
    assert validate_spec(spec) == ["spec.rollout.canary: set weight (a fixed share) or steps (a progression), not both"]
    # the object's namespace unknown: a ref's namespace cannot be compared, so it is not an error
    monitor = DriftMonitorSpec.model_validate(dm(modelDeployment={"name": "iris", "namespace": "b"}))
    assert validate_spec(monitor) == []
    assert validate_spec(monitor, namespace="a")[0].startswith("spec.modelDeployment.namespace")
    job = TrainingJobSpec.model_validate({"image": "t:1", "dataset": {"uri": "ftp://x/y"}})
    assert validate_spec(job, prefix="template") == [
        "template.dataset.uri: unsupported scheme 'ftp://'; use one of s3://, gs://, hf://, pvc://, http://, "
        "https://, file://"]


@pytest.mark.parametrize("kind, spec, path", [
    ("ModelDeployment", md(podAnnotations={"container.apparmor.security.beta.kubernetes.io/server": "unconfined"}),
     "spec.podAnnotations"),
    ("ModelDeployment", md(rollout={"canary": {"model": {"uri": "s3://b/v2"}, "weight": 10, "podAnnotations": {
        "seccomp.security.alpha.kubernetes.io/pod": "unconfined"}}}), "spec.rollout.canary.podAnnotations"),
    ("TrainingJob", {**TJ, "podAnnotations": {"container.seccomp.security.alpha.kubernetes.io/t": "unconfined"}},
     "spec.podAnnotations"),
    ("DriftMonitor", {**DM, "actions": {"retrain": {"template": {**TJ, "podAnnotations": {
        "container.apparmor.security.beta.kubernetes.io/trainer": "unconfined"}}}}},
     "spec.actions.retrain.template.podAnnotations"),
])
def test_pod_annotations_that_weaken_pod_security_are_invalid(kind, spec, path):
    errors = errors_of(kind, spec)
    assert len(errors) == 1 and errors[0].startswith(path) and "security profile" in errors[0]


def test_pod_annotations_with_restricted_profiles_are_fine():
    assert errors_of("ModelDeployment", md(podAnnotations={
        "container.apparmor.security.beta.kubernetes.io/server": "runtime/default",
        "seccomp.security.alpha.kubernetes.io/pod": "localhost/profiles/strict.json",
        "prometheus.io/scrape": "unconfined"})) == []


def test_node_port_needs_a_node_port_service():
    base = {"model": {"uri": "s3://m/iris.joblib"}, "runtime": {"preset": "mlserver"}}
    assert errors_of("ModelDeployment", {**base, "service": {"nodePort": 30080}}) == [
        "spec.service.nodePort: set only with service.type NodePort"]
    assert errors_of("ModelDeployment", {**base, "service": {"type": "NodePort", "nodePort": 30080}}) == []


def test_an_env_name_set_twice_is_named_instead_of_failing_every_pod_apply():
    tj = {**copy.deepcopy(TJ), "env": [{"name": "STEPS", "value": "1"}, {"name": "A", "value": "2"},
                                        {"name": "STEPS", "value": "3"}]}
    assert errors_of("TrainingJob", tj) == ["spec.env[2].name: 'STEPS' is set twice"]
    runtime = {**copy.deepcopy(MD["runtime"]), "env": [{"name": "X", "value": "1"}, {"name": "X", "value": "2"}]}
    assert errors_of("ModelDeployment", md(runtime=runtime)) == ["spec.runtime.env[1].name: 'X' is set twice"]

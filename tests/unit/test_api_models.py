"""The pydantic models: wire names, defaults, scalar types, examples."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from mlops_operator.api import (
    KINDS,
    DriftMonitorSpec,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    TrainingJobSpec,
    TrainingJobStatus,
    duration_seconds,
    kind_for,
    validate_object,
)
from mlops_operator.api.common import Gpu, Resources

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))

MINIMAL_MD = {"model": {"uri": "s3://bucket/model"}, "runtime": {"preset": "sklearn"}}


def documents(path):
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_examples_exist():
    assert [path.name for path in EXAMPLES] == ["canary.yaml", "drift.yaml", "quickstart.yaml", "training.yaml"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_parse_validate_and_round_trip(path):
    for doc in documents(path):
        spec = validate_object(doc)  # raises InvalidSpec with field paths if anything is wrong
        assert type(spec) is kind_for(doc["kind"]).spec
        # the wire form parses back to the same model, and keeps every field the example wrote
        assert type(spec).model_validate(spec.to_dict()) == spec
        assert _contains(spec.to_dict(), doc["spec"])


def _contains(full, part):
    if isinstance(part, dict):
        return isinstance(full, dict) and all(k in full and _contains(full[k], v) for k, v in part.items())
    if isinstance(part, list):
        return isinstance(full, list) and len(full) == len(part) and all(map(_contains, full, part))
    return full == part


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_name_no_registry_host(path):
    for doc in documents(path):
        for image in _images(doc["spec"]):
            assert "." not in image.split("/")[0], f"{image} names a registry host"


def _images(spec):
    found = [spec["image"]] if isinstance(spec.get("image"), str) else []
    for value in spec.values():
        if isinstance(value, dict):
            found += _images(value)
    return found


def test_examples_cover_the_brief():
    quickstart = {doc["metadata"]["name"]: doc["spec"] for doc in documents(ROOT / "examples" / "quickstart.yaml")}
    presets = sorted(spec["runtime"]["preset"] for spec in quickstart.values())
    assert presets == ["mlserver", "vllm"]
    assert [s["resources"].get("gpu", {}).get("count") for s in quickstart.values()] == [None, 1]
    (training,) = documents(ROOT / "examples" / "training.yaml")
    assert training["spec"]["workers"] == 2 and training["spec"]["resources"]["gpu"]["count"] == 8
    assert training["spec"]["promote"]["modelDeployment"]["name"]
    (canary,) = documents(ROOT / "examples" / "canary.yaml")
    assert len(canary["spec"]["rollout"]["canary"]["steps"]) >= 2
    (drift,) = documents(ROOT / "examples" / "drift.yaml")
    assert drift["spec"]["actions"]["alert"]["alertmanager"]["url"].startswith("http")
    assert drift["spec"]["actions"]["retrain"]["template"]["image"]


def test_model_deployment_defaults():
    spec = ModelDeploymentSpec.model_validate(MINIMAL_MD)
    assert spec.replicas == 1
    assert spec.resources == Resources()
    assert spec.resources.gpu is None
    assert spec.scheduling.node_selector == {} and spec.scheduling.tolerations == []
    assert spec.rollout is None and spec.autoscaling is None
    assert spec.to_dict() == {**MINIMAL_MD, "runtime": {"preset": "sklearn", "args": [], "env": []}, "replicas": 1,
                              "resources": {}, "scheduling": {"nodeSelector": {}, "tolerations": []},
                              "podAnnotations": {},
                              "agent": {"enabled": True, "resources": {}}}


def test_gpu_defaults():
    gpu = Gpu()
    assert (gpu.count, gpu.resource, gpu.product) == (1, "nvidia.com/gpu", None)
    assert Gpu.model_validate({"resource": "nvidia.com/mig-1g.10gb"}).count == 1


def test_training_job_defaults():
    spec = TrainingJobSpec.model_validate({"image": "trainer:1"})
    assert (spec.workers, spec.framework, spec.backoff_limit, spec.suspend) == (1, "pytorch", 3, False)
    assert spec.scheduling.gang_timeout == "10m" and spec.scheduling.gang_timeout_action == "wait"


def test_drift_monitor_defaults():
    spec = DriftMonitorSpec.model_validate({
        "modelDeployment": {"name": "iris"}, "reference": {"uri": "s3://b/ref.parquet"}, "interval": "1h",
        "features": [{"name": "x"}],
        "actions": {"retrain": {"template": {"image": "trainer:1"}}},
    })
    assert spec.drift_share == 0.5
    assert spec.features[0].test == "auto"
    assert spec.actions.retrain.max_per_day == 1 and spec.actions.retrain.cooldown == "6h"
    assert isinstance(spec.actions.retrain.template, TrainingJobSpec)


def test_wire_names_are_camel_case_with_kubernetes_spellings():
    spec = ModelDeploymentSpec.model_validate({
        **MINIMAL_MD, "serviceAccountName": "sa",
        "autoscaling": {"maxReplicas": 3, "targetCPUUtilization": 70},
    })
    wire = spec.to_dict()
    assert wire["serviceAccountName"] == "sa"
    assert wire["autoscaling"] == {"minReplicas": 1, "maxReplicas": 3, "targetCPUUtilization": 70}
    promote = {"modelDeployment": {"name": "m"}, "as": "stable"}
    job = TrainingJobSpec.model_validate({"image": "t:1", "promote": promote})
    assert job.promote.as_ == "stable"
    assert job.to_dict()["promote"] == {"modelDeployment": {"name": "m"}, "as": "stable"}
    # python names work too, for code that builds specs
    assert TrainingJobSpec(image="t:1", backoff_limit=0).to_dict()["backoffLimit"] == 0


@pytest.mark.parametrize("value", [2, "2", "500m", "4Gi", "1.5", "0.5", "1e3", "128974848", 1.0])
def test_quantity_accepts(value):
    assert Resources.model_validate({"cpu": value}).cpu == (1 if value == 1.0 else value)


@pytest.mark.parametrize("value, kept", [(0.5, "0.5"), (1.25, "1.25"), (0.001, "0.001")])
def test_a_fractional_number_is_a_quantity_as_for_a_pod(value, kept):
    assert Resources.model_validate({"cpu": value}).cpu == kept


@pytest.mark.parametrize("value", ["4 GB", "-1", -1, -0.5, True, "", "1.5.2", "Gi", [1], {"a": 1}])
def test_quantity_rejects(value):
    with pytest.raises(ValidationError) as caught:
        Resources.model_validate({"memory": value})
    assert caught.value.errors()[0]["loc"] == ("memory",)


@pytest.mark.parametrize("value, seconds", [(90, 90), ("90", 90), ("90s", 90), ("5m", 300), ("1h30m", 5400),
                                            ("2d", 172800),
                                            ("1d2h3m4s", 93784), (0, 0)])
def test_duration_seconds(value, seconds):
    assert duration_seconds(value) == seconds


@pytest.mark.parametrize("value", ["", "5 minutes", "1.5h", "m", "30ms", -5, True, "\u0663h"])
def test_duration_rejects(value):
    with pytest.raises(ValidationError):
        TrainingJobSpec.model_validate({"image": "t:1", "scheduling": {"gangTimeout": value}})


def test_unknown_fields_are_rejected():
    with pytest.raises(ValidationError) as caught:
        ModelDeploymentSpec.model_validate({**MINIMAL_MD, "replica": 2})
    assert caught.value.errors()[0]["type"] == "extra_forbidden"


def test_status_models_build_and_ignore_unknown_fields():
    status = ModelDeploymentStatus(ready_replicas=2, url="http://iris.default.svc:8080", observed_generation=3)
    assert status.to_dict() == {"observedGeneration": 3, "conditions": [], "url": "http://iris.default.svc:8080",
                                "readyReplicas": 2}
    old = TrainingJobStatus.model_validate({"phase": "Running", "removedField": 1, "workers": {"active": 2}})
    assert old.phase == "Running" and old.workers.active == 2


def test_kind_lookup():
    assert [kind.kind for kind in KINDS] == ["ModelDeployment", "TrainingJob", "DriftMonitor"]
    assert kind_for("md") is kind_for("ModelDeployment") is kind_for("modeldeployments") is KINDS[0]
    assert kind_for("tj").label_key == "mlops.dev/trainingjob"
    with pytest.raises(KeyError):
        kind_for("Deployment")

"""The generated CRDs: structural for Kubernetes 1.20, documented, stable, and in step with the models."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from mlops_operator.api import KINDS, crdgen
from mlops_operator.api.crdgen import SchemaError, render_crds, structural, write_crds
from openapi_check import structural_problems, validate, walk

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def schema_of(crd):
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def node(crd, dotted):
    """The schema node at a dotted path such as spec.rollout.canary (lists: steps[])."""
    current = schema_of(crd)
    for part in dotted.split("."):
        if part.endswith("[]"):
            current = current["properties"][part[:-2]]["items"]
        else:
            current = current["properties"][part]
    return current


def validate_object(crd, doc):
    """Schema errors of a whole object; metadata is the API server's business, not the schema's."""
    return validate(schema_of(crd), {key: value for key, value in doc.items() if key != "metadata"})


@pytest.fixture(scope="module")
def crds():
    return {crd["spec"]["names"]["kind"]: crd for crd in render_crds()}


def test_one_crd_per_kind_in_fixed_order():
    names = [crd["metadata"]["name"] for crd in render_crds()]
    assert names == ["modeldeployments.mlops.dev", "trainingjobs.mlops.dev", "driftmonitors.mlops.dev"]


@pytest.mark.parametrize("kind, short", [("ModelDeployment", "md"), ("TrainingJob", "tj"), ("DriftMonitor", "dm")])
def test_names_scope_and_version(crds, kind, short):
    crd = crds[kind]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["spec"]["group"] == "mlops.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    names = crd["spec"]["names"]
    assert names["shortNames"] == [short]
    assert names["categories"] == ["mlops"]
    assert names["listKind"] == f"{kind}List"
    assert names["singular"] == kind.lower()
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize("kind, columns", [
    ("ModelDeployment", ["Ready", "Reason", "Replicas", "Model", "Canary", "Analysis", "URL", "Age"]),
    ("TrainingJob", ["Phase", "Ready", "Reason", "Workers", "GPUs", "Attempt", "Age"]),
    ("DriftMonitor", ["Ready", "Reason", "Drift", "Share", "Last Check", "Age"]),
])
def test_printer_columns(crds, kind, columns):
    printed = crds[kind]["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [column["name"] for column in printed] == columns
    for column in printed:
        assert column["type"] in ("string", "integer", "number", "boolean", "date")
        assert column["jsonPath"].startswith(".")
        path = column["jsonPath"].split("[?")[0].lstrip(".")
        if path.startswith(("spec.", "status.")):  # every column points at a field the schema has
            node(crds[kind], path)


@pytest.mark.parametrize("kind", ["ModelDeployment", "TrainingJob", "DriftMonitor"])
def test_schema_is_structural_and_documented(crds, kind):
    schema = schema_of(crds[kind])
    assert structural_problems(schema) == []
    assert schema["required"] == ["spec"]
    # metadata must not be constrained: Kubernetes 1.20 rejects anything but its type, even a description
    assert schema["properties"]["metadata"] == {"type": "object"}


def test_checker_catches_what_it_claims():
    # the structural checker is itself tested: each of these must be reported
    bad = {
        "type": "object",
        "properties": {
            "a": {"type": "string"},  # no description
            "b": {"description": "b"},  # no type
            "c": {"type": "integer", "description": "c", "default": -1, "minimum": 0},  # default invalid
            "d": {"$ref": "#/x", "description": "d", "type": "object"},
            "e": {"type": "object", "description": "e", "additionalProperties": False},
        },
    }
    problems = "\n".join(structural_problems(bad))
    for expected in (".a: no description", ".b: no valid type", ".c: default does not validate", ".d: has $ref",
                     ".e: additionalProperties must be a schema"):
        assert expected in problems


def test_no_union_or_free_form_can_slip_through():
    with pytest.raises(SchemaError):
        structural({"anyOf": [{"type": "string"}, {"type": "integer"}]}, {})
    with pytest.raises(SchemaError):
        structural({"type": "object", "additionalProperties": True}, {})
    with pytest.raises(SchemaError):
        structural({"description": "no type"}, {})


def test_optional_fields_are_not_nullable_nor_required(crds):
    model = node(crds["ModelDeployment"], "spec.model")
    assert model["required"] == ["uri"]
    assert "format" in model["properties"] and "nullable" not in model["properties"]["format"]
    spec = node(crds["ModelDeployment"], "spec")
    assert spec["required"] == ["model", "runtime"]


def test_quantities_are_numbers_or_strings_and_durations_int_or_string(crds):
    md, tj = crds["ModelDeployment"], crds["TrainingJob"]
    for schema in (node(md, "spec.resources.cpu"), node(md, "spec.resources.memory"), node(md, "spec.model.size"),
                   node(md, "spec.autoscaling.metric.target"), node(tj, "spec.resources.cpu")):
        # cpu: 0.5 as for a pod: no structural type says "number or string", so the type stays open
        assert schema["x-kubernetes-preserve-unknown-fields"] is True
        assert "type" not in schema and schema["minimum"] == 0 and schema["pattern"]
    for schema in (node(md, "spec.rollout.canary.steps[].pause"), node(tj, "spec.scheduling.gangTimeout")):
        assert schema["x-kubernetes-int-or-string"] is True
        assert "type" not in schema


def test_defaults_come_from_the_models(crds):
    md, tj, dm = crds["ModelDeployment"], crds["TrainingJob"], crds["DriftMonitor"]
    assert node(md, "spec.replicas")["default"] == 1
    assert node(md, "spec.resources.gpu.resource")["default"] == "nvidia.com/gpu"
    assert node(md, "spec.resources.gpu.count")["default"] == 1
    assert node(md, "spec.rollout.canary.promote")["default"] is False
    assert node(tj, "spec.workers") == {**node(tj, "spec.workers"), "default": 1, "minimum": 1}
    assert node(tj, "spec.backoffLimit")["default"] == 3
    assert node(tj, "spec.framework")["default"] == "pytorch"
    assert node(tj, "spec.scheduling.gangTimeoutAction")["enum"] == ["wait", "fail"]
    assert node(dm, "spec.driftShare")["default"] == 0.5
    assert node(dm, "spec.features[].test")["default"] == "auto"
    # list/dict fields filled by default_factory get no server-side default (no clutter in stored objects)
    assert "default" not in node(md, "spec.scheduling.tolerations")
    assert "default" not in node(md, "spec.resources")


def test_enums_and_limits(crds):
    md, dm = crds["ModelDeployment"], crds["DriftMonitor"]
    assert node(md, "spec.runtime.preset")["enum"] == ["vllm", "triton", "sklearn", "mlserver", "custom"]
    weight = node(md, "spec.rollout.canary.steps[].weight")
    assert (weight["minimum"], weight["maximum"]) == (0, 100)
    assert node(dm, "spec.features[].test")["enum"] == [
        "auto", "ks", "psi", "chisquare", "ztest", "wasserstein", "jensenshannon"]
    assert node(dm, "spec.features")["x-kubernetes-list-map-keys"] == ["name"]
    conditions = node(md, "status.conditions")
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["items"]["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert conditions["items"]["properties"]["lastTransitionTime"]["format"] == "date-time"


# Spec integers without a maximum, and why: quantities (cpu, memory, a metric's target) are int64 quantities;
# tolerationSeconds is an int64 in the pod (negative means 0); lastRows is a row count the drift runner slices by.
# None of them becomes a count of objects or an int32 field.
UNBOUNDED_INTEGERS = {".spec.scheduling.tolerations[].tolerationSeconds", ".spec.current.lastRows",
                      ".spec.actions.retrain.template.scheduling.tolerations[].tolerationSeconds"}
QUANTITIES = (".cpu", ".memory", ".metric.target")


def test_every_spec_integer_has_a_maximum(crds):
    integers = {path: n for crd in crds.values() for path, n in walk(schema_of(crd))
                if path.startswith(".spec.") and (n.get("type") == "integer" or n.get("x-kubernetes-int-or-string"))
                and not path.endswith(QUANTITIES)}
    unbounded = {path for path, n in integers.items() if "maximum" not in n}
    assert unbounded == UNBOUNDED_INTEGERS
    md, tj, dm = crds["ModelDeployment"], crds["TrainingJob"], crds["DriftMonitor"]
    for kind, path in ((md, "spec.replicas"), (md, "spec.autoscaling.minReplicas"),
                       (md, "spec.autoscaling.maxReplicas"), (md, "spec.autoscaling.targetCPUUtilization"),
                       (tj, "spec.backoffLimit"), (tj, "spec.activeDeadlineSeconds"),
                       (tj, "spec.ttlSecondsAfterFinished"), (tj, "spec.scheduling.gangTimeout"),
                       (md, "spec.rollout.canary.steps[].pause"), (dm, "spec.interval"),
                       (dm, "spec.actions.retrain.cooldown"), (dm, "spec.current.window")):
        assert node(kind, path)["maximum"] == 2**31 - 1, path  # int32: where Kubernetes stops
    assert node(tj, "spec.workers")["maximum"] == 10_000
    assert node(md, "spec.resources.gpu.count")["maximum"] == node(tj, "spec.resources.gpu.count")["maximum"] == 256
    assert node(dm, "spec.actions.retrain.maxPerDay")["maximum"] == 1440
    assert node(md, "spec.runtime.port")["maximum"] == 65535
    assert "maximum" not in node(md, "spec.resources.cpu")


def test_pass_through_only_where_intended(crds):
    preserved = [path for crd in crds.values() for path, n in walk(schema_of(crd))
                 if n.get("x-kubernetes-preserve-unknown-fields") and n.get("type") == "object"]
    assert preserved == [".spec.scheduling.affinity", ".spec.scheduling.affinity",
                         ".spec.actions.retrain.template.scheduling.affinity"]


def test_retrain_template_is_a_real_trainingjob_schema(crds):
    template = node(crds["DriftMonitor"], "spec.actions.retrain.template")
    trainingjob_spec = node(crds["TrainingJob"], "spec")
    assert template["properties"] == trainingjob_spec["properties"]
    assert template["required"] == ["image"]


def test_explain_canary_is_useful(crds):
    canary = node(crds["ModelDeployment"], "spec.rollout.canary")
    assert "second Deployment" in canary["description"]
    assert set(canary["properties"]) == {"model", "runtime", "weight", "steps", "analysis", "promote", "abort",
                                           "podAnnotations"}
    assert "30s" in canary["properties"]["steps"]["items"]["properties"]["pause"]["description"]
    assert "\n" not in canary["description"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_against_the_crd_schema(crds, path):
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert documents
    for doc in documents:
        assert doc["apiVersion"] == "mlops.dev/v1alpha1"
        assert validate_object(crds[doc["kind"]], doc) == []


def test_schema_validation_rejects_what_pydantic_rejects(crds):
    # the schema and the models agree on limits (checked on a few representative fields)
    doc = yaml.safe_load((ROOT / "examples" / "canary.yaml").read_text().split("---", 1)[1])
    bad = copy.deepcopy(doc)
    bad["spec"]["replicas"] = -1
    bad["spec"]["runtime"]["preset"] = "torchserve"
    bad["spec"]["rollout"]["canary"]["steps"][0]["weight"] = 101
    bad["spec"]["resources"]["cpu"] = -0.5
    bad["spec"]["resources"]["memory"] = "4 GB"
    errors = validate_object(crds["ModelDeployment"], bad)
    assert [e.split(":")[0] for e in errors] == [
        ".spec.runtime.preset", ".spec.replicas", ".spec.resources.cpu", ".spec.resources.memory",
        ".spec.rollout.canary.steps[0].weight"]


def test_write_crds_is_byte_identical(tmp_path):
    first = write_crds(tmp_path / "a")
    second = write_crds(tmp_path / "b")
    assert [p.name for p in first] == [
        "mlops.dev_modeldeployments.yaml", "mlops.dev_trainingjobs.yaml", "mlops.dev_driftmonitors.yaml"]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    again = write_crds(tmp_path / "a")
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in second]
    text = first[0].read_text()
    assert text.startswith("# Generated by mlops_operator.api.crdgen")
    assert "&id" not in text and "*id" not in text  # no YAML anchors
    assert [yaml.safe_load(p.read_text()) for p in first] == render_crds()


def test_committed_crds_are_up_to_date():
    committed = ROOT / "crds"
    for crd in render_crds():
        path = committed / crdgen.crd_filename(crd)
        assert path.exists(), f"{path} missing: run python -m mlops_operator.api.crdgen crds"
        assert path.read_text() == crdgen.dump(crd), f"{path} is stale: run python -m mlops_operator.api.crdgen crds"


def test_every_kind_has_a_crd():
    assert [kind.plural for kind in KINDS] == [crd["spec"]["names"]["plural"] for crd in render_crds()]

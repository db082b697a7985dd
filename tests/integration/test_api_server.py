"""The mlops.dev API against the real API server: the generated CRDs accept the examples and apply the models'
defaults, keep status behind the status subresource, publish their documentation (OpenAPI, kubectl explain),
reject malformed objects naming the field, and give kubectl its columns, short names and category.

Expected values come from the models (mlops_operator.api) wherever possible; a few literals keep the tests
honest should the models and the CRDs drift together.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import time
import types
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from helpers import apply, request, wait_for
from mlops_localcluster.build import k8s_kubectl_or_none
from mlops_operator import GROUP, VERSION
from mlops_operator.api import KINDS, InvalidSpec, kind_for, validate_object
from mlops_operator.api.modeldeployment import Rollout

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
API = f"{GROUP}/{VERSION}"

pytestmark = pytest.mark.usefixtures("crds")


# --- helpers ----------------------------------------------------------------------------------------------


def collection_path(kind: str, namespace: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{kind_for(kind).plural}"


def object_url(kind: str, namespace: str, name: str) -> str:
    return f"{collection_path(kind, namespace)}/{name}"


def example_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def in_namespace(doc: dict, namespace: str) -> dict:
    doc = copy.deepcopy(doc)
    doc["metadata"]["namespace"] = namespace
    return doc


def read(kube, kind: str, namespace: str, name: str) -> dict:
    code, body = request(kube, "GET", object_url(kind, namespace, name))
    assert code == 200, (code, body)
    return body


def create(kube, obj: dict) -> tuple[int, dict]:
    return request(kube, "POST", collection_path(obj["kind"], obj["metadata"]["namespace"]), body=obj)


def merge_patch(kube, url: str, body: dict) -> tuple[int, dict]:
    return request(kube, "PATCH", url, body=body, content_type="application/merge-patch+json")


def contained(small, big, path: str = "") -> list[str]:
    """Where `small` is not part of `big` (every key of small in big with an equal value, lists item by item)."""
    if isinstance(small, dict):
        if not isinstance(big, dict):
            return [f"{path}: {big!r} is not an object"]
        problems = []
        for key, value in small.items():
            if key not in big:
                problems.append(f"{path}.{key}: missing")
            else:
                problems += contained(value, big[key], f"{path}.{key}")
        return problems
    if isinstance(small, list):
        if not isinstance(big, list) or len(small) != len(big):
            return [f"{path}: {big!r} is not a list of {len(small)}"]
        return [p for index, (a, b) in enumerate(zip(small, big)) for p in contained(a, b, f"{path}[{index}]")]
    if small != big or type(small) is bool and type(big) is not bool:
        return [f"{path}: {small!r} != {big!r}"]
    return []


def _models_in(annotation) -> list[tuple[bool, type[BaseModel]]]:
    """(is a list, model) for every pydantic model an annotation holds: Model, Model | None, list[Model]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(False, annotation)]
    origin = typing.get_origin(annotation)
    if origin is list:
        return [(True, model) for _, model in _models_in(typing.get_args(annotation)[0])]
    if origin in (typing.Union, types.UnionType):
        return [found for arg in typing.get_args(annotation) for found in _models_in(arg)]
    return []


def declared_defaults(model: type[BaseModel], prefix: tuple[str, ...] = ()):
    """(wire path, default) of every field with a plain default, in the model and the models inside it;
    a list's items are the path element "[]"."""
    for name, field in model.model_fields.items():
        path = prefix + (field.alias or name,)
        if field.default is not PydanticUndefined and field.default is not None:
            yield path, field.default
        for is_list, inner in _models_in(field.annotation):
            yield from declared_defaults(inner, path + (("[]",) if is_list else ()))


def at(tree, path: tuple[str, ...]):
    """The values at a path ("[]" fans out over list items); empty when a step is missing."""
    if not path:
        return [tree]
    head, rest = path[0], path[1:]
    if head == "[]":
        return [found for item in (tree if isinstance(tree, list) else []) for found in at(item, rest)]
    if isinstance(tree, dict) and head in tree:
        return at(tree[head], rest)
    return []


def kubectl(cluster: str, cache_dir: Path, *args: str) -> subprocess.CompletedProcess:
    binary = k8s_kubectl_or_none()
    if binary is None:
        pytest.skip("no kubectl 1.20 built (mlops_localcluster.build)")
    return subprocess.run([str(binary), "--kubeconfig", cluster, "--cache-dir", str(cache_dir), *args],
                          capture_output=True, text=True, timeout=30)


def apply_examples(kube, namespace: str) -> list[dict]:
    """Every example object, applied into the namespace; returns the manifests as applied."""
    applied = []
    for path in EXAMPLES:
        for doc in example_documents(path):
            doc = in_namespace(doc, namespace)
            apply(kube, doc)
            applied.append(doc)
    return applied


# Smallest valid spec of each kind (valid for the API server and for the operator's own validation).
MINIMAL = {
    "ModelDeployment": {"model": {"uri": "s3://bucket/model/"}, "runtime": {"preset": "sklearn"}},
    "TrainingJob": {"image": "example/trainer:1"},
    "DriftMonitor": {"modelDeployment": {"name": "fraud"}, "reference": {"uri": "s3://bucket/train.parquet"},
                     "interval": "1h"},
}


def minimal(kind: str, namespace: str, name: str = "minimal", **spec) -> dict:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name, "namespace": namespace},
            "spec": {**copy.deepcopy(MINIMAL[kind]), **spec}}


# --- 1. examples apply, defaults appear -------------------------------------------------------------------


def test_examples_exist():
    assert {p.name for p in EXAMPLES} >= {"canary.yaml", "drift.yaml", "quickstart.yaml", "training.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_applies_and_reads_back_with_the_models_defaults(kube, namespace, path):
    documents = example_documents(path)
    assert documents
    defaults_checked = 0
    for doc in documents:
        doc = in_namespace(doc, namespace)
        kind = kind_for(doc["kind"])
        validate_object(doc)  # the operator accepts it too (raises InvalidSpec otherwise)
        applied = apply(kube, doc)
        stored = read(kube, doc["kind"], namespace, doc["metadata"]["name"])
        assert applied["spec"] == stored["spec"]
        # nothing the example says was pruned or changed ...
        assert contained(doc["spec"], stored["spec"], "spec") == []
        # ... every field the server added is a default the model declares, with the model's value ...
        model_view = kind.spec.model_validate(doc["spec"]).to_dict()
        assert contained(stored["spec"], model_view, "spec") == []
        # ... and every plain default the model declares is filled in wherever its parent object exists.
        for field_path, default in declared_defaults(kind.spec):
            given, kept = at(doc["spec"], field_path[:-1]), at(stored["spec"], field_path[:-1])
            assert len(given) == len(kept)
            for parent, stored_parent in zip(given, kept):
                if isinstance(parent, dict) and field_path[-1] not in parent:
                    defaults_checked += 1
                    assert stored_parent.get(field_path[-1]) == default, (".".join(("spec",) + field_path), default)
        assert "status" not in applied  # an apply cannot write status (an operator may write it later)
    if path.name != "canary.yaml":  # canary.yaml spells out every default it could get
        assert defaults_checked > 0


def test_defaults_on_read_back(kube, namespace):
    """Literal checks: the defaults we document, on objects that leave them out."""
    apply(kube, minimal("ModelDeployment", namespace, "md-gpu", resources={"gpu": {"count": 2}},
                        autoscaling={"maxReplicas": 3, "targetCPUUtilization": 80},
                        rollout={"canary": {"model": {"uri": "s3://bucket/v2/"}, "weight": 10}},
                        monitoring={"predictionLog": {"uri": "s3://bucket/log/"}}))
    apply(kube, minimal("TrainingJob", namespace, "tj-bare"))
    apply(kube, minimal("TrainingJob", namespace, "tj-promote", scheduling={"gangTimeout": "10m"},
                        output={"modelUri": "s3://bucket/out/"}, promote={"modelDeployment": {"name": "md-gpu"}}))
    apply(kube, minimal("DriftMonitor", namespace, "dm-bare", features=[{"name": "amount"}],
                        actions={"retrain": {"template": {"image": "example/trainer:1"}}}))

    md = read(kube, "ModelDeployment", namespace, "md-gpu")["spec"]
    assert md["replicas"] == 1
    assert md["resources"]["gpu"] == {"count": 2, "resource": "nvidia.com/gpu"}
    assert md["autoscaling"]["minReplicas"] == 1
    assert md["rollout"]["canary"]["promote"] is False and md["rollout"]["canary"]["abort"] is False
    assert md["monitoring"]["predictionLog"]["sampleRate"] == 1.0

    tj = read(kube, "TrainingJob", namespace, "tj-bare")["spec"]
    assert tj == {"image": "example/trainer:1", "workers": 1, "backoffLimit": 3, "framework": "pytorch",
                  "suspend": False}
    tj = read(kube, "TrainingJob", namespace, "tj-promote")["spec"]
    assert tj["scheduling"] == {"gangTimeout": "10m", "gangTimeoutAction": "wait"}
    assert tj["promote"] == {"modelDeployment": {"name": "md-gpu"}, "as": "canary"}

    dm = read(kube, "DriftMonitor", namespace, "dm-bare")["spec"]
    assert dm["driftShare"] == 0.5
    assert dm["features"] == [{"name": "amount", "test": "auto"}]
    retrain = dm["actions"]["retrain"]
    assert (retrain["cooldown"], retrain["maxPerDay"]) == ("6h", 1)
    assert (retrain["template"]["workers"], retrain["template"]["backoffLimit"]) == (1, 3)


def test_unknown_fields_are_pruned_except_where_preserved(kube, namespace):
    obj = minimal("ModelDeployment", namespace, "pruned", replicaCount=3,
                  scheduling={"affinity": {"nodeAffinity": {"anything": {"goes": [1, 2]}}}, "nodeSelectr": {"a": "b"}})
    obj["spec"]["runtime"]["imagePullPolicy"] = "Always"
    obj["spec"]["model"]["secretRef"] = {"name": "s3", "optional": True}
    obj["status"] = {"url": "http://not-written-on-create"}
    code, created = create(kube, obj)
    assert code == 201, created
    assert "status" not in created  # create ignores status when the status subresource is on
    stored = read(kube, "ModelDeployment", namespace, "pruned")
    assert "replicaCount" not in stored["spec"]
    assert stored["spec"]["runtime"] == {"preset": "sklearn"}
    assert stored["spec"]["model"]["secretRef"] == {"name": "s3"}
    assert stored["spec"]["scheduling"] == {"affinity": {"nodeAffinity": {"anything": {"goes": [1, 2]}}}}


# --- 2. the status subresource ----------------------------------------------------------------------------

STATUS = {
    "ModelDeployment": {"url": "http://minimal.ns.svc:8080", "replicas": 2, "readyReplicas": 2},
    "TrainingJob": {"phase": "Running", "attempt": 1, "workers": {"active": 1, "succeeded": 0, "failed": 0}},
    "DriftMonitor": {"lastRun": {"datasetDrift": True, "driftShare": 0.25, "time": "2024-05-01T12:00:00Z"}},
}
SPEC_CHANGE = {"ModelDeployment": {"replicas": 7}, "TrainingJob": {"workers": 7}, "DriftMonitor": {"driftShare": 0.7}}
BAD_STATUS = {"ModelDeployment": ({"readyReplicas": -1}, "status.readyReplicas"),
              "TrainingJob": ({"phase": "Exploded"}, "status.phase"),
              "DriftMonitor": ({"lastRun": {"driftShare": 2}}, "status.lastRun.driftShare")}


@pytest.mark.parametrize("kind", [k.kind for k in KINDS])
def test_status_is_written_only_through_the_status_subresource(kube, namespace, kind):
    # Assertions look at each PATCH's own answer (the object as that write left it), and the written status
    # carries a condition no operator writes: the tests hold even with an operator reconciling the objects.
    apply(kube, minimal(kind, namespace))
    url = object_url(kind, namespace, "minimal")
    before = read(kube, kind, namespace, "minimal")
    marker = {"type": "TestMarker", "status": "True", "reason": "WrittenByTest", "message": "written by the test",
              "lastTransitionTime": "2024-05-01T12:00:00Z", "observedGeneration": 1}
    status = {**STATUS[kind], "observedGeneration": 41, "conditions": [marker]}

    def has_marker(obj):
        return any(c.get("type") == "TestMarker" for c in (obj.get("status") or {}).get("conditions", []))

    # through the main resource: accepted, but status is not written
    code, body = merge_patch(kube, url, {"status": status})
    assert code == 200, body
    assert not has_marker(body)
    assert (body.get("status") or {}).get("observedGeneration") != 41
    assert body["metadata"]["generation"] == 1

    # through /status: written, and the generation (a spec counter) does not move
    code, body = merge_patch(kube, url + "/status", {"status": status})
    assert code == 200, body
    assert contained(status, body["status"], "status") == []
    assert body["metadata"]["generation"] == before["metadata"]["generation"] == 1
    assert body["spec"] == before["spec"]

    # a spec change through /status is ignored (the status part of the same patch is written)
    code, body = merge_patch(kube, url + "/status", {"spec": SPEC_CHANGE[kind], "status": {"observedGeneration": 42}})
    assert code == 200, body
    assert body["spec"] == before["spec"]
    assert body["status"]["observedGeneration"] == 42
    assert body["metadata"]["generation"] == 1
    assert read(kube, kind, namespace, "minimal")["spec"] == before["spec"]

    # ... while through the main resource it is a spec change
    code, body = merge_patch(kube, url, {"spec": SPEC_CHANGE[kind]})
    assert code == 200, body
    assert contained(SPEC_CHANGE[kind], body["spec"]) == []
    assert body["metadata"]["generation"] == 2

    # status is validated against the status schema too
    bad, field = BAD_STATUS[kind]
    code, body = merge_patch(kube, url + "/status", {"status": bad})
    assert code == 422, body
    assert field in body["message"]


# --- 3. published documentation ---------------------------------------------------------------------------


def _description_mismatches(schema: dict, published: dict, path: str) -> list[str]:
    problems = []
    if schema.get("description") and published.get("description") != schema["description"]:
        problems.append(f"{path}: {published.get('description')!r}")
    for name, child in (schema.get("properties") or {}).items():
        problems += _description_mismatches(child, (published.get("properties") or {}).get(name, {}),
                                            f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        problems += _description_mismatches(schema["items"], published.get("items") or {}, f"{path}[]")
    return problems


def _publishing_problems(definitions: dict, crds: list[dict]) -> list[str]:
    problems = []
    for crd in crds:
        kind = crd["spec"]["names"]["kind"]
        published = definitions.get(f"dev.mlops.{VERSION}.{kind}")
        if published is None:
            problems.append(f"{kind}: not published")
            continue
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        if published.get("description") != schema["description"]:
            problems.append(f"{kind}: {published.get('description')!r}")
        for part in ("spec", "status"):
            problems += _description_mismatches(schema["properties"][part],
                                                published["properties"].get(part, {}), f"{kind}.{part}")
    return problems


def test_openapi_v2_publishes_every_description(kube, crds):
    # The API server publishes a CRD's schema a few seconds after it changes: poll until it matches.
    deadline = time.monotonic() + 20
    while True:
        code, body = request(kube, "GET", "/openapi/v2")
        assert code == 200
        definitions = body["definitions"]
        problems = _publishing_problems(definitions, crds)
        if not problems:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"/openapi/v2 lacks or differs in {len(problems)} descriptions: {problems[:10]}")
        time.sleep(0.5)
    canary = (definitions[f"dev.mlops.{VERSION}.ModelDeployment"]["properties"]["spec"]["properties"]
              ["rollout"]["properties"]["canary"])
    assert "second Deployment behind the same Service" in canary["description"]
    assert canary["properties"]["steps"]["items"]["properties"]["weight"]["maximum"] == 100
    assert definitions[f"dev.mlops.{VERSION}.TrainingJob"]["x-kubernetes-group-version-kind"] == [
        {"group": GROUP, "kind": "TrainingJob", "version": VERSION}]


def test_kubectl_explain_canary(cluster, tmp_path):
    words = lambda text: " ".join(text.split())  # noqa: E731  (kubectl re-wraps descriptions)
    canary_field = Rollout.model_fields["canary"]
    [(_, canary_model)] = _models_in(canary_field.annotation)
    fields = {field.alias: field.description for field in canary_model.model_fields.values()}

    def explained():
        result = kubectl(cluster, tmp_path, "explain", "modeldeployment.spec.rollout.canary")
        return result if result.returncode == 0 and words(canary_field.description) in words(result.stdout) else None

    result = wait_for(explained, timeout=20, interval=1, message="kubectl explain modeldeployment.spec.rollout.canary")
    out = result.stdout
    assert "KIND:     ModelDeployment" in out
    assert "RESOURCE: canary <Object>" in out
    assert "second Deployment" in out and "no service mesh" in out
    description, _, listed = out.partition("FIELDS:")
    assert "DESCRIPTION:" in description
    assert set(re.findall(r"^   (\w+)\t", listed, re.MULTILINE)) == set(fields)
    assert set(fields) >= {"model", "runtime", "weight", "steps", "analysis", "promote", "abort"}
    for name, text in fields.items():
        assert words(text) in words(listed), name
    assert re.search(r"^   steps\t<\[\]Object>", listed, re.MULTILINE)
    assert re.search(r"^   weight\t<integer>", listed, re.MULTILINE)


# --- 4. malformed objects are rejected, naming the field --------------------------------------------------

MD, TJ, DM = "ModelDeployment", "TrainingJob", "DriftMonitor"


def _set(spec: dict, dotted: str, value) -> dict:
    """A copy of spec with the dotted path set (value DELETE removes it); "a.0.b" indexes lists."""
    spec = copy.deepcopy(spec)
    parts = dotted.split(".")
    node = spec
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if value is DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return spec


DELETE = object()
_CANARY = {"model": {"uri": "s3://bucket/v2/"}, "steps": [{"weight": 10, "pause": "5m"}]}
_FEATURES = [{"name": "amount", "test": "ks", "threshold": 0.05}]

# (id, kind, spec or None for no spec, the field the API server must name)
MALFORMED = [
    ("md-negative-gpu-count", MD, _set(MINIMAL[MD], "resources", {"gpu": {"count": -1}}), "spec.resources.gpu.count"),
    ("md-unknown-runtime-preset", MD, _set(MINIMAL[MD], "runtime.preset", "torchserve"), "spec.runtime.preset"),
    ("md-missing-model-uri", MD, _set(MINIMAL[MD], "model", {"format": "onnx"}), "spec.model.uri"),
    ("md-empty-model-uri", MD, _set(MINIMAL[MD], "model.uri", ""), "spec.model.uri"),
    ("md-missing-runtime", MD, _set(MINIMAL[MD], "runtime", DELETE), "spec.runtime"),
    ("md-missing-spec", MD, None, "spec"),
    ("md-replicas-string", MD, _set(MINIMAL[MD], "replicas", "two"), "spec.replicas"),
    ("md-negative-replicas", MD, _set(MINIMAL[MD], "replicas", -1), "spec.replicas"),
    ("md-port-above-65535", MD, _set(MINIMAL[MD], "runtime.port", 70000), "spec.runtime.port"),
    ("md-canary-weight-over-100", MD, _set(MINIMAL[MD], "rollout", {"canary": _set(_CANARY, "steps.0.weight", 150)}),
     "spec.rollout.canary.steps[0].weight"),
    ("md-canary-pause-not-a-duration", MD,
     _set(MINIMAL[MD], "rollout", {"canary": _set(_CANARY, "steps.0.pause", "5 minutes")}),
     "spec.rollout.canary.steps[0].pause"),
    ("md-canary-promote-string", MD,
     _set(MINIMAL[MD], "rollout", {"canary": {**_CANARY, "promote": "yes"}}), "spec.rollout.canary.promote"),
    ("md-memory-not-a-quantity", MD, _set(MINIMAL[MD], "resources", {"memory": "lots"}), "spec.resources.memory"),
    ("md-negative-cpu", MD, _set(MINIMAL[MD], "resources", {"cpu": -2}), "spec.resources.cpu"),
    ("md-negative-fractional-cpu", MD, _set(MINIMAL[MD], "resources", {"cpu": -0.5}), "spec.resources.cpu"),
    ("md-bad-gpu-resource-name", MD, _set(MINIMAL[MD], "resources", {"gpu": {"resource": "gpu"}}),
     "spec.resources.gpu.resource"),
    ("md-sample-rate-over-1", MD,
     _set(MINIMAL[MD], "monitoring", {"predictionLog": {"uri": "s3://bucket/log/", "sampleRate": 1.5}}),
     "spec.monitoring.predictionLog.sampleRate"),
    ("md-autoscaling-max-0", MD, _set(MINIMAL[MD], "autoscaling", {"maxReplicas": 0, "targetCPUUtilization": 80}),
     "spec.autoscaling.maxReplicas"),
    ("md-env-name-invalid", MD, _set(MINIMAL[MD], "runtime.env", [{"name": "NOT VALID", "value": "x"}]),
     "spec.runtime.env[0].name"),
    ("md-toleration-effect", MD, _set(MINIMAL[MD], "scheduling", {"tolerations": [{"effect": "Sometimes"}]}),
     "spec.scheduling.tolerations[0].effect"),
    ("tj-workers-0", TJ, _set(MINIMAL[TJ], "workers", 0), "spec.workers"),
    ("tj-unknown-framework", TJ, _set(MINIMAL[TJ], "framework", "tensorflow"), "spec.framework"),
    ("tj-negative-backoff-limit", TJ, _set(MINIMAL[TJ], "backoffLimit", -1), "spec.backoffLimit"),
    ("tj-missing-image", TJ, _set(MINIMAL[TJ], "image", DELETE), "spec.image"),
    ("tj-suspend-string", TJ, _set(MINIMAL[TJ], "suspend", "yes"), "spec.suspend"),
    ("tj-gang-timeout-action", TJ, _set(MINIMAL[TJ], "scheduling", {"gangTimeoutAction": "retry"}),
     "spec.scheduling.gangTimeoutAction"),
    ("tj-promote-as", TJ, _set(MINIMAL[TJ], "promote", {"modelDeployment": {"name": "chat"}, "as": "shadow"}),
     "spec.promote.as"),
    ("tj-promote-bad-name", TJ, _set(MINIMAL[TJ], "promote", {"modelDeployment": {"name": "Not_A_Name"}}),
     "spec.promote.modelDeployment.name"),
    ("tj-deadline-0", TJ, _set(MINIMAL[TJ], "activeDeadlineSeconds", 0), "spec.activeDeadlineSeconds"),
    ("dm-drift-share-over-1", DM, _set(MINIMAL[DM], "driftShare", 1.5), "spec.driftShare"),
    ("dm-unknown-test", DM, _set(MINIMAL[DM], "features", [{"name": "amount", "test": "ttest"}]),
     "spec.features[0].test"),
    ("dm-feature-type", DM, _set(MINIMAL[DM], "features", [{"name": "amount", "type": "ordinal"}]),
     "spec.features[0].type"),
    ("dm-negative-threshold", DM, _set(MINIMAL[DM], "features", _set(_FEATURES, "0.threshold", -1)),
     "spec.features[0].threshold"),
    ("dm-duplicate-feature", DM, _set(MINIMAL[DM], "features", _FEATURES * 2), "spec.features[1]"),
    ("dm-reference-format", DM, _set(MINIMAL[DM], "reference.format", "json"), "spec.reference.format"),
    ("dm-missing-model-deployment", DM, _set(MINIMAL[DM], "modelDeployment", DELETE), "spec.modelDeployment"),
    ("dm-negative-interval", DM, _set(MINIMAL[DM], "interval", -60), "spec.interval"),
    ("dm-retrain-template-workers-0", DM,
     _set(MINIMAL[DM], "actions", {"retrain": {"template": {"image": "example/trainer:1", "workers": 0}}}),
     "spec.actions.retrain.template.workers"),
    ("dm-retrain-max-per-day-0", DM,
     _set(MINIMAL[DM], "actions", {"retrain": {"template": {"image": "example/trainer:1"}, "maxPerDay": 0}}),
     "spec.actions.retrain.maxPerDay"),
    # upper bounds: over int32 where a child has an int32, or over a real limit (docs/<kind>.md, "Limits")
    ("md-replicas-over-int32", MD, _set(MINIMAL[MD], "replicas", 10_000_000_000), "spec.replicas"),
    ("md-max-replicas-over-int32", MD,
     _set(MINIMAL[MD], "autoscaling", {"maxReplicas": 2**31, "targetCPUUtilization": 80}),
     "spec.autoscaling.maxReplicas"),
    ("md-gpu-count-over-256", MD, _set(MINIMAL[MD], "resources", {"gpu": {"count": 257}}), "spec.resources.gpu.count"),
    ("md-canary-pause-over-68-years", MD,
     _set(MINIMAL[MD], "rollout", {"canary": _set(_CANARY, "steps.0.pause", 2**31)}),
     "spec.rollout.canary.steps[0].pause"),
    ("tj-workers-over-10000", TJ, _set(MINIMAL[TJ], "workers", 10_001), "spec.workers"),
    ("tj-deadline-over-int32", TJ, _set(MINIMAL[TJ], "activeDeadlineSeconds", 2**31), "spec.activeDeadlineSeconds"),
    ("tj-ttl-over-int32", TJ, _set(MINIMAL[TJ], "ttlSecondsAfterFinished", 2**31), "spec.ttlSecondsAfterFinished"),
    ("dm-retrain-template-workers-over-10000", DM,
     _set(MINIMAL[DM], "actions", {"retrain": {"template": {"image": "example/trainer:1", "workers": 100_000}}}),
     "spec.actions.retrain.template.workers"),
    ("dm-retrain-max-per-day-over-1440", DM,
     _set(MINIMAL[DM], "actions", {"retrain": {"template": {"image": "example/trainer:1"}, "maxPerDay": 1441}}),
     "spec.actions.retrain.maxPerDay"),
    ("dm-interval-over-int32", DM, _set(MINIMAL[DM], "interval", 2**31), "spec.interval"),
]


# pydantic's lax mode turns "yes" into True, so these reach the operator only if the API server let them through.
MODEL_COERCES = {"md-canary-promote-string", "tj-suspend-string"}


def _unindexed(text: str) -> str:
    # A 1.20 API server names list items without their index (spec.features.test); newer ones add it.
    return re.sub(r"\[\d+\]", "", text)


def test_units_as_people_write_them_are_accepted(kube, namespace):
    """cpu: 0.5 as for a pod, memory in plain bytes, a pause in plain seconds."""
    obj = minimal("ModelDeployment", namespace, "units", resources={"cpu": 0.5, "memory": "512"},
                  rollout={"canary": {"model": {"uri": "s3://bucket/v2"}, "steps": [{"weight": 10, "pause": "90"}]}})
    code, created = create(kube, obj)
    assert code == 201, created
    assert created["spec"]["resources"] == {"cpu": 0.5, "memory": "512"}
    spec = validate_object(created)
    assert spec.resources.cpu == "0.5" and spec.rollout.canary.steps[0].pause == "90"
    for bad in ({"cpu": {"half": True}}, {"cpu": True}):
        with pytest.raises(InvalidSpec, match="spec.resources.cpu: must be a Kubernetes quantity"):
            validate_object({**created, "spec": {**created["spec"], "resources": bad}})


def test_minimal_specs_are_valid(kube, namespace):
    for kind in MINIMAL:
        obj = minimal(kind, namespace)
        validate_object(obj)
        code, body = create(kube, obj)
        assert code == 201, body


@pytest.mark.parametrize("case, kind, spec, field", MALFORMED, ids=[case[0] for case in MALFORMED])
def test_malformed_object_is_rejected_naming_the_field(kube, namespace, case, kind, spec, field):
    obj = minimal(kind, namespace, name=case)
    if spec is None:
        del obj["spec"]
    else:
        obj["spec"] = spec
    code, body = create(kube, obj)
    assert code == 422, body
    assert body["reason"] == "Invalid"
    message = _unindexed(body["message"])
    assert _unindexed(field) in message
    assert _unindexed(field) in [_unindexed(cause["field"]) for cause in body["details"]["causes"]]
    assert request(kube, "GET", object_url(kind, namespace, case))[0] == 404
    # the operator's own validation names the same field (the models and the schema agree)
    if case not in MODEL_COERCES:
        with pytest.raises(InvalidSpec) as rejected:
            validate_object(obj)
        errors = rejected.value.errors
        assert any(_unindexed(error).startswith(_unindexed(field)) for error in errors), errors


def test_enough_malformed_cases():
    assert len(MALFORMED) >= 12
    assert {kind for _, kind, _, _ in MALFORMED} == {MD, TJ, DM}


# --- 5. and 6. kubectl get: printer columns, short names, category ----------------------------------------


def _tables(output: str) -> list[list[list[str]]]:
    """kubectl's tables (several kinds: separated by blank lines) as rows of cells. Cells are cut at the header's
    column starts: empty cells are blank, and a column name such as LAST CHECK has a space in it."""
    tables = []
    for block in (block for block in output.strip("\n").split("\n\n") if block.strip()):
        header, *lines = block.splitlines()
        starts = [match.start() for match in re.finditer(r"\S+(?: \S+)*", header)]
        bounds = list(zip(starts, starts[1:] + [None]))
        tables.append([[line[a:b].strip() for a, b in bounds] for line in [header, *lines]])
    return tables


def _expected_header(kind) -> list[str]:
    return ["NAME"] + [column.name.upper() for column in kind.printer_columns]


def _write_status(kube, namespace: str):
    # No drift in the DriftMonitor's result: a running operator would start the example's retraining on drift,
    # one more TrainingJob in the tables.
    no_drift = {"lastRun": {**STATUS["DriftMonitor"]["lastRun"], "datasetDrift": False}}
    for kind, name, status in (("ModelDeployment", "iris", {**STATUS["ModelDeployment"], "conditions": [
                                   {"type": "Ready", "status": "True", "reason": "Available", "message": "ok",
                                    "lastTransitionTime": "2024-05-01T12:00:00Z"}],
                                   "stable": {"modelUri": "http://models.example.com/iris/model.joblib"}}),
                               ("ModelDeployment", "fraud", {"canary": {"weight": 10}}),
                               ("TrainingJob", "finetune-chat", STATUS["TrainingJob"]),
                               ("DriftMonitor", "fraud", no_drift)):
        code, body = merge_patch(kube, object_url(kind, namespace, name) + "/status", {"status": status})
        assert code == 200, body


def server_table(kube, path: str) -> dict:
    """A list as the API server's Table (what kubectl get prints), each row with the object it was made from."""
    cfg = kube.configuration
    headers = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
    token = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization")
    if token:
        headers["Authorization"] = token
    response = kube.call_api("GET", f"{cfg.host}{path}?includeObject=Object", header_params=headers)
    assert response.status == 200
    return json.loads(response.read())


def json_path(obj: dict, path: str):
    """The printer columns' JSONPath subset: .a.b.c and .a.list[?(@.key=="value")].b"""
    value = obj
    for step in re.findall(r'\.(\w+)(?:\[\?\(@\.(\w+)=="([^"]*)"\)\])?', path):
        name, key, wanted = step
        value = value.get(name) if isinstance(value, dict) else None
        if key:
            value = next((item for item in value or [] if item.get(key) == wanted), None)
    return value


def test_printer_columns_show_the_objects_fields(kube, namespace):
    """The server-side table (the source of kubectl get's columns) against each row's own object, so the check
    holds whoever writes status; the status written here makes the status columns non-empty."""
    apply_examples(kube, namespace)
    _write_status(kube, namespace)
    shown = 0
    for kind in KINDS:
        table = server_table(kube, collection_path(kind.kind, namespace))
        assert [c["name"] for c in table["columnDefinitions"]] == ["Name"] + [c.name for c in kind.printer_columns]
        assert table["rows"]
        for row in table["rows"]:
            obj = row["object"]
            assert row["cells"][0] == obj["metadata"]["name"]
            for column, cell in zip(kind.printer_columns, row["cells"][1:]):
                if column.type == "date":
                    assert (cell is None) == (json_path(obj, column.json_path) is None), column.name
                    continue
                expected = json_path(obj, column.json_path)
                if column.type == "string" and expected is not None:
                    expected = str(expected)
                assert cell == expected, (kind.kind, obj["metadata"]["name"], column.name)
                shown += expected is not None and column.json_path.startswith(".status")
    assert shown >= 8  # md iris: ready, reason, replicas, model, url; md fraud: canary; tj: attempt, phase; ...


def test_kubectl_get_prints_the_printer_columns(kube, namespace, cluster, tmp_path):
    apply_examples(kube, namespace)
    _write_status(kube, namespace)
    result = kubectl(cluster, tmp_path, "get", "md,tj,dm", "-n", namespace)
    assert result.returncode == 0, result.stderr
    tables = _tables(result.stdout)
    assert [table[0] for table in tables] == [_expected_header(kind) for kind in KINDS] == [
        ["NAME", "READY", "REASON", "REPLICAS", "MODEL", "CANARY", "ANALYSIS", "URL", "AGE"],
        ["NAME", "PHASE", "READY", "REASON", "WORKERS", "GPUS", "ATTEMPT", "AGE"],
        ["NAME", "READY", "REASON", "DRIFT", "SHARE", "LAST CHECK", "AGE"],
    ]
    md, tj, dm = ({row[0]: row for row in table[1:]} for table in tables)
    assert set(md) == {"modeldeployment.mlops.dev/" + name for name in ("iris", "chat", "fraud")}
    assert set(tj) == {"trainingjob.mlops.dev/finetune-chat"}
    assert set(dm) == {"driftmonitor.mlops.dev/fraud"}
    # (the ModelDeployment columns all come from status, which a running operator may rewrite: see the server
    # table test)
    # WORKERS from the spec; GPUS is the whole job's (status.gpus: 2 x 8) once a running operator has written it
    # (kubectl prints nothing, or <none>, for an integer column not set yet)
    workers, gpus = tj["trainingjob.mlops.dev/finetune-chat"][4:6]
    assert workers == "2" and gpus in ("", "<none>", "16")

    # the category prints the same tables
    result = kubectl(cluster, tmp_path, "get", "mlops", "-n", namespace)
    assert result.returncode == 0, result.stderr
    tables = _tables(result.stdout)
    assert sorted(table[0] for table in tables) == sorted(_expected_header(k) for k in KINDS)
    assert sorted(row[0] for table in tables for row in table[1:]) == sorted([*md, *tj, *dm])


def test_short_names_and_category(kube, namespace, cluster, tmp_path):
    applied = apply_examples(kube, namespace)
    everything = {f"{doc['kind'].lower()}.{GROUP}/{doc['metadata']['name']}" for doc in applied}
    assert len(everything) == len(applied) == 5

    result = kubectl(cluster, tmp_path, "get", "mlops", "-n", namespace, "-o", "name")
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == everything
    assert {name.split(".")[0] for name in everything} == {"modeldeployment", "trainingjob", "driftmonitor"}

    for kind in KINDS:
        expected = {name for name in everything if name.startswith(kind.singular + ".")}
        for alias in (kind.short_name, kind.plural, kind.singular):
            result = kubectl(cluster, tmp_path, "get", alias, "-n", namespace, "-o", "name")
            assert result.returncode == 0, (alias, result.stderr)
            assert set(result.stdout.split()) == expected, alias
    assert [kind.short_name for kind in KINDS] == ["md", "tj", "dm"]

    # discovery says so too
    code, body = request(kube, "GET", f"/apis/{GROUP}/{VERSION}")
    assert code == 200
    resources = {r["name"]: r for r in body["resources"]}
    for kind in KINDS:
        assert resources[kind.plural]["shortNames"] == [kind.short_name]
        assert resources[kind.plural]["categories"] == ["mlops"]
        assert resources[kind.plural]["namespaced"] is True
        assert f"{kind.plural}/status" in resources

"""Turn a raw custom resource into a spec model, or into errors that name the field ("spec.x.y: what is wrong").

Two layers: pydantic parsing (shape, types, limits: the same rules as the CRD schema) and semantic checks the
schema cannot express (a canary without a model, 0 GPUs of a MIG profile, a reference to another namespace,
a cron schedule that does not parse, ...). Controllers call `validate_object(body)` and, on `InvalidSpec`,
set Ready=False reason InvalidSpec with `exc.message` and leave every child untouched.

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, overload

from croniter import croniter
from kubernetes.utils.quantity import parse_quantity
from pydantic import ValidationError

from .common import (
    READ_SCHEMES,
    WRITE_SCHEMES,
    ApiModel,
    EnvVar,
    EnvVarSource,
    Gpu,
    Kind,
    ObjectRef,
    Resources,
    SpecT,
    duration_seconds,
)
from .driftmonitor import DriftMonitorSpec, interval_cron, retrain_name
from .kinds import kind_for
from .modeldeployment import AGENT_METRICS_PORT, AGENT_PORT, CanaryAnalysis, Model, ModelDeploymentSpec
from .trainingjob import TrainingJobSpec, worker_hostname, workers_service_name

# A MIG profile resource: nvidia.com/mig-<compute slices>g.<memory>gb, optionally +me (media extensions).
MIG_PROFILE = re.compile(r"^nvidia\.com/mig-(\d+)g\.(\d+)gb(\+me)?$")
MIG_SLICES = (1, 2, 3, 4, 7)
# One GPU splits into at most 7 MIG instances. We allow at most that many per pod: a workload that needs more
# than one GPU's worth of MIG instances should request whole GPUs instead.
MAX_MIG_PER_POD = 7

P_VALUE_TESTS = ("ks", "chisquare", "ztest")
NUMERICAL_TESTS = ("ks", "wasserstein")
CATEGORICAL_TESTS = ("chisquare", "ztest")

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_PVC_CLAIM = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class InvalidSpec(ValueError):
    """A spec the operator will not act on; `errors` are "path: message" strings naming the fields."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = list(errors)

    @property
    def message(self) -> str:
        """All errors in one line, for a condition message or an event."""
        return "; ".join(self.errors)


# --- parsing ----------------------------------------------------------------------------------------------


def _path(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _message(msg: str) -> str:
    msg = msg.removeprefix("Value error, ")
    return msg[:1].lower() + msg[1:] if msg[1:2].islower() else msg


def pydantic_errors(exc: ValidationError, prefix: str = "spec") -> list[str]:
    """pydantic's errors as "spec.x.y: message" strings (camelCase paths, list indexes as [i]), in order."""
    errors: list[str] = []
    for error in exc.errors(include_url=False):
        line = f"{_path(prefix, error['loc'])}: {_message(error['msg'])}"
        if line not in errors:
            errors.append(line)
    return errors


@overload
def parse_spec(kind: Kind[SpecT], spec: Mapping[str, Any] | None) -> SpecT: ...


@overload
def parse_spec(kind: str, spec: Mapping[str, Any] | None) -> ApiModel: ...


def parse_spec(kind: Kind[Any] | str, spec: Mapping[str, Any] | None) -> ApiModel:
    """The spec model for a raw spec dict; raises InvalidSpec naming the fields that do not parse."""
    model: type[ApiModel] = (kind if isinstance(kind, Kind) else kind_for(kind)).spec
    if spec is None:
        raise InvalidSpec(["spec: required"])
    try:
        return model.model_validate(spec)
    except ValidationError as exc:
        raise InvalidSpec(pydantic_errors(exc)) from None


@overload
def validate_object(body: Mapping[str, Any], kind: Kind[SpecT]) -> SpecT: ...


@overload
def validate_object(body: Mapping[str, Any], kind: str | None = None) -> ApiModel: ...


def validate_object(body: Mapping[str, Any], kind: Kind[Any] | str | None = None) -> ApiModel:
    """Parse and check a whole custom resource (kopf body or dict): returns the spec model, or raises
    InvalidSpec with every error found (parse errors first; semantic checks only run on a parsed spec)."""
    kind = kind_for(kind or body.get("kind", "")) if not isinstance(kind, Kind) else kind
    metadata = body.get("metadata") or {}
    errors = []
    name = metadata.get("name")
    if name is not None and not (_DNS_LABEL.match(name) and len(name) <= 63):
        errors.append(
            "metadata.name: must be a DNS label (lowercase letters, digits, '-', starting with a letter, at most "
            "63 characters) because it names Services and labels"
        )
    try:
        spec: ApiModel = parse_spec(kind, body.get("spec"))
    except InvalidSpec as exc:
        raise InvalidSpec(errors + exc.errors) from None
    errors += validate_spec(spec, namespace=metadata.get("namespace"))
    if name is not None and isinstance(spec, DriftMonitorSpec):
        errors += drift_monitor_name_errors(name, spec)
    if isinstance(spec, TrainingJobSpec) and name is not None and not errors:
        problem = training_job_name_problem(name, spec.workers)
        errors += [f"metadata.name: {problem}"] if problem else []
    if errors:
        raise InvalidSpec(errors)
    return spec


def validate_spec(spec: ApiModel, *, namespace: str | None = None, prefix: str = "spec") -> list[str]:
    """Semantic errors of a parsed spec, each naming its field; empty when the spec makes sense.
    `namespace` is the object's; references naming another namespace are errors (skipped when unknown)."""
    errors: list[str] = []
    for path, node in _walk(spec, prefix):
        for node_type, check in _NODE_CHECKS:
            if isinstance(node, node_type):
                check(errors, path, node, namespace)
    for spec_type, check in _SPEC_CHECKS:
        if isinstance(spec, spec_type):
            check(errors, prefix, spec, namespace)
    return errors


def _walk(model: ApiModel, path: str) -> Iterator[tuple[str, ApiModel]]:
    """Every model in the tree with its wire path, parents first."""
    yield path, model
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        child = f"{path}.{field.alias or name}"
        if isinstance(value, ApiModel):
            yield from _walk(value, child)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, ApiModel):
                    yield from _walk(item, f"{child}[{index}]")


# --- checks shared by all kinds ---------------------------------------------------------------------------


def _check_ref(errors: list[str], path: str, ref: ObjectRef, namespace: str | None) -> None:
    if ref.namespace is not None and namespace is not None and ref.namespace != namespace:
        errors.append(
            f"{path}.namespace: references stay in the object's namespace {namespace!r}, not {ref.namespace!r}"
        )


def _check_env(errors: list[str], path: str, env: EnvVar, namespace: str | None) -> None:
    if env.value is not None and env.value_from is not None:
        errors.append(f"{path}: set value or valueFrom, not both")


def _check_env_source(errors: list[str], path: str, source: EnvVarSource, namespace: str | None) -> None:
    if (source.secret_key_ref is None) == (source.config_map_key_ref is None):
        errors.append(f"{path}: set exactly one of secretKeyRef or configMapKeyRef")


def _check_gpu(errors: list[str], path: str, gpu: Gpu, namespace: str | None) -> None:
    mig = MIG_PROFILE.match(gpu.resource)
    if gpu.resource.startswith("nvidia.com/mig-") and mig is None:
        errors.append(f"{path}.resource: {gpu.resource!r} is not a MIG profile like nvidia.com/mig-1g.10gb")
    is_mig = mig is not None or "-MIG-" in (gpu.product or "")
    if mig is not None and int(mig.group(1)) not in MIG_SLICES:
        errors.append(f"{path}.resource: a MIG profile has 1, 2, 3, 4 or 7 compute slices, not {mig.group(1)}")
    if mig is not None and gpu.count == 0:
        errors.append(
            f"{path}.count: 0 GPUs of MIG profile {gpu.resource} requests nothing; "
            "set count >= 1, or drop gpu for a CPU-only pod"
        )
    elif gpu.count == 0 and gpu.product:
        errors.append(f"{path}.product: a GPU product with count 0 requests no GPU; set count >= 1 or drop product")
    if is_mig and gpu.count > MAX_MIG_PER_POD:
        errors.append(
            f"{path}.count: {gpu.count} MIG instances cannot be satisfied; a GPU splits into at most "
            f"{MAX_MIG_PER_POD}, so request at most {MAX_MIG_PER_POD} or use whole GPUs (nvidia.com/gpu)"
        )


def _check_uri(errors: list[str], path: str, uri: str | None, schemes: tuple[str, ...]) -> None:
    if uri is None:
        return
    allowed = ", ".join(f"{scheme}://" for scheme in schemes)
    scheme, sep, rest = uri.partition("://")
    if not sep:
        errors.append(f"{path}: {uri!r} has no scheme; use one of {allowed}")
    elif scheme not in schemes:
        errors.append(f"{path}: unsupported scheme {scheme + '://'!r}; use one of {allowed}")
    elif not rest.strip("/"):
        errors.append(f"{path}: {uri!r} names no location after {scheme}://")
    elif scheme == "pvc" and not _PVC_CLAIM.match(rest.split("/", 1)[0]):
        errors.append(f"{path}: {uri!r} must be pvc://<claim name>/<path>")


# Pod annotations that are security settings (AppArmor; the pre-1.19 seccomp ones, which 1.20 still honours):
# a spec may only set them to what the Pod Security "restricted" profile allows, or the pods it makes would not
# meet it (podAnnotations are passed to the pods as they are).
_SECURITY_ANNOTATIONS = ("container.apparmor.security.beta.kubernetes.io/", "seccomp.security.alpha.kubernetes.io/",
                         "container.seccomp.security.alpha.kubernetes.io/")
_RESTRICTED_PROFILES = ("runtime/default", "docker/default")


def _check_pod_annotations(errors: list[str], path: str, annotations: Mapping[str, str] | None) -> None:
    for key, value in (annotations or {}).items():
        if key.startswith(_SECURITY_ANNOTATIONS) and not (value in _RESTRICTED_PROFILES
                                                          or value.startswith("localhost/")):
            errors.append(f"{path}[{key!r}]: {value!r} would weaken the pods' security profile; use "
                          "runtime/default or localhost/<profile>, or leave the annotation out")


# Checks of shapes that appear anywhere in a spec (including a retrain template), by model type.
_Check = Callable[[list[str], str, Any, "str | None"], None]
_NODE_CHECKS: tuple[tuple[type, _Check], ...] = (
    (ObjectRef, _check_ref),
    (EnvVar, _check_env),
    (EnvVarSource, _check_env_source),
    (Gpu, _check_gpu),
)


# --- per kind ---------------------------------------------------------------------------------------------


# What each runtime preset's server loads (custom: anything). Triton loads tree models through its FIL backend.
PRESET_FORMATS: dict[str, tuple[str, ...]] = {
    "vllm": ("huggingface",),
    "triton": ("onnx", "pytorch", "tensorflow", "tensorrt", "xgboost", "lightgbm", "sklearn"),
    "sklearn": ("sklearn",),
    "mlserver": ("sklearn", "xgboost", "lightgbm"),
}


def _check_format(errors: list[str], path: str, model: Model, preset: str) -> None:
    loads = PRESET_FORMATS.get(preset)
    if model.format is None or loads is None or model.format in loads:
        return
    servers = [name for name, formats in PRESET_FORMATS.items() if model.format in formats]
    errors.append(f"{path}.format: the {preset} preset loads {', '.join(loads)}, not {model.format}; "
                  f"use preset {' or '.join(servers) or 'custom'}")


def _check_model_deployment(errors: list[str], p: str, spec: ModelDeploymentSpec, namespace: str | None) -> None:
    _check_uri(errors, f"{p}.model.uri", spec.model.uri, READ_SCHEMES)
    _check_format(errors, f"{p}.model", spec.model, spec.runtime.preset)
    _check_pod_annotations(errors, f"{p}.podAnnotations", spec.pod_annotations)
    _check_unique_env(errors, f"{p}.runtime.env", spec.runtime.env)
    if spec.service is not None and spec.service.node_port is not None and spec.service.type != "NodePort":
        errors.append(f"{p}.service.nodePort: set only with service.type NodePort")
    if spec.runtime.preset == "custom":
        if spec.runtime.image is None:
            errors.append(f"{p}.runtime.image: runtime preset custom needs an image")
        if spec.runtime.port is None:
            errors.append(f"{p}.runtime.port: runtime preset custom needs a port")
    if spec.agent.enabled and spec.runtime.port in (AGENT_PORT, AGENT_METRICS_PORT):
        errors.append(f"{p}.runtime.port: {spec.runtime.port} is the inference agent's port in the same pod; "
                      f"use another port, or set agent.enabled false")

    scaling = spec.autoscaling
    if scaling is not None:
        if (scaling.target_cpu_utilization is None) == (scaling.metric is None):
            errors.append(f"{p}.autoscaling: set exactly one of targetCPUUtilization or metric")
        if scaling.min_replicas > scaling.max_replicas:
            errors.append(
                f"{p}.autoscaling.minReplicas: {scaling.min_replicas} is more than maxReplicas {scaling.max_replicas}"
            )

    canary = spec.rollout.canary if spec.rollout else None
    if canary is not None:
        c = f"{p}.rollout.canary"
        if canary.model is not None:  # without a model the block is the policy for the next canary: nothing runs
            _check_uri(errors, f"{c}.model.uri", canary.model.uri, READ_SCHEMES)
            _check_format(errors, f"{c}.model", canary.model, spec.runtime.preset)
        if canary.weight is not None and canary.steps:
            errors.append(f"{c}: set weight (a fixed share) or steps (a progression), not both")
        elif canary.weight is None and not canary.steps:
            errors.append(f"{c}: set weight (a fixed share) or steps (a progression)")
        for index in range(1, len(canary.steps)):
            if canary.steps[index].weight < canary.steps[index - 1].weight:
                errors.append(f"{c}.steps[{index}].weight: weights must not decrease from step to step")
        if canary.promote and canary.abort:
            errors.append(f"{c}: promote and abort are both set; choose one")
        _check_pod_annotations(errors, f"{c}.podAnnotations", canary.pod_annotations)
        if canary.analysis is not None:
            _check_canary_analysis(errors, f"{c}.analysis", canary.analysis, spec)

    log = spec.monitoring.prediction_log if spec.monitoring else None
    if log is not None:
        _check_uri(errors, f"{p}.monitoring.predictionLog.uri", log.uri, WRITE_SCHEMES)
        for index, column in enumerate(log.columns):
            if not column.strip() or "," in column:
                errors.append(f"{p}.monitoring.predictionLog.columns[{index}]: {column!r} must be a non-empty "
                              "name without commas")
        if len(set(log.columns)) != len(log.columns):
            errors.append(f"{p}.monitoring.predictionLog.columns: names must be unique")


ANALYSIS_PLACEHOLDERS = ("namespace", "name", "revision", "interval")
BUILTIN_CHECKS = ("successRate", "latency", "predictionDrift", "accuracy")


def _check_canary_analysis(errors: list[str], a: str, analysis: CanaryAnalysis, spec: ModelDeploymentSpec) -> None:
    if duration_seconds(analysis.interval) == 0:
        errors.append(f"{a}.interval: must be longer than 0s")
    url = analysis.prometheus_url
    if url is not None and not url.startswith(("http://", "https://")):
        errors.append(f"{a}.prometheusUrl: {url!r} must be an http:// or https:// URL")
    rate = analysis.success_rate
    if rate is not None and rate.min_value is None and rate.max_degradation is None:
        errors.append(f"{a}.successRate: set min, maxDegradation (relative to the stable), or both")
    if analysis.latency is not None and analysis.latency.max_value is None and analysis.latency.max_increase is None:
        errors.append(f"{a}.latency: set max, maxIncrease (relative to the stable), or both")
    names: set[str] = set()
    for index, check in enumerate(analysis.checks):
        c = f"{a}.checks[{index}]"
        if check.name in BUILTIN_CHECKS or check.name in names:
            errors.append(f"{c}.name: {check.name!r} is already the name of another check")
        names.add(check.name)
        if check.min_value is None and check.max_value is None:
            errors.append(f"{c}: set min, max, or both")
        elif check.min_value is not None and check.max_value is not None and check.min_value > check.max_value:
            errors.append(f"{c}.min: {check.min_value} is more than max {check.max_value}")
        for placeholder in re.findall(r"\{\{\s*([^}]*?)\s*\}\}", check.query):
            if placeholder not in ANALYSIS_PLACEHOLDERS:
                errors.append(f"{c}.query: unknown placeholder {{{{{placeholder}}}}}; use "
                              + ", ".join(f"{{{{{p}}}}}" for p in ANALYSIS_PLACEHOLDERS))
    logged = spec.monitoring is not None and spec.monitoring.prediction_log is not None
    for field, value in (("predictionDrift", analysis.prediction_drift), ("accuracy", analysis.accuracy)):
        if value is not None and not logged:
            errors.append(f"{a}.{field}: reads the prediction log; set spec.monitoring.predictionLog")
    if (analysis.success_rate is None and analysis.latency is None and not analysis.checks
            and analysis.prediction_drift is None and analysis.accuracy is None):
        errors.append(f"{a}: set at least one check (successRate, latency, checks, accuracy)")


# Below this, a memory value is almost surely a unit left out ("512" is 512 bytes, not 512Mi).
SMALL_MEMORY = 1 << 20


def spec_warnings(spec: ApiModel, prefix: str = "spec") -> list[str]:
    """Values a spec may hold but probably does not mean, each naming its field; for a Warning, not an error."""
    warnings = []
    for path, node in _walk(spec, prefix):
        if isinstance(node, Resources) and node.memory is not None:
            try:
                amount = parse_quantity(node.memory)
            except ValueError:
                continue
            if 0 < amount < SMALL_MEMORY:
                warnings.append(f"{path}.memory: {node.memory} is {amount} bytes, too little to run a model server; "
                                f'write a unit, e.g. "{node.memory}Mi"')
    return warnings


def _check_unique_env(errors: list[str], path: str, env: list) -> None:
    """The API server refuses a pod whose container repeats an env name (a 500 on every apply), so say it here."""
    seen: set[str] = set()
    for index, var in enumerate(env):
        if var.name in seen:
            errors.append(f"{path}[{index}].name: {var.name!r} is set twice")
        seen.add(var.name)


def _check_training_job(errors: list[str], p: str, spec: TrainingJobSpec, namespace: str | None) -> None:
    _check_pod_annotations(errors, f"{p}.podAnnotations", spec.pod_annotations)
    _check_unique_env(errors, f"{p}.env", spec.env)
    if spec.dataset is not None:
        _check_uri(errors, f"{p}.dataset.uri", spec.dataset.uri, READ_SCHEMES)
    if spec.output is not None:
        _check_uri(errors, f"{p}.output.modelUri", spec.output.model_uri, WRITE_SCHEMES)
    if spec.checkpoint is not None:
        _check_uri(errors, f"{p}.checkpoint.uri", spec.checkpoint.uri, WRITE_SCHEMES)
    if spec.promote is not None and spec.output is None:
        errors.append(f"{p}.output.modelUri: promote needs an output model")
    if spec.scheduling.gang_timeout_action == "fail" and spec.scheduling.gang_timeout is None:
        errors.append(f"{p}.scheduling.gangTimeout: gangTimeoutAction fail needs a gangTimeout")
    if spec.queue_name is not None and not (_LABEL_VALUE.match(spec.queue_name) and len(spec.queue_name) <= 63):
        errors.append(f"{p}.queueName: {spec.queue_name!r} is not a valid label value (Kueue reads it from a label)")


def training_job_name_problem(job: str, workers: int) -> str | None:
    """Why `job` cannot name a TrainingJob of `workers` workers, or None: the name must leave room for `-workers`
    in a Service name and `-w<rank>` in a worker's hostname (both DNS labels of at most 63 characters)."""
    service = workers_service_name(job)
    if len(service) > 63:
        return (f"{job!r} is too long for a TrainingJob: its Service {service!r} has {len(service)} characters, a "
                "Service name at most 63")
    longest = worker_hostname(job, workers - 1)
    if len(longest) > 63:
        return (f"{job!r} is too long for {workers} workers: the worker hostname {longest!r} has {len(longest)} "
                "characters, a hostname at most 63")
    return None


def _check_drift_monitor(errors: list[str], p: str, spec: DriftMonitorSpec, namespace: str | None) -> None:
    if (spec.reference.uri is None) == (spec.reference.from_model is None):
        errors.append(f"{p}.reference: set exactly one of uri or fromModel")
    if spec.reference.uri is not None:
        _check_uri(errors, f"{p}.reference.uri", spec.reference.uri, READ_SCHEMES)
    if spec.reference.from_model is not None and ".." in spec.reference.from_model.split("/"):
        errors.append(f"{p}.reference.fromModel: {spec.reference.from_model!r} must stay inside the model folder")
    if spec.current is not None:
        _check_uri(errors, f"{p}.current.uri", spec.current.uri, READ_SCHEMES)

    if (spec.schedule is None) == (spec.interval is None):
        errors.append(f"{p}.schedule: set exactly one of schedule (cron) or interval")
    if spec.schedule is not None and not _cron_ok(spec.schedule):
        errors.append(f'{p}.schedule: {spec.schedule!r} is not a cron schedule like "0 * * * *" or "@hourly"')
    if spec.interval is not None and duration_seconds(spec.interval) == 0:
        errors.append(f"{p}.interval: must be longer than 0s")
    elif spec.interval is not None and interval_cron(duration_seconds(spec.interval)) is None:
        errors.append(f"{p}.interval: {spec.interval} cannot be a CronJob schedule; use an interval that divides an "
                      "hour or a day (1m, 5m, 15m, 1h, 6h, 24h) or spec.schedule")

    seen: set[str] = set()
    for index, feature in enumerate(spec.features):
        f = f"{p}.features[{index}]"
        if feature.name in seen:
            errors.append(f"{f}.name: feature {feature.name!r} is listed twice")
        seen.add(feature.name)
        if feature.type == "categorical" and feature.test in NUMERICAL_TESTS:
            errors.append(f"{f}.test: {feature.test} is for numerical features; {feature.name!r} is categorical")
        if feature.type == "numerical" and feature.test in CATEGORICAL_TESTS:
            errors.append(f"{f}.test: {feature.test} is for categorical features; {feature.name!r} is numerical")
        if feature.threshold is not None:
            if feature.test in P_VALUE_TESTS and not 0 < feature.threshold <= 1:
                errors.append(f"{f}.threshold: a p-value threshold for {feature.test} must be in (0, 1]")
            if feature.test == "jensenshannon" and feature.threshold > 1:
                errors.append(f"{f}.threshold: the Jensen-Shannon distance is at most 1")

    actions = spec.actions
    if actions is not None and actions.alert is not None and actions.alert.alertmanager is not None:
        url = actions.alert.alertmanager.url
        if not url.startswith(("http://", "https://")):
            errors.append(f"{p}.actions.alert.alertmanager.url: {url!r} must be an http:// or https:// URL")
    if actions is not None and actions.retrain is not None:
        template = f"{p}.actions.retrain.template"
        _check_training_job(errors, template, actions.retrain.template, namespace)


def drift_monitor_name_errors(name: str, spec: DriftMonitorSpec) -> list[str]:
    """A monitor that retrains must leave room in its name for the TrainingJobs it names after itself
    (`retrain_name`), checked when it is applied rather than when drift first comes: a TrainingJob's name is also
    its workers' Service `<job>-workers` and hostnames `<job>-w<rank>`, DNS labels of at most 63 characters."""
    if spec.actions is None or spec.actions.retrain is None:
        return []
    job = retrain_name(name, 10 ** 9)  # 10 digits until the year 2286
    problem = training_job_name_problem(job, spec.actions.retrain.template.workers)
    if problem is None:
        return []
    return [f"metadata.name: {name!r} is too long for spec.actions.retrain, whose TrainingJobs are named "
            f"<name>-retrain-<unix time>: {problem}"]


def _cron_ok(schedule: str) -> bool:
    # Kubernetes CronJob syntax: five fields or a macro such as @hourly; croniter alone would also take seconds.
    if not (schedule.startswith("@") or len(schedule.split()) == 5):
        return False
    return bool(croniter.is_valid(schedule))


_SPEC_CHECKS: tuple[tuple[type, _Check], ...] = (
    (ModelDeploymentSpec, _check_model_deployment),
    (TrainingJobSpec, _check_training_job),
    (DriftMonitorSpec, _check_drift_monitor),
)

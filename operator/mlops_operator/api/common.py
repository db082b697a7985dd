"""Shapes shared by all three kinds: the model base class, numeric limits, quantities and durations, GPU block,
resources, scheduling, references, environment variables, conditions, and the `Kind` descriptor each kind module
fills in.

Pure data: no I/O, no Kubernetes client. Field descriptions here end up in the CRDs (`kubectl explain`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema
from pydantic.alias_generators import to_camel

# --- base -------------------------------------------------------------------------------------------------


class ApiModel(BaseModel):
    """Base for every API shape: camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
    )

    def to_dict(self) -> dict[str, Any]:
        """The wire form (camelCase, JSON types), leaving out fields that are unset (None)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class StatusModel(ApiModel):
    """Base for status shapes: the operator writes them, so unknown (older) fields are ignored, not rejected."""

    model_config = ConfigDict(extra="ignore")


# --- limits -----------------------------------------------------------------------------------------------
# Upper bounds live in the models (le=...), so the CRD schema gets the same `maximum` and an absurd number is refused
# when the object is applied, naming the field, rather than later when a child object is.

INT32_MAX = 2**31 - 1
"""Where a number ends up in an int32 field of a child (Deployment and HPA replicas, HPA utilization) or stands
for one (backoffLimit, seconds), this is its bound. As seconds it is 68 years, which also bounds every
duration: longer is a typo, and some 8,000 years would overflow the operator's datetime arithmetic (Python's
datetime ends at year 9999)."""

MAX_GPUS_PER_POD = 256
"""GPUs (or other accelerator devices) one pod may request. The largest nodes have 8-16 physical GPUs, but GPU
time-slicing advertises each GPU as several devices (for example 8 GPUs x 16 replicas = 128), so 256 leaves room
for that while a typo such as 1000 is refused."""

# --- scalar types -----------------------------------------------------------------------------------------

# Kubernetes resource.Quantity: a plain integer, or a decimal with an SI (m, k, M, G ...), binary (Ki, Mi, Gi ...)
# or exponent (e3) suffix. Signs are not accepted: negative resources make no sense here.
_QUANTITY = re.compile(r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$")

# Durations: integer seconds (also as a string, "90"), or a string of d/h/m/s parts such as "30s", "5m", "1h30m",
# "2d". ASCII: in Go's RE2, as the API server reads the pattern, \d is 0-9 only, while Python's would also take other
# scripts' digits ("٣h").
_DURATION = re.compile(r"^(?:(\d+)|(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?)$", re.ASCII)
_QUANTITY_HINT = 'must be a Kubernetes quantity such as 2, 0.5, "500m" or "4Gi"'


def _quantity(value: Any) -> int | str:
    if isinstance(value, bool):
        raise ValueError(_QUANTITY_HINT)
    if isinstance(value, (int, float)) and value < 0:
        raise ValueError("must not be negative")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, float) and _QUANTITY.match(str(value)):
        # As for a pod's resources: 0.5 is the quantity "0.5" (500m). Kept as a string so the value is exact.
        return str(value)
    if isinstance(value, str) and _QUANTITY.match(value):
        return value
    raise ValueError(_QUANTITY_HINT)


def _duration(value: object) -> int | str:
    if isinstance(value, bool):
        raise ValueError('must be seconds or a duration such as 90, "90s", "5m", "1h30m"')
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
    elif not (isinstance(value, str) and value and _DURATION.match(value)):
        raise ValueError('must be seconds or a duration such as 90, "90s", "5m", "1h30m"')
    # The schema's maximum covers the integer form only; a string such as "99999999999d" is caught here.
    if duration_seconds(value) > INT32_MAX:
        raise ValueError(f"must be at most {INT32_MAX} seconds (68 years)")
    return value


def _int_or_string(pattern: re.Pattern[str], maximum: int | None = None) -> WithJsonSchema:
    # The API server enforces the same rules as the validators above: minimum and maximum apply to integers only,
    # pattern and minLength to strings only (both regexes are RE2-compatible, as Go needs).
    bounds = {"minimum": 0} if maximum is None else {"minimum": 0, "maximum": maximum}
    return WithJsonSchema(
        {"x-kubernetes-int-or-string": True, **bounds, "minLength": 1, "pattern": pattern.pattern}
    )


# A quantity is a number or a string, as in a pod's resources (`cpu: 0.5`). A structural schema cannot say
# "number or string" (int-or-string takes integers only), so the schema keeps the field's type open and checks each
# form with what applies to it (minimum to numbers, pattern to strings); the operator's own parsing refuses the rest
# (an object, a boolean) naming the field.
_NUMBER_OR_STRING = WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True, "minimum": 0,
                                    "pattern": _QUANTITY.pattern})

Quantity = Annotated[int | str, PlainValidator(_quantity), _NUMBER_OR_STRING]
"""A Kubernetes quantity: 2, 0.5, "500m", "4Gi" (a fraction is kept as its decimal string)."""

Duration = Annotated[int | str, PlainValidator(_duration), _int_or_string(_DURATION, maximum=INT32_MAX)]
"""Seconds as an integer (or "90"), or a string of d/h/m/s parts: "30s", "5m", "1h30m"; at most INT32_MAX seconds."""

Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
"""An RFC 3339 time such as 2024-05-01T12:00:00Z (status fields only)."""


def duration_seconds(value: int | str) -> int:
    """Seconds in a Duration value: 90 -> 90, "90" -> 90, "1m30s" -> 90, "2d" -> 172800."""
    if isinstance(value, int):
        return value
    match = _DURATION.match(value)
    if not value or match is None:
        raise ValueError(f"not a duration: {value!r}")
    plain, *parts = match.groups()
    if plain is not None:
        return int(plain)
    days, hours, minutes, seconds = (int(part or 0) for part in parts)
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
# An extended resource name: vendor domain / resource, e.g. nvidia.com/gpu, nvidia.com/mig-1g.10gb, amd.com/gpu.
RESOURCE_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[a-zA-Z0-9]([-a-zA-Z0-9_.+]*[a-zA-Z0-9])?$"

ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]


# --- references ---------------------------------------------------------------------------------------------


class ObjectRef(ApiModel):
    """A reference by name to an object in this object's namespace."""

    name: ObjectName = Field(description="Name of the referenced object, in the same namespace as this object.")
    namespace: str | None = Field(
        None,
        description=(
            "Leave empty. References never cross namespaces: any namespace other than this object's is "
            "reported as InvalidSpec (rather than silently ignored)."
        ),
    )


class SecretRef(ObjectRef):
    """A Secret in this object's namespace whose keys become environment variables of the container that
    reads or writes the data (for example AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, HF_TOKEN)."""

    name: ObjectName = Field(description="Name of the Secret, in the same namespace as this object.")


class KeyRef(ObjectRef):
    """One key of a Secret or ConfigMap in this object's namespace."""

    name: ObjectName = Field(description="Name of the Secret or ConfigMap, in the same namespace as this object.")
    key: str = Field(min_length=1, description="The key whose value is used.")


class EnvVarSource(ApiModel):
    """Where an environment variable's value comes from; set exactly one source."""

    secret_key_ref: KeyRef | None = Field(None, description="A key of a Secret (the way to pass credentials).")
    config_map_key_ref: KeyRef | None = Field(None, description="A key of a ConfigMap.")


class EnvVar(ApiModel):
    """An environment variable for the container: a literal value or a reference, never both."""

    name: str = Field(min_length=1, pattern=ENV_NAME, description="Name of the environment variable.")
    value: str | None = Field(None, description="Literal value. Never put credentials here: use valueFrom.")
    value_from: EnvVarSource | None = Field(None, description="Take the value from a Secret or ConfigMap key.")


# --- GPUs, resources, scheduling --------------------------------------------------------------------------


class Gpu(ApiModel):
    """GPUs per pod: how many, of which extended resource, and optionally which product."""

    count: int = Field(
        1, ge=0, le=MAX_GPUS_PER_POD,
        description=(
            f"Number of GPU devices (or MIG instances when resource is a MIG profile) per pod; at most "
            f"{MAX_GPUS_PER_POD}."
        ),
    )
    resource: str = Field(
        "nvidia.com/gpu",
        pattern=RESOURCE_NAME,
        description=(
            "Extended resource to request: nvidia.com/gpu for whole GPUs, or a MIG profile such as "
            "nvidia.com/mig-1g.10gb. A MIG profile needs count >= 1 and at most 7 instances per pod "
            "(one GPU has 7 compute slices)."
        ),
    )
    product: str | None = Field(
        None,
        min_length=1,
        description=(
            "GPU product to run on, as labelled by GPU feature discovery (e.g. NVIDIA-H100-80GB-HBM3); "
            "becomes a nodeSelector on nvidia.com/gpu.product."
        ),
    )


class Resources(ApiModel):
    """Compute per pod. cpu and memory are both request and limit (Guaranteed QoS when both are set)."""

    cpu: Quantity | None = Field(None, description='CPU per pod, a Kubernetes quantity such as 2, 0.5 or "500m".')
    memory: Quantity | None = Field(
        None, description='Memory per pod, a Kubernetes quantity such as "4Gi"; a plain number counts bytes.'
    )
    gpu: Gpu | None = Field(None, description="GPUs per pod; omit for CPU-only pods.")


class Toleration(ApiModel):
    """A Kubernetes toleration (core/v1 Toleration)."""

    key: str | None = Field(None, description="Taint key to tolerate; empty with operator Exists matches all.")
    operator: Literal["Exists", "Equal"] | None = Field(None, description="Exists or Equal (the default).")
    value: str | None = Field(None, description="Taint value to match with operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        None, description="For NoExecute: how long the pod stays bound after the taint appears."
    )


_PRESERVE_OBJECT = WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True})


class Scheduling(ApiModel):
    """Where pods may run. GPU pods also get a toleration for the nvidia.com/gpu taint automatically."""

    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels the pods require (merged with the GPU product selector)."
    )
    tolerations: list[Toleration] = Field(default_factory=list, description="Extra tolerations for the pods.")
    affinity: Annotated[dict[str, Any], _PRESERVE_OBJECT] | None = Field(
        None, description="A core/v1 Affinity, passed to the pods unchanged."
    )
    priority_class_name: str | None = Field(None, description="PriorityClass of the pods.")


# --- storage locations ------------------------------------------------------------------------------------

# URI schemes the storage init container understands. Writes go only where an object store or volume is.
READ_SCHEMES = ("s3", "gs", "hf", "pvc", "http", "https", "file")
WRITE_SCHEMES = ("s3", "gs", "pvc", "file")


# --- conditions -------------------------------------------------------------------------------------------

CONDITION_TYPE = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class Condition(StatusModel):
    """A metav1.Condition: one aspect of the object's state."""

    type: str = Field(max_length=316, pattern=CONDITION_TYPE, description="Condition type, e.g. Ready.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(
        min_length=1, max_length=1024, pattern=CONDITION_REASON,
        description="CamelCase reason for the last transition, e.g. InvalidSpec.",
    )
    message: str = Field(max_length=32768, description="Human-readable details, naming fields where relevant.")
    last_transition_time: Timestamp = Field(description="When status last changed (not reason or message).")
    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation the condition was computed from."
    )


class StatusBase(StatusModel):
    """Fields every kind's status has."""

    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation the operator last acted on."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Current state as conditions; Ready summarises (see each kind for the others).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


# --- kind descriptor --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrinterColumn:
    """An additionalPrinterColumn of `kubectl get`."""

    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0


SpecT = TypeVar("SpecT", bound=ApiModel)


@dataclass(frozen=True)
class Kind(Generic[SpecT]):
    """Everything the CRD generator and the controllers need to know about one custom resource kind, typed by its
    spec model (so `validate_object(body, MODEL_DEPLOYMENT)` is a ModelDeploymentSpec)."""

    kind: str
    plural: str
    short_name: str
    description: str
    spec: type[SpecT]
    status: type[StatusModel]
    printer_columns: tuple[PrinterColumn, ...]

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def label_key(self) -> str:
        """The `mlops.dev/<kind>` label every child object carries."""
        return f"mlops.dev/{self.singular}"


AGE_COLUMN = PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since the object was created.")

"""The mlops.dev/v1alpha1 API: pydantic models (the single source of truth), CRD generation, validation.

- `KINDS`, `kind_for(name)`: the three kinds and their spec/status models.
- `parse_spec`, `validate_spec`, `validate_object`, `InvalidSpec`: a raw object -> a spec model, or
  field-named errors (for Ready=False, reason InvalidSpec).
- `crdgen.render_crds()`, `crdgen.write_crds(directory)`: the CRDs, generated from the models.
"""

from .common import Condition, Kind, duration_seconds
from .driftmonitor import DRIFT_MONITOR, DriftMonitorSpec, DriftMonitorStatus
from .kinds import KINDS, kind_for
from .modeldeployment import MODEL_DEPLOYMENT, ModelDeploymentSpec, ModelDeploymentStatus
from .trainingjob import TRAINING_JOB, TrainingJobSpec, TrainingJobStatus
from .validation import InvalidSpec, parse_spec, pydantic_errors, validate_object, validate_spec

__all__ = [
    "KINDS",
    "Kind",
    "kind_for",
    "Condition",
    "duration_seconds",
    "MODEL_DEPLOYMENT",
    "TRAINING_JOB",
    "DRIFT_MONITOR",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "TrainingJobSpec",
    "TrainingJobStatus",
    "DriftMonitorSpec",
    "DriftMonitorStatus",
    "InvalidSpec",
    "parse_spec",
    "pydantic_errors",
    "validate_spec",
    "validate_object",
]

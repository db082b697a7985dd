"""The three kinds of the mlops.dev API, in CRD order, and lookup by any of their names."""

from __future__ import annotations

from .common import Kind
from .driftmonitor import DRIFT_MONITOR
from .modeldeployment import MODEL_DEPLOYMENT
from .trainingjob import TRAINING_JOB

KINDS: tuple[Kind, ...] = (MODEL_DEPLOYMENT, TRAINING_JOB, DRIFT_MONITOR)


def kind_for(name: str) -> Kind:
    """The Kind for a kind name ("ModelDeployment"), plural ("modeldeployments"), singular or short name ("md")."""
    for kind in KINDS:
        if name in (kind.kind, kind.plural, kind.singular, kind.short_name):
            return kind
    raise KeyError(f"not an mlops.dev kind: {name!r}")

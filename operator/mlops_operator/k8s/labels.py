"""Labels every child object carries, and the smaller set Deployments and Services select on.

    labels("ModelDeployment", "iris", "predictor")
    -> app.kubernetes.io/{name: modeldeployment, instance: iris, component: predictor, part-of: mlops,
       managed-by: mlops-operator}, mlops.dev/modeldeployment: iris
"""

from __future__ import annotations

import hashlib

MANAGED_BY = "mlops-operator"
PART_OF = "mlops"
MAX_LABEL_VALUE = 63


def label_value(value: str) -> str:
    """value if it fits a label (63 characters); longer values are cut and end in a short hash, stably."""
    if len(value) <= MAX_LABEL_VALUE:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    return value[: MAX_LABEL_VALUE - 11].rstrip("-_.") + "-" + digest


def kind_label(kind: str) -> str:
    """mlops.dev/<kind lowercased>: the label naming the owning custom resource."""
    return f"mlops.dev/{kind.lower()}"


def labels(kind: str, name: str, component: str, *, app: str | None = None) -> dict[str, str]:
    """All recommended labels of a child of custom resource `name` of `kind` (e.g. "ModelDeployment").
    `component` says which part it is (predictor, canary, worker, drift-check ...); `app` sets
    app.kubernetes.io/name, by default the kind lowercased."""
    return {
        "app.kubernetes.io/name": label_value(app or kind.lower()),
        "app.kubernetes.io/instance": label_value(name),
        "app.kubernetes.io/component": label_value(component),
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        kind_label(kind): label_value(name),
    }


def selector_labels(kind: str, name: str, component: str | None = None) -> dict[str, str]:
    """The subset of labels() to select on (immutable for the life of a Deployment): the owning resource and,
    when given, the component. A Service that spans stable and canary selects without the component."""
    selector = {kind_label(kind): label_value(name)}
    if component is not None:
        selector["app.kubernetes.io/component"] = label_value(component)
    return selector

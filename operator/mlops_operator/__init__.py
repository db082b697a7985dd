"""mlops-operator: serve, train and watch ML models on Kubernetes with three small resources."""

__version__ = "0.1.0"

GROUP = "mlops.dev"
VERSION = "v1alpha1"
FIELD_MANAGER = "mlops-operator"

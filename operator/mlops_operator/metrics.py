"""Operator metrics on /metrics, named like controller-runtime's so existing dashboards fit.

Owns the metric objects and the HTTP endpoint; everyone else calls the small functions here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import TypeVar

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from .k8s.conditions import parse_time

RECONCILE_TOTAL = Counter("controller_runtime_reconcile_total", "Reconciliations by controller and result.",
                          ["controller", "result"])
RECONCILE_ERRORS = Counter("controller_runtime_reconcile_errors_total", "Reconciliations that raised.",
                           ["controller"])
RECONCILE_TIME = Histogram("controller_runtime_reconcile_time_seconds", "Time per reconciliation.", ["controller"],
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
ACTIVE_WORKERS = Gauge("controller_runtime_active_workers", "Reconciliations in flight.", ["controller"])
MAX_WORKERS = Gauge("controller_runtime_max_concurrent_reconciles", "Workers of the controller.", ["controller"])
QUEUE_DEPTH = Gauge("workqueue_depth", "Keys waiting in the work queue.", ["name"])
QUEUE_ADDS = Counter("workqueue_adds_total", "Keys added to the work queue.", ["name"])
QUEUE_RETRIES = Counter("workqueue_retries_total", "Keys put back after a failed reconcile.", ["name"])
QUEUE_WAIT = Histogram("workqueue_queue_duration_seconds", "Time a key waits in the queue before a worker takes it.",
                       ["name"], buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
API_REQUESTS = Counter("rest_client_requests_total", "Kubernetes API requests by method and HTTP code.",
                       ["method", "code"])
API_LATENCY = Histogram("rest_client_request_duration_seconds", "Kubernetes API request latency.", ["verb"],
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
MANAGED_OBJECTS = Gauge("mlops_managed_objects", "Custom resources by kind and phase.", ["kind", "phase"])
GPUS_REQUESTED = Gauge("mlops_gpus_requested", "GPUs requested by managed pods, by owner kind and pod phase.",
                       ["kind", "phase"])
TRAINING_ATTEMPTS = Counter("mlops_training_attempts_total", "TrainingJob attempts started (pods created).",
                            ["namespace"])

DRIFT_STATISTIC = Gauge("mlops_drift_statistic", "Last drift statistic per feature.",
                        ["namespace", "monitor", "feature", "test"])
DRIFT_DETECTED = Gauge("mlops_drift_detected", "1 when the last check found dataset drift.", ["namespace", "monitor"])
DRIFT_SHARE = Gauge("mlops_drift_share", "Share of drifted features in the last check.", ["namespace", "monitor"])
DRIFT_LAST_RUN = Gauge("mlops_drift_last_run_timestamp_seconds", "When the last successful check ran.",
                       ["namespace", "monitor"])
DRIFT_CHECKS = Counter("mlops_drift_checks_total", "Drift check results seen, by outcome.",
                       ["namespace", "monitor", "outcome"])
_drift_series: dict[tuple[str, str], set[tuple[str, str]]] = {}

CANARY_CHECKS = Counter("mlops_canary_checks_total", "Canary analysis check results, by check and result.",
                        ["namespace", "modeldeployment", "check", "result"])
CANARY_INCONCLUSIVE = Gauge("mlops_canary_inconclusive_intervals",
                            "Consecutive inconclusive analyses of the canary now (0 after a conclusive one).",
                            ["namespace", "modeldeployment"])


def canary_checks(namespace: str, name: str, checks: list[dict], consecutive_inconclusive: int) -> None:
    """Counts one analysis interval's check results (result: successful, failed, inconclusive)."""
    for check in checks:
        CANARY_CHECKS.labels(namespace, name, check["name"], str(check["verdict"]).lower()).inc()
    CANARY_INCONCLUSIVE.labels(namespace, name).set(consecutive_inconclusive)


def drift_result(namespace: str, monitor: str, last_run: dict | None) -> None:
    """Exports the last result of a DriftMonitor (None: forget its series)."""
    key = (namespace, monitor)
    for feature, test in _drift_series.pop(key, set()):
        DRIFT_STATISTIC.remove(namespace, monitor, feature, test)
    if last_run is None:
        for gauge in (DRIFT_DETECTED, DRIFT_SHARE, DRIFT_LAST_RUN):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, monitor)
        return
    series = set()
    for feature in last_run.get("features") or []:
        if feature.get("statistic") is not None:
            DRIFT_STATISTIC.labels(namespace, monitor, feature["name"], feature["test"]).set(feature["statistic"])
            series.add((feature["name"], feature["test"]))
    _drift_series[key] = series
    DRIFT_DETECTED.labels(namespace, monitor).set(1 if last_run.get("datasetDrift") else 0)
    DRIFT_SHARE.labels(namespace, monitor).set(last_run.get("driftShare") or 0)
    last_time = parse_time(last_run.get("time"))
    if last_time is not None:
        DRIFT_LAST_RUN.labels(namespace, monitor).set(last_time.timestamp())


def init_controller(name: str) -> None:
    """Every series of a controller at 0 from the start, as controller-runtime does: rate() and absent()-style
    alerts then work before the first error."""
    for result in ("success", "error", "requeue_after"):
        RECONCILE_TOTAL.labels(name, result)
    RECONCILE_ERRORS.labels(name)
    ACTIVE_WORKERS.labels(name)
    QUEUE_DEPTH.labels(name)
    QUEUE_ADDS.labels(name)
    QUEUE_RETRIES.labels(name)


LabelsT = TypeVar("LabelsT", bound=tuple[str, ...])


def set_series(gauge: Gauge, values: Mapping[LabelsT, float]) -> None:
    """Makes a labelled gauge hold exactly `values`: series that are gone are removed, not left at their last value."""
    for labels in _exported.get(id(gauge), set()) - set(values):
        with contextlib.suppress(KeyError):
            gauge.remove(*labels)
    for labels, value in values.items():
        gauge.labels(*labels).set(value)
    _exported[id(gauge)] = set(values)


_exported: dict[int, set[tuple[str, ...]]] = {}


def api_request(method: str, code: int) -> None:
    API_REQUESTS.labels(method=method, code=str(code)).inc()


@contextlib.contextmanager
def api_request_timer(method: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        API_LATENCY.labels(verb=method).observe(time.perf_counter() - start)


def serve(address: str) -> int:
    """Serves /metrics on host:port (port 0 picks a free one); returns the port."""
    host, _, port = address.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host or "0.0.0.0")
    return server.server_address[1]

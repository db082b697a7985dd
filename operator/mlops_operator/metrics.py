"""Operator metrics on /metrics, named like controller-runtime's so existing dashboards fit.

Owns the metric objects and the HTTP endpoint; everyone else calls the small functions here.
"""

from __future__ import annotations

import contextlib
import time

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILE_TOTAL = Counter("controller_runtime_reconcile_total", "Reconciliations by controller and result.",
                          ["controller", "result"])
RECONCILE_ERRORS = Counter("controller_runtime_reconcile_errors_total", "Reconciliations that raised.",
                           ["controller"])
RECONCILE_TIME = Histogram("controller_runtime_reconcile_time_seconds", "Time per reconciliation.", ["controller"],
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
ACTIVE_WORKERS = Gauge("controller_runtime_active_workers", "Reconciliations in flight.", ["controller"])
QUEUE_DEPTH = Gauge("workqueue_depth", "Keys waiting in the work queue.", ["name"])
QUEUE_ADDS = Counter("workqueue_adds_total", "Keys added to the work queue.", ["name"])
API_REQUESTS = Counter("rest_client_requests_total", "Kubernetes API requests by method and HTTP code.",
                       ["method", "code"])
API_LATENCY = Histogram("rest_client_request_duration_seconds", "Kubernetes API request latency.", ["verb"],
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
MANAGED_OBJECTS = Gauge("mlops_managed_objects", "Custom resources by kind and phase.", ["kind", "phase"])
GPUS_REQUESTED = Gauge("mlops_gpus_requested", "GPUs requested by managed pods, by kind and phase.",
                       ["kind", "phase"])


def api_request(method: str, code: int) -> None:
    API_REQUESTS.labels(method=method, code=str(code)).inc()


@contextlib.contextmanager
def api_request_timer(method: str):
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

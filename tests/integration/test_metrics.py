"""The operator's /metrics scraped by a real Prometheus (Debian's) on loopback, queried through its HTTP API:
the controller-runtime names existing dashboards use, and the mlops_* gauges and counters."""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
import urllib.request

import pytest

from helpers import apply, loopback_server

GROUP = "mlops.dev/v1alpha1"


@pytest.fixture(scope="module")
def prometheus(operator, tmp_path_factory):
    """A Prometheus scraping only the session operator every second; yields a query function, stopped by pid."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("no Prometheus binary (make test installs Debian's prometheus)")
    root = tmp_path_factory.mktemp("prometheus")
    (root / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: mlops-operator\n    static_configs: [{{targets: ['127.0.0.1:{operator.metrics_port}']}}]\n")
    def argv(port: int) -> list[str]:
        return [binary, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}"]

    with loopback_server("Prometheus", argv, root) as url:
        def query(expr: str) -> list[dict]:
            with urllib.request.urlopen(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}),
                                        timeout=5) as r:
                answer = json.load(r)
            assert answer["status"] == "success", answer
            return answer["data"]["result"]

        yield query


def eventually(query, expr: str, timeout: float = 45) -> list[dict]:
    """Polls a PromQL expression until it returns a sample (scrapes every 1 s; inventory gauges every 10 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = query(expr)
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"no sample for {expr} in {timeout}s; last target state: {query('up')}")


def test_prometheus_scrapes_the_operator(prometheus, operator, kube, namespace):
    assert eventually(prometheus, 'up{job="mlops-operator"} == 1')
    apply(kube, {"apiVersion": GROUP, "kind": "ModelDeployment",
                 "metadata": {"name": "scraped", "namespace": namespace},
                 "spec": {"model": {"uri": "s3://models/scraped/v1"}, "runtime": {"preset": "sklearn"},
                          "replicas": 0}})
    apply(kube, {"apiVersion": GROUP, "kind": "TrainingJob", "metadata": {"name": "counted", "namespace": namespace},
                 "spec": {"image": "trainer:1", "command": ["python", "train.py"], "workers": 1,
                          "resources": {"cpu": "100m", "memory": "256Mi"}}})

    assert eventually(prometheus, 'controller_runtime_reconcile_total{controller="modeldeployment"} > 0')
    assert eventually(prometheus, 'controller_runtime_reconcile_total{controller="trainingjob",result="success"} > 0'
                      ' or controller_runtime_reconcile_total{controller="trainingjob",result="requeue_after"} > 0')
    assert eventually(prometheus, 'rest_client_requests_total{method="PATCH",code="200"} > 0')
    assert eventually(prometheus, 'histogram_quantile(0.99, sum by (le) '
                                  '(rate(controller_runtime_reconcile_time_seconds_bucket[1m]))) >= 0')
    assert eventually(prometheus, f'mlops_training_attempts_total{{namespace="{namespace}"}} >= 1')
    assert eventually(prometheus, 'mlops_managed_objects{kind="modeldeployment"} >= 1')
    assert eventually(prometheus, 'mlops_managed_objects{kind="trainingjob"} >= 1')
    # Present (0 or more) whatever the load: dashboards plot them from the first scrape.
    for name in ("controller_runtime_reconcile_errors_total", "controller_runtime_active_workers",
                 "controller_runtime_max_concurrent_reconciles", "workqueue_depth", "workqueue_adds_total",
                 "workqueue_queue_duration_seconds_count", "rest_client_request_duration_seconds_count",
                 "process_resident_memory_bytes"):
        assert eventually(prometheus, f'{name}{{job="mlops-operator"}}'), name

"""The canary analysis' queries against a real Prometheus (Debian's binary) on loopback, scraping two agents'
metrics (the agent's own registry, agent/metrics.py) served by this test: a stable that answers every request
in 20 ms and a canary that fails one in ten and takes 300 ms. No cluster needed."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import shutil
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helpers import loopback_server
from mlops_operator.agent.config import AgentConfig
from mlops_operator.agent.metrics import AgentMetrics
from mlops_operator.api.modeldeployment import CanaryAnalysis
from mlops_operator.serving.analysis import judge
from mlops_operator.serving.prometheus import measure

RATE = 20  # requests per second each agent pretends to answer


class FakeAgent:
    """An agent's /metrics whose counters grow with time as if RATE requests a second came in: each scrape first
    brings them up to date, so every scrape sees whole requests (errors exactly one in `fail_every`)."""

    def __init__(self, revision: str, seconds: float, fail_every: int = 0, namespace: str = "ml", model: str = "iris"):
        self.metrics = AgentMetrics(AgentConfig(upstream_port=1, namespace=namespace, model=model, revision=revision))
        self.seconds, self.fail_every, self.answered, self.start = seconds, fail_every, 0, time.monotonic()
        self.lock = threading.Lock()

    def exposition(self) -> bytes:
        with self.lock:
            due = int((time.monotonic() - self.start) * RATE) // 10 * 10  # whole tens: exact error shares
            for n in range(self.answered, due):
                failed = self.fail_every and n % self.fail_every == 0
                self.metrics.answered(500 if failed else 200, self.seconds, 100, 100)
            self.answered = max(due, self.answered)
            return self.metrics.exposition()


def serve(agent: FakeAgent) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = agent.exposition()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@contextlib.contextmanager
def scraping(root: pathlib.Path, *agents: FakeAgent):
    """A real Prometheus scraping these agents every second; yields its URL; everything stopped afterwards."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("no Prometheus binary (make test installs Debian's prometheus)")
    servers = [serve(agent) for agent in agents]
    targets = ", ".join(f"'127.0.0.1:{s.server_address[1]}'" for s in servers)
    (root / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: agents\n    static_configs: [{{targets: [{targets}]}}]\n")

    def argv(port: int) -> list[str]:
        return [binary, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}"]

    try:
        with loopback_server("Prometheus", argv, root) as url:
            yield url
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    with scraping(tmp_path_factory.mktemp("prometheus"), FakeAgent("stable", 0.02),
                  FakeAgent("canary", 0.3, fail_every=10)) as url:
        yield url


ANALYSIS = CanaryAnalysis.model_validate({
    "interval": "10s", "minRequests": 50,
    "successRate": {"min": 0.95}, "latency": {"quantile": 0.9, "max": "100ms"},
    "checks": [{"name": "stableLatency", "max": 0.05, "query": (
        'histogram_quantile(0.9, sum by (le) (rate(mlops_agent_request_duration_seconds_bucket'
        '{namespace="{{namespace}}",model="{{name}}",revision="stable"}[{{interval}}])))')}],
})


def analyse(url: str, analysis: CanaryAnalysis = ANALYSIS, timeout: float = 10) -> dict[str, dict]:
    now = datetime.now(timezone.utc)
    answers = asyncio.run(measure(analysis, url, "ml", "iris", now, timeout=timeout))
    return {r["name"]: r for r in judge(analysis, answers, now)}


def test_the_checks_read_the_agents_metrics_from_prometheus(prometheus):
    # Wait (generously: a loaded machine) until a whole 10 s window of both agents is in Prometheus.
    deadline = time.monotonic() + 120
    while True:
        results = analyse(prometheus)
        if all(r["verdict"] != "Inconclusive" for r in results.values()):
            break
        assert time.monotonic() < deadline, f"still inconclusive: {results}"
        time.sleep(1)
    rate, latency, custom = results["successRate"], results["latency"], results["stableLatency"]
    # One in ten canary requests failed: exactly 0.9, whatever Prometheus' extrapolation (same samples).
    assert (rate["verdict"], rate["value"], rate["threshold"]) == ("Failed", 0.9, ">= 0.95")
    # 300 ms lands in the (0.25, 0.5] bucket: p90 interpolates inside it.
    assert latency["verdict"] == "Failed" and 0.25 < latency["value"] <= 0.5
    # The stable's 20 ms lands in (0.01, 0.025]: the custom query saw it.
    assert custom["verdict"] == "Successful" and 0.01 < custom["value"] <= 0.025


def test_relative_checks_compare_with_the_stable_over_the_same_window(prometheus):
    relative = CanaryAnalysis.model_validate({"interval": "10s", "minRequests": 50,
                                              "successRate": {"maxDegradation": 0.05},
                                              "latency": {"quantile": 0.5, "maxIncrease": 1.0}})
    deadline = time.monotonic() + 120
    while (results := analyse(prometheus, relative))["successRate"]["verdict"] == "Inconclusive":
        assert time.monotonic() < deadline, f"still inconclusive: {results}"
        time.sleep(1)
    assert results["successRate"]["verdict"] == "Failed" and results["successRate"]["threshold"] == ">= 0.95"
    assert results["latency"]["verdict"] == "Failed" and "stable" in results["latency"]["message"]


def test_more_requests_than_there_are_is_inconclusive(prometheus):
    quiet = CanaryAnalysis.model_validate({"interval": "10s", "minRequests": 100000, "successRate": {"min": 0.5}})
    result = analyse(prometheus, quiet)["successRate"]
    assert result["verdict"] == "Inconclusive" and "fewer than minRequests 100000" in result["message"]


def test_a_bad_custom_query_is_inconclusive_with_prometheus_words(prometheus):
    bad = CanaryAnalysis.model_validate({"interval": "10s", "minRequests": 0,
                                         "checks": [{"name": "broken", "query": "sum(", "max": 1}]})
    result = analyse(prometheus, bad)["broken"]
    assert result["verdict"] == "Inconclusive" and "bad_data" in result["message"]


def test_an_unreachable_or_silent_prometheus_is_inconclusive_within_the_timeout():
    import socket

    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        results = analyse(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=1)
    assert {r["verdict"] for r in results.values()} == {"Inconclusive"}
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    results = analyse(f"http://127.0.0.1:{port}")
    assert {r["verdict"] for r in results.values()} == {"Inconclusive"}
    assert "unreachable" in results["successRate"]["message"]

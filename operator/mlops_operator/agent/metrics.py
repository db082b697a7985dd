"""The agent's Prometheus metrics, per model and revision (names and buckets: docs/metrics.md).

One registry per agent, not prometheus-client's global one: the operator's own metrics stay out of the
sidecar's scrape, and two agents in one process (the tests) do not collide. Every series the request path
touches is bound to its labels once, at start, so a request costs no label lookup.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

from .config import AgentConfig

IDENTITY = ["namespace", "model", "revision", "model_hash"]
# From a fast CPU model (about a millisecond) to an LLM answer (tens of seconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
DROP_REASONS = ("buffer_full", "sink_error", "shutdown", "encode_error")


class AgentMetrics:
    def __init__(self, config: AgentConfig) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        r = self.registry
        requests = Counter("mlops_agent_requests_total", "Requests answered, by status code class.",
                           [*IDENTITY, "code"], registry=r)
        latency = Histogram("mlops_agent_request_duration_seconds",
                            "Time from a request's arrival to the last byte of its answer.", IDENTITY,
                            buckets=LATENCY_BUCKETS, registry=r)
        in_flight = Gauge("mlops_agent_requests_in_flight", "Requests being answered.", IDENTITY, registry=r)
        req_bytes = Counter("mlops_agent_request_bytes_total", "Bytes of request bodies.", IDENTITY, registry=r)
        resp_bytes = Counter("mlops_agent_response_bytes_total", "Bytes of response bodies.", IDENTITY, registry=r)
        identity = (config.namespace, config.model, config.revision, config.model_hash)
        self.requests = {cls: requests.labels(*identity, cls) for cls in STATUS_CLASSES}
        self.latency = latency.labels(*identity)
        self.in_flight = in_flight.labels(*identity)
        self.request_bytes = req_bytes.labels(*identity)
        self.response_bytes = resp_bytes.labels(*identity)

        self.sampled = Counter("mlops_agent_sampled_requests_total",
                               "Requests chosen by sampleRate for the prediction log.", registry=r)
        written = Counter("mlops_agent_written_records_total", "Records written to the log, by kind.", ["kind"],
                          registry=r)
        self.written = {kind: written.labels(kind) for kind in ("prediction", "feedback")}
        dropped = Counter("mlops_agent_dropped_records_total",
                          "Records not written, by reason (buffer_full, sink_error, shutdown, encode_error).",
                          ["reason"], registry=r)
        self.dropped = {reason: dropped.labels(reason) for reason in DROP_REASONS}
        self.buffer_bytes = Gauge("mlops_agent_buffer_bytes",
                                  "Bytes of logged bodies held, waiting or being written.", registry=r)
        Gauge("mlops_agent_buffer_limit_bytes", "The configured bound of mlops_agent_buffer_bytes.",
              registry=r).set(config.buffer_bytes)
        self.write_failures = Counter("mlops_agent_sink_write_failures_total",
                                      "File writes that failed or timed out (each is retried with back-off).",
                                      registry=r)
        self.files = Counter("mlops_agent_sink_files_total", "Parquet files written.", registry=r)

    def answered(self, status: int, seconds: float, request_bytes: int, response_bytes: int) -> None:
        self.requests[STATUS_CLASSES[min(max(status // 100, 1), 5) - 1]].inc()
        self.latency.observe(seconds)
        self.request_bytes.inc(request_bytes)
        self.response_bytes.inc(response_bytes)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

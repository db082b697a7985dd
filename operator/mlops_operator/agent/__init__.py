"""The inference agent (`mlops-operator agent`): a sidecar in front of the model server on 127.0.0.1.

    config.py     flags and environment
    proxy.py      the request path: forward, time, count, maybe sample
    upstream.py   the hop to the model server: HTTP/1.1 over kept-alive connections
    metrics.py    Prometheus metrics per model and revision
    protocols.py  rows from v2, v1 and OpenAI bodies (pure)
    sink.py       the bounded buffer and the log's writes
    parquet.py    rows to a Parquet file, standard library only (no pyarrow in the agent's process)
    feedback.py   POST /v1/feedback
    app.py        listeners, connection pool, sink, and their order of shutdown

docs/agent.md describes what it guarantees.
"""

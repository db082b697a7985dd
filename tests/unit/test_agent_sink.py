"""The prediction log under a storage that never answers, and on SIGTERM (agent/sink.py, agent/app.py).

The storage is an fsspec filesystem whose writes block until the test lets them go: the agent's own code,
from the request path to the fsspec call, is the real one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading

import aiohttp
import fsspec
from fsspec.spec import AbstractFileSystem
from test_agent_proxy import ModelServer, agent_config, metric, predictions, run, running, until_metric


class StalledFS(AbstractFileSystem):
    """Writes hang until `released` is set; then they land in `files`."""

    protocol = "stalled"
    released = threading.Event()
    files: dict[str, bytes] = {}

    def pipe_file(self, path, value, mode="overwrite", **kwargs):
        self.released.wait()
        self.files[path] = value

    def makedirs(self, path, exist_ok=False):
        pass


def test_a_stalled_sink_never_slows_or_fails_a_request_and_memory_stays_bounded():
    fsspec.register_implementation("stalled", StalledFS, clobber=True)
    StalledFS.released.clear()
    StalledFS.files.clear()
    body = {"instances": [[1.5, 2.5, 3.5, 4.5]] * 8}
    limit = 64 * 1024
    requests = 400

    async def scenario():
        async with ModelServer() as model:
            config = agent_config(model, log_uri="stalled://log", sample_rate=1.0, buffer_bytes=limit,
                                  batch_rows=20, batch_seconds=0.1, write_timeout=0.5, write_attempts=2)
            async with running(config) as agent, aiohttp.ClientSession() as s:
                peak = 0
                statuses = []

                async def one() -> None:
                    nonlocal peak
                    async with s.post(f"http://127.0.0.1:{agent.port}/v1/models/iris:predict", json=body) as r:
                        statuses.append(r.status)
                        assert (await r.json())["predictions"] == [12.0] * 8
                    peak = max(peak, agent.sink.held_bytes)

                for _ in range(requests // 20):
                    await asyncio.gather(*(one() for _ in range(20)))
                assert statuses == [200] * requests
                assert peak <= limit
                full = await metric(s, agent, "mlops_agent_dropped_records_total", reason="buffer_full")
                assert full > 0
                # The first write times out after write_timeout.
                assert await until_metric(s, agent, "mlops_agent_sink_write_failures_total") > 0
                assert await metric(s, agent, "mlops_agent_written_records_total", kind="prediction") == 0

                # The storage answers again: the next records are written.
                StalledFS.released.set()
                for _ in range(20):
                    await one()
                assert await until_metric(s, agent, "mlops_agent_written_records_total", kind="prediction") > 0
                while agent.sink.held_bytes:
                    await asyncio.sleep(0.1)
                # Every sampled request is accounted for: written or dropped with a reason.
                sampled = await metric(s, agent, "mlops_agent_sampled_requests_total")
                written = await metric(s, agent, "mlops_agent_written_records_total", kind="prediction")
                dropped = [await metric(s, agent, "mlops_agent_dropped_records_total", reason=reason)
                           for reason in ("buffer_full", "sink_error", "shutdown", "encode_error")]
                assert sampled == requests + 20 and written > 0 and sampled == written + sum(dropped)
        assert StalledFS.files

    try:
        run(scenario)
    finally:
        StalledFS.released.set()  # no thread is left waiting


def test_sigterm_writes_what_is_buffered(tmp_path):
    """An agent process with a long batch interval: nothing is written until SIGTERM, then all of it."""

    async def scenario():
        async with ModelServer() as model:
            agent = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mlops_operator.cli", "agent", "--listen", "127.0.0.1:0", "--metrics-port", "0",
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "MLOPS_AGENT_UPSTREAM_PORT": str(model.port), "MLOPS_AGENT_SAMPLE_RATE": "1",
                     "MLOPS_AGENT_LOG_URI": tmp_path.as_uri(), "MLOPS_AGENT_BATCH_SECONDS": "3600",
                     "MLOPS_AGENT_REVISION": "canary", "MLOPS_AGENT_POD": "p-1"})
            try:
                port = None
                while port is None:
                    line = (await asyncio.wait_for(agent.stderr.readline(), 60)).decode()
                    assert line, "the agent exited before it listened"
                    if " agent on " in line:
                        port = int(line.split(" agent on ")[1].split(" ")[0].rpartition(":")[2])
                logs = asyncio.ensure_future(agent.stderr.read())
                ids = []
                async with aiohttp.ClientSession() as s:
                    for i in range(25):
                        resp = await s.post(f"http://127.0.0.1:{port}/v1/models/iris:predict",
                                            json={"instances": [[i, 1]]})
                        assert resp.status == 200
                        ids.append(resp.headers["X-Request-Id"])
                assert list(tmp_path.rglob("*.parquet")) == []  # still buffered
                agent.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(agent.wait(), 60) == 0, (await logs).decode()
            finally:
                if agent.returncode is None:
                    agent.kill()
                    await agent.wait()
        table = predictions(tmp_path)
        assert sorted(table.column("request_id").to_pylist()) == sorted(ids)
        assert set(table.column("revision").to_pylist()) == {"canary"}
        assert all(p.name.startswith("canary-p-1-") for p in tmp_path.rglob("*.parquet"))

    run(scenario)


def test_the_agents_process_writes_its_log_without_loading_pyarrow(tmp_path):
    # pyarrow loaded and warmed is about 60 MB of the agent's memory (numpy and pandas more): the agent's process
    # runs the entry point's imports, starts an agent with a log, writes a file through its sink and stops,
    # and none of them is ever imported. The file is read back here, with pyarrow.
    code = """
import asyncio, sys
from mlops_operator import cli  # the entry point's imports
from mlops_operator.agent.app import Agent
from mlops_operator.agent.config import AgentConfig
from mlops_operator.agent.sink import PREDICTION, Record, now

async def main():
    agent = Agent(AgentConfig(upstream_port=1, listen_host="127.0.0.1", listen_port=0, metrics_port=0,
                              log_uri="file://" + sys.argv[1], sample_rate=1.0, pod="p"))
    await agent.start()
    micros, at = now()
    body = b'{"instances": [[0.5, 1]]}', b'{"predictions": [1]}'
    assert agent.sink.offer([Record(PREDICTION, at, {"timestamp": micros, "request_id": "a"}, "v1", *body)])
    await agent.stop(5)

asyncio.run(main())
loaded = sorted({name.partition(".")[0] for name in sys.modules} & {"pyarrow", "pandas", "numpy"})
assert not loaded, f"loaded: {loaded}"
"""
    import subprocess

    import pyarrow.dataset as ds

    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    table = ds.dataset(tmp_path, format="parquet", partitioning="hive").to_table()
    assert table.select(["request_id", "f0", "f1", "prediction"]).to_pylist() == [
        {"request_id": "a", "f0": 0.5, "f1": 1, "prediction": 1}]


def test_the_buffer_counts_what_a_record_really_costs():
    # The buffer's bound in bytes is a bound on memory only if a record's counted size is what it holds: records
    # made as the request path makes them, measured by tracemalloc, within 15% of their counted sizes.
    import json
    import time
    import tracemalloc
    import uuid

    from mlops_operator.agent.config import AgentConfig
    from mlops_operator.agent.proxy import Proxy
    from mlops_operator.agent.sink import Record

    proxy = Proxy(AgentConfig(upstream_port=1, model_uri="s3://m/1"), None, None, None)  # what it needs to make records
    request = json.dumps({"instances": [[round(0.1 * i + j, 3) for i in range(16)] for j in range(4)]}).encode()
    response = json.dumps({"predictions": [1.0, 2.0, 3.0, 4.0]}).encode()
    held: list[Record] = []
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(5000):
            held.append(proxy.record("v1", uuid.uuid4().hex, time.perf_counter(), 200, bytes(bytearray(request)),
                                     bytes(bytearray(response)), streamed=False))
        real = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    counted = sum(r.size for r in held)
    assert 0.85 < real / counted < 1.15, (real, counted)

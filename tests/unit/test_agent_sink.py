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


def test_the_agents_process_writes_parquet_without_loading_pandas(tmp_path):
    # pyarrow would import pandas (about 45 MB) on its first conversion; the agent's process makes it unimportable.
    # The child only writes, as the agent does; the file is read back here. (A threaded pq.read_table of a Python
    # file object makes pyarrow 26 abort at interpreter exit, "terminate called without an active exception".)
    code = """
import sys
from mlops_operator.agent import app, sink
app.without_pandas()
data = sink.parquet_bytes([{"timestamp": 1, "request_id": "a", "f0": 0.5, "output": [1, "x"]}])
assert "pandas" not in sys.modules, "pandas was loaded"
open(sys.argv[1], "wb").write(data)
try:
    import pandas
except ModuleNotFoundError as err:
    print("no pandas:", err)
"""
    import subprocess

    import pyarrow.parquet as pq

    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "rows.parquet")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("no pandas: No module named 'pandas' (the agent does without it)")
    table = pq.read_table(tmp_path / "rows.parquet")
    assert (table.num_rows, table.column("f0").to_pylist(), table.column("output").to_pylist()) == (
        1, [0.5], ['[1, "x"]'])

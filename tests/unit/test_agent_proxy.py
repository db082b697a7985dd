"""The inference agent in front of a tiny model server, both real aiohttp servers on 127.0.0.1.

The model server speaks Open Inference Protocol v2, KServe v1 and an OpenAI-style streaming completion; a test
talks to it through the agent with a real HTTP client and reads the prediction log back with pyarrow.dataset.
"""

from __future__ import annotations

import asyncio
import gc
import json
import pathlib
from contextlib import asynccontextmanager

import aiohttp
import pyarrow.dataset as ds
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from mlops_operator.agent.app import Agent
from mlops_operator.agent.config import AgentConfig
from mlops_operator.agent.proxy import end_to_end, header_lines

STREAM_CHUNKS = 5


class ModelServer:
    """Predicts the sum of each row's features; remembers the request ids it saw. Its stream sends one event,
    then waits until the test says the client has it (or 30 s), then the rest: a relay that buffered the answer
    would hold the first event back, and the server would record that it was not released."""

    def __init__(self) -> None:
        self.request_ids: list[str | None] = []
        self.first_chunk_received = asyncio.Event()
        self.stream_released_by_client: bool | None = None
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def v2(self, request: web.Request) -> web.Response:
        self.request_ids.append(request.headers.get("X-Request-Id"))
        body = await request.json()
        data = body["inputs"][0]["data"]
        sums = [sum(row) for row in data]
        return web.json_response({"model_name": request.match_info["name"], "id": "x",
                                  "outputs": [{"name": "predict", "shape": [len(sums)], "datatype": "FP64",
                                               "data": sums}]})

    async def v1(self, request: web.Request) -> web.Response:
        self.request_ids.append(request.headers.get("X-Request-Id"))
        body = await request.json()
        return web.json_response({"predictions": [sum(row) for row in body["instances"]]})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        answer = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await answer.prepare(request)
        for i in range(STREAM_CHUNKS):
            event = {"model": body["model"], "choices": [{"delta": {"content": f"w{i} "},
                                                          "finish_reason": "stop" if i == STREAM_CHUNKS - 1
                                                          else None}]}
            await answer.write(b"data: " + json.dumps(event).encode() + b"\n\n")
            if i == 0:
                try:
                    await asyncio.wait_for(self.first_chunk_received.wait(), 30)
                    self.stream_released_by_client = True
                except TimeoutError:
                    self.stream_released_by_client = False
        await answer.write(b"data: [DONE]\n\n")
        await answer.write_eof()
        return answer

    async def __aenter__(self) -> ModelServer:
        app = web.Application()
        app.router.add_post("/v2/models/{name}/infer", self.v2)
        app.router.add_post("/v1/models/{name}:predict", self.v1)
        app.router.add_post("/v1/completions", self.stream)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


def agent_config(model: ModelServer, **overrides: object) -> AgentConfig:
    settings: dict = dict(upstream_port=model.port, listen_host="127.0.0.1", listen_port=0, metrics_port=0,
                          namespace="ns", model="iris", revision="stable", model_uri="file:///models/iris/1",
                          pod="iris-abc", batch_seconds=0.2, grace_seconds=10)
    settings.update(overrides)
    return AgentConfig(**settings)


@asynccontextmanager
async def running(config: AgentConfig):
    agent = Agent(config)
    await agent.start()
    try:
        yield agent
    finally:
        await agent.stop()


def v2_body(rows: list[list[float]]) -> dict:
    return {"inputs": [{"name": "input-0", "shape": [len(rows), len(rows[0])], "datatype": "FP64", "data": rows}]}


async def metric(session: aiohttp.ClientSession, agent: Agent, name: str, **labels: str) -> float:
    """The value of one sample on the agent's /metrics (0 when absent)."""
    async with session.get(f"http://127.0.0.1:{agent.metrics_port}/metrics") as resp:
        text = await resp.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


async def until_metric(session: aiohttp.ClientSession, agent: Agent, name: str, **labels: str) -> float:
    """Waits (up to a minute) for a sample to be above 0; returns it."""
    for _ in range(600):
        value = await metric(session, agent, name, **labels)
        if value > 0:
            return value
        await asyncio.sleep(0.1)
    return await metric(session, agent, name, **labels)


def predictions(root: pathlib.Path):
    return ds.dataset(root, format="parquet", partitioning="hive",
                      ignore_prefixes=["feedback", ".", "_"]).to_table()


def run(scenario) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 120))


def test_predictions_pass_through_unchanged_with_a_request_id():
    async def scenario():
        async with ModelServer() as model, running(agent_config(model)) as agent, aiohttp.ClientSession() as s:
            body = v2_body([[1.0, 2.0], [3.0, 4.5]])
            direct = await s.post(f"http://127.0.0.1:{model.port}/v2/models/iris/infer", json=body)
            proxied = await s.post(f"http://127.0.0.1:{agent.port}/v2/models/iris/infer", json=body,
                                   headers={"X-Request-Id": "given-1"})
            assert proxied.status == direct.status == 200
            assert await proxied.read() == await direct.read()
            assert proxied.headers["Content-Type"] == direct.headers["Content-Type"]
            assert proxied.headers["X-Request-Id"] == "given-1"
            v1 = await s.post(f"http://127.0.0.1:{agent.port}/v1/models/iris:predict", json={"instances": [[1, 2]]})
            assert await v1.json() == {"predictions": [3]}
            made = v1.headers["X-Request-Id"]
            assert len(made) == 32
            assert model.request_ids[-2:] == ["given-1", made]  # the model server sees the same id
            missing = await s.get(f"http://127.0.0.1:{agent.port}/nothing/here")
            assert missing.status == 404
    run(scenario)


def test_upstream_down_is_a_502_not_a_crash():
    async def scenario():
        async with ModelServer() as model:
            port = model.port
        async with running(agent_config(model, upstream_port=port)) as agent, aiohttp.ClientSession() as s:
            resp = await s.post(f"http://127.0.0.1:{agent.port}/v1/models/iris:predict", json={"instances": [[1]]})
            assert resp.status == 502 and resp.headers["X-Request-Id"]
            assert await metric(s, agent, "mlops_agent_requests_total", code="5xx") == 1
    run(scenario)


def test_metrics_count_per_revision():
    async def scenario():
        async with (ModelServer() as model, running(agent_config(model)) as stable,
                    running(agent_config(model, revision="canary", model_uri="file:///models/iris/2")) as canary,
                    aiohttp.ClientSession() as s):
            for agent, n in ((stable, 3), (canary, 2)):
                for _ in range(n):
                    resp = await s.post(f"http://127.0.0.1:{agent.port}/v1/models/iris:predict",
                                        json={"instances": [[1, 2]]})
                    assert resp.status == 200
            await s.get(f"http://127.0.0.1:{canary.port}/missing")
            assert await metric(s, stable, "mlops_agent_requests_total", revision="stable", code="2xx") == 3
            assert await metric(s, canary, "mlops_agent_requests_total", revision="canary", code="2xx") == 2
            assert await metric(s, canary, "mlops_agent_requests_total", revision="canary", code="4xx") == 1
            assert await metric(s, stable, "mlops_agent_request_duration_seconds_count", revision="stable") == 3
            assert await metric(s, stable, "mlops_agent_request_bytes_total") == 3 * len(b'{"instances": [[1, 2]]}')
            assert await metric(s, stable, "mlops_agent_requests_in_flight") == 0
            hashes = {await metric(s, a, "mlops_agent_requests_total", model_hash=a.config.model_hash, code="2xx")
                      for a in (stable, canary)}
            assert hashes == {3, 2} and stable.config.model_hash != canary.config.model_hash
            gc.collect()  # a full pass, timed on the agent's own /metrics
            assert await metric(s, stable, "mlops_agent_gc_pause_seconds_count", generation="2") >= 1
    run(scenario)


def test_sample_rate_1_logs_exactly_the_requests_rows(tmp_path):
    async def scenario():
        config_ = dict(log_uri=tmp_path.as_uri(), sample_rate=1.0, columns=("a", "b"))
        async with ModelServer() as model:
            async with running(agent_config(model, **config_)) as agent, aiohttp.ClientSession() as s:
                ids = []
                for i in range(6):
                    resp = await s.post(f"http://127.0.0.1:{agent.port}/v2/models/iris/infer",
                                        json=v2_body([[i, 1.0], [i, 2.0]]))
                    assert resp.status == 200
                    ids.append(resp.headers["X-Request-Id"])
            # Stopping flushed the buffer.
            assert await metric_after_stop(agent, "mlops_agent_written_records_total", kind="prediction") == 6
        table = predictions(tmp_path).sort_by([("request_id", "ascending"), ("a", "ascending"),
                                               ("b", "ascending")])
        assert table.num_rows == 12
        assert {"timestamp", "request_id", "revision", "model_uri", "status_code", "latency_seconds", "protocol",
                "a", "b", "output_predict", "date", "hour"} == set(table.column_names)
        assert sorted(set(table.column("request_id").to_pylist())) == sorted(ids)
        assert set(table.column("revision").to_pylist()) == {"stable"}
        assert set(table.column("status_code").to_pylist()) == {200}
        assert set(table.column("model_uri").to_pylist()) == {"file:///models/iris/1"}
        rows = table.select(["a", "b", "output_predict"]).to_pylist()
        assert sorted((r["a"], r["b"], r["output_predict"]) for r in rows) == sorted(
            (float(i), b, i + b) for i in range(6) for b in (1.0, 2.0))
        assert str(table.schema.field("timestamp").type) == "timestamp[us, tz=UTC]"
        files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.parquet"))
        assert files and all(f.startswith("date=") and "/hour=" in f and f.split("/")[-1].startswith("stable-iris-abc-")
                             for f in files)
    run(scenario)


async def metric_after_stop(agent: Agent, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(agent.metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_sample_rate_0_logs_nothing(tmp_path):
    async def scenario():
        async with ModelServer() as model:
            async with (running(agent_config(model, log_uri=tmp_path.as_uri(), sample_rate=0.0)) as agent,
                        aiohttp.ClientSession() as s):
                for _ in range(20):
                    resp = await s.post(f"http://127.0.0.1:{agent.port}/v1/models/iris:predict",
                                        json={"instances": [[1, 2]]})
                    assert resp.status == 200
            assert await metric_after_stop(agent, "mlops_agent_sampled_requests_total") == 0
        assert list(tmp_path.rglob("*.parquet")) == []
    run(scenario)


def test_streamed_answer_arrives_chunk_by_chunk_and_is_logged(tmp_path):
    async def scenario():
        config_ = dict(log_uri=tmp_path.as_uri(), sample_rate=1.0, log_payloads=True)
        async with ModelServer() as model:
            async with running(agent_config(model, **config_)) as agent, aiohttp.ClientSession() as s:
                model.first_chunk_received.set()  # the direct call needs no release
                direct = await (await s.post(f"http://127.0.0.1:{model.port}/v1/completions",
                                             json={"model": "m", "prompt": "hi", "stream": True})).read()
                model.first_chunk_received.clear()
                resp = await s.post(f"http://127.0.0.1:{agent.port}/v1/completions",
                                    json={"model": "m", "prompt": "hi", "stream": True})
                received = bytearray()
                async for chunk in resp.content.iter_any():
                    received += chunk
                    model.first_chunk_received.set()
                assert model.stream_released_by_client is True  # the first event reached us before the rest left
                assert bytes(received) == direct
                assert "Content-Length" not in resp.headers
        table = predictions(tmp_path)
        row = table.to_pylist()[0]
        assert table.num_rows == 1
        assert row["protocol"] == "openai" and row["finish_reason"] == "stop" and row["stream"] is True
        assert row["completion"] == "".join(f"w{i} " for i in range(STREAM_CHUNKS)) and row["prompt"] == "hi"
    run(scenario)


def test_feedback_rows_join_their_predictions_by_request_id(tmp_path):
    async def scenario():
        async with ModelServer() as model:
            async with (running(agent_config(model, log_uri=tmp_path.as_uri(), sample_rate=1.0)) as agent,
                        aiohttp.ClientSession() as s):
                ids = []
                for i in range(4):
                    resp = await s.post(f"http://127.0.0.1:{agent.port}/v1/models/iris:predict",
                                        json={"instances": [[i, 1]]})
                    ids.append(resp.headers["X-Request-Id"])
                resp = await s.post(f"http://127.0.0.1:{agent.port}/v1/feedback",
                                    json={"feedback": [{"request_id": rid, "label": i % 2}
                                                       for i, rid in enumerate(ids[:3])]})
                assert resp.status == 202 and (await resp.json()) == {"accepted": 3}
                bad = await s.post(f"http://127.0.0.1:{agent.port}/v1/feedback", json={"feedback": [{"label": 1}]})
                assert bad.status == 400 and "feedback[0].request_id" in (await bad.json())["error"]
        feedback = ds.dataset(tmp_path / "feedback", format="parquet", partitioning="hive").to_table()
        assert feedback.num_rows == 3 and {"request_id", "label", "timestamp"} <= set(feedback.column_names)
        joined = predictions(tmp_path).select(["request_id", "f0", "prediction"]).join(
            feedback.select(["request_id", "label"]), "request_id", join_type="inner")
        got = sorted((r["request_id"], r["f0"], r["prediction"], r["label"]) for r in joined.to_pylist())
        assert got == sorted((ids[i], i, i + 1, i % 2) for i in range(3))
    run(scenario)


def test_headers_that_connection_names_do_not_cross_the_agent():
    sent = header_lines(((b"Host", b"agent"), (b"Connection", b"keep-alive, X-Hop"), (b"x-hop", b"1"),
                         (b"X-Kept", b"2"), (b"X-Request-Id", b"caller")), "rid-1")
    assert sent == b"X-Kept: 2\r\nX-Request-Id: rid-1\r\n"
    answer = end_to_end([("Content-Type", "application/json"), ("Connection", "close,X-Hop ,Keep-Alive"),
                         ("X-HOP", "1"), ("Keep-Alive", "timeout=5"), ("X-Kept", "2")])
    assert list(answer.items()) == [("Content-Type", "application/json"), ("X-Kept", "2")]
    assert header_lines(((b"X-Kept", b"2"),), "r") == b"X-Kept: 2\r\nX-Request-Id: r\r\n"  # no Connection header

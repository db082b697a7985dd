"""The prediction log on s3:// against a real S3 protocol server on loopback (moto's server mode, what s3fs's own
tests use): the inference agent writes it and the drift runner reads it, both configured by the same environment
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`), which is what one Secret in `envFrom` gives
the serving pod and the drift runner's pod."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import aiohttp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_agent_proxy import ModelServer, agent_config, run, running, v2_body
from test_monitoring_data import log_file, runner_md

from mlops_operator import datasets as data
from mlops_operator.monitoring import runner

moto_server = pytest.importorskip("moto.server")
s3fs = pytest.importorskip("s3fs")

BUCKET = "mlops-logs"


@pytest.fixture(scope="module")
def endpoint():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(endpoint, monkeypatch):
    """A fresh bucket; credentials and endpoint only in the environment, as a Secret's envFrom sets them."""
    for name, value in {"AWS_ACCESS_KEY_ID": "mlops", "AWS_SECRET_ACCESS_KEY": "mlops-secret",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    if fs.exists(BUCKET):
        fs.rm(BUCKET, recursive=True)
    fs.mkdir(BUCKET)
    yield fs
    s3fs.S3FileSystem.clear_instance_cache()


class CountingS3(s3fs.S3FileSystem):
    """An S3 filesystem that records the keys opened."""

    cachable = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.opened: list[str] = []

    def _open(self, path, mode="rb", **kwargs):
        self.opened.append(self._strip_protocol(path))
        return super()._open(path, mode, **kwargs)


def put_parquet(fs, path: str, table: pa.Table) -> None:
    out = io.BytesIO()
    pq.write_table(table, out)
    fs.pipe_file(path, out.getvalue())


def test_the_agents_s3_log_is_read_by_the_drift_runner_with_the_same_environment(s3):
    rng = np.random.default_rng(3)
    put_parquet(s3, f"{BUCKET}/reference/train.parquet",
                pa.table({"a": rng.normal(0, 1, 1000), "b": rng.normal(0, 1, 1000)}))
    log = f"s3://{BUCKET}/iris/predictions"

    async def scenario() -> None:
        async with ModelServer() as model:
            for revision, shift, requests in (("stable", 0.0, 30), ("canary", 4.0, 10)):
                config = agent_config(model, log_uri=log, sample_rate=1.0, columns=("a", "b"), revision=revision,
                                      pod=f"iris-{revision}")
                async with running(config) as agent, aiohttp.ClientSession() as session:
                    ids = []
                    for _ in range(requests):
                        rows = (rng.normal(0, 1, (10, 2)) + shift).tolist()
                        resp = await session.post(f"http://127.0.0.1:{agent.port}/v2/models/iris/infer",
                                                  json=v2_body(rows))
                        assert resp.status == 200
                        ids.append(resp.headers["X-Request-Id"])
                    resp = await session.post(f"http://127.0.0.1:{agent.port}/v1/feedback",
                                              json={"feedback": [{"request_id": i, "label": 1} for i in ids]})
                    assert resp.status == 202
                # leaving `running` stops the agent, which writes what it buffered

    run(scenario)
    keys = s3.find(f"{BUCKET}/iris/predictions")
    assert [k for k in keys if "/feedback/date=" in k], "the agent wrote feedback beside the predictions"
    dm = {"spec": {"modelDeployment": {"name": "iris"}, "reference": {"uri": f"s3://{BUCKET}/reference/train.parquet"},
                   "current": {"window": "1h"}, "schedule": "0 * * * *"}}
    status = runner.check(dm, runner_md(log), datetime.now(timezone.utc))
    assert status["lastAttempt"]["succeeded"] is True, status
    last = status["lastRun"]
    assert last["rows"]["current"] == 300 and last["datasetDrift"] is False  # the stable rows only
    dm["spec"]["current"]["revision"] = "canary"
    canary = runner.check(dm, runner_md(log), datetime.now(timezone.utc))["lastRun"]
    assert canary["rows"]["current"] == 100 and canary["datasetDrift"] is True


def test_on_s3_a_window_opens_only_its_partitions(s3, tmp_path):
    now = datetime(2026, 11, 26, 12, 30, tzinfo=timezone.utc)
    for hours_ago in range(30):
        local = log_file(tmp_path, now.replace(minute=0) - timedelta(hours=hours_ago), 20,
                         step=timedelta(minutes=1))
        s3.put_file(str(local), f"{BUCKET}/log/{local.relative_to(tmp_path).as_posix()}")
    fs = CountingS3()
    window = data.Window(duration_seconds=3600)
    table = data.open_source(f"s3://{BUCKET}/log", window=window, now=now, filesystem=fs).read(["x"], window, now)
    assert sorted({key.split("/")[-2] for key in fs.opened}) == ["hour=11", "hour=12"]
    assert all("date=2026-11-26" in key for key in fs.opened)
    assert table.num_rows == 20  # 12:00-12:19; hour 11's rows (11:00-11:19) are before 11:30
    with pytest.raises(data.DataError) as err:
        data.open_source(f"s3://{BUCKET}/log", window=window, now=now + timedelta(days=3))
    assert err.value.reason == "EmptyWindow"

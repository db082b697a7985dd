"""Inference agent benchmark: what the sidecar adds to a request, and what a stalled prediction log costs.

    python -m bench agent [--quick] [--no-write]
    python -m bench.agent_bench [--rates 100,500,1000] [--seconds 10] [--stall-seconds 60]

A model server (a small aiohttp app answering KServe v1 predictions, its own process) on 127.0.0.1; load at fixed
rates (open loop: request i is sent at i/rate seconds) from this process, straight to the model server and
through `mlops-operator agent` (its own process, a fresh one per sample rate) logging at sample rates 0, 0.1
and 1 to a file:// prediction log. Per cell: latency p50/p99 (send to last byte), the agent's CPU seconds per
1000 requests (/proc/<pid>/stat), its peak RSS (VmHWM). Then, per agent and rate, the added latency paired:
a request straight to a twin of the model server and one through the agent sent at the same instant, their
difference taken per pair, so a stall of the shared machine that delays both cancels out. Then the stalled sink: the
agent's storage (an fsspec filesystem whose writes never return, registered in the agent's process; the agent's
own code is the real one) under the highest rate: every request answered?, drops counted, peak RSS against the
configured buffer.
Then the ceiling (issue: the agent's own ceiling at least 3x what MLServer serves on the same core): requests
answered per CPU-second of a server's process tree under closed-loop load (32 connections kept busy), for a real
MLServer 1.7.1 (its own virtualenv, a small scikit-learn model; as the operator's mlserver preset configures it,
and lean: no access log, no metrics) and for the agent (sampleRates 0 and 1) in front of the model server. The
servers on CPU 0, the load and the agents' model server on CPU 1; all started at once and loaded in turn, in short
windows, so other work on the machine weighs on each alike.
Loopback only; every process it starts is stopped by pid. Writes "## Inference agent" of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from fsspec.spec import AbstractFileSystem

from bench.report import publish

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Inference agent"
TICKS = os.sysconf("SC_CLK_TCK")
# 4 instances of 16 features: about 600 bytes per request, 80 per answer.
BODY = json.dumps({"instances": [[round(0.1 * i + j, 3) for i in range(16)] for j in range(4)]}).encode()
STALL_BUFFER = 16 * 1024 * 1024
# The same 4 x 16 values as an Open Inference Protocol v2 request, for MLServer.
V2_BODY = json.dumps({"inputs": [{"name": "features", "shape": [4, 16], "datatype": "FP64",
                                  "data": json.loads(BODY)["instances"]}]}).encode()
CEILING_CONNECTIONS = 32
CEILING_WINDOW = 2.5  # seconds of one target's load before the next target's turn
TARGET = 3.0  # the agent's requests per CPU-second over MLServer's
SATURATED = 0.9  # CPU seconds per wall second from which a server counts as at its ceiling
TARGET_RATE, TARGET_P50, TARGET_P99 = 500, 1.0, 3.0  # the added-latency targets (req/s, ms, ms)
SERVER_CPU, LOAD_CPU = 0, 1
# Run by MLServer's own python, so the pickle matches the scikit-learn that loads it: a depth-3 tree on 16 features.
TRAIN = ("import sys, joblib; from sklearn.datasets import make_classification; "
         "from sklearn.tree import DecisionTreeClassifier; "
         "x, y = make_classification(n_samples=1000, n_features=16, random_state=0); "
         "joblib.dump(DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, y), sys.argv[1])")


# -- the processes ---------------------------------------------------------------------------------------------

def serve_model() -> None:
    """The model server process: sums each instance's features; prints its port, serves until SIGTERM."""
    from aiohttp import web

    async def predict(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"predictions": [sum(row) for row in body["instances"]]})

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/models/{name}:predict", predict)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        print(runner.addresses[0][1], flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


class StalledFS(AbstractFileSystem):
    """Registered by name in the agent's process for the stalled-sink run: every write blocks forever."""

    protocol = "stalled"

    def pipe_file(self, path, value, mode="overwrite", **kwargs):  # type: ignore[no-untyped-def]
        threading.Event().wait()

    def makedirs(self, path, exist_ok=False):  # type: ignore[no-untyped-def]
        pass


AGENT_STALLED = ("import fsspec, sys; fsspec.register_implementation('stalled', 'bench.agent_bench.StalledFS'); "
                 "from mlops_operator.cli import main; sys.exit(main(sys.argv[1:]))")


class Proc:
    """A process of the bench. Its output is read through pipes (`line`), or, with `log`, goes to that file (a
    server that logs every request must not fill a pipe nobody reads)."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT,
                 log: Path | None = None) -> None:
        environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        if log:
            with open(log, "wb") as out:
                self.popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=environ)
        else:
            self.popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                                          env=environ)
        self.pid = self.popen.pid

    def line(self, stream: str, marker: str, timeout: float = 60) -> str:
        pipe = getattr(self.popen, stream)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = pipe.readline().decode()
            if not line and self.popen.poll() is not None:
                raise RuntimeError(f"{self.popen.args[:3]} exited: {self.popen.stderr.read().decode()[-2000:]}")
            if marker in line:
                # Keep draining the pipe so a chatty process never blocks on it.
                threading.Thread(target=pipe.read, daemon=True).start()
                return line
        raise RuntimeError(f"no {marker!r} from {self.popen.args[:3]} in {timeout}s")

    def cpu_seconds(self) -> float:
        return _stat(self.pid)[1]

    def tree_usage(self) -> tuple[float, float, int]:
        """Of the process and every descendant alive now: CPU seconds, seconds their threads spent ready to run but
        waiting for a CPU (/proc/<pid>/task/<tid>/schedstat), and how many processes that is."""
        stats = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):  # gone since the listing
                    stats[int(entry.name)] = _stat(int(entry.name))
        tree, grew = {self.pid}, True
        while grew:
            found = {pid for pid, (ppid, _) in stats.items() if ppid in tree}
            grew = not found <= tree
            tree |= found
        waited = 0
        for pid in tree:
            for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
                with contextlib.suppress(OSError):
                    waited += int(task.read_text().split()[1])
        return sum(stats[pid][1] for pid in tree if pid in stats), waited / 1e9, len(tree)

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def _stat(pid: int) -> tuple[int, float]:
    """Parent pid and CPU seconds (user + system, all threads) from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def start_model() -> tuple[Proc, int]:
    model = Proc([sys.executable, str(Path(__file__)), "--model-server"])
    return model, int(model.line("stdout", "", 60).strip())


def start_agent(upstream: int, sample_rate: float, log_uri: str, stalled: bool = False) -> tuple[Proc, int, int]:
    argv = ["agent", "--listen", "127.0.0.1:0", "--metrics-port", "0", "--upstream-port", str(upstream),
            "--sample-rate", str(sample_rate), "--log-uri", log_uri, "--batch-seconds", "5",
            "--model", "bench", "--revision", "stable", "--pod", "bench"]
    if stalled:
        argv += ["--buffer-bytes", str(STALL_BUFFER), "--write-timeout", "5", "--write-attempts", "3"]
    agent = Proc([sys.executable, "-c", AGENT_STALLED, *argv] if stalled
                 else [sys.executable, "-m", "mlops_operator.cli", *argv])
    line = agent.line("stderr", " agent on ")
    port = int(re.search(r"agent on [^ ]+:(\d+) ", line).group(1))  # type: ignore[union-attr]
    metrics_port = int(re.search(r"metrics on :(\d+)", line).group(1))  # type: ignore[union-attr]
    return agent, port, metrics_port


# -- the load --------------------------------------------------------------------------------------------------

async def post(session, url: str, body: bytes, statuses: Counter[str]) -> bool:  # type: ignore[no-untyped-def]
    """One request, its answer read whole and its status (or error) counted; True when it was answered."""
    import aiohttp

    try:
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
            await resp.read()
            statuses[str(resp.status)] += 1
            return True
    except (aiohttp.ClientError, OSError) as err:
        statuses[type(err).__name__] += 1
        return False


async def open_loop(rate: float, n: int, send: Callable[[], Awaitable[None]]) -> float:
    """Starts `send()` n times, the i-th at i/rate seconds whatever the answers do, and waits for all of them;
    returns the seconds the sending took."""
    tasks = []
    start = time.perf_counter()
    sent = 0
    while sent < n:
        due = min(n, int((time.perf_counter() - start) * rate) + 1)
        while sent < due:
            tasks.append(asyncio.ensure_future(send()))
            sent += 1
        await asyncio.sleep(0.002)
    sending = time.perf_counter() - start
    await asyncio.gather(*tasks)
    return sending


async def load(port: int, rate: float, seconds: float) -> dict:
    """Open-loop load: request i leaves at i/rate; latency from its send to its answer's last byte."""
    import aiohttp

    url = f"http://127.0.0.1:{port}/v1/models/bench:predict"
    n = int(rate * seconds)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:

        async def one() -> None:
            t = time.perf_counter()
            if await post(session, url, BODY, statuses):
                latencies.append(time.perf_counter() - t)

        for _ in range(min(200, n)):  # warm the connections
            await one()
        latencies.clear()
        statuses.clear()
        sending = await open_loop(rate, n, one)
    latencies.sort()
    return {"n": n, "rate": n / sending, "statuses": dict(statuses),
            "p50": latencies[len(latencies) // 2] * 1000 if latencies else float("nan"),
            "p99": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else float("nan")}


async def paired(direct_port: int, agent_port: int, rate: float, seconds: float, seed: int = 0) -> dict:
    """Pairs at `rate` a second (open loop): each is one request straight to a model server (`direct_port`, a twin
    of the agent's own, so the two never queue at one server) and one through the agent, sent at the same instant
    in a random order. A pair's added latency is its agent request's minus its direct request's. A stall of the
    machine (the scheduler, the generator's own pauses) falls on both requests of a pair alike and cancels out."""
    import random

    import aiohttp

    rng = random.Random(seed)
    urls = (f"http://127.0.0.1:{direct_port}/v1/models/bench:predict",
            f"http://127.0.0.1:{agent_port}/v1/models/bench:predict")
    n = int(rate * seconds)
    added: list[float] = []
    sides: tuple[list[float], list[float]] = ([], [])
    statuses: Counter[str] = Counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as direct, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as agent:
        sessions = (direct, agent)

        async def one(side: int) -> float | None:
            t = time.perf_counter()
            return time.perf_counter() - t if await post(sessions[side], urls[side], BODY, statuses) else None

        async def pair() -> None:
            order = [0, 1] if rng.random() < 0.5 else [1, 0]
            results = dict(zip(order, await asyncio.gather(*(one(side) for side in order))))
            if results[0] is not None and results[1] is not None:
                sides[0].append(results[0])
                sides[1].append(results[1])
                added.append(results[1] - results[0])

        for _ in range(min(200, n)):  # warm both pools
            await pair()
        added.clear()
        sides[0].clear()
        sides[1].clear()
        statuses.clear()
        sending = await open_loop(rate, n, pair)

    def q(values: list[float], at: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(len(ordered) * at))] * 1000 if ordered else float("nan")

    return {"n": n, "rate": n / sending, "pairs": len(added), "statuses": dict(statuses),
            "p50": q(added, 0.5), "p99": q(added, 0.99), "p999": q(added, 0.999),
            "direct_p99": q(sides[0], 0.99), "agent_p99": q(sides[1], 0.99)}


def scrape(metrics_port: int) -> dict[str, float]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:  # noqa: S310
        text = resp.read().decode()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name + "".join(f",{k}={v}" for k, v in sorted(sample.labels.items()) if k == "reason")
            found[key] = found.get(key, 0.0) + sample.value
    return found


# -- the runs --------------------------------------------------------------------------------------------------

def overhead(rates: list[float], seconds: float, sample_rates: list[float]) -> list[dict]:
    cells = []
    model, model_port = start_model()
    twin, twin_port = start_model()  # the paired runs' direct side: its own server, so a pair never queues at one
    try:
        for rate in rates:
            before = model.cpu_seconds()
            result = asyncio.run(load(model_port, rate, seconds))
            result.update(target="direct", rate_asked=rate,
                          cpu_per_1000=(model.cpu_seconds() - before) / result["n"] * 1000, rss=None)
            cells.append(result)
            print(_row(result), flush=True)
        for sample_rate in sample_rates:
            with tempfile.TemporaryDirectory(prefix="agent-bench-") as log_dir:
                agent, port, _ = start_agent(model_port, sample_rate, Path(log_dir).as_uri())
                try:
                    for rate in rates:
                        before = agent.cpu_seconds()
                        result = asyncio.run(load(port, rate, seconds))
                        result.update(target=f"agent, sampleRate {sample_rate:g}", rate_asked=rate,
                                      cpu_per_1000=(agent.cpu_seconds() - before) / result["n"] * 1000,
                                      rss=agent.peak_rss_mb())
                        cells.append(result)
                        print(_row(result), flush=True)
                    for rate in rates:
                        pair = asyncio.run(paired(twin_port, port, rate, seconds))
                        pair.update(target=f"agent, sampleRate {sample_rate:g}", rate_asked=rate, paired=True)
                        cells.append(pair)
                        print(_paired_row(pair), flush=True)
                finally:
                    agent.stop()
    finally:
        model.stop()
        twin.stop()
    return cells


def stalled(rate: float, seconds: float) -> dict:
    model, model_port = start_model()
    try:
        agent, port, metrics_port = start_agent(model_port, 1.0, "stalled://log", stalled=True)
        try:
            idle_rss = agent.peak_rss_mb()
            result = asyncio.run(load(port, rate, seconds))
            metrics = scrape(metrics_port)
            result.update(idle_rss=idle_rss, rss=agent.peak_rss_mb(), buffer_mb=STALL_BUFFER / 2**20,
                          sampled=metrics.get("mlops_agent_sampled_requests_total", 0),
                          buffer_full=metrics.get("mlops_agent_dropped_records_total,reason=buffer_full", 0),
                          sink_error=metrics.get("mlops_agent_dropped_records_total,reason=sink_error", 0),
                          held_mb=metrics.get("mlops_agent_buffer_bytes", 0) / 2**20,
                          failures=metrics.get("mlops_agent_sink_write_failures_total", 0))
        finally:
            agent.popen.kill()  # its storage never answers: nothing to wait for
            agent.popen.wait()
    finally:
        model.stop()
    return result


# -- the ceiling -----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def on_cpu(cpu: int) -> Iterator[None]:
    """This thread on `cpu` only, and so every process or thread it starts meanwhile (they inherit it)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def free_ports(n: int) -> list[int]:
    """`n` distinct ports free on 127.0.0.1 (all held open until all are chosen)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def start_mlserver(work: Path, lean: bool) -> tuple[Proc, int]:
    """MLServer with the environment the operator's mlserver preset gives its container (REST, gRPC and metrics
    on free ports of 127.0.0.1), serving a small scikit-learn model from `work`; returns once the model is ready.
    `lean`: without its defaults' per-request costs, its access log (MLSERVER_DEBUG) and Prometheus metrics."""
    import urllib.error
    import urllib.request

    from mlops_localcluster import mlserver
    from mlops_operator.serving.runtimes import mlserver_env

    venv = mlserver.venv_dir()
    if not mlserver.ready():
        log = venv.with_name(f"mlserver-{mlserver.VERSION}-install.log")
        print(f"installing MLServer {mlserver.VERSION} into {venv} (a minute or more; log: {log})", flush=True)
        mlserver.ensure(log)
    model_file = work / "model.joblib"
    if not model_file.exists():
        subprocess.run([str(venv / "bin" / "python"), "-c", TRAIN, str(model_file)], check=True)
    http, grpc, metrics = free_ports(3)
    env = {item["name"]: item["value"] for item in mlserver_env("bench", None, http)}
    env.update(MLSERVER_MODEL_URI=str(model_file), MLSERVER_MODELS_DIR=str(work), MLSERVER_GRPC_PORT=str(grpc),
               MLSERVER_METRICS_PORT=str(metrics))
    if lean:
        env.update(MLSERVER_DEBUG="false", MLSERVER_METRICS_ENDPOINT="")
    argv, extra = mlserver.launch(env, host_network=True)
    # Its own virtualenv only, like an image of its own: not the project on its path.
    server = Proc(argv, env={**env, **extra, "PYTHONPATH": ""}, cwd=work, log=work / "mlserver.log")
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            if server.popen.poll() is not None:
                raise RuntimeError(f"mlserver exited: {(work / 'mlserver.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/models/bench/ready",  # noqa: S310
                                            timeout=5):
                    return server, http
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        raise RuntimeError(f"mlserver not ready in 180 s: {(work / 'mlserver.log').read_text()[-2000:]}")
    except BaseException:
        server.stop()
        raise


async def closed_loop(url: str, body: bytes, seconds: float, statuses: Counter[str]) -> float:
    """CEILING_CONNECTIONS requests always in flight for `seconds`; answers counted into `statuses`. Returns the
    wall seconds until the last answer."""
    import aiohttp

    start = time.perf_counter()
    until = start + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CEILING_CONNECTIONS)) as session:

        async def worker() -> None:
            while time.perf_counter() < until:
                if not await post(session, url, body, statuses):
                    await asyncio.sleep(0.01)  # a refusing server would otherwise be hammered in a tight loop

        await asyncio.gather(*(worker() for _ in range(CEILING_CONNECTIONS)))
    return time.perf_counter() - start


async def rotate(targets: list[dict], seconds: float) -> None:
    """Loads each target for `seconds` in all, in windows of about CEILING_WINDOW taken in turn, so load from other
    work on the machine falls on every target alike. A target's CPU is counted from after its warm-up to the end
    (it idles in the others' windows: ~0.003 CPU s per s measured, and deferred work such as a log flush counts)."""
    for t in targets:
        await closed_loop(t["url"], t["body"], min(2.0, seconds / 2), Counter())  # connections, first-request costs
    rounds = max(1, round(seconds / CEILING_WINDOW))
    for t in targets:
        t.update(statuses=Counter(), wall=0.0, usage_before=t["proc"].tree_usage())
    for r in range(rounds):
        for t in targets[r % len(targets):] + targets[:r % len(targets)]:
            t["wall"] += await closed_loop(t["url"], t["body"], seconds / rounds, t["statuses"])
    for t in targets:
        cpu, waited, t["processes"] = t.pop("proc").tree_usage()
        cpu_before, waited_before, _ = t.pop("usage_before")
        t["cpu"], t["waited"] = cpu - cpu_before, waited - waited_before
        t["answered"] = t["statuses"]["200"]
        t["statuses"] = dict(t["statuses"])
        t["utilisation"] = t["cpu"] / t["wall"]
        t["per_cpu_second"] = t["answered"] / t["cpu"] if t["cpu"] > 0 else float("nan")


def ceiling(seconds: float) -> dict:
    """Requests per CPU-second of MLServer (the preset's environment, and lean) and of the agent (sampleRates 0 and
    1), each on SERVER_CPU, all started first and loaded in turn from LOAD_CPU (where the agents' model server is)."""
    if not {SERVER_CPU, LOAD_CPU} <= os.sched_getaffinity(0):
        return {"skipped": f"needs CPUs {SERVER_CPU} and {LOAD_CPU}; allowed: {sorted(os.sched_getaffinity(0))}"}
    from mlops_localcluster.mlserver import VERSION

    started = time.perf_counter()
    targets = []
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agent-bench-mlserver-")))
        for lean in (False, True):
            with on_cpu(SERVER_CPU):
                server, port = start_mlserver(work, lean)
            stack.callback(server.stop)
            targets.append({"target": f"MLServer {VERSION}, " + ("lean" if lean else "the preset's environment"),
                            "request": f"v2 infer, 4 x 16 FP64 ({len(V2_BODY)} B)", "proc": server,
                            "url": f"http://127.0.0.1:{port}/v2/models/bench/infer", "body": V2_BODY})
        with on_cpu(LOAD_CPU):
            model, model_port = start_model()
        stack.callback(model.stop)
        for sample_rate in (0.0, 1.0):
            log_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="agent-bench-"))
            with on_cpu(SERVER_CPU):
                agent, port, _ = start_agent(model_port, sample_rate, Path(log_dir).as_uri())
            stack.callback(agent.stop)
            targets.append({"target": f"agent, sampleRate {sample_rate:g}", "proc": agent,
                            "request": f"v1 predict, 4 x 16 ({len(BODY)} B)",
                            "url": f"http://127.0.0.1:{port}/v1/models/bench:predict", "body": BODY})
        with on_cpu(LOAD_CPU):
            asyncio.run(rotate(targets, seconds))
    for t in targets:
        print(_ceiling_row(t), flush=True)
    print(f"ceiling: {time.perf_counter() - started:.0f} s, start-up and stop included", flush=True)
    return {"mlserver": targets[:2], "agents": targets[2:], "seconds": seconds}


# -- the report ------------------------------------------------------------------------------------------------

def _row(c: dict) -> str:
    direct = c.get("direct")
    added = (f"{c['p50'] - direct['p50']:+.2f} / {c['p99'] - direct['p99']:+.2f} ms" if direct else "-")
    rss = f"{c['rss']:.0f} MB" if c.get("rss") else "-"
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(c["statuses"].items()))
    return (f"| {c['target']} | {c['rate_asked']:.0f} | {c['rate']:.0f} | {c['n']} | {c['p50']:.2f} / {c['p99']:.2f} ms"
            f" | {added} | {c['cpu_per_1000']:.2f} s | {rss} | {statuses} |")


def _paired_row(c: dict) -> str:
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(c["statuses"].items()))
    return (f"| {c['target']} | {c['rate_asked']:.0f} | {c['rate']:.0f} | {c['pairs']} | "
            f"{c['p50']:+.2f} / {c['p99']:+.2f} / {c['p999']:+.2f} ms | {c['direct_p99']:.2f} / {c['agent_p99']:.2f} ms"
            f" | {statuses} |")


def _paired_lines(pairs: list[dict]) -> list[str]:
    if not pairs:
        return []
    at = [c for c in pairs if c["rate_asked"] == TARGET_RATE]

    def verdict(c: dict) -> str:
        met = c["p50"] <= TARGET_P50 and c["p99"] <= TARGET_P99
        return (f"- target at {TARGET_RATE:g} req/s (added p50 <= {TARGET_P50:g} ms, p99 <= {TARGET_P99:g} ms), "
                f"{c['target']}: {c['p50']:+.2f} / {c['p99']:+.2f} ms, {'met' if met else 'not met'}")

    return [
        "",
        "Added latency, paired: at each rate, pairs of requests, one straight to a model server and one through "
        "the agent (to a twin of that server, its own process, so the two never queue at one server), sent at the "
        "same instant in a random order (open loop, the rate in pairs a second: the machine carries twice the "
        "load of the rows above). Each pair's added latency is the agent request's minus the direct one's, so a "
        "stall that holds both (the scheduler on the shared cores, the load generator's own pauses) cancels out, "
        "which a difference of two rows' p99s above cannot do.",
        "",
        "| target | rate asked (pairs/s) | rate sent | pairs | added p50 / p99 / p99.9 | direct p99 / agent p99 "
        "(same pairs) | answers |",
        "|---|---:|---:|---:|---:|---:|---|",
        *(_paired_row(c) for c in pairs),
        "",
        *(verdict(c) for c in at),
    ]


def _ceiling_row(c: dict, bases: tuple[dict, ...] = ()) -> str:
    other = ", ".join(f"{k}: {v}" for k, v in sorted(c["statuses"].items()) if k != "200") or "-"
    ratios = " / ".join(f"{c['per_cpu_second'] / b['per_cpu_second']:.2f}x" for b in bases) or "-"
    if c["utilisation"] >= SATURATED:
        state = "saturated"
    elif (c["cpu"] + c["waited"]) / c["wall"] >= SATURATED:
        state = f"CPU-bound, CPU {SERVER_CPU} shared"  # ready to run while other work held the core
    else:
        state = "not saturated"
    return (f"| {c['target']} | {c['request']} | {c['answered']} | {other} | {c['cpu']:.2f} / {c['wall']:.2f} | "
            f"{c['waited']:.2f} | {c['utilisation']:.2f} ({state}) | {c['per_cpu_second']:.0f} | {ratios} |")


def _ceiling_lines(ceiling: dict) -> list[str]:
    if "skipped" in ceiling:
        return ["", f"Ceiling: skipped ({ceiling['skipped']})."]
    preset, lean = bases = tuple(ceiling["mlserver"])

    def verdict(agent: dict, base: dict, name: str) -> str:
        ratio = agent["per_cpu_second"] / base["per_cpu_second"]
        return f"{ratio:.2f}x {name}, {'met' if ratio >= TARGET else 'not met'}"

    return [
        "",
        f"Ceiling (the issue's target: the agent's own ceiling at least {TARGET:g}x what MLServer serves on the same "
        "core): requests answered per CPU-second the server consumed while kept busy. Every server runs on CPU "
        f"{SERVER_CPU}; the load (Python aiohttp, closed loop, {CEILING_CONNECTIONS} connections) and the agents' "
        f"model server on CPU {LOAD_CPU}. All are started first, then each is loaded alone for "
        f"{ceiling['seconds']:g} s after a warm-up, in windows of about {CEILING_WINDOW:g} s taken in turn, so "
        "other work on the machine weighs on all alike.",
        "",
        "- CPU: the server's process tree, user + system (/proc/<pid>/stat), from the end of its warm-up to the end "
        "of the last window: it idles through the others' windows (next to nothing) and its deferred work, such as "
        "a log write, counts.",
        "- waiting: time its threads were ready to run while another task held the core (schedstat).",
        f"- utilisation: CPU per second of its own windows. Saturated from {SATURATED:g}; CPU-bound on a shared "
        f"core when CPU and waiting together reach {SATURATED:g}. A server below saturation usually pays more CPU "
        "per request than at its ceiling, so its figure is likely a lower bound.",
        "- MLServer: its own virtualenv, a depth-3 scikit-learn decision tree on 16 features; once with the "
        "environment the operator's mlserver preset gives it (parallel workers off, and MLServer's defaults: an "
        "access-log line per request, Prometheus metrics), once lean (MLSERVER_DEBUG=false, "
        "MLSERVER_METRICS_ENDPOINT empty: neither).",
        "",
        f"| server, on CPU {SERVER_CPU} | request | answered 200 | other answers | CPU s / wall s | waiting s | "
        "utilisation | requests per CPU-second | vs MLServer preset / lean |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|",
        *(_ceiling_row(c) for c in bases),
        *(_ceiling_row(c, bases) for c in ceiling["agents"]),
        "",
        *(f"- target >= {TARGET:g}x, {c['target']}: {verdict(c, preset, 'the preset MLServer')}; "
          f"{verdict(c, lean, 'the lean one')}" for c in ceiling["agents"]),
    ]


def report(cells: list[dict], stall: dict | None, args: argparse.Namespace, load_before: str,
           ceiling: dict | None = None) -> list[str]:
    pairs = [c for c in cells if c.get("paired")]
    cells = [c for c in cells if not c.get("paired")]
    direct = {c["rate_asked"]: c for c in cells if c["target"] == "direct"}
    for c in cells:
        if c["target"] != "direct":
            c["direct"] = direct.get(c["rate_asked"])
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "unknown")
    import aiohttp

    lines = [
        f"Produced by `python -m bench agent` (bench/agent_bench.py). One run on a shared, noisy machine: the load "
        f"generator, the model server and the agent share its {os.cpu_count()} cores with other work, so compare "
        "rows within the run, not across runs. Latency is from send to the answer's last byte, measured by the "
        "generator (open loop, Python aiohttp client); \"added\" is the agent's row minus the direct row at the "
        "same rate; CPU is the agent's process (for direct: the model server's) per 1000 requests; RSS is the "
        "agent's peak (VmHWM) since its start (one agent per sample rate, rates in increasing order).",
        "",
        f"- CPU: {cpu}, nproc {os.cpu_count()}; python {platform.python_version()}, aiohttp {aiohttp.__version__}; "
        "the log is written by the agent's own Parquet encoder (agent/parquet.py)",
        f"- load average (1, 5, 15 min) at start: {load_before}; at the end: {_loadavg()}",
        f"- run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, `--rates {args.rates} --seconds "
        f"{args.seconds:g} --stall-seconds {args.stall_seconds:g} --ceiling-seconds {args.ceiling_seconds:g}`; "
        f"request: KServe v1, 4 instances x 16 features ({len(BODY)} bytes); prediction log on file:// (local "
        "disk), batches every 5 s",
        "",
        "| target | rate asked (req/s) | rate sent | requests | p50 / p99 | added p50 / p99 | CPU per 1000 req | "
        "peak RSS | answers |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        *(_row(c) for c in cells),
        *_paired_lines(pairs),
    ]
    if stall:
        answered = stall["statuses"].get("200", 0)
        lines += [
            "",
            f"Stalled sink: the prediction log's storage never answers a write (an fsspec filesystem whose writes "
            f"block forever, in the agent's process), sampleRate 1, buffer {stall['buffer_mb']:.0f} MiB, write "
            f"timeout 5 s, 3 attempts; {stall['rate_asked']:.0f} req/s asked for {args.stall_seconds:g} s "
            f"({stall['rate']:.0f} sent).",
            "",
            "| measure | result |",
            "|---|---:|",
            f"| requests answered 200 / sent | {answered} / {stall['n']} ({stall['statuses']}) |",
            f"| latency p50 / p99 | {stall['p50']:.2f} / {stall['p99']:.2f} ms |",
            f"| sampled | {stall['sampled']:.0f} |",
            f"| dropped: buffer_full / sink_error | {stall['buffer_full']:.0f} / {stall['sink_error']:.0f} |",
            f"| write failures (timeouts, refusals while one write hangs) | {stall['failures']:.0f} |",
            f"| held at the end (mlops_agent_buffer_bytes) | {stall['held_mb']:.1f} MiB |",
            f"| agent RSS: idle before the load / peak | {stall['idle_rss']:.0f} MB / {stall['rss']:.0f} MB |",
            f"| growth under load (peak - idle) vs the buffer | {stall['rss'] - stall['idle_rss']:.0f} MB vs "
            f"{stall['buffer_mb']:.0f} MiB |",
            f"| target: peak RSS < buffer + 50 MB | {stall['rss']:.0f} MB vs {stall['buffer_mb'] + 50:.0f} MB: "
            f"{'met' if stall['rss'] < stall['buffer_mb'] + 50 else 'not met'} |",
        ]
    if ceiling:
        lines += _ceiling_lines(ceiling)
    return lines


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="100,500,1000", help="requests per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=10, help="seconds of load per cell")
    parser.add_argument("--sample-rates", default="0,0.1,1")
    parser.add_argument("--stall-seconds", type=float, default=60, help="seconds of the stalled-sink run (0: skip)")
    parser.add_argument("--ceiling-seconds", type=float, default=10,
                        help="seconds of closed-loop load per server for the ceiling (0: skip)")
    parser.add_argument("--quick", action="store_true",
                        help="3 s cells, a 10 s stall, 3 s ceilings: to try it, not to quote")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    parser.add_argument("--model-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.model_server:
        serve_model()
        return 0
    if args.quick:
        args.seconds, args.stall_seconds = 3, 10
        args.ceiling_seconds = min(args.ceiling_seconds, 3)
    rates = [float(r) for r in args.rates.split(",")]
    load_before = _loadavg()
    cells = overhead(rates, args.seconds, [float(s) for s in args.sample_rates.split(",")])
    stall = None
    if args.stall_seconds > 0:
        stall = stalled(max(rates), args.stall_seconds)
        stall["rate_asked"] = max(rates)
    limits = ceiling(args.ceiling_seconds) if args.ceiling_seconds > 0 else None
    lines = report(cells, stall, args, load_before, limits)
    publish(HEADING, lines, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())

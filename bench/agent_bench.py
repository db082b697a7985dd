"""Inference agent benchmark: what the sidecar adds to a request, and what a stalled prediction log costs.

    python -m bench agent [--quick] [--no-write]
    python -m bench.agent_bench [--rates 100,500,1000] [--seconds 10] [--stall-seconds 60]

A model server (a small aiohttp app answering KServe v1 predictions, its own process) on 127.0.0.1; load at fixed
rates (open loop: request i is sent at i/rate seconds) from this process, straight to the model server and
through `mlops-operator agent` (its own process, a fresh one per sample rate) logging at sample rates 0, 0.1
and 1 to a file:// prediction log. Per cell: latency p50/p99 (send to last byte), the agent's CPU seconds per
1000 requests (/proc/<pid>/stat), its peak RSS (VmHWM). Then the stalled sink: the agent's storage (an fsspec
filesystem whose writes never return, registered in the agent's process; the agent's own code is the real one)
under the highest rate: every request answered?, drops counted, peak RSS against the configured buffer.
Loopback only; every process it starts is stopped by pid. Writes "## Inference agent" of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from fsspec.spec import AbstractFileSystem

from bench.report import publish

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Inference agent"
TICKS = os.sysconf("SC_CLK_TCK")
# 4 instances of 16 features: about 600 bytes per request, 80 per answer.
BODY = json.dumps({"instances": [[round(0.1 * i + j, 3) for i in range(16)] for j in range(4)]}).encode()
STALL_BUFFER = 16 * 1024 * 1024


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
    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                                      env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
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
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

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

async def load(port: int, rate: float, seconds: float) -> dict:
    """Open-loop load: request i leaves at i/rate; latency from its send to its answer's last byte."""
    import aiohttp

    url = f"http://127.0.0.1:{port}/v1/models/bench:predict"
    n = int(rate * seconds)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:

        async def one() -> None:
            t = time.perf_counter()
            try:
                async with session.post(url, data=BODY, headers=headers) as resp:
                    await resp.read()
                    statuses[str(resp.status)] += 1
            except (aiohttp.ClientError, OSError) as err:
                statuses[type(err).__name__] += 1
                return
            latencies.append(time.perf_counter() - t)

        for _ in range(min(200, n)):  # warm the connections
            await one()
        latencies.clear()
        statuses.clear()
        tasks = []
        start = time.perf_counter()
        sent = 0
        while sent < n:
            due = min(n, int((time.perf_counter() - start) * rate) + 1)
            while sent < due:
                tasks.append(asyncio.ensure_future(one()))
                sent += 1
            await asyncio.sleep(0.002)
        sending = time.perf_counter() - start
        await asyncio.gather(*tasks)
    latencies.sort()
    return {"n": n, "rate": n / sending, "statuses": dict(statuses),
            "p50": latencies[len(latencies) // 2] * 1000 if latencies else float("nan"),
            "p99": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else float("nan")}


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
                finally:
                    agent.stop()
    finally:
        model.stop()
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


# -- the report ------------------------------------------------------------------------------------------------

def _row(c: dict) -> str:
    direct = c.get("direct")
    added = (f"{c['p50'] - direct['p50']:+.2f} / {c['p99'] - direct['p99']:+.2f} ms" if direct else "-")
    rss = f"{c['rss']:.0f} MB" if c.get("rss") else "-"
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(c["statuses"].items()))
    return (f"| {c['target']} | {c['rate_asked']:.0f} | {c['rate']:.0f} | {c['n']} | {c['p50']:.2f} / {c['p99']:.2f} ms"
            f" | {added} | {c['cpu_per_1000']:.2f} s | {rss} | {statuses} |")


def report(cells: list[dict], stall: dict | None, args: argparse.Namespace, load_before: str) -> list[str]:
    direct = {c["rate_asked"]: c for c in cells if c["target"] == "direct"}
    for c in cells:
        if c["target"] != "direct":
            c["direct"] = direct.get(c["rate_asked"])
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "unknown")
    import aiohttp
    import pyarrow

    lines = [
        f"Produced by `python -m bench agent` (bench/agent_bench.py). One run on a shared, noisy machine: the load "
        f"generator, the model server and the agent share its {os.cpu_count()} cores with other work, so compare "
        "rows within the run, not across runs. Latency is from send to the answer's last byte, measured by the "
        "generator (open loop, Python aiohttp client); \"added\" is the agent's row minus the direct row at the "
        "same rate; CPU is the agent's process (for direct: the model server's) per 1000 requests; RSS is the "
        "agent's peak (VmHWM) since its start (one agent per sample rate, rates in increasing order).",
        "",
        f"- CPU: {cpu}, nproc {os.cpu_count()}; python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
        f"pyarrow {pyarrow.__version__}",
        f"- load average (1, 5, 15 min) at start: {load_before}; at the end: {_loadavg()}",
        f"- run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, `--rates {args.rates} --seconds "
        f"{args.seconds:g} --stall-seconds {args.stall_seconds:g}`; request: KServe v1, 4 instances x 16 features "
        f"({len(BODY)} bytes); prediction log on file:// (local disk), batches every 5 s",
        "",
        "| target | rate asked (req/s) | rate sent | requests | p50 / p99 | added p50 / p99 | CPU per 1000 req | "
        "peak RSS | answers |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        *(_row(c) for c in cells),
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
    return lines


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="100,500,1000", help="requests per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=10, help="seconds of load per cell")
    parser.add_argument("--sample-rates", default="0,0.1,1")
    parser.add_argument("--stall-seconds", type=float, default=60, help="seconds of the stalled-sink run (0: skip)")
    parser.add_argument("--quick", action="store_true", help="3 s cells, a 10 s stall: to try it, not to quote")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    parser.add_argument("--model-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.model_server:
        serve_model()
        return 0
    if args.quick:
        args.seconds, args.stall_seconds = 3, 10
    rates = [float(r) for r in args.rates.split(",")]
    load_before = _loadavg()
    cells = overhead(rates, args.seconds, [float(s) for s in args.sample_rates.split(",")])
    stall = None
    if args.stall_seconds > 0:
        stall = stalled(max(rates), args.stall_seconds)
        stall["rate_asked"] = max(rates)
    lines = report(cells, stall, args, load_before)
    publish(HEADING, lines, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())

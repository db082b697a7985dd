"""The agent's lifecycle: its two listeners (inference, metrics), the upstream connection pool, the sink, and the
order in which SIGTERM stops them so that a rollout loses no logged row."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from aiohttp import web

from ..gcpolicy import GcPolicy
from . import feedback
from .config import AgentConfig
from .metrics import AgentMetrics
from .proxy import Proxy
from .sink import Sink
from .upstream import Upstream

log = logging.getLogger("mlops_operator.agent")
MAX_BODY = 1 << 30  # aiohttp's 1 MiB default would refuse ordinary batch inputs


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.metrics = AgentMetrics(config)
        # Feedback needs the log even when sampling is off, so the sink exists whenever there is a log URI.
        self.sink = Sink(config, self.metrics) if config.log_uri else None
        self.port = config.listen_port
        self.metrics_port = config.metrics_port
        self._runners: list[web.AppRunner] = []
        self._upstream: Upstream | None = None
        # A full collection stalls every request in flight: keep it to what is new (gcpolicy.py).
        self.gc_policy = GcPolicy("mlops_agent_gc_pause_seconds")
        self._thaw: asyncio.Task | None = None

    async def start(self) -> None:
        cfg = self.config
        self._upstream = Upstream("127.0.0.1", cfg.upstream_port, cfg.upstream_connections)
        proxy = Proxy(cfg, self.metrics, self._upstream, self.sink)
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post(feedback.PATH, feedback.handler(self.sink))
        app.router.add_route("*", "/{tail:.*}", proxy.handle)
        self.port = await self._listen(app, cfg.listen_port)

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=self.metrics.exposition(), content_type="text/plain", charset="utf-8")

        async def healthz(_: web.Request) -> web.Response:
            return web.Response(text="ok\n")

        metrics_app = web.Application()
        metrics_app.router.add_get("/metrics", metrics)
        metrics_app.router.add_get("/healthz", healthz)
        self.metrics_port = await self._listen(metrics_app, cfg.metrics_port)
        if self.sink is not None:
            self.sink.start()
        self.gc_policy.install(self.metrics.registry)
        self._thaw = asyncio.create_task(self.gc_policy.thaw_periodically(), name="gc-thaw")

    async def _listen(self, app: web.Application, port: int) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               shutdown_timeout=self.config.grace_seconds / 2)
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, self.config.listen_host, port).start()
        return int(runner.addresses[0][1])

    async def stop(self, grace_seconds: float | None = None) -> None:
        """Stops taking connections, lets requests in flight finish, then writes what is buffered: all within
        the grace period (the pod's terminationGracePeriodSeconds less a margin)."""
        grace = self.config.grace_seconds if grace_seconds is None else grace_seconds
        deadline = time.monotonic() + grace
        inference, *others = self._runners
        await inference.cleanup()
        if self._upstream is not None:
            await self._upstream.close()
        if self.sink is not None:
            await self.sink.close(max(deadline - time.monotonic(), 0.1))
        for runner in others:
            await runner.cleanup()
        if self._thaw is not None:
            self._thaw.cancel()
        self.gc_policy.uninstall()


def run(config: AgentConfig) -> int:
    """`mlops-operator agent`: serve until SIGTERM or SIGINT, then stop within the grace period."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def main() -> None:
        agent = Agent(config)
        await agent.start()
        log.info("agent on %s:%d -> 127.0.0.1:%d, metrics on :%d, prediction log %s (sample rate %g)",
                 config.listen_host, agent.port, config.upstream_port, agent.metrics_port,
                 _without_userinfo(config.log_uri) or "off", config.sample_rate)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping: up to %.0fs to finish requests and write the buffered log", config.grace_seconds)
        await agent.stop()
        log.info("stopped")

    asyncio.run(main())
    return 0


def _without_userinfo(uri: str) -> str:
    """A URI fit for a log line: any user:password@ taken out."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host.rpartition('@')[2]}{slash}{path}"

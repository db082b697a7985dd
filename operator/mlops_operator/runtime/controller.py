"""Runs one reconciler over a work queue with a fixed number of workers, per-key exponential backoff on errors,
and metrics. The reconciler is `async (key) -> float | None` (seconds until it wants to run again). While the
operator is paused (kopf peering: another replica acts), workers hold their keys and reconcile nothing."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Protocol

from .. import metrics
from ..k8s.client import ApiError
from ..k8s.status import ObjectGone
from .workqueue import WorkQueue

Reconcile = Callable[[Hashable], Awaitable[float | None]]


class Pause(Protocol):
    """An operator-wide pause, as kopf's operator_paused ToggleSet."""

    def is_on(self) -> bool: ...

    async def wait_for(self, state: bool, /) -> None: ...

log = logging.getLogger("mlops_operator.controller")


class Controller:
    def __init__(self, name: str, reconcile: Reconcile, workers: int = 8,
                 base_backoff: float = 0.5, max_backoff: float = 300.0,
                 on_gone: Callable[[str | None], None] | None = None, paused: Pause | None = None):
        self.name = name
        self._on_gone = on_gone  # told the uid of an object the API server no longer has (ObjectGone)
        self._paused = paused  # while on, no key is reconciled (another replica acts: kopf peering)
        self.queue = WorkQueue(name)
        self._reconcile = reconcile
        self._workers = workers
        self._failures: dict[Hashable, int] = {}
        self._base, self._max = base_backoff, max_backoff
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        if not self._tasks:
            metrics.MAX_WORKERS.labels(self.name).set(self._workers)
            metrics.init_controller(self.name)
            self._tasks = [asyncio.create_task(self._work(), name=f"{self.name}-worker-{i}")
                           for i in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _wait_while_paused(self) -> None:
        if self._paused is None or not self._paused.is_on():
            return
        log.info("%s: paused (another replica acts); waiting", self.name)
        await self._paused.wait_for(False)
        log.info("%s: resumed", self.name)

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self._wait_while_paused()
            except BaseException:
                self.queue.done(key)
                raise
            metrics.ACTIVE_WORKERS.labels(self.name).inc()
            start = time.perf_counter()
            try:
                again = await self._reconcile(key)
            except asyncio.CancelledError:
                raise
            except ObjectGone as err:  # deleted behind the cache's back: forget it, nothing to retry
                log.info("%s %s: gone from the API server, forgotten: %s", self.name, _show(key), err)
                if self._on_gone is not None:
                    self._on_gone(err.uid)
                self._failures.pop(key, None)
                metrics.RECONCILE_TOTAL.labels(self.name, "success").inc()
            except ApiError as err:
                if not err.namespace_terminating:
                    self._retry(key, err)
                else:
                    metrics.RECONCILE_TOTAL.labels(self.name, "success").inc()
            except Exception as err:  # noqa: BLE001  (any failure is retried with backoff, never fatal)
                self._retry(key, err)
            else:
                self._failures.pop(key, None)
                if again is not None:
                    self.queue.add_after(key, again)
                    metrics.RECONCILE_TOTAL.labels(self.name, "requeue_after").inc()
                else:
                    metrics.RECONCILE_TOTAL.labels(self.name, "success").inc()
            finally:
                metrics.RECONCILE_TIME.labels(self.name).observe(time.perf_counter() - start)
                metrics.ACTIVE_WORKERS.labels(self.name).dec()
                self.queue.done(key)

    def _retry(self, key: Hashable, err: Exception) -> None:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = min(self._max, self._base * 2 ** (failures - 1))
        metrics.RECONCILE_ERRORS.labels(self.name).inc()
        metrics.RECONCILE_TOTAL.labels(self.name, "error").inc()
        metrics.QUEUE_RETRIES.labels(self.name).inc()
        log.warning("%s %s: reconcile failed (attempt %d, retry in %.1fs): %s",
                    self.name, _show(key), failures, delay, err)
        self.queue.add_after(key, delay)


def _show(key: Hashable) -> str:
    return "/".join(key) if isinstance(key, tuple) else str(key)

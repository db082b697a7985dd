"""Runs one reconciler over a work queue with a fixed number of workers, per-key exponential backoff on errors,
and metrics. The reconciler is `async (key) -> float | None` (seconds until it wants to run again). While this
replica does not lead (runtime/leader.py: another replica acts), workers hold their keys and reconcile nothing;
losing the lease cancels the reconciles in flight, and their keys wait for the next leadership."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Protocol

from .. import metrics
from ..k8s.client import ApiError
from ..k8s.status import ObjectGone
from .workqueue import WorkQueue

# The key is whatever the controller's informers enqueue ((namespace, name) for the kinds), so the runtime takes a
# reconcile of any key type.
Reconcile = Callable[[Any], Awaitable[float | None]]


class Leadership(Protocol):
    """Whether this replica may act (runtime/leader.py's LeaderElector)."""

    def is_leader(self) -> bool: ...

    async def wait_leading(self) -> None: ...

    def on_lost(self, callback: Callable[[], None]) -> None: ...

log = logging.getLogger("mlops_operator.controller")


class Controller:
    def __init__(self, name: str, reconcile: Reconcile, workers: int = 8,
                 base_backoff: float = 0.5, max_backoff: float = 300.0,
                 leadership: Leadership | None = None):
        self.name = name
        self._leadership = leadership  # None: this replica acts alone
        if leadership is not None:
            leadership.on_lost(self._interrupt)
        self._running: set[asyncio.Task] = set()  # reconciles in flight
        self._stopping = False
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
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._stopping = False

    def _interrupt(self) -> None:
        """The lease is lost: what is being reconciled now was decided by a replica that no longer leads."""
        for task in list(self._running):
            task.cancel()

    async def _wait_leading(self) -> None:
        # A loop: leadership may be won and lost again before this worker runs.
        while self._leadership is not None and not self._leadership.is_leader():
            await self._leadership.wait_leading()

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self._wait_leading()
            except BaseException:
                self.queue.done(key)
                raise
            metrics.ACTIVE_WORKERS.labels(self.name).inc()
            start = time.perf_counter()
            task = asyncio.ensure_future(self._reconcile(key))
            self._running.add(task)
            try:
                again = await task
            except asyncio.CancelledError:
                if self._stopping or not task.cancelled():
                    raise
                self.queue.add(key)  # interrupted by a lost lease: held for the next leadership
                metrics.RECONCILE_TOTAL.labels(self.name, "requeue_after").inc()
            except ObjectGone as err:  # deleted: the informer's DELETED event (or relist) drops it from the cache
                log.debug("%s %s: gone from the API server: %s", self.name, _show(key), err)
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
                self._running.discard(task)
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

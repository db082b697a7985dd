"""A keyed work queue with controller-runtime's guarantees: a key waits at most once, is processed by one worker
at a time, and a key added while it is processed is processed again afterwards. Delayed adds keep the earliest."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable

from .. import metrics


class WorkQueue:
    def __init__(self, name: str):
        self.name = name
        self._ready: asyncio.Queue[Hashable] = asyncio.Queue()
        self._waiting: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._dirty: set[Hashable] = set()
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._added: dict[Hashable, float] = {}  # when a waiting key was added (queue duration metric)

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, key: Hashable) -> None:
        metrics.QUEUE_ADDS.labels(self.name).inc()
        if key in self._processing:
            self._dirty.add(key)
            return
        if key in self._waiting:
            return
        self._waiting.add(key)
        self._added[key] = time.monotonic()
        self._ready.put_nowait(key)
        metrics.QUEUE_DEPTH.labels(self.name).set(len(self._waiting))

    def add_after(self, key: Hashable, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        timer = self._timers.get(key)
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> Hashable:
        key = await self._ready.get()
        self._waiting.discard(key)
        self._processing.add(key)
        added = self._added.pop(key, None)
        if added is not None:
            metrics.QUEUE_WAIT.labels(self.name).observe(time.monotonic() - added)
        metrics.QUEUE_DEPTH.labels(self.name).set(len(self._waiting))
        return key

    def done(self, key: Hashable) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def forget(self, key: Hashable) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

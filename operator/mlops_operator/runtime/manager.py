"""One operator process's runtime, as controller-runtime's manager: the informers that fill the cache, the
controllers that reconcile from it, the leader election that decides whether they may act, and background tasks.

Order matters. Controllers exist before the informers start, so the keys of the initial lists wait in their queues;
their workers start once the cache is synced; with an election, every replica keeps its informers and queues warm
and only the leader's workers reconcile. Stopping is the reverse: workers first, then the lease is released (no
write after that), then the informers. A GcPolicy, if given, keeps the collector's full passes off the cached
objects from start to stop (gcpolicy.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Hashable
from typing import Any

from prometheus_client import REGISTRY

from ..gcpolicy import GcPolicy
from .cache import Cache
from .controller import Controller, Reconcile
from .informer import Informer
from .leader import LeaderElector

log = logging.getLogger("mlops_operator")


class Manager:
    def __init__(self, leader: LeaderElector | None = None, gc_policy: GcPolicy | None = None):
        self.leader = leader
        self.gc_policy = gc_policy
        self.informers: dict[str, Informer] = {}
        self.controllers: dict[str, Controller] = {}
        self.cache = Cache(self.informers)
        self._background: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {}
        self._tasks: list[asyncio.Task] = []
        self._election: asyncio.Task | None = None

    def add_informer(self, index: str, informer: Informer) -> None:
        self.informers[index] = informer

    def add_controller(self, name: str, reconcile: Reconcile, workers: int) -> None:
        self.controllers[name] = Controller(name, reconcile, workers=workers, leadership=self.leader)

    def add_task(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """A background task that runs from start to stop (e.g. the inventory metrics)."""
        self._background[name] = run

    def enqueue(self, controller: str, key: Hashable) -> None:
        found = self.controllers.get(controller)
        if found is not None:
            found.queue.add(key)

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(i.run(), name=f"informer-{index}") for index, i in self.informers.items()]
        await self.cache.synced()
        log.info("caches synced: %s", ", ".join(f"{len(i)} {i.kind}s" for i in self.informers.values()))
        for controller in self.controllers.values():
            controller.start()
        if self.leader is not None:
            self._election = asyncio.create_task(self.leader.run(), name="leader-election")
        self._tasks += [asyncio.create_task(run(), name=name) for name, run in self._background.items()]
        if self.gc_policy is not None:
            self.gc_policy.install(REGISTRY)
            self._tasks.append(asyncio.create_task(self.gc_policy.thaw_periodically(), name="gc-thaw"))

    async def stop(self) -> None:
        for controller in self.controllers.values():
            await controller.stop()
        if self._election is not None and self.leader is not None:
            self._election.cancel()
            await asyncio.gather(self._election, return_exceptions=True)
            self._election = None
            await self.leader.release()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.gc_policy is not None:
            self.gc_policy.uninstall()

"""The cyclic garbage collector's full passes, kept short, for the operator and the agent.

Most of the operator's heap is its caches: JSON trees of dicts, lists and strings. They never form a reference
cycle, and reference counting frees an object when a newer version replaces it. (The agent's heap is mostly its
modules, and a full pass over them stalls every request in flight.) The cyclic collector still walks
every one of them at each full (generation 2) pass, and each pass stops the event loop: measured at 0.26 to
0.75 s, about every 30 s while thousands of objects change, over 121,000 to 293,000 objects, each pass finding
nothing (docs/benchmarks.md, "Operator at scale").

The policy: when a full pass ends, what survived it is frozen (`gc.freeze`), so the next full pass walks only what
arrived since. A frozen object is still freed by reference counting; what freezing can keep alive is only a
reference cycle among objects that were alive at a freeze and died later. To bound that, the frozen objects are
thawed (`gc.unfreeze`) every `thaw_seconds`, and the next full pass is a complete one. Each pass's length is a
histogram (`<metric>{generation}`) in the registry given to `install`.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily

THAW_SECONDS = 600.0
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class GcPolicy:
    """One per process (the operator's manager, the agent); `install`/`uninstall` leave gc as they found it.

    It is also the Prometheus collector of the pauses. The gc callback only adds to plain lists: taking a metric's
    lock there could deadlock when a collection starts inside a scrape that holds it."""

    def __init__(self, metric: str, thaw_seconds: float = THAW_SECONDS):
        self.metric, self.thaw_seconds = metric, thaw_seconds
        self.full_passes = 0
        self._counts = [[0] * (len(BUCKETS) + 1) for _ in range(3)]  # per generation, per bucket (not cumulative)
        self._sums = [0.0, 0.0, 0.0]
        self._started = 0.0
        self._registry: CollectorRegistry | None = None

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation, seconds = info["generation"], time.perf_counter() - self._started
        self._counts[generation][bisect.bisect_left(BUCKETS, seconds)] += 1
        self._sums[generation] += seconds
        if generation == 2:
            self.full_passes += 1
            gc.freeze()  # every tracked object survived this pass: the next one walks only what comes after

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.metric, "Cyclic garbage collections, by generation; the event loop "
                                                    "stops for each.", labels=["generation"])
        for generation, counts in enumerate(self._counts):
            cumulative, buckets = 0, []
            for bound, count in zip([*map(str, BUCKETS), "+Inf"], counts):
                cumulative += count
                buckets.append((bound, cumulative))
            family.add_metric([str(generation)], buckets, self._sums[generation])
        yield family

    def install(self, registry: CollectorRegistry | None = None) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)
        if registry is not None and self._registry is None:
            try:
                registry.register(self)
            except ValueError:  # another policy of this process exports the metric already: its passes are ours
                return
            self._registry = registry

    def uninstall(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
        gc.unfreeze()
        if self._registry is not None:
            self._registry.unregister(self)
            self._registry = None

    async def thaw_periodically(self) -> None:
        """Every thaw_seconds the next full pass walks everything, so a cycle that died frozen is collected."""
        while True:
            await asyncio.sleep(self.thaw_seconds)
            gc.unfreeze()

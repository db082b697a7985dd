"""The pod worker: plays kubelet for one pod with containers that run as processes, in a thread of its own.

Owns: the pod's containers from start to end: waiting for its Secrets and ConfigMaps (ContainerCreating,
CreateContainerConfigError, looked at again every CONFIG_RECHECK_SECONDS), init containers one by one with
retries and back-off (Init:Error, Init:CrashLoopBackOff), main containers with their readiness and liveness probes,
restarts per restartPolicy with a kubelet's doubling back-off (CrashLoopBackOff), and the pod's status, built by
`simstatus.process_status` from per-container views. Containers whose image does not run as a process are
simulated inside such a pod: running and ready at once (run-to-completion pods: they end with the processes).
Calls: `simprocess.Runner` (start, stop by pid), `probes`, and the `Host` it is given (status writes, the pod
as last seen, facts, lookups). A resumed worker (after a simulator restart) starts from the pod's status.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

from . import probes as probing
from . import simprocess
from .simstatus import (
    CONFIG_RECHECK_SECONDS,
    ContainerView,
    Facts,
    Settings,
    Terminated,
    backoff_message,
    crash_backoff,
    is_run_to_completion,
    process_status,
    run_seconds,
    runs_as_process,
    should_restart,
    views_from_status,
)

log = logging.getLogger("simulator")
TICK_SECONDS = 0.5  # the longest a worker sleeps: a process's exit is noticed this fast
DEFAULT_GRACE_SECONDS = 30.0


class Host(Protocol):
    def current(self, uid: str) -> dict | None: ...
    def facts_for(self, uid: str, pod: Mapping[str, Any]) -> Facts: ...
    def write(self, uid: str, pod: dict, body: dict, note: str) -> None: ...
    def lookup(self, kind: str, namespace: str, name: str) -> Mapping[str, str] | None: ...


def grace_seconds(pod: Mapping[str, Any]) -> float:
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    for value in (meta.get("deletionGracePeriodSeconds"), spec.get("terminationGracePeriodSeconds")):
        if value is not None:
            return float(value)
    return DEFAULT_GRACE_SECONDS


class Main:
    """A main container that runs as a process: its current run, probes and pending restart."""

    def __init__(self, spec: Mapping[str, Any], view: ContainerView):
        self.spec, self.view = spec, view
        self.run: simprocess.Started | None = None
        self.restart_at: float | None = None
        self.readiness: probing.ProbeTracker | None = None
        self.liveness: probing.ProbeTracker | None = None
        self.killed_for = ""  # why the worker killed the current run (a failed liveness probe)


class PodWorker:
    def __init__(self, uid: str, pod: dict, *, host: Host, runner: simprocess.Runner, settings: Settings,
                 state_dir):
        self.uid, self.pod, self.host, self.runner, self.settings = uid, pod, host, runner, settings
        self.state_dir = state_dir
        self.stopping = threading.Event()
        self.name = f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"
        self.inits, self.mains = views_from_status(pod)
        self._lock = threading.Lock()
        self.running: set[str] = set()  # containers with a live process (the log endpoint follows those)
        self.vol_dirs: dict = {}

    # --- status ---
    def publish(self, note: str = "") -> None:
        if self.stopping.is_set():
            return  # a pod being deleted, or a simulator stopping: the exits that follow are not crashes
        pod = self.host.current(self.uid) or self.pod
        with self._lock:
            body = process_status(pod, time.time(), self.host.facts_for(self.uid, pod), self.inits, self.mains)
        self.host.write(self.uid, pod, body, note)

    def _sleep(self, seconds: float) -> bool:
        """Sleeps; False when the worker is being stopped."""
        return not self.stopping.wait(max(0.0, seconds))

    def stop(self, grace: float) -> None:
        """SIGTERM to the pod's processes, SIGKILL after `grace` seconds; the worker ends without writing."""
        self.stopping.set()
        self.runner.table.stop(self.uid, grace)

    # --- the pod's life ---
    def run(self) -> None:
        spec = self.pod["spec"]
        if not self._wait_for_config(lambda: simprocess.volume_problem(self.pod, self.host.lookup), volume=True):
            return
        vol_dirs = self.vol_dirs = simprocess.prepare_volumes(self.pod, self.state_dir, self.host.lookup)
        for c, view in zip(spec.get("initContainers") or [], self.inits):
            if not self._run_init(c, view, vol_dirs):
                return
        self._run_mains(vol_dirs)

    def _wait_for_config(self, problem, volume: bool = False, view: ContainerView | None = None) -> bool:
        """Until `problem()` is empty: containers wait (ContainerCreating for a volume, else the view waits with
        CreateContainerConfigError); False when stopped meanwhile."""
        while not self.stopping.is_set():
            message = problem()
            if not message:
                return True
            with self._lock:
                if volume:
                    for v in self.inits + self.mains:
                        if v.waiting and v.last is None:
                            v.waiting = ("ContainerCreating", "")
                else:
                    view.waiting = ("CreateContainerConfigError", message)
            self.publish(message)
            self._sleep(CONFIG_RECHECK_SECONDS)
        return False

    def _env_ready(self, c: Mapping[str, Any], view: ContainerView) -> bool:
        return self._wait_for_config(lambda: simprocess.env_problem(self.pod, [c], self.host.lookup), view=view)

    def _run_init(self, c: Mapping[str, Any], view: ContainerView, vol_dirs) -> bool:
        """Runs one init container until it succeeds (with back-off between tries); False when the pod ends."""
        policy = self.pod["spec"].get("restartPolicy", "Always")
        if view.terminated and view.terminated.exit_code == 0:
            return True
        while not self.stopping.is_set():
            if not runs_as_process(c, self.settings):
                now = time.time()
                view.end(Terminated(0, now, now))
                return True
            if not self._env_ready(c, view):
                return False
            with self._lock:
                view.run(time.time())
                self.running.add(c["name"])
            self.publish()
            log.info("%s init container %s: started (restart %d)", self.name, c["name"], view.restart_count)
            result = self.runner.finish(self.pod, self.runner.start(self.pod, c, vol_dirs, view.restart_count))
            with self._lock:
                self.running.discard(c["name"])
            if self.stopping.is_set():
                return False
            with self._lock:
                view.end(result)
            self.publish(f"init container {c['name']} exited with {result.exit_code}")
            if result.exit_code == 0:
                return True
            if policy == "Never":
                return False  # the pod has failed
            if not self._back_off(c, view):
                return False
        return False

    def _back_off(self, c: Mapping[str, Any], view: ContainerView) -> bool:
        """After a failed run: wait out the back-off in CrashLoopBackOff (the first restart is immediate)."""
        delay = crash_backoff(view.restart_count, self.settings) if view.restart_count else 0.0
        finished = view.terminated.finished_at if view.terminated else time.time()
        with self._lock:
            view.back_off("CrashLoopBackOff", backoff_message(self.pod, c["name"], delay))
        if delay:
            self.publish(f"{c['name']}: back-off {delay:g}s")
        return self._sleep(finished + delay - time.time())

    # --- main containers ---
    def _run_mains(self, vol_dirs) -> None:
        spec = self.pod["spec"]
        now = time.time()
        mains = []
        for c, view in zip(spec["containers"], self.mains):
            if runs_as_process(c, self.settings):
                if view.running_since is not None or view.waiting:  # not started, or its process died with us
                    if view.running_since is not None:
                        view.restart_count += 1
                    mains.append(Main(c, view))
                elif view.terminated and should_restart(spec.get("restartPolicy", "Always"),
                                                         view.terminated.exit_code):
                    main = Main(c, view)
                    main.restart_at = now
                    mains.append(main)
            elif view.terminated is None:
                with self._lock:
                    view.run(view.running_since or now)
                    view.ready = True
        for m in mains:
            if m.restart_at is None and not self._start(m, vol_dirs):
                return
        self.publish("Running")
        processes = any(runs_as_process(c, self.settings) for c in spec["containers"])
        if not processes and not is_run_to_completion(self.pod):
            return  # only init containers ran as processes: the simulated servers stay Running
        simulated_end = None if processes else now + run_seconds(self.pod, self.settings)
        while not self.stopping.is_set():
            changed, note = False, ""
            for m in mains:
                c_changed, c_note = self._tend(m, vol_dirs)
                changed, note = changed or c_changed, c_note or note
            if self.stopping.is_set():
                return
            if is_run_to_completion(self.pod) and self._finished(mains, simulated_end):
                self._end_simulated()
                self.publish(note or "finished")
                return
            if changed:
                self.publish(note)
            self._sleep(self._next_wake(mains, simulated_end))

    def _start(self, m: Main, vol_dirs) -> bool:
        if not self._env_ready(m.spec, m.view):
            return False
        started = self.runner.start(self.pod, m.spec, vol_dirs, m.view.restart_count)
        now = time.time()
        with self._lock:
            m.run, m.restart_at, m.killed_for = started, None, ""
            m.view.run(now)
            m.view.ready = False
            self.running.add(m.spec["name"])
        try:
            m.readiness = self._tracker(m, "readinessProbe", now, initial=False)
            m.liveness = self._tracker(m, "livenessProbe", now, initial=True)
        except ValueError as exc:
            log.warning("%s container %s: probe not run: %s", self.name, m.spec["name"], exc)
            m.readiness = m.liveness = None
        m.view.ready = m.readiness is None
        log.info("%s container %s: started (restart %d)", self.name, m.spec["name"], m.view.restart_count)
        return True

    def _tracker(self, m: Main, key: str, now: float, initial: bool) -> probing.ProbeTracker | None:
        probe = probing.parse_probe(m.spec, key)
        return probing.ProbeTracker(probe, now, initial) if probe else None

    def _tend(self, m: Main, vol_dirs) -> tuple[bool, str]:
        """One look at a main container: its exit, a restart that is due, its probes."""
        now = time.time()
        name = m.spec["name"]
        if m.run is not None and m.run.proc is not None and m.run.proc.poll() is None:
            return self._probe(m, now)
        if m.run is not None:  # it ended (or never started)
            result = self.runner.finish(self.pod, m.run)
            if m.killed_for:
                result = Terminated(result.exit_code, result.started_at, result.finished_at, result.reason,
                                    m.killed_for)
            m.run = None
            with self._lock:
                self.running.discard(name)
                m.view.end(result)
            note = f"container {name} exited with {result.exit_code}"
            if should_restart(self.pod["spec"].get("restartPolicy", "Always"), result.exit_code):
                self.publish(note)  # Error (or Completed) shows before the back-off
                delay = crash_backoff(m.view.restart_count, self.settings) if m.view.restart_count else 0.0
                m.restart_at = result.finished_at + delay
                with self._lock:
                    m.view.back_off("CrashLoopBackOff", backoff_message(self.pod, name, delay))
                if delay:
                    note = f"container {name}: back-off {delay:g}s"
            return True, note
        if m.restart_at is not None and now >= m.restart_at:
            self._start(m, vol_dirs)
            return True, f"container {name} restarted ({m.view.restart_count})"
        return False, ""

    def _probe(self, m: Main, now: float) -> tuple[bool, str]:
        changed, note = False, ""
        if m.liveness and m.liveness.due(now):
            ok, why = self._run_probe(m, m.liveness.probe)
            if m.liveness.record(ok, time.time(), why) and not m.liveness.result:
                m.killed_for = f"Liveness probe failed: {why}"
                log.info("%s container %s: %s; killing it", self.name, m.spec["name"], m.killed_for)
                simprocess.stop_process(m.run.proc, grace_seconds(self.pod))
                return True, m.killed_for
        if m.readiness and m.readiness.due(now):
            ok, why = self._run_probe(m, m.readiness.probe)
            if m.readiness.record(ok, time.time(), why):
                with self._lock:
                    m.view.ready = m.readiness.result
                changed = True
                note = f"container {m.spec['name']} " + ("ready" if ok else f"not ready: {why}")
        return changed, note

    def _run_probe(self, m: Main, probe: probing.Probe) -> tuple[bool, str]:
        """In the pod: exec probes as the container's processes run, HTTP and TCP from the pod's namespace."""
        def exec_runner(command, timeout):
            return self.runner.run_command(self.pod, m.spec, command, self.vol_dirs, timeout)
        return probing.run_probe(probe, exec_runner, self.runner.connector(self.pod))

    def _finished(self, mains: list[Main], simulated_end: float | None) -> bool:
        if simulated_end is not None:
            return time.time() >= simulated_end
        return all(m.run is None and m.restart_at is None for m in mains)

    def _end_simulated(self) -> None:
        """Simulated containers of a run-to-completion pod end with its processes, successfully."""
        now = time.time()
        with self._lock:
            for c, view in zip(self.pod["spec"]["containers"], self.mains):
                if not runs_as_process(c, self.settings) and view.terminated is None:
                    view.end(Terminated(0, view.running_since or now, now))

    def _next_wake(self, mains: list[Main], simulated_end: float | None) -> float:
        now = time.time()
        times = [t for t in [simulated_end] + [m.restart_at for m in mains] if t is not None]
        for m in mains:
            for tracker in (m.liveness, m.readiness):
                if tracker and m.run is not None:
                    times.append(tracker.next_at)
        return min([TICK_SECONDS] + [t - now for t in times])

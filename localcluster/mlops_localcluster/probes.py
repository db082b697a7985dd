"""Container probes for pods that run as processes: HTTP GET, TCP socket and exec, as a kubelet runs them.

Owns: reading a probe from a container spec (`parse_probe`), running one probe (`run_probe`), and the result
tracker that applies initialDelaySeconds, periodSeconds, successThreshold and failureThreshold
(`ProbeTracker`, pure: the clock is passed in).
Calls: the socket and http.client modules, and subprocess for exec probes (through a runner callback that builds
the argv and environment the way the container's own process gets them).

HTTP and TCP probes go to `host` when the probe names one, else to 127.0.0.1, and connect through a `connect`
callback: with the pod network, one that connects from inside the pod's namespace (`network.connect_in_netns`),
so 127.0.0.1 is the pod's own loopback, shared by its containers; without it, the host's. A named port is looked
up in the container's ports.
"""

from __future__ import annotations

import dataclasses
import http.client
import socket
import ssl
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

DEFAULT_HOST = "127.0.0.1"


@dataclasses.dataclass(frozen=True)
class Probe:
    kind: str  # "http" | "tcp" | "exec"
    port: int = 0
    path: str = "/"
    host: str = DEFAULT_HOST
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3


def _port(value: Any, container: Mapping[str, Any]) -> int:
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    for p in container.get("ports") or []:
        if p.get("name") == value:
            return int(p["containerPort"])
    raise ValueError(f"port {value!r} is not a number and no container port has that name")


def parse_probe(container: Mapping[str, Any], key: str) -> Probe | None:
    """The container's `livenessProbe` / `readinessProbe` (key), with Kubernetes' defaults; None when absent.
    Raises ValueError for a probe it cannot run."""
    spec = container.get(key)
    if not spec:
        return None
    timing = dict(initial_delay=float(spec.get("initialDelaySeconds") or 0),
                  period=float(spec.get("periodSeconds") or 10), timeout=float(spec.get("timeoutSeconds") or 1),
                  success_threshold=int(spec.get("successThreshold") or 1),
                  failure_threshold=int(spec.get("failureThreshold") or 3))
    if "httpGet" in spec:
        h = spec["httpGet"]
        headers = tuple((x["name"], x.get("value", "")) for x in h.get("httpHeaders") or [])
        return Probe("http", port=_port(h.get("port"), container), path=h.get("path") or "/",
                     host=h.get("host") or DEFAULT_HOST, scheme=(h.get("scheme") or "HTTP").upper(),
                     headers=headers, **timing)
    if "tcpSocket" in spec:
        t = spec["tcpSocket"]
        return Probe("tcp", port=_port(t.get("port"), container), host=t.get("host") or DEFAULT_HOST, **timing)
    if "exec" in spec:
        return Probe("exec", command=tuple((spec["exec"] or {}).get("command") or ()), **timing)
    raise ValueError(f"{key}: no httpGet, tcpSocket or exec")


ExecRunner = Callable[[list[str], float], "subprocess.CompletedProcess[bytes]"]
Connect = Callable[..., socket.socket]  # socket.create_connection's signature: (address, timeout)


def run_probe(probe: Probe, exec_runner: ExecRunner | None = None,
              connect: Connect = socket.create_connection) -> tuple[bool, str]:
    """Runs the probe once: (success, what failed). HTTP succeeds on 200-399, as a kubelet's does."""
    try:
        if probe.kind == "http":
            cls = http.client.HTTPSConnection if probe.scheme == "HTTPS" else http.client.HTTPConnection
            # a kubelet does not verify a probe's certificate either
            kwargs = {"context": ssl._create_unverified_context()} if probe.scheme == "HTTPS" else {}
            conn = cls(probe.host, probe.port, timeout=probe.timeout, **kwargs)
            conn._create_connection = connect  # http.client's own hook for making the connection
            try:
                conn.request("GET", probe.path, headers={"User-Agent": "kube-probe/1.20", **dict(probe.headers)})
                code = conn.getresponse().status
            finally:
                conn.close()
            ok = 200 <= code < 400
            return ok, "" if ok else f"HTTP probe failed with statuscode: {code}"
        if probe.kind == "tcp":
            with connect((probe.host, probe.port), probe.timeout):
                return True, ""
        if exec_runner is None:
            return False, "exec probe: nothing to run it with"
        done = exec_runner(list(probe.command), probe.timeout)
        out = (done.stdout or b"").decode("utf-8", errors="replace").strip()
        return done.returncode == 0, "" if done.returncode == 0 else (out or f"exit code {done.returncode}")
    except subprocess.TimeoutExpired:
        return False, f"command timed out after {probe.timeout:g}s"
    except (OSError, http.client.HTTPException) as exc:
        target = f"{probe.host}:{probe.port}"
        return False, f"{'Get' if probe.kind == 'http' else 'dial tcp'} {target}: {type(exc).__name__}: {exc}"


class ProbeTracker:
    """One probe of one running container: when it is due and what its result is.

    `initial` is the result before any probe ran: a kubelet starts readiness at failure and liveness at success.
    """

    def __init__(self, probe: Probe, started_at: float, initial: bool):
        self.probe = probe
        self.result = initial
        self.next_at = started_at + probe.initial_delay
        self.successes = 0
        self.failures = 0
        self.message = ""

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def record(self, ok: bool, now: float, message: str = "") -> bool:
        """Counts one probe result; returns True when the tracked result changed."""
        self.next_at = now + self.probe.period
        if ok:
            self.successes, self.failures = self.successes + 1, 0
        else:
            self.successes, self.failures = 0, self.failures + 1
            self.message = message
        old = self.result
        if ok and self.successes >= self.probe.success_threshold:
            self.result = True
        elif not ok and self.failures >= self.probe.failure_threshold:
            self.result = False
        return self.result != old

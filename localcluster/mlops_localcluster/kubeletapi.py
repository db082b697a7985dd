"""The kubelet's HTTPS endpoint, as far as `kubectl logs` needs it: `GET /containerLogs/{ns}/{pod}/{container}`.

Owns: one server on 127.0.0.1 for every simulated node (the API server proxies `pods/log` to the node's
InternalIP and daemonEndpoints.kubeletEndpoint.Port, which the simulator reports as 127.0.0.1 and this port), and
the reading of the CRI log files (`simprocess.log_path`) with the query parameters kubectl sends: follow,
previous, tailLines, limitBytes, sinceSeconds, sinceTime, timestamps.
Calls: a `Locator` (the simulator) that says which file holds a container's log and whether it is still written.

The server presents the certificate it is given (the local cluster's serving certificate for 127.0.0.1, signed by
the cluster CA that the API server is told to trust with --kubelet-certificate-authority). It listens on loopback
only and asks for no client certificate.
"""

from __future__ import annotations

import datetime
import http.server
import logging
import pathlib
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import NamedTuple, Protocol

from .simprocess import parse_cri_line

log = logging.getLogger("simulator")
FOLLOW_POLL_SECONDS = 0.2


class LogSource(NamedTuple):
    path: pathlib.Path | None
    error: str = ""  # why there is no log (the response body, with status 400 or 404)
    status: int = 200
    live: Callable[[], bool] = lambda: False  # True while the process still writes this file


class Locator(Protocol):
    def log_source(self, namespace: str, pod: str, container: str, previous: bool) -> LogSource: ...


def _since(query: dict[str, str], now: float) -> float | None:
    if query.get("sinceSeconds"):
        return now - float(query["sinceSeconds"])
    if query.get("sinceTime"):
        return datetime.datetime.fromisoformat(query["sinceTime"].replace("Z", "+00:00")).timestamp()
    return None


def _stamp(ts: str) -> float:
    try:  # nanoseconds do not fit fromisoformat: keep microseconds
        return datetime.datetime.fromisoformat(ts[:26] + "+00:00").timestamp()
    except ValueError:
        return 0.0


def render(raw: bytes, *, timestamps: bool = False, since: float | None = None) -> list[bytes]:
    """CRI log lines -> what kubectl shows: the text, with its timestamp first when asked."""
    out = []
    for line in raw.splitlines(keepends=True):
        ts, text = parse_cri_line(line)
        if since is not None and ts and _stamp(ts) < since:
            continue
        out.append((ts.encode() + b" " + text) if timestamps and ts else text)
    return out


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "mlops-sim-kubelet"
    locator: Locator

    def log_message(self, fmt, *args):  # noqa: D401 - the simulator's log, not stderr
        log.debug("kubelet endpoint: " + fmt, *args)

    def _fail(self, status: int, message: str) -> None:
        body = message.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's name
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
        if len(parts) != 4 or parts[0] != "containerLogs":
            return self._fail(404, f"{url.path}: only /containerLogs/<namespace>/<pod>/<container> is served here")
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        flag = lambda k: query.get(k, "").lower() in ("true", "1")  # noqa: E731
        try:
            since = _since(query, time.time())
            tail = int(query["tailLines"]) if query.get("tailLines") else None
            limit = int(query["limitBytes"]) if query.get("limitBytes") else None
        except ValueError as exc:
            return self._fail(400, f"bad query: {exc}")
        source = self.locator.log_source(parts[1], parts[2], parts[3], flag("previous"))
        if source.path is None:
            return self._fail(source.status if source.status != 200 else 404, source.error)
        try:
            self._stream(source, timestamps=flag("timestamps"), since=since, tail=tail, limit=limit,
                         follow=flag("follow") and not flag("previous"))
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the client went away: `kubectl logs -f` stopped with ^C

    def _stream(self, source: LogSource, *, timestamps, since, tail, limit, follow) -> None:
        try:
            f = open(source.path, "rb")
        except OSError as exc:
            return self._fail(404, f"cannot read the log: {exc}")
        with f:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            raw = f.read()
            complete = raw[:raw.rfind(b"\n") + 1]
            f.seek(len(complete))
            lines = render(complete, timestamps=timestamps, since=since)
            if tail is not None:
                lines = lines[-tail:] if tail > 0 else []
            sent = 0

            def send(chunk: bytes) -> bool:
                nonlocal sent
                if limit is not None:
                    chunk = chunk[:max(0, limit - sent)]
                if chunk:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    sent += len(chunk)
                return limit is None or sent < limit

            if not send(b"".join(lines)) or not follow:
                return
            pending = b""
            while True:
                live = source.live()  # asked before reading: a last write is never missed
                data = f.read()
                if data:
                    pending += data
                    cut = pending.rfind(b"\n") + 1
                    if cut and not send(b"".join(render(pending[:cut], timestamps=timestamps))):
                        return
                    pending = pending[cut:]
                elif not live:
                    return
                else:
                    time.sleep(FOLLOW_POLL_SECONDS)


class KubeletServer:
    """The HTTPS server in a thread; `port` is where it listens (0 at construction: a free one)."""

    def __init__(self, locator: Locator, port: int = 0, cert_file: str | None = None, key_file: str | None = None):
        handler = type("Handler", (_Handler,), {"locator": locator})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        if cert_file:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert_file, key_file)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.scheme = "https" if cert_file else "http"

    def start(self) -> None:
        threading.Thread(target=self.httpd.serve_forever, name="kubelet-endpoint", daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

"""An asynchronous Kubernetes REST client for the controllers: get, list, server-side apply, status patches,
deletes and events, without blocking kopf's event loop.

Owns: one aiohttp session per operator process, the map from kind to REST path, API discovery, request metrics,
and the retries a throttling API server asks for (429, Retry-After). Where the server is and who we are come
from kubeconfig.py and credentials.py (exec plugins run off the event loop).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import email.utils
import json
import logging
import os
import random
import re
import socket
import ssl
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import aiohttp

from .. import FIELD_MANAGER, __version__, metrics
from . import kubeconfig as kubeconfig_
from .credentials import Credential, CredentialError, StaticCredentials
from .kubeconfig import Tls

log = logging.getLogger("mlops_operator.client")

# Which replica wrote what: the API server's audit log records the user agent, and with several replicas (or a
# replica and its restarted successor) the host and pid tell them apart. Always starts with "mlops-operator/".
USER_AGENT = f"mlops-operator/{__version__} ({socket.gethostname()}/{os.getpid()})"

# kind -> (plural, namespaced). Versions are the caller's (some are chosen by discovery).
RESOURCES: dict[str, tuple[str, bool]] = {
    "Pod": ("pods", True), "Service": ("services", True), "ServiceAccount": ("serviceaccounts", True),
    "ConfigMap": ("configmaps", True), "Secret": ("secrets", True), "Event": ("events", True),
    "Namespace": ("namespaces", False), "Node": ("nodes", False),
    "Deployment": ("deployments", True), "ReplicaSet": ("replicasets", True),
    "Job": ("jobs", True), "CronJob": ("cronjobs", True),
    "HorizontalPodAutoscaler": ("horizontalpodautoscalers", True),
    "PodDisruptionBudget": ("poddisruptionbudgets", True),
    "Role": ("roles", True), "RoleBinding": ("rolebindings", True),
    "ModelDeployment": ("modeldeployments", True), "TrainingJob": ("trainingjobs", True),
    "DriftMonitor": ("driftmonitors", True),
    "CustomResourceDefinition": ("customresourcedefinitions", False),
}


def resource_path(api_version: str, kind: str, namespace: str | None = None, name: str | None = None) -> str:
    plural, namespaced = RESOURCES[kind]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespaced and namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    return f"{base}/{name}" if name else base


def object_path(obj: dict) -> str:
    meta = obj["metadata"]
    return resource_path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])


APPLY = "application/apply-patch+yaml"

# Written as \u escapes in an apply body: everything but printable ASCII and the planes beyond U+FFFF.
_YAML_ESCAPE = re.compile("[^\x20-\x7e\U00010000-\U0010ffff]")


def yaml_safe_json(obj: Any) -> str:
    """JSON that the API server's YAML decoder reads back unchanged, for server-side apply (whose body is YAML).
    json.dumps writes a character beyond U+FFFF (an emoji) as a surrogate pair, which go-yaml refuses ("found
    invalid Unicode character escape code", a 400), so those are written as they are; every other non-ASCII
    character stays a \\u escape (raw, U+0085, U+2028 and U+2029 would be line breaks to YAML 1.1)."""
    return _YAML_ESCAPE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(obj, ensure_ascii=False))


class ApiError(Exception):
    def __init__(self, status: int, body: Any, method: str, path: str):
        self.status, self.body = status, body
        message = body.get("message") if isinstance(body, dict) else str(body)[:300]
        self.message = message or ""
        super().__init__(f"{method} {path}: {status} {message}")

    @property
    def rejected_content(self) -> bool:
        """The API server refused what we sent as invalid (so retrying the same content cannot help)."""
        return self.status == 422 or (self.status == 500 and "failed to create typed patch object" in self.message)

    @property
    def namespace_terminating(self) -> bool:
        """Nothing can be created in a namespace being deleted or gone: no point retrying."""
        return ((self.status == 403 and "because it is being terminated" in self.message)
                or (self.status == 404 and self.message.startswith("namespaces ")))


# Throttling (429, and 5xx with Retry-After from API priority and fairness or a server shutting down): the server
# did not process the request, so even a create is safe to send again.
MAX_RETRIES = 5
MAX_RETRY_AFTER = 60.0  # a server asking for longer than this gets the error now, and the caller's own requeue


def retry_delay(status: int, retry_after: str | None, attempt: int, max_retries: int = MAX_RETRIES) -> float | None:
    """Seconds to wait before sending a request again, or None: not a throttling answer, or retries used up.
    At least the server's Retry-After, growing with each attempt, with up to 20% jitter so that the clients the
    server turned away together do not all return together."""
    if attempt >= max_retries or not (status == 429 or (status >= 500 and retry_after is not None)):
        return None
    asked = parse_retry_after(retry_after)
    if asked is None and status != 429:
        return None
    if asked is not None and asked > MAX_RETRY_AFTER:
        return None
    backoff: float = min(0.2 * 2 ** attempt, 5.0)
    return max(asked or 0.0, backoff) * random.uniform(1.0, 1.2)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (what the API server sends) or an HTTP date."""
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(timezone.utc)).total_seconds(), 0.0) if when.tzinfo else None


class KubeClient:
    def __init__(self, host: str, ssl_context: ssl.SSLContext | bool | Tls, auth: Any, limit: int = 32,
                 user_agent: str = USER_AGENT, *, proxy: str | None = None, server_hostname: str | None = None,
                 max_retries: int = MAX_RETRIES) -> None:
        """`ssl_context`: a context, False (no verification), or the kubeconfig's Tls (which also builds contexts for
        an exec plugin's client certificates). `auth`: credentials (credentials.py: current() and refresh()), or a
        callable returning the Authorization header's value. `proxy`: an http(s) proxy URL (kubeconfig
        proxy-url). `server_hostname`: the name the server's certificate must carry, also sent as SNI (kubeconfig
        tls-server-name)."""
        self.host = host.rstrip("/")
        self._user_agent = user_agent  # the API server's audit log tells writers apart by it
        self._tls: Tls | None = None
        self._ssl: ssl.SSLContext | bool = True
        if isinstance(ssl_context, Tls):
            self._tls = ssl_context
        else:
            self._ssl = ssl_context
        self._credentials = auth if hasattr(auth, "current") else StaticCredentials(auth)
        self._proxy, self._server_hostname = proxy, server_hostname
        self._max_retries = max_retries
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None
        self._discovered: dict[str, list[str]] = {}
        self._resources: dict[str, set[str]] = {}

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None, **kwargs: Any) -> KubeClient:
        """In-cluster credentials when running in a pod, else the kubeconfig ($KUBECONFIG or ~/.kube/config).
        What a kubeconfig may hold: docs/install.md, "Connecting to the API server"."""
        conn = kubeconfig_.load(kubeconfig)
        return cls(conn.host, conn.tls, conn.credentials, proxy=conn.proxy, server_hostname=conn.server_hostname,
                   **kwargs)

    async def _session_(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit),
                headers={"User-Agent": self._user_agent}, timeout=aiohttp.ClientTimeout(total=60))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _ssl_for(self, credential: Credential) -> ssl.SSLContext | bool:
        if self._tls is not None:
            return self._tls.context(credential.client_cert)
        if credential.client_cert:
            raise CredentialError("an exec plugin's client certificate needs the client from_environment builds")
        return self._ssl

    @contextlib.asynccontextmanager
    async def _send(self, method: str, path: str, *, headers: dict[str, str],
                    **kwargs: Any) -> AsyncIterator[aiohttp.ClientResponse]:
        """The response to one request, after a credential refresh on a 401 (once) and the retries a throttling
        server asks for (retry_delay)."""
        session = await self._session_()
        refreshed, attempt = False, 0
        while True:
            credential = await self._credentials.current()
            sent = dict(headers, Authorization=credential.authorization) if credential.authorization else headers
            resp = await session.request(method, self.host + path, headers=sent, ssl=self._ssl_for(credential),
                                         proxy=self._proxy, server_hostname=self._server_hostname, **kwargs)
            metrics.api_request(method, resp.status)
            if resp.status == 401 and not refreshed:
                refreshed = True
                if await self._credentials.refresh(credential) is not None:
                    async with resp:
                        await resp.read()
                    continue
            delay = retry_delay(resp.status, resp.headers.get("Retry-After"), attempt, self._max_retries)
            if delay is None:
                break
            async with resp:
                await resp.read()
            attempt += 1
            log.debug("%s %s: %s, sending it again in %.1f s", method, path, resp.status, delay)
            await asyncio.sleep(delay)
        async with resp:
            yield resp

    async def request(self, method: str, path: str, *, params: dict | None = None, body: Any = None,
                      content_type: str = "application/json", timeout: float | None = None) -> Any:
        """One request; `timeout` (seconds, each attempt) overrides the session's 60."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = (yaml_safe_json(body) if content_type == APPLY else json.dumps(body)).encode()
        with metrics.api_request_timer(method):
            extra = {"timeout": aiohttp.ClientTimeout(total=timeout)} if timeout else {}
            async with self._send(method, path, params=params, data=data, headers=headers, **extra) as resp:
                payload = await resp.json(content_type=None) if resp.content_length != 0 else None
                if resp.status >= 400:
                    raise ApiError(resp.status, payload, method, path)
                return payload

    async def watch(self, path: str, resource_version: str, timeout_seconds: int = 60, grace: float = 15,
                    label_selector: str | None = None) -> AsyncIterator[dict]:
        """The events of one watch request ({"type", "object"}) until the server ends it after timeout_seconds;
        silence for timeout_seconds + grace (a frozen API server) raises asyncio.TimeoutError. Used by the
        informers (runtime/informer.py) and the benchmarks. Throttling is retried only before the first event
        (a broken stream is the informer's to reconnect)."""
        params = {"watch": "1", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(timeout_seconds)}
        if label_selector:
            params["labelSelector"] = label_selector
        async with self._send("GET", path, params=params, headers={"Accept": "application/json"},
                              timeout=aiohttp.ClientTimeout(total=None, sock_connect=10,
                                                            sock_read=timeout_seconds + grace)) as resp:
            if resp.status >= 400:
                raise ApiError(resp.status, await resp.text(), "GET", path)
            async for line in resp.content:
                if line.strip():
                    yield json.loads(line)

    # -------------------------------------------------------------- verbs

    async def get(self, path: str) -> dict | None:
        try:
            obj: dict | None = await self.request("GET", path)
            return obj
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    async def list(self, path: str, label_selector: str | None = None) -> list[dict]:
        params = {"labelSelector": label_selector} if label_selector else None
        items: builtins.list[dict] = (await self.request("GET", path, params=params))["items"]
        return items

    async def apply(self, obj: dict, force: bool = True) -> dict:
        """Server-side apply under the operator's one field manager."""
        params = {"fieldManager": FIELD_MANAGER, "force": "true" if force else "false"}
        applied: dict = await self.request("PATCH", object_path(obj), params=params, body=obj, content_type=APPLY)
        return applied

    async def patch_status(self, obj_path: str, status: dict) -> dict:
        patched: dict = await self.request("PATCH", obj_path + "/status", body={"status": status},
                                           content_type="application/merge-patch+json",
                                           params={"fieldManager": FIELD_MANAGER})
        return patched

    async def merge_patch(self, obj_path: str, patch: dict) -> dict:
        patched: dict = await self.request("PATCH", obj_path, body=patch,
                                           content_type="application/merge-patch+json",
                                           params={"fieldManager": FIELD_MANAGER})
        return patched

    async def delete(self, obj_path: str, propagation: str = "Background") -> bool:
        try:
            await self.request("DELETE", obj_path, body={"propagationPolicy": propagation})
            return True
        except ApiError as err:
            if err.status == 404:
                return False
            raise

    async def create(self, collection_path: str, body: dict) -> dict:
        created: dict = await self.request("POST", collection_path, body=body,
                                           params={"fieldManager": FIELD_MANAGER})
        return created

    # -------------------------------------------------------------- discovery

    async def _discovery(self, path: str) -> dict | None:
        """A discovery document, or None for a 404, which the callers do not cache: a starting API server answers
        404 for built-in groups until its aggregator has registered them (docs/reliability.md), and a process that
        met one then must not miss the group for the rest of its life."""
        try:
            doc: dict = await self.request("GET", path)
        except ApiError as err:
            if err.status != 404:
                raise
            return None
        return doc

    async def group_versions(self, group: str) -> builtins.list[str]:
        """Versions the API server serves for a group, preferred first (cached for the process, not a 404)."""
        if group not in self._discovered:
            doc = await self._discovery(f"/apis/{group}")
            if doc is None:
                return []
            preferred = (doc.get("preferredVersion") or {}).get("version")
            versions = [v["version"] for v in doc.get("versions", [])]
            self._discovered[group] = sorted(versions, key=lambda v: v != preferred)
        return self._discovered[group]

    async def serves(self, group_version: str, plural: str) -> bool:
        """Whether the API server serves `plural` in `group_version` (cached for the process, not a 404)."""
        if group_version not in self._resources:
            doc = await self._discovery(f"/apis/{group_version}")
            if doc is None:
                return False
            self._resources[group_version] = {r["name"] for r in doc.get("resources", [])}
        return plural in self._resources[group_version]

    async def pick_resource_version(self, group: str, plural: str, wanted: builtins.list[str]) -> str:
        """The first of `wanted` whose group version serves `plural` (CronJob: batch/v1 only from 1.21)."""
        for version in wanted:
            if await self.serves(f"{group}/{version}", plural):
                return f"{group}/{version}"
        raise ApiError(404, {"message": f"the API server serves {plural} in none of {group}/{wanted}"}, "GET",
                       f"/apis/{group}")

    async def pick_version(self, group: str, wanted: builtins.list[str]) -> str:
        """The first of `wanted` (newest first) the server serves, as 'group/version'."""
        served = await self.group_versions(group)
        for version in wanted:
            if version in served:
                return f"{group}/{version}"
        raise ApiError(404, {"message": f"the API server serves none of {group}/{wanted}"}, "GET", f"/apis/{group}")


_lock = asyncio.Lock()
_client: KubeClient | None = None


async def shared() -> KubeClient:
    """The process's one client (created on first use, inside the running loop)."""
    global _client
    async with _lock:
        if _client is None:
            _client = KubeClient.from_environment()
        return _client

"""Who the operator is to the API server: a bearer token, a token file, basic auth, or an exec credential plugin
(kubeconfig `users[].user.exec`, as EKS and GKE use), each giving the Authorization header and client certificate
of the next request.

Owns: the exec plugin's cache (valid until a little before `status.expirationTimestamp`), its single-flight
refresh, and running the plugin off the event loop. KubeClient (client.py) asks `current()` before each request
and `refresh(stale)` once after a 401.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import dataclasses
import json
import os
import subprocess
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone


class CredentialError(Exception):
    """Credentials could not be obtained (an exec plugin failed or answered something unusable)."""


@dataclasses.dataclass(frozen=True, eq=False)
class Credential:
    authorization: str | None = None  # the Authorization header's value
    client_cert: tuple[str, str] | None = None  # (certificate PEM, key PEM) from an exec plugin
    expires: datetime | None = None
    refresh_at: datetime | None = None  # a little before `expires`


class StaticCredentials:
    """A token or basic auth written in the kubeconfig, or an Authorization callable (the old constructor's)."""

    def __init__(self, authorization: str | None | Callable[[], str | None]):
        self._authorization = authorization

    async def current(self) -> Credential:
        value = self._authorization() if callable(self._authorization) else self._authorization
        return Credential(authorization=value)

    async def refresh(self, stale: Credential) -> Credential | None:
        """Nothing to refresh: a 401 stands."""
        return None


def basic_auth(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class TokenFile:
    """A token read from a file (`tokenFile`, or the pod's projected ServiceAccount token, which the kubelet
    rotates), read again at most every `reread` seconds, as the official clients do."""

    def __init__(self, path: str, reread: float = 60, clock: Callable[[], float] = time.monotonic,
                 where: str = "tokenFile"):
        self._path, self._reread, self._clock, self._where = path, reread, clock, where
        self._token: str | None = None
        self._read_at = float("-inf")

    def _read(self) -> None:
        try:
            with open(self._path, encoding="utf-8") as fh:
                self._token = fh.read().strip()
        except OSError as err:
            raise CredentialError(f"{self._where} {self._path}: {err.strerror}") from None
        self._read_at = self._clock()

    async def current(self) -> Credential:
        if self._clock() - self._read_at >= self._reread:
            self._read()  # a file of a few hundred bytes on a local volume: not worth a thread
        return Credential(authorization=f"Bearer {self._token}" if self._token else None)

    async def refresh(self, stale: Credential) -> Credential | None:
        """After a 401 the kubelet may have rotated the token already."""
        self._read()
        fresh = await self.current()
        return fresh if fresh.authorization != stale.authorization else None


EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")

# Plugins (aws, gke-gcloud-auth-plugin, kubelogin) take about a second. Each client runs at most one at a time and
# the operator has two clients (requests and watches, handlers.py), so two threads; a pool of its own keeps a
# slow plugin from holding the threads that kopf and asyncio.to_thread share.
_EXEC_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="kube-exec")

# Refresh this long before expiry (at most half the credential's life), so no request goes out with a token
# that expires on the wire.
REFRESH_MARGIN = timedelta(seconds=30)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ExecPlugin:
    """An exec credential plugin. `config` is the kubeconfig's `user.exec` (command, args, env, apiVersion,
    interactiveMode, provideClusterInfo, installHint); `cluster` is the ExecCredential's `spec.cluster` when
    provideClusterInfo is set. `where` names the kubeconfig entry in errors."""

    def __init__(self, config: dict, *, cluster: dict | None = None, where: str = "user.exec",
                 base_dir: str | None = None, timeout: float = 120, clock: Callable[[], datetime] = utcnow):
        self._where, self._timeout, self._clock = where, timeout, clock
        command = config.get("command")
        if not command or not isinstance(command, str):
            raise CredentialError(f"{where}.command: missing")
        self.api_version = config.get("apiVersion")
        if self.api_version not in EXEC_API_VERSIONS:
            raise CredentialError(f"{where}.apiVersion: {self.api_version!r} is not one of {list(EXEC_API_VERSIONS)}")
        if config.get("interactiveMode") == "Always":
            raise CredentialError(f"{where}.interactiveMode: Always needs a terminal, and the operator has none")
        if base_dir and os.sep in command and not os.path.isabs(command):
            command = os.path.join(base_dir, command)  # relative to the kubeconfig, as kubectl resolves it
        self.argv = [command, *[str(arg) for arg in config.get("args") or []]]
        self._env = {}
        for item in config.get("env") or []:
            if not isinstance(item, dict) or "name" not in item or "value" not in item:
                raise CredentialError(f"{where}.env: each entry needs name and value, got {item!r}")
            self._env[item["name"]] = str(item["value"])
        self._install_hint = config.get("installHint") or ""
        self._cluster = cluster if config.get("provideClusterInfo") else None
        self._credential: Credential | None = None
        self._lock = asyncio.Lock()

    async def current(self) -> Credential:
        credential = self._credential
        if credential is not None and not self._due(credential):
            return credential
        async with self._lock:  # one refresh at a time; the requests that waited take its result
            if self._credential is None or self._due(self._credential):
                self._credential = await self._run()
            return self._credential

    async def refresh(self, stale: Credential) -> Credential | None:
        """After a 401: run the plugin again unless another request already did since `stale` was handed out."""
        async with self._lock:
            if self._credential is stale or self._credential is None:
                self._credential = await self._run()
            return self._credential

    def _due(self, credential: Credential) -> bool:
        return credential.refresh_at is not None and self._clock() >= credential.refresh_at

    async def _run(self) -> Credential:
        loop = asyncio.get_running_loop()
        status = await loop.run_in_executor(_EXEC_POOL, self._exec)
        return self._credential_from(status)

    def _exec(self) -> dict:
        """Runs the plugin (in _EXEC_POOL, never on the event loop) and returns its ExecCredential's status."""
        spec: dict = {"interactive": False}
        if self._cluster is not None:
            spec["cluster"] = self._cluster
        info = {"apiVersion": self.api_version, "kind": "ExecCredential", "spec": spec}
        env = {**os.environ, **self._env, "KUBERNETES_EXEC_INFO": json.dumps(info)}
        try:
            done = subprocess.run(self.argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=self._timeout, check=False)
        except FileNotFoundError:
            message = f"{self._where}.command: {self.argv[0]!r} not found. {self._install_hint}"
            raise CredentialError(message.strip()) from None
        except subprocess.TimeoutExpired:
            raise CredentialError(
                f"{self._where}: {self.argv[0]} gave no credential within {self._timeout:g} s") from None
        if done.returncode != 0:
            stderr = done.stderr.decode(errors="replace").strip()[-500:]
            raise CredentialError(f"{self._where}: {self.argv[0]} exited with {done.returncode}: {stderr}")
        try:
            out = json.loads(done.stdout)
        except ValueError as err:
            raise CredentialError(f"{self._where}: {self.argv[0]} printed no JSON ExecCredential: {err}") from None
        if not isinstance(out, dict) or out.get("kind") != "ExecCredential" or not isinstance(out.get("status"), dict):
            raise CredentialError(f"{self._where}: {self.argv[0]} printed no ExecCredential with a status")
        if out.get("apiVersion") != self.api_version:
            raise CredentialError(f"{self._where}: {self.argv[0]} answered apiVersion {out.get('apiVersion')!r}, "
                                  f"the kubeconfig asks for {self.api_version!r}")
        status: dict = out["status"]
        return status

    def _credential_from(self, status: dict) -> Credential:
        token = status.get("token")
        cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
        if bool(cert) != bool(key):
            raise CredentialError(f"{self._where}: the plugin's status has only one of "
                                  "clientCertificateData and clientKeyData")
        if not token and not cert:
            raise CredentialError(f"{self._where}: the plugin's status has neither token nor clientCertificateData")
        expires = refresh_at = None
        if status.get("expirationTimestamp"):
            try:
                expires = datetime.fromisoformat(status["expirationTimestamp"].replace("Z", "+00:00"))
            except (AttributeError, ValueError):
                raise CredentialError(f"{self._where}: status.expirationTimestamp "
                                      f"{status['expirationTimestamp']!r} is not an RFC 3339 time") from None
            if expires.tzinfo is None:
                expires = expires.replace(tzinfo=timezone.utc)
            now = self._clock()
            refresh_at = expires - min(REFRESH_MARGIN, max(expires - now, timedelta(0)) / 2)
        return Credential(authorization=f"Bearer {token}" if token else None,
                          client_cert=(cert, key) if cert and key else None, expires=expires, refresh_at=refresh_at)

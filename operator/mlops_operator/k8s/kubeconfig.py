"""Where the API server is and how to reach it: a kubeconfig ($KUBECONFIG, a list of files merged the way kubectl
merges them, or ~/.kube/config) or the pod's in-cluster ServiceAccount.

Owns: reading the current context into a `Connection` (host, TLS, proxy-url, tls-server-name, credentials).
KubeClient.from_environment (client.py) is its caller; credentials.py runs what the user entry asks for.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import ssl
import tempfile
from typing import Any

import yaml

from .credentials import CredentialError, ExecPlugin, StaticCredentials, TokenFile, basic_auth

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
# A cluster extension handed to exec plugins as spec.cluster.config.
EXEC_EXTENSION = "client.authentication.k8s.io/exec"


class KubeconfigError(CredentialError):
    """A kubeconfig that cannot be used; the message names the entry and field."""


class Tls:
    """The SSL contexts for one cluster: its CA (or no verification), the kubeconfig's client certificate, and
    another for each client certificate an exec plugin hands out (the plugin's certificates rotate)."""

    def __init__(self, *, verify: bool = True, ca_file: str | None = None, ca_data: str | None = None,
                 cert_data: tuple[str, str] | None = None):
        self.verify, self.ca_file, self.ca_data, self._cert_data = verify, ca_file, ca_data, cert_data
        self._base: ssl.SSLContext | None = None
        self._plugin: tuple[tuple[str, str], ssl.SSLContext] | None = None  # only the latest is in use

    def context(self, plugin_cert: tuple[str, str] | None = None) -> ssl.SSLContext:
        if plugin_cert is None:
            if self._base is None:
                self._base = self._build(None)
            return self._base
        if self._plugin is None or self._plugin[0] != plugin_cert:
            self._plugin = (plugin_cert, self._build(plugin_cert))
        return self._plugin[1]

    def _build(self, plugin_cert: tuple[str, str] | None) -> ssl.SSLContext:
        try:
            ctx = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_data)
        except ssl.SSLError as err:
            raise KubeconfigError(f"the cluster's certificate-authority: not a usable certificate: {err}") from None
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        try:
            cert = plugin_cert or self._cert_data
            if cert:
                load_cert_data(ctx, *cert)
        except ssl.SSLError as err:
            source = "the exec plugin's clientCertificateData/clientKeyData" if plugin_cert else \
                "the kubeconfig's client-certificate/client-key"
            raise KubeconfigError(f"{source}: not a usable certificate and key: {err}") from None
        return ctx


def load_cert_data(ctx: ssl.SSLContext, cert_pem: str, key_pem: str) -> None:
    """ssl reads certificates only from files: write them to a private folder just long enough to load them."""
    with tempfile.TemporaryDirectory(prefix="kube-cert-") as folder:  # mode 0700
        cert, key = os.path.join(folder, "tls.crt"), os.path.join(folder, "tls.key")
        for path, pem in ((cert, cert_pem), (key, key_pem)):
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w", encoding="utf-8") as fh:
                fh.write(pem)
        ctx.load_cert_chain(cert, key)


@dataclasses.dataclass
class Connection:
    host: str
    tls: Tls
    credentials: Any  # StaticCredentials | TokenFile | ExecPlugin
    proxy: str | None = None
    server_hostname: str | None = None  # tls-server-name: SNI and the name the certificate must carry


def load(kubeconfig: str | None = None) -> Connection:
    """The explicit kubeconfig; else in-cluster credentials when running in a pod; else $KUBECONFIG or
    ~/.kube/config."""
    if kubeconfig:
        return from_kubeconfig([kubeconfig])
    if os.environ.get("KUBERNETES_SERVICE_HOST") and os.path.exists(os.path.join(SERVICE_ACCOUNT, "token")):
        return in_cluster()
    paths = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    return from_kubeconfig([p for p in paths.split(os.pathsep) if p])


def in_cluster() -> Connection:
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if ":" in host:
        host = f"[{host}]"  # IPv6
    return Connection(host=f"https://{host}:{port}", tls=Tls(ca_file=os.path.join(SERVICE_ACCOUNT, "ca.crt")),
                      credentials=TokenFile(os.path.join(SERVICE_ACCOUNT, "token")))


@dataclasses.dataclass
class _Entry:
    value: dict
    base_dir: str  # relative paths in an entry are relative to the file that defined it


def _merge(paths: list[str]) -> tuple[str | None, dict[str, dict[str, _Entry]]]:
    """kubectl's merge: the first file that names a cluster, user or context wins; missing files of a list are
    skipped (an explicit single file must exist)."""
    current = None
    named: dict[str, dict[str, _Entry]] = {"clusters": {}, "users": {}, "contexts": {}}
    found = False
    for path in paths:
        if len(paths) > 1 and not os.path.exists(path):
            continue
        try:
            with open(path, encoding="utf-8") as fh:
                doc = yaml.safe_load(fh) or {}
        except OSError as err:
            raise KubeconfigError(f"kubeconfig {path}: {err.strerror}") from None
        except yaml.YAMLError as err:
            raise KubeconfigError(f"kubeconfig {path}: not YAML: {err}") from None
        found = True
        base_dir = os.path.dirname(os.path.abspath(path))
        current = current or doc.get("current-context")
        for section, field in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            for item in doc.get(section) or []:
                if isinstance(item, dict) and item.get("name") is not None:
                    named[section].setdefault(item["name"], _Entry(item.get(field) or {}, base_dir))
    if not found:
        raise KubeconfigError(f"no kubeconfig: none of {paths} exists, and not running in a pod")
    return current, named


def from_kubeconfig(paths: list[str]) -> Connection:
    current, named = _merge(paths)
    if not current:
        raise KubeconfigError(f"kubeconfig {os.pathsep.join(paths)}: current-context is not set")
    if current not in named["contexts"]:
        raise KubeconfigError(f"kubeconfig: current-context {current!r} is not among contexts[]")
    context = named["contexts"][current].value
    cluster_name, user_name = context.get("cluster"), context.get("user")
    if cluster_name not in named["clusters"]:
        raise KubeconfigError(f"kubeconfig: contexts[{current}].context.cluster {cluster_name!r} "
                              "is not among clusters[]")
    cluster = named["clusters"][cluster_name]
    if user_name and user_name not in named["users"]:
        raise KubeconfigError(f"kubeconfig: contexts[{current}].context.user {user_name!r} is not among users[]")
    user = named["users"][user_name] if user_name else _Entry({}, cluster.base_dir)  # no user: anonymous
    where_cluster, where_user = f"clusters[{cluster_name}].cluster", f"users[{user_name}].user"

    c = cluster.value
    server = c.get("server")
    if not server:
        raise KubeconfigError(f"kubeconfig: {where_cluster}.server is missing")
    ca_data = _data(c, "certificate-authority", cluster.base_dir, where_cluster)
    verify = not c.get("insecure-skip-tls-verify", False)
    proxy = c.get("proxy-url") or None
    if proxy and not proxy.startswith(("http://", "https://")):
        raise KubeconfigError(f"kubeconfig: {where_cluster}.proxy-url {proxy!r}: only http:// and https:// "
                              "proxies are supported (not socks5)")

    u = user.value
    cert_data = _data(u, "client-certificate", user.base_dir, where_user)
    key_data = _data(u, "client-key", user.base_dir, where_user)
    if bool(cert_data) != bool(key_data):
        raise KubeconfigError(f"kubeconfig: {where_user} has a client certificate without its key, or a key "
                              "without its certificate")
    tls = Tls(verify=verify, ca_data=ca_data, cert_data=(cert_data, key_data) if cert_data and key_data else None)
    return Connection(host=server.rstrip("/"), tls=tls, proxy=proxy, server_hostname=c.get("tls-server-name"),
                      credentials=_credentials(u, user.base_dir, where_user, c, ca_data))


def _credentials(u: dict, base_dir: str, where: str, cluster: dict,
                 ca_data: str | None) -> StaticCredentials | TokenFile | ExecPlugin | None:
    if u.get("auth-provider"):
        name = (u["auth-provider"] or {}).get("name")
        raise KubeconfigError(f"kubeconfig: {where}.auth-provider ({name}) is not supported: use an exec plugin "
                              "(kubelogin, gke-gcloud-auth-plugin, aws eks get-token)")
    if u.get("exec"):
        info = {"server": cluster["server"], "tls-server-name": cluster.get("tls-server-name"),
                "insecure-skip-tls-verify": bool(cluster.get("insecure-skip-tls-verify", False)),
                "certificate-authority-data": base64.b64encode(ca_data.encode()).decode() if ca_data else None,
                "proxy-url": cluster.get("proxy-url")}
        info = {k: v for k, v in info.items() if v is not None}
        for extension in cluster.get("extensions") or []:
            if extension.get("name") == EXEC_EXTENSION:
                info["config"] = extension.get("extension")
        return ExecPlugin(u["exec"], cluster=info, where=f"{where}.exec", base_dir=base_dir)
    if u.get("token"):
        return StaticCredentials(f"Bearer {u['token']}")
    if u.get("tokenFile"):
        return TokenFile(os.path.join(base_dir, os.path.expanduser(u["tokenFile"])), where=f"{where}.tokenFile")
    if u.get("username") is not None and u.get("password") is not None:
        return StaticCredentials(basic_auth(str(u["username"]), str(u["password"])))
    return StaticCredentials(None)  # client certificate only, or anonymous


def _data(entry: dict, field: str, base_dir: str, where: str) -> str | None:
    """`<field>-data` (base64 PEM) or `<field>` (a file path, relative to the kubeconfig) as PEM text."""
    if entry.get(f"{field}-data"):
        try:
            return base64.b64decode(entry[f"{field}-data"]).decode()
        except ValueError:
            raise KubeconfigError(f"kubeconfig: {where}.{field}-data is not base64") from None
    if entry.get(field):
        path = os.path.join(base_dir, os.path.expanduser(entry[field]))
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read()
        except OSError as err:
            raise KubeconfigError(f"kubeconfig: {where}.{field} {path}: {err.strerror}") from None
    return None

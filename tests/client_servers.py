"""Loopback servers, kubeconfigs, certificates and an exec credential plugin for the API client's unit tests
(tests/unit/test_client_*.py): these test the HTTP client's own behaviour, not the Kubernetes API."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import pathlib
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import yaml
from aiohttp import web


@contextlib.asynccontextmanager
async def serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]], ssl_context=None
                ) -> AsyncIterator[str]:
    """An aiohttp server on a free loopback port answering every path with `handler`; yields its base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def write_kubeconfig(path: pathlib.Path, server: str, user: dict, **cluster) -> str:
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "test",
           "clusters": [{"name": "c", "cluster": {"server": server, **cluster}}],
           "users": [{"name": "u", "user": user}],
           "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u"}}]}
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# An exec credential plugin as kubectl runs it. Token "tok-<first arg>-<MARK env>-<invocation>". It appends a line
# to $COUNT_FILE per run (before waiting), saves KUBERNETES_EXEC_INFO next to it, waits for $RELEASE_FILE when
# set (up to 10 s, then fails: only a running event loop can write it), sleeps $SLEEP seconds, and answers in the
# apiVersion it was asked for, with $EXPIRES as expirationTimestamp and $CERT_FILE/$KEY_FILE as client
# certificate when set.
PLUGIN = '''
import json, os, pathlib, sys, time
count = pathlib.Path(os.environ["COUNT_FILE"])
with open(count, "a") as fh:
    fh.write("run\\n")
n = len(count.read_text().splitlines())
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
(count.parent / "exec-info.json").write_text(json.dumps(info))
if os.environ.get("FAIL"):
    print(os.environ["FAIL"], file=sys.stderr)
    sys.exit(1)
release = os.environ.get("RELEASE_FILE")
deadline = time.monotonic() + 10
while release and not os.path.exists(release):
    if time.monotonic() > deadline:
        print("never released", file=sys.stderr)
        sys.exit(3)
    time.sleep(0.02)
time.sleep(float(os.environ.get("SLEEP", "0")))
status = {}
if os.environ.get("CERT_FILE"):
    status["clientCertificateData"] = pathlib.Path(os.environ["CERT_FILE"]).read_text()
    status["clientKeyData"] = pathlib.Path(os.environ["KEY_FILE"]).read_text()
else:
    status["token"] = f"tok-{sys.argv[1] if len(sys.argv) > 1 else ''}-{os.environ.get('MARK', '')}-{n}"
if os.environ.get("EXPIRES"):
    status["expirationTimestamp"] = os.environ["EXPIRES"]
print(json.dumps({"apiVersion": info["apiVersion"], "kind": "ExecCredential", "status": status}))
'''


def write_plugin(folder: pathlib.Path) -> str:
    path = folder / "credential-plugin"
    path.write_text(f"#!{sys.executable}\n{PLUGIN}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def runs(count_file: pathlib.Path) -> int:
    return len(count_file.read_text().splitlines()) if count_file.exists() else 0


def exec_user(plugin: str, count_file: pathlib.Path, *, api_version: str = "client.authentication.k8s.io/v1",
              args: tuple[str, ...] = ("a",), **env: str) -> dict:
    variables = {"COUNT_FILE": str(count_file), **env}
    return {"exec": {"apiVersion": api_version, "command": plugin, "args": list(args),
                     "env": [{"name": k, "value": v} for k, v in variables.items()],
                     "interactiveMode": "Never"}}


def token_checker(accepted: Callable[[str], bool], seen: list[str]):
    """A handler answering 200 with the Authorization header it got when `accepted` says so, else 401."""
    async def handler(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        seen.append(auth)
        if not accepted(auth):
            return web.json_response({"kind": "Status", "code": 401, "message": "Unauthorized"}, status=401)
        return web.json_response({"authorization": auth})
    return handler


class Ticker:
    """Counts event-loop turns of its own while running: proof that the loop was not blocked."""

    def __init__(self):
        self.ticks = 0
        self._task: asyncio.Task | None = None

    async def _run(self):
        while True:
            await asyncio.sleep(0.01)
            self.ticks += 1

    def __enter__(self):
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc):
        self._task.cancel()


def pki(folder: pathlib.Path) -> dict[str, str]:
    """A CA, a server certificate for DNS:kube.test only (not 127.0.0.1) and a client certificate
    (CN exec-user), as PEM text and files in `folder`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def issue(name: str, key, issuer_name, issuer_key, *, ca=False, dns=None, usage=None):
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(issuer_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if dns:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                decipher_only=False), critical=True)
            builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                                            critical=False)
        else:
            builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer_key.public_key()), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def pem_key(key) -> str:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()

    def pem_cert(cert) -> str:
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    ca = issue("test-ca", ca_key, ca_name, ca_key, ca=True)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    server = issue("kube.test", server_key, ca_name, ca_key, dns="kube.test", usage=ExtendedKeyUsageOID.SERVER_AUTH)
    client = issue("exec-user", client_key, ca_name, ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    out = {"ca": pem_cert(ca), "server_cert": pem_cert(server), "server_key": pem_key(server_key),
           "client_cert": pem_cert(client), "client_key": pem_key(client_key)}
    for name, text in list(out.items()):
        (folder / f"{name}.pem").write_text(text)
        out[f"{name}_file"] = str(folder / f"{name}.pem")
    return out


def json_line(obj: dict) -> bytes:
    return (json.dumps(obj) + "\n").encode()

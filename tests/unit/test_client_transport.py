"""How the API client reaches the server, from the kubeconfig: `tls-server-name` (SNI and the certificate's name
when the server is addressed by IP), `insecure-skip-tls-verify`, `proxy-url` (an HTTP CONNECT proxy), and client
certificates from the kubeconfig or from an exec plugin."""

import asyncio
import contextlib
import ssl

import aiohttp
import pytest
from aiohttp import web

from client_servers import b64, exec_user, pki, runs, serve, write_kubeconfig, write_plugin
from mlops_operator.k8s.client import KubeClient

pytest.importorskip("cryptography")


async def whoami(request: web.Request) -> web.Response:
    """The TLS server's answer: the client certificate's common name, if one was presented."""
    peer = request.transport.get_extra_info("peercert") or {}
    names = [value for rdn in peer.get("subject", ()) for key, value in rdn if key == "commonName"]
    return web.json_response({"client": names[0] if names else None, "path": request.path})


def server_context(certs: dict, client_certs: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs["server_cert_file"], certs["server_key_file"])
    if client_certs:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(certs["ca_file"])
    return ctx


@contextlib.asynccontextmanager
async def connect_proxy(seen: list[str]):
    """An HTTP CONNECT proxy on a free loopback port recording each request line; yields its URL."""
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        line = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")[0].decode()
        seen.append(line)
        method, target, _ = line.split(" ")
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            writer.close()
            return
        host, port = target.rsplit(":", 1)
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


def call(tmp_path, certs, user=None, client_certs=False, proxy_seen=None, **cluster):
    """GET /api through a kubeconfig pointing at a loopback TLS server (by IP; its certificate names only
    kube.test); returns the answer."""
    async def scenario():
        async with serve(whoami, server_context(certs, client_certs)) as url:
            async with contextlib.AsyncExitStack() as stack:
                if proxy_seen is not None:
                    cluster["proxy-url"] = await stack.enter_async_context(connect_proxy(proxy_seen))
                path = write_kubeconfig(tmp_path / "kubeconfig", url, user or {"token": "t"}, **cluster)
                client = KubeClient.from_environment(path)
                try:
                    return await asyncio.wait_for(client.request("GET", "/api"), 30), url
                finally:
                    await client.close()

    return asyncio.run(scenario())


@pytest.fixture
def certs(tmp_path):
    return pki(tmp_path)


def test_tls_server_name_is_the_name_the_certificate_is_checked_against(tmp_path, certs):
    ca = {"certificate-authority-data": b64(certs["ca"])}
    answer, _ = call(tmp_path, certs, **ca, **{"tls-server-name": "kube.test"})
    assert answer == {"client": None, "path": "/api"}
    with pytest.raises(aiohttp.ClientConnectorCertificateError):  # the certificate does not name 127.0.0.1
        call(tmp_path, certs, **ca)


def test_insecure_skip_tls_verify_accepts_any_certificate(tmp_path, certs):
    answer, _ = call(tmp_path, certs, **{"insecure-skip-tls-verify": True})
    assert answer["path"] == "/api"


def test_proxy_url_carries_the_connection(tmp_path, certs):
    seen: list[str] = []
    answer, url = call(tmp_path, certs, proxy_seen=seen, **{"certificate-authority-data": b64(certs["ca"]),
                                                             "tls-server-name": "kube.test"})
    assert answer["path"] == "/api"
    assert seen == [f"CONNECT {url.removeprefix('https://')} HTTP/1.1"]


def test_client_certificates_from_the_kubeconfig_and_from_an_exec_plugin(tmp_path, certs):
    cluster = {"certificate-authority": certs["ca_file"], "tls-server-name": "kube.test"}
    user = {"client-certificate-data": b64(certs["client_cert"]), "client-key-data": b64(certs["client_key"])}
    answer, _ = call(tmp_path, certs, user, client_certs=True, **cluster)
    assert answer["client"] == "exec-user"

    count = tmp_path / "count"
    user = exec_user(write_plugin(tmp_path), count, CERT_FILE=certs["client_cert_file"],
                     KEY_FILE=certs["client_key_file"])
    answer, _ = call(tmp_path, certs, user, client_certs=True, **cluster)
    assert answer["client"] == "exec-user" and runs(count) == 1

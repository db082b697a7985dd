"""Exec credential plugins (kubeconfig `users[].user.exec`, as EKS and GKE use): the plugin runs off the event loop,
once for any number of concurrent requests, again only near its credential's expiry or once after a 401; env,
args, both apiVersions and provideClusterInfo reach it; a failing plugin is a clear error naming the entry."""

import asyncio
import json
import os
from datetime import datetime, timedelta, timezone

import pytest

from client_servers import Ticker, exec_user, runs, serve, token_checker, write_kubeconfig, write_plugin
from mlops_operator.k8s import kubeconfig
from mlops_operator.k8s.client import ApiError, KubeClient
from mlops_operator.k8s.credentials import CredentialError, ExecPlugin


def test_the_plugin_runs_off_the_event_loop_and_once_for_concurrent_requests(tmp_path):
    count, release = tmp_path / "count", tmp_path / "release"
    user = exec_user(write_plugin(tmp_path), count, RELEASE_FILE=str(release), SLEEP="0.5")

    async def releaser(ticker: Ticker) -> int:
        """Lets the plugin finish once it runs: possible only while the event loop keeps turning."""
        while not runs(count):
            await asyncio.sleep(0.01)
        started = ticker.ticks
        while ticker.ticks < started + 5:
            await asyncio.sleep(0.01)
        release.touch()
        return ticker.ticks - started

    async def scenario():
        seen: list[str] = []
        async with serve(token_checker(lambda auth: auth == "Bearer tok-a--1", seen)) as url:
            with Ticker() as ticker:
                watcher = asyncio.create_task(releaser(ticker))
                client = KubeClient.from_environment(write_kubeconfig(tmp_path / "kubeconfig", url, user))
                try:
                    answers = await asyncio.wait_for(
                        asyncio.gather(*(client.request("GET", f"/api/{n}") for n in range(10))), 60)
                finally:
                    await client.close()
                ticks_while_running = await watcher
        return answers, seen, ticks_while_running

    answers, seen, ticks = asyncio.run(scenario())
    assert ticks >= 5
    assert runs(count) == 1
    assert [a["authorization"] for a in answers] == ["Bearer tok-a--1"] * 10
    assert seen == ["Bearer tok-a--1"] * 10


def test_expiry_brings_exactly_one_refresh(tmp_path):
    count = tmp_path / "count"
    expires = datetime(2030, 1, 1, tzinfo=timezone.utc)
    now = [expires - timedelta(hours=1)]
    config = exec_user(write_plugin(tmp_path), count, EXPIRES="2030-01-01T00:00:00Z")["exec"]
    plugin = ExecPlugin(config, clock=lambda: now[0])

    async def scenario():
        seen: list[str] = []
        async with serve(token_checker(lambda auth: True, seen)) as url:
            client = KubeClient(url, False, plugin)
            try:
                async def burst(n):
                    return {a["authorization"] for a in
                            await asyncio.gather(*(client.request("GET", "/api") for _ in range(n)))}

                first = await burst(3)
                now[0] = expires - timedelta(minutes=5)  # still well before expiry: no refresh
                same = await burst(3)
                now[0] = expires - timedelta(seconds=10)  # within the refresh margin
                refreshed = await burst(5)
                again = await burst(3)
            finally:
                await client.close()
        return first, same, refreshed, again

    first, same, refreshed, again = asyncio.run(scenario())
    assert first == same == {"Bearer tok-a--1"}
    assert refreshed == again == {"Bearer tok-a--2"}
    assert runs(count) == 2


def test_a_401_refreshes_the_credential_once(tmp_path):
    count = tmp_path / "count"
    kubeconfig = tmp_path / "kubeconfig"
    user = exec_user(write_plugin(tmp_path), count)

    async def scenario(accepted):
        seen: list[str] = []
        async with serve(token_checker(accepted, seen)) as url:
            client = KubeClient.from_environment(write_kubeconfig(kubeconfig, url, user))
            try:
                return await client.request("GET", "/api"), seen
            except ApiError as err:
                return err, seen
            finally:
                await client.close()

    # The server revoked the first token: one refresh, and the request goes through.
    answer, seen = asyncio.run(scenario(lambda auth: auth == "Bearer tok-a--2"))
    assert answer == {"authorization": "Bearer tok-a--2"}
    assert seen == ["Bearer tok-a--1", "Bearer tok-a--2"] and runs(count) == 2
    # A server that refuses every token: refreshed once, then the 401 stands (no loop of plugin runs).
    answer, seen = asyncio.run(scenario(lambda auth: False))
    assert isinstance(answer, ApiError) and answer.status == 401
    assert len(seen) == 2 and runs(count) == 4


@pytest.mark.parametrize("api_version", ["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"])
def test_args_env_api_versions_and_cluster_info_reach_the_plugin(tmp_path, api_version):
    count = tmp_path / "count"
    user = exec_user(write_plugin(tmp_path), count, api_version=api_version, args=("eks-1",), MARK="team")
    user["exec"]["provideClusterInfo"] = True
    extension = {"name": "client.authentication.k8s.io/exec", "extension": {"audience": "kube"}}

    async def scenario():
        seen: list[str] = []
        async with serve(token_checker(lambda auth: True, seen)) as url:
            path = write_kubeconfig(tmp_path / "kubeconfig", url, user, extensions=[extension],
                                    **{"tls-server-name": "kube.test"})
            client = KubeClient.from_environment(path)
            try:
                return await client.request("GET", "/api"), url
            finally:
                await client.close()

    answer, url = asyncio.run(scenario())
    assert answer == {"authorization": "Bearer tok-eks-1-team-1"}
    info = json.loads((tmp_path / "exec-info.json").read_text())
    assert info["apiVersion"] == api_version and info["kind"] == "ExecCredential"
    assert info["spec"]["interactive"] is False
    assert info["spec"]["cluster"] == {"server": url, "tls-server-name": "kube.test",
                                       "insecure-skip-tls-verify": False, "config": {"audience": "kube"}}


def test_a_failing_plugin_is_an_error_naming_the_kubeconfig_entry_and_saying_why(tmp_path):
    count = tmp_path / "count"
    user = exec_user(write_plugin(tmp_path), count, FAIL="token expired, run aws sso login")

    async def scenario():
        async with serve(token_checker(lambda auth: True, [])) as url:
            client = KubeClient.from_environment(write_kubeconfig(tmp_path / "kubeconfig", url, user))
            try:
                await client.request("GET", "/api")
            finally:
                await client.close()

    with pytest.raises(CredentialError) as err:
        asyncio.run(scenario())
    assert "users[u].user.exec" in str(err.value) and "run aws sso login" in str(err.value)


@pytest.mark.parametrize("change, field", [
    ({"apiVersion": "client.authentication.k8s.io/v1alpha1"}, "users[u].user.exec.apiVersion"),
    ({"interactiveMode": "Always"}, "users[u].user.exec.interactiveMode"),
    ({"command": "/nonexistent/credential-plugin"}, "users[u].user.exec.command"),
])
def test_an_unusable_exec_entry_names_its_field(tmp_path, change, field):
    user = exec_user(write_plugin(tmp_path), tmp_path / "count")
    user["exec"].update(change)
    path = write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:9", user)

    async def scenario():
        client = KubeClient.from_environment(path)
        try:
            await client.request("GET", "/api")
        finally:
            await client.close()

    with pytest.raises(CredentialError, match=field.replace("[", r"\[").replace("]", r"\]")):
        asyncio.run(scenario())


def test_a_rotated_token_file_is_read_again_after_a_401(tmp_path):
    token = tmp_path / "token"
    token.write_text("old\n")
    seen: list[str] = []

    def accepted(auth: str) -> bool:
        token.write_text("new\n")  # rotated after the client read it, as the kubelet rotates projected tokens
        return auth == "Bearer new"

    async def scenario():
        async with serve(token_checker(accepted, seen)) as url:
            # relative to the kubeconfig's folder, as kubectl reads it
            client = KubeClient.from_environment(write_kubeconfig(tmp_path / "kubeconfig", url, {"tokenFile": "token"}))
            try:
                return await client.request("GET", "/api")
            finally:
                await client.close()

    assert asyncio.run(scenario()) == {"authorization": "Bearer new"}
    assert seen == ["Bearer old", "Bearer new"]


def test_kubeconfig_files_in_a_list_merge_the_first_name_winning(tmp_path, monkeypatch):
    first = write_kubeconfig(tmp_path / "first", "https://first:6443", {"token": "first"})
    (tmp_path / "second").write_text(
        "current-context: other\ncontexts: [{name: other, context: {cluster: c, user: u}}]\n"
        "clusters: [{name: c, cluster: {server: 'https://second:6443'}}]\n")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(tmp_path / "missing"), first, str(tmp_path / "second")]))
    conn = kubeconfig.load()
    assert conn.host == "https://first:6443"  # context "test" from the first file that sets current-context
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(tmp_path / "second"), first]))
    conn = kubeconfig.load()
    assert conn.host == "https://second:6443"
    assert asyncio.run(conn.credentials.current()).authorization == "Bearer first"  # user u from the first file

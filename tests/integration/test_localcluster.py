"""The local control plane is real, and its failures are clear and leave no stray processes."""

from __future__ import annotations

import os
import pathlib
import socket
import stat

import pytest
from kubernetes import client

from mlops_localcluster import ClusterError, LocalCluster, build
from mlops_localcluster.controlplane import _is_ours


def test_api_server_reports_its_version(kube):
    info = client.VersionApi(kube).get_code()
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if not assets and os.environ.get("USE_EXISTING_CLUSTER", "").lower() != "true":
        assert info.git_version == f"v{build.K8S_VERSION}"
    assert info.major == "1"


def test_up_twice_does_not_start_a_second_cluster(local_cluster):
    if local_cluster is None:
        pytest.skip("USE_EXISTING_CLUSTER=true: no local cluster to start")
    before = local_cluster.running()
    again = local_cluster.up()
    assert again["components"] == before["components"]
    assert again["ports"] == before["ports"]


def _assets_with(tmp_path: pathlib.Path, apiserver_script: str | None = None) -> pathlib.Path:
    """A KUBEBUILDER_ASSETS folder with the real etcd and either the real kube-apiserver or a given script."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    bins = build.from_assets(assets) if assets else build.find()
    if bins is None:
        pytest.skip("no Kubernetes binaries built")
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "etcd").symlink_to(bins.etcd)
    if apiserver_script is None:
        (assets / "kube-apiserver").symlink_to(bins.apiserver)
    else:
        script = assets / "kube-apiserver"
        script.write_text(apiserver_script)
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return assets


def _no_process_mentions(marker: str) -> bool:
    for proc in pathlib.Path("/proc").iterdir():
        if proc.name.isdigit() and _is_ours(int(proc.name), marker):
            return False
    return True


def test_assets_without_controller_manager_start_only_etcd_and_apiserver(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(_assets_with(tmp_path)))
    cluster = LocalCluster(tmp_path / "cluster")
    try:
        state = cluster.up(simulate_nodes=False)
        assert set(state["components"]) == {"etcd", "kube-apiserver"}
        assert state["binaries"] == "KUBEBUILDER_ASSETS"
        api = client.CoreV1Api(__import__("kubernetes").config.new_client_from_config(
            config_file=str(cluster.layout.kubeconfig)))
        assert any(ns.metadata.name == "default" for ns in api.list_namespace().items)
    finally:
        cluster.down(quiet=True)
    assert _no_process_mentions(str(cluster.layout.root))


def test_a_component_that_exits_names_itself_and_its_log_and_leaves_no_strays(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(_assets_with(
        tmp_path, "#!/bin/sh\necho 'error: unknown flag --pretend-broken' >&2\nexit 3\n")))
    cluster = LocalCluster(tmp_path / "cluster")
    with pytest.raises(ClusterError) as err:
        cluster.up(simulate_nodes=False)
    message = str(err.value)
    assert "kube-apiserver exited with code 3" in message
    assert str(cluster.layout.log("kube-apiserver")) in message
    assert "unknown flag --pretend-broken" in message
    assert _no_process_mentions(str(cluster.layout.root)), "etcd was left running"
    assert not cluster.layout.state.exists()


def test_a_taken_port_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(_assets_with(tmp_path)))
    cluster = LocalCluster(tmp_path / "cluster")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        with pytest.raises(ClusterError, match=f"port 127.0.0.1:{port} for apiserver is taken"):
            cluster.up(simulate_nodes=False, ports={"apiserver": port})
    assert _no_process_mentions(str(cluster.layout.root))


def test_no_debian_package_manager_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get, no dpkg-query
    with pytest.raises(ClusterError, match="set KUBEBUILDER_ASSETS"):
        build.install_debian_packages(tmp_path / "build.log")


def test_a_failed_build_step_names_the_log(tmp_path):
    log = tmp_path / "build.log"
    with pytest.raises(ClusterError) as err:
        build._run(["sh", "-c", "echo compiling; exit 2"], log, "the Kubernetes build")
    assert "the Kubernetes build failed (exit 2)" in str(err.value) and str(log) in str(err.value)
    assert "compiling" in log.read_text()


def test_assets_folder_missing_apiserver_is_named(tmp_path):
    with pytest.raises(ClusterError, match="lacks etcd, kube-apiserver"):
        build.from_assets(str(tmp_path))

"""The pytorch image on the local cluster (mlops_localcluster.torchimage): which images it serves, how their
commands map to its virtualenv; and the pod hostname a process gets (gloo finds its address through it)."""

from __future__ import annotations

import sys

import pytest

from mlops_localcluster import network, torchimage
from mlops_localcluster.simstatus import Settings, runs_as_process


@pytest.mark.parametrize("image, served", [
    ("pytorch/pytorch:2.13.0-cpu", True), ("pytorch/pytorch", True), ("mirror.invalid/ml/pytorch:2.3.0-cuda12", True),
    ("pytorch/torchserve:0.9.0", False), ("python:3.11", False), ("example/llm-trainer:0.1.0", False),
])
def test_pytorch_images_run_as_processes_of_their_own_venv(image, served):
    assert torchimage.serves({"image": image}) is served
    assert runs_as_process({"image": image}, Settings()) is (served or image.startswith("python:"))


@pytest.mark.parametrize("first, mapped", [
    ("torchrun", "torchrun"), ("python", "python"), ("python3", "python3"),
    (sys.executable, "python"),  # simprocess.argv has already made `python` the project's interpreter
])
def test_python_and_torchrun_come_from_the_images_venv(first, mapped):
    words, extra = torchimage.launch([first, "--no-python", "python", "-c", "print(1)"], {"PATH": "/usr/bin"})
    assert words == [str(torchimage.bin_dir() / mapped), "--no-python", "python", "-c", "print(1)"]
    assert extra["PATH"].split(":") == [str(torchimage.bin_dir()), "/usr/bin"]


def test_other_commands_run_as_written_with_the_venv_first_on_path():
    words, extra = torchimage.launch(["/bin/sh", "-c", "torchrun x.py"], {"PATH": "/usr/bin"})
    assert words == ["/bin/sh", "-c", "torchrun x.py"]
    assert extra["PATH"].startswith(f"{torchimage.bin_dir()}:")


def test_the_venv_lives_in_the_cache_by_version(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_CACHE_DIR", str(tmp_path))
    assert torchimage.venv_dir() == tmp_path / f"torch-{torchimage.VERSION}"
    assert not torchimage.ready()
    pins = torchimage.CONSTRAINTS.read_text()
    assert f"torch=={torchimage.VERSION}\n" in pins


def pod(name: str, **spec) -> dict:
    return {"metadata": {"name": name, "namespace": "ml", "uid": f"uid-{name}"}, "spec": spec}


def test_a_pods_processes_get_its_hostname_in_their_own_uts_namespace(tmp_path):
    net = network.PodNetwork(network.ClusterNetwork("abc123", 3), tmp_path / "kubeconfig")
    worker = pod("ddp-w1-a2", hostname="ddp-w1", subdomain="ddp-workers")
    net._pods[worker["metadata"]["uid"]] = network._pod_info(worker, "mlp-abc123-7", "10.244.0.7")
    words = net.wrap(["python", "-c", "import socket; print(socket.gethostname())"], worker)
    assert words[:4] == ["ip", "netns", "exec", "mlp-abc123-7"]
    assert words[4:-4] == list(network.SET_HOSTNAME) and words[-4] == "ddp-w1"
    assert net.wrap(["true"], pod("elsewhere")) == ["true"]  # no namespace: the host's, as it is


def test_a_hostname_is_the_pods_name_cut_as_a_kubelet_cuts_it():
    assert network._pod_info(pod("web-1"), "ns", "10.244.0.9")["hostname"] == "web-1"
    long = "a" * 62 + "-b"
    assert network._pod_info(pod(long), "ns", "10.244.0.9")["hostname"] == "a" * 62

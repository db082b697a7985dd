"""Which images run as processes (simstatus.PROCESS_IMAGES) and how the upstream Prometheus and Alertmanager
images become Debian's binaries (simprocess.DEBIAN_IMAGES): ENTRYPOINT and CMD joined as Kubernetes joins them,
volume paths and the image's own folders remapped."""

from __future__ import annotations

import pathlib
import sys

import pytest

from mlops_localcluster import simprocess
from mlops_localcluster.simstatus import Settings, runs_as_process

PROM_CMD = ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]


@pytest.mark.parametrize("image, runs", [
    ("prom/prometheus:v2.42.0", True), ("prometheus/prometheus:v2.42.0", True), ("prometheus", True),
    ("prom/alertmanager:v0.25.0", True), ("prometheus/alertmanager@sha256:" + "0" * 64, True),
    ("prom/node-exporter:v1.5.0", False), ("prom/prometheus-operator:v0.60", False), ("vllm/vllm-openai", False),
])
def test_prometheus_and_alertmanager_images_run_as_processes(image, runs):
    assert runs_as_process({"image": image}, Settings()) is runs


@pytest.mark.parametrize("container, want", [
    ({}, ["/usr/bin/prometheus", *PROM_CMD]),  # neither: ENTRYPOINT + CMD
    ({"args": ["--web.enable-lifecycle"]}, ["/usr/bin/prometheus", "--web.enable-lifecycle"]),  # ENTRYPOINT + args
    ({"command": ["/bin/prometheus"]}, ["/usr/bin/prometheus"]),  # a command drops the CMD
    ({"command": ["prometheus"], "args": ["--version"]}, ["/usr/bin/prometheus", "--version"]),
    ({"command": ["/bin/promtool", "check", "config", "x.yml"]}, ["/bin/promtool", "check", "config", "x.yml"]),
])
def test_prometheus_entrypoint_and_cmd_as_kubernetes_joins_them(container, want):
    assert simprocess.debian_image_argv({"name": "p", "image": "prom/prometheus:v2.42.0", **container}) == want


def test_alertmanager_is_debians_prometheus_alertmanager():
    words = simprocess.debian_image_argv({"name": "am", "image": "prom/alertmanager:v0.25.0"})
    assert words == ["/usr/bin/prometheus-alertmanager", "--config.file=/etc/alertmanager/alertmanager.yml",
                     "--storage.path=/alertmanager"]
    assert simprocess.debian_image_argv({"name": "p", "image": "python:3.11"}) is None


def _prometheus_pod(**container):
    return {"metadata": {"name": "prom", "namespace": "mon"},
            "spec": {"volumes": [{"name": "config", "configMap": {"name": "prom"}}],
                     "containers": [{"name": "prometheus", "image": "prom/prometheus:v2.42.0",
                                     "volumeMounts": [{"name": "config", "mountPath": "/etc/prometheus"}],
                                     **container}]}}


def test_volumes_win_over_the_images_own_folders_which_stay_in_the_pods_folder(tmp_path):
    pod = _prometheus_pod()
    container = pod["spec"]["containers"][0]
    vol_dirs = simprocess.volume_dirs(pod, tmp_path)
    mount_map = simprocess.path_map(pod, container, vol_dirs, tmp_path)
    words = simprocess.argv(container, {}, mount_map)
    pod_dir = tmp_path / "pods" / "mon" / "prom"
    assert words == ["/usr/bin/prometheus", f"--config.file={pod_dir}/volumes/config/prometheus.yml",
                     f"--storage.tsdb.path={pod_dir}/containers/prometheus/prometheus"]
    assert (pod_dir / "containers" / "prometheus" / "prometheus").is_dir()


def test_the_images_default_config_is_there_without_a_volume_and_kept_once_written(tmp_path):
    pod = _prometheus_pod(volumeMounts=[])
    container = pod["spec"]["containers"][0]
    words = simprocess.argv(container, {}, simprocess.path_map(pod, container, {}, tmp_path))
    config = pathlib.Path(words[1].split("=", 1)[1])
    assert config == tmp_path / "pods/mon/prom/containers/prometheus/etc/prometheus/prometheus.yml"
    assert "localhost:9090" in config.read_text()
    config.write_text("changed by the container")
    simprocess.path_map(pod, container, {}, tmp_path)
    assert config.read_text() == "changed by the container"


def test_a_python_image_without_a_command_runs_its_args_as_kubernetes_does():
    # python:3.11 has no ENTRYPOINT: args replace its CMD (python3) and are the whole command line.
    assert simprocess.argv({"name": "s", "image": "python:3.11", "args": ["python", "-c", "$(CODE)"]},
                           {"CODE": "print(1)"}, []) == [sys.executable, "-c", "print(1)"]
    assert simprocess.argv({"name": "s", "image": "python:3.12-slim"}, {}, []) == [sys.executable]
    # With a command, args follow it; other images without a command start with the operator's entrypoint.
    assert simprocess.argv({"name": "s", "image": "python:3.11", "command": ["python"], "args": ["-V"]}, {},
                           []) == [sys.executable, "-V"]
    assert simprocess.argv({"name": "s", "image": "mlops-operator:dev", "args": ["agent"]}, {}, [],
                           bin_dir=pathlib.Path("/venv/bin")) == ["/venv/bin/mlops-operator", "agent"]

"""Session fixtures: one real control plane per test session, a fresh namespace per test.

Unit tests (tests/unit) need none of this. Integration tests (tests/integration, marked `cluster`) get:
- `cluster`: the kubeconfig path: the local cluster (started here, or reused when it already runs), or with
  USE_EXISTING_CLUSTER=true the cluster in $KUBECONFIG, as controller-runtime's envtest does;
- `kube`: a `kubernetes.client.ApiClient` for it;
- `namespace`: a new namespace with its default ServiceAccount, deleted afterwards;
- `needs_controller_manager` / `needs_scheduler`: skip, saying why, when KUBEBUILDER_ASSETS lacks them.
"""

from __future__ import annotations

import os
import pathlib
import re
import time
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def cluster_dir() -> pathlib.Path:
    """The local cluster's state folder: $MLOPS_CLUSTER_DIR, or .cluster. Under pytest-xdist (`make test` runs
    two workers) every worker but the first gets a cluster of its own beside it (`.cluster-gw1`): workers never
    share a control plane, so a test that restarts or pauses one cannot touch the other worker's tests."""
    base = pathlib.Path(os.environ.get("MLOPS_CLUSTER_DIR", ROOT / ".cluster"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return base if worker == "gw0" else base.with_name(f"{base.name}-{worker}")


# The stories: each starts MLServer, agents, traffic and Prometheus and times what it waits for. Two of them at once
# on two cores starve each other (the closed loop's traffic fell from 20 to 3 requests a second), so under
# pytest-xdist they are one unit of work, run one after another by one worker (`pytest_xdist_make_scheduler`).
STORIES = ("test_loop.py", "test_canary_cluster.py", "test_agent_serving.py")
# Then the longest other files, so that neither worker is left with a long file while the other idles.
LONGEST_FIRST = (*STORIES, "test_faults.py", "test_modeldeployment.py")


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    # A stable sort: the other files stay as collected.
    items.sort(key=lambda item: rank.get(pathlib.Path(str(item.fspath)).name, len(rank)))


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """Whole files to one worker at a time (`--dist loadfile`: a module's servers start once), in the order above
    (`--no-loadscope-reorder`), the stories as one unit."""
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "stories" if pathlib.PurePath(path).name in STORIES else path

    return Scheduling(config, log)


def pytest_xdist_auto_num_workers(config):
    """`make test` asks for `-n auto`: two workers, each with a local cluster of its own (`cluster_dir`). On an
    existing cluster (USE_EXISTING_CLUSTER=true) one process: two would mean two operators on the same namespaces."""
    return 0 if _use_existing() else 2


def _use_existing() -> bool:
    return os.environ.get("USE_EXISTING_CLUSTER", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def local_cluster():
    """The LocalCluster object, or None with USE_EXISTING_CLUSTER=true."""
    if _use_existing():
        yield None
        return
    from mlops_localcluster import LocalCluster

    cluster = LocalCluster(cluster_dir())
    started_here = cluster.running() is None
    cluster.up()
    yield cluster
    if started_here and not os.environ.get("MLOPS_KEEP_CLUSTER"):
        cluster.down(quiet=True)


@pytest.fixture(scope="session")
def cluster(local_cluster) -> str:
    if local_cluster is None:
        kubeconfig = os.environ.get("KUBECONFIG")
        if not kubeconfig:
            pytest.fail("USE_EXISTING_CLUSTER=true needs KUBECONFIG")
        return kubeconfig
    return str(local_cluster.layout.kubeconfig)


@pytest.fixture(scope="session")
def kube(cluster):
    from kubernetes import config

    return config.new_client_from_config(config_file=cluster)


@pytest.fixture(scope="session")
def needs_controller_manager(local_cluster):
    if local_cluster is not None and "kube-controller-manager" not in local_cluster.running()["components"]:
        pytest.skip("KUBEBUILDER_ASSETS has no kube-controller-manager: no ReplicaSets, Jobs or garbage collection")


@pytest.fixture(scope="session")
def needs_scheduler(local_cluster):
    if local_cluster is not None and "kube-scheduler" not in local_cluster.running()["components"]:
        pytest.skip("KUBEBUILDER_ASSETS has no kube-scheduler: pods are never bound to nodes")


@pytest.fixture
def namespace(kube, request):
    """A fresh namespace named after the test; its default ServiceAccount exists before the test runs."""
    from kubernetes import client

    core = client.CoreV1Api(kube)
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{slug}-{uuid.uuid4().hex[:5]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=name, labels={"mlops.dev/test": "true"})))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        # Pods are refused until the default ServiceAccount has its token, not merely exists.
        if any(sa.metadata.name == "default" and sa.secrets
               for sa in core.list_namespaced_service_account(name).items):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"namespace {name}: the default ServiceAccount got no token (controller manager down?)")
    yield name
    core.delete_namespace(name)



@pytest.fixture(scope="session")
def crds(kube):
    """The CRDs generated from the models, server-side applied and Established; returns them."""
    from kubernetes import client

    from helpers import apply, wait_for
    from mlops_operator.api import crdgen

    rendered = crdgen.render_crds()
    for crd in rendered:
        apply(kube, crd, field_manager="mlops-operator")
    ext = client.ApiextensionsV1Api(kube)

    def established():
        return all(any(c.type == "Established" and c.status == "True"
                       for c in (ext.read_custom_resource_definition(crd["metadata"]["name"]).status.conditions or []))
                   for crd in rendered)

    wait_for(established, timeout=30, message="CRDs Established")
    return rendered


class OperatorProcess:
    """The operator as a real process (`mlops-operator run`), started and stopped by pid. `running` holds those
    alive in this session, so a test that needs to be the only operator in a namespace can pause them."""

    running: set[OperatorProcess] = set()

    def __init__(self, kubeconfig: str, log_path: pathlib.Path,
                 run_args: tuple[str, ...] = ("--standalone", "--all-namespaces"), env: dict | None = None):
        self.kubeconfig, self.log_path = kubeconfig, log_path
        self.run_args, self.env = tuple(run_args), dict(env or {"MLOPS_OPERATOR_IMAGE": "mlops-operator:test"})
        self.proc = None
        self.metrics_port = None

    def start(self) -> None:
        import socket
        import subprocess
        import sys

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.metrics_port = sock.getsockname()[1]
        exe = pathlib.Path(sys.executable).with_name("mlops-operator")
        env = dict(os.environ, KUBECONFIG=self.kubeconfig, **self.env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        since = self.log_path.stat().st_size if self.log_path.exists() else 0  # a restart appends to the log
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(exe), "run", *self.run_args, f"--metrics-bind-address=127.0.0.1:{self.metrics_port}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        OperatorProcess.running.add(self)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the operator exited with {self.proc.returncode}; see {self.log_path}")
            with open(self.log_path, "rb") as log:
                log.seek(since)
                if b"mlops-operator started" in log.read():
                    return
            time.sleep(0.1)
        pytest.fail(f"the operator did not start in 30 s; see {self.log_path}")

    def stop(self) -> None:
        import signal

        OperatorProcess.running.discard(self)
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except Exception:  # noqa: BLE001
                self.proc.kill()
                self.proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        """kill -9: no cleanup, no goodbye to peers, requests cut mid-flight."""
        import signal

        OperatorProcess.running.discard(self)
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(15)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def agent(self) -> str:
        """The user agent of this process's API requests (k8s/client.py): tells replicas apart in the audit log."""
        import socket

        from mlops_operator import __version__

        return f"mlops-operator/{__version__} ({socket.gethostname()}/{self.proc.pid})"

    def metric(self, name: str, **labels) -> float:
        """Sum of a metric's samples matching labels, scraped from the operator's /metrics."""
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total


@pytest.fixture(scope="session")
def operator(cluster, crds):
    """One operator process for the whole session, watching all namespaces."""
    logs = cluster_dir() / "logs"
    proc = OperatorProcess(cluster, logs / "operator-tests.log")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def audit(local_cluster):
    """Reads the API server's audit log: who wrote what (the operator's requests carry its user agent)."""
    if local_cluster is None:
        pytest.skip("USE_EXISTING_CLUSTER=true: the API server's audit log is not ours to read")
    from helpers import AuditLog

    return AuditLog(local_cluster.audit_log)


@pytest.fixture(scope="session")
def needs_simulator(kube):
    """Skips, saying why, on a cluster whose nodes are not the project's simulated ones (real kubelets cannot be
    told to fail on cue, and pods there pull real images)."""
    from kubernetes import client

    nodes = client.CoreV1Api(kube).list_node(label_selector="sim.mlops.dev/simulated=true").items
    if not nodes:
        pytest.skip("no simulated nodes in this cluster: the test drives the node simulator")


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory):
    """A real Alertmanager (Debian's) on loopback, clustering off; yields its base URL, stopped by pid."""
    from helpers import alertmanager_server

    with alertmanager_server(tmp_path_factory.mktemp("alertmanager")) as url:
        yield url

"""Starts and stops the local control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

Owns: the state folder (default `.cluster/`: kubeconfig, kubeconfig-pods, network.json, pki/, etcd/, logs/,
state.json), free loopback ports, and the processes it starts (kube-proxy too, inside the cluster's network
namespace), which it stops by pid and only after checking the pid is still its own. For fault
tests it can also restart one component with the same command line (same ports, same etcd data) and freeze or
thaw one (SIGSTOP/SIGCONT).
Calls: build (binaries), network (the pod network, made before the API server and removed by name at down),
nodes (the simulated pool), openssl, and the simulator as a child process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import yaml

from . import build, network
from .errors import ClusterError

SERVICE_CIDR = network.SERVICE_CIDR
# Every write request is logged with its user agent, so tests and benchmarks can count the operator's writes.
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [create, update, patch, delete, deletecollection]
  - level: None
"""
# Stop order matters: kube-apiserver may ignore SIGTERM for long once etcd is gone.
STOP_ORDER = ("simulator", "kube-proxy", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")


@dataclasses.dataclass
class Layout:
    root: pathlib.Path

    @property
    def kubeconfig(self) -> pathlib.Path:
        return self.root / "kubeconfig"

    @property
    def state(self) -> pathlib.Path:
        return self.root / "state.json"

    @property
    def logs(self) -> pathlib.Path:
        return self.root / "logs"

    @property
    def pod_kubeconfig(self) -> pathlib.Path:
        """For kube-proxy and the pods: the API server at the host's end of the cluster's network link."""
        return self.root / "kubeconfig-pods"

    @property
    def network(self) -> pathlib.Path:
        return self.root / "network.json"

    @property
    def pki(self) -> pathlib.Path:
        return self.root / "pki"

    @property
    def etcd_data(self) -> pathlib.Path:
        return self.root / "etcd"

    def log(self, component: str) -> pathlib.Path:
        return self.logs / f"{component}.log"


def default_root() -> pathlib.Path:
    return pathlib.Path(os.environ.get("MLOPS_CLUSTER_DIR", ".cluster")).resolve()


# ---------------------------------------------------------------- processes

def _cmdline(pid: int) -> str:
    try:
        return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _is_ours(pid: int, marker: str) -> bool:
    """True while pid is alive and still runs what we started (pids get reused): its command line names the state
    folder `marker` itself or a path under it, not merely a longer name that begins the same (`.cluster-gw1`)."""
    cmd = _cmdline(pid)
    if not cmd or not re.search(re.escape(marker) + r"(?=[/\s]|$)", cmd):
        return False
    with contextlib.suppress(OSError):
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _stop_pid(pid: int, marker: str, grace: float = 5.0) -> None:
    if not _is_ours(pid, marker):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGCONT)  # a frozen process (LocalCluster.pause) acts on SIGTERM only once thawed
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        if not _is_ours(pid, marker):
            _reap(pid)  # it may have exited between the two calls
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        _reap(pid)
        if not _is_ours(pid, marker):
            _reap(pid)  # it may have exited between the two calls
            return
        time.sleep(0.1)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _port_listened(port: int) -> bool:
    """Whether a process still listens on the port. Connections of the stopped process that linger in
    TIME_WAIT do not count: the components set SO_REUSEADDR and bind regardless of them."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _tail(path: pathlib.Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ---------------------------------------------------------------- certificates

def _openssl(args: list[str], log: pathlib.Path) -> None:
    with open(log, "a") as out:
        proc = subprocess.run(["openssl", *args], stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise ClusterError(f"openssl {args[0]} failed; see {log}")


def make_pki(pki: pathlib.Path, log: pathlib.Path, extra_ips: tuple[str, ...] = ()) -> None:
    """A CA, a serving certificate for 127.0.0.1 (and extra_ips: the pod network's host address) signed by it,
    and the service-account key pair. The serving certificate is made again when its addresses change."""
    pki.mkdir(parents=True, exist_ok=True)
    p = lambda name: str(pki / name)  # noqa: E731
    ext = pki / "apiserver.ext"
    sans = ",".join(f"IP:{ip}" for ip in extra_ips)
    ext_text = ("subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
                f"DNS:kubernetes.default.svc,IP:{network.KUBERNETES_SERVICE_IP}{',' + sans if sans else ''}\n"
                "extendedKeyUsage=serverAuth\n")
    if (pki / "apiserver.crt").exists() and ext.exists() and ext.read_text() == ext_text:
        return
    if not (pki / "ca.crt").exists():
        _openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", "/CN=mlops-local-ca",
                  "-keyout", p("ca.key"), "-out", p("ca.crt")], log)
    _openssl(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kube-apiserver",
              "-keyout", p("apiserver.key"), "-out", p("apiserver.csr")], log)
    ext.write_text(ext_text)
    _openssl(["x509", "-req", "-in", p("apiserver.csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"),
              "-CAcreateserial", "-days", "3650", "-extfile", str(ext), "-out", p("apiserver.crt")], log)
    if not (pki / "sa.pub").exists():
        _openssl(["genrsa", "-out", p("sa.key"), "2048"], log)
        _openssl(["rsa", "-in", p("sa.key"), "-pubout", "-out", p("sa.pub")], log)


# ---------------------------------------------------------------- the cluster

STARTING_GRACE = 120.0  # seconds a cluster may take from its network to its first process (build excluded)


def _sweep_dead_networks(own: str) -> list[str]:
    """Takes down the pod networks of clusters that died without `down` (a session killed mid-run): recorded by a
    folder whose state is gone, or whose processes have all exited, or that has started none for STARTING_GRACE.
    Called with the slot lock held (no other cluster is between its state and its network then). Returns what it
    removed."""
    removed: list[str] = []
    for cid, root in network.owners().items():
        if cid == own:
            continue
        state = LocalCluster(root)._read_state()
        components = (state or {}).get("components", {}).values()
        alive = state is not None and (any(_is_ours(c["pid"], c["marker"]) for c in components) if components
                                       else time.time() - state.get("started", 0) < STARTING_GRACE)
        if not alive:
            removed += network.ClusterNetwork.down(cid)
    return removed


class LocalCluster:
    """One local control plane rooted at a state folder."""

    def __init__(self, root: pathlib.Path | None = None):
        self.layout = Layout(pathlib.Path(root) if root else default_root())

    # state.json holds {"components": {name: {"pid", "marker"}}, "ports": {...}, "binaries": ...}
    def _read_state(self) -> dict | None:
        try:
            return json.loads(self.layout.state.read_text())
        except (OSError, ValueError):
            return None

    def _write_state(self, state: dict) -> None:
        tmp = self.layout.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        tmp.replace(self.layout.state)

    def running(self) -> dict | None:
        """The state of a cluster whose processes are all alive and whose API server answers, else None."""
        state = self._read_state()
        if not state:
            return None
        for comp in state.get("components", {}).values():
            if not _is_ours(comp["pid"], comp["marker"]):
                return None
        return state if self._ready(state) else None

    def _ready(self, state: dict) -> bool:
        try:
            return self._get(state, "/readyz") == 200
        except OSError:
            return False

    def _component_ready(self, state: dict, name: str) -> bool:
        if name == "etcd":
            url = f"http://127.0.0.1:{state['ports']['etcd']}/health"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status == 200
        if name == "kube-apiserver":
            return self._ready(state)
        return True  # the others have no port of their own (--secure-port=0): alive is all we can check

    def _open(self, state: dict, path: str, timeout: float) -> Any:
        ctx = ssl.create_default_context(cafile=str(self.layout.pki / "ca.crt"))
        req = urllib.request.Request(f"https://127.0.0.1:{state['ports']['apiserver']}{path}",
                                     headers={"Authorization": f"Bearer {state['token']}"})
        return urllib.request.urlopen(req, context=ctx, timeout=timeout)

    def _get(self, state: dict, path: str) -> int:
        try:
            with self._open(state, path, 3) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as err:
            return err.code

    def get_json(self, state: dict, path: str, timeout: float = 2) -> Any:
        """One GET of `path` as the cluster's admin, no retry: for a caller that must see each answer as it came
        (an API server restarting). Raises what urllib raises."""
        with self._open(state, path, timeout) as resp:
            return json.load(resp)

    # ------------------------------------------------------------ up

    def up(self, simulate_nodes: bool = True, pool_file: str | None = None, ports: dict | None = None) -> dict:
        """Starts the cluster, or returns the running one. `ports` pins some ports (default: free ones)."""
        running = self.running()
        if running:
            return running
        self.down(quiet=True)  # a half-dead earlier cluster: stop what is left of it
        lay = self.layout
        lay.logs.mkdir(parents=True, exist_ok=True)
        bins = build.ensure(lay.log("build"))
        with contextlib.ExitStack() as claim:
            # Pods run only on simulated nodes: without them there is nothing to connect.
            net = claim.enter_context(network.ClusterNetwork.claimed(lay.root)) \
                if simulate_nodes and not network.supported() else None
            make_pki(lay.pki, lay.log("pki"), (net.host_address,) if net else ())
            token = secrets.token_hex(16)
            (lay.pki / "tokens.csv").write_text(f'{token},mlops-admin,mlops-admin,"system:masters"\n')
            ports = {"etcd": _free_port(), "etcd_peer": _free_port(), "apiserver": _free_port(), **(ports or {})}
            state = {"components": {}, "ports": ports, "token": token, "binaries": bins.source,
                     "started": time.time(), "network": net.to_dict() if net else None}
            try:
                if net:
                    self._write_state(state)  # down() finds the network by the folder's id even if up stops here
                    _sweep_dead_networks(net.cid)
                    net.up(ports["apiserver"])
                    network.record_owner(net.cid, lay.root)  # after up: up begins with a down, which forgets it
                    lay.network.write_text(json.dumps(net.to_dict()))
                claim.close()  # the slot's address is on the host now: a cluster starting next sees it taken
                self._start_all(state, bins, simulate_nodes, pool_file, net)
            except BaseException:
                self._write_state(state)
                self.down(quiet=True)
                raise
        return state

    @property
    def audit_log(self) -> pathlib.Path:
        return self.layout.log("audit")

    def _audit_policy(self) -> pathlib.Path:
        path = self.layout.pki / "audit-policy.yaml"
        path.write_text(AUDIT_POLICY)
        return path

    def _start(self, state: dict, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        log = self.layout.log(name)
        with open(log, "ab") as out:
            out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
            out.flush()
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env=env)
        # The marker must appear in /proc/<pid>/cmdline: the state folder is on every command line we start.
        # The command line is kept so restart() can start the component again exactly as it was.
        state["components"][name] = {"pid": proc.pid, "marker": str(self.layout.root), "argv": list(argv)}
        self._write_state(state)
        return proc

    def _wait(self, name: str, proc: subprocess.Popen, check, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                raise ClusterError(f"{name} exited with code {code} while starting; see {self.layout.log(name)}\n"
                                   f"{_tail(self.layout.log(name))}")
            with contextlib.suppress(OSError):
                if check():
                    return
            time.sleep(0.2)
        raise ClusterError(f"{name} did not become ready in {timeout:.0f}s; see {self.layout.log(name)}")

    def _start_all(self, state: dict, bins: build.Binaries, simulate_nodes: bool, pool_file: str | None,
                   net: network.ClusterNetwork | None = None) -> None:
        lay, ports, pki = self.layout, state["ports"], self.layout.pki
        for name in ("etcd", "etcd_peer", "apiserver"):
            if _port_taken(ports[name]):
                raise ClusterError(f"port 127.0.0.1:{ports[name]} for {name} is taken by another process")
        etcd_url = f"http://127.0.0.1:{ports['etcd']}"
        etcd = self._start(state, "etcd", [
            str(bins.etcd), "--name", "mlops-local", "--data-dir", str(lay.etcd_data),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{ports['etcd_peer']}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{ports['etcd_peer']}",
            "--initial-cluster", f"mlops-local=http://127.0.0.1:{ports['etcd_peer']}",
            "--quota-backend-bytes=4294967296", "--log-level", "warn"])
        self._wait("etcd", etcd, lambda: self._component_ready(state, "etcd"), 30)
        # With a pod network the API server is advertised (the `kubernetes` Service's endpoint) at the host's end
        # of the cluster's link, where a host NAT rule hands it to 127.0.0.1: it still listens on loopback only.
        pod_network_flags = [f"--service-node-port-range={net.node_ports[0]}-{net.node_ports[1]}"] if net else []
        apiserver = self._start(state, "kube-apiserver", [
            str(bins.apiserver), f"--etcd-servers={etcd_url}", "--bind-address=127.0.0.1",
            f"--advertise-address={net.host_address if net else '127.0.0.1'}", *pod_network_flags,
            f"--secure-port={ports['apiserver']}", "--insecure-port=0",
            f"--cert-dir={pki}", f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}", f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={pki / 'tokens.csv'}", f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc", "--authorization-mode=RBAC",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--allow-privileged=true",
            "--max-requests-inflight=800", "--max-mutating-requests-inflight=400", "--profiling=false",
            f"--audit-policy-file={self._audit_policy()}", f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json", "--audit-log-maxsize=500", "--audit-log-maxbackup=1",
            "--v=1", "--external-hostname=localhost",
            # kubectl logs: the simulator's kubelet endpoint is on each node's InternalIP (127.0.0.1), serving
            # the certificate below, signed by the cluster CA
            "--kubelet-preferred-address-types=InternalIP", f"--kubelet-certificate-authority={pki / 'ca.crt'}"])
        self._wait("kube-apiserver", apiserver, lambda: self._component_ready(state, "kube-apiserver"), 90)
        self.write_kubeconfig(state)
        if net:
            self.write_kubeconfig(state, server_ip=net.host_address, path=lay.pod_kubeconfig)
        kubeconfig = str(lay.kubeconfig)
        if bins.controller_manager:
            self._start(state, "kube-controller-manager", [
                str(bins.controller_manager), f"--kubeconfig={kubeconfig}",
                f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
                "--leader-elect=false", "--controllers=*,-nodeipam,-nodelifecycle", "--secure-port=0", "--port=0",
                "--kube-api-qps=200", "--kube-api-burst=400", "--v=1",
                # the garbage collector's decisions and its discovery resyncs, for reading a leftover child
                "--vmodule=garbagecollector=2,graph_builder=2"])
        if bins.scheduler:
            self._start(state, "kube-scheduler", [
                str(bins.scheduler), f"--kubeconfig={kubeconfig}", "--leader-elect=false", "--secure-port=0",
                "--port=0", "--kube-api-qps=200", "--kube-api-burst=400", "--v=1"])
        time.sleep(0.5)
        for name in ("kube-controller-manager", "kube-scheduler"):
            comp = state["components"].get(name)
            if comp and not _is_ours(comp["pid"], comp["marker"]):
                raise ClusterError(f"{name} exited right after start; see {lay.log(name)}\n{_tail(lay.log(name))}")
        if simulate_nodes:
            self._start_nodes(state, pool_file, bins, net)

    def _start_nodes(self, state: dict, pool_file: str | None, bins: build.Binaries,
                     net: network.ClusterNetwork | None) -> None:
        from . import nodes  # the kubernetes client is only needed once the API server is up

        pool = nodes.load_pool(pool_file)
        nodes.register(self.core_api(), pool)
        if net and bins.proxy:
            # after the Nodes: kube-proxy waits about 30 s for its Node object when it is missing
            self._start(state, "kube-proxy", net.proxy_argv(bins.proxy, self.layout.pod_kubeconfig, pool.names()[0]))
        argv = [sys.executable, "-m", "mlops_localcluster.simulator", "--kubeconfig",
                str(self.layout.kubeconfig), "--state-dir", str(self.layout.root / "sim"),
                "--tls-cert-file", str(self.layout.pki / "apiserver.crt"),  # the serving certificate for 127.0.0.1
                "--tls-private-key-file", str(self.layout.pki / "apiserver.key")]
        if net:
            argv += ["--network", str(self.layout.network), "--pod-kubeconfig", str(self.layout.pod_kubeconfig)]
        if pool_file:
            argv += ["--pool", pool_file]
        proc = self._start(state, "simulator", argv)
        time.sleep(0.3)
        if proc.poll() is not None:
            raise ClusterError(f"the node simulator exited with code {proc.returncode}; see "
                               f"{self.layout.log('simulator')}\n{_tail(self.layout.log('simulator'))}")

    def core_api(self):
        from kubernetes import client, config

        return client.CoreV1Api(config.new_client_from_config(config_file=str(self.layout.kubeconfig)))

    def write_kubeconfig(self, state: dict, server_ip: str = "127.0.0.1", path: pathlib.Path | None = None) -> None:
        server = f"https://{server_ip}:{state['ports']['apiserver']}"
        path = path or self.layout.kubeconfig
        cfg = {
            "apiVersion": "v1", "kind": "Config", "current-context": "mlops-local", "preferences": {},
            "clusters": [{"name": "mlops-local", "cluster": {
                "server": server, "certificate-authority": str(self.layout.pki / "ca.crt")}}],
            "users": [{"name": "mlops-admin", "user": {"token": state["token"]}}],
            "contexts": [{"name": "mlops-local", "context": {"cluster": "mlops-local", "user": "mlops-admin"}}],
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
        os.chmod(tmp, 0o600)
        tmp.replace(path)

    # ------------------------------------------------------------ faults

    RESTARTABLE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "simulator")

    def _component(self, name: str) -> tuple[dict, dict]:
        state = self._read_state()
        if not state:
            raise ClusterError("no local cluster is running here")
        comp = state["components"].get(name)
        if comp is None:
            raise ClusterError(f"this cluster has no {name} (started: {', '.join(state['components'])})")
        return state, comp

    def restart(self, name: str, timeout: float = 90) -> int:
        """Stops one component by pid and starts it again with the same command line: the same ports and, for
        etcd, the same data folder (so nothing stored is lost). Waits until it serves again; returns the new pid.
        The other components reconnect by themselves, which is what a restart test wants to see; the controller
        manager is paused while kube-apiserver restarts (below)."""
        if name not in self.RESTARTABLE:
            raise ClusterError(f"cannot restart {name!r}; one of {', '.join(self.RESTARTABLE)}")
        state, comp = self._component(name)
        argv = comp.get("argv")
        if not argv:
            raise ClusterError(f"{name} was started before restart support; run cluster-down and cluster-up")
        self.resume(name)  # a frozen process ignores SIGTERM until thawed
        # A starting kube-apiserver answers /apis before its aggregator has registered the built-in groups (seen
        # on every restart here: 10 to 20 of 21 groups missing for a moment, /readyz not yet OK). The controller
        # manager's garbage collector, if its 30 s discovery sync lands there, drops its monitors for those kinds
        # and makes new ones 30 s later, never learning of what was deleted in between: the children of such an
        # object then stay for its 12-24 h resync. A real control plane reaches its API servers through an
        # endpoint that routes to ready ones only; the controller manager here, which talks to the one API server
        # directly, is paused until the new one is ready, as that endpoint would hold it. The operator and the
        # node simulator are not: they see the restart as it is (docs/reliability.md).
        kcm = state["components"].get("kube-controller-manager")
        held = name == "kube-apiserver" and kcm is not None and _is_ours(kcm["pid"], kcm["marker"])
        if held:
            self.pause("kube-controller-manager")
        try:
            _stop_pid(comp["pid"], comp["marker"], grace=2.0 if name == "kube-apiserver" else 5.0)
            if _is_ours(comp["pid"], comp["marker"]):
                raise ClusterError(f"{name} (pid {comp['pid']}) did not stop")
            port = {"etcd": "etcd", "kube-apiserver": "apiserver"}.get(name)
            deadline = time.monotonic() + 30
            while port and _port_listened(state["ports"][port]) and time.monotonic() < deadline:
                time.sleep(0.1)
            proc = self._start(state, name, argv)
            self._wait(name, proc, lambda: self._component_ready(state, name), timeout)
        finally:
            if held:
                self.resume("kube-controller-manager")
        return proc.pid

    def pause(self, name: str) -> int:
        """Freezes a component (SIGSTOP): it keeps its sockets open but answers nothing, like a hung process."""
        return self._signal(name, signal.SIGSTOP)

    def resume(self, name: str) -> int:
        """Thaws a component frozen by pause() (SIGCONT); harmless on a running one."""
        return self._signal(name, signal.SIGCONT)

    def _signal(self, name: str, sig: signal.Signals) -> int:
        _, comp = self._component(name)
        if not _is_ours(comp["pid"], comp["marker"]):
            raise ClusterError(f"{name} (pid {comp['pid']}) is not running")
        os.kill(comp["pid"], sig)
        return comp["pid"]

    # ------------------------------------------------------------ down / status

    def down(self, quiet: bool = False) -> list[str]:
        state = self._read_state()
        stopped: list[str] = []
        if state:
            comps = state.get("components", {})
            for name in STOP_ORDER:
                comp = comps.get(name)
                if comp and _is_ours(comp["pid"], comp["marker"]):
                    _stop_pid(comp["pid"], comp["marker"], grace=2.0 if name == "kube-apiserver" else 5.0)
                    stopped.append(name)
            self.layout.state.unlink(missing_ok=True)
        # By name, from the folder's id: also what a cluster killed before writing its state left behind.
        if not network.supported():
            stopped += network.ClusterNetwork.down(network.cluster_id(self.layout.root))
        self.layout.network.unlink(missing_ok=True)
        # A fresh cluster every time: etcd data and credentials go with it; logs stay for reading.
        import shutil

        shutil.rmtree(self.layout.etcd_data, ignore_errors=True)
        self.layout.kubeconfig.unlink(missing_ok=True)
        self.layout.pod_kubeconfig.unlink(missing_ok=True)
        if not quiet and not stopped:
            print("no local cluster was running")
        return stopped

    def status(self) -> dict:
        state = self._read_state()
        if not state:
            return {"running": False}
        comps = {name: ("running" if _is_ours(c["pid"], c["marker"]) else "exited") + f" (pid {c['pid']})"
                 for name, c in state["components"].items()}
        out = {"running": self.running() is not None, "apiserver": f"https://127.0.0.1:{state['ports']['apiserver']}",
               "kubeconfig": str(self.layout.kubeconfig), "binaries": state.get("binaries"), "components": comps}
        net = self.pod_network()
        if net:
            out["network"] = {"namespace": net.netns, "hostAddress": net.host_address,
                              "nodePorts": "{}-{}".format(*net.node_ports), "podCIDR": str(network.POD_CIDR)}
        return out

    def pod_network(self) -> network.ClusterNetwork | None:
        """The running cluster's pod network (NodePorts answer on 127.0.0.1 in `node_ports`), or None."""
        state = self._read_state() or {}
        data = state.get("network")
        return network.ClusterNetwork(data["cid"], int(data["slot"])) if data else None

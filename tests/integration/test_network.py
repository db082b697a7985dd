"""The local cluster's pod network, for real: process pods in network namespaces of their own, Services through
a real kube-proxy (ClusterIP and NodePort), DNS names from hosts files, two clusters side by side, and nothing
left after `down`. A check "from inside a pod" runs a Python client in that pod's namespace with `ip netns exec`,
which is how the node simulator starts the pod's own processes (its /etc/hosts mounted the same way)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

import pytest
import yaml
from kubernetes import client
from kubernetes import config as kconfig

from helpers import request, wait_for
from mlops_localcluster import LocalCluster

# Answers every GET with the pod's name and the CLUSTER_MARK it was given: tells pods and clusters apart.
SERVER = """
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (os.environ["HOSTNAME"] + " " + os.environ.get("CLUSTER_MARK", "")).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("", 8080), H).serve_forever()
"""
# Run in a pod's namespace: GET argv[1] (retried a little while the server starts), print the body.
CLIENT = """
import sys, time, urllib.request
for attempt in range(20):
    try:
        print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode()); break
    except OSError as exc:
        err = exc; time.sleep(0.5)
else:
    sys.exit(f"{sys.argv[1]}: {err}")
"""
RESOLVE = """
import socket, sys
try:
    print(socket.gethostbyname(sys.argv[1]))
except OSError:
    print("")
"""


@pytest.fixture(scope="module")
def net(local_cluster, needs_simulator, needs_scheduler):
    network = local_cluster.pod_network() if local_cluster is not None else None
    if network is None:
        pytest.skip("no pod network here (an existing cluster, not root, or no iproute2/iptables)")
    return network


def web_pod(name: str, labels: dict, mark: str = "", **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "web", "image": "python:3.11", "command": ["python", "-c", SERVER],
                                     "env": [{"name": "CLUSTER_MARK", "value": mark}]}], **spec}}


def service(name: str, selector: dict, kind: str = "ClusterIP", headless: bool = False) -> dict:
    spec = {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": 8080}], "type": kind}
    if headless:
        spec["clusterIP"] = "None"
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def running_ips(core, namespace: str, names: list[str]) -> dict[str, str]:
    def ips():
        pods = {p.metadata.name: p for p in core.list_namespaced_pod(namespace).items}
        if all(n in pods and pods[n].status.phase == "Running" and pods[n].status.pod_ip for n in names):
            return {n: pods[n].status.pod_ip for n in names}
        return None
    return wait_for(ips, timeout=60, message=f"pods {names} Running with an IP")


def ready_endpoints(core, namespace: str, name: str, count: int) -> None:
    def ready():
        ep = core.read_namespaced_endpoints(name, namespace)
        return sum(len(s.addresses or []) for s in ep.subsets or []) == count
    wait_for(ready, timeout=60, message=f"{count} ready endpoints of {name}")


def ready_slices(kube, namespace: str, name: str, count: int) -> None:
    """`count` ready endpoints in the Service's EndpointSlices (what kube-proxy reads, unlike Endpoints; served as
    discovery.k8s.io/v1beta1 by the cached Kubernetes 1.20 build)."""
    path = f"/apis/discovery.k8s.io/v1beta1/namespaces/{namespace}/endpointslices"

    def ready():
        code, body = request(kube, "GET", path, query={"labelSelector": f"kubernetes.io/service-name={name}"})
        assert code == 200, body
        return sum(1 for s in body["items"] for e in s.get("endpoints") or []
                   if (e.get("conditions") or {}).get("ready")) == count
    wait_for(ready, timeout=60, message=f"{count} ready endpoints in the EndpointSlices of {name}")


def in_pod(network, pod_ip: str, code: str, *args: str) -> str:
    proc = subprocess.run(["ip", "netns", "exec", network.pod_netns(pod_ip), sys.executable, "-c", code, *args],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def names_reached(fetch, want: set[str], within: float = 30) -> set[str]:
    """Pod names answering `fetch()`, asked again and again until all of `want` answered or `within` seconds passed.
    kube-proxy writes its rules a moment after the EndpointSlices change (at least its 1 s minSyncPeriod, more on
    a busy machine), so the first answers may all come from the endpoint that was ready first."""
    seen: set[str] = set()
    deadline = time.monotonic() + within
    while not want <= seen and time.monotonic() < deadline:
        seen.add(fetch().split()[0])
    return seen


def from_host(port: int) -> str:
    deadline = time.monotonic() + 60
    while True:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3).read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture
def webs(kube, namespace, net):
    """Two web pods behind a ClusterIP Service `web` and a NodePort Service `web-np`; returns their IPs."""
    core = client.CoreV1Api(kube)
    for name in ("web-0", "web-1"):
        core.create_namespaced_pod(namespace, web_pod(name, {"app": "web"}))
    core.create_namespaced_service(namespace, service("web", {"app": "web"}))
    core.create_namespaced_service(namespace, service("web-np", {"app": "web"}, kind="NodePort"))
    ips = running_ips(core, namespace, ["web-0", "web-1"])
    # kube-proxy programs each Service from that Service's own EndpointSlices: wait for both Services'.
    ready_slices(kube, namespace, "web", 2)
    ready_slices(kube, namespace, "web-np", 2)
    return ips


def test_pods_reach_each_other_by_pod_ip_and_the_address_is_the_status_one(net, webs):
    assert in_pod(net, webs["web-0"], CLIENT, f"http://{webs['web-1']}:8080/").startswith("web-1")
    assert in_pod(net, webs["web-1"], CLIENT, f"http://{webs['web-0']}:8080/").startswith("web-0")
    # each pod's eth0 carries exactly the address in its status
    shown = subprocess.run(["ip", "netns", "exec", net.pod_netns(webs["web-0"]), "ip", "-o", "-4", "addr", "show",
                            "eth0"], capture_output=True, text=True, check=True).stdout
    assert f"inet {webs['web-0']}/" in shown


def test_a_cluster_ip_spreads_over_both_endpoints_a_pod_itself_included(kube, namespace, net, webs):
    cluster_ip = client.CoreV1Api(kube).read_namespaced_service("web", namespace).spec.cluster_ip
    seen = names_reached(lambda: in_pod(net, webs["web-0"], CLIENT, f"http://{cluster_ip}/"), {"web-0", "web-1"})
    assert seen == {"web-0", "web-1"}  # web-0 reaching itself through the Service: hairpin works


def test_a_node_port_answers_on_the_hosts_loopback(kube, namespace, net, webs):
    port = client.CoreV1Api(kube).read_namespaced_service("web-np", namespace).spec.ports[0].node_port
    first, last = net.node_ports
    assert first <= port <= last
    assert names_reached(lambda: from_host(port), {"web-0", "web-1"}) == {"web-0", "web-1"}


def test_service_and_headless_names_resolve_inside_pods(kube, namespace, net, webs):
    core = client.CoreV1Api(kube)
    core.create_namespaced_service(namespace, service("workers", {"app": "worker"}, headless=True))
    core.create_namespaced_pod(namespace, web_pod("worker-0", {"app": "worker"}, hostname="w0",
                                                  subdomain="workers"))
    worker_ip = running_ips(core, namespace, ["worker-0"])["worker-0"]
    ready_endpoints(core, namespace, "workers", 1)
    cluster_ip = core.read_namespaced_service("web", namespace).spec.cluster_ip
    client_ip = webs["web-0"]
    for name in ("web", f"web.{namespace}", f"web.{namespace}.svc", f"web.{namespace}.svc.cluster.local"):
        wait_for(lambda name=name: in_pod(net, client_ip, RESOLVE, name) == cluster_ip, timeout=30,
                 message=f"{name} resolves to {cluster_ip} inside a pod")
        assert in_pod(net, client_ip, CLIENT, f"http://{name}/").split()[0] in ("web-0", "web-1")
    headless = f"w0.workers.{namespace}.svc.cluster.local"
    wait_for(lambda: in_pod(net, client_ip, RESOLVE, headless) == worker_ip, timeout=30,
             message=f"{headless} resolves to the pod's IP")
    assert in_pod(net, client_ip, CLIENT, f"http://{headless}:8080/").startswith("worker-0")
    assert in_pod(net, client_ip, RESOLVE, "workers") == worker_ip
    # the API server through the `kubernetes` Service, as in-cluster clients reach it
    version = in_pod(net, client_ip, "import json, ssl, urllib.request; print(json.load(urllib.request.urlopen("
                     "'https://kubernetes.default.svc.cluster.local/version', "
                     "context=ssl._create_unverified_context(), timeout=10))['gitVersion'])")
    assert version.startswith("v1.")


# In a pod: one keep-alive connection to the API server at argv[1] (host:port); a request, then another on the
# same connection once a line arrives on stdin. Prints each answer's status.
KEEP_ALIVE = """
import http.client, ssl, sys
conn = http.client.HTTPSConnection(sys.argv[1], timeout=5, context=ssl._create_unverified_context())
for _ in range(2):
    conn.request("GET", "/version")
    answer = conn.getresponse()
    answer.read()
    print(answer.status, flush=True)
    sys.stdin.readline()
"""


@pytest.mark.parametrize("through", ["kubeconfig", "service"])
def test_a_pods_open_connection_survives_other_pods_coming_and_going(local_cluster, net, webs, through):
    """A bridge takes its lowest port address unless it has one of its own: when the pod whose veth address
    sorted first went, the gateway's address changed under every other pod, and each open connection through the
    gateway (in-cluster clients of the API server, Services) hung until its neighbour entry expired. A veth with
    the lowest address possible stands in for that pod: it comes, web-0 learns the gateway's address, it goes.
    Through the pods' kubeconfig (the API server's address on the host link, as process pods use it) or through
    the `kubernetes` Service (kube-proxy's DNAT)."""
    cluster, pod_ns = net, net.pod_netns(webs["web-0"])
    if through == "kubeconfig":
        server = yaml.safe_load(local_cluster.layout.pod_kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        address = server.split("://", 1)[1].rstrip("/")
    else:
        address = "kubernetes.default.svc.cluster.local"

    def run(netns, *argv):
        subprocess.run(["ip", "netns", "exec", netns, *argv], check=True, capture_output=True)

    run(cluster.netns, "ip", "link", "add", "mltestlow", "address", "02:00:00:00:00:01", "type", "veth", "peer",
        "name", "mltestpeer")
    client_proc = None
    try:
        run(cluster.netns, "ip", "link", "set", "mltestlow", "master", cluster.bridge, "up")
        run(pod_ns, "ip", "neigh", "flush", "all")
        client_proc = subprocess.Popen(["ip", "netns", "exec", pod_ns, sys.executable, "-c", KEEP_ALIVE, address],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
        assert client_proc.stdout.readline().strip() == "200"
        run(cluster.netns, "ip", "link", "del", "mltestlow")
        client_proc.stdin.write("again\n")
        client_proc.stdin.flush()
        out, err = client_proc.communicate(timeout=30)
        assert out.strip() == "200", err  # not a read timeout on the open connection
    finally:
        if client_proc is not None:
            client_proc.kill()
        subprocess.run(["ip", "netns", "exec", cluster.netns, "ip", "link", "del", "mltestlow"], capture_output=True)


def test_probes_run_in_the_pods_namespace(kube, namespace, net):
    """HTTP, TCP and exec probes of three pods that all listen on 8080: each probe of 127.0.0.1 reaches its own
    pod's loopback (from the host's namespace it would reach the host's, where none of them listens)."""
    core = client.CoreV1Api(kube)
    connect = ["python", "-c", "import socket; socket.create_connection(('127.0.0.1', 8080), 2).close()"]
    probes = {"probe-http": {"httpGet": {"path": "/", "port": 8080}},
              "probe-tcp": {"tcpSocket": {"port": 8080}},
              "probe-exec": {"exec": {"command": connect}}}
    for name, probe in probes.items():
        body = web_pod(name, {"app": "probed"})
        body["spec"]["containers"][0]["readinessProbe"] = {**probe, "periodSeconds": 1}
        core.create_namespaced_pod(namespace, body)
    core.create_namespaced_service(namespace, service("probed", {"app": "probed"}))
    ips = running_ips(core, namespace, list(probes))
    ready_endpoints(core, namespace, "probed", 3)
    for name in probes:
        pod = core.read_namespaced_pod(name, namespace)
        assert pod.status.container_statuses[0].ready and pod.status.container_statuses[0].restart_count == 0
        assert in_pod(net, ips[name], CLIENT, "http://127.0.0.1:8080/").startswith(name)


def test_two_clusters_side_by_side_and_nothing_left_after_down(kube, namespace, net, webs, tmp_path):
    second = LocalCluster(tmp_path / "second")
    try:
        second.up()
        other = second.pod_network()
        assert other is not None and other.cid != net.cid
        assert other.node_ports != net.node_ports and other.host_address != net.host_address
        core2 = client.CoreV1Api(kconfig.new_client_from_config(config_file=str(second.layout.kubeconfig)))
        core2.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        wait_for(lambda: any(sa.secrets for sa in core2.list_namespaced_service_account(namespace).items
                             if sa.metadata.name == "default"), timeout=30, message="default ServiceAccount")
        # the same pod, Service and namespace names as in the first cluster
        for name in ("web-0", "web-1"):
            core2.create_namespaced_pod(namespace, web_pod(name, {"app": "web"}, mark="second"))
        core2.create_namespaced_service(namespace, service("web", {"app": "web"}))
        core2.create_namespaced_service(namespace, service("web-np", {"app": "web"}, kind="NodePort"))
        ips2 = running_ips(core2, namespace, ["web-0", "web-1"])
        ready_endpoints(core2, namespace, "web", 2)
        for network, ips, mark in ((net, webs, ""), (other, ips2, "second")):
            answer = in_pod(network, ips["web-0"], CLIENT, "http://web/")
            assert answer.split()[1:] == ([mark] if mark else []), answer
        port1 = client.CoreV1Api(kube).read_namespaced_service("web-np", namespace).spec.ports[0].node_port
        port2 = core2.read_namespaced_service("web-np", namespace).spec.ports[0].node_port
        assert not from_host(port1).endswith("second")
        assert from_host(port2).endswith("second")
    finally:
        second.down(quiet=True)
    assert other.leftovers() == []
    # the first cluster kept all of its own
    assert net.leftovers() != [] and in_pod(net, webs["web-0"], CLIENT, "http://web/").split()[0] in ("web-0", "web-1")
